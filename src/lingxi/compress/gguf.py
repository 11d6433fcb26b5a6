"""GGUF files: widen a quantised GGUF to F16, and quantise through llama.cpp.

- :func:`to_f16` rewrites a GGUF with every 2-D tensor dequantised to F16 (1-D tensors, the
  norms, as F32, as llama.cpp's converter writes them), all metadata copied. It is the F16
  source to quantise from when the only copy of a model is already quantised, as the bundled
  SmolLM2 (Q4_1) is: the F16 file holds exactly the Q4_1 values, so requantising it costs only
  the new format's error, not a second rounding of lost originals.
- :func:`quantize` calls llama.cpp's ``llama_model_quantize`` (through llama-cpp-python) to any
  of its file types (Q8_0, Q6_K, Q5_K_M, Q4_K_M, ...). From a quantised source llama.cpp needs
  ``allow_requantize`` and rounds twice; prefer an F16/F32 source (``to_f16`` or an export).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from lingxi.errors import EngineError, ModelFileNotFoundError, UsageError, missing_extra

#: the file types a user names on the command line -> llama-cpp-python constant
FTYPES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
          "Q3_K_M", "Q3_K_S", "Q3_K_L", "Q2_K", "IQ4_NL", "IQ4_XS")


def _gguf() -> object:
    try:
        import gguf
    except ImportError as exc:
        raise missing_extra("reading and writing GGUF files", "hf", exc) from exc
    return gguf


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelFileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UsageError(f"{path} is not a GGUF file (no GGUF magic at byte 0)")


def to_f16(src: str | Path, dst: str | Path) -> Path:
    """Write ``dst``: ``src`` with its 2-D tensors dequantised to F16 and 1-D tensors as F32."""
    src, dst = Path(src), Path(dst)
    _check_gguf(src)
    gguf = _gguf()
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    tmp = dst.with_name(f".{dst.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # written by the writer itself
        value = field.contents()
        if field.name == "general.file_type":
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        data = data.astype(np.float32 if data.ndim == 1 else np.float16)
        writer.add_tensor(tensor.name, data)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(dst)
    return dst


#: tensor types a user may name for one tensor (``--embedding-type``, ``--tensor-type``)
TENSOR_TYPES = ("F32", "F16", "Q8_0", "Q6_K", "Q5_K", "Q5_0", "Q5_1", "Q4_K", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS",
                "Q3_K", "Q2_K")


def _check_type(name: str, what: str) -> str:
    key = name.upper()
    if key not in TENSOR_TYPES:
        raise UsageError(f"unknown tensor type '{name}' for {what}; known: {', '.join(TENSOR_TYPES)}")
    return key


def _ggml_type(llama_cpp: object, name: str, what: str) -> int:
    return int(getattr(llama_cpp, f"GGML_TYPE_{_check_type(name, what)}"))


def quantize(src: str | Path, dst: str | Path, ftype: str, threads: int | None = None, *,
             output_type: str | None = None, embedding_type: str | None = None,
             tensor_types: dict[str, str] | None = None, pure: bool = False) -> Path:
    """llama.cpp's quantiser: ``src`` (GGUF) -> ``dst`` at ``ftype`` (e.g. ``"Q4_K_M"``).

    The optional arguments are ``llama-quantize``'s own: ``output_type`` and ``embedding_type``
    (``--output-tensor-type``, ``--token-embedding-type``; with tied embeddings, as in SmolLM2,
    ``token_embd`` *is* the output head and takes ``embedding_type`` when given, else llama.cpp
    applies its output rule to it), ``tensor_types`` (``--tensor-type``: regex over tensor names ->
    type, first match wins) and ``pure`` (``--pure``: every tensor at the file type's base type,
    no per-layer mix). llama.cpp still demotes a type whose block does not divide a tensor's rows
    (a K-quant on 576-wide rows) to its fallback, except for ``embedding_type``/``output_type``,
    which must fit as given.
    """
    import re

    name = ftype.upper()
    if name not in FTYPES:
        raise UsageError(f"unknown quantisation type '{ftype}'; known: {', '.join(FTYPES)}")
    if output_type:
        _check_type(output_type, "the output tensor")
    if embedding_type:
        _check_type(embedding_type, "the token embedding")
    for pattern, kind in (tensor_types or {}).items():
        _check_type(kind, f"tensors matching '{pattern}'")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--tensor-type pattern '{pattern}' is not a regular expression: {exc}") from None
    src, dst = Path(src), Path(dst)
    _check_gguf(src)
    try:
        import llama_cpp
    except ImportError as exc:
        raise missing_extra("GGUF quantisation", "llamacpp", exc) from exc
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
    params.nthread = threads or len(os.sched_getaffinity(0))
    params.allow_requantize = True  # a quantised source is allowed; the report shows what it cost
    params.pure = bool(pure)
    if output_type:
        params.output_tensor_type = _ggml_type(llama_cpp, output_type, "the output tensor")
    if embedding_type:
        params.token_embedding_type = _ggml_type(llama_cpp, embedding_type, "the token embedding")
    overrides = None
    if tensor_types:
        items = [(p.encode(), _ggml_type(llama_cpp, t, f"tensors matching '{p}'")) for p, t in tensor_types.items()]
        overrides = (llama_cpp.llama_model_tensor_override * (len(items) + 1))(
            *[llama_cpp.llama_model_tensor_override(p, t) for p, t in items],
            llama_cpp.llama_model_tensor_override(None, 0))  # the list ends at a null pattern
        params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    tmp = dst.with_name(f".{dst.name}.tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    del overrides  # kept alive until llama.cpp has read it
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise EngineError(f"llama.cpp could not quantize {src} to {name} (return code {rc})")
    tmp.replace(dst)
    return dst


def tensor_table(path: str | Path) -> dict[str, object]:
    """Per tensor of a GGUF: type, shape (llama.cpp order, row width first), bytes, bits per weight;
    plus totals per type. What a file type really is for a given model: llama.cpp keeps some
    tensors wider than the type's name says (the output head, tensors whose rows a K-quant
    block does not divide)."""
    path = Path(path)
    _check_gguf(path)
    gguf = _gguf()
    reader = gguf.GGUFReader(str(path))
    rows = []
    by_type: dict[str, dict[str, float]] = {}
    for t in reader.tensors:
        n = int(np.prod(t.shape))
        kind = t.tensor_type.name
        rows.append({"name": t.name, "type": kind, "shape": [int(x) for x in t.shape], "bytes": int(t.n_bytes),
                     "bits_per_weight": round(8 * int(t.n_bytes) / n, 3)})
        agg = by_type.setdefault(kind, {"tensors": 0, "weights": 0, "bytes": 0})
        agg["tensors"] += 1
        agg["weights"] += n
        agg["bytes"] += int(t.n_bytes)
    total_w = sum(a["weights"] for a in by_type.values())
    total_b = sum(a["bytes"] for a in by_type.values())
    for agg in by_type.values():
        agg["bits_per_weight"] = round(8 * agg["bytes"] / agg["weights"], 3)
        agg["share_of_bytes"] = round(agg["bytes"] / total_b, 4)
    return {"file": str(path), "file_bytes": path.stat().st_size, "tensor_bytes": total_b, "weights": total_w,
            "bits_per_weight": round(8 * total_b / total_w, 3), "by_type": by_type, "tensors": rows}


def file_type(path: str | Path) -> str:
    """The GGUF's ``general.file_type`` as a name (e.g. ``MOSTLY_Q4_1``)."""
    gguf = _gguf()
    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    return gguf.LlamaFileType(int(field.contents())).name if field else "unknown"
