"""The audit log: one append-only, tamper-evident record per gateway request.

Each record holds who asked (tenant, key), what (model, kind, the prompt and the answer as the
configured redaction left them), what the answer rests on (retrieved sources), what the guard
decided, the outcome (status, error) and the latency.

Tamper evidence:

- **Chain**: record ``n`` stores ``prev`` = the MAC of record ``n-1`` and its own ``mac`` =
  HMAC-SHA256(key, prev + canonical JSON of its fields, ``seq`` included). Editing a field,
  deleting a record or slipping one in breaks the chain at that point, and without the key
  nobody can recompute it.
- **Checkpoints**: every ``checkpoint_every`` records (and at :meth:`AuditLog.close`) a row
  ``(seq, mac, signature)`` signed with the same key. They catch a truncated tail and anchor
  retention: :meth:`AuditLog.prune` deletes only whole stretches that end at a checkpoint, and
  :meth:`AuditLog.verify` starts from that checkpoint, so a pruned log still verifies.

:meth:`AuditLog.verify` names each problem by sequence number: an edited record, a record that
is not part of the chain (inserted), a run of missing ones (deleted), a bad checkpoint.

Backends: SQLite (one file, ``HOME/audit/audit.db``; the default) and PostgreSQL (table
``lingxi_audit`` in the database of ``gateway.pg_url``), through :mod:`lingxi.stores`. Appends
are serialised per database (``BEGIN IMMEDIATE`` / an advisory lock), so several writers and
several gateway replicas share one chain.

What it does not do: stop someone with the key and write access from rewriting history;
keep the key itself (``$LINGXI_AUDIT_KEY``, or a key file made under ``HOME/audit``).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingxi.errors import ConfigError, UsageError

GENESIS = "0" * 64
#: The fields a record is made of, in the order of the canonical JSON the MAC covers.
FIELDS = ("seq", "ts", "request_id", "tenant", "key_id", "model", "kind", "status", "error", "latency_s",
          "prompt", "answer", "sources", "guard", "usage")
_JSON_FIELDS = ("sources", "guard", "usage")


@dataclass
class AuditRecord:
    """What one request leaves in the audit log (``seq``, ``prev`` and ``mac`` are set on append)."""

    request_id: str
    tenant: str = ""
    key_id: str | None = None
    model: str = ""
    kind: str = ""
    status: int = 200
    error: str | None = None
    latency_s: float = 0.0
    prompt: str = ""
    answer: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    guard: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    seq: int = 0
    prev: str = ""
    mac: str = ""

    def values(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {**self.values(), "prev": self.prev, "mac": self.mac}


def _canonical(values: dict[str, Any]) -> bytes:
    return json.dumps([values[f] for f in FIELDS], ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _mac(key: bytes, prev: str, values: dict[str, Any]) -> str:
    return hmac.new(key, prev.encode() + b"\n" + _canonical(values), hashlib.sha256).hexdigest()


def _sign(key: bytes, seq: int, mac: str) -> str:
    return hmac.new(key, f"checkpoint:{seq}:{mac}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`AuditLog.verify`."""

    seq: int
    kind: str  # edited | inserted | deleted | checkpoint | truncated
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind} ({self.detail})"


@dataclass
class Verification:
    ok: bool
    records: int
    checkpoints: int
    anchor: int
    problems: list[Problem]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "checkpoints": self.checkpoints, "anchor": self.anchor,
                "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in self.problems]}


# ---------------------------------------------------------------- schema


def _m001_audit_sqlite(db: Any) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS lingxi_audit (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT, "
               "tenant TEXT, key_id TEXT, model TEXT, kind TEXT, status INTEGER, error TEXT, latency_s REAL, "
               "prompt TEXT, answer TEXT, sources TEXT, guard TEXT, usage TEXT, prev TEXT NOT NULL, mac TEXT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS lingxi_audit_ts ON lingxi_audit (ts)")
    db.execute("CREATE TABLE IF NOT EXISTS lingxi_audit_checkpoints (seq INTEGER PRIMARY KEY, mac TEXT NOT NULL, "
               "ts REAL NOT NULL, signature TEXT NOT NULL)")


def _m001_audit_pg(db: Any) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS lingxi_audit (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, "
               "request_id TEXT, tenant TEXT, key_id TEXT, model TEXT, kind TEXT, status INTEGER, error TEXT, "
               "latency_s DOUBLE PRECISION, prompt TEXT, answer TEXT, sources TEXT, guard TEXT, usage TEXT, "
               "prev TEXT NOT NULL, mac TEXT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS lingxi_audit_ts ON lingxi_audit (ts)")
    db.execute("CREATE TABLE IF NOT EXISTS lingxi_audit_checkpoints (seq BIGINT PRIMARY KEY, mac TEXT NOT NULL, "
               "ts DOUBLE PRECISION NOT NULL, signature TEXT NOT NULL)")


SQLITE_MIGRATIONS = [_m001_audit_sqlite]
PG_MIGRATIONS = [_m001_audit_pg]

_COLS = ", ".join(FIELDS) + ", prev, mac"


# ---------------------------------------------------------------- the log


class AuditLog:
    """An append-only, tamper-evident log on SQLite or PostgreSQL.

    Open it with :func:`open_audit_log` (from config) or :meth:`sqlite` / :meth:`postgres`.

    Args:
        conn: a connection from :func:`lingxi.stores.connect.open_sqlite` or ``connect_pg``.
        key: the HMAC key (at least 16 bytes).
        checkpoint_every: records between signed checkpoints.
    """

    def __init__(self, conn: Any, key: bytes, checkpoint_every: int = 1000):
        from lingxi.stores.migrations import migrate

        if len(key) < 16:
            raise ConfigError(["guard.audit: the audit key must be at least 16 bytes"])
        self.conn = conn
        self.key = key
        self.checkpoint_every = checkpoint_every
        self.is_sqlite = isinstance(conn, sqlite3.Connection)
        self._lock = threading.Lock()
        migrate(conn, "audit", SQLITE_MIGRATIONS if self.is_sqlite else PG_MIGRATIONS)

    @classmethod
    def sqlite(cls, path: str | Path, key: bytes, checkpoint_every: int = 1000) -> AuditLog:
        from lingxi.stores.connect import open_sqlite

        return cls(open_sqlite(path), key, checkpoint_every)

    @classmethod
    def postgres(cls, url: str, key: bytes, checkpoint_every: int = 1000) -> AuditLog:
        from lingxi.stores.connect import connect_pg

        return cls(connect_pg(url, what="the postgres audit log"), key, checkpoint_every)

    # ------------------------------------------------------------ SQL plumbing

    def _q(self, sql: str) -> str:
        return sql if self.is_sqlite else sql.replace("?", "%s")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return list(self.conn.execute(self._q(sql), tuple(params)).fetchall())

    def _write(self, fn: Any) -> Any:
        """Run ``fn(execute)`` in one serialised write transaction."""
        with self._lock:
            if self.is_sqlite:
                from lingxi.stores.connect import sqlite_tx

                with sqlite_tx(self.conn) as db:
                    return fn(lambda sql, p=(): db.execute(sql, tuple(p)))
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('lingxi_audit'))")
                return fn(lambda sql, p=(): self.conn.execute(self._q(sql), tuple(p)))

    # ------------------------------------------------------------ writing

    def append(self, records: Sequence[AuditRecord]) -> list[int]:
        """Add records at the end of the chain in one transaction; returns their sequence numbers.
        Writes a checkpoint whenever a multiple of ``checkpoint_every`` is passed."""
        if not records:
            return []

        def write(execute: Any) -> list[int]:
            last = execute("SELECT seq, mac FROM lingxi_audit ORDER BY seq DESC LIMIT 1").fetchone()
            if last is None:
                last = execute("SELECT seq, mac FROM lingxi_audit_checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (int(last[0]), last[1]) if last else (0, GENESIS)
            seqs = []
            for rec in records:
                seq += 1
                rec.seq, rec.prev = seq, prev
                values = rec.values()
                rec.mac = _mac(self.key, prev, values)
                row = [json.dumps(values[f], ensure_ascii=False) if f in _JSON_FIELDS else values[f] for f in FIELDS]
                execute(f"INSERT INTO lingxi_audit ({_COLS}) VALUES ({', '.join('?' * (len(FIELDS) + 2))})",
                        [*row, rec.prev, rec.mac])
                prev = rec.mac
                seqs.append(seq)
                if seq % self.checkpoint_every == 0:
                    self._insert_checkpoint(execute, seq, prev)
            return seqs

        return self._write(write)

    def _insert_checkpoint(self, execute: Any, seq: int, mac: str) -> None:
        execute("INSERT INTO lingxi_audit_checkpoints (seq, mac, ts, signature) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (seq) DO NOTHING", [seq, mac, time.time(), _sign(self.key, seq, mac)])

    def checkpoint(self) -> int | None:
        """Sign the current end of the chain now (e.g. at shutdown); returns its seq."""
        def write(execute: Any) -> int | None:
            last = execute("SELECT seq, mac FROM lingxi_audit ORDER BY seq DESC LIMIT 1").fetchone()
            if last is None:
                return None
            self._insert_checkpoint(execute, int(last[0]), last[1])
            return int(last[0])

        return self._write(write)

    # ------------------------------------------------------------ reading

    def _record(self, row: tuple) -> AuditRecord:
        values = dict(zip((*FIELDS, "prev", "mac"), row))
        for f in _JSON_FIELDS:
            values[f] = json.loads(values[f]) if values[f] else ([] if f != "usage" else {})
        values["seq"] = int(values["seq"])
        return AuditRecord(**values)

    def records(self, start: float | None = None, end: float | None = None, batch: int = 1000) -> Iterator[AuditRecord]:
        """Records in chain order, optionally with ``start <= ts < end`` (unix times), read in batches."""
        after = -1
        while True:
            sql = f"SELECT {_COLS} FROM lingxi_audit WHERE seq > ?"
            params: list[Any] = [after]
            if start is not None:
                sql += " AND ts >= ?"
                params.append(start)
            if end is not None:
                sql += " AND ts < ?"
                params.append(end)
            rows = self._rows(sql + f" ORDER BY seq LIMIT {int(batch)}", params)
            if not rows:
                return
            for row in rows:
                yield self._record(row)
            after = int(rows[-1][0])

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM lingxi_audit")[0][0])

    # ------------------------------------------------------------ verification

    def verify(self) -> Verification:
        """Walk the chain from its anchor and report every problem found (see the module doc)."""
        problems: list[Problem] = []
        checkpoints = {int(s): (m, sig) for s, m, sig in self._rows("SELECT seq, mac, signature FROM lingxi_audit_checkpoints")}
        for seq, (mac, sig) in sorted(checkpoints.items()):
            if not hmac.compare_digest(sig, _sign(self.key, seq, mac)):
                problems.append(Problem(seq, "checkpoint", "its signature does not match: the checkpoint was altered"))
        good_cp = {s: m for s, (m, sig) in checkpoints.items() if hmac.compare_digest(sig, _sign(self.key, s, m))}
        first = self._rows("SELECT MIN(seq) FROM lingxi_audit")[0][0]
        # The anchor: the chain's start, or (after pruning) the checkpoint just before the first record.
        anchor_seq, expected = 0, GENESIS
        if first is not None and int(first) > 1:
            below = [s for s in good_cp if s < int(first)]
            if below:
                anchor_seq = max(below)
                expected = good_cp[anchor_seq]
        records = list(self.records())
        last_seq = anchor_seq
        n = 0
        for i, rec in enumerate(records):
            n += 1
            own_ok = hmac.compare_digest(rec.mac, _mac(self.key, rec.prev, rec.values()))
            linked = rec.prev == expected
            if linked and own_ok:
                if rec.seq != last_seq + 1:
                    problems.append(Problem(rec.seq, "edited", f"its sequence number was changed (expected {last_seq + 1})"))
            elif linked:
                problems.append(Problem(rec.seq, "edited", "its content does not match its MAC"))
            elif own_ok and rec.seq > last_seq + 1:
                gone = f"{last_seq + 1}" if rec.seq == last_seq + 2 else f"{last_seq + 1}-{rec.seq - 1}"
                problems.append(Problem(last_seq + 1, "deleted", f"record(s) {gone} are missing: seq {rec.seq} "
                                        f"chains to a record that is not there"))
            else:
                nxt = records[i + 1] if i + 1 < len(records) else None
                if nxt is not None and nxt.prev == expected or not own_ok:
                    problems.append(Problem(rec.seq, "inserted", "it is not part of the chain (written outside the audit log)"))
                    last_seq = rec.seq
                    continue
                problems.append(Problem(rec.seq, "edited", "its link to the previous record was changed"))
            if rec.seq in good_cp and good_cp[rec.seq] != rec.mac:
                problems.append(Problem(rec.seq, "checkpoint", "the record differs from its signed checkpoint"))
            expected, last_seq = rec.mac, rec.seq
        latest_cp = max(good_cp, default=0)
        if latest_cp > last_seq:
            problems.append(Problem(last_seq + 1, "truncated", f"records {last_seq + 1}-{latest_cp} are missing: "
                                    f"a signed checkpoint covers seq {latest_cp}"))
        return Verification(not problems, n, len(checkpoints), anchor_seq, problems)

    # ------------------------------------------------------------ export and retention

    def export(self, out: io.TextIOBase | Any, fmt: str = "jsonl", start: float | None = None,
               end: float | None = None) -> int:
        """Write records with ``start <= ts < end`` as JSON lines or CSV; returns how many."""
        if fmt not in ("jsonl", "csv"):
            raise UsageError(f"unknown export format '{fmt}'; expected jsonl or csv")
        writer = None
        n = 0
        for rec in self.records(start, end):
            row = rec.to_dict()
            if fmt == "jsonl":
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if k in _JSON_FIELDS else v for k, v in row.items()})
            n += 1
        return n

    def prune(self, before: float) -> int:
        """Delete records older than ``before`` (unix time), but only up to the latest signed
        checkpoint that all of them precede, so the remaining chain stays anchored; returns how
        many were deleted. Checkpoints at or after the cut stay; older ones go."""
        def write(execute: Any) -> int:
            rows = execute("SELECT c.seq FROM lingxi_audit_checkpoints c JOIN lingxi_audit a ON a.seq = c.seq "
                           "WHERE a.ts < ? ORDER BY c.seq DESC", [before]).fetchall()
            cut = None
            for (seq,) in rows:  # the newest checkpoint whose whole prefix is older than `before`
                newer = execute("SELECT COUNT(*) FROM lingxi_audit WHERE seq <= ? AND ts >= ?", [seq, before]).fetchone()[0]
                if newer == 0:
                    cut = int(seq)
                    break
            if cut is None:
                return 0
            deleted = execute("DELETE FROM lingxi_audit WHERE seq <= ?", [cut]).rowcount
            execute("DELETE FROM lingxi_audit_checkpoints WHERE seq < ?", [cut])
            return int(deleted)

        return self._write(write)

    def close(self) -> None:
        """Checkpoint the end of the chain and release the connection. Safe to call twice."""
        if self.conn is None:
            return
        try:
            self.checkpoint()
        finally:
            with self._lock:
                self.conn.close()
                self.conn = None


# ---------------------------------------------------------------- from config


def audit_key(settings: Any, env: str = "LINGXI_AUDIT_KEY", create: bool = True) -> bytes:
    """The HMAC key: ``$LINGXI_AUDIT_KEY`` (or the variable ``guard.audit.key_env`` names), else
    a key file ``HOME/audit/audit.key`` made on first use (readable by its owner only).

    Raises:
        ConfigError: no key in the environment, and none on disk while ``create`` is False.
    """
    value = os.environ.get(env)
    if value:
        return value.encode()
    path = Path(settings.home_dir) / "audit" / "audit.key"
    if path.is_file():
        return path.read_bytes().strip()
    if not create:
        raise ConfigError([f"guard.audit.key_env: ${env} is not set and there is no key file {path}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def open_audit_log(settings: Any) -> AuditLog:
    """The audit log the configuration names: ``[guard.audit] backend`` (sqlite or postgres)."""
    cfg = settings.guard.audit
    if cfg.backend == "postgres":
        from lingxi.stores.connect import resolve_url

        url = resolve_url(cfg.pg_url or settings.gateway.pg_url, "LINGXI_PG_URL", what="guard.audit.pg_url",
                          needed_for="guard.audit.backend = 'postgres'", source=getattr(settings, "source", None))
        if not os.environ.get(cfg.key_env):
            raise ConfigError([f"guard.audit.key_env: set ${cfg.key_env} (every gateway replica must share the key)"],
                              getattr(settings, "source", None))
        return AuditLog.postgres(url, audit_key(settings, cfg.key_env), cfg.checkpoint_every)
    path = Path(cfg.sqlite_path).expanduser() if cfg.sqlite_path else Path(settings.home_dir) / "audit" / "audit.db"
    return AuditLog.sqlite(path, audit_key(settings, cfg.key_env), cfg.checkpoint_every)
