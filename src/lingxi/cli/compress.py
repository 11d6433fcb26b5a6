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
@click.option("--json", "as_json", is_flag=True)
def quantize_cmd(model: str, ftype: str, out: str, via_f16: bool | None, data: str | None, report_dir: str | None,
                 max_tokens: int, as_json: bool) -> None:
    """GGUF quantisation through llama.cpp; with --data/--report, a before/after report."""
    from lingxi.compress.quantize import quantize_model

    _print(quantize_model(model, out, ftype, settings=settings(), via_f16=via_f16, data=data,
                          report_dir=report_dir, max_tokens=max_tokens), as_json)


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
@click.option("--json", "as_json", is_flag=True)
def prune_cmd(model: str, out: str, method: str, amount: float, data: str | None, report_dir: str | None,
              max_tokens: int, calibration: str | None, as_json: bool) -> None:
    """Magnitude (torch.nn.utils.prune) or structured MLP-channel pruning, with a before/after report."""
    from lingxi.compress.prune import prune_model

    result = prune_model(model, out, amount=amount, method=method, settings=settings(), data=data,
                         report_dir=report_dir, max_tokens=max_tokens, calibration=calibration)
    if not as_json:
        click.echo(f"sparsity {result['sparsity']:.3f}, {result['parameters']:,} parameters")
    _print(result, as_json)


@compress.command("distill")
@click.option("--teacher", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--student", default=None, help="Student model (default: the teacher with every other block).")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Training text (the user's prompts/documents).")
@click.option("--eval-data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output Hugging Face folder.")
@click.option("--steps", default=30, show_default=True)
@click.option("--seq-len", default=128, show_default=True)
@click.option("--batch-size", default=2, show_default=True)
@click.option("--lr", default=2e-4, show_default=True)
@click.option("--temperature", default=2.0, show_default=True)
@click.option("--alpha", default=0.5, show_default=True, help="Weight of the KL term; 1 - alpha weighs CE.")
@click.option("--json", "as_json", is_flag=True)
def distill_cmd(teacher: str, student: str | None, data: str, eval_data: str | None, out: str, steps: int,
                seq_len: int, batch_size: int, lr: float, temperature: float, alpha: float, as_json: bool) -> None:
    """Teacher -> student with KL on logits (temperature, alpha mixing with cross-entropy)."""
    from lingxi.compress.distill import distill

    result = distill(teacher, out, data, student=student, steps=steps, seq_len=seq_len, batch_size=batch_size,
                     lr=lr, temperature=temperature, alpha=alpha, eval_data=eval_data, settings=settings())
    if as_json:
        emit_json(result)
    else:
        for key, value in result.items():
            click.echo(f"{key:<28} {value:.4g}" if isinstance(value, float) else f"{key:<28} {value}")


@compress.command("int8")
@click.option("--model", required=True, help="A HF folder, a .gguf (dequantised) or a configured model.")
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="Held-out text for perplexity.")
@click.option("--max-tokens", default=512, show_default=True, help="Perplexity on at most this many tokens.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
def int8_cmd(model: str, data: str | None, max_tokens: int, threads: int | None) -> None:
    """PyTorch dynamic INT8 (CPU): size, tokens/s and perplexity before and after, as JSON."""
    from lingxi.compress.dynamic import int8_dynamic

    emit_json(int8_dynamic(model, settings=settings(), data=data, max_tokens=max_tokens, threads=threads))
