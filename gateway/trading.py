"""Order placement (`trade`): spot and contracts, limit and market.

Never retried: a timeout after the exchange accepted an order would otherwise place it twice.
Amounts and prices go through ccxt's precision helpers, so an amount that rounds to zero is a
clear error here rather than an exchange rejection.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from gateway.calls import Call
from gateway.errors import BadRequest
from gateway.protocol import decimal_param, str_param

ORDER_KINDS = {  # FMZ trade type -> (ccxt side, reduce-only)
    "buy": ("buy", False),
    "sell": ("sell", False),
    "closebuy": ("sell", True),  # close a long
    "closesell": ("buy", True),  # close a short
}


async def trade(call: Call) -> tuple[Any, Any]:
    """Place an order once per FMZ nonce: a docker that re-sends the same request gets the same order."""
    nonce = call.envelope.nonce
    if nonce is None or call.state is None:
        return await _place(call)
    key = (nonce, repr(sorted(call.params.items())))
    recent = call.state.recent_orders
    placed = recent.get(key)
    if placed is None:
        # Kept whatever the outcome: after a timeout the order may exist, so a re-sent request must
        # not place it again; it gets the first attempt's answer (an id or the same error).
        placed = recent[key] = asyncio.ensure_future(_place(call))
    return await asyncio.shield(placed)


async def _place(call: Call) -> tuple[Any, Any]:
    market, fmz_symbol = call.market()
    call.require("createOrder", "CreateOrder")
    kind = str_param(call.params, "type").lower()
    if kind not in ORDER_KINDS:
        raise BadRequest(f"param 'type' must be one of {', '.join(ORDER_KINDS)}, got {kind[:20]!r}")
    contract = bool(market.get("contract"))
    kind = apply_direction(kind, call.state.direction if call.state and contract else None)
    if kind.startswith("close") and not contract:
        raise BadRequest(f"{kind} closes a contract position; {fmz_symbol} is spot: use buy or sell")
    side, reduce_only = ORDER_KINDS[kind]
    price = decimal_param(call.params, "price")
    amount = decimal_param(call.params, "amount")
    if amount <= 0:
        raise BadRequest(f"param 'amount' must be positive, got {amount}")
    is_market = price <= 0
    symbol = market["symbol"]
    params: dict[str, Any] = {}
    if contract:
        await apply_pending_leverage(call, market)
        if reduce_only:
            params["reduceOnly"] = True
        if await is_hedged(call, market):
            params["hedged"] = True
    if is_market and side == "buy" and not contract:
        result = await market_buy_with_cost(call, market, amount)
    else:
        quantity = precise_amount(call, market, amount)
        limit_price = None if is_market else precise_price(call, market, price)
        order_type = "market" if is_market else "limit"
        result = await call.exchange.create_order(symbol, order_type, side, quantity, limit_price, params)
    return {"id": f"{fmz_symbol},{result['id']}"}, result.get("info")


def apply_direction(kind: str, direction: str | None) -> str:
    """FMZ's SetDirection("closebuy") + Sell() closes a long; ("closesell") + Buy() closes a short."""
    if direction == "closebuy" and kind == "sell":
        return "closebuy"
    if direction == "closesell" and kind == "buy":
        return "closesell"
    return kind


async def market_buy_with_cost(call: Call, market: dict, cost: Decimal) -> dict:
    """A spot market buy spends `cost` in the quote currency, as FMZ's Buy(-1, cost) does."""
    symbol = market["symbol"]
    if call.has("createMarketBuyOrderWithCost"):
        return await call.exchange.create_market_buy_order_with_cost(symbol, float(cost))
    ticker = await call.read(("ticker", symbol), lambda: call.exchange.fetch_ticker(symbol))
    ask = ticker.get("ask") or ticker.get("last")
    if not ask:
        raise BadRequest(f"cannot convert a market buy of {cost} {market['quote']} to {market['base']}: no price")
    quantity = precise_amount(call, market, cost / Decimal(str(ask)))
    return await call.exchange.create_order(symbol, "market", "buy", quantity, None, {})


def precise_amount(call: Call, market: dict, amount: Decimal) -> float:
    try:
        text = call.exchange.amount_to_precision(market["symbol"], float(amount))
    except ccxt.InvalidOrder:
        text = "0"
    if Decimal(text) <= 0:
        step = (market.get("precision") or {}).get("amount")
        raise BadRequest(f"amount {amount} rounds to 0 for {market['symbol']} (amount precision {step})")
    return float(text)


def precise_price(call: Call, market: dict, price: Decimal) -> float:
    text = call.exchange.price_to_precision(market["symbol"], float(price))
    if Decimal(text) <= 0:
        raise BadRequest(f"price {price} rounds to 0 for {market['symbol']}")
    return float(text)


async def apply_pending_leverage(call: Call, market: dict) -> None:
    """A SetMarginLevel that arrived (io code 0) without a symbol applies before the next order."""
    state = call.state
    if state is None or state.margin_level is None or not call.has("setLeverage"):
        return
    symbol = market["symbol"]
    if state.applied_leverage.get(symbol) != state.margin_level:
        await call.exchange.set_leverage(state.margin_level, symbol)
        state.applied_leverage[symbol] = state.margin_level


async def is_hedged(call: Call, market: dict) -> bool:
    """Whether the account is in hedge (long/short) mode for this market; cached for a minute."""
    state = call.state
    symbol = market["symbol"]
    if state is not None:
        known = state.known_position_mode(symbol)
        if known is not None:
            return known
    hedged = False
    if call.has("fetchPositionMode"):
        try:
            mode = await call.read(None, lambda: call.exchange.fetch_position_mode(symbol))
            hedged = bool(mode.get("hedged"))
        except ccxt.BaseError:
            hedged = False  # unknown: one-way orders; a hedged account then rejects with its own message
    if state is not None:
        state.remember_position_mode(symbol, hedged)
    return hedged
