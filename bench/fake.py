"""The fake Binance as its own process: `python -m bench.fake --port P --latency-ms L --keys N`.

Accepts the API keys `bench-key-0 .. bench-key-<N-1>`, all with the secret `BENCH_SECRET`. Every
request waits `--latency-ms` first (FaultInjector). `GET /__bench/stats` (no added latency) answers
how many requests each path has seen, so the bench can tell coalesced upstream calls apart.

For `scripts/bench --streams` (all optional): the websocket streams are served as by the test fake
(tests/fakes/binance_ws.py) at `--ws-interval` seconds cadence; `--extra-symbols N` adds spot pairs
C0/USDT .. C<N-1>/USDT; `--move BTC/USDT --move-ms 20` moves those prices one tick up every 20 ms
(so every price is sent once: an answer's price names the message it came from; each move is
also a public trade, for the trade stream), and
`GET /__bench/ws-log` answers, per channel and moved instrument, each new value sent (ticker: the
last price, depth: the best bid) with the CLOCK_MONOTONIC ns at which it was handed to the socket;
`GET /__bench/by-symbol` counts REST requests per path and `symbol` query parameter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes import binance
from tests.fakes.binance_ws import BinanceDialect
from tests.fakes.engine import Engine, Instrument
from tests.fakes.server import FaultInjector

BENCH_SECRET = "bench-secret-0123456789abcdef"
STATS_PATH = "/__bench/stats"
WS_LOG_PATH = "/__bench/ws-log"
BY_SYMBOL_PATH = "/__bench/by-symbol"


def key_name(number: int) -> str:
    return f"bench-key-{number}"


class CountingApp:
    """ASGI wrapper: counts requests per path and serves the counts at STATS_PATH."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.by_symbol: Counter[str] = Counter()  # "path?SYMBOL" (requests with a symbol parameter)
        self.ws_log: WsLog | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in (STATS_PATH, WS_LOG_PATH, BY_SYMBOL_PATH):
            if scope["path"] == WS_LOG_PATH:
                body = json.dumps(self.ws_log.as_json() if self.ws_log else {}).encode()
            elif scope["path"] == BY_SYMBOL_PATH:
                body = json.dumps(self.by_symbol).encode()
            else:
                body = json.dumps(self.counts).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.counts[scope["path"]] += 1
        symbol = parse_qs(scope.get("query_string", b"").decode()).get("symbol")
        if symbol:
            self.by_symbol[f"{scope['path']}?{symbol[0]}"] += 1
        await self.app(scope, receive, send)


class WsLog:
    """Every new value the websocket fake sent for the moved instruments, with its send time."""

    def __init__(self, engine: Engine, keys: list[str]) -> None:
        self.engine = engine
        self.keys = set(keys)
        self.sent: dict[str, dict[str, list[tuple[float, int]]]] = {"ticker": {}, "depth": {}}

    def wrap(self, dialect_cls: type) -> None:
        """Wrap the dialect's `push`: note the value before the event is built, the time once sent."""
        original = dialect_cls.push
        log = self

        async def push(dialect: Any, conn: Any, sub: Any) -> None:
            if sub.inst_key not in log.keys or sub.channel not in log.sent:
                await original(dialect, conn, sub)
                return
            inst = log.engine.instruments[sub.inst_key]
            value = float(inst.price if sub.channel == "ticker" else inst.best_bid())
            sent = conn.sent
            await original(dialect, conn, sub)
            if conn.sent > sent:
                rows = log.sent[sub.channel].setdefault(sub.inst_key, [])
                if not rows or rows[-1][0] != value:
                    rows.append((value, time.monotonic_ns()))

        dialect_cls.push = push

    def as_json(self) -> dict:
        return {channel: {k: rows[-20000:] for k, rows in by_key.items()} for channel, by_key in self.sent.items()}


def engine_with(extra: int) -> Engine:
    """The default engine plus spot pairs C0/USDT .. C<extra-1>/USDT."""
    engine = binance.default_engine()
    for n in range(extra):
        inst = Instrument(f"C{n}/USDT", f"C{n}", "USDT", price=Decimal(100 + n), tick=Decimal("0.01"))
        engine.instruments[inst.key] = inst
        engine.book_seqs[inst.key] = engine.book_seqs["BTC/USDT"]
        engine.public_trades[inst.key] = engine._seed_trades(inst)
    return engine


async def move_prices(engine: Engine, keys: list[str], every_ms: float) -> None:
    """One tick up per `every_ms` for each of `keys`: every price is new, and someone trades at it."""
    while True:
        await asyncio.sleep(every_ms / 1000)
        for key in keys:
            inst = engine.instruments[key]
            engine.set_price(key, inst.price + inst.tick)
            engine.public_trade(key, inst.price, inst.step, "buy")


def build_app(
    latency_ms: float,
    keys: int,
    ops: bool = False,
    weight_limit: int = 0,
    engine: Engine | None = None,
    ws_interval: float | None = None,
) -> CountingApp:
    """`ops` (scripts/bench --ops): the latency, Binance's per-IP weight limit (`weight_limit`, 0: off),
    random failures and the request log of bench/weights.py instead of the FaultInjector's latency.
    `engine` (default: binance.default_engine()), `ws_interval`: the websocket streams' cadence (s)."""
    credentials = {key_name(n): BENCH_SECRET for n in range(keys)}
    app = binance.create_app(engine or binance.default_engine(), credentials)
    if ws_interval is not None:
        app.state.ws.interval = ws_interval
    if ops:
        from bench.weights import OpsFake

        return CountingApp(OpsFake(app, latency_ms, weight_limit))
    return CountingApp(FaultInjector(app, latency_ms=latency_ms, record=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--ops", action="store_true", help="weight limit, failures and request log (--ops bench)")
    parser.add_argument("--weight-limit", type=int, default=0, help="with --ops: Binance weight per IP per minute")
    parser.add_argument("--ws-interval", type=float, default=None, help="websocket cadence, s (default 0.1)")
    parser.add_argument("--extra-symbols", type=int, default=0, help="spot pairs C0/USDT .. C<N-1>/USDT")
    parser.add_argument("--move", action="append", default=[], help="instrument whose price moves (repeatable)")
    parser.add_argument("--move-ms", type=float, default=20.0, help="with --move: one tick up this often")
    args = parser.parse_args()
    engine = engine_with(args.extra_symbols) if args.extra_symbols or args.move else None
    app = build_app(args.latency_ms, args.keys, args.ops, args.weight_limit, engine, args.ws_interval)
    if not args.move:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False)
        return
    assert engine is not None
    app.ws_log = WsLog(engine, args.move)
    app.ws_log.wrap(BinanceDialect)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False
    )

    async def serve() -> None:
        mover = asyncio.ensure_future(move_prices(engine, args.move, args.move_ms))
        try:
            await uvicorn.Server(config).serve()
        finally:
            mover.cancel()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
