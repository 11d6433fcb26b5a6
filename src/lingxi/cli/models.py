"""``lingxi models …``: what models there are and what they need.

``list`` shows what this configuration can run; the other commands are thin shells over
:mod:`lingxi.catalog`: ``catalog``/``show``/``gpus``/``scenarios`` browse the sourced catalog,
``estimate`` sizes one model, ``select`` recommends models for requirements or a scenario, and
``bench`` measures a configured model here next to its estimate.
"""

from __future__ import annotations

from typing import Any

import click

from lingxi.cli import emit_json, settings


@click.group()
def models() -> None:
    """List, look up, size, choose and measure models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_models(as_json: bool) -> None:
    """Chat models and embedders this configuration can use."""
    s = settings()
    rows = []
    for name, cfg in sorted(s.all_models().items()):
        rows.append(_row(name, "chat", cfg, bundled=name not in s.models, default=name == s.default_model))
    for name, cfg in sorted(s.all_embedders().items()):
        rows.append(_row(name, "embedding", cfg, bundled=name not in s.embedders, default=name == s.default_embedder))
    if as_json:
        emit_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        flags = ", ".join(f for f in ("default" if r["default"] else "", "bundled" if r["bundled"] else "") if f)
        click.echo(f"{r['name']:<{width}}  {r['kind']:<9}  {r['engine']:<21}  {r['source'] or ''}"
                   + (f"  ({flags})" if flags else ""))


def _row(name: str, kind: str, cfg, *, bundled: bool, default: bool) -> dict:
    source = getattr(cfg, "path", None) or getattr(cfg, "base_url", None)
    if getattr(cfg, "model", None) and getattr(cfg, "base_url", None):
        source = f"{cfg.base_url} ({cfg.model})"
    return {
        "name": name,
        "kind": kind,
        "engine": cfg.engine,
        "source": source or getattr(cfg, "description", None),
        "context_length": getattr(cfg, "context_length", None),
        "bundled": bundled,
        "default": default,
    }


# ---------------------------------------------------------------- catalog commands


def _catalog() -> Any:
    from lingxi.catalog import load_catalog

    return load_catalog(settings())


def _fmt(value: Any, unit: str = "") -> str:
    return "?" if value is None else f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


@models.command("catalog")
@click.option("--open", "only_open", is_flag=True, help="Only models with downloadable weights.")
@click.option("--api", "only_api", is_flag=True, help="Only API-served models.")
@click.option("--json", "as_json", is_flag=True, help="Print every entry as JSON.")
def catalog_cmd(only_open: bool, only_api: bool, as_json: bool) -> None:
    """Every model in the catalog (sizes, context, licence, price); unknown values show '?'."""
    entries = [m for m in _catalog().models.values()
               if not (only_open and not m.open_weights) and not (only_api and m.open_weights)]
    if as_json:
        emit_json([m.model_dump(exclude_none=True) for m in entries])
        return
    width = max(len(m.id) for m in entries)
    for m in entries:
        size = _fmt(m.params_b, "B") + (f"/{_fmt(m.active_params_b, 'B')} active" if m.active_params_b else "")
        price = (f"${_fmt(m.price.input_per_mtok)}/${_fmt(m.price.output_per_mtok)} per Mtok"
                 if m.price else ("open weights" if m.open_weights else "price ?"))
        click.echo(f"{m.id:<{width}}  {size:<18} ctx {_fmt(m.context_length):<8} zh {m.chinese or '?':<9} "
                   f"{m.commercial or '?':<11}  {price}")


@models.command("show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def show(model: str, as_json: bool) -> None:
    """One catalog entry with the source of every figure."""
    entry = _catalog().model(model)
    data = entry.model_dump(exclude_none=True)
    if as_json:
        emit_json(data)
        return
    click.echo(f"{entry.name}  [{entry.id}]  by {entry.vendor}")
    for key in ("release_date", "params_b", "active_params_b", "context_length", "languages", "chinese",
                "modalities", "strengths", "license", "commercial", "license_terms", "notes"):
        if key in data:
            value = ", ".join(data[key]) if isinstance(data[key], list) else data[key]
            click.echo(f"  {key:<16} {value}")
    click.echo(f"  {'source':<16} {entry.card or '(none)'}")
    if entry.arch:
        shape = entry.arch.model_dump(exclude_none=True, exclude={"source"})
        click.echo("  arch             " + ", ".join(f"{k}={v}" for k, v in shape.items()))
        click.echo(f"  {'arch source':<16} {entry.arch.source}")
    if entry.price:
        p = entry.price
        click.echo(f"  price            {_fmt(p.input_per_mtok)} in / {_fmt(p.output_per_mtok)} out {p.currency} "
                   f"per Mtok (as of {p.as_of}){'; ' + p.note if p.note else ''}")
        click.echo(f"  {'price source':<16} {p.source}")
    for name, s in entry.benchmarks.items():
        click.echo(f"  {name:<16} {s.score:g}" + (f" [{s.setting}]" if s.setting else "") + f"  {s.source}")


@models.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def gpus(as_json: bool) -> None:
    """Accelerators the estimator knows (datasheet figures, '?' where unpublished)."""
    items = list(_catalog().gpus.values())
    if as_json:
        emit_json([g.model_dump(exclude_none=True) for g in items])
        return
    width = max(len(g.id) for g in items)
    for g in items:
        click.echo(f"{g.id:<{width}}  {_fmt(g.memory_gib, ' GiB'):<9} {_fmt(g.bandwidth_gbs, ' GB/s'):<10} "
                   f"{_fmt(g.fp16_tflops, ' TFLOPS'):<14} {_fmt(g.int8_tops, ' TOPS'):<10} {g.name}")


@models.command("scenarios")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def scenarios(as_json: bool) -> None:
    """Selection presets (shipped and from [catalog.scenarios])."""
    items = list(_catalog().scenarios.values())
    if as_json:
        emit_json([s.model_dump(exclude_none=True) for s in items])
        return
    for s in items:
        title = s.title + (f" / {s.title_zh}" if s.title_zh else "")
        click.echo(f"{s.id}: {title}\n    {s.rationale}")


# Choices are validated by the library (one-line error, exit 2), so they are plain strings here.
PRECISIONS = "fp32|fp16|bf16|int8|int4"


@models.command("estimate")
@click.argument("model")
@click.option("--precision", default=None, help=f"{PRECISIONS} (default bf16; int4 for qlora).")
@click.option("--mode", default="inference", show_default=True, help="inference|full|lora|qlora|freeze")
@click.option("--context", type=click.IntRange(min=1), default=None,
              help="Tokens per sequence (default 4096 for inference, 2048 for training).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--gpu", default=None, help="Check fit and roofline speed on this GPU (see 'lingxi models gpus').")
@click.option("--pure-bf16", is_flag=True, help="Full fine-tuning with 16-bit weights, gradients and optimizer.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate_cmd(model: str, precision: str | None, mode: str, context: int | None, batch: int, gpu: str | None,
                 pure_bf16: bool, as_json: bool) -> None:
    """Memory (GiB), GPUs needed, roofline speed and API cost of MODEL."""
    from lingxi.catalog import estimate

    cat = _catalog()
    entry = cat.model(model)
    result = estimate(entry, precision=precision, mode=mode, context=context, batch=batch,
                      gpu=cat.gpu(gpu) if gpu else None, pure_16bit=pure_bf16)
    if as_json:
        emit_json(result.to_dict())
        return
    _print_estimate(result)


def _print_estimate(e: Any) -> None:
    head = f"{e.model}: {e.mode}" + (f" at {e.precision}" if e.precision else "") + f", {e.context} tokens × batch {e.batch}"
    click.echo(head)
    if e.memory_gib:
        for key, value in e.memory_gib.items():
            click.echo(f"  {key:<12} {value:9.2f} GiB")
    if e.gpu:
        verdict = "fits" if e.fits else f"does not fit; needs {e.gpus_needed}"
        click.echo(f"  on {e.gpu} ({e.gpu_memory_gib:g} GiB): {verdict}")
    if e.decode_tokens_per_s:
        click.echo(f"  decode  ≤ {e.decode_tokens_per_s:,.1f} tokens/s per sequence (roofline estimate)")
    if e.prefill_tokens_per_s:
        click.echo(f"  prefill ≤ {e.prefill_tokens_per_s:,.0f} tokens/s; TTFT ≥ {e.ttft_s:.3f} s for {e.context} tokens")
    if e.cost:
        c = e.cost
        click.echo(f"  API: {_fmt(c['input_per_mtok'])} in / {_fmt(c['output_per_mtok'])} out {c['currency']} per Mtok "
                   f"(blend {_fmt(c['blended_per_mtok'])}; as of {c['as_of']})")
    for note in e.assumptions:
        click.echo(f"  - {note}")


@models.command("select")
@click.option("--task", help="chat|code|rag|summarize|translate|math|agent")
@click.option("--lang", help="zh|en|multi")
@click.option("--deploy", help="local|cloud|either (default either)")
@click.option("--max-gpu-mem", type=click.FloatRange(min=0, min_open=True), help="GiB available for a local model.")
@click.option("--context", type=click.IntRange(min=1), help="Tokens the model must handle.")
@click.option("--license", "license_", help="commercial|any (default any)")
@click.option("--budget-per-mtok", type=click.FloatRange(min=0), help="Max USD per million tokens (3:1 blend).")
@click.option("--precision", help=f"Only consider this precision for local models ({PRECISIONS}).")
@click.option("--scenario", help="A preset (see 'lingxi models scenarios'); flags override it.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Candidates to print (text).")
@click.option("--json", "as_json", is_flag=True, help="Print candidates and rejections as JSON.")
def select_cmd(task, lang, deploy, max_gpu_mem, context, license_, budget_per_mtok, precision, scenario, limit,
               as_json) -> None:
    """Recommend models for requirements: hard filters, then a transparent score with reasons."""
    from lingxi.catalog import Requirements, select

    cat = _catalog()
    req = Requirements.from_scenario(
        cat.scenario(scenario) if scenario else None, task=task, lang=lang, deploy=deploy, max_gpu_mem=max_gpu_mem,
        context=context, license=license_, budget_per_mtok=budget_per_mtok, precision=precision)
    result = select(cat, req)
    if as_json:
        emit_json(result.to_dict())
        return
    if result.scenario:
        click.echo(f"scenario {result.scenario['id']}: {result.scenario['rationale']}")
    click.echo(f"{len(result.candidates)} candidates, {len(result.rejected)} rejected")
    for c in result.candidates[:limit]:
        click.echo(f"{c['score']:5.1f}  {c['model']}")
        for reason in c["reasons"]:
            click.echo(f"         {reason}")
    if len(result.candidates) > limit:
        click.echo(f"... {len(result.candidates) - limit} more (--limit, or --json for all with rejections)")


@models.command("bench")
@click.argument("model")
@click.option("--catalog-id", help="Catalog entry that describes MODEL (default: MODEL or its alias).")
@click.option("--precision", help=f"Precision to estimate at ({PRECISIONS}; default: from the model's config).")
@click.option("--gpu", help="Estimate on this catalog GPU instead of this machine (measured).")
@click.option("--prompt", default=None, help="Prompt to generate from.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def bench_cmd(model, catalog_id, precision, gpu, prompt, max_tokens, runs, as_json) -> None:
    """Run configured MODEL here; print measured TTFT and tokens/s next to the estimate."""
    from lingxi.evaluate.bench import DEFAULT_PROMPT, bench

    cat = _catalog()
    result = bench(model, settings(), cat, catalog_id=catalog_id, precision=precision,
                   gpu=cat.gpu(gpu) if gpu else None, prompt=prompt or DEFAULT_PROMPT,
                   max_tokens=max_tokens, runs=runs)
    if as_json:
        emit_json(result)
        return
    m, e, hw = result["measured"], result["estimate"], result["hardware"]
    click.echo(f"{result['model']} ({result['engine']}) on {hw['name']}: {m['runs']} runs, "
               f"{m['prompt_tokens']} prompt tokens")
    est_ttft = e.get("ttft_s") if e else None
    est_dec = e.get("decode_tokens_per_s") if e else None
    click.echo(f"  {'':<22} {'measured':>10} {'estimate':>10}")
    click.echo(f"  {'TTFT (s)':<22} {m['ttft_s']:>10.4f} {_fmt(est_ttft):>10}")
    click.echo(f"  {'decode (tokens/s)':<22} {m['decode_tokens_per_s']:>10.1f} {_fmt(est_dec):>10}")
    if e:
        click.echo(f"  memory estimate {e['memory_gib']['total']:.2f} GiB at {e['precision']}; "
                   "estimates are roofline upper bounds")
    if result.get("note"):
        click.echo(f"  note: {result['note']}")
