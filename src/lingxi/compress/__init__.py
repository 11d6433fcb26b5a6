"""Compression with a price tag: quantisation (GGUF through llama.cpp, bitsandbytes 8/4-bit, PyTorch
dynamic INT8), pruning and distillation, each followed by a
before/after report from :mod:`lingxi.evaluate` (size, peak memory, tokens/s, perplexity on
held-out text, fidelity to the original's answers).

Heavy dependencies (llama-cpp-python, gguf, torch, transformers) load inside the functions.
"""

from lingxi.compress.bnb import quantize_bnb
from lingxi.compress.distill import distill
from lingxi.compress.dynamic import int8_dynamic
from lingxi.compress.prune import prune_model
from lingxi.compress.quantize import quantize_model

__all__ = ["distill", "int8_dynamic", "prune_model", "quantize_bnb", "quantize_model"]
