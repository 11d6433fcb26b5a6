"""``--mode auto``: choose the retriever for one question, by rules, and say why.

The rules, in order (the first that holds decides):

1. **graph** — the knowledge base has a graph (the one with its name) and the question names at
   least one of its entities (:meth:`lingxi.graph.answer.GraphIndex.link`) and either speaks of a
   relation those entities have in edges the caller may read ("treats", "代谢", a label's words;
   a word inside a name does not count), or is phrased as a chain ("the drug that treats …",
   "…的…的…", "whose …"), or names two entities with facts the caller may read (华法林和氟康唑有
   相互作用吗？: how they meet is the graph's to say).
2. **navigate** — a ``navigate`` retriever is registered and the knowledge base holds a long
   structured document: one with at least ``LONG_SECTIONS`` sections (headings or numbered
   clauses in its document tree, as a PDF or a DOCX typed without heading styles has them too)
   and ``LONG_CHUNKS`` chunks.
3. **hybrid** — everything else.

The rules are deliberately plain so a user can predict them; feedback-trained choice can replace
:func:`choose` later without changing its callers. What this module does not do: search.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lingxi.errors import UsageError
from lingxi.graph.answer import asked_relations

if TYPE_CHECKING:
    from lingxi.knowledge.kb import KnowledgeBase

#: A document is long and structured from this many sections and chunks on (a 50-page report
#: or a code of law easily has both; a FAQ or a memo has neither).
LONG_SECTIONS = 20
LONG_CHUNKS = 40

#: Chain phrasing: a relative clause or a possessive chain joins two facts.
_CHAIN = re.compile(r"\b(that|which|who|whose)\s+\w+|\bof\s+the\s+\w+\s+(that|which|who)\b|的.{1,12}的|所.{1,6}的")

log = logging.getLogger(__name__)

__all__ = ["LONG_CHUNKS", "LONG_SECTIONS", "Choice", "choose"]


@dataclass(frozen=True)
class Choice:
    """The retriever chosen for a question and why (shown to the user)."""

    mode: str
    reason: str


def choose(kb: KnowledgeBase, question: str, groups: list[str] | None = None) -> Choice:
    """The retriever ``auto`` uses for ``question`` in ``kb`` (see the module's rules)."""
    try:
        chosen = _graph_choice(kb, question, groups)
    except UsageError as exc:  # the graph is being written now: answer from the text meanwhile
        log.warning("auto retrieval: %s", exc)
        chosen = None
    if chosen is not None:
        return chosen
    doc = kb.longest_structured_document()
    if doc is not None and doc[1] >= LONG_SECTIONS and doc[2] >= LONG_CHUNKS:
        return Choice("navigate", f"{doc[0]} is a long structured document ({doc[1]} sections, {doc[2]} chunks)")
    return Choice("hybrid", "no graph entity with a relation asked, no long structured document")


def _graph_choice(kb: KnowledgeBase, question: str, groups: list[str] | None) -> Choice | None:
    """``graph`` when the question names an entity of the graph and asks one of its relations."""
    with kb.graph() as graph:
        if graph is None:
            return None
        store, index = graph
        linked = index.link(question)
        if not linked:
            return None
        edges = store.neighbors(linked, groups)
        relations = {e.relation for e in edges}
        # the reason is shown: name only the nodes with a fact the caller may read (an alias the
        # caller typed must not reveal the name of a node that only other groups' facts hold)
        readable = {k for e in edges for k in (e.head_key, e.tail_key)}
        names = ", ".join(key[1] for key in linked if key in readable)
        asked = sorted(asked_relations(index, question, relations))
        if asked:
            return Choice("graph", f"names {names} and asks about {', '.join(asked)}")
        if _CHAIN.search(question.casefold()) and relations:
            return Choice("graph", f"names {names} and asks along a chain of facts")
        if len([key for key in linked if key in readable]) >= 2:
            return Choice("graph", f"names {names}: how they meet")
    return None
