"""Public OKX v5 endpoints of the fake: instruments, tickers, books, trades, candles, funding."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from .engine import Instrument
from .okx_common import (
    LIST_TIME,
    BarClock,
    Call,
    OkxError,
    bar_rows,
    delivery_dates,
    fmt,
    inst_id,
    inst_type,
    now_ms,
    numeric_id,
)

MAX_LEVERAGE = {"BTC": 125, "ETH": 100}
FUNDING_CAP = Decimal("0.0075")


def max_leverage(inst: Instrument) -> int:
    return 10 if inst.kind == "spot" else MAX_LEVERAGE.get(inst.base, 75)


def base_amount(inst: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    """Base-currency amount of `qty` (base units for spot, contracts otherwise)."""
    if not inst.is_contract:
        return qty
    return qty * inst.contract_size / price if inst.inverse else qty * inst.contract_size


def quote_amount(inst: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    if inst.is_contract and inst.inverse:
        return qty * inst.contract_size
    return base_amount(inst, qty, price) * price


def family(inst: Instrument) -> str:
    return f"{inst.base}-{inst.quote}"


# --- instruments ---------------------------------------------------------------------


def instrument_json(inst: Instrument, aliases: dict[int, str]) -> dict:
    contract = inst.is_contract
    row = {
        "alias": aliases.get(inst.expiry_ms or -1, "") if inst.kind == "future" else "",
        "auctionEndTime": "",
        "baseCcy": "" if contract else inst.base,
        "category": "1",
        "contTdSwTime": LIST_TIME,
        "ctMult": "1" if contract else "",
        "ctType": ("inverse" if inst.inverse else "linear") if contract else "",
        "ctVal": fmt(inst.contract_size) if contract else "",
        "ctValCcy": (inst.quote if inst.inverse else inst.base) if contract else "",
        "expTime": str(inst.expiry_ms) if inst.kind == "future" else "",
        "futureSettlement": False,
        "instFamily": family(inst) if contract else "",
        "instId": inst_id(inst),
        "instIdCode": int(numeric_id(inst_id(inst))) % 10_000_000,
        "instType": inst_type(inst),
        "lever": str(max_leverage(inst)),
        "listTime": LIST_TIME,
        "lotSz": fmt(inst.step),
        "maxIcebergSz": "9999999999",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "9999999999" if not contract else "100000000",
        "maxMktAmt": "1000000",
        "maxMktSz": "1000000" if not contract else "12000",
        "maxStopSz": "1000000" if not contract else "12000",
        "maxTriggerSz": "9999999999",
        "maxTwapSz": "9999999999",
        "minSz": fmt(inst.min_qty),
        "openType": "",
        "optType": "",
        "quoteCcy": "" if contract else inst.quote,
        "ruleType": "normal",
        "settleCcy": inst.settle if contract else "",
        "state": "live",
        "stk": "",
        "tickSz": fmt(inst.tick),
        "uly": family(inst) if contract else "",
    }
    if not contract:
        row["tradeQuoteCcyList"] = [inst.quote]
    return row


def get_instruments(call: Call) -> list:
    type_ = call.need("instType")
    if type_ not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    if type_ == "OPTION":
        if call.get("uly") is None and call.get("instFamily") is None:
            raise OkxError("50014", "Parameter uly can not be empty.")
        return []
    if type_ == "MARGIN":
        return []
    aliases = {ms: alias for alias, ms in delivery_dates().items()}
    fam = call.get("instFamily") or call.get("uly")
    wanted = call.get("instId")
    return [
        instrument_json(i, aliases)
        for i in call.venue.instruments(type_)
        if (wanted is None or inst_id(i) == wanted) and (fam is None or family(i) == fam)
    ]


# --- tickers, books, trades -------------------------------------------------------------


def ticker_json(inst: Instrument) -> dict:
    day = bar_rows(inst, "1H", None, None, 24)
    price = inst.price
    vol = sum((r[5] for r in day), Decimal(0))
    level = inst.step * 1000
    return {
        "instType": inst_type(inst),
        "instId": inst_id(inst),
        "last": fmt(price),
        "lastSz": fmt(inst.step * 10),
        "askPx": fmt(inst.best_ask()),
        "askSz": fmt(level),
        "bidPx": fmt(inst.best_bid()),
        "bidSz": fmt(level),
        "open24h": fmt(day[-1][1]),
        "high24h": fmt(max([price, *(r[2] for r in day)])),
        "low24h": fmt(min([price, *(r[3] for r in day)])),
        "volCcy24h": fmt(quote_amount(inst, vol, price) if not inst.is_contract else base_amount(inst, vol, price)),
        "vol24h": fmt(vol),
        "ts": str(now_ms()),
        "sodUtc0": fmt(bar_rows(inst, "1Dutc", None, None, 1)[0][1]),
        "sodUtc8": fmt(bar_rows(inst, "1D", None, None, 1)[0][1]),
    }


def get_ticker(call: Call) -> list:
    return [ticker_json(call.venue.instrument(call.need("instId")))]


def get_tickers(call: Call) -> list:
    type_ = call.need("instType")
    if type_ not in ("SPOT", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    fam = call.get("instFamily") or call.get("uly")
    return [ticker_json(i) for i in call.venue.instruments(type_) if fam is None or family(i) == fam]


def _book(call: Call, maximum: int) -> list:
    inst = call.venue.instrument(call.need("instId"))
    depth = call.integer("sz", 1, maximum) or 1
    asks, bids = inst.book(depth)

    def rows(levels: list) -> list:
        return [[fmt(px), fmt(qty), "0", str(1 + n % 3)] for n, (px, qty) in enumerate(levels) if px > 0]

    return [{"asks": rows(asks), "bids": rows(bids), "ts": str(now_ms())}]


def get_books(call: Call) -> list:
    return _book(call, 400)


def get_books_full(call: Call) -> list:
    return _book(call, 5000)


def trade_json(inst: Instrument, trade: dict) -> dict:
    return {
        "instId": inst_id(inst),
        "side": trade["side"],
        "sz": fmt(trade["qty"]),
        "px": fmt(trade["price"]),
        "source": "0",
        "tradeId": trade["id"],
        "ts": str(trade["time"]),
        "count": "1",
    }


def get_trades(call: Call) -> list:
    inst = call.venue.instrument(call.need("instId"))
    limit = call.integer("limit", 100, 500) or 100
    with call.venue.engine.lock:
        trades = list(call.venue.engine.public_trades[inst.key])
    return [trade_json(inst, t) for t in reversed(trades[-limit:])]


def get_history_trades(call: Call) -> list:
    inst = call.venue.instrument(call.need("instId"))
    limit = call.integer("limit", 100, 100) or 100
    by_time = call.get("type", "1") == "2"
    after, before = call.integer("after", None), call.integer("before", None)
    with call.venue.engine.lock:
        trades = list(call.venue.engine.public_trades[inst.key])

    def key(t: dict) -> int:
        return t["time"] if by_time else int(t["id"])

    picked = [t for t in trades if (after is None or key(t) < after) and (before is None or key(t) > before)]
    picked.sort(key=key, reverse=True)
    return [trade_json(inst, t) for t in picked[:limit]]


# --- candles ---------------------------------------------------------------------------


def _candles(call: Call, recent_only: bool, kind: str = "trade") -> list:
    if kind == "index":
        fam = call.need("instId")
        matches = [i for i in call.venue.instruments() if family(i) == fam]
        if not matches:
            raise OkxError("51001", "Instrument ID does not exist")
        inst = matches[0]
    else:
        inst = call.venue.instrument(call.need("instId"))
    bar = call.get("bar", "1m") or "1m"
    BarClock(bar)  # validates the bar
    limit = call.integer("limit", 100, 300) or 100
    after, before = call.integer("after", None), call.integer("before", None)
    rows = bar_rows(inst, bar, after, before, limit, recent_only)
    if kind != "trade":
        return [[str(t), fmt(o), fmt(h), fmt(lo), fmt(c), "1" if done else "0"] for t, o, h, lo, c, _, done in rows]
    out = []
    for t, o, h, lo, c, vol, done in rows:
        vol_ccy = base_amount(inst, vol, c) if inst.is_contract else quote_amount(inst, vol, c)
        quote = quote_amount(inst, vol, c)
        out.append([str(t), fmt(o), fmt(h), fmt(lo), fmt(c), fmt(vol), fmt(vol_ccy), fmt(quote), "1" if done else "0"])
    return out


def get_candles(call: Call) -> list:
    return _candles(call, recent_only=True)


def get_history_candles(call: Call) -> list:
    return _candles(call, recent_only=False)


def get_mark_candles(call: Call) -> list:
    return _candles(call, recent_only=False, kind="mark")


def get_index_candles(call: Call) -> list:
    return _candles(call, recent_only=False, kind="index")


# --- funding, mark price, time ------------------------------------------------------------


def _swap(call: Call, instrument_id: str) -> Instrument:
    inst = call.venue.instrument(instrument_id)
    if inst.kind != "swap":
        raise OkxError("51001", "Instrument ID does not exist")
    return inst


def funding_json(inst: Instrument) -> dict:
    now = now_ms()
    nxt = inst.next_funding_ms(now)
    rate = fmt(inst.funding_rate)
    return {
        "formulaType": "noRate",
        "fundingRate": rate,
        "fundingTime": str(nxt),
        "impactValue": "",
        "instId": inst_id(inst),
        "instType": "SWAP",
        "interestRate": "0",
        "maxFundingRate": fmt(FUNDING_CAP),
        "method": "current_period",
        "minFundingRate": fmt(-FUNDING_CAP),
        "nextFundingRate": "",
        "nextFundingTime": str(nxt + inst.funding_interval_h * 3600_000),
        "premium": "0",
        "settFundingRate": rate,
        "settState": "settled",
        "ts": str(now),
    }


def get_funding_rate(call: Call) -> list:
    wanted = call.need("instId")
    if wanted == "ANY":
        return [funding_json(i) for i in call.venue.instruments("SWAP")]
    return [funding_json(_swap(call, wanted))]


def get_funding_rate_history(call: Call) -> list:
    inst = _swap(call, call.need("instId"))
    limit = call.integer("limit", 100, 100) or 100
    after, before = call.integer("after", None), call.integer("before", None)
    period = inst.funding_interval_h * 3600_000
    t = inst.next_funding_ms(now_ms()) - period
    if after is not None:
        t = min(t, (after - 1) // period * period)
    out = []
    while len(out) < limit and t > 0 and (before is None or t > before):
        rate = fmt(inst.funding_rate)
        out.append(
            {
                "formulaType": "noRate",
                "fundingRate": rate,
                "fundingTime": str(t),
                "instId": inst_id(inst),
                "instType": "SWAP",
                "method": "current_period",
                "realizedRate": rate,
            }
        )
        t -= period
    return out


def get_mark_price(call: Call) -> list:
    wanted = call.get("instId")
    type_ = call.get("instType") if wanted is not None else call.need("instType")
    if type_ not in (None, "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    if wanted is not None:
        inst = call.venue.instrument(wanted)
        source = [inst] if type_ in (None, inst_type(inst)) or (type_, inst.kind) == ("MARGIN", "spot") else []
    else:
        source = call.venue.instruments("SPOT" if type_ == "MARGIN" else type_)
    ts = str(now_ms())
    rows = []
    for i in source:
        shown = type_ or ("MARGIN" if i.kind == "spot" else inst_type(i))
        rows.append({"instId": inst_id(i), "instType": shown, "markPx": fmt(i.price), "ts": ts})
    return rows


def get_time(call: Call) -> list:
    return [{"ts": str(now_ms())}]


def get_status(call: Call) -> list:
    return []


ROUTES: dict[tuple[str, str], Callable[[Call], object]] = {
    ("GET", "/api/v5/public/instruments"): get_instruments,
    ("GET", "/api/v5/public/time"): get_time,
    ("GET", "/api/v5/system/status"): get_status,
    ("GET", "/api/v5/market/ticker"): get_ticker,
    ("GET", "/api/v5/market/tickers"): get_tickers,
    ("GET", "/api/v5/market/books"): get_books,
    ("GET", "/api/v5/market/books-full"): get_books_full,
    ("GET", "/api/v5/market/trades"): get_trades,
    ("GET", "/api/v5/market/history-trades"): get_history_trades,
    ("GET", "/api/v5/market/candles"): get_candles,
    ("GET", "/api/v5/market/history-candles"): get_history_candles,
    ("GET", "/api/v5/market/mark-price-candles"): get_mark_candles,
    ("GET", "/api/v5/market/history-mark-price-candles"): get_mark_candles,
    ("GET", "/api/v5/market/index-candles"): get_index_candles,
    ("GET", "/api/v5/market/history-index-candles"): get_index_candles,
    ("GET", "/api/v5/public/funding-rate"): get_funding_rate,
    ("GET", "/api/v5/public/funding-rate-history"): get_funding_rate_history,
    ("GET", "/api/v5/public/mark-price"): get_mark_price,
}
