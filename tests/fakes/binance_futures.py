"""USDⓈ-M futures routes of the fake Binance: /fapi market data and orders. Positions, leverage
and the futures account are in binance_futures_account.py; the COIN-M side (/dapi) in binance_coinm.py.

In one-way mode an order acts on the BOTH position (reduceOnly allowed); in hedge mode it names its
positionSide, LONG or SHORT, and closes with the opposite side instead of reduceOnly.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .binance_common import (
    API_KEY,
    PERPETUAL_DELIVERY,
    SIGNED,
    ZERO,
    BinanceError,
    Call,
    Endpoint,
    FakeBinance,
    OrderMeta,
    agg_trades,
    client_order_id,
    fixed,
    kline_rows,
    mandatory,
    now_ms,
    places,
    plain,
    recent_trades,
    select_orders,
    ticker_stats,
)
from .binance_common import symbol_id as sid
from .engine import Instrument, Order

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"]
MIN_NOTIONAL = Decimal(5)
MARGIN_ASSETS = ("USDT", "USDC", "BTC", "ETH", "BNB", "FDUSD")  # the assets of a futures account
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


def px(inst: Instrument, value: Decimal) -> str:
    return fixed(value, places(inst.tick))


def qty(inst: Instrument, value: Decimal) -> str:
    return fixed(value, places(inst.step))


def f8(value: Decimal) -> str:
    return fixed(value, 8)


def instruments_param(fake: FakeBinance, call: Call) -> list[Instrument]:
    return [fake.usdm_symbol(call)] if call.get("symbol") else list(fake.usdm_instruments().values())


def one_or_all(call: Call, rows: list) -> Any:
    return rows[0] if call.get("symbol") else rows


# --- market data -------------------------------------------------------------------------------------


def ping(fake: FakeBinance, call: Call) -> dict:
    return {}


def server_time(fake: FakeBinance, call: Call) -> dict:
    return {"serverTime": now_ms()}


def contract_type(fake: FakeBinance, inst: Instrument) -> str:
    if inst.kind == "swap":
        return "PERPETUAL"
    expiries = sorted(
        i.expiry_ms or 0
        for i in fake.usdm_instruments().values()
        if i.kind == "future" and (i.base, i.quote) == (inst.base, inst.quote)
    )
    return "CURRENT_QUARTER" if expiries.index(inst.expiry_ms or 0) == 0 else "NEXT_QUARTER"


def exchange_info(fake: FakeBinance, call: Call) -> dict:
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in MARGIN_ASSETS],
        "symbols": [symbol_info(fake, inst) for inst in fake.usdm_instruments().values()],
    }


def symbol_info(fake: FakeBinance, inst: Instrument) -> dict:
    return {
        "symbol": sid(inst),
        "pair": inst.base + inst.quote,
        "contractType": contract_type(fake, inst),
        "deliveryDate": inst.expiry_ms if inst.kind == "future" else PERPETUAL_DELIVERY,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": inst.base,
        "quoteAsset": inst.quote,
        "marginAsset": inst.settle,
        "pricePrecision": places(inst.tick),
        "quantityPrecision": places(inst.step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": px(inst, inst.tick),
                "maxPrice": "4529764",
                "tickSize": plain(inst.tick),
            },
            {"filterType": "LOT_SIZE", "minQty": plain(inst.min_qty), "maxQty": "1000", "stepSize": plain(inst.step)},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": plain(inst.min_qty),
                "maxQty": "120",
                "stepSize": plain(inst.step),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": plain(MIN_NOTIONAL)},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def depth(fake: FakeBinance, call: Call) -> dict:
    inst = fake.usdm_symbol(call)
    limit = call.int("limit", 500)
    if limit not in DEPTH_LIMITS:
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'limit'; legal range is '5, 10, 20, 50, 100, 500, 1000'."
        )
    seq, asks, bids = fake.engine.book_state(inst.key, limit)  # the id the websocket diffs continue
    now = now_ms()
    return {
        "lastUpdateId": seq,
        "E": now,
        "T": now,
        "bids": [[px(inst, p), qty(inst, q)] for p, q in bids],
        "asks": [[px(inst, p), qty(inst, q)] for p, q in asks],
    }


def trades(fake: FakeBinance, call: Call) -> list:
    return recent_trades(call, fake.usdm_symbol(call), fake.engine, spot=False)


def aggregate_trades(fake: FakeBinance, call: Call) -> list:
    return agg_trades(call, fake.usdm_symbol(call), fake.engine, spot=False)


def klines(fake: FakeBinance, call: Call) -> list:
    inst = fake.usdm_symbol(call)
    return [
        [
            t,
            px(inst, o),
            px(inst, h),
            px(inst, low),
            px(inst, c),
            qty(inst, v),
            close,
            f8(v * c),
            10 + t // 60000 % 50,
            qty(inst, v / 2),
            f8(v * c / 2),
            "0",
        ]
        for t, close, (_, o, h, low, c, v) in kline_rows(call, inst, 1500)
    ]


def price_klines(fake: FakeBinance, call: Call) -> list:
    """markPriceKlines / indexPriceKlines (index takes `pair`): prices only, volumes "0"."""
    if call.get("pair") and not call.get("symbol"):
        call.params["symbol"] = call.params["pair"]
    inst = fake.usdm_symbol(call)
    return [
        [t, px(inst, o), px(inst, h), px(inst, low), px(inst, c), "0", close, "0", 60, "0", "0", "0"]
        for t, close, (_, o, h, low, c, _v) in kline_rows(call, inst, 1500)
    ]


def ticker_row(fake: FakeBinance, inst: Instrument, now: int, extra: Callable[[Instrument, dict], dict]) -> dict:
    """One 24 h ticker row, USDⓈ-M or COIN-M; `extra(inst, stats)` gives the fields of one side only."""
    s = ticker_stats(fake.engine, inst)
    trades_ = fake.engine.public_trades[inst.key]
    return {
        "symbol": sid(inst),
        "priceChange": px(inst, s["change"]),
        "priceChangePercent": f"{s['percent']:.3f}",
        "weightedAvgPrice": px(inst, s["vwap"]),
        "lastPrice": px(inst, s["last"]),
        "lastQty": qty(inst, trades_[-1]["qty"]),
        "openPrice": px(inst, s["open"]),
        "highPrice": px(inst, s["high"]),
        "lowPrice": px(inst, s["low"]),
        "volume": qty(inst, s["volume"]),
        **extra(inst, s),
        "openTime": now - 86_400_000,
        "closeTime": now,
        "firstId": int(trades_[0]["id"]),
        "lastId": int(trades_[-1]["id"]),
        "count": len(trades_),
    }


def ticker_24hr(fake: FakeBinance, call: Call) -> Any:
    now = now_ms()
    rows = [
        ticker_row(fake, inst, now, lambda _, s: {"quoteVolume": fixed(s["quote_volume"], 2)})
        for inst in instruments_param(fake, call)
    ]
    return one_or_all(call, rows)


def book_ticker(fake: FakeBinance, call: Call) -> Any:
    now = now_ms()
    rows = [
        {
            "symbol": sid(inst),
            "bidPrice": px(inst, inst.best_bid()),
            "bidQty": qty(inst, inst.step * 1000),
            "askPrice": px(inst, inst.best_ask()),
            "askQty": qty(inst, inst.step * 1000),
            "time": now,
            "lastUpdateId": now,
        }
        for inst in instruments_param(fake, call)
    ]
    return one_or_all(call, rows)


def ticker_price(fake: FakeBinance, call: Call) -> Any:
    now = now_ms()
    return one_or_all(
        call, [{"symbol": sid(i), "price": px(i, i.price), "time": now} for i in instruments_param(fake, call)]
    )


def premium_index(fake: FakeBinance, call: Call) -> Any:
    now = now_ms()
    rows = []
    for inst in instruments_param(fake, call):
        perpetual = inst.kind == "swap"
        rows.append(
            {
                "symbol": sid(inst),
                "markPrice": f8(inst.price),
                "indexPrice": f8(inst.price),
                "estimatedSettlePrice": f8(inst.price),
                "lastFundingRate": f8(inst.funding_rate) if perpetual else "",
                "interestRate": "0.00010000" if perpetual else "",
                "nextFundingTime": inst.next_funding_ms(now) if perpetual else 0,
                "time": now,
            }
        )
    return one_or_all(call, rows)


def funding_rate_history(fake: FakeBinance, call: Call) -> list:
    """Past funding settlements at the instrument's constant rate, oldest first (default 100, max 1000)."""
    limit = call.limit(100, 1000)
    start, end = call.int("startTime"), call.int("endTime")
    now = now_ms()
    rows = []
    for inst in instruments_param(fake, call):
        if inst.kind != "swap":
            continue
        period = inst.funding_interval_h * 3_600_000
        last = (min(end, now) if end is not None else now) // period * period
        if start is not None:
            first = -(-start // period) * period
            times = list(range(first, last + 1, period))[:limit]
        else:
            times = [last - n * period for n in range(limit - 1, -1, -1)]
        rows += [
            {"symbol": sid(inst), "fundingTime": t, "fundingRate": f8(inst.funding_rate), "markPrice": f8(inst.price)}
            for t in times
        ]
    rows.sort(key=lambda r: r["fundingTime"])
    return rows[:limit] if start is not None else rows[-limit:]


def funding_info(fake: FakeBinance, call: Call) -> list:
    return [
        {
            "symbol": sid(inst),
            "adjustedFundingRateCap": "0.02000000",
            "adjustedFundingRateFloor": "-0.02000000",
            "fundingIntervalHours": inst.funding_interval_h,
            "disclaimer": False,
        }
        for inst in fake.usdm_instruments().values()
        if inst.kind == "swap"
    ]


# --- orders -------------------------------------------------------------------------------------------


def order_json(fake: FakeBinance, order: Order, *, with_time: bool = True, ack: bool = False) -> dict:
    """An order as /fapi/v1/order answers: GET carries `time`, POST and DELETE only `updateTime`.

    An ACK answer describes the order as accepted, before it matched.
    """
    inst, meta = order.inst, fake.meta_of(order)
    filled, cost = (ZERO, ZERO) if ack else (order.filled, order.cost)
    avg = cost / filled if filled else ZERO
    body = {
        "orderId": int(order.id),
        "symbol": sid(inst),
        "status": "NEW" if ack else fake.status(order),
        "clientOrderId": order.client_id,
        "price": px(inst, order.price) if order.price else "0",
        "avgPrice": fixed(avg, max(5, places(inst.tick))),
        "origQty": qty(inst, order.qty),
        "executedQty": qty(inst, filled),
        "cumQty": qty(inst, filled),
        "cumQuote": fixed(cost, max(5, places(inst.tick) + places(inst.step))),
        "timeInForce": meta.time_in_force,
        "type": meta.type,
        "reduceOnly": meta.reduce_only,
        "closePosition": False,
        "side": order.side.upper(),
        "positionSide": meta.position_side,
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": meta.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
    }
    if with_time:
        body["time"] = order.created_ms
    body["updateTime"] = order.created_ms if ack else order.updated_ms
    return body


def new_order(fake: FakeBinance, call: Call) -> dict:
    inst = fake.usdm_symbol(call)
    side = call.need("side").upper()
    if side not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    type_ = call.need("type").upper()
    if type_ not in ORDER_TYPES:
        raise BinanceError(-1116, "Invalid orderType.")
    if type_ not in ("LIMIT", "MARKET"):
        raise BinanceError(-1116, f"fake binance: order type {type_} is not implemented")
    resp_type = (call.get("newOrderRespType") or "ACK").upper()
    if resp_type not in ("ACK", "RESULT"):
        raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
    client_id = call.get("newClientOrderId") or client_order_id()
    if any(o.client_id == client_id for o in fake.engine.orders_of(call.account, open_=True)):
        raise BinanceError(-4116, "ClientOrderId is duplicated.")
    meta, kwargs = _order_terms(fake, call, inst, side, type_)
    order = fake.place(call.account, inst, meta, "usdm", side=side.lower(), client_id=client_id, **kwargs)
    return order_json(fake, order, with_time=False, ack=resp_type == "ACK")


def _order_terms(fake: FakeBinance, call: Call, inst: Instrument, side: str, type_: str) -> tuple[OrderMeta, dict]:
    acc = fake.engine.account(call.account)
    position_side = (call.get("positionSide") or "BOTH").upper()
    if position_side not in ("BOTH", "LONG", "SHORT"):
        raise BinanceError(-4006, "Invalid position side.")  # fapi code for a bad positionSide value
    reduce_param = call.bool("reduceOnly")
    amount = call.decimal("quantity")
    if amount is None:
        raise mandatory("quantity")
    if acc.hedged:
        if position_side == "BOTH":
            raise BinanceError(-4061, "Order's position side does not match user's setting.")
        if reduce_param is not None:
            raise BinanceError(-1106, "Parameter 'reduceonly' sent when not required.")
        pos_side = position_side.lower()
        reduce_only = (side == "SELL") == (position_side == "LONG")  # the engine checks it closes no more than held
    else:
        if position_side != "BOTH":
            raise BinanceError(-4061, "Order's position side does not match user's setting.")
        pos_side, reduce_only = "both", bool(reduce_param)
        opposite = acc.positions.get((inst.key, "long" if side == "SELL" else "short"))
        if not reduce_only and opposite is not None and amount > opposite.qty:
            raise BinanceError(
                -1,
                f"fake binance: reversing a one-way {opposite.side} of {plain(opposite.qty)} with one "
                f"{side} order of {plain(amount)} is not supported by the engine; close it first",
            )
    if amount <= 0 or amount % inst.step != 0:
        raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
    if amount < inst.min_qty:
        raise BinanceError(-4004, "Quantity less than min quantity.")
    meta = OrderMeta(type=type_, position_side=position_side, reduce_only=bool(reduce_param))
    price = call.decimal("price")
    if type_ == "MARKET":
        if price is not None:
            raise BinanceError(-1106, "Parameter 'price' sent when not required.")
        if not reduce_only and amount * inst.price < MIN_NOTIONAL:
            raise _notional_error()
        return meta, {"type_": "market", "qty": amount, "reduce_only": reduce_only, "pos_side": pos_side}
    if price is None:
        raise mandatory("price")
    tif = (call.get("timeInForce") or "").upper()
    if not tif:
        raise mandatory("timeInForce")
    if tif not in ("GTC", "IOC", "FOK", "GTX"):
        raise BinanceError(-1115, "Invalid timeInForce.")
    if price <= 0 or price % inst.tick != 0:
        raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
    if not reduce_only and amount * price < MIN_NOTIONAL:
        raise _notional_error()
    crosses = price >= inst.best_ask() if side == "BUY" else price <= inst.best_bid()
    if tif == "GTX" and crosses:
        raise BinanceError(
            -5022,
            "Due to the order could not be executed as maker, the Post Only order will be rejected. "
            "The order will not be recorded in the order history",
        )
    meta.time_in_force = tif
    return meta, {"type_": "limit", "qty": amount, "price": price, "reduce_only": reduce_only, "pos_side": pos_side}


def _notional_error() -> BinanceError:
    return BinanceError(
        -4164, f"Order's notional must be no smaller than {plain(MIN_NOTIONAL)} (unless you choose reduce only)."
    )


def get_order(fake: FakeBinance, call: Call) -> dict:
    return order_json(fake, fake.find_order(call, fake.usdm_symbol(call)))


def get_open_order(fake: FakeBinance, call: Call) -> dict:
    order = fake.find_order(call, fake.usdm_symbol(call))
    if not order.is_open:
        raise BinanceError(-2013, "Order does not exist.")
    return order_json(fake, order)


def cancel_order(fake: FakeBinance, call: Call) -> dict:
    return order_json(fake, fake.cancel(call, fake.usdm_symbol(call)), with_time=False)


def cancel_all(fake: FakeBinance, call: Call) -> dict:
    inst = fake.usdm_symbol(call)
    for order in fake.engine.orders_of(call.account, inst.key, open_=True):
        fake.engine.cancel(call.account, order.id)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def open_orders(fake: FakeBinance, call: Call) -> list:
    return [order_json(fake, o) for o in fake.orders(call, fake.usdm_instruments(), open_=True)]


def all_orders(fake: FakeBinance, call: Call) -> list:
    inst = fake.usdm_symbol(call)
    return [order_json(fake, o) for o in select_orders(fake.engine.orders_of(call.account, inst.key), call)]


def user_trades(fake: FakeBinance, call: Call) -> list:
    inst = fake.usdm_symbol(call)
    rows = []
    for order, t in fake.trades(call, inst):
        share = t["qty"] / order.filled if order.filled else ZERO
        rows.append(
            {
                "symbol": sid(inst),
                "id": int(t["id"]),
                "orderId": int(order.id),
                "side": order.side.upper(),
                "price": px(inst, t["price"]),
                "qty": qty(inst, t["qty"]),
                "realizedPnl": f8(order.realized_pnl * share),
                "quoteQty": f8(t["price"] * t["qty"] * inst.contract_size),
                "commission": "0",
                "commissionAsset": inst.settle,
                "time": t["time"],
                "positionSide": fake.meta_of(order).position_side,
                "buyer": order.side == "buy",
                "maker": t["id"] not in fake.taker_trades,
            }
        )
    return rows


ROUTES = [
    Endpoint("GET", "/fapi/v1/ping", ping),
    Endpoint("GET", "/fapi/v1/time", server_time),
    Endpoint("GET", "/fapi/v1/exchangeInfo", exchange_info),
    Endpoint("GET", "/fapi/v1/depth", depth),
    Endpoint("GET", "/fapi/v1/trades", trades),
    Endpoint("GET", "/fapi/v1/historicalTrades", trades, API_KEY),
    Endpoint("GET", "/fapi/v1/aggTrades", aggregate_trades),
    Endpoint("GET", "/fapi/v1/klines", klines),
    Endpoint("GET", "/fapi/v1/markPriceKlines", price_klines),
    Endpoint("GET", "/fapi/v1/indexPriceKlines", price_klines),
    Endpoint("GET", "/fapi/v1/ticker/24hr", ticker_24hr),
    Endpoint("GET", "/fapi/v1/ticker/bookTicker", book_ticker),
    Endpoint("GET", "/fapi/v1/ticker/price", ticker_price),
    Endpoint("GET", "/fapi/v2/ticker/price", ticker_price),
    Endpoint("GET", "/fapi/v1/premiumIndex", premium_index),
    Endpoint("GET", "/fapi/v1/fundingRate", funding_rate_history),
    Endpoint("GET", "/fapi/v1/fundingInfo", funding_info),
    Endpoint("POST", "/fapi/v1/order", new_order, SIGNED),
    Endpoint("GET", "/fapi/v1/order", get_order, SIGNED),
    Endpoint("DELETE", "/fapi/v1/order", cancel_order, SIGNED),
    Endpoint("GET", "/fapi/v1/openOrder", get_open_order, SIGNED),
    Endpoint("GET", "/fapi/v1/openOrders", open_orders, SIGNED),
    Endpoint("DELETE", "/fapi/v1/allOpenOrders", cancel_all, SIGNED),
    Endpoint("GET", "/fapi/v1/allOrders", all_orders, SIGNED),
    Endpoint("GET", "/fapi/v1/userTrades", user_trades, SIGNED),
    Endpoint("GET", "/dapi/v1/ping", ping),
    Endpoint("GET", "/dapi/v1/time", server_time),
]
