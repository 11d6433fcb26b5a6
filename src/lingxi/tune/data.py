"""Training data: load, clean, deduplicate, scrub, split and describe it (``lingxi data prepare``).

Four kinds of rows, told apart by their fields:

- ``sft``: ``{"instruction", "input"?, "output", "system"?}`` (self-instruct seed files whose
  ``instances`` list holds several ``{"input", "output"}`` are expanded, one row each);
- ``chat``: ``{"messages": [{"role", "content"}, ...]}`` ending with an assistant turn;
- ``preference``: ``{"prompt", "chosen", "rejected"}``; the prompt is a string or a list of
  messages. Anthropic hh-rlhf rows (``{"chosen", "rejected"}`` holding whole ``Human:`` /
  ``Assistant:`` dialogues) are split into the shared prompt, as messages, and the two last answers;
- ``text``: ``{"text"}`` raw domain text (a ``.txt`` file is read as paragraphs split by blank lines).

Files: ``.jsonl``, ``.json`` (an array, or JSON lines under a .json name), ``.csv`` (a header row
naming the fields), ``.txt``. A line that is not valid JSON, or a row whose fields match no kind,
is a :class:`Problem` with its line number: skipped and listed, or the run stops on the first one
(``on_error="stop"``).

This module does not tokenize (lengths are in characters) and does not know any model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError, missing_extra

KINDS = ("sft", "chat", "preference", "text")
ROLES = ("system", "user", "assistant")


@dataclass
class Problem:
    """One row that could not be used, and why."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Row:
    """One usable row: its kind, its fields (cleaned in place) and where it came from."""

    kind: str
    data: dict[str, Any]
    file: str = ""
    line: int = 0


# ---------------------------------------------------------------- reading


def read_rows(path: str | os.PathLike[str], *, on_error: str = "skip",
              problems: list[Problem] | None = None) -> list[Row]:
    """Every usable row of one file, in order.

    Args:
        on_error: ``"skip"`` lists a malformed line in ``problems`` and goes on; ``"stop"`` raises.
        problems: where skipped lines are appended (with file and line number).

    Raises:
        UsageError: the file is missing, has an unknown extension, or (``on_error="stop"``) a
            malformed line, naming file and line.
    """
    if on_error not in ("skip", "stop"):
        raise UsageError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"data file not found: {file}")
    problems = problems if problems is not None else []
    rows: list[Row] = []
    for line, record in records(file):
        try:
            if isinstance(record, Exception):
                raise ValueError(str(record))
            rows.extend(Row(kind, data, file.name, line) for kind, data in parse_record(record))
        except ValueError as exc:
            problem = Problem(file.name, line, str(exc))
            if on_error == "stop":
                raise UsageError(f"malformed row at {problem} (use --on-error skip to skip such rows)") from None
            problems.append(problem)
    return rows


def records(file: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed record or the exception that stopped parsing it)."""
    suffix = file.suffix.lower()
    text = file.read_text(encoding="utf-8-sig")
    if suffix == ".txt":
        line = 1
        for block in re.split(r"\n\s*\n", text):
            if block.strip():
                yield line + (len(block) - len(block.lstrip("\n"))), {"text": block}
            line += block.count("\n") + 2
        return
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for record in reader:
            yield reader.line_num, {k: v for k, v in record.items() if k is not None}
        return
    if suffix == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON lines under a .json name (as BELLE ships its seed tasks)
        if isinstance(whole, list):
            # Line numbers of array items are not kept by json; report the item's position.
            yield from ((i + 1, item) for i, item in enumerate(whole))
            return
        if whole is not None:
            yield 1, whole
            return
    elif suffix != ".jsonl":
        raise UsageError(f"{file.name}: unknown data format '{suffix}'; expected .jsonl, .json, .csv or .txt")
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")


def parse_record(record: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (kind, fields) rows one record holds (one, or several for an ``instances`` list).

    Raises:
        ValueError: the record matches no kind; the message names the fields it has.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    keys = set(record)
    if {"chosen", "rejected"} <= keys:
        if "prompt" not in keys:
            return [("preference", _split_hh(record))]
        return [("preference", {"prompt": _prompt(record["prompt"]), "chosen": _text(record, "chosen"),
                                "rejected": _text(record, "rejected")})]
    if "messages" in keys:
        return [("chat", {"messages": _messages(record["messages"])})]
    if "instruction" in keys and isinstance(record.get("instances"), list):
        out = []
        for inst in record["instances"]:
            if not isinstance(inst, dict) or "output" not in inst:
                raise ValueError("an 'instances' item has no 'output'")
            out.append(("sft", {"instruction": _text(record, "instruction"), "input": str(inst.get("input") or ""),
                                "output": _text(inst, "output")}))
        return out
    if "instruction" in keys and "output" in keys:
        row = {"instruction": _text(record, "instruction"), "input": str(record.get("input") or ""),
               "output": _text(record, "output")}
        if record.get("system"):
            row["system"] = str(record["system"])
        return [("sft", row)]
    if "text" in keys:
        return [("text", {"text": _text(record, "text")})]
    have = ", ".join(sorted(map(str, keys))) or "none"
    raise ValueError(f"no known fields (have: {have}); expected instruction/output, messages, "
                     "prompt/chosen/rejected or text")


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"field '{key}' must be text, got {type(value).__name__}")
    return str(value)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': system|user|assistant, 'content': text}}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _prompt(value: Any) -> str | list[dict[str, str]]:
    if isinstance(value, list):
        return _messages(value)
    if isinstance(value, str):
        return value
    raise ValueError("'prompt' must be text or a list of messages")


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def _split_hh(record: dict[str, Any]) -> dict[str, Any]:
    """hh-rlhf: two whole dialogues that share everything up to the last assistant turn."""
    chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
    common = 0
    while common < min(len(chosen), len(rejected)) and chosen[common] == rejected[common]:
        common += 1
    # The prompt ends at the last assistant marker both dialogues share (they may branch earlier
    # than their final turn; the answers then hold the rest of each branch).
    cut = chosen[:common].rfind("\n\nAssistant:")
    if cut < 0:
        raise ValueError("'chosen'/'rejected' without 'prompt' must be hh-rlhf dialogues sharing a prompt")
    prompt = []
    parts = _HH_TURN.split(chosen[:cut])
    for role, content in zip(parts[1::2], parts[2::2]):
        prompt.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError("hh-rlhf dialogue whose last prompt turn is not the human's")
    head = len("\n\nAssistant:")
    return {"prompt": prompt, "chosen": chosen[cut + head:].strip(), "rejected": rejected[cut + head:].strip()}


# ---------------------------------------------------------------- cleaning


class _TextOnly(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")


def strip_html(text: str) -> str:
    """Text without HTML tags, scripts and styles; text with no tag is returned as it was
    (so ``a < b`` and ``x<y>z`` in code survive)."""
    if not _TAG.search(text):
        return text
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return unescape("".join(parser.parts))


def normalise(text: str) -> str:
    """NFKC (full-width ASCII to half-width, compatibility forms), HTML removed, control
    characters dropped, runs of spaces collapsed, at most one blank line, ends stripped."""
    text = unicodedata.normalize("NFKC", strip_html(text))
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c)[0] != "C")
    text = re.sub(r"[ \t\u3000]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def map_text(row: Row, fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to every text field of ``row`` in place."""
    d = row.data
    for key, value in list(d.items()):
        if isinstance(value, str):
            d[key] = fn(value)
        elif isinstance(value, list):
            for m in value:
                m["content"] = fn(m["content"])


def texts(row: Row) -> list[str]:
    """Every text field of a row, in order."""
    out: list[str] = []
    for key in ("system", "instruction", "input", "prompt", "messages", "output", "chosen", "rejected", "text"):
        value = row.data.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(m["content"] for m in value)
    return out


def row_chars(row: Row) -> int:
    return sum(len(t) for t in texts(row))


def empty_reason(row: Row) -> str | None:
    """Why a cleaned row holds nothing to learn from, or None."""
    d = row.data
    if row.kind == "sft":
        if not d["output"]:
            return "empty output"
        if not d["instruction"] and not d["input"]:
            return "empty instruction"
    elif row.kind == "chat":
        if d["messages"][-1]["role"] != "assistant":
            return "conversation does not end with an assistant turn"
        if not all(m["content"] for m in d["messages"] if m["role"] != "system"):
            return "empty message"
    elif row.kind == "preference":
        if not d["chosen"] or not d["rejected"]:
            return "empty chosen or rejected answer"
        if d["chosen"] == d["rejected"]:
            return "chosen and rejected are the same"
        if not (d["prompt"] if isinstance(d["prompt"], str) else any(m["content"] for m in d["prompt"])):
            return "empty prompt"
    elif not d["text"]:
        return "empty text"
    return None


# ---------------------------------------------------------------- language, duplicates, PII


def language(text: str) -> str:
    """``zh`` when Han characters are at least a fifth of the letters, ``en`` when Latin letters
    dominate, else ``other`` (detection by script, which is all zh/en needs)."""
    han = latin = other = 0
    for c in text:
        if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf":
            han += 1
        elif c.isascii() and c.isalpha():
            latin += 1
        elif c.isalpha():
            other += 1
    letters = han + latin + other
    if letters == 0:
        return "other"
    if han * 5 >= letters:
        return "zh"
    return "en" if latin >= other else "other"


def _shingles(text: str, n: int = 5) -> set[bytes]:
    # Character n-grams work for Chinese (no spaces) and English alike.
    t = re.sub(r"\s+", " ", text.lower())
    if len(t) <= n:
        return {t.encode()}
    return {t[i:i + n].encode() for i in range(len(t) - n + 1)}


def dedupe(rows: list[Row], *, near_threshold: float | None = 0.85, num_perm: int = 128,
           seed: int = 1) -> tuple[list[Row], int, int]:
    """Drop exact repeats (same cleaned fields) and near repeats (MinHash/LSH Jaccard over
    character 5-grams >= ``near_threshold``; None turns that off). The first row of a group stays.

    Returns: (kept rows, exact duplicates removed, near duplicates removed).

    Raises:
        MissingExtraError: near-duplicate removal without ``datasketch`` (the ``train`` extra).
    """
    seen: set[str] = set()
    unique: list[Row] = []
    for row in rows:
        key = hashlib.sha1(json.dumps([row.kind, row.data], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(row)
    exact = len(rows) - len(unique)
    if near_threshold is None or len(unique) < 2:
        return unique, exact, 0
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:
        raise missing_extra("near-duplicate removal", "train", exc) from exc
    lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
    kept: list[Row] = []
    for i, row in enumerate(unique):
        mh = MinHash(num_perm=num_perm, seed=seed)
        mh.update_batch(sorted(_shingles("\n".join(texts(row)))))
        if lsh.query(mh):
            continue
        lsh.insert(str(i), mh)
        kept.append(row)
    return kept, exact, len(unique) - len(kept)


def pii_redactor() -> Callable[[str], tuple[str, int]] | None:
    """The guard's redaction (each entity replaced by ``<LABEL>``) as ``text -> (redacted text,
    entities found)``, or None when :mod:`lingxi.guard` is not installed."""
    try:
        from lingxi.guard.redact import Redactor
    except ImportError:
        return None
    redactor = Redactor()

    def scrub(text: str) -> tuple[str, int]:
        result = redactor.redact(text)
        return result.text, len(result.spans)

    return scrub


# ---------------------------------------------------------------- split, stats, QC


def split(rows: list[Row], validation: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Shuffle with ``seed`` and hold out ``validation`` of the rows (at least one when there are
    two or more rows and the fraction is above zero)."""
    if not 0 <= validation < 1:
        raise UsageError(f"validation fraction must be in [0, 1), got {validation}")
    order = list(rows)
    random.Random(seed).shuffle(order)
    n_val = round(len(order) * validation)
    if validation > 0 and n_val == 0 and len(order) >= 2:
        n_val = 1
    return order[n_val:], order[:n_val]


def histogram(values: Iterable[int], edges: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)) -> dict[str, int]:
    """Counts per length bucket, e.g. ``{"<=64": 3, "65-128": 5, ">4096": 0}``."""
    out: dict[str, int] = {}
    lo = 0
    for hi in edges:
        out[f"{lo + 1}-{hi}" if lo else f"<={hi}"] = 0
        lo = hi
    out[f">{edges[-1]}"] = 0
    names = list(out)
    for v in values:
        i = next((k for k, hi in enumerate(edges) if v <= hi), len(edges))
        out[names[i]] += 1
    return out


def preference_qc(rows: list[Row]) -> dict[str, Any]:
    """Label checks for preference pairs.

    - ``chosen_longer``: share of pairs whose chosen answer is longer. Far from 0.5 means a
      reward model can score well by length alone (length bias).
    - ``mean_length_ratio``: mean chosen/rejected length.
    - ``agreement``: over answer pairs compared more than once (same prompt, same two answers),
      the share of comparisons that agree with the majority; ``conflicting_pairs`` counts
      comparisons that say both A > B and B > A. None when no pair was compared twice.
    """
    prefs = [r for r in rows if r.kind == "preference"]
    if not prefs:
        return {}
    longer = sum(len(r.data["chosen"]) > len(r.data["rejected"]) for r in prefs)
    ratio = sum(len(r.data["chosen"]) / max(1, len(r.data["rejected"])) for r in prefs) / len(prefs)
    votes: dict[tuple[str, str, str], Counter] = {}
    for r in prefs:
        p = json.dumps(r.data["prompt"], ensure_ascii=False)
        a, b = sorted((r.data["chosen"], r.data["rejected"]))
        votes.setdefault((p, a, b), Counter())[r.data["chosen"] == a] += 1
    repeated = [c for c in votes.values() if sum(c.values()) > 1]
    agree = sum(max(c.values()) for c in repeated)
    total = sum(sum(c.values()) for c in repeated)
    return {
        "pairs": len(prefs),
        "chosen_longer": round(longer / len(prefs), 4),
        "mean_length_ratio": round(ratio, 4),
        "length_bias": abs(longer / len(prefs) - 0.5) > 0.15,
        "agreement": round(agree / total, 4) if total else None,
        "conflicting_pairs": sum(1 for c in repeated if len(c) > 1),
    }


def describe(rows: list[Row]) -> dict[str, Any]:
    """Counts by kind and language, and a character-length histogram."""
    lengths = [row_chars(r) for r in rows]
    return {
        "rows": len(rows),
        "kinds": dict(Counter(r.kind for r in rows)),
        "languages": dict(Counter(r.data.get("lang", language(" ".join(texts(r)))) for r in rows)),
        "chars": {"mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
                  "max": max(lengths, default=0), "histogram": histogram(lengths)},
    }


# ---------------------------------------------------------------- the whole step


@dataclass
class PrepareReport:
    """What :func:`prepare` did. ``removed`` counts rows by reason."""

    files: list[str]
    read: int
    train: int
    validation: int
    removed: dict[str, int]
    pii: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    preference_qc: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def prepare(paths: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None, *,
            on_error: str = "skip", max_chars: int = 16000, min_chars: int = 1,
            near_threshold: float | None = 0.85, pii: bool = True, validation: float = 0.1,
            seed: int = 0, languages: tuple[str, ...] | None = None) -> PrepareReport:
    """Read, clean, deduplicate, scrub and split training data; write ``train.jsonl``,
    ``validation.jsonl`` and ``report.json`` into ``out_dir`` (nothing written when None).

    Args:
        paths: data files (kinds may be mixed; each row keeps its own).
        on_error: ``skip`` malformed rows (listed with line numbers) or ``stop`` at the first.
        max_chars / min_chars: rows longer / shorter than this (all text fields) are dropped.
        near_threshold: MinHash Jaccard above which a row is a near duplicate; None keeps them.
        pii: redact PII through :mod:`lingxi.guard`; when it is not installed the report says so.
        validation: fraction held out.
        languages: keep only rows detected as one of these (``zh``, ``en``, ``other``).

    Raises:
        UsageError: a missing file, a malformed row under ``on_error="stop"``, or no usable row.
    """
    if not paths:
        raise UsageError("no data files given")
    problems: list[Problem] = []
    rows: list[Row] = []
    for path in paths:
        rows.extend(read_rows(path, on_error=on_error, problems=problems))
    read = len(rows) + len(problems)
    removed: Counter = Counter()
    if problems:
        removed["malformed"] = len(problems)

    kept: list[Row] = []
    for row in rows:
        map_text(row, normalise)
        reason = empty_reason(row)
        if reason is None and row_chars(row) > max_chars:
            reason = f"longer than {max_chars} characters"
        elif reason is None and row_chars(row) < min_chars:
            reason = f"shorter than {min_chars} characters"
        if reason:
            removed[reason] += 1
            continue
        row.data["lang"] = language(" ".join(texts(row)))
        if languages and row.data["lang"] not in languages:
            removed[f"language {row.data['lang']}"] += 1
            continue
        kept.append(row)

    kept, exact, near = dedupe(kept, near_threshold=near_threshold, seed=seed + 1)
    if exact:
        removed["exact duplicate"] = exact
    if near:
        removed["near duplicate"] = near

    pii_report: dict[str, Any] = {"status": "off"}
    if pii:
        scrub = pii_redactor()
        if scrub is None:
            pii_report = {"status": "PII scrub: guard not installed"}
        else:
            found = rows_changed = 0
            for row in kept:
                before = found

                def count(text: str) -> str:
                    nonlocal found
                    out, n = scrub(text)
                    found += n
                    return out

                map_text(row, count)
                rows_changed += found > before
            pii_report = {"status": "scrubbed", "entities_redacted": found, "rows_changed": rows_changed}

    if not kept:
        why = ", ".join(f"{n} {k}" for k, n in removed.items()) or "the files hold no rows"
        raise UsageError(f"no usable rows left ({why})")
    train, val = split(kept, validation, seed)
    report = PrepareReport(
        files=[Path(p).name for p in paths], read=read, train=len(train), validation=len(val),
        removed=dict(removed), pii=pii_report, problems=[str(p) for p in problems[:100]],
        stats={"train": describe(train), "validation": describe(val)}, preference_qc=preference_qc(kept),
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "train.jsonl", (r.data for r in train))
        write_jsonl(out / "validation.jsonl", (r.data for r in val))
        report.outputs = {"train": str(out / "train.jsonl"), "validation": str(out / "validation.jsonl"),
                          "report": str(out / "report.json")}
        write_json(out / "report.json", report.to_dict())
    return report


# ---------------------------------------------------------------- feedback as data


def from_feedback(feedback: list[dict[str, Any]], out_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Turn gateway thumbs up/down into training data.

    Each feedback row holds the conversation (``messages``), the ``answer`` and a ``rating`` of
    +1 or -1. A thumbs-up answer becomes an SFT row (the conversation plus the answer); for each
    conversation with both an up-rated and a down-rated answer, every (up, down) combination
    becomes a preference pair. Writes ``sft.jsonl``, ``preference.jsonl`` and ``report.json``.
    """
    sft: list[dict[str, Any]] = []
    by_prompt: dict[str, tuple[list[dict[str, str]], list[str], list[str]]] = {}
    skipped = 0
    for fb in feedback:
        messages = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in fb.get("messages") or []
                    if isinstance(m, dict) and isinstance(m.get("content"), str)]
        answer = (fb.get("answer") or "").strip()
        if not messages or not answer or messages[-1]["role"] != "user":
            skipped += 1
            continue
        key = json.dumps(messages, ensure_ascii=False, sort_keys=True)
        entry = by_prompt.setdefault(key, (messages, [], []))
        if fb.get("rating") == 1:
            entry[1].append(answer)
            sft.append({"messages": messages + [{"role": "assistant", "content": answer}]})
        elif fb.get("rating") == -1:
            entry[2].append(answer)
        else:
            skipped += 1
    pairs = [{"prompt": messages, "chosen": good, "rejected": bad}
             for messages, ups, downs in by_prompt.values()
             for good in dict.fromkeys(ups) for bad in dict.fromkeys(downs) if good != bad]
    report: dict[str, Any] = {"feedback_rows": len(feedback), "sft_rows": len(sft), "preference_pairs": len(pairs),
                              "skipped": skipped}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "sft.jsonl", sft)
        write_jsonl(out / "preference.jsonl", pairs)
        report["outputs"] = {"sft": str(out / "sft.jsonl"), "preference": str(out / "preference.jsonl")}
        write_json(out / "report.json", report)
    return report


# ---------------------------------------------------------------- atomic writes


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSON lines atomically (a temporary file renamed over the target)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
