"""The stores layer's foundation: URL resolution, connections and the one migration scheme, run
against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from store_servers import pg_url

from lingxi.config import parse_config
from lingxi.errors import ConfigError, UpstreamError
from lingxi.stores.connect import connect_pg, open_sqlite, resolve_url, state_url
from lingxi.stores.migrations import migrate


def test_a_url_comes_from_the_config_then_the_environment(monkeypatch):
    monkeypatch.delenv("LX_A", raising=False)
    monkeypatch.setenv("LX_B", "redis://from-b")
    assert resolve_url("postgresql://cfg", "LX_A", "LX_B", what="x.url") == "postgresql://cfg"
    assert resolve_url(None, "LX_A", "LX_B", what="x.url") == "redis://from-b"
    monkeypatch.setenv("LX_A", "redis://from-a")
    assert resolve_url("", "LX_A", "LX_B", what="x.url") == "redis://from-a"


def test_a_missing_url_names_the_config_key_and_the_environment_variable(monkeypatch):
    monkeypatch.delenv("LINGXI_PG_URL", raising=False)
    settings = parse_config({"gateway": {"state": "postgres"}}, source="lingxi.toml")
    with pytest.raises(ConfigError) as info:
        state_url(settings, "postgres")
    message = str(info.value)
    assert "gateway.pg_url" in message and "$LINGXI_PG_URL" in message and "lingxi.toml" in message
    from lingxi.stores.keys import open_key_store

    with pytest.raises(ConfigError, match=r"gateway.pg_url.*LINGXI_PG_URL"):
        open_key_store(settings)
    monkeypatch.delenv("LINGXI_REDIS_URL", raising=False)
    from lingxi.stores.limits import create_limiter

    with pytest.raises(ConfigError, match=r"gateway.redis_url.*LINGXI_REDIS_URL"):
        create_limiter(parse_config({"gateway": {"state": "redis"}}))


def test_open_sqlite_sets_wal_and_a_busy_timeout(tmp_path):
    db = open_sqlite(tmp_path / "sub" / "x.db", busy_timeout_s=5)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()


def test_an_unreachable_postgres_is_one_readable_error_without_the_password():
    with pytest.raises(UpstreamError) as info:
        connect_pg("postgresql://me:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value) and "cannot connect to PostgreSQL" in str(info.value)


# ---------------------------------------------------------------- migrations, on both backends


@pytest.fixture(params=["sqlite", "postgres"])
def conn(request, tmp_path, tmp_path_factory):
    if request.param == "sqlite":
        db = open_sqlite(tmp_path / "m.db")
        yield db
        db.close()
        return
    db = connect_pg(pg_url(tmp_path_factory))
    schema = "test_" + uuid.uuid4().hex[:8]
    db.execute(f"CREATE SCHEMA {schema}")
    db.execute(f"SET search_path TO {schema}")
    yield db
    db.execute(f"DROP SCHEMA {schema} CASCADE")
    db.close()


def _tables(conn) -> set[str]:
    if isinstance(conn, sqlite3.Connection):
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()}


def _m001_notes(db):
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")


def _m002_notes_author(db):
    db.execute("ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT ''")


def _m003_broken(db):
    db.execute("CREATE TABLE half_done (x INTEGER)")
    db.execute("THIS IS NOT SQL")


def test_migrations_run_once_in_order_and_are_recorded_per_store(conn):
    assert migrate(conn, "notes", [_m001_notes]) == ["_m001_notes"]
    assert migrate(conn, "notes", [_m001_notes]) == []
    assert migrate(conn, "notes", [_m001_notes, _m002_notes_author]) == ["_m002_notes_author"]
    conn.execute("INSERT INTO notes (id, body, author) VALUES (1, 'hi', 'me')")
    # another store in the same database keeps its own record
    assert migrate(conn, "other", [_m001_notes]) == ["_m001_notes"]
    rows = conn.execute("SELECT store, name FROM lingxi_migrations ORDER BY store, name").fetchall()
    assert [tuple(r) for r in rows] == [("notes", "_m001_notes"), ("notes", "_m002_notes_author"),
                                        ("other", "_m001_notes")]


def test_a_failing_migration_leaves_nothing_half_done(conn):
    migrate(conn, "notes", [_m001_notes])
    with pytest.raises(Exception):
        migrate(conn, "notes", [_m001_notes, _m002_notes_author, _m003_broken])
    assert "half_done" not in _tables(conn)
    names = [r[0] for r in conn.execute("SELECT name FROM lingxi_migrations").fetchall()]
    assert names == ["_m001_notes"]  # _m002 ran, but was rolled back with the broken step
    assert migrate(conn, "notes", [_m001_notes, _m002_notes_author]) == ["_m002_notes_author"]


def test_a_database_from_before_the_scheme_adopts_it_keeping_its_rows(conn):
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    conn.execute("INSERT INTO notes VALUES (7, 'old')")
    assert migrate(conn, "notes", [_m001_notes, _m002_notes_author]) == ["_m001_notes", "_m002_notes_author"]
    assert tuple(conn.execute("SELECT id, body, author FROM notes").fetchone()) == (7, "old", "")


def test_duplicate_step_names_are_refused(conn):
    with pytest.raises(ValueError, match="unique"):
        migrate(conn, "notes", [_m001_notes, _m001_notes])


def test_the_embedding_cache_counts_what_it_found_as_progress(tmp_path):
    """A resumed ingest's bar starts at what the cache already holds, not at 0."""
    import numpy as np

    from lingxi.stores.embeddings import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embed = lambda texts: np.ones((len(texts), 4), np.float32)  # noqa: E731
    cache.embed("m", ["a", "b"], ["ha", "hb"], embed)
    ticks: list[int] = []
    vectors, embedded = cache.embed("m", ["a", "b", "c"], ["ha", "hb", "hc"], embed, progress=ticks.append)
    assert embedded == 1 and sorted(vectors) == ["ha", "hb", "hc"]
    assert ticks == [2, 1]
