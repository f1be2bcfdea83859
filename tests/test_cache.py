"""The public micro-cache, through HTTP: off by default, per route, never for private reads."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.app import create_app
from gateway.cache import PublicCache, lifetime
from gateway.settings import parse_settings
from tests.conftest import API_KEY, CANARY_SECRET, REPLIES, Fake, gateway_config
from tests.fakes.server import BackgroundServer


def test_lifetimes_come_from_the_setting_by_read_kind():
    ttls = {"ticker": 0.1, "tickers": 0.5}
    assert lifetime(ttls, ("ticker", "BTC/USDT")) == 0.1
    assert lifetime(ttls, ("bidsasks", None)) == 0.5  # GetTickers' second read shares its lifetime
    assert lifetime(ttls, ("depth", "BTC/USDT", 5)) == 0.0
    assert lifetime(ttls, ()) == 0.0


def test_entries_expire():
    cache = PublicCache()
    cache.put(("r", "ticker"), {"last": 1}, 0.05)
    assert cache.get(("r", "ticker")) == {"last": 1}
    time.sleep(0.06)
    assert cache.get(("r", "ticker")) is None


@pytest.fixture
def cached_gateway(fake_binance: Fake, fake_okx: Fake):
    config = gateway_config(fake_binance, fake_okx, public_cache={"ticker": 1.5})
    rest_only = {
        "ticker": "off",
        "depth": "off",
        "trades": "off",
        "records": "off",
    }  # these tests count REST requests: no websocket answers
    config["exchanges"]["binance"]["streams"] = rest_only
    config["exchanges"]["binance-raw"] = {**config["exchanges"]["binance"], "public_cache": {}}
    server = BackgroundServer(create_app(parse_settings(config))).start()
    yield server.url
    server.stop()


def post(url: str, route: str, method: str, params: dict | None = None) -> dict:
    body = {"access_key": API_KEY, "secret_key": CANARY_SECRET, "nonce": time.time_ns(), "method": method}
    response = httpx.post(f"{url}/{route}", json={**body, "params": params or {}})
    REPLIES.append(response.text)
    return response.json()


def upstream(fake: Fake, path: str) -> int:
    return sum(1 for _, p in fake.faults.requests if p == path)


def test_tickers_within_the_lifetime_cost_one_upstream_request(cached_gateway, fake_binance: Fake):
    post(cached_gateway, "binance", "ticker", {"symbol": "ETH_USDT"})  # warm: markets
    time.sleep(1.6)
    before = upstream(fake_binance, "/api/v3/ticker/24hr")
    answers = [post(cached_gateway, "binance", "ticker", {"symbol": "ETH_USDT"})["data"] for _ in range(5)]
    assert upstream(fake_binance, "/api/v3/ticker/24hr") - before == 1
    assert all(a == answers[0] for a in answers)
    time.sleep(1.6)  # past the lifetime: asked again
    post(cached_gateway, "binance", "ticker", {"symbol": "ETH_USDT"})
    assert upstream(fake_binance, "/api/v3/ticker/24hr") - before == 2
    metrics = httpx.get(f"{cached_gateway}/metrics").text
    hits = [line for line in metrics.splitlines() if line.startswith("fmz_gateway_public_cache_hits_total{")]
    assert hits and float(hits[0].rsplit(" ", 1)[1]) >= 4


def test_a_route_that_turns_it_off_and_private_reads_always_ask(cached_gateway, fake_binance: Fake):
    post(cached_gateway, "binance-raw", "ticker", {"symbol": "ETH_USDT"})
    before = upstream(fake_binance, "/api/v3/ticker/24hr")
    for _ in range(3):
        post(cached_gateway, "binance-raw", "ticker", {"symbol": "ETH_USDT"})
    assert upstream(fake_binance, "/api/v3/ticker/24hr") - before == 3
    accounts_before = upstream(fake_binance, "/api/v3/account")
    for _ in range(3):
        post(cached_gateway, "binance", "accounts")
    assert upstream(fake_binance, "/api/v3/account") - accounts_before == 3


def test_forgetting_routes_drops_only_their_answers():
    cache = PublicCache()
    cache.put(("a", ("ticker", "BTC/USDT")), 1, 10)
    cache.put(("b", ("ticker", "BTC/USDT")), 2, 10)
    cache.forget({"a"})
    assert cache.get(("a", ("ticker", "BTC/USDT"))) is None and cache.get(("b", ("ticker", "BTC/USDT"))) == 2
