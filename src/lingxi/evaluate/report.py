"""A self-contained HTML page for a run (or a comparison of two): the numbers, plots and provenance.

Plots are drawn with matplotlib (Agg, no display) and embedded as inline SVG, so the file can be
mailed or attached to a ticket and opened anywhere without a server or a network.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from lingxi.errors import missing_extra
from lingxi.evaluate.result import EvalRun

_STYLE = """body{font:15px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.sig{color:#0a0;font-weight:600}
.worse{color:#b00}pre{background:#f7f7f7;padding:.7em;overflow:auto;font-size:12px}.plots svg{max-width:100%;height:auto}"""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise missing_extra("HTML reports with plots", "eval", exc) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _change_plot(runs: list[tuple[str, EvalRun]], keys: list[str]) -> str | None:
    """B against A as a percentage change per metric, green where B is better, red where worse."""
    from lingxi.evaluate.compare import LOWER_IS_BETTER

    plt = _pyplot()
    (name_a, a), (name_b, b) = runs
    rows = [(k, 100 * (float(b.summary[k]) / float(a.summary[k]) - 1)) for k in keys if float(a.summary[k]) != 0]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.2))
    colours = ["#2a9d4b" if (v < 0) == (k in LOWER_IS_BETTER) or v == 0 else "#c0392b" for k, v in rows]
    bars = ax.barh([k for k, _ in rows], [v for _, v in rows], color=colours)
    ax.bar_label(bars, fmt="%+.2f%%", fontsize=8, padding=3)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.margins(x=0.25)  # room for the labels beside the longest bars
    ax.invert_yaxis()
    ax.set_xlabel(f"{name_b} vs {name_a} (% change; green = better)")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _summary_plot(runs: list[tuple[str, EvalRun]]) -> str | None:
    plt = _pyplot()
    keys = [k for k in _numeric(runs[0][1].summary) if all(k in _numeric(r.summary) for _, r in runs)]
    if not keys:
        return None
    if len(runs) == 2:  # metrics on different scales (MiB, perplexity, %) read best as changes
        return _change_plot(runs, keys)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(keys) + 2), 3.2))
    width = 0.8 / len(runs)
    for n, (name, run) in enumerate(runs):
        values = [float(run.summary[k]) for k in keys]
        bars = ax.bar([i + n * width for i in range(len(keys))], values, width, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(keys))], keys, rotation=30, ha="right")
    ax.set_title("summary")
    if len(runs) > 1:
        ax.legend()
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _item_plots(runs: list[tuple[str, EvalRun]]) -> list[str]:
    plt = _pyplot()
    keys: list[str] = []
    for item in runs[0][1].items[:1]:
        keys = [k for k, v in item.get("scores", {}).items() if isinstance(v, int | float)]
    out = []
    for key in keys[:8]:
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        for name, run in runs:
            values = [i["scores"][key] for i in run.items if isinstance(i.get("scores", {}).get(key), int | float)]
            ax.hist(values, bins=min(30, max(5, len(values) // 4)), alpha=0.6, label=name)
        ax.set_title(f"{key} per item")
        ax.set_ylabel("items")
        if len(runs) > 1:
            ax.legend(fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        out.append(_svg(fig))
    return out


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def render_html(run: EvalRun, other: EvalRun | None = None, names: tuple[str, str] = ("A", "B"),
                comparison: dict[str, Any] | None = None) -> str:
    """The page for one run, or for ``run`` (A) against ``other`` (B) with ``comparison`` rows."""
    runs = [(names[0], run)] + ([(names[1], other)] if other is not None else [])
    title = f"Lingxi evaluation: {run.kind}" + (f" — {names[0]} vs {names[1]}" if other is not None else "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if comparison is not None:
        rows = []
        for r in comparison["rows"]:
            p = r["p_value"]
            good = (r["diff"] > 0) == (r["better"] == "higher")
            cls = "sig" if p is not None and p < 0.05 and good else "worse" if p is not None and p < 0.05 else ""
            rows.append([html.escape(r["metric"]), _fmt(r["a"]), _fmt(r["b"]),
                         f"<span class='{cls}'>{r['diff']:+.4g}</span>", "" if p is None else f"{p:.4f}",
                         r["better"]])
        parts.append("<h2>Comparison</h2>" + _table(rows, ["metric", names[0], names[1], "B−A", "p", "better"]))
        parts.append(f"<p>{html.escape(comparison.get('note') or 'p: paired bootstrap, 1000 resamples (as sacrebleu)')}</p>")
    else:
        parts.append("<h2>Summary</h2>" + _table([[html.escape(k), _fmt(v)] for k, v in run.summary.items()
                                                  if not isinstance(v, dict | list)], ["metric", "value"]))
    plots = [p for p in [_summary_plot(runs), *_item_plots(runs)] if p]
    if plots:
        parts.append("<h2>Plots</h2><div class='plots'>" + "".join(plots) + "</div>")
    for name, r in runs:
        parts.append(f"<h2>Provenance ({html.escape(name)}, {html.escape(r.created)})</h2><pre>"
                     + html.escape(json.dumps({"config": r.config, "data": r.data, "versions": r.versions},
                                              ensure_ascii=False, indent=1)) + "</pre>")
    if other is None and run.items:
        keys = list(dict.fromkeys(k for i in run.items[:50] for k in i.get("scores", {})))
        rows = [[html.escape(str(i.get("id")))] + [_fmt(i.get("scores", {}).get(k, "")) for k in keys]
                for i in run.items[:500]]
        shown = f" (first 500 of {len(run.items)})" if len(run.items) > 500 else ""
        parts.append(f"<h2>Items{shown}</h2>" + _table(rows, ["id", *keys]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, page: str) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
