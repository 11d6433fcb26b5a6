"""Find personal data in Chinese and English text.

:func:`detect_pii` returns character spans with a label and a score. Labels follow Presidio's
entity names where Presidio has one (``PERSON``, ``PHONE_NUMBER``, ``EMAIL_ADDRESS``,
``CREDIT_CARD``, ``IBAN_CODE``, ``US_SSN``, ``IP_ADDRESS``, ``LOCATION``, ``DATE_TIME``, ``URL``,
``ORGANIZATION``) and ``CN_*`` names otherwise.

What each detector covers, and what it misses:

- Numbers with a checksum or a fixed structure are validated, so look-alikes are not flagged:
  ``CN_ID_CARD`` (18-digit resident ID: province code, real birth date, ISO 7064 check digit;
  the old 15-digit form is not detected), ``CN_BANK_CARD`` (UnionPay/Chinese bank cards, 16-19
  digits, Luhn), ``CREDIT_CARD`` (Visa, Mastercard, Amex, Discover, JCB prefixes, Luhn),
  ``CN_USCC`` (unified social credit code, GB 32100 check character), ``IBAN_CODE`` (mod 97),
  ``US_SSN`` (dashed or spaced; area/group/serial rules; bare 9 digits only next to "SSN").
- Patterns: ``CN_PHONE`` (mobiles with a real 1xx prefix, landlines with an area code),
  ``PHONE_NUMBER`` (North American and ``+``-prefixed international numbers), ``EMAIL_ADDRESS``,
  ``URL`` (scheme or ``www.``), ``IP_ADDRESS`` (v4 and v6, validated), ``CN_LICENSE_PLATE``,
  ``CN_PASSPORT`` (only with a cue such as 护照/passport nearby), ``DATE_TIME`` (dates that
  carry a year, Chinese and English forms; times and bare months are not flagged).
- Names, places and organisations come from rules, not a statistical model, so they miss
  what the rules do not anticipate: Chinese ``PERSON`` = a common surname + 1-2 characters that
  jieba tags as a person name, or any surname-led name next to a title (先生, 经理) or a cue
  (姓名, 联系人) (in a text over 200k characters only the latter); English ``PERSON`` = a common given name (+ capitalised surname) or a title
  (Mr, Dr) + capitalised words, or a capitalised word before a common surname — a rare given
  name with a rare surname and no title is missed. ``LOCATION`` =
  Chinese addresses (a chain of province/city/district/road/number parts starting at a place
  jieba tags, or at a province/city name), English street addresses, and a list of US states,
  countries and large cities. ``ORGANIZATION`` = names ending in a company/school/hospital
  suffix (有限公司, 银行, Inc., University).

This module imports nothing heavy at import time; the validators (``python-stdnum``) and
jieba come with the ``guard`` extra and load on first use.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from lingxi.errors import UsageError, missing_extra
from lingxi.guard import lexicon

Lang = Literal["zh", "en", "auto"]

#: Every label the built-in detectors produce.
LABELS = (
    "CN_ID_CARD", "CN_PHONE", "PHONE_NUMBER", "CN_BANK_CARD", "CREDIT_CARD", "CN_USCC", "CN_PASSPORT",
    "CN_LICENSE_PLATE", "EMAIL_ADDRESS", "IP_ADDRESS", "URL", "IBAN_CODE", "US_SSN", "DATE_TIME", "PERSON",
    "LOCATION", "ORGANIZATION",
)

#: Spans below this score are dropped (a pattern without its cue scores lower).
DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True)
class Span:
    """One piece of personal data: ``text[start:end]`` is a ``label``."""

    start: int
    end: int
    label: str
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "label": self.label, "score": round(self.score, 3)}


# ---------------------------------------------------------------- validators


def _stdnum(module: str):
    try:
        import importlib

        return importlib.import_module(f"stdnum.{module}")
    except ImportError as exc:
        raise missing_extra("PII detection", "guard", exc) from exc


_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)


def valid_cn_id(value: str) -> bool:
    """An 18-character resident ID: known province, a real birth date not in the future, and the
    ISO 7064 MOD 11-2 check character. (Not ``stdnum.cn.ric.is_valid``: it also looks the county
    up in a table that lacks codes in use today, e.g. 440305 Shenzhen Nanshan.)"""
    number = value.upper()
    if number[:2] not in _PROVINCE_CODES or not number[:17].isdigit():
        return False
    try:
        born = _dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not (_dt.date(1900, 1, 1) <= born <= _dt.date.today()):
        return False
    check = (1 - 2 * int(number[:17], 13)) % 11
    return number[17] == ("X" if check == 10 else str(check))


def luhn_ok(digits: str) -> bool:
    return _stdnum("luhn").is_valid(digits)


_MOBILE_PREFIXES = re.compile(r"^1(?:3\d|4[5-9]|5[0-35-9]|6[2567]|7[0-8]|8\d|9[0-35-9])")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


# ---------------------------------------------------------------- pattern detectors

# Boundaries: no ASCII letter or digit may touch a number on either side (CJK text may).
_L = r"(?<![0-9A-Za-z])"
_R = r"(?![0-9A-Za-z])"


@dataclass(frozen=True)
class Pattern:
    """A regular expression, an optional check of each match, and an optional cue nearby."""

    label: str
    regex: re.Pattern[str]
    score: float
    validate: Callable[[str], str | bool | None] | None = None
    #: A cue (e.g. 护照) within ``cue_window`` characters before the match; without it the score
    #: drops to ``score_without_cue``.
    cue: re.Pattern[str] | None = None
    cue_window: int = 24
    score_without_cue: float = 0.0
    #: A character every match contains ("0" = any digit): texts without it are skipped unscanned.
    needs: str = "0"

    def find(self, text: str, has_digit: bool = True) -> Iterable[Span]:
        if (self.needs == "0" and not has_digit) or (self.needs not in ("0", "") and self.needs not in text):
            return
        for m in self.regex.finditer(text):
            start, end = m.span()
            if self.validate is not None:
                verdict = self.validate(m.group())
                if not verdict:
                    continue
                if isinstance(verdict, str):  # the validator narrowed the match (a label)
                    yield Span(start, end, verdict, self.score)
                    continue
            score = self.score
            if self.cue is not None and not self.cue.search(text, max(0, start - self.cue_window), start):
                score = self.score_without_cue
            if score > 0:
                yield Span(start, end, self.label, score)


def _check_card(raw: str) -> str | None:
    d = _digits(raw)
    if not (13 <= len(d) <= 19) or not luhn_ok(d):
        return None
    if d.startswith("62") and len(d) >= 16:
        return "CN_BANK_CARD"
    if (d[0] == "4" and len(d) in (13, 16, 19)) or (len(d) == 16 and (d[:2] in {"51", "52", "53", "54", "55"}
                                                                       or 2221 <= int(d[:4]) <= 2720)):
        return "CREDIT_CARD"
    if (d[:2] in {"34", "37"} and len(d) == 15) or (d.startswith(("6011", "65")) and len(d) == 16):
        return "CREDIT_CARD"
    if d[:2] == "35" and 3528 <= int(d[:4]) <= 3589 and len(d) == 16:
        return "CREDIT_CARD"
    if d.startswith(("955", "60", "68")) and len(d) in (16, 19):  # other Chinese bank debit cards
        return "CN_BANK_CARD"
    return None


def _check_mobile(raw: str) -> bool:
    d = _digits(raw)
    if d.startswith("0086"):
        d = d[4:]
    elif d.startswith("86") and len(d) == 13:
        d = d[2:]
    return len(d) == 11 and bool(_MOBILE_PREFIXES.match(d))


def _check_landline(raw: str) -> bool:
    d = _digits(raw.split("-")[0] + "".join(raw.split("-")[1:2]))
    return 10 <= len(d) <= 12 and d[0] == "0" and d[1] != "0"


def _check_uscc(raw: str) -> bool:
    if raw.isdigit() and len(raw) == 18 and raw[:2] in _PROVINCE_CODES:
        return False  # an all-digit code shaped like a resident ID is judged as one
    return _stdnum("cn.uscc").is_valid(raw)


def _check_ssn(raw: str) -> bool:
    d = _digits(raw)
    if len(d) != 9 or d[:3] in ("000", "666") or d[0] == "9" or d[3:5] == "00" or d[5:] == "0000":
        return False
    return d not in ("123456789", "078051120", "219099999")


def _check_ip(raw: str) -> bool:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        return False
    return True


def _check_date(raw: str) -> bool:
    nums = [int(n) for n in re.findall(r"\d+", raw)]
    months = {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
    word = re.search(r"[A-Za-z]{3,}", raw)
    try:
        if word:
            month = months[word.group()[:3].lower()]
            day = nums[0]
            year = nums[-1]
        elif len(nums) >= 3 and nums[0] > 31:  # year first
            year, month, day = nums[0], nums[1], nums[2]
        elif len(nums) >= 3:  # US month/day/year
            month, day, year = nums[0], nums[1], nums[2]
        else:
            return False
        _dt.date(year, month, day)
    except (KeyError, ValueError, IndexError):
        return False
    return 1900 <= year <= 2100


_IBAN_SHAPE = re.compile(_L + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}" + _R)


def _find_iban(text: str) -> Iterable[Span]:
    iban = _stdnum("iban")
    for m in _IBAN_SHAPE.finditer(text):
        raw = m.group()
        # The greedy match may swallow a following word: take the longest prefix that validates.
        for end in range(len(raw), 14, -1):
            if raw[end - 1] == " " or (end < len(raw) and raw[end].isalnum() and raw[end - 1].isalnum()
                                       and raw[end] != " " and not raw[end - 1].isdigit()):
                continue
            if iban.is_valid(raw[:end]):
                yield Span(m.start(), m.start() + end, "IBAN_CODE", 0.95)
                break


_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")

_URL_TAIL = "\\s<>\"'，。、；：！？（）【】「」《》…"

PATTERNS: tuple[Pattern, ...] = (
    Pattern("CN_ID_CARD", re.compile(_L + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _R),
            0.95, valid_cn_id),
    Pattern("CN_BANK_CARD", re.compile(_L + r"\d(?:[ -]?\d){12,18}" + _R), 0.9, _check_card),
    Pattern("CN_PHONE", re.compile(r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _R),
            0.85, _check_mobile),
    Pattern("CN_PHONE", re.compile(_L + r"(?:\(0\d{2,3}\)|0\d{2,3}-|0\d{2,3} )?[2-8]\d{6,7}(?:-\d{1,4})?" + _R),
            0.75, _check_landline),
    Pattern("PHONE_NUMBER", re.compile(r"(?<![A-Za-z0-9_+])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .-]?[2-9]\d{2}[ .-]\d{4}" + _R),
            0.7),
    Pattern("PHONE_NUMBER", re.compile(r"(?<![A-Za-z0-9_+])\+(?!86)[1-9]\d{0,2}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}" + _R),
            0.7, lambda s: 8 <= len(_digits(s)) <= 15),
    Pattern("CN_USCC", re.compile(_L + r"[1-9ANY][1-9][0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}" + _R), 0.9, _check_uscc),
    Pattern("CN_PASSPORT", re.compile(_L + r"(?:E[A-HJ-NP-Z0-9]\d{7}|[EGDSP]\d{8})" + _R), 0.8,
            cue=re.compile(r"护照|護照|passport|证件|證件", re.I), score_without_cue=0.0),
    Pattern("CN_LICENSE_PLATE",
            re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·• ]?"
                       r"(?=[A-HJ-NP-Z0-9]*\d)(?:[A-HJ-NP-Z0-9]{5,6}|[A-HJ-NP-Z0-9]{4}[挂学警港澳])" + _R),
            0.85),
    Pattern("EMAIL_ADDRESS", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}" + _R),
            0.95, needs="@"),
    Pattern("URL", re.compile(r"(?<![A-Za-z0-9_@.])(?:https?://|www\.)[^" + _URL_TAIL + r"]+(?<![.,;:!?)\]])", re.I), 0.85,
            needs=""),
    Pattern("IP_ADDRESS", re.compile(r"(?<![A-Za-z0-9_.])(?:\d{1,3}\.){3}\d{1,3}(?![A-Za-z0-9_]|\.\d)"), 0.85, _check_ip),
    Pattern("IP_ADDRESS", re.compile(r"(?<![A-Za-z0-9_:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{3,39}(?![A-Za-z0-9_:])"), 0.8, _check_ip,
            needs=":"),
    Pattern("US_SSN", re.compile(_L + r"\d{3}([- ])\d{2}\1\d{4}" + _R), 0.8, _check_ssn),
    Pattern("US_SSN", re.compile(_L + r"\d{9}" + _R), 0.8, _check_ssn,
            cue=re.compile(r"SSN|social security", re.I), cue_window=30, score_without_cue=0.0),
    Pattern("DATE_TIME", re.compile(_L + r"(?:18|19|20)\d{2}(?:年\s?\d{1,2}\s?月\s?\d{1,2}\s?[日号]|[-/.]\d{1,2}[-/.]\d{1,2})" + _R),
            0.8, _check_date),
    Pattern("DATE_TIME", re.compile(_L + r"\d{1,2}/\d{1,2}/(?:18|19|20)\d{2}" + _R), 0.75, _check_date),
    Pattern("DATE_TIME", re.compile(r"\b" + _MONTH + r"\.? \d{1,2}(?:st|nd|rd|th)?,? (?:18|19|20)\d{2}\b"), 0.8, _check_date),
    Pattern("DATE_TIME", re.compile(r"\b\d{1,2}(?:st|nd|rd|th)? (?:of )?" + _MONTH + r",? (?:18|19|20)\d{2}\b"), 0.8,
            _check_date),
)


# ---------------------------------------------------------------- names, places, organisations

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RE = re.compile(f"[{_HAN}]")


@lru_cache(maxsize=1)
def _jieba_posseg():
    try:
        import jieba
        import jieba.posseg as posseg
    except ImportError as exc:
        raise missing_extra("Chinese name/place detection", "guard", exc) from exc
    jieba.setLogLevel(60)
    return posseg


_CN_TITLE_RE = re.compile(
    "(?:" + "|".join(sorted({s for s in lexicon.CN_SURNAMES if len(s) == 2}, key=len)) + f"|[{''.join(s for s in lexicon.CN_SURNAMES if len(s) == 1)}])"
    f"[{_HAN}]{{1,2}}?(?=" + "|".join(lexicon.CN_NAME_TITLES) + ")"
)
_CN_CUE_RE = re.compile(
    "(?:" + "|".join(lexicon.CN_NAME_CUES) + r")\s*(?:是|为|[:：])?\s*"
    "((?:" + "|".join(s for s in lexicon.CN_SURNAMES if len(s) == 2) + f"|[{''.join(s for s in lexicon.CN_SURNAMES if len(s) == 1)}])"
    f"[{_HAN}]{{1,2}})(?![{_HAN}]{{2}})"
)
_CN_ADDRESS_PART = re.compile(
    f"[{_HAN}0-9０-９A-Za-z\\-]{{0,12}}?(?:" + "|".join(sorted(lexicon.CN_ADDRESS_SUFFIXES, key=len, reverse=True)) + ")"
)
_CN_PLACE_START = re.compile(
    "(?:" + "|".join(sorted(lexicon.CN_PROVINCES + lexicon.CN_CITIES, key=len, reverse=True)) + ")"
)
_CN_ORG_RE = re.compile("(?:" + "|".join(sorted(lexicon.CN_ORG_SUFFIXES, key=len, reverse=True)) + ")")
_CN_ORG_WORD_FLAGS = ("n", "ns", "nt", "nz", "nr", "j", "eng", "vn", "an", "l", "m")


def _chinese_entities(text: str) -> list[Span]:
    """Chinese names, addresses and organisations (jieba POS tags plus the rules above)."""
    if not _HAN_RE.search(text):
        return []
    posseg = _jieba_posseg()
    spans: list[Span] = []
    tokens: list[tuple[int, int, str, str]] = []
    pos = 0
    # Past 200k characters the HMM pass is skipped (a name every clause would cost ~70 s per MB):
    # names the dictionary lacks are then found only next to a title or a cue.
    hmm = len(text) <= 200_000
    for piece in _split_for_jieba(text):
        for word, flag in _tag(posseg, piece, hmm):
            tokens.append((pos, pos + len(word), word, flag))
            pos += len(word)
    surnames = lexicon.CN_SURNAMES
    for i, (s, e, word, flag) in enumerate(tokens):
        if flag.startswith("nr") and 2 <= len(word) <= 4 and (word[0] in surnames or word[:2] in surnames) \
                and all(_HAN_RE.match(c) for c in word):
            spans.append(Span(s, e, "PERSON", 0.7))
    for m in _CN_TITLE_RE.finditer(text):
        spans.append(Span(m.start(), m.end(), "PERSON", 0.8))
    for m in _CN_CUE_RE.finditer(text):
        spans.append(Span(m.start(1), m.end(1), "PERSON", 0.85))
    spans.extend(_chinese_addresses(text, tokens))
    spans.extend(_chinese_orgs(text, tokens))
    return spans


_CLAUSE_END = frozenset("，。！？；：、,.!?;:\n")


@lru_cache(maxsize=4096)
def _hmm_tag(clause: str) -> tuple[tuple[str, str], ...]:
    # cached: a streamed answer's clauses are looked at again each time more text arrives
    return tuple((p.word, p.flag) for p in _jieba_posseg().cut(clause, HMM=True))


def _tag(posseg, text: str, hmm: bool = True) -> list[tuple[str, str]]:
    """POS tags: the dictionary alone first (ten times faster than with jieba's HMM); a clause is
    tagged again with the HMM only if it may hold a name the dictionary lacks, i.e. a surname
    left as a single character next to another Chinese character (杨/晓/燕, 郑/静)."""
    fast = [(p.word, p.flag) for p in posseg.cut(text, HMM=False)]
    out: list[tuple[str, str]] = []
    clause: list[tuple[str, str]] = []

    def close() -> None:
        suspect = hmm and any(len(w) == 1 and w in lexicon.CN_SURNAMES and i + 1 < len(clause)
                              and _HAN_RE.match(clause[i + 1][0][0]) for i, (w, _f) in enumerate(clause))
        if suspect:
            out.extend(_hmm_tag("".join(w for w, _f in clause)))
        else:
            out.extend(clause)
        clause.clear()

    for word, flag in fast:
        clause.append((word, flag))
        if word in _CLAUSE_END:
            close()
    close()
    return out


def _split_for_jieba(text: str) -> Iterable[str]:
    """Pieces of at most a few thousand characters, cut after punctuation, so a 1 MB text is
    tagged in bounded memory and jieba's HMM never sees one endless sentence."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + 2000)
        if end < n:
            cut = max(text.rfind(p, start, end) for p in "。！？\n；;.!?")
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _chinese_addresses(text: str, tokens: Sequence[tuple[int, int, str, str]]) -> list[Span]:
    starts = {m.start() for m in _CN_PLACE_START.finditer(text)}
    starts.update(s for s, _e, w, f in tokens if f == "ns" and len(w) >= 2)
    spans = []
    covered = -1
    for start in sorted(starts):
        if start < covered:
            continue
        end, parts, pos = start, 0, start
        while True:
            m = _CN_ADDRESS_PART.match(text, pos)
            if not m or m.end() == pos:
                break
            pos = end = m.end()
            parts += 1
        # "路88号" style numbers after the last part
        m = re.compile(r"[0-9０-９]+(?:号|號)?").match(text, end)
        if m and m.end() > end and parts:
            end = m.end()
            m2 = _CN_ADDRESS_PART.match(text, end)
            while m2 and m2.end() > end:
                end = m2.end()
                m2 = _CN_ADDRESS_PART.match(text, end)
        if parts >= 2 or (parts == 1 and re.search(r"\d", text[start:end])):
            spans.append(Span(start, end, "LOCATION", 0.8))
            covered = end
        elif end - start >= 2 and parts <= 1:
            # a bare province/city name ("上海") is a location too, with a lower score
            name = _CN_PLACE_START.match(text, start)
            if name:
                stop = end if parts else name.end()
                spans.append(Span(start, stop, "LOCATION", 0.6))
                covered = stop
    return spans


def _chinese_orgs(text: str, tokens: Sequence[tuple[int, int, str, str]]) -> list[Span]:
    """An organisation ends with a token that jieba tags ``nt`` or that ends in an organisation
    suffix (银行, 有限公司, 医院); it extends left over noun-like tokens (北京, 协和, 第一)."""
    spans = []
    for i, (s, e, word, flag) in enumerate(tokens):
        suffix = _CN_ORG_RE.search(word)
        if not (flag == "nt" or (suffix and suffix.end() == len(word))):
            continue
        start, j = s, i - 1
        while j >= 0:
            ps, _pe, pword, pflag = tokens[j]
            if not pflag.startswith(_CN_ORG_WORD_FLAGS) or not _HAN_RE.match(pword[0]) or e - ps > 20 \
                    or (len(pword) == 1 and pflag not in ("ns", "nt", "nz")):
                break
            start, j = ps, j - 1
        if e - start >= 4 or (flag == "nt" and e - start >= 2):
            spans.append(Span(start, e, "ORGANIZATION", 0.75))
    # 中国工商银行 + 北京分行: adjacent pieces are one organisation
    spans.sort(key=lambda sp: sp.start)
    merged: list[Span] = []
    for sp in spans:
        if merged and sp.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, sp.end), "ORGANIZATION", 0.75)
        else:
            merged.append(sp)
    return merged


_CAP = r"[A-Z][a-zA-Z'\-]+"
_EN_TITLE_RE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam)\.? (" + _CAP + r"(?: [A-Z]\.)?(?: " + _CAP + r"){0,2})")
_EN_GIVEN_RE = re.compile(r"\b(" + "|".join(sorted(lexicon.EN_GIVEN_NAMES, key=len, reverse=True)) + r")\b"
                          r"((?: [A-Z]\.)?(?: " + _CAP + r"){0,2})")
_EN_SURNAME_RE = re.compile(r"\b([A-Z][a-z]{2,})(?: [A-Z]\.)? (" + "|".join(sorted(lexicon.EN_SURNAMES, key=len, reverse=True)) + r")\b")
_EN_CUE_RE = re.compile(r"\b(?:my name is|name:|named|called|signed,?|regards,|sincerely,)\s+(" + _CAP + r"(?: " + _CAP + r"){0,2})", re.I)
_EN_STREET_RE = re.compile(
    r"\b\d{1,6}(?: [A-Z][a-zA-Z]*\.?| \d+(?:st|nd|rd|th)){1,4} (?:" + "|".join(lexicon.EN_STREET_TYPES) + r")\b\.?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|#)\.? ?\w+)?"
    r"(?:, ?[A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+){0,2})?(?:,? (?:" + "|".join(sorted(lexicon.US_STATE_CODES)) + r"))?(?: \d{5}(?:-\d{4})?)?"
)
_EN_PLACE_RE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in sorted(lexicon.EN_PLACES, key=len, reverse=True)) + r")\b")
_EN_ORG_RE = re.compile(
    r"\b(?:[A-Z][\w&'.-]*(?: (?:of|and|&|for|the))? ){0,4}[A-Z][\w&'.-]* (?:"
    + "|".join(re.escape(s) for s in sorted(lexicon.EN_ORG_SUFFIXES, key=len, reverse=True)) + r")(?![\w])"
)


def _english_entities(text: str) -> list[Span]:
    if not re.search(r"[A-Za-z]", text):
        return []
    spans = []
    for m in _EN_TITLE_RE.finditer(text):
        spans.append(Span(m.start(1), m.end(1), "PERSON", 0.85))
    for m in _EN_GIVEN_RE.finditer(text):
        surname = m.group(2).strip()
        if surname and any(w in lexicon.EN_NOT_NAMES for w in surname.split()):
            surname = ""
        end = m.end(2) if surname else m.end(1)
        spans.append(Span(m.start(1), end, "PERSON", 0.8 if surname else 0.6))
    for m in _EN_SURNAME_RE.finditer(text):
        if m.group(1) not in lexicon.EN_NOT_NAMES:
            spans.append(Span(m.start(), m.end(), "PERSON", 0.7))
    for m in _EN_CUE_RE.finditer(text):
        words = m.group(1).split()
        if words[0] not in lexicon.EN_NOT_NAMES:
            spans.append(Span(m.start(1), m.end(1), "PERSON", 0.85))
    for m in _EN_STREET_RE.finditer(text):
        spans.append(Span(m.start(), m.end(), "LOCATION", 0.85))
    for m in _EN_PLACE_RE.finditer(text):
        spans.append(Span(m.start(), m.end(), "LOCATION", 0.65))
    for m in _EN_ORG_RE.finditer(text):
        first = m.group().split()[0]
        start = m.start() if first not in lexicon.EN_NOT_NAMES else m.start() + len(first) + 1
        if start < m.end() - 4:
            spans.append(Span(start, m.end(), "ORGANIZATION", 0.7))
    return spans


# ---------------------------------------------------------------- putting it together


_ANY_DIGIT = re.compile(r"\d")


def _resolve(spans: Iterable[Span]) -> list[Span]:
    """Overlapping spans: keep the higher score, then the longer one (O(n log n): a 1 MB text
    has tens of thousands of spans)."""
    import bisect

    starts: list[int] = []
    chosen: list[Span] = []  # sorted by start, never overlapping
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        i = bisect.bisect_left(starts, span.start)
        if i > 0 and chosen[i - 1].end > span.start:
            continue
        if i < len(chosen) and chosen[i].start < span.end:
            continue
        starts.insert(i, span.start)
        chosen.insert(i, span)
    return chosen


class PiiDetector:
    """Finds personal data; one instance is reusable and thread-safe.

    Args:
        entities: labels to report (default: all of :data:`LABELS`).
        lang: ``zh`` or ``en`` runs only that language's name/place/organisation rules;
            ``auto`` runs each one whose script appears. Number and pattern detectors always run.
        min_score: spans scoring below this are dropped.
    """

    def __init__(self, entities: Iterable[str] | None = None, lang: Lang = "auto",
                 min_score: float = DEFAULT_MIN_SCORE):
        wanted = set(entities) if entities is not None else set(LABELS)
        unknown = wanted - set(LABELS)
        if unknown:
            raise UsageError(f"unknown PII label(s) {', '.join(sorted(unknown))}; known: {', '.join(LABELS)}")
        if lang not in ("zh", "en", "auto"):
            raise UsageError(f"unknown language '{lang}'; expected zh, en or auto")
        self.entities = frozenset(wanted)
        self.lang = lang
        self.min_score = min_score
        # Each pattern may yield a label other than its own (cards), so keep those that can.
        self._patterns = [p for p in PATTERNS if p.label in wanted or p.label == "CN_BANK_CARD"]
        self._names = bool(wanted & {"PERSON", "LOCATION", "ORGANIZATION"})

    def detect(self, text: str) -> list[Span]:
        """Spans of personal data in ``text``, sorted, not overlapping.

        Raises:
            UsageError: ``text`` is not a string.
            MissingExtraError: the ``guard`` extra is not installed.
        """
        if not isinstance(text, str):
            raise UsageError(f"PII detection needs text, got {type(text).__name__}")
        if not text:
            return []
        found: list[Span] = []
        has_digit = _ANY_DIGIT.search(text) is not None
        for pattern in self._patterns:
            found.extend(pattern.find(text, has_digit))
        found.extend(_find_iban(text) if "IBAN_CODE" in self.entities and has_digit else ())
        if self._names:
            if self.lang in ("zh", "auto"):
                found.extend(_chinese_entities(text))
            if self.lang in ("en", "auto"):
                found.extend(_english_entities(text))
        keep = [s for s in found if s.label in self.entities and s.score >= self.min_score]
        return _resolve(keep)


@lru_cache(maxsize=8)
def default_detector(lang: Lang = "auto") -> PiiDetector:
    return PiiDetector(lang=lang)


def detect_pii(text: str, lang: Lang = "auto", entities: Iterable[str] | None = None) -> list[Span]:
    """Spans of personal data in ``text`` (see :class:`PiiDetector`)."""
    detector = default_detector(lang) if entities is None else PiiDetector(entities, lang)
    return detector.detect(text)
