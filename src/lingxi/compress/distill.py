"""``lingxi compress distill``: teacher -> student on the teacher's logits.

The loss is Hinton et al.'s: ``alpha * T² * KL(softmax(teacher/T) || softmax(student/T)) +
(1 - alpha) * CE(student, next token)`` over every position of windows of the training text.

**The student** starts from the teacher: the default removes ``drop_layers`` decoder blocks, the
ones that change the hidden state least on the training text (ShortGPT's block influence,
``1 - cos(block input, block output)``); the embeddings and every other weight are the
teacher's. Halving a 30-block SmolLM2 this way (or dropping every other block) leaves a model
that has forgotten language (perplexity in the hundreds of thousands) and that a CPU cannot
retrain in a session; a few blocks is what a short distillation can repair. Any Hugging Face
model with the same vocabulary can be the student instead (``student=``).

**The training text** is the user's: a ``.txt`` file is used as it is; a ``.json``/``.jsonl`` file
of prompts (``prompt``, ``instruction`` + ``input``, ``question`` or ``text`` fields, as BELLE's
seed tasks have) is answered by the teacher first (greedy, chat template; through llama.cpp when
the teacher is a GGUF, through transformers otherwise) and the student learns
the prompt + answer sequences, so it imitates the teacher where the user will use it. The last
tenth of the prompts is held out: their teacher answers are evaluation text never trained on.

**Quality retained** is ``teacher perplexity / student perplexity`` on held-out text, in percent,
which is ``exp(-(student NLL - teacher NLL))`` per token: 100 % means the student predicts the
held-out text as well as the teacher. The report also gives top-1 agreement (how often the
student's most likely next token is the teacher's). Both are given for the untrained student
and for the distilled one.

**The learning rate** warms up linearly over ``warmup_steps`` and then follows a cosine down to a
tenth of ``lr`` at ``steps`` (``schedule="cosine"``, as torchtune's distillation recipes and most
LLM fine-tunes do) or stays at ``lr`` (``"constant"``). The rate is a function of the step, so a
resumed run continues the same curve; rerunning with a larger ``steps`` stretches the cosine from
the current step on.

Long runs checkpoint (student, optimiser, step, sampler state, training seconds and the held-out
curve) atomically every ``save_every`` steps into ``<out>.work/``; running the same command again
resumes there. ``eval_every`` scores the held-out text(s) during training, so a run stopped early
still says where it got to.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError

PROMPT_FIELDS = ("prompt", "instruction", "question", "text")


def drop_blocks(model: Any, drop: list[int]) -> Any:
    """A copy of a Llama-style model without the decoder blocks whose indices are in ``drop``."""
    import torch

    student = copy.deepcopy(model)
    layers = student.model.layers
    kept = torch.nn.ModuleList([layer for i, layer in enumerate(layers) if i not in set(drop)])
    if not len(kept):
        raise UsageError("cannot drop every decoder block")
    for i, layer in enumerate(kept):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = i  # the KV cache is indexed by it
    student.model.layers = kept
    student.config.num_hidden_layers = len(kept)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [t for i, t in enumerate(student.config.layer_types) if i not in set(drop)]
    return student


def halve_layers(model: Any) -> Any:
    """A copy keeping decoder blocks 0, 2, 4, ... (the naive student; see the module docstring)."""
    return drop_blocks(model, list(range(1, len(model.model.layers), 2)))


def block_influence(model: Any, ids: Any) -> list[float]:
    """Per decoder block, ``1 - mean cos(input, output)`` of its hidden states over ``ids`` (1 x n).
    The last block's output is only seen after the final norm, so its score is set to infinity
    (never chosen for removal)."""
    import torch

    with torch.inference_mode():
        hidden = model(ids, output_hidden_states=True).hidden_states
    n = len(model.model.layers)
    scores = []
    for i in range(n):
        if i == n - 1:
            scores.append(math.inf)
            continue
        cos = torch.nn.functional.cosine_similarity(hidden[i][0].float(), hidden[i + 1][0].float(), dim=-1)
        scores.append(float(1 - cos.mean()))
    return scores


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float,
                      alpha: float) -> Any:
    """``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE`` averaged over positions."""
    import torch.nn.functional as F

    vocab = student_logits.shape[-1]
    s, t = student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                  reduction="batchmean") * temperature ** 2
    ce = F.cross_entropy(s, labels.reshape(-1))
    return alpha * kl + (1 - alpha) * ce


def read_prompts(path: Path) -> list[str]:
    """Prompts from a .json/.jsonl file (one object per line or a JSON array), one error per bad line."""
    from lingxi.tune.data import records

    prompts = []
    for line, record in records(path):
        if isinstance(record, Exception):
            raise UsageError(f"{path}:{line}: {record}")
        if not isinstance(record, dict):
            raise UsageError(f"{path}:{line}: expected a JSON object with one of {', '.join(PROMPT_FIELDS)}")
        field = next((f for f in PROMPT_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
        if field is None:
            raise UsageError(f"{path}:{line}: no prompt (fields {', '.join(PROMPT_FIELDS)})")
        text = record[field].strip()
        extra = record.get("input")
        if extra is None and isinstance(record.get("instances"), list) and record["instances"]:
            extra = record["instances"][0].get("input") if isinstance(record["instances"][0], dict) else None
        if isinstance(extra, str) and extra.strip():
            text = f"{text}\n{extra.strip()}"
        prompts.append(text)
    if not prompts:
        raise UsageError(f"{path} holds no prompts")
    return prompts


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def gguf_generator(path: Path, max_new_tokens: int, threads: int | None = None) -> Any:
    """Greedy answers from llama.cpp for a GGUF teacher: the same weights transformers dequantises,
    several times faster on a CPU than transformers' ``generate``. Returns ``(generate, close)``."""
    from lingxi.config import LlamaCppModel
    from lingxi.engines import GenerationParams, create_engine

    engine = create_engine("teacher", LlamaCppModel(engine="llamacpp", path=str(path), n_threads=threads))
    params = GenerationParams(max_tokens=max_new_tokens, temperature=0.0, seed=0)

    def generate(prompts: list[str]) -> list[str]:
        return [engine.generate([{"role": "user", "content": p}], params).text.strip() for p in prompts]

    return generate, engine.close


def teacher_answers(model: Any, tokenizer: Any, prompts: list[str], cache: Path, *, max_new_tokens: int,
                    batch_size: int = 8, progress: bool = True, generate: Any = None) -> list[str]:
    """The teacher's greedy answers to ``prompts`` as chat-formatted prompt + answer texts; cached
    line by line in ``cache`` (JSON lines), so an interrupted run keeps what it generated.
    ``generate`` (prompts -> answers) replaces transformers' ``generate`` on ``model``."""
    import torch

    done: dict[str, str] = {}
    if cache.is_file():
        for raw in cache.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(raw)
                done[row["prompt"]] = row["sequence"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by an interruption: generated again
    todo = [p for p in dict.fromkeys(prompts) if p not in done]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="teacher answers", unit="prompt", file=sys.stderr, leave=False)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        with open(cache, "a", encoding="utf-8") as fh:
            for start in range(0, len(todo), batch_size):
                batch = todo[start: start + batch_size]
                texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                       add_generation_prompt=True) for p in batch]
                if generate is not None:
                    answers = generate(batch)
                else:
                    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                    with torch.inference_mode():
                        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                             repetition_penalty=1.1, pad_token_id=tokenizer.pad_token_id)
                    answers = [tokenizer.decode(row, skip_special_tokens=True).strip()
                               for row in out[:, enc.input_ids.shape[1]:]]
                for prompt, text, answer in zip(batch, texts, answers, strict=True):
                    done[prompt] = f"{text}{answer}{tokenizer.eos_token or ''}"
                    fh.write(json.dumps({"prompt": prompt, "sequence": done[prompt]}, ensure_ascii=False) + "\n")
                fh.flush()
                if bar:
                    bar.update(len(batch))
    finally:
        tokenizer.padding_side = side
        if bar:
            bar.close()
    return [done[p] for p in prompts]


def held_out_scores(model: Any, teacher_top1: list[Any], windows: list[Any]) -> dict[str, float]:
    """Perplexity of ``model`` on the windows (each 1 x n token ids), and top-1 agreement with the
    teacher's most likely next tokens for the same windows."""
    import torch

    nll, agree, n = 0.0, 0, 0
    with torch.inference_mode():
        for ids, t_top1 in zip(windows, teacher_top1, strict=True):
            logits = model(ids).logits[0, :-1].float()
            target = ids[0, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            agree += int((logits.argmax(-1) == t_top1).sum())
            n += target.numel()
    return {"perplexity": math.exp(nll / n), "top1_agreement_pct": 100 * agree / n, "tokens": n}


def _windows(ids: Any, size: int, limit: int | None) -> list[Any]:
    if limit:
        ids = ids[:limit]
    return [ids[i: i + size].unsqueeze(0) for i in range(0, max(1, len(ids) - 1), size) if len(ids[i: i + size]) > 1]


SCHEDULES = ("cosine", "constant")


def learning_rate(step: int, steps: int, lr: float, warmup_steps: int, schedule: str) -> float:
    """The rate for optimiser step ``step`` (0-based): linear warm-up over ``warmup_steps``, then
    ``lr`` (constant) or a cosine from ``lr`` down to ``lr / 10`` at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _held_out_names(paths: list[Path]) -> list[str]:
    """Report keys: ``held_out_text`` for the first file, ``held_out_<stem>`` for further ones."""
    names = ["held_out_text"]
    for path in paths[1:]:
        name = f"held_out_{path.stem}"
        while name in names:
            name += "_"
        names.append(name)
    return names[: len(paths)]


def distill(teacher: str, out: str | Path, data: str | Path, *, student: str | None = None, drop_layers: int = 3,
            steps: int = 100, seq_len: int = 128, batch_size: int = 4, lr: float = 5e-5, temperature: float = 2.0,
            alpha: float = 0.5, eval_data: str | Path | list[str | Path] | None = None,
            max_tokens: int | None = 2048, gen_tokens: int = 96, save_every: int = 25, resume: bool = True,
            settings: Any = None, seed: int = 0, threads: int | None = None, progress: bool = True,
            warmup_steps: int = 0, schedule: str = "cosine", eval_every: int = 0,
            time_limit_s: float | None = None) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` (default: the teacher less ``drop_layers`` blocks) on
    ``data``; save the student to ``out`` (a Hugging Face folder) and return the report.

    ``eval_data`` is one held-out text file or several (the first is the report's headline);
    ``eval_every`` > 0 scores them every that many steps into the report's ``curve``.
    ``time_limit_s`` stops training once this call has trained that long (a shared machine's slot):
    the student is checkpointed, saved and scored at the step it reached (``steps_done``), and
    running again resumes towards ``steps``."""
    if not 0 <= alpha <= 1 or temperature <= 0 or steps < 1 or seq_len < 8:
        raise UsageError("need 0 <= alpha <= 1, temperature > 0, steps >= 1, seq_len >= 8")
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {schedule!r} (one of {', '.join(SCHEDULES)})")
    if warmup_steps < 0 or eval_every < 0 or lr <= 0:
        raise UsageError("need lr > 0, warmup_steps >= 0, eval_every >= 0")
    data = Path(data)
    if not data.is_file():
        raise UsageError(f"training data not found: {data}")
    eval_paths = [Path(p) for p in ([] if eval_data is None else
                                    [eval_data] if isinstance(eval_data, (str, Path)) else eval_data)]
    for path in eval_paths:
        if not path.is_file():
            raise UsageError(f"held-out data not found: {path}")
    import torch

    from lingxi.compress.prune import load_hf, save_hf
    from lingxi.evaluate.perplexity import read_text

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t_model, tokenizer = load_hf(teacher, settings)
    t_model.eval()

    # ---- training text (and held-out answers when the data are prompts)
    held_texts: dict[str, str] = {}
    if data.suffix.lower() in (".json", ".jsonl"):
        prompts = read_prompts(data)
        n_held = max(1, len(prompts) // 10) if len(prompts) >= 10 else 0
        from lingxi.evaluate.perplexity import resolve_model

        generate, close = None, None
        ref = resolve_model(teacher, settings)
        if ref.backend == "llamacpp":  # a GGUF teacher answers through llama.cpp (same weights, faster)
            generate, close = gguf_generator(ref.path, gen_tokens, threads)
        try:
            sequences = teacher_answers(t_model, tokenizer, prompts, work / "teacher_answers.jsonl",
                                        max_new_tokens=gen_tokens, progress=progress, generate=generate)
        finally:
            if close:
                close()
        train_text = "\n".join(sequences[: len(prompts) - n_held])
        if n_held:
            held_texts["held_out_prompts"] = "\n".join(sequences[len(prompts) - n_held:])
    else:
        train_text = read_text(data)
    for name, path in zip(_held_out_names(eval_paths), eval_paths, strict=True):
        held_texts[name] = read_text(path)
    ids = torch.tensor(tokenizer(train_text, add_special_tokens=False).input_ids)
    n_windows = (len(ids) - 1) // seq_len
    if n_windows < 1:
        raise UsageError(f"data {data} has {len(ids)} tokens; need more than --seq-len ({seq_len})")
    stream = ids[: n_windows * seq_len + 1]

    # ---- the student
    dropped: list[int] = []
    influence: list[float] | None = None
    if student:
        s_model = load_hf(student, settings)[0]
        if s_model.config.vocab_size != t_model.config.vocab_size:
            raise UsageError("the student and the teacher must share a vocabulary (same tokenizer)")
    else:
        n_blocks = len(t_model.model.layers)
        if not 1 <= drop_layers < n_blocks:
            raise UsageError(f"--drop-layers must be between 1 and {n_blocks - 1} (the teacher has {n_blocks} blocks)")
        influence = block_influence(t_model, stream[: min(len(stream), 1024)].unsqueeze(0))
        dropped = sorted(sorted(range(n_blocks), key=lambda i: influence[i])[:drop_layers])
        s_model = drop_blocks(t_model, dropped)

    # ---- held-out evaluation: the teacher's top-1 tokens computed once
    held: dict[str, tuple[list[Any], list[Any]]] = {}
    for name, text in held_texts.items():
        windows = _windows(torch.tensor(tokenizer(text, add_special_tokens=False).input_ids), 256, max_tokens)
        with torch.inference_mode():
            held[name] = (windows, [t_model(w).logits[0, :-1].argmax(-1) for w in windows])

    def evaluate(model: Any) -> dict[str, Any]:
        model.eval()
        return {name: held_out_scores(model, top1, windows) for name, (windows, top1) in held.items()}

    teacher_scores = evaluate(t_model)
    before_scores = evaluate(s_model)

    # ---- checkpointed training loop
    settings_key = json.dumps({"teacher": str(teacher), "student": student, "dropped": dropped, "data": str(data),
                               "data_tokens": len(stream), "seq_len": seq_len, "batch_size": batch_size, "lr": lr,
                               "temperature": temperature, "alpha": alpha, "seed": seed, "schedule": schedule,
                               "warmup_steps": warmup_steps}, sort_keys=True)
    fingerprint = hashlib.sha256(settings_key.encode()).hexdigest()[:16]
    ckpt_path = work / "checkpoint.pt"
    optimiser = torch.optim.AdamW(s_model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    step, losses, resumed_from, train_seconds, curve = 0, [], 0, 0.0, []
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if ckpt.get("fingerprint") == fingerprint:
            s_model.load_state_dict(ckpt["student"])
            optimiser.load_state_dict(ckpt["optimiser"])
            generator.set_state(ckpt["generator"])
            step, losses = ckpt["step"], ckpt["losses"]
            train_seconds, curve = ckpt.get("train_seconds", 0.0), ckpt.get("curve", [])
            resumed_from = step

    def checkpoint() -> None:
        state = {"fingerprint": fingerprint, "student": s_model.state_dict(), "optimiser": optimiser.state_dict(),
                 "generator": generator.get_state(), "step": step, "losses": losses,
                 "train_seconds": train_seconds, "curve": curve}
        _write_atomic(ckpt_path, lambda tmp: torch.save(state, tmp))

    def curve_point() -> dict[str, Any]:
        scores = evaluate(s_model)
        s_model.train()
        point: dict[str, Any] = {"step": step, "train_seconds": round(train_seconds, 3),
                                 "loss_mean_last": sum(losses[-eval_every:]) / len(losses[-eval_every:])}
        for name, row in scores.items():
            point[name] = {"perplexity": row["perplexity"], "top1_agreement_pct": row["top1_agreement_pct"],
                           "quality_retained_pct": 100 * teacher_scores[name]["perplexity"] / row["perplexity"]}
        return point

    s_model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="distil", unit="step", file=sys.stderr, leave=False)
    call_seconds = 0.0
    while step < steps and not (time_limit_s and call_seconds >= time_limit_s):
        started = time.perf_counter()
        starts = torch.randint(0, n_windows, (batch_size,), generator=generator) * seq_len
        x = torch.stack([stream[s: s + seq_len] for s in starts.tolist()])
        y = torch.stack([stream[s + 1: s + seq_len + 1] for s in starts.tolist()])
        with torch.no_grad():
            t_logits = t_model(x).logits
        loss = distillation_loss(s_model(x).logits, t_logits, y, temperature, alpha)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s_model.parameters(), 1.0)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup_steps, schedule)
        optimiser.step()
        losses.append(float(loss.detach()))
        step += 1
        train_seconds += time.perf_counter() - started
        call_seconds += time.perf_counter() - started
        if bar:
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if eval_every and held and (step % eval_every == 0 or step == steps) and \
                not (curve and curve[-1]["step"] == step):
            curve.append(curve_point())
            if progress:
                retained = ", ".join(f"{name} {row['quality_retained_pct']:.1f}%" for name, row in curve[-1].items()
                                     if isinstance(row, dict))
                print(f"step {step}: loss {curve[-1]['loss_mean_last']:.3f}, retained {retained}", file=sys.stderr,
                      flush=True)
        if step % save_every == 0 or step == steps:
            checkpoint()
    if step < steps:  # stopped by the time limit
        checkpoint()
    if bar:
        bar.close()
    s_model.eval()
    save_hf(s_model, tokenizer, out)
    after_scores = evaluate(s_model)

    result: dict[str, Any] = {
        "output": str(out), "steps": steps, "steps_done": step, "resumed_from_step": resumed_from,
        "train_tokens": len(stream), "tokens_seen": step * batch_size * seq_len, "temperature": temperature, "alpha": alpha, "lr": lr,
        "schedule": schedule, "warmup_steps": warmup_steps, "seq_len": seq_len, "batch_size": batch_size,
        "train_seconds": round(train_seconds, 3), "dropped_blocks": dropped,
        "teacher_parameters": sum(p.numel() for p in t_model.parameters()),
        "student_parameters": sum(p.numel() for p in s_model.parameters()),
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "quality_definition": "teacher perplexity / student perplexity on held-out text (= exp(-ΔNLL per token))",
        "held_out": {}, "curve": curve,
    }
    for name in held:
        t, b, a = teacher_scores[name], before_scores[name], after_scores[name]
        result["held_out"][name] = {
            "tokens": t["tokens"], "teacher_perplexity": t["perplexity"],
            "student_perplexity_before": b["perplexity"], "student_perplexity_after": a["perplexity"],
            "quality_retained_before_pct": 100 * t["perplexity"] / b["perplexity"],
            "quality_retained_pct": 100 * t["perplexity"] / a["perplexity"],
            "top1_agreement_before_pct": b["top1_agreement_pct"], "top1_agreement_after_pct": a["top1_agreement_pct"],
        }
    if held:
        first = next(iter(result["held_out"].values()))
        result["quality_retained_pct"] = first["quality_retained_pct"]
    (work / "report.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return result
