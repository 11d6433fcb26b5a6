"""``lingxi generate PROMPT``: one answer from a model, streamed or as JSON."""

from __future__ import annotations

import sys

import click

from lingxi.cli import emit_json, settings


def sampling_options(f):
    """The sampling flags shared by ``generate`` and ``chat``."""
    for option in reversed([
        click.option("--model", "-m", default=None, help="Model name (default: default_model in config)."),
        click.option("--system", "-s", default=None, help="System prompt."),
        click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True),
        click.option("--temperature", "-t", type=click.FloatRange(0, 2), default=0.7, show_default=True),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True),
        click.option("--seed", type=int, default=None, help="Sampling seed, for repeatable answers."),
        click.option("--stop", multiple=True, help="Stop sequence (repeatable)."),
    ]):
        f = option(f)
    return f


def params_from(max_tokens: int, temperature: float, top_p: float, seed: int | None, stop: tuple[str, ...]):
    from lingxi.engines import GenerationParams

    return GenerationParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop)


@click.command()
@click.argument("prompt")
@sampling_options
@click.option("--stream/--no-stream", default=False, help="Print tokens as they come.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with text, usage and timing.")
def generate(prompt: str, model: str | None, system: str | None, max_tokens: int, temperature: float,
             top_p: float, seed: int | None, stop: tuple[str, ...], stream: bool, as_json: bool) -> None:
    """Answer PROMPT ('-' reads it from stdin)."""
    from lingxi.engines import collect, load_engine

    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():  # a model asked nothing still answers something: refuse instead
        raise click.UsageError("PROMPT is empty; give the text to answer, or '-' to read it from stdin")
    params = params_from(max_tokens, temperature, top_p, seed, stop)
    engine = load_engine(model, settings())
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    chunks = engine.stream(messages, params)
    if stream and not as_json:
        chunks = _echoing(chunks)
    result = collect(engine.name, chunks)
    if as_json:
        emit_json(result.to_dict())
    elif stream:
        click.echo()
    else:
        click.echo(result.text)


def _echoing(chunks):
    for chunk in chunks:
        if chunk.text:
            click.echo(chunk.text, nl=False)
            sys.stdout.flush()
        yield chunk
