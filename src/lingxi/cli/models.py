"""``lingxi models …``: what models there are and what they need."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings


@click.group()
def models() -> None:
    """List configured and bundled models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_models(as_json: bool) -> None:
    """Chat models and embedders this configuration can use."""
    s = settings()
    rows = []
    for name, cfg in sorted(s.all_models().items()):
        rows.append(_row(name, "chat", cfg, bundled=name not in s.models, default=name == s.default_model))
    for name, cfg in sorted(s.all_embedders().items()):
        rows.append(_row(name, "embedding", cfg, bundled=name not in s.embedders, default=name == s.default_embedder))
    if as_json:
        emit_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        flags = ", ".join(f for f in ("default" if r["default"] else "", "bundled" if r["bundled"] else "") if f)
        click.echo(f"{r['name']:<{width}}  {r['kind']:<9}  {r['engine']:<21}  {r['source'] or ''}"
                   + (f"  ({flags})" if flags else ""))


def _row(name: str, kind: str, cfg, *, bundled: bool, default: bool) -> dict:
    source = getattr(cfg, "path", None) or getattr(cfg, "base_url", None)
    if getattr(cfg, "model", None) and getattr(cfg, "base_url", None):
        source = f"{cfg.base_url} ({cfg.model})"
    return {
        "name": name,
        "kind": kind,
        "engine": cfg.engine,
        "source": source or getattr(cfg, "description", None),
        "context_length": getattr(cfg, "context_length", None),
        "bundled": bundled,
        "default": default,
    }
