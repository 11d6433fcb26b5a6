"""Recipe ``rm``: a reward model trained on preference pairs with the pairwise loss
``-log sigmoid(r(chosen) - r(rejected))`` (Ouyang et al. 2022, arXiv:2203.02155).

setup -> evaluate before -> train -> evaluate after -> save.

The reward model is the base causal LM (LoRA adapters, or all weights) with a linear head on the
hidden state of the last token, initialised to zero: before training every pair ties, so the
untrained model has no preference (accuracy 0.5) rather than the verdict of a random projection.
The head learns at ``HEAD_LR_SCALE`` times the learning rate (it starts from nothing; the body
only refines features it already has). Saved as the adapter folder plus the head's state;
:func:`load_reward_model` loads it back (PPO uses it).

Eval: held-out ``preference_accuracy`` (share of pairs scored chosen > rejected, a tie counting
half) with its 95 % interval, the mean reward margin, and a sign test over the pairs whose
verdict training changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import eval_batches, preference_stats, train
from lingxi.tune.model import load_causal_lm, load_tokenizer, resolve, save_model, trainable_parameters
from lingxi.tune.setup import start, trainable_model
from lingxi.tune.tokens import encode_pairs, last_hidden, pair_batch


#: the zero-initialised reward head's learning rate, relative to ``--lr``
HEAD_LR_SCALE = 10.0


class RewardModel:
    """A causal LM body and a scalar head: ``rewards(batch) -> [batch]``."""

    def __init__(self, body: Any, head: Any):
        self.body, self.head = body, head

    def rewards(self, batch: dict[str, Any]) -> Any:
        return self.head(last_hidden(self.body, batch)).squeeze(-1).float()

    def train(self, mode: bool = True) -> None:
        self.body.train(mode)
        self.head.train(mode)


def train_reward_model(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    # ---- setup
    s = start(cfg, home)
    tokenizer, body = trainable_model(s)
    train_pairs = encode_pairs(tokenizer, s.train_rows, cfg.max_len)
    eval_pairs = encode_pairs(tokenizer, s.eval_rows, cfg.max_len)
    hidden = body.get_base_model().config.hidden_size if hasattr(body, "get_base_model") else body.config.hidden_size
    head = torch.nn.Linear(hidden, 1).to(s.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    rm = RewardModel(body, head)
    pad = tokenizer.pad_token_id

    def margins() -> list[float]:
        rm.train(False)
        out = []
        with torch.no_grad():
            for chunk in eval_batches(eval_pairs, 8):
                r = rm.rewards(pair_batch(chunk, pad, s.device))
                out += (r[: len(chunk)] - r[len(chunk):]).tolist()
        rm.train(True)
        return out

    def evaluate(m: list[float], old: list[float] | None = None) -> dict[str, Any]:
        if not m:
            return {}
        return {**preference_stats(m, old), "reward_margin": round(sum(m) / len(m), 4)}

    first = [0.0] * len(eval_pairs)  # the zero head scores every answer 0: no forward pass needed
    before = evaluate(first)

    # ---- loop
    rm.train(True)
    params = dict(trainable_parameters(body))
    params.update({f"reward_head.{n}": p for n, p in head.named_parameters()})

    def step(indices: list[int]) -> tuple[Any, int, dict[str, float]]:
        batch = pair_batch([train_pairs[i] for i in indices], pad, s.device)
        r = rm.rewards(batch)
        n = len(indices)
        margin = r[:n] - r[n:]
        loss = -F.logsigmoid(margin).mean()
        return loss, int(batch["attention_mask"].sum()), {"accuracy": float((margin > 0).float().mean())}

    log = train(cfg, s.run, params, [max(len(c.ids), len(r.ids)) for c, r in train_pairs], step,
                desc=f"rm {s.source.name}", lr_scale={f"reward_head.{n}": HEAD_LR_SCALE for n, _ in head.named_parameters()})

    # ---- save
    after = evaluate(margins(), first) if eval_pairs else {}
    save_model(body, tokenizer, s.run.folder / "adapter",
               extra={"reward_head": head.state_dict(), "hidden_size": hidden})
    return s.run.report(model=s.source.name, log=log, before=before, after=after, data=s.data_stats,
                        extra={"method": cfg.method, "memory_estimate": s.memory,
                               "train_accuracy_curve": log.extra.get("accuracy", [])})


def load_reward_model(folder: str | Path, home: Path, device: str) -> tuple[RewardModel, Any]:
    """The reward model an ``rm`` run saved in ``folder``, frozen, and its tokenizer.

    Raises:
        UsageError: ``folder`` is not an rm run's output.
    """
    import json

    import torch

    folder = Path(folder).expanduser()
    report = folder / "report.json"
    adapter = folder / "adapter"
    if not report.is_file() or not (adapter / "extra_state.pt").is_file():
        raise UsageError(f"--reward-model {folder}: not the folder of a finished rm run (no report.json/adapter)")
    info = json.loads(report.read_text())
    if info.get("recipe") != "rm":
        raise UsageError(f"--reward-model {folder}: a {info.get('recipe')} run, not an rm run")
    source = resolve(info["config"]["model"])
    tokenizer = load_tokenizer(source, home)
    body = load_causal_lm(source, home, device=device)
    if info["config"]["method"] == "full":
        from transformers import AutoModelForCausalLM

        body = AutoModelForCausalLM.from_pretrained(str(adapter)).to(device)
    else:
        from peft import PeftModel

        body = PeftModel.from_pretrained(body, str(adapter)).merge_and_unload()
    state = torch.load(adapter / "extra_state.pt", map_location=device, weights_only=False)
    head = torch.nn.Linear(state["hidden_size"], 1).to(device)
    head.load_state_dict(state["reward_head"])
    body.eval().requires_grad_(False)
    head.eval().requires_grad_(False)
    return RewardModel(body, head), tokenizer
