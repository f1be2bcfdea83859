"""GET /metrics: Prometheus text from a registry of each gateway's own, counting what the gateway does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.app import create_app
from gateway.clients import ClientPool
from gateway.dispatch import Gateway
from gateway.settings import parse_settings
from gateway.upstream import instrument
from tests.conftest import OKX_SECRET_KEY, REPLIES, Fake, GatewayClient, gateway_config
from tests.fakes.server import BackgroundServer, Fault


@pytest.fixture
def instrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ccxt client the pool builds is instrumented (what clients.py's `_build` does; idempotent)."""
    original = ClientPool._build

    def build(self: ClientPool, venue: Any, credentials: dict) -> Any:
        exchange = original(self, venue, credentials)
        instrument(exchange, venue.route)
        return exchange

    monkeypatch.setattr(ClientPool, "_build", build)


@contextlib.contextmanager
def serve(fake_binance: Fake, fake_okx: Fake, **extra: Any) -> Iterator[GatewayClient]:
    """A gateway of the test's own (fresh counters) on a loopback port, against the fakes only
    (`exchanges` adds routes to the fakes' ones; no route reaches a real exchange)."""
    config = gateway_config(fake_binance, fake_okx, allow_any_ccxt_exchange=False)
    config["exchanges"].update(extra.pop("exchanges", {}))
    config.update(extra)
    app = create_app(parse_settings(config))
    server = BackgroundServer(app).start()
    try:
        with httpx.Client(timeout=30) as http:
            yield GatewayClient(server.url, http, app, {"okx": (OKX_SECRET_KEY,), "okx-demo": (OKX_SECRET_KEY,)})
    finally:
        server.stop()


def scrape(client: GatewayClient) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from GET /metrics."""
    response = client.http.get(f"{client.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    REPLIES.append(response.text)
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def observed(instrumented: None, fake_binance: Fake, fake_okx: Fake) -> Iterator[GatewayClient]:
    with serve(fake_binance, fake_okx) as client:
        yield client


def test_calls_are_counted_by_route_method_and_outcome(observed: GatewayClient):
    for _ in range(2):
        observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    error = observed.call("binance", "ticker", {"symbol": "NOPE_USDT"})["error"]
    observed.call("nosuchexchange", "ticker", {"symbol": "BTC_USDT"})
    samples = scrape(observed)
    requests = "fmz_gateway_requests_total"
    assert value(samples, requests, route="binance", method="ticker", outcome="ok") == 2
    assert value(samples, requests, route="binance", method="ticker", outcome=error.partition(":")[0]) == 1
    assert value(samples, requests, route="-", method="ticker", outcome="BadRequest") == 1  # not one label per URL
    assert value(samples, "fmz_gateway_request_seconds_count", route="binance", method="ticker") == 3
    assert value(samples, "fmz_gateway_request_seconds_bucket", route="binance", method="ticker", le="+Inf") == 3


def test_upstream_requests_are_counted_and_timed_by_route_and_outcome(observed: GatewayClient, fake_binance: Fake):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    before = scrape(observed)
    fake_binance.faults.inject(Fault(status=503, body=b"busy", content_type="text/plain"), "/api/v3/ticker/24hr")
    observed.data("binance", "ticker", {"symbol": "ETH_USDT"})  # 503, retried, then ok
    after = scrape(observed)
    upstream = "fmz_gateway_upstream_requests_total"
    assert (
        value(after, upstream, route="binance", outcome="5xx") - value(before, upstream, route="binance", outcome="5xx")
        == 1
    )
    assert (
        value(after, upstream, route="binance", outcome="ok") - value(before, upstream, route="binance", outcome="ok")
        == 1
    )
    assert value(after, "fmz_gateway_upstream_request_seconds_count", route="binance") >= 3  # markets + tickers
    assert value(after, "fmz_gateway_read_retries_total", route="binance", method="ticker") == 1


def test_coalesced_reads_are_counted(observed: GatewayClient, fake_binance: Fake):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})  # markets loaded
    fake_binance.faults.latency_ms = 200
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: observed.call("binance", "ticker", {"symbol": "BTC_USDT"}), range(8)))
    finally:
        fake_binance.faults.latency_ms = 0
    assert all("data" in r for r in replies)
    samples = scrape(observed)
    assert value(samples, "fmz_gateway_coalesced_reads_total", route="binance", read="ticker") >= 1


def test_hooks_other_modules_call(observed: GatewayClient):
    gateway: Gateway = observed.app.state.gateway
    scope = metrics.CallScope(gateway.metrics)

    async def inside_a_call() -> None:  # what the cache and the rate limiter do while serving a call
        token = metrics.CALL.set(scope)
        try:
            metrics.cache_hit("binance", "ticker")
            metrics.cache_hit("binance", "ticker")
            metrics.rate_limit_wait("binance", 0.25)
            metrics.cooldown("binance", 30, "418 from binance")
            metrics.budget("binance", 600, 1200)
        finally:
            metrics.CALL.reset(token)

    asyncio.run(inside_a_call())
    samples = scrape(observed)
    assert value(samples, "fmz_gateway_public_cache_hits_total", route="binance", method="ticker") == 2
    assert value(samples, "fmz_gateway_rate_limit_waits_total", route="binance") == 1
    assert value(samples, "fmz_gateway_rate_limit_wait_seconds_total", route="binance") == 0.25
    assert value(samples, "fmz_gateway_cooldowns_total", route="binance") == 1
    assert 29 < value(samples, "fmz_gateway_cooldown_remaining_seconds", route="binance") <= 30
    assert value(samples, "fmz_gateway_rate_budget_used_ratio", route="binance") == 0.5


def test_hooks_outside_a_call_go_to_the_newest_gateway_and_never_raise():
    first = Gateway(parse_settings({}))
    second = Gateway(parse_settings({}))
    metrics.cache_hit("binance", "depth")
    assert 'route="binance"' in second.metrics.render().decode()
    assert 'fmz_gateway_public_cache_hits_total{method="depth"' not in first.metrics.render().decode()
    metrics.rate_limit_wait("binance", "not a number")  # type: ignore[arg-type]  # swallowed, not raised


def test_cached_clients_and_markets_age(observed: GatewayClient):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    observed.data("binance", "accounts")
    samples = scrape(observed)
    assert value(samples, "fmz_gateway_cached_clients", kind="public") >= 1
    assert value(samples, "fmz_gateway_cached_clients", kind="private") == 1
    assert value(samples, "fmz_gateway_market_scopes") >= 1
    assert 0 <= value(samples, "fmz_gateway_markets_age_seconds", route="binance") < 60
    assert ("fmz_gateway_markets_age_seconds", (("route", "binance"),)) in samples
    assert value(samples, "fmz_gateway_route_up", route="binance") == 1


def test_each_gateway_has_its_own_registry(fake_binance: Fake, fake_okx: Fake):
    with serve(fake_binance, fake_okx) as one, serve(fake_binance, fake_okx) as other:
        one.data("binance", "ticker", {"symbol": "BTC_USDT"})
        assert value(scrape(one), "fmz_gateway_requests_total", route="binance", method="ticker", outcome="ok") == 1
        assert value(scrape(other), "fmz_gateway_requests_total", route="binance", method="ticker", outcome="ok") == 0


def test_metrics_only_answers_get(observed: GatewayClient):
    response = observed.http.delete(f"{observed.url}/metrics")
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()
