"""The ``lingxi`` command: a thin shell over the library.

Each command group lives in its own module and is imported only when invoked, so
``lingxi --version`` stays fast. Errors Lingxi raises on purpose (:class:`LingxiError`) print
one line to stderr and exit with their code (2 usage/config, 1 runtime); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from lingxi import __version__

#: command name -> "module:attribute"
COMMANDS = {
    "models": "lingxi.cli.models:models",
    "generate": "lingxi.cli.generate:generate",
    "chat": "lingxi.cli.chat:chat",
    "embed": "lingxi.cli.embed:embed",
    "kb": "lingxi.cli.kb:kb",
    "graph": "lingxi.cli.graph:graph",
    "eval": "lingxi.cli.eval:eval_group",
    "compress": "lingxi.cli.compress:compress",
    "serve": "lingxi.cli.serve:serve",
    "keys": "lingxi.cli.keys:keys",
    "route": "lingxi.cli.route:route",
    "guard": "lingxi.cli.guard:guard",
    "audit": "lingxi.cli.audit:audit",
    "data": "lingxi.cli.data:data",
    "tune": "lingxi.cli.tune:tune",
    "adapters": "lingxi.cli.adapters:adapters",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, target in COMMANDS.items() if _available(target))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not _available(target):
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


def _available(target: str) -> bool:
    module = target.partition(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="lingxi")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: $LINGXI_CONFIG, else ./lingxi.toml, else built-in defaults).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Lingxi (灵犀): choose, ground, adapt, shrink, serve and measure LLMs."""
    ctx.obj = {"config_path": config_path}


def settings(ctx: click.Context | None = None) -> Any:
    """The validated settings for this invocation (loaded once)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    root.obj = root.obj or {}
    if "settings" not in root.obj:
        from lingxi.config import load_config

        root.obj["settings"] = load_config(root.obj.get("config_path"))
    return root.obj["settings"]


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout (UTF-8, Chinese kept readable)."""
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> None:
    from lingxi.errors import LingxiError

    try:
        cli.main(args=argv, prog_name="lingxi", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other user error; the help is one flag away.
        command = exc.ctx.command_path if exc.ctx else "lingxi"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except LingxiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)
