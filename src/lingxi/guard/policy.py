"""Content policy: sensitive-word lists with Chinese-aware matching, categories and actions.

A :class:`ContentPolicy` holds categories, each with a list of words and an action: ``block``
(refuse the request, or end the answer with an error), ``warn`` (let it through and report it)
or ``log`` (only record it, e.g. in the audit trail). Matching sees through the usual tricks:

- full-width and half-width forms, letter case (NFKC + lower case);
- traditional and simplified characters (both sides are folded to simplified, character by
  character with ``zhconv``);
- spacing and filler between characters: whitespace, punctuation, symbols and zero-width
  characters between two Chinese characters are ignored (``法 轮-功``), and so are separators
  in a chain of single letters (``f.r.e.e``);
- English words match whole words only (``ass`` does not match ``class``).

It uses one Aho-Corasick automaton (``pyahocorasick``) for all words, so the cost does not
grow with the length of the lists. What it does not do: catch homophones, pinyin, or words
split by other words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from lingxi.errors import ContentPolicyError, UsageError, missing_extra
from lingxi.guard._io import HeldTextFilter

PolicyAction = Literal["block", "warn", "log"]
ACTIONS = ("block", "warn", "log")
_SEVERITY = {"log": 0, "warn": 1, "block": 2}


@dataclass(frozen=True)
class Category:
    """A named word list and what to do when one of its words appears."""

    name: str
    action: PolicyAction
    words: tuple[str, ...]


@dataclass(frozen=True)
class PolicyHit:
    """One match: ``text[start:end]`` (offsets into the original text) is ``word`` of ``category``."""

    category: str
    action: str
    word: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return {"category": self.category, "action": self.action, "word": self.word, "start": self.start, "end": self.end}


def _is_cjk(c: str) -> bool:
    return "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"


def _is_sep(c: str) -> bool:
    cat = unicodedata.category(c)
    return c.isspace() or cat[0] in "PSZ" or cat == "Cf"


@lru_cache(maxsize=65536)
def _fold_char(c: str) -> str:
    out = unicodedata.normalize("NFKC", c).lower()
    if len(out) == 1 and _is_cjk(out):
        try:
            from zhconv import convert
        except ImportError:
            return out
        simple = convert(out, "zh-cn")
        return simple if len(simple) == 1 else out
    return out


def fold(text: str) -> tuple[str, list[int], set[int]]:
    """The text as the matcher sees it (folded, separators dropped), for each of its characters
    the index of the original character it came from, and the positions where a word begins
    (after a dropped separator), for whole-word matching of Latin words."""
    out: list[str] = []
    where: list[int] = []
    starts: set[int] = {0}
    pending_sep = False
    for i, c in enumerate(text):
        if _is_sep(c):
            pending_sep = True
            continue
        for f in _fold_char(c):
            if _is_sep(f):
                continue
            if pending_sep and out:
                starts.add(len(out))
            pending_sep = False
            out.append(f)
            where.append(i)
    return "".join(out), where, starts


def _fold_word(word: str) -> str:
    return fold(word)[0]


class ContentPolicy:
    """Sensitive-word matching over all categories at once.

    Args:
        categories: the word lists.

    Raises:
        MissingExtraError: pyahocorasick is not installed (the ``guard`` extra).
        UsageError: an unknown action or an empty word.
    """

    def __init__(self, categories: Iterable[Category]):
        try:
            import ahocorasick
        except ImportError as exc:
            raise missing_extra("the content policy", "guard", exc) from exc
        self.categories = list(categories)
        self._automaton = ahocorasick.Automaton()
        self.max_word = 0
        for cat in self.categories:
            if cat.action not in ACTIONS:
                raise UsageError(f"category '{cat.name}': unknown action '{cat.action}'; expected block, warn or log")
            for word in cat.words:
                key = _fold_word(word)
                if not key:
                    continue
                entries = self._automaton.get(key, ())
                self._automaton.add_word(key, (*entries, (cat.name, cat.action, word)))
                self.max_word = max(self.max_word, len(key))
        self._ready = len(self._automaton) > 0
        if self._ready:
            self._automaton.make_automaton()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Mapping[str, object]], base_dir: str | Path | None = None) -> ContentPolicy:
        """From ``{name: {"action": ..., "words": [...], "files": [...]}}`` (one word per line in a file)."""
        cats = []
        for name, spec in data.items():
            words = list(spec.get("words", []) or [])
            for file in spec.get("files", []) or []:
                path = Path(base_dir or ".") / str(file)
                try:
                    words += [w.strip() for w in path.read_text(encoding="utf-8").splitlines()
                              if w.strip() and not w.startswith("#")]
                except OSError as exc:
                    raise UsageError(f"category '{name}': cannot read word list {path}: {exc}") from None
            cats.append(Category(name, str(spec.get("action", "block")), tuple(words)))  # type: ignore[arg-type]
        return cls(cats)

    def check(self, text: str) -> list[PolicyHit]:
        """Every match in ``text``, in order of position."""
        if not self._ready or not text:
            return []
        folded, where, starts = fold(text)
        hits = []
        for end, entries in self._automaton.iter(folded):
            start = end - len(_fold_word(entries[0][2])) + 1
            if folded[start].isascii() and folded[start].isalnum() and not self._whole_word(folded, starts, start, end):
                continue
            for cat, action, word in entries:
                hits.append(PolicyHit(cat, action, word, where[start], where[end] + 1))
        return sorted(hits, key=lambda h: (h.start, -_SEVERITY[h.action]))

    @staticmethod
    def _whole_word(folded: str, starts: set[int], start: int, end: int) -> bool:
        """A Latin word must not sit inside a longer Latin word."""
        def alnum(i: int) -> bool:
            return 0 <= i < len(folded) and folded[i].isascii() and folded[i].isalnum()

        left_ok = start in starts or not alnum(start - 1)
        right_ok = (end + 1) in starts or not alnum(end + 1)
        return left_ok and right_ok

    def pending_start(self, text: str) -> int:
        """The index in ``text`` from which its end could be the beginning of a listed word."""
        if not self._ready or not text:
            return len(text)
        tail = text[-(3 * self.max_word + 8):]
        folded, where, _ = fold(tail)
        for n in range(min(self.max_word, len(folded)), 0, -1):
            if self._automaton.match(folded[-n:]):
                return len(text) - len(tail) + where[-n]
        return len(text)

    @staticmethod
    def decision(hits: Iterable[PolicyHit]) -> str | None:
        """The strongest action among ``hits`` (block > warn > log), or None."""
        best = None
        for h in hits:
            if best is None or _SEVERITY[h.action] > _SEVERITY[best]:
                best = h.action
        return best

    def enforce(self, text: str, where: str = "input") -> list[PolicyHit]:
        """:meth:`check`, raising :class:`ContentPolicyError` on a ``block`` hit."""
        hits = self.check(text)
        blocked = sorted({h.category for h in hits if h.action == "block"})
        if blocked:
            raise ContentPolicyError(f"the {where} was blocked by the content policy (category: {', '.join(blocked)})",
                                     reason="policy")
        return hits


class PolicyStream(HeldTextFilter):
    """Checks an answer as it streams: emits text up to where a listed word could still be
    completing, and raises :class:`ContentPolicyError` as soon as a ``block`` word is complete.
    ``warn`` and ``log`` hits are collected in :attr:`hits`."""

    def __init__(self, policy: ContentPolicy):
        super().__init__()
        self.policy = policy
        self.hits: list[PolicyHit] = []

    def _emit(self, final: bool) -> str:
        ctx, buf = self._context, self._pending
        if not buf:
            return ""
        found = [h for h in self.policy.check(ctx + buf) if h.end > len(ctx)]
        cut = len(buf) if final else self.policy.pending_start(ctx + buf) - len(ctx)
        cut = max(0, min(cut, len(buf)))
        done = [h for h in found if h.end - len(ctx) <= cut]
        if any(h.action == "block" for h in done):
            blocked = sorted({h.category for h in done if h.action == "block"})
            raise ContentPolicyError(f"the answer was blocked by the content policy (category: {', '.join(blocked)})")
        shift = self._offset - len(ctx)
        self.hits.extend(PolicyHit(h.category, h.action, h.word, h.start + shift, h.end + shift) for h in done)
        out = buf[:cut]
        self._context = (ctx + out)[-(3 * self.policy.max_word + 8):]
        self._pending = buf[cut:]
        self._offset += cut
        return out
