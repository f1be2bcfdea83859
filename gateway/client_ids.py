"""Client order ids: per exchange family, how ccxt sends ours on create_order and how to find an order by it.

Every row was read in ccxt 4.5.90's async source (ccxt/async_support/<id>.py) and is proven by a
request-level test in tests/test_client_ids.py (real ccxt class, network replaced, canned replies).

family      | wire field (ccxt param clientOrderId) | our id        | limit (exchange docs)
------------|---------------------------------------|---------------|-------------------------------------------
binance     | newClientOrderId                      | fmz + 29 hex  | 36, [.A-Z:/a-z0-9_-]
okx         | clOrdId                               | fmz + 29 hex  | 32, alphanumerics
bybit       | orderLinkId                           | fmz + 29 hex  | 36
kucoin      | clientOid                             | fmz + 29 hex  | 40
gate        | text, ccxt adds "t-"                  | fmz + 25 hex  | 28 after "t-", 0-9A-Za-z_-.
bitget      | clientOid                             | fmz + 29 hex  | none stated; 32 kept
htx         | client-order-id (spot)                | 18 digits     | 64 spot; contracts: integer <= 2**63-1
kraken      | cl_ord_id                             | 32 hex        | UUID, 32-hex short UUID or 18 free text
hyperliquid | cloid ("c" in the signed action)      | 0x + 32 hex   | 128-bit hex

Lookup paths (ccxt calls; "miss" is what lets us answer None):
- binance: fetch_order(clientOrderId) sends origClientOrderId; miss: -2013 -> OrderNotFound.
- okx: fetch_order(clientOrderId) sends GET trade/order?clOrdId; miss: 51603 -> OrderNotFound.
- bybit: fetch_open_orders(orderLinkId) (v5/order/realtime, which ignores openOnly when filtered by
  orderLinkId, so it also returns recently closed orders) then fetch_canceled_and_closed_orders(since,
  orderLinkId) (v5/order/history); miss: both lists empty. Not fetch_order: it needs orderId.
- kucoin (and kucoinfutures, a subclass with no override): fetch_order(clientOrderId) sends
  .../client-order/{clientOid}; miss: "order not exist" -> OrderNotFound.
- gate: fetch_order(clientOrderId) sends GET .../orders/t-... (spot/orders, futures/usdt/orders); a
  miss is NOT final (the text works only while the order is open and 60 s after it ends), so
  finished orders since `since_ms` are listed (spot: orders?status=finished; futures:
  orders_timerange); miss: not among fewer than LISTING_LIMIT finished orders.
- bitget: fetch_order(id=client id, clientOrderId) sends orderInfo / order/detail (unified account:
  v3 trade/order-info) ?clientOid (not the id); miss: empty data or 40109/43001 -> OrderNotFound.
- htx: spot only, fetch_order(clientOrderId) sends v1/order/orders/getClientOrder; miss:
  base-record-invalid -> OrderNotFound, trusted only within FINAL_MISS_WINDOW_S of placement (later:
  LookupUnavailable). Contracts: LookupUnavailable (path not verified).
- kraken: fetch_open_orders + fetch_closed_orders(since), both send cl_ord_id; miss: both empty.
  Not fetch_order: ccxt maps its clientOrderId param to `userref`.
- hyperliquid: fetch_order(clientOrderId) sends info orderStatus oid=cloid; miss: {"status":"unknownOid"}
  -> OrderNotFound.

Proof: tests/test_client_ids.py, one request-level test per family (real ccxt class, network replaced).

A rule applies to the named ccxt class and its subclasses (binanceusdm/binancecoinm/binanceus, myokx,
kucoinfutures); ccxt 4.5.90 no longer ships the huobi/gateio aliases. Any other exchange gets no
rule, so no id is invented for it.

A lookup never answers "absent" from a reply that ccxt might have produced by ignoring our id: a found
order must carry our client id and a real exchange id, and a listing filtered by our id that returns
other orders is treated as an unanswered question (ccxt.ExchangeError), never as "absent".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt

# Callers pass `since_ms` this long before the order was sent (listings and exchange clocks trail).
LISTING_SKEW_MS = 60_000
FINAL_MISS_WINDOW_S = 50.0  # Gate: text lookups work while open and for 60 s after the order ends
LISTING_LIMIT = 100


class LookupUnavailable(Exception):
    """This exchange (or this market on it) cannot look orders up by client id."""


@dataclass(frozen=True)
class ClientIdRule:
    family: str  # ccxt class name; applies to it and its subclasses
    max_length: int  # the exchange's documented limit for the id we send (before any ccxt prefix)
    wire_field: str  # the exchange's own request field that carries the id
    lookup: str  # one of LOOKUPS
    docs: str  # where the limit and the lookup are documented
    prefix: str = "fmz"  # ours; letters, so ids start with a letter (OKX, Gate)
    digits: str = "hex"  # "hex" (lowercase 0-9a-f) or "decimal"
    length: int = 32  # total length of the id we derive (prefix included)
    wire_prefix: str = ""  # what ccxt puts in front on the wire and returns in clientOrderId (Gate: "t-")
    markets: tuple[str, ...] = ("spot", "swap", "future")  # market types whose lookup path was verified


RULES: tuple[ClientIdRule, ...] = (
    ClientIdRule(
        "binance",
        36,
        "newClientOrderId",
        "fetch_order",
        "https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints#new-order-trade "
        "(newClientOrderId ^[.A-Z:/a-z0-9_-]{1,36}$); query order by origClientOrderId",
    ),
    ClientIdRule(
        "okx",
        32,
        "clOrdId",
        "fetch_order",
        "https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order (clOrdId: alphanumerics, <= 32)",
    ),
    ClientIdRule(
        "bybit",
        36,
        "orderLinkId",
        "bybit_listing",
        "https://bybit-exchange.github.io/docs/v5/order/create-order (orderLinkId <= 36); "
        "v5/order/open-order: openOnly is ignored when querying by orderLinkId",
    ),
    ClientIdRule(
        "kucoin",
        40,
        "clientOid",
        "fetch_order",
        "https://www.kucoin.com/docs-new/rest/spot-trading/orders/add-order (clientOid <= 40); get-order-by-clientoid",
    ),
    ClientIdRule(
        "gate",
        28,
        "text",
        "gate",
        "https://www.gate.com/docs/developers/apiv4/ (text: t- + <= 28 bytes of 0-9A-Za-z_-.; order_id may be "
        "the text only while open and within 60 seconds after the order ends)",
        length=28,
        wire_prefix="t-",
    ),
    ClientIdRule(
        "bitget",
        32,
        "clientOid",
        "bitget",
        "https://www.bitget.com/api-doc/spot/trade/Place-Order and Get-Order-Info (clientOid, no length stated)",
    ),
    ClientIdRule(
        "htx",
        64,
        "client-order-id",
        "fetch_order_recent",
        "https://huobiapi.github.io/docs/spot/v1/en/#place-a-new-order (client-order-id <= 64); contracts take "
        "client_order_id as an integer [1, 9223372036854775807], so ids are decimal digits",
        prefix="",
        digits="decimal",
        length=18,
        markets=("spot",),
    ),
    ClientIdRule(
        "kraken",
        36,
        "cl_ord_id",
        "open_and_closed",
        "https://docs.kraken.com/api-reference/trading/add-order (cl_ord_id: UUID, 32-hex short UUID, or "
        "<= 18 chars free text); get-open-orders / get-closed-orders filter by cl_ord_id",
        prefix="",
        length=32,
    ),
    ClientIdRule(
        "hyperliquid",
        34,
        "cloid",
        "fetch_order",
        "https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/exchange-endpoint#place-an-order "
        "(cloid: 128-bit hex string); info orderStatus by oid or cloid",
        prefix="0x",
        length=34,
        markets=("spot", "swap"),
    ),
)
_BY_FAMILY = {rule.family: rule for rule in RULES}


def rule_for(exchange: Any) -> ClientIdRule | None:
    """The rule of the nearest verified ccxt class in the exchange's MRO (subclasses inherit it)."""
    for klass in type(exchange).__mro__:
        rule = _BY_FAMILY.get(klass.__name__)
        if rule is not None:
            return rule
    return None


def derive_client_id(exchange: Any, seed: bytes) -> str | None:
    """Deterministic client id for this exchange from seed; None where no lookup by client id is verified."""
    rule = rule_for(exchange)
    if rule is None:
        return None
    digest = hashlib.sha256(seed).digest()
    room = rule.length - len(rule.prefix)
    if rule.digits == "decimal":
        # 10**17 .. 10**18-1: a fixed-width positive integer below 2**63 (HTX contracts' client_order_id)
        number = 10 ** (room - 1) + int.from_bytes(digest, "big") % (9 * 10 ** (room - 1))
        return rule.prefix + str(number)
    return rule.prefix + digest.hex()[:room]


def create_params(exchange: Any, client_id: str) -> dict:
    """Params for create_order: every verified family reads the unified `clientOrderId`."""
    return {"clientOrderId": client_id}


async def find_by_client_id(exchange: Any, market: dict, client_id: str, since_ms: int) -> dict | None:
    """The order whose client id is client_id; None only when the exchange's answer confirms there is none.

    Raises ccxt.BaseError when the exchange could not be asked (retry), LookupUnavailable when it cannot
    look orders up by client id at all (or not for this market type)."""
    rule = rule_for(exchange)
    if rule is None:
        raise LookupUnavailable(f"{exchange.id}: no verified client order id lookup")
    if market.get("type") not in rule.markets:
        raise LookupUnavailable(f"{exchange.id}: client order id lookup not verified for {market.get('type')} markets")
    return await LOOKUPS[rule.lookup](exchange, rule, market, client_id, since_ms)


def _wire_id(rule: ClientIdRule, client_id: str) -> str:
    return client_id if client_id.startswith(rule.wire_prefix) else rule.wire_prefix + client_id


def _checked(exchange: Any, rule: ClientIdRule, client_id: str, order: dict | None) -> dict:
    """A looked-up order must be ours: our client id back, and a real exchange id."""
    if not order or not order.get("id"):
        raise ccxt.ExchangeError(f"{exchange.id}: lookup by client id {client_id} returned no order id")
    got = order.get("clientOrderId")
    if got != _wire_id(rule, client_id):
        raise ccxt.ExchangeError(f"{exchange.id}: lookup by client id {client_id} returned client id {got!r}")
    return order


def _matching(exchange: Any, rule: ClientIdRule, client_id: str, orders: list[dict]) -> dict | None:
    """From a listing the exchange filtered by our id: ours, or None if empty; anything else is not an answer."""
    wanted = _wire_id(rule, client_id)
    mine = [order for order in orders if order.get("clientOrderId") == wanted]
    if len(mine) != len(orders):
        raise ccxt.ExchangeError(f"{exchange.id}: listing filtered by client id {client_id} returned other orders")
    return _checked(exchange, rule, client_id, mine[0]) if mine else None


async def _fetch_order(exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int) -> dict | None:
    try:
        order = await exchange.fetch_order(None, market["symbol"], {"clientOrderId": client_id})
    except ccxt.OrderNotFound:
        return None
    return _checked(exchange, rule, client_id, order)


async def _bitget(exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int) -> dict | None:
    # ccxt's bitget fetch_order builds its OrderNotFound message with `id`; with id=None an empty answer
    # raises TypeError instead. The id is not sent when clientOid is (checked in the tests).
    try:
        order = await exchange.fetch_order(client_id, market["symbol"], {"clientOrderId": client_id})
    except ccxt.OrderNotFound:
        return None
    return _checked(exchange, rule, client_id, order)


async def _fetch_order_recent(
    exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int
) -> dict | None:
    """fetch_order by client id, where a miss is final only shortly after placement."""
    try:
        order = await exchange.fetch_order(None, market["symbol"], {"clientOrderId": client_id})
    except ccxt.OrderNotFound:
        if _ms_now() - (since_ms + LISTING_SKEW_MS) <= FINAL_MISS_WINDOW_S * 1000:  # since the order was sent
            return None
        raise LookupUnavailable(
            f"{exchange.id}: no order with client id {client_id} by client id, but that lookup only covers "
            "recent orders; absence cannot be confirmed this late"
        ) from None
    return _checked(exchange, rule, client_id, order)


async def _bybit_listing(exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int) -> dict | None:
    symbol = market["symbol"]
    found = _matching(
        exchange, rule, client_id, await exchange.fetch_open_orders(symbol, None, None, {"orderLinkId": client_id})
    )
    if found:
        return found
    closed = await exchange.fetch_canceled_and_closed_orders(symbol, since_ms, None, {"orderLinkId": client_id})
    return _matching(exchange, rule, client_id, closed)


async def _open_and_closed(
    exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int
) -> dict | None:
    # Kraken: OpenOrders/ClosedOrders are account-wide and filtered server-side by cl_ord_id. No symbol is
    # passed: ccxt would only filter client-side on it, and drop our order if its pair did not resolve.
    found = _matching(
        exchange, rule, client_id, await exchange.fetch_open_orders(None, None, None, {"clientOrderId": client_id})
    )
    if found:
        return found
    closed = await exchange.fetch_closed_orders(None, since_ms, None, {"clientOrderId": client_id})
    return _matching(exchange, rule, client_id, closed)


async def _gate(exchange: Any, rule: ClientIdRule, market: dict, client_id: str, since_ms: int) -> dict | None:
    try:
        order = await exchange.fetch_order(None, market["symbol"], {"clientOrderId": client_id})
        return _checked(exchange, rule, client_id, order)
    except ccxt.OrderNotFound:
        pass  # not open, or ended over 60 s ago: look through the finished orders since placement
    finished = await exchange.fetch_closed_orders(market["symbol"], since_ms, LISTING_LIMIT)
    wanted = _wire_id(rule, client_id)
    for order in finished:
        if order.get("clientOrderId") == wanted:
            return _checked(exchange, rule, client_id, order)
    if len(finished) >= LISTING_LIMIT:
        raise ccxt.ExchangeError(f"{exchange.id}: over {LISTING_LIMIT} finished orders since placement; not all seen")
    return None


def _ms_now() -> int:
    return int(time.time() * 1000)


LOOKUPS: dict[str, Callable[..., Awaitable[dict | None]]] = {
    "fetch_order": _fetch_order,
    "fetch_order_recent": _fetch_order_recent,
    "bitget": _bitget,
    "bybit_listing": _bybit_listing,
    "open_and_closed": _open_and_closed,
    "gate": _gate,
}
