"""Hostile input over HTTP: every request gets JSON, FMZ calls always HTTP 200, never a traceback."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CANARY_SECRET, GatewayClient


def post(gateway: GatewayClient, path: str, content: bytes, **headers: str):
    response = gateway.raw_post(path, content, headers)
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    assert "Traceback" not in response.text
    return response


def envelope(**fields) -> bytes:
    body = {"access_key": "k", "secret_key": "s", "nonce": 1, "method": "ticker", "params": {"symbol": "BTC_USDT"}}
    body.update(fields)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty request body"),
        (b"{oops", "not valid JSON"),
        (b'"just a string"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (envelope(method=None), "'method' is required"),
        (envelope(method=42), "'method' is required"),
        (envelope(params="symbol=BTC_USDT"), "'params' must be a JSON object"),
        (envelope(access_key=["k"]), "'access_key' must be a string"),
        (envelope(method="getTickerz"), "unknown method 'gettickerz'"),
        (envelope(params={"symbol": "USDT"}), "invalid symbol 'USDT': expected BASE_QUOTE"),
        (envelope(params={"symbol": "BTC-USDT"}), "invalid symbol 'BTC-USDT'"),
        (envelope(params={}), "param 'symbol' is required"),
        (envelope(params={"symbol": 5}), "invalid symbol 5"),
        (envelope(method="depth", params={"symbol": "BTC_USDT", "limit": "ten"}), "param 'limit' must be a number"),
        (envelope(method="records", params={"symbol": "BTC_USDT", "period": None}), "param 'period'"),
        ('{"method": "ticker", "params": {"symbol": "\u0411TC_USDT"}}'.encode(), "invalid symbol"),
    ],
)
def test_bad_requests_get_a_clear_error(gateway: GatewayClient, content: bytes, expected: str):
    response = post(gateway, "/binance", content)
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == {"error"} and expected in reply["error"], reply


def test_unknown_route(gateway: GatewayClient):
    reply = post(gateway, "/nosuchexchange", envelope()).json()
    assert reply["error"].startswith("BadRequest: unknown exchange 'nosuchexchange'")


def test_routes_are_case_insensitive(gateway: GatewayClient):
    reply = post(gateway, "/BINANCE", envelope()).json()
    assert reply["data"]["symbol"] == "BTC_USDT"


def test_ten_megabyte_body_is_refused(gateway: GatewayClient):
    huge = envelope(params={"symbol": "BTC_USDT", "pad": "x" * 10_000_000})
    response = post(gateway, "/binance", huge)
    assert response.status_code == 200 and "too large" in response.json()["error"]


def test_chunked_body_over_the_limit_is_refused(gateway: GatewayClient):
    def chunks():
        yield b'{"method": "ticker", "params": {"pad": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = gateway.http.post(f"{gateway.url}/binance", content=chunks())
    assert response.status_code == 200 and "too large" in response.json()["error"]


def test_get_on_an_fmz_route_is_a_json_error(gateway: GatewayClient):
    response = gateway.http.get(f"{gateway.url}/binance")
    assert response.status_code == 200
    assert response.json() == {"error": "BadRequest: FMZ calls are POST /binance with a JSON body"}


def test_other_paths_are_json_errors(gateway: GatewayClient):
    response = gateway.http.get(f"{gateway.url}/binance/extra/path")
    assert response.status_code == 404 and "no such endpoint" in response.json()["error"]
    response = post(gateway, "/binance/extra", envelope())
    assert response.status_code == 200 and "no such endpoint" in response.json()["error"]


def test_health_and_index(gateway: GatewayClient):
    response = gateway.http.get(f"{gateway.url}/healthz")
    health = response.json()
    # 503 only while a route of this shared gateway cannot serve (tests/test_status.py covers both)
    assert (response.status_code, health["status"]) in (
        (200, "ok"),
        (503, "unavailable"),
    ) and "private_clients" in health
    index = gateway.http.get(f"{gateway.url}/").json()
    assert "binance" in index["configured_routes"] and "ticker" in index["methods"]


def test_operator_endpoints_answer_get_only_and_stay_json_otherwise(gateway: GatewayClient):
    assert gateway.http.get(f"{gateway.url}/metrics").headers["content-type"].startswith("text/plain")
    assert gateway.http.get(f"{gateway.url}/status").headers["content-type"].startswith("text/html")
    assert "calls" in gateway.http.get(f"{gateway.url}/status", params={"format": "json"}).json()
    for path in ("/metrics", "/status", "/healthz"):
        response = gateway.http.put(f"{gateway.url}{path}")
        assert response.headers["content-type"].startswith("application/json") and "error" in response.json()
    response = gateway.http.get(f"{gateway.url}/status/extra")
    assert response.status_code == 404 and "no such endpoint" in response.json()["error"]


def test_numbers_and_strings_are_both_accepted(gateway: GatewayClient):
    as_number = gateway.data("binance", "depth", {"symbol": "BTC_USDT", "limit": 5})
    as_string = gateway.data("binance", "depth", {"symbol": "BTC_USDT", "limit": "5"})
    assert len(as_number["asks"]) == len(as_string["asks"]) == 5


@pytest.mark.parametrize("bad", [True, None, "", "NaN", "1e999999", "five", "\u0665"])
def test_trade_refuses_unparseable_numbers(gateway: GatewayClient, bad):
    reply = gateway.call("binance", "trade", {"symbol": "BTC_USDT", "type": "buy", "price": bad, "amount": "1"})
    assert "param 'price'" in reply["error"]


def test_unsupported_function_names_the_exchange(gateway: GatewayClient, monkeypatch):
    app_gateway = gateway.app.state.gateway
    exchange, _ = _public_client(gateway, app_gateway)
    monkeypatch.setitem(exchange.has, "fetchTickers", False)
    reply = gateway.call("binance", "tickers", {})
    assert reply == {"error": "NotSupported: GetTickers is not supported by binance"}


def _public_client(gateway: GatewayClient, app_gateway):
    gateway.data("binance", "ticker", {"symbol": "BTC_USDT"})  # make sure the public client exists
    handle = app_gateway.pool.public_clients["binance"]
    return handle.exchange, handle


def test_a_crash_inside_a_handler_is_a_json_error_without_traceback(gateway: GatewayClient, monkeypatch):
    from gateway import methods

    async def broken(call):
        raise RuntimeError(f"boom with {CANARY_SECRET}")

    monkeypatch.setitem(methods.METHODS, "ticker", methods.Method(broken, False, "GetTicker"))
    reply = gateway.call("binance", "ticker", {"symbol": "BTC_USDT"}, secret_key=CANARY_SECRET)
    assert reply == {"error": "InternalError: boom with ***"}


def test_reply_encoding_never_emits_nan_even_on_the_fallback_path():
    from gateway.app import encode_json

    payload = encode_json({"data": {"id": 2**70, "avg": float("nan"), "list": [float("inf")]}})
    assert json.loads(payload) == {"data": {"id": 2**70, "avg": None, "list": [None]}}


def test_allowed_clients_refuse_other_networks_but_never_loopback():
    from gateway.app import ClientFilter

    open_to_all = ClientFilter(())
    assert open_to_all.allows(("203.0.113.9", 5000))
    docker_net = ClientFilter(("172.17.0.0/16", "10.1.2.3"))
    assert docker_net.allows(("172.17.0.5", 1)) and docker_net.allows(("10.1.2.3", 1))
    assert docker_net.allows(("127.0.0.1", 1)) and docker_net.allows(("::1", 1))
    assert not docker_net.allows(("203.0.113.9", 1)) and not docker_net.allows(None)


def test_a_refused_client_gets_json_403(fake_binance):
    import httpx

    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.fakes.server import BackgroundServer

    app = create_app(parse_settings({"server": {"allowed_clients": ["10.0.0.0/8"]}}))
    app.client_filter.allows = lambda client: False  # as if this loopback test client came from elsewhere
    server = BackgroundServer(app).start()
    try:
        reply = httpx.post(f"{server.url}/binance", json={"method": "ticker"})
        assert reply.status_code == 403
        assert reply.json() == {"error": "Forbidden: client 127.0.0.1 is not in server.allowed_clients"}
    finally:
        server.stop()
