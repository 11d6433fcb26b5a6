"""``lingxi eval …``: measure generation, retrieval, models and endpoints into one result format.

Every command prints its headline numbers (or ``--json``), and can keep the full result
(``--save RUN.json``: config, data hashes, versions, per-item scores) and a self-contained HTML
report with plots (``--html REPORT.html``). ``lingxi eval compare A.json B.json`` puts two saved
runs side by side with paired significance tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from lingxi.cli import emit_json, settings


@click.group("eval")
def eval_group() -> None:
    """Evaluate generation, retrieval, models and endpoints; compare runs."""


def output_options(fn: Callable) -> Callable:
    """``--json``, ``--save`` and ``--html``, shared by every eval command that produces a run."""
    fn = click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
                      help="Write a self-contained HTML report with plots.")(fn)
    fn = click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
                      help="Write the full result (config, data hashes, versions, per-item scores) as JSON.")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")(fn)


def finish(run: Any, as_json: bool, save_path: str | None, html_path: str | None, text: str) -> None:
    """Save and render ``run`` as asked, then print its summary (JSON) or ``text``."""
    if save_path:
        run.save(save_path)
    if html_path:
        from lingxi.evaluate.report import render_html, write_html

        write_html(html_path, render_html(run))
    if as_json:
        emit_json(run.summary)
    else:
        click.echo(text)


@eval_group.command("retrieval")
@click.option("--corpus", required=True, type=click.Path(dir_okay=False), help='corpus.jsonl: {"_id","title","text"}')
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help='queries.jsonl: {"_id","text"}')
@click.option("--qrels", required=True, type=click.Path(dir_okay=False), help="qrels TSV: query-id corpus-id score")
@click.option("--mode", type=click.Choice(["bm25", "dense", "hybrid"]), default="hybrid", show_default=True)
@click.option("--embedder", default=None, help="Embedder (default: as a new knowledge base would choose).")
@click.option("--save-run", type=click.Path(dir_okay=False), default=None, help="Write a TREC run file (top 100).")
@output_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def retrieval(corpus: str, queries: str, qrels: str, mode: str, embedder: str | None, save_run: str | None,
              as_json: bool, save_path: str | None, html_path: str | None, quiet: bool) -> None:
    """nDCG@10, recall@10 and MRR@10 of a search mode; each corpus document is indexed whole."""
    from lingxi.evaluate.retrieval import retrieval_eval

    run = retrieval_eval(settings(), corpus, queries, qrels, mode=mode, embedder=embedder,
                         save_run=save_run, progress=not quiet)
    s = run.summary
    finish(run, as_json, save_path, html_path,
           f"mode={s['mode']} embedder={s['embedder']} queries={s['queries']}  nDCG@10={s['ndcg@10']:.4f}  "
           f"recall@10={s['recall@10']:.4f}  MRR@10={s['mrr@10']:.4f}")


@eval_group.command("generation")
@click.option("--hyp", required=True, type=click.Path(dir_okay=False), help="System output, one segment per line.")
@click.option("--ref", "refs", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Reference file, one segment per line (repeat for several references).")
@click.option("--metrics", default=",".join(("bleu", "chrf", "ter", "rouge", "exact", "f1")), show_default=True,
              help="Comma-separated: bleu, chrf, ter, rouge, exact, f1.")
@click.option("--lang", default="en", show_default=True,
              help="Target language (zh: sacrebleu's zh tokenizer, character ROUGE, CMRC-style EM/F1).")
@output_options
def generation(hyp: str, refs: tuple[str, ...], metrics: str, lang: str, as_json: bool, save_path: str | None,
               html_path: str | None) -> None:
    """BLEU, chrF, TER (sacrebleu), ROUGE-1/2/L, exact match and F1, on sacrebleu's 0-100 scale."""
    from lingxi.evaluate.generation import evaluate_generation

    run = evaluate_generation(hyp, list(refs), metrics=metrics, lang=lang)
    finish(run, as_json, save_path, html_path, "  ".join(f"{k}={v:.2f}" for k, v in run.summary.items()))


@eval_group.command("perplexity")
@click.option("--model", "model", required=True,
              help="A .gguf file, a Hugging Face folder, or a configured model name.")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="UTF-8 text file.")
@click.option("--backend", type=click.Choice(["llamacpp", "transformers"]), default=None,
              help="Force the reader (transformers on a .gguf dequantises it). Default: by file type.")
@click.option("--context", default=512, show_default=True, help="Window length in tokens.")
@click.option("--stride", default=256, show_default=True, help="Window step in tokens.")
@click.option("--max-tokens", type=int, default=None, help="Score only the first N tokens of the file.")
@click.option("--threads", type=int, default=None, help="CPU threads for llama.cpp (default: all).")
@output_options
def perplexity(model: str, data: str, backend: str | None, context: int, stride: int, max_tokens: int | None,
               threads: int | None, as_json: bool, save_path: str | None, html_path: str | None) -> None:
    """Sliding-window perplexity from the model's own logits (llama.cpp for GGUF, transformers for HF)."""
    from lingxi.evaluate.perplexity import evaluate_perplexity

    run = evaluate_perplexity(model, data, settings=settings(), backend=backend, context=context, stride=stride,
                              max_tokens=max_tokens, threads=threads)
    s = run.summary
    finish(run, as_json, save_path, html_path,
           f"perplexity={s['perplexity']:.4f} tokens={s['tokens']} backend={s['backend']} model={s['model']}")


@eval_group.command("perf")
@click.option("--model", default=None, help="An engine in this process (configured or bundled model name); "
              "with --url, the model name to request.")
@click.option("--url", default=None, help="An OpenAI-compatible endpoint (the gateway, vLLM, a llama.cpp server).")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Comma-separated concurrency levels.")
@click.option("--duration", default=10.0, show_default=True, help="Seconds per level.")
@click.option("--max-tokens", default=64, show_default=True)
@click.option("--prompts", type=click.Path(dir_okay=False), default=None,
              help='One prompt per line or JSONL {"prompt"}; default: a small built-in zh/en set.')
@click.option("--seed", type=int, default=None,
              help="Sent with every request. Repeated prompts are otherwise answered from a prefix cache; "
              "Lingxi's llama.cpp engine serves a seeded request from an empty cache (TTFT = full prefill).")
@click.option("--api-key-env", default="LINGXI_API_KEY", show_default=True,
              help="Environment variable holding the endpoint's API key (if set).")
@output_options
def perf(model: str | None, url: str | None, concurrency: str, duration: float, max_tokens: int,
         prompts: str | None, seed: int | None, api_key_env: str, as_json: bool, save_path: str | None,
         html_path: str | None) -> None:
    """TTFT p50/p95, inter-token latency, tokens/s, requests/s and error rate per concurrency level."""
    import os

    from lingxi.errors import UsageError
    from lingxi.evaluate.perf import evaluate_perf, format_perf

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise UsageError(f"--concurrency '{concurrency}' is not a comma-separated list of integers") from None
    run = evaluate_perf(model=model, url=url, settings=settings() if url is None else None, concurrency=levels,
                        duration=duration, max_tokens=max_tokens, prompts=prompts, seed=seed,
                        api_key=os.environ.get(api_key_env))
    finish(run, as_json, save_path, html_path, format_perf(run))


@eval_group.command("qa")
@click.option("--model", default=None, help="Configured or bundled model (default: the default model).")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help='JSONL {"question", "answers": [...], "context"?}.')
@click.option("--max-tokens", default=48, show_default=True)
@click.option("--lang", default=None, help="Force SQuAD (en) or CMRC (zh) scoring; default: by each question's script.")
@click.option("--limit", type=int, default=None, help="Only the first N questions.")
@output_options
def qa(model: str | None, data: str, max_tokens: int, lang: str | None, limit: int | None, as_json: bool,
       save_path: str | None, html_path: str | None) -> None:
    """Exact match and F1 of a model's answers (SQuAD rules for English, CMRC 2018 for Chinese)."""
    from lingxi.evaluate.qa import evaluate_qa

    run = evaluate_qa(model, data, settings=settings(), max_tokens=max_tokens, lang=lang, limit=limit)
    s = run.summary
    finish(run, as_json, save_path, html_path, f"questions={s['questions']}  EM={s['exact']:.2f}  F1={s['f1']:.2f}")


@eval_group.command("rag")
@click.option("--kb", "kb_name", required=True, help="Knowledge base name.")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help='JSONL {"question", "answers": [...] ([] = unanswerable), "doc"?}.')
@click.option("--model", default=None, help="Model that writes generated answers (default: the default model).")
@click.option("--mode", type=click.Choice(["auto", "generate", "extract"]), default=None,
              help="Answer mode (default: knowledge.answer_mode).")
@click.option("-k", "k", default=5, show_default=True, help="Chunks retrieved per question.")
@output_options
def rag(kb_name: str, data: str, model: str | None, mode: str | None, k: int, as_json: bool, save_path: str | None,
        html_path: str | None) -> None:
    """Retrieval hit rate, answer EM/F1, citation precision, faithfulness and the don't-know rate."""
    from lingxi.evaluate.rag import evaluate_rag

    run = evaluate_rag(kb_name, data, settings=settings(), model=model, k=k, mode=mode)
    finish(run, as_json, save_path, html_path, "  ".join(
        f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in run.summary.items() if value is not None))


@eval_group.command("bias")
@click.option("--model", required=True, help="A .gguf file, a Hugging Face folder, or a configured model name.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help='JSONL {"category", "lang", "a", "b"}; default: the built-in zh/en gender, region, age pairs.')
@click.option("--backend", type=click.Choice(["llamacpp", "transformers"]), default=None)
@output_options
def bias(model: str, data: str | None, backend: str | None, as_json: bool, save_path: str | None,
         html_path: str | None) -> None:
    """Log-likelihood differences on minimal pairs (gender, region, age swaps; zh and en), per category."""
    from lingxi.evaluate.bias import evaluate_bias, format_bias

    run = evaluate_bias(model, settings=settings(), data=data, backend=backend)
    finish(run, as_json, save_path, html_path, format_bias(run))


@eval_group.command("compare")
@click.argument("run_a", type=click.Path(dir_okay=False))
@click.argument("run_b", type=click.Path(dir_okay=False))
@click.option("--samples", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report of both runs.")
def compare(run_a: str, run_b: str, samples: int, as_json: bool, html_path: str | None) -> None:
    """Two saved runs side by side: differences and paired-bootstrap p-values (as sacrebleu)."""
    from lingxi.evaluate.compare import compare_runs, format_comparison
    from lingxi.evaluate.result import EvalRun

    a, b = EvalRun.load(run_a), EvalRun.load(run_b)
    result = compare_runs(a, b, n_samples=samples)
    if html_path:
        from lingxi.evaluate.report import render_html, write_html

        write_html(html_path, render_html(a, b, names=(run_a, run_b), comparison=result))
    if as_json:
        emit_json(result)
    else:
        click.echo(format_comparison(result, run_a, run_b))


@eval_group.command("report")
@click.argument("run_file", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False), help="Where to write it.")
def report(run_file: str, html_path: str) -> None:
    """Render a saved run as a self-contained HTML page with plots."""
    from lingxi.evaluate.report import render_html, write_html
    from lingxi.evaluate.result import EvalRun

    click.echo(write_html(html_path, render_html(EvalRun.load(run_file))))


# The guard's evaluations live with the guard's CLI; they are listed here under `lingxi eval`.
from lingxi.cli.guard import eval_injection, eval_pii  # noqa: E402

eval_group.add_command(eval_pii)
eval_group.add_command(eval_injection)
