"""Running the gateway: :func:`serve` for ``lingxi serve``, :class:`ServerThread` for tests and
benchmarks (a real uvicorn server on a loopback port, in a background thread)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from lingxi.errors import UsageError, missing_extra


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: Any) -> None:
    """Refuse a non-loopback address while no API key exists: the gateway would be open to anyone.

    Raises:
        UsageError: ``host`` is not loopback and ``keys`` has no active key.
    """
    if not is_loopback(host) and not keys.has_keys_sync():
        raise UsageError(
            f"refusing to listen on {host}: no API keys are configured, so the gateway would be open to "
            "the network; create one with `lingxi keys create --tenant NAME`, or bind 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that 'address in use' is a clear error and port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, log_level: str = "warning") -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_extra("the gateway", "server", exc) from exc
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, loop=loop, http=http, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=5, lifespan="on")


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(settings: Any, host: str | None = None, port: int | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the gateway in the foreground until interrupted.

    Raises:
        UsageError: the address is not loopback and no key exists, or the port is taken.
    """
    import uvicorn

    from lingxi.gateway.app import create_app
    from lingxi.stores.keys import open_key_store

    host = host or settings.gateway.host
    port = settings.gateway.port if port is None else port
    keys = open_key_store(settings)
    try:
        check_bind(host, keys)
    finally:
        keys.close()
    sock = bind(host, port)
    app = create_app(settings)
    server = uvicorn.Server(_config(app, log_level="info"))
    if on_ready:
        on_ready(url_for(host, sock.getsockname()[1]))
    server.run(sockets=[sock])


class ServerThread:
    """A real gateway server on a loopback port in a background thread; ``with`` stops it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = url_for(host, self.port)
        self.server = uvicorn.Server(_config(app))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
