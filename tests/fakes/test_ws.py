"""The websocket fakes speak Binance's and OKX's streams well enough for unmodified ccxt.pro."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro
import httpx
import pytest
import websockets

from gateway.venues import rewrite_api_urls

from . import binance, okx
from .okx_ws import checksum
from .server import BackgroundServer


@contextlib.asynccontextmanager
async def _pro(kind: str, url: str) -> AsyncIterator[Any]:
    """An unmodified ccxt.pro client of `kind` whose REST and websocket URLs point at the fake; closed after."""
    exchange = getattr(ccxtpro, kind)({"enableRateLimit": False})
    ws = exchange.urls["api"]["ws"]
    exchange.urls["api"] = rewrite_api_urls({k: v for k, v in exchange.urls["api"].items() if k != "ws"}, url)

    def host_in_path(value):
        if isinstance(value, dict):
            return {k: host_in_path(v) for k, v in value.items()}
        return re.sub(r"^wss?://", url.replace("http", "ws") + "/", value)

    exchange.urls["api"]["ws"] = host_in_path(ws)
    try:
        yield exchange
    finally:
        await exchange.close()


@pytest.fixture(params=["binance", "okx"])
def venue(request):
    module = binance if request.param == "binance" else okx
    engine = module.default_engine()
    app = module.create_app(engine, {})
    with BackgroundServer(app) as server:
        yield request.param, engine, app.state.ws, server.url


async def test_ticker_and_book_follow_the_engine(venue):
    kind, engine, _, url = venue
    async with _pro(kind, url) as exchange:
        params = {"name": "ticker"} if kind == "binance" else {}
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT", params), 5)
        tick = 0.01 if kind == "binance" else 0.1
        assert ticker["bid"] == pytest.approx(60000 - tick) and ticker["ask"] == pytest.approx(60000 + tick)
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT", 100 if kind == "binance" else None), 5)
        assert book["bids"][0][0] < book["asks"][0][0]
        engine.set_price("BTC/USDT", 61000)
        for _ in range(20):
            book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5)
            if book["bids"][0][0] > 60900:
                break
        assert 60990 < book["bids"][0][0] < 61000 < book["asks"][0][0] < 61001
        assert len(book["bids"]) == len(book["asks"]) == 100  # removed levels are removed


async def test_a_gap_is_caught_by_ccxt(venue):
    kind, _, hub, url = venue
    async with _pro(kind, url) as exchange:
        await asyncio.wait_for(exchange.watch_order_book("BTC/USDT", 100 if kind == "binance" else None), 5)
        hub.gap("BTC/USDT")
        with pytest.raises((ccxtpro.ChecksumError, ccxtpro.InvalidNonce)):
            for _ in range(10):
                await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5)


async def test_okx_books_carry_okx_checksums():
    engine = okx.default_engine()
    app = okx.create_app(engine, {})
    with BackgroundServer(app) as server:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws/v5/public") as ws:
            await ws.send("ping")
            assert await ws.recv() == "pong"
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
            assert json.loads(await ws.recv())["event"] == "subscribe"
            book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
            previous = -1
            for n in range(3):
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                data = message["data"][0]
                assert message["action"] == ("snapshot" if n == 0 else "update")
                assert data["prevSeqId"] == previous
                previous = data["seqId"]
                for side in ("bids", "asks"):
                    for price, size, *_ in data[side]:
                        if size == "0":
                            book[side].pop(price, None)
                        else:
                            book[side][price] = size
                bids = sorted(book["bids"].items(), key=lambda kv: -float(kv[0]))
                asks = sorted(book["asks"].items(), key=lambda kv: float(kv[0]))
                assert checksum(bids, asks) == data["checksum"]
                if n == 1:
                    engine.set_price("BTC/USDT", 60001)


async def test_disconnect_and_silence():
    engine = binance.default_engine()
    app = binance.create_app(engine, {})
    hub = app.state.ws
    with BackgroundServer(app) as server:
        url = server.url.replace("http", "ws") + "/stream?streams=btcusdt@depth@100ms"
        async with websockets.connect(url) as ws:
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event["stream"] == "btcusdt@depth@100ms" and event["data"]["e"] == "depthUpdate"
            hub.silence(0.5)
            await asyncio.sleep(0.15)
            while True:  # drain what was in flight
                try:
                    await asyncio.wait_for(ws.recv(), 0.05)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
            await asyncio.wait_for(ws.recv(), 2)  # speaks again
            hub.disconnect()
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(50):
                    await asyncio.wait_for(ws.recv(), 2)


async def _until(predicate: Callable[[], bool], timeout: float = 3) -> None:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.01)


def _trade_params(kind: str) -> dict:
    return {"name": "aggTrade"} if kind == "binance" else {}


def _facts(trade: dict) -> tuple:
    return trade["id"], trade["price"], trade["amount"], trade["side"], trade["timestamp"]


async def test_trades_stream_what_rest_answers(venue):
    kind, engine, hub, url = venue
    async with _pro(kind, url) as exchange:
        watching = asyncio.ensure_future(exchange.watch_trades("BTC/USDT", params=_trade_params(kind)))
        await _until(lambda: hub.subscribed() == 1)
        added = [
            engine.public_trade("BTC/USDT", "60010.1", "0.0123", "buy"),
            engine.public_trade("BTC/USDT", "59990.2", "0.5", "sell"),
        ]
        engine.place("alice", "BTC/USDT", "sell", "market", Decimal("0.002"))  # a fill is a public trade too
        added.append(engine.public_trades["BTC/USDT"][-1])
        first = await asyncio.wait_for(watching, 3)
        assert first[0]["id"] == added[0]["id"]
        ids = [t["id"] for t in added]
        await _until(lambda: len(exchange.trades["BTC/USDT"]) >= len(ids))
        streamed = list(exchange.trades["BTC/USDT"])
        assert [t["id"] for t in streamed] == ids  # only trades after subscribing, one each, in order
        assert [(t["price"], t["amount"], t["side"]) for t in streamed] == [
            (float(t["price"]), float(t["qty"]), t["side"]) for t in added
        ]
        assert [t["timestamp"] for t in streamed] == [t["time"] for t in added]
        rest = {t["id"]: t for t in await exchange.fetch_trades("BTC/USDT")}
        assert [_facts(t) for t in streamed] == [_facts(rest[i]) for i in ids]


def _engine_close(engine, open_ms: int) -> float:
    """The close of the engine's 1m BTC/USDT bar opened at `open_ms`, at the engine's current price."""
    return float(engine.candles("BTC/USDT", 60, end_ms=open_ms, limit=1)[0][4])


async def test_ohlcv_streams_the_rest_candle_on_a_cadence(venue):
    kind, engine, _, url = venue
    async with _pro(kind, url) as exchange:
        candles = await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 3)
        last = candles[-1]
        assert last[0] % 60000 == 0 and last[0] <= time.time() * 1000 < last[0] + 61000  # the current bar
        rest = await exchange.fetch_ohlcv("BTC/USDT", "1m")
        assert [c for c in rest if c[0] == last[0]] == [last]
        again = await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 1)  # pushed with nothing changed
        assert again[-1][0] >= last[0]
        engine.set_price("BTC/USDT", 61000)
        for _ in range(20):
            last = (await asyncio.wait_for(exchange.watch_ohlcv("BTC/USDT", "1m"), 1))[-1]
            if last[4] == _engine_close(engine, last[0]):
                break
        # the bar follows the price: the engine's close at 61000 (its bars ride a +-1 % wave over the hours)
        assert last[4] == _engine_close(engine, last[0]) and 61000 * 0.99 <= last[4] <= 61000 * 1.01
        rest = await exchange.fetch_ohlcv("BTC/USDT", "1m")
        assert [c for c in rest if c[0] == last[0]] == [last]


async def test_trades_flow_again_after_a_disconnect(venue):
    kind, engine, hub, url = venue
    params = _trade_params(kind)
    async with _pro(kind, url) as exchange:
        watching = asyncio.ensure_future(exchange.watch_trades("BTC/USDT", params=dict(params)))
        await _until(lambda: hub.subscribed() == 1)
        before = engine.public_trade("BTC/USDT", "60001.1", "0.01", "buy")
        assert [t["id"] for t in await asyncio.wait_for(watching, 3)] == [before["id"]]
        watching = asyncio.ensure_future(exchange.watch_trades("BTC/USDT", params=dict(params)))
        await asyncio.sleep(0.05)
        hub.disconnect()
        with pytest.raises(ccxtpro.NetworkError):
            await asyncio.wait_for(watching, 3)
        connects = hub.connects
        watching = asyncio.ensure_future(exchange.watch_trades("BTC/USDT", params=dict(params)))
        await _until(lambda: hub.subscribed() == 1)
        assert hub.connects == connects + 1
        after = engine.public_trade("BTC/USDT", "60002.2", "0.02", "sell")
        trades = await asyncio.wait_for(watching, 3)
        assert [t["id"] for t in trades] == [after["id"]]  # the new connection does not send old trades again
        assert trades[0]["side"] == "sell" and trades[0]["price"] == 60002.2


async def test_binance_futures_trade_and_kline_events_are_the_rest_rows():
    engine = binance.default_engine()
    app = binance.create_app(engine, {})
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as http:
        url = server.url.replace("http", "ws") + "/fstream.binance.com/market/ws"
        async with websockets.connect(url) as ws:
            streams = ["btcusdt@aggTrade", "btcusdt@trade", "btcusdt@kline_1m"]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 1}
            trade = engine.public_trade("BTC/USDT:USDT", "60123.4", "0.005", "sell")
            events: dict[str, dict] = {}
            while len(events) < 2:
                event = json.loads(await asyncio.wait_for(ws.recv(), 3))
                if event["e"] != "kline":
                    events[event["e"]] = event
            kline = json.loads(await asyncio.wait_for(ws.recv(), 3))  # pushed after the trades: counts them
            while kline["e"] != "kline":
                kline = json.loads(await asyncio.wait_for(ws.recv(), 3))
        agg, raw = events["aggTrade"], events["trade"]
        [rest_agg] = http.get("/fapi/v1/aggTrades", params={"symbol": "BTCUSDT", "fromId": trade["id"]}).json()
        assert {k: v for k, v in agg.items() if k not in ("e", "E", "s")} == rest_agg
        assert agg["s"] == "BTCUSDT" and agg["a"] == int(trade["id"]) and agg["m"] is True and "M" not in agg
        [rest_trade] = http.get("/fapi/v1/trades", params={"symbol": "BTCUSDT", "fromId": trade["id"]}).json()
        assert (raw["t"], raw["p"], raw["q"], raw["T"], raw["m"]) == (
            rest_trade["id"],
            rest_trade["price"],
            rest_trade["qty"],
            rest_trade["time"],
            rest_trade["isBuyerMaker"],
        )
        assert raw["X"] == "MARKET" and "M" not in raw
        k = kline["k"]
        query = {"symbol": "BTCUSDT", "interval": "1m", "startTime": k["t"], "limit": 1}
        [rest_kline] = http.get("/fapi/v1/klines", params=query).json()
        assert [k[x] for x in "tohlcvTqnVQ"] == rest_kline[:11]
        assert k["i"] == "1m" and k["x"] is False and k["s"] == "BTCUSDT"
        if k["t"] <= trade["time"]:  # not a bar opened since (a minute's turn)
            assert k["f"] <= int(trade["id"]) == k["L"]


async def test_okx_candles_only_on_business_as_rest_rows():
    engine = okx.default_engine()
    app = okx.create_app(engine, {})
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as http:
        base = server.url.replace("http", "ws") + "/ws/v5/"

        async def first_answer(path: str, channel: str) -> dict:
            async with websockets.connect(base + path) as ws:
                await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": channel, "instId": "BTC-USDT"}]}))
                return json.loads(await asyncio.wait_for(ws.recv(), 3))

        wrong = [("public", "candle1m"), ("business", "trades"), ("business", "books"), ("business", "candle7m")]
        for path, channel in wrong:
            answer = await first_answer(path, channel)
            assert answer["event"] == "error" and answer["code"] == "60018", (path, channel)
        async with websockets.connect(base + "business") as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "candle1H", "instId": "BTC-USDT"}]}))
            assert json.loads(await ws.recv())["event"] == "subscribe"
            pushed = [json.loads(await asyncio.wait_for(ws.recv(), 3)) for _ in range(2)]  # every tick
        rest = http.get("/api/v5/market/candles", params={"instId": "BTC-USDT", "bar": "1H", "limit": 1}).json()
        for message in pushed:
            assert message["arg"] == {"channel": "candle1H", "instId": "BTC-USDT"}
            assert message["data"] == rest["data"] and len(rest["data"][0]) == 9
