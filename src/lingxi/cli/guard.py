"""``lingxi guard …``: find and redact personal data, score prompt injections; and the
``lingxi eval pii`` / ``lingxi eval injection`` commands (registered on the eval group)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from lingxi.cli import emit_json, settings
from lingxi.errors import UsageError


@click.group("guard")
def guard() -> None:
    """Personal data, prompt injection and content policy, for Chinese and English text."""


def _read_jsonl(path: str, field: str = "text") -> Iterator[dict[str, Any]]:
    """JSON objects with a string ``field``, one per line ("-" = stdin); a bad line is one
    readable error naming it (invalid UTF-8 included)."""
    from lingxi.guard._io import iter_jsonl

    for n, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise UsageError(f"{path}:{n}: expected a JSON object with a string '{field}'")
        yield row


def _out(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@guard.command("pii")
@click.argument("input_path", metavar="INPUT.jsonl")
@click.option("--lang", type=click.Choice(["zh", "en", "auto"]), default="auto", show_default=True,
              help="Which language's name/place/organisation rules run (number patterns always do).")
@click.option("--entities", default=None, help="Comma-separated labels to report (default: all).")
def pii(input_path: str, lang: str, entities: str | None) -> None:
    """Find personal data: one line {"text", "spans": [{"start","end","label","score"}]} per input line."""
    from lingxi.guard.pii import PiiDetector

    detector = PiiDetector([e.strip() for e in entities.split(",")] if entities else None, lang=lang)  # type: ignore[arg-type]
    for row in _read_jsonl(input_path):
        _out({"text": row["text"], "spans": [s.to_dict() for s in detector.detect(row["text"])]})


@guard.command("redact")
@click.argument("text")
@click.option("--lang", type=click.Choice(["zh", "en", "auto"]), default="auto", show_default=True)
@click.option("--action", "default", type=click.Choice(["redact", "mask", "hash", "pseudonymize"]), default="redact",
              show_default=True, help="What to do with each entity.")
@click.option("--policy", "policy", multiple=True, metavar="LABEL=ACTION",
              help="Per-label action, e.g. CN_PHONE=mask (repeatable).")
def redact_cmd(text: str, lang: str, default: str, policy: tuple[str, ...]) -> None:
    """Print TEXT with its personal data replaced ("-" reads stdin)."""
    from lingxi.guard.redact import Pseudonyms, Redactor

    if text == "-":
        text = sys.stdin.read()
    rules = {}
    for item in policy:
        label, sep, action = item.partition("=")
        if not sep:
            raise UsageError(f"--policy {item!r}: expected LABEL=ACTION")
        rules[label.strip()] = action.strip()
    click.echo(Redactor(rules, default=default, lang=lang).redact(text, Pseudonyms()).text)  # type: ignore[arg-type]


@guard.command("injection")
@click.argument("input_path", metavar="INPUT.jsonl")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="A model from 'lingxi guard train-injection' (default: the bundled one).")
def injection(input_path: str, model_path: str | None) -> None:
    """Score prompt injection / jailbreak: one line {"text", "score", "label"} per input (label 1 = injection)."""
    from lingxi.guard.injection import load_model

    model = load_model(model_path)
    for row in _read_jsonl(input_path):
        score = model.score(row["text"])
        _out({"text": row["text"], "score": round(score, 4), "label": int(score >= model.threshold)})


@guard.command("train-injection")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(dir_okay=False),
              help='JSONL {"text","label"} (1 = injection); repeatable.')
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Where to write the model (JSON).")
@click.option("--target-fpr", default=0.03, show_default=True, type=click.FloatRange(0, 0.5),
              help="The threshold keeps the false-positive rate on a held-back fifth at or below this.")
@click.option("--epochs", default=300, show_default=True, type=click.IntRange(1, 10000))
def train_injection_cmd(data: tuple[str, ...], out: str, target_fpr: float, epochs: int) -> None:
    """Train the injection classifier (the bundled one is made by benchmarks/guard_injection.py)."""
    from lingxi.guard.injection import read_labelled, train_injection

    model = train_injection(read_labelled(data), target_fpr=target_fpr, epochs=epochs,
                            meta={"trained_by": "lingxi guard train-injection"})
    model.save(out)
    click.echo(f"wrote {out}: {model.meta['features']} features, threshold {model.threshold:.4f}")


@guard.command("policy")
@click.argument("input_path", metavar="INPUT.jsonl")
@click.option("--tenant", default="", help="Use this tenant's word lists ([guard.tenants.NAME.policy]).")
def policy_cmd(input_path: str, tenant: str) -> None:
    """Check texts against the configured word lists: one line {"text", "decision", "hits"} per input
    (decision: block, warn, log or null)."""
    from pathlib import Path

    from lingxi.guard.policy import ContentPolicy

    s = settings()
    cfg = s.guard.policy
    override = s.guard.tenants[tenant].policy if tenant in s.guard.tenants else {}
    cats = override.get("categories") if override.get("categories") is not None else {
        n: c.model_dump() for n, c in cfg.categories.items()}
    if not cats:
        raise UsageError("no word lists configured: add [guard.policy.categories.NAME] to the config")
    base = Path(s.source).parent if s.source else Path(".")
    policy = ContentPolicy.from_mapping(cats, base)
    for row in _read_jsonl(input_path):
        hits = policy.check(row["text"])
        _out({"text": row["text"], "decision": policy.decision(hits), "hits": [h.to_dict() for h in hits]})


@guard.command("scan")
@click.argument("input_path", metavar="INPUT.jsonl")
def scan(input_path: str) -> None:
    """Indirect injection in documents: one line {"id", "score", "flagged", "start", "end"} per input line
    (the most suspicious window of each document)."""
    from lingxi.guard.injection import scan_document

    for n, row in enumerate(_read_jsonl(input_path), 1):
        found = scan_document(row["text"])
        _out({"id": row.get("id", n), "score": round(found.score, 4), "flagged": found.flagged,
              "start": found.start, "end": found.end})


# ---------------------------------------------------------------- lingxi eval pii / injection


@click.command("pii")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help='JSONL {"text", "spans": [{"start","end","label"}]}')
@click.option("--lang", type=click.Choice(["zh", "en", "auto"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"precision","recall","f1","f2","per_label"}.')
def eval_pii(data: str, lang: str, as_json: bool) -> None:
    """Precision, recall, F1 and F2 of the PII detector on labelled spans."""
    from lingxi.guard.evaluation import evaluate_pii

    result = evaluate_pii(data, lang=lang)
    if as_json:
        emit_json(result)
        return
    click.echo(f"texts={result['texts']}  precision={result['precision']:.4f}  recall={result['recall']:.4f}  "
               f"F1={result['f1']:.4f}  F2={result['f2']:.4f}")
    for label, m in result["per_label"].items():
        click.echo(f"  {label:<18} P={m['precision']:.3f} R={m['recall']:.3f} F2={m['f2']:.3f} (tp {m['tp']}, fp {m['fp']}, fn {m['fn']})")


@click.command("injection")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help='JSONL {"text", "label"} (1 = injection).')
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help='Print {"tpr","fpr","auc","threshold","tpr_at_fpr_01",...}.')
def eval_injection(data: str, model_path: str | None, as_json: bool) -> None:
    """TPR/FPR at the model's threshold, AUC and TPR at 5 % / 1 % FPR of the injection classifier."""
    from lingxi.guard.evaluation import evaluate_injection

    result = evaluate_injection(data, model_path)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"tpr={result['tpr']:.4f} fpr={result['fpr']:.4f} auc={result['auc']:.4f} "
                   f"threshold={result['threshold']:.4f} tpr@fpr<=5%={result['tpr_at_fpr_05']:.4f} "
                   f"tpr@fpr<=1%={result['tpr_at_fpr_01']:.4f}")
