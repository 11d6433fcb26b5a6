"""Questions answered from a knowledge graph: link the entities a question names, follow 1-3 hop
paths from them that the caller may see, and answer with the entities those paths reach, each
fact cited to its source.

How a path is chosen (no model needed, so the bundled 135M model cannot invent an answer):
  - **linking**: every node name and alias (阿司匹林 / aspirin / acetylsalicylic acid) found in
    the question, longest first; a name inside a longer matched name does not count
    (头痛 inside 偏头痛). Latin names must stand as whole words (an English plural
    ending is allowed: migraines).
  - **label words**: a relation or type is "mentioned" when its own name (``METABOLIZED_BY`` ->
    "metabolized") or one of its words appears in the question. Words are data: rows
    ``{"label": "TREATS", "words": ["治疗", "treats", "cures"]}`` in an import file.
  - **focus**: the type the question asks for, the one named right after "which"/"what"/哪种/
    什么 ("Which enzyme ...", "由哪种酶代谢"), else the first type it mentions.
  - **no change of subject**: a path from one named entity does not pass through another entity
    of the same type (aspirin -TREATS-> headache <-TREATS- ibuprofen) unless the question
    mentions the relation that leads there; otherwise "Which enzyme metabolizes aspirin?" would
    answer with ibuprofen's enzyme. When the question asks for a type with a question word
    ("which enzyme", 哪种酶), only answers of that type count.
  - **score** of a path: two per linked entity it passes through, one per mentioned relation it
    uses, two when its answer has the focus type (minus one when it has another), minus three
    quarters of a point per hop. A path joining two named
    entities answers with what lies between them (a drug-interaction check: warfarin and
    fluconazole meet at CYP2C9), or, when one fact joins them ("Does aspirin treat fever?"),
    with that fact itself (two more points, no entity in ``answers``); otherwise the answer is
    the node the path reaches. When two named entities are joined by no path, the question (an
    interaction check, "Does X treat Y?") is not answered with each one's own neighbours: "I
    don't know", unless it asks for a type with a question word ("Which enzymes metabolize X and
    Y?", answered for each).
Names one slip from the question's unlinked words are offered as ``suggestions``
(:meth:`GraphIndex.near`: asprin -> aspirin, 华法令 -> 华法林), never linked.
The answer is extractive: entity names and the facts that lead to them. Nothing is generated,
so ``supported`` is true exactly when a path was found. A configured stronger model could
phrase the facts or write Cypher from the question; this module does neither.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lingxi.stores.graph import LABEL_TYPE, Edge, GraphStore, Node, NodeKey, fold
from lingxi.text import CJK, STOPWORDS_ZH, stopwords_en, tokenize, yes_no

#: Close-name suggestions (:meth:`GraphIndex.near`): the names that take part (Latin letters,
#: Chinese characters) and how much of a question is read.
NEAR_MIN_LATIN, NEAR_MIN_CJK, NEAR_MAX_CJK, NEAR_QUESTION_CHARS = 6, 3, 12, 500
_LATIN_WORD = re.compile(r"[0-9a-z]+(?:[-'][0-9a-z]+)*")
_CJK_RUN = re.compile(f"[{CJK}]+")
_ASCII_WORD = re.compile(r"[0-9a-z]")


@dataclass
class Path:
    start: NodeKey
    edges: list[Edge]

    def nodes(self) -> list[NodeKey]:
        out = [self.start]
        for edge in self.edges:
            out.append(edge.tail_key if edge.head_key == out[-1] else edge.head_key)
        return out

    def as_list(self) -> list[str]:
        """``[node, relation, node, ...]`` in walking order."""
        nodes = self.nodes()
        out = [nodes[0][1]]
        for edge, node in zip(self.edges, nodes[1:]):
            out += [edge.relation, node[1]]
        return out


@dataclass
class GraphAnswer:
    """``mode`` is ``"graph"`` (facts found) or ``"unknown"`` (``supported`` false)."""

    answer: str
    supported: bool
    mode: str
    entities: list[str] = field(default_factory=list)
    paths: list[list[str]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    cypher: str = ""  # text-to-Cypher only: the query that ran, its columns and rows
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)  # names one slip from words the question did not link

    def to_dict(self) -> dict[str, Any]:
        out = {"answer": self.answer, "supported": self.supported, "mode": self.mode, "answers": self.answers,
               "entities": self.entities, "paths": self.paths, "citations": self.citations}
        if self.suggestions:
            out["suggestions"] = self.suggestions
        if self.cypher:
            out.update(cypher=self.cypher, columns=self.columns, rows=self.rows)
        return out


def fact_text(edge: Edge) -> str:
    return f"{edge.head} {edge.relation} {edge.tail}"


class GraphIndex:
    """The names a question can be matched against, built once per store contents."""

    def __init__(self, nodes: list[Node]):
        self.names: dict[str, set[NodeKey]] = {}
        self.spelled: dict[str, str] = {}  # folded -> the name or alias as written
        self.words: dict[str, set[str]] = {}  # label -> folded words naming it
        self.longest = 1
        for node in nodes:
            if node.type == LABEL_TYPE:
                self.words.setdefault(node.name, set()).update(fold(w) for w in node.aliases)
                continue
            for name in (node.name, *node.aliases):
                folded = fold(name)
                self.names.setdefault(folded, set()).add(node.key)
                self.spelled.setdefault(folded, name)
                self.longest = max(self.longest, len(folded))
        self._fuzzy: tuple[list[str], list[str]] | None = None  # near()'s Latin and Chinese names
        self.types = {key[0] for keys in self.names.values() for key in keys}

    def link(self, question: str) -> list[NodeKey]:
        """Nodes named in ``question``: longest matches first, none inside another."""
        return list(dict.fromkeys(key for _, _, key in self.spans(question)))

    def matches(self, question: str) -> list[tuple[int, int, NodeKey]]:
        """Every place a name or alias stands in the folded question, overlapping ones included."""
        q = fold(question)
        found: list[tuple[int, int, NodeKey]] = []
        for i in range(len(q)):
            for j in range(min(len(q), i + self.longest), i, -1):
                keys = self.names.get(q[i:j])
                if not keys or not _whole(q, i, j):
                    continue
                found += [(i, j, k) for k in sorted(keys)]
        return found

    def spans(self, question: str, allowed: set[NodeKey] | None = None,
              found: list[tuple[int, int, NodeKey]] | None = None) -> list[tuple[int, int, NodeKey]]:
        """Where :meth:`link` finds each node: ``(start, end, key)`` in the folded question, the
        longest first and none inside another; only nodes in ``allowed`` when it is given (a
        hidden "Alibaba Holdings" must not swallow the "Alibaba" a caller may see). ``found``:
        :meth:`matches` of the question, when already made."""
        found = [m for m in (self.matches(question) if found is None else found) if allowed is None or m[2] in allowed]
        found.sort(key=lambda m: (-(m[1] - m[0]), m[0]))
        taken: list[tuple[int, int, NodeKey]] = []
        for i, j, key in found:
            if any(a <= i and j <= b and (a, b) != (i, j) for a, b, _ in taken):
                continue
            taken.append((i, j, key))
        return taken

    def near(self, question: str, limit: int = 3,
             taken: Sequence[tuple[int, int]] = ()) -> list[tuple[str, list[NodeKey]]]:
        """Names and aliases one slip away from words of ``question`` — asprin, warfarine,
        ibuprofin, 阿斯匹林 — as ``(the folded name or alias, its nodes)``, closest first.
        Suggestions, never links: a close name is often another entity (CYP2C9 for CYP2C19).

        One slip is an Indel distance (letters inserted or deleted; a changed letter counts two)
        of at most 1 for a Latin name of 6-7 characters, 2 from 8 characters, and 2 for a Chinese
        name of 3-12 characters. Latin names need 4 letters or more and are compared with runs of
        1-3 whole words of the question, Chinese ones with any stretch of a Chinese run (of the
        question's first 500 characters), except stretches overlapping ``taken`` (where
        :meth:`spans` linked a name). Shorter names take no part: in them one slip is too often
        another word (头发 / 头痛, ever / fever, heat / heart), as a changed letter is in a Latin
        name under 8 (never / fever)."""
        try:
            from rapidfuzz import process
            from rapidfuzz.distance import Indel
        except ImportError as exc:
            from lingxi.errors import missing_extra

            raise missing_extra("suggesting close entity names", "graph", exc) from exc
        if self._fuzzy is None:
            latin = [n for n in self.names if n and _ASCII_WORD.match(n[0]) and len(n) >= NEAR_MIN_LATIN
                     and sum(ch.isalpha() for ch in n) >= 4]  # a word, not a number (100000)
            cjk = [n for n in self.names if _CJK_RUN.fullmatch(n) and NEAR_MIN_CJK <= len(n) <= NEAR_MAX_CJK]
            self._fuzzy = (latin, cjk)
        q = fold(question)[:NEAR_QUESTION_CHARS]

        def free(start: int, end: int) -> bool:
            return all(end <= a or b <= start for a, b in taken)

        words = list(_LATIN_WORD.finditer(q))
        latin_spans = {" ".join(m.group() for m in words[i:i + w]) for w in (1, 2, 3) for i in range(len(words) - w + 1)
                       if free(words[i].start(), words[i + w - 1].end())}
        cjk_spans = {q[i:j] for run in _CJK_RUN.finditer(q) for i in range(run.start(), run.end())
                     for j in range(i + 2, min(run.end(), i + NEAR_MAX_CJK + 1) + 1) if free(i, j)}
        found: dict[str, int] = {}
        for spans, names, latin in ((sorted(latin_spans), self._fuzzy[0], True),
                                    (sorted(cjk_spans), self._fuzzy[1], False)):
            for at in range(0, len(spans) if names else 0, 64):  # 64 rows at a time bound the matrix
                dist = process.cdist(spans[at:at + 64], names, scorer=Indel.distance, score_cutoff=2, dtype=np.int32)
                for j in np.nonzero((dist <= 2).any(axis=0))[0]:
                    name, d = names[j], int(dist[:, j].min())
                    if d == 0 or (d == 2 and latin and len(name) < 8):
                        continue  # an exact name is linked, not suggested; a short Latin name takes one slip
                    found[name] = min(d, found.get(name, d))
        out: list[tuple[str, list[NodeKey]]] = []
        for name in sorted(found, key=lambda n: (found[n], -len(n), n)):
            keys = sorted(self.names[name])
            if all(keys != k for _, k in out):  # one suggestion per node: its closest name
                out.append((name, keys))
        return out[:limit]

    def places(self, question: str, labels: set[str]) -> list[tuple[int, int, str, bool]]:
        """Where the words of ``labels`` (relations, types) stand in the folded question:
        ``(start, end, label, given)``, in order. The longest word claims its place first and no
        place overlaps another, so "manager" (a word given for REPORTS_TO) is not also MANAGES's
        stem "manag"; a word two labels share ("treat") names both. ``given``: the word was given
        in an import's label rows, not spelled by the label itself. A given word must end where an
        English word ends (an inflection aside: "who" is not in "whole"); a stem the label spells
        ("metaboliz") runs to the end of its word."""
        q = fold(question)
        found = []
        for label in labels:
            given = set(self.words.get(label, ()))
            for word in given | _label_words(label):
                start = q.find(word) if word else -1
                while start >= 0:
                    end = _word_end(q, start, word, stem=word not in given)
                    if end is not None:
                        found.append((len(word), start, end, label, word in given))
                    start = q.find(word, start + 1)
        out: list[tuple[int, int, str, bool]] = []
        claimed: dict[tuple[int, int], int] = {}  # span -> the length of the word that claimed it
        for size, start, end, label, given in sorted(found, key=lambda f: (-f[0], f[1], f[3])):
            if claimed.get((start, end)) == size or all(end <= a or b <= start for a, b in claimed):
                # a word two labels share ("treat": TREATS, TREATED_WITH) names both
                claimed.setdefault((start, end), size)
                out.append((start, end, label, given))
        return sorted(out)

    def mentioned(self, question: str, labels: set[str]) -> set[str]:
        """The labels (relations, types) the question speaks of (see :meth:`places`)."""
        return {label for _, _, label, _ in self.places(question, labels)}

    def focus(self, question: str, named: set[str]) -> tuple[str | None, bool]:
        """The type the question asks for and whether a question word asks for it: the one named
        right after "which"/"what"/哪种/什么 ("Which enzyme ...", "由哪种酶代谢"; True), else the first
        type it mentions that is not the type of an entity it names (False); None when it
        mentions no type."""
        q = fold(question)
        places = [(at, bool(_WH.search(q[max(0, at - 12):at])), label)
                  for at, end, label, _ in self.places(question, self.types) if q[at:end] not in _WH_WORDS]
        if not places:
            return None, False
        asked_for = sorted((at, label) for at, asked, label in places if asked)
        if asked_for:
            return asked_for[0][1], True
        rest = sorted((at, label) for at, _, label in places if label not in named)
        return (rest[0][1] if rest else None), False


def _word_end(q: str, start: int, word: str, stem: bool) -> int | None:
    """Where the match of ``word`` at ``start`` ends, or None where it is no word of the question:
    a Latin word must start a word, and end one (a stem runs on to its word's end; a whole word
    may take an inflection: s, es, d, ed, ing). Chinese has no word boundaries to check."""
    end = start + len(word)
    if not _ASCII_WORD.match(word[0]):
        return end
    if start > 0 and _ASCII_WORD.match(q[start - 1]):
        return None
    if not _ASCII_WORD.match(word[-1]) or end == len(q) or not _ASCII_WORD.match(q[end]):
        return end
    if stem:
        while end < len(q) and _ASCII_WORD.match(q[end]):
            end += 1
        return end
    for ending in ("s", "es", "d", "ed", "ing"):
        if q.startswith(ending, end) and (end + len(ending) == len(q) or not _ASCII_WORD.match(q[end + len(ending)])):
            return end + len(ending)
    return None


_WH = re.compile(r"(which|what|哪种|哪个|哪些|哪一|什么|何种)\s*$")
#: A type's word that is the question word itself ("who", 谁) asks for no type: companies are "who" too.
_WH_WORDS = {"who", "whom", "谁"}


def _whole(q: str, i: int, j: int) -> bool:
    """A Latin-script match must not be part of a longer word, but for an English plural ending
    on a name of four letters or more (migraines, headaches)."""
    if _ASCII_WORD.match(q[i]) and i > 0 and _ASCII_WORD.match(q[i - 1]):
        return False
    if not (_ASCII_WORD.match(q[j - 1]) and j < len(q) and _ASCII_WORD.match(q[j])):
        return True
    # short names (I, Fe, ASA) would match "is", "fees", "as"
    return j - i >= 4 and any(q.startswith(end, j) and (j + len(end) == len(q) or not _ASCII_WORD.match(q[j + len(end)]))
                              for end in ("s", "es"))


def _unlinked(index: GraphIndex, question: str, spans: Sequence[tuple[int, int, NodeKey]],
              relations: set[str]) -> list[str]:
    """For a yes-or-no question, the words it asks about that name no node the caller may see
    and no relation or type: "headaches" in "Does omeprazole treat headaches?", 法务部 in
    张伟在法务部工作吗？, "fluconazole" in "Do warfarin and fluconazole interact?" when no fact
    the caller may read names fluconazole. [] for any other question. Function words, asking
    words and (in English) a phrase of place, time or condition ("in the body") do not count.
    Such a question asks whether its entity has to do with something the graph does not show,
    and the entity's own facts do not say."""
    if not yes_no(question):
        return []
    q = _masked(question, spans)
    q = _blank(q, [(i, j) for i, j, _, _ in index.places(q, relations | index.types)])
    left = []
    asked = _QUALIFIER.split(q, maxsplit=1)[0]  # "metabolized in the body": where, not what
    written = _as_written(question)
    for m in re.finditer(r"[^\W\d_]+", asked):
        word = m.group()
        for part in (tokenize(word) if re.search(f"[{CJK}]", word) else [written[m.start():m.end()]]):
            if len(part) > 1 and not set(tokenize(part)) <= _asking_words():
                left.append(part)
    return list(dict.fromkeys(left))


def asked_relations(index: GraphIndex, question: str, relations: set[str],
                    spans: Sequence[tuple[int, int, NodeKey]] | None = None) -> set[str]:
    """The ``relations`` the question speaks of, outside the names it links (``spans``, else
    :meth:`GraphIndex.spans`): "treat" in "Migraine Treatment Center" is no mention of TREATS."""
    return index.mentioned(_masked(question, index.spans(question) if spans is None else spans), relations)


def _masked(question: str, spans: Sequence[tuple[int, int, NodeKey]]) -> str:
    """The folded question with the linked names blanked out (a relation's word inside a name —
    "treat" in "Migraine Treatment Center" — is no mention of the relation)."""
    return _blank(fold(question), [(i, j) for i, j, _ in spans])


def _blank(q: str, ranges: Sequence[tuple[int, int]]) -> str:
    """``q`` with spaces over ``ranges``: positions stay where they were."""
    for i, j in ranges:
        q = q[:i] + " " * (j - i) + q[j:]
    return q


def _asked_direction(index: GraphIndex, question: str, spans: Sequence[tuple[int, int, NodeKey]],
                     asked: set[str]) -> tuple[str, bool] | None:
    """For a question on one named entity and one relation: ("the relation", whether the entity
    must be the fact's tail), read from the question's shape; None where it does not show.

    Who is the clause's subject: the one asked for when the question word comes first and the
    relation's words before the name ("Who reports to Zhang Wei?", "Which drug is metabolized by
    CYP2C9?", 谁向张伟汇报？); the named entity when it comes first ("Who does Li Na report to?",
    "What is flu caused by?", 张伟向谁汇报？, 华法林由哪种酶代谢？). The subject is the fact's
    head when the clause speaks in the label's voice — both active (REPORTS_TO, "reports to"),
    or both passive (METABOLIZED_BY, "is metabolized by", 被/由/经 in Chinese) — and its tail
    otherwise ("Which enzyme metabolizes warfarin?": METABOLIZED_BY's tail).

    None for a copula and a role noun given in an import's words ("Who is the manager of …",
    谁是张伟的上级: which end a role names is not in the label; a copula with the label's own
    words, "is part of", "is located in", reads as the label), a label that reads both ways
    (INTERACTS_WITH), or two relations.
    """
    if len(asked) != 1 or not spans:
        return None
    relation = next(iter(asked))
    if _SYMMETRIC.search(relation):
        return None  # "Which drug interacts with warfarin?": either end of INTERACTS_WITH answers
    word = _relation_word(index, question, spans, relation)
    if word is None:
        return None
    q, at, end, given = word
    entity = min(i for i, _, _ in spans)
    by = bool(_BY.match(q, end))
    zh, en = _WH_ZH.match(q), _WH_EN.match(q)
    if zh and zh.end() <= entity:  # 谁向张伟汇报, 哪些药被CYP2C9代谢
        if "是" in q[:entity]:
            return None
        subject_asked, marked = True, bool(re.search("[被由]", q[:entity]))
    elif _CJK_RUN.search(q) and (wh := _WH_ZH_ANY.search(q, entity)):  # 张伟向谁汇报, 华法林由哪种酶代谢
        between = re.sub("是(?=[被由])", "", q[entity:wh.start()])  # 流感是由什么引起的
        if "是" in between or "的" in between:
            return None  # 张伟的上级是谁: a role
        subject_asked, marked = False, bool(_ZH_PASSIVE.search(between))
    elif en and at < entity:  # "Who reports to Zhang Wei?"
        if given and not by and re.search(r"\b(?:is|are|was|were)\b", q[en.end():at]):
            return None  # "Who is the manager of Zhang Wei?": a role
        subject_asked, marked = True, None
    elif en and entity < at:  # "Who does Li Na report to?", "What is flu caused by?"
        before = q[en.end():entity]
        if not (re.fullmatch(rf"\s*(?:\w+\s+)?(?:do|does|did|can|could|will|would|should|may|might|must){_ARTICLE}",
                             before) or re.fullmatch(rf"\s*(?:\w+\s+)?(?:is|are|was|were){_ARTICLE}", before)
                and (by or not given)):
            return None
        subject_asked, marked = False, None
    else:
        return None
    voice = _same_voice(relation, q[at:end], by, marked)
    if voice is None:
        return None
    # the clause's subject is the fact's head when the clause speaks in the label's voice
    return relation, voice if subject_asked else not voice


def _relation_word(index: GraphIndex, question: str, spans: Sequence[tuple[int, int, NodeKey]],
                   relation: str) -> tuple[str, int, int, bool] | None:
    """The question masked of its names (:func:`_masked`), and where the first word of
    ``relation`` stands in it: ``(q, start, end, given)`` (see :meth:`GraphIndex.places`); None
    when the question has none."""
    q = _masked(question, spans)
    places = [(i, j, given) for i, j, label, given in index.places(q, {relation}) if label == relation]
    return (q, *places[0]) if places else None


def _same_voice(relation: str, word: str, by: bool, marked: bool | None) -> bool | None:
    """Whether the question's verb speaks in the label's voice: both active ("reports to",
    REPORTS_TO) or both a participle ("is metabolized by", METABOLIZED_BY; "located in",
    LOCATED_IN). English shows it in the word ("treats" is not TREATED_WITH's voice, "managed by"
    not MANAGES'). Chinese (``marked``: 被/由/经 present) shows only the passive: an unmarked verb
    is taken as active (代谢, 引起, 汇报), which is the voice of an active label and of one in
    the passive with an agent (METABOLIZED_BY, CAUSED_BY); for another participle (LOCATED_IN:
    位于 is itself "is located in") None, the voice unknown."""
    label_participle = _participle_label(relation)
    if marked is None:
        participle = bool(re.search(r"(?:ed|en)$", word)) or by
        return participle == label_participle
    if marked:
        return label_participle
    if not label_participle:
        return True
    return False if _AGENT_LABEL.search(relation) else None


def _participle_label(relation: str) -> bool:
    """METABOLIZED_BY, TREATED_WITH, LOCATED_IN, CAUSED_BY: a label that is a participle."""
    first = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", relation.replace("_", " "))
    return bool(_AGENT_LABEL.search(relation)) or bool(first and re.search(r"(?:ED|EN|ed|en)$", first[0]))


def _pair_direction(index: GraphIndex, question: str, spans: Sequence[tuple[int, int, NodeKey]],
                    relation: str) -> NodeKey | None:
    """For a yes-or-no question on two named entities, the one that must be the head of its
    ``relation`` fact: the first named is the clause's subject ("Does Zhang Wei report to Wang
    Fang?", 李娜向张伟汇报吗？, "Is flu caused by pneumonia?"), the head in the label's voice (see
    :func:`_same_voice`: "Does pneumonia cause flu?" asks for flu's CAUSED_BY fact). None for a
    label that reads both ways, or where the question shows no word of the relation or no voice."""
    if _SYMMETRIC.search(relation):
        return None
    word = _relation_word(index, question, spans, relation)
    if word is None:
        return None
    q, at, end, _ = word
    ordered = sorted(spans)
    first, second = ordered[0], ordered[-1]
    marked = bool(_ZH_PASSIVE.search(q[first[1]:second[0]])) if _CJK_RUN.search(q) else None
    voice = _same_voice(relation, q[at:end], bool(_BY.match(q, end)), marked)
    if voice is None:
        return None
    return first[2] if voice else second[2]


#: Labels that read the same both ways: their facts answer from either end.
_SYMMETRIC = re.compile(r"INTERACT|ASSOCIAT|COLLABORAT|RELATED|SIMILAR|ADJACENT|CONNECTED|MARRIED|SIBLING|PARTNER|"
                        r"NEIGHBO|PEER|EQUIVALENT|SAME_AS|CONFLICT|COMPATIBLE|_AND_", re.I)
_WH_EN = re.compile(r"^\W*(?:who|whom|what|which)\b", re.I)
_WH_ZH = re.compile(r"^\W*(?:谁|哪|什么)")
_WH_ZH_ANY = re.compile(r"谁|哪|什么")
_ZH_PASSIVE = re.compile(r"被|由|经|通过|叫|让")
_ARTICLE = r"(?:\s+(?:the|a|an))?\s+"
#: "… metabolized by": an agent after the relation's word, so the passive.
_BY = re.compile(r"\s*by\b")
#: A label in the passive with its agent: METABOLIZED_BY, CausedBy.
_AGENT_LABEL = re.compile(r"(?:_|[a-z])(?:BY|By)$")


#: Where a yes-or-no question's object ends and a phrase of place, time or condition begins.
_QUALIFIER = re.compile(r"\b(?:in|at|on|during|within|inside|after|before|when|while|if|over|under|for)\b")


@lru_cache(maxsize=1)
def _asking_words() -> frozenset[str]:
    """Tokens that ask rather than name: function words, auxiliaries, modal verbs, quantifiers and
    the adverbs that qualify a question ("really", "actually")."""
    english = ("is are was were be been being do does did can could should shall will would may might must has have "
               "had any anything anyone some something all every everything really actually also ever still even "
               "just only usually normally commonly often always sometimes quickly slowly well much many more most "
               "used use together")
    chinese = ("能 能否 可以 会 应该 需要 是否 是不是 有没有 能不能 可不可以 会不会 吗 用来 一起 同时 真的 确实 也 还 都 任何 "
               "什么 哪些 被 由 经 经过 通过")
    words = set(stopwords_en()) | set(english.split()) | set(STOPWORDS_ZH) | set(chinese.split())
    return frozenset(t for w in words for t in tokenize(w))


def _label_words(label: str) -> set[str]:
    """Words a label spells itself: ``METABOLIZED_BY`` -> {"metaboliz"}, ``HasSymptom`` -> {"symptom"}.
    Latin words are cut to a stem of at most 8 letters so "treats"/"treated" match "TREATS"."""
    parts = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[^\x00-\x7f]+", label.replace("_", " "))
    out = set()
    for part in parts:
        word = fold(part)
        if word.isascii():
            if len(word) <= 3:  # by, of, has: too common to mean anything
                continue
            word = word[:-1] if word.endswith("s") and len(word) > 3 else word  # OWNS: "own", "owned"
            word = word[:-2] if word.endswith("ed") and len(word) > 5 else word  # CAUSED_BY: "cause", "causes"
            word = word[:-1] if word.endswith("e") and len(word) > 4 else word
            word = word[:8]
        out.add(word)
    return out


def find_paths(store: GraphStore, starts: list[NodeKey], groups: list[str] | None, max_hops: int,
               max_frontier: int = 400, max_paths: int = 20000) -> list[Path]:
    """Simple paths (no node twice) of 1..max_hops edges from ``starts``, through visible edges only."""
    paths: list[Path] = []
    frontier = [Path(s, []) for s in starts]
    for _ in range(max_hops):
        ends = list(dict.fromkeys(p.nodes()[-1] for p in frontier))[:max_frontier]
        if not ends:
            break
        edges_at: dict[NodeKey, list[Edge]] = {}
        for edge in store.neighbors(ends, groups):
            if edge.head_type == LABEL_TYPE or edge.tail_type == LABEL_TYPE:
                continue
            edges_at.setdefault(edge.head_key, []).append(edge)
            edges_at.setdefault(edge.tail_key, []).append(edge)
        grown = []
        for path in frontier:
            seen = path.nodes()
            for edge in edges_at.get(seen[-1], ()):
                other = edge.tail_key if edge.head_key == seen[-1] else edge.head_key
                if other in seen:
                    continue
                grown.append(Path(path.start, [*path.edges, edge]))
                if len(paths) + len(grown) >= max_paths:
                    break
        paths += grown
        frontier = grown
        if len(paths) >= max_paths:
            break
    return paths


def ask(store: GraphStore, question: str, *, groups: list[str] | None = None, max_hops: int = 3,
        max_paths: int = 5, index: GraphIndex | None = None, suggest: bool = True) -> GraphAnswer:
    """Answer ``question`` from the graph's facts the caller (``groups``) may see.

    Returns a :class:`GraphAnswer`; ``mode="unknown"`` when no entity is named or no path leads
    anywhere. Names one slip from the question's unlinked words come as ``suggestions`` (with
    ``suggest``; a retriever, which shows no answer, turns it off), and an "I don't know" says
    them.

    Raises:
        UsageError: an empty question.
    """
    from lingxi.errors import UsageError

    if not question or not question.strip():
        raise UsageError("the question is empty")
    index = index or GraphIndex(store.nodes())
    found = index.matches(question)
    spans = index.spans(question, found=found)
    linked = list(dict.fromkeys(key for _, _, key in spans))
    paths = find_paths(store, linked, groups, max_hops) if linked else []
    if groups is not None and not set(linked) <= {p.start for p in paths}:
        # a node with no fact the caller may read is, to that caller, no node at all: no message
        # below may tell a hidden name (赵敏, in hr's facts only) from one the graph lacks (赵六),
        # and a hidden longer name must not swallow a visible one inside it
        named = list(dict.fromkeys(key for _, _, key in found))
        allowed = {k for e in store.neighbors(named, groups) for k in (e.head_key, e.tail_key)}
        visible = index.spans(question, allowed, found=found)
        if visible != spans:
            spans, linked = visible, list(dict.fromkeys(key for _, _, key in visible))
            paths = find_paths(store, linked, groups, max_hops) if linked else []
    close = _visible_near(store, index, question, groups, [(i, j) for i, j, _ in spans], linked) if suggest else []
    hint = f" Did you mean: {', '.join(name for name, _ in close)}?" if close else ""
    suggestions = [name for name, _ in close]
    if not linked:
        return GraphAnswer(f"I don't know: the question names no entity of this graph.{hint}", False, "unknown",
                           suggestions=suggestions)
    # the messages below use the question's own words (an alias must not reveal a hidden node's name)
    entities = [k[1] for k in linked]
    written = _as_written(question)
    said = _and(list(dict.fromkeys(written[i:j] for i, j, _ in sorted(spans))))
    if not paths:
        return GraphAnswer(f"I don't know: nothing in this graph that you may read leads from {said}.{hint}",
                           False, "unknown", entities=entities, suggestions=suggestions)
    relations = {e.relation for p in paths for e in p.edges}
    masked = _masked(question, spans)  # "treat" in "Migraine Treatment Center" mentions no relation
    asked = index.mentioned(masked, relations)
    focus, wh_asked = index.focus(masked, {k[0] for k in linked})
    if len(linked) == 1 and (unknown := _unlinked(index, question, spans, relations)):
        # "Does omeprazole treat headaches?" where the graph knows no headaches: what omeprazole
        # treats (胃溃疡) would read as an answer to a question nobody asked
        words = _and([f"“{w}”" for w in unknown])
        return GraphAnswer(f"I don't know: no fact in this graph that you may read links {said} to {words}.{hint}",
                           False, "unknown", entities=entities, suggestions=suggestions)
    direction = _asked_direction(index, question, spans, asked) if len(linked) == 1 else None
    turned = False  # a fact of the relation asked about stood the other way round
    scored = []
    for path in paths:
        nodes = path.nodes()
        on_path = [n for n in nodes if n in linked]
        joins = len(on_path) >= 2
        if asked and not joins and not asked & {e.relation for e in path.edges}:
            continue  # "Who reports to Wang Fang?" is not answered by what Wang Fang manages
        if joins and asked and yes_no(question):
            fact = path.edges[0]
            if not (len(path.edges) == 1 and fact.relation in asked):
                continue  # "Does Zhang Wei work in IT?" is no yes for whoever Zhang Wei reports to who does
            head = _pair_direction(index, question, spans, fact.relation)
            if head is not None and fact.head_key != head:
                continue  # "Does Zhang Wei report to Wang Fang?" is no yes for 王芳 -REPORTS_TO-> 张伟
        if direction is not None and path.edges[0].relation == direction[0] and (
                (path.edges[0].tail_key == path.start) != direction[1]):
            turned = True
            continue  # "Who reports to Zhang Wei?" is not answered by whom Zhang Wei reports to
        if not joins and any(n[0] == path.start[0] and n not in linked and e.relation not in asked
                             for e, n in zip(path.edges, nodes[1:])):
            continue  # another entity of the named one's kind: a change of subject (see above)
        score = 2.0 * len(on_path) + len({e.relation for e in path.edges} & asked) - 0.75 * len(path.edges)
        if joins:
            answer_nodes = [n for n in nodes[1:-1] if n not in linked] if nodes[-1] in linked else []
            if not answer_nodes and len(path.edges) == 1:  # "Does aspirin treat fever?": the fact itself,
                if not (focus and wh_asked):  # unless a type is asked for ("Which enzyme ...")
                    scored.append((score + 2.0, path, []))
                continue
        else:
            answer_nodes = [nodes[-1]] if nodes[-1] not in linked else []
        if not answer_nodes:
            continue
        if focus:
            of_focus = all(n[0] == focus for n in answer_nodes)
            if wh_asked and not of_focus:
                continue
            score += 2.0 if of_focus else -1.0
        scored.append((score, path, answer_nodes))
    if len(linked) >= 2 and not (focus and wh_asked) and not any(
            sum(n in linked for n in path.nodes()) >= 2 for _, path, _ in scored):
        # "Can I take aspirin with warfarin?": a question on two entities asks how they meet, and
        # each one's own neighbours are no answer to it (nor is no path a sign that none exists)
        return GraphAnswer(f"I don't know: no fact in this graph that you may read joins {said} "
                           f"(within {max_hops} hops).{hint}", False, "unknown", entities=entities,
                           suggestions=suggestions)
    if not scored:
        why = (f"no {direction[0]} fact that you may read has {said} at that end; those there run the other way"
               if turned and direction is not None
               else f"no fact leads from {said} to the {focus} asked for" if focus and wh_asked
               else "the paths from the named entities lead only back to them or on to other entities of "
                    "their kind")
        return GraphAnswer(f"I don't know: {why}.{hint}", False, "unknown", entities=entities,
                           suggestions=suggestions)
    scored.sort(key=lambda s: (-s[0], len(s[1].edges), s[1].as_list()))
    best = scored[0][0]
    top, seen_facts = [], set()
    for item in scored:
        facts = frozenset(item[1].edges)
        if item[0] != best or len(top) == max_paths:
            break
        if facts not in seen_facts:  # the same facts walked from the other end
            seen_facts.add(facts)
            top.append(item)
    answers = list(dict.fromkeys(n[1] for _, _, nodes in top for n in nodes))
    cited: dict[tuple[str, ...], Edge] = {}
    for _, path, _ in top:
        for edge in path.edges:
            cited.setdefault((edge.head_type, edge.head, edge.relation, edge.tail_type, edge.tail), edge)
    citations = [{"id": e.source, "source": e.source, "text": fact_text(e), "score": best} for e in cited.values()]
    if answers:
        text = f"{'、'.join(answers)} ({'; '.join(_arrowed(p) for _, p, _ in top)})"
    else:  # facts named whole, each in its own direction
        text = "; ".join(f"{e.head} -{e.relation}-> {e.tail}" for _, p, _ in top for e in p.edges)
    on_paths = {n for _, p, _ in top for n in p.nodes()}  # a name the answer gives is no slip to point out
    suggestions = [name for name, keys in close if not set(keys) & on_paths]
    return GraphAnswer(text, True, "graph", entities=entities, paths=[p.as_list() for _, p, _ in top],
                       citations=citations, answers=answers, suggestions=suggestions)


def _visible_near(store: GraphStore, index: GraphIndex, question: str, groups: list[str] | None,
                  taken: Sequence[tuple[int, int]], linked: Sequence[NodeKey],
                  limit: int = 3) -> list[tuple[str, list[NodeKey]]]:
    """What to offer of :meth:`GraphIndex.near`'s names outside the ``taken`` spans, for nodes
    not ``linked`` already, as ``(shown name, its readable nodes)``: only nodes with a fact the
    caller may read, and for a caller with groups the node's own name (which that fact shows)
    rather than the alias that matched — aliases are not kept per group, so one that a restricted
    fact brought must not be spelled out to a near-miss guess. A trusted caller (no groups) sees
    the name or alias as written."""
    close = [(name, keys) for name, keys in index.near(question, limit=4 * limit, taken=taken)
             if not set(keys) & set(linked)]
    if not close:
        return []
    seen = {k for e in store.neighbors([k for _, keys in close for k in keys], groups) for k in (e.head_key, e.tail_key)}
    out: list[tuple[str, list[NodeKey]]] = []
    for name, keys in close:
        readable = [k for k in keys if k in seen]
        if readable:
            shown = index.spelled[name] if groups is None else readable[0][1]
            if all(shown != s for s, _ in out):
                out.append((shown, readable))
    return out[:limit]


def _as_written(question: str) -> str:
    """The question as the user wrote it, where folding it character by character gives the folded
    question (the messages quote "Zhang Wei", not "zhang wei"; spans are positions in the folded
    question), else the folded question: a character that folds to two (ß, ﬁ) shifts them."""
    folded = fold(question)
    return question if all(len(fold(ch)) == 1 for ch in question) and len(folded) == len(question) else folded


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _arrowed(path: Path) -> str:
    """``A -TREATS-> B <-INHIBITS- C``: arrows in each fact's own direction."""
    nodes = path.nodes()
    out = [nodes[0][1]]
    for edge, node in zip(path.edges, nodes[1:]):
        out.append(f"-{edge.relation}-> {node[1]}" if edge.tail_key == node else f"<-{edge.relation}- {node[1]}")
    return " ".join(out)


__all__ = ["GraphAnswer", "GraphIndex", "LABEL_TYPE", "Path", "ask", "asked_relations", "fact_text", "find_paths"]
