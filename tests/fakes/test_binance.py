"""Unmodified ccxt (async binance) against the fake Binance on a loopback port."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlencode

import ccxt.async_support as ccxt
import httpx
import pytest

from tests.fakes.binance import create_app, default_engine, quarterly_expiries
from tests.fakes.server import BackgroundServer

_keys = itertools.count(1)


def make_exchange(url: str, key: str | None = None, secret: str | None = None) -> ccxt.binance:
    config = {"enableRateLimit": False, "timeout_on_exit": 0}
    if key:
        config.update(apiKey=key, secret=secret)
    ex = ccxt.binance(config)
    ex.urls["api"] = {name: re.sub(r"^https?://[^/]+", url, value) for name, value in ex.urls["api"].items()}
    return ex


@pytest.fixture(scope="module")
def fake():
    engine = default_engine()
    credentials: dict[str, str] = {}
    with BackgroundServer(create_app(engine, credentials)) as server:
        yield SimpleNamespace(engine=engine, credentials=credentials, url=server.url)


@pytest.fixture(scope="module")
def markets(fake):
    """Markets loaded once by a keyless instance, shared as the gateway does."""

    async def load():
        ex = make_exchange(fake.url)
        try:
            await ex.load_markets()
            return ex
        finally:
            await ex.close()

    return asyncio.run(load())


def new_account(fake) -> tuple[str, str]:
    key = f"key-{next(_keys)}"
    fake.credentials[key] = f"secret-for-{key}"
    return key, fake.credentials[key]


@pytest.fixture
async def public(fake, markets):
    ex = make_exchange(fake.url)
    ex.set_markets_from_exchange(markets)
    yield ex
    await ex.close()


@pytest.fixture
async def trader(fake, markets):
    """A keyed instance on a fresh account (100000 USDT, 50000 USDC, 10 BTC, 100 ETH)."""
    ex = make_exchange(fake.url, *new_account(fake))
    ex.set_markets_from_exchange(markets)
    yield ex
    await ex.close()


# --- markets and market data ----------------------------------------------------------------


def test_load_markets(markets):
    m = markets.markets
    current, following = (f"{e:%y%m%d}" for e in quarterly_expiries())
    assert {"BTC/USDT", "ETH/USDT", "ETH/BTC", "LTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"} <= set(m)
    btc = m["BTC/USDT"]
    assert (btc["id"], btc["type"], btc["spot"]) == ("BTCUSDT", "spot", True)
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001 and btc["limits"]["cost"]["min"] == 5
    assert m["ETH/BTC"]["precision"]["price"] == 0.00001 and m["ETH/BTC"]["precision"]["amount"] == 0.001
    perp = m["BTC/USDT:USDT"]
    assert (perp["id"], perp["type"], perp["linear"], perp["settle"]) == ("BTCUSDT", "swap", True, "USDT")
    assert perp["contractSize"] == 1 and perp["precision"]["price"] == 0.1 and perp["limits"]["amount"]["min"] == 0.001
    assert m["ETH/USDT:USDT"]["precision"]["price"] == 0.01
    for yymmdd, contract_type in ((current, "CURRENT_QUARTER"), (following, "NEXT_QUARTER")):
        future = m[f"BTC/USDT:USDT-{yymmdd}"]
        assert future["type"] == "future" and future["id"] == f"BTCUSDT_{yymmdd}"
        assert future["info"]["contractType"] == contract_type and future["expiry"] > time.time() * 1000
        assert future["expiryDatetime"].endswith("T08:00:00.000Z")


async def test_load_markets_with_keys(fake):
    """With keys ccxt also fetches sapi coins and margin pairs."""
    ex = make_exchange(fake.url, *new_account(fake))
    try:
        await ex.load_markets()
        assert ex.markets["BTC/USDT"]["marginModes"] == {"cross": True, "isolated": True}
        assert ex.currencies["BTC"]["active"] is True
    finally:
        await ex.close()


async def test_tickers(public):
    t = await public.fetch_ticker("BTC/USDT")
    assert (t["symbol"], t["last"], t["bid"], t["ask"]) == ("BTC/USDT", 60000, 59999.99, 60000.01)
    assert t["high"] >= t["last"] >= t["low"] and t["baseVolume"] > 0
    tickers = await public.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"} and tickers["ETH/USDT"]["last"] == 3000
    assert {"BTC/USDT", "LTC/USDT", "ETH/BTC"} <= set(await public.fetch_tickers())
    swap = await public.fetch_ticker("BTC/USDT:USDT")
    assert swap["symbol"] == "BTC/USDT:USDT" and swap["last"] == 60000
    swaps = await public.fetch_tickers(["BTC/USDT:USDT", "ETH/USDT:USDT"])
    assert swaps["ETH/USDT:USDT"]["last"] == 3000
    bids_asks = await public.fetch_bids_asks(["BTC/USDT"])
    assert bids_asks["BTC/USDT"]["bid"] == 59999.99


async def test_order_book(public):
    book = await public.fetch_order_book("BTC/USDT", 5)
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] == 59999.99 and book["asks"][0][0] == 60000.01
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
    assert [a[0] for a in book["asks"]] == sorted(a[0] for a in book["asks"])
    assert len((await public.fetch_order_book("ETH/USDT"))["bids"]) == 100  # Binance's default
    perp = await public.fetch_order_book("BTC/USDT:USDT", 10)
    assert len(perp["asks"]) == 10 and perp["asks"][0][0] == 60000.1
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        await public.fetch_order_book("BTC/USDT", 7)


async def test_trades(public):
    trades = await public.fetch_trades("BTC/USDT", limit=10)
    assert len(trades) == 10 and all(t["symbol"] == "BTC/USDT" for t in trades)
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)
    assert {t["side"] for t in trades} == {"buy", "sell"}
    perp = await public.fetch_trades("BTC/USDT:USDT", limit=3)
    assert len(perp) == 3 and perp[0]["price"] > 0


@pytest.mark.parametrize(("timeframe", "seconds"), [("1m", 60), ("1h", 3600)])
async def test_ohlcv(public, timeframe, seconds):
    step = seconds * 1000
    bars = await public.fetch_ohlcv("BTC/USDT", timeframe, limit=25)
    assert len(bars) == 25
    times = [b[0] for b in bars]
    assert all(t % step == 0 for t in times) and times == sorted(times)
    assert all(b - a == step for a, b in itertools.pairwise(times))
    assert times[-1] <= time.time() * 1000 < times[-1] + step
    assert all(h >= max(o, c) and low <= min(o, c) and v > 0 for _, o, h, low, c, v in bars)
    since = times[3]
    later = await public.fetch_ohlcv("BTC/USDT", timeframe, since=since + 1, limit=5)
    assert [b[0] for b in later] == times[4:9]
    assert len(await public.fetch_ohlcv("BTC/USDT:USDT", timeframe, limit=3)) == 3
    assert len(await public.fetch_ohlcv("BTC/USDT")) == 500  # Binance's default limit


async def test_ohlcv_calendar_intervals(public):
    weeks = await public.fetch_ohlcv("ETH/USDT", "1w", limit=3)
    assert all(time.gmtime(b[0] / 1000).tm_wday == 0 for b in weeks)  # Monday 00:00 UTC
    months = await public.fetch_ohlcv("ETH/USDT", "1M", limit=3)
    assert all(time.gmtime(b[0] / 1000).tm_mday == 1 for b in months)


# --- spot trading ------------------------------------------------------------------------------


async def test_balance(trader):
    balance = await trader.fetch_balance()
    assert balance["USDT"] == {"free": 100000, "used": 0, "total": 100000}
    assert balance["BTC"]["free"] == 10 and balance["ETH"]["total"] == 100


async def test_limit_order_rests_and_cancels(trader):
    order = await trader.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, {"clientOrderId": "my-order-1"})
    assert (order["status"], order["filled"], order["clientOrderId"]) == ("open", 0, "my-order-1")
    balance = await trader.fetch_balance()
    assert balance["USDT"]["free"] == 99950 and balance["USDT"]["used"] == 50
    open_orders = await trader.fetch_open_orders("BTC/USDT")
    assert [o["id"] for o in open_orders] == [order["id"]]
    assert open_orders[0]["price"] == 50000 and open_orders[0]["amount"] == 0.001
    trader.options["fetchOpenOrders"]["warnWithoutSymbol"] = False
    assert [o["id"] for o in await trader.fetch_open_orders()] == [order["id"]]
    canceled = await trader.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    fetched = await trader.fetch_order(order["id"], "BTC/USDT")
    assert fetched["status"] == "canceled" and fetched["clientOrderId"] == "my-order-1"
    by_client_id = await trader.fetch_order(None, "BTC/USDT", {"clientOrderId": "my-order-1"})
    assert by_client_id["id"] == order["id"]
    assert await trader.fetch_open_orders("BTC/USDT") == []
    assert (await trader.fetch_balance())["USDT"] == {"free": 100000, "used": 0, "total": 100000}


async def test_crossing_limit_fills(trader):
    order = await trader.create_order("ETH/USDT", "limit", "buy", 0.5, 3100)
    assert (order["status"], order["filled"], order["average"]) == ("closed", 0.5, 3000.01)
    assert order["trades"][0]["price"] == 3000.01
    balance = await trader.fetch_balance()
    assert balance["ETH"]["free"] == 100.5 and balance["USDT"]["free"] == pytest.approx(100000 - 1500.005)


async def test_market_orders_move_balances(trader):
    sell = await trader.create_order("BTC/USDT", "market", "sell", 0.01)
    assert (sell["status"], sell["filled"], sell["average"]) == ("closed", 0.01, 59999.99)
    balance = await trader.fetch_balance()
    assert balance["BTC"]["free"] == pytest.approx(9.99)
    assert balance["USDT"]["free"] == pytest.approx(100000 + 599.9999)
    buy = await trader.create_market_buy_order_with_cost("BTC/USDT", 100)
    assert buy["status"] == "closed" and buy["filled"] == 0.00166 and buy["cost"] == pytest.approx(99.6000166)
    assert buy["info"]["origQuoteOrderQty"] == "100.00000000"
    assert (await trader.fetch_balance())["BTC"]["free"] == pytest.approx(9.99166)


async def test_order_history_and_trades(trader):
    filled = await trader.create_order("BTC/USDT", "market", "buy", 0.002)
    resting = await trader.create_order("BTC/USDT", "limit", "sell", 0.001, 70000)
    canceled = await trader.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    await trader.cancel_order(canceled["id"], "BTC/USDT")
    orders = await trader.fetch_orders("BTC/USDT")
    assert [o["id"] for o in orders] == [filled["id"], resting["id"], canceled["id"]]
    assert [o["status"] for o in orders] == ["closed", "open", "canceled"]
    closed = await trader.fetch_closed_orders("BTC/USDT")
    assert [o["id"] for o in closed] == [filled["id"]]
    trades = await trader.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    assert (trades[0]["order"], trades[0]["side"], trades[0]["amount"]) == (filled["id"], "buy", 0.002)
    assert trades[0]["takerOrMaker"] == "taker" and trades[0]["price"] == 60000.01


async def test_resting_order_fills_as_maker_when_price_moves(fake, trader):
    order = await trader.create_order("LTC/USDT", "limit", "buy", 1, 79)
    try:
        fake.engine.set_price("LTC/USDT", "78")
        fetched = await trader.fetch_order(order["id"], "LTC/USDT")
        assert (fetched["status"], fetched["filled"], fetched["average"]) == ("closed", 1, 79)
        trades = await trader.fetch_my_trades("LTC/USDT")
        assert [(t["order"], t["takerOrMaker"], t["price"]) for t in trades] == [(order["id"], "maker", 79)]
    finally:
        fake.engine.set_price("LTC/USDT", "80")


async def test_time_in_force(trader):
    ioc = await trader.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await trader.create_order("BTC/USDT", "limit", "buy", 0.001, 61000, {"postOnly": True})
    maker = await trader.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, {"postOnly": True})
    assert maker["status"] == "open" and maker["info"]["type"] == "LIMIT_MAKER"


async def test_spot_errors(trader):
    with pytest.raises(ccxt.InsufficientFunds):
        await trader.create_order("BTC/USDT", "limit", "buy", 2, 60000)
    with pytest.raises(ccxt.InsufficientFunds):
        await trader.create_order("ETH/BTC", "market", "sell", 101)
    with pytest.raises(ccxt.OrderNotFound):
        await trader.fetch_order("999999999", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await trader.cancel_order("999999999", "BTC/USDT")
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # 0.00001 BTC is 0.6 USDT, below the 5 USDT minimum
        await trader.create_order("BTC/USDT", "limit", "buy", 0.00001, 60000)
    with pytest.raises(ccxt.BadSymbol):
        await trader.privateGetOrder({"symbol": "NOPEUSDT", "orderId": 1})
    assert (await trader.fetch_balance())["USDT"]["free"] == 100000


async def test_authentication_errors(fake, markets):
    key, _ = new_account(fake)
    for api_key, secret in ((key, "wrong-secret"), ("no-such-key", "whatever")):
        ex = make_exchange(fake.url, api_key, secret)
        ex.set_markets_from_exchange(markets)
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await ex.fetch_balance()
        finally:
            await ex.close()


# --- USDⓈ-M futures ---------------------------------------------------------------------------


async def positions(ex: ccxt.binance, symbol: str = "BTC/USDT:USDT", **params) -> list[dict]:
    return await ex.fetch_positions([symbol], params)


async def test_long_opens_and_reduce_only_closes(trader):
    order = await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    assert (order["status"], order["filled"], order["average"]) == ("closed", 0.01, 60000.1)
    [pos] = await positions(trader)
    assert (pos["side"], pos["contracts"], pos["entryPrice"], pos["hedged"]) == ("long", 0.01, 60000.1, False)
    assert pos["markPrice"] == 60000 and pos["notional"] == 600 and pos["initialMarginPercentage"] == 0.05
    assert pos["info"]["positionAmt"] == "0.010" and pos["info"]["positionSide"] == "BOTH"
    swap_balance = await trader.fetch_balance({"type": "swap"})
    assert swap_balance["USDT"]["used"] == pytest.approx(30.00005)  # 600.001 at the default 20x
    close = await trader.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"reduceOnly": True})
    assert close["status"] == "closed" and close["reduceOnly"] is True
    assert await positions(trader) == []
    balance = await trader.fetch_balance({"type": "swap"})
    assert balance["USDT"]["total"] == pytest.approx(100000 - 0.002)  # bought at 60000.1, sold at 59999.9
    trades = await trader.fetch_my_trades("BTC/USDT:USDT")
    assert [t["side"] for t in trades] == ["buy", "sell"]
    assert trades[1]["info"]["realizedPnl"] == "-0.00200000"


async def test_short_opens_and_closes(trader):
    await trader.create_order("BTC/USDT:USDT", "market", "sell", 0.02)
    [pos] = await positions(trader)
    assert (pos["side"], pos["contracts"], pos["entryPrice"]) == ("short", 0.02, 59999.9)
    assert pos["info"]["positionAmt"] == "-0.020" and pos["notional"] == 1200
    await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.02, None, {"reduceOnly": True})
    assert await positions(trader) == []


async def test_futures_limit_orders(trader):
    order = await trader.create_order("ETH/USDT:USDT", "limit", "buy", 0.1, 2900)
    assert order["status"] == "open" and order["info"]["positionSide"] == "BOTH"
    assert await positions(trader, "ETH/USDT:USDT") == []  # a resting order opens nothing
    assert [o["id"] for o in await trader.fetch_open_orders("ETH/USDT:USDT")] == [order["id"]]
    canceled = await trader.cancel_order(order["id"], "ETH/USDT:USDT")
    assert canceled["status"] == "canceled"
    assert (await trader.fetch_order(order["id"], "ETH/USDT:USDT"))["status"] == "canceled"
    assert [o["status"] for o in await trader.fetch_orders("ETH/USDT:USDT")] == ["canceled"]


async def test_leverage(trader):
    response = await trader.set_leverage(10, "BTC/USDT:USDT")
    assert response == {"symbol": "BTCUSDT", "leverage": 10, "maxNotionalValue": "70000000"}
    await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    [pos] = await positions(trader)
    assert pos["leverage"] is None  # /fapi/v3/positionRisk, like Binance's, carries no leverage ...
    assert pos["initialMarginPercentage"] == 0.1 and pos["initialMargin"] == 60  # ... but its margin shows it
    [pos_v2] = await positions(trader, useV2=True)
    assert pos_v2["leverage"] == 10 and pos_v2["contracts"] == 0.01
    leverages = await trader.fetch_leverages(["BTC/USDT:USDT"])
    assert leverages["BTC/USDT:USDT"]["longLeverage"] == 10
    assert (await trader.fetch_balance({"type": "swap"}))["USDT"]["used"] == pytest.approx(60.0001)


async def test_cancel_all_orders(trader):
    for price in (50000, 51000):
        await trader.create_order("BTC/USDT", "limit", "buy", 0.001, price)
    canceled = await trader.cancel_all_orders("BTC/USDT")
    assert sorted(o["status"] for o in canceled) == ["canceled", "canceled"]
    await trader.create_order("BTC/USDT:USDT", "limit", "sell", 0.001, 65000)
    await trader.cancel_all_orders("BTC/USDT:USDT")
    assert await trader.fetch_open_orders("BTC/USDT") == await trader.fetch_open_orders("BTC/USDT:USDT") == []


async def test_margin_mode_and_delivery_contract(trader):
    await trader.set_margin_mode("isolated", "ETH/USDT:USDT")
    with pytest.raises(ccxt.MarginModeAlreadySet):
        await trader.set_margin_mode("isolated", "ETH/USDT:USDT")
    await trader.create_order("ETH/USDT:USDT", "market", "buy", 0.1)
    [pos] = await positions(trader, "ETH/USDT:USDT")
    assert pos["marginMode"] == "isolated" and pos["collateral"] > 0
    quarterly = f"BTC/USDT:USDT-{quarterly_expiries()[0]:%y%m%d}"
    order = await trader.create_order(quarterly, "market", "sell", 0.002)
    assert order["symbol"] == quarterly and order["average"] == 60299.9
    [short] = await positions(trader, quarterly)
    assert (short["side"], short["contracts"]) == ("short", 0.002)


async def test_misc_market_data(public):
    assert abs(await public.fetch_time() - time.time() * 1000) < 5000
    assert (await public.fetch_status())["status"] == "ok"
    prices = await public.fetch_last_prices(["BTC/USDT", "ETH/USDT"])
    assert prices["ETH/USDT"]["price"] == 3000
    mark = await public.fetch_mark_price("ETH/USDT:USDT")
    assert mark["markPrice"] == 3000


async def test_funding_rates(public):
    rate = await public.fetch_funding_rate("BTC/USDT:USDT")
    assert rate["fundingRate"] == 0.0001 and rate["markPrice"] == 60000
    assert rate["fundingTimestamp"] % (8 * 3600_000) == 0 and rate["fundingTimestamp"] > time.time() * 1000
    rates = await public.fetch_funding_rates(["BTC/USDT:USDT", "ETH/USDT:USDT"])
    assert rates["ETH/USDT:USDT"]["fundingRate"] == -0.00005
    history = await public.fetch_funding_rate_history("BTC/USDT:USDT", limit=3)
    assert len(history) == 3 and all(h["fundingRate"] == 0.0001 for h in history)
    intervals = await public.fetch_funding_intervals(["BTC/USDT:USDT"])
    assert intervals["BTC/USDT:USDT"]["interval"] == "8h"


async def test_hedge_mode(trader):
    assert (await trader.fetch_position_mode("BTC/USDT:USDT"))["hedged"] is False
    await trader.set_position_mode(True, "BTC/USDT:USDT")
    assert (await trader.fetch_position_mode("BTC/USDT:USDT"))["hedged"] is True
    await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"positionSide": "LONG"})
    await trader.create_order("BTC/USDT:USDT", "market", "sell", 0.02, None, {"hedged": True})
    by_side = {p["side"]: p for p in await positions(trader)}
    assert by_side["long"]["contracts"] == 0.01 and by_side["short"]["contracts"] == 0.02
    assert by_side["long"]["hedged"] is True and by_side["short"]["info"]["positionSide"] == "SHORT"
    with pytest.raises(ccxt.ExchangeError, match="-2022"):  # closing more than the long holds
        await trader.create_order("BTC/USDT:USDT", "market", "sell", 0.05, None, {"positionSide": "LONG"})
    with pytest.raises(ccxt.OperationRejected):  # one-way orders do not fit hedge mode
        await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    with pytest.raises(ccxt.OperationRejected):  # positions are open
        await trader.set_position_mode(False, "BTC/USDT:USDT")
    close = await trader.create_order(
        "BTC/USDT:USDT", "market", "sell", 0.01, None, {"hedged": True, "reduceOnly": True}
    )
    assert close["info"]["positionSide"] == "LONG"
    await trader.create_order("BTC/USDT:USDT", "market", "buy", 0.02, None, {"positionSide": "SHORT"})
    assert await positions(trader) == []
    await trader.set_position_mode(False, "BTC/USDT:USDT")


async def test_futures_errors(trader):
    with pytest.raises(ccxt.ExchangeError, match="-2022"):  # nothing to reduce
        await trader.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"reduceOnly": True})
    with pytest.raises(ccxt.ExchangeError, match="-2019"):  # 100 BTC is 6M USDT, 300k margin at 20x
        await trader.create_order("BTC/USDT:USDT", "market", "buy", 100)
    with pytest.raises(ccxt.ExchangeError, match="-4164"):  # under 5 USDT notional
        await trader.create_order("ETH/USDT:USDT", "limit", "buy", 0.001, 3000)
    with pytest.raises(ccxt.OrderNotFound):
        await trader.fetch_order("123", "BTC/USDT:USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await trader.cancel_order("123", "BTC/USDT:USDT")


def test_futures_error_bodies_map_like_production(markets):
    """ccxt picks its linear error table by host: against fapi.binance.com our bodies map as expected."""
    url = "https://fapi.binance.com/fapi/v1/order"
    for code, msg, error in (
        (-2019, "Margin is insufficient.", ccxt.InsufficientFunds),
        (-2022, "ReduceOnly Order is rejected.", ccxt.InvalidOrder),
        (-2013, "Order does not exist.", ccxt.OrderNotFound),
        (-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).", ccxt.InvalidOrder),
    ):
        body = json.dumps({"code": code, "msg": msg})
        with pytest.raises(error):
            markets.handle_errors(400, "Bad Request", url, "POST", {}, body, json.loads(body), None, None)


# --- the wire --------------------------------------------------------------------------------------


def signed(secret: str, params: dict) -> str:
    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def test_wire_errors_and_signatures(fake):
    key, secret = new_account(fake)
    with httpx.Client(base_url=fake.url) as http:
        missing = http.get("/api/v3/nothing")
        assert missing.status_code == 404
        assert missing.json() == {"code": -1, "msg": "fake binance: no route GET /api/v3/nothing"}
        ok = http.post(
            "/api/v3/order",
            content=signed(
                secret,
                {
                    "symbol": "ETHUSDT",
                    "side": "SELL",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "1",
                    "price": "3100",
                },
            ),
            headers={"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert ok.status_code == 200 and ok.json()["status"] == "NEW" and ok.json()["fills"] == []
        bad = http.get("/api/v3/account", params={"timestamp": 1, "signature": "00"}, headers={"X-MBX-APIKEY": key})
        assert (bad.status_code, bad.json()["code"]) == (400, -1022)
        unknown = http.get("/api/v3/account?" + signed(secret, {}), headers={"X-MBX-APIKEY": "nobody"})
        assert (unknown.status_code, unknown.json()["code"]) == (401, -2015)
        anonymous = http.get("/api/v3/account?" + signed(secret, {}))
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, -2014)
        stale = http.get("/api/v3/account", params={"timestamp": 1}, headers={"X-MBX-APIKEY": key})
        assert stale.json()["code"] == -1102  # no signature
        account = http.get("/api/v3/account?" + signed(secret, {}), headers={"X-MBX-APIKEY": key}).json()
        ltc = next(b for b in account["balances"] if b["asset"] == "LTC")
        assert ltc == {"asset": "LTC", "free": "0.00000000", "locked": "0.00000000"}
        assert Decimal(next(b for b in account["balances"] if b["asset"] == "USDT")["free"]) == 100000
        assert http.get("/dapi/v1/exchangeInfo").json()["symbols"] == []
