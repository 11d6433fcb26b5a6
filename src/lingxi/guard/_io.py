"""Small helpers the guard and audit layers share: atomic writes, JSONL input, stream filters."""

from __future__ import annotations

from abc import ABC, abstractmethod

import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader never sees half a file (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is data, not a secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of a JSONL file (``-`` = stdin).

    Raises:
        UsageError: the file cannot be read, or a line is not valid UTF-8 or not JSON; the
            message names the file and the line.
    """
    from lingxi.errors import UsageError

    stream = sys.stdin.buffer if str(path) == "-" else None
    try:
        handle = stream or open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        for n, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(f"{path}:{n}: not valid UTF-8 (byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError:
                raise UsageError(f"{path}:{n}: not valid JSON") from None
    finally:
        if stream is None:
            handle.close()


class PieceFilter(ABC):
    """A filter over text that arrives in pieces (an answer being streamed): :meth:`feed` returns
    what may go out now, :meth:`flush` the rest at the end."""

    @abstractmethod
    def feed(self, piece: str) -> str: ...

    @abstractmethod
    def flush(self) -> str: ...

    async def wrap(self, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        """The filtered stream of ``pieces``."""
        async for piece in pieces:
            out = self.feed(piece)
            if out:
                yield out
        out = self.flush()
        if out:
            yield out


class HeldTextFilter(PieceFilter):
    """A :class:`PieceFilter` that holds back the end of the text until it is safe: subclasses
    implement :meth:`_emit`, which decides how much of ``_pending`` goes out (``_context``: the
    end of what already went out, ``_offset``: how many characters did)."""

    def __init__(self) -> None:
        self._pending = ""
        self._context = ""
        self._offset = 0

    def feed(self, piece: str) -> str:
        """Filtered text that is safe to send now (possibly empty)."""
        self._pending += piece
        return self._emit(final=False)

    def flush(self) -> str:
        """Everything still held, filtered."""
        return self._emit(final=True)

    @abstractmethod
    def _emit(self, final: bool) -> str: ...
