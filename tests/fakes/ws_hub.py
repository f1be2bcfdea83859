"""What the websocket fakes (binance_ws.py, okx_ws.py) share: connections, pushes and faults.

A `WsHub` belongs to one fake app. Each websocket connection has its subscriptions; the hub
pushes to them when the engine changes an instrument (`Engine.listeners`, called from whatever
thread moved the price) and, between changes, every `interval` seconds (the exchange's own
cadence: Binance's `@100ms` diffs, OKX's books every 100 ms), so a healthy stream is never quiet.
On every push a dialect sends what each subscription is owed: book diffs and tickers; public
trades appended since the last one sent (`Subscription.last_trade`; never an older one); and the
current candle, whether or not anything changed (exchanges push candles on a cadence).

Faults, set from the test's thread (each a plain attribute or a thread-safe call):

    hub.disconnect()            # close every open connection (the client must reconnect)
    hub.silence(2.0)            # connections stay open but nothing is sent for 2 s (None: until lifted)
    hub.gap("BTC/USDT")         # the next book update of that instrument skips an update id / seqId
    hub.bad_checksum("BTC/USDT")  # the next OKX book update carries a wrong checksum
    hub.cross("BTC/USDT")       # the next book update adds a bid above the best ask (a crossed book)
    hub.refuse = True           # new connections are refused (handshake rejected)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .engine import Engine


@dataclass
class Subscription:
    channel: str  # dialect's name: "ticker", "depth", "aggTrade", "trade", "kline", "tickers", "books", "candle"
    inst_key: str
    stream: str  # what the client subscribed with (Binance stream name, OKX channel:instId)
    seq: int = 0  # the update id the client last got
    book: dict = field(default_factory=dict)  # side -> {price: qty} as last sent
    last_trade: int = 0  # trade channels: the id of the last public trade sent (or the newest at subscription)
    interval: str = ""  # candle channels: Binance's kline interval ("1m") or OKX's bar ("1H")
    pushed_at: float = 0.0  # candle channels: when the last bar was sent (they go out once per hub interval)


class Connection:
    def __init__(self, hub: WsHub, websocket: WebSocket, path: str) -> None:
        self.hub = hub
        self.websocket = websocket
        self.path = path
        self.subscriptions: dict[str, Subscription] = {}
        self.wake = asyncio.Event()
        self.closed = False
        self.sent = 0
        self.lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        if self.closed:
            return
        async with self.lock:
            try:
                await self.websocket.send_text(text)
                self.sent += 1
            except Exception:  # the peer went away
                self.closed = True


class WsHub:
    def __init__(self, engine: Engine, interval: float = 0.1) -> None:
        self.engine = engine
        self.interval = interval
        self.connections: set[Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.silent_until = 0.0
        self.refuse = False
        self.gaps: set[str] = set()
        self.bad_checksums: set[str] = set()
        self.crosses: set[str] = set()
        self.connects = 0
        self._lock = threading.Lock()
        self._ticker: asyncio.Task | None = None
        engine.listeners.append(self._engine_changed)

    # --- faults (callable from any thread) ------------------------------------------------
    def disconnect(self) -> None:
        self._soon(self._close_all)

    def silence(self, seconds: float | None) -> None:
        self.silent_until = float("inf") if seconds is None else time.monotonic() + seconds

    def speak(self) -> None:
        self.silent_until = 0.0

    def gap(self, inst_key: str) -> None:
        with self._lock:
            self.gaps.add(inst_key)

    def bad_checksum(self, inst_key: str) -> None:
        with self._lock:
            self.bad_checksums.add(inst_key)

    def cross(self, inst_key: str) -> None:
        with self._lock:
            self.crosses.add(inst_key)

    def take(self, faults: set[str], inst_key: str) -> bool:
        with self._lock:
            if inst_key in faults:
                faults.discard(inst_key)
                return True
            return False

    def due(self, sub: Subscription) -> bool:
        """Whether a candle subscription's next bar is due: at most one per `interval`, as an
        exchange pushes bars on a cadence (Binance: every 2 s) and not on every book change."""
        now = time.monotonic()
        if now - sub.pushed_at < self.interval:
            return False
        sub.pushed_at = now
        return True

    @property
    def silent(self) -> bool:
        return time.monotonic() < self.silent_until

    def newest_trade(self, inst_key: str) -> int:
        """The id of the instrument's newest public trade: a new trade subscription starts after it."""
        with self.engine.lock:
            return max((int(t["id"]) for t in self.engine.public_trades[inst_key]), default=0)

    def trades_after(self, inst_key: str, last: int) -> list[dict]:
        """The instrument's public trades with an id above `last`, oldest first."""
        with self.engine.lock:
            trades = [t for t in self.engine.public_trades[inst_key] if int(t["id"]) > last]
        return sorted(trades, key=lambda t: int(t["id"]))

    def subscribed(self) -> int:
        """Subscriptions on connections still open (a closed one lingers in `connections` a moment)."""
        return sum(len(c.subscriptions) for c in list(self.connections) if not c.closed)

    # --- plumbing ---------------------------------------------------------------------------
    def _soon(self, fn: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(fn()) if asyncio.iscoroutinefunction(fn) else fn())

    def _engine_changed(self, inst_key: str) -> None:
        def wake() -> None:
            for conn in list(self.connections):
                if any(s.inst_key == inst_key for s in conn.subscriptions.values()):
                    conn.wake.set()

        self._soon(wake)

    async def _close_all(self) -> None:
        for conn in list(self.connections):
            conn.closed = True
            with contextlib.suppress(Exception):
                await conn.websocket.close(code=1001)

    async def serve(self, websocket: WebSocket, dialect: Any, on_open: Any = None) -> None:
        """One websocket connection: read requests, push updates until either side closes."""
        self.loop = asyncio.get_running_loop()
        if self.refuse:
            await websocket.close(code=1013)
            return
        await websocket.accept()
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())
        self.connects += 1
        conn = Connection(self, websocket, websocket.url.path)
        self.connections.add(conn)
        if on_open is not None:
            on_open(conn)
        pusher = asyncio.ensure_future(self._push_loop(conn, dialect))
        try:
            while not conn.closed:
                text = await websocket.receive_text()
                await dialect.on_text(conn, text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            conn.closed = True
            pusher.cancel()
            self.connections.discard(conn)

    async def _tick(self) -> None:
        """Every `interval`, each subscribed instrument's book takes an update (no level changes).

        Touching wakes every connection subscribed to the instrument, whatever the channel, so
        candles are pushed on this cadence and new trades are looked for at least this often."""
        while self.connections:
            await asyncio.sleep(self.interval)
            if self.silent:
                continue
            keys = {s.inst_key for c in list(self.connections) for s in c.subscriptions.values()}
            for key in keys:
                self.engine.touch(key)

    async def _push_loop(self, conn: Connection, dialect: Any) -> None:
        while not conn.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), self.interval * 2)
            conn.wake.clear()
            if self.silent or conn.closed:
                continue
            for sub in list(conn.subscriptions.values()):
                try:
                    await dialect.push(conn, sub)
                except Exception:  # a bug in the fake: say so, as a real server would drop us
                    import traceback

                    traceback.print_exc()
                    raise


def book_diff(old: dict, asks: list, bids: list) -> tuple[dict, list, list]:
    """(the new book as side -> {price: qty}, changed asks, changed bids), removed levels as qty 0."""
    new = {"asks": {p: q for p, q in asks}, "bids": {p: q for p, q in bids}}
    changes = {}
    for side in ("asks", "bids"):
        before, after = old.get(side, {}), new[side]
        rows = [(p, q) for p, q in after.items() if before.get(p) != q]
        rows += [(p, 0) for p in before if p not in after]
        changes[side] = sorted(rows, reverse=(side == "bids"))
    return new, changes["asks"], changes["bids"]
