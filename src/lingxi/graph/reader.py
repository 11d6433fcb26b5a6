"""A named graph opened for reading, one use at a time, by a long-lived reader: a knowledge base's
``graph`` retriever (the graph named like it) and the gateway's ``graph:NAME`` models.

The embedded store (Kùzu) is opened for each use and closed after it: a process that keeps it
open, even read-only, holds a file lock that makes ``lingxi graph import`` fail, so a running
gateway would lock its graphs against updates. The name index (:class:`GraphIndex`, entity
linking) is rebuilt only when the graph changed: its files' sizes and times for Kùzu; for
FalkorDB (a server that takes writes at any time, kept connected) its node and edge counts,
looked at again every ``GRAPH_RECHECK_S``. A missing graph is looked for again as often.

What this module does not do: answer (:mod:`lingxi.graph.answer`) or write (:mod:`lingxi.graph`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lingxi.errors import UsageError

__all__ = ["GraphReader", "GRAPH_RECHECK_S", "graph_names"]

#: Seconds between looks at a FalkorDB graph's counts (or at a graph that did not exist).
GRAPH_RECHECK_S = 10.0


class GraphReader:
    """Graph ``name`` in the configured store, for reading; :meth:`open` for each use."""

    def __init__(self, name: str, settings: Any):
        self.name = name
        self.settings = settings
        self._lock = threading.Lock()
        #: (what the graph looked like, its name index or None when empty)
        self._seen: tuple[Any, Any] | None = None
        self._conn: Any = None  # FalkorDB's connection, kept between uses
        self._checked = -GRAPH_RECHECK_S

    @contextmanager
    def open(self) -> Iterator[tuple[Any, Any] | None]:
        """``(store, name index)`` for one use, or None when there is no graph (or it is empty).

        Raises:
            UsageError: the graph cannot be opened now (an import is writing it).
        """
        with self._lock:
            opened = self._open()
        if opened is None:
            yield None
            return
        store, index, owned = opened
        try:
            yield store, index
        finally:
            if owned:
                store.close()

    def _open(self) -> tuple[Any, Any, bool] | None:
        """(store, index, close it after use), or None."""
        from lingxi.stores.graph import open_store

        if self.settings.graph.store == "kuzu":
            folder = self.settings.home_dir / "graphs" / self.name
            if not folder.is_dir():
                return None  # opening would create an empty one
            seen = tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir()))
            store = None
            if self._seen is None or self._seen[0] != seen:
                store = open_store(self.name, self.settings, read_only=True)
                self._seen = (seen, _name_index(store))
            if self._seen[1] is None:
                if store is not None:
                    store.close()
                return None
            return store or open_store(self.name, self.settings, read_only=True), self._seen[1], True
        now = time.monotonic()
        if self._conn is None:
            try:
                self._conn = open_store(self.name, self.settings, read_only=True)
            except UsageError:
                return None  # a name that is not a valid graph name (a knowledge base's with dots)
        if self._seen is None or now - self._checked >= GRAPH_RECHECK_S:
            counts = tuple(sorted(self._conn.counts().items()))
            if self._seen is None or self._seen[0] != counts:
                self._seen = (counts, _name_index(self._conn))
            self._checked = now
        return None if self._seen[1] is None else (self._conn, self._seen[1], False)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._seen = None


def _name_index(store: Any) -> Any:
    """The entity-name index of a graph store, or None when it has no nodes."""
    from lingxi.graph.answer import GraphIndex

    nodes = store.nodes()
    return GraphIndex(nodes) if nodes else None


def graph_names(settings: Any) -> list[str]:
    """The graphs in the configured store, by name, sorted.

    Raises:
        MissingExtraError: the FalkorDB client is not installed (``lingxi[graph]``).
        UpstreamError: the FalkorDB server is unreachable.
    """
    if settings.graph.store == "kuzu":
        from lingxi.stores.graph_kuzu import graph_names as kuzu_names

        return kuzu_names(settings.home_dir / "graphs")
    from lingxi.stores.graph_falkordb import list_graphs

    return list_graphs(settings)
