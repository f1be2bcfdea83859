"""Binance's market streams on the fake's engine, for unmodified `ccxt.pro.binance`.

Any websocket path is served (the gateway's `api_base` rewrite keeps the real host as the first
path segment: `/stream.binance.com:9443/ws/0`, `/fstream.binance.com/public/ws/0`); a path that
names `fstream` is USDⓈ-M futures, `dstream` COIN-M, anything else spot. `/ws...` paths send raw
events, `/stream` paths wrap them as combined streams `{"stream": ..., "data": ...}` (and take
`?streams=a/b` on connect).

Requests: `{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": n}`, answered
`{"result": null, "id": n}`. Streams: `<symbol>@ticker` (24hrTicker; spot carries b/B/a/A, futures
do not, as on Binance), `<symbol>@depth[@100ms]` diffs with first/final update ids `U`/`u`
(futures also `pu`, the previous event's `u`), continuing the REST snapshot's `lastUpdateId`
(`Engine.book_state`), as in Binance's "how to manage a local order book", and:

- `<symbol>@aggTrade`: one event per public trade appended after the subscription, oldest first,
  `{"e": "aggTrade", "E", "s", "a", "p", "q", "f", "l", "T", "m"[, "M"]}` whose a..M are the REST
  `aggTrades` row of that trade (`a` = `f` = `l` = the engine's trade id; spot only has `M`);
- `<symbol>@trade`: likewise `{"e": "trade", "E", "s", "t", "p", "q", "T", "m", "M"}` on spot,
  `{"e": "trade", "E", "T", "s", "t", "p", "q", "X": "MARKET", "m"}` on futures, `t` = REST trades' `id`;
- `<symbol>@kline_<interval>` (`binance_common.INTERVALS`): the current bar once per hub interval,
  `{"e": "kline", "E", "s", "k": {t, T, s, i, f, L, o, c, h, l, v, n, x, q, V, Q, B}}`, values as the
  REST kline of the same open time (f/L: the bar's first and last public trade ids, -1 if none).
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from .binance_common import INTERVALS, Call, agg_trades, f8, kline_rows, now_ms, plain, recent_trades, ticker_stats
from .binance_futures import px, qty
from .engine import Engine, Instrument
from .okx_common import yymmdd
from .ws_hub import Connection, Subscription, WsHub, book_diff

LEVELS = 100  # the book depth the diffs cover (the snapshot a client takes should not be deeper)
CHANNELS = ("ticker", "depth", "aggTrade", "trade", "kline")


def binance_id(inst: Instrument) -> str:
    if inst.kind == "spot" or (inst.kind == "swap" and not inst.inverse):
        return inst.base + inst.quote
    if inst.kind == "swap":
        return f"{inst.base}{inst.quote}_PERP"
    return f"{inst.base}{inst.quote}_{yymmdd(inst.expiry_ms or 0)}"


def market_of(path: str) -> str:
    return "linear" if "fstream" in path else "inverse" if "dstream" in path else "spot"


class BinanceDialect:
    def __init__(self, hub: WsHub) -> None:
        self.hub = hub

    def instrument(self, path: str, stream_id: str) -> Instrument | None:
        market = market_of(path)
        for inst in self.hub.engine.instruments.values():
            spot = inst.kind == "spot"
            if (market == "spot") != spot or (market == "inverse") != (inst.inverse and not spot):
                continue
            if binance_id(inst).lower() == stream_id.lower():
                return inst
        return None

    def subscribe(self, conn: Connection, stream: str) -> None:
        name, _, channel = stream.partition("@")
        channel, _, interval = channel.split("@")[0].partition("_")  # "kline_1m" -> kline, 1m
        inst = self.instrument(conn.path, name)
        known = interval in INTERVALS if channel == "kline" else channel in CHANNELS and not interval
        if inst is None or not known:
            return
        seq, asks, bids = self.hub.engine.book_state(inst.key, LEVELS)
        book = book_diff({}, asks, bids)[0]
        last_trade = self.hub.newest_trade(inst.key)
        sub = Subscription(channel, inst.key, stream, seq=seq, book=book, last_trade=last_trade, interval=interval)
        conn.subscriptions[stream] = sub
        conn.wake.set()

    async def on_text(self, conn: Connection, text: str) -> None:
        request = json.loads(text)
        method, params, ident = request.get("method"), request.get("params") or [], request.get("id")
        for stream in params:
            if method == "SUBSCRIBE":
                self.subscribe(conn, stream)
            elif method == "UNSUBSCRIBE":
                conn.subscriptions.pop(stream, None)
        await conn.send(json.dumps({"result": None, "id": ident}))

    async def push(self, conn: Connection, sub: Subscription) -> None:
        inst = self.hub.engine.instruments[sub.inst_key]
        futures = market_of(conn.path) != "spot"
        if sub.channel == "ticker":
            events = [self.ticker(inst, futures)]
        elif sub.channel == "depth":
            event = self.depth(sub, inst, futures)
            events = [] if event is None else [event]
        elif sub.channel == "kline":
            events = [self.kline(sub, inst, futures)] if self.hub.due(sub) else []
        else:
            events = self.trades(sub, inst, futures)
        for event in events:
            if re.search(r"/stream(/\d+)?$", conn.path):
                event = {"stream": sub.stream, "data": event}
            await conn.send(json.dumps(event, separators=(",", ":")))

    def trades(self, sub: Subscription, inst: Instrument, futures: bool) -> list[dict]:
        """One event per trade after the last one sent, built from REST's aggTrades / trades rows."""
        engine = self.hub.engine
        call = Call("GET", "", {"fromId": str(sub.last_trade + 1), "limit": "1000"})
        with engine.lock:
            rows = (agg_trades if sub.channel == "aggTrade" else recent_trades)(call, inst, engine, not futures)
        now, symbol = now_ms(), binance_id(inst)
        events: list[dict] = []
        for row in rows:
            if sub.channel == "aggTrade":
                events.append({"e": "aggTrade", "E": now, "s": symbol, **row})
                sub.last_trade = row["a"]
                continue
            event: dict[str, Any] = {"e": "trade", "E": now}
            if futures:
                event["T"] = row["time"]
            event.update({"s": symbol, "t": row["id"], "p": row["price"], "q": row["qty"]})
            event.update({"X": "MARKET"} if futures else {"T": row["time"]})
            event["m"] = row["isBuyerMaker"]
            if not futures:
                event["M"] = True
            events.append(event)
            sub.last_trade = row["id"]
        return events

    def kline(self, sub: Subscription, inst: Instrument, futures: bool) -> dict:
        """The current bar, its values formatted as the REST klines of the same market format them."""
        call = Call("GET", "", {"interval": sub.interval, "limit": "1"})
        [(t, close, (_, o, h, low, c, v))] = kline_rows(call, inst, 1)
        price = partial(px, inst) if futures else f8
        amount = partial(qty, inst) if futures else f8
        with self.hub.engine.lock:
            ids = [int(x["id"]) for x in self.hub.engine.public_trades[inst.key] if t <= x["time"] <= close]
        symbol = binance_id(inst)
        k = {
            "t": t,
            "T": close,
            "s": symbol,
            "i": sub.interval,
            "f": min(ids, default=-1),
            "L": max(ids, default=-1),
            "o": price(o),
            "c": price(c),
            "h": price(h),
            "l": price(low),
            "v": amount(v),
            "n": 10 + t // 60000 % 50,  # the trade count REST klines report
            "x": False,
            "q": f8(v * c),
            "V": amount(v / 2),
            "Q": f8(v * c / 2),
            "B": "0",
        }
        return {"e": "kline", "E": now_ms(), "s": symbol, "k": k}

    def depth(self, sub: Subscription, inst: Instrument, futures: bool) -> dict | None:
        hub = self.hub
        seq, asks, bids = hub.engine.book_state(inst.key, LEVELS)
        if seq == sub.seq:
            return None
        new, asks_changed, bids_changed = book_diff(sub.book, asks, bids)
        first, previous = sub.seq + 1, sub.seq
        if hub.take(hub.gaps, inst.key):  # an update id lost on the way
            first, previous = first + 1, previous - 1
        if hub.take(hub.crosses, inst.key) and asks:
            crossing = asks[0][0] + inst.tick
            bids_changed = [(crossing, inst.step * 7), *bids_changed]
            new["bids"][crossing] = inst.step * 7  # sent, so a later diff removes it again
        sub.seq, sub.book = seq, new
        fmt = plain if futures else f8
        now = now_ms()
        event: dict[str, Any] = {"e": "depthUpdate", "E": now, "s": binance_id(inst)}
        if futures:
            event["T"] = now
        event.update({"U": first, "u": seq})
        if futures:
            event["pu"] = previous
        event["b"] = [[fmt(p), fmt(q)] for p, q in bids_changed]
        event["a"] = [[fmt(p), fmt(q)] for p, q in asks_changed]
        return event

    def ticker(self, inst: Instrument, futures: bool) -> dict:
        s = ticker_stats(self.hub.engine, inst)
        now = now_ms()
        trades = self.hub.engine.public_trades[inst.key]
        fmt = plain if futures else f8
        event: dict[str, Any] = {
            "e": "24hrTicker",
            "E": now,
            "s": binance_id(inst),
            "p": fmt(s["change"]),
            "P": f"{s['percent']:.3f}",
            "w": fmt(s["vwap"]),
        }
        if not futures:
            event["x"] = fmt(s["open"])
        event.update({"c": fmt(s["last"]), "Q": fmt(trades[-1]["qty"])})
        if not futures:
            level = inst.step * 1000
            event.update({"b": fmt(inst.best_bid()), "B": fmt(level), "a": fmt(inst.best_ask()), "A": fmt(level)})
        event.update(
            {
                "o": fmt(s["open"]),
                "h": fmt(s["high"]),
                "l": fmt(s["low"]),
                "v": fmt(s["volume"]),
                "q": fmt(s["quote_volume"]),
                "O": now - 86_400_000,
                "C": now,
                "F": int(trades[0]["id"]),
                "L": int(trades[-1]["id"]),
                "n": len(trades),
            }
        )
        return event


def mount(app: Any, engine: Engine, interval: float = 0.1) -> WsHub:
    """Serve Binance's streams on `app` (a Starlette app); returns the hub (faults, counters)."""
    hub = WsHub(engine, interval)
    dialect = BinanceDialect(hub)

    async def endpoint(websocket: WebSocket) -> None:
        streams = [s for s in (websocket.query_params.get("streams") or "").split("/") if s]

        def on_open(conn: Connection) -> None:  # combined streams named in the URL
            for stream in streams:
                dialect.subscribe(conn, stream)

        await hub.serve(websocket, dialect, on_open)

    app.router.routes.insert(0, WebSocketRoute("/{path:path}", endpoint))
    return hub
