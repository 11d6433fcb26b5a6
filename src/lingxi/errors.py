"""Every error Lingxi raises on purpose.

The CLI maps a :class:`LingxiError` to one readable line and its ``exit_code``; the HTTP
server maps it to an OpenAI-shaped error body with its ``http_status``. Anything that is not
a ``LingxiError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class LingxiError(Exception):
    """Base class. ``exit_code`` is for the CLI, ``http_status``/``error_type`` for HTTP."""

    exit_code = 1
    http_status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(LingxiError):
    """The caller asked for something that cannot be done as asked (exit 2, HTTP 400)."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


class ConfigError(UsageError):
    """The configuration file is invalid. Holds every problem found, not just the first."""

    code = "invalid_config"

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = f"invalid config {where}{self.problems[0]}"
        else:
            lines = "\n  ".join(self.problems)
            message = f"invalid config {where}{len(self.problems)} problems:\n  {lines}"
        super().__init__(message)


class ModelNotFoundError(UsageError):
    """A model name that is neither configured nor bundled (HTTP 404)."""

    http_status = 404
    code = "model_not_found"

    def __init__(self, name: str, known: list[str], kind: str = "model"):
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(self.known) if self.known else "(none)"
        super().__init__(f"unknown {kind} '{name}'; known: {listed}")


class ModelFileNotFoundError(UsageError):
    """A configured model points at a file or folder that does not exist."""

    code = "model_file_not_found"


class ContextLengthError(UsageError):
    """The prompt does not fit the model's context window."""

    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, context_length: int, max_tokens: int | None = None):
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        extra = f" plus max_tokens {max_tokens}" if max_tokens else ""
        super().__init__(
            f"prompt is {prompt_tokens} tokens{extra}, but the model's context window "
            f"is {context_length} tokens"
        )


class MissingExtraError(LingxiError):
    """An optional dependency is not installed; names the extra that provides it."""

    exit_code = 2
    http_status = 501
    code = "missing_dependency"

    def __init__(self, what: str, extra: str, module: str | None = None):
        self.extra = extra
        mod = f" (module '{module}' is not installed)" if module else ""
        super().__init__(f"{what} needs the '{extra}' extra{mod}: pip install 'lingxi[{extra}]'")


class UpstreamError(LingxiError):
    """An HTTP upstream failed: unreachable, timed out, or answered with an error status.

    Through the gateway it is a 502, except where the upstream judged the *client's* request:
    a 400/413/422 (e.g. context length) stays a 400, and a 429 stays a 429 with Retry-After, so
    client SDKs do not re-send a request that can never succeed, and do back off when asked.
    """

    error_type = "upstream_error"

    def __init__(self, url: str, message: str, status: int | None = None, retryable: bool = False,
                 retry_after_s: float | None = None):
        self.url = url
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        shown = f" ({status})" if status else ""
        super().__init__(f"upstream {url}{shown}: {message}")
        if status in (400, 413, 422):
            self.http_status, self.error_type = 400, "invalid_request_error"
        elif status == 429:
            self.http_status, self.error_type = 429, "rate_limit_error"
        else:
            self.http_status = 502


class EngineError(LingxiError):
    """A local engine failed while loading or generating."""


class NotFoundError(UsageError):
    """A named thing (knowledge base, document, key) does not exist (HTTP 404)."""

    http_status = 404
    code = "not_found"


class AuthError(LingxiError):
    """Missing or invalid credentials (HTTP 401)."""

    exit_code = 2
    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(LingxiError):
    """Valid credentials that may not do this (HTTP 403)."""

    exit_code = 2
    http_status = 403
    error_type = "permission_error"


class RateLimitError(LingxiError):
    """A quota, rate limit or full queue (HTTP 429 with Retry-After)."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def missing_extra(what: str, extra: str, exc: ImportError) -> MissingExtraError:
    """Build the error for ``except ImportError as e: raise missing_extra(..., e) from e``."""
    return MissingExtraError(what, extra, getattr(exc, "name", None))


class UnsupportedMediaTypeError(UsageError):
    """A request body in a content type the endpoint does not take (HTTP 415)."""

    http_status = 415
    code = "unsupported_media_type"


class PayloadTooLargeError(UsageError):
    """A request body over the server's limit (HTTP 413)."""

    http_status = 413
    code = "payload_too_large"


class ContentPolicyError(UsageError):
    """The guard refused a request or an answer: a blocked word, a prompt injection (HTTP 400,
    code ``content_filter``, the code OpenAI uses for filtered content)."""

    code = "content_filter"

    def __init__(self, message: str, reason: str = "policy"):
        super().__init__(message)
        self.reason = reason


class GuardError(LingxiError):
    """A guard detector failed, so the request is refused rather than passed through unchecked
    (fail closed; HTTP 503)."""

    http_status = 503
    error_type = "guard_error"
    code = "guard_failed"
