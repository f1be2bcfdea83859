"""Settling an order request whose outcome is unknown: ask the exchange, never guess.

After a lost, garbled or "status unknown" answer (gateway/outcomes.py), the order is looked up
by the client id it was sent with, again and again with backoff for `clients.settle_window`
seconds (real exchanges list a new order late), but never past the call's deadline:

- found: it was placed; answered with the exchange's real id;
- confirmed absent by the last look-up at the end of the window: `OrderNotPlaced`;
- no look-up possible or none conclusive: `OrderStatusUnknown`, naming the client id, so the
  strategy checks GetOrders before sending again.

A cancel whose answer was lost is settled the same way, by looking the order up by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import client_ids
from gateway.calls import Call
from gateway.errors import OrderNotCancelled, OrderNotPlaced, OrderStatusUnknown, error_message

log = logging.getLogger("gateway.settle")
FIRST_LOOKUP_DELAY = 0.2  # seconds before the first look-up, then doubled up to MAX_LOOKUP_DELAY
MAX_LOOKUP_DELAY = 1.0
MIN_LOOKUP_TIME = 0.5  # seconds a look-up gets at least, even at the end of the window
DEADLINE_MARGIN = 0.2  # seconds kept to answer after the last look-up
CANCELLED_STATUSES = ("canceled", "cancelled", "expired", "rejected")


async def _poll(call: Call, look: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> tuple[Any, str | None]:
    """Run `look` with backoff until `done(answer)` or the settle window (or deadline) ends.

    Returns (the last answer, or None when the last look-up failed; its failure message)."""
    end = min(time.monotonic() + call.settings.settle_window, call.deadline - DEADLINE_MARGIN)
    delay = FIRST_LOOKUP_DELAY
    await asyncio.sleep(min(delay, max(0.0, end - time.monotonic())))
    while True:
        answer, failure = None, None
        try:
            async with asyncio.timeout(max(MIN_LOOKUP_TIME, end - time.monotonic())):
                answer = await look()
        except TimeoutError:
            failure = "RequestTimeout: the look-up got no answer within the settle window"
        except client_ids.LookupUnavailable:
            raise
        except Exception as exc:  # ccxt failing to parse an odd answer too: a look-up that told nothing
            failure = error_message(exc, call.credentials.secrets)
        if failure is None and done(answer):
            return answer, None
        remaining = end - time.monotonic()
        if remaining <= 0:
            return answer, failure
        delay = min(delay * 2, MAX_LOOKUP_DELAY)
        await asyncio.sleep(min(delay, remaining))  # the last look-up falls at the end of the window


async def settle_placement(
    call: Call, market: dict, client_id: str | None, failure: BaseException, since_ms: int, sent_at: float
) -> dict:
    """The order the exchange holds for `client_id` (with its real id), else a clear OrderOutcome error.

    "Not placed" needs the last look-up to fall at least `absence_window()` after the request went
    out (`sent_at`, time.monotonic()): a window the deadline cut short proves nothing."""
    what = f"{call.exchange_id} did not confirm the order ({_short(failure, call)})"
    if client_id is None:
        raise OrderStatusUnknown(
            f"{what} and takes no client order id the gateway can look up: check GetOrders for this "
            f"{market['symbol']} order before sending it again"
        )

    async def look() -> dict | None:
        return await client_ids.find_by_client_id(call.exchange, market, client_id, since_ms)

    try:
        found, lookup_failure = await _poll(call, look, lambda order: bool(order and order.get("id")))
    except client_ids.LookupUnavailable as exc:
        raise OrderStatusUnknown(
            f"{what} and it cannot be looked up ({exc}): check GetOrders for client id {client_id} before "
            "sending it again"
        ) from None
    if found and found.get("id"):
        log.warning(
            "%s order with client id %s: answer lost (%s); found it as %s",
            call.venue.route,
            client_id,
            type(failure).__name__,
            found["id"],
        )
        return found
    waited = time.monotonic() - sent_at
    if lookup_failure is None and waited >= absence_window(call):
        raise OrderNotPlaced(
            f"{what}; it lists no order with client id {client_id} {waited:.1f} s after the request: "
            "the order was not placed"
        )
    if lookup_failure is None:
        raise OrderStatusUnknown(
            f"{what}; it lists no order with client id {client_id} yet, but only {waited:.1f} s after the "
            f"request (the call's deadline came first): check GetOrders before sending it again"
        )
    raise OrderStatusUnknown(
        f"{what} and looking it up failed ({lookup_failure}): check GetOrders for client id {client_id} "
        "before sending it again"
    )


async def settle_cancel(
    call: Call, fetch: Callable[[], Awaitable[dict]], order_id: str, failure: BaseException
) -> dict:
    """After a lost or garbled cancel answer: the order, once it shows as cancelled; else an error saying why."""
    what = f"{call.exchange_id} did not confirm the cancel ({_short(failure, call)})"

    def finished(order: dict | None) -> bool:
        return bool(order) and order.get("status") not in ("open", None)

    order, lookup_failure = await _poll(call, fetch, finished)
    if order and order.get("status") in CANCELLED_STATUSES:
        log.warning("%s cancel of %s: answer lost (%s); the order is cancelled", call.venue.route, order_id, what)
        return order
    if order and order.get("status") == "closed":
        raise OrderNotCancelled(f"order {order_id} was filled before the cancel took effect")
    if order:
        raise OrderNotCancelled(
            f"{what} and order {order_id} is still open after {call.settings.settle_window:g} s: cancel it again"
        )
    raise OrderStatusUnknown(
        f"{what} and looking order {order_id} up failed ({lookup_failure}): check GetOrder before cancelling again"
    )


def absence_window(call: Call) -> float:
    """Seconds after which an order the exchange does not list was not placed: the settle window,
    and never less than the time the exchange itself would still accept the request (ccxt's
    `recvWindow` option, where the class has one; trading.prepare caps it to the settle window)."""
    return max(call.settings.settle_window, receive_window_ms(call.exchange) / 1000)


def receive_window_ms(exchange: Any) -> float:
    """ccxt's `recvWindow` option of the client (ms), 0 where the class signs without one."""
    window = (getattr(exchange, "options", None) or {}).get("recvWindow")
    return float(window) if isinstance(window, int | float) and not isinstance(window, bool) else 0.0


def _short(exc: BaseException, call: Call) -> str:
    """ "<Kind>: <message>", bounded: the reason the exchange gave, or what went wrong on the way."""
    return error_message(exc, call.credentials.secrets)[:200]
