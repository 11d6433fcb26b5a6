"""Chinese and English text handling shared by search, chunking, the meaning guard and routing.

- **Script**: :data:`CJK` (the ideograph ranges), :func:`is_cjk`, :func:`has_cjk`,
  :func:`cjk_ratio`, :func:`language_of`.
- **Search tokens** (:func:`tokenize`): Chinese runs are segmented with jieba's search mode
  (overlapping words, so 北京大学 also yields 北京 and 大学); other runs are split into words and
  stemmed with the Snowball English stemmer (PyStemmer). Both sides of a search (documents and
  queries) go through it, so the same rules apply everywhere, including in the Postgres store,
  which receives pre-tokenised text.
- **Sentences** (:func:`split_sentences`): on Chinese full-width marks and on Western ones
  followed by white space.
- **Part-of-speech words** (:func:`pos_words`): jieba's tagger, for names and content nouns.

jieba is loaded once per process, on the first Chinese text, whichever function needs it first.
What this module does not do: decide what a text means (:mod:`lingxi.meaning`) or rank anything.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from types import ModuleType

from lingxi.errors import missing_extra

__all__ = [
    "CJK", "STOPWORDS_ZH", "is_cjk", "has_cjk", "cjk_ratio", "language_of", "normalize_text", "tokenize",
    "split_sentences", "pos_words", "jieba_knows",
]

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""The CJK ideograph ranges (extension A, unified, compatibility), for use inside a regex ``[...]``."""

_CJK_RUN = re.compile(f"([{CJK}]+)")
_CJK_CHAR = re.compile(f"[{CJK}]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Sentence ends: Chinese full-width marks are first-class, then Western ones followed by space.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])[”’」』）)]*|(?<=[.;])(?=\s)|(?<=[.;][\"')\]])(?=\s)")

#: Very common words that carry no topic (scored by BM25 anyway, but they bloat the index).
STOPWORDS_ZH = frozenset(
    "的 了 是 在 和 与 及 或 就 都 而 也 又 被 把 让 给 对 从 向 以 于 之 其 这 那 这个 那个 一个 什么 哪 哪个 哪些 "
    "吗 呢 吧 啊 呀 么 个 着 过 得 地 有 没有 为 为了 由 将 等 中 上 下 里 请问 多少 如何 怎么 怎样 为什么".split()
)

_lock = threading.Lock()


#: How a yes-or-no question opens or ends ("Is …?", "Does …?", …吗？, 是否, 能不能).
_YES_NO = re.compile(r"^\W*(?:is|are|was|were|do|does|did|can|could|should|will|would|may|must|has|have|had)\b|"
                     r"吗\W*$|是否|是不是|有没有|能不能|可不可以|会不会", re.I)


def yes_no(question: str) -> bool:
    """Whether the question asks yes or no ("Is reading a union field safe?", 居住权可以继承吗？)."""
    return bool(_YES_NO.search(question))


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` (its first character) is a CJK ideograph."""
    return bool(_CJK_CHAR.match(ch))


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains a CJK ideograph."""
    return bool(_CJK_CHAR.search(text))


def cjk_ratio(text: str) -> float:
    """Share of CJK characters among the non-space characters of ``text``."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if is_cjk(c)) / len(chars)


def language_of(text: str) -> str:
    """``zh``, ``en`` or ``other``, by script (ideographs against Latin letters)."""
    cjk, latin = len(_CJK_CHAR.findall(text)), len(_LATIN.findall(text))
    if cjk and cjk * 3 >= latin:
        return "zh"
    if latin and sum(1 for ch in text if ch.isalpha() and not ch.isascii() and not is_cjk(ch)) * 3 < latin:
        return "en"
    return "zh" if cjk else ("en" if latin else "other")


def normalize_text(text: str) -> str:
    """NFKC (full-width Latin and digits become ASCII), lower case."""
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=1)
def _jieba() -> ModuleType:
    try:
        import jieba
    except ImportError as exc:
        raise missing_extra("Chinese tokenisation (jieba)", "knowledge", exc) from exc
    with _lock:
        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer
    except ImportError as exc:
        raise missing_extra("English stemming", "knowledge", exc) from exc
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def stopwords_en() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN
    except ImportError as exc:
        raise missing_extra("BM25", "knowledge", exc) from exc
    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Search tokens of ``text``: jieba words for Chinese, stemmed words otherwise.

    Stop words are dropped; digits and Latin words inside Chinese text are kept as words.

    Raises:
        LingxiError: jieba, PyStemmer or bm25s is missing (the ``knowledge`` extra).
    """
    text = normalize_text(text)
    stop_en = stopwords_en()
    latin: list[str] = []
    out: list[str] = []
    for i, part in enumerate(_CJK_RUN.split(text)):
        if not part:
            continue
        if i % 2 == 1:  # a CJK run
            out.extend(w for w in _jieba().lcut_for_search(part) if w not in STOPWORDS_ZH and w.strip())
        else:
            words = [w for w in _WORD.findall(part) if w not in stop_en]
            latin.extend(words)
            out.extend(words)
    if latin:
        stems = dict(zip(latin, _stemmer().stemWords(latin), strict=True))
        out = [stems.get(w, w) for w in out]
    return out


def jieba_knows(word: str) -> bool:
    """``word`` is in jieba's dictionary (not a word its HMM guessed).

    Raises:
        LingxiError: jieba is missing (the ``knowledge`` extra).
    """
    return bool(_jieba().dt.FREQ.get(word))


def pos_words(text: str) -> list[tuple[str, str]]:
    """jieba's words of ``text`` with their part-of-speech flags (``nr`` person, ``ns`` place, ``n`` noun...).

    Raises:
        LingxiError: jieba is missing (the ``knowledge`` extra).
    """
    _jieba()
    import jieba.posseg  # its tagging tables load only here: search tokenisation does not need them

    return [(w.word, w.flag) for w in jieba.posseg.cut(text)]


#: Abbreviations whose full stop does not end a sentence ("Example & Co. Certified Public
#: Accountants", "Acme Ltd. book"); those before a number only there ("No. 5", "Art. 12").
_ABBREVIATIONS = frozenset("Co Ltd Inc Corp Bros Mr Mrs Ms Dr Prof Sr Jr St Mt vs cf".split())
_BEFORE_NUMBER = frozenset("No Nos Art Arts Sec Fig Vol pp".split())
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")


def _abbreviation_at(text: str, end: int) -> bool:
    """The full stop just before ``end`` closes an abbreviation or an initial (J. R. R. Tolkien,
    U.S., e.g.), not a sentence."""
    m = _LAST_WORD.search(text, max(0, end - 12), end)
    if m is None or m.start() > 0 and text[m.start() - 1].isalnum():
        return False
    word = m.group(1)
    if word in _ABBREVIATIONS or re.fullmatch(r"[A-HJ-Z]|(?:[A-Za-z]\.)+[A-Za-z]", word):  # not "World War I."
        return True
    return word in _BEFORE_NUMBER and bool(re.match(r"\s*\d", text[end:end + 4]))


def split_sentences(text: str) -> list[str]:
    """Split into sentences on 。！？； and on . ! ? ; followed by white space. Keeps the marks.
    A full stop closing an abbreviation or an initial (Co., Ltd., Dr., J., U.S.) does not split."""
    pieces: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if end > 0 and text[end - 1] == "." and _abbreviation_at(text, end):
            continue
        if end > start:
            pieces.append(text[start:end])
            start = end
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in (s.strip() for s in pieces) if p]
