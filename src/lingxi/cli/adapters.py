"""``lingxi adapters``: list tuned runs, merge LoRA into the base, export to GGUF for llama.cpp."""

from __future__ import annotations

import click

from lingxi.cli import emit_json, settings


@click.group()
def adapters() -> None:
    """Tuned runs under <home>/adapters (or any run folder): list, merge, export."""


@adapters.command("list")
def list_() -> None:
    """Every finished run: recipe, base model, steps, eval before/after, exports."""
    from lingxi.tune.adapters import list_adapters

    emit_json(list_adapters(settings().home_dir))


@adapters.command()
@click.argument("run")
def merge(run: str) -> None:
    """Fold RUN's LoRA adapter into its base; writes RUN/merged (a Hugging Face model)."""
    from lingxi.tune.adapters import merge as merge_run
    from lingxi.tune.adapters import resolve_run

    home = settings().home_dir
    emit_json({"merged": str(merge_run(resolve_run(run, home), home))})


@adapters.command()
@click.argument("run")
@click.option("--outtype", type=click.Choice(["f16", "f32"]), default="f16", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the GGUF (default RUN/model.gguf).")
@click.option("--no-check", is_flag=True, help="Skip the llama.cpp vs transformers loss check.")
@click.option("--name", help="Model name for the printed config snippet (default: the run's name).")
def export(run: str, outtype: str, out: str | None, no_check: bool, name: str | None) -> None:
    """Merge RUN (if needed) and write a GGUF for llama.cpp; check its loss against the merged
    model's on probe texts, and print the config lines that serve it by name."""
    from lingxi.tune.adapters import export_gguf, resolve_run, serve_snippet

    home = settings().home_dir
    folder = resolve_run(run, home)
    result = export_gguf(folder, home, outtype=outtype, check=not no_check, out=out)
    result["config"] = serve_snippet(name or folder.name, result["gguf"])
    emit_json(result)
