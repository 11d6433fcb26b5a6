"""``lingxi compress …``: shrink a model and report what it cost (a thin shell over lingxi.compress)."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings


@click.group("compress")
def compress() -> None:
    """Quantise, prune or distil a model, with a before/after report."""


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    click.echo(f"wrote {result['output']}")
    if result.get("quantized_layers"):
        click.echo(f"  {result['method']}: {result['quantized_layers']} linear layers, "
                   f"{result['quantized_fraction']:.0%} of the parameters, "
                   f"{result['quantized_bits_per_weight']:.2f} bits per weight")
    if "before" in result:
        b, a = result["before"], result["after"]
        for key in ("size_mib", "peak_rss_mib", "decode_tokens_per_s", "perplexity", "fidelity_chrf", "sparsity"):
            if b.get(key) is not None or a.get(key) is not None:
                fb = "-" if b.get(key) is None else f"{b[key]:.4g}"
                fa = "-" if a.get(key) is None else f"{a[key]:.4g}"
                click.echo(f"  {key:<20} {fb:>10} -> {fa:<10}")
        if result.get("report"):
            click.echo(f"report: {result['report']}")


@compress.command("quantize")
@click.option("--model", required=True, help="A .gguf file or a configured llama.cpp model (e.g. smollm2).")
@click.option("--type", "ftype", required=True, help="llama.cpp type: Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .gguf file.")
@click.option("--via-f16/--no-via-f16", default=None,
              help="Widen a quantised source to F16 first (default: when the source is quantised).")
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for before.json, after.json and report.html.")
@click.option("--max-tokens", default=2048, show_default=True, help="Perplexity on at most this many tokens.")
@click.option("--embedding-type", default=None,
              help="Type of token_embd (with tied embeddings also the output head), e.g. Q4_0, Q5_0, Q8_0.")
@click.option("--output-type", default=None, help="Type of a separate output head.")
@click.option("--tensor-type", "tensor_types", multiple=True, metavar="REGEX=TYPE",
              help="Type for tensors whose names match REGEX (repeatable; llama-quantize's --tensor-type).")
@click.option("--pure", is_flag=True, help="Every tensor at the base type, no per-layer mix (llama-quantize --pure).")
@click.option("--json", "as_json", is_flag=True)
def quantize_cmd(model: str, ftype: str, out: str, via_f16: bool | None, data: str | None, report_dir: str | None,
                 max_tokens: int, embedding_type: str | None, output_type: str | None, tensor_types: tuple[str, ...],
                 pure: bool, as_json: bool) -> None:
    """GGUF quantisation through llama.cpp; with --data/--report, a before/after report."""
    from lingxi.compress.quantize import quantize_model
    from lingxi.errors import UsageError

    overrides = {}
    for item in tensor_types:
        pattern, sep, kind = item.rpartition("=")
        if not sep or not pattern or not kind:
            raise UsageError(f"--tensor-type '{item}': expected REGEX=TYPE, e.g. 'attn_.*=Q4_0'")
        overrides[pattern] = kind
    _print(quantize_model(model, out, ftype, settings=settings(), via_f16=via_f16, data=data,
                          report_dir=report_dir, max_tokens=max_tokens, embedding_type=embedding_type,
                          output_type=output_type, tensor_types=overrides or None, pure=pure), as_json)


@compress.command("bnb")
@click.option("--model", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--bits", type=click.Choice(["8", "4"]), required=True, help="8: LLM.int8; 4: NF4 or FP4.")
@click.option("--quant-type", type=click.Choice(["nf4", "fp4"]), default="nf4", show_default=True,
              help="The 4-bit code book.")
@click.option("--double-quant", is_flag=True, help="4-bit: quantise the blocks' scales too (QLoRA's double quantisation).")
@click.option("--out", required=True, type=click.Path(), help="Output folder (a HF model that loads back quantised).")
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for before.json, after.json and report.html.")
@click.option("--max-tokens", default=2048, show_default=True, help="Perplexity on at most this many tokens.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@click.option("--json", "as_json", is_flag=True)
def bnb_cmd(model: str, bits: str, quant_type: str, double_quant: bool, out: str, data: str | None,
            report_dir: str | None, max_tokens: int, threads: int | None, as_json: bool) -> None:
    """bitsandbytes 8/4-bit weights (CPU or CUDA); with --data/--report, a before/after report."""
    from lingxi.compress.bnb import quantize_bnb

    _print(quantize_bnb(model, out, bits=int(bits), quant_type=quant_type, double_quant=double_quant,
                        settings=settings(), data=data, report_dir=report_dir, max_tokens=max_tokens,
                        threads=threads), as_json)


@compress.command("inspect")
@click.argument("gguf_file", type=click.Path(dir_okay=False))
@click.option("--tensors", "show_tensors", is_flag=True, help="One line per tensor, not only the totals per type.")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(gguf_file: str, show_tensors: bool, as_json: bool) -> None:
    """What a GGUF really holds: bytes and bits per weight per tensor type (and per tensor)."""
    from lingxi.compress.gguf import tensor_table

    table = tensor_table(gguf_file)
    if as_json:
        emit_json(table)
        return
    click.echo(f"{gguf_file}: {table['file_bytes'] / 2**20:.1f} MiB, {table['weights']:,} weights, "
               f"{table['bits_per_weight']:.3f} bits per weight")
    click.echo(f"  {'type':<8} {'tensors':>7} {'MiB':>8} {'bits/w':>7} {'share':>6}")
    for kind, agg in sorted(table["by_type"].items(), key=lambda kv: -kv[1]["bytes"]):
        click.echo(f"  {kind:<8} {agg['tensors']:>7} {agg['bytes'] / 2**20:>8.2f} {agg['bits_per_weight']:>7.3f} "
                   f"{agg['share_of_bytes']:>6.1%}")
    if show_tensors:
        for row in table["tensors"]:
            click.echo(f"  {row['name']:<32} {row['type']:<7} {'x'.join(map(str, row['shape'])):>12} "
                       f"{row['bits_per_weight']:>6.2f}")


@compress.command("prune")
@click.option("--model", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output Hugging Face folder.")
@click.option("--method", type=click.Choice(["magnitude", "structured"]), default="magnitude", show_default=True)
@click.option("--amount", default=0.3, show_default=True, help="Fraction of weights (magnitude) or MLP channels "
              "(structured) to remove.")
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for before.json, after.json and report.html.")
@click.option("--max-tokens", default=1024, show_default=True, help="Perplexity on at most this many tokens.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="Text that ranks MLP channels for structured pruning (default: a short built-in zh/en text).")
@click.option("--recover-data", type=click.Path(dir_okay=False), default=None,
              help="Text (.txt/.jsonl) for a short recovery fine-tune after pruning (the tune pretrain recipe).")
@click.option("--recover-steps", default=0, show_default=True, help="Recovery fine-tune steps (0 = none).")
@click.option("--recover-lr", default=5e-5, show_default=True)
@click.option("--recover-batch-size", default=4, show_default=True, help="Sequences per recovery step.")
@click.option("--recover-max-len", default=256, show_default=True, help="Tokens per packed recovery sequence.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@click.option("--json", "as_json", is_flag=True)
def prune_cmd(model: str, out: str, method: str, amount: float, data: str | None, report_dir: str | None,
              max_tokens: int, calibration: str | None, recover_data: str | None, recover_steps: int,
              recover_lr: float, recover_batch_size: int, recover_max_len: int, threads: int | None,
              as_json: bool) -> None:
    """Magnitude (torch.nn.utils.prune) or structured MLP-channel pruning, with a before/after report."""
    from lingxi.compress.prune import prune_model

    cfg = settings()
    result = prune_model(model, out, amount=amount, method=method, settings=cfg, data=data,
                         report_dir=report_dir, max_tokens=max_tokens, calibration=calibration,
                         recover_data=recover_data, recover_steps=recover_steps, recover_lr=recover_lr,
                         recover_batch_size=recover_batch_size, recover_max_len=recover_max_len,
                         threads=threads, home=cfg.home_dir)
    if not as_json:
        click.echo(f"sparsity {result['sparsity']:.3f}, {result['parameters']:,} parameters")
        if result.get("pruned_only", {}).get("perplexity") is not None:
            click.echo(f"perplexity after pruning {result['pruned_only']['perplexity']:.4g}, after "
                       f"{result['recovery']['steps']} recovery steps {result['after']['perplexity']:.4g}")
    _print(result, as_json)


@compress.command("distill")
@click.option("--teacher", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--student", default=None, help="Student model with the teacher's vocabulary (default: the teacher "
              "less --drop-layers decoder blocks).")
@click.option("--drop-layers", default=3, show_default=True,
              help="Default student: remove this many blocks, those that change the hidden state least.")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Training data: a .txt of the user's text, or .json/.jsonl prompts the teacher answers first.")
@click.option("--eval-data", type=click.Path(dir_okay=False), multiple=True,
              help="Held-out text for perplexity (repeatable; the first is the headline).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output Hugging Face folder.")
@click.option("--steps", default=100, show_default=True)
@click.option("--seq-len", default=128, show_default=True)
@click.option("--batch-size", default=4, show_default=True)
@click.option("--lr", default=5e-5, show_default=True, help="Peak learning rate.")
@click.option("--warmup-steps", default=0, show_default=True, help="Linear warm-up to --lr over this many steps.")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="After warm-up: cosine down to lr/10 at --steps, or constant.")
@click.option("--eval-every", default=0, show_default=True,
              help="Score the held-out text(s) every this many steps (the report's curve; 0 = only at the end).")
@click.option("--time-limit", type=float, default=None,
              help="Stop training after this many minutes; the student is saved and scored where it got to.")
@click.option("--temperature", default=2.0, show_default=True)
@click.option("--alpha", default=0.5, show_default=True, help="Weight of the KL term; 1 - alpha weighs CE.")
@click.option("--gen-tokens", default=96, show_default=True, help="Length of the teacher's answers to prompts.")
@click.option("--max-tokens", default=2048, show_default=True, help="Held-out evaluation on at most this many tokens.")
@click.option("--save-every", default=25, show_default=True, help="Checkpoint every this many steps (OUT.work/).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT.work/'s checkpoint.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@click.option("--json", "as_json", is_flag=True)
def distill_cmd(teacher: str, student: str | None, drop_layers: int, data: str, eval_data: tuple[str, ...],
                out: str, steps: int, seq_len: int, batch_size: int, lr: float, warmup_steps: int, schedule: str,
                eval_every: int, time_limit: float | None, temperature: float, alpha: float, gen_tokens: int, max_tokens: int,
                save_every: int, resume: bool, threads: int | None, as_json: bool) -> None:
    """Teacher -> student with KL on logits (temperature, alpha mixing with cross-entropy)."""
    from lingxi.compress.distill import distill

    result = distill(teacher, out, data, student=student, drop_layers=drop_layers, steps=steps, seq_len=seq_len,
                     batch_size=batch_size, lr=lr, temperature=temperature, alpha=alpha,
                     eval_data=list(eval_data) or None, max_tokens=max_tokens, gen_tokens=gen_tokens,
                     save_every=save_every, resume=resume, threads=threads, settings=settings(),
                     warmup_steps=warmup_steps, schedule=schedule, eval_every=eval_every,
                     time_limit_s=60 * time_limit if time_limit else None)
    if as_json:
        emit_json(result)
        return
    click.echo(f"wrote {result['output']} ({result['student_parameters']:,} of the teacher's "
               f"{result['teacher_parameters']:,} parameters; blocks dropped: {result['dropped_blocks'] or '-'})")
    click.echo(f"quality retained = {result['quality_definition']}")
    for name, row in result["held_out"].items():
        click.echo(f"  {name} ({row['tokens']} tokens): teacher perplexity {row['teacher_perplexity']:.3f}; student "
                   f"{row['student_perplexity_before']:.3f} -> {row['student_perplexity_after']:.3f}; retained "
                   f"{row['quality_retained_before_pct']:.1f}% -> {row['quality_retained_pct']:.1f}%; top-1 agreement "
                   f"{row['top1_agreement_before_pct']:.1f}% -> {row['top1_agreement_after_pct']:.1f}%")


@compress.command("int8")
@click.option("--model", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--max-tokens", default=512, show_default=True, help="Perplexity on at most this many tokens.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
def int8_cmd(model: str, data: str | None, max_tokens: int, threads: int | None) -> None:
    """PyTorch dynamic INT8 (CPU): size, tokens/s and perplexity before and after, as JSON."""
    from lingxi.compress.dynamic import int8_dynamic

    emit_json(int8_dynamic(model, settings=settings(), data=data, max_tokens=max_tokens, threads=threads))
