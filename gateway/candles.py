"""GetRecords: candles in FMZ units, built from a smaller period where the exchange lacks one.

FMZ asks for `period` minutes and `limit` bars; it gets rows of [seconds, o, h, l, c, v], oldest
first. A period the exchange offers is fetched as is; any other is aggregated from the largest
offered period that divides it (never from week or month candles, whose calendar alignment
would put bars on the wrong days). More bars than one request returns are fetched page by page.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any

from gateway import convert
from gateway.calls import Call
from gateway.errors import BadRequest, GatewayError, NotSupported
from gateway.protocol import decimal_param, int_param

DEFAULT_BARS = 100  # bars built when FMZ gives no limit
FALLBACK_PER_REQUEST = 500  # candles per request where ccxt's `features` does not say
MAX_RECORDS_LIMIT = 10_000
MAX_PAGES = 20  # upstream requests one GetRecords may cost
CALENDAR_SECONDS = 7 * 86_400  # week and month candles follow the calendar: not a base to build from


async def records(call: Call) -> tuple[Any, Any]:
    market, _ = call.market()
    call.require("fetchOHLCV", "GetRecords")
    period_minutes = decimal_param(call.params, "period", required=False, default=Decimal(60))
    if period_minutes <= 0 or period_minutes * 60 != int(period_minutes * 60):
        raise BadRequest(f"param 'period' must be a positive number of minutes, got {period_minutes}")
    period_s = int(period_minutes * 60)
    limit = int_param(call.params, "limit") or None
    if limit is not None and not 0 < limit <= MAX_RECORDS_LIMIT:
        raise BadRequest(f"param 'limit' must be 1..{MAX_RECORDS_LIMIT}")
    timeframes = timeframe_seconds(call.exchange)
    per_request = ohlcv_max_limit(call.exchange, market)
    if period_s in timeframes:
        rows = await fetch_candles(call, market, timeframes[period_s], period_s, limit, per_request)
        return convert.to_fmz_records(rows), rows
    bases = [s for s in timeframes if s < period_s and period_s % s == 0 and s < CALENDAR_SECONDS]
    if not bases:
        raise NotSupported(f"{call.exchange.id} has no candle period that builds {period_minutes} minute bars")
    base_s = max(bases)
    ratio = period_s // base_s
    wanted = (limit or DEFAULT_BARS) * ratio + ratio  # one bucket more: the oldest may start mid-bucket
    source = await fetch_candles(call, market, timeframes[base_s], base_s, wanted, per_request)
    bars = convert.aggregate_ohlcv(source, period_s * 1000)
    if not bars:
        raise GatewayError(
            f"{call.exchange.id} returned too few candles to build {period_minutes} minute bars", "BadResponse"
        )
    if limit:
        bars = bars[-limit:]
    return convert.to_fmz_records(bars), source


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


def timeframe_seconds(exchange: Any) -> dict[int, str]:
    """{seconds: ccxt timeframe} for the exchange, computed once per exchange class."""
    cls = type(exchange)
    cached = cls.__dict__.get("_gateway_timeframes")
    if cached is None:
        cached = {}
        for timeframe in exchange.timeframes or {}:
            try:
                cached.setdefault(int(exchange.parse_timeframe(timeframe)), timeframe)
            except Exception:  # a timeframe ccxt itself cannot parse is simply not offered
                continue
        cls._gateway_timeframes = cached
    return cached


def ohlcv_max_limit(exchange: Any, market: dict) -> int:
    """The most candles one request returns, from ccxt's `features` where it states it."""
    features = getattr(exchange, "features", None) or {}
    kind = market.get("type") or "spot"
    section = features.get(kind) or {}
    if kind in ("swap", "future") and isinstance(section, dict):
        section = section.get("inverse" if market.get("inverse") else "linear") or section
    ohlcv = section.get("fetchOHLCV") if isinstance(section, dict) else None
    limit = ohlcv.get("limit") if isinstance(ohlcv, dict) else None
    return int(limit) if isinstance(limit, int | float) and limit > 0 else FALLBACK_PER_REQUEST
