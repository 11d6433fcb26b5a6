"""What every recipe shares: the run folder (checkpoints, resume, report), the data order, the
optimiser loop, memory estimates and the before/after evaluation helpers.

A recipe is ``setup -> train(...) -> save``; :func:`train` owns the loop so that the pieces that
must be right everywhere (gradient accumulation, clipping, checkpoint every N steps, resuming
with the same data order and random state, progress bar) are written once.

Resume: a checkpoint holds the trainable tensors, optimiser and scheduler state, the random
generators and the loss curve. The batch of step ``k`` is a function of (seed, k) alone, so a
resumed run sees exactly the batches the killed one would have. A checkpoint whose settings differ
(another model, data file, learning rate...) is refused rather than silently mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.tune.data import write_json

GIB = 2**30


# ---------------------------------------------------------------- several processes (torchrun / accelerate launch)


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) unless launched by ``torchrun`` or
    ``accelerate launch`` (which set ``RANK``/``WORLD_SIZE`` and make the process group here)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes (checkpoints, adapters, report): rank 0."""
    return world()[0] == 0


def sync_gradients(params: list[Any]) -> None:
    """Average the gradients over the processes (data parallelism, written out: each process
    computed them on its own micro-batches)."""
    rank, size = world()
    if size == 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(size)


def barrier() -> None:
    if world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()
#: settings that may change between a killed run and its resumption
_RESUMABLE = {"max_steps", "output", "dry_run", "resume", "save_every", "eval_rows", "check_memory", "device", "on_error", "threads"}


@dataclass
class TrainLog:
    """What the loop measured."""

    steps: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time of the steps: on a shared machine it measures the work, not the queueing."""
    resumed_from: int = 0
    extra: dict[str, list[float]] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class Run:
    """One run's output folder: ``checkpoint/state.pt`` while training, ``report.json`` at the end."""

    def __init__(self, cfg: Any, folder: Path):
        self.cfg = cfg
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint = folder / "checkpoint" / "state.pt"
        self.fingerprint = _fingerprint(cfg)

    def load(self, params: dict[str, Any], optimizer: Any, scheduler: Any, log: TrainLog) -> int:
        """Restore the last checkpoint into ``params``/``optimizer``/``scheduler``/``log``;
        returns the step to continue from (0 when starting fresh)."""
        if not (self.cfg.resume and self.checkpoint.is_file()):
            return 0
        import torch

        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            raise UsageError(f"{self.folder} holds a checkpoint of a run with other settings; "
                             "use another --output or --no-resume to start over")
        with torch.no_grad():
            for name, tensor in state["params"].items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        log.losses, log.tokens, log.seconds = state["losses"], state["tokens"], state["seconds"]
        log.extra, log.cpu_seconds = state.get("extra", {}), state.get("cpu_seconds", 0.0)
        log.resumed_from = log.steps = state["step"]
        return state["step"]

    def save(self, step: int, params: dict[str, Any], optimizer: Any, scheduler: Any, log: TrainLog) -> None:
        import torch

        if not is_main():  # every process holds the same weights; one writes them
            return
        self.checkpoint.parent.mkdir(exist_ok=True)
        tmp = self.checkpoint.with_name("state.pt.tmp")
        torch.save({"fingerprint": self.fingerprint, "step": step,
                    "params": {n: p.detach().cpu() for n, p in params.items()},
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
                    "losses": log.losses, "tokens": log.tokens, "seconds": log.seconds,
                    "cpu_seconds": log.cpu_seconds, "extra": log.extra}, tmp)
        os.replace(tmp, self.checkpoint)

    def report(self, *, model: str, log: TrainLog, before: dict[str, Any], after: dict[str, Any],
               data: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``report.json`` (the CLI contract's keys first) and return it."""
        out = {
            "recipe": self.cfg.recipe,
            "model": model,
            "steps": log.steps,
            "train_tokens_per_s": round(log.tokens_per_s, 1),
            "peak_memory_gib": round(peak_memory_gib(), 3),
            "eval": {"before": before, "after": after},
            "loss_curve": [round(x, 4) for x in log.losses],
            "train_tokens": log.tokens,
            "train_seconds": round(log.seconds, 2),
            "train_cpu_seconds": round(log.cpu_seconds, 2),
            "resumed_from_step": log.resumed_from,
            "data": data,
            "config": self.cfg.model_dump(),
            "processes": world()[1],
            **(extra or {}),
        }
        if is_main():
            write_json(self.folder / "report.json", out)
        return out


def _fingerprint(cfg: Any) -> str:
    values = {k: v for k, v in cfg.model_dump().items() if k not in _RESUMABLE}
    for key in ("data", "eval_data", "reward_model", "terms_file"):
        path = Path(values[key]) if values.get(key) else None
        if path is not None and path.is_file():
            st = path.stat()
            values[key] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def total_steps(cfg: Any, n_items: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_items / (cfg.batch_size * cfg.grad_accum * world()[1])))


def batch_indices(lengths: list[int], batch: int, micro_step: int, seed: int) -> list[int]:
    """The items of micro-batch ``micro_step``: each epoch is a seeded shuffle, cut into
    mega-batches of 32 batches sorted by length (less padding, as ``group_by_length`` does),
    whose batches are then shuffled. A function of its arguments only, so resuming is exact."""
    n = len(lengths)
    per_epoch = max(1, math.ceil(n / batch))
    epoch, k = divmod(micro_step, per_epoch)
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    mega = batch * 32
    batches = []
    for i in range(0, n, mega):
        chunk = sorted(order[i:i + mega], key=lambda j: lengths[j])
        batches.extend(chunk[j:j + batch] for j in range(0, len(chunk), batch))
    rng.shuffle(batches)
    return batches[k]


def train(cfg: Any, run: Run, params: dict[str, Any], lengths: list[int],
          step_fn: Callable[[list[int]], tuple[Any, int, dict[str, float]]], *, desc: str,
          on_step: Callable[[int], None] | None = None, lr_scale: dict[str, float] | None = None) -> TrainLog:
    """The optimiser loop.

    Args:
        params: the trainable tensors by name (what checkpoints hold).
        lengths: one length per training item (for length-grouped batches; ``len`` = items).
        step_fn: ``indices -> (loss, tokens processed, extra metrics)`` for one micro-batch.
        on_step: called with the step number before each optimiser step (phase changes).
        lr_scale: parameter name -> multiplier of the learning rate (e.g. a freshly initialised head).

    Returns: the log (loss per optimiser step, tokens, seconds, step resumed from).
    """
    import torch
    from tqdm import tqdm

    trainable = list(params.values())
    scales = lr_scale or {}
    groups: dict[float, list[Any]] = {}
    for name, p in params.items():
        groups.setdefault(scales.get(name, 1.0), []).append(p)
    optimizer = torch.optim.AdamW([{"params": ps, "lr": cfg.learning_rate * k} for k, ps in groups.items()],
                                  lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = total_steps(cfg, len(lengths))
    warm = cfg.warmup_steps

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to a tenth
        if step < warm:
            return (step + 1) / warm
        return 1.0 - 0.9 * (step - warm) / max(1, steps - warm)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    log = TrainLog()
    start = run.load(params, optimizer, scheduler, log)
    rank, size = world()  # under torchrun each process takes every size-th micro-batch
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", dynamic_ncols=True,
               disable=None if rank == 0 else True)
    for step in range(start, steps):
        if on_step is not None:
            on_step(step)
        began, began_cpu = time.perf_counter(), time.process_time()
        total, tokens, extras = 0.0, 0, {}
        for micro in range(cfg.grad_accum):
            idx = batch_indices(lengths, cfg.batch_size, (step * cfg.grad_accum + micro) * size + rank, cfg.seed)
            loss, n, extra = step_fn(idx)
            (loss / cfg.grad_accum).backward()
            total += float(loss.detach()) / cfg.grad_accum
            tokens += n
            for key, value in extra.items():
                extras[key] = extras.get(key, 0.0) + value / cfg.grad_accum
        if size > 1:
            sync_gradients(trainable)
            total, tokens = _sum_over_processes(total) / size, int(_sum_over_processes(float(tokens)))
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        log.steps = step + 1
        log.losses.append(total)
        log.tokens += tokens
        log.seconds += time.perf_counter() - began
        log.cpu_seconds += time.process_time() - began_cpu
        for key, value in extras.items():
            log.extra.setdefault(key, []).append(round(value, 4))
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        if log.steps % cfg.save_every == 0 or log.steps == steps:
            run.save(log.steps, params, optimizer, scheduler, log)
    bar.close()
    return log


def _sum_over_processes(value: float) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t)


# ---------------------------------------------------------------- memory


def peak_memory_gib() -> float:
    """Peak resident memory of this process (CPU) or peak CUDA allocation, in GiB."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def available_memory_gib(device: str) -> float | None:
    """Free memory where training will run: CUDA free memory, else ``MemAvailable``."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free / GIB
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


def memory_estimate(cfg: Any, source: Any, device: str) -> dict[str, Any]:
    """The catalog's estimate for this model, method, sequence length and batch (GiB).

    A model the catalog does not list is described from its ``config.json``. PPO adds a second
    resident copy of the weights (the reward model).
    """
    from lingxi.catalog import estimate, load_catalog
    from lingxi.catalog.schema import Architecture, ModelEntry

    if source.catalog_id:
        entry = load_catalog().model(source.catalog_id)
    else:
        c = json.loads((source.folder / "config.json").read_text())
        arch = Architecture(layers=c.get("num_hidden_layers"), hidden_size=c.get("hidden_size"),
                            attention_heads=c.get("num_attention_heads"), kv_heads=c.get("num_key_value_heads"),
                            intermediate_size=c.get("intermediate_size"), vocab_size=c.get("vocab_size"),
                            tied_embeddings=c.get("tie_word_embeddings"))
        entry = ModelEntry(id="local-model", name=source.name, vendor="local", family="local", open_weights=True,
                           context_length=c.get("max_position_embeddings"), arch=arch)
    precision = "int4" if cfg.method == "qlora" else ("bf16" if device.startswith("cuda") else "fp32")
    context = min(cfg.max_len + (cfg.max_new_tokens if cfg.recipe == "ppo" else 0), entry.context_length or 10**9)
    batch = cfg.batch_size * (2 if cfg.recipe in ("dpo", "rm") else 1)  # chosen and rejected side by side
    est = estimate(entry, precision=precision, mode=cfg.method, context=context, batch=batch, lora_rank=cfg.lora_r)
    memory = dict(est.memory_gib)
    if cfg.recipe == "ppo":
        memory["reward_model"] = memory["weights"]
        memory["total"] = round(memory["total"] + memory["weights"], 3)
    return {"model": entry.id, "method": cfg.method, "precision": precision, "context": context, "batch": batch,
            "memory_gib": memory, "assumptions": est.assumptions}


def check_fits(cfg: Any, source: Any, device: str) -> dict[str, Any]:
    """The estimate plus the memory free here; raises when it does not fit.

    Raises:
        UsageError: the estimate exceeds the free memory (with ``--no-check-memory`` to override).
    """
    est = memory_estimate(cfg, source, device)
    free = available_memory_gib(device)
    est["available_gib"] = round(free, 2) if free is not None else None
    est["fits"] = free is None or est["memory_gib"]["total"] <= free
    if cfg.check_memory and not cfg.dry_run and not est["fits"]:
        raise UsageError(
            f"{est['model']} {cfg.method} at batch {est['batch']} x {est['context']} tokens needs about "
            f"{est['memory_gib']['total']:.1f} GiB but {free:.1f} GiB is free on {device}; lower --batch-size or "
            "--max-len, use --method lora/qlora, or pass --no-check-memory")
    return est


# ---------------------------------------------------------------- evaluation helpers


def eval_batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def mean_token_loss(model: Any, examples: list[Any], pad_id: int, device: str, batch: int = 8) -> float | None:
    """Mean cross-entropy per labelled token over ``examples`` (None when there are none)."""
    import torch

    from lingxi.tune.tokens import collate, token_loss

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for chunk in eval_batches(sorted(examples, key=lambda e: len(e.ids)), batch):
            loss, n = token_loss(model, collate(chunk, pad_id, device))
            total += float(loss) * n
            count += n
    model.train(was_training)
    return round(total / count, 4) if count else None


def preference_stats(margins: list[float], before: list[float] | None = None) -> dict[str, Any]:
    """Held-out preference accuracy of per-pair margins (chosen minus rejected), with its 95 %
    Wilson interval; a tie (margin 0) counts half, so a model with no preference scores 0.5.

    With ``before`` (the same pairs' margins before training) it adds the paired sign test:
    among the pairs whose verdict changed, how many turned right, and the exact two-sided
    binomial p-value of that split under "training changed nothing systematic".
    """
    wins = [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins]
    n = len(wins)
    if not n:
        return {}
    p = sum(wins) / n
    z = 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    out: dict[str, Any] = {"preference_accuracy": round(p, 4),
                           "accuracy_ci95": [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)],
                           "pairs": n}
    if before is not None and len(before) == n:
        old = [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in before]
        up = sum(1 for a, b in zip(old, wins) if b > a)
        down = sum(1 for a, b in zip(old, wins) if b < a)
        out["changed_pairs"] = {"better": up, "worse": down, "sign_test_p": round(sign_test(up, down), 6)}
    return out


def sign_test(up: int, down: int) -> float:
    """Exact two-sided binomial p-value of ``up`` successes in ``up + down`` fair coin flips."""
    n = up + down
    if n == 0:
        return 1.0
    k = min(up, down)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
