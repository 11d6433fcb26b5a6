"""``lingxi chat``: an interactive, streaming conversation that keeps its history.

Type ``/reset`` to forget the conversation and ``/exit`` (or Ctrl-D) to leave. On a pipe it
reads one user message per line and prints one answer per message.
"""

from __future__ import annotations

import sys

import click

from lingxi.cli import settings
from lingxi.cli.generate import params_from, sampling_options
from lingxi.errors import ContextLengthError

HELP = "Commands: /reset forgets the conversation, /exit leaves."


@click.command()
@sampling_options
def chat(model: str | None, system: str | None, max_tokens: int, temperature: float, top_p: float,
         seed: int | None, stop: tuple[str, ...]) -> None:
    """Talk to a model; history is kept until /reset."""
    from lingxi.engines import load_engine

    engine = load_engine(model, settings())
    params = params_from(max_tokens, temperature, top_p, seed, stop)
    interactive = sys.stdin.isatty()
    if interactive:
        info = engine.info
        click.echo(f"lingxi chat — model {info.name} ({info.engine}, context {info.context_length}). {HELP}", err=True)
    system_turn = [{"role": "system", "content": system}] if system else []
    history: list[dict] = []
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history.clear()
            click.echo("(conversation reset)", err=True)
            continue
        if text.startswith("/"):
            click.echo(f"unknown command {text}. {HELP}", err=True)
            continue
        history.append({"role": "user", "content": text})
        reply = _answer(engine, system_turn, history, params)
        if reply is None:
            history.pop()
        else:
            history.append({"role": "assistant", "content": reply})


def _answer(engine, system_turn: list[dict], history: list[dict], params) -> str | None:
    """Stream one reply. When the conversation outgrows the context window the oldest turns go
    first; a single message that does not fit is refused with both numbers."""
    while True:
        try:
            parts = []
            for chunk in engine.stream(system_turn + history, params):
                if chunk.text:
                    parts.append(chunk.text)
                    click.echo(chunk.text, nl=False)
                    sys.stdout.flush()
            click.echo()
            return "".join(parts)
        except ContextLengthError as exc:
            if len(history) <= 1:
                click.echo(f"error: {exc}", err=True)
                return None
            del history[:2]  # drop the oldest user/assistant exchange and retry
