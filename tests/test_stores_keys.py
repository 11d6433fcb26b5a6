"""One suite for every API-key store: SQLite (embedded), Redis/Valkey and PostgreSQL (real
servers, started once per session)."""

from __future__ import annotations

import asyncio
import json

import pytest
from store_servers import pg_schema_url, redis_prefix, redis_url

from lingxi.errors import NotFoundError, UsageError
from lingxi.stores.keys import Limits, PostgresKeyStore, RedisKeyStore, SQLiteKeyStore


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request, tmp_path, tmp_path_factory):
    if request.param == "sqlite":
        return SQLiteKeyStore(tmp_path / "keys.db")
    if request.param == "redis":
        return RedisKeyStore(redis_url(), prefix=redis_prefix())
    return PostgresKeyStore(pg_schema_url(tmp_path_factory))


def drive(store, body):
    """Run ``body()`` and close the store in one event loop (async clients belong to theirs)."""
    async def go():
        try:
            await body()
        finally:
            await store.aclose()

    asyncio.run(go())


def test_create_authenticate_list_revoke(store):
    async def body():
        assert not store.has_keys_sync() and not await store.has_keys()
        secret, key = store.create("acme", name="ci", groups=["legal", " hr "], limits=Limits(rpm=5, tpd=1000))
        assert secret.startswith("lx-") and key.groups == ("legal", "hr") and key.limits == Limits(rpm=5, tpd=1000)
        assert await store.authenticate(secret) == key and await store.authenticate(secret + "x") is None
        assert store.has_keys_sync() and await store.has_keys()
        assert [k.id for k in store.list()] == [key.id]
        assert store.revoke(key.id).revoked
        assert await store.authenticate(secret) is None
        assert store.list() == [] and store.list(include_revoked=True)[0].revoked
        assert not store.has_keys_sync()
        with pytest.raises(NotFoundError):
            store.revoke("key_nope")
        with pytest.raises(UsageError):
            store.create("  ")

    drive(store, body)


def test_rotate_gives_a_new_secret_to_the_same_key_and_the_old_one_stops_at_once(store):
    async def body():
        old_secret, key = store.create("acme", name="app", groups=["legal"], limits=Limits(rpm=7, tpm=500))
        assert await store.authenticate(old_secret) == key
        new_secret, rotated = store.rotate(key.id)
        assert new_secret != old_secret and new_secret.startswith("lx-")
        assert await store.authenticate(old_secret) is None
        assert await store.authenticate(new_secret) == rotated
        assert (rotated.id, rotated.tenant, rotated.name, rotated.groups, rotated.limits, rotated.created) == \
            (key.id, key.tenant, key.name, key.groups, key.limits, key.created)
        assert rotated.hint == new_secret[:7] != key.hint
        assert [(k.id, k.hint) for k in store.list(include_revoked=True)] == [(key.id, rotated.hint)]
        third, _ = store.rotate(key.id)
        assert await store.authenticate(new_secret) is None and (await store.authenticate(third)).id == key.id
        store.revoke(key.id)
        assert await store.authenticate(third) is None  # a revoke after a rotate ends the newest secret
        with pytest.raises(UsageError, match="revoked"):
            store.rotate(key.id)
        with pytest.raises(NotFoundError):
            store.rotate("key_nope")

    drive(store, body)


def test_rotating_one_key_leaves_the_others_alone(store):
    async def body():
        a_secret, a = store.create("acme")
        b_secret, b = store.create("globex")
        store.rotate(a.id)
        assert await store.authenticate(b_secret) == b and await store.authenticate(a_secret) is None
        assert {k.id for k in store.list()} == {a.id, b.id}

    drive(store, body)


def test_lingxi_keys_rotate_prints_the_new_secret_once(tmp_path):
    from conftest import invoke_lingxi

    config = tmp_path / "lingxi.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\n', encoding="utf-8")
    made = json.loads(invoke_lingxi("keys", "create", "--tenant", "acme", "--json", config=config).stdout)
    rotated = json.loads(invoke_lingxi("keys", "rotate", made["id"], "--json", config=config).stdout)
    assert rotated["id"] == made["id"] and rotated["secret"] != made["secret"] and rotated["tenant"] == "acme"
    store = SQLiteKeyStore(tmp_path / "home" / "gateway" / "keys.db")
    drive(store, lambda: _check_secrets(store, made["secret"], rotated["secret"]))
    human = invoke_lingxi("keys", "rotate", made["id"], config=config)
    assert "secret (shown once" in human.stdout and "old secret no longer works" in human.stdout
    bad = invoke_lingxi("keys", "rotate", "key_nope", config=config)
    assert bad.returncode == 2 and "no API key with id 'key_nope'" in bad.stderr


async def _check_secrets(store, old, new):
    assert await store.authenticate(old) is None and (await store.authenticate(new)) is not None
