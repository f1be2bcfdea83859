"""Routes, api_base rewriting and the sandbox switch that never falls back to live."""

from __future__ import annotations

import json
import socket

import pytest

from gateway.errors import GatewayError
from gateway.settings import parse_settings
from gateway.venues import (
    RouteRefused,
    SandboxUnavailable,
    Venue,
    VenueRegistry,
    alias_problems,
    build_exchange,
    check_markets_file,
    check_venue,
    probe_api_base,
    rewrite_api_urls,
)
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


def test_the_registry_refuses_routes_that_would_fail_and_never_serves_them_as_ccxt_ids(tmp_path):
    settings = parse_settings(
        {
            "exchanges": {
                "binance-test": {"ccxt": "binance", "sandbox": True},
                "kucoin": {"sandbox": True},  # also a ccxt id: must not fall back to live kucoin
                "typo": {"ccxt": "binanse"},
                "pinned": {"ccxt": "okx", "markets_file": str(tmp_path / "absent.json")},
            }
        }
    )
    registry = VenueRegistry(settings)
    assert registry.routes() == ["binance-test"] and set(registry.refused) == {"kucoin", "typo", "pinned"}
    with pytest.raises(RouteRefused, match="kucoin has no sandbox") as refused:
        registry.get("KuCoin")
    assert refused.value.kind == "NotSupported" and "refused when the config was loaded" in str(refused.value)
    with pytest.raises(RouteRefused, match=r"'binanse' is not a ccxt exchange id \(did you mean 'binance'"):
        registry.get("typo")
    with pytest.raises(RouteRefused, match=r"markets_file .*absent\.json: no such file"):
        registry.get("pinned")
    assert registry.peek("kucoin") is None and registry.peek("okx").ccxt_id == "okx"
    assert registry.get("okx").ccxt_id == "okx"  # other ccxt ids are still served (allow_any)


def test_a_ccxt_config_the_exchange_class_rejects_refuses_the_route():
    with pytest.raises(RouteRefused, match="cannot be built from its options/ccxt_config"):
        check_venue(Venue("b", "binance", ccxt_config={"options": "not-a-dict"}))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("{}", "expected a non-empty ccxt markets dict"),
        ("[1, 2]", "not a ccxt market"),
        ('{"BTC/USDT": {"symbol": "BTC/USDT"}}', "not a ccxt market"),
        ('{"format": 1, "exchange": "okx", "markets": {"BTC/USDT": {"id": "x", "symbol": "BTC/USDT"}}}', "a snapshot"),
    ],
)
def test_a_markets_file_that_holds_no_ccxt_markets_is_refused(tmp_path, content, reason):
    path = tmp_path / "markets.json"
    path.write_text(content)
    with pytest.raises(RouteRefused, match=reason):
        check_markets_file(Venue("b", "binance", markets_file=str(path)), "binance")


def test_a_markets_file_dict_list_or_snapshot_is_accepted(tmp_path):
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT"}
    for n, content in enumerate(
        ({"BTC/USDT": market}, [market], {"format": 1, "exchange": "binance", "markets": {"BTC/USDT": market}})
    ):
        path = tmp_path / f"m{n}.json"
        path.write_text(json.dumps(content))
        assert check_markets_file(Venue("b", "binance", markets_file=str(path)), "binance") == 1


def test_alias_routes_must_name_a_route():
    alias = {"token": "tok-1234", "apiKey": "k", "routes": ["main", "bybit", "okz"]}
    closed = parse_settings(
        {"allow_any_ccxt_exchange": False, "exchanges": {"main": {"ccxt": "okx"}}, "credentials": {"a": alias}}
    )
    assert alias_problems(closed) == [
        "credentials.a.routes: 'bybit' is not a configured route",
        "credentials.a.routes: 'okz' is not a configured route",
    ]
    opened = parse_settings({"exchanges": {"main": {"ccxt": "okx"}}, "credentials": {"a": alias}})
    assert alias_problems(opened) == [
        "credentials.a.routes: 'okz' is not a configured route or a ccxt exchange id (did you mean 'okx'?)"
    ]


async def test_probe_api_base_opens_a_connection_and_sends_nothing(fake_binance):
    before = len(fake_binance.faults.requests)
    assert await probe_api_base(fake_binance.url) is None
    assert len(fake_binance.faults.requests) == before
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await probe_api_base(f"http://127.0.0.1:{port}") == (
        f"api_base http://127.0.0.1:{port} is unreachable: Connection refused"
    )


def test_clients_remember_the_venue_they_were_built_from():
    venue = Venue("b", "binance", options={"defaultType": "swap"})
    assert build_exchange(venue, {})._gateway_venue is venue


def test_refused_routes_are_not_listed_in_the_index():
    import httpx

    from gateway.app import create_app
    from tests.fakes.server import BackgroundServer

    settings = parse_settings(
        {
            "server": {"skip_bad_routes": True},
            "exchanges": {"kucoin-test": {"ccxt": "kucoin", "sandbox": True}, "okx": {}},
        }
    )
    with BackgroundServer(create_app(settings)) as server:
        assert httpx.get(server.url).json()["configured_routes"] == ["okx"]


def test_ccxt_never_retries_a_request_itself_whatever_the_config():
    """ccxt's maxRetriesOnFailure would re-send an order after a network error."""
    venue = Venue("x", "binance", options={"maxRetriesOnFailure": 3})
    assert build_exchange(venue, {}).options["maxRetriesOnFailure"] == 0
