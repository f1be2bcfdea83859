"""Failures -> FMZ error messages, with secrets scrubbed.

Every failure the docker sees is `"<kind>: <message>"`, never empty, never a traceback, never a
credential. The kind is the ccxt exception class for exchange failures (`InsufficientFunds`,
`RequestTimeout`, ...) and one of ours for the rest:

    GatewayError                  anything the gateway itself reports
    ├── BadRequest                the envelope or its params are malformed
    ├── NotSupported              the FMZ function has no ccxt counterpart on this exchange
    ├── MissingCredentials        a private call without keys          (kind: AuthenticationError)
    ├── UnknownRoute              a route that names no ccxt exchange  (kind: BadRequest)
    ├── SandboxUnavailable        a sandbox route whose exchange has no testnet (kind: NotSupported)
    ├── MarketsUnavailable        the exchange did not give its markets; answered at once for a while
    ├── DeadlineExceeded          no answer within server.request_timeout  (kind: RequestTimeout)
    ├── RequestCancelled          the call that ran a shared placement went away
    └── OrderOutcome              what happened to an order whose answer was lost or garbled
        ├── OrderNotSent          the gateway stopped before sending (a read it needed failed)
        ├── OrderNotPlaced        the exchange confirms it holds no such order: safe to send again
        ├── OrderStatusUnknown    the order may exist: look for its client id before sending again
        └── OrderNotCancelled     the cancel did not take: the order is still open, or was filled

ccxt messages can carry the request URL (a Binance GET puts its `signature=` in the query) and
exchange replies can echo headers, so every message passes through `scrub()` with the caller's
own secrets before it leaves the process. Replies are scrubbed value by value (`scrub_values`),
never as encoded bytes: a numeric passphrase must not rewrite a price or an order id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import ccxt.async_support as ccxt

MIN_SECRET_LENGTH = 4
# Secrets at least this long are removed wherever they occur; shorter ones only as a whole token
# (not inside a longer run of letters and digits), so that `12345678` never mangles an order id.
SUBSTRING_SECRET_LENGTH = 12
REDACTED = "***"

# Signature-like values that may appear in URLs, headers or bodies quoted by ccxt errors.
_SIGNATURE_PATTERNS = re.compile(
    r"(?i)(signature|sign|ok-access-sign|ok-access-passphrase|x-mbx-apikey|passphrase|secret|api[-_]?key"
    r"|access[-_]?key|secret[-_]?key|password)([\"']?\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)


class GatewayError(Exception):
    """An error of ours with a message meant for the strategy log.

    `kind` is the word before the colon; it defaults to the class name. `in_context()` builds
    instances whose kind is that of the failure they explain."""

    kind = "GatewayError"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            cls.kind = cls.__name__

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind:
            self.kind = kind


class BadRequest(GatewayError):
    """The FMZ envelope or its params are malformed."""


class NotSupported(GatewayError):
    """The FMZ function has no ccxt counterpart on this exchange."""


class MissingCredentials(GatewayError):
    kind = "AuthenticationError"


class UnknownRoute(GatewayError):
    kind = "BadRequest"


class SandboxUnavailable(GatewayError):
    """Never served live instead."""

    kind = "NotSupported"


class MarketsUnavailable(GatewayError):
    """The exchange failed to give its markets; calls are answered at once until the next try."""


class DeadlineExceeded(GatewayError):
    kind = "RequestTimeout"


class RequestCancelled(GatewayError):
    pass


class OrderOutcome(GatewayError):
    """What is known of an order whose answer was lost or garbled (see gateway/outcomes.py)."""


class OrderNotSent(OrderOutcome):
    pass


class OrderNotPlaced(OrderOutcome):
    pass


class OrderStatusUnknown(OrderOutcome):
    pass


class OrderNotCancelled(OrderOutcome):
    pass


def not_supported(fmz_function: str, exchange_id: str) -> NotSupported:
    return NotSupported(f"{fmz_function} is not supported by {exchange_id}")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and anything shaped like a signature or credential field."""
    for secret in secrets:
        text = _without_secret(text, secret)
    return _SIGNATURE_PATTERNS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def _without_secret(text: str, secret: str) -> str:
    if not secret or len(secret) < MIN_SECRET_LENGTH or secret not in text:
        return text
    if len(secret) >= SUBSTRING_SECRET_LENGTH:
        return text.replace(secret, REDACTED)
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, text)


def scrub_values(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret removed from its strings (keys included); numbers are left alone.

    Returns `value` itself when nothing needed scrubbing, so the common case allocates nothing."""
    live = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
    if not live:
        return value
    return _scrub_walk(value, live)


def _scrub_walk(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = _without_secret(value, secret)
        return value
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key = _scrub_walk(key, secrets) if isinstance(key, str) else key
            new_item = _scrub_walk(item, secrets)
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [_scrub_walk(item, secrets) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items
    return value


def error_message(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The one-line FMZ error text for any exception."""
    return scrub(f"{_kind(exc)}: {_text(exc)}", secrets)


def in_context(exc: BaseException, context: str, cls: type[GatewayError] = GatewayError) -> GatewayError:
    """`exc` explained by what we were doing: "<kind>: <context>: <exc's message>", the kind once.

    With `cls` given, the kind is that class's; otherwise the kind of `exc`."""
    if cls is GatewayError:
        return GatewayError(f"{context}: {_text(exc)}", _kind(exc))
    return cls(f"{context}: {_text(exc)}")


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
