"""GetRecords: candles in FMZ units, built from a smaller period where the exchange lacks one.

FMZ asks for `period` minutes and `limit` bars; it gets rows of [seconds, o, h, l, c, v], oldest
first. A period the exchange offers is fetched as is; any other is aggregated from the largest
offered period that divides it (never from week or month candles, whose calendar alignment
would put bars on the wrong days). More bars than one request returns are fetched page by page.

An exchange without a candle endpoint of its own (ccxt `has['fetchOHLCV']` false, or only
'emulated' by ccxt from one page of trades) but with public trades gets its bars built from
those trades, as FMZ's docker does for such exchanges: see `bars_from_public_trades`. With
neither, GetRecords is NotSupported.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway import convert, streams
from gateway.calls import Call
from gateway.errors import BadRequest, GatewayError, NotSupported, not_supported
from gateway.fallbacks import Group, group_of, stated_limit, usable_rows
from gateway.protocol import decimal_param, int_param

DEFAULT_BARS = 100  # bars built when FMZ gives no limit
FALLBACK_PER_REQUEST = 500  # candles per request where ccxt's `features` does not say
MAX_RECORDS_LIMIT = 10_000
MAX_PAGES = 20  # upstream requests one GetRecords may cost
CALENDAR_SECONDS = 7 * 86_400  # week and month candles follow the calendar: not a base to build from


async def records(call: Call) -> tuple[Any, Any]:
    market, _ = call.market()
    source = records_source(call.exchange, group_of(market))
    if source is None:
        raise not_supported("GetRecords", call.exchange_id)
    native = source == "fetchOHLCV"
    period_minutes = decimal_param(call.params, "period", required=False, default=Decimal(60))
    if period_minutes <= 0 or period_minutes * 60 != int(period_minutes * 60):
        raise BadRequest(f"param 'period' must be a positive number of minutes, got {period_minutes}")
    period_s = int(period_minutes * 60)
    limit = int_param(call.params, "limit") or None
    if limit is not None and not 0 < limit <= MAX_RECORDS_LIMIT:
        raise BadRequest(f"param 'limit' must be 1..{MAX_RECORDS_LIMIT}")
    if not native:
        bars = await bars_from_public_trades(call, market, period_s, limit or DEFAULT_BARS)
        return convert.to_fmz_records(bars), bars
    timeframes = timeframe_seconds(call.exchange)
    per_request = ohlcv_max_limit(call.exchange, market)
    if period_s in timeframes:
        rows, source = await candles(call, market, timeframes[period_s], period_s, limit, per_request)
        return convert.to_fmz_records(rows), _raw(rows, source)
    bases = [s for s in timeframes if s < period_s and period_s % s == 0 and s < CALENDAR_SECONDS]
    if not bases:
        raise NotSupported(f"{call.exchange.id} has no candle period that builds {period_minutes} minute bars")
    base_s = max(bases)
    ratio = period_s // base_s
    wanted = (limit or DEFAULT_BARS) * ratio + ratio  # one bucket more: the oldest may start mid-bucket
    base, source = await candles(call, market, timeframes[base_s], base_s, wanted, per_request)
    bars = convert.aggregate_ohlcv(base, period_s * 1000)
    if not bars:
        raise GatewayError(
            f"{call.exchange.id} returned too few candles to build {period_minutes} minute bars", "BadResponse"
        )
    if limit:
        bars = bars[-limit:]
    return convert.to_fmz_records(bars), _raw(base, source)


def _raw(rows: list[list], source: dict | None) -> Any:
    return rows if source is None else {"source": source, "candles": rows}


async def candles(
    call: Call, market: dict, timeframe: str, timeframe_s: int, count: int | None, per_request: int
) -> tuple[list[list], dict | None]:
    """(the newest `count` candles, oldest first; where they came from): from the exchange's
    websocket when the route streams them and its tape holds them fresh (gateway/streams.py), else
    over REST, whose answer is offered to the stream's tape."""
    streamed = await streams.fresh(call, "records", market, count, timeframe)
    if streamed is not None:
        return streamed
    rows = await fetch_candles(call, market, timeframe, timeframe_s, count, per_request)
    streams.offer(call, "records", market, rows, count, timeframe)
    return rows, None


async def fetch_candles(
    call: Call, market: dict, timeframe: str, timeframe_s: int, count: int | None, per_request: int
) -> list[list]:
    """The newest `count` candles (all the exchange gives by default when None), oldest first."""
    symbol = market["symbol"]
    if count is None or count <= per_request:
        return await call.read(
            ("records", symbol, timeframe, count), lambda: call.exchange.fetch_ohlcv(symbol, timeframe, None, count)
        )
    pages = math.ceil(count / per_request)
    if pages > MAX_PAGES:
        raise BadRequest(
            f"param 'limit': {call.exchange.id} returns {per_request} candles a request; "
            f"at most {per_request * MAX_PAGES} {timeframe} candles per call"
        )
    step_ms = timeframe_s * 1000
    now_ms = int(time.time() * 1000)
    since = (now_ms // step_ms - count + 1) * step_ms
    rows: dict[int, list] = {}
    for _ in range(pages + 1):
        page = await call.read(
            ("records", symbol, timeframe, since, per_request),
            lambda since=since: call.exchange.fetch_ohlcv(symbol, timeframe, since, per_request),
        )
        fresh = [row for row in page if row and row[0] is not None and row[0] >= since]
        rows.update((int(row[0]), row) for row in fresh)
        # an empty window (before the listing, or a gap in the exchange's history) is skipped, not the end
        since = int(fresh[-1][0]) + step_ms if fresh else since + per_request * step_ms
        if since > now_ms:
            break
    return [rows[t] for t in sorted(rows)][-count:]


_TIMEFRAMES: dict[type, dict[int, str]] = {}


def timeframe_seconds(exchange: Any) -> dict[int, str]:
    """{seconds: ccxt timeframe} for the exchange, computed once per exchange class."""
    cached = _TIMEFRAMES.get(type(exchange))
    if cached is None:
        cached = {}
        for timeframe in exchange.timeframes or {}:
            try:
                cached.setdefault(int(exchange.parse_timeframe(timeframe)), timeframe)
            except Exception:  # a timeframe ccxt itself cannot parse is simply not offered
                continue
        _TIMEFRAMES[type(exchange)] = cached
    return cached


def ohlcv_max_limit(exchange: Any, market: dict) -> int:
    """The most candles one request returns, from ccxt's `features` where it states it."""
    return stated_limit(exchange, group_of(market), "fetchOHLCV", FALLBACK_PER_REQUEST)


# --- bars built from public trades, for exchanges without a candle endpoint ---------------------

TRADES_PER_REQUEST = 100  # trades asked per request where ccxt's `features` does not say (a size most accept)
MAX_TRADE_PAGES = 10  # requests one GetRecords built from trades may cost, the newest page included
MAX_TRADE_LOOKBACK_S = 30 * 86_400  # never page (or keep trades) further back than this
TAPE_MAX_TRADES = 20_000  # trades kept per market between calls
MAX_TAPES = 100  # markets whose trades are kept between calls (least recently used dropped first)
SINCE_RETRY_S = 600.0  # after an exchange ignored `since` for a market, seconds before paging is tried again
CLOCK_MARGIN_MS = 1_000  # our clock may run ahead of the exchange's by this much
PAGE_TIME_RESERVE_S = 1.0  # no further page when less of the call's deadline is left


def records_source(exchange: Any, group: Group) -> str | None:
    """The ccxt call GetRecords builds the group's bars from, as its table in gateway/fallbacks.py
    says (the capability report reads the same rows): `fetchOHLCV` where the exchange has a candle
    endpoint of its own (ccxt's 'emulated' one builds bars from one page of trades, which
    `bars_from_public_trades` does better: paging, kept trades, gap bars), else `fetchTrades`;
    None with neither."""
    rows = usable_rows(exchange, "GetRecords", group)
    return rows[0].ccxt if rows else None


@dataclass
class Tape:
    """A market's public trades (ms, price, amount), oldest first, holding every trade the exchange
    printed from `lo` to `hi` (ms, both included), and none outside."""

    trades: list[tuple[int, float, float]]
    lo: int
    hi: int
    since_refused_at: float = -math.inf  # time.monotonic() when the exchange last ignored `since`


# (venue's market scope, ccxt symbol) -> Tape; kept across calls, as FMZ's docker keeps collecting trades
_TAPES: OrderedDict[tuple, Tape] = OrderedDict()


async def bars_from_public_trades(call: Call, market: dict, period_s: int, count: int) -> list[list]:
    """The newest `count` bars of `period_s` built from public trades: ccxt rows [ms, o, h, l, c, v].

    - Bars are aligned to multiples of the period since the epoch (UTC), oldest first. The newest
      bar is the current one, still in progress (FMZ includes the current bar in GetRecords).
    - A bar is built only where every trade of its period was seen: the newest page of trades
      starts somewhere inside a period, so that oldest, incomplete period is left out, never
      guessed. Nothing is built before the first trade seen.
    - A period without trades, after the first bar, is a flat bar at the previous close with
      volume 0, as exchanges' own candles (Binance, OKX) and FMZ's indicators expect: one bar per
      period, consecutive times.
    - Trades come from the newest page (`fetch_trades` without `since`), joined with the trades
      kept from earlier calls when they meet. Further back, pages are asked with `since` while the
      exchange honours it (a page with a trade older than any the newest page could show), at most
      MAX_TRADE_PAGES requests and MAX_TRADE_LOOKBACK_S back, within the call's deadline. An
      exchange that ignores `since` costs one such request, then none for SINCE_RETRY_S.
    - When trades cannot be paged back far enough for `count` bars, fewer bars are returned.
    """
    symbol = market["symbol"]
    period_ms = period_s * 1000
    per_request = trades_per_request(call.exchange, market)
    key = (call.venue.market_scope, symbol)
    asked_ms = int(time.time() * 1000)
    page = await call.read(
        ("trades", symbol, per_request), lambda: call.exchange.fetch_trades(symbol, None, per_request)
    )
    newest = newest_tape(page, asked_ms - CLOCK_MARGIN_MS)
    tape = remember(key, newest) if newest is not None else _TAPES.get(key)
    if tape is None:
        return []
    now_ms = max(asked_ms, tape.hi)
    wanted_ms = (now_ms // period_ms - count + 1) * period_ms
    wanted_ms = max(wanted_ms, _ceil_to(now_ms - MAX_TRADE_LOOKBACK_S * 1000, period_ms))
    if wanted_ms < tape.lo:
        paged = await page_back(call, symbol, tape, wanted_ms, period_ms, per_request)
        if paged is not tape:
            tape = remember(key, paged)
    return bars_from_trades(tape.trades, period_ms, tape.lo, tape.hi, count)


async def page_back(call: Call, symbol: str, tape: Tape, wanted_ms: int, period_ms: int, per_request: int) -> Tape:
    """`tape` extended back towards `wanted_ms` with pages asked by `since`; `tape` itself when the
    exchange ignores `since` or the pages cannot reach it within the bounds."""
    if time.monotonic() - tape.since_refused_at < SINCE_RETRY_S:
        return tape
    since = wanted_ms
    span = tape.hi - tape.lo
    if tape.trades and span > 0:  # start no further back than the page budget can plausibly cover
        budget = (MAX_TRADE_PAGES - 1) * per_request * 0.8
        reachable = tape.lo - int(budget * span / len(tape.trades))
        since = max(since, _ceil_to(reachable, period_ms))
    if since >= tape.lo:
        return tape
    run: Tape | None = None
    for _ in range(MAX_TRADE_PAGES - 1):
        if call.remaining() < PAGE_TIME_RESERVE_S:
            break
        page = await call.read(
            ("trades", symbol, since, per_request),
            lambda since=since: call.exchange.fetch_trades(symbol, since, per_request),
        )
        trades = parse_trades(page, since)
        if not trades:
            break
        first, last = trades[0][0], trades[-1][0]
        if run is None and first >= tape.lo - 1:  # nothing older than the newest page: `since` ignored
            tape.since_refused_at = time.monotonic()
            break
        if last <= since:  # a page of trades all at `since`: no way forward
            break
        # complete from `since` up to its last millisecond, whose trades may continue on the next page
        piece = Tape([t for t in trades if t[0] < last], since, last - 1)
        run = piece if run is None else merge(run, piece)
        if run is None:
            break
        joined = merge(run, tape)
        if joined is not None:
            return joined
        since = last
    return tape


def trades_per_request(exchange: Any, market: dict) -> int:
    """Trades one request asks for: ccxt's `features` where it states it, else TRADES_PER_REQUEST."""
    return stated_limit(exchange, group_of(market), "fetchTrades", TRADES_PER_REQUEST)


def parse_trades(page: list[dict], since: int | None = None) -> list[tuple[int, float, float]]:
    """(ms, price, amount) of ccxt trades, oldest first (stable: same-millisecond trades keep the
    exchange's order); trades without a time or a positive price are skipped."""
    trades = []
    for trade in page or ():
        ts = convert.known(trade.get("timestamp"))
        price = convert.known(trade.get("price"))
        amount = convert.known(trade.get("amount"))
        if ts is None or price is None or price <= 0 or (since is not None and ts < since):
            continue
        trades.append((int(ts), float(price), float(amount or 0)))
    trades.sort(key=lambda t: t[0])
    return trades


def newest_tape(page: list[dict], hi_ms: int) -> Tape | None:
    """The newest page as a Tape: complete after its oldest trade's millisecond (trades before, and
    more at that millisecond, may be cut off) up to when it was asked for (`hi_ms`)."""
    trades = parse_trades(page)
    if not trades:
        return None
    lo = trades[0][0] + 1
    return Tape([t for t in trades if t[0] >= lo], lo, max(hi_ms, trades[-1][0]))


def merge(old: Tape, new: Tape) -> Tape | None:
    """One Tape from two that overlap or meet; None when a gap lies between them."""
    if new.lo > old.hi + 1 or old.lo > new.hi + 1:
        return None
    trades = [t for t in old.trades if t[0] < new.lo or t[0] > new.hi] + new.trades
    trades.sort(key=lambda t: t[0])
    refused = max(old.since_refused_at, new.since_refused_at)
    return Tape(trades, min(old.lo, new.lo), max(old.hi, new.hi), refused)


def remember(key: tuple, tape: Tape) -> Tape:
    """Join `tape` with the market's kept trades (or replace them when a gap lies between), trim to
    the bounds and keep the result."""
    stored = _TAPES.get(key)
    if stored is not None:
        joined = merge(stored, tape)
        if joined is None:  # a gap: keep the newer one
            joined = tape if tape.hi >= stored.hi else stored
        joined.since_refused_at = max(stored.since_refused_at, tape.since_refused_at)
        tape = joined
    tape = trim(tape, tape.hi - MAX_TRADE_LOOKBACK_S * 1000)
    _TAPES[key] = tape
    _TAPES.move_to_end(key)
    while len(_TAPES) > MAX_TAPES:
        _TAPES.popitem(last=False)
    return tape


def trim(tape: Tape, oldest_ms: int) -> Tape:
    """`tape` without trades before `oldest_ms` and with at most about TAPE_MAX_TRADES trades (cut at
    a millisecond boundary, so what is kept stays complete)."""
    lo = max(tape.lo, oldest_ms)
    if len(tape.trades) > TAPE_MAX_TRADES:
        lo = max(lo, tape.trades[-TAPE_MAX_TRADES][0])
    if lo == tape.lo:
        return tape
    return Tape([t for t in tape.trades if t[0] >= lo], lo, max(tape.hi, lo), tape.since_refused_at)


def bars_from_trades(
    trades: list[tuple[int, float, float]], period_ms: int, lo: int, hi: int, count: int | None = None
) -> list[list]:
    """ccxt rows [ms, o, h, l, c, v] of `period_ms` bars from trades (ms, price, amount) in any order,
    known to be all the trades from `lo` to `hi` (ms, inclusive).

    A bar starts at a multiple of the period (a trade exactly on a boundary opens the new bar). Only
    periods starting at or after `lo` are built; the first bar is the first such period with a trade;
    from there every period up to the one holding `hi` is a bar, one without trades flat at the
    previous close with volume 0. The last bar may be in progress. `count` keeps the newest bars only."""
    first_start = _ceil_to(lo, period_ms)
    buckets: dict[int, list] = {}
    for ts, price, amount in sorted((t for t in trades if first_start <= t[0] <= hi), key=lambda t: t[0]):
        start = ts - ts % period_ms
        bar = buckets.get(start)
        if bar is None:
            buckets[start] = [start, price, price, price, price, Decimal(repr(amount))]
        else:
            bar[2] = max(bar[2], price)
            bar[3] = min(bar[3], price)
            bar[4] = price
            bar[5] += Decimal(repr(amount))
    if not buckets:
        return []
    last_start = hi - hi % period_ms
    first = min(buckets)
    if count is not None:  # only the newest `count` periods: a sparse market must not cost a bar per second
        first = max(first, last_start - (count - 1) * period_ms)
    earlier = [start for start in buckets if start < first]
    close = buckets[max(earlier)][4] if earlier else None
    bars = []
    for start in range(first, last_start + 1, period_ms):
        bar = buckets.get(start)
        if bar is None:
            bar = [start, close, close, close, close, Decimal(0)]
        close = bar[4]
        bars.append([*bar[:5], float(bar[5])])
    return bars


def _ceil_to(ms: int, step: int) -> int:
    return -(-ms // step) * step
