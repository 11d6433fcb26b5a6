"""Recipe ``dpo``: direct preference optimisation (Rafailov et al. 2023, arXiv:2305.18290).

setup -> evaluate before -> train -> evaluate after -> save.

Loss per pair: ``-log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))``
with sums of answer-token log-probabilities. With LoRA the reference is the same network with
its adapters switched off, so no second copy of the weights is held; with full fine-tuning the
reference is a frozen copy.

Eval on held-out pairs: ``preference_accuracy`` (share of pairs where the model gives the
chosen answer the higher log-probability), ``reward_margin`` (mean implicit reward margin, 0
before training by construction) and ``reward_accuracy`` (share of pairs with a positive margin).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import eval_batches, train
from lingxi.tune.model import save_model, trainable_parameters
from lingxi.tune.setup import start, trainable_model
from lingxi.tune.tokens import encode_pairs, pair_batch, sequence_logps


def train_dpo(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    # ---- setup
    s = start(cfg, home)
    tokenizer, model = trainable_model(s)
    train_pairs = encode_pairs(tokenizer, s.train_rows, cfg.max_len)
    eval_pairs = encode_pairs(tokenizer, s.eval_rows, cfg.max_len)
    frozen = None
    if cfg.method == "full":
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    pad = tokenizer.pad_token_id

    def reference_logps(batch: dict[str, Any]) -> Any:
        with torch.no_grad():
            if frozen is not None:
                return sequence_logps(frozen, batch)
            with model.disable_adapter():
                return sequence_logps(model, batch)

    def margins(batch: dict[str, Any], policy: Any) -> tuple[Any, Any]:
        n = policy.shape[0] // 2
        ref = reference_logps(batch)
        return (policy[:n] - ref[:n]) - (policy[n:] - ref[n:]), policy[:n] - policy[n:]

    def evaluate() -> dict[str, Any]:
        if not eval_pairs:
            return {}
        model.eval()
        implicit, own = [], []
        with torch.no_grad():
            for chunk in eval_batches(eval_pairs, 4):
                batch = pair_batch(chunk, pad, s.device)
                m, d = margins(batch, sequence_logps(model, batch))
                implicit.append(cfg.beta * m)
                own.append(d)
        model.train()
        implicit, own = torch.cat(implicit), torch.cat(own)
        return {"preference_accuracy": round(float((own > 0).float().mean()), 4),
                "reward_margin": round(float(implicit.mean()), 4),
                "reward_accuracy": round(float((implicit > 0).float().mean()), 4), "pairs": len(eval_pairs)}

    before = evaluate()

    # ---- loop
    model.train()

    def step(indices: list[int]) -> tuple[Any, int, dict[str, float]]:
        batch = pair_batch([train_pairs[i] for i in indices], pad, s.device)
        margin, _ = margins(batch, sequence_logps(model, batch))
        loss = -F.logsigmoid(cfg.beta * margin).mean()
        return loss, int(batch["attention_mask"].sum()), {"reward_margin": float(cfg.beta * margin.detach().mean())}

    log = train(cfg, s.run, dict(trainable_parameters(model)),
                [max(len(c.ids), len(r.ids)) for c, r in train_pairs], step, desc=f"dpo {s.source.name}")

    # ---- save
    after = evaluate()
    save_model(model, tokenizer, s.run.folder / "adapter")
    return s.run.report(model=s.source.name, log=log, before=before, after=after,
                        data={**s.data_stats, "beta": cfg.beta},
                        extra={"method": cfg.method, "memory_estimate": s.memory,
                               "reward_margin_curve": log.extra.get("reward_margin", [])})
