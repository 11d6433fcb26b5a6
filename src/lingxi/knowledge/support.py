"""Does a cited text say what an answer sentence says, and does the sentence answer the question?

:func:`check` judges one answer sentence against the text it cites, in four steps; the first
that fails names the verdict:

1. **repetition** — a phrase said three or more times over (small models loop);
2. **coverage** — the sentence's content (English stems, Chinese character pairs; numbers
   aside) must be covered by one *evidence span* of the cited text: one sentence or two
   adjacent ones, not words gathered from all over a long chunk;
3. **contradiction** — against that span, the sentence must state no number, date or named
   entity the span lacks, negate as the span does ("not required" is not backed by "required";
   a leading "No," / "不，" answering a yes/no question is not counted), take no opposite side
   ("female" for "male") and no comparative the span does not use ("higher" for "lower");
4. **answering** — the sentence must add something the question does not already say
   (a restatement such as "The notice period is some number of days" is an *echo*), give
   what the question asks for (a number for "how many"/多少, not a clause's own number; a
   number or date for "when", not a share or a length; a name or a post for "who"), and be
   about the question: enough of the question's content must
   occur in the sentence or its evidence span (*off-topic* otherwise). When the question and
   the span are in different languages, words cannot be compared: the multilingual embedder's
   similarity stands in, if one is given.

Everything is lexical, offline and fast (no model call); the thresholds were calibrated on the
labelled pairs in ``benchmarks/data/answers`` (see :mod:`lingxi.knowledge.answer_eval`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lingxi.meaning import Signature, signature
from lingxi.text import (CJK, has_cjk, jieba_knows, language_of, pos_words, split_sentences, stopwords_en, tokenize,
                         yes_no)

__all__ = ["Verdict", "check", "focus", "topics", "repetitive", "content_units", "answers_question", "adds_to", "counts_topic",
           "COVERAGE", "FOCUS"]

#: Share of a sentence's content units that its evidence span must contain.
COVERAGE = 0.6
#: Share of what the sentence adds to the question (its answer part) that the span must contain.
NEW_COVERAGE = 0.6
#: Share of the question's content units that the sentence (with its evidence span) must contain.
FOCUS = 0.5
#: Cosine similarity (question vs evidence span) that stands in for FOCUS across languages.
CROSS_LINGUAL_SIMILARITY = 0.80

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ZH_NUMERAL_RUN = re.compile(r"[零〇一二两三四五六七八九十百千万亿\d.,%]+")
_PUNCT = re.compile(r"[\s，。！？；：、“”‘’「」『』（）《》【】,.!?;:()\[\]\"'<>-]+")

# Words that ask rather than tell, and indefinites that stand in for an answer without giving one.
_EN_EMPTY = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "whi", "how", "mani", "many", "much", "long",
    "often", "do", "doe", "does", "did", "can", "could", "should", "would", "may", "might", "must", "shall",
    "have", "ha", "has", "had", "been", "am", "so", "some", "someth", "something", "somewher", "somewhere",
    "someon", "someone", "certain", "kind", "sort", "type", "thing", "way", "question", "answer", "ask",
    "whether", "also", "onli", "just", "about", "from", "after", "befor", "up", "per", "than", "all", "ani",
    "each", "everi", "you", "your", "i", "we", "our", "he", "she", "him", "her", "his", "its", "them", "one",
    "yes", "there", "here", "would", "amount", "number", "time", "day", "particular", "specif", "specific",
    "happen",
}
#: Question words a sentence holds by other words. "get" asks what one receives: a sentence that
#: says it with a verb of receiving holds it ("How many days of leave do I get?" / "entitled to five
#: days"), one without does not. "claim" asks what is paid back ("How much can I claim for a
#: hotel?" / "Hotel costs are reimbursed up to 600 yuan").
_EN_ALSO = {"get": {"get", "got", "receiv", "entitl", "paid", "pay", "compens", "award", "grant", "given", "earn", "accru"},
            "claim": {"claim", "reimburs", "refund"}}
_EN_ALSO["got"] = _EN_ALSO["get"]
_EN_NUMBER_WORDS = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    r"thousand|million|billion|first|second|third|fourth|fifth|half|dozen|twice|once)\b", re.I)
_ZH_EMPTY = (
    "什么 哪个 哪些 哪里 哪儿 哪天 哪位 多少 多久 多长 多大 怎么 怎样 如何 为什么 为何 是否 是不是 吗 呢 几 谁 "
    "何时 何地 何处 何种 何人 几时 某个 某些 某种 某一 某 一些 一定 一种 一个 一段 一点 若干 有些 东西 事情 地方 方面 方法 方式 办法 算法 "
    "问题 答案 情况 时候 时间 部分 一下 这个 那个 有关 关于 可以 需要 应该 至少 最少 最多"
).split()
_ZH_EMPTY_RE = re.compile("|".join(sorted(map(re.escape, _ZH_EMPTY), key=len, reverse=True)))
_ZH_STOP_RE = re.compile("[的了是在和与及或就都而也又被把让给对从向以于之其这那吗呢吧啊呀么着过得地有为由将等个]")
_LEADING_YES_NO = re.compile(r"^\s*(?:yes|no|yeah|nope|是的|对|不是|不|没有)\s*[,，、:：]\s*", re.I)
_REASON = re.compile(r"\b(?:because|since|due|so|therefore|cause[sd]?|reason)\b|因为|由于|所以|因此|导致|原因|为了", re.I)
#: English purposes and consequences that answer "why" without "because".
_EN_PURPOSE = re.compile(r"\b(?:in order to|so as to|otherwise|hence|thus|as a result|leads? to|results? in|"
                         r"to (?:ensure|avoid|prevent|allow|make sure|protect|guarantee|keep|reduce|enable))\b", re.I)


@dataclass(frozen=True)
class Verdict:
    """The judgement on one answer sentence.

    ``reason`` is ``"supported"`` or what failed: ``"empty"``, ``"repetition"``, ``"uncovered"``
    (the cited text does not contain what the sentence says), ``"number"``, ``"date"``,
    ``"entity"``, ``"negation"``, ``"opposite"``, ``"comparative"`` (a contradiction),
    ``"echo"`` (restates the question), ``"not-an-answer"`` (does not give what is asked),
    ``"off-topic"`` (true perhaps, but beside the question).
    """

    supported: bool
    reason: str
    coverage: float = 0.0
    focus: float = 0.0
    evidence: str = ""


def content_units(text: str) -> list[str]:
    """What coverage counts: English content stems and Chinese words of two or more characters
    (jieba search mode, so 光合作用 also gives 光合 and 作用), without numbers."""
    text = text.lower()
    units: list[str] = []
    for run in _CJK_RUN.findall(text):
        for piece in _ZH_NUMERAL_RUN.sub(" ", run).split():
            units.extend(w for w in tokenize(piece) if len(w) > 1 and not _ZH_STOP_RE.search(w[0] + w[-1]))
    latin = _EN_NUMBER_WORDS.sub(" ", _CJK_RUN.sub(" ", text))
    if latin.strip():
        units.extend(t for t in tokenize(latin) if len(t) > 1 and not t[0].isdigit() and t not in _EN_EMPTY)
    return units


class _Haystack:
    """A text to find units in: Chinese words as substrings, English stems as words."""

    def __init__(self, text: str):
        self.text = text.lower()
        self.stems = set(content_units(_CJK_RUN.sub(" ", self.text)))

    def __contains__(self, unit: str) -> bool:
        if not unit.isascii():
            return unit in self.text
        return unit in self.stems or not self.stems.isdisjoint(_EN_ALSO.get(unit, ()))


#: 负责 after 谁 (谁负责删除) asks who does it, as 谁删除 does: the rule names the one who deletes.
_ZH_WHO_IN_CHARGE = re.compile(r"(谁|哪个部门|哪位)(?:来)?负责")
#: Who a "which" question asks for: the answer names one (人力资源部) without the kind's word. Not
#: places (哪个城市): with 城市 gone, 苹果公司的总部在哪个城市？ was answered by a sentence naming 苹果公司
#: alone, as jieba's search mode counts 苹果, 公司 and 苹果公司 as three of the question's four words.
_ZH_WHICH_KIND = re.compile(r"哪(?:个|一个|家|位|些)?(?:部门|单位|机构|领导)")
#: How the name of an organisation or one of its units ends: a name the segmenter found (人力资源部,
#: 市场监督管理局), or, in running text, the endings no common word has (上海市仲裁委员会).
_ZH_BODY = re.compile(r"(?:部|处|科|室|局|厅|署|委|会|中心|公司|集团|银行|院|所|办|组)$")
_ZH_BODY_IN_TEXT = re.compile(r"[\u4e00-\u9fff]{2,10}?(?:委员会|协会|学会|管理局|公安局|税务局|公司|集团|银行|法院|检察院|"
                              r"医院|学院|大学|研究院|研究所|办公室|小组)")
#: Helper verbs and adverbs (can, must, will, also...) that jieba's HMM glues to a neighbour
#: when it guesses a word it does not know: 年假能休几天 -> 年 / 假能 / 休 (年假 is not in its dictionary).
_ZH_HELPER = re.compile("[能要会可想该应需还再才]")


@lru_cache(maxsize=256)
def _focus_units(question: str) -> tuple[str, ...]:
    """The question's content: what an answer must be about (question words removed).

    A name jieba does not know comes apart into single characters (萱侬律 -> 萱 侬 律), which
    :func:`content_units` drops; such runs are kept whole, so the name stays part of the focus.
    A guessed word (not in jieba's dictionary) with a helper verb at its edge (假能) is a
    misplaced boundary: it is not a unit, its characters are singles, and a helper verb never
    joins a run (年 假 能 休 -> 年假)."""
    question = _ZH_ASKED_UNIT.sub(" ", question)  # 几天 / 多少个月: the unit asked for is not a topic
    question = _ZH_WHEN_ON.sub(r"\1", question)  # 什么时候开始施行: when it is in force
    question = _ZH_WHO_IN_CHARGE.sub(r"\1", question)  # 谁负责删除: who deletes
    question = _ZH_WHICH_KIND.sub(" ", question)  # 哪个部门 asks for a department, which is not named 部门
    units = [u for u in content_units(question) if not _ZH_EMPTY_RE.search(u) and not _glued(u)]
    for run in _CJK_RUN.findall(_ZH_EMPTY_RE.sub(" ", question)):
        singles: list[str] = []
        words = [w for word, _ in pos_words(run) for w in (word if _glued(word) else [word])]
        for word in [*words, ""]:
            if len(word) == 1 and not _ZH_STOP_RE.match(word) and not _ZH_HELPER.match(word) \
                    and not _ZH_NUMERAL_RUN.match(word):
                singles.append(word)
                continue
            if len(singles) > 1:
                units.append("".join(singles))
            singles = []
    return tuple(dict.fromkeys(units))


def _glued(word: str) -> bool:
    """jieba guessed ``word`` and put a helper verb at its edge (假能): see :func:`_focus_units`."""
    return len(word) > 1 and bool(_ZH_HELPER.match(word[0]) or _ZH_HELPER.match(word[-1])) and not jieba_knows(word)


def _covered(units: Sequence[str], where: _Haystack) -> float:
    if not units:
        return 1.0
    return sum(1 for u in units if u in where) / len(units)


def topics(question: str) -> list[str]:
    """The question's focus units that are not part of a longer one (放线菌酮, not 放线 and 放线菌 too)."""
    units = _focus_units(question)
    return [u for u in units if not any(u != v and u in v for v in units)]


def focus_beyond(question: str, text: str, subject: str) -> bool:
    """Some of the question's content that ``subject`` does not already hold is in ``text``
    (True when ``subject`` holds all of it)."""
    known = _Haystack(subject)
    asked = [u for u in _focus_units(question) if u not in known]
    if not asked:
        return True
    said = _Haystack(text)
    return any(u in said for u in asked)


def focus(question: str, text: str) -> float:
    """Share of the question's content found in ``text`` (1.0 when the question has none)."""
    units = _focus_units(question)
    return _covered(units, _Haystack(text))


def repetitive(text: str) -> bool:
    """A phrase of two or more words (characters for Chinese) said three or more times over."""
    seq = [m.group() for m in re.finditer(r"[\u3400-\u9fff]|[A-Za-z0-9']+", text.lower())]
    for n in range(2, 9):
        counts = Counter(tuple(seq[i:i + n]) for i in range(len(seq) - n + 1))
        if counts and (top := counts.most_common(1)[0][1]) >= 3 and n * top >= 10:
            return True
    return False


def _spans(text: str) -> list[str]:
    sentences = split_sentences(text) or [text]
    spans = list(sentences)
    spans += [a + (" " if language_of(a) == "en" else "") + b for a, b in zip(sentences, sentences[1:], strict=False)]
    return spans


_CLAUSE = re.compile(r"(?<=[，,;；:：])\s*")


def _clauses(text: str) -> list[str]:
    return [c for s in (split_sentences(text) or [text]) for c in _CLAUSE.split(s) if c.strip()]


def _signature(text: str) -> Signature:
    """The signature of an answer sentence: a sentence-initial capital is not taken for a name."""
    text = _LEADING_YES_NO.sub("", text.strip())
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return signature(text)


def _negation_differs(sentence: str, span: str) -> bool:
    """Some clause of the sentence negates differently from the span clause closest to it."""
    sources = [(c, _Haystack(c)) for c in _clauses(span)]
    for clause in _clauses(_LEADING_YES_NO.sub("", sentence.strip())):
        units = content_units(clause)
        if not units:
            continue
        closest = max(sources, key=lambda s: _covered(units, s[1]))[0]
        if signature(clause).negations != signature(closest).negations:
            return True
    return False


def _contradiction(sentence: str, span: str) -> str | None:
    said, src = _signature(sentence), signature(span)
    if said.numbers - src.numbers:
        return "number"
    for date in said.dates - src.dates:
        # a duration the span writes another way (两天 / 2天) is a number, checked above
        value = re.match(r"(\d+)", date)
        if not (value and value.group(1) in src.numbers):
            return "date"
    for entity in said.entities:
        if re.search(r"[\u3400-\u9fff]", entity):
            if entity not in src.text:
                return "entity"
        elif entity not in src.words and entity not in src.text:
            return "entity"
    if _negation_differs(sentence, span):
        return "negation"
    pairs = {side.split(":")[0]: side for side in src.opposites}
    if any(pairs.get(side.split(":")[0], side) != side and side not in src.opposites for side in said.opposites):
        return "opposite"
    english = {c for c in said.comparatives if c.isascii()}
    if english - src.comparatives:
        return "comparative"
    return None


_EN_ASKS = re.compile(r"^\W*(?:(how)\s+(many|much|long|old|far|often)|(when)|(who|whom|whose)|(why))\b", re.I)


def asked_for(question: str) -> set[str]:
    """What kind of answer the question asks for: ``quantity``, ``time``, ``person``, ``reason``
    (English: from its leading question word; Chinese: from 多少/几/何时/谁/为什么…)."""
    m = _EN_ASKS.match(question)
    if m:
        if m.group(1):
            return {"quantity"}
        return {"time"} if m.group(3) else {"person"} if m.group(4) else {"reason"}
    if re.search(r"[\u3400-\u9fff]", question):
        intents = signature(question).intents
        asked = {"quantity" if i in ("long", "old", "far") else i for i in intents}
        # 哪里 may be answered by a description (在山顶上), 哪个国家/城市 needs a name
        return asked if _ZH_NAMED_PLACE.search(question) else asked - {"place"}
    if _EN_WHERE.match(question):
        return {"place"}
    return set()


_ZH_NAMED_PLACE = re.compile(r"哪(?:个|一个)?(?:国家|城市|省|州|市|县|地区|国)")
_EN_WHERE = re.compile(r"^\W*(?:in|from|to)\s+(?:which|what)\s+(?:country|city|state|town)\b", re.I)
#: "Where ..." in general: answered by a name, a place phrase ("in the packages directory",
#: "under /usr/share/mime") or a path or address.
_EN_WHERE_ANY = re.compile(r"^\W*where\b", re.I)
_EN_PLACE = re.compile(r"\b(?:in|at|on|under|inside|within|into|from|near|below|beneath|beside|behind|above|over|"
                       r"outside|across|along|between|opposite|around|beyond|through)\s+(?:the\s+|a\s+|an\s+|your\s+|its\s+)?"
                       r"[\w/~.$<]|(?:^|\s)[~.]?/\w|\b\w+://", re.I)


def repeats_numbers(question: str, sentence: str) -> bool:
    """``sentence`` holds a number the question states (not a clause number): 出差超过五天要谁批准？
    asks about the case the sentence 出差时间超过五天的，还须报分管副总经理批准 sets out."""
    asked = signature(question).numbers
    return bool(asked and asked & _signature(_STRUCTURE.sub(" ", sentence)).numbers)


def answers_question(question: str, sentence: str) -> bool:
    """Whether ``sentence`` gives the kind of thing the question asks for (a number for "how many").
    A clause's own number or a reference to one (第一千二百一十六条, 本法第十七条第二款, a leading
    （五） or 三、) is structure, not a quantity or a time: "多少年" is not answered by an article
    that only carries its number. A count asked in a unit needs a number in that unit: 多少个小时
    is not answered by 1-2次, 多少年 not by 十八周岁. A statute says when by an event (从出生时起):
    that answers "什么时候"."""
    asked = asked_for(question)
    plain = _STRUCTURE.sub(" ", sentence)
    said, q = _signature(plain), signature(question)
    numbers = said.numbers - q.numbers
    if _OFTEN_ASKED.search(question) and _FREQUENCY.search(plain):
        asked -= {"quantity", "time"}  # "every quarter", 每季度: how often, with or without a number
    if "quantity" in asked and not numbers:
        return False
    unit = _count_in_unit(question) if "quantity" in asked else None  # 每九十天 answers 多少天…一次 (how often)
    if unit is not None and has_cjk(plain) and not unit.search(plain):
        return False  # (an English source's "fifteen days" is read by the cross-language path)
    if "time" in asked and not (_signature(_NOT_WHEN.sub(" ", plain)).numbers - q.numbers or said.dates - q.dates
                                or _FROM_WHEN.search(sentence)):
        return False
    if "reason" in asked and not _REASON.search(sentence) and (
            len(content_units(sentence)) < 4 or not has_cjk(question) and not _EN_PURPOSE.search(sentence)):
        return False  # in English a reason is said so ("Using a static mut requires an unsafe block" is a rule)
    if "person" in asked and not (_names(said, q) or _posts(said, q)):
        return False
    if _ZH_WHICH_KIND.search(question) and not (_posts(said, q) or _bodies(said, q)):
        return False  # 哪个部门 is answered by a department or a body, not by any name (中文)
    if "place" in asked and not _names(said, q):
        return False
    if _EN_WHERE_ANY.match(question) and not (_EN_PLACE.search(sentence) or any(
            e not in q.text and e not in stopwords_en() for e in said.entities)):
        return False  # "Where is X stored?" is not answered by "X does NOT store preferences"
    if _ORDINAL_ASKED.search(question) and not _ORDINAL.search(sentence):
        return False
    return True


#: The digits a Chinese number is written with (第十条, 第1216条), as a character class's contents.
ZH_NUMERALS = r"\d零〇一二两三四五六七八九十百千"
_STRUCTURE = re.compile(rf"第[{ZH_NUMERALS}]+(?:之[{ZH_NUMERALS}]+)?[编章节条款项目]|^\s*[（(][{ZH_NUMERALS}]+[）)]|^\s*[{ZH_NUMERALS}]+、|"
                        r"^\s*\d+(?:\.\d+)+\.?\s+(?=[A-Z])|^\s*\d+\.\s+(?=[A-Z])|\b(?:Article|Section|Clause|Rule|Part|Chapter|§)\s*\d+(?:\.\d+)*")
#: Numbers that say no "when": a share (80%, 百分之八十) or a length ("a probation period of three
#: months", "for six weeks"); "within 30 days" and "after three years" still do.
_NOT_WHEN = re.compile(r"\d+(?:\.\d+)?\s*(?:%|percent\b|per\s+cent\b)|百分之[零〇一二两三四五六七八九十百千]+|"
                       r"\b(?:of|for|lasts?|lasting)\s+(?:\d+(?:\.\d+)?|[a-z]+)(?:-|\s+)(?:minute|hour|day|week|month|year)s?\b",
                       re.I)
#: "How often" and its answers: a frequency said with or without a number.
_OFTEN_ASKED = re.compile(r"\bhow\s+often\b|多(?:久|长时间)[\u4e00-\u9fff]{0,6}?一次|"
                          r"(?:多少|几)个?(?:天|日|周|星期|月|季度|年|小时|分钟)[\u4e00-\u9fff]{0,6}?一次|隔多久|频率", re.I)
_FREQUENCY = re.compile(
    r"\b(?:every|each)\s+(?:other\s+|\w+\s+)?(?:day|week|fortnight|month|quarter|year|hour|minute|morning|evening|"
    r"night|shift|semester|term)s?\b|\b(?:daily|nightly|weekly|fortnightly|monthly|quarterly|annually|yearly|hourly|"
    r"biannually)\b|\b(?:per|a|an)\s+(?:day|week|month|quarter|year|hour)\b|"
    r"每(?:[一二两三四五六七八九十\d]+)?个?(?:天|日|周|星期|月|季度|季|年|小时|分钟|学期)", re.I)
#: A statute's way of saying when: from an event on (自出生时起, 自合同成立之日起), or until one (死亡时止).
_FROM_WHEN = re.compile(r"(?:时|之日)起|时止")
_ORDINAL_ASKED = re.compile(r"第几|哪一名|\bwhich place\b|\bwhat (?:place|position|rank)\b", re.I)
_ORDINAL = re.compile(r"第\s*[\d零〇一二两三四五六七八九十百]+|冠军|亚军|季军|\b\d+(?:st|nd|rd|th)\b|"
                      r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last)\b", re.I)


def _names(said: Signature, q: Signature) -> bool:
    """The sentence names someone or somewhere the question does not (who / where / 谁 / 哪里)."""
    return any(e not in q.text and e not in q.entities for e in said.entities) or bool(
        re.search(r"[\u3400-\u9fff]·[\u3400-\u9fff]|《[^》]+》", said.text))


def _bodies(said: Signature, q: Signature) -> bool:
    """The sentence names an organisation or a unit of one the question does not (哪个机构 / 哪个部门)."""
    return any(_ZH_BODY.search(e) and e not in q.text for e in said.entities) or any(
        m.group() not in q.text for m in _ZH_BODY_IN_TEXT.finditer(said.text))


def _posts(said: Signature, q: Signature) -> bool:
    """The sentence names a post or department the question does not (部门经理, 财务部, "the
    department manager"): who, as an organisation's rules say it."""
    return any(m.group().lower() not in q.text.lower() for role in (_ZH_ROLE, _EN_ROLE) for m in role.finditer(said.text))


#: Posts and departments that answer 谁 / who in an organisation's rules (部门经理批准, 交财务部审核). Not
#: courts, committees or authorities: a statute names them in most sentences, whatever it is asked.
_ZH_ROLE = re.compile(r"[\u4e00-\u9fff]{0,2}(?:经理|主管|主任|总监|总裁|董事长|负责人|管理员|专员|秘书|办公室|"
                      r"局长|处长|科长|组长|校长|院长|"
                      r"(?:财务|人事|人力资源|行政|信息技术|技术|法务|市场|销售|采购|研发|运营|客服|安全|审计|风控|综合)部)")
_EN_ROLE = re.compile(r"\b(?:[a-z]+ )?(?:manager|supervisor|director|officer|administrator|department|HR|"
                      r"president|chair(?:man|person|woman)?|CEO|CFO|COO|CTO|secretary|treasurer|controller)s?\b", re.I)


#: Units whose count a question asks for (多少年, 几个月); not the counters that start other words
#: (多少人口, 几条件), and not 日元 or 年级. English is left out: its numbers are too often words
#: ("thirty days"), scales ("2.1 million people") or spans ("from 1939 to 1945") to demand a form.
_ZH_UNITS = "年(?!级|龄|代)|个月|月(?!份)|周岁|周|星期|天|日(?!元|本|期)|小时|分钟|岁|万元|亿元|元|倍|公里|千米|平方米|米|公顷|吨|公斤|千克"
#: "When does it start to …" asks when: 开始 after the question word is no topic, and the rule
#: says it by a date (本办法自二〇二四年一月一日起施行), seldom with 开始. (起 is left: 起飞, 起诉.)
_ZH_WHEN_ON = re.compile(r"(什么时候|何时|哪天|哪一天|哪年|几时)开始")
_ZH_ASKED_UNIT = re.compile(rf"(?:多少|(?<!哪)几)(?:个)?({_ZH_UNITS})")
_ZH_DAYS = "(?:个?(?:工作|自然)?[天日])"  # 三天, 三日, 三个工作日, 十个自然日
_ZH_UNIT_FORMS = {"个月": "个?月", "月": "个?月", "岁": "周?岁", "周岁": "周?岁", "天": _ZH_DAYS, "日": _ZH_DAYS,
                  "周": "(?:周|星期)", "星期": "(?:周|星期)"}


def _count_in_unit(question: str) -> re.Pattern[str] | None:
    """For a Chinese question that asks for a count of something (多少年, 几个月), what a number
    of it looks like in a sentence (三年, 六个月, 1939年; not 每三天, which says how often); None
    for any other question. "哪几" asks which ones, not how many."""
    m = _ZH_ASKED_UNIT.search(question)
    if m is None:
        return None
    unit = _ZH_UNIT_FORMS.get(m.group(1), re.escape(m.group(1)))
    # 每三天 is how often, not how many
    return re.compile(rf"(?<![每{ZH_NUMERALS}万多余几半])[{ZH_NUMERALS}万多余几半]+\s*(?:多|余)?{unit}")


def counts_topic(question: str, topic: str, sentence: str) -> bool:
    """For a Chinese question asking a count in a unit of one topic (年假有几天), whether
    ``sentence`` states that count of the topic in one of two plain forms: the topic, an optional
    linking word and the count (年假有十五天, 年假为十五天, 年假共计十五天), or a verb of having, the
    count and the topic at most three characters on (员工每年享有十五天带薪年假). A count that
    bounds something else — a deadline (提前三天申请年假, 三天内审批, 结束后三天), a date (1月1日), a
    threshold (三天以上) — or sits across a comma does not count.

    In English ("How long is probation?", "How many days is paternity leave?"): the topic, an
    optional "period", a linking word and the count in the unit asked (probation period of three
    months, probation lasts 6 months), or the count "of" the topic (15 days of paternity leave); a
    count followed by "after", "before", "in advance" or "of service" bounds something else."""
    if not topic:
        return False
    if topic.isascii():
        count = _en_count(question)
        if count is None:
            return False
        t = re.escape(topic)
        stated = (rf"\b{t}\w*(?:\s+(?:period|term))?\s+(?:is|are|lasts?|of|will\s+be|shall\s+be)\s+"
                  rf"(?:up\s+to\s+|at\s+most\s+)?{count}(?!\s+(?:after|before|in\s+advance|of\s+service|from|prior))"
                  rf"|{count}\s+of\s+(?:\w+\s+)?{t}")
        return re.search(stated, sentence.lower()) is not None
    pattern = _count_in_unit(question)
    if pattern is None:
        return False
    count, t = pattern.pattern, re.escape(topic)
    stated = (rf"{t}(?:共计|共有|合计|总计|一共|为|是|有|共)?\s*(?:{count})(?!{_COUNT_BOUND})"
              rf"|(?:享有|享受|获得|给予|有|为)\s*(?:{count})(?!{_COUNT_BOUND})[{CJK}]{{0,3}}?{t}")
    return re.search(stated, sentence.lower()) is not None


def dates_topic(question: str, topic: str, sentence: str) -> bool:
    """For a Chinese question asking when (本办法什么时候施行), whether ``sentence`` dates the topic:
    a date or an event with 起 or 开始, then the topic in the same clause (自二〇二四年一月一日起施行,
    自公布之日起施行), or a span from one event to another that heads the sentence and so dates
    all of it (自然人从出生时起到死亡时止，具有民事权利能力，依法享有民事权利). Not a date beside another
    word (提前三天申请年假 dates no 年假), nor one across a comma (…起施行，原办法同时废止 does not say
    when this rule is repealed)."""
    if not topic or topic.isascii() or "time" not in asked_for(question):
        return False
    t = re.escape(topic)
    since = r"(?:[年月日号时]|之日|以后|以前)\s*(?:起|开始)"
    dated = rf"{since}[^，,。；;！？]*?{t}|^[^，,。；;！？]*?{since}(?:到|至)[^，,。；;！？]*?止[，,][^。；;！？]*?{t}"
    return re.search(dated, _STRUCTURE.sub(" ", sentence).strip()) is not None


def _en_count(question: str) -> str | None:
    """For "How long ..." (a duration) or "How many UNITS ...", what such a count looks like
    (three months, 6 weeks, 15-day); None for any other question."""
    m = re.match(r"^\W*how\s+(?:(long)|many\s+([a-z]+?)s?)\b", question.lower())
    if m is None:
        return None
    unit = "minute|hour|day|week|month|year" if m.group(1) else re.escape(m.group(2))
    return rf"(?:\d+(?:\.\d+)?|{_EN_COUNT_WORDS})(?:-|\s+)(?:working\s+|calendar\s+)?(?:{unit})s?\b"


_EN_COUNT_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
                   "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|ninety|a hundred|a|an")


#: What after a count makes it a bound, not an amount: 三天内, 三天以上, 三天前, 三天起.
_COUNT_BOUND = "内|以内|之内|以上|以下|之前|以前|前|之后|以后|后|起"


def adds_to(question: str, sentence: str) -> bool:
    """The sentence says something the question does not: a content unit, number, date, name, or
    (to a yes/no question) a polarity."""
    asked = _Haystack(question)
    if any(u not in asked for u in content_units(_ZH_EMPTY_RE.sub(" ", sentence))):
        return True
    sq, ss = signature(question), _signature(sentence)
    if ss.numbers - sq.numbers or ss.dates - sq.dates or any(e not in sq.text for e in ss.entities):
        return True
    return yes_no(question) and (ss.negations != sq.negations or bool(_LEADING_YES_NO.match(sentence)))


def check(question: str, sentence: str, cited: str | Sequence[str], *,
          similarity: Callable[[str, str], float] | None = None) -> Verdict:
    """Judge ``sentence`` (an answer to ``question``) against the ``cited`` text (see the module docstring).

    Args:
        cited: the cited chunk text, or several (the best-backing one counts).
        similarity: ``(question, text) -> cosine`` from a multilingual embedder, used for the
            question focus when the question and the evidence are in different languages.
    """
    plain = sentence.strip()
    if not _PUNCT.sub("", plain):
        return Verdict(False, "empty")
    if repetitive(plain):
        return Verdict(False, "repetition")
    texts = [cited] if isinstance(cited, str) else list(cited)
    units = content_units(plain)
    asked = _Haystack(question)
    new = [u for u in units if u not in asked]
    best: tuple[float, float, str] = (-1.0, -1.0, "")
    for text in texts:
        for span in _spans(text):
            have = _Haystack(span)
            cov, cov_new = _covered(units, have), _covered(new, have)
            if min(cov, cov_new) > min(best[0], best[1]) or (
                    min(cov, cov_new) == min(best[0], best[1]) and len(span) < len(best[2])):
                best = (cov, cov_new, span)
    coverage, coverage_new, span = best
    if coverage < COVERAGE or coverage_new < NEW_COVERAGE:
        return Verdict(False, "uncovered", min(coverage, coverage_new), evidence=span)
    problem = _contradiction(plain, span)
    if problem:
        return Verdict(False, problem, coverage, evidence=span)
    if not adds_to(question, plain):
        return Verdict(False, "echo", coverage, evidence=span)
    if not answers_question(question, plain):
        return Verdict(False, "not-an-answer", coverage, evidence=span)
    if similarity is not None and language_of(question) != language_of(span):
        on_topic = similarity(question, span)
        ok = on_topic >= CROSS_LINGUAL_SIMILARITY
    else:
        on_topic = focus(question, plain + " " + span)
        ok = on_topic >= FOCUS
    if not ok:
        return Verdict(False, "off-topic", coverage, on_topic, span)
    return Verdict(True, "supported", coverage, on_topic, span)
