"""`__api_<path>`: generic resolution for any ccxt exchange, and signed round trips on both fakes."""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from gateway.errors import GatewayError
from gateway.passthrough import resolve_api_section
from tests.conftest import Account, open_account


@pytest.mark.parametrize(
    ("exchange_id", "path", "verb", "section", "remainder"),
    [
        ("binance", "/api/v3/account", "GET", ("private",), "account"),
        ("binance", "/api/v3/ticker/price", "GET", ("public",), "ticker/price"),
        ("binance", "/sapi/v1/capital/config/getall", "GET", ("sapi",), "capital/config/getall"),
        ("binance", "/fapi/v2/positionRisk", "GET", ("fapiPrivateV2",), "positionRisk"),
        ("binance", "/fapi/v1/ticker/price", "GET", ("fapiPublic",), "ticker/price"),
        ("binance", "/fapi/v1/order", "POST", ("fapiPrivate",), "order"),
        ("okx", "/api/v5/trade/orders-pending", "GET", ("private",), "trade/orders-pending"),
        ("okx", "/api/v5/market/ticker", "GET", ("public",), "market/ticker"),
        ("okx", "/api/v5/some/new-endpoint", "GET", ("private",), "some/new-endpoint"),
        ("bybit", "/v5/order/realtime", "GET", ("private",), "v5/order/realtime"),
        ("bybit", "/v5/market/tickers", "GET", ("public",), "v5/market/tickers"),
        ("kraken", "/0/private/Balance", "POST", ("private",), "Balance"),
    ],
)
def test_sections_resolve_generically(exchange_id, path, verb, section, remainder):
    exchange = getattr(ccxt, exchange_id)({"apiKey": "k", "secret": "c2VjcmV0", "password": "p"})
    assert resolve_api_section(exchange, path, verb) == (section, remainder)


def test_gate_two_level_sections():
    exchange = ccxt.gate({"apiKey": "k", "secret": "s"})
    section, remainder = resolve_api_section(exchange, "/api/v4/spot/accounts", "GET")
    assert section == ("private", "spot") and remainder == "accounts"


def test_a_path_no_section_serves_is_refused():
    exchange = ccxt.binance({"apiKey": "k", "secret": "s"})
    with pytest.raises(GatewayError, match="no API section for path '/nope/v9/x'"):
        resolve_api_section(exchange, "/nope/v9/x", "GET")


@pytest.fixture
def binance_account(gateway, fake_binance) -> Account:
    return open_account("binance", fake_binance, gateway)


@pytest.fixture
def okx_account(gateway, fake_okx) -> Account:
    return open_account("okx", fake_okx, gateway)


def test_binance_signed_get_returns_the_reply_verbatim(binance_account: Account):
    account = binance_account
    reply = account.call("__api_/api/v3/account", {"omitZeroBalances": "true"})
    assert reply["data"]["canTrade"] is True
    assert {b["asset"] for b in reply["data"]["balances"]} >= {"USDT", "BTC"}
    assert reply["raw"] == reply["data"]


def test_binance_signed_post_places_an_order(binance_account: Account):
    account = binance_account
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "50000",
    }
    placed = account.data("__api_/api/v3/order", params, http_method="POST")
    assert placed["status"] == "NEW" and placed["symbol"] == "BTCUSDT"
    orders = account.data("orders", {"symbol": "BTC_USDT"})
    assert [o["id"] for o in orders] == [f"BTC_USDT,{placed['orderId']}"]
    cancel = account.data(
        "__api_/api/v3/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}, http_method="DELETE"
    )
    assert cancel["status"] == "CANCELED"


def test_okx_signed_get_and_post(okx_account: Account):
    account = okx_account
    balance = account.data("__api_/api/v5/account/balance", {"ccy": "USDT"})
    assert balance["code"] == "0" and balance["data"][0]["details"][0]["ccy"] == "USDT"
    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "50000"}
    placed = account.data("__api_/api/v5/trade/order", body, http_method="POST")
    assert placed["code"] == "0"
    pending = account.data("__api_/api/v5/trade/orders-pending?instType=SPOT", {})
    assert [o["ordId"] for o in pending["data"]] == [placed["data"][0]["ordId"]]


def test_query_string_in_the_path_is_merged(gateway, fake_okx):
    account = open_account("okx", fake_okx, gateway)
    reply = account.data("__api_/api/v5/account/balance?ccy=BTC", {})
    assert [d["ccy"] for d in reply["data"][0]["details"]] == ["BTC"]


def test_passthrough_errors_are_exchange_errors(account: Account):
    path = "/api/v3/order" if account.route == "binance" else "/api/v5/trade/order"
    message = account.error(f"__api_{path}", {"symbol": "NOPE", "instId": "NOPE"}, http_method="GET")
    assert ":" in message and not message.startswith("InternalError")
