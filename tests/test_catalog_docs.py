"""The examples in docs/choosing-a-model.md are real output of the current code."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from lingxi.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "choosing-a-model.md"


def _run(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    return out


def _examples() -> list[tuple[str, str]]:
    """(command, printed output) for every ``$ lingxi models estimate|select`` block in the doc."""
    found = []
    for block in re.findall(r"```\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        lines = block.splitlines()
        if lines and re.match(r"\$ lingxi models (estimate|select) ", lines[0]):
            found.append((lines[0][2:], "\n".join(lines[1:]) + "\n"))
    return found


@pytest.fixture(autouse=True)
def _defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("LINGXI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_doc_examples_match_the_code(capsys):
    examples = _examples()
    assert len(examples) >= 2
    for command, printed in examples:
        assert _run(capsys, shlex.split(command)[1:]) == printed, command


def test_doc_rejection_reasons_match_the_code(capsys):
    text = DOC.read_text(encoding="utf-8")
    count, rest = re.search(r"Some of the (\d+) rejections(.*)", text, flags=re.S).groups()
    block = rest.split("```")[1]
    data = json.loads(_run(capsys, ["models", "select", "--scenario", "financial-compliance", "--max-gpu-mem", "24",
                                    "--json"]))
    assert len(data["rejected"]) == int(count)
    why = {r["model"]: "; ".join(r["why"]) for r in data["rejected"]}
    for line in filter(None, block.splitlines()):
        model, reason = line.split(None, 1)
        assert why[model] == reason.strip(), model
