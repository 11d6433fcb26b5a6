"""Cited answers: generated (the model cites chunk ids, every sentence is checked), extracted
(the best-supported source sentences, quoted), or "I don't know" — decided from the evidence.

The steps, for a question and the chunks retrieved for it:

1. **Candidates** (:func:`rank_sentences`): every sentence of the retrieved chunks is scored for
   how well it answers the question — the share of the question's content it contains (with
   the sentence before it, for "it"/"he"), whether it gives what is asked (a number for "how
   many", a date for "when"), that it is not a restatement of the question, and the chunk's
   retrieval rank. When the question and a chunk are in different languages (an English
   question over Chinese documents), words cannot be compared and the multilingual embedder's
   similarity between the question and each sentence is the score.
2. **Answerable?** (:func:`answerable`): the best candidate must reach :data:`MIN_FOCUS` (or
   :data:`MIN_SIMILARITY` across languages, when no sentence in the question's own language
   nearly answers). Otherwise the answer is "I don't know" and no model is called, whatever the
   mode. A document's title line is never a candidate.
3. **Modes**: ``extract`` quotes the best candidate (and the next sentence when the best one does
   not give what is asked), marked as a quotation, cited. ``generate`` asks the model to answer
   citing chunk ids; :func:`verify` keeps only sentences that
   :func:`lingxi.knowledge.support.check` finds supported by a cited chunk (an uncited sentence
   is attributed to the chunk that supports it, if one does) and answers "I don't know" when
   none is. ``auto`` (the default) extracts when the model is too small to be trusted
   (under :data:`TRUSTED_PARAMS` parameters, such as the bundled SmolLM2-135M), and otherwise
   generates and falls back to the quotation when the generated answer fails the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lingxi.knowledge.support import (ZH_NUMERALS, adds_to, answers_question, asked_for, check, content_units,
                                     counts_topic, dates_topic, focus, focus_beyond, repeats_numbers, topics, yes_no)
from lingxi.knowledge.tree import introduces_list, marker, opens_clause
from lingxi.knowledge.types import Answer, Citation, Hit
from lingxi.text import language_of, split_sentences

NO_ANSWER = {
    "zh": "根据现有文档无法回答这个问题。",
    "en": "I don't know: the documents do not say.",
}
#: How a quotation is introduced (the answer is the documents' own words, not the model's).
QUOTED = {"zh": "文档原文：「{text}」", "en": "The documents say: “{text}”"}

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

MODES = ("auto", "generate", "extract")
#: Sentences (best by question focus) that get the finer checks.
SHORTLIST = 8
#: Models with fewer parameters than this are not asked to write answers in ``auto`` mode: at
#: 135M (the bundled SmolLM2) generated answers are mostly loops, echoes or invented text.
TRUSTED_PARAMS = 1_000_000_000
#: Share of the question's content the best source sentence must contain to answer at all
#: (calibrated on every 10th CMRC question and the unanswerable questions: 0.5 answered 92 % but
#: refused only 72 % of the unanswerable ones; 0.7 answered 63 % and refused all of them).
MIN_FOCUS = 0.7
#: The same share for a yes-or-no question, in the sentence itself (with an FAQ heading and the
#: title): a yes or no turns on each word. "Is reading a field of a union safe?" had been answered
#: by "writes to union fields are safe" (3 of 4 words). Set by looking at that question and two
#: Civil Code ones of the navigation benchmark: a right answer holding 6 of 7 words is kept, a
#: wrong one holding 5 of 7 is not (all words would lose the right one: 太高 / 过分高于).
YES_NO_FOCUS = 0.8
#: Weight of the sentence's own share of the question's content in its evidence (the rest: with
#: the sentence before it, the chunk's first sentence and its title).
OWN_WEIGHT = 0.5
#: Question-sentence similarity (multilingual embedder) needed across languages, and by how much
#: the best sentence must lead the runner-up (e5-small's cosines are compressed into ~0.7-0.85).
MIN_SIMILARITY = 0.80
MIN_LEAD = 0.02
#: A sentence in the question's own language that gives what is asked and holds this share of
#: its content nearly answers it; then no other-language sentence answers on its cosine, which
#: is compressed and favours the question's language (README example: "How much can I claim for
#: a hotel per night?" had quoted the Chinese travel-expense rule at 0.807 over the English
#: hotel sentence holding 2 of its 3 content words).
NEAR_FOCUS = 0.5

#: A citation mark: one or more ids in brackets. Chunk ids have four parts; document-tree node ids
#: (tree navigation) one per level, so up to ten.
_CITE = re.compile(r"\[\s*(\d+(?:\.\d+){1,9}(?:\s*[,，;；]\s*\d+(?:\.\d+){1,9})*)\s*\]")

Similarity = Callable[[str, Sequence[str]], list[float]]


def language(text: str) -> str:
    return "zh" if language_of(text) == "zh" else "en"


def build_prompt(question: str, hits: list[Hit]) -> list[dict]:
    lang = language(question)
    example = hits[0].id if hits else "1.0.1.0"
    system = SYSTEM_PROMPT[lang].format(example=example, no=NO_ANSWER[lang])
    sources = "\n\n".join(f"[{h.id}] {h.title}\n{h.text}" for h in hits)
    label = ("资料" if lang == "zh" else "Sources") + ":\n" + sources
    ask = ("问题" if lang == "zh" else "Question") + f": {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{label}\n\n{ask}"}]


def no_answer(question: str, hits: list[Hit] | None = None, dropped: list[str] | None = None) -> Answer:
    """The "I don't know" answer: ``supported`` false, ``mode`` ``"unknown"``, no citations."""
    return Answer(NO_ANSWER[language(question)], [], False, dropped or [], hits or [], mode="unknown")


def citation(h: Hit) -> Citation:
    """How an answer cites the hit: its id, source, text and score."""
    return Citation(h.id, h.source, h.text, round(h.score, 6))


# ------------------------------------------------------------------ candidates


@dataclass
class Candidate:
    """A source sentence scored as an answer to the question."""

    score: float
    """What ranks candidates: ``evidence`` plus a bonus when it gives what is asked, minus a little per retrieval rank."""
    evidence: float
    """Share of the question's content in the sentence (and the one before it), or across
    languages the embedder's similarity."""
    sentence: str
    hit: Hit
    index: int
    """Position of the sentence in its chunk."""
    gives: bool
    """It gives what the question asks for (a number for "how many"...)."""
    cross: bool = False
    """It is in another language than the question (``evidence`` is then a cosine)."""


def rank_sentences(question: str, hits: Sequence[Hit], similarity: Similarity | None = None) -> list[Candidate]:
    """Every sentence of ``hits`` scored as an answer to ``question``, best first (see the module docstring)."""
    q_lang = language_of(question)
    scored: list[tuple[float, float, str, Hit, int, bool]] = []
    for rank, h in enumerate(hits):
        lined = _lines_sentences(h.text)
        sentences = [s for s, _ in lined]
        cross = similarity is not None and language_of(h.text) not in (q_lang, "other")
        sims = similarity(question, sentences) if cross else None
        title = h.title.strip().casefold()
        for i, s in enumerate(sentences):
            if title and s.strip().casefold() == title:
                continue  # the document's title line names what it is about and answers nothing
            if _NOT_A_STATEMENT.match(s):
                continue  # a rule's tag ([items .static .mut .intro]) or a pointer elsewhere ("See …")
            if sims is not None:
                evidence = sims[i]
            else:
                # the paragraph's subject is often named only in its first sentence, its section's
                # heading (an FAQ's question) or the title; a chunk that packs several paragraphs
                # (articles of a code) lends none of another's
                first = lined[i][1]
                around = sentences[max(first, i - 1): i + 1] + [sentences[first]] + h.headings[-1:]
                context = focus(question, " ".join(around) + " " + h.title)
                evidence = OWN_WEIGHT * focus(question, s) + (1 - OWN_WEIGHT) * context
            scored.append((evidence - 0.01 * rank, evidence, s, h, i, cross))
    # The finer checks (what is asked, a restatement) read signatures: only for the front runners.
    scored.sort(key=lambda x: x[0], reverse=True)
    out: list[Candidate] = []
    about = topics(question)
    for base, evidence, s, h, i, cross in scored[:SHORTLIST]:
        if not cross and not adds_to(question, s):
            continue  # the question quoted back (an FAQ's heading) answers nothing
        gives = answers_question(question, s)
        # with one topic ("什么是X"), a sentence about it (X是...) before one that mentions it
        subject = 0.05 if len(about) == 1 and not cross and _about_in(about[0], s, h) else 0.0
        # a sentence that restates the question's own number sets out the case asked about
        case = 0.03 if not cross and repeats_numbers(question, s) else 0.0
        out.append(Candidate(base + (0.1 if gives else 0.0) + subject + case, evidence, s, h, i, gives, cross))
    # a sentence that does not give what is asked cannot answer, so it does not stand before one
    # that does and holds enough of the question (保修期内非人为损坏免费维修 before 整机保修一年)
    # on a tie, the sentence that echoes more of the question's own wording (不超过 is no topic of
    # 违约金总额不超过多少？, but the sentence that says it is the one asked about)
    asked = _surface(question)
    out.sort(key=lambda c: (not c.cross and c.gives and c.evidence >= MIN_FOCUS, c.score,
                            len(asked & _surface(c.sentence))), reverse=True)
    return out


_SURFACE = re.compile(r"[\u3400-\u9fff]{2,}|[a-z0-9]+")


def _surface(text: str) -> set[str]:
    """A text's Chinese character pairs and Latin words, stop words and all: how much of the
    question's own wording a sentence echoes breaks a tie between equally scored candidates."""
    out: set[str] = set()
    for run in _SURFACE.findall(text.lower()):
        out.update([run[i:i + 2] for i in range(len(run) - 1)] if run[0] >= "\u3400" else [run])
    return out


_OPEN, _CLOSE = "《「『“（(", "》」』”）)"
#: Sentences that state nothing: a bracketed tag on its own (a specification's rule anchor, a
#: footnote mark) and a pointer to another place ("See the call traits chapter for …", 详见第五章).
_NOT_A_STATEMENT = re.compile(r"^\s*(?:\[[^\]]*\]\s*$|(?:see(?: also)?|refer to)\s|(?:参见|详见|另见))", re.I)
_SEMICOLONS = ("；", ";")
#: A sentence whose reason is the one before it: quoted alone, it answers "why" with "for this reason".
_BACK_TO_REASON = re.compile(r"^\W*(?:for (?:this|these|that) reasons?|this is why|that is why|that's why|therefore|"
                             r"hence|thus|as a result|because of (?:this|that)|consequently)\b|"
                             r"^\W*(?:因此|所以|为此|故此|由此|基于此)", re.I)
_FULL_STOPS = (".", "!", "?", "。", "！", "？")
_SENTENCE_END = _FULL_STOPS + ("”", "\"", "」")
_PUNCTUATION = _FULL_STOPS + (";", "；", ",", "，", ":", "：")


def _list_after(lined: list[tuple[str, int]], end: int, most: int = 12) -> list[str]:
    """The list a sentence ending in a colon introduces: the lines after sentence ``end`` that are
    items — numbered ((一), 1.), ending in a semicolon or without a full stop ("an unsafe
    qualifier") — up to the item that ends with one. A new article (第X条), a tag or a plain
    sentence ends it. 有下列情形之一的，婚姻无效： quoted alone answers nothing."""
    items: list[str] = []
    for j in range(end + 1, min(len(lined), end + 1 + most)):
        item, first = lined[j][0].strip(), lined[j][1]
        if first != j or _NOT_A_STATEMENT.match(item) or opens_clause(item):
            break
        stops = item.endswith(_FULL_STOPS)
        if stops and marker(item) is None and items:
            break  # a plain sentence after the items
        items.append(item)
        if stops:
            break
    return items


def _lines_sentences(text: str) -> list[tuple[str, int]]:
    """Sentences of a chunk, each with the index of the first sentence of its line (paragraph).
    A line without a full stop (a title, a list item) is one on its own; a full stop inside
    brackets or quotes (《卡拉OK.LIVE！‧台北‧我》) does not end the sentence."""
    out: list[tuple[str, int]] = []
    for line in text.splitlines():
        open_, first = False, len(out)
        for s in split_sentences(line):
            if open_:
                out[-1] = (out[-1][0] + s, first)
            else:
                out.append((s, first))
            piece = out[-1][0]
            open_ = sum(piece.count(c) for c in _OPEN) > sum(piece.count(c) for c in _CLOSE)
    return out or [(text, 0)]


#: A clause asked for by its number ("第十条是怎么规定的？", "What does Article 5 say?").
_CLAUSE_ASKED = re.compile(
    rf"(第[{ZH_NUMERALS}]+条(?:之[{ZH_NUMERALS}]+)?)\s*(?:是|的)?\s*(?:怎么|如何|怎样)?\s*(?:规定|说|写|讲|内容)|"
    r"\bwhat\s+(?:does|do)\s+((?:article|section|clause|rule|§)\s*\d+(?:\.\d+)*)\s+(?:say|state|provide|require)",
    re.I)


def quote_clause(question: str, hits: Sequence[Hit]) -> Answer | None:
    """For a question that asks what a clause says by its number, the clause quoted whole — its
    line and the items after it, up to the next clause — from the first hit that holds it, cited;
    None for any other question or when no hit holds the clause. Every sentence of it answers,
    so no sentence is picked: 第十条是怎么规定的？ had been refused for want of a topic."""
    m = _CLAUSE_ASKED.search(question)
    if m is None:
        return None
    wanted = " ".join((m.group(1) or m.group(2)).casefold().split())
    for h in hits:
        lines = [line.strip() for line in h.text.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            head = " ".join(line.casefold().split())
            if not head.startswith(wanted) or re.match(r"[\d.之]", head[len(wanted):len(wanted) + 1]):
                continue  # Article 5 is not Article 50, nor 第十条 第十条之一
            quote = [line]
            for more in lines[i + 1:i + 13]:
                if opens_clause(more) or more.startswith("#"):
                    break
                quote.append(more)
            lang = language(" ".join(quote))
            body = QUOTED[lang].format(text="\n".join(quote))
            return Answer(f"{body} [{h.id}]", [citation(h)], True, [], list(hits), mode="extracted")
    return None


def answerable(question: str, candidates: Sequence[Candidate]) -> bool:
    """Whether the best candidate is good enough evidence to answer from: it gives what is asked
    and reaches :data:`MIN_FOCUS` (across languages: :data:`MIN_SIMILARITY`, leading the next
    other sentence by :data:`MIN_LEAD`, and no sentence in the question's language nearly
    answering, :data:`NEAR_FOCUS`)."""
    if not candidates or not candidates[0].gives:
        return False
    best = candidates[0]
    if language_of(best.hit.text) in (language_of(question), "other"):
        about = topics(question)
        if not about:
            return False  # nothing to look for ("“六片”指的是什么？"): any sentence would do
        if len(about) == 1 and not (_about_in(about[0], best.sentence, best.hit)
                                    or counts_topic(question, about[0], best.sentence)
                                    or dates_topic(question, about[0], best.sentence)
                                    or _sole_named_answer(question, candidates)):
            return False  # one topic, many sentences mention it: only one about it (or counting it) answers
        if not _asks_about(question, best):
            return False
        if yes_no(question) and focus(question, f"{best.sentence} {_faq_question(best.hit)} {best.hit.title}") < YES_NO_FOCUS:
            return False  # "writes to union fields are safe" (3 of 4) is no answer on reading them
        return best.evidence >= MIN_FOCUS
    if any(not c.cross and c.gives and c.evidence >= NEAR_FOCUS for c in candidates):
        return False  # the question's own language nearly answers: a cosine cannot overrule it
    runner_up = max((c.evidence for c in candidates[1:] if c.sentence != best.sentence), default=0.0)
    return best.evidence >= MIN_SIMILARITY and best.evidence - runner_up >= MIN_LEAD


def _sole_named_answer(question: str, candidates: Sequence[Candidate]) -> bool:
    """The question asks who, the best candidate names someone or a post, and no other sentence
    retrieved holds the question's topic: 谁负责解释这个办法？ is answered by 本办法由财务部负责解释,
    the only sentence that mentions 解释, though it is not *about* 解释 as the one-topic rule
    otherwise asks. Not for how many or when: 年假申请需提前三天提交 is the only sentence on 年假
    and still does not say how long the leave is."""
    if "person" not in asked_for(question):
        return False
    best = candidates[0]
    return not any(c.sentence != best.sentence and c.evidence >= MIN_FOCUS for c in candidates[1:])


def _asks_about(question: str, best: Candidate) -> bool:
    """The sentence says something about what the question asks of its subject, not only about
    the subject: of the question's content outside the source's title (the subject a whole
    article is about), some must be in the sentence. "How tall is the Petrobras Headquarters
    building?" is not answered by "Petrobras Headquarters is a brutalist office building ...",
    which names the subject and a number but says nothing about height. Under an FAQ's question
    (:func:`_faq_question`) the sentence answers that question, and says what it asks."""
    return not best.hit.title.strip() or focus_beyond(question, best.sentence + " " + _faq_question(best.hit),
                                                      best.hit.title)


def _faq_question(hit: Hit) -> str:
    """The heading of the hit's section when it is a question, as an FAQ's headings are ("" otherwise)."""
    heading = hit.headings[-1].strip() if hit.headings else ""
    return heading if heading.endswith(("?", "？")) else ""


def _about_in(topic: str, sentence: str, hit: Hit) -> bool:
    """``sentence`` is about ``topic`` (:func:`_about`), or its section is: the section's heading is
    a question about the topic, as an FAQ's is (保修期多长？ over 整机保修一年，电池保修六个月)."""
    faq = _faq_question(hit)
    return _about(topic, sentence) or bool(faq and _about(topic, faq))


def _about(topic: str, sentence: str) -> bool:
    """``sentence`` is about ``topic``: it starts with it or says what it is (X是/为/指, "X is")."""
    low = sentence.lower()
    units = content_units(low)
    # jieba's search mode gives a compound's parts before it (结婚, 年龄, 结婚年龄): the compound
    # still stands first when it is the first whole word
    whole = [u for u in units[:6] if not any(u != v and u in v for v in units[:6])]
    if topic in units[:2] or whole[:1] == [topic]:
        return True
    t = re.escape(topic)
    return bool(re.search(t + r"(?:[（(][^）)]*[）)])?\s*[，,]?\s*(?:是|为|指|即|乃)", low) or
                re.search(r"\b" + t + r"\w*\b(?:\s*\([^)]*\))?\s+(?:is|was|are|were|refers)\b", low))


def extract(question: str, candidates: Sequence[Candidate], hits: list[Hit] | None = None) -> Answer:
    """Quote the best candidate (plus the next sentence of its chunk when the best one does not
    give what is asked and the next one does, and the sentence before it when a "why" is answered
    by "For this reason, …", and the list a sentence ending in a colon introduces), cited and
    marked as a quotation. A clause that a
    semicolon ends or follows is quoted with the others of its sentence in the same paragraph:
    因质量问题退货的，运费由本公司承担；无理由退货的，运费由顾客承担。 states two cases, and quoting
    one would leave the other out."""
    if not candidates:
        return no_answer(question, hits)
    best = candidates[0]
    lined = _lines_sentences(best.hit.text)
    sentences = [s for s, _ in lined]
    start = end = best.index
    while start > lined[best.index][1] and sentences[start - 1].rstrip().endswith(_SEMICOLONS):
        start -= 1
    while end + 1 < len(lined) and lined[end + 1][1] == lined[best.index][1] and sentences[end].rstrip().endswith(_SEMICOLONS):
        end += 1
    quote = sentences[start:end + 1]
    if not best.gives and end + 1 < len(sentences) and answers_question(question, sentences[end + 1]):
        end += 1
        quote.append(sentences[end])
    items = _list_after(lined, end) if introduces_list(quote[-1]) else []
    if "reason" in asked_for(question) and _BACK_TO_REASON.match(quote[0]):
        # "Why …?" answered by "For this reason, …": the reason is the sentence before it (a
        # section's rule tag or heading in between is no sentence)
        before = next((t for t in reversed(sentences[max(0, start - 3):start]) if t.rstrip().endswith(_SENTENCE_END)), None)
        if before is not None:
            quote.insert(0, before)
    lang = language(" ".join(quote))  # the quotation's own: a chunk may hold an English heading over Chinese text
    text = ("" if lang == "zh" else " ").join(q.strip() for q in quote)
    for item in items:  # an item without punctuation of its own goes on a line of its own
        text += ("\n" if not item.endswith(_PUNCTUATION) else "" if lang == "zh" else " ") + item
    body = QUOTED[lang].format(text=text)
    return Answer(f"{body} [{best.hit.id}]", [citation(best.hit)], True, [], list(hits or []), mode="extracted")


# ------------------------------------------------------------------ generated answers


def verify(question: str, text: str, hits: list[Hit], similarity: Callable[[str, str], float] | None = None) -> Answer:
    """Keep the sentences of the model's ``text`` that a retrieved chunk supports (see the module docstring).

    Returns a ``generated`` answer, or "I don't know" (``unknown``, with the failed sentences in
    ``dropped``) when no sentence survives.
    """
    lang = language(question)
    by_id = {h.id: h for h in hits}
    kept: list[str] = []
    dropped: list[str] = []
    cited: dict[str, Citation] = {}
    refusal = NO_ANSWER[lang].rstrip("。.")
    seen: list[str] = []
    for sentence in split_sentences(text.strip()):
        ids = [i.strip() for m in _CITE.finditer(sentence) for i in re.split(r"[,，;；]", m.group(1))]
        plain = re.sub(r"\s+([。！？；，.!?;,])", r"\1", _CITE.sub("", sentence)).strip()
        if not plain or plain in "。.!！?？":
            continue
        if refusal in plain or plain.lower().startswith(("i don't know", "i do not know")):
            continue  # the model's own refusal: decided below from what is left
        key = re.sub(r"\W+", "", plain.lower())
        if any(s.startswith(key) or key.startswith(s) for s in seen):
            dropped.append(plain)  # small models repeat themselves
            continue
        seen.append(key)
        good = [i for i in dict.fromkeys(ids) if i in by_id and check(question, plain, by_id[i].text,
                                                                        similarity=similarity).supported]
        if not good:
            backing = [h for h in hits if h.id not in ids and check(question, plain, h.text, similarity=similarity).supported]
            good = [backing[0].id] if backing else []
        if not good:
            dropped.append(plain)
            continue
        for i in good:
            cited.setdefault(i, citation(by_id[i]))
        kept.append(_with_citations(plain, good))
    if not kept:
        return no_answer(question, hits, dropped)
    joiner = "" if lang == "zh" else " "
    return Answer(joiner.join(kept), list(cited.values()), True, dropped, hits, mode="generated")


def _with_citations(sentence: str, ids: list[str]) -> str:
    """``sentence [id]。`` with the marks before the closing punctuation."""
    sentence = re.sub(r"\s+([。！？；，.!?;,])", r"\1", sentence)
    m = re.match(r"(.*?)([。！？；.!?;]*)$", sentence, re.S)
    body, end = (m.group(1), m.group(2)) if m else (sentence, "")
    return body.rstrip() + " " + " ".join(f"[{i}]" for i in ids) + end


def too_small(engine: object) -> bool:
    """Whether ``engine``'s model has fewer than :data:`TRUSTED_PARAMS` parameters (as far as it says)."""
    try:
        n = engine.info.details.get("n_params")  # type: ignore[attr-defined]
    except Exception:  # an engine that cannot describe itself is not judged by size
        return False
    return isinstance(n, int | float) and 0 < n < TRUSTED_PARAMS
