"""Prometheus metrics of one Gateway, and the hooks other modules call to count what they do.

Every `Gateway` owns a `Metrics` with its own `CollectorRegistry` (tests run many gateways in one
process; nothing is registered globally). `GET /metrics` renders it.

Code that runs inside an FMZ call finds its gateway's `Metrics` through the `CALL` context
variable, which `Gateway.handle` sets once per call (tasks started by the call inherit it). So
the cache, the rate limiter and the read policy count with plain functions:

    from gateway import metrics
    metrics.cache_hit(route, method)             # a public read answered from the cache
    metrics.rate_limit_wait(route, seconds)      # a request waited for the rate limiter
    metrics.cooldown(route, seconds, reason)     # the route stops sending for `seconds`
    metrics.budget(route, used, limit)           # the rate budget in use in the current window
    metrics.retry(route, method)                 # a read is retried (gateway/calls.py)
    metrics.coalesced(route, read)               # a read joined an identical one in flight
    metrics.stream_answer(route, kind, source)   # a streamed symbol answered from "stream" or "rest"
    metrics.stream_event(route, kind, event)     # subscribed, closed, reconnect, resync, capped

Outside a call (background tasks) they go to the most recently created gateway. They never raise.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from gateway.status import StatusBoard

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREFIX = "fmz_gateway"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class CallScope:
    """What one FMZ call accumulates while it runs: upstream time and request count."""

    __slots__ = ("metrics", "upstream_n", "upstream_s")

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.upstream_s = 0.0
        self.upstream_n = 0


CALL: ContextVar[CallScope | None] = ContextVar("fmz_gateway_call", default=None)
_latest: Callable[[], Metrics | None] = lambda: None  # noqa: E731  (weak reference to the newest Metrics)


def active() -> Metrics | None:
    """The Metrics of the call being served, else of the most recently created gateway."""
    scope = CALL.get()
    if scope is not None and scope.metrics is not None:
        return scope.metrics
    return _latest()


class Metrics:
    def __init__(self, board: StatusBoard, collect: Callable[[], Iterable[Any]] | None = None) -> None:
        global _latest
        self.board = board
        self.registry = CollectorRegistry()

        def counter(name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"{PREFIX}_{name}", documentation, labels, registry=self.registry)

        def histogram(name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

        self.requests = counter(
            "requests",
            "FMZ calls answered, by route, method and outcome (ok or the error kind)",
            ("route", "method", "outcome"),
        )
        self.latency = histogram(
            "request_seconds", "Time to answer an FMZ call, in the gateway (upstream included)", ("route", "method")
        )
        self.upstream_requests = counter(
            "upstream_requests",
            "HTTP requests to exchanges, by route and outcome "
            "(ok, 4xx, 5xx, 429, 418, exchange_error, timeout, refused, network, cancelled)",
            ("route", "outcome"),
        )
        self.upstream_latency = histogram(
            "upstream_request_seconds", "Time of one HTTP request to an exchange", ("route",)
        )
        self.retries = counter("read_retries", "Reads retried", ("route", "method"))
        self.coalesced_calls = counter(
            "coalesced_reads",
            "Reads that joined an identical read in flight (single-flight followers)",
            ("route", "read"),
        )
        self.cache_hits = counter("public_cache_hits", "Public reads answered from the cache", ("route", "method"))
        self.rate_limit_waits = counter("rate_limit_waits", "Requests that waited for the rate limiter", ("route",))
        self.rate_limit_wait_seconds = counter(
            "rate_limit_wait_seconds", "Time spent waiting for the rate limiter", ("route",)
        )
        self.cooldowns = counter(
            "cooldowns", "Times a route stopped sending for a while (rate limited, banned)", ("route",)
        )
        self.stream_answers = counter(
            "stream_answers",
            "GetTicker/GetDepth asks on streamed symbols, by source: stream (from memory) or rest (stale, broken)",
            ("route", "kind", "source"),
        )
        self.stream_events = counter(
            "stream_events",
            "Websocket stream events: subscribed, closed, reconnect, resync (book rebuilt), capped",
            ("route", "kind", "event"),
        )
        if collect is not None:
            self.registry.register(_Collector(collect))
        self._children: dict[tuple, Any] = {}
        _latest = weakref.ref(self)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, resolved once: `.labels()` costs microseconds, a dict look-up does not."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- the per-call path -----------------------------------------------------------------------
    def record_call(self, route: str, method: str, outcome: str, seconds: float) -> None:
        self._child(self.requests, route, method, outcome).inc()
        self._child(self.latency, route, method).observe(seconds)

    def upstream(self, route: str, outcome: str, seconds: float, error: str | None = None) -> None:
        self._child(self.upstream_requests, route, outcome).inc()
        self._child(self.upstream_latency, route).observe(seconds)
        self.board.route(route).record_upstream(outcome, time.time(), error)

    # --- counters other modules drive ------------------------------------------------------------
    def cache_hit(self, route: str, method: str) -> None:
        self._child(self.cache_hits, route, method).inc()

    def retry(self, route: str, method: str) -> None:
        self._child(self.retries, route, method_label(method)).inc()

    def coalesced(self, route: str, read: str) -> None:
        self._child(self.coalesced_calls, route, read).inc()

    def stream_answer(self, route: str, kind: str, source: str) -> None:
        self._child(self.stream_answers, route, kind, source).inc()

    def stream_event(self, route: str, kind: str, event: str) -> None:
        self._child(self.stream_events, route, kind, event).inc()

    def rate_limit_wait(self, route: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._child(self.rate_limit_waits, route).inc()
        self._child(self.rate_limit_wait_seconds, route).inc(seconds)
        health = self.board.route(route)
        health.rate_limit_waits += 1
        health.rate_limit_wait_s += seconds

    def cooldown(self, route: str, seconds: float, reason: str = "") -> None:
        self._child(self.cooldowns, route).inc()
        health = self.board.route(route)
        health.cooldown_until = time.time() + max(0.0, seconds)
        health.cooldown_reason = reason[:200]

    def budget(self, route: str, used: float, limit: float | None) -> None:
        health = self.board.route(route)
        health.budget_used = used
        health.budget_limit = limit

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    """Gauges read at scrape time (cached clients, markets age, route health, cooldowns)."""

    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def describe(self) -> list:
        return []  # not collected at registration: the pool does not exist yet

    def collect(self) -> Iterable[Any]:
        return self._collect()


def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def method_label(method: str) -> str:
    """The label of a method `methods.lookup` knows: raw passthrough paths are one label.

    Dispatch labels unknown names `unknown` before calling this; the cut bounds any other caller."""
    return "__api_" if method.startswith("__api_") else method[:32]


# --- the hooks: the current call's gateway, never raising ------------------------------------------


def cache_hit(route: str, method: str) -> None:
    """A public read answered from the cache instead of the exchange."""
    _call("cache_hit", route, method)


def rate_limit_wait(route: str, seconds: float) -> None:
    """A request to the exchange waited `seconds` for the rate limiter."""
    _call("rate_limit_wait", route, seconds)


def cooldown(route: str, seconds: float, reason: str = "") -> None:
    """The route sends nothing for `seconds` (e.g. after a 429 or an IP ban); shown on /status."""
    _call("cooldown", route, seconds, reason)


def budget(route: str, used: float, limit: float | None) -> None:
    """The share of the route's rate budget in use (requests or weight in the current window)."""
    _call("budget", route, used, limit)


def retry(route: str, method: str) -> None:
    _call("retry", route, method)


def coalesced(route: str, read: str) -> None:
    _call("coalesced", route, read)


def stream_answer(route: str, kind: str, source: str) -> None:
    _call("stream_answer", route, kind, source)


def stream_event(route: str, kind: str, event: str) -> None:
    _call("stream_event", route, kind, event)


def _call(name: str, *args: Any) -> None:
    target = active()
    if target is None:
        return
    with contextlib.suppress(Exception):  # counting must never break a call
        getattr(target, name)(*args)
