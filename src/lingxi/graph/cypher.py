"""The read-only rule for Cypher a person or a model hands Lingxi.

A query may read (``MATCH``, ``OPTIONAL MATCH``, ``WITH``, ``UNWIND``, ``WHERE``, ``RETURN``,
``ORDER BY``, ``SKIP``, ``LIMIT``, ``UNION``); anything that writes or reaches outside the graph
(``CREATE``, ``MERGE``, ``SET``, ``DELETE``, ``REMOVE``, ``DROP``, ``ALTER``, ``COPY``,
``LOAD``, ``CALL``, ``INSTALL``, ``ATTACH``, ``EXPORT``, ``IMPORT``, transactions) is refused
before the store sees it. Keywords inside string literals and comments do not count, and the
stores run accepted queries read-only as well (defence in depth, not instead of it).
"""

from __future__ import annotations

import re

from lingxi.errors import UsageError

WRITES = ("CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "ALTER", "COPY", "LOAD", "CALL",
          "INSTALL", "ATTACH", "DETACH", "EXPORT", "IMPORT", "BEGIN", "COMMIT", "ROLLBACK", "CHECKPOINT",
          "FOREACH", "USE")
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_STRIP = re.compile(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`[^`]*`|//[^\n]*|/\*.*?\*/""", re.S)


def check_read_only(cypher: str) -> str:
    """``cypher`` unchanged when it only reads.

    Raises:
        UsageError: it is empty, has more than one statement, or uses a writing clause (named).
    """
    if not cypher or not cypher.strip():
        raise UsageError("empty Cypher query")
    bare = _STRIP.sub(" ", cypher)
    if "'" in bare or '"' in bare or "`" in bare:
        raise UsageError("Cypher query has an unterminated string or identifier")
    if ";" in bare.strip().rstrip(";"):
        raise UsageError("one Cypher statement at a time")
    for word in _WORD.findall(bare):
        if word.upper() in WRITES:
            raise UsageError(f"Cypher query refused: '{word}' writes to or reaches outside the graph; "
                             "only read queries (MATCH ... RETURN) are allowed")
    return cypher


__all__ = ["WRITES", "check_read_only"]
