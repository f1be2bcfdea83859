"""Shared budgets, cooldowns and deadlines, on real ccxt clients whose network is replaced."""

from __future__ import annotations

import asyncio
import json
import math
import time

import ccxt.async_support as ccxt
import pytest

from gateway.ratelimit import (
    DEADLINE,
    Budget,
    RateLimits,
    install,
    is_ip_ban,
    is_signed,
    needs_serial_nonce,
)

HOST = ("binance", False, None)


def test_a_budget_paces_by_cost_on_a_virtual_clock():
    budget = Budget("x", ms_per_cost=100)
    assert budget.reserve(1, deadline=1e9, now=10.0) == 0
    assert budget.reserve(2, deadline=1e9, now=10.0) == pytest.approx(0.1)  # waits for the first unit
    assert budget.reserve(1, deadline=1e9, now=10.0) == pytest.approx(0.3)  # behind a cost of 2


def test_a_wait_past_the_deadline_is_refused_at_once_naming_the_wait():
    budget = Budget("binance public (per IP)", ms_per_cost=1000)
    budget.reserve(5, deadline=1e9, now=0.0)
    with pytest.raises(ccxt.RateLimitExceeded, match=r"would wait 5\.00 s .*past this call's deadline"):
        budget.reserve(1, deadline=3.0, now=0.0)
    assert budget.refused == 1


def test_cooldowns_grow_while_refusals_repeat_and_honour_retry_after():
    budget = Budget("x", ms_per_cost=0)
    assert budget.cool_down(None, 1.0, "429", now=0.0) == 1.0
    assert budget.cool_down(None, 1.0, "429", now=2.0) == 2.0
    assert budget.cool_down(None, 1.0, "429", now=5.0) == 4.0
    assert budget.cool_down(30, 1.0, "429", now=10.0) == 30  # the exchange's own Retry-After
    assert budget.cool_down(None, 1.0, "429", now=10_000.0) == 1.0  # a quiet spell resets the streak
    with pytest.raises(ccxt.RateLimitExceeded, match="cooling down: 429"):
        budget.reserve(1, deadline=10_000.5, now=10_000.0)


def test_what_counts_as_signed_and_as_a_ban():
    assert not is_signed("public") and not is_signed(["public", "spot"]) and not is_signed("fapiPublic")
    assert is_signed("private") and is_signed("sapi") and is_signed(["private", "futures"])
    assert is_ip_ban(ccxt.DDoSProtection("binance 418 I'm a teapot {}"))
    assert not is_ip_ban(ccxt.DDoSProtection('binance 429 Too Many Requests {"code":-1003}'))


def test_nonce_sensitive_classes_come_from_ccxt_signing_code():
    assert needs_serial_nonce(ccxt.kraken) and needs_serial_nonce(ccxt.bitfinex)
    assert not needs_serial_nonce(ccxt.binance) and not needs_serial_nonce(ccxt.okx)


class Transport:
    """Replaces a client's low-level fetch: answers with canned bodies, records concurrency."""

    def __init__(self, exchange, answers: list, delay: float = 0.0) -> None:
        self.answers, self.delay = answers, delay
        self.sent: list[str] = []
        self.in_flight = self.max_in_flight = 0
        exchange.fetch = self.fetch
        self.exchange = exchange

    async def fetch(self, url, method="GET", headers=None, body=None):
        self.sent.append(url)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            status, answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            text = json.dumps(answer)
            self.exchange.last_response_headers = {}
            if status != 200:
                self.exchange.handle_errors(status, "", url, method, {}, text, answer, headers, body)
                self.exchange.handle_http_status_code(status, "", url, method, text)
            return answer
        finally:
            self.in_flight -= 1


TICKER = {"symbol": "BTCUSDT", "lastPrice": "1", "bidPrice": "1", "askPrice": "1", "closeTime": 1}


def binance_client(limits: RateLimits, key_id: str | None = None, paced: bool = True):
    config = {"apiKey": "k", "secret": "s"} if key_id else {}
    exchange = ccxt.binance({**config, "enableRateLimit": paced})
    exchange.set_markets(
        [
            {
                "id": "BTCUSDT",
                "symbol": "BTC/USDT",
                "base": "BTC",
                "quote": "USDT",
                "type": "spot",
                "spot": True,
                "precision": {"price": 0.01, "amount": 0.001},
                "limits": {},
            }
        ]
    )
    install(exchange, limits, HOST, "binance", key_id)
    return exchange


async def test_two_routes_of_one_exchange_share_one_public_budget():
    limits = RateLimits()
    first, second = binance_client(limits), binance_client(limits)
    Transport(first, [(200, TICKER)])
    Transport(second, [(200, TICKER)])
    await first.fetch_ticker("BTC/USDT")
    await second.fetch_ticker("BTC/USDT")
    [budget] = limits.public.values()
    assert budget.requests == 2 and budget.next_free > time.monotonic()  # the second one queued behind the first


async def test_a_ban_stops_every_request_of_the_ip_and_answers_within_the_deadline():
    limits = RateLimits()
    public, keyed = binance_client(limits), binance_client(limits, "key1")
    Transport(public, [(418, {"code": -1003, "msg": "Way too many requests; IP banned until 1"})])
    Transport(keyed, [(200, {"balances": []})])
    with pytest.raises(ccxt.DDoSProtection):
        await public.fetch_ticker("BTC/USDT")
    token = DEADLINE.set(time.monotonic() + 2)
    try:
        started = time.monotonic()
        with pytest.raises(ccxt.RateLimitExceeded, match="IP banned"):
            await keyed.fetch_balance()  # a signed call goes out from the same IP
        assert time.monotonic() - started < 0.5
    finally:
        DEADLINE.reset(token)


async def test_one_keys_signed_calls_are_serialised_where_the_nonce_must_grow():
    limits = RateLimits()
    kraken = ccxt.kraken({"apiKey": "k", "secret": "c2VjcmV0", "enableRateLimit": False})  # not paced: only the lock
    install(kraken, limits, ("kraken", False, None), "kraken", "key1")
    transport = Transport(kraken, [(200, {"error": [], "result": {}})], delay=0.05)
    await asyncio.gather(*(kraken.private_post_balance() for _ in range(4)))
    assert len(transport.sent) == 4 and transport.max_in_flight == 1

    binance = binance_client(RateLimits(), "key1", paced=False)
    transport = Transport(binance, [(200, {"balances": []})], delay=0.05)
    await asyncio.gather(*(binance.private_get_account() for _ in range(4)))
    assert transport.max_in_flight == 4  # timestamp + recvWindow signatures: no need to wait


def test_a_requests_timeout_is_cut_to_what_is_left_of_its_call():
    from gateway.ratelimit import bounded_timeout

    assert bounded_timeout(10_000, math.inf) == 10_000
    assert bounded_timeout(10_000, time.monotonic() + 3) == pytest.approx(2950, abs=20)  # minus the margin
    assert bounded_timeout(10_000, time.monotonic() + 60) == 10_000
    assert bounded_timeout(10_000, time.monotonic() - 1) == 100  # never zero or negative


async def test_a_signed_request_waits_out_an_ip_ban_that_ends_before_its_deadline():
    limits = RateLimits()
    binance_client(limits)  # the public budget of the host
    keyed = binance_client(limits, "key1", paced=False)
    Transport(keyed, [(200, {"balances": []})])
    [public] = limits.public.values()
    public.cool_down(0.3, 60, "IP banned (HTTP 418)")
    started = time.monotonic()
    await keyed.fetch_balance()
    assert time.monotonic() - started >= 0.25  # nothing went out from the banned IP meanwhile
