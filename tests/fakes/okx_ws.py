"""OKX's public websockets (`/ws/v5/public`, `/ws/v5/business`) on the fake's engine, for unmodified `ccxt.pro.okx`.

A path ending in `/ws/v5/business` is the business websocket (candles), any other path the public
one (the gateway's `api_base` rewrite may keep the real host as the first path segment). Text
`ping` is answered `pong`. Requests: `{"op": "subscribe" | "unsubscribe", "args": [{"channel": ...,
"instId": ...}]}`, answered with `{"event": "subscribe", "arg": {...}, "connId": ...}`; an unknown
instrument or channel, or a channel asked of the other websocket, is answered as OKX does:
`{"event": "error", "code": "60018", "msg": "Wrong URL or channel:...", ...}`.

Public channels: `tickers` (the REST ticker's fields); `books`: a `snapshot` first, then `update`s
carrying only changed levels (size "0" = removed), with `seqId`, `prevSeqId` (-1 on a snapshot,
the previous message's `seqId` on updates) and `checksum`: the signed CRC32 of the first 25 bid
and ask levels interleaved, `bidPx:bidSz:askPx:askSz:...`, strings as sent (OKX's definition);
`trades`: the public trades appended after the subscription, oldest first, several to a message,
each exactly as REST `/api/v5/market/trades` shows it (`okx_public.trade_json`).

Business channels: `candle<bar>` (`candle1m`, `candle1H`, `candle1Dutc`...: the bars REST takes):
once per hub interval, the current bar as the one row REST `/api/v5/market/candles` answers for it
(`[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`, 9 strings).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from .engine import Engine, Instrument
from .okx_common import BarClock, Call, OkxError, Venue, fmt, inst_id, now_ms
from .okx_public import get_candles, ticker_json, trade_json
from .ws_hub import Connection, Subscription, WsHub, book_diff

LEVELS = 100  # the book depth the updates cover (OKX's `books` has 400; the fake's book is shallower)


def checksum(bids: list, asks: list) -> int:
    """OKX's order book checksum over levels given as [price string, size string, ...]."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += [bids[i][0], bids[i][1]]
        if i < len(asks):
            parts += [asks[i][0], asks[i][1]]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


PUBLIC = ("tickers", "books", "trades")


def candle_bar(channel: str) -> str | None:
    """The bar of a `candle<bar>` channel REST knows ("candle1H" -> "1H"), else None."""
    if not channel.startswith("candle"):
        return None
    try:
        BarClock(channel[len("candle") :])
    except OkxError:
        return None
    return channel[len("candle") :]


class OkxDialect:
    def __init__(self, hub: WsHub) -> None:
        self.hub = hub
        self.venue = Venue(hub.engine, {})  # for REST's candle rows

    def instrument(self, ident: str) -> Instrument | None:
        return next((i for i in self.hub.engine.instruments.values() if inst_id(i) == ident), None)

    @staticmethod
    def served(conn: Connection, channel: str) -> bool:
        """Candles on the business websocket only; tickers, books and trades on the public one only."""
        if conn.path.rstrip("/").endswith("/ws/v5/business"):
            return candle_bar(channel) is not None
        return channel in PUBLIC

    async def on_text(self, conn: Connection, text: str) -> None:
        if text == "ping":
            await conn.send("pong")
            return
        request = json.loads(text)
        op = request.get("op")
        for arg in request.get("args") or []:
            channel, ident = arg.get("channel"), arg.get("instId")
            inst = self.instrument(ident or "")
            if inst is None or not self.served(conn, channel or ""):
                error = f"Wrong URL or channel:{channel},instId:{ident} doesn't exist."
                await conn.send(json.dumps({"event": "error", "code": "60018", "msg": error, "connId": "fake"}))
                continue
            stream = f"{channel}:{ident}"
            if op == "subscribe":
                # a repeated subscribe starts the channel again: a fresh snapshot follows
                bar = candle_bar(channel) or ""
                last_trade = self.hub.newest_trade(inst.key)
                sub = Subscription("candle" if bar else channel, inst.key, stream, last_trade=last_trade, interval=bar)
                conn.subscriptions[stream] = sub
                conn.wake.set()
            elif op == "unsubscribe":
                conn.subscriptions.pop(stream, None)
            await conn.send(json.dumps({"event": op, "arg": {"channel": channel, "instId": ident}, "connId": "fake"}))

    async def push(self, conn: Connection, sub: Subscription) -> None:
        inst = self.hub.engine.instruments[sub.inst_key]
        arg = {"channel": sub.channel + sub.interval, "instId": inst_id(inst)}
        if sub.channel == "tickers":
            await conn.send(json.dumps({"arg": arg, "data": [ticker_json(inst)]}))
            return
        if sub.channel == "candle":
            if not self.hub.due(sub):
                return
            call = Call(self.venue, {"instId": arg["instId"], "bar": sub.interval, "limit": "1"})
            await conn.send(json.dumps({"arg": arg, "data": get_candles(call)}))
            return
        if sub.channel == "trades":
            trades = self.hub.trades_after(inst.key, sub.last_trade)
            if trades:
                sub.last_trade = int(trades[-1]["id"])
                await conn.send(json.dumps({"arg": arg, "data": [trade_json(inst, t) for t in trades]}))
            return
        hub = self.hub
        seq, asks, bids = hub.engine.book_state(inst.key, LEVELS)
        if seq == sub.seq:
            return
        snapshot = sub.seq == 0
        new, asks_changed, bids_changed = book_diff(sub.book, asks, bids)
        previous = -1 if snapshot else sub.seq
        if not snapshot and hub.take(hub.gaps, inst.key):  # a message lost on the way
            previous -= 1
        if hub.take(hub.crosses, inst.key) and asks:
            crossing = asks[0][0] + inst.tick
            bids_changed = [(crossing, inst.step * 7), *bids_changed]
            new["bids"][crossing] = inst.step * 7
        sub.seq, sub.book = seq, new
        full_bids = sorted(new["bids"].items(), reverse=True)
        full_asks = sorted(new["asks"].items())
        total = checksum([(fmt(p), fmt(q)) for p, q in full_bids], [(fmt(p), fmt(q)) for p, q in full_asks])
        if not snapshot and hub.take(hub.bad_checksums, inst.key):
            total ^= 0x5A5A
        rows_bids = full_bids if snapshot else bids_changed
        rows_asks = full_asks if snapshot else asks_changed
        data = {
            "asks": [[fmt(p), fmt(q), "0", "1" if q else "0"] for p, q in rows_asks],
            "bids": [[fmt(p), fmt(q), "0", "1" if q else "0"] for p, q in rows_bids],
            "ts": str(now_ms()),
            "checksum": total,
            "seqId": seq,
            "prevSeqId": previous,
        }
        message: dict[str, Any] = {"arg": arg, "action": "snapshot" if snapshot else "update", "data": [data]}
        await conn.send(json.dumps(message, separators=(",", ":")))


def mount(app: Any, engine: Engine, interval: float = 0.1) -> WsHub:
    """Serve OKX's public and business websockets on `app` (a Starlette app); returns the hub (faults, counters)."""
    hub = WsHub(engine, interval)
    dialect = OkxDialect(hub)

    async def endpoint(websocket: WebSocket) -> None:
        await hub.serve(websocket, dialect)

    app.router.routes.insert(0, WebSocketRoute("/{path:path}", endpoint))
    return hub
