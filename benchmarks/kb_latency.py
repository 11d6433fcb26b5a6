"""Query latency of a knowledge base at scale (default 100k chunks), per search mode.

Usage: python benchmarks/kb_latency.py [--chunks 100000] [--store sqlite|postgres] [--queries 200]
                                       [--query-embedder minilm] [--pg-url URL]

The corpus is synthetic (half English, half Chinese paragraphs drawn from fixed word lists with
a Zipf distribution, one chunk each) and embedded with the instant 384-dim hash embedder, so
building 100k chunks takes minutes instead of hours. Latency is measured in two parts per
query: the store + fusion path (``kb.search`` with the hash embedder) and the real query
embedding (``--query-embedder``, MiniLM by default); ``end_to_end`` is their per-query sum.
Prints one JSON object; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EN = ("system data model network policy contract payment report customer service product market energy "
      "water health school student teacher river mountain city village train station airport hotel museum "
      "history science physics chemistry biology language music film garden kitchen doctor patient court law "
      "judge tax budget revenue profit loss risk audit security password server database cloud storage backup "
      "engine vehicle battery solar wind climate weather forest ocean island bridge tunnel road traffic").split()
ZH = ("系统 数据 模型 网络 政策 合同 付款 报告 客户 服务 产品 市场 能源 水资源 健康 学校 学生 教师 河流 山脉 城市 "
      "乡村 火车 车站 机场 酒店 博物馆 历史 科学 物理 化学 生物 语言 音乐 电影 花园 厨房 医生 病人 法院 法律 法官 "
      "税收 预算 收入 利润 损失 风险 审计 安全 密码 服务器 数据库 云 存储 备份 发动机 车辆 电池 太阳能 风能 气候 "
      "天气 森林 海洋 岛屿 桥梁 隧道 道路 交通").split()


def paragraph(rng: np.random.Generator, zh: bool) -> str:
    words = ZH if zh else EN
    ranks = np.minimum(rng.zipf(1.3, size=60 if zh else 90) - 1, len(words) - 1)
    picked = [words[r] for r in ranks]
    extra = f"{rng.integers(1, 10**6)}"
    if zh:
        return "".join(picked[:30]) + "，编号" + extra + "。" + "".join(picked[30:]) + "。"
    return " ".join(picked[:45]) + f", id {extra}. " + " ".join(picked[45:]) + "."


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, p)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--query-embedder", default="minilm")
    ap.add_argument("--pg-url", default=os.environ.get("LINGXI_PG_URL"))
    ap.add_argument("--workdir", default=None, help="keep the built knowledge base here (reused when present)")
    args = ap.parse_args()

    from lingxi.config import parse_config
    from lingxi.engines import load_embedder
    from lingxi.knowledge.kb import create_kb, open_kb
    from lingxi.knowledge.types import Block, Document

    server = None
    if args.store == "postgres" and not args.pg_url:
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="lingxi-pg-"), cleanup_mode="delete")
        args.pg_url = server.get_uri()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lingxi-latency-"))
    settings = parse_config({
        "home": str(work), "default_embedder": "hash384",
        "embedders": {"hash384": {"engine": "hash", "dim": 384}},
        "knowledge": {"store": args.store, "pg_url": args.pg_url, "chunk_tokens": 400, "chunk_overlap": 0},
    })
    name = f"lat{args.chunks}"
    out: dict = {"chunks": args.chunks, "store": args.store, "cpu_count": os.cpu_count()}
    try:
        kb = open_kb(name, settings)
    except Exception:
        kb = create_kb(name, settings)
    if kb.stats()["chunks"] < args.chunks:
        rng = np.random.default_rng(0)
        per_doc = 100
        docs = [Document(f"doc{d}", f"synthetic/doc{d}", f"Document {d}",
                         [b for j in range(per_doc)  # a heading per paragraph: exactly one chunk each
                          for b in (Block(f"Part {j}", 2), Block(paragraph(rng, zh=(d % 2 == 1))))])
                for d in range(args.chunks // per_doc)]
        t = time.perf_counter()
        kb.ingest_documents(docs, progress=True)
        out["build_s"] = round(time.perf_counter() - t, 1)
    out["chunks"] = kb.stats()["chunks"]
    out["vector_index"] = kb.stats()["vector_index"]

    rng = np.random.default_rng(1)
    queries = []
    for i in range(args.queries):
        words = ZH if i % 2 else EN
        picked = [words[int(r)] for r in rng.integers(0, len(words), size=4)]
        queries.append("".join(picked) if i % 2 else " ".join(picked))
    kb.search(queries[0], mode="hybrid", k=10)  # load indexes
    for mode in ("bm25", "dense", "hybrid"):
        times = []
        for q in queries:
            t = time.perf_counter()
            kb.search(q, mode=mode, k=10)
            times.append(time.perf_counter() - t)
        out[mode] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
        if mode == "hybrid":
            search_times = times
    embedder = load_embedder(args.query_embedder, parse_config({}))
    embedder.embed(["warm up"], kind="query")
    embed_times = []
    for q in queries:
        t = time.perf_counter()
        embedder.embed([q], kind="query")
        embed_times.append(time.perf_counter() - t)
    out[f"query_embedding_{args.query_embedder}"] = {"p50_ms": pct(embed_times, 50), "p95_ms": pct(embed_times, 95)}
    total = [a + b for a, b in zip(search_times, embed_times, strict=True)]
    out["hybrid_end_to_end"] = {"p50_ms": pct(total, 50), "p95_ms": pct(total, 95)}
    kb.close()
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
