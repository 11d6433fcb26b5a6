"""One run's settings, validated before anything is loaded (every problem reported at once).

The CLI (``lingxi tune RECIPE ...``) builds a :class:`TuneConfig` from its flags; a program
builds one directly. Fields a recipe does not use are ignored by it (their docstrings say who
reads them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lingxi.errors import ConfigError

RECIPES = ("sft", "pretrain", "vocab", "rm", "dpo", "ppo", "embed")


class TuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: Literal["sft", "pretrain", "vocab", "rm", "dpo", "ppo", "embed"]
    """Which recipe runs."""
    model: str = "smollm2-135m-instruct"
    """A catalog id of a bundled model (``smollm2-135m-instruct``), a Hugging Face model folder,
    or a ``.gguf`` file (dequantised by transformers)."""
    data: str
    """Training data (see :mod:`lingxi.tune.data` for the accepted rows)."""
    eval_data: str | None = None
    """Held-out data for the before/after metrics; None holds out ``eval_fraction`` of ``data``."""
    on_error: Literal["skip", "stop"] = "skip"
    """A malformed data row: ``skip`` it (listed with its line number in the report) or ``stop``."""
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    """Share of ``data`` held out for evaluation when ``eval_data`` is not given."""
    eval_rows: int = Field(default=200, gt=0)
    """At most this many held-out rows are evaluated (evaluation costs a forward pass per row)."""
    output: str | None = None
    """The run's folder (report, checkpoints, adapter); None = ``<home>/adapters/<model>-<recipe>``."""
    method: Literal["lora", "full", "qlora"] = "lora"
    """What is trained: LoRA adapters, every weight, or LoRA on a 4-bit base (bitsandbytes)."""
    lora_r: int = Field(default=16, gt=0)
    lora_alpha: int = Field(default=32, gt=0)
    lora_dropout: float = Field(default=0.1, ge=0, lt=1)
    lora_targets: list[str] = ["q_proj", "v_proj"]
    """Module names that get LoRA adapters."""
    lora_layers: int | None = Field(default=None, gt=0)
    """LoRA only in the last N transformer layers; None = every layer. The backward pass then
    stops at the lowest adapted layer: a step costs little more than a forward pass (a CPU's
    way to train more steps; the top layers are where task-specific features live)."""
    max_steps: int | None = Field(default=None, gt=0)
    """Optimizer steps; None = ``epochs`` passes over the training rows."""
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=4, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    """Micro-batches per optimizer step."""
    lr: float | None = Field(default=None, gt=0)
    """Learning rate; None = 2e-4 for LoRA, 2e-5 for full fine-tuning or embed, a tenth of that for DPO/PPO."""
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_len: int = Field(default=512, gt=8)
    """Tokens per sequence; longer rows are truncated (prompts from the left, answers from the right)."""
    packing: bool = False
    """sft/pretrain: concatenate rows into full ``max_len`` sequences (no padding)."""
    seed: int = 0
    save_every: int = Field(default=50, gt=0)
    """Write a checkpoint every this many steps (and at the end); a rerun resumes from it."""
    resume: bool = True
    """Resume from the output folder's checkpoint when its settings match."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, gt=0)
    """CPU threads for torch; None = torch's default (every core). On a machine shared with other
    jobs, 1 can be several times faster (no spinning thread team)."""
    dry_run: bool = False
    """Print the catalog's memory estimate for this model, method and batch, then stop."""
    check_memory: bool = True
    """Refuse to start when the estimate does not fit this machine's free memory."""
    beta: float = Field(default=0.1, gt=0)
    """dpo: strength of the pull toward the reference model."""
    reward_model: str | None = None
    """ppo: the folder an ``rm`` run wrote, or ``brevity`` (a programmatic reward: shorter answers
    score higher; see :data:`lingxi.tune.recipes.ppo.PROGRAMMATIC`)."""
    kl_start: float = Field(default=0.01, ge=0)
    """ppo: KL coefficient at the first step."""
    kl_end: float = Field(default=0.1, ge=0)
    """ppo: KL coefficient at the last step (it rises linearly)."""
    max_new_tokens: int = Field(default=32, gt=0)
    """ppo: length of each sampled response."""
    ppo_epochs: int = Field(default=2, gt=0)
    """ppo: optimisation passes over each batch of samples."""
    clip: float = Field(default=0.2, gt=0)
    """ppo: clipping range of the probability ratio (and of the value update)."""
    terms: list[str] = []
    """vocab: domain terms to add to the tokenizer (besides any in ``terms_file``)."""
    terms_file: str | None = None
    """vocab: one term per line."""
    new_rows_steps: int | None = Field(default=None, ge=0)
    """vocab: steps that train only the new embedding rows before LoRA joins; None = half."""
    embedder: str = "minilm"
    """embed: the bundled embedder name or a sentence-transformers folder."""

    @model_validator(mode="after")
    def _recipe_needs(self) -> TuneConfig:
        if self.recipe == "ppo" and not self.reward_model:
            raise ValueError("ppo needs --reward-model (the folder of an rm run, or 'brevity')")
        if self.recipe == "vocab" and not (self.terms or self.terms_file):
            raise ValueError("vocab needs --terms or --terms-file")
        return self

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.recipe == "embed":
            return 2e-5  # every weight of a small encoder trains
        base = 2e-5 if self.method == "full" else 2e-4
        return base / 10 if self.recipe in ("dpo", "ppo") else base


def make_config(**values: object) -> TuneConfig:
    """Validate ``values`` into a :class:`TuneConfig`, raising one error listing every problem.

    Raises:
        ConfigError: each bad field named (``--lora-r: must be greater than 0``).
    """
    try:
        return TuneConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-") if err["loc"] else "tune"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(problems, "tune") from None
