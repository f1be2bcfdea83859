"""Market data from the exchange's websocket: GetTicker, GetDepth, GetTrades and GetRecords
answered from memory.

Per route, `streams: {ticker: auto, depth: auto, trades: auto, records: auto, max_age_ms: 2000}`
(`off | on | auto`):

- `on`: every symbol asked for is subscribed (up to the route's cap);
- `auto` (the default): a symbol asked for at least `HOT_CALLS` times within `HOT_WINDOW_S`
  becomes hot and is subscribed; a subscription unused for `IDLE_CLOSE_S` is closed;
- `off`: REST only.

Every route gets at most `MAX_PER_ROUTE` subscriptions per kind (records: per symbol and timeframe). One
public `ccxt.pro` client per venue serves every subscription of the route, whoever asks; it
shares the venue scope's markets by reference (`MarketState.share`, never loaded per stream), and
its REST requests (Binance's book snapshots) go through the route's rate budgets.

A background task per subscription loops `watch_ticker` / `watch_order_book` / `watch_trades` /
`watch_ohlcv` and keeps the latest state and the time it arrived. An answer comes from memory only
when that state is younger than `max_age_ms` and the stream is healthy; otherwise `fresh()` returns
None and the handler asks the exchange over REST exactly as without streams. A book that ccxt.pro
rejects (a sequence gap: InvalidNonce / ChecksumError; OKX's CRC32 checksum, checked here) is
dropped to REST until it has been rebuilt from a new snapshot, a crossed book (best bid >= best
ask) is never served, a broken connection is retried with backoff (`RECONNECT_MIN_S` doubling to
`RECONNECT_MAX_S`), and a stream silent for `SILENT_RECONNECT_S` has its connection closed and
opened again. An exchange that ccxt.pro lacks, or whose class does not have the kind's watch
method, stays on REST.

Trades and candles are a history, not a state: a stream brings only what happens after it
subscribed, so each keeps a tape (gateway/tapes.py) that answers only once a REST answer overlaps
it and agrees with it (the same trades, with the same ids, amounts and times; no candle missing).
The stream asks REST itself as soon as its first message arrived (and again after `SEED_RETRY_S`,
doubling to `SEED_RETRY_MAX_S`, until it joins), asks once more with a larger limit to learn
whether REST's answer without a limit is a page (then memory answers as many without a limit) or
everything there is (then such asks go to REST), and checks the tape against REST again after
`VERIFY_FIRST_S`, doubling to `VERIFY_MAX_S`. Every REST answer the gateway gets for the symbol is
offered to the tape too. A disagreement empties the tape; `MISMATCHES_TO_REFUSE` within `REFUSE_WINDOW_S` (a stream
that aggregates fills, such as OKX's `trades` channel, or carries no trade ids) and the route
answers that kind over REST only. A replaced connection (messages may be lost) empties the tape
too. An explicit limit larger than any REST answer seen goes to REST. A quiet market sends no
trades: its trade stream is never "silent", but answers only within `max_age_ms` of the newest
message, like every other kind.

Limits: a quiet market whose exchange sends nothing for longer than `max_age_ms` is answered over
REST (age is that of the latest exchange message for the symbol); a depth `limit` deeper than the
streamed book (`BOOK_DEPTH` levels) is answered over REST; a GetDepth without `limit` is answered
with the streamed levels (up to `BOOK_DEPTH`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ccxt.pro as ccxtpro

from gateway import metrics
from gateway.settings import STREAM_KINDS
from gateway.tapes import JOINED, MISMATCH, CandleTape, TradeTape, trade_key
from gateway.venues import Venue, build_exchange

log = logging.getLogger("gateway.streams")

KINDS = STREAM_KINDS
TAPE_KINDS = ("trades", "records")  # histories kept on a tape (gateway/tapes.py), joined to REST
WATCH_HAS = {"ticker": "watchTicker", "depth": "watchOrderBook", "trades": "watchTrades", "records": "watchOHLCV"}
# the REST call a tape is joined to: a records stream needs the exchange's own candles (not ccxt's emulation)
REST_HAS = {"trades": "fetchTrades", "records": "fetchOHLCV"}
UNWATCH = {
    "ticker": ("unWatchTicker", "un_watch_ticker"),
    "depth": ("unWatchOrderBook", "un_watch_order_book"),
    "trades": ("unWatchTrades", "un_watch_trades"),
    "records": ("unWatchOHLCV", "un_watch_ohlcv"),
}
DEFAULT_MODE = "auto"
DEFAULT_MAX_AGE_MS = 2000
HOT_CALLS = 3  # auto: asked this many times ...
HOT_WINDOW_S = 10.0  # ... within this many seconds makes a symbol hot
IDLE_CLOSE_S = 300.0  # a subscription nobody asked for in 5 minutes is closed
MAX_PER_ROUTE = 200  # subscriptions per route and kind
BOOK_DEPTH = 100  # levels a streamed book keeps (deeper GetDepth limits go to REST)
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 30.0
SILENT_RECONNECT_S = 10.0  # a subscription silent this long gets a new connection
SWEEP_S = 5.0
SEED_RETRY_S = 2.0  # a tape whose REST answer did not join the stream asks again this much later ...
SEED_RETRY_MAX_S = 60.0  # ... doubling up to this
SEED_TIMEOUT_S = 10.0
VERIFY_FIRST_S = 30.0  # a seeded tape is checked against REST again this much later ...
VERIFY_MAX_S = 600.0  # ... then at twice the interval after every agreement, up to this
MISMATCHES_TO_REFUSE = 3  # REST answers that disagree with a kind's stream within ...
REFUSE_WINDOW_S = 900.0  # ... this long: REST only for the kind on the route (a hole is rare, an aggregating
# stream disagrees at every check, and each disagreement brings the next check back to VERIFY_FIRST_S)
# ccxt.pro options per exchange family: the ticker stream that carries bid/ask where there is a choice.
TICKER_PARAMS = {"binance": {"name": "ticker"}}
# ... and the trade stream whose ids are those of REST's fetchTrades (Binance's aggTrades), so that both join.
TRADES_PARAMS = {"binance": {"name": "aggTrade"}}
BOOK_ERRORS = (ccxtpro.ChecksumError, ccxtpro.InvalidNonce)


def _now() -> float:
    return time.monotonic()


Key = tuple[str, str, str]  # (kind, symbol, timeframe): timeframe only for records, else ""


def _family_params(table: dict[str, dict], client: Any) -> dict:
    return next((p for prefix, p in table.items() if client.id.startswith(prefix)), {})


@dataclass
class Stream:
    """One subscription: the latest state and its health."""

    kind: str
    symbol: str
    timeframe: str = ""
    last_used: float = field(default_factory=_now)
    latest: Any = None
    received: float = 0.0  # monotonic time of the latest exchange message
    healthy: bool = False  # False until a state arrived, and after an error until a new one
    error: str | None = None
    updates: int = 0
    reconnects: int = 0
    resyncs: int = 0  # books dropped for a sequence or checksum failure, or crossed
    task: asyncio.Task | None = None
    tape: TradeTape | CandleTape | None = None  # trades and records
    # REST's page without a limit, once proven to be a page (a larger limit gave more): what a tape
    # answers without a limit; None while REST may be answering everything there is (a young market)
    rest_count: int | None = None
    rest_max: int = 0  # the most items one REST answer held: a larger limit is left to REST
    page_seen: tuple | None = None  # (length, oldest item) of the last REST answer without a limit
    next_seed: float = 0.0
    seed_every: float = SEED_RETRY_S
    disagreements: int = 0  # REST answers that disagreed with the tape
    disagreed_at: deque = field(default_factory=lambda: deque(maxlen=MISMATCHES_TO_REFUSE))
    next_verify: float = 0.0
    verify_every: float = VERIFY_FIRST_S
    url: str | None = None  # the websocket URL its watch subscribes on (seen by `_count_connections`)
    generation: int | None = None  # that connection's number at the last result

    @property
    def key(self) -> Key:
        return (self.kind, self.symbol, self.timeframe)

    def __post_init__(self) -> None:
        if self.kind == "trades":
            self.tape = TradeTape()
        elif self.kind == "records":
            self.tape = CandleTape()

    def age_ms(self, now: float | None = None) -> float | None:
        return None if not self.received else ((now or _now()) - self.received) * 1000


class RouteStreams:
    """The streams of one route: its ccxt.pro client, modes, hotness and subscriptions."""

    def __init__(self, hub: StreamHub, venue: Venue) -> None:
        self.hub = hub
        self.venue = venue
        config = venue.streams or {}
        self.modes = {kind: config.get(kind, DEFAULT_MODE) for kind in KINDS}
        self.max_age_ms = float(config.get("max_age_ms", DEFAULT_MAX_AGE_MS))
        self.streams: dict[Key, Stream] = {}
        self.hits: dict[Key, deque] = {}
        self.client: Any = None
        self.handle: Any = None  # ClientHandle of the client (markets shared from the venue's scope)
        self.unsupported: str | None = None
        self.answers = {"stream": 0, "rest": 0}
        self.ws_has: dict[str, bool] = {}
        self.refused: dict[str, str] = {}  # kinds whose stream disagreed with REST: REST only
        self.closing: set[asyncio.Task] = set()
        self.ticker_params: dict = {}  # what the client's watches need, found once (see TICKER_PARAMS)
        self.trades_params: dict = {}
        if getattr(ccxtpro, venue.ccxt_id, None) is None:
            self.unsupported = f"ccxt.pro has no {venue.ccxt_id} client"
        elif any(self.modes[kind] != "off" for kind in KINDS):
            self.client, self.handle = hub.client_for(venue)
            self.ticker_params = _family_params(TICKER_PARAMS, self.client)
            self.trades_params = _family_params(TRADES_PARAMS, self.client)
            has = self.client.has
            self.ws_has = {kind: bool(has.get(WATCH_HAS[kind])) for kind in KINDS}
            for kind, rest in REST_HAS.items():
                self.ws_has[kind] = self.ws_has[kind] and has.get(rest) is True
            if not any(self.ws_has.values()):
                self.unsupported = f"{venue.ccxt_id} has no {'/'.join(WATCH_HAS.values())} in ccxt.pro"

    def enabled(self, kind: str) -> bool:
        return self.unsupported is None and self.modes[kind] != "off" and self.ws_has.get(kind, False)

    # --- the answer ---------------------------------------------------------------------------
    def answer(self, kind: str, market: dict, limit: int | None, timeframe: str = "") -> tuple[Any, dict] | None:
        symbol = market["symbol"]
        key = (kind, symbol, timeframe)
        now = _now()
        stream = self.streams.get(key)
        if stream is None:
            self._asked(key, now)
            return None
        stream.last_used = now
        result = self._from_memory(stream, market, limit, now)
        self.answers["stream" if result else "rest"] += 1
        metrics.stream_answer(self.venue.route, kind, "stream" if result else "rest")
        return result

    def _usable(self, stream: Stream | None, now: float) -> bool:
        if stream is None or not stream.healthy or stream.latest is None:
            return False
        return (now - stream.received) * 1000 <= self.max_age_ms

    def offer(self, kind: str, market: dict, items: list, limit: int | None, timeframe: str = "") -> None:
        """A REST answer for a streamed history: it may join the stream's tape (gateway/tapes.py)."""
        stream = self.streams.get((kind, market["symbol"], timeframe))
        if stream is not None and stream.tape is not None:
            self.offered(stream, items, unlimited=limit is None)

    def offered(self, stream: Stream, items: list, unlimited: bool) -> str:
        """Offer REST's items to the tape. A disagreement empties it (a hole, or a stream that is not
        REST's: `MISMATCHES_TO_REFUSE` within `REFUSE_WINDOW_S` and the route answers the kind over
        REST only).
        Answers without a limit also tell REST's page: the same length twice, the window moved."""
        stream.rest_max = max(stream.rest_max, len(items))
        if unlimited and items:
            seen = (len(items), _first_key(items))
            if stream.page_seen and stream.page_seen[0] == seen[0] and stream.page_seen[1] != seen[1]:
                stream.rest_count = seen[0]
            elif stream.rest_count is not None and seen[0] != stream.rest_count:
                stream.rest_count = None  # not a fixed page after all
            stream.page_seen = seen
        verdict = stream.tape.offer(items)
        if verdict == JOINED:
            if (stream.error or "").startswith(("REST seed", "disagrees")):
                stream.error = None
        elif verdict == MISMATCH:
            now = _now()
            stream.disagreements += 1
            stream.disagreed_at.append(now)
            stream.tape.reset()
            stream.verify_every = VERIFY_FIRST_S  # check the next tape soon
            stream.error = f"disagrees with REST's {stream.kind} ({stream.disagreements} times)"
            metrics.stream_event(self.venue.route, stream.kind, "mismatch")
            recent = stream.disagreed_at
            if len(recent) == recent.maxlen and now - recent[0] <= REFUSE_WINDOW_S:
                self.refuse(stream.kind, f"the {stream.kind} stream disagrees with REST's {stream.kind}")
        return verdict

    def refuse(self, kind: str, reason: str) -> None:
        """Answer `kind` over REST only on this route (its streams are closed)."""
        if kind in self.refused:
            return
        log.warning("route %s: %s over REST only: %s", self.venue.route, kind, reason)
        self.refused[kind] = reason
        self.ws_has[kind] = False
        for key in [k for k in self.streams if k[0] == kind]:
            closing = asyncio.get_running_loop().create_task(self.hub.stop(self, key))
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)

    def _from_memory(self, stream: Stream, market: dict, limit: int | None, now: float) -> tuple[Any, dict] | None:
        if not self._usable(stream, now):
            return None
        if stream.tape is not None:
            if limit is not None and limit > stream.rest_max:  # more than REST was seen to answer: REST
                return None
            self._catch_up(stream)
            count = limit or stream.rest_count
            items = stream.tape.newest(count) if count else None
            return None if items is None else (items, _source(stream, now))
        if stream.kind == "depth":
            if limit is not None and limit > BOOK_DEPTH:
                return None
            book = _copy_book(stream.latest, limit or BOOK_DEPTH)
            if book is None:  # empty or crossed: never served; the book is rebuilt
                self._book_failed(stream, "crossed or empty book")
                return None
            return book, _source(stream, now)
        ticker = dict(self._newest_ticker(stream))
        if ticker.get("bid") is None or ticker.get("ask") is None:  # e.g. futures tickers: the book's top
            book_stream = self.streams.get(("depth", stream.symbol, ""))
            if not self._usable(book_stream, now):
                return None
            top = _copy_book(book_stream.latest, 1)
            if top is None:
                return None
            ticker["bid"], ticker["ask"] = top["bids"][0][0], top["asks"][0][0]
        if ticker["bid"] is None or ticker["ask"] is None or ticker["bid"] >= ticker["ask"]:
            return None
        return ticker, _source(stream, now)

    def _newest_ticker(self, stream: Stream) -> dict:
        """The newest ticker ccxt.pro parsed for the symbol. A message that arrives while the watch
        loop has no future pending (two in one read) resolves nothing and would be missed until the
        next one; ccxt.pro stores every parsed ticker in `client.tickers`, so that is read instead
        (its age is counted from the loop's last result: never younger than it really is)."""
        cached = getattr(self.client, "tickers", None)
        newest = cached.get(stream.symbol) if isinstance(cached, dict) else None
        return newest if isinstance(newest, dict) else stream.latest

    def _catch_up(self, stream: Stream) -> None:
        """Bring the tape up to what ccxt.pro has parsed (a message read together with another one
        resolves no watch and would wait for the next). Only items newer than the tape's newest,
        so that nothing from before a reconnect slips in."""
        tape = stream.tape
        if not len(tape):
            return
        if isinstance(tape, TradeTape):
            cached = getattr(self.client, "trades", {}).get(stream.symbol)
            newer = []
            for trade in reversed(cached or ()):
                if trade_key(trade) in tape.keys:
                    tape.extend(newer[::-1])
                    return
                newer.append(trade)
            return
        cached = (getattr(self.client, "ohlcvs", {}).get(stream.symbol) or {}).get(stream.timeframe)
        if cached and tape.first_streamed is not None:
            tape.extend(
                [row for row in list(cached)[-2:] if row and row[0] is not None and row[0] >= tape.first_streamed]
            )

    # --- hotness and subscriptions ----------------------------------------------------------------
    def _asked(self, key: Key, now: float) -> None:
        kind = key[0]
        if not self.enabled(kind):
            return
        if self.modes[kind] == "auto":
            hits = self.hits.setdefault(key, deque())
            hits.append(now)
            while hits and now - hits[0] > HOT_WINDOW_S:
                hits.popleft()
            if len(hits) < HOT_CALLS:
                if len(self.hits) > 10 * MAX_PER_ROUTE:  # bounded: forget cold symbols
                    self._forget_cold(now)
                return
            self.hits.pop(key, None)
        if sum(1 for k in self.streams if k[0] == kind) >= MAX_PER_ROUTE:
            metrics.stream_event(self.venue.route, kind, "capped")
            return
        self.hub.start(self, key)

    def _forget_cold(self, now: float) -> None:
        for key in [k for k, hits in self.hits.items() if not hits or now - hits[-1] > HOT_WINDOW_S]:
            del self.hits[key]

    def _book_failed(self, stream: Stream, reason: str) -> None:
        stream.healthy = False
        stream.error = reason
        stream.resyncs += 1
        metrics.stream_event(self.venue.route, stream.kind, "resync")
        self.forget_book(stream.symbol)
        self.hub.restart(self, stream)

    def forget_book(self, symbol: str) -> None:
        """Drop ccxt.pro's book of `symbol` so that the next watch subscribes again (a new snapshot)."""
        client = self.client
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.orderbooks.pop(symbol, None)
        for ws in list(getattr(client, "clients", {}).values()):
            for hash_ in [h for h in list(ws.subscriptions) if _names_book(h, symbol)]:
                ws.subscriptions.pop(hash_, None)

    async def close_connection_of(self, stream: Stream) -> None:
        """Close the websocket connection carrying a silent `stream`: ccxt.pro reconnects. Where its
        URL is not known, every connection naming its symbol (closing cancels their watches too)."""
        clients = getattr(self.client, "clients", {})
        own = clients.get(stream.url) if stream.url is not None else None
        symbol = stream.symbol
        for ws in [own] if own is not None else list(clients.values()):
            if own is not None or any(symbol in str(h) for h in [*ws.subscriptions, *ws.futures]):
                with contextlib.suppress(Exception):
                    await ws.close()


def _names_book(message_hash: Any, symbol: str) -> bool:
    text = str(message_hash)
    return text.endswith(":" + symbol) and ("book" in text or "depth" in text)


def _source(stream: Stream, now: float) -> dict:
    return {"from": "stream", "kind": stream.kind, "age_ms": round((now - stream.received) * 1000, 1)}


def _copy_book(book: Any, depth: int) -> dict | None:
    """The top `depth` levels as plain lists (ccxt.pro keeps changing its book in place), or None
    when a side is empty or the book is crossed."""
    bids = [[level[0], level[1]] for level in book["bids"][:depth]]
    asks = [[level[0], level[1]] for level in book["asks"][:depth]]
    if not bids or not asks or bids[0][0] >= asks[0][0]:
        return None
    return {
        "symbol": book.get("symbol"),
        "bids": bids,
        "asks": asks,
        "timestamp": book.get("timestamp"),
        "datetime": book.get("datetime"),
        "nonce": book.get("nonce"),
    }


class StreamHub:
    """Every route's streams of one gateway (one ClientPool)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.routes: dict[str, RouteStreams] = {}
        self.closed = False
        self._sweeper: asyncio.Task | None = None

    def route(self, venue: Venue) -> RouteStreams:
        streams = self.routes.get(venue.route)
        if streams is not None and streams.venue is not venue:  # a reload
            if dataclasses.asdict(streams.venue) == dataclasses.asdict(venue):  # the route did not change
                streams.venue = venue
            else:  # its settings changed: start again
                self._retire(streams)
                streams = None
        if streams is None:
            streams = RouteStreams(self, venue)
            self.routes[venue.route] = streams
        return streams

    def start(self, streams: RouteStreams, key: Key) -> None:
        if self.closed or key in streams.streams:
            return
        stream = Stream(kind=key[0], symbol=key[1], timeframe=key[2])
        streams.streams[key] = stream
        stream.task = asyncio.get_running_loop().create_task(self._run(streams, stream))
        metrics.stream_event(streams.venue.route, key[0], "subscribed")
        if self._sweeper is None or self._sweeper.done():
            self.restart_sweeper()

    def restart_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def restart(self, streams: RouteStreams, stream: Stream) -> None:
        """A new watch loop for `stream` (its book was dropped while the old loop waited on it)."""
        current = asyncio.current_task()
        if stream.task is not None and stream.task is not current:
            stream.task.cancel()
            stream.task = asyncio.get_running_loop().create_task(self._run(streams, stream))

    def client_for(self, venue: Venue) -> tuple[Any, Any]:
        from gateway.clients import ClientHandle
        from gateway.upstream import instrument

        pool = self.pool
        timeout = (
            {}
            if "timeout" in venue.ccxt_config or not pool.settings.timeout_ms
            else {"timeout": pool.settings.timeout_ms}
        )
        client = build_exchange(venue, {}, timeout, family=ccxtpro)  # public: no credentials
        client.timeout_on_exit = 0
        _count_connections(client)
        instrument(client, venue.route)
        pool._limit(client, venue)
        handle = ClientHandle(client, pool.scope_for(venue))
        if venue.ccxt_id == "okx":
            _check_okx_checksums(client)
        return client, handle

    async def _run(self, streams: RouteStreams, stream: Stream) -> None:
        client = streams.client
        backoff = RECONNECT_MIN_S
        pending: asyncio.Future | None = None  # the watch in flight (kept across a quiet spell)
        while self._owns(streams, stream):
            try:
                await streams.handle.scope.ready()
                streams.handle.share_markets()  # by reference; again only when the scope reloads
                if pending is None:
                    pending = asyncio.ensure_future(_watch(streams, stream))
                result = await asyncio.wait_for(asyncio.shield(pending), SILENT_RECONNECT_S)
                pending = None
                if stream.tape is not None and _reconnected(client, stream):
                    # messages may have been lost, and ccxt counts items from before the new connection
                    # into its first result: start the tape again from the next one
                    stream.tape.reset()
                    continue
                stream.latest, stream.received = result, _now()
                stream.updates += 1
                if not stream.healthy:
                    stream.healthy, stream.error = True, None
                backoff = RECONNECT_MIN_S
                if stream.tape is not None:
                    stream.tape.extend(result)
                    if not stream.tape.seeded and stream.received >= stream.next_seed:
                        await self._seed(streams, stream)
                    elif stream.tape.seeded and stream.received >= stream.next_verify:
                        await self._verify(streams, stream)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # stopped
                    _abandon(pending)
                    raise
                # ccxt cancelled the watch itself (it closed the connection under it): a lost connection
                pending = None
                backoff = await self._lost(streams, stream, ccxtpro.NetworkError("the connection was closed"), backoff)
            except TimeoutError:
                if stream.tape is not None and not (pending is not None and pending.done()):
                    continue  # a quiet market: trades and candles come when they happen
                pending = _abandon(pending)  # nothing for a long while: a new connection
                _stale(streams, stream, "silent")
                await streams.close_connection_of(stream)
            except BOOK_ERRORS as exc:
                pending = _abandon(pending)
                streams._book_failed(stream, f"{type(exc).__name__}: {str(exc)[:120]}")
                await asyncio.sleep(RECONNECT_MIN_S)
            except Exception as exc:  # connection lost, refused, exchange error: retry with backoff
                pending = _abandon(pending)
                backoff = await self._lost(streams, stream, exc, backoff)

    def _owns(self, streams: RouteStreams, stream: Stream) -> bool:
        """Whether the running task is still the stream's loop. A cancellation can be lost (3.11's
        wait_for returns a result that arrived together with it): a stopped, restarted or retired
        stream's old loop then ends here instead of running on unseen."""
        return (
            not self.closed
            and self.routes.get(streams.venue.route) is streams
            and streams.streams.get(stream.key) is stream
            and stream.task is asyncio.current_task()
        )

    async def _lost(self, streams: RouteStreams, stream: Stream, exc: BaseException, backoff: float) -> float:
        """A watch failed: stale until a new state arrives, after `backoff` (returned doubled)."""
        _stale(streams, stream, f"{type(exc).__name__}: {str(exc)[:120]}")
        if stream.kind == "depth":
            streams.forget_book(stream.symbol)
        if stream.tape is not None:  # messages may have been lost: join REST again
            stream.tape.reset()
        await asyncio.sleep(backoff)
        return min(backoff * 2, RECONNECT_MAX_S)

    async def _seed(self, streams: RouteStreams, stream: Stream) -> None:
        """Ask REST for the symbol's newest trades or candles without a limit (the exchange's page)
        and offer them to the tape; when they do not join it yet, again later (`SEED_RETRY_S`,
        doubling). The first time, REST is also asked for one item more: only if it gives more is
        the page size what a tape may answer without a limit (else REST answered everything)."""
        stream.next_seed = _now() + stream.seed_every
        stream.seed_every = min(stream.seed_every * 2, SEED_RETRY_MAX_S)
        try:
            rows = await asyncio.wait_for(_fetch(streams.client, stream, None), SEED_TIMEOUT_S)
            verdict = streams.offered(stream, rows, unlimited=True)
            if stream.rest_count is None and rows and verdict != MISMATCH:
                more = await asyncio.wait_for(_fetch(streams.client, stream, len(rows) + 1), SEED_TIMEOUT_S)
                if len(more) > len(rows) and _first_key(more) != _first_key(rows):  # reached further back
                    stream.rest_count = len(rows)
                if stream.tape.seeded or verdict == JOINED:
                    verdict = streams.offered(stream, more, unlimited=False)
        except Exception as exc:
            stream.error = f"REST seed: {type(exc).__name__}: {str(exc)[:120]}"
            metrics.stream_event(streams.venue.route, stream.kind, "seed_failed")
            return
        metrics.stream_event(streams.venue.route, stream.kind, "seeded" if stream.tape.seeded else "seed_missed")
        if stream.tape.seeded:
            stream.seed_every = SEED_RETRY_S  # after a later reset: soon again
            stream.verify_every = VERIFY_FIRST_S
            stream.next_verify = _now() + VERIFY_FIRST_S

    async def _verify(self, streams: RouteStreams, stream: Stream) -> None:
        """Check a seeded tape against REST again: what a stream sends can turn out different from
        REST's items only later (OKX aggregates the fills of one taker order into one trade, which
        a quiet market never shows), and a message could have been lost unnoticed."""
        stream.next_verify = _now() + stream.verify_every
        try:
            rows = await asyncio.wait_for(_fetch(streams.client, stream, None), SEED_TIMEOUT_S)
        except Exception as exc:
            log.debug("checking the %s stream of %s against REST failed: %s", stream.kind, stream.symbol, exc)
            return
        if streams.offered(stream, rows, unlimited=True) == JOINED:
            stream.verify_every = min(stream.verify_every * 2, VERIFY_MAX_S)
        metrics.stream_event(streams.venue.route, stream.kind, "verified")

    async def _sweep(self) -> None:
        while not self.closed:
            await asyncio.sleep(SWEEP_S)
            now = _now()
            for streams in list(self.routes.values()):
                for key, stream in list(streams.streams.items()):
                    if now - stream.last_used > IDLE_CLOSE_S:
                        await self.stop(streams, key)

    async def stop(self, streams: RouteStreams, key: Key) -> None:
        stream = streams.streams.pop(key, None)
        if stream is None:
            return
        metrics.stream_event(streams.venue.route, key[0], "closed")
        if stream.task is not None:
            stream.task.cancel()
        client = streams.client
        has, method = UNWATCH[key[0]]
        if client is not None and client.has.get(has):
            args: tuple = (key[1],)
            if key[0] == "records":
                args = (key[1], key[2])
            elif key[0] == "trades":  # the stream it subscribed (Binance: aggTrade, not ccxt's default)
                args = (key[1], dict(streams.trades_params))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(getattr(client, method)(*args), 2)
        if key[0] == "depth":
            streams.forget_book(key[1])

    def _retire(self, streams: RouteStreams) -> None:
        for stream in streams.streams.values():
            if stream.task is not None:
                stream.task.cancel()
        if streams.client is not None:
            asyncio.get_running_loop().create_task(_close_quietly(streams.client))

    async def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = [s.task for r in self.routes.values() for s in r.streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(_close_quietly(r.client) for r in self.routes.values() if r.client is not None))

    # --- status and metrics ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        now = _now()
        routes = {}
        for route, streams in self.routes.items():
            answered = sum(streams.answers.values())
            routes[route] = {
                "modes": dict(streams.modes),
                "max_age_ms": streams.max_age_ms,
                "unsupported": streams.unsupported,
                "refused": dict(streams.refused),  # kinds answered over REST only: why
                "answers_from_memory": streams.answers["stream"],
                "answers_over_rest": streams.answers["rest"],
                "memory_share": round(streams.answers["stream"] / answered, 4) if answered else None,
                "streams": [
                    {
                        "kind": s.kind,
                        "symbol": f"{s.symbol} {s.timeframe}" if s.timeframe else s.symbol,
                        "healthy": streams._usable(s, now),
                        "age_ms": None if s.age_ms(now) is None else round(s.age_ms(now), 1),
                        "updates": s.updates,
                        "reconnects": s.reconnects,
                        "resyncs": s.resyncs,
                        "disagreements": s.disagreements,
                        "error": s.error,
                    }
                    for s in streams.streams.values()
                ],
            }
        return routes

    def gauges(self) -> list:
        labels = ("route", "kind", "state")
        count = metrics.gauge("streams", "Websocket subscriptions, by route, kind and health", labels)
        age = metrics.gauge("stream_age_seconds", "Age of the oldest healthy stream's data", ("route", "kind"))
        now = _now()
        for route, streams in self.routes.items():
            for kind in KINDS:
                mine = [s for s in streams.streams.values() if s.kind == kind]
                fresh = [s for s in mine if streams._usable(s, now)]
                count.add_metric([route, kind, "fresh"], len(fresh))
                count.add_metric([route, kind, "stale"], len(mine) - len(fresh))
                if fresh:
                    age.add_metric([route, kind], max(now - s.received for s in fresh))
        return [count, age]


async def _watch(streams: RouteStreams, stream: Stream) -> Any:
    """The next update of the stream's kind from ccxt.pro (params copied: ccxt writes into them)."""
    WATCHING.set(stream)  # this task's context: `_count_connections` notes the URL it subscribes on
    client = streams.client
    if stream.kind == "ticker":
        return await client.watch_ticker(stream.symbol, dict(streams.ticker_params))
    if stream.kind == "depth":
        return await client.watch_order_book(stream.symbol, _book_limit(client))
    if stream.kind == "trades":
        return await client.watch_trades(stream.symbol, None, None, dict(streams.trades_params))
    return await client.watch_ohlcv(stream.symbol, stream.timeframe)


def _first_key(items: list) -> Any:
    """The identity of the oldest trade (its id) or candle (its open time) of a REST answer."""
    first = items[0]
    return trade_key(first) if isinstance(first, dict) else first[0]


async def _fetch(client: Any, stream: Stream, limit: int | None) -> list:
    """REST's newest trades or candles of the stream's symbol (and timeframe)."""
    if stream.kind == "trades":
        return await client.fetch_trades(stream.symbol, None, limit)
    return await client.fetch_ohlcv(stream.symbol, stream.timeframe, None, limit)


WATCHING: contextvars.ContextVar[Stream | None] = contextvars.ContextVar("gateway_stream_watching", default=None)


def _count_connections(client: Any) -> None:
    """Number every websocket connection the client opens (`_gateway_generation` on ccxt.pro's
    Client), and note on each stream the URL its watch subscribes on, so that a stream can tell
    that the connection carrying it was replaced."""
    opened = client.on_connected
    generations = itertools.count(1)

    def on_connected(ws: Any, message: Any = None) -> Any:
        ws._gateway_generation = next(generations)
        return opened(ws, message)

    client.on_connected = on_connected
    for name in ("watch", "watch_multiple"):
        original = getattr(client, name)

        def noting(url: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            stream = WATCHING.get()
            if stream is not None:
                stream.url = url
            return _original(url, *args, **kwargs)

        setattr(client, name, noting)


def _reconnected(client: Any, stream: Stream) -> bool:
    """True when the connection that carried the stream at its last result is gone or was opened
    again since. Where the stream's URL is unknown, any connection of the client counts."""
    clients = getattr(client, "clients", {})
    if stream.url is not None:
        ws = clients.get(stream.url)
        generation = getattr(ws, "_gateway_generation", None)
    else:
        generation = sum(getattr(ws, "_gateway_generation", 0) for ws in list(clients.values()))
    lost = stream.generation is not None and generation != stream.generation
    stream.generation = generation
    return lost


def _stale(streams: RouteStreams, stream: Stream, error: str) -> None:
    """Not answered from until a new state arrives; counted as a reconnect."""
    stream.healthy, stream.error = False, error
    stream.reconnects += 1
    metrics.stream_event(streams.venue.route, stream.kind, "reconnect")


def _abandon(pending: asyncio.Future | None) -> None:
    """Leave a watch that will never be awaited again (its error, if any, is read and dropped)."""
    if pending is not None:
        pending.add_done_callback(lambda done: done.cancelled() or done.exception())


def _book_limit(client: Any) -> int | None:
    # Binance takes its REST snapshot at this depth; OKX's `books` channel is 400 levels regardless.
    return BOOK_DEPTH if client.id.startswith("binance") else None


async def _close_quietly(client: Any) -> None:
    try:
        await client.close()
    except Exception as exc:
        log.debug("closing the %s stream client failed: %s", getattr(client, "id", "?"), type(exc).__name__)


def _check_okx_checksums(client: Any) -> None:
    """OKX's books carry a CRC32 of the top 25 levels; ccxt.pro 4.5 no longer checks it. A mismatch
    rejects the book with ChecksumError, as ccxt.pro does for a sequence gap."""
    original = client.handle_order_book_message

    def handle(ws: Any, message: dict, orderbook: Any, message_hash: str, market: Any = None) -> Any:
        result = original(ws, message, orderbook, message_hash, market)
        expected = message.get("checksum")
        if expected is None or message_hash not in ws.subscriptions:
            return result
        parts: list[str] = []
        bids, asks = orderbook["bids"], orderbook["asks"]
        for i in range(25):
            if i < len(bids):
                parts += [client.number_to_string(bids[i][0]), client.number_to_string(bids[i][1])]
            if i < len(asks):
                parts += [client.number_to_string(asks[i][0]), client.number_to_string(asks[i][1])]
        value = zlib.crc32(":".join(parts).encode())
        if (value - (1 << 32) if value >= 1 << 31 else value) != int(expected):
            symbol = orderbook.get("symbol")
            del ws.subscriptions[message_hash]
            client.orderbooks.pop(symbol, None)
            ws.reject(ccxtpro.ChecksumError(f"okx {client.orderbook_checksum_message(symbol)}"), message_hash)
        return result

    client.handle_order_book_message = handle


def hub_of(pool: Any) -> StreamHub:
    hub = getattr(pool, "streams", None)
    if hub is None:
        hub = StreamHub(pool)
        pool.streams = hub
        active = metrics.active()
        if active is not None:
            with contextlib.suppress(Exception):
                active.registry.register(metrics._Collector(hub.gauges))
    return hub


async def fresh(
    call: Any, kind: str, market: dict, limit: int | None = None, timeframe: str = ""
) -> tuple[Any, dict] | None:
    """(the ccxt unified ticker, order book, trades or candles; where it came from, for `raw.source`:
    the stream and its age), when the route streams `kind` for this market (and timeframe) and the
    latest state is fresh and healthy; else None: answer over REST. Counts the ask (auto mode's
    hotness) and starts a subscription when due."""
    streams = _route_streams(call, kind, market)
    return None if streams is None else streams.answer(kind, market, limit, timeframe)


def offer(call: Any, kind: str, market: dict, items: list, limit: int | None, timeframe: str = "") -> None:
    """Hand a REST answer of trades or candles (oldest first) to the symbol's stream, if any: it
    may complete the stream's tape, or show that the stream disagrees with REST."""
    streams = _route_streams(call, kind, market)
    if streams is not None:
        streams.offer(kind, market, items, limit, timeframe)


def _route_streams(call: Any, kind: str, market: dict) -> RouteStreams | None:
    pool = getattr(call.exchange, "_gateway_pool", None)
    if pool is None or kind not in KINDS or not market.get("symbol"):
        return None
    streams = hub_of(pool).route(call.venue)
    return streams if streams.enabled(kind) else None


async def close(pool: Any) -> None:
    """Stop every stream of the pool's gateway (app shutdown)."""
    hub = getattr(pool, "streams", None)
    if hub is not None:
        await hub.close()
