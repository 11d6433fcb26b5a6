"""Recipe plumbing on a tiny random Llama (fast tier): reports, resume, dry-run, refusals, losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lingxi.errors import ConfigError, UsageError
from tune_fixtures import PREF_ROWS, SFT_ROWS, build_tiny_model, write_jsonl

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model only loses from threads on a shared machine
    yield build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    torch.set_num_threads(threads)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {"sft": write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), "pref": write_jsonl(tmp_path / "pref.jsonl", PREF_ROWS),
            "text": write_jsonl(tmp_path / "text.jsonl", [{"text": r["instruction"] + " " + r["output"]} for r in SFT_ROWS])}


def run(tiny: Path, tmp_path: Path, recipe: str, data: Path, **kw):
    from lingxi.tune import make_config, run_recipe

    values = {"recipe": recipe, "model": str(tiny), "data": str(data), "output": str(tmp_path / f"out-{recipe}"),
              "max_steps": 3, "batch_size": 2, "max_len": 64, **kw}
    return run_recipe(make_config(**values), home=tmp_path / "home")


CONTRACT = {"recipe", "model", "steps", "train_tokens_per_s", "peak_memory_gib", "eval"}


def test_sft_lora_writes_the_contract_report_and_adapter(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "sft", files["sft"])
    assert CONTRACT <= set(report)
    assert report["steps"] == 3 and len(report["loss_curve"]) == 3
    assert report["train_tokens_per_s"] > 0 and report["peak_memory_gib"] > 0
    assert set(report["eval"]["before"]) == {"loss"} and report["eval"]["after"]["loss"] > 0
    assert json.loads((tmp_path / "out-sft" / "report.json").read_text())["steps"] == 3
    config = json.loads((tmp_path / "out-sft" / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 32, 0.1)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


def test_loss_is_taken_on_answer_tokens_only(tiny: Path):
    import transformers

    from lingxi.tune.tokens import IGNORE, encode_chat, sft_messages

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny))
    ex = encode_chat(tok, sft_messages({"instruction": "Say two", "input": "", "output": "two 二"}), 128)
    labelled = tok.decode([t for t in ex.labels if t != IGNORE])
    assert labelled.startswith("two 二<|im_end|>")
    assert "Say two" not in labelled and "user" not in labelled
    # a multi-turn conversation labels every assistant turn, not the user turns
    ex = encode_chat(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "one"},
                           {"role": "user", "content": "b"}, {"role": "assistant", "content": "two"}], 128)
    labelled = tok.decode([t for t in ex.labels if t != IGNORE])
    assert "one" in labelled and "two" in labelled and "b" not in labelled.replace("<|im_end|>", "")


def test_packing_fills_sequences(tiny: Path, tmp_path: Path, files):
    from lingxi.tune.tokens import Example, pack

    packed = pack([Example([1, 2, 3], [-100, 2, 3]), Example([4, 5, 6, 7], [-100, -100, 6, 7])], 4)
    assert [p.ids for p in packed] == [[1, 2, 3, 4], [5, 6, 7]]
    report = run(tiny, tmp_path, "sft", files["sft"], packing=True, max_len=96)
    assert report["data"]["train_sequences"] < report["data"]["train_rows"]


def test_killed_run_resumes_exactly(tiny: Path, tmp_path: Path, files, monkeypatch):
    from lingxi.tune.loop import Run

    straight = run(tiny, tmp_path / "a", "sft", files["sft"], max_steps=4, save_every=2)
    # the same run killed right after its step-2 checkpoint, then started again
    save = Run.save

    def save_then_die(self, step, *args):
        save(self, step, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "b", "sft", files["sft"], max_steps=4, save_every=2)
    monkeypatch.setattr(Run, "save", save)
    assert not (tmp_path / "b" / "out-sft" / "report.json").exists()
    resumed = run(tiny, tmp_path / "b", "sft", files["sft"], max_steps=4, save_every=2)
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 4
    assert resumed["loss_curve"] == pytest.approx(straight["loss_curve"], abs=1e-4)
    assert resumed["eval"]["after"]["loss"] == pytest.approx(straight["eval"]["after"]["loss"], abs=1e-4)


def test_resume_refuses_a_checkpoint_of_other_settings(tiny: Path, tmp_path: Path, files):
    run(tiny, tmp_path, "sft", files["sft"], max_steps=1)
    with pytest.raises(UsageError, match="other settings"):
        run(tiny, tmp_path, "sft", files["sft"], max_steps=2, lr=1e-3)


def test_full_fine_tuning_trains_every_weight(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "pretrain", files["text"], method="full", max_steps=2, lr=1e-3)
    assert report["method"] == "full" and report["steps"] == 2
    assert (tmp_path / "out-pretrain" / "adapter" / "model.safetensors").is_file()


@pytest.mark.slow
def test_sft_loss_goes_down_with_training(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "sft", files["sft"], eval_data=str(files["sft"]), max_steps=6, lr=3e-2,
                 method="full", batch_size=4)
    assert report["eval"]["after"]["loss"] < report["eval"]["before"]["loss"] - 0.5


def test_dry_run_prints_the_estimate_and_trains_nothing(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "sft", files["sft"], dry_run=True)
    assert report["dry_run"] is True and report["memory_gib"]["total"] > 0
    assert report["method"] == "lora" and report["batch"] == 2
    assert not (tmp_path / "out-sft").exists()


def test_a_run_that_does_not_fit_is_refused_before_loading(tiny: Path, tmp_path: Path, files, monkeypatch):
    from lingxi.tune import loop

    monkeypatch.setattr(loop, "available_memory_gib", lambda device: 0.01)
    with pytest.raises(UsageError, match=r"needs about .* GiB but 0.0 GiB is free"):
        run(tiny, tmp_path, "sft", files["sft"])
    assert not (tmp_path / "out-sft").exists()


def test_bad_input_is_one_clear_error_before_training(tiny: Path, tmp_path: Path, files):
    with pytest.raises(UsageError, match="sft needs instruction/output or messages rows; pref.jsonl has prompt/chosen/rejected rows"):
        run(tiny, tmp_path, "sft", files["pref"])
    with pytest.raises(UsageError, match="data file not found"):
        run(tiny, tmp_path, "sft", tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="empty.jsonl has no usable rows for dpo"):
        run(tiny, tmp_path, "dpo", empty)
    with pytest.raises(ConfigError, match="--lora-r: Input should be greater than 0"):
        run(tiny, tmp_path, "sft", files["sft"], lora_r=0)
    with pytest.raises(UsageError, match="--lora-targets wq: no such module"):
        run(tiny, tmp_path, "sft", files["sft"], lora_targets=["wq"])
    assert not (tmp_path / "out-sft" / "report.json").exists()


def test_wrong_field_names_and_malformed_lines(tiny: Path, tmp_path: Path):
    misnamed = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4"}] * 3)
    with pytest.raises(UsageError, match=r"qa.jsonl has no usable rows for sft \(needs instruction/output or messages\) "
                                         r"\(first problem: qa.jsonl:1: no known fields \(have: answer, question\)"):
        run(tiny, tmp_path, "sft", misnamed)
    mixed = tmp_path / "mixed.jsonl"
    good = json.dumps(SFT_ROWS[1])
    mixed.write_text(f"{good}\n{{broken\n{good}\n{json.dumps({'instrucion': 'x', 'output': 'y'})}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"mixed.jsonl:2: not valid JSON"):
        run(tiny, tmp_path, "sft", mixed, on_error="stop")
    report = run(tiny, tmp_path, "sft", mixed, eval_data=str(mixed), max_steps=1)
    assert report["data"]["skipped_count"] == 4  # lines 2 and 4, once as training and once as eval data
    assert [s.split(": ")[0] for s in report["data"]["skipped_rows"][:2]] == ["mixed.jsonl:2", "mixed.jsonl:4"]


@pytest.mark.slow
def test_dpo_reports_preference_metrics(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "dpo", files["pref"], eval_data=str(files["pref"]), eval_rows=4)
    before, after = report["eval"]["before"], report["eval"]["after"]
    assert before["reward_margin"] == 0.0  # the policy starts as the reference
    assert before["preference_accuracy"] == 0.5  # every implicit margin ties before training
    assert {"preference_accuracy", "accuracy_ci95", "reward_margin", "policy_accuracy", "changed_pairs"} <= set(after)
    assert report["loss_curve"][0] == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0)


@pytest.mark.slow
def test_reward_model_learns_to_rank_chosen_over_rejected(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "rm", files["pref"], eval_data=str(files["pref"]), max_steps=8, lr=2e-2,
                 batch_size=4)
    assert report["eval"]["after"]["preference_accuracy"] == 1.0
    assert report["eval"]["after"]["reward_margin"] > report["eval"]["before"]["reward_margin"]
    assert (tmp_path / "out-rm" / "adapter" / "extra_state.pt").is_file()


def test_cli_dry_run_and_error_line(tiny: Path, tmp_path: Path, files, capsys):
    from lingxi.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tune", "sft", "--model", str(tiny), "--data", str(files["sft"]), "--dry-run", "--lora-r", "8"])
    assert exit_.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["memory_gib"]["total"] > 0
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "sft", "--model", str(tiny), "--data", str(files["pref"])])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: sft needs instruction/output")


def test_ppo_reward_normalisation_and_kl_schedule():
    import torch

    from lingxi.tune.recipes.ppo import kl_coefficient, normalise_rewards

    out = normalise_rewards(torch.tensor([2.0, 4.0, 9.0]))
    assert out.tolist() == pytest.approx([-0.75, -0.25, 1.0])  # mean 5, largest deviation 4
    assert normalise_rewards(torch.tensor([3.0, 3.0])).tolist() == [0.0, 0.0]
    assert [kl_coefficient(s, 5, 0.01, 0.05) for s in range(5)] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])


def test_ppo_held_out_reward_change_is_paired_by_prompt():
    from lingxi.tune.recipes.ppo import reward_change

    before = [0.1 * i for i in range(20)]
    up = reward_change(before, [r + 0.5 for r in before])
    assert up["mean_change"] == pytest.approx(0.5) and up["improved"] == 20 and up["worse"] == 0
    assert up["p_value"] < 0.01  # every prompt better: not noise
    mixed = reward_change(before, [r + (0.5 if i % 2 else -0.5) for i, r in enumerate(before)])
    assert mixed["mean_change"] == pytest.approx(0.0) and mixed["p_value"] > 0.5
    assert reward_change(before[:3], [1.0, 1.0, 1.0])["p_value"] is None  # too few prompts to test
    assert reward_change([], [])["prompts"] == 0


def test_ppo_runs_with_a_trained_reward_model(tiny: Path, tmp_path: Path, files):
    run(tiny, tmp_path, "rm", files["pref"], max_steps=2)
    report = run(tiny, tmp_path, "ppo", files["pref"], reward_model=str(tmp_path / "out-rm"), max_new_tokens=6,
                 eval_data=str(files["pref"]), eval_rows=2, kl_end=0.05)
    assert report["eval"]["before"]["kl"] == 0.0  # the policy starts as the reference
    assert set(report["eval"]["after"]) >= {"mean_reward", "kl"}
    assert report["kl_coef_curve"] == pytest.approx([0.01, 0.03, 0.05])
    assert len(report["reward_curve"]) == len(report["kl_curve"]) == 3
    assert report["held_out_reward_change"]["prompts"] == 2 and "_rewards" not in report["eval"]["after"]
    assert report["train_cpu_seconds"] > 0  # tokens per CPU-second is computed from it
    with pytest.raises(UsageError, match="not an rm run"):
        run(tiny, tmp_path / "x", "ppo", files["pref"], reward_model=str(tmp_path / "out-ppo"))


def test_ppo_with_the_programmatic_brevity_reward(tiny: Path, tmp_path: Path, files):
    report = run(tiny, tmp_path, "ppo", files["pref"], reward_model="brevity", max_new_tokens=6,
                 eval_data=str(files["pref"]), eval_rows=2, max_steps=2)
    assert report["reward"].startswith("minus the share")
    # a response scores -(tokens used incl. end-of-turn) / budget: in [-1, 0)
    assert all(-1.0 <= r < 0 for r in report["reward_curve"]) and -1.0 <= report["eval"]["after"]["mean_reward"] < 0


def test_vocab_adds_terms_initialised_from_their_pieces(tiny: Path, tmp_path: Path):
    import torch
    import transformers

    from lingxi.tune.recipes.vocab import add_terms

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny))
    pieces = add_terms(tok, model, ["违约责任", "a"])
    assert list(pieces) == ["违约责任"] and len(pieces["违约责任"]) > 1  # "a" is one token already
    new = tok.convert_tokens_to_ids("违约责任")
    emb = model.get_input_embeddings().weight
    assert torch.allclose(emb[new], emb[pieces["违约责任"]].mean(0))
    assert tok("违约责任", add_special_tokens=False)["input_ids"] == [new]


def test_vocab_recipe_trains_new_rows_first_and_tokenizes_shorter(tiny: Path, tmp_path: Path):
    import torch

    text = [{"text": "合同的违约责任由双方约定。违约责任包括赔偿损失。"} for _ in range(6)]
    data = write_jsonl(tmp_path / "domain.jsonl", text)
    report = run(tiny, tmp_path, "vocab", data, eval_data=str(data), terms=["违约责任", "赔偿损失"], max_steps=2,
                 new_rows_steps=2, lr=1e-2)
    before, after = report["eval"]["before"], report["eval"]["after"]
    assert after["tokens_per_char"] < before["tokens_per_char"]
    assert report["vocab_size"]["after"] == report["vocab_size"]["before"] + 2
    state = torch.load(tmp_path / "out-vocab" / "adapter" / "extra_state.pt", weights_only=False)
    import transformers

    old = transformers.AutoModelForCausalLM.from_pretrained(str(tiny)).get_input_embeddings().weight
    trained = state["embed_tokens"]
    assert torch.equal(trained[: old.shape[0]], old.detach())  # old rows untouched
    from safetensors.torch import load_file

    lora = load_file(str(tmp_path / "out-vocab" / "adapter" / "adapter_model.safetensors"))
    assert all(not t.any() for n, t in lora.items() if "lora_B" in n)  # LoRA not yet trained in phase one


def test_qlora_without_bitsandbytes_names_the_extra(tiny: Path, tmp_path: Path, files, monkeypatch):
    import sys

    from lingxi.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"--method qlora .* needs the 'qlora' extra .*pip install 'lingxi\[qlora\]'"):
        run(tiny, tmp_path, "sft", files["sft"], method="qlora", device="cpu")
    assert not (tmp_path / "out-sft").exists()


@pytest.mark.slow
def test_qlora_trains_on_cpu(tiny: Path, tmp_path: Path, files):
    pytest.importorskip("bitsandbytes")
    import torch
    from safetensors.torch import load_file

    report = run(tiny, tmp_path, "sft", files["sft"], method="qlora", device="cpu", eval_data=str(files["sft"]),
                 max_steps=4, lr=1e-2, lora_targets=["q_proj", "v_proj", "o_proj"])
    assert report["memory_estimate"]["precision"] == "int4"
    lora = load_file(str(tmp_path / "out-sft" / "adapter" / "adapter_model.safetensors"))
    moved = [n for n, t in lora.items() if "lora_B" in n and t.abs().sum() > 0]
    # every adapter trained, the lowest layer's included (gradients crossed the 4-bit layers above it)
    assert len(moved) == len([n for n in lora if "lora_B" in n]) > 0
    assert any(".layers.0." in n for n in moved)
    assert report["eval"]["after"]["loss"] < report["eval"]["before"]["loss"]
    assert torch.isfinite(torch.tensor(report["loss_curve"])).all()


def test_lora_layers_adapts_only_the_top_layers(tiny: Path, tmp_path: Path, files):
    from safetensors.torch import load_file

    run(tiny, tmp_path, "sft", files["sft"], lora_layers=1, lr=1e-2)
    lora = load_file(str(tmp_path / "out-sft" / "adapter" / "adapter_model.safetensors"))
    assert lora and all(".layers.1." in n for n in lora)  # the tiny model has layers 0 and 1
    with pytest.raises(UsageError, match="--lora-layers 5: this model has 2 layers"):
        run(tiny, tmp_path / "x", "sft", files["sft"], lora_layers=5)


def test_right_padded_batches_need_no_padding_mask(tiny: Path):
    import torch
    import transformers

    from lingxi.tune.tokens import Example, collate, hidden_states

    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny)).eval()
    batch = collate([Example([5, 6, 7, 8, 9], [5] * 5), Example([10, 11], [10] * 2)], pad_id=0, device="cpu")
    with torch.no_grad():
        fast = hidden_states(model, batch)  # right padding: the mask-free causal path
        masked = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        alone = model.get_decoder()(input_ids=torch.tensor([[10, 11]])).last_hidden_state
    real = batch["attention_mask"].bool()
    assert torch.allclose(fast[real], masked[real], atol=1e-5)
    assert torch.allclose(fast[1, :2], alone[0], atol=1e-5)  # the padded row scores as if alone
