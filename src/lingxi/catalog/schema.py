"""The shape of the catalog's data: models, GPUs and selection scenarios.

Every figure is either ``None`` (unknown: never guessed) or carries the place it was read from:

- a model's own ``card`` (model card, launch post or paper) backs the plain fields: parameter
  counts, context length, languages, modalities, release date, licence;
- ``arch.source`` backs the architecture (usually the model's ``config.json``);
- ``price.source`` backs prices (the vendor's pricing page, with the date it was read);
- each benchmark score carries its own ``source``.

:func:`missing_sources` lists any figure without its source; a test runs it on every shipped file.
This module does not load files (see :mod:`lingxi.catalog.registry`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lingxi.config import ScenarioPreset

#: Benchmarks the catalog records; scores are percentages as published.
BENCHMARKS = ("MMLU", "C-Eval", "CMMLU", "HumanEval", "GSM8K")

#: How well a model handles Chinese, as its card states it:
#: ``native`` Chinese is a primary training language; ``supported`` the card lists Chinese among
#: supported languages (or claims broad multilingual support); ``limited`` the card says it is
#: English-focused or does not list Chinese.
ChineseLevel = Literal["native", "supported", "limited"]

#: Commercial terms: ``yes`` permissive (Apache-2.0, MIT); ``conditional`` allowed with conditions
#: (user caps, registration, use policy; see ``license_terms``); ``no`` research/non-commercial
#: only; ``api`` a closed model used under its vendor's API terms.
Commercial = Literal["yes", "conditional", "no", "api"]

_URL = re.compile(r"^(https?://\S+|arXiv:\d{4}\.\d{4,5}(v\d+)?)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_source(value: str | None) -> str | None:
    if value is not None and not _URL.match(value):
        raise ValueError(f"a source must be an http(s) URL or 'arXiv:NNNN.NNNNN', got '{value}'")
    return value


class Architecture(_Strict):
    """Transformer shape, as in the model's ``config.json``."""

    layers: int | None = Field(default=None, gt=0)
    hidden_size: int | None = Field(default=None, gt=0)
    attention_heads: int | None = Field(default=None, gt=0)
    kv_heads: int | None = Field(default=None, gt=0)
    """Key/value heads: equal to ``attention_heads`` for MHA, fewer for GQA, 1 for MQA."""
    head_dim: int | None = Field(default=None, gt=0)
    """Per-head size; None means ``hidden_size / attention_heads``."""
    intermediate_size: int | None = Field(default=None, gt=0)
    """MLP width (per expert for MoE layers)."""
    gated_mlp: bool = True
    """SwiGLU/GeGLU (three matrices) rather than a plain two-matrix MLP (BLOOM, Falcon)."""
    vocab_size: int | None = Field(default=None, gt=0)
    tied_embeddings: bool | None = None
    """The output layer shares the input embedding matrix."""
    experts: int | None = Field(default=None, gt=0)
    """Routed experts per MoE layer; None for dense models."""
    experts_per_token: int | None = Field(default=None, gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    """Local attention window. Alone it means every layer is windowed (Mistral 7B); with
    ``sliding_window_pattern`` only the local layers are."""
    sliding_window_pattern: int | None = Field(default=None, gt=1)
    """Every N-th layer attends globally, the others use ``sliding_window`` (Gemma 2: 2, Gemma 3: 6)."""
    kv_lora_rank: int | None = Field(default=None, gt=0)
    """Multi-head latent attention (DeepSeek-V3): the compressed KV width cached per layer."""
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    """MLA: the decoupled RoPE key width cached next to the latent."""
    source: str | None = None

    _check = field_validator("source")(classmethod(lambda cls, v: _check_source(v)))

    @property
    def resolved_head_dim(self) -> int | None:
        if self.head_dim:
            return self.head_dim
        if self.hidden_size and self.attention_heads:
            return self.hidden_size // self.attention_heads
        return None

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    def kv_values_per_token(self) -> int | None:
        """Numbers cached per token over all layers (keys and values), or None if unknown."""
        per_layer = self.kv_values_per_layer()
        return None if per_layer is None else per_layer * self.layers

    def kv_values_per_layer(self) -> int | None:
        if self.layers is None:
            return None
        if self.is_mla:
            return self.kv_lora_rank + (self.qk_rope_head_dim or 0)
        hd = self.resolved_head_dim
        kv = self.kv_heads or self.attention_heads
        if hd is None or kv is None:
            return None
        return 2 * kv * hd

    def cached_token_layers(self, context: int) -> int | None:
        """Sum over layers of the tokens each one keeps in its KV cache for ``context`` tokens."""
        if self.layers is None:
            return None
        if self.sliding_window is None:
            return self.layers * context
        local = min(context, self.sliding_window)
        if self.sliding_window_pattern is None:
            return self.layers * local
        global_layers = self.layers // self.sliding_window_pattern
        return global_layers * context + (self.layers - global_layers) * local

    def dense_parameters(self) -> float | None:
        """Parameters implied by the shape of a dense model (embeddings + layers), or None.

        Norms and biases are left out (well under 1%); MoE and MLA models return None.
        """
        need = (self.layers, self.hidden_size, self.attention_heads, self.intermediate_size, self.vocab_size)
        if any(v is None for v in need) or self.experts or self.is_mla or self.tied_embeddings is None:
            return None
        h, hd = self.hidden_size, self.resolved_head_dim
        kv = self.kv_heads or self.attention_heads
        attn = 2 * h * self.attention_heads * hd + 2 * h * kv * hd
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        embed = self.vocab_size * h * (1 if self.tied_embeddings else 2)
        return float(embed + self.layers * (attn + mlp))

    def embedding_parameters(self) -> float | None:
        """Input embedding plus output layer (kept in 16 bits when the rest is quantized)."""
        if self.vocab_size is None or self.hidden_size is None:
            return None
        return float(self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2))


class Price(_Strict):
    """API list price per million tokens (standard tier, no cache hits, no batch discount)."""

    input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float | None = Field(default=None, ge=0)
    currency: Literal["USD", "CNY"] = "USD"
    as_of: str
    """The date the price was read from ``source`` (YYYY-MM-DD)."""
    note: str | None = None
    """Tiers or conditions, e.g. 'prompts up to 128K tokens'."""
    source: str

    _check = field_validator("source")(classmethod(lambda cls, v: _check_source(v)))

    @field_validator("as_of")
    @classmethod
    def _date(cls, v: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", v):
            raise ValueError(f"must be YYYY-MM-DD, got '{v}'")
        return v

    def blended(self, input_share: float = 0.75) -> float | None:
        """Price of a million tokens with ``input_share`` of them prompt (default 3:1)."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        return input_share * self.input_per_mtok + (1 - input_share) * self.output_per_mtok


class Score(_Strict):
    score: float = Field(ge=0, le=100)
    """Percent, as published."""
    setting: str | None = None
    """Shots / variant, e.g. '5-shot, base model'."""
    source: str

    _check = field_validator("source")(classmethod(lambda cls, v: _check_source(v)))


class ModelEntry(_Strict):
    """One model: open weights (self-hostable) or a closed API."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    """Catalog id (lower case), e.g. ``qwen2.5-7b-instruct``."""
    name: str
    vendor: str
    family: str
    aliases: list[str] = []
    """Other names users type (e.g. the configured name of a bundled model)."""
    open_weights: bool
    """Weights can be downloaded and self-hosted. False means API only."""
    card: str | None = None
    """Model card / launch post / paper backing the plain fields below."""
    release_date: str | None = None
    params_b: float | None = Field(default=None, gt=0)
    """Total parameters, billions."""
    active_params_b: float | None = Field(default=None, gt=0)
    """Parameters used per token (MoE); None for dense models."""
    context_length: int | None = Field(default=None, gt=0)
    """The longest context the card says the model supports (tokens)."""
    languages: list[str] | None = None
    """ISO codes the card lists; ``["many"]`` when it claims broad multilingual support."""
    chinese: ChineseLevel | None = None
    modalities: list[Literal["text", "image", "audio", "video"]] = ["text"]
    """Input modalities."""
    strengths: list[Literal["chat", "code", "reasoning", "math", "tool-use", "long-context", "multilingual", "vision", "edge"]] = []
    """What the card says the model is built or tuned for."""
    license: str | None = None
    commercial: Commercial | None = None
    license_terms: str | None = None
    license_url: str | None = None
    arch: Architecture | None = None
    price: Price | None = None
    benchmarks: dict[str, Score] = {}
    notes: str | None = None

    _check = field_validator("card", "license_url")(classmethod(lambda cls, v: _check_source(v)))

    @field_validator("release_date")
    @classmethod
    def _date(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", v):
            raise ValueError(f"must be YYYY-MM or YYYY-MM-DD, got '{v}'")
        return v

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, v: dict[str, Score]) -> dict[str, Score]:
        unknown = sorted(set(v) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; expected {', '.join(BENCHMARKS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if self.active_params_b and self.params_b and self.active_params_b > self.params_b:
            raise ValueError("active_params_b is larger than params_b")
        if not self.open_weights and self.commercial not in (None, "api"):
            raise ValueError("a closed (API-only) model's commercial terms are 'api'")
        return self

    @property
    def active_params(self) -> float | None:
        """Parameters read per generated token, as a count."""
        b = self.active_params_b or self.params_b
        return b * 1e9 if b else None


class GPU(_Strict):
    """An accelerator (or unified-memory SoC) as its vendor's datasheet states it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    vendor: str
    memory_gib: float = Field(gt=0)
    """Device memory. Datasheets say 'GB'; for these parts the capacity is binary (GiB)."""
    bandwidth_gbs: float | None = Field(default=None, gt=0)
    """Peak memory bandwidth, GB/s (10^9 bytes per second)."""
    fp16_tflops: float | None = Field(default=None, gt=0)
    """Dense (no sparsity) FP16/BF16 tensor throughput, TFLOPS."""
    int8_tops: float | None = Field(default=None, gt=0)
    """Dense INT8 tensor throughput, TOPS."""
    price_usd: float | None = Field(default=None, gt=0)
    """Typical purchase price (launch MSRP where the vendor published one)."""
    aliases: list[str] = []
    notes: str | None = None
    source: str | None = None
    """Datasheet URL (every shipped GPU has one; a measured host says how it was measured in notes)."""
    price_source: str | None = None

    _check = field_validator("source", "price_source")(classmethod(lambda cls, v: _check_source(v)))


class Scenario(ScenarioPreset):
    """A named set of requirements and score weights for :func:`lingxi.catalog.select`.

    The same fields as a user's ``[catalog.scenarios.NAME]`` (:class:`lingxi.config.ScenarioPreset`),
    plus the id and a Chinese title; shipped scenarios must state their rationale.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    title_zh: str | None = None
    rationale: str
    """Why these requirements: what the scenario needs and what follows from it."""


def missing_sources(entry: ModelEntry) -> list[str]:
    """Figures in ``entry`` that have no source; empty when every figure is backed."""
    problems = []
    plain = ("release_date", "params_b", "active_params_b", "context_length", "languages", "chinese", "license", "commercial")
    if entry.card is None:
        problems += [f"{entry.id}.{f}: set but no card" for f in plain if getattr(entry, f) is not None]
    if entry.arch is not None and entry.arch.source is None:
        shape = entry.arch.model_dump(exclude={"source", "gated_mlp"}, exclude_none=True)
        if shape:
            problems.append(f"{entry.id}.arch: {', '.join(shape)} set but no arch.source")
    if entry.license_terms and not (entry.license_url or entry.card):
        problems.append(f"{entry.id}.license_terms: no license_url or card")
    return problems
