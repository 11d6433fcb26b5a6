"""Domain adaptation: data preparation, tuning recipes, adapters.

- :func:`prepare` / :func:`from_feedback` — training data from files or gateway feedback.
- :func:`run_recipe` — ``sft``, ``pretrain``, ``vocab``, ``rm``, ``dpo``, ``ppo``, ``embed``;
  each writes ``OUTPUT/report.json`` and its adapter/weights.

Nothing here imports torch until a recipe runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lingxi.tune.config import RECIPES, TuneConfig, make_config
from lingxi.tune.data import PrepareReport, from_feedback, prepare

__all__ = ["RECIPES", "TuneConfig", "PrepareReport", "make_config", "prepare", "from_feedback", "run_recipe"]

#: recipe -> "module:function"
RECIPE_FUNCTIONS = {
    "sft": "lingxi.tune.recipes.sft:finetune_causal_lm",
    "pretrain": "lingxi.tune.recipes.sft:finetune_causal_lm",
    "dpo": "lingxi.tune.recipes.dpo:train_dpo",
    "rm": "lingxi.tune.recipes.rm:train_reward_model",
    "ppo": "lingxi.tune.recipes.ppo:train_ppo",
    "vocab": "lingxi.tune.recipes.vocab:extend_vocabulary",
    "embed": "lingxi.tune.recipes.embed:finetune_embedder",
}


def run_recipe(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    """Run ``cfg.recipe``; returns its report (under ``--dry-run``: the memory estimate only).

    Raises:
        UsageError: bad data or settings, found before training starts.
        MissingExtraError: the ``train`` extra is not installed.
    """
    from lingxi.tune.setup import DryRun

    module, _, name = RECIPE_FUNCTIONS[cfg.recipe].partition(":")
    try:
        return getattr(importlib.import_module(module), name)(cfg, home)
    except DryRun as dry:
        return {"dry_run": True, **dry.estimate}
