"""Shared pieces of the fake OKX v5: the venue state, instrument ids, number formatting,
envelopes and errors, delivery dates and candle clocks.

okx_public.py and okx_private.py hold the handlers; okx.py wires them into a Starlette app.
"""

from __future__ import annotations

import calendar
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.responses import JSONResponse

from .engine import Engine, Instrument

ZERO = Decimal(0)
INST_TYPES = {"spot": "SPOT", "swap": "SWAP", "future": "FUTURES"}
MMR_RATE = Decimal("0.004")  # maintenance margin rate used for mmr / liqPx
LIST_TIME = "1606468572000"


class OkxError(Exception):
    """An error answered as an OKX envelope: {"code": code, "msg": msg, "data": data}."""

    def __init__(self, code: str, msg: str, status: int = 200, data: list | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status, self.data = code, msg, status, data or []


def now_ms() -> int:
    return int(time.time() * 1000)


def fmt(value: Any) -> str:
    """Numbers as OKX writes them: plain decimal strings, no exponent, no trailing zeros."""
    if value is None or value == "":
        return ""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d.as_tuple().exponent < -16:
        d = d.quantize(Decimal("1e-16"))
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


def envelope(data: Any, code: str = "0", msg: str = "", status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": code, "data": data, "msg": msg, **extra}, status_code=status)


def numeric_id(*parts: str) -> str:
    """A stable numeric id (posId, uid, instIdCode) derived from strings."""
    return str(zlib.crc32("|".join(parts).encode()) * 1000 + 7)


# --- instruments -------------------------------------------------------------------


def yymmdd(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%y%m%d")


def inst_id(inst: Instrument) -> str:
    if inst.kind == "spot":
        return f"{inst.base}-{inst.quote}"
    if inst.kind == "swap":
        return f"{inst.base}-{inst.quote}-SWAP"
    return f"{inst.base}-{inst.quote}-{yymmdd(inst.expiry_ms or 0)}"


def inst_type(inst: Instrument) -> str:
    return INST_TYPES[inst.kind]


def _last_friday(year: int, month: int) -> datetime:
    day = datetime(year, month, calendar.monthrange(year, month)[1], 8, tzinfo=UTC)
    return day - timedelta(days=(day.weekday() - 4) % 7)


def delivery_dates(at_ms: int | None = None) -> dict[str, int]:
    """OKX futures aliases -> delivery time (Fridays 08:00 UTC) relative to `at_ms`."""
    now = datetime.fromtimestamp((at_ms or now_ms()) / 1000, UTC)
    friday = (now + timedelta(days=(4 - now.weekday()) % 7)).replace(hour=8, minute=0, second=0, microsecond=0)
    if friday <= now:
        friday += timedelta(days=7)
    next_week = friday + timedelta(days=7)
    year, quarter_idx = now.year, (now.month - 1) // 3
    while True:
        quarter = _last_friday(year, quarter_idx * 3 + 3)
        if quarter > next_week:
            break
        quarter_idx += 1
        if quarter_idx == 4:
            year, quarter_idx = year + 1, 0

    def ms(d: datetime) -> int:
        return int(d.timestamp() * 1000)

    return {"this_week": ms(friday), "next_week": ms(next_week), "quarter": ms(quarter)}


# --- candles -------------------------------------------------------------------------

_FIXED_BARS = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1H": 3600,
    "2H": 7200,
    "4H": 14400,
    "6H": 21600,
    "12H": 43200,
    "1D": 86400,
    "2D": 172800,
    "3D": 259200,
    "1W": 604800,
}
_MONTH_BARS = {"1M": 1, "3M": 3}
_UTC_CAPABLE = {"6H", "12H", "1D", "2D", "3D", "1W", "1M", "3M"}
_HK_MS = 8 * 3600_000
_MONDAY_MS = 4 * 86400_000  # 1970-01-05 was a Monday


class BarClock:
    """Open times of OKX bars: `6H` and longer align to Hong Kong time, the `...utc` variants to UTC."""

    def __init__(self, bar: str) -> None:
        utc = bar.endswith("utc")
        base = bar[:-3] if utc else bar
        if (base not in _FIXED_BARS and base not in _MONTH_BARS) or (utc and base not in _UTC_CAPABLE):
            raise OkxError("51000", "Parameter bar error")
        self.shift = 0 if (utc or base not in _UTC_CAPABLE) else _HK_MS  # local = utc + shift
        self.months = _MONTH_BARS.get(base, 0)
        self.step = _FIXED_BARS.get(base, 0) * 1000
        self.offset = (_MONDAY_MS if base == "1W" else 0) - self.shift

    def open_of(self, t: int) -> int:
        if self.step:
            return (t - self.offset) // self.step * self.step + self.offset
        local = datetime.fromtimestamp((t + self.shift) / 1000, UTC)
        month = (local.month - 1) // self.months * self.months + 1
        return int(datetime(local.year, month, 1, tzinfo=UTC).timestamp() * 1000) - self.shift

    def prev(self, open_: int) -> int:
        return open_ - self.step if self.step else self.open_of(open_ - 1)

    def length(self, open_: int) -> int:
        if self.step:
            return self.step
        local = datetime.fromtimestamp((open_ + self.shift) / 1000, UTC)
        month = local.month - 1 + self.months
        end = datetime(local.year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return int(end.timestamp() * 1000) - self.shift - open_


def bar_rows(
    inst: Instrument, bar: str, after: int | None, before: int | None, limit: int, recent_only: bool = False
) -> list[tuple]:
    """Bars newest first as (open_ms, o, h, l, c, vol, closed) with OKX's exclusive after/before."""
    clock = BarClock(bar)
    now = now_ms()
    t = clock.open_of(now if after is None else min(now, after - 1))
    floor = clock.open_of(now) - 1439 * clock.step if (recent_only and clock.step) else None
    rows = []
    while len(rows) < limit and t >= 0:
        if (before is not None and t <= before) or (floor is not None and t < floor):
            break
        length = clock.length(t)
        o_ms, o, h, lo, c, vol = Engine._bar(inst, t, length)
        rows.append((o_ms, o, h, lo, c, vol, t + length <= now))
        t = clock.prev(t)
    return rows


# --- the venue -----------------------------------------------------------------------


@dataclass
class Venue:
    """The engine plus what OKX knows beyond it: credentials and per-order dialect details."""

    engine: Engine
    credentials: dict[str, tuple[str, str]]
    order_extras: dict[str, dict] = field(default_factory=dict)  # ordId -> tdMode, tgtCcy, ordType, sz, ...
    pos_modes: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (acct, inst, side) -> mgnMode
    taker_trades: set[str] = field(default_factory=set)  # trade ids filled when the order was placed

    def by_id(self) -> dict[str, Instrument]:
        return {inst_id(i): i for i in self.engine.instruments.values()}

    def instrument(self, instrument_id: str | None) -> Instrument:
        inst = self.by_id().get(instrument_id or "")
        if inst is None:
            raise OkxError("51001", "Instrument ID does not exist")
        return inst

    def instruments(self, type_: str | None = None) -> list[Instrument]:
        return [i for i in self.engine.instruments.values() if type_ is None or inst_type(i) == type_]

    def usd_price(self, ccy: str) -> Decimal:
        if ccy in ("USDT", "USDC", "USD"):
            return Decimal(1)
        inst = self.engine.instruments.get(f"{ccy}/USDT")
        return inst.price if inst else ZERO


# --- request parameters ------------------------------------------------------------------


@dataclass
class Call:
    """One request: query (GET) or JSON object body (POST) as `params`, the raw JSON body, the account."""

    venue: Venue
    params: dict
    body: Any = None
    account: str = ""

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise OkxError("50014", f"Parameter {name} can not be empty.")
        return value

    def integer(self, name: str, default: int | None, maximum: int | None = None) -> int | None:
        return parse_int(self.get(name), name, default, maximum)


def parse_int(value: str | None, name: str, default: int | None, maximum: int | None = None) -> int | None:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise OkxError("51000", f"Parameter {name} error") from None
    if number < 0:
        raise OkxError("51000", f"Parameter {name} error")
    return min(number, maximum) if maximum is not None else number


def parse_decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise OkxError("51000", f"Parameter {name} error") from None
    if not d.is_finite() or d <= 0:
        raise OkxError("51000", f"Parameter {name} error")
    return d


def margin_mode(call: Call) -> str:
    mode = call.need("mgnMode")
    if mode not in ("cross", "isolated"):
        raise OkxError("51000", "Parameter mgnMode error")
    return mode
