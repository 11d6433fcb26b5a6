"""The estimator, pinned to published figures (each test names its source and tolerance)."""

from __future__ import annotations

import statistics

import pytest

from lingxi.catalog import estimate, load_catalog
from lingxi.catalog.estimate import GIB, kv_cache_bytes, weight_bytes
from lingxi.errors import UsageError

LLAMA_FACTORY = "https://github.com/hiyouga/LLaMA-Factory#hardware-requirement"
HF_ANATOMY = "https://huggingface.co/docs/transformers/model_memory_anatomy"
VLLM_PAPER = "arXiv:2309.06180"


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


# LLaMA-Factory's README hardware table (GB per method and size, 'estimated'). Its columns are
# generic 7B/14B/70B models; we use Llama 2 7B, Qwen2.5 14B and Llama 3.1 70B, and read GB as GiB.
# Tolerance: every cell within ±30% (the table is rounded rule-of-thumb 'x/2 GB' figures), and
# the median cell within ±10%.
TABLE = {  # method: (kwargs, {model: GB})
    "full (bf16/fp16 mixed)": ({"mode": "full"}, {"7b": 120, "14b": 240, "70b": 1200}),
    "full (pure_bf16)": ({"mode": "full", "pure_16bit": True}, {"7b": 60, "14b": 120, "70b": 600}),
    "lora (16-bit)": ({"mode": "lora"}, {"7b": 16, "14b": 32, "70b": 160}),
    "qlora 8-bit": ({"mode": "qlora", "precision": "int8"}, {"7b": 10, "14b": 20, "70b": 80}),
    "qlora 4-bit": ({"mode": "qlora", "precision": "int4"}, {"7b": 6, "14b": 12, "70b": 48}),
}
MODELS = {"7b": "llama-2-7b-chat", "14b": "qwen2.5-14b-instruct", "70b": "llama-3.1-70b-instruct"}


def test_training_memory_matches_llama_factory_table(cat):
    ratios = []
    for method, (kwargs, cells) in TABLE.items():
        for size, published in cells.items():
            got = estimate(cat.model(MODELS[size]), **kwargs).memory_gib["total"]
            ratio = got / published
            ratios.append(ratio)
            assert 0.7 <= ratio <= 1.3, f"{method} {size}: {got:.1f} GiB vs {published} GB ({LLAMA_FACTORY})"
    assert statistics.median(ratios) == pytest.approx(1.0, abs=0.10)


def test_headline_figures_7b_lora_16gb_qlora_6gb(cat):
    # The two figures the issue quotes from LLaMA-Factory, with a tighter ±15%.
    m = cat.model("llama-2-7b-chat")
    assert estimate(m, mode="lora").memory_gib["total"] == pytest.approx(16, rel=0.15)
    assert estimate(m, mode="qlora").memory_gib["total"] == pytest.approx(6, rel=0.15)


def test_freeze_costs_more_than_lora_and_matches_the_older_table_row(cat):
    # LLaMA-Factory's README listed 'Freeze | 16 | 20GB' for 7B when freeze had a row of its own
    # (the current table folds it into the 16 GB LoRA row). Two trainable blocks in fp32 with AdamW
    # are ~0.4B parameters × 16 bytes above LoRA, so we pin the older 20 GB within ±25%.
    m = cat.model("llama-2-7b-chat")
    freeze = estimate(m, mode="freeze").memory_gib["total"]
    assert freeze == pytest.approx(20, rel=0.25)
    assert freeze > estimate(m, mode="lora").memory_gib["total"]


def test_mixed_precision_adamw_is_18_bytes_per_parameter(cat):
    # HF "model training anatomy": mixed precision weights 6 + gradients 4 + AdamW 8 bytes/param.
    m = cat.model("llama-2-7b-chat")
    mem = estimate(m, mode="full").memory_gib
    per_param = (mem["weights"] + mem["gradients"] + mem["optimizer"]) * GIB / (m.params_b * 1e9)
    assert per_param == pytest.approx(18, abs=0.01), HF_ANATOMY
    mem = estimate(m, mode="full", precision="fp32").memory_gib
    assert (mem["weights"] + mem["gradients"] + mem["optimizer"]) * GIB / (m.params_b * 1e9) == pytest.approx(16, abs=0.01)


def test_kv_cache_800kb_per_token_for_a_13b_model(cat):
    # vLLM paper §2: a 13B model (5120 hidden, 40 layers) needs 2 × 5120 × 40 × 2 bytes = 800 KB of
    # KV cache per token, so a 2048-token request can take 1.6 GB. Exact, by formula.
    m = cat.model("llama-2-13b-chat")  # same 40 × 5120 multi-head shape as OPT-13B
    assert kv_cache_bytes(m, 1) == 2 * 5120 * 40 * 2 == 800 * 1024
    assert kv_cache_bytes(m, 2048) / 1e9 == pytest.approx(1.6, abs=0.1), VLLM_PAPER


def test_gqa_shrinks_kv_cache_by_heads_over_kv_heads(cat):
    # Llama 2 70B: 64 query heads share 8 KV heads → 8× smaller cache than multi-head attention.
    m = cat.model("llama-2-70b-chat")
    assert kv_cache_bytes(m, 4096) == 2 * 80 * 8 * 128 * 4096 * 2
    assert estimate(m, context=4096).memory_gib["kv_cache"] == pytest.approx(1.25)


def test_mla_and_sliding_window_kv(cat):
    v3 = cat.model("deepseek-v3")
    assert kv_cache_bytes(v3, 1) == 61 * (512 + 64) * 2  # latent + RoPE key per layer, 16-bit
    mistral = cat.model("mistral-7b-v0.1")
    assert kv_cache_bytes(mistral, 8192) == kv_cache_bytes(mistral, 4096)  # window 4096 caps it
    # Gemma 3 27B: 62 layers, every 6th global (10), the other 52 keep a 1024-token window.
    gemma = cat.model("gemma-3-27b-it")
    per_layer_token = 2 * 16 * 128 * 2
    assert kv_cache_bytes(gemma, 131072) == (10 * 131072 + 52 * 1024) * per_layer_token
    assert kv_cache_bytes(gemma, 1024) == 62 * 1024 * per_layer_token


def test_13b_int4_fits_a_24gb_card_and_fp16_does_not(cat):
    # The seed documents: a 13B model quantized to 4 bits runs on one 24 GB consumer card.
    m, gpu = cat.model("llama-2-13b-chat"), cat.gpu("rtx-4090")
    int4 = estimate(m, precision="int4", gpu=gpu)
    assert int4.fits and int4.gpus_needed == 1
    fp16 = estimate(m, precision="fp16", gpu=gpu)
    assert not fp16.fits and fp16.gpus_needed == 2
    # 13B weights in fp16 are 26 GB, as every hardware guide quotes.
    assert weight_bytes(m, "fp16") / 1e9 == pytest.approx(26, rel=0.01)


def test_70b_fp16_needs_two_80gb_gpus(cat):
    e = estimate(cat.model("llama-3.1-70b-instruct"), precision="bf16", gpu=cat.gpu("h100"))
    assert 140 <= e.memory_gib["weights"] * GIB / 1e9 <= 142  # 70.6B × 2 bytes
    assert e.gpus_needed == 2 and not e.fits


def test_memory_breakdown_adds_up_and_is_in_gib(cat):
    e = estimate(cat.model("qwen2.5-7b-instruct"), precision="int8", context=8192, batch=4)
    parts = {k: v for k, v in e.memory_gib.items() if k != "total"}
    assert sum(parts.values()) == pytest.approx(e.memory_gib["total"], abs=0.01)
    assert set(parts) == {"weights", "kv_cache", "activations", "gradients", "optimizer", "overhead"}
    assert e.memory_gib["gradients"] == e.memory_gib["optimizer"] == 0
    assert e.memory_gib["kv_cache"] == pytest.approx(2 * 28 * 4 * 128 * 8192 * 4 * 2 / GIB, rel=1e-3)


def test_roofline_decode_is_bandwidth_over_bytes_read(cat):
    m, gpu = cat.model("llama-2-7b-chat"), cat.gpu("a100-40")
    e = estimate(m, precision="fp16", context=1, gpu=gpu)
    bytes_per_token = weight_bytes(m, "fp16") + kv_cache_bytes(m, 1)
    assert e.decode_tokens_per_s == pytest.approx(1555e9 / bytes_per_token, rel=1e-3)
    # A 7B fp16 model reads ~13.5 GB per token: ~9 ms per token on a 1.5 TB/s A100 at best.
    assert 1000 / e.decode_tokens_per_s == pytest.approx(8.7, abs=0.3)
    assert e.prefill_tokens_per_s > 100 * e.decode_tokens_per_s
    assert any("roofline" in a for a in e.assumptions)


def test_moe_decode_reads_only_active_parameters(cat):
    m, gpu = cat.model("qwen3-30b-a3b"), cat.gpu("h100")
    e = estimate(m, precision="bf16", context=1, gpu=gpu)
    assert e.memory_gib["weights"] * GIB / 1e9 == pytest.approx(61, rel=0.01)  # all 30.5B resident
    assert e.decode_tokens_per_s == pytest.approx(3350e9 / (3.3e9 * 2 + kv_cache_bytes(m, 1)), rel=1e-3)


def test_api_model_estimate_is_cost_only(cat):
    e = estimate(cat.model("gpt-4o-mini"))
    assert e.memory_gib is None and e.gpus_needed is None
    assert e.cost["input_per_mtok"] == 0.15 and e.cost["output_per_mtok"] == 0.60
    assert e.cost["blended_per_mtok"] == pytest.approx(0.75 * 0.15 + 0.25 * 0.60)
    with pytest.raises(UsageError, match="API-only"):
        estimate(cat.model("gpt-4o-mini"), mode="lora")


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "int3"}, "unknown precision 'int3'"),
    ({"mode": "dpo"}, "unknown mode 'dpo'"),
    ({"mode": "qlora", "precision": "bf16"}, "qlora trains on a quantized base"),
    ({"mode": "full", "precision": "int4"}, "use --mode qlora"),
    ({"context": 10**6}, "longer than"),
    ({"batch": 0}, "batch must be"),
])
def test_bad_requests_are_usage_errors(cat, kwargs, message):
    with pytest.raises(UsageError, match=message):
        estimate(cat.model("qwen2.5-7b-instruct"), **kwargs)


def test_unknown_architecture_is_an_error_not_a_guess(cat):
    with pytest.raises(UsageError, match="architecture"):
        estimate(cat.model("qwen2.5-7b-instruct").model_copy(update={"arch": None}))


def test_a_missing_parameter_count_is_computed_from_the_architecture_and_said_so(cat):
    entry = cat.model("chinese-alpaca-2-7b")  # the project states no parameter count
    assert entry.params_b is None
    e = estimate(entry)
    assert e.params_b == pytest.approx(6.93, abs=0.01)  # Llama 2 7B with a 55,296-token vocabulary
    assert any("computed from the architecture" in a for a in e.assumptions)
