"""One evaluation harness: quality (BLEU, chrF, TER, ROUGE, EM/F1, perplexity, retrieval) and
operations (TTFT, tokens/s, requests/s) measured into one result format (:class:`EvalRun`),
compared with paired significance tests and rendered as self-contained HTML reports.

Heavy dependencies (sacrebleu, rouge-score, matplotlib, torch, llama-cpp-python) are imported
inside the functions that need them; ``pip install 'lingxi[eval]'`` brings the metric ones.
"""

from lingxi.evaluate.compare import compare_runs, format_comparison, paired_bootstrap
from lingxi.evaluate.generation import METRICS, evaluate_generation, score_generation
from lingxi.evaluate.report import render_html, write_html
from lingxi.evaluate.result import EvalRun, data_record, file_digest, package_versions
from lingxi.evaluate.retrieval import evaluate_retrieval, retrieval_eval

__all__ = [
    "EvalRun", "METRICS", "compare_runs", "data_record", "evaluate_generation", "evaluate_retrieval",
    "file_digest", "format_comparison", "package_versions", "paired_bootstrap", "render_html",
    "retrieval_eval", "score_generation", "write_html",
]
