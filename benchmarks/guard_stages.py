"""What the guard stages add to one gateway request, stage by stage (CPU time on the request path).

Drives each stage's ``before()`` on a chat request and its ``wrap()`` over a streamed answer
(the answer split into word-sized pieces, as an engine streams it), the way the gateway's
pipeline calls them, and prints p50/p95 milliseconds per request, side by side with the
target (the regex/dictionary stages add p95 <= 5 ms), as wall time and as the CPU time of the
request's thread (the better number on a shared machine). ``audit`` is not on the request path
(its ``after()`` runs once the answer is sent) and is measured as records per second.

    python benchmarks/guard_stages.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time

from lingxi.config import parse_config
from lingxi.gateway.pipeline import Outcome, PipelineRequest, build_stages
from lingxi.identity import Caller

PROMPTS = [
    "我叫张伟，手机13812345678，请帮我查询一下上个月的订单状态，顺便把发票寄到北京市朝阳区建国路88号。",
    "Hi, this is John Smith (john.smith@example.com). Can you summarise the attached report in three bullet points?",
    "请用三句话总结下面这段文字：公司今年的营收增长了百分之十二，主要来自海外市场。",
    "What are the main differences between TCP and UDP? Please answer briefly.",
]
ANSWERS = [
    "好的，张伟先生。您上个月共有三笔订单，其中两笔已经签收，一笔正在配送中。发票将在三个工作日内寄出，"
    "如有疑问请拨打客服电话400-820-8820或发送邮件至support@example.com。",
    "Sure. The report says revenue grew 12% year over year, mostly from overseas markets; costs were flat; "
    "and the team expects similar growth next year. Contact Mary Johnson at (415) 555-2671 for details.",
]


def pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) if " " in text else [text[i:i + 2] for i in range(0, len(text), 2)]


async def one(stages, i: int) -> float:
    req = PipelineRequest(id=f"chatcmpl-{i}", kind="chat", model="fake", caller=Caller(None, ""),
                          messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], stream=True)
    answer = ANSWERS[i % len(ANSWERS)]

    async def source():
        for p in pieces(answer):
            yield p

    t0, c0 = time.perf_counter(), time.thread_time()
    for s in stages:
        await s.before(req)
    text = source()
    for s in reversed(stages):
        text = s.wrap(req, text)
    async for _ in text:
        pass
    return time.perf_counter() - t0, time.thread_time() - c0


def measure(settings, names: list[str], n: int) -> dict:
    stages = build_stages(settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"stages": names})}))

    async def run() -> list[float]:
        for i in range(5):
            await one(stages, i)  # warm-up
        return [await one(stages, i) for i in range(n)]

    runs = asyncio.run(run())
    out = {}
    for i, kind in ((0, "wall"), (1, "cpu")):  # cpu: this thread's time, immune to a loaded machine's scheduling
        times = sorted(r[i] for r in runs)
        out[f"{kind}_p50_ms"] = round(statistics.median(times) * 1000, 3)
        out[f"{kind}_p95_ms"] = round(times[int(0.95 * (len(times) - 1))] * 1000, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="lingxi-guard-bench-")
    os.environ.setdefault("LINGXI_AUDIT_KEY", "benchmark-audit-key-0123456789")
    settings = parse_config({
        "home": home, "default_model": "fake", "models": {"fake": {"engine": "fake"}},
        "gateway": {"stages": []},
        "guard": {"injection": {"action": "log"}, "policy": {"categories": {"demo": {"action": "warn", "words": ["赌博", "毒品", "casino", "违禁品"] + [f"词{i}" for i in range(2000)]}}}},
    })
    result: dict = {"target": "regex/dictionary stages add p95 <= 5 ms per request", "requests": args.requests,
                    "answer_pieces": [len(pieces(a)) for a in ANSWERS]}
    for names in (["policy"], ["injection"], ["pii"], ["policy", "injection", "pii"]):
        result["+".join(names)] = measure(settings, names, args.requests)

    (audit,) = build_stages(settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"stages": ["audit"]})}))

    async def audit_run(n: int) -> float:
        t0 = time.perf_counter()
        reqs = [PipelineRequest(id=f"r{i}", kind="chat", model="fake", caller=Caller(None, ""),
                                messages=[{"role": "user", "content": PROMPTS[i % 4]}]) for i in range(n)]
        await asyncio.gather(*(audit.after(r, Outcome(model="fake", text=ANSWERS[i % 2])) for i, r in enumerate(reqs)))
        await audit.close()
        return time.perf_counter() - t0

    n = max(200, args.requests)
    result["audit_records_per_s"] = round(n / asyncio.run(audit_run(n)), 1)
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
