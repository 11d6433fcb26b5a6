"""Structure-aware chunking: headings open sections, paragraphs are packed up to a token budget,
long paragraphs are split on sentence boundaries (Chinese 。！？； first-class) with overlap.
A clause is not cut across chunks when it fits in one: when a paragraph that continues a clause
(第X条, Article N) or a list (its items after a paragraph ending in a colon) does not fit, the
clause or the list moves to the next chunk with it (第五条 …标准如下：（一）… had been cut after
（一）, and 第一百八十一条's second paragraph began a chunk without the article's number).

Every chunk gets a stable hierarchical id ``document.section.paragraph.piece``: section 0 is
the text before the first heading, paragraphs count from 1 inside their section, and ``piece``
numbers the parts of a paragraph too long for one chunk. A chunk that packs several short
paragraphs takes the number of its first one. Editing one section leaves the ids of the
others unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from lingxi.engines.base import estimate_tokens
from lingxi.knowledge.tree import BULLET, introduces_list, marker, opens_clause
from lingxi.knowledge.types import Chunk, Document
from lingxi.text import split_sentences


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_document(
    doc: Document,
    doc_no: int,
    *,
    chunk_tokens: int = 256,
    overlap: int = 32,
    count: Callable[[str], int] = estimate_tokens,
    whole: bool = False,
) -> list[Chunk]:
    """Split ``doc`` into chunks of at most ``chunk_tokens`` (estimated) tokens.

    Args:
        whole: one chunk for the whole document (retrieval evaluation indexes documents whole).
    """
    if whole:
        text = "\n\n".join(b.text for b in doc.blocks)
        return [_make(f"{doc_no}.0.1.0", text, doc.title, [], doc.blocks[0].page if doc.blocks else None)]
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []
    section, para = 0, 0
    pending: list[tuple[str, int, int]] = []  # (text, paragraph number, tokens)
    pending_page: int | None = None

    def flush(keep: int | None = None) -> None:
        """Make a chunk of what is pending (but the paragraphs from ``keep`` on, which stay pending)."""
        nonlocal pending
        done, pending = (pending[:keep], pending[keep:]) if keep else (pending, [])
        if done:
            chunks.append(_make(f"{doc_no}.{section}.{done[0][1]}.0", "\n\n".join(t for t, _, _ in done), doc.title,
                                [h for _, h in headings], pending_page))

    for block in doc.blocks:
        if block.level > 0:
            flush()
            headings = [h for h in headings if h[0] < block.level] + [(block.level, block.text)]
            section, para = section + 1, 0
            continue
        para += 1
        n = count(block.text)
        if n > chunk_tokens:
            flush()
            for piece, text in enumerate(_split_long(block.text, chunk_tokens, overlap, count)):
                chunks.append(_make(f"{doc_no}.{section}.{para}.{piece}", text, doc.title,
                                    [h for _, h in headings], block.page))
            continue
        if pending and block.page != pending_page:
            flush()  # a chunk never spans pages, so its page number is exact
        elif pending and sum(t for _, _, t in pending) + n > chunk_tokens:
            start = _open_unit(pending, block.text)
            fits = start is not None and sum(t for _, _, t in pending[start:]) + n <= chunk_tokens
            flush(start if fits else None)
        if not pending:
            pending_page = block.page
        pending.append((block.text, para, n))
    flush()
    return chunks


def _item(text: str) -> bool:
    numbered = marker(text)
    return bool(numbered and numbered[0] >= 6 or BULLET.match(text))


def _open_unit(pending: list[tuple[str, int, int]], following: str) -> int | None:
    """Where the unit that ``following`` continues begins in ``pending``: the list it is an item
    of (from its introduction, a paragraph ending in a colon), else the clause it belongs to
    (from the paragraph that opens it: 第五条, Article 5); None when ``following`` opens a clause
    itself, when there is no such unit, or when it begins the chunk (moving it gains nothing)."""
    if opens_clause(following):
        return None
    if _item(following):
        i = len(pending) - 1
        while i >= 0 and _item(pending[i][0]):
            i -= 1
        if i > 0 and introduces_list(pending[i][0]):
            return i
    i = next((i for i in range(len(pending) - 1, -1, -1) if opens_clause(pending[i][0])), None)
    return i if i else None


def _make(cid: str, text: str, title: str, headings: list[str], page: int | None) -> Chunk:
    context = " > ".join([t for t in [title, *headings] if t][:4])
    chunk = Chunk(id=cid, text=text, context=context, headings=headings, page=page)
    chunk.hash = content_hash(chunk.search_text)
    return chunk


def _split_long(text: str, budget: int, overlap: int, count: Callable[[str], int]) -> list[str]:
    """Pack sentences into pieces of at most ``budget`` tokens; consecutive pieces share up to
    ``overlap`` tokens of whole sentences. A sentence longer than the budget is cut by length."""
    sentences: list[str] = []
    for s in split_sentences(text):
        sentences.extend(_hard_split(s, budget, count) if count(s) > budget else [s])
    pieces: list[str] = []
    current: list[tuple[str, int]] = []
    size = 0
    for s in sentences:
        n = count(s)
        if current and size + n > budget:
            pieces.append(_join([t for t, _ in current]))
            carry: list[tuple[str, int]] = []
            kept = 0
            for t, m in reversed(current):
                if kept + m > overlap or kept + m + n > budget:
                    break
                carry.insert(0, (t, m))
                kept += m
            current, size = carry, kept
        current.append((s, n))
        size += n
    if current:
        pieces.append(_join([t for t, _ in current]))
    return pieces


def _join(sentences: list[str]) -> str:
    out = ""
    for s in sentences:
        # No space between Chinese sentences; one space between Western ones.
        out += s if not out or out[-1] in "。！？；”」』）" else " " + s
    return out


def _hard_split(sentence: str, budget: int, count: Callable[[str], int]) -> list[str]:
    spaced = " " in sentence
    words = sentence.split(" ") if spaced else list(sentence)
    sep = " " if spaced else ""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for w in words:
        n = max(1, count(w))
        if cur and size + n > budget:
            out.append(sep.join(cur))
            cur, size = [], 0
        cur.append(w)
        size += n
    if cur:
        out.append(sep.join(cur))
    return out
