"""``lingxi keys create|list|revoke|rotate``: API keys, their tenants and limits."""

from __future__ import annotations

import time

import click

from lingxi.cli import emit_json, settings


def _store():
    from lingxi.stores.keys import open_key_store

    return open_key_store(settings())


def _show(done: str, secret: str, key, as_json: bool) -> None:
    if as_json:
        emit_json({"secret": secret, **key.to_dict()})
        return
    click.echo(done)
    click.echo(f"secret (shown once, store it now): {secret}")


@click.group()
def keys() -> None:
    """Manage the gateway's API keys (stored hashed; a secret is shown once)."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant the key belongs to (metrics, cost, cache scope).")
@click.option("--name", default="", help="A label for the key.")
@click.option("--groups", default="", help="Comma-separated knowledge-base groups the key may read besides "
              "public documents (none: public documents only; '*': an operator key that reads every "
              "document and /metrics).")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--rpd", type=click.IntRange(min=1), default=None, help="Requests per day.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens per minute.")
@click.option("--tpd", type=click.IntRange(min=1), default=None, help="Tokens per day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(tenant: str, name: str, groups: str, rpm, rpd, tpm, tpd, as_json: bool) -> None:
    """Create a key and print its secret (only this once)."""
    from lingxi.stores.keys import Limits

    store = _store()
    try:
        secret, key = store.create(tenant, name=name, groups=groups.split(","),
                                   limits=Limits(rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd))
    finally:
        store.close()
    _show(f"created {key.id} for tenant '{key.tenant}'", secret, key, as_json)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_keys(include_revoked: bool, as_json: bool) -> None:
    """List keys (never their secrets)."""
    store = _store()
    try:
        found = store.list(include_revoked=include_revoked)
    finally:
        store.close()
    if as_json:
        emit_json([k.to_dict() for k in found])
        return
    if not found:
        click.echo("no API keys (the gateway serves loopback clients only)")
        return
    for k in found:
        limits = ", ".join(f"{n}={v}" for n, v in vars(k.limits).items() if v) or "no limits"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created))
        state = "  REVOKED" if k.revoked else ""
        click.echo(f"{k.id}  {k.hint}…  tenant={k.tenant}  {k.name or '-'}  groups={','.join(k.groups) or '-'}"
                   f"  {limits}  created {when}{state}")


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (``key_…``); it stops working at once."""
    store = _store()
    try:
        key = store.revoke(key_id)
    finally:
        store.close()
    click.echo(f"revoked {key.id} (tenant '{key.tenant}')")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rotate(key_id: str, as_json: bool) -> None:
    """Give a key a new secret and print it (only this once); the old secret stops working at
    once. The key keeps its id, tenant, groups, limits and quota counters."""
    store = _store()
    try:
        secret, key = store.rotate(key_id)
    finally:
        store.close()
    _show(f"rotated {key.id} (tenant '{key.tenant}'); the old secret no longer works", secret, key, as_json)
