"""Recipe ``dpo``: direct preference optimisation (Rafailov et al. 2023, arXiv:2305.18290).

setup -> evaluate before -> train -> evaluate after -> save.

Loss per pair: ``-log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))``
with sums of answer-token log-probabilities. With LoRA the reference is the same network with
its adapters switched off, so no second copy of the weights is held; with full fine-tuning the
reference is a frozen copy.

Eval on held-out pairs, each with a 95 % interval and (after) a sign test over the pairs whose
verdict changed:

- ``preference_accuracy``: how often DPO's implicit reward ``beta * log(pi / ref)`` ranks the
  chosen answer above the rejected one (trl's ``rewards/accuracies``), a tie counting half. The
  policy starts as the reference, so every pair ties before training (0.5): this measures what
  training taught the policy to prefer, on pairs it never saw.
- ``policy_accuracy``: how often the policy itself gives the chosen answer the higher total
  log-probability. It mixes in what the base model already preferred (mostly the shorter
  answer), and moves only where the learned margin outweighs that.
- ``reward_margin``: mean implicit reward margin (0 before training).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import eval_batches, preference_stats, train
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

    eval_reference: list[Any] = []  # the reference's log-probs of each eval batch, computed once

    def eval_margins() -> tuple[list[float], list[float]]:
        """(implicit reward margins, policy log-prob margins) of the held-out pairs. Before
        training the policy is the reference, so one pass gives both."""
        model.eval()
        implicit, own = [], []
        with torch.no_grad():
            for i, chunk in enumerate(eval_batches(eval_pairs, 8)):
                batch = pair_batch(chunk, pad, s.device)
                if i == len(eval_reference):
                    eval_reference.append(reference_logps(batch))
                    policy = eval_reference[i]
                else:
                    policy = sequence_logps(model, batch)
                ref, n = eval_reference[i], len(chunk)
                implicit += (cfg.beta * ((policy[:n] - ref[:n]) - (policy[n:] - ref[n:]))).tolist()
                own += (policy[:n] - policy[n:]).tolist()
        model.train()
        return implicit, own

    def evaluate(now: tuple[list[float], list[float]], old: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
        implicit, own = now
        if not implicit:
            return {}
        policy = preference_stats(own, old[1] if old else None)
        return {**preference_stats(implicit, old[0] if old else None),
                "reward_margin": round(sum(implicit) / len(implicit), 4),
                "policy_accuracy": policy["preference_accuracy"], "policy_accuracy_ci95": policy["accuracy_ci95"],
                **({"policy_changed_pairs": policy["changed_pairs"]} if old else {})}

    first = eval_margins() if eval_pairs else ([], [])
    before = evaluate(first)

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
    after = evaluate(eval_margins(), first) if eval_pairs else {}
    save_model(model, tokenizer, s.run.folder / "adapter")
    return s.run.report(model=s.source.name, log=log, before=before, after=after,
                        data={**s.data_stats, "beta": cfg.beta},
                        extra={"method": cfg.method, "memory_estimate": s.memory,
                               "reward_margin_curve": log.extra.get("reward_margin", [])})
