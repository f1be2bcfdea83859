"""Spot routes of the fake Binance: /api/v3 market data, account and orders, plus the few /sapi
endpoints ccxt asks for while loading markets with keys (coins, margin pairs, system status)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from .binance_common import (
    API_KEY,
    NONE,
    SIGNED,
    ZERO,
    BinanceError,
    Call,
    Endpoint,
    FakeBinance,
    OrderMeta,
    agg_trades,
    client_order_id,
    f8,
    kline_rows,
    mandatory,
    now_ms,
    numeric_id,
    plain,
    recent_trades,
    select_orders,
    ticker_stats,
)
from .engine import Instrument, Order

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
SUPPORTED_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
MIN_NOTIONAL = {"BTC": Decimal("0.0001"), "ETH": Decimal("0.001")}  # by quote asset; 5 otherwise
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def min_notional(inst: Instrument) -> Decimal:
    return MIN_NOTIONAL.get(inst.quote, Decimal(5))


def symbols_param(fake: FakeBinance, call: Call) -> list[Instrument]:
    """`symbol=BTCUSDT` or `symbols=["BTCUSDT","ETHUSDT"]`; every spot symbol when neither is sent."""
    instruments = fake.spot_instruments()
    if call.get("symbol"):
        return [fake.spot_symbol(call)]
    raw = call.get("symbols")
    if raw is None:
        return list(instruments.values())
    try:
        ids = json.loads(raw)
    except ValueError:
        raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
    return [fake._lookup(instruments, sid) for sid in ids]


# --- general and market data ------------------------------------------------------------------


def ping(fake: FakeBinance, call: Call) -> dict:
    return {}


def server_time(fake: FakeBinance, call: Call) -> dict:
    return {"serverTime": now_ms()}


def exchange_info(fake: FakeBinance, call: Call) -> dict:
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [symbol_info(inst) for inst in symbols_param(fake, call)],
    }


def symbol_info(inst: Instrument) -> dict:
    return {
        "symbol": inst.base + inst.quote,
        "status": "TRADING",
        "baseAsset": inst.base,
        "baseAssetPrecision": 8,
        "quoteAsset": inst.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": f8(inst.tick),
                "maxPrice": "1000000.00000000",
                "tickSize": f8(inst.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": f8(inst.min_qty),
                "maxQty": "9000.00000000",
                "stepSize": f8(inst.step),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2"},
            {
                "filterType": "NOTIONAL",
                "minNotional": f8(min_notional(inst)),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    }


def depth(fake: FakeBinance, call: Call) -> dict:
    inst = fake.spot_symbol(call)
    limit = call.int("limit", 100)
    if limit not in DEPTH_LIMITS:
        raise BinanceError(
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '5, 10, 20, 50, 100, 500, 1000, 5000'.",
        )
    seq, asks, bids = fake.engine.book_state(inst.key, limit)  # the id the websocket diffs continue
    return {
        "lastUpdateId": seq,
        "bids": [[f8(p), f8(q)] for p, q in bids],
        "asks": [[f8(p), f8(q)] for p, q in asks],
    }


def trades(fake: FakeBinance, call: Call) -> list:
    return recent_trades(call, fake.spot_symbol(call), fake.engine, spot=True)


def aggregate_trades(fake: FakeBinance, call: Call) -> list:
    return agg_trades(call, fake.spot_symbol(call), fake.engine, spot=True)


def klines(fake: FakeBinance, call: Call) -> list:
    inst = fake.spot_symbol(call)
    return [
        [t, f8(o), f8(h), f8(low), f8(c), f8(v), close, f8(v * c), 10 + t // 60000 % 50, f8(v / 2), f8(v * c / 2), "0"]
        for t, close, (_, o, h, low, c, v) in kline_rows(call, inst, 1000)
    ]


def ticker_24hr(fake: FakeBinance, call: Call) -> Any:
    rows = []
    now = now_ms()
    for inst in symbols_param(fake, call):
        s = ticker_stats(fake.engine, inst)
        trades_ = fake.engine.public_trades[inst.key]
        rows.append(
            {
                "symbol": inst.base + inst.quote,
                "priceChange": f8(s["change"]),
                "priceChangePercent": f"{s['percent']:.3f}",
                "weightedAvgPrice": f8(s["vwap"]),
                "prevClosePrice": f8(s["open"]),
                "lastPrice": f8(s["last"]),
                "lastQty": f8(trades_[-1]["qty"]),
                "bidPrice": f8(inst.best_bid()),
                "bidQty": f8(inst.step * 1000),
                "askPrice": f8(inst.best_ask()),
                "askQty": f8(inst.step * 1000),
                "openPrice": f8(s["open"]),
                "highPrice": f8(s["high"]),
                "lowPrice": f8(s["low"]),
                "volume": f8(s["volume"]),
                "quoteVolume": f8(s["quote_volume"]),
                "openTime": now - 86_400_000,
                "closeTime": now,
                "firstId": int(trades_[0]["id"]),
                "lastId": int(trades_[-1]["id"]),
                "count": len(trades_),
            }
        )
    return rows[0] if call.get("symbol") else rows


def book_ticker(fake: FakeBinance, call: Call) -> Any:
    rows = [
        {
            "symbol": inst.base + inst.quote,
            "bidPrice": f8(inst.best_bid()),
            "bidQty": f8(inst.step * 1000),
            "askPrice": f8(inst.best_ask()),
            "askQty": f8(inst.step * 1000),
        }
        for inst in symbols_param(fake, call)
    ]
    return rows[0] if call.get("symbol") else rows


def ticker_price(fake: FakeBinance, call: Call) -> Any:
    rows = [{"symbol": inst.base + inst.quote, "price": f8(inst.price)} for inst in symbols_param(fake, call)]
    return rows[0] if call.get("symbol") else rows


def avg_price(fake: FakeBinance, call: Call) -> dict:
    inst = fake.spot_symbol(call)
    return {"mins": 5, "price": f8(inst.price), "closeTime": now_ms()}


# --- account ------------------------------------------------------------------------------------


def account(fake: FakeBinance, call: Call) -> dict:
    acc = fake.engine.account(call.account)
    assets = sorted({*acc.balances, *(c for i in fake.spot_instruments().values() for c in (i.base, i.quote))})
    with fake.engine.lock:
        balances = [{"asset": a, "free": f8(acc.balance(a)[0]), "locked": f8(acc.balance(a)[1])} for a in assets]
    if call.get("omitZeroBalances") == "true":
        balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00100000",
            "taker": "0.00100000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now_ms(),
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": numeric_id(call.account),
    }


# --- orders ------------------------------------------------------------------------------------


def _order_fields(fake: FakeBinance, order: Order) -> dict:
    """The fields every spot order reply shares."""
    meta = fake.meta_of(order)
    return {
        "symbol": order.inst.base + order.inst.quote,
        "orderId": int(order.id),
        "orderListId": -1,
        "clientOrderId": order.client_id,
        "price": f8(order.price),
        "origQty": f8(order.qty),
        "executedQty": f8(order.filled),
        "origQuoteOrderQty": f8(meta.quote_qty),
        "cummulativeQuoteQty": f8(order.cost),
        "status": fake.status(order),
        "timeInForce": meta.time_in_force,
        "type": meta.type,
        "side": order.side.upper(),
        "workingTime": order.created_ms,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def order_json(fake: FakeBinance, order: Order) -> dict:
    """GET /api/v3/order, openOrders, allOrders."""
    return {
        **_order_fields(fake, order),
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "isWorking": True,
    }


def _result_json(fake: FakeBinance, order: Order, transact_time: int) -> dict:
    """POST and DELETE /api/v3/order replies."""
    return {**_order_fields(fake, order), "transactTime": transact_time}


def _fill_json(order: Order, trade: dict) -> dict:
    return {
        "price": f8(trade["price"]),
        "qty": f8(trade["qty"]),
        "commission": "0.00000000",
        "commissionAsset": order.inst.base if order.side == "buy" else order.inst.quote,
        "tradeId": int(trade["id"]),
    }


def new_order(fake: FakeBinance, call: Call) -> dict:
    inst = fake.spot_symbol(call)
    side = call.need("side").upper()
    if side not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    type_ = call.need("type").upper()
    if type_ not in ORDER_TYPES:
        raise BinanceError(-1116, "Invalid orderType.")
    if type_ not in SUPPORTED_TYPES:
        raise BinanceError(-1116, f"fake binance: order type {type_} is not implemented")
    resp_type = (call.get("newOrderRespType") or "FULL").upper()
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
    client_id = call.get("newClientOrderId") or client_order_id()
    if any(o.client_id == client_id for o in fake.engine.orders_of(call.account, open_=True)):
        raise BinanceError(-2010, "Duplicate order sent.")
    meta, kwargs = _order_terms(call, inst, side, type_)
    order = fake.place(call.account, inst, meta, "spot", side=side.lower(), client_id=client_id, **kwargs)
    if resp_type == "ACK":
        return {
            "symbol": inst.base + inst.quote,
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "transactTime": order.created_ms,
        }
    result = _result_json(fake, order, order.created_ms)
    if resp_type == "FULL":
        result["fills"] = [_fill_json(order, t) for t in order.trades if t["id"] in fake.taker_trades]
    return result


def _order_terms(call: Call, inst: Instrument, side: str, type_: str) -> tuple[OrderMeta, dict]:
    """Validate like Binance (PRICE_FILTER, LOT_SIZE, NOTIONAL) and build the engine's arguments."""
    qty, quote_qty, price = call.decimal("quantity"), call.decimal("quoteOrderQty"), call.decimal("price")
    tif = (call.get("timeInForce") or "").upper()
    if type_ == "MARKET":
        if qty is None and quote_qty is None:
            raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
        if qty is not None and quote_qty is not None:
            raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if price is not None:
            raise BinanceError(-1106, "Parameter 'price' sent when not required.")
        if tif:
            raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
        meta = OrderMeta(type="MARKET", time_in_force="GTC", quote_qty=quote_qty or ZERO)
        if quote_qty is not None:
            if quote_qty < min_notional(inst):
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            if side == "BUY":
                return meta, {"type_": "market", "qty": None, "quote_qty": quote_qty}
            qty = quote_qty / inst.best_bid() // inst.step * inst.step
        _check_lot(inst, qty)
        reference = inst.best_ask() if side == "BUY" else inst.best_bid()
        if qty * reference < min_notional(inst):
            raise BinanceError(-1013, "Filter failure: NOTIONAL")
        return meta, {"type_": "market", "qty": qty}
    if qty is None:
        raise mandatory("quantity")
    if price is None:
        raise mandatory("price")
    if type_ == "LIMIT":
        if not tif:
            raise mandatory("timeInForce")
        if tif not in ("GTC", "IOC", "FOK"):
            raise BinanceError(-1115, "Invalid timeInForce.")
    elif tif:
        raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
    if price <= 0 or price % inst.tick != 0:
        raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
    _check_lot(inst, qty)
    if qty * price < min_notional(inst):
        raise BinanceError(-1013, "Filter failure: NOTIONAL")
    crosses = price >= inst.best_ask() if side == "BUY" else price <= inst.best_bid()
    if type_ == "LIMIT_MAKER" and crosses:
        raise BinanceError(-2010, "Order would immediately match and take.")
    return OrderMeta(type=type_, time_in_force=tif or "GTC"), {"type_": "limit", "qty": qty, "price": price}


def _check_lot(inst: Instrument, qty: Decimal) -> None:
    if qty <= 0 or qty < inst.min_qty or qty % inst.step != 0:
        raise BinanceError(-1013, "Filter failure: LOT_SIZE")


def get_order(fake: FakeBinance, call: Call) -> dict:
    return order_json(fake, fake.find_order(call, fake.spot_symbol(call)))


def cancel_json(fake: FakeBinance, order: Order, call: Call) -> dict:
    now = now_ms()
    body = _result_json(fake, order, now)
    body.pop("workingTime")
    return {
        "symbol": body.pop("symbol"),
        "origClientOrderId": order.client_id,
        "orderId": body.pop("orderId"),
        "orderListId": body.pop("orderListId"),
        "clientOrderId": call.get("newClientOrderId") or client_order_id(),
        **{k: v for k, v in body.items() if k != "clientOrderId"},
    }


def cancel_order(fake: FakeBinance, call: Call) -> dict:
    inst = fake.spot_symbol(call)
    return cancel_json(fake, fake.cancel(call, inst), call)


def cancel_open_orders(fake: FakeBinance, call: Call) -> list:
    inst = fake.spot_symbol(call)
    orders = fake.engine.orders_of(call.account, inst.key, open_=True)
    if not orders:
        raise BinanceError(-2011, "Unknown order sent.")
    return [cancel_json(fake, fake.engine.cancel(call.account, o.id), call) for o in orders]


def open_orders(fake: FakeBinance, call: Call) -> list:
    return [order_json(fake, o) for o in fake.orders(call, fake.spot_instruments(), open_=True)]


def all_orders(fake: FakeBinance, call: Call) -> list:
    inst = fake.spot_symbol(call)
    orders = fake.engine.orders_of(call.account, inst.key)
    return [order_json(fake, o) for o in select_orders(orders, call)]


def my_trades(fake: FakeBinance, call: Call) -> list:
    inst = fake.spot_symbol(call)
    return [
        {
            "symbol": inst.base + inst.quote,
            "id": int(t["id"]),
            "orderId": int(o.id),
            "orderListId": -1,
            "price": f8(t["price"]),
            "qty": f8(t["qty"]),
            "quoteQty": f8(t["price"] * t["qty"]),
            "commission": "0.00000000",
            "commissionAsset": inst.base if o.side == "buy" else inst.quote,
            "time": t["time"],
            "isBuyer": o.side == "buy",
            "isMaker": t["id"] not in fake.taker_trades,
            "isBestMatch": True,
        }
        for o, t in fake.trades(call, inst)
    ]


# --- sapi: what ccxt's load_markets asks for when it has keys -------------------------------


def system_status(fake: FakeBinance, call: Call) -> dict:
    return {"status": 0, "msg": "normal"}


def capital_config(fake: FakeBinance, call: Call) -> list:
    acc = fake.engine.account(call.account)
    coins = sorted({c for i in fake.engine.instruments.values() for c in (i.base, i.quote)} | set(acc.balances))
    rows = []
    for coin in coins:
        free, locked = acc.balance(coin)
        step = min((i.step for i in fake.spot_instruments().values() if i.base == coin), default=Decimal("0.00000001"))
        network = {
            "network": coin,
            "coin": coin,
            "withdrawIntegerMultiple": plain(step),
            "isDefault": True,
            "depositEnable": True,
            "withdrawEnable": True,
            "depositDesc": "",
            "withdrawDesc": "",
            "name": coin,
            "resetAddressStatus": False,
            "withdrawFee": "0",
            "withdrawMin": "0",
            "withdrawMax": "9999999999",
            "minConfirm": 1,
            "unLockConfirm": 0,
            "sameAddress": False,
            "busy": False,
        }
        rows.append(
            {
                "coin": coin,
                "depositAllEnable": True,
                "withdrawAllEnable": True,
                "name": coin,
                "free": f8(free),
                "locked": f8(locked),
                "freeze": "0",
                "withdrawing": "0",
                "ipoing": "0",
                "ipoable": "0",
                "storage": "0",
                "isLegalMoney": False,
                "trading": True,
                "networkList": [network],
            }
        )
    return rows


def margin_pairs(fake: FakeBinance, call: Call) -> list:
    return [
        {
            "id": str(numeric_id(sid)),
            "symbol": sid,
            "base": inst.base,
            "quote": inst.quote,
            "isMarginTrade": True,
            "isBuyAllowed": True,
            "isSellAllowed": True,
        }
        for sid, inst in fake.spot_instruments().items()
    ]


def isolated_margin_pairs(fake: FakeBinance, call: Call) -> list:
    return [{k: v for k, v in p.items() if k != "id"} for p in margin_pairs(fake, call)]


ROUTES = [
    Endpoint("GET", "/api/v3/ping", ping),
    Endpoint("GET", "/api/v3/time", server_time),
    Endpoint("GET", "/api/v3/exchangeInfo", exchange_info),
    Endpoint("GET", "/api/v3/depth", depth),
    Endpoint("GET", "/api/v3/trades", trades),
    Endpoint("GET", "/api/v3/historicalTrades", trades, API_KEY),
    Endpoint("GET", "/api/v3/aggTrades", aggregate_trades),
    Endpoint("GET", "/api/v3/klines", klines),
    Endpoint("GET", "/api/v3/uiKlines", klines),
    Endpoint("GET", "/api/v3/avgPrice", avg_price),
    Endpoint("GET", "/api/v3/ticker/24hr", ticker_24hr),
    Endpoint("GET", "/api/v3/ticker/bookTicker", book_ticker),
    Endpoint("GET", "/api/v3/ticker/price", ticker_price),
    Endpoint("GET", "/api/v3/account", account, SIGNED),
    Endpoint("POST", "/api/v3/order", new_order, SIGNED),
    Endpoint("GET", "/api/v3/order", get_order, SIGNED),
    Endpoint("DELETE", "/api/v3/order", cancel_order, SIGNED),
    Endpoint("GET", "/api/v3/openOrders", open_orders, SIGNED),
    Endpoint("DELETE", "/api/v3/openOrders", cancel_open_orders, SIGNED),
    Endpoint("GET", "/api/v3/allOrders", all_orders, SIGNED),
    Endpoint("GET", "/api/v3/myTrades", my_trades, SIGNED),
    Endpoint("GET", "/sapi/v1/system/status", system_status, NONE),
    Endpoint("GET", "/sapi/v1/capital/config/getall", capital_config, SIGNED),
    Endpoint("GET", "/sapi/v1/margin/allPairs", margin_pairs, SIGNED),
    Endpoint("GET", "/sapi/v1/margin/isolated/allPairs", isolated_margin_pairs, SIGNED),
]
