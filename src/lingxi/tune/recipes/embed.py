"""Recipe ``embed``: contrastive fine-tuning of a sentence-transformers embedder on
``{"query", "positive", "negative"?}`` rows.

setup -> evaluate before -> train -> evaluate after -> save.

Loss: in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss): each query must
score its own positive above every other passage of the batch (and its hard negative, when
given), cross-entropy over cosine similarities scaled by 20.

Eval: the held-out rows become a small retrieval task (corpus = their positives and negatives,
each query's positive relevant) scored with :func:`lingxi.evaluate.retrieval.evaluate_run`, the
metric code of ``lingxi eval retrieval``: ``ndcg@10`` (and recall@10, MRR@10) before/after.
Saved: a sentence-transformers folder in ``OUTPUT/adapter``; serve it with
``[embedders.NAME] engine = "sentence-transformers", path = ...``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError, missing_extra
from lingxi.tune.config import TuneConfig
from lingxi.tune.data import Problem, records
from lingxi.tune.loop import seed_everything, train
from lingxi.tune.setup import start

SCALE = 20.0


def read_pairs(path: str | os.PathLike[str], *, on_error: str = "skip",
               problems: list[Problem] | None = None) -> list[dict[str, str]]:
    """``{"query", "positive", "negative"?}`` rows of a JSONL/JSON/CSV file.

    Raises:
        UsageError: a missing file, or a bad row under ``on_error="stop"``.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"data file not found: {file}")
    problems = problems if problems is not None else []
    rows = []
    for line, record in records(file):
        ok = (isinstance(record, dict) and isinstance(record.get("query"), str)
              and isinstance(record.get("positive"), str) and record["query"].strip() and record["positive"].strip())
        if not ok:
            message = str(record) if isinstance(record, Exception) else "expected {query, positive[, negative]} text"
            if on_error == "stop":
                raise UsageError(f"malformed row at {file.name}:{line}: {message}")
            problems.append(Problem(file.name, line, message))
            continue
        row = {"query": record["query"], "positive": record["positive"]}
        if isinstance(record.get("negative"), str) and record["negative"].strip():
            row["negative"] = record["negative"]
        rows.append(row)
    return rows


def load_embedder(name: str) -> Any:
    """A sentence-transformers model: the bundled ``minilm`` or a local folder."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise missing_extra("embedder fine-tuning", "hf", exc) from exc
    if name == "minilm":
        from lingxi.engines.bundled import minilm_dir

        path = minilm_dir()
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UsageError(f"--embedder {name}: neither 'minilm' nor a sentence-transformers folder")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def retrieval_scores(model: Any, rows: list[dict[str, str]]) -> dict[str, Any]:
    """nDCG@10 / recall@10 / MRR@10 of the rows as a retrieval task (cosine similarity)."""
    import torch

    from lingxi.evaluate.retrieval import evaluate_run

    if not rows:
        return {}
    passages = list(dict.fromkeys([r["positive"] for r in rows] + [r["negative"] for r in rows if "negative" in r]))
    ids = {p: f"d{i}" for i, p in enumerate(passages)}
    with torch.no_grad():
        q = model.encode([r["query"] for r in rows], convert_to_tensor=True, normalize_embeddings=True)
        d = model.encode(passages, convert_to_tensor=True, normalize_embeddings=True)
    sims = q @ d.T
    run, qrels = {}, {}
    for i, r in enumerate(rows):
        order = torch.argsort(sims[i], descending=True)[:100].tolist()
        run[f"q{i}"] = [(f"d{j}", float(sims[i, j])) for j in order]
        qrels[f"q{i}"] = {ids[r["positive"]]: 1}
    scores = evaluate_run(run, qrels, k=10)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def finetune_embedder(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    # ---- setup
    s = start(cfg, home)
    seed_everything(cfg.seed)
    model = load_embedder(cfg.embedder)
    rows = s.train_rows
    before = retrieval_scores(model, s.eval_rows)

    # ---- loop
    model.train()

    def embed(texts: list[str]) -> Any:
        features = model.tokenize(texts)
        features = {k: v.to(s.device) if hasattr(v, "to") else v for k, v in features.items()}
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    def step(indices: list[int]) -> tuple[Any, int, dict[str, float]]:
        batch = [rows[i] for i in indices]
        passages = [r["positive"] for r in batch] + [r["negative"] for r in batch if "negative" in r]
        q, p = embed([r["query"] for r in batch]), embed(passages)
        logits = SCALE * q @ p.T
        loss = F.cross_entropy(logits, torch.arange(len(batch), device=logits.device))
        tokens = sum(len(t) for t in passages)  # characters: the embedder's tokenizer is not the point here
        return loss, tokens, {}

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    log = train(cfg, s.run, params, [len(r["query"]) + len(r["positive"]) for r in rows], step,
                desc=f"embed {Path(cfg.embedder).name}")

    # ---- save
    model.eval()
    after = retrieval_scores(model, s.eval_rows)
    target = s.run.folder / "adapter"
    tmp = target.with_name("adapter.tmp")
    model.save(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return s.run.report(model=Path(cfg.embedder).name, log=log, before=before, after=after, data=s.data_stats,
                        extra={"method": "full", "throughput_unit": "characters"})
