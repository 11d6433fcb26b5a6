"""``lingxi eval generation`` / ``compare`` / ``report``: sacrebleu's numbers, Chinese handling,
the paired bootstrap against sacrebleu's own, the result format and the bad-input errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from lingxi.cli import main
from lingxi.errors import UsageError
from lingxi.evaluate import EvalRun, compare_runs, evaluate_generation
from lingxi.evaluate.answers import exact_match, f1

sacrebleu = pytest.importorskip("sacrebleu")

ZH_REFS = ["今天的天气很好，我们去公园散步吧。", "他在北京大学学习计算机科学。", "这本书的价格是三十五元。"]
ZH_HYPS = ["今天天气很好，我们去公园散步。", "他在北京大学读计算机。", "这本书三十五元。"]


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(args)
    return done.value.code


def synthetic(seed: int, n: int = 40):
    rng = random.Random(seed)
    words = "the cat sat on a mat while dogs ran across green fields under a bright blue sky".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 14))) for _ in range(n)]

    def noisy(line, p):
        return " ".join(w for w in line.split() if rng.random() > p) or line.split()[0]

    return refs, [noisy(r, 0.25) for r in refs], [noisy(r, 0.22) for r in refs], [noisy(r, 0.3) for r in refs]


def test_zh_scores_equal_sacrebleu_cli_byte_for_byte(tmp_path):
    hyp, ref = write(tmp_path / "h.txt", ZH_HYPS), write(tmp_path / "r.txt", ZH_REFS)
    run = evaluate_generation(hyp, [ref], metrics="bleu,chrf,ter", lang="zh")
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", ref, "-i", hyp, "-l", "en-zh", "-m", "bleu", "chrf",
                          "ter", "--ter-normalized", "--ter-asian-support", "-b", "-w", "10"],
                         capture_output=True, text=True, check=True)
    assert [f"{run.summary[k]:.10f}" for k in ("bleu", "chrf", "ter")] == [x.strip(",") for x in cli.stdout.split() if x not in "[]"]
    assert "tok:zh" in run.config["signatures"]["bleu"]


def test_two_references_equal_sacrebleu_api(tmp_path):
    refs, a, b, _ = synthetic(1)
    ref2 = [" ".join(reversed(r.split())) for r in refs]
    run = evaluate_generation(write(tmp_path / "h", a), [write(tmp_path / "r1", refs), write(tmp_path / "r2", ref2)],
                              metrics="bleu,chrf,ter")
    assert run.summary["bleu"] == sacrebleu.corpus_bleu(a, [refs, ref2]).score
    assert run.summary["chrf"] == sacrebleu.corpus_chrf(a, [refs, ref2]).score
    assert run.summary["ter"] == sacrebleu.corpus_ter(a, [refs, ref2]).score
    assert run.config["references"] == 2 and set(run.data["files"]) == {"hyp", "ref1", "ref2"}


def test_chinese_rouge_is_character_level_and_english_uses_rouge_score(tmp_path):
    run = evaluate_generation(write(tmp_path / "h", ["我喜欢猫"]), [write(tmp_path / "r", ["我喜欢小猫"])],
                              metrics="rouge", lang="zh")
    # 4 of 4 hypothesis characters match, 4 of 5 reference characters: F = 2*1*0.8/1.8
    assert run.summary["rougeL"] == pytest.approx(100 * 2 * 0.8 / 1.8)
    assert "CJK characters" in run.config["rouge_tokenizer"]
    en = evaluate_generation(write(tmp_path / "he", ["The cat sat."]), [write(tmp_path / "re", ["the cat sat down"])],
                             metrics="rouge")
    assert en.summary["rouge1"] == pytest.approx(100 * 2 * 1 * 0.75 / 1.75)


def test_exact_and_f1_follow_squad_and_cmrc():
    assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert f1("a big red house", ["red house"]) == pytest.approx(0.8)  # "a" is dropped: P=2/3, R=1
    assert exact_match("北京大学。", ["北京大学"]) == 1.0
    # CMRC F1 is the longest common *contiguous* run: "北京" (2) of 4 predicted, 2 of 3 gold
    assert f1("北京天津", ["在北京"]) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert f1("完全不同", ["北京"]) == 0.0


def test_compare_p_value_equals_sacrebleu_paired_bootstrap(tmp_path):
    from sacrebleu.metrics import BLEU, CHRF, TER
    from sacrebleu.significance import PairedTest

    refs, a, b, _ = synthetic(2)
    ref = write(tmp_path / "r", refs)
    run_a = evaluate_generation(write(tmp_path / "a", a), [ref], metrics="bleu,chrf,ter,f1")
    run_b = evaluate_generation(write(tmp_path / "b", b), [ref], metrics="bleu,chrf,ter,f1")
    rows = {r["metric"]: r for r in compare_runs(run_a, run_b)["rows"]}
    _, scores = PairedTest([("a", a), ("b", b)], {"BLEU": BLEU(), "chrF2": CHRF(), "TER": TER()}, [refs],
                           test_type="bs")()
    for ours, theirs in (("bleu", "BLEU"), ("chrf", "chrF2"), ("ter", "TER")):
        assert rows[ours]["p_value"] == pytest.approx(scores[theirs][1].p_value, abs=1e-12)
        assert rows[ours]["b_mean"] == pytest.approx(scores[theirs][1].mean, rel=1e-6)
    assert rows["f1"]["test"] == "paired bootstrap of the mean" and 0 < rows["f1"]["p_value"] <= 1
    assert rows["ter"]["better"] == "lower"


def test_compare_different_references_gives_no_p_value(tmp_path):
    refs, a, _, _ = synthetic(3)
    run_a = evaluate_generation(write(tmp_path / "a", a), [write(tmp_path / "r1", refs)], metrics="bleu")
    run_b = evaluate_generation(write(tmp_path / "b", a), [write(tmp_path / "r2", refs[::-1])], metrics="bleu")
    result = compare_runs(run_a, run_b)
    assert result["rows"][0]["p_value"] is None and "different references" in result["note"]


def test_cli_save_compare_and_html(tmp_path, capsys):
    refs, a, b, _ = synthetic(4)
    ref = write(tmp_path / "r", refs)
    for name, hyps in (("a", a), ("b", b)):
        assert run_cli(["eval", "generation", "--hyp", write(tmp_path / f"{name}.txt", hyps), "--ref", ref,
                        "--json", "--save", str(tmp_path / f"{name}.json")]) == 0
    out = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "}")
    assert set(out) == {"bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "exact", "f1"}
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["lingxi_eval"] == 1 and saved["versions"]["sacrebleu"] and len(saved["items"]) == len(refs)
    assert len(saved["data"]["sha256"]) == 64
    assert run_cli(["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                    "--html", str(tmp_path / "c.html")]) == 0
    table = capsys.readouterr().out
    assert "bleu" in table and "paired bootstrap over 40 items" in table
    page = (tmp_path / "c.html").read_text()
    assert page.count("<svg") >= 2 and "Comparison" in page and "http" not in page.split("<svg")[0]


@pytest.mark.parametrize("args,message", [
    (["--metrics", "bleu,blue"], "unknown metric 'blue'"),
    (["--ref", "SHORT"], "line 3 of HYP has no partner in SHORT"),
    (["--hyp", "EMPTY"], "hypothesis EMPTY is empty"),
    (["--ref", "MISSING"], "reference file not found: MISSING"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, capsys, args, message):
    paths = {"HYP": write(tmp_path / "hyp.txt", ["a", "b", "c"]), "SHORT": write(tmp_path / "short.txt", ["a", "b"]),
             "EMPTY": str(tmp_path / "empty.txt"), "MISSING": str(tmp_path / "missing.txt")}
    (tmp_path / "empty.txt").write_text("")
    base = {"--hyp": paths["HYP"], "--ref": write(tmp_path / "ref.txt", ["a", "b", "c"])}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = paths.get(value, value)
    code = run_cli(["eval", "generation", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    for key, value in paths.items():
        message = message.replace(key, value)
    assert message in err


def test_run_file_that_is_not_a_result_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"bleu": 1}')
    with pytest.raises(UsageError, match="not a Lingxi evaluation result"):
        EvalRun.load(tmp_path / "x.json")


@pytest.mark.slow
def test_rouge_equals_google_rouge_score_on_random_text():
    """Our ROUGE equals rouge-score's (slow tier only because rouge-score imports NLTK: 2.3 s)."""
    from rouge_score import rouge_scorer

    from lingxi.evaluate.generation import rouge, rouge_tokens

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    refs, a, b, c = synthetic(5, n=200)
    for hyp, ref in zip(a + b + c + ["", "x"], refs * 3 + ["a b", ""], strict=True):
        theirs = scorer.score(ref, hyp)
        ours = rouge(rouge_tokens(hyp, "en"), rouge_tokens(ref, "en"))
        assert ours == pytest.approx({k: v.fmeasure for k, v in theirs.items()}, abs=1e-12)


def test_compare_gives_no_p_value_for_too_few_items(tmp_path):
    ref = write(tmp_path / "r", ZH_REFS)
    run_a = evaluate_generation(write(tmp_path / "a", ZH_HYPS), [ref], metrics="bleu", lang="zh")
    run_b = evaluate_generation(write(tmp_path / "b", ZH_REFS), [ref], metrics="bleu", lang="zh")
    result = compare_runs(run_a, run_b)
    assert result["rows"][0]["p_value"] is None and "too few" in result["note"]
