"""Guard: personal data, prompt injection and content policy, for Chinese and English text.

- :mod:`lingxi.guard.pii`: find personal data (:func:`detect_pii`).
- :mod:`lingxi.guard.redact`: redact, mask, hash or pseudonymise it, also on a stream.
- :mod:`lingxi.guard.injection`: score prompt injection and jailbreak attempts.
- :mod:`lingxi.guard.policy`: sensitive-word lists with block / warn / log actions.
- :mod:`lingxi.guard.stages`: the gateway stages that run all of the above per request.

Submodules load their heavy parts (jieba, the validators, the classifier) on first use.
"""

from __future__ import annotations

from lingxi.guard.pii import LABELS, PiiDetector, Span, detect_pii

__all__ = ["LABELS", "PiiDetector", "Span", "detect_pii"]
