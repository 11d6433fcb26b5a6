"""Exact match and F1 of short answers: SQuAD's definitions for English, CMRC 2018's for Chinese.

SQuAD (v1.1 ``evaluate-v1.1.py``): lowercase, strip ASCII punctuation and the articles a/an/the,
split on whitespace; F1 over the bag of tokens. CMRC 2018 (``cmrc2018_evaluate.py``): lowercase,
drop its list of Chinese and ASCII punctuation; F1 from the longest common *contiguous* run of
segments, where each CJK character is a segment and a run of other characters is split into words
(the official script uses NLTK's ``word_tokenize`` there, which needs a data download; here a run
splits into word characters and single punctuation marks, which is the same on ordinary text).
With several gold answers a prediction scores its best match, as both scripts do.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_CJK = re.compile(r"[\u4e00-\u9fa5]")
#: CMRC 2018's ``sp_char`` list (its "……" entry can never match one character and is left out).
_CMRC_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_ASCII_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def is_chinese(text: str) -> bool:
    """True when the text has any CJK ideograph (then CMRC rules apply)."""
    return bool(_CJK.search(text))


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def cmrc_segments(text: str) -> list[str]:
    """CMRC's mixed segmentation with punctuation removed: CJK characters one by one, other runs as words."""
    out: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if ch in _CMRC_PUNCT:
            continue
        if _CJK.match(ch):
            if run:
                out.extend(re.findall(r"\w+|[^\w\s]", run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(re.findall(r"\w+|[^\w\s]", run))
    return out


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def exact_match(prediction: str, answers: Sequence[str], lang: str | None = None) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    zh = _chinese(prediction, answers, lang)
    if zh:
        norm = lambda s: "".join(ch for ch in s.lower().strip() if ch not in _CMRC_PUNCT)  # noqa: E731
    else:
        norm = squad_normalize
    p = norm(prediction)
    return float(any(norm(a) == p for a in answers))


def f1(prediction: str, answers: Sequence[str], lang: str | None = None) -> float:
    """Token F1 (SQuAD) or longest-common-run F1 (CMRC 2018), best over the gold answers, 0..1."""
    if _chinese(prediction, answers, lang):
        pred = cmrc_segments(prediction)
        best = 0.0
        for answer in answers:
            gold = cmrc_segments(answer)
            common = _longest_common_run(gold, pred)
            if common:
                p, r = common / len(pred), common / len(gold)
                best = max(best, 2 * p * r / (p + r))
        return best
    pred = squad_normalize(prediction).split()
    best = 0.0
    for answer in answers:
        gold = squad_normalize(answer).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def _chinese(prediction: str, answers: Sequence[str], lang: str | None) -> bool:
    if lang:
        return lang.split("-")[0].lower() in ("zh", "cmn")
    return is_chinese(prediction) or any(is_chinese(a) for a in answers)
