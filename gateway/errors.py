"""Failures -> FMZ error messages, with secrets scrubbed.

Every failure the docker sees is `"<ccxt class or our kind>: <message>"`, never empty, never a
traceback, never a credential. ccxt messages can carry the request URL (a Binance GET puts its
`signature=` in the query) and exchange replies can echo headers, so every message passes
through `scrub()` with the caller's own secrets before it leaves the process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ccxt.async_support as ccxt

MIN_SECRET_LENGTH = 4
REDACTED = "***"

# Signature-like values that may appear in URLs, headers or bodies quoted by ccxt errors.
_SIGNATURE_PATTERNS = re.compile(
    r"(?i)(signature|sign|ok-access-sign|ok-access-passphrase|x-mbx-apikey|passphrase|secret|api[-_]?key"
    r"|access[-_]?key|secret[-_]?key|password)([\"']?\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)


class GatewayError(Exception):
    """An error of ours with a message meant for the strategy log."""

    kind = "GatewayError"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind:
            self.kind = kind


class BadRequest(GatewayError):
    """The FMZ envelope or its params are malformed."""

    kind = "BadRequest"


class NotSupported(GatewayError):
    """The FMZ function has no ccxt counterpart on this exchange."""

    kind = "NotSupported"


def not_supported(fmz_function: str, exchange_id: str) -> NotSupported:
    return NotSupported(f"{fmz_function} is not supported by {exchange_id}")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and anything shaped like a signature or credential field."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return _SIGNATURE_PATTERNS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def error_message(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The one-line FMZ error text for any exception."""
    return scrub(f"{_kind(exc)}: {_text(exc)}", secrets)


def in_context(exc: BaseException, context: str, kind: str | None = None) -> GatewayError:
    """`exc` explained by what we were doing: "<kind>: <context>: <exc's message>", the kind once."""
    return GatewayError(f"{context}: {_text(exc)}", kind or _kind(exc))


def _kind(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return exc.kind
    if isinstance(exc, ccxt.BaseError):
        return type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "RequestTimeout"
    return "InternalError"


def _text(exc: BaseException) -> str:
    return str(exc).strip() or f"{type(exc).__name__} without a message"


RETRYABLE_READ_ERRORS: tuple[type[BaseException], ...] = (
    ccxt.NetworkError,  # includes RequestTimeout, ExchangeNotAvailable, DDoSProtection, RateLimitExceeded
    ccxt.BadResponse,  # a garbled or truncated reply
)
