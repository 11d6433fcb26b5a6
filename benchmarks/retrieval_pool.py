"""Usage: python benchmarks/retrieval_pool.py DATA_DIR [--k 20] [--home DIR]

Pool approximation of MiniLM + e5-small (+BM25) fusion on dbpedia-5k-en: e5-small embeds only
the union of BM25's and MiniLM's top-K for each judged query (no relevance labels used to pick
documents). Every fusion is scored over that pool; e5's own hits outside it are not seen, and
every ranking holds the same pool, so the corroboration statistics cannot tell the retrievers
apart (the adaptive weights stay equal). e5 vectors are kept in the home's embedding cache."""
import json, os, sys, tempfile, time
from pathlib import Path

import numpy as np
import argparse
ap = argparse.ArgumentParser(description="pool approximation of MiniLM + e5-small fusion")
ap.add_argument("data", type=Path)
ap.add_argument("--k", type=int, default=20, help="top-K of BM25 and of MiniLM per query form the pool")
ap.add_argument("--home", default=None, help="Lingxi home whose embedding cache is used and filled")
args = ap.parse_args()
K = args.k
if args.home:
    os.environ["LINGXI_HOME"] = args.home
from lingxi.config import load_config
from lingxi.evaluate.retrieval import corpus_documents, evaluate_run, load_beir
from lingxi.knowledge.kb import scratch_kb
from lingxi.knowledge.chunking import chunk_document
from lingxi.knowledge.fusion import FusionStats, fuse_many
from lingxi.stores.embeddings import embedder_key
from lingxi.engines import load_embedder
from lingxi.text import tokenize
d = args.data
data = load_beir(d / "corpus.jsonl", d / "queries.jsonl", d / "qrels" / "test.tsv")
s = load_config()
tmp = tempfile.mkdtemp(prefix="lingxi-pool-")
kb = scratch_kb(s, Path(tmp) / "m", embedder="minilm")
t = time.time(); kb.ingest_documents(corpus_documents(data, str(d)), whole=True, progress=False)
print("ingest", round(time.time() - t, 1), file=sys.stderr)
doc_of = {x.doc_no: x.key for x in kb.store.documents()}
no_of = {v: k for k, v in doc_of.items()}
chunks = {}
for doc in corpus_documents(data, str(d)):
    for c in chunk_document(doc, no_of[doc.key], whole=True):
        chunks[c.id] = c
em, ee = kb.embedder(), load_embedder("e5-small", s)
qrels = {q: data.qrels[q] for q in data.queries}
prep = {}
pool = set()
for q, text in data.queries.items():
    tokens, vm = tokenize(text), em.embed([text], kind="query")[0]
    b = kb.store.search_bm25(tokens, 50, None, None); dm = kb.store.search_dense(vm, 50, None, None)
    prep[q] = (tokens, vm, ee.embed([text], kind="query")[0], b, dm)
    pool.update(i for i, _ in b[:K]); pool.update(i for i, _ in dm[:K])
pool = sorted(pool)
print("pool", len(pool), file=sys.stderr)
cache = kb._embedding_cache()
key = embedder_key("e5-small", s.embedder("e5-small").model_dump_json())
t = time.time()
got, n_new = cache.embed(key, [chunks[i].search_text for i in pool], [chunks[i].hash for i in pool],
                         lambda texts: ee.embed(texts, kind="passage"))
print("e5 embedded", n_new, "in", round(time.time() - t, 1), file=sys.stderr)
E = {i: got[chunks[i].hash] for i in pool}
runs = {}
def put(name, q, ranked):
    runs.setdefault(name, {})[q] = [(doc_of[int(c.split(".", 1)[0])], sc) for c, sc in ranked[:100]]
stats = {n: FusionStats(names=tuple(n.split("+"))) for n in ("bm25+dense", "dense+e5", "bm25+dense+e5", "bm25+e5", "bm25+cat")}
cand = {}
for q, (tokens, vm, ve, b, dm) in prep.items():
    ids = [i for i in dict.fromkeys([i for i, _ in b[:K]] + [i for i, _ in dm[:K]])]
    bs, ds = kb.store.score(ids, tokens, vm)
    es = np.array([float(E[i] @ ve) for i in ids])
    sc = {"bm25": np.asarray(bs, float), "dense": np.asarray(ds, float), "e5": es, "cat": (np.asarray(ds, float) + es) / 2}
    lists = {n: [ids[j] for j in np.argsort(-v, kind="stable")] for n, v in sc.items()}
    for n, st in stats.items():
        st.observe(*[lists[m] for m in n.split("+")])
    cand[q] = (ids, sc, lists)
for q, (ids, sc, lists) in cand.items():
    for n in ("bm25", "dense", "e5", "cat"):
        put(n + "@pool", q, [(i, float(sc[n][ids.index(i)])) for i in lists[n]])
    for n, st in stats.items():
        m = n.split("+")
        for suffix, w in (("", st.weights()), ("@equal", [1 / len(m)] * len(m))):
            put("fuse:" + n + suffix, q, fuse_many(ids, [sc[x] for x in m], [sc[x] for x in m], w))
        rr = {}
        for x in m:
            for r, i in enumerate(lists[x], 1):
                rr[i] = rr.get(i, 0) + 1 / (60 + r)
        put("rrf:" + n, q, sorted(rr.items(), key=lambda z: -z[1]))
out = {"K": K, "pool": len(pool), "ndcg@10": {n: round(evaluate_run(r, qrels)["ndcg@10"], 4) for n, r in runs.items()},
       "weights": {n: dict(zip(st.names, [round(w, 3) for w in st.weights()])) for n, st in stats.items()},
       "t": {n: round(st.t(0), 2) for n, st in stats.items()}, "load": os.getloadavg()}
print(json.dumps(out, indent=1))
