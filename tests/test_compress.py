"""``lingxi compress``: argument checks (fast); llama.cpp quantisation of the bundled GGUF through
an F16 widening, and pruning/distillation on a tiny random Llama (slow: torch and transformers)."""

from __future__ import annotations

import pytest

from lingxi.config import parse_config
from lingxi.errors import ModelFileNotFoundError, UsageError


def test_quantize_argument_errors(tmp_path):
    from lingxi.compress.gguf import quantize, to_f16
    from lingxi.compress.quantize import quantize_model

    settings = parse_config({})
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"PK\x03\x04")
    with pytest.raises(UsageError, match="not a GGUF file"):
        to_f16(not_gguf, tmp_path / "y.gguf")
    with pytest.raises(UsageError, match="unknown quantisation type 'Q9_X'"):
        quantize(not_gguf, tmp_path / "y.gguf", "Q9_X")
    with pytest.raises(ModelFileNotFoundError):
        quantize(tmp_path / "missing.gguf", tmp_path / "y.gguf", "Q8_0")
    with pytest.raises(UsageError, match="should end in .gguf"):
        quantize_model("smollm2", tmp_path / "out.bin", "Q8_0", settings=settings)


def test_prune_and_distill_argument_errors(tmp_path):
    from lingxi.compress.distill import distill
    from lingxi.compress.prune import prune_model

    with pytest.raises(UsageError, match="unknown pruning method 'random'"):
        prune_model("smollm2", tmp_path / "o", method="random")
    with pytest.raises(UsageError, match="between 0 and 1"):
        prune_model("smollm2", tmp_path / "o", amount=1.5)
    with pytest.raises(UsageError, match="alpha"):
        distill("smollm2", tmp_path / "o", tmp_path / "d.txt", alpha=2)


@pytest.fixture(scope="module")
def tiny_llama():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.slow
def test_magnitude_and_structured_pruning(tiny_llama):
    import copy

    import torch

    from lingxi.compress.prune import magnitude_prune, sparsity, structured_prune

    m = magnitude_prune(copy.deepcopy(tiny_llama), 0.5)
    assert sparsity(m) == pytest.approx(0.5, abs=0.01)
    assert float(m.model.embed_tokens.weight.eq(0).float().mean()) == 0  # embeddings untouched
    s = structured_prune(copy.deepcopy(tiny_llama), 0.25)
    assert s.config.intermediate_size == 48 and s.model.layers[0].mlp.down_proj.weight.shape == (32, 48)
    x = torch.randint(0, 97, (1, 10))
    assert s(x).logits.shape == (1, 10, 97)  # still runs with the narrower MLP


@pytest.mark.slow
def test_structured_pruning_ranks_channels_by_calibration_activations(tiny_llama):
    import copy
    from types import SimpleNamespace

    import torch

    from lingxi.compress.prune import channel_importance, structured_prune

    class Tokenizer:
        def __call__(self, text, return_tensors=None, add_special_tokens=False):
            return SimpleNamespace(input_ids=torch.tensor([[ord(c) % 97 for c in text]]))

    model = copy.deepcopy(tiny_llama)
    scores = channel_importance(model, Tokenizer(), "calibration text for the tiny model")
    assert len(scores) == 4 and scores[0].shape == (64,) and bool((scores[0] >= 0).all())
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.down_proj.weight[:, 5] = 0  # a channel that cannot matter: its output column is zero
    keep_out = channel_importance(model, Tokenizer(), "calibration text for the tiny model")[0]
    assert float(keep_out[5]) == 0.0
    pruned = structured_prune(model, 0.25, Tokenizer(), "calibration text for the tiny model")
    assert pruned.config.intermediate_size == 48


@pytest.mark.slow
def test_distillation_loss_and_half_student(tiny_llama):
    import torch

    from lingxi.compress.distill import distillation_loss, halve_layers

    student = halve_layers(tiny_llama)
    assert len(student.model.layers) == 2 and len(tiny_llama.model.layers) == 4
    x = torch.randint(0, 97, (2, 12))
    t = tiny_llama(x).logits
    labels = torch.randint(0, 97, (2, 12))
    # identical logits: the KL term is zero and only alpha-weighted CE remains
    same = distillation_loss(t, t, labels, temperature=2.0, alpha=0.5)
    ce = torch.nn.functional.cross_entropy(t.reshape(-1, 97), labels.reshape(-1))
    assert float(same) == pytest.approx(0.5 * float(ce), rel=1e-5)
    assert float(distillation_loss(student(x).logits, t, labels, 2.0, 1.0)) > 0


@pytest.mark.slow
def test_quantize_bundled_gguf_via_f16(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from lingxi.compress.gguf import file_type
    from lingxi.compress.quantize import quantize_model

    result = quantize_model("smollm2", tmp_path / "q8.gguf", "Q8_0", settings=parse_config({}))
    assert result["source_type"] == "MOSTLY_Q4_1" and file_type(result["baseline"]) == "MOSTLY_F16"
    assert file_type(result["output"]) == "MOSTLY_Q8_0"
    f16, q8 = (tmp_path / "q8.f16.gguf").stat().st_size, (tmp_path / "q8.gguf").stat().st_size
    assert f16 / q8 >= 1.8


@pytest.mark.slow
def test_dynamic_int8_shrinks_linear_layers(tiny_llama):
    import copy

    import torch

    from lingxi.compress.dynamic import quantize_int8, state_dict_mib

    int8 = quantize_int8(copy.deepcopy(tiny_llama))
    assert type(int8.lm_head) is torch.nn.Linear  # the head stays float32
    assert type(int8.model.layers[0].mlp.up_proj) is not torch.nn.Linear
    assert state_dict_mib(int8) < state_dict_mib(tiny_llama)
    x = torch.randint(0, 97, (1, 8))
    with torch.inference_mode():
        assert int8(x).logits.shape == (1, 8, 97)
