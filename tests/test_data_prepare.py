"""lingxi data prepare / from-feedback: reading, cleaning, duplicates, split, QC (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lingxi.errors import UsageError
from lingxi.tune import data as D
from tune_fixtures import write_jsonl


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_kinds_are_told_apart_and_instances_expand():
    assert D.parse_record({"instruction": "a", "output": "b"}) == [("sft", {"instruction": "a", "input": "", "output": "b"})]
    assert D.parse_record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})[0][0] == "chat"
    assert D.parse_record({"prompt": "p", "chosen": "c", "rejected": "r"})[0][0] == "preference"
    assert D.parse_record({"text": "raw"}) == [("text", {"text": "raw"})]
    rows = D.parse_record({"instruction": "翻译", "instances": [{"input": "a", "output": "甲"}, {"input": "b", "output": "乙"}]})
    assert [r[1]["output"] for r in rows] == ["甲", "乙"]
    with pytest.raises(ValueError, match="have: answer, question"):
        D.parse_record({"question": "q", "answer": "a"})


def test_hh_rlhf_dialogues_split_at_the_last_shared_assistant_turn():
    shared = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to pick a lock?\n\nAssistant:"
    (kind, row), = D.parse_record({"chosen": shared + " I can't help with that.", "rejected": shared + " Use a pin."})
    assert kind == "preference"
    assert row["prompt"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                             {"role": "user", "content": "how to pick a lock?"}]
    assert (row["chosen"], row["rejected"]) == ("I can't help with that.", "Use a pin.")
    # dialogues that branch one turn earlier keep the rest of each branch in the answers
    (_, row), = D.parse_record({"chosen": "\n\nHuman: q\n\nAssistant: A\n\nHuman: more\n\nAssistant: B",
                                "rejected": "\n\nHuman: q\n\nAssistant: C"})
    assert row["prompt"] == [{"role": "user", "content": "q"}]
    assert row["chosen"].startswith("A") and row["rejected"] == "C"


def test_malformed_lines_are_listed_with_numbers_or_stop_the_run(tmp_path: Path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"instruction": "a", "output": "b"}\nnot json\n\n{"question": 1}\n{"text": "ok"}\n', encoding="utf-8")
    problems: list[D.Problem] = []
    rows = D.read_rows(f, problems=problems)
    assert [r.line for r in rows] == [1, 5]
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [(2, "not valid JSON"), (4, "no known fields")]
    with pytest.raises(UsageError, match=r"d.jsonl:2: not valid JSON"):
        D.read_rows(f, on_error="stop")
    with pytest.raises(UsageError, match="not found"):
        D.read_rows(tmp_path / "missing.jsonl")


def test_csv_json_array_and_txt_files(tmp_path: Path):
    (tmp_path / "a.csv").write_text("instruction,input,output\n问,,答\nq2,x,a2\n", encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([{"text": "one"}, {"text": "two"}]), encoding="utf-8")
    (tmp_path / "c.txt").write_text("first paragraph\nstill first\n\n\nsecond\n", encoding="utf-8")
    csv_rows = D.read_rows(tmp_path / "a.csv")
    assert [(r.line, r.data["output"]) for r in csv_rows] == [(2, "答"), (3, "a2")]
    assert [r.data["text"] for r in D.read_rows(tmp_path / "b.json")] == ["one", "two"]
    txt = D.read_rows(tmp_path / "c.txt")
    assert [r.data["text"] for r in txt] == ["first paragraph\nstill first", "second\n"]


def test_normalise_nfkc_html_and_whitespace():
    assert D.normalise("ＡＢＣ１２３，　全角") == "ABC123, 全角"
    assert D.normalise("<p>Hello&nbsp;<b>world</b></p><script>x()</script>") == "Hello world"
    assert D.normalise("if a < b and c > d:") == "if a < b and c > d:"  # no tag: untouched
    assert D.normalise("  a \t b\n\n\n\nc\u200b  ") == "a b\n\nc"


def test_language_by_script():
    assert D.language("合同的违约责任由双方约定") == "zh"
    assert D.language("The contract says 违约 twice") == "en"
    assert D.language("根据 GDPR 第 17 条，用户有权要求删除") == "zh"
    assert D.language("Привет мир") == "other"


def test_exact_and_near_duplicates_are_removed():
    base = "The tenant must pay the rent on the first day of every month, by bank transfer to the landlord."
    rows = [D.Row("text", {"text": base}), D.Row("text", {"text": base}),
            D.Row("text", {"text": base.replace("first", "1st")}), D.Row("text", {"text": "An unrelated sentence about cats."})]
    kept, exact, near = D.dedupe(rows, near_threshold=0.7)
    assert (exact, near) == (1, 1)
    assert [r.data["text"] for r in kept] == [base, "An unrelated sentence about cats."]
    kept, exact, near = D.dedupe(rows, near_threshold=None)
    assert (len(kept), exact, near) == (3, 1, 0)


def test_preference_qc_length_bias_and_agreement():
    rows = [D.Row("preference", {"prompt": "p", "chosen": "a long careful answer", "rejected": "no"}) for _ in range(3)]
    rows.append(D.Row("preference", {"prompt": "p", "chosen": "no", "rejected": "a long careful answer"}))
    qc = D.preference_qc(rows)
    assert qc["chosen_longer"] == 0.75 and qc["length_bias"] is True
    assert qc["agreement"] == 0.75 and qc["conflicting_pairs"] == 1


def test_prepare_writes_split_files_and_report(tmp_path: Path):
    rows = [{"instruction": f"Question {i}: what is {i} squared?", "output": f"<b>{i * i}</b>"} for i in range(20)]
    rows += [rows[0], {"instruction": "empty", "output": "   "}, {"instruction": "long", "output": "x" * 500}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write("{broken\n")
    report = D.prepare([src], tmp_path / "out", max_chars=300, validation=0.2, seed=3, pii=False)
    assert report.read == 24 and report.train + report.validation == 20
    assert report.removed == {"malformed": 1, "empty output": 1, "longer than 300 characters": 1, "exact duplicate": 1}
    assert report.problems == ["in.jsonl:24: not valid JSON (Expecting property name enclosed in double quotes at column 2)"]
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    val = read_jsonl(tmp_path / "out" / "validation.jsonl")
    assert (len(train), len(val)) == (16, 4)
    assert all("<b>" not in r["output"] and r["lang"] == "en" for r in train + val)
    assert {r["instruction"] for r in train}.isdisjoint({r["instruction"] for r in val})
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["stats"]["train"]["rows"] == 16 and saved["pii"] == {"status": "off"}


def test_prepare_refuses_when_nothing_is_left(tmp_path: Path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "a", "output": ""}])
    with pytest.raises(UsageError, match="no usable rows left .*1 empty output"):
        D.prepare([src], None, pii=False)


def test_language_filter(tmp_path: Path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "中文的句子，讲合同。"}, {"text": "An English sentence."}])
    report = D.prepare([src], None, languages=("zh",), validation=0, pii=False)
    assert report.train == 1 and report.removed == {"language en": 1}


def test_from_feedback_makes_sft_rows_and_pairs(tmp_path: Path):
    q = [{"role": "user", "content": "退货政策是什么？"}]
    fb = [
        {"messages": q, "answer": "七天无理由退货。", "rating": 1},
        {"messages": q, "answer": "不知道。", "rating": -1},
        {"messages": q, "answer": "Seven days.", "rating": 1},
        {"messages": [{"role": "user", "content": "hi"}], "answer": "bad", "rating": -1},
        {"messages": [], "answer": "orphan", "rating": 1},
    ]
    report = D.from_feedback(fb, tmp_path)
    assert report == {**report, "sft_rows": 2, "preference_pairs": 2, "skipped": 1}
    pairs = read_jsonl(tmp_path / "preference.jsonl")
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("七天无理由退货。", "不知道。"), ("Seven days.", "不知道。")}
    sft = read_jsonl(tmp_path / "sft.jsonl")
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "七天无理由退货。"}
    # the files it writes are valid training data for the recipes
    assert [r.kind for r in D.read_rows(tmp_path / "preference.jsonl")] == ["preference", "preference"]


def test_pii_is_scrubbed_through_the_guard(tmp_path: Path):
    import lingxi.guard.redact  # noqa: F401  (a broken guard fails here instead of skipping)
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"instruction": "Reply to the customer", "output": "Write to jane.doe@example.com or call +1 415 555 0132."},
        {"instruction": "Summarise the ticket", "output": "The printer on floor two is jammed."},
    ])
    report = D.prepare([src], tmp_path / "out", validation=0)
    assert report.pii["status"] == "scrubbed" and report.pii["rows_changed"] == 1
    assert report.pii["entities_redacted"] >= 2
    text = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    assert "jane.doe@example.com" not in text and "555 0132" not in text and "<EMAIL" in text


def test_from_feedback_cli_reads_the_gateway_store(tmp_path: Path, capsys, monkeypatch):
    from lingxi.cli import main
    from lingxi.stores.feedback import SQLiteFeedbackStore

    monkeypatch.setenv("LINGXI_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as exit_:
        main(["data", "from-feedback", "--out", str(tmp_path / "fb")])
    assert exit_.value.code == 2 and "no feedback recorded yet" in capsys.readouterr().err
    (tmp_path / "home" / "gateway").mkdir(parents=True)
    store = SQLiteFeedbackStore(tmp_path / "home" / "gateway" / "feedback.db")
    q = [{"role": "user", "content": "How long is the warranty?"}]
    store.add(response_id="r1", model="smollm2", rating=1, messages=q, answer="Two years.")
    store.add(response_id="r2", model="smollm2", rating=-1, messages=q, answer="Forever!")
    store.close()
    with pytest.raises(SystemExit) as exit_:
        main(["data", "from-feedback", "--out", str(tmp_path / "fb")])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out)["preference_pairs"] == 1
    assert read_jsonl(tmp_path / "fb" / "preference.jsonl") == [{"prompt": q, "chosen": "Two years.", "rejected": "Forever!"}]


def test_prepare_cli_reports_skipped_lines(tmp_path: Path, capsys):
    from lingxi.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "one document"}\n{oops\n{"text": "another document"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["data", "prepare", str(src), "--out", str(tmp_path / "o"), "--no-pii", "--validation", "0"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "skipped in.jsonl:2: not valid JSON" in captured.err and json.loads(captured.out)["train"] == 2
    with pytest.raises(SystemExit) as exit_:
        main(["data", "prepare", str(src), "--out", str(tmp_path / "o"), "--on-error", "stop"])
    assert exit_.value.code == 2 and "in.jsonl:2" in capsys.readouterr().err
