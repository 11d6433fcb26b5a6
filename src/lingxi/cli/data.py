"""``lingxi data``: prepare training data and turn gateway feedback into training data."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings


@click.group()
def data() -> None:
    """Prepare training data (clean, deduplicate, scrub PII, split) for ``lingxi tune``."""


@data.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for train.jsonl, validation.jsonl and report.json.")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
              help="A malformed row: skip it (listed with its line number) or stop.")
@click.option("--max-chars", type=int, default=16000, show_default=True, help="Drop rows longer than this.")
@click.option("--min-chars", type=int, default=1, show_default=True, help="Drop rows shorter than this.")
@click.option("--near-dup", "near", type=float, default=0.85, show_default=True,
              help="MinHash Jaccard threshold for near duplicates (0 turns it off).")
@click.option("--no-pii", is_flag=True, help="Do not redact PII (by default lingxi.guard redacts it when installed).")
@click.option("--validation", type=float, default=0.1, show_default=True, help="Share held out for validation.")
@click.option("--lang", "languages", multiple=True, type=click.Choice(["zh", "en", "other"]),
              help="Keep only rows in these languages (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
def prepare(files: tuple[str, ...], out: str, on_error: str, max_chars: int, min_chars: int, near: float,
            no_pii: bool, validation: float, languages: tuple[str, ...], seed: int) -> None:
    """Load JSONL/JSON/CSV/TXT rows (instruction/output, messages, prompt/chosen/rejected, text),
    clean, deduplicate, redact PII, split, and print the report."""
    from lingxi.tune.data import prepare as run

    report = run(list(files), out, on_error=on_error, max_chars=max_chars, min_chars=min_chars,
                 near_threshold=near or None, pii=not no_pii, validation=validation, seed=seed,
                 languages=languages or None)
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    emit_json(report.to_dict())


@data.command("from-feedback")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for sft.jsonl, preference.jsonl and report.json.")
@click.option("--model", default=None, help="Only feedback on this model's answers.")
def from_feedback(out: str, model: str | None) -> None:
    """Thumbs-up answers become SFT rows; up/down answers to the same conversation become
    preference pairs."""
    from lingxi.tune.data import from_feedback as convert
    from lingxi.tune.feedback import feedback_rows

    emit_json(convert(feedback_rows(settings(), model), out))
