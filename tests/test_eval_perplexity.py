"""``lingxi eval perplexity``: the sliding window scores every token once; llama.cpp and
transformers agree on the bundled GGUF (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lingxi.config import parse_config
from lingxi.errors import ModelFileNotFoundError, ModelNotFoundError, UsageError
from lingxi.evaluate.perplexity import evaluate_perplexity, resolve_model, sliding_nll

TEXT = ("Perplexity measures how well a language model predicts a text. 困惑度衡量语言模型对文本的预测能力。"
        "Lower is better, and the same weights should give the same number through every backend. ") * 3


class BigramScorer:
    """A fake model whose next-token distribution depends on the previous token only, so a sliding
    window must give exactly the full-sequence NLL; counts the tokens it was shown."""

    n_vocab = 64

    def __init__(self):
        rng = np.random.default_rng(0)
        logits = rng.standard_normal((self.n_vocab, self.n_vocab))
        self.table = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        self.shown = 0

    def tokenize(self, text: str) -> list[int]:
        return [b % self.n_vocab for b in text.encode("utf-8")]

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        self.shown += len(tokens)
        return np.array([self.table[a, b] for a, b in zip(tokens, tokens[1:], strict=False)])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("context,stride", [(16, 8), (16, 16), (50, 7), (4096, 512)])
def test_sliding_window_scores_every_token_exactly_once(context, stride):
    scorer = BigramScorer()
    tokens = scorer.tokenize(TEXT)
    items = sliding_nll(tokens, scorer.logprobs, context, stride)
    full = -scorer.logprobs(tokens).sum()
    assert sum(i["scores"]["tokens"] for i in items) == len(tokens) - 1
    assert sum(i["scores"]["nll"] for i in items) == pytest.approx(full, rel=1e-12)
    spans = [i["span"] for i in items]
    assert spans[0][0] == 1 and spans[-1][1] == len(tokens)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_evaluate_perplexity_summary_and_format(tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    scorer = BigramScorer()
    run = evaluate_perplexity(str(gguf), data, scorer=scorer, context=32, stride=16, progress=False)
    tokens = scorer.tokenize(TEXT)
    full = -BigramScorer().logprobs(tokens).sum()
    assert run.summary["perplexity"] == pytest.approx(math.exp(full / (len(tokens) - 1)))
    assert run.summary["bits_per_byte"] == pytest.approx(full / math.log(2) / len(TEXT.encode()))
    assert run.kind == "perplexity" and run.config["context"] == 32 and run.data["files"]["data"]["sha256"]


def test_model_resolution_and_errors(tmp_path):
    settings = parse_config({})
    assert resolve_model("smollm2", settings).backend == "llamacpp"
    hf = resolve_model("smollm2", settings, backend="transformers")
    assert hf.backend == "transformers" and hf.gguf_file.endswith(".gguf")
    with pytest.raises(ModelNotFoundError):
        resolve_model("nosuch", settings)
    with pytest.raises(ModelFileNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path), settings)
    with pytest.raises(ModelFileNotFoundError, match="model not found"):
        resolve_model(str(tmp_path / "x.gguf"), settings)
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(UsageError, match="empty.txt is empty"):
        evaluate_perplexity("smollm2", tmp_path / "empty.txt", settings=settings)



@pytest.mark.parametrize("kind", ["gguf", "hf"])
def test_model_that_does_not_load_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, kind):
    """A truncated GGUF (llama.cpp refuses it) and a Hugging Face folder whose config.json is not
    JSON: exit code 1 (an engine error), one line on stderr naming the model, no traceback."""
    from lingxi.cli import main

    pytest.importorskip("llama_cpp" if kind == "gguf" else "transformers")
    monkeypatch.setenv("LINGXI_HOME", str(tmp_path / "home"))
    if kind == "gguf":
        model = tmp_path / "broken.gguf"
        model.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    else:
        model = tmp_path / "broken-hf"
        model.mkdir()
        (model / "config.json").write_text("{not json", encoding="utf-8")
    data = tmp_path / "t.txt"
    data.write_text("The quick brown fox jumps over the lazy dog.", encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["eval", "perplexity", "--model", str(model), "--data", str(data)])
    err = capsys.readouterr().err
    assert done.value.code == 1 and err.count("\n") == 1, err
    assert "could not load" in err and model.name in err and "Traceback" not in err

@pytest.mark.slow
def test_llamacpp_and_transformers_agree_on_the_bundled_gguf(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("transformers")
    from lingxi.engines.bundled import smollm2_gguf

    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    runs = {b: evaluate_perplexity(str(smollm2_gguf()), data, backend=b, context=64, stride=32, progress=False)
            for b in ("llamacpp", "transformers")}
    assert runs["llamacpp"].summary["tokens"] == runs["transformers"].summary["tokens"]
    a, b = runs["llamacpp"].summary["perplexity"], runs["transformers"].summary["perplexity"]
    assert abs(a - b) / b < 0.01, (a, b)
