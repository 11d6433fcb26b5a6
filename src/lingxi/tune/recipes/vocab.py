"""Recipe ``vocab``: extend the tokenizer with domain terms (e.g. Chinese legal or medical words
the base model splits into many byte pieces), then adapt the model to them.

setup -> add terms, resize, initialise -> train new rows only -> train new rows + LoRA -> save.

- Each new embedding row starts as the mean of the rows of the sub-tokens the old tokenizer split
  the term into, so the model reads a new token roughly as it read the pieces.
- The first ``new_rows_steps`` steps (default: half) train only the new rows (old rows and
  LoRA get no update), so random gradients do not disturb the rest of the model while the new rows
  settle; then the LoRA adapters join.
- Eval: ``tokens_per_char`` on held-out text (down when the terms occur) and ``loss_per_char``
  (summed loss / characters, comparable across the two tokenizers).

Saved: the LoRA adapter plus ``extra_state.pt`` holding the resized embedding matrix;
``lingxi adapters merge|export`` put both back (export appends the terms to the GGUF vocabulary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.errors import UsageError
from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import mean_token_loss, seed_everything, train
from lingxi.tune.model import load_causal_lm, load_tokenizer, make_trainable, save_model, trainable_parameters
from lingxi.tune.setup import start
from lingxi.tune.tokens import collate, encode_text, sft_messages, token_loss


def row_text(row: dict[str, Any]) -> str:
    if "text" in row:
        return row["text"]
    return "\n".join(m["content"] for m in sft_messages(row))


def read_terms(cfg: TuneConfig) -> list[str]:
    terms = list(cfg.terms)
    if cfg.terms_file:
        path = Path(cfg.terms_file).expanduser()
        if not path.is_file():
            raise UsageError(f"--terms-file not found: {path}")
        terms += [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    return list(dict.fromkeys(terms))


def add_terms(tokenizer: Any, model: Any, terms: list[str]) -> dict[str, list[int]]:
    """Add the terms the tokenizer splits; resize the embeddings; initialise each new row (and
    output row, when untied) as the mean of its old sub-token rows. Returns term -> old pieces."""
    import torch

    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in terms}
    pieces = {t: ids for t, ids in pieces.items() if len(ids) > 1}
    if not pieces:
        return {}
    tokenizer.add_tokens(list(pieces))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    with torch.no_grad():
        for term, ids in pieces.items():
            new = tokenizer.convert_tokens_to_ids(term)
            emb[new] = emb[ids].mean(0)
            if out is not None and out.weight.data_ptr() != emb.data_ptr():
                out.weight[new] = out.weight[ids].mean(0)
    return pieces


def tokens_per_char(tokenizer: Any, texts: list[str]) -> float | None:
    chars = sum(len(t) for t in texts)
    if not chars:
        return None
    return round(sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / chars, 4)


def loss_per_char(model: Any, tokenizer: Any, texts: list[str], max_len: int, device: str) -> float | None:
    examples = [e for t in texts for e in encode_text(tokenizer, t, max_len)]
    mean = mean_token_loss(model, examples, tokenizer.pad_token_id, device)
    chars = sum(len(t) for t in texts)
    if mean is None or not chars:
        return None
    return round(mean * sum(len(e.ids) - 1 for e in examples) / chars, 4)


def extend_vocabulary(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    import torch

    # ---- setup
    terms = read_terms(cfg)
    s = start(cfg, home)
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(s.source, s.home)
    eval_texts = [row_text(r) for r in s.eval_rows]
    base = load_causal_lm(s.source, s.home, device=s.device)
    before = {"tokens_per_char": tokens_per_char(tokenizer, eval_texts),
              "loss_per_char": loss_per_char(base, tokenizer, eval_texts, cfg.max_len, s.device)}
    base_vocab = len(tokenizer)
    pieces = add_terms(tokenizer, base, terms)
    if not pieces:
        raise UsageError("every --terms entry is already a single token; nothing to add")
    model = make_trainable(base, cfg)
    embedding = model.get_input_embeddings().weight
    embedding.requires_grad_(True)
    train_ex = [e for r in s.train_rows for e in encode_text(tokenizer, row_text(r), cfg.max_len)]
    adapters = dict(trainable_parameters(model))
    adapters.pop(next(n for n, p in adapters.items() if p is embedding))
    phase_one = cfg.new_rows_steps if cfg.new_rows_steps is not None else (cfg.max_steps or 2) // 2
    state = {"new_rows_only": True}

    # Old rows never change; the adapters wait until the new rows have settled.
    embedding.register_hook(lambda g: torch.cat([torch.zeros_like(g[:base_vocab]), g[base_vocab:]]))
    for p in adapters.values():
        p.register_hook(lambda g: torch.zeros_like(g) if state["new_rows_only"] else g)

    def on_step(step: int) -> None:
        state["new_rows_only"] = step < phase_one

    # ---- loop
    model.train()
    pad = tokenizer.pad_token_id

    def step(indices: list[int]) -> tuple[Any, int, dict[str, float]]:
        batch = collate([train_ex[i] for i in indices], pad, s.device)
        loss, _ = token_loss(model, batch)
        return loss, int(batch["attention_mask"].sum()), {}

    params = {"embed_tokens.weight": embedding, **adapters}
    log = train(cfg, s.run, params, [len(e.ids) for e in train_ex], step, desc=f"vocab {s.source.name}",
                on_step=on_step)

    # ---- save
    after = {"tokens_per_char": tokens_per_char(tokenizer, eval_texts),
             "loss_per_char": loss_per_char(model, tokenizer, eval_texts, cfg.max_len, s.device)}
    save_model(model, tokenizer, s.run.folder / "adapter",
               extra={"embed_tokens": embedding.detach().cpu(), "base_vocab": base_vocab})
    return s.run.report(model=s.source.name, log=log, before=before, after=after, data=s.data_stats,
                        extra={"method": cfg.method, "memory_estimate": s.memory, "new_rows_steps": phase_one,
                               "added_terms": {t: len(ids) for t, ids in pieces.items()},
                               "vocab_size": {"before": base_vocab, "after": len(tokenizer)}})
