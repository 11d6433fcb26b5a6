"""``lingxi serve``: run the OpenAI-compatible gateway and its web UI."""

from __future__ import annotations

import click

from lingxi.cli import settings


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: gateway.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: gateway.port, 8000; 0 picks a free one).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (same as `lingxi --config F serve`).")
def serve(host: str | None, port: int | None, config_path: str | None) -> None:
    """Serve every configured model at /v1 (OpenAI-compatible) and a chat UI at /.

    With no API key configured the gateway listens on loopback only; create keys with
    `lingxi keys create` before binding another address.
    """
    from lingxi.gateway.server import serve as run

    if config_path:
        root = click.get_current_context().find_root()
        root.obj = {**(root.obj or {}), "config_path": config_path}

    def ready(url: str) -> None:
        click.echo(f"Lingxi gateway: {url}  (web UI {url}/, API {url}/v1, metrics {url}/metrics)", err=False)

    run(settings(), host=host, port=port, on_ready=ready)
