"""Order placement (`trade`) and cancelling, in three layers: prepare -> send -> settle.

- **prepare**: everything is parsed, rounded and decided before anything is sent: the amount
  (an amount that rounds to zero is a clear error here, not an exchange rejection), a limit
  price rounded only in the caller's favour (a buy down, a sell up), a pending leverage (other
  orders of the key and symbol wait for it), the position side, and the client order id.
- **send**: one ccxt create_order call, never retried, bounded so that time is left to settle.
- **settle**: a failure is classified (gateway/outcomes.py). Rejected: answered as it is. Not
  sent: said so. Unknown (lost, garbled, "status unknown"): the order is looked up by its
  client id before the strategy is told anything (gateway/settle.py). A success without a real
  exchange id is never answered.

The client id is derived from (route, key, FMZ nonce, order), so a re-sent request, a restarted
gateway or a second replica derive the same id, and the exchange itself refuses a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import ccxt.async_support as ccxt

from gateway import client_ids, convert, fallbacks, ratelimit
from gateway.calls import Call
from gateway.errors import (
    BadRequest,
    GatewayError,
    OrderNotSent,
    OrderStatusUnknown,
    RequestCancelled,
    error_message,
    in_context,
)
from gateway.futures import apply_pending_leverage, leverage_lock
from gateway.outcomes import Outcome, classify
from gateway.protocol import decimal_param, str_param
from gateway.settle import CANCELLED_STATUSES, receive_window_ms, settle_cancel, settle_placement
from gateway.state import ORDER_NONCE_TTL, nonce_seconds

log = logging.getLogger("gateway.trading")
POSITION_MODE_TTL = 300.0
MIN_SEND_TIME = 1.0  # seconds a send gets at least, whatever is left for settling
ANSWER_MARGIN = 0.1  # seconds kept to answer before the call's deadline
LOOKUP_SINCE_MARGIN_MS = client_ids.LISTING_SKEW_MS  # an order's exchange time may trail ours (clock skew)
# a re-sent call comes at most ORDER_NONCE_TTL after the first (or its nonce is forgotten), plus clock skew
ORDER_NONCE_LOOKBACK_MS = int(ORDER_NONCE_TTL * 1000) + LOOKUP_SINCE_MARGIN_MS

ORDER_KINDS = {  # FMZ trade type -> (ccxt side, reduce-only)
    "buy": ("buy", False),
    "sell": ("sell", False),
    "closebuy": ("sell", True),  # close a long
    "closesell": ("buy", True),  # close a short
}


@dataclass(frozen=True)
class OrderRequest:
    """A fully validated order, as the strategy asked for it."""

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


@dataclass
class PreparedOrder:
    """Exactly what create_order is called with."""

    symbol: str
    order_type: str  # limit | market
    side: str
    amount: float
    price: float | None
    params: dict[str, Any] = field(default_factory=dict)  # the client order id travels here


@dataclass(frozen=True)
class PlacementFailed:
    """A finished placement that failed, kept small (no traceback, no client)."""

    kind: str
    message: str
    ended_at: float = field(default_factory=time.monotonic)  # after its send: where a new look-up counts from


async def trade(call: Call) -> tuple[Any, Any]:
    order = parse_order(call)
    client_id = client_order_id(call, order)
    nonces, nonce = call.order_nonces, call.envelope.nonce
    if nonces is None or nonce is None:
        return await _within_deadline(call, asyncio.ensure_future(place(call, order, client_id)), client_id)
    key = nonces.key(call.venue.route, call.credentials.cache_key, nonce, order.identity())
    previous = nonces.get(key)
    if previous is None:
        placement = place(call, order, client_id)
        if client_id and not nonces.remembers(nonce):  # a re-send this process cannot know: ask first
            placement = _look_then_place(call, order, client_id, nonce, placement)
        return await _within_deadline(call, _remembered(nonces, key, placement), client_id)
    log.warning("trade with nonce %s repeated on %s: answering with the first placement", nonce, call.venue.route)
    if isinstance(previous, asyncio.Future):
        return await _within_deadline(call, previous, client_id)
    if isinstance(previous, PlacementFailed):
        if previous.kind == OrderStatusUnknown.kind and client_id:  # ask again: the exchange may know by now
            task = _remembered(nonces, key, _settle_again(call, order, client_id, previous.ended_at))
            return await _within_deadline(call, task, client_id)
        raise GatewayError(previous.message, previous.kind)
    return previous


def _remembered(nonces: Any, key: tuple, placement: Any) -> asyncio.Future:
    """Run a placement as its own task, kept under its nonce: in flight, then its outcome."""
    task = asyncio.ensure_future(placement)
    nonces.put(key, task)
    task.add_done_callback(lambda done: nonces.put(key, _outcome(done)))
    return task


def _answer(order: OrderRequest, placed: dict) -> tuple[Any, Any]:
    """FMZ's answer for an order the exchange holds: `"<FMZ symbol>,<exchange id>"`."""
    return {"id": f"{order.fmz_symbol},{placed['id']}"}, placed.get("info")


async def _look_then_place(
    call: Call, order: OrderRequest, client_id: str, nonce: int, placement: Any
) -> tuple[Any, Any]:
    """A call older than this process (a restart, another replica, an evicted entry): the order may
    exist, and exchanges refuse a duplicate client id only while the first order is open (Binance),
    so look it up before sending. Found: its answer. Not listed: placed now. Unknown: not sent."""
    since_ms = int(nonce_seconds(nonce) * 1000) - LOOKUP_SINCE_MARGIN_MS
    try:
        found = await client_ids.find_by_client_id(call.exchange, order.market, client_id, since_ms)
    except Exception as exc:
        placement.close()
        raise in_context(
            exc, f"a re-sent order (client id {client_id}) could not be looked up, so it was not sent", OrderNotSent
        ) from None
    if found and found.get("id"):
        placement.close()
        log.warning(
            "%s re-sent order with client id %s exists as %s: answered, not sent",
            call.venue.route,
            client_id,
            found["id"],
        )
        return _answer(order, found)
    return await placement


async def _settle_again(call: Call, order: OrderRequest, client_id: str, first_ended: float) -> tuple[Any, Any]:
    """A re-sent call whose first placement ended unknown: look the order up again, never send it.
    "Not placed" still needs a full absence window, counted from when the first placement ended
    (its send was earlier: a safe bound), not assumed long past."""
    since_ms = int(time.time() * 1000) - ORDER_NONCE_LOOKBACK_MS
    failure = OrderStatusUnknown("the first placement of this order ended without an outcome")
    result = await settle_placement(call, order.market, client_id, failure, since_ms, first_ended)
    return _answer(order, result)


async def _within_deadline(call: Call, placement: asyncio.Future, client_id: str | None) -> tuple[Any, Any]:
    """The placement's answer, or OrderStatusUnknown at the deadline (the placement goes on, and a
    re-send with the same nonce gets its outcome)."""
    named = f"client id {client_id}" if client_id else "no client id"
    unknown = f"no outcome within the call's deadline; the order is still being settled ({named}): check GetOrders"
    return await by_deadline(call, asyncio.shield(placement), f"{unknown} before sending it again")


async def by_deadline(call: Call, outcome: Any, unknown: str) -> Any:
    """`outcome` awaited until just before the call's deadline; then OrderStatusUnknown(`unknown`)."""
    try:
        return await asyncio.wait_for(outcome, max(0.0, call.remaining() - ANSWER_MARGIN))
    except TimeoutError:
        raise OrderStatusUnknown(unknown) from None


def _outcome(done: asyncio.Future) -> Any:
    if done.cancelled():
        return PlacementFailed(RequestCancelled.kind, "the first placement of this order was cancelled")
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


async def place(call: Call, order: OrderRequest, client_id: str | None) -> tuple[Any, Any]:
    since_ms = int(time.time() * 1000) - LOOKUP_SINCE_MARGIN_MS
    prepared = await prepare(call, order, client_id)
    sent_at = time.monotonic()
    try:
        result = await send(call, prepared)
    except Exception as exc:  # a send cut short by its time budget (TimeoutError) is a lost answer too
        outcome = classify(exc, call.exchange)
        if outcome is Outcome.REJECTED or isinstance(exc, OrderNotSent):  # it says so itself
            raise
        if outcome is Outcome.NOT_SENT:
            raise in_context(exc, "the order was not sent (no connection to the exchange)") from None
        result = await settle_placement(call, order.market, client_id, exc, since_ms, sent_at)
    return _answer(order, result)


async def prepare(call: Call, order: OrderRequest, client_id: str | None) -> PreparedOrder:
    """Every decision and every read before the order is sent (reads here may be retried)."""
    params: dict[str, Any] = {}
    if order.contract:
        if order.reduce_only:
            params["reduceOnly"] = True
        else:
            async with leverage_lock(call, order.market["symbol"]):
                await apply_pending_leverage(call, order.market)
        if await is_hedged(call, order.market):
            params["hedged"] = True
    if client_id:
        params.update(client_ids.create_params(call.exchange, client_id))
        cap_receive_window(call)
    symbol = order.market["symbol"]
    if order.price is not None:
        return PreparedOrder(symbol, "limit", order.side, float(order.amount), float(order.price), params)
    if not order.spends_quote:
        return PreparedOrder(symbol, "market", order.side, float(order.amount), None, params)
    if fallbacks.market_buy_by_cost(call.exchange, order.market):  # ccxt's own way to spend quote currency
        params["cost"] = float(order.amount)
        return PreparedOrder(symbol, "market", "buy", float(order.amount), None, params)
    quantity, ask = await _quantity_for_cost(call, order.market, order.amount)
    needs_price = fallbacks.market_buy_needs_price(call.exchange, order.market)  # ccxt computes the cost from it
    return PreparedOrder(symbol, "market", "buy", float(quantity), ask if needs_price else None, params)


async def send(call: Call, prepared: PreparedOrder) -> dict:
    """One create call; an answer without a real order id counts as garbled (settled, never answered)."""
    budget = max(MIN_SEND_TIME, call.remaining() - call.settings.settle_window - ANSWER_MARGIN)
    params = dict(prepared.params)
    # the rate limiter sends nothing it would have to hold past the send's budget (look-ups after
    # it keep the call's own deadline)
    token = ratelimit.DEADLINE.set(min(ratelimit.DEADLINE.get(), time.monotonic() + budget))
    try:
        result = await _create(call, prepared, params, budget)
    finally:
        ratelimit.DEADLINE.reset(token)
    if not isinstance(result, dict) or isinstance(result.get("info"), str) or not result.get("id"):
        raise ccxt.BadResponse(f"{call.exchange_id} answered the order without an order id")
    return result


async def _create(call: Call, prepared: PreparedOrder, params: dict, budget: float) -> Any:
    async with asyncio.timeout(budget if budget < 1e9 else None):
        if "cost" in params:
            cost = params.pop("cost")
            result = await call.exchange.create_market_buy_order_with_cost(prepared.symbol, cost, params)
        else:
            try:
                result = await call.exchange.create_order(
                    prepared.symbol, prepared.order_type, prepared.side, prepared.amount, prepared.price, params
                )
            except ccxt.ArgumentsRequired as exc:  # raised by ccxt before anything was sent
                if prepared.price is not None or "price" not in str(exc).lower():
                    raise
                # e.g. hyperliquid: a market order carries a price to bound its slippage (ccxt's
                # features do not say so): the current price of the side the order takes
                try:
                    reference = await _reference_price(call, prepared.symbol, prepared.side)
                except Exception as failure:
                    raise in_context(failure, "the market order was not sent: no current price", OrderNotSent) from None
                result = await call.exchange.create_order(
                    prepared.symbol, "market", prepared.side, prepared.amount, reference, params
                )
    return result


async def _reference_price(call: Call, symbol: str, side: str) -> float:
    price = await _current_price(call, symbol, side)
    if price is None:
        raise BadRequest(f"{call.exchange_id} wants a price with market orders and has none for {symbol} now")
    return price


async def _current_price(call: Call, symbol: str, side: str) -> float | None:
    """The price a market order of `side` takes now: the ask for a buy, the bid for a sell, else last."""
    ticker = await call.read(("ticker", symbol), lambda: call.exchange.fetch_ticker(symbol))
    price = ticker.get("ask" if side == "buy" else "bid") or ticker.get("last")
    return float(price) if price else None


def cap_receive_window(call: Call) -> None:
    """Where ccxt signs with a receive window (binance: 10 s by default), an exchange may still take
    a delayed order that long after it was sent: keep it within the settle window, so that "not
    placed" after the window is final (the key's client is its own: other keys are unaffected)."""
    limit = int(call.settings.settle_window * 1000)
    if receive_window_ms(call.exchange) > limit:
        call.exchange.options["recvWindow"] = limit


def client_order_id(call: Call, order: OrderRequest) -> str | None:
    """Our own client order id, where the exchange takes one and can find an order by it."""
    nonce = call.envelope.nonce if call.envelope.nonce is not None else uuid.uuid4().hex
    seed = repr((call.venue.route, call.credentials.cache_key, nonce, order.identity()))
    return client_ids.derive_client_id(call.exchange, hashlib.sha256(seed.encode()).digest())


async def _quantity_for_cost(call: Call, market: dict, cost: Decimal) -> tuple[Decimal, float]:
    """A spot market buy spends `cost` in the quote currency, as FMZ's Buy(-1, cost) does: the
    quantity at the current ask, and that ask."""
    ask = await _current_price(call, market["symbol"], "buy")
    if ask is None:
        raise BadRequest(f"cannot convert a market buy of {cost} {market['quote']} to {market['base']}: no price")
    return precise_amount(call, market, cost / Decimal(str(ask))), ask


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


# --- cancel -------------------------------------------------------------------------------


async def cancel(call: Call) -> tuple[Any, Any]:
    """CancelOrder; a lost or garbled answer, or an OrderNotFound for an order that exists, is looked up."""
    call.require("cancelOrder", "CancelOrder")
    order_id, market, _ = call.order_id_and_market()
    symbol = market["symbol"]
    try:
        result = await call.exchange.cancel_order(order_id, symbol)
        if isinstance((result or {}).get("info"), str):
            raise ccxt.BadResponse(f"{call.exchange_id} answered the cancel with a body that is not JSON")
    except ccxt.OrderNotFound as exc:  # already cancelled (a lost first answer), filled, or unknown
        order = await _order_or_none(call, order_id, symbol)
        if order is None:
            raise
        if order.get("status") in CANCELLED_STATUSES:
            return True, order.get("info")
        raise in_context(exc, f"order {order_id} is {order.get('status')}, not cancelled") from None
    except Exception as exc:
        if classify(exc, call.exchange) is not Outcome.UNKNOWN:
            raise
        settling = settle_cancel(call, lambda: _fetch_order(call, order_id, symbol), order_id, exc)
        unknown = f"the cancel of order {order_id} was not confirmed before the call's deadline: check GetOrder"
        order = await by_deadline(call, settling, f"{unknown} before cancelling again")
        return True, order.get("info")
    return True, (result or {}).get("info")


async def _fetch_order(call: Call, order_id: str, symbol: str) -> dict:
    from gateway.methods import fetch_order_by_id

    return await fetch_order_by_id(call, order_id, symbol)


async def _order_or_none(call: Call, order_id: str, symbol: str) -> dict | None:
    try:
        return await _fetch_order(call, order_id, symbol)
    except ccxt.OrderNotFound:
        return None
