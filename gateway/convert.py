"""ccxt structures -> FMZ structures. Pure functions: no I/O, no exchange objects.

Units follow FMZ exactly: ticker/depth/trade/order times in ms, record times in seconds,
asks ascending and bids descending, trades and records oldest first, amounts of contracts in
contracts.

A value that matters is never invented: when the exchange did not give it, the conversion
raises `ccxt.BadResponse` naming the exchange, the instrument and the missing field (the error
table reports that as a garbled answer). Field by field:

- ticker `last`: required (a strategy that trades at `Last` would send price 0, which FMZ's
  convention reads as a market order). `buy`/`sell`: the best bid/ask; 0 when that side of the
  book is empty. `high`/`low`/`open`: as FMZ's native exchanges fill them when the exchange has
  no 24 h figure: high = best ask, low = best bid, open = last (0 only if that is unknown too).
  `vol`: base currency for spot and **contracts** for contracts (FMZ's Ticker.Volume rule);
  okx's `vol24h` and binance's `volume` are already in contracts; elsewhere ccxt's base volume is
  divided by the contract size (inverse: the quote volume, since the contract is sized in quote
  currency). 0 when unknown, never a number in another unit. `quoteVol`: ccxt's quote volume, 0
  when unknown. `time`: the exchange's, else the time the reply was received.
- order `id`: required (never `"BTC_USDT,None"`). `price` 0 for market orders without one,
  `avg_price` 0 until something fills (FMZ's convention), `amount`/`deal_amount` 0 when absent.
  `offset` (contracts): close when the order reduces a position — ccxt's reduceOnly, or, in hedge
  mode where reduceOnly is not sent, a sell on the LONG side or a buy on the SHORT side.
- balances: a currency the exchange lists must come with its available amount (`free`);
  `frozen` is ccxt's `used` (ccxt derives it from total - free), 0 only where the exchange reports
  the available amount alone. A reply that is not JSON, or that lists nothing and says nothing,
  is an error, not an empty account.
- positions, fundings, markets: 0 for unknown numbers, as FMZ's native exchanges report them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

# ccxt precisionMode constants (ccxt.base.decimal_to_precision)
DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE = 2, 3, 4

# Where an exchange's raw ticker states the 24 h volume of a contract in contracts.
CONTRACT_VOLUME_KEYS = {"okx": "vol24h", "binance": "volume", "binanceusdm": "volume", "binancecoinm": "volume"}
# Where an order names its position side in hedge mode (binance positionSide, okx posSide, bitget holdSide).
POSITION_SIDE_KEYS = ("positionSide", "posSide", "holdSide", "position_side")


def num(value: Any) -> float | int:
    """A JSON-safe number: None, '', NaN and garbage become 0."""
    known_value = known(value)
    return 0 if known_value is None else known_value


def known(value: Any) -> float | int | None:
    """The number `value` stands for, or None when it is absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def to_fmz_ticker(
    ticker: dict, fmz_symbol: str, received_ms: int = 0, *, market: dict | None = None, exchange_id: str = "exchange"
) -> dict:
    """FMZ's ticker; `market` (the ccxt market) sets the volume unit of contracts."""
    last = known(ticker.get("last"))
    if last is None:
        last = known(ticker.get("close"))
    bid, ask = known(ticker.get("bid")), known(ticker.get("ask"))
    if last is None:
        quotes = "no bid/ask either" if bid is None and ask is None else "only bid/ask"
        raise ccxt.BadResponse(f"{exchange_id} ticker for {fmz_symbol} has no last price ({quotes})")
    high, low, open_ = known(ticker.get("high")), known(ticker.get("low")), known(ticker.get("open"))
    return {
        "symbol": fmz_symbol,
        "buy": bid or 0,
        "sell": ask or 0,
        "high": high if high is not None else ask or 0,
        "low": low if low is not None else bid or 0,
        "open": open_ if open_ is not None else last,
        "last": last,
        "vol": ticker_volume(ticker, market, exchange_id),
        "quoteVol": num(ticker.get("quoteVolume")),
        "time": num(ticker.get("timestamp")) or received_ms,
    }


def ticker_volume(ticker: dict, market: dict | None, exchange_id: str) -> float | int:
    """24 h volume in FMZ's unit: base currency for spot, contracts for contracts; 0 if unknown."""
    if not market or not market.get("contract"):
        return num(ticker.get("baseVolume"))
    info = ticker.get("info")
    key = CONTRACT_VOLUME_KEYS.get(exchange_id)
    if key and isinstance(info, dict) and known(info.get(key)) is not None:
        return num(info[key])
    size = known(market.get("contractSize"))
    volume = known(ticker.get("quoteVolume" if market.get("inverse") else "baseVolume"))
    if not size or volume is None:
        return 0
    return volume / size


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


def to_fmz_order(
    order: dict, fmz_symbol: str, contract_type: str | None = None, *, exchange_id: str = "exchange"
) -> dict:
    order_id = order.get("id")
    if order_id is None or str(order_id) == "":
        raise ccxt.BadResponse(f"{exchange_id} order for {fmz_symbol} has no order id")
    filled = num(order.get("filled"))
    average = order.get("average")
    if average is None and filled and order.get("cost"):
        average = num(order.get("cost")) / filled
    result = {
        "id": f"{fmz_symbol},{order_id}",
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
        result["offset"] = "close" if closes_position(order) else "open"
    return result


def closes_position(order: dict) -> bool:
    """reduceOnly, or in hedge mode (where ccxt sends no reduceOnly) the side against the position."""
    if order.get("reduceOnly"):
        return True
    side = position_side(order)
    if side is None:  # one-way mode (BOTH / net) or not stated
        return False
    return (side, order.get("side")) in (("long", "sell"), ("short", "buy"))


def position_side(order: dict) -> str | None:
    """`long` / `short` where the order names a hedge-mode position side, else None."""
    for source in (order, order.get("info")):
        if not isinstance(source, dict):
            continue
        for key in POSITION_SIDE_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.lower() in ("long", "short"):
                return value.lower()
    return None


def to_fmz_balances(balance: dict, exchange_id: str = "exchange") -> list[dict]:
    """[{currency, free, frozen}] from a ccxt balance, one row per currency held."""
    info = balance.get("info")
    if isinstance(info, str):
        raise ccxt.BadResponse(f"{exchange_id} balance reply is not JSON: {info[:80]!r}")
    free, used, total = balance.get("free") or {}, balance.get("used") or {}, balance.get("total") or {}
    currencies = sorted(set(free) | set(used) | set(total))
    if not currencies and not info:
        raise ccxt.BadResponse(f"{exchange_id} balance reply lists no currencies and no account data")
    rows = []
    for currency in currencies:
        available = known(free.get(currency))
        if available is None:
            raise ccxt.BadResponse(f"{exchange_id} balance of {currency} has no free (available) amount")
        row = {"currency": currency, "free": available, "frozen": num(used.get(currency))}
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
