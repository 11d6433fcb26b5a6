"""``lingxi compress``: argument checks (fast); llama.cpp quantisation of the bundled GGUF through
an F16 widening, and pruning/distillation on a tiny random Llama (slow: torch and transformers)."""

from __future__ import annotations

import pytest

from lingxi.config import parse_config
from lingxi.errors import ModelFileNotFoundError, UsageError
from tune_fixtures import build_tiny_model, write_jsonl


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
    with pytest.raises(UsageError, match="unknown tensor type 'Q9' for the token embedding"):
        quantize(not_gguf, tmp_path / "y.gguf", "Q4_K_M", embedding_type="Q9")
    with pytest.raises(UsageError, match="not a regular expression"):
        quantize(not_gguf, tmp_path / "y.gguf", "Q4_K_M", tensor_types={"attn_(": "Q4_0"})


def test_quantize_cli_tensor_type_needs_regex_and_type(tmp_path, capsys):
    from lingxi.cli import main

    with pytest.raises(SystemExit) as done:
        main(["compress", "quantize", "--model", "smollm2", "--type", "Q4_K_M", "--out", str(tmp_path / "o.gguf"),
              "--tensor-type", "attn_q"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "expected REGEX=TYPE" in err


def test_prune_and_distill_argument_errors(tmp_path):
    from lingxi.compress.distill import distill
    from lingxi.compress.prune import prune_model

    with pytest.raises(UsageError, match="unknown pruning method 'random'"):
        prune_model("smollm2", tmp_path / "o", method="random")
    with pytest.raises(UsageError, match="between 0 and 1"):
        prune_model("smollm2", tmp_path / "o", amount=1.5)
    with pytest.raises(UsageError, match="alpha"):
        distill("smollm2", tmp_path / "o", tmp_path / "d.txt", alpha=2)
    with pytest.raises(UsageError, match="training data not found"):
        distill("smollm2", tmp_path / "o", tmp_path / "d.txt")
    with pytest.raises(UsageError, match="needs --recover-data"):
        prune_model("smollm2", tmp_path / "o", recover_steps=5)


def test_distill_learning_rate_warms_up_then_follows_the_schedule(tmp_path):
    from lingxi.compress.distill import distill, learning_rate

    rates = [learning_rate(s, 100, 1e-3, 10, "cosine") for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)  # linear warm-up
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # then only down
    assert rates[-1] == pytest.approx(1e-4, rel=0.01)  # to a tenth at the last step
    assert learning_rate(55, 100, 1e-3, 10, "cosine") == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way
    assert [learning_rate(s, 100, 1e-3, 10, "constant") for s in (9, 50, 99)] == [1e-3] * 3
    assert learning_rate(150, 100, 1e-3, 0, "cosine") == pytest.approx(1e-4)  # past --steps: stays at the floor
    with pytest.raises(UsageError, match="unknown learning-rate schedule 'linear'"):
        distill("smollm2", tmp_path / "o", tmp_path / "d.txt", schedule="linear")


def test_distill_prompts_file_errors_name_file_and_line(tmp_path):
    from lingxi.compress.distill import read_prompts

    good = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "写一首诗", "instances": [{"input": "夏天", "output": "x"}]},
                                              {"prompt": "Name a colour."}])
    assert read_prompts(good) == ["写一首诗\n夏天", "Name a colour."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"answer": "no prompt"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad.jsonl:2: no prompt"):
        read_prompts(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"broken.jsonl:2: not valid JSON"):
        read_prompts(broken)


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

    from lingxi.compress.distill import block_influence, drop_blocks, distillation_loss, halve_layers

    student = halve_layers(tiny_llama)
    assert len(student.model.layers) == 2 and len(tiny_llama.model.layers) == 4
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    scores = block_influence(tiny_llama, torch.randint(0, 97, (1, 16)))
    assert len(scores) == 4 and scores[-1] == float("inf") and all(0 <= s < 2 for s in scores[:-1])
    three = drop_blocks(tiny_llama, [1])
    assert three.config.num_hidden_layers == 3 and three.model.layers[1] is not tiny_llama.model.layers[2]
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


@pytest.mark.slow
def test_distill_from_prompts_checkpoints_and_resumes(tmp_path):
    """End to end on a tiny random Llama: the teacher answers the prompts, the student (teacher
    less one block) learns them, the report carries both held-out sets; a second run with more
    steps resumes from the checkpoint instead of starting over."""
    pytest.importorskip("torch")
    from lingxi.compress.distill import distill

    teacher = build_tiny_model(tmp_path / "teacher", layers=3)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question {i}: what is {i} plus {i}?"}
                                                       for i in range(10)])
    held = tmp_path / "held.txt"
    held.write_text("The capital of France is Paris. 合同的违约责任由双方约定。" * 4, encoding="utf-8")
    common = {"drop_layers": 1, "seq_len": 16, "batch_size": 2, "gen_tokens": 8, "eval_data": held,
              "save_every": 2, "progress": False}
    first = distill(str(teacher), tmp_path / "student", prompts, steps=2, **common)
    assert first["resumed_from_step"] == 0 and len(first["dropped_blocks"]) == 1
    assert first["student_parameters"] < first["teacher_parameters"]
    assert set(first["held_out"]) == {"held_out_prompts", "held_out_text"}
    row = first["held_out"]["held_out_text"]
    assert row["quality_retained_pct"] == pytest.approx(100 * row["teacher_perplexity"] / row["student_perplexity_after"])
    cached = (tmp_path / "student.work" / "teacher_answers.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(cached) == 10
    second = distill(str(teacher), tmp_path / "student", prompts, steps=4, **common)
    assert second["resumed_from_step"] == 2 and second["steps"] == 4
    assert second["train_seconds"] >= first["train_seconds"] > 0
    assert (tmp_path / "student" / "config.json").is_file()
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "student.work").glob(".*.tmp"))


@pytest.mark.slow
def test_distill_scores_several_held_out_texts_along_the_way(tmp_path):
    """Two held-out files, a warm-up and a curve every 2 steps: the curve's last point is the
    final student's score, and it survives a resume."""
    pytest.importorskip("torch")
    from lingxi.compress.distill import distill

    teacher = build_tiny_model(tmp_path / "teacher", layers=3)
    train = tmp_path / "train.txt"
    train.write_text("The quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    held, other = tmp_path / "held.txt", tmp_path / "dialogues.txt"
    held.write_text("The capital of France is Paris. " * 6, encoding="utf-8")
    other.write_text("Human: hello? Assistant: 你好，有什么可以帮忙？ " * 6, encoding="utf-8")
    common = {"drop_layers": 1, "seq_len": 16, "batch_size": 2, "eval_data": [held, other], "warmup_steps": 2,
              "eval_every": 2, "save_every": 2, "lr": 1e-3, "progress": False}
    first = distill(str(teacher), tmp_path / "student", train, steps=4, **common)
    assert set(first["held_out"]) == {"held_out_text", "held_out_dialogues"}
    assert [p["step"] for p in first["curve"]] == [2, 4]
    last = first["curve"][-1]
    for name, row in first["held_out"].items():
        assert last[name]["perplexity"] == pytest.approx(row["student_perplexity_after"], rel=1e-5)
        assert last[name]["quality_retained_pct"] == pytest.approx(row["quality_retained_pct"], rel=1e-5)
    second = distill(str(teacher), tmp_path / "student", train, steps=6, **common)
    assert second["resumed_from_step"] == 4 and [p["step"] for p in second["curve"]] == [2, 4, 6]
    # a time limit stops after the step that reaches it; the student is saved and scored there
    third = distill(str(teacher), tmp_path / "student", train, steps=100, time_limit_s=1e-9, **common)
    assert third["steps_done"] == 7 and third["steps"] == 100 and third["tokens_seen"] == 7 * 2 * 16
    assert third["held_out"]["held_out_text"]["student_perplexity_after"] > 0


def test_prune_with_recovery_fine_tune(tmp_path):
    """Structured pruning then a short full fine-tune through the tune pretrain recipe: the
    recovered weights replace the pruned ones and keep the pruned shape."""
    pytest.importorskip("peft")
    import transformers

    from lingxi.compress.prune import prune_model

    model = build_tiny_model(tmp_path / "m", layers=2)
    text = tmp_path / "recover.txt"
    text.write_text("\n\n".join(f"Paragraph {i}. The quick brown fox jumps over the lazy dog; 你好，世界。"
                                   for i in range(30)), encoding="utf-8")
    result = prune_model(str(model), tmp_path / "pruned", amount=0.25, method="structured",
                         recover_data=text, recover_steps=2, home=tmp_path)
    assert result["recovery"]["steps"] == 2 and result["recovery"]["held_out_loss_after"] is not None
    pruned = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "pruned"))
    assert pruned.config.intermediate_size == 48
    assert (tmp_path / "pruned.pruned" / "config.json").is_file()


@pytest.mark.slow
def test_gguf_teacher_answers_through_llamacpp():
    pytest.importorskip("llama_cpp")
    from lingxi.compress.distill import gguf_generator
    from lingxi.engines.bundled import smollm2_gguf

    generate, close = gguf_generator(smollm2_gguf(), max_new_tokens=8, threads=1)
    try:
        answers = generate(["What is the capital of France?", "Name a colour."])
        again = generate(["What is the capital of France?"])
    finally:
        close()
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
    assert again[0] == answers[0]  # greedy: the teacher's answer is reproducible


def test_bnb_argument_errors(tmp_path, monkeypatch, capsys):
    import sys

    from lingxi.cli import main
    from lingxi.compress.bnb import quantize_bnb
    from lingxi.errors import MissingExtraError

    settings = parse_config({})
    with pytest.raises(UsageError, match="--bits 3: bitsandbytes quantises to 8 or 4 bits"):
        quantize_bnb("smollm2", tmp_path / "o", bits=3, settings=settings)
    with pytest.raises(UsageError, match="--quant-type int4: known 4-bit types are nf4, fp4"):
        quantize_bnb("smollm2", tmp_path / "o", bits=4, quant_type="int4", settings=settings)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file; bitsandbytes writes a model folder"):
        quantize_bnb("smollm2", tmp_path / "file", bits=4, settings=settings)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"needs the 'bnb' extra .*pip install 'lingxi\[bnb\]'"):
        quantize_bnb("smollm2", tmp_path / "o", bits=4, settings=settings)
    with pytest.raises(SystemExit) as done:
        main(["compress", "bnb", "--model", "smollm2", "--bits", "8", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert done.value.code != 0 and err.count("\n") == 1 and "lingxi[bnb]" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.f32").exists()


@pytest.mark.slow
def test_bnb_4bit_and_8bit_load_back_quantised(tmp_path, monkeypatch):
    """bitsandbytes on the CPU: a tiny Llama at 4 and 8 bits; each folder loads back quantised in
    Lingxi's transformers engine and answers; the 4-bit run's report has both sides."""
    pytest.importorskip("bitsandbytes")
    import json

    from lingxi.compress.bnb import quantize_bnb
    from lingxi.config import TransformersModel
    from lingxi.engines import GenerationParams, create_engine
    from lingxi.errors import MissingExtraError

    source = build_tiny_model(tmp_path / "tiny", layers=2, hidden=64)
    held = tmp_path / "held.txt"
    held.write_text("The cat sat on the mat. 长城是中国古代的军事防御工程。 " * 20, encoding="utf-8")
    four = quantize_bnb(str(source), tmp_path / "nf4", bits=4, data=held, report_dir=tmp_path / "report",
                        max_tokens=128, threads=1)
    assert four["baseline"] == str(source)  # a float32 folder is its own baseline
    assert four["quantized_layers"] == 2 * 7 and 4.0 < four["quantized_bits_per_weight"] < 5.0
    assert four["before"]["perplexity"] > 0 and four["after"]["perplexity"] > 0
    assert (tmp_path / "report" / "report.html").is_file()
    eight = quantize_bnb(str(source), tmp_path / "int8", bits=8)
    assert eight["quantized_layers"] == 2 * 7 and 8.0 <= eight["quantized_bits_per_weight"] < 9.0
    for name, bits in (("nf4", 4), ("int8", 8)):
        saved = json.loads((tmp_path / name / "config.json").read_text())["quantization_config"]
        assert saved[f"load_in_{bits}bit"] is True
        engine = create_engine(name, TransformersModel(engine="transformers", path=str(tmp_path / name),
                                                       dtype="float32", device="cpu"))
        try:
            layer = engine.model.model.layers[0].mlp.up_proj
            assert type(layer).__name__ == ("Linear4bit" if bits == 4 else "Linear8bitLt")
            out = engine.generate([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, temperature=0.0))
            assert out.usage.completion_tokens > 0
        finally:
            engine.close()
    import transformers.quantizers.quantizer_bnb_4bit as q4

    monkeypatch.setattr(q4, "is_bitsandbytes_available", lambda: False)  # a server without the extra
    with pytest.raises(MissingExtraError, match=r"'lingxi\[bnb\]'"):
        create_engine("nf4", TransformersModel(engine="transformers", path=str(tmp_path / "nf4"), device="cpu"))
