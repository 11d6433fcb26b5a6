"""An ingest killed with SIGKILL leaves a consistent knowledge base, and a re-run resumes:
finished documents are kept and skipped, embeddings already computed are not recomputed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from kb_fixtures.helpers import kb_settings

from lingxi.knowledge import create_kb, open_kb

N_FILES = 800


@pytest.mark.slow
def test_kill_9_mid_ingest_then_resume(tmp_path):
    home, docs = tmp_path / "home", tmp_path / "docs"
    docs.mkdir()
    for i in range(N_FILES):
        (docs / f"note{i:05d}.txt").write_text(f"Note {i}: item {i} is stored on shelf {i % 97}.\n\nSecond part {i}.")
    settings = kb_settings(home)
    create_kb("big", settings).close()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from kb_fixtures.helpers import kb_settings
        from lingxi.knowledge import open_kb
        open_kb("big", kb_settings(__import__("pathlib").Path({str(home)!r}))).ingest([{str(docs)!r}], progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    db = home / "kb" / "big" / "kb.sqlite"
    committed = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db, timeout=1) as con:
                committed = con.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        except sqlite3.OperationalError:
            committed = 0
        if committed >= 20:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    assert 20 <= committed < N_FILES

    kb = open_kb("big", settings)
    try:
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            docs_now, chunks_now = con.execute("SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)").fetchone()
        assert chunks_now == docs_now  # every committed document is complete (one chunk each)
        assert kb.search("shelf", mode="hybrid", k=3)  # indexes rebuilt from what was committed
        report = kb.ingest([docs], progress=False)
        assert len(report.unchanged) == docs_now and len(report.added) == N_FILES - docs_now
        assert report.chunks_embedded == 0  # the killed run's embeddings were kept in the cache
        assert kb.stats()["documents"] == N_FILES
        hit = kb.search("item 799 shelf", mode="bm25", k=1)[0]
        assert hit.source.endswith("note00799.txt")
    finally:
        kb.close()


def test_resume_report_counts_cached_vectors_as_reused(tmp_path, monkeypatch, capsys):
    # A resumed ingest takes the killed run's vectors from the embedding cache; the report said
    # "0 embedded, 0 reused" for them (the "2,504 of 3,400": only fresh ones counted).
    from lingxi.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"n{i}.txt").write_text(f"Note {i} is on shelf {i}.", encoding="utf-8")
    config = tmp_path / "lingxi.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\ndefault_embedder = "hash"\n[embedders.hash]\nengine = "hash"\n',
                      encoding="utf-8")
    monkeypatch.setenv("LINGXI_CONFIG", str(config))
    lines = []
    for name in ("first", "second"):  # the second base shares the home's embedding cache
        for args in (["kb", "create", name], ["kb", "ingest", name, str(docs), "--quiet"]):
            try:
                main(args)
            except SystemExit as exit_:
                assert exit_.code == 0
        lines.append(capsys.readouterr().out.strip().splitlines()[-1])
    assert "(6 embedded, 0 reused of 6)" in lines[0]
    assert "(0 embedded, 6 reused of 6)" in lines[1]
