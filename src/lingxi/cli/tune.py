"""``lingxi tune RECIPE``: run one tuning recipe and print its report."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings
from lingxi.tune.config import RECIPES


@click.command()
@click.argument("recipe", type=click.Choice(RECIPES))
@click.option("--model", default="smollm2-135m-instruct", show_default=True,
              help="Bundled model id, a Hugging Face folder, or a .gguf file.")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Training rows (JSONL/JSON/CSV/TXT).")
@click.option("--eval-data", type=click.Path(dir_okay=False), help="Held-out rows (default: 10%% of --data).")
@click.option("--eval-rows", type=int, help="Evaluate at most this many held-out rows (default 200).")
@click.option("--output", type=click.Path(file_okay=False), help="Run folder (default: <home>/adapters/MODEL-RECIPE).")
@click.option("--method", type=click.Choice(["lora", "full", "qlora"]), default="lora", show_default=True)
@click.option("--max-steps", type=int, help="Optimizer steps (default: one epoch).")
@click.option("--epochs", type=float)
@click.option("--batch-size", type=int)
@click.option("--grad-accum", type=int)
@click.option("--lr", type=float, help="Learning rate (default 2e-4 LoRA, 2e-5 full; a tenth for dpo/ppo).")
@click.option("--warmup-steps", type=int)
@click.option("--max-len", type=int, help="Tokens per sequence (default 512).")
@click.option("--packing/--no-packing", default=None, help="sft/pretrain: pack rows into full sequences.")
@click.option("--lora-r", type=int, help="LoRA rank (default 16).")
@click.option("--lora-alpha", type=int, help="LoRA alpha (default 32).")
@click.option("--lora-dropout", type=float, help="LoRA dropout (default 0.1).")
@click.option("--lora-targets", help="Comma-separated module names (default q_proj,v_proj).")
@click.option("--lora-layers", type=int, help="LoRA in the last N layers only (cheaper backward; default all).")
@click.option("--seed", type=int)
@click.option("--save-every", type=int, help="Checkpoint every N steps (default 50).")
@click.option("--resume/--no-resume", default=None, help="Resume from the run folder's checkpoint (default on).")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), help="Malformed data rows: skip (default) or stop.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--threads", type=int, help="CPU threads for torch (default: all cores).")
@click.option("--dry-run", is_flag=True, help="Print the memory estimate and stop.")
@click.option("--no-check-memory", is_flag=True, help="Train even when the estimate exceeds free memory.")
@click.option("--beta", type=float, help="dpo: KL strength (default 0.1).")
@click.option("--reward-model", help="ppo: folder of an rm run, or 'brevity' (programmatic: shorter scores higher).")
@click.option("--kl-start", type=float, help="ppo: KL coefficient at step 0 (default 0.01).")
@click.option("--kl-end", type=float, help="ppo: KL coefficient at the last step (default 0.1).")
@click.option("--max-new-tokens", type=int, help="ppo: sampled response length (default 32).")
@click.option("--ppo-epochs", type=int, help="ppo: clipped updates on each sampled batch (default 2).")
@click.option("--terms", help="vocab: comma-separated domain terms to add.")
@click.option("--terms-file", type=click.Path(dir_okay=False), help="vocab: one term per line.")
@click.option("--embedder", help="embed: bundled embedder name or sentence-transformers folder (default minilm).")
def tune(recipe: str, terms: str | None, lora_targets: str | None, no_check_memory: bool, **options: object) -> None:
    """Run RECIPE (sft, pretrain, vocab, rm, dpo, ppo, embed) and print its report.

    Writes OUTPUT/report.json: recipe, model, steps, train_tokens_per_s, peak_memory_gib and
    eval.before / eval.after. A rerun with the same OUTPUT resumes from the last checkpoint.
    """
    from lingxi.tune import run_recipe
    from lingxi.tune.config import make_config

    values = dict(options, recipe=recipe)
    if terms:
        values["terms"] = [t.strip() for t in terms.split(",") if t.strip()]
    if lora_targets:
        values["lora_targets"] = [t.strip() for t in lora_targets.split(",") if t.strip()]
    if no_check_memory:
        values["check_memory"] = False
    cfg = make_config(**values)
    emit_json(run_recipe(cfg, home=settings().home_dir))
