"""The Binance REST dialect shared by the spot and futures routes of the fake.

Errors as Binance answers them, request parameters, API-key and HMAC-SHA256 signature checks,
instrument ids, number formatting, kline clocks, and the per-order facts Binance reports that the
engine does not keep (order type, time in force, position side...).

binance_spot.py and binance_futures.py hold the handlers; binance.py wires them into a Starlette app.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, unquote

from .engine import Engine, EngineError, Instrument, Order

ZERO = Decimal(0)
PERPETUAL_DELIVERY = 4133404800000  # Binance's deliveryDate for perpetual contracts
MAINT_MARGIN_RATE = Decimal("0.004")  # first leverage bracket, used for liquidation prices


class BinanceError(Exception):
    """An error answered as Binance does: HTTP status and {"code": -2010, "msg": "..."}."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, legal: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def now_ms() -> int:
    return int(time.time() * 1000)


# --- numbers ------------------------------------------------------------------------


def places(step: Decimal) -> int:
    """Decimal places of a tick or step size: 0.01 -> 2, 1 -> 0."""
    return max(0, -step.normalize().as_tuple().exponent)


def fixed(value: Decimal, digits: int) -> str:
    return f"{Decimal(value):.{digits}f}"


def f8(value: Decimal) -> str:
    """Spot writes every amount with 8 decimals: "60000.01000000"."""
    return fixed(value, 8)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: "60000.1", "0"."""
    d = Decimal(value)
    return "0" if d == 0 else format(d.normalize(), "f")


def client_order_id() -> str:
    """What Binance generates when no newClientOrderId is sent: 22 alphanumerics."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


def numeric_id(*parts: str) -> int:
    return zlib.crc32("|".join(parts).encode()) % 900_000_000 + 100_000_000


# --- requests -------------------------------------------------------------------------

NONE, API_KEY, SIGNED = "NONE", "API_KEY", "SIGNED"  # endpoint security, as in Binance's docs


@dataclass
class Call:
    """One request: merged query and form parameters, and the account once authenticated."""

    method: str
    path: str
    params: dict[str, str]
    account: str = ""

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise mandatory(name)
        return value

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise illegal(name, "^[0-9]{1,20}$") from None

    def decimal(self, name: str) -> Decimal | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            d = Decimal(value)
        except InvalidOperation:
            d = Decimal("NaN")
        if not d.is_finite() or d < 0:
            raise illegal(name, "^([0-9]{1,20})(\\.[0-9]{1,20})?$")
        return d

    def bool(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise illegal(name, "true, false")
        return value.lower() == "true"

    def limit(self, default: int, maximum: int) -> int:
        value = self.int("limit", default)
        if value is None or value <= 0:
            return default
        return min(value, maximum)


def parse_params(query: str, body: str) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(body, keep_blank_values=True))
    return params


def _without_signature(raw: str) -> tuple[str, str | None]:
    kept, signature = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = unquote(part[len("signature=") :])
        else:
            kept.append(part)
    return "&".join(kept), signature


def authenticate(security: str, credentials: dict[str, str], headers: Any, query: str, body: str, params: dict) -> str:
    """The account (api key) of an API_KEY or SIGNED request; raises Binance's auth errors.

    The signature is the hex HMAC-SHA256, keyed by the secret, of Binance's totalParams: the
    query string concatenated with the request body, without the signature parameter.
    """
    if security == NONE:
        return ""
    key = headers.get("x-mbx-apikey")
    if not key:
        raise BinanceError(-2014, "API-key format invalid.", 401)
    secret = credentials.get(key)
    if secret is None:
        raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    if security == API_KEY:
        return key
    query_payload, query_sig = _without_signature(query)
    body_payload, body_sig = _without_signature(body)
    signature = query_sig or body_sig
    if not signature:
        raise mandatory("signature")
    expected = hmac.new(secret.encode(), (query_payload + body_payload).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BinanceError(-1022, "Signature for this request is not valid.")
    _check_timestamp(params)
    return key


def _check_timestamp(params: dict) -> None:
    raw = params.get("timestamp")
    if not raw or not raw.isdigit():
        raise mandatory("timestamp")
    window = params.get("recvWindow") or "5000"
    if not window.isdigit():
        raise illegal("recvWindow", "^[0-9]{1,20}$")
    if int(window) > 60000:
        raise BinanceError(-1131, "recvWindow must be less than 60000")
    now, ts = now_ms(), int(raw)
    if ts > now + 1000:
        raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now - ts > int(window):
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


Handler = Callable[["FakeBinance", Call], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    security: str = NONE


# --- instruments ------------------------------------------------------------------------


def symbol_id(inst: Instrument) -> str:
    """BTCUSDT for spot and perpetuals, BTCUSDT_250926 for quarterly delivery contracts;
    COIN-M perpetuals are BTCUSD_PERP."""
    base_id = inst.base + inst.quote
    if inst.kind == "future" and inst.expiry_ms:
        return base_id + "_" + datetime.fromtimestamp(inst.expiry_ms / 1000, UTC).strftime("%y%m%d")
    if inst.kind == "swap" and inst.inverse:
        return base_id + "_PERP"
    return base_id


# --- what Binance reports about an order that the engine does not keep --------------------


@dataclass
class OrderMeta:
    type: str = "LIMIT"  # LIMIT | MARKET | LIMIT_MAKER
    time_in_force: str = "GTC"
    position_side: str = "BOTH"
    reduce_only: bool = False
    quote_qty: Decimal = ZERO  # origQuoteOrderQty
    expired: bool = False  # an IOC / FOK remainder taken off the book


class FakeBinance:
    """State of one fake Binance: the engine (all trading state) plus the dialect's bookkeeping."""

    def __init__(self, engine: Engine, credentials: dict[str, str]) -> None:
        self.engine = engine
        self.credentials = credentials  # the caller's dict: keys added later are honoured
        self.meta: dict[str, OrderMeta] = {}
        self.taker_trades: set[str] = set()  # trade ids filled while their order was being placed
        self.margin_types: dict[tuple[str, str], str] = {}  # (account, instrument key) -> ISOLATED

    # instruments of each API
    def spot_instruments(self) -> dict[str, Instrument]:
        return {symbol_id(i): i for i in self.engine.instruments.values() if i.kind == "spot"}

    def usdm_instruments(self) -> dict[str, Instrument]:
        return {symbol_id(i): i for i in self.engine.instruments.values() if i.is_contract and not i.inverse}

    def coinm_instruments(self) -> dict[str, Instrument]:
        return {symbol_id(i): i for i in self.engine.instruments.values() if i.is_contract and i.inverse}

    def spot_symbol(self, call: Call, name: str = "symbol") -> Instrument:
        return self._lookup(self.spot_instruments(), call.need(name))

    def usdm_symbol(self, call: Call, name: str = "symbol") -> Instrument:
        return self._lookup(self.usdm_instruments(), call.need(name))

    @staticmethod
    def _lookup(instruments: dict[str, Instrument], sid: str) -> Instrument:
        inst = instruments.get(sid.upper())
        if inst is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return inst

    # orders
    def meta_of(self, order: Order) -> OrderMeta:
        meta = self.meta.get(order.id)
        if meta is None:  # placed straight on the engine (by a test or another dialect)
            meta = OrderMeta(type=order.type.upper(), position_side=order.pos_side.upper())
            meta.reduce_only = order.reduce_only
            self.meta[order.id] = meta
        return meta

    def status(self, order: Order) -> str:
        if order.status == "canceled":
            return "EXPIRED" if self.meta_of(order).expired else "CANCELED"
        return {"open": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED"}[order.status]

    def place(self, account: str, inst: Instrument, meta: OrderMeta, venue: str, **kwargs: Any) -> Order:
        """Place on the engine; fills made while placing are taker fills. IOC/FOK leftovers expire."""
        with self.engine.lock:
            try:
                order = self.engine.place(account, inst.key, **kwargs)
            except EngineError as exc:
                raise engine_error(exc, venue) from None
            self.meta[order.id] = meta
            self.taker_trades.update(t["id"] for t in order.trades)
            if order.is_open and meta.time_in_force in ("IOC", "FOK"):
                self.engine.cancel(account, order.id)
                meta.expired = True
            return order

    def find_order(self, call: Call, inst: Instrument) -> Order:
        """The order named by orderId or origClientOrderId, in this account and symbol (-2013 otherwise)."""
        order_id, client_id = call.int("orderId"), call.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        try:
            if order_id is not None:
                order = self.engine.get_order(str(order_id), call.account)
            else:
                order = self.engine.find_client_order(call.account, client_id or "")
        except EngineError:
            raise BinanceError(-2013, "Order does not exist.") from None
        if order.inst is not inst:
            raise BinanceError(-2013, "Order does not exist.")
        return order

    def cancel(self, call: Call, inst: Instrument) -> Order:
        unknown = BinanceError(-2011, "Unknown order sent.")
        try:
            order = self.find_order(call, inst)
        except BinanceError as exc:
            raise unknown if exc.code == -2013 else exc from None
        try:
            return self.engine.cancel(call.account, order.id)
        except EngineError:  # already filled or canceled
            raise unknown from None

    def orders(self, call: Call, instruments: dict[str, Instrument], open_: bool | None) -> list[Order]:
        """The account's orders on these instruments (or the one named by `symbol`), oldest first."""
        sid = call.get("symbol")
        keys = {self._lookup(instruments, sid).key} if sid else {i.key for i in instruments.values()}
        return [o for o in self.engine.orders_of(call.account, open_=open_) if o.inst.key in keys]

    def trades(self, call: Call, inst: Instrument) -> list[tuple[Order, dict]]:
        """The account's fills on `inst`, oldest first, filtered as myTrades / userTrades do."""
        order_id, from_id = call.int("orderId"), call.int("fromId")
        start, end = call.int("startTime"), call.int("endTime")
        rows = [
            (o, t)
            for o in self.engine.orders_of(call.account, inst.key)
            if order_id is None or int(o.id) == order_id
            for t in list(o.trades)
        ]
        rows.sort(key=lambda row: int(row[1]["id"]))
        rows = [
            (o, t)
            for o, t in rows
            if (from_id is None or int(t["id"]) >= from_id)
            and (start is None or t["time"] >= start)
            and (end is None or t["time"] <= end)
        ]
        limit = call.limit(500, 1000)
        return rows[:limit] if from_id is not None or start is not None else rows[-limit:]


def engine_error(exc: EngineError, venue: str) -> BinanceError:
    """Binance's code for an engine refusal, per API (spot or usdm)."""
    message = str(exc)
    if exc.kind == "insufficient":
        if venue == "spot":
            return BinanceError(-2010, "Account has insufficient balance for requested action.")
        return BinanceError(-2019, "Margin is insufficient.")
    if exc.kind == "reduce_only":
        return BinanceError(-2022, "ReduceOnly Order is rejected.")
    if exc.kind == "not_found":
        return BinanceError(-2013, "Order does not exist.")
    if exc.kind == "min_qty" or "step" in message:
        return BinanceError(-1013, "Filter failure: LOT_SIZE")
    if "tick" in message:
        return BinanceError(-1013, "Filter failure: PRICE_FILTER")
    return BinanceError(-1013, f"fake binance: {message}")


def select_orders(orders: list[Order], call: Call) -> list[Order]:
    """allOrders: from orderId / startTime onwards, else the most recent `limit`, oldest first."""
    order_id, start, end = call.int("orderId"), call.int("startTime"), call.int("endTime")
    rows = [
        o
        for o in orders
        if (order_id is None or int(o.id) >= order_id)
        and (start is None or o.created_ms >= start)
        and (end is None or o.created_ms <= end)
    ]
    limit = call.limit(500, 1000)
    return rows[:limit] if order_id is not None or start is not None else rows[-limit:]


# --- market data ----------------------------------------------------------------------------

INTERVALS = {
    "1s": 1,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
    "1M": 0,  # calendar months
}
MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-01 was a Thursday; weekly bars open on Mondays


def _month_start(t: int, shift: int = 0) -> int:
    d = datetime.fromtimestamp(t / 1000, UTC)
    month = d.year * 12 + d.month - 1 + shift
    return int(datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp() * 1000)


def bar_open(interval: str, t: int) -> int:
    """Open time of the bar containing t."""
    if interval == "1M":
        return _month_start(t)
    step = INTERVALS[interval] * 1000
    offset = MONDAY_OFFSET_MS if interval == "1w" else 0
    return (t - offset) // step * step + offset


def bar_shift(interval: str, t: int, n: int) -> int:
    """Open time n bars after (or before) the bar opening at t."""
    return _month_start(t, n) if interval == "1M" else t + n * INTERVALS[interval] * 1000


def kline_rows(call: Call, inst: Instrument, max_limit: int) -> list[tuple[int, int, tuple]]:
    """(open, close time, engine bar) per kline, oldest first, honouring startTime / endTime / limit."""
    interval = call.need("interval")
    if interval not in INTERVALS:
        raise BinanceError(-1120, "Invalid interval.")
    limit = call.limit(500, max_limit)
    start, end = call.int("startTime"), call.int("endTime")
    last = bar_open(interval, min(end, now_ms()) if end is not None else now_ms())
    if start is not None:
        first = bar_open(interval, start)
        if first < start:
            first = bar_shift(interval, first, 1)
        opens = []
        t = first
        while t <= last and len(opens) < limit:
            opens.append(t)
            t = bar_shift(interval, t, 1)
    else:
        opens = [bar_shift(interval, last, -n) for n in range(limit - 1, -1, -1)]
    rows = []
    for t in opens:
        close = bar_shift(interval, t, 1)
        rows.append((t, close - 1, Engine._bar(inst, t, close - t)))
    return rows


def ticker_stats(engine: Engine, inst: Instrument) -> dict[str, Decimal]:
    """24 h statistics from the engine's hourly bars; last is the current price."""
    bars = engine.candles(inst.key, 3600, limit=24)
    volume = sum((b[5] for b in bars), ZERO)
    quote_volume = sum((b[5] * b[4] for b in bars), ZERO)
    open_ = bars[0][1]
    return {
        "open": open_,
        "high": max(max(b[2] for b in bars), inst.price),
        "low": min(min(b[3] for b in bars), inst.price),
        "last": inst.price,
        "volume": volume,
        "quote_volume": quote_volume,
        "vwap": quote_volume / volume if volume else inst.price,
        "change": inst.price - open_,
        "percent": (inst.price - open_) / open_ * 100 if open_ else ZERO,
    }


def book_levels(inst: Instrument, limit: int) -> tuple[list, list]:
    """Asks ascending and bids descending, at most `limit` each, never at or below zero."""
    asks, bids = inst.book(limit)
    return asks, [(p, q) for p, q in bids if p > 0]


def agg_trades(call: Call, inst: Instrument, engine: Engine, spot: bool) -> list[dict]:
    trades = _select_public(call, engine.public_trades[inst.key], id_param="fromId")
    rows = []
    for t in trades:
        row = {
            "a": int(t["id"]),
            "p": f8(t["price"]) if spot else plain(t["price"]),
            "q": f8(t["qty"]) if spot else plain(t["qty"]),
            "f": int(t["id"]),
            "l": int(t["id"]),
            "T": t["time"],
            "m": t["side"] == "sell",
        }
        if spot:
            row["M"] = True
        rows.append(row)
    return rows


def recent_trades(call: Call, inst: Instrument, engine: Engine, spot: bool) -> list[dict]:
    trades = _select_public(call, engine.public_trades[inst.key], id_param="fromId")
    rows = []
    for t in trades:
        row = {
            "id": int(t["id"]),
            "price": f8(t["price"]) if spot else plain(t["price"]),
            "qty": f8(t["qty"]) if spot else plain(t["qty"]),
            "quoteQty": f8(t["price"] * t["qty"]) if spot else plain(t["price"] * t["qty"]),
            "time": t["time"],
            "isBuyerMaker": t["side"] == "sell",
        }
        if spot:
            row["isBestMatch"] = True
        rows.append(row)
    return rows


def _select_public(call: Call, trades: list[dict], id_param: str) -> list[dict]:
    from_id, start, end = call.int(id_param), call.int("startTime"), call.int("endTime")
    rows = sorted(trades, key=lambda t: int(t["id"]))
    rows = [
        t
        for t in rows
        if (from_id is None or int(t["id"]) >= from_id)
        and (start is None or t["time"] >= start)
        and (end is None or t["time"] <= end)
    ]
    limit = call.limit(500, 1000)
    return rows[:limit] if from_id is not None or start is not None else rows[-limit:]
