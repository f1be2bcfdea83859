"""The fake OKX v5 venue driven by unmodified ccxt (async_support.okx) over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt.async_support as ccxt
import httpx
import pytest

from tests.fakes.okx import create_app, default_engine
from tests.fakes.server import BackgroundServer, FaultInjector

SECRET, PASSPHRASE = "fake-secret", "Fake-Passphrase-1"
_keys = itertools.count(1)


class Venue:
    def __init__(self) -> None:
        self.engine = default_engine()
        self.credentials: dict[str, tuple[str, str]] = {}
        self.app = create_app(self.engine, self.credentials)
        self.recorder = FaultInjector(self.app)
        self.server = BackgroundServer(self.recorder).start()
        self.url = self.server.url
        self.markets_source = self._load_markets()

    def _load_markets(self) -> ccxt.okx:
        async def load() -> ccxt.okx:
            keyless = self.client()
            try:
                await keyless.load_markets()
            finally:
                await keyless.close()
            return keyless

        return asyncio.run(load())

    def client(self, **config: object) -> ccxt.okx:
        exchange = ccxt.okx({"enableRateLimit": False, **config})
        exchange.urls["api"] = {"rest": self.url}
        return exchange

    def paths(self) -> list[str]:
        return [path for _, path in self.recorder.requests]


@pytest.fixture(scope="module")
def venue():
    v = Venue()
    yield v
    v.server.stop()


@pytest.fixture
async def okx(venue):
    """A factory of keyed ccxt clients, each on a fresh account (its own api key)."""
    made: list[ccxt.okx] = []

    def make(secret: str = SECRET, passphrase: str = PASSPHRASE, sandbox: bool = False) -> ccxt.okx:
        key = f"key-{next(_keys)}"
        venue.credentials[key] = (SECRET, PASSPHRASE)
        exchange = venue.client(apiKey=key, secret=secret, password=passphrase)
        if sandbox:
            exchange.set_sandbox_mode(True)
            exchange.urls["api"] = {"rest": venue.url}
        exchange.set_markets_from_exchange(venue.markets_source)
        made.append(exchange)
        return exchange

    yield make
    for exchange in made:
        await exchange.close()


@pytest.fixture
async def public(venue):
    exchange = venue.client()
    exchange.set_markets_from_exchange(venue.markets_source)
    yield exchange
    await exchange.close()


# --- public data ------------------------------------------------------------------------


def test_load_markets(venue):
    markets = venue.markets_source.markets
    spot = markets["BTC/USDT"]
    assert spot["id"] == "BTC-USDT" and spot["spot"] and spot["type"] == "spot"
    assert spot["precision"] == {"amount": 1e-08, "price": 0.1}
    assert spot["limits"]["amount"]["min"] == 0.00001
    assert markets["LTC/USDT"]["precision"] == {"amount": 0.0001, "price": 0.01}

    swap = markets["BTC/USDT:USDT"]
    assert swap["id"] == "BTC-USDT-SWAP" and swap["swap"] and swap["linear"] and swap["settle"] == "USDT"
    assert swap["contractSize"] == 0.01 and swap["precision"] == {"amount": 0.01, "price": 0.1}
    assert markets["ETH/USDT:USDT"]["contractSize"] == 0.1

    inverse = markets["BTC/USD:BTC"]
    assert inverse["id"] == "BTC-USD-SWAP" and inverse["inverse"] and not inverse["linear"]
    assert inverse["settle"] == "BTC" and inverse["contractSize"] == 100 and inverse["precision"]["amount"] == 1

    futures = [m for m in markets.values() if m["future"]]
    assert len(futures) == 6
    now = time.time() * 1000
    for m in futures:
        expiry = datetime.fromtimestamp(m["expiry"] / 1000, UTC)
        assert expiry.weekday() == 4 and expiry.hour == 8 and m["expiry"] > now
        assert m["symbol"].endswith(expiry.strftime("%y%m%d")) and m["id"].endswith(expiry.strftime("%y%m%d"))
    by_alias = {m["info"]["alias"]: m for m in futures if m["inverse"]}
    assert set(by_alias) == {"this_week", "next_week", "quarter"}
    assert by_alias["this_week"]["expiry"] + 7 * 86400_000 == by_alias["next_week"]["expiry"]
    assert by_alias["quarter"]["expiry"] > by_alias["next_week"]["expiry"]
    assert by_alias["quarter"]["contractSize"] == 100 and by_alias["quarter"]["settle"] == "BTC"
    assert all(m["option"] is False for m in markets.values())


async def test_ticker_and_tickers(public):
    ticker = await public.fetch_ticker("BTC/USDT")
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (60000, 59999.9, 60000.1)
    assert ticker["high"] >= 60000 >= ticker["low"] and ticker["baseVolume"] > 0
    spot = await public.fetch_tickers()
    assert set(spot) == {"BTC/USDT", "ETH/USDT", "LTC/USDT"}
    swaps = await public.fetch_tickers(["BTC/USDT:USDT", "BTC/USD:BTC"])
    assert set(swaps) == {"BTC/USDT:USDT", "BTC/USD:BTC"}
    assert swaps["BTC/USD:BTC"]["last"] == 60000


async def test_order_book(public, venue):
    book = await public.fetch_order_book("ETH/USDT", 5)
    assert [level[0] for level in book["bids"]] == [2999.99, 2999.98, 2999.97, 2999.96, 2999.95]
    assert [level[0] for level in book["asks"]] == [3000.01, 3000.02, 3000.03, 3000.04, 3000.05]
    assert book["bids"][0][1] == 0.001
    deep = await public.fetch_order_book("BTC/USDT:USDT", 1000)
    assert len(deep["bids"]) == len(deep["asks"]) == 1000
    assert venue.paths()[-1] == "/api/v5/market/books-full"


async def test_trades(public):
    trades = await public.fetch_trades("LTC/USDT", limit=5)
    assert len(trades) == 5
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)
    assert all(79.9 <= t["price"] <= 80.1 and t["side"] in ("buy", "sell") for t in trades)


async def test_ohlcv(public, venue):
    now = time.time() * 1000
    minutes = await public.fetch_ohlcv("BTC/USDT", "1m", limit=10)
    stamps = [c[0] for c in minutes]
    assert len(minutes) == 10 and all(t % 60_000 == 0 for t in stamps)
    assert [b - a for a, b in itertools.pairwise(stamps)] == [60_000] * 9
    assert stamps[-1] == now // 60_000 * 60_000 or stamps[-1] == now // 60_000 * 60_000 - 60_000
    assert all(c[2] >= max(c[1], c[4]) and c[3] <= min(c[1], c[4]) for c in minutes)

    hours = await public.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=5)
    assert [b[0] - a[0] for a, b in itertools.pairwise(hours)] == [3_600_000] * 4
    assert all(c[0] % 3_600_000 == 0 for c in hours)

    since = int(now // 60_000 * 60_000 - 20 * 60_000)
    window = await public.fetch_ohlcv("ETH/USDT", "1m", since=since, limit=5)
    assert [c[0] for c in window] == [since + n * 60_000 for n in range(5)]

    old = int(now // 60_000 * 60_000 - 3000 * 60_000)
    history = await public.fetch_ohlcv("ETH/USDT", "1m", since=old, limit=3)
    assert [c[0] for c in history] == [old, old + 60_000, old + 120_000]
    assert venue.paths()[-1] == "/api/v5/market/history-candles"

    days = await public.fetch_ohlcv("BTC/USDT", "1d", limit=3)
    assert all(c[0] % 86_400_000 == 0 for c in days)  # ccxt asks for 1Dutc


async def test_funding(public):
    rate = await public.fetch_funding_rate("BTC/USDT:USDT")
    period = 8 * 3600_000
    assert rate["fundingRate"] == 0.0001 and rate["interval"] == "8h"
    assert rate["fundingTimestamp"] % period == 0 and rate["fundingTimestamp"] > time.time() * 1000
    assert rate["nextFundingTimestamp"] == rate["fundingTimestamp"] + period
    assert (await public.fetch_mark_price("BTC/USD:BTC"))["markPrice"] == 60000
    rates = await public.fetch_funding_rates()
    assert {s: r["fundingRate"] for s, r in rates.items()} == {
        "BTC/USDT:USDT": 0.0001,
        "ETH/USDT:USDT": -0.00005,
        "BTC/USD:BTC": 0.0002,
    }
    history = await public.fetch_funding_rate_history("BTC/USD:BTC", limit=3)
    assert len(history) == 3 and all(h["fundingRate"] == 0.0002 for h in history)
    assert history[1]["timestamp"] - history[0]["timestamp"] == period


async def test_unknown_route_and_symbol(public, venue):
    async with httpx.AsyncClient(base_url=venue.url) as http:
        reply = await http.get("/api/v5/market/nothing")
    assert reply.status_code == 404
    assert reply.json() == {"code": "50000", "msg": "fake okx: no route GET /api/v5/market/nothing", "data": []}
    with pytest.raises(ccxt.BadSymbol):
        await public.publicGetMarketTicker({"instId": "NOPE-USDT"})


# --- spot trading -------------------------------------------------------------------------


async def test_limit_buy_rests_then_cancel(okx):
    ex = okx()
    before = await ex.fetch_balance()
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    after = await ex.fetch_balance()
    assert after["USDT"]["free"] == before["USDT"]["free"] - 500 and after["USDT"]["used"] == 500
    open_orders = await ex.fetch_open_orders("BTC/USDT")
    assert [o["id"] for o in open_orders] == [order["id"]]
    assert open_orders[0]["status"] == "open" and open_orders[0]["price"] == 50000
    assert open_orders[0]["amount"] == 0.01 and open_orders[0]["clientOrderId"] == order["clientOrderId"]
    await ex.cancel_order(order["id"], "BTC/USDT")
    fetched = await ex.fetch_order(order["id"], "BTC/USDT")
    assert fetched["status"] == "canceled" and fetched["filled"] == 0
    assert await ex.fetch_open_orders() == []
    restored = await ex.fetch_balance()
    assert restored["USDT"] == before["USDT"]
    by_client = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": order["clientOrderId"]})
    assert by_client["id"] == order["id"]


async def test_crossing_limit_and_market_orders_fill(okx):
    ex = okx()
    buy = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 60100)
    filled = await ex.fetch_order(buy["id"], "BTC/USDT")
    assert filled["status"] == "closed" and filled["filled"] == 0.01 and filled["average"] == 60000.1
    sell = await ex.create_order("BTC/USDT", "market", "sell", 0.004)
    sold = await ex.fetch_order(sell["id"], "BTC/USDT")
    assert sold["status"] == "closed" and sold["average"] == 59999.9 and sold["info"]["px"] == ""
    balance = await ex.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(10.006)
    expected_usdt = Decimal(100000) - Decimal("0.01") * Decimal("60000.1") + Decimal("0.004") * Decimal("59999.9")
    assert balance["USDT"]["total"] == pytest.approx(float(expected_usdt))

    closed = await ex.fetch_closed_orders("BTC/USDT")
    assert {o["id"] for o in closed} == {buy["id"], sell["id"]}
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert [(t["order"], t["side"], t["price"], t["amount"]) for t in trades] == [
        (buy["id"], "buy", 60000.1, 0.01),
        (sell["id"], "sell", 59999.9, 0.004),
    ]
    assert all(t["takerOrMaker"] == "taker" for t in trades)


async def test_market_buy_by_cost(okx):
    ex = okx()
    order = await ex.create_market_buy_order_with_cost("BTC/USDT", 100)
    fetched = await ex.fetch_order(order["id"], "BTC/USDT")
    assert fetched["status"] == "closed" and fetched["cost"] == 100
    assert fetched["info"]["tgtCcy"] == "quote_ccy" and fetched["filled"] == 0.00166666
    balance = await ex.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(10.00166666)
    assert balance["USDT"]["total"] == pytest.approx(100000 - 0.00166666 * 60000.1)


async def test_resting_order_fills_on_price_move_as_maker(okx, venue):
    ex = okx()
    order = await ex.create_order("LTC/USDT", "limit", "buy", 1, 79)
    venue.engine.set_price("LTC/USDT", "78.5")
    try:
        fetched = await ex.fetch_order(order["id"], "LTC/USDT")
        assert fetched["status"] == "closed" and fetched["average"] == 79
        (trade,) = await ex.fetch_my_trades("LTC/USDT")
        assert trade["takerOrMaker"] == "maker" and trade["price"] == 79
    finally:
        venue.engine.set_price("LTC/USDT", "80")


async def test_batch_cancel_and_canceled_orders(okx):
    ex = okx()
    orders = await ex.create_orders(
        [{"symbol": "ETH/USDT", "type": "limit", "side": "sell", "amount": 0.5, "price": 3100 + n} for n in range(3)]
    )
    assert (await ex.fetch_balance())["ETH"]["used"] == 1.5
    ids = [o["id"] for o in orders]
    await ex.cancel_orders(ids[:2], "ETH/USDT")
    assert [o["id"] for o in await ex.fetch_open_orders("ETH/USDT")] == ids[2:]
    canceled = await ex.fetch_canceled_orders("ETH/USDT")
    assert sorted(o["id"] for o in canceled) == ids[:2] and all(o["status"] == "canceled" for o in canceled)
    assert await ex.fetch_closed_orders("ETH/USDT") == []  # ccxt asks for state=filled
    with pytest.raises(ccxt.OrderNotFound):  # 51401: already canceled
        await ex.cancel_order(ids[0], "ETH/USDT")


async def test_trading_errors(okx):
    ex = okx()
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "limit", "buy", 5, 59000)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("ETH/USDT", "market", "sell", 1000)
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.000001, 59000)  # below minSz
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order("424242", "BTC/USDT")
    assert await ex.fetch_open_orders() == []


async def test_authentication(okx, venue):
    with pytest.raises(ccxt.AuthenticationError, match="50113"):
        await okx(secret="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
        await okx(passphrase="wrong").fetch_balance()
    stranger = venue.client(apiKey="unknown", secret=SECRET, password=PASSPHRASE)
    stranger.set_markets_from_exchange(venue.markets_source)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="50111"):
            await stranger.fetch_balance()
    finally:
        await stranger.close()


async def test_sandbox_header_recorded(okx, venue):
    await okx(sandbox=True).fetch_balance()
    assert venue.app.state.simulated_trading is True
    await okx().fetch_balance()
    assert venue.app.state.simulated_trading is False


def _signed(method: str, path: str, body: str = "", key: str = "raw-key", skew_s: float = 0) -> dict:
    stamp = (datetime.now(UTC) - timedelta(seconds=skew_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    digest = hmac.new(SECRET.encode(), (stamp + method + path + body).encode(), hashlib.sha256).digest()
    return {
        "OK-ACCESS-KEY": key,
        "OK-ACCESS-PASSPHRASE": PASSPHRASE,
        "OK-ACCESS-TIMESTAMP": stamp,
        "OK-ACCESS-SIGN": base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }


async def test_raw_dialect(venue):
    venue.credentials["raw-key"] = (SECRET, PASSPHRASE)
    async with httpx.AsyncClient(base_url=venue.url) as http:
        path = "/api/v5/account/balance?ccy=BTC,USDT"
        reply = (await http.get(path, headers=_signed("GET", path))).json()
        assert reply["code"] == "0" and reply["msg"] == ""
        details = reply["data"][0]["details"]
        assert [d["ccy"] for d in details] == ["BTC", "USDT"] and details[0]["availBal"] == "10"
        assert all(isinstance(v, str) for d in details for v in d.values())

        order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "9", "px": "59000"}
        body = json.dumps(order)
        path = "/api/v5/trade/order"
        reply = (await http.post(path, content=body, headers=_signed("POST", path, body))).json()
        assert reply["code"] == "1" and reply["data"][0]["sCode"] == "51008" and reply["data"][0]["ordId"] == ""

        body = json.dumps([{"instId": "NOPE-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "1"}])
        path = "/api/v5/trade/batch-orders"
        reply = (await http.post(path, content=body, headers=_signed("POST", path, body))).json()
        assert reply["data"][0]["sCode"] == "51001"

        stale = await http.get("/api/v5/account/config", headers=_signed("GET", "/api/v5/account/config", skew_s=60))
        assert stale.status_code == 401 and stale.json()["code"] == "50102"
        bare = await http.get("/api/v5/account/config")
        assert bare.status_code == 401 and bare.json()["code"] == "50103"
        tampered = _signed("GET", "/api/v5/account/config?x=1")
        assert (await http.get("/api/v5/account/config", headers=tampered)).json()["code"] == "50113"


# --- contracts --------------------------------------------------------------------------------


async def test_swap_long_and_short(okx):
    ex = okx()
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 2)
    (pos,) = await ex.fetch_positions()
    assert (pos["symbol"], pos["side"], pos["contracts"]) == ("BTC/USDT:USDT", "long", 2)
    assert pos["entryPrice"] == 60000.1 and pos["leverage"] == 20 and pos["contractSize"] == 0.01
    assert pos["marginMode"] == "cross" and pos["initialMargin"] == pytest.approx(2 * 0.01 * 60000.1 / 20)
    assert (await ex.fetch_balance())["USDT"]["used"] == pytest.approx(2 * 0.01 * 60000.1 / 20)
    close = await ex.create_order("BTC/USDT:USDT", "market", "sell", 2, None, {"reduceOnly": True})
    assert (await ex.fetch_order(close["id"], "BTC/USDT:USDT"))["reduceOnly"] is True
    assert await ex.fetch_positions() == []
    balance = await ex.fetch_balance()
    assert balance["USDT"]["total"] == pytest.approx(100000 + 2 * 0.01 * (59999.9 - 60000.1))
    assert balance["USDT"]["used"] == pytest.approx(0)

    await ex.create_order("ETH/USDT:USDT", "market", "sell", 1.5)
    (short,) = await ex.fetch_positions(["ETH/USDT:USDT"])
    assert short["side"] == "short" and short["contracts"] == 1.5 and short["info"]["pos"] == "-1.5"
    with pytest.raises(ccxt.InvalidOrder):  # 51112: more than the position
        await ex.create_order("ETH/USDT:USDT", "market", "buy", 2, None, {"reduceOnly": True})
    await ex.create_order("ETH/USDT:USDT", "market", "buy", 1.5, None, {"reduceOnly": True})
    assert await ex.fetch_positions() == []

    await ex.create_order("ETH/USDT:USDT", "market", "buy", 1)
    await ex.create_order("BTC/USDT:USDT", "market", "sell", 1)
    both = await ex.fetch_positions(["BTC/USDT:USDT", "ETH/USDT:USDT"])
    assert {p["symbol"]: p["side"] for p in both} == {"BTC/USDT:USDT": "short", "ETH/USDT:USDT": "long"}
    with pytest.raises(ccxt.BadRequest, match="reversing"):  # a one-order flip is refused, not half-done
        await ex.create_order("ETH/USDT:USDT", "market", "sell", 3)
    await ex.close_position("ETH/USDT:USDT")
    await ex.close_position("BTC/USDT:USDT")
    assert await ex.fetch_positions() == []
    with pytest.raises(ccxt.ExchangeError, match="51169"):
        await ex.create_order("ETH/USDT:USDT", "market", "buy", 1, None, {"reduceOnly": True})


async def test_inverse_swap_with_btc_margin(okx):
    ex = okx()
    await ex.create_order("BTC/USD:BTC", "market", "buy", 10)
    (pos,) = await ex.fetch_positions(["BTC/USD:BTC"])
    assert pos["side"] == "long" and pos["contracts"] == 10 and pos["contractSize"] == 100
    assert pos["info"]["ccy"] == "BTC" and pos["notional"] == pytest.approx(1000 / 60000)
    margin = 10 * 100 / 60000.1 / 20
    assert (await ex.fetch_balance())["BTC"]["used"] == pytest.approx(margin)
    await ex.create_order("BTC/USD:BTC", "market", "sell", 10, None, {"reduceOnly": True})
    assert await ex.fetch_positions() == []
    pnl = 10 * 100 * (1 / 60000.1 - 1 / 59999.9)
    assert (await ex.fetch_balance())["BTC"]["total"] == pytest.approx(10 + pnl, abs=1e-12)


async def test_futures_position(okx, venue):
    ex = okx()
    quarter = next(
        m["symbol"] for m in venue.markets_source.markets.values() if m["future"] and m["info"]["alias"] == "quarter"
    )
    await ex.create_order(quarter, "market", "sell", 3)
    (pos,) = await ex.fetch_positions()
    assert pos["symbol"] == quarter and pos["side"] == "short" and pos["info"]["instType"] == "FUTURES"
    await ex.create_order(quarter, "market", "buy", 3, None, {"reduceOnly": True})
    assert await ex.fetch_positions() == []


async def test_leverage(okx):
    ex = okx()
    await ex.set_leverage(5, "BTC/USDT:USDT", {"mgnMode": "cross"})
    leverage = await ex.fetch_leverage("BTC/USDT:USDT")
    assert leverage["longLeverage"] == leverage["shortLeverage"] == 5
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 1)
    (pos,) = await ex.fetch_positions()
    assert pos["leverage"] == 5 and pos["initialMargin"] == pytest.approx(0.01 * 60000.1 / 5)
    with pytest.raises(ccxt.ExchangeError, match="59102"):
        await ex.set_leverage(110, "ETH/USDT:USDT", {"mgnMode": "cross"})


async def test_hedge_mode(okx):
    ex = okx()
    await ex.set_position_mode(True)
    assert (await ex.fetch_position_mode())["hedged"] is True
    symbol = "BTC/USDT:USDT"
    with pytest.raises(ccxt.BadRequest):  # long_short_mode needs posSide
        await ex.create_order(symbol, "market", "buy", 1)
    await ex.create_order(symbol, "market", "buy", 1, None, {"hedged": True})
    await ex.create_order(symbol, "market", "sell", 2, None, {"hedged": True})
    positions = {p["side"]: p for p in await ex.fetch_positions()}
    assert {s: p["contracts"] for s, p in positions.items()} == {"long": 1, "short": 2}
    assert all(p["hedged"] for p in positions.values())
    with pytest.raises(ccxt.ExchangeError, match="59000"):
        await ex.set_position_mode(False)
    await ex.create_order(symbol, "market", "sell", 1, None, {"hedged": True, "reduceOnly": True})  # posSide long
    (short,) = await ex.fetch_positions()
    assert short["side"] == "short"
    close = await ex.create_order(symbol, "market", "buy", 2, None, {"posSide": "short"})
    assert (await ex.fetch_order(close["id"], symbol))["info"]["posSide"] == "short"
    assert await ex.fetch_positions() == []
    await ex.set_position_mode(False)
    assert (await ex.fetch_position_mode())["hedged"] is False
