"""ccxt structures -> FMZ structures. Pure functions: no I/O, no exchange objects.

Units follow FMZ exactly: ticker/depth/trade/order times in ms, record times in seconds,
asks ascending and bids descending, trades and records oldest first, amounts of contracts in
contracts. Unknown numbers become 0 rather than null, as a native FMZ exchange reports them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

# ccxt precisionMode constants (ccxt.base.decimal_to_precision)
DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE = 2, 3, 4


def num(value: Any) -> float | int:
    """A JSON-safe number: None, '', NaN and garbage become 0."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return number if math.isfinite(number) else 0


def to_fmz_ticker(ticker: dict, fmz_symbol: str, received_ms: int = 0) -> dict:
    return {
        "symbol": fmz_symbol,
        "buy": num(ticker.get("bid")),
        "sell": num(ticker.get("ask")),
        "high": num(ticker.get("high")),
        "low": num(ticker.get("low")),
        "open": num(ticker.get("open")),
        "last": num(ticker.get("last") if ticker.get("last") is not None else ticker.get("close")),
        "vol": num(ticker.get("baseVolume")),
        "quoteVol": num(ticker.get("quoteVolume")),
        "time": num(ticker.get("timestamp")) or received_ms,
    }


def to_fmz_depth(book: dict, limit: int | None, received_ms: int = 0) -> dict:
    """`received_ms` stands in for exchanges whose books carry no time (binance spot)."""
    asks = sorted(book.get("asks") or [], key=lambda level: level[0])
    bids = sorted(book.get("bids") or [], key=lambda level: level[0], reverse=True)
    if limit:
        asks, bids = asks[:limit], bids[:limit]
    return {
        "time": num(book.get("timestamp")) or received_ms,
        "asks": [[num(level[0]), num(level[1])] for level in asks],
        "bids": [[num(level[0]), num(level[1])] for level in bids],
    }


def to_fmz_trades(trades: list[dict]) -> list[dict]:
    ordered = sorted(trades, key=lambda t: t.get("timestamp") or 0)
    return [
        {
            "id": str(t.get("id") or ""),
            "time": num(t.get("timestamp")),
            "price": num(t.get("price")),
            "amount": num(t.get("amount")),
            "type": "sell" if t.get("side") == "sell" else "buy",
        }
        for t in ordered
    ]


def to_fmz_records(ohlcv: list[list]) -> list[list]:
    """ccxt rows [ms, o, h, l, c, v] -> FMZ rows [seconds, o, h, l, c, v], oldest first, unique times."""
    rows: dict[int, list] = {}
    for row in ohlcv:
        if not row or row[0] is None:
            continue
        seconds = int(row[0]) // 1000
        rows[seconds] = [seconds, *(num(v) for v in row[1:6])]
    return [rows[t] for t in sorted(rows)]


def aggregate_ohlcv(rows: list[list], period_ms: int) -> list[list]:
    """Build bars of `period_ms` from smaller ccxt bars (ms rows, oldest first).

    A bucket is aligned to multiples of the period (UTC); the oldest bucket is dropped when the
    source rows start inside it, since its open/high/low would be incomplete.
    """
    buckets: dict[int, list] = {}
    first_bucket_start = None
    for ts, o, h, lo, c, v in (r[:6] for r in sorted(rows, key=lambda r: r[0])):
        start = (int(ts) // period_ms) * period_ms
        if first_bucket_start is None:
            first_bucket_start = (start, int(ts))
        bar = buckets.get(start)
        if bar is None:
            buckets[start] = [start, o, h, lo, c, v or 0]
        else:
            bar[2] = max(bar[2], h)
            bar[3] = min(bar[3], lo)
            bar[4] = c
            bar[5] = (bar[5] or 0) + (v or 0)
    if first_bucket_start and first_bucket_start[0] != first_bucket_start[1]:
        buckets.pop(first_bucket_start[0], None)
    return [buckets[k] for k in sorted(buckets)]


def fmz_order_status(order: dict) -> str:
    status = order.get("status")
    filled = num(order.get("filled"))
    if status == "open" or status is None:
        return "partial-filled" if filled > 0 else "pending"
    if status == "closed":
        return "filled"
    return "partial-canceled" if filled > 0 else "canceled"


def to_fmz_order(order: dict, fmz_symbol: str, contract_type: str | None = None) -> dict:
    filled = num(order.get("filled"))
    average = order.get("average")
    if average is None and filled and order.get("cost"):
        average = num(order.get("cost")) / filled
    result = {
        "id": f"{fmz_symbol},{order.get('id')}",
        "symbol": fmz_symbol,
        "amount": num(order.get("amount")),
        "price": num(order.get("price")),
        "deal_amount": filled,
        "avg_price": num(average),
        "type": "sell" if order.get("side") == "sell" else "buy",
        "status": fmz_order_status(order),
        "time": num(order.get("timestamp")),
        "order_type": order.get("type") or "limit",
    }
    if contract_type and contract_type != "spot":
        result["contract_type"] = contract_type
        result["offset"] = "close" if order.get("reduceOnly") else "open"
    return result


def to_fmz_balances(balance: dict) -> list[dict]:
    """[{currency, free, frozen}] from a ccxt balance, one row per currency."""
    rows = []
    free, used, total = balance.get("free") or {}, balance.get("used") or {}, balance.get("total") or {}
    for currency in sorted(set(free) | set(used) | set(total)):
        row = {"currency": currency, "free": num(free.get(currency)), "frozen": num(used.get(currency))}
        if row["free"] or row["frozen"] or num(total.get(currency)):
            rows.append(row)
    return rows


UPNL_KEYS = (
    "unrealizedProfit",
    "upl",
    "unrealisedPnl",
    "unrealizedPnl",
    "unrealised_pnl",
    "unrealized_pnl",
    "crossUnPnl",
)
CURRENCY_KEYS = ("asset", "ccy", "coin", "currency", "marginCoin", "settleCoin")


def unrealized_pnl(info: Any, currency: str) -> float | int:
    """The unrealised PnL an exchange reports for `currency` somewhere in a balance reply, else 0."""
    stack = [info]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if any(str(node.get(k, "")).upper() == currency for k in CURRENCY_KEYS):
                for key in UPNL_KEYS:
                    if node.get(key) not in (None, ""):
                        return num(node[key])
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
    return 0


def position_leverage(position: dict) -> float | int | None:
    return num(position["leverage"]) if position.get("leverage") else None


def implied_leverage(position: dict) -> float | None:
    """1 / initialMarginPercentage: a last resort, since open orders' margin can be counted in."""
    share = num(position.get("initialMarginPercentage"))
    return round(1 / share, 2) if share > 0 else None


def to_fmz_position(position: dict, fmz_symbol: str, contract_type: str, leverage: float | None = None) -> dict:
    margin = position.get("initialMargin")
    if margin is None:
        margin = position.get("collateral")
    return {
        "symbol": fmz_symbol,
        "margin_level": num(position_leverage(position) or leverage),
        "amount": abs(num(position.get("contracts"))),
        "frozen_amount": 0,
        "price": num(position.get("entryPrice")),
        "profit": num(position.get("unrealizedPnl")),
        "type": "short" if position.get("side") == "short" else "long",
        "contract_type": contract_type,
        "margin": num(margin),
        "margin_mode": position.get("marginMode") or "",
    }


def to_fmz_funding(rate: dict, fmz_symbol: str, interval_ms: int) -> dict:
    next_time = rate.get("fundingTimestamp") or rate.get("nextFundingTimestamp")
    return {
        "symbol": fmz_symbol,
        "interval": interval_ms,
        "time": num(next_time),
        "rate": num(rate.get("fundingRate")),
    }


def to_fmz_market(market: dict, fmz_symbol: str, precision_mode: int) -> dict:
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = step_size(precision.get("price"), precision_mode)
    amount_step = step_size(precision.get("amount"), precision_mode)
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    contract = bool(market.get("contract"))
    ct_val = market.get("contractSize") if contract else 1
    if contract:
        ct_val_ccy = market.get("quote") if market.get("inverse") else market.get("base")
    else:
        ct_val_ccy = market.get("base")
    return {
        "symbol": fmz_symbol,
        "baseAsset": market.get("base"),
        "quoteAsset": market.get("quote"),
        "tickSize": tick,
        "amountSize": amount_step,
        "pricePrecision": decimals_of(tick),
        "amountPrecision": decimals_of(amount_step),
        "minQty": num(amount_limits.get("min")),
        "maxQty": num(amount_limits.get("max")),
        "minNotional": num(cost_limits.get("min")),
        "maxNotional": num(cost_limits.get("max")),
        "ctVal": num(ct_val if ct_val is not None else 1),
        "ctValCcy": ct_val_ccy,
    }


def step_size(precision: Any, precision_mode: int) -> float | int:
    """The increment a precision value stands for, whatever ccxt's precisionMode."""
    if precision is None:
        return 0
    if precision_mode == TICK_SIZE:
        return num(precision)
    digits = int(num(precision))
    return float(Decimal(1).scaleb(-digits))


def decimals_of(step: float | int) -> int:
    if not step:
        return 0
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -int(exponent))
