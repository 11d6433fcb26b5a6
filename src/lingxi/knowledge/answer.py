"""Cited answers: the prompt that asks a model to cite chunk ids, and the verifier that checks
every citation against what was retrieved.

Verification, per sentence of the model's answer:
1. every cited id must be one of the chunks retrieved for this question (an id the model made
   up, or one from another document, is removed);
2. a cited chunk must support the sentence: enough of the sentence's search tokens (jieba words
   for Chinese, stems for English) occur in the chunk, every number the sentence states occurs
   in the chunk (digits, number words and Chinese numerals read as values), and the sentence
   negates exactly as often as the chunk sentence closest to it ("is not required" is not
   backed by "is required");
3. a sentence with no valid citation is attributed to the retrieved chunk that supports it
   best, if one does; otherwise it is dropped as unsupported.
If nothing is left and retrieval found relevant text, the answer falls back to the best
matching sentences of the sources (extractive), so a small model never hides what the documents
say; if retrieval found nothing relevant, the answer says so instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lingxi.text import cjk_ratio, split_sentences, tokenize
from lingxi.knowledge.types import Answer, Citation, Hit
from lingxi.meaning import signature

NO_ANSWER = {
    "zh": "根据现有文档无法回答这个问题。",
    "en": "I don't know: the documents do not say.",
}

SYSTEM_PROMPT = {
    "en": (
        "You answer questions using ONLY the sources below. After every sentence, cite the id of the "
        "source that supports it in square brackets, for example [{example}]. If the sources do not "
        "contain the answer, reply exactly: {no}"
    ),
    "zh": (
        "只根据下面的资料回答问题。每句话后面用方括号注明支持它的资料编号，例如 [{example}]。"
        "如果资料中没有答案，就只回答：{no}"
    ),
}

_CITE = re.compile(r"\[\s*(\d+(?:\.\d+){1,4}(?:\s*[,，;；]\s*\d+(?:\.\d+){1,4})*)\s*\]")

#: Share of a sentence's tokens that must occur in a chunk for the chunk to support it.
SUPPORT = 0.5
#: Share of the question's tokens a chunk must contain to count as relevant at all.
RELEVANT = 0.3


def language(text: str) -> str:
    return "zh" if cjk_ratio(text) >= 0.2 else "en"


def coverage(tokens: Sequence[str], chunk_tokens: set[str]) -> float:
    toks = [t for t in tokens if len(t) > 1 or not t.isascii()]
    if not toks:
        return 0.0
    return sum(1 for t in toks if t in chunk_tokens) / len(toks)


def contradiction(claim: str, source: str) -> str | None:
    """Why ``source`` does not back ``claim`` although they share words: ``"number"`` (the claim
    states a number the source does not) or ``"negation"`` (the claim and the source sentence
    closest to it do not negate alike); None when neither is seen."""
    said = signature(claim)
    if said.numbers and not said.numbers <= signature(source).numbers:
        return "number"
    toks = tokenize(claim)
    closest = max(split_sentences(source), key=lambda s: coverage(toks, set(tokenize(s))), default=source)
    if signature(closest).negations != said.negations:
        return "negation"
    return None


def relevant_hits(question: str, hits: list[Hit]) -> list[Hit]:
    """Hits that share enough words with the question to be worth answering from."""
    q = tokenize(question)
    return [h for h in hits if coverage(q, set(tokenize(f"{h.title}\n{h.text}"))) >= RELEVANT]


def build_prompt(question: str, hits: list[Hit]) -> list[dict]:
    lang = language(question)
    example = hits[0].id if hits else "1.0.1.0"
    system = SYSTEM_PROMPT[lang].format(example=example, no=NO_ANSWER[lang])
    sources = "\n\n".join(f"[{h.id}] {h.title}\n{h.text}" for h in hits)
    label = ("资料" if lang == "zh" else "Sources") + ":\n" + sources
    ask = ("问题" if lang == "zh" else "Question") + f": {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{label}\n\n{ask}"}]


def no_answer(question: str, hits: list[Hit] | None = None) -> Answer:
    return Answer(NO_ANSWER[language(question)], [], False, hits=hits or [])


def verify(question: str, text: str, hits: list[Hit]) -> Answer:
    """Check the model's ``text`` against the retrieved ``hits`` (see the module docstring)."""
    lang = language(question)
    by_id = {h.id: h for h in hits}
    chunk_tokens = {h.id: set(tokenize(f"{h.title}\n{h.text}")) for h in hits}
    kept: list[str] = []
    dropped: list[str] = []
    cited: dict[str, Citation] = {}
    refusal = NO_ANSWER[lang].rstrip("。.")
    seen_keys: list[str] = []
    for sentence in split_sentences(text.strip()):
        ids = [i.strip() for m in _CITE.finditer(sentence) for i in re.split(r"[,，;；]", m.group(1))]
        plain = _CITE.sub("", sentence).strip()
        if not plain or plain in "。.!！?？":
            continue
        if refusal in plain or plain.lower().startswith(("i don't know", "i do not know")):
            continue  # the model's own refusal: decided below from what is left
        key = re.sub(r"\W+", "", plain.lower())
        if any(seen.startswith(key) for seen in seen_keys):
            continue  # small models repeat themselves; say each thing once
        seen_keys.append(key)
        toks = tokenize(plain)

        def backs(i: str) -> bool:
            return coverage(toks, chunk_tokens[i]) >= SUPPORT and contradiction(plain, by_id[i].text) is None

        good = [i for i in dict.fromkeys(ids) if i in by_id and backs(i)]
        if not good:
            best = max(hits, key=lambda h: coverage(toks, chunk_tokens[h.id]), default=None)
            if best is not None and backs(best.id):
                good = [best.id]
        if not good:
            dropped.append(plain)
            continue
        for i in good:
            h = by_id[i]
            cited.setdefault(i, Citation(i, h.source, h.text, round(h.score, 6)))
        kept.append(_with_citations(plain, good))
    if not kept:
        return extractive(question, hits, dropped)
    joiner = "" if lang == "zh" else " "
    return Answer(joiner.join(kept), list(cited.values()), True, dropped, hits)


def _with_citations(sentence: str, ids: list[str]) -> str:
    """``sentence [id]。`` with the marks before the closing punctuation."""
    sentence = re.sub(r"\s+([。！？；，.!?;,])", r"\1", sentence)
    m = re.match(r"(.*?)([。！？；.!?;]*)$", sentence, re.S)
    body, end = (m.group(1), m.group(2)) if m else (sentence, "")
    return body.rstrip() + " " + " ".join(f"[{i}]" for i in ids) + end


def extractive(question: str, hits: list[Hit], dropped: list[str] | None = None) -> Answer:
    """The source sentences that best match the question, cited; or "don't know" if none do."""
    q = tokenize(question)
    scored = []
    for rank, h in enumerate(hits):
        for s in split_sentences(h.text):
            c = coverage(q, set(tokenize(s)))
            if c > 0:
                scored.append((c, -rank, s, h))
    if not scored:
        return Answer(NO_ANSWER[language(question)], [], False, dropped or [], hits)
    scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
    _, _, sentence, h = scored[0]
    citation = Citation(h.id, h.source, h.text, round(h.score, 6))
    return Answer(_with_citations(sentence, [h.id]), [citation], True, dropped or [], hits)
