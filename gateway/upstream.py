"""Every HTTP request to an exchange, timed and counted.

`instrument(exchange, route)` wraps a ccxt instance's low-level `fetch(url, method, headers,
body)` (and `on_rest_response`, to learn the HTTP status of an answer ccxt turns into an
exception). Each request is counted by route and outcome on the gateway's metrics, its time is
added to the FMZ call it serves (`metrics.CALL`: dispatch logs it as upstream ms), and the route's
`RouteHealth` keeps its last outcome (that is how /healthz sees a refusing or rate-limiting
exchange). Rate-limiter waits happen before `fetch` and are not upstream time.

Outcomes: ok; 429; 418; 4xx; 5xx; exchange_error (an error in a 2xx answer); timeout;
refused (no connection); network (dropped, reset, ...); cancelled (our own deadline).
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any

import aiohttp
import ccxt.async_support as ccxt

from gateway import metrics
from gateway.credentials import SECRET_FIELDS
from gateway.errors import error_message

_STATUS: ContextVar[list | None] = ContextVar("fmz_gateway_upstream_status", default=None)


def instrument(exchange: Any, route: str) -> None:
    """Time and count every HTTP request `exchange` makes for `route`. Idempotent."""
    if getattr(exchange, "_gateway_instrumented", False):
        return
    fetch = exchange.fetch
    on_rest_response = exchange.on_rest_response
    built_for = metrics.active()  # the gateway whose call built this client; the call's own wins

    def on_response(code, reason, url, method, response_headers, response_body, request_headers, request_body):
        slot = _STATUS.get()
        if slot is not None:
            slot[0] = code
        return on_rest_response(
            code, reason, url, method, response_headers, response_body, request_headers, request_body
        )

    async def timed_fetch(url, method="GET", headers=None, body=None):
        slot: list = [None]
        token = _STATUS.set(slot)
        started = time.perf_counter()
        try:
            result = await fetch(url, method, headers, body)
        except BaseException as exc:
            _record(exchange, route, built_for, time.perf_counter() - started, slot[0], exc)
            raise
        finally:
            _STATUS.reset(token)
        _record(exchange, route, built_for, time.perf_counter() - started, slot[0], None)
        return result

    exchange.fetch = timed_fetch
    exchange.on_rest_response = on_response
    exchange._gateway_instrumented = True


def _record(
    exchange: Any, route: str, built_for: Any, seconds: float, status: int | None, exc: BaseException | None
) -> None:
    try:
        scope = metrics.CALL.get()
        target = built_for
        if scope is not None:
            scope.upstream_s += seconds
            scope.upstream_n += 1
            target = scope.metrics or built_for
        if target is None:
            return
        outcome = classify(status, exc)
        error = None
        if outcome != "ok" and exc is not None and outcome != "cancelled":
            secrets = tuple(v for v in (getattr(exchange, a, None) for a in SECRET_FIELDS) if isinstance(v, str))
            error = error_message(exc, secrets)[:1000]  # scrubbed whole: a cut must not split a secret
            if status is not None:
                error = f"HTTP {status}: {error}"
        target.upstream(route, outcome, seconds, error)
    except Exception:  # counting must never break a request
        pass


def classify(status: int | None, exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if status is not None:
        if status == 429 or status == 418:
            return str(status)
        if status >= 500:
            return "5xx"
        if status >= 400:
            return "4xx"
        return "ok" if exc is None else "exchange_error"
    if exc is None:
        return "ok"
    if isinstance(exc, ccxt.RequestTimeout):
        return "timeout"
    if isinstance(exc.__cause__, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ccxt.NetworkError):
        return "network"
    return "exchange_error"
