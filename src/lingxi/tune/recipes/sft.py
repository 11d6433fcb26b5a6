"""Recipes ``sft`` and ``pretrain``: next-token cross-entropy, on the answer tokens of
instruction/chat rows (sft) or on every token of raw domain text (pretrain).

setup -> evaluate before -> train -> evaluate after -> save adapter (or full weights) + report.

Methods: ``lora`` (default r=16, alpha=32, q_proj/v_proj, dropout 0.1; only the adapters train,
which keeps the base's general ability), ``full`` (every weight), ``qlora`` (LoRA on a 4-bit
bitsandbytes base). Eval: mean loss per labelled token on the held-out rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lingxi.tune.config import TuneConfig
from lingxi.tune.loop import mean_token_loss, train
from lingxi.tune.model import save_model, trainable_parameters
from lingxi.tune.setup import start, trainable_model
from lingxi.tune.tokens import collate, encode_rows, pack, token_loss


def finetune_causal_lm(cfg: TuneConfig, home: Path | None = None) -> dict[str, Any]:
    """Run ``sft`` or ``pretrain``; returns the report (also written to ``OUTPUT/report.json``)."""
    # ---- setup: data checked and memory estimated before the model loads
    s = start(cfg, home)
    tokenizer, model = trainable_model(s)
    kind = "text" if cfg.recipe == "pretrain" else "sft"
    train_ex = encode_rows(tokenizer, s.train_rows, cfg.max_len, kind=kind)
    eval_ex = encode_rows(tokenizer, s.eval_rows, cfg.max_len, kind=kind)
    if cfg.packing:
        train_ex = pack(train_ex, cfg.max_len)
    pad = tokenizer.pad_token_id
    before = {"loss": mean_token_loss(model, eval_ex, pad, s.device)}

    # ---- loop
    model.train()

    def step(indices: list[int]) -> tuple[Any, int, dict[str, float]]:
        batch = collate([train_ex[i] for i in indices], pad, s.device)
        loss, _ = token_loss(model, batch)
        return loss, int(batch["attention_mask"].sum()), {}

    log = train(cfg, s.run, dict(trainable_parameters(model)), [len(e.ids) for e in train_ex], step,
                desc=f"{cfg.recipe} {s.source.name}")

    # ---- save
    after = {"loss": mean_token_loss(model, eval_ex, pad, s.device)}
    save_model(model, tokenizer, s.run.folder / "adapter")
    return s.run.report(model=s.source.name, log=log, before=before, after=after,
                        data={**s.data_stats, "train_sequences": len(train_ex), "eval_sequences": len(eval_ex),
                              "packing": cfg.packing},
                        extra={"method": cfg.method, "memory_estimate": s.memory, "base": _base_info(s)})


def _base_info(s: Any) -> dict[str, Any]:
    src = s.source
    return {"name": src.name, "folder": str(src.folder), "gguf_file": src.gguf_file, "catalog_id": src.catalog_id}
