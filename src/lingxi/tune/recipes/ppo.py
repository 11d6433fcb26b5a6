"""Recipe ``ppo``: RLHF with proximal policy optimisation, written here (trl no longer has it).

Four models: the policy (LoRA adapters, or all weights), the frozen reference (the same network
with adapters off, or a frozen copy), the reward model of an ``rm`` run (frozen) -- or a named
programmatic reward (:data:`PROGRAMMATIC`, ``--reward-model brevity``) -- and a value head on the
policy's hidden states.

Each step (Ouyang et al. 2022; Ziegler et al. 2019, arXiv:1909.08593):

1. sample a response to each prompt of the batch from the policy;
2. score it with the reward model; normalise the batch's rewards to [-1, 1]
   (centre on the batch mean, divide by the largest deviation);
3. per-token reward: ``-kl_coef * (log pi - log ref)`` on every response token, plus the
   normalised reward on the last one. ``kl_coef`` starts at ``kl_start`` (0.01) and rises
   linearly to ``kl_end`` over the run, so the policy may move early and is held close later;
4. advantages by GAE (gamma 1, lambda 0.95), whitened;
5. ``ppo_epochs`` updates of the clipped objective ``max(-A r, -A clip(r, 1-e, 1+e))`` plus a
   clipped value loss.

Eval on held-out prompts (sampled with a fixed seed): ``mean_reward`` (raw reward-model score)
and ``kl`` (mean summed log-ratio to the reference over the sampled tokens; 0 before training).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import TrainLog, eval_batches, seed_everything, sync_gradients, total_steps, world
from lingxi.tune.model import load_causal_lm, load_tokenizer, make_trainable, save_model, trainable_parameters
from lingxi.tune.recipes.rm import load_reward_model
from lingxi.tune.setup import start
from lingxi.tune.tokens import hidden_states, model_parts, prompt_messages, render

GAMMA, LAMBDA, VALUE_COEF = 1.0, 0.95, 0.1
#: ``--reward-model NAME`` for a programmatic reward instead of an rm run: a transparent stand-in
#: where no trained reward model is good enough to optimise against
PROGRAMMATIC = {"brevity": "minus the share of the --max-new-tokens budget the response used, its end-of-turn "
                           "included (-1/budget for an immediate end, -1 for a response cut at the budget)"}


def row_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation to answer: a preference row's prompt, or an SFT/chat row minus its answer."""
    if "prompt" in row:
        return prompt_messages(row["prompt"])
    if "messages" in row:
        return row["messages"][:-1]
    text = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return [{"role": "user", "content": text}]


def normalise_rewards(raw: Any) -> Any:
    """Centre a batch's rewards on their mean and scale the largest deviation to 1 (so into [-1, 1])."""
    centred = raw - raw.mean()
    return centred / centred.abs().max().clamp(min=1e-8)


def reward_change(before: list[float], after: list[float]) -> dict[str, Any]:
    """The held-out reward's change, paired by prompt (the same prompt, sampled with the same seed
    before and after): mean change, and its paired-bootstrap p-value from 10 prompts up."""
    import numpy as np

    from lingxi.evaluate.compare import MIN_ITEMS, paired_bootstrap

    if not before or len(before) != len(after):
        return {"prompts": 0, "mean_change": None, "p_value": None}
    a, b = np.asarray(before, dtype=float)[:, None], np.asarray(after, dtype=float)[:, None]
    p = paired_bootstrap(a, b, lambda total: float(total[0]) / len(a))["p_value"] if len(a) >= MIN_ITEMS else None
    return {"prompts": len(a), "mean_change": round(float((b - a).mean()), 4),
            "improved": int((b > a).sum()), "worse": int((b < a).sum()), "p_value": p}


def kl_coefficient(step: int, steps: int, start: float, end: float) -> float:
    """``start`` at the first step, rising linearly to ``end`` at the last."""
    return start + (end - start) * step / max(1, steps - 1)


def train_ppo(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    # ---- setup
    s = start(cfg, home)
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(s.source, s.home)
    if cfg.reward_model in PROGRAMMATIC:
        def score(batch: dict[str, Any], resp_mask: Any) -> Any:  # brevity: see PROGRAMMATIC
            return -resp_mask.float().sum(-1) / cfg.max_new_tokens
    else:
        reward_model, rm_tokenizer = load_reward_model(cfg.reward_model, s.home, s.device)
        if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise UsageError("--reward-model was trained on a model with another vocabulary; train it on --model's base")

        def score(batch: dict[str, Any], resp_mask: Any) -> Any:
            return reward_model.rewards(batch)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # a long prompt keeps its end: the last turn and the assistant header
    prompts = [render(tokenizer, row_prompt(r), generation_prompt=True) for r in s.train_rows]
    eval_prompts = [render(tokenizer, row_prompt(r), generation_prompt=True) for r in s.eval_rows]
    policy = make_trainable(load_causal_lm(s.source, s.home, device=s.device), cfg)
    frozen = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.method == "full" else None
    hidden = model_parts(policy)[1].weight.shape[1]
    value_head = torch.nn.Linear(hidden, 1).to(s.device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    params = dict(trainable_parameters(policy))
    params.update({f"value_head.{n}": p for n, p in value_head.named_parameters()})
    max_prompt = max(8, cfg.max_len - cfg.max_new_tokens)

    def rollout(texts: list[str], seed: int | None = None) -> dict[str, Any]:
        """Sample responses; return sequences, masks, and per-token log-probs of policy and reference."""
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt,
                        add_special_tokens=False).to(s.device)
        policy.eval()
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = policy.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                  max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        n_prompt = enc["input_ids"].shape[1]
        response = out[:, n_prompt:]
        # response tokens up to and including the first end-of-turn count; what follows is padding
        ended = (response == tokenizer.eos_token_id).int().cumsum(-1)
        resp_mask = ((ended == 0) | ((ended == 1) & (response == tokenizer.eos_token_id))).long()
        batch = {"input_ids": out, "attention_mask": torch.cat([enc["attention_mask"], resp_mask], dim=1)}
        with torch.no_grad():
            old = token_logps(policy, batch, n_prompt)
            ref = reference_token_logps(batch, n_prompt)
            reward = score(batch, resp_mask)
        return {**batch, "n_prompt": n_prompt, "resp_mask": resp_mask.float(), "old": old, "ref": ref,
                "reward": reward}

    def token_logps(model: Any, batch: dict[str, Any], n_prompt: int, values: bool = False) -> Any:
        h = hidden_states(model, batch)[:, n_prompt - 1:-1]
        logits = model_parts(model)[1](h).float()
        targets = batch["input_ids"][:, n_prompt:]
        logps = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (logps, value_head(h).squeeze(-1).float()) if values else logps

    def reference_token_logps(batch: dict[str, Any], n_prompt: int) -> Any:
        if frozen is not None:
            return token_logps(frozen, batch, n_prompt)
        with policy.disable_adapter():
            return token_logps(policy, batch, n_prompt)

    def evaluate() -> dict[str, Any]:
        if not eval_prompts:
            return {}
        rewards, kls = [], []
        for i, chunk in enumerate(eval_batches(eval_prompts, 4)):
            r = rollout(chunk, seed=cfg.seed + 10_000 + i)
            rewards.append(r["reward"])
            kls.append(((r["old"] - r["ref"]) * r["resp_mask"]).sum(-1))
        per_prompt = torch.cat(rewards)
        return {"mean_reward": round(float(per_prompt.mean()), 4),
                "kl": round(float(torch.cat(kls).mean()), 4), "prompts": len(eval_prompts),
                "_rewards": per_prompt.tolist()}

    before = evaluate()

    # ---- loop: sample, score, then several clipped updates on the batch
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    steps = total_steps(cfg, len(prompts))
    log = TrainLog()
    begin = s.run.load(params, optimizer, scheduler, log)
    order = torch.Generator().manual_seed(cfg.seed)
    perms = [torch.randperm(len(prompts), generator=order).tolist()
             for _ in range(steps * cfg.batch_size * world()[1] // max(1, len(prompts)) + 1)]
    flat = [i for p in perms for i in p]
    rank, size = world()  # under torchrun each process samples its own share of the prompts
    bar = tqdm(total=steps, initial=begin, desc=f"ppo {s.source.name}", unit="step", disable=None if rank == 0 else True)
    for step in range(begin, steps):
        began, began_cpu = time.perf_counter(), time.process_time()
        kl_coef = kl_coefficient(step, steps, cfg.kl_start, cfg.kl_end)
        at = (step * size + rank) * cfg.batch_size
        batch_prompts = [prompts[i] for i in flat[at:at + cfg.batch_size]]
        roll = rollout(batch_prompts)
        mask, n_prompt = roll["resp_mask"], roll["n_prompt"]
        raw = roll["reward"]
        normalised = normalise_rewards(raw)
        kl_tokens = (roll["old"] - roll["ref"]) * mask
        rewards = -kl_coef * kl_tokens
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
        rewards[torch.arange(len(last)), last] += normalised
        with torch.no_grad():
            _, values = token_logps(policy, roll, n_prompt, values=True)
        values = values * mask
        advantages = torch.zeros_like(rewards)
        running = torch.zeros(rewards.shape[0], device=rewards.device)
        for t in reversed(range(rewards.shape[1])):
            next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
            delta = rewards[:, t] + GAMMA * next_value - values[:, t]
            running = (delta + GAMMA * LAMBDA * running) * mask[:, t]
            advantages[:, t] = running
        returns = advantages + values
        n_tok = mask.sum().clamp(min=1)
        mean = (advantages * mask).sum() / n_tok
        std = (((advantages - mean) ** 2 * mask).sum() / n_tok).sqrt()
        advantages = (advantages - mean) / (std + 1e-8) * mask

        policy.train()
        losses = []
        for _ in range(cfg.ppo_epochs):
            logps, new_values = token_logps(policy, roll, n_prompt, values=True)
            ratio = torch.exp(logps - roll["old"])
            pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip, 1 + cfg.clip))
            clipped_v = values + (new_values - values).clamp(-cfg.clip, cfg.clip)
            vf = 0.5 * torch.max((new_values - returns) ** 2, (clipped_v - returns) ** 2)
            loss = ((pg + VALUE_COEF * vf) * mask).sum() / n_tok
            loss.backward()
            sync_gradients(list(params.values()))
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        scheduler.step()

        log.steps = step + 1
        log.losses.append(sum(losses) / len(losses))
        log.tokens += int(roll["attention_mask"].sum())
        log.seconds += time.perf_counter() - began
        log.cpu_seconds += time.process_time() - began_cpu
        for key, value in (("reward", float(raw.mean())), ("kl", float(kl_tokens.sum(-1).mean())),
                           ("kl_coef", kl_coef)):
            log.extra.setdefault(key, []).append(round(value, 4))
        bar.update(1)
        bar.set_postfix(reward=f"{float(raw.mean()):.3f}", kl=f"{float(kl_tokens.sum(-1).mean()):.3f}")
        if log.steps % cfg.save_every == 0 or log.steps == steps:
            s.run.save(log.steps, params, optimizer, scheduler, log)
    bar.close()

    # ---- save
    after = evaluate()
    change = reward_change(before.pop("_rewards", []), after.pop("_rewards", []))
    tokenizer.padding_side = tokenizer.truncation_side = "right"
    save_model(policy, tokenizer, s.run.folder / "adapter", extra={"value_head": value_head.state_dict()})
    return s.run.report(model=s.source.name, log=log, before=before, after=after, data=s.data_stats,
                        extra={"method": cfg.method, "memory_estimate": s.memory,
                               "reward_curve": log.extra.get("reward", []), "kl_curve": log.extra.get("kl", []),
                               "kl_coef_curve": log.extra.get("kl_coef", []), "held_out_reward_change": change,
                           "reward": PROGRAMMATIC.get(cfg.reward_model, "reward model of the rm run")})
