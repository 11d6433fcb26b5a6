"""Write the labelled support-check pairs from the hand-written items (run from the repository root).

Items en21-en25 and zh21-zh25 are the held-out split: they were written with the rest, before
the check was tuned, and only measured at the end."""

import json
from pathlib import Path

from lingxi.knowledge.answer_eval import build_pairs, read_jsonl

HERE = Path(__file__).parent
HELD_OUT = {f"{lang}{n}" for lang in ("en", "zh") for n in range(21, 26)}

for lang in ("en", "zh"):
    items = read_jsonl(HERE / f"items_{lang}.jsonl")
    pairs = build_pairs(items)
    for split, keep in (("dev", False), ("heldout", True)):
        rows = [p | {"lang": lang} for p in pairs if (p["item"] in HELD_OUT) == keep]
        with open(HERE / f"pairs_{lang}_{split}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(lang, split, len(rows))
