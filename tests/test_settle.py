"""Settling unknown outcomes (gateway/settle.py) and the placement around it: the cases a review
found misreported, each asserted.

Unit level: a stand-in Call (only what settle/trading read), ccxt's real HTX class with its
network replaced (tests.test_client_ids.Recorder). No sockets.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import ccxt.async_support as ccxt
import pytest

from gateway import client_ids, settle, trading
from gateway.errors import GatewayError, OrderStatusUnknown
from gateway.state import TradingState


def fake_call(exchange=None, deadline_in: float = 30.0, settle_window: float = 5.0):
    deadline = time.monotonic() + deadline_in
    return SimpleNamespace(
        exchange=exchange or SimpleNamespace(id="binance"),
        exchange_id=getattr(exchange, "id", "binance"),
        deadline=deadline,
        remaining=lambda: deadline - time.monotonic(),
        settings=SimpleNamespace(settle_window=settle_window),
        credentials=SimpleNamespace(secrets=()),
        venue=SimpleNamespace(route="binance"),
        has=lambda name: True,
        state=None,
    )


MARKET = {"symbol": "BTC/USDT", "type": "spot", "contract": False}


# 1. A settle window cut short by the call's deadline still concludes "not placed".
async def test_absent_is_not_concluded_from_a_window_the_deadline_cut_to_a_fraction(monkeypatch):
    looks: list[float] = []
    started = time.monotonic()

    async def never_listed(exchange, market, client_id, since_ms):
        looks.append(time.monotonic() - started)
        return None  # the exchange has not listed it YET

    monkeypatch.setattr(client_ids, "find_by_client_id", never_listed)
    call = fake_call(deadline_in=0.5)  # the send used most of the call: ~0.3 s left to settle
    with pytest.raises(OrderStatusUnknown):
        await settle.settle_placement(call, MARKET, "fmzabc", ccxt.RequestTimeout("binance POST"), 0, time.monotonic())
    assert looks and looks[-1] < 1.0


async def test_absent_is_not_concluded_from_one_lookup_after_the_deadline(monkeypatch):
    async def never_listed(exchange, market, client_id, since_ms):
        return None

    monkeypatch.setattr(client_ids, "find_by_client_id", never_listed)
    call = fake_call(deadline_in=0.1)  # the send's MIN_SEND_TIME ran past the settle window's end
    started = time.monotonic()
    with pytest.raises(OrderStatusUnknown):
        await settle.settle_placement(call, MARKET, "fmzabc", ccxt.RequestTimeout("binance POST"), 0, time.monotonic())
    assert time.monotonic() - started < 0.5


# 2. A look-up that fails with anything but ccxt.BaseError / TimeoutError escapes the settle:
#    the strategy hears "InternalError" for an order the exchange may hold, and a re-send with the
#    same nonce never looks again (only kind OrderStatusUnknown is settled again).
async def test_a_lookup_crash_is_an_unknown_outcome_not_a_plain_failure(monkeypatch):
    async def crashes(exchange, market, client_id, since_ms):
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'str'")  # ccxt parse on an odd reply

    monkeypatch.setattr(client_ids, "find_by_client_id", crashes)
    call = fake_call(deadline_in=3.0, settle_window=0.5)
    with pytest.raises(OrderStatusUnknown):
        await settle.settle_placement(call, MARKET, "fmzabc", ccxt.RequestTimeout("binance POST"), 0, time.monotonic())


# 3. HTX: place() passes since_ms = now - 60 s (LOOKUP_SINCE_MARGIN_MS), but the HTX rule trusts a
#    miss only while now - since_ms <= 50 s: the first miss (0.2 s after a lost answer) raises
#    LookupUnavailable, which ends the poll, so an order HTX lists 0.3 s later is never found.
async def test_htx_a_miss_right_after_placement_is_retried_not_unavailable():
    from tests.test_client_ids import HTX_SPOT, Recorder, htx_order, make

    ex = make(ccxt.htx, [HTX_SPOT])
    ex.options["accountsById"] = {"100009": {"id": "100009", "type": "spot"}}
    ex.accounts = [{"id": "100009", "type": "spot", "code": None, "info": {}}]
    ex.options["accounts"] = ex.accounts
    cid = client_ids.derive_client_id(ex, b"seed")
    missing = {"status": "error", "err-code": "base-record-invalid", "err-msg": "record invalid", "data": None}
    found = {"status": "ok", "data": htx_order(cid)}
    replies = [missing, found]

    class Late(Recorder):  # the order shows up on the second look-up
        async def __call__(self, url, method="GET", headers=None, body=None):
            self.routes = [("getClientOrder", 200, replies.pop(0) if len(replies) > 1 else replies[0])]
            return await super().__call__(url, method, headers, body)

    Late(ex, [])
    since_ms = int(time.time() * 1000) - trading.LOOKUP_SINCE_MARGIN_MS  # exactly what place() passes
    call = fake_call(ex, deadline_in=5.0, settle_window=2.0)
    order = await settle.settle_placement(
        call, HTX_SPOT, cid, ccxt.RequestTimeout("htx POST"), since_ms, time.monotonic()
    )
    assert order["id"] == "59378"


# 4. A pending SetMarginLevel whose change timed out (or was refused by our own rate limiter
#    because the call's deadline was near) is marked settled: every later order of the symbol
#    trades at the old leverage and nobody is told.
async def test_a_leverage_change_that_timed_out_is_tried_again_by_the_next_order(monkeypatch):
    import gateway.futures as futures

    attempts = []

    async def change(call, level, symbol):
        attempts.append(level)
        raise ccxt.RequestTimeout("binanceusdm POST /fapi/v1/leverage")

    async def not_at(call, symbol, level, failure):
        return False

    monkeypatch.setattr(futures, "change_leverage", change)
    monkeypatch.setattr(futures, "leverage_already_at", not_at)
    call = fake_call()
    call.state = TradingState(margin_level=20)
    market = {"symbol": "BTC/USDT:USDT", "type": "swap", "contract": True}
    with pytest.raises(GatewayError, match="SetMarginLevel"):
        await futures.apply_pending_leverage(call, market)
    with pytest.raises(GatewayError, match="SetMarginLevel"):  # the next order tries again
        await futures.apply_pending_leverage(call, market)
    assert len(attempts) == 2


# 5. Kraken/Bitfinex (serialised signed calls): the budget is checked against the call's deadline
#    BEFORE waiting for the key's lock, never after. A trade stuck behind the key's other request
#    is sent after its call was answered ("OrderStatusUnknown ... check GetOrders"), with a 100 ms
#    timeout: the strategy checks, sees nothing, sends again -> two orders.
async def test_a_signed_request_is_not_sent_after_its_deadline_while_waiting_for_the_key_lock():
    from gateway import ratelimit

    exchange = ccxt.kraken(
        {"apiKey": "k" * 16, "secret": "c2VjcmV0" * 8, "enableRateLimit": False}
    )  # pacing off: only the lock
    sent: list[tuple[str, float, float]] = []

    async def original(path, api="public", method="GET", params=None, config=None):
        sent.append((path, time.monotonic(), exchange.timeout))
        await asyncio.sleep(0.5 if path == "slow" else 0)
        return {}

    exchange.fetch2 = original
    ratelimit.install(exchange, ratelimit.RateLimits(), ("kraken", False, None), "kraken", "key1")

    async def slow_read():
        ratelimit.DEADLINE.set(time.monotonic() + 5)
        await exchange.fetch2("slow", "private", "POST", {}, {})

    async def order():
        deadline = time.monotonic() + 0.2
        ratelimit.DEADLINE.set(deadline)
        try:
            await exchange.fetch2("AddOrder", "private", "POST", {}, {})
        except ccxt.RateLimitExceeded:
            return None
        return deadline

    reader = asyncio.ensure_future(slow_read())
    await asyncio.sleep(0.01)
    deadline = await order()
    await reader
    late = [s for s in sent if s[0] == "AddOrder" and deadline is not None and s[1] > deadline]
    assert not late, f"AddOrder sent {late[0][1] - deadline:.2f} s after its deadline with timeout {late[0][2]} ms"
    await exchange.close()
