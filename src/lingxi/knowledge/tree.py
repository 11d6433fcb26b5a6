"""The document tree that tree navigation reads: headings and numbered clauses as inner nodes,
clauses and paragraphs as leaves, each inner node with a short summary made at ingest.

**Structure.** Markdown/HTML/DOCX headings open nodes at their level. Paragraphs that start with
a numbered marker open nodes too, ranked outermost first: 第X编, 第X分编, 第X章, 第X节, 第X条,
一、, （一）, 1./1.2, (1); in English Part/Book, Chapter, Section/§, Article, and decimal numbers
("2.3 Scope"). A marker paragraph that reads as a title (short, no sentence ending) is a section
header and the paragraphs after it become its children; one that reads as a clause (第五百七十七条
当事人一方…。) is a leaf, and the plain paragraphs and item markers (一、, （一）) after it are part
of its text, so a legal article is one leaf with its paragraphs and items. Any other paragraph is
a leaf of the innermost open section, except a short one that reads as a label ("Example", a rule
id): it joins the plain paragraph it labels. Empty headings are dropped.

**Node ids** are dotted paths from the document number: ``3.1.2.577`` is document 3, its first
part, that part's second child, article 577. One segment per level, chosen so that an id
survives edits elsewhere:

1. a node that carries a number (第五百七十七条 -> 577, 第二章 -> 2, （三） -> 3, "Chapter IV" -> 4,
   "2.3 Scope" -> 3) takes that number: it keeps its id whatever is inserted or removed around it;
2. an unnumbered node takes its 1-based position among its siblings: it keeps its id as long as
   the siblings before it are the same;
3. a segment already taken by a sibling (a numbered one wins) becomes the next free number above
   all taken ones.

The document number is the knowledge base's stable number for the document's key, so re-ingesting
an unchanged file, or a file where only other sections changed, gives the same ids.

**Hashes and summaries.** A node's ``hash`` covers its title, its own text and its children's
segments and hashes (a Merkle tree): editing one clause changes the hashes of that clause and its
ancestors only. A summary is stored with the key ``sha256(hash, summariser)``, and ingest reuses
every summary whose key is unchanged, so only the changed path to the root is summarised again.
:class:`ExtractiveSummariser` (no model) takes the child titles or the leading sentences plus the
most frequent key terms; :class:`ModelSummariser` asks a configured chat model.

**Chunks.** Each node records the ids of the chunks that hold its text, by the documented chunk
id scheme of :mod:`lingxi.knowledge.chunking` (``doc.section.paragraph.piece``; a packed chunk
takes the number of its first paragraph). Navigation scores nodes with the chunks' BM25 and
dense scores through them, so the tree needs no vectors of its own.

What this module does not do: store, search or answer (:mod:`lingxi.stores`, :mod:`lingxi.knowledge.navigate`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lingxi.knowledge.types import Chunk, Document
from lingxi.text import split_sentences, tokenize

__all__ = ["TreeNode", "build_tree", "link_children", "summarise_tree", "summary_key", "ExtractiveSummariser",
           "ModelSummariser", "marker", "chinese_number"]


@dataclass
class TreeNode:
    """One node of a document tree (see the module docstring).

    ``parent`` is ``""`` for a document's root (whose ``id`` is the document number). ``order`` is
    the node's position in reading order within the document; ``chunks`` the chunk ids holding
    its own text (a leaf's; an inner node's intro text, if any).
    """

    id: str
    doc_no: int
    parent: str
    order: int
    title: str
    text: str = ""
    summary: str = ""
    hash: str = ""
    summary_key: str = ""
    chunks: list[str] = field(default_factory=list)
    page: int | None = None
    children: list[TreeNode] = field(default_factory=list, repr=False, compare=False)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def depth(self) -> int:
        return self.id.count(".")


# ------------------------------------------------------------------ numbered markers

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_NUM = "[零〇一二两三四五六七八九十百千]+"
_ROMAN = "[IVXLCDM]+"


def chinese_number(text: str) -> int | None:
    """第 ``text`` 条's number: Chinese numerals (一千二百六十, 十五, 一〇一) or Arabic digits."""
    if text.isdigit():
        return int(text)
    if not text or any(c not in _ZH_DIGITS and c not in _ZH_UNITS for c in text):
        return None
    if all(c in _ZH_DIGITS for c in text):  # 一〇一: digit by digit
        return int("".join(str(_ZH_DIGITS[c]) for c in text))
    total, digit = 0, 0
    for c in text:
        if c in _ZH_DIGITS:
            digit = _ZH_DIGITS[c]
        else:
            total += (digit or 1) * _ZH_UNITS[c]
            digit = 0
    return total + digit


def _roman(text: str) -> int | None:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, c in enumerate(text):
        v = values[c]
        total += -v if i + 1 < len(text) and values[text[i + 1]] > v else v
    return total or None


def _number(raw: str) -> int | None:
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    if re.fullmatch(_ROMAN, raw.upper()):
        return _roman(raw.upper())
    return chinese_number(raw)


_END = r"(?=[\s\u3000:：]|$)"
#: (rank, pattern); group 1 is the number. Lower ranks are outer levels.
_MARKERS: list[tuple[int, re.Pattern[str]]] = [
    (1, re.compile(rf"^第({_ZH_NUM}|\d+)编{_END}")),
    (2, re.compile(rf"^第({_ZH_NUM}|\d+)分编{_END}")),
    (3, re.compile(rf"^第({_ZH_NUM}|\d+)章{_END}")),
    (4, re.compile(rf"^第({_ZH_NUM}|\d+)节{_END}")),
    (5, re.compile(rf"^第({_ZH_NUM}|\d+)条{_END}")),
    (5, re.compile(rf"^第(?:{_ZH_NUM}|\d+)条之(?:{_ZH_NUM}|\d+){_END}()")),  # 第二条之一: inserted, no number of its own
    (6, re.compile(rf"^({_ZH_NUM})、")),
    (7, re.compile(rf"^[（(]({_ZH_NUM})[）)]")),
    (1, re.compile(rf"^(?:PART|Part|BOOK|Book|TITLE|Title)\s+(\d+|{_ROMAN})\b")),
    (3, re.compile(rf"^(?:CHAPTER|Chapter)\s+(\d+|{_ROMAN})\b")),
    (4, re.compile(r"^(?:SECTION|Section|§)\s*(\d+)\b")),
    (5, re.compile(rf"^(?:ARTICLE|Article)\s+(\d+|{_ROMAN})\b")),
    (9, re.compile(r"^[（(](\d+)[）)]")),
]
#: "2.3 Scope", "1、总则": a number, a separator, then a capital or an ideograph ("1.5 million" is no marker).
_DECIMAL = re.compile(r"^((?:\d+\.)*\d+)(?:[.、．)]\s*|\s+)(?=[A-Z\u4e00-\u9fff（(])")


#: A bulleted list item's start ("• ", "- ", "· ").
BULLET = re.compile(r"[•●○◦▪■□·\-–*]\s")


def opens_clause(text: str) -> bool:
    """``text`` opens a clause of a code or a contract, or a part above one (第五条, Article 5, §4,
    第二章): a marker of rank 5 or outer."""
    numbered = marker(text)
    return bool(numbered and numbered[0] <= 5)


def introduces_list(text: str) -> bool:
    """``text`` ends in a colon: what follows it is its list (有下列情形之一的，婚姻无效：, "any of the following:")."""
    return text.rstrip().endswith((":", "："))


def marker(text: str) -> tuple[int, int | None] | None:
    """``(rank, number)`` of a numbered marker at the start of ``text``, or None. The number is None
    for a marker without one of its own (第二条之一, an article inserted after article 2).

    Decimal numbering ranks by depth ("2" -> 8, "2.3" -> 9, ...) and numbers by its last part.
    """
    head = text.lstrip()
    for rank, pattern in _MARKERS:
        m = pattern.match(head)
        if m:
            return rank, _number(m.group(1)) if m.group(1) else None
    m = _DECIMAL.match(head)
    if m and len(m.group(1)) <= 12:
        parts = m.group(1).split(".")
        return 8 + len(parts) - 1, int(parts[-1])
    return None


def _title_like(text: str) -> bool:
    """A short line without a sentence ending reads as a title, not as a clause. A footnote's mark
    after the ending ("… by the finance office.[1]", as the PDF reader writes it) does not hide it."""
    t = re.sub(r"\[\d{1,3}\]$", "", text.strip())
    return len(t) <= 60 and "\n" not in t and not re.search(r"[。！？；;!?]|[.:：]$", t)


# ------------------------------------------------------------------ building

@dataclass
class _Draft:
    title: str
    text: list[str] = field(default_factory=list)
    number: int | None = None
    kind: str = "leaf"  # "root", "heading" (level), "section" (titled marker), "clause", "leaf"
    rank: int = 0
    keys: list[tuple[int, int]] = field(default_factory=list)
    page: int | None = None
    children: list[_Draft] = field(default_factory=list)
    title_key: tuple[int, int] | None = None  # the paragraph a titled marker ("2. Booking") is

    def empty(self) -> bool:
        return not self.text and not self.children


def build_tree(doc: Document, doc_no: int, chunks: Sequence[Chunk] = ()) -> list[TreeNode]:
    """The tree of ``doc``, nodes in reading order (the root first), with ids and hashes but no
    summaries (:func:`summarise_tree` adds them).

    Args:
        chunks: the document's chunks from :func:`lingxi.knowledge.chunking.chunk_document`
            (same ``doc_no``), to link each node to the chunks holding its text.
    """
    root = _Draft(doc.title, kind="root")
    stack: list[tuple[_Draft, str, int]] = [(root, "root", 0)]  # (node, kind, level or rank)
    section, para = 0, 0
    for block in doc.blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.level > 0:
            section, para = section + 1, 0
            while stack[-1][1] != "root" and (stack[-1][1] != "heading" or stack[-1][2] >= block.level):
                stack.pop()
            m = marker(text)
            node = _Draft(text, number=m[1] if m else None, kind="heading", page=block.page)
            stack[-1][0].children.append(node)
            stack.append((node, "heading", block.level))
            continue
        para += 1
        key = (section, para)
        top, kind, rank = stack[-1]
        m = marker(text)
        inside_clause = kind == "clause"
        if m and not (inside_clause and m[0] > rank and m[0] >= 6):
            while stack[-1][1] in ("section", "clause") and stack[-1][2] >= m[0]:
                stack.pop()
            titled = _title_like(text)
            node = _Draft(text if titled else _clause_title(text), number=m[1],
                          kind="section" if titled else "clause", rank=m[0], page=block.page,
                          title_key=key if titled else None)
            if not titled:
                node.text.append(text)
                node.keys.append(key)
            stack[-1][0].children.append(node)
            stack.append((node, node.kind, m[0]))
        elif inside_clause:
            top.text.append(text)
            top.keys.append(key)
        else:
            top.children.append(_Draft(_clause_title(text), [text], keys=[key], page=block.page))
    by_key = _chunks_by_paragraph(chunks, doc_no)
    nodes: list[TreeNode] = []
    _emit(_labels(_prune(root)), str(doc_no), "", doc_no, by_key, nodes)
    return nodes


def _labels(node: _Draft) -> _Draft:
    """Short plain paragraphs that read as labels ("Example", a rule id like "[layout.repr.c]")
    do not stand alone as leaves: they join the plain paragraph they precede. One with no plain
    paragraph after it (before a heading or a numbered node, or at the end of its section) joins
    the plain paragraph before it, and stays a leaf only when there is none."""
    out: list[_Draft] = []
    pending: list[_Draft] = []
    for c in node.children:
        if c.kind == "leaf" and len(c.text) == 1 and _title_like(c.text[0]):
            pending.append(c)
            continue
        if pending and c.kind == "leaf":
            c.text[:0] = [p.text[0] for p in pending]
            c.keys[:0] = [k for p in pending for k in p.keys]
        else:
            _after_last_leaf(out, pending)
        pending = []
        out.append(c)
    _after_last_leaf(out, pending)
    node.children = [_labels(c) for c in out]
    return node


def _after_last_leaf(out: list[_Draft], labels: list[_Draft]) -> None:
    """Labels with no plain paragraph after them in their section (a rule id just before the
    next heading) join the plain paragraph before them; with none, they stay leaves."""
    if labels and out and out[-1].kind == "leaf":
        out[-1].text += [p.text[0] for p in labels]
        out[-1].keys += [k for p in labels for k in p.keys]
    else:
        out += labels


def _clause_title(text: str) -> str:
    first = text.strip().splitlines()[0]
    sentences = split_sentences(first)
    head = sentences[0] if sentences else first
    if len(head) < len(first) and re.fullmatch(r"\W*\w{1,3}[.)、]?\W*", head):
        head = first  # "1." is the marker ("1. Unzip the archive"), not the clause's first sentence
    return head if len(head) <= 40 else head[:40] + "…"


def _prune(node: _Draft) -> _Draft:
    """Drop empty nodes. A numbered title with nothing under it ("1. Unzip the archive" right
    before "2. Run the installer", a step read as a section's title) is a clause holding its line."""
    for c in node.children:
        _prune(c)
        if c.empty() and c.kind == "section" and c.title_key is not None:
            c.kind, c.text, c.keys = "clause", [c.title], [c.title_key]
            c.title = _clause_title(c.title)
    node.children = [c for c in node.children if not c.empty()]
    return node


def _segments(children: list[_Draft]) -> list[int]:
    """Id segments of siblings (rules 1-3 of the module docstring)."""
    taken: set[int] = set()
    out: list[int | None] = [None] * len(children)
    for i, c in enumerate(children):  # numbered ones first: they win a clash
        if c.number is not None and c.number not in taken:
            out[i] = c.number
            taken.add(c.number)
    for i, c in enumerate(children):
        if out[i] is None and c.number is None and i + 1 not in taken:
            out[i] = i + 1
            taken.add(i + 1)
    for i in range(len(children)):
        if out[i] is None:
            out[i] = max(taken, default=0) + 1
            taken.add(out[i])
    return [int(s) for s in out if s is not None]


def _emit(d: _Draft, nid: str, parent: str, doc_no: int, by_key: dict[tuple[int, int], list[str]],
          out: list[TreeNode]) -> TreeNode:
    chunk_ids: list[str] = []
    for key in d.keys:
        for cid in _chunk_for(by_key, key):
            if cid not in chunk_ids:
                chunk_ids.append(cid)
    node = TreeNode(nid, doc_no, parent, len(out), d.title, "\n\n".join(d.text), chunks=chunk_ids, page=d.page)
    out.append(node)
    for seg, child in zip(_segments(d.children), d.children, strict=True):
        node.children.append(_emit(child, f"{nid}.{seg}", nid, doc_no, by_key, out))
    h = hashlib.sha256(f"{node.title}\x00{node.text}".encode())
    for child in node.children:
        h.update(f"\x00{child.id.rsplit('.', 1)[-1]}:{child.hash}".encode())
    node.hash = h.hexdigest()
    return node


def _chunks_by_paragraph(chunks: Sequence[Chunk], doc_no: int) -> dict[tuple[int, int], list[str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for c in chunks:
        parts = c.id.split(".")
        if len(parts) == 4 and parts[0] == str(doc_no) and parts[1].isdigit() and parts[2].isdigit():
            out.setdefault((int(parts[1]), int(parts[2])), []).append(c.id)
    return out


def _chunk_for(by_key: dict[tuple[int, int], list[str]], key: tuple[int, int]) -> list[str]:
    """The chunk(s) holding paragraph ``key``: those starting at it, else the packed chunk that
    starts at the nearest paragraph before it in the same section."""
    section, para = key
    for p in range(para, 0, -1):
        if (section, p) in by_key:
            return by_key[(section, p)]
    return []


def link_children(nodes: Sequence[TreeNode]) -> list[TreeNode]:
    """Rebuild ``children`` lists from ``parent`` ids (nodes read back from a store); returns the roots."""
    by_id = {n.id: n for n in nodes}
    roots = []
    for n in nodes:
        n.children = []
    for n in sorted(nodes, key=lambda n: (n.doc_no, n.order)):
        parent = by_id.get(n.parent)
        if parent is None:
            roots.append(n)
        else:
            parent.children.append(n)
    return roots


# ------------------------------------------------------------------ summaries

Summarise = Callable[[TreeNode], str]


class ExtractiveSummariser:
    """A summary without a model: the titles of the children (or the leading sentence of each,
    for clauses), cut to ``max_chars``, then the node's most frequent key terms."""

    name = "extractive"

    def __init__(self, max_chars: int = 160, terms: int = 8):
        self.max_chars = max_chars
        self.terms = terms

    def __call__(self, node: TreeNode) -> str:
        parts = [_clause_title(node.text)] if node.text else []
        for c in node.children:
            parts.append(_clause_title(c.text) if c.text else c.title)
        lead = _cut("；".join(p for p in parts if p), self.max_chars)
        counts = Counter(t for t in tokenize(" ".join(_texts(node))) if len(t) > 1 and not t.isdigit())
        terms = [t for t, _ in counts.most_common(self.terms)]
        return lead + (" | " + " ".join(terms) if terms else "")


class ModelSummariser:
    """Summaries written by a chat model (one short sentence per inner node, from the node's title
    and its children's titles and summaries; bounded input, bottom-up)."""

    def __init__(self, engine: Any, name: str, max_tokens: int = 80):
        self.engine = engine
        self.name = f"model:{name}"
        self.max_tokens = max_tokens

    def __call__(self, node: TreeNode) -> str:
        from lingxi.engines.base import GenerationParams
        from lingxi.text import language_of

        lines = [f"- {c.title}: {c.summary or _clause_title(c.text)}" for c in node.children[:30]]
        zh = language_of(node.title + " ".join(lines)) == "zh"
        ask = ("用一句话（不超过60字）概括下面这一部分讲什么，只输出这句话。" if zh else
               "In one sentence (at most 40 words), say what this part covers. Output only the sentence.")
        prompt = [{"role": "user", "content": f"{ask}\n\n{node.title}\n{_cut(node.text, 400)}\n" + "\n".join(lines)}]
        out = self.engine.generate(prompt, GenerationParams(max_tokens=self.max_tokens, temperature=0.0)).text
        return _cut(" ".join(out.split()), 300)


def _texts(node: TreeNode) -> list[str]:
    out = [node.title, node.text]
    for c in node.children:
        out.extend(_texts(c))
    return out


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def summary_key(node_hash: str, summariser_name: str) -> str:
    return hashlib.sha256(f"{summariser_name}\x00{node_hash}".encode()).hexdigest()


def summarise_tree(nodes: Sequence[TreeNode], summarise: Summarise, known: dict[str, str]) -> int:
    """Give every inner node a summary: reused from ``known`` (summary key -> summary) when its
    key is there, else made by ``summarise``, deepest nodes first (a model summary of a parent
    reads its children's). Leaves get none: navigation reads their text. Returns how many
    summaries were made."""
    name = getattr(summarise, "name", type(summarise).__name__)
    made = 0
    for node in sorted(nodes, key=lambda n: -n.depth):
        if node.is_leaf:
            node.summary, node.summary_key = "", ""
            continue
        node.summary_key = summary_key(node.hash, name)
        if node.summary_key in known:
            node.summary = known[node.summary_key]
        else:
            node.summary = summarise(node)
            known[node.summary_key] = node.summary
            made += 1
    return made
