"""``lingxi compress distill``: teacher -> student on the teacher's logits.

The loss is Hinton et al.'s: ``alpha * T² * KL(softmax(teacher/T) || softmax(student/T)) +
(1 - alpha) * CE(student, next token)`` over every position of windows of the user's text. The
default student is the teacher with every other decoder block removed (half the blocks, the
embeddings kept), a common starting point that already knows the vocabulary; any Hugging Face
model with the same tokenizer can be the student instead.

The report gives the teacher's, the untrained student's and the distilled student's perplexity
on held-out text, and "quality retained": teacher perplexity / student perplexity, in percent.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

from lingxi.errors import UsageError


def halve_layers(model: Any) -> Any:
    """A copy of a Llama-style model keeping decoder blocks 0, 2, 4, ..."""
    import torch

    student = copy.deepcopy(model)
    layers = student.model.layers
    kept = torch.nn.ModuleList([layers[i] for i in range(0, len(layers), 2)])
    for i, layer in enumerate(kept):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = i  # the KV cache is indexed by it
    student.model.layers = kept
    student.config.num_hidden_layers = len(kept)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = student.config.layer_types[: len(kept)]
    return student


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


def distill(teacher: str, out: str | Path, data: str | Path, *, student: str | None = None, steps: int = 30,
            seq_len: int = 128, batch_size: int = 2, lr: float = 2e-4, temperature: float = 2.0, alpha: float = 0.5,
            eval_data: str | Path | None = None, max_tokens: int | None = 1024, settings: Any = None,
            seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` (default: half its blocks) on ``data``; save to ``out``."""
    if not 0 <= alpha <= 1 or temperature <= 0 or steps < 1 or seq_len < 8:
        raise UsageError("need 0 <= alpha <= 1, temperature > 0, steps >= 1, seq_len >= 8")
    import torch

    from lingxi.compress.prune import load_hf, save_hf
    from lingxi.evaluate.perplexity import TransformersScorer, evaluate_perplexity, read_text

    text = read_text(data)
    torch.manual_seed(seed)
    t_model, tokenizer = load_hf(teacher, settings)
    s_model = load_hf(student, settings)[0] if student else halve_layers(t_model)
    if s_model.config.vocab_size != t_model.config.vocab_size:
        raise UsageError("the student and the teacher must share a vocabulary (same tokenizer)")
    ids = torch.tensor(tokenizer(text, add_special_tokens=False).input_ids)
    n_windows = (len(ids) - 1) // seq_len
    if n_windows < 1:
        raise UsageError(f"data {data} has {len(ids)} tokens; need more than --seq-len ({seq_len})")
    windows = ids[: n_windows * seq_len + 1]

    def ppl(model: Any) -> float | None:
        if eval_data is None:
            return None
        run = evaluate_perplexity("in-memory", eval_data, scorer=TransformersScorer.from_model(model, tokenizer),
                                  context=256, stride=128, max_tokens=max_tokens, progress=False)
        return run.summary["perplexity"]

    teacher_ppl, student_before = ppl(t_model), ppl(s_model)
    t_model.eval()
    s_model.train()
    optimiser = torch.optim.AdamW(s_model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="distil", unit="step", file=sys.stderr, leave=False)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, n_windows, (batch_size,), generator=generator) * seq_len
        x = torch.stack([windows[s: s + seq_len] for s in starts.tolist()])
        y = torch.stack([windows[s + 1: s + seq_len + 1] for s in starts.tolist()])
        with torch.no_grad():
            t_logits = t_model(x).logits
        loss = distillation_loss(s_model(x).logits, t_logits, y, temperature, alpha)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s_model.parameters(), 1.0)
        optimiser.step()
        losses.append(float(loss))
        if bar:
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar:
        bar.close()
    s_model.eval()
    save_hf(s_model, tokenizer, out)
    student_after = ppl(s_model)
    result: dict[str, Any] = {
        "output": str(out), "steps": steps, "temperature": temperature, "alpha": alpha,
        "loss_first": losses[0], "loss_last": losses[-1],
        "teacher_parameters": sum(p.numel() for p in t_model.parameters()),
        "student_parameters": sum(p.numel() for p in s_model.parameters()),
        "teacher_perplexity": teacher_ppl, "student_perplexity_before": student_before,
        "student_perplexity_after": student_after,
    }
    if teacher_ppl and student_after:
        result["quality_retained_pct"] = 100 * teacher_ppl / student_after
        result["nll_gap_after"] = math.log(student_after) - math.log(teacher_ppl)
    return result
