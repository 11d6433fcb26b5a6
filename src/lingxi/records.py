"""JSON Lines records, read one way: what counts as a record line and how a bad one is named;
and the JSON object in a model's reply.

Readers differ in what they do with a bad line (a loader skips the file, an evaluation stops, a
graph import lists every problem), not in what a bad line is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(line number, object, None)`` for each non-blank line holding a JSON object, else
    ``(line number, None, problem)`` with ``problem`` reading ``not JSON (reason)`` or
    ``not a JSON object``. Line numbers count blank lines too, as an editor does."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"
            continue
        if not isinstance(row, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, row, None


__all__ = ["json_lines"]


def json_in_reply(reply: str) -> Any:
    """The JSON object a model's reply holds, from its first ``{`` to its last ``}`` (so prose or
    a code fence around it does not matter; a raw newline inside a string is accepted).

    Raises:
        ValueError: "no JSON object" or "not valid JSON".
    """
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        raise ValueError("no JSON object")
    try:
        return json.loads(m.group(0), strict=False)
    except ValueError:
        raise ValueError("not valid JSON") from None
