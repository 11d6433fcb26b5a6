"""Facts a knowledge graph is built from: ``(head, relation, tail)`` triples with types,
provenance and access groups, read from JSONL or CSV and checked before anything is written.

A node's identity is ``(type, name)``: the type becomes the node label, the name its ``name``
property; the relation becomes the edge type. Aliases (``head_aliases`` / ``tail_aliases``)
name the same node in other words or languages (阿司匹林 / aspirin / acetylsalicylic acid).

What this module does *not* do: talk to a graph store (see :mod:`lingxi.graph.store`).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingxi.records import json_lines


REQUIRED = ("head", "head_type", "relation", "tail", "tail_type")
OPTIONAL = ("source", "groups", "head_aliases", "tail_aliases")
#: Graph labels are identifiers: letters (any script), digits, underscores; not starting with a digit.
MAX_NAME = 512


@dataclass(frozen=True)
class Triple:
    """One fact. ``groups`` empty = public; ``source`` = where it came from (a chunk id, a file:line)."""

    head: str
    head_type: str
    relation: str
    tail: str
    tail_type: str
    source: str = ""
    groups: tuple[str, ...] = ()
    head_aliases: tuple[str, ...] = ()
    tail_aliases: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.head_type, self.head, self.relation, self.tail_type, self.tail)


@dataclass
class ReadReport:
    """What reading the files found: the triples, and the problems (``file:line: reason``)."""

    triples: list[Triple] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # relation/type -> words naming it


def is_label(text: str) -> bool:
    """Whether ``text`` can be a node label or edge type (an identifier in any script)."""
    return bool(text) and text.isidentifier() and len(text) <= 64


def clean_name(text: str) -> str:
    """A name as stored: NFKC-normalised (full-width letters and digits folded), trimmed, inner
    whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _strings(value: Any, where: str, name: str, problems: list[str]) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):  # CSV cells and the short form: "a|b|c"
        items = value.split("|")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        problems.append(f"{where}: '{name}' must be a list of strings or a '|'-separated string")
        return ()
    return tuple(dict.fromkeys(clean_name(v) for v in items if clean_name(v)))


def parse_row(row: dict[str, Any], where: str, problems: list[str]) -> Triple | None:
    """One row as a :class:`Triple`, or None with the reasons appended to ``problems``."""
    before = len(problems)
    unknown = sorted(set(row) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(REQUIRED + OPTIONAL)}")
    values: dict[str, str] = {}
    for name in REQUIRED:
        value = row.get(name)
        if not isinstance(value, str) or not clean_name(value):
            problems.append(f"{where}: '{name}' is missing or empty")
            continue
        values[name] = clean_name(value)
        if len(values[name]) > MAX_NAME:
            problems.append(f"{where}: '{name}' is longer than {MAX_NAME} characters")
    for name in ("head_type", "tail_type", "relation"):
        if name in values and not is_label(values[name]):
            problems.append(f"{where}: '{name}' = {values[name]!r} is not a label (letters, digits and '_', "
                            "not starting with a digit, at most 64 characters)")
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        problems.append(f"{where}: 'source' must be a string")
    groups = _strings(row.get("groups"), where, "groups", problems)
    heads = _strings(row.get("head_aliases"), where, "head_aliases", problems)
    tails = _strings(row.get("tail_aliases"), where, "tail_aliases", problems)
    if len(problems) > before:
        return None
    if (values["head_type"], values["head"]) == (values["tail_type"], values["tail"]):
        problems.append(f"{where}: '{values['head']}' {values['relation']} itself: a self-referencing relation")
        return None
    return Triple(values["head"], values["head_type"], values["relation"], values["tail"], values["tail_type"],
                  source=(source or "").strip() or where, groups=groups, head_aliases=heads, tail_aliases=tails)


def _label_row(row: dict[str, Any], where: str, report: ReadReport) -> None:
    label = row.get("label")
    extra = sorted(set(row) - {"label", "words"})
    if extra:
        report.problems.append(f"{where}: a label row has only 'label' and 'words', not {', '.join(extra)}")
    elif not isinstance(label, str) or not is_label(label.strip()):
        report.problems.append(f"{where}: 'label' must name a relation or node type (an identifier)")
    else:
        words = _strings(row.get("words"), where, "words", report.problems)
        report.labels[label.strip()] = tuple(dict.fromkeys(report.labels.get(label.strip(), ()) + words))


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row or None, problem or None) for each non-empty line of a JSONL or CSV file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 0, None, f"not UTF-8 text (byte {exc.start})"
        return
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:  # more cells than headers
                yield reader.line_num, None, f"{len(row[None]) + len(reader.fieldnames)} cells but " \
                                             f"{len(reader.fieldnames)} columns"
                continue
            yield reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}, None
        return
    yield from json_lines(text.splitlines())


def read_triples(paths: Iterable[str | Path]) -> ReadReport:
    """Read and check every row of every file; nothing is written anywhere.

    Files are JSONL (one object a line) or CSV with a header (``.csv``). A row naming the same
    fact twice keeps the last one's source and groups.
    """
    report = ReadReport()
    seen: dict[tuple[str, ...], int] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            report.problems.append(f"{path}: no such file")
            continue
        if path.suffix.lower() not in (".jsonl", ".json", ".csv", ".ndjson"):
            report.problems.append(f"{path}: expected a .jsonl or .csv file")
            continue
        count = 0
        for number, row, problem in _rows(path):
            where = f"{path.name}:{number}"
            if problem is not None:
                report.problems.append(f"{where}: {problem}")
                continue
            if "label" in row:  # {"label": "TREATS", "words": ["治疗", "treats"]}
                _label_row(row, where, report)  # type: ignore[arg-type]
                count += 1
                continue
            triple = parse_row(row, where, report.problems)  # type: ignore[arg-type]
            if triple is None:
                continue
            count += 1
            if triple.key in seen:
                report.triples[seen[triple.key]] = triple
            else:
                seen[triple.key] = len(report.triples)
                report.triples.append(triple)
        if count == 0 and not any(p.startswith(f"{path.name}:") for p in report.problems):
            report.problems.append(f"{path}: no triples (an empty file)")
    return report


__all__ = ["REQUIRED", "ReadReport", "Triple", "clean_name", "is_label", "parse_row", "read_triples"]
