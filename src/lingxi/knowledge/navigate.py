"""Tree navigation ("vectorless" retrieval that reads like a person): start from the documents,
split what is open into about ``parts`` parts, choose the few worth reading, open those, and
repeat for at most ``depth`` levels; every decision goes into a scratchpad that is returned.

**Who chooses.** At each level a prefilter scores the candidates (below) and keeps the ``parts``
best. Then a chat model chooses at most ``breadth`` of them, each with a short reason — but only
a model trusted to write (:func:`lingxi.knowledge.answer.too_small` is false; the bundled
SmolLM2-135M is not): its reply must be ``{"choose": [{"id", "reason"}]}`` with ids from the
candidates shown. Engines that can constrain decoding (``constrained_decoding``) get the JSON
Schema with the ids as an enum, so an invalid choice cannot be sampled; every reply is validated
anyway, and one that fails validation is replaced by the scorer's choice (the scratchpad says
so). Without a trusted model the scorer chooses: its ``breadth`` best, and also every candidate
that holds one of the hybrid search's ``k`` best chunks. Pruning to a few parts is there to bound
what a model reads; a scorer reads nothing, and a wrong first-level pick (the contracts book for a
question on the limitation period in the general part) would otherwise lose an article that a
flat top-k search still finds.

**The prefilter score** of a node, for a question, is the mean of three parts, each scaled to
[0, 1] over the tree: the BM25 score of the node's own profile (title and summary; a leaf's
title and text), the best BM25 score of a leaf below it (where the words are), and the best
hybrid (BM25 + dense, with the knowledge base's embedder) rank of a chunk below it, from one
hybrid search of the chunks per question. The dense part needs no vectors for the tree: nodes
reach the chunks' vectors through the chunk ids they record.

**The leaves found** are ranked at the end by the mean of that score and the meaning of the
leaf's own text: the cosine of the question to the leaf (title and text), embedded by the
knowledge base's embedder through the machine's embedding cache and scaled to [0, 1] over the
prefilter's best ``RERANK`` leaves (the others keep half their score). A chunk often packs several
articles, which then share its hybrid rank; this is what tells them apart. On a development set
of 28 Civil Code questions (``benchmarks/data/navigation/civil_code_zh_dev.jsonl``, kept apart
from the 45 measured ones) it moved the first leaf's hits from 12 to 18 (meaning weight 0.25: 13,
2/3: 19, meaning alone: 18; hybrid top-k 15); the equal weight was kept.

That holds where the leaves are clauses (第X条, Article 5, 2.1: units that stand on their own). Where
most of the prefilter's best leaves are plain paragraphs (a manual's, a PDF's), a paragraph's own
words say too little of its section: the leaves are ranked by the hybrid rank of the chunk that
holds them (a chunk carries a paragraph's neighbours and its heading path), their own score
ordering the leaves of one chunk, and one leaf per chunk comes before a second of any. On the
development sets (20 Debian Policy questions, 25 Rust Reference ones) the first leaf was right
for 14 and 12 (hybrid's first chunk: 14 and 12) where ranking paragraphs on their own text gave
9 and 12.

**Groups** are enforced where the nodes are read: the store returns only the nodes of documents
the caller may see, and the model can only choose among candidates built from those, so no
wording of a question reaches another group's nodes.

**Forced citations** (:meth:`lingxi.knowledge.kb.KnowledgeBase.answer` with
``retrieval="navigate"``): the leaves found become the sources, cited by node id (``[3.1.577]``),
and the knowledge base's answer check applies unchanged: a quotation names its node; a generated
sentence must be supported by the node it cites, is attributed to the one that supports it, or
is dropped and listed in ``dropped``.

What this module does not do: build or store trees (:mod:`lingxi.knowledge.tree`, the stores).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lingxi.errors import ContextLengthError, UsageError
from lingxi.records import json_in_reply
from lingxi.knowledge.retrievers import Query, Retriever, Scored
from lingxi.knowledge.tree import TreeNode, link_children, marker
from lingxi.text import tokenize

if TYPE_CHECKING:
    from lingxi.knowledge.kb import KnowledgeBase

__all__ = ["Navigation", "NavigateRetriever", "TreeIndex", "navigate", "DEPTH", "BREADTH", "PARTS"]

#: Decision levels before the scorer picks the leaves under what is still open.
DEPTH = 3
#: Nodes chosen per level.
BREADTH = 3
#: Candidates shown per level (the prefilter keeps the best this many).
PARTS = 20
#: Leaves whose own text's meaning is scored at the end (the prefilter's best this many).
RERANK = 20
#: The longest reason a model may give for one choice (characters).
REASON_CHARS = 80
#: Characters of a candidate's text (a leaf's) or summary (a part's) shown to the model, halved
#: (then titles alone) until the prompt fits the model's context window: twenty Chinese snippets
#: of 160 characters are about 4,400 tokens to SmolLM2's tokenizer, past its 4,096.
SNIPPET_CHARS = 160
#: Tokens a chat template adds around two messages, kept free when fitting the prompt.
TEMPLATE_TOKENS = 48
K1, B = 1.5, 0.75


@dataclass
class Navigation:
    """What navigation found: ``leaves`` (node, score), best first, and the ``scratchpad`` of
    decisions, one dict per level: ``level``, ``by`` ("model" or "scorer"), ``candidates``
    (``[{"id", "title", "score"}]``), ``chosen`` (ids), ``reasons`` (id -> reason) and ``note``."""

    leaves: list[tuple[TreeNode, float]]
    scratchpad: list[dict[str, Any]] = field(default_factory=list)


class TreeIndex:
    """The visible nodes of a knowledge base's trees, linked, with a BM25 index of their profiles.
    Built per (content version, groups); :class:`~lingxi.knowledge.kb.KnowledgeBase` keeps one."""

    def __init__(self, nodes: Sequence[TreeNode], version: str, groups: list[str] | None):
        self.version = version
        self.groups = groups
        self.roots = link_children(nodes)
        self.nodes = list(nodes)
        self.by_id = {n.id: n for n in self.nodes}
        self.pos = {n.id: i for i, n in enumerate(self.nodes)}
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        lengths = np.zeros(len(self.nodes), np.float32)
        for i, n in enumerate(self.nodes):
            terms = tokenize(f"{n.title}\n{n.text if n.is_leaf else n.summary}")
            lengths[i] = len(terms)
            counts: dict[str, int] = defaultdict(int)
            for t in terms:
                counts[t] += 1
            for t, c in counts.items():
                postings[t].append((i, c))
        self.postings = dict(postings)
        self.lengths = lengths
        self.avgdl = float(lengths.mean()) if len(lengths) else 1.0
        # Post-order positions, so a bottom-up pass sees children before parents.
        self.post: list[int] = []
        for r in self.roots:
            self._post(r)

    def _post(self, node: TreeNode) -> None:
        for c in node.children:
            self._post(c)
        self.post.append(self.pos[node.id])

    def bm25(self, tokens: Sequence[str]) -> np.ndarray:
        scores = np.zeros(len(self.nodes), np.float32)
        n = len(self.nodes)
        for t in dict.fromkeys(tokens):
            plist = self.postings.get(t)
            if not plist:
                continue
            idf = math.log(1 + (n - len(plist) + 0.5) / (len(plist) + 0.5))
            for i, tf in plist:
                scores[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[i] / (self.avgdl or 1.0)))
        return scores


def _scaled(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


class _Scores:
    """Prefilter scores of every visible node for one question (see the module docstring)."""

    def __init__(self, index: TreeIndex, kb: KnowledgeBase, question: str, groups: list[str] | None, k: int):
        own = index.bm25(tokenize(question))
        self._query = Query(question, kb)  # its vector, computed by the search, serves final() too
        ranked = kb.search_ids(self._query, mode="hybrid", k=kb.settings.knowledge.candidates, groups=groups,
                               learn=False)
        rank = {cid: 1.0 - r / max(len(ranked), 1) for r, (cid, _) in enumerate(ranked)}
        leaf_best = np.zeros(len(index.nodes), np.float32)
        chunk_best = np.zeros(len(index.nodes), np.float32)
        for i in index.post:  # children first: a node takes the best of its subtree
            n = index.nodes[i]
            chunk_best[i] = max((rank.get(c, 0.0) for c in n.chunks), default=0.0)
            if n.is_leaf:
                leaf_best[i] = own[i]
            for c in n.children:
                j = index.pos[c.id]
                leaf_best[i] = max(leaf_best[i], leaf_best[j])
                chunk_best[i] = max(chunk_best[i], chunk_best[j])
        self.parts = {"profile": _scaled(own), "leaf": _scaled(leaf_best), "chunk": chunk_best}
        self._rank = rank
        self.paragraphs = False  # set by final(): were the leaves ranked as paragraphs?
        self.total = (self.parts["profile"] + self.parts["leaf"] + self.parts["chunk"]) / 3
        # a subtree holding one of the hybrid search's k best chunks (rank 1 - r/n for r < k)
        self.evidence = chunk_best > 1.0 - k / len(ranked) if ranked else np.zeros(len(index.nodes), bool)
        self.index = index
        self._kb = kb

    def final(self, leaves: Sequence[TreeNode]) -> list[tuple[TreeNode, float]]:
        """``leaves`` with their final scores, best first: for the prefilter's best ``RERANK`` of
        them, the mean of the prefilter score and the meaning of the leaf's own text (its cosine
        to the question, scaled to [0, 1] over those leaves); the rest keep half their prefilter
        score. Where most of those best leaves are paragraphs, not clauses, in the order of their
        chunks instead (:meth:`_by_chunk`; see the module docstring)."""
        ranked = sorted(leaves, key=self, reverse=True)
        head, tail = ranked[:RERANK], ranked[RERANK:]
        if not head:
            return []
        vectors = self._kb.passage_vectors([f"{n.title}\n{n.text}" for n in head])
        cos = vectors @ self._query.vector
        spread = float(cos.max() - cos.min())
        meaning = (cos - cos.min()) / spread if spread > 0 else np.ones_like(cos)
        out = [(n, (self(n) + float(m)) / 2) for n, m in zip(head, meaning)]
        out += [(n, self(n) / 2) for n in tail]
        out.sort(key=lambda x: x[1], reverse=True)
        self.paragraphs = 2 * sum(marker(n.title) is None for n in head) > len(head)
        return self._by_chunk(out) if self.paragraphs else out

    def _by_chunk(self, scored: list[tuple[TreeNode, float]]) -> list[tuple[TreeNode, float]]:
        """``scored`` leaves in the order of the hybrid rank of their best chunk, a chunk's leaves in
        the order of their scores, the first leaf of every chunk before the second of any. A
        leaf's new score is its chunk's rank (a later leaf of a chunk: that times the lowest of
        the first leaves'), so the scores still fall down the list."""
        chunk = {n.id: max(n.chunks, key=lambda c: self._rank.get(c, 0.0), default=n.id) for n, _ in scored}
        best = {i: self._rank.get(c, 0.0) for i, c in chunk.items()}
        order = sorted(scored, key=lambda x: (best[x[0].id], x[1]), reverse=True)
        seen: set[str] = set()
        first, rest = [], []
        for n, _ in order:
            (rest if chunk[n.id] in seen else first).append(n)
            seen.add(chunk[n.id])
        floor = min((best[n.id] for n in first), default=0.0)
        return [(n, best[n.id]) for n in first] + [(n, floor * best[n.id]) for n in rest]

    def __call__(self, node: TreeNode) -> float:
        return float(self.total[self.index.pos[node.id]])

    def holds_top_chunk(self, node: TreeNode) -> bool:
        return bool(self.evidence[self.index.pos[node.id]])


def navigate(kb: KnowledgeBase, question: str, *, groups: Sequence[str] | None = None, engine: Any = None,
             k: int = 5, depth: int = DEPTH, breadth: int = BREADTH, parts: int = PARTS) -> Navigation:
    """Navigate ``kb``'s document trees to the ``k`` leaves that answer ``question``.

    Args:
        groups: the caller's groups (None: a trusted caller who sees everything).
        engine: a chat engine to choose at each level; ignored (the scorer chooses) when it is
            None or too small to be trusted.

    Raises:
        UsageError: empty question, bad limits, or no visible document tree (empty knowledge
            base, or documents ingested before trees existed: ingest them again).
    """
    from lingxi.knowledge.answer import too_small

    if not question.strip():
        raise UsageError("empty question")
    if k < 1 or depth < 1 or breadth < 1 or parts < 2:
        raise UsageError(f"navigation needs k, depth, breadth >= 1 and parts >= 2 (got {k}, {depth}, {breadth}, {parts})")
    groups = list(groups) if groups is not None else None
    index = kb.tree_index(groups)
    if not index.nodes:
        raise UsageError(f"knowledge base '{kb.name}' has no document tree to navigate"
                         + (" that these groups may see" if groups is not None and kb.store.documents() else "")
                         + ": ingest documents with text first (documents ingested before tree navigation "
                           "existed need `lingxi kb ingest` again)")
    score = _Scores(index, kb, question, groups, k)
    chooser = engine if engine is not None and not too_small(engine) else None
    nav = Navigation([])
    found: set[str] = set()
    open_nodes: list[TreeNode] = [_through(r) for r in index.roots]
    for level in range(depth):
        candidates = _expand(open_nodes, parts, score, first=level == 0)
        shown = sorted(candidates, key=score, reverse=True)[:parts]
        chosen, reasons, by, note = _choose(chooser, question, shown, score, breadth)
        nav.scratchpad.append({
            "level": level + 1, "by": by,
            "candidates": [{"id": n.id, "title": n.title, "score": round(score(n), 4)} for n in shown],
            "chosen": [n.id for n in chosen], "reasons": reasons, "note": note})
        for n in chosen:
            if n.is_leaf:
                found.add(n.id)
        open_nodes = [n for n in chosen if not n.is_leaf]
        if not open_nodes:
            break
    leaves = {i: index.by_id[i] for i in found}
    if open_nodes:  # the depth limit: the scorer reads the leaves under what is still open
        leaves.update((leaf.id, leaf) for n in open_nodes for leaf in _leaves(n))
    final = score.final(list(leaves.values()))
    if open_nodes:
        picked = [n for n, _ in final if n.id not in found][:k]
        nav.scratchpad.append({
            "level": len(nav.scratchpad) + 1, "by": "scorer",
            "candidates": [{"id": n.id, "title": n.title, "score": round(s, 4)} for n, s in final[:parts]],
            "chosen": [n.id for n in picked], "reasons": {},
            "note": f"depth limit {depth} reached: the best leaves under {', '.join(n.id for n in open_nodes)}, "
                    + ("in the order of their chunks' hybrid rank (paragraphs: a chunk holds their section's context)"
                       if score.paragraphs else "the best reranked with their own text's meaning")})
        found.update(n.id for n in picked)
    nav.leaves = [(n, s) for n, s in final if n.id in found][:k]
    return nav


def _through(node: TreeNode) -> TreeNode:
    """A node with a single child stands for that child (a book whose only child is its title heading)."""
    while len(node.children) == 1:
        node = node.children[0]
    return node


def _leaves(node: TreeNode) -> list[TreeNode]:
    if node.is_leaf:
        return [node]
    return [leaf for c in node.children for leaf in _leaves(c)]


def _expand(open_nodes: list[TreeNode], parts: int, score: Any, *, first: bool) -> list[TreeNode]:
    """The candidates of one level: the open nodes themselves at the first level, else their
    children; then the best-scored inner candidates are opened in turn while there are fewer
    than ``parts`` (so a level shows about ``parts`` parts, whatever the tree's shape)."""
    if first:
        out = list(open_nodes)
    else:
        out = [_through(c) for n in open_nodes for c in n.children]
    out = list({n.id: n for n in out}.values())
    tried: set[str] = set()
    while True:
        inner = sorted([n for n in out if not n.is_leaf and n.id not in tried], key=score, reverse=True)
        fits = next((n for n in inner if len(out) - 1 + len(n.children) <= parts), None)
        if fits is None:
            return out
        tried.add(fits.id)
        i = out.index(fits)
        out[i:i + 1] = [_through(c) for c in fits.children]


def _choose(engine: Any, question: str, shown: list[TreeNode], score: Any, breadth: int
            ) -> tuple[list[TreeNode], dict[str, str], str, str]:
    """(chosen, reasons, by, note): by the model when there is a trusted one and its reply is a
    valid selection, else the scorer's: its ``breadth`` best and every part holding one of the
    hybrid search's top chunks."""
    best = shown[:breadth] + [n for n in shown[breadth:] if score.holds_top_chunk(n)]
    if engine is None:
        return best, {}, "scorer", "no model trusted to choose: the prefilter's best, and the parts holding hybrid's top chunks"
    try:
        reply = _ask(engine, question, shown, breadth)
    except ContextLengthError as exc:
        return best, {}, "scorer", f"the candidates do not fit the model's context window ({exc}): the prefilter's best"
    try:
        picks = _validate(reply, [n.id for n in shown], breadth)
    except ValueError as exc:
        return best, {}, "scorer", f"the model's reply was not a valid selection ({exc}): the prefilter's best"
    by_id = {n.id: n for n in shown}
    return [by_id[i] for i, _ in picks], dict(picks), "model", ""


def selection_schema(ids: Sequence[str], breadth: int) -> dict[str, Any]:
    """The JSON Schema of a valid selection among ``ids``."""
    return {
        "type": "object", "additionalProperties": False, "required": ["choose"],
        "properties": {"choose": {
            "type": "array", "minItems": 1, "maxItems": breadth,
            "items": {"type": "object", "additionalProperties": False, "required": ["id", "reason"],
                      "properties": {"id": {"enum": list(ids)},
                                     "reason": {"type": "string", "maxLength": REASON_CHARS}}},
        }},
    }


def _ask(engine: Any, question: str, shown: list[TreeNode], breadth: int) -> str:
    from lingxi.engines.base import GenerationParams
    from lingxi.text import language_of

    zh = language_of(question) == "zh"
    if zh:
        ask = (f"为了回答问题，从下面的部分中选出最多 {breadth} 个最可能包含答案的部分，每个附一句理由。"
               '只输出 JSON：{"choose": [{"id": "编号", "reason": "理由"}]}。')
    else:
        ask = (f"To answer the question, choose at most {breadth} of the parts below that most likely contain "
               'the answer, each with a short reason. Output JSON only: {"choose": [{"id": "...", "reason": "..."}]}.')
    # Room for every choice at its longest (a CJK character can take two tokens), so a constrained
    # reply is never cut off into invalid JSON.
    max_tokens = 32 + (2 * REASON_CHARS + 40) * breadth
    context = getattr(engine.info, "context_length", None) or 0
    for chars in (SNIPPET_CHARS, SNIPPET_CHARS // 2, SNIPPET_CHARS // 4, 0):  # shorter snippets until it fits
        lines = [f"[{n.id}] {n.title}" + (f" — {(n.text if n.is_leaf else n.summary)[:chars]}" if chars else "")
                 for n in shown]
        user = ("问题" if zh else "Question") + f": {question}\n\n" + "\n".join(lines)
        tokens = engine.count_tokens(ask + user) + TEMPLATE_TOKENS if context else 0
        if tokens + max_tokens <= context or not context:
            break
    else:  # not even the titles leave room for the reply
        raise ContextLengthError(tokens, context, max_tokens)
    prompt = [{"role": "system", "content": ask}, {"role": "user", "content": user}]
    extra: dict[str, Any] = {}
    if getattr(engine, "constrained_decoding", False):
        extra["json_schema"] = json.dumps(selection_schema([n.id for n in shown], breadth))
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, **extra)
    return engine.generate(prompt, params).text


def _validate(reply: str, ids: list[str], breadth: int) -> list[tuple[str, str]]:
    """``[(id, reason)]`` from a reply that must satisfy :func:`selection_schema`.

    Raises:
        ValueError: no JSON object, wrong shape, an id not among the candidates, a repeated id,
            or more than ``breadth`` choices.
    """
    data = json_in_reply(reply)  # a raw newline inside a reason is no reason to refuse
    picks = data.get("choose") if isinstance(data, dict) else None
    if not isinstance(picks, list) or not picks:
        raise ValueError('no "choose" list')
    if len(picks) > breadth:
        raise ValueError(f"{len(picks)} choices, at most {breadth} allowed")
    out: list[tuple[str, str]] = []
    for p in picks:
        if not isinstance(p, dict) or not isinstance(p.get("id"), str):
            raise ValueError("a choice without an id")
        if p["id"] not in ids:
            raise ValueError(f"id {p['id']!r} is not among the candidates")
        if any(p["id"] == i for i, _ in out):
            raise ValueError(f"id {p['id']!r} chosen twice")
        out.append((p["id"], str(p.get("reason", ""))[:REASON_CHARS]))
    return out


class NavigateRetriever(Retriever):
    """``navigate`` in the retriever registry (``kb search --mode navigate`` through
    :meth:`~lingxi.knowledge.kb.KnowledgeBase.search_ids`, fusion lists, ``--mode auto``): the
    chunks holding the leaves that navigation reaches, the scorer choosing at every level.
    :meth:`~lingxi.knowledge.kb.KnowledgeBase.search` and ``answer`` return the leaves themselves
    (node ids, one clause each) and let a trusted model choose."""

    name = "navigate"

    def search(self, kb: KnowledgeBase, query: Query, k: int, groups: list[str] | None,
               filters: dict[str, Any] | None) -> Scored:
        if filters:
            raise UsageError("search mode 'navigate' takes no metadata filters")
        nav = navigate(kb, query.text, groups=groups, k=k)
        out: dict[str, float] = {}
        for node, score in nav.leaves:
            for cid in node.chunks:
                out.setdefault(cid, score)
        return list(out.items())[:k]
