"""One result format for every evaluation: a JSON document a person can diff and a program can compare.

```
{"lingxi_eval": 1, "kind": "generation", "created": "2026-...Z",
 "config": {...},                         # what was asked: metrics, tokenizers, model, options
 "data": {"files": {"hyp": {"path", "sha256", "lines"}}, "sha256": "..."},
 "versions": {"lingxi": ..., "python": ..., "sacrebleu": ...},
 "summary": {"bleu": 31.2, ...},          # the headline numbers
 "items": [{"id": "1", "scores": {...}, "stats": {...}}, ...]}   # per item, same order as the data
```

``scores`` are per-item numbers a mean can be taken of (EM, F1, ROUGE, a latency); ``stats``
are sufficient statistics for corpus-level metrics whose score is not a mean of item scores
(BLEU, chrF, TER): :mod:`lingxi.evaluate.compare` resamples them for the paired bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.records import json_lines

SCHEMA = 1


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a data file, read in blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"path": str(path), "sha256": h.hexdigest(), "bytes": size}


def data_record(files: dict[str, str | Path | None]) -> dict[str, Any]:
    """The ``data`` section: each named file's digest plus one hash over all of them (by content)."""
    digests = {role: file_digest(p) for role, p in files.items() if p is not None}
    combined = hashlib.sha256("\n".join(f"{r}:{d['sha256']}" for r, d in sorted(digests.items())).encode())
    return {"files": digests, "sha256": combined.hexdigest()}


def package_versions(*packages: str) -> dict[str, str]:
    """lingxi, Python and each named package that is installed."""
    from lingxi import __version__

    out = {"lingxi": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def jsonl_records(path: str | Path, what: str, allow_empty: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSONL data file.

    Raises:
        UsageError: the file is missing, a line is not a JSON object (naming the file and line),
            or the file has no records (unless ``allow_empty``).
    """
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, row, problem in json_lines(fh):
                if problem:
                    raise UsageError(f"{what} {path}: line {n} is {problem}")
                rows.append((n, row))
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: byte {exc.start} is not UTF-8") from None
    if not rows and not allow_empty:
        raise UsageError(f"{what} {path} is empty")
    return rows


@dataclass
class EvalRun:
    """One evaluation's result. ``save`` writes it atomically; ``load`` reads and checks it."""

    kind: str
    config: dict[str, Any]
    summary: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_dict(self) -> dict[str, Any]:
        return {"lingxi_eval": SCHEMA, "kind": self.kind, "created": self.created, "config": self.config,
                "data": self.data, "versions": self.versions, "summary": self.summary, "items": self.items}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, doc: Any, source: str = "run") -> EvalRun:
        if not isinstance(doc, dict) or doc.get("lingxi_eval") != SCHEMA:
            raise UsageError(f"{source}: not a Lingxi evaluation result (no \"lingxi_eval\": {SCHEMA})")
        missing = [k for k in ("kind", "config", "summary", "items") if k not in doc]
        if missing:
            raise UsageError(f"{source}: evaluation result lacks {', '.join(missing)}")
        return cls(kind=doc["kind"], config=doc["config"], summary=doc["summary"], items=doc["items"],
                   data=doc.get("data", {}), versions=doc.get("versions", {}), created=doc.get("created", ""))

    @classmethod
    def load(cls, path: str | Path) -> EvalRun:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"evaluation result not found: {path}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {exc.lineno} is not JSON ({exc.msg})") from None
        return cls.from_dict(doc, str(path))
