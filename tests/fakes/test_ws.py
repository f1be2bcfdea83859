"""The websocket fakes speak Binance's and OKX's streams well enough for unmodified ccxt.pro."""

from __future__ import annotations

import asyncio
import json
import re

import ccxt.pro as ccxtpro
import pytest
import websockets

from gateway.venues import rewrite_api_urls

from . import binance, okx
from .okx_ws import checksum
from .server import BackgroundServer


def _pro(kind: str, url: str):
    exchange = getattr(ccxtpro, kind)({"enableRateLimit": False})
    ws = exchange.urls["api"]["ws"]
    exchange.urls["api"] = rewrite_api_urls({k: v for k, v in exchange.urls["api"].items() if k != "ws"}, url)

    def host_in_path(value):
        if isinstance(value, dict):
            return {k: host_in_path(v) for k, v in value.items()}
        return re.sub(r"^wss?://", url.replace("http", "ws") + "/", value)

    exchange.urls["api"]["ws"] = host_in_path(ws)
    return exchange


@pytest.fixture(params=["binance", "okx"])
def venue(request):
    module = binance if request.param == "binance" else okx
    engine = module.default_engine()
    app = module.create_app(engine, {})
    with BackgroundServer(app) as server:
        yield request.param, engine, app.state.ws, server.url


async def test_ticker_and_book_follow_the_engine(venue):
    kind, engine, _, url = venue
    exchange = _pro(kind, url)
    try:
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
    finally:
        await exchange.close()


async def test_a_gap_is_caught_by_ccxt(venue):
    kind, _, hub, url = venue
    exchange = _pro(kind, url)
    try:
        await asyncio.wait_for(exchange.watch_order_book("BTC/USDT", 100 if kind == "binance" else None), 5)
        hub.gap("BTC/USDT")
        with pytest.raises((ccxtpro.ChecksumError, ccxtpro.InvalidNonce)):
            for _ in range(10):
                await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5)
    finally:
        await exchange.close()


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
