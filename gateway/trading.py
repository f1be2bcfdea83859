"""Order placement (`trade`): spot and contracts, limit and market.

Never retried: a timeout after the exchange accepted an order would otherwise place it twice.
Everything is parsed and rounded before anything is sent: an amount that rounds to zero is a
clear error here rather than an exchange rejection, and a limit price is only ever rounded in
the caller's favour (a buy down, a sell up).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import ccxt.async_support as ccxt

from gateway import convert
from gateway.calls import Call
from gateway.errors import BadRequest, GatewayError, error_message, in_context
from gateway.protocol import decimal_param, str_param

log = logging.getLogger("gateway.trading")
POSITION_MODE_TTL = 300.0
# Exchanges where ccxt passes our `clientOrderId` and finds an order by it (fetch_order with
# params.clientOrderId), and whose id rules "fmz" + 20 hex digits meets. Others keep ccxt's ids.
CLIENT_ORDER_ID_EXCHANGES = frozenset({"binance", "binanceusdm", "binancecoinm", "okx"})

ORDER_KINDS = {  # FMZ trade type -> (ccxt side, reduce-only)
    "buy": ("buy", False),
    "sell": ("sell", False),
    "closebuy": ("sell", True),  # close a long
    "closesell": ("buy", True),  # close a short
}


@dataclass(frozen=True)
class OrderRequest:
    """A fully validated order, ready to send."""

    market: dict
    fmz_symbol: str
    side: str
    reduce_only: bool
    amount: Decimal  # base units, contracts, or (spot market buy) quote currency to spend
    price: Decimal | None  # None = market

    @property
    def contract(self) -> bool:
        return bool(self.market.get("contract"))

    @property
    def spends_quote(self) -> bool:
        return self.price is None and self.side == "buy" and not self.contract

    def identity(self) -> tuple:
        return (self.market["symbol"], self.side, self.reduce_only, str(self.amount), str(self.price))


@dataclass(frozen=True)
class PlacementFailed:
    """A finished placement that failed, kept small (no traceback, no client)."""

    kind: str
    message: str


async def trade(call: Call) -> tuple[Any, Any]:
    order = parse_order(call)
    nonces, nonce = call.order_nonces, call.envelope.nonce
    if nonces is None or nonce is None:
        return await place(call, order)
    key = nonces.key(call.venue.route, call.credentials.cache_key, nonce, order.identity())
    previous = nonces.get(key)
    if previous is None:
        task = asyncio.ensure_future(place(call, order))
        nonces.put(key, task)
        task.add_done_callback(lambda done: nonces.put(key, _outcome(done)))
        return await asyncio.shield(task)
    log.warning("trade with nonce %s repeated on %s: answering with the first placement", nonce, call.venue.route)
    if isinstance(previous, asyncio.Future):
        return await asyncio.shield(previous)
    if isinstance(previous, PlacementFailed):
        raise GatewayError(previous.message, previous.kind)
    return previous


def _outcome(done: asyncio.Future) -> Any:
    if done.cancelled():
        return PlacementFailed("RequestCancelled", "the first placement of this order was cancelled")
    exc = done.exception()
    if exc is not None:
        kind, _, message = error_message(exc).partition(": ")
        return PlacementFailed(kind, message)
    return done.result()


def parse_order(call: Call) -> OrderRequest:
    market, fmz_symbol = call.market()
    call.require("createOrder", "CreateOrder")
    kind = str_param(call.params, "type").lower()
    if kind not in ORDER_KINDS:
        raise BadRequest(f"param 'type' must be one of {', '.join(ORDER_KINDS)}, got {kind[:20]!r}")
    contract = bool(market.get("contract"))
    if contract and call.state is not None:
        kind = apply_direction(kind, call.state.direction)
    if kind.startswith("close") and not contract:
        raise BadRequest(f"{kind} closes a contract position; {fmz_symbol} is spot: use buy or sell")
    side, reduce_only = ORDER_KINDS[kind]
    price = decimal_param(call.params, "price")
    amount = decimal_param(call.params, "amount")
    if amount <= 0:
        raise BadRequest(f"param 'amount' must be positive, got {amount}")
    if price <= 0:
        spends_quote = side == "buy" and not contract  # a spot market buy's amount is quote currency
        quantity = amount if spends_quote else precise_amount(call, market, amount)
        return OrderRequest(market, fmz_symbol, side, reduce_only, quantity, None)
    limit_price = favourable_price(call, market, price, side)
    quantity = precise_amount(call, market, amount)
    return OrderRequest(market, fmz_symbol, side, reduce_only, quantity, limit_price)


def apply_direction(kind: str, direction: str | None) -> str:
    """FMZ's SetDirection: ("closebuy") + Sell() closes a long, ("closesell") + Buy() closes a short;
    a Buy under a sell-side direction (or the reverse) is refused, as FMZ refuses it."""
    if direction is None or kind.startswith("close"):
        return kind
    if direction == "closebuy" and kind == "sell":
        return "closebuy"
    if direction == "closesell" and kind == "buy":
        return "closesell"
    if direction != kind:
        raise BadRequest(f"{kind} does not match the direction {direction!r} set by SetDirection")
    return kind


async def place(call: Call, order: OrderRequest) -> tuple[Any, Any]:
    symbol = order.market["symbol"]
    params: dict[str, Any] = {}
    if order.contract:
        if not order.reduce_only:
            await apply_pending_leverage(call, order.market)
        if order.reduce_only:
            params["reduceOnly"] = True
        if await is_hedged(call, order.market):
            params["hedged"] = True
    client_id = client_order_id(call, order)
    if client_id:
        params["clientOrderId"] = client_id
    try:
        if order.spends_quote:
            result = await market_buy_with_cost(call, order.market, order.amount, params)
        else:
            quantity = float(order.amount)
            price = float(order.price) if order.price is not None else None
            order_type = "limit" if order.price is not None else "market"
            result = await call.exchange.create_order(symbol, order_type, order.side, quantity, price, params)
    except ccxt.NetworkError as exc:  # the exchange may have accepted the order before the answer was lost
        if not client_id:
            raise
        result = await recover_order(call, symbol, client_id, exc)
    return {"id": f"{order.fmz_symbol},{result['id']}"}, result.get("info")


def client_order_id(call: Call, order: OrderRequest) -> str | None:
    """Our own client order id, where the exchange takes one and can find an order by it.

    Derived from the FMZ nonce and the order, so a re-sent request carries the same id."""
    if call.exchange.id not in CLIENT_ORDER_ID_EXCHANGES:
        return None
    seed = repr(
        (call.venue.route, call.credentials.cache_key, call.envelope.nonce or uuid.uuid4().hex, order.identity())
    )
    return "fmz" + hashlib.sha256(seed.encode()).hexdigest()[:20]


async def recover_order(call: Call, symbol: str, client_id: str, failure: Exception) -> dict:
    """After a lost answer, look the order up by its client id instead of sending it again."""
    try:
        found = await call.read(None, lambda: call.exchange.fetch_order(None, symbol, {"clientOrderId": client_id}))
    except ccxt.OrderNotFound:
        raise in_context(failure, f"no order with client id {client_id} exists", "OrderNotPlaced") from None
    except ccxt.BaseError as exc:
        context = f"the order may have been placed: look for client id {client_id} (lookup: {error_message(exc)})"
        raise in_context(failure, context) from None
    log.warning("order %s answer lost (%s); found it by client id", client_id, type(failure).__name__)
    return found


async def market_buy_with_cost(call: Call, market: dict, cost: Decimal, params: dict) -> dict:
    """A spot market buy spends `cost` in the quote currency, as FMZ's Buy(-1, cost) does."""
    symbol = market["symbol"]
    if call.has("createMarketBuyOrderWithCost"):
        return await call.exchange.create_market_buy_order_with_cost(symbol, float(cost), params)
    ticker = await call.read(("ticker", symbol), lambda: call.exchange.fetch_ticker(symbol))
    ask = ticker.get("ask") or ticker.get("last")
    if not ask:
        raise BadRequest(f"cannot convert a market buy of {cost} {market['quote']} to {market['base']}: no price")
    quantity = precise_amount(call, market, cost / Decimal(str(ask)))
    return await call.exchange.create_order(symbol, "market", "buy", float(quantity), None, params)


def precise_amount(call: Call, market: dict, amount: Decimal) -> Decimal:
    try:
        text = call.exchange.amount_to_precision(market["symbol"], float(amount))
    except ccxt.InvalidOrder:
        text = "0"
    if Decimal(text) <= 0:
        step = (market.get("precision") or {}).get("amount")
        raise BadRequest(f"amount {amount} rounds to 0 for {market['symbol']} (amount precision {step})")
    return Decimal(text)


def favourable_price(call: Call, market: dict, price: Decimal, side: str) -> Decimal:
    """The price on the market's grid that is no worse for the caller: buys round down, sells up."""
    precision = (market.get("precision") or {}).get("price")
    if call.exchange.precisionMode == convert.SIGNIFICANT_DIGITS and precision:
        tick = Decimal(1).scaleb(price.adjusted() - int(convert.num(precision)) + 1)  # the last significant digit
    else:
        tick = Decimal(str(convert.step_size(precision, call.exchange.precisionMode)))
    if tick > 0:
        steps = (price / tick).to_integral_value(ROUND_FLOOR if side == "buy" else ROUND_CEILING)
        rounded = Decimal(call.exchange.price_to_precision(market["symbol"], float(steps * tick)))
    else:
        rounded = Decimal(call.exchange.price_to_precision(market["symbol"], float(price)))
    if rounded <= 0:
        raise BadRequest(f"price {price} rounds to 0 for {market['symbol']}")
    return rounded


async def apply_pending_leverage(call: Call, market: dict) -> None:
    """A SetMarginLevel that arrived (io code 0) without a symbol applies before the next opening order."""
    state = call.state
    if state is None or state.margin_level is None or not call.has("setLeverage"):
        return
    symbol = market["symbol"]
    if symbol not in state.leverage_settled:
        # Settled before trying: a level this contract refuses fails one order, with the reason,
        # and later orders trade at the contract's current leverage instead of failing forever.
        state.leverage_settled.add(symbol)
        try:
            await call.exchange.set_leverage(state.margin_level, symbol)
        except ccxt.BaseError as exc:
            context = f"SetMarginLevel({state.margin_level}) failed for {symbol}, so the order was not sent"
            raise in_context(exc, context) from None


async def is_hedged(call: Call, market: dict) -> bool:
    """Whether the account is in hedge (long/short) mode for this market; cached on the key's client."""
    symbol = market["symbol"]
    modes: dict = call.exchange.__dict__.setdefault("_gateway_position_modes", {})
    known = modes.get(symbol)
    if known is not None and time.monotonic() - known[1] < POSITION_MODE_TTL:
        return known[0]
    hedged = False
    if call.has("fetchPositionMode"):
        try:
            mode = await call.read(None, lambda: call.exchange.fetch_position_mode(symbol))
            hedged = bool(mode.get("hedged"))
        except ccxt.BaseError:
            hedged = False  # unknown: one-way orders; a hedged account then rejects with its own message
    modes[symbol] = (hedged, time.monotonic())
    return hedged
