"""Read retries, no order retries, and coalescing of identical public reads (through HTTP)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.calls import SingleFlight
from tests.conftest import Account, Fake, GatewayClient, open_account
from tests.fakes.server import Fault


def count(fake: Fake, path: str, method: str | None = None) -> int:
    return sum(1 for m, p in fake.faults.requests if p == path and (method is None or m == method))


@pytest.fixture
def binance_account(gateway: GatewayClient, fake_binance: Fake) -> Account:
    return open_account("binance", fake_binance, gateway)


def test_a_read_is_retried_after_a_transient_failure(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(Fault(status=503, body=b"Service Unavailable", content_type="text/plain"), "/api/v3/account")
    before = count(fake, "/api/v3/account")
    rows = binance_account.data("accounts")
    assert any(r["currency"] == "USDT" for r in rows)
    assert count(fake, "/api/v3/account") - before == 2


def test_a_read_gives_up_after_the_configured_retries(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(Fault(status=503, body=b"down", content_type="text/plain"), "/api/v3/account", times=5)
    message = binance_account.error("accounts")
    assert message.startswith(("ExchangeNotAvailable:", "NetworkError:", "OnMaintenance:"))
    fake.faults.faults.clear()


def test_rate_limit_answers_are_retried(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(Fault(status=429, body=b'{"code":-1003,"msg":"Too many requests"}'), "/api/v3/openOrders")
    assert binance_account.data("orders", {"symbol": "BTC_USDT"}) == []


def test_an_ip_ban_is_never_retried(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(
        Fault(status=418, body=b'{"code":-1003,"msg":"Way too many requests; IP banned"}'), "/api/v3/account"
    )
    before = count(fake, "/api/v3/account")
    message = binance_account.error("accounts")
    assert message.startswith("DDoSProtection:")
    assert count(fake, "/api/v3/account") - before == 1  # every further request would lengthen the ban
    limits = binance_account.gateway.app.gateway.pool.limits
    try:  # the IP cools down: nothing more is sent, and the answer comes at once, naming the wait
        again = binance_account.error("ticker", {"symbol": "BTC_USDT"})
        assert again.startswith("RateLimitExceeded:") and "IP banned" in again, again
        assert count(fake, "/api/v3/account") - before == 1
    finally:  # the suite's other tests share this gateway
        for budget in limits.public.values():
            budget.cooldown_until = 0.0


def test_an_order_is_never_retried(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(Fault(status=503, body=b"busy", content_type="text/plain"), "/api/v3/order")
    before = count(fake, "/api/v3/order", "POST")
    message = binance_account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000", "amount": "0.001"})
    assert ":" in message
    assert count(fake, "/api/v3/order", "POST") - before == 1
    assert binance_account.data("orders", {"symbol": "BTC_USDT"}) == []


def test_identical_concurrent_public_reads_share_one_upstream_call(gateway: GatewayClient, fake_binance: Fake):
    gateway.data("binance", "ticker", {"symbol": "LTC_USDT"})  # warm: markets and connections
    fake_binance.faults.latency_ms = 300
    try:
        before = count(fake_binance, "/api/v3/ticker/24hr")
        with ThreadPoolExecutor(max_workers=12) as pool:
            replies = list(pool.map(lambda _: gateway.call("binance", "ticker", {"symbol": "LTC_USDT"}), range(12)))
    finally:
        fake_binance.faults.latency_ms = 0
    assert all(r["data"]["symbol"] == "LTC_USDT" for r in replies)
    assert count(fake_binance, "/api/v3/ticker/24hr") - before < 4  # 12 dockers, a couple of upstream calls


def test_malformed_exchange_json_is_an_error_not_a_crash(binance_account: Account):
    fake = binance_account.fake
    fake.faults.inject(
        Fault(status=200, body=b"{not json", content_type="application/json"), "/api/v3/ticker/24hr", times=3
    )
    message = binance_account.error("ticker", {"symbol": "ETH_BTC"})
    assert not message.startswith("InternalError")
    fake.faults.faults.clear()


async def test_single_flight_propagates_errors_to_every_waiter():
    flight = SingleFlight()
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ValueError("upstream broke")

    results = await asyncio.gather(*(flight.run(("k",), failing) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ValueError) for r in results)
    assert len(flight) == 0


async def test_single_flight_followers_rerun_when_the_leader_is_cancelled():
    flight = SingleFlight()
    calls = 0

    async def slow():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    leader = asyncio.ensure_future(flight.run(("k",), slow))
    await asyncio.sleep(0.01)
    followers = [asyncio.ensure_future(flight.run(("k",), slow)) for _ in range(3)]
    await asyncio.sleep(0.01)
    leader.cancel()
    results = await asyncio.gather(*followers)
    assert results == [2, 2, 2] and calls == 2  # one follower ran it again, the others shared that run
