"""The first half of every recipe's setup, done before any model is loaded: read and check the
data, hold out evaluation rows, resolve the model, estimate memory (``--dry-run`` stops there;
a run that will not fit stops there with an error).

Bad input fails here, in one line and before minutes of loading: a missing file, rows of the
wrong kind for the recipe (naming the fields found), an empty dataset.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.tune.data import Problem, Row, read_rows
from lingxi.tune.loop import Run, check_fits, seed_everything
from lingxi.tune.model import ModelSource, device_for, load_causal_lm, load_tokenizer, make_trainable, resolve

#: the row kinds each recipe trains on
RECIPE_KINDS = {
    "sft": ("sft", "chat"), "pretrain": ("text",), "vocab": ("text", "sft", "chat"),
    "rm": ("preference",), "dpo": ("preference",), "ppo": ("preference", "sft", "chat"),
    "embed": ("pair",),
}
KIND_FIELDS = {"sft": "instruction/output", "chat": "messages", "preference": "prompt/chosen/rejected",
               "text": "text", "pair": "query/positive"}


@dataclass
class Setup:
    """What a recipe starts from."""

    cfg: Any
    home: Path
    source: ModelSource | None
    device: str
    run: Run
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    memory: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def data_stats(self) -> dict[str, Any]:
        return {"train_rows": len(self.train_rows), "eval_rows": len(self.eval_rows),
                "eval_source": "eval_data" if self.cfg.eval_data else f"{self.cfg.eval_fraction:.0%} of data",
                "skipped_rows": self.problems[:20], "skipped_count": len(self.problems)}


class DryRun(Exception):
    """Raised by :func:`start` under ``--dry-run``; carries the estimate to print."""

    def __init__(self, estimate: dict[str, Any]):
        super().__init__("dry run")
        self.estimate = estimate


def load_kind(path: str, kinds: tuple[str, ...], recipe: str, on_error: str,
              problems: list[Problem]) -> list[dict[str, Any]]:
    """The rows of ``path`` that ``recipe`` can use.

    Raises:
        UsageError: missing file, no rows, or rows of another kind only (naming the fields needed).
    """
    rows: list[Row] = []
    if "pair" in kinds:
        from lingxi.tune.recipes.embed import read_pairs

        usable = read_pairs(path, on_error=on_error, problems=problems)
    else:
        rows = read_rows(path, on_error=on_error, problems=problems)
        usable = [r.data for r in rows if r.kind in kinds]
    if not usable:
        name = Path(path).name
        need = " or ".join(KIND_FIELDS[k] for k in kinds)
        if rows:
            found = ", ".join(sorted({KIND_FIELDS[r.kind] for r in rows}))
            raise UsageError(f"{recipe} needs {need} rows; {name} has {found} rows")
        first = f" (first problem: {problems[0]})" if problems else ""
        raise UsageError(f"{name} has no usable rows for {recipe} (needs {need}){first}")
    return usable


def start(cfg: Any, home: Path | None = None) -> Setup:
    """Check the data and the model, estimate memory, open the run folder.

    Raises:
        DryRun: under ``--dry-run``, after the estimate.
        UsageError: bad data, an unknown model, or a run that does not fit in memory.
    """
    from lingxi.config import load_config

    home = home or load_config().home_dir
    kinds = RECIPE_KINDS[cfg.recipe]
    problems: list[Problem] = []
    rows = load_kind(cfg.data, kinds, cfg.recipe, cfg.on_error, problems)
    if cfg.eval_data:
        held = load_kind(cfg.eval_data, kinds, cfg.recipe, cfg.on_error, problems)
    else:
        shuffled = list(rows)
        random.Random(cfg.seed).shuffle(shuffled)
        n = round(len(shuffled) * cfg.eval_fraction) if len(shuffled) >= 10 else 0
        held, rows = shuffled[:n], shuffled[n:]
    held = held[: cfg.eval_rows]
    source = resolve(cfg.model) if cfg.recipe != "embed" else None
    device = device_for(cfg) if cfg.recipe != "embed" else "cpu"
    if cfg.method == "qlora":
        try:  # before the data is tokenised and the model loads
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            from lingxi.errors import missing_extra

            raise missing_extra("--method qlora (4-bit base weights)", "qlora", exc) from exc
    memory = check_fits(cfg, source, device) if source is not None else None
    if cfg.dry_run:
        raise DryRun({"recipe": cfg.recipe, "model": cfg.model, "train_rows": len(rows), "eval_rows": len(held),
                      "device": device, **(memory or {})})
    name = source.name if source else Path(cfg.embedder).name
    folder = Path(cfg.output).expanduser() if cfg.output else home / "adapters" / f"{name}-{cfg.recipe}"
    return Setup(cfg=cfg, home=home, source=source, device=device, run=Run(cfg, folder), train_rows=rows,
                 eval_rows=held, memory=memory, problems=[str(p) for p in problems])


def trainable_model(s: Setup) -> tuple[Any, Any]:
    """Seed, then the tokenizer and the model made trainable as ``--method`` says."""
    seed_everything(s.cfg.seed)
    tokenizer = load_tokenizer(s.source, s.home)
    base = load_causal_lm(s.source, s.home, device=s.device, quantize_4bit=s.cfg.method == "qlora")
    return tokenizer, make_trainable(base, s.cfg)
