"""Routes, api_base rewriting and the sandbox switch that never falls back to live."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.settings import parse_settings
from gateway.venues import SandboxUnavailable, Venue, VenueRegistry, build_exchange, rewrite_api_urls
from tests.conftest import OKX_SECRET_KEY, GatewayClient


def test_rewrite_keeps_paths_and_templates():
    urls = {
        "public": "https://api.binance.com/api/v3",
        "rest": "https://{hostname}",
        "nested": {"spot": "https://api.gateio.ws/api/v4"},
        "list": ["https://a.b/c"],
    }
    assert rewrite_api_urls(urls, "http://127.0.0.1:9") == {
        "public": "http://127.0.0.1:9/api/v3",
        "rest": "http://127.0.0.1:9",
        "nested": {"spot": "http://127.0.0.1:9/api/v4"},
        "list": ["http://127.0.0.1:9/c"],
    }


def test_every_binance_url_points_at_the_base():
    exchange = build_exchange(Venue("b", "binance", api_base="http://127.0.0.1:1"), {})
    flat = []

    def walk(node):
        if isinstance(node, str):
            flat.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(exchange.urls["api"])
    assert flat and all(url.startswith("http://127.0.0.1:1") for url in flat)
    assert exchange.urls["api"]["fapiPrivate"] == "http://127.0.0.1:1/fapi/v1"


def test_registry_routes():
    settings = parse_settings({"exchanges": {"Main": {"ccxt": "okx"}}})
    registry = VenueRegistry(settings)
    assert registry.get("MAIN").ccxt_id == "okx"
    assert registry.get("Bybit").ccxt_id == "bybit"
    with pytest.raises(GatewayError, match="unknown exchange 'nope'"):
        registry.get("nope")
    closed = VenueRegistry(parse_settings({"allow_any_ccxt_exchange": False, "exchanges": {"okx": {}}}))
    assert closed.get("okx").ccxt_id == "okx"
    with pytest.raises(GatewayError, match="a route from the config"):
        closed.get("bybit")


def test_sandbox_really_switches_binance_to_the_testnet():
    exchange = build_exchange(Venue("bt", "binance", sandbox=True), {})
    assert "testnet" in exchange.urls["api"]["public"] and exchange.isSandboxModeEnabled


@pytest.mark.parametrize("exchange_id", ["kucoin", "coinbase"])
def test_sandbox_is_refused_where_ccxt_has_none(exchange_id):
    with pytest.raises(SandboxUnavailable, match="never falls back to live"):
        build_exchange(Venue("x", exchange_id, sandbox=True), {})


def test_okx_demo_route_sends_the_simulated_trading_header(gateway: GatewayClient, fake_okx):
    fake_okx.state.simulated_trading = None
    data = gateway.data("okx-demo", "accounts", secret_key=OKX_SECRET_KEY)
    assert data and fake_okx.state.simulated_trading is True
    gateway.data("okx", "accounts", secret_key=OKX_SECRET_KEY)
    assert fake_okx.state.simulated_trading is False


def test_refused_sandbox_route_answers_an_error_not_live_data(fake_binance):
    from gateway.app import create_app
    from tests.fakes.server import BackgroundServer

    settings = parse_settings({"exchanges": {"kucoin-test": {"ccxt": "kucoin", "sandbox": True}}})
    server = BackgroundServer(create_app(settings)).start()
    try:
        import httpx

        reply = httpx.post(f"{server.url}/kucoin-test", json={"method": "ticker", "params": {"symbol": "BTC_USDT"}})
        assert reply.json()["error"].startswith("NotSupported: route 'kucoin-test': kucoin has no sandbox")
    finally:
        server.stop()
