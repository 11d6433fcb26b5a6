"""Replace personal data: redact, mask, hash or pseudonymise, on whole texts and on streams.

- :class:`Redactor` applies a per-label policy to the spans :mod:`lingxi.guard.pii` finds.
- :class:`Pseudonyms` is one request's reversible mapping (``<PERSON_1>`` <-> the real value);
  it lives as long as the object, never on disk.
- :class:`StreamRedactor` redacts text that arrives in pieces. It holds back only the tail that
  could still be the beginning of an entity (a run of number/ASCII characters, a run of
  capitalised English words, a run of Chinese characters, each capped) plus any entity found
  touching that tail, so a phone number split across two pieces is caught and the rest of the
  answer flows without delay.
- :class:`StreamRestorer` puts the real values back into a stream that carries placeholders.

Fail closed: a detector that raises makes :meth:`Redactor.redact` raise
:class:`~lingxi.errors.GuardError` instead of returning the text unredacted (``fail_open=True``
turns that off, for offline tools that prefer a partial result).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from lingxi.errors import GuardError, LingxiError, UsageError
from lingxi.guard._io import HeldTextFilter, PieceFilter
from lingxi.guard.pii import LABELS, Lang, PiiDetector, Span, default_detector

Action = Literal["redact", "mask", "hash", "pseudonymize", "keep"]
ACTIONS: tuple[str, ...] = ("redact", "mask", "hash", "pseudonymize", "keep")

#: Placeholders produced by pseudonymisation, e.g. ``<PERSON_1>``, ``<CN_PHONE_12>``.
PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z_]*?)_(\d+)>")


class Pseudonyms:
    """One request's reversible mapping between real values and placeholders."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, label: str, value: str) -> str:
        key = (label, value)
        if key not in self.by_value:
            n = self._counts.get(label, 0) + 1
            self._counts[label] = n
            ph = f"<{label}_{n}>"
            self.by_value[key] = ph
            self.by_placeholder[ph] = value
        return self.by_value[key]

    def restore(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its real value."""
        if not self.by_placeholder:
            return text
        return PLACEHOLDER_RE.sub(lambda m: self.by_placeholder.get(m.group(), m.group()), text)

    def __len__(self) -> int:
        return len(self.by_placeholder)


def mask_value(label: str, value: str) -> str:
    """``value`` with most of its characters replaced by ``*``; separators and a recognisable
    part stay (the last 4 digits of a number, the surname of a Chinese name, an email's domain)."""
    if label == "EMAIL_ADDRESS" and "@" in value:
        local, _, domain = value.partition("@")
        return local[:1] + "*" * max(1, len(local) - 1) + "@" + domain
    alnum = [i for i, c in enumerate(value) if c.isalnum()]
    if label in ("CN_PHONE", "PHONE_NUMBER") and len(alnum) >= 11:
        keep = set(alnum[:3] + alnum[-4:]) if label == "CN_PHONE" else set(alnum[-4:])
    elif sum(c.isdigit() for c in value) >= 6:
        keep = set(alnum[-4:])
    elif label == "PERSON" and value[:1] and "\u4e00" <= value[0] <= "\u9fff":
        keep = {0}
    else:
        keep = set()
    return "".join(c if (i in keep or not c.isalnum()) else "*" for i, c in enumerate(value))


@dataclass
class Redaction:
    """The outcome of redacting one text: the new text and the spans (offsets into the input)."""

    text: str
    spans: list[Span] = field(default_factory=list)


class Redactor:
    """Applies a per-label action to detected personal data.

    Args:
        policy: label -> action (``redact`` -> ``<LABEL>``, ``mask`` -> ``138****5678``,
            ``hash`` -> ``<LABEL:1f2e3d4c5b>``, ``pseudonymize`` -> ``<LABEL_n>`` reversible within
            one :class:`Pseudonyms`, ``keep``); labels not named get ``default``.
        default: the action for labels the policy does not name.
        detector: the :class:`~lingxi.guard.pii.PiiDetector` (default: all labels, ``lang``).
        hash_key: HMAC key for ``hash`` (without one, a plain SHA-256: anyone can test guesses).
        fail_open: on a detector failure return the text unchanged instead of raising.

    Raises:
        UsageError: an unknown label or action in the policy.
    """

    def __init__(self, policy: Mapping[str, str] | None = None, default: str = "redact",
                 detector: PiiDetector | None = None, lang: Lang = "auto", hash_key: bytes | None = None,
                 fail_open: bool = False):
        policy = dict(policy or {})
        bad = [f"{k}={v}" for k, v in policy.items() if k not in LABELS or v not in ACTIONS]
        if default not in ACTIONS:
            bad.append(f"default={default}")
        if bad:
            raise UsageError(f"bad PII policy entries {', '.join(bad)}; labels: {', '.join(LABELS)}; "
                             f"actions: {', '.join(ACTIONS)}")
        self.policy = policy
        self.default = default
        self.detector = detector or default_detector(lang)
        self.hash_key = hash_key
        self.fail_open = fail_open

    def action(self, label: str) -> str:
        return self.policy.get(label, self.default)

    def detect(self, text: str) -> list[Span]:
        try:
            return [s for s in self.detector.detect(text) if self.action(s.label) != "keep"]
        except LingxiError:
            raise
        except Exception as exc:  # a detector bug must not let raw text through
            if self.fail_open:
                return []
            raise GuardError(f"PII detection failed ({type(exc).__name__}: {exc}); refused rather than "
                             "passed through unredacted") from exc

    def replacement(self, span: Span, value: str, pseudonyms: Pseudonyms | None) -> str:
        action = self.action(span.label)
        if action == "mask":
            return mask_value(span.label, value)
        if action == "hash":
            data = value.encode("utf-8")
            digest = (hmac.new(self.hash_key, data, hashlib.sha256) if self.hash_key
                      else hashlib.sha256(data)).hexdigest()
            return f"<{span.label}:{digest[:10]}>"
        if action == "pseudonymize":
            if pseudonyms is None:
                raise UsageError("pseudonymize needs a Pseudonyms mapping for the request")
            return pseudonyms.placeholder(span.label, value)
        return f"<{span.label}>"

    def apply(self, text: str, spans: Iterable[Span], pseudonyms: Pseudonyms | None = None) -> str:
        out, pos = [], 0
        for span in sorted(spans, key=lambda s: s.start):
            if span.start < pos:
                continue
            out.append(text[pos:span.start])
            out.append(self.replacement(span, text[span.start:span.end], pseudonyms))
            pos = span.end
        out.append(text[pos:])
        return "".join(out)

    def redact(self, text: str, pseudonyms: Pseudonyms | None = None) -> Redaction:
        """Detect and replace; returns the new text and the spans found (offsets into ``text``).

        Raises:
            GuardError: the detector failed (unless ``fail_open``).
        """
        spans = self.detect(text)
        return Redaction(self.apply(text, spans, pseudonyms), spans)


def redact(text: str, policy: Mapping[str, str] | None = None, lang: Lang = "auto") -> str:
    """``text`` with its personal data replaced per ``policy`` (default: ``<LABEL>``)."""
    return Redactor(policy, lang=lang).redact(text, Pseudonyms()).text


# ---------------------------------------------------------------- streams

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: Tails that may still grow into an entity, with the most characters each may hold back.
_TAILS: tuple[tuple[re.Pattern[str], int], ...] = (
    # numbers in spaced groups, then any printable-ASCII token (emails, URLs, IBANs, cards, IPs)
    (re.compile(r"(?:[+(]?[0-9A-Z][0-9A-Z)\-.:/]{0,7} )*[\x21-\x7e]*\Z"), 256),
    # capitalised English words (names, streets, organisations, "March 3, 1985")
    (re.compile(r"(?:(?:[A-Z0-9][\w'.,&\-]*|of|and|the|de|van|von|at) )*[\w'.,&\-]*\Z"), 96),
    # Chinese characters with digits and letters (names before their title, addresses, dates)
    (re.compile(f"[{_HAN}0-9A-Za-z·\\-]*\\Z"), 40),
)
#: Characters of already-emitted text kept as left context for the detectors (cues, boundaries).
_CONTEXT = 32


def hold_start(text: str) -> int:
    """The index from which ``text`` could still be completing an entity."""
    n = len(text)
    start = n
    for pattern, cap in _TAILS:
        m = pattern.search(text, max(0, n - cap))
        if m:
            start = min(start, m.start())
    return start


class StreamRedactor(HeldTextFilter):
    """Redacts a text that arrives in pieces; call :meth:`feed` per piece and :meth:`flush` at the end.

    Args:
        redactor: the policy and detector.
        pseudonyms: the request's mapping, for ``pseudonymize``.
        max_hold: the most characters ever held back (a longer entity still being typed is
            redacted as found so far).
        min_emit: wait until at least this many characters are safe to emit before running the
            detectors (each run costs ~0.3-2 ms; word-sized pieces would pay it per word).
    """

    def __init__(self, redactor: Redactor, pseudonyms: Pseudonyms | None = None, max_hold: int = 2048,
                 min_emit: int = 24):
        self.redactor = redactor
        self.pseudonyms = pseudonyms
        super().__init__()
        self.max_hold = max_hold
        self.min_emit = min_emit
        self.spans: list[Span] = []  # offsets into the whole raw stream

    def _emit(self, final: bool) -> str:
        buf = self._pending
        if not buf:
            return ""
        ctx = self._context
        forced = False
        if not final:
            cut = hold_start(buf)
            forced = cut < len(buf) - self.max_hold
            if forced:
                cut = len(buf) - self.max_hold
            if cut <= 0 or (cut < self.min_emit and not forced):
                return ""  # all of it may still be completing, or too little to be worth a detection run
        spans = [Span(max(s.start - len(ctx), 0), s.end - len(ctx), s.label, s.score)
                 for s in self.redactor.detect(ctx + buf) if s.end > len(ctx)]
        if final:
            cut = len(buf)
        else:
            for span in spans:
                if span.start < cut < span.end:
                    cut = span.end if forced else span.start
        if cut <= 0:
            return ""
        done = [s for s in spans if s.end <= cut]
        out = self.redactor.apply(buf[:cut], done, self.pseudonyms)
        self.spans.extend(Span(s.start + self._offset, s.end + self._offset, s.label, s.score) for s in done)
        self._context = (ctx + buf[:cut])[-_CONTEXT:]
        self._pending = buf[cut:]
        self._offset += cut
        return out


_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z_]*\d*\Z")


class StreamRestorer(PieceFilter):
    """Puts real values back for the placeholders of one :class:`Pseudonyms` in a stream,
    holding back only a trailing ``<PERS`` that may be half a placeholder."""

    def __init__(self, pseudonyms: Pseudonyms):
        self.pseudonyms = pseudonyms
        self._pending = ""

    def feed(self, piece: str) -> str:
        buf = self._pending + piece
        m = _PARTIAL_PLACEHOLDER.search(buf, max(0, len(buf) - 48))
        cut = m.start() if m else len(buf)
        self._pending = buf[cut:]
        return self.pseudonyms.restore(buf[:cut])

    def flush(self) -> str:
        out, self._pending = self.pseudonyms.restore(self._pending), ""
        return out
