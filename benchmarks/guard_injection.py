"""Train and measure the prompt-injection classifier (Chinese and English).

Builds a training set and a held-out set from public data plus the examples written for Lingxi
(``benchmarks/data/guard/injection_{train,heldout}.jsonl``):

- deepset/prompt-injections: ``train.jsonl`` -> training, ``test.jsonl`` -> held out;
- ordinary Chinese instructions (BELLE seed tasks), Chinese questions (CMRC 2018 queries),
  English chat openings (hh-rlhf first human turns) -> negatives, split by a hash of the text;
- DBpedia entity queries -> held-out negatives only.

Prints JSON: the held-out TPR/FPR at the shipped threshold, TPR at FPR <= 5 % and <= 1 %, AUC,
per-language numbers, the anchor (Meta Prompt Guard) and the classifier's latency per prompt.
``--write-model PATH`` saves the trained model (the package ships
``src/lingxi/guard/injection_model.json`` made this way)::

    python benchmarks/guard_injection.py --data-dir ../shared/data \
        --write-model src/lingxi/guard/injection_model.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from lingxi.guard.injection import injection_metrics, load_model, read_labelled, train_injection

HERE = Path(__file__).parent / "data" / "guard"
ANCHOR = {"meta_prompt_guard_ood": {"tpr": 0.975, "fpr": 0.039}, "meta_prompt_guard_multilingual": {"tpr": 0.915, "fpr": 0.053}}


def _bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_sets(data_dir: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    train = read_labelled([data_dir / "prompt-injections-deepset" / "train.jsonl", HERE / "injection_train.jsonl"])
    held = read_labelled([data_dir / "prompt-injections-deepset" / "test.jsonl", HERE / "injection_heldout.jsonl"])

    def split(texts: list[str], train_share: float, limit: int | None = None) -> None:
        texts = [t.strip() for t in texts if t.strip()][:limit]
        for t in texts:
            (train if _bucket(t) < train_share else held).append((t, 0))

    belle = _jsonl(data_dir / "belle-zh-seed-tasks.json")
    split([r["instruction"] + ("\n" + r["instances"][0]["input"] if r["instances"][0].get("input") else "")
           for r in belle], 0.7)
    split([r["text"] for r in _jsonl(data_dir / "cmrc2018-trial-zh" / "queries.jsonl")], 0.5)
    firsts = []
    for r in _jsonl(data_dir / "hh-rlhf-harmless-test" / "pairs.jsonl"):
        m = re.search(r"Human: (.*?)\n\nAssistant:", r["chosen"], re.S)
        if m:
            firsts.append(m.group(1))
    split(sorted(set(firsts)), 0.6, limit=1000)
    held.extend((r["text"], 0) for r in _jsonl(data_dir / "dbpedia-5k-en" / "queries.jsonl"))
    return train, held


def _lang(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en/de"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, type=Path, help="the shared public data folder")
    ap.add_argument("--write-model", type=Path, default=None, help="save the trained model here")
    ap.add_argument("--model", type=Path, default=None, help="evaluate this model instead of training one")
    args = ap.parse_args()

    train, held = build_sets(args.data_dir)
    t0 = time.perf_counter()
    if args.model:
        model = load_model(args.model)
    else:
        model = train_injection(train, meta={"trained_by": "benchmarks/guard_injection.py"})
        if args.write_model:
            model.save(args.write_model)
    train_s = time.perf_counter() - t0
    texts = [t for t, _y in held]
    labels = [y for _t, y in held]
    t0 = time.perf_counter()
    scores = [model.score(t) for t in texts]
    per_prompt_ms = (time.perf_counter() - t0) / len(texts) * 1000
    result = {
        "train": {"examples": len(train), "injections": sum(y for _t, y in train), "seconds": round(train_s, 1)},
        "heldout": {k: round(v, 4) if isinstance(v, float) else v
                    for k, v in injection_metrics(labels, scores, model.threshold).items()},
        "by_language": {},
        "latency_ms_per_prompt": round(per_prompt_ms, 3),
        "anchor": ANCHOR,
        "target": "tpr >= 0.90 at fpr <= 0.05",
        "features": model.meta.get("features"),
    }
    for lang in ("zh", "en/de"):
        sel = [(y, s) for t, y, s in zip(texts, labels, scores) if _lang(t) == lang]
        if {y for y, _s in sel} == {0, 1}:
            m = injection_metrics([y for y, _s in sel], [s for _y, s in sel], model.threshold)
            result["by_language"][lang] = {k: round(m[k], 4) for k in ("tpr", "fpr", "tpr_at_fpr_05", "tpr_at_fpr_01", "auc")} | {
                "positives": m["positives"], "negatives": m["negatives"]}
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    print()


if __name__ == "__main__":
    main()
