"""Several LoRA adapters over one base on the transformers engine (fast tier: a tiny random Llama
and tiny random adapters, built in a second): named models that name the same base share one copy
of it, each request runs with its own model's adapter (or none), and each answers exactly as a
model holding that adapter alone does."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tune_fixtures import build_tiny_model

pytest.importorskip("peft")
PROMPT = [{"role": "user", "content": "The capital of France is"}]


def _adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) A and B: it changes the base's answers."""
    import peft
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    lora = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                           task_type="CAUSAL_LM")
    peft.get_peft_model(model, lora).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("adapters")
    base = build_tiny_model(root / "base")
    return base, [_adapter(base, root / f"lora{i}", seed=i) for i in range(3)]


def _engine(name: str, base: Path, adapters: list[Path], **kw: object):
    from lingxi.config import TransformersModel
    from lingxi.engines.transformers import TransformersEngine

    return TransformersEngine(name, TransformersModel(engine="transformers", path=str(base), device="cpu",
                                                      adapters=[str(a) for a in adapters], **kw))


def _bases_of(base: Path) -> list:
    """The shared bases this test's tiny model is loaded as (other tests' models may be loaded too)."""
    from lingxi.engines import transformers as hf

    return [key for key in hf._bases if key[0] == str(base.resolve())]


def _answer(engine) -> str:
    from lingxi.engines import GenerationParams

    return engine.generate(PROMPT, GenerationParams(max_tokens=12, temperature=0)).text


def test_models_over_one_base_share_it_and_answer_as_their_adapter_alone(tiny):

    base, loras = tiny
    alone = []
    for i, lora in enumerate(loras):  # each adapter with the base to itself: the reference answers
        engine = _engine(f"alone{i}", base, [lora])
        alone.append(_answer(engine))
        engine.close()
    assert not _bases_of(base)  # the last user's close dropped the base

    plain = _engine("plain", base, [])
    named = [_engine(f"lora{i}", base, [lora]) for i, lora in enumerate(loras)]
    try:
        assert all(e.model is plain.model for e in named)  # one copy of the weights
        assert len(_bases_of(base)) == 1 and plain.info.details["models_on_base"] == 4
        answers = [_answer(e) for e in named]
        assert answers == alone
        assert len(set(answers)) == 3  # the adapters do change the answers
        # the model that names the base alone answers with every adapter switched off
        import torch
        import transformers

        reference = transformers.AutoModelForCausalLM.from_pretrained(str(base)).eval()
        ids = plain.tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)["input_ids"]
        with torch.no_grad():
            out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                     do_sample=False, pad_token_id=plain.tokenizer.pad_token_id)
        assert _answer(plain) == plain.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert _answer(plain) not in answers

        # requests to the four models from several threads at once: each still gets its own answer
        engines = [plain, *named] * 3
        got: list[str | None] = [None] * len(engines)

        def ask(i: int) -> None:
            got[i] = _answer(engines[i])

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(engines))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert got == [_answer(plain), *answers] * 3
    finally:
        for e in [plain, *named]:
            e.close()
    assert not _bases_of(base)


def test_closing_one_model_keeps_the_others_serving(tiny):
    base, loras = tiny
    first, second = _engine("a", base, [loras[0]]), _engine("b", base, [loras[1]])
    try:
        expected = _answer(second)
        first.close()
        assert second.info.details["models_on_base"] == 1
        assert _answer(second) == expected
        with pytest.raises(Exception, match="closed"):
            _answer(first)
    finally:
        first.close()
        second.close()


def test_a_private_base_merges_its_adapter_and_answers_the_same(tiny):
    base, loras = tiny
    shared = _engine("shared", base, [loras[1]])
    private = _engine("private", base, [loras[1]], share_base=False)
    try:
        assert private.model is not shared.model
        assert not private.info.details["shared_base"] and private.info.details["adapters"] == 0
        assert _answer(private) == _answer(shared)
    finally:
        shared.close()
        private.close()


def test_an_entry_with_two_adapters_applies_both(tiny):
    """Two adapters in one entry add up on the shared base, as merging both into a copy does."""
    base, loras = tiny
    both = _engine("both", base, loras[:2])
    one = _engine("one", base, loras[:1])
    merged = _engine("merged", base, loras[:2], share_base=False)
    try:
        alone = _answer(one)
        assert _answer(both) == _answer(merged)
        assert _answer(both) != alone
        assert _answer(one) == alone  # switched back to its one adapter after the two-adapter request
    finally:
        for e in (both, one, merged):
            e.close()


def test_config_entries_over_one_base_load_it_once(tiny, tmp_path: Path):
    """Through the config and ``load_engine``, as the gateway builds its models."""
    from lingxi.config import parse_config
    from lingxi.engines import load_engine

    base, loras = tiny
    models = {"base": {"engine": "transformers", "path": str(base), "device": "cpu"}}
    models |= {f"m{i}": {"engine": "transformers", "path": str(base), "device": "cpu", "adapters": [str(lora)]}
               for i, lora in enumerate(loras[:2])}
    models["other-dtype"] = {"engine": "transformers", "path": str(base), "device": "cpu", "dtype": "bfloat16"}
    settings = parse_config({"home": str(tmp_path / "home"), "default_model": "base", "models": models})
    engines = {name: load_engine(name, settings) for name in models}
    try:
        assert engines["m0"].model is engines["base"].model is engines["m1"].model
        assert engines["other-dtype"].model is not engines["base"].model  # another dtype is another base
        assert _answer(engines["m0"]) != _answer(engines["m1"])
    finally:
        for e in engines.values():
            e.close()


def test_a_missing_adapter_fails_before_the_base_loads(tiny, tmp_path: Path):
    from lingxi.errors import ModelFileNotFoundError

    base, _ = tiny
    with pytest.raises(ModelFileNotFoundError, match="adapter folder not found"):
        _engine("typo", base, [tmp_path / "nope"])
    assert not _bases_of(base)
