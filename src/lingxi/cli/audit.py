"""``lingxi audit …``: verify, export and prune the gateway's audit log."""

from __future__ import annotations

import datetime as dt
import sys
import time

import click

from lingxi.cli import emit_json, settings
from lingxi.errors import UsageError


def _when(value: str | None, what: str) -> float | None:
    """A unix time from ``2026-12-01``, ``2026-12-01T08:30:00`` (UTC unless an offset is given) or seconds."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what}: '{value}' is not a date (YYYY-MM-DD[THH:MM[:SS]]) or unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log of gateway requests ([guard.audit] in the config)."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok","records","checkpoints","anchor","problems"}.')
def verify(as_json: bool) -> None:
    """Check the chain and the signed checkpoints; name every edited, inserted or deleted record (exit 1 if any)."""
    from lingxi.audit import open_audit_log

    log = open_audit_log(settings())
    try:
        result = log.verify()
    finally:
        log.conn.close()
    if as_json:
        emit_json(result.to_dict())
    else:
        for problem in result.problems:
            click.echo(str(problem))
        state = "ok" if result.ok else f"TAMPERED: {len(result.problems)} problem(s)"
        click.echo(f"{state}: {result.records} records, {result.checkpoints} checkpoints, anchored at seq {result.anchor}")
    if not result.ok:
        sys.exit(1)


@audit.command("export")
@click.option("--from", "start", default=None, help="Oldest time to include (YYYY-MM-DD[THH:MM], UTC, or unix seconds).")
@click.option("--to", "end", default=None, help="Time to stop before (same forms).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Write here (atomically) instead of stdout.")
def export(start: str | None, end: str | None, fmt: str, out: str | None) -> None:
    """Write the records with FROM <= time < TO."""
    import io
    from pathlib import Path

    from lingxi.audit import open_audit_log
    from lingxi.guard._io import write_atomic

    lo, hi = _when(start, "--from"), _when(end, "--to")
    log = open_audit_log(settings())
    try:
        if out is None:
            log.export(sys.stdout, fmt, lo, hi)
            return
        buf = io.StringIO()
        n = log.export(buf, fmt, lo, hi)
        write_atomic(Path(out), buf.getvalue())
        click.echo(f"wrote {n} records to {out}", err=True)
    finally:
        log.conn.close()


@audit.command("prune")
@click.option("--before", default=None, help="Delete records older than this (default: now minus guard.audit.retention_days).")
def prune(before: str | None) -> None:
    """Apply the retention policy: delete old records up to a signed checkpoint (the rest still verifies)."""
    from lingxi.audit import open_audit_log

    s = settings()
    cut = _when(before, "--before")
    if cut is None:
        if s.guard.audit.retention_days is None:
            raise UsageError("give --before, or set guard.audit.retention_days in the config")
        cut = time.time() - s.guard.audit.retention_days * 86400
    log = open_audit_log(s)
    try:
        n = log.prune(cut)
    finally:
        log.conn.close()
    click.echo(f"deleted {n} records")


@audit.command("checkpoint")
def checkpoint() -> None:
    """Sign the current end of the chain now (the gateway also does so every N records and at shutdown)."""
    from lingxi.audit import open_audit_log

    log = open_audit_log(settings())
    try:
        seq = log.checkpoint()
    finally:
        log.conn.close()
    click.echo("empty log" if seq is None else f"checkpoint at seq {seq}")
