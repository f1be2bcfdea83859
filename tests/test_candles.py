"""GetRecords beyond one request, and periods that cannot be built."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Account


@pytest.mark.parametrize("limit", [1500, 700])
def test_more_bars_than_one_request_are_fetched_page_by_page(account: Account, limit: int):
    rows = account.data("records", {"symbol": "BTC_USDT", "period": "1", "limit": str(limit)})
    assert len(rows) == limit
    times = [r[0] for r in rows]
    assert times == list(range(times[0], times[0] + 60 * limit, 60))  # consecutive minutes, no gaps
    assert times[-1] == int(time.time()) // 60 * 60


def test_built_bars_beyond_one_request(account: Account):
    rows = account.data("records", {"symbol": "BTC_USDT", "period": "10", "limit": "150"})
    assert len(rows) == 150 and all(r[0] % 600 == 0 for r in rows)
    assert [r[0] for r in rows] == [rows[0][0] + 600 * i for i in range(150)]


def test_two_week_bars_are_built_from_days_not_weeks(account: Account):
    rows = account.data("records", {"symbol": "BTC_USDT", "period": str(14 * 1440), "limit": "2"})
    assert rows and all(r[0] % (14 * 86400) == 0 for r in rows)


def test_impossible_requests_are_clear_errors(account: Account):
    assert "at most" in account.error("records", {"symbol": "BTC_USDT", "period": "1e25", "limit": "5"})
    assert "param 'limit' must be 1..10000" in account.error("records", {"symbol": "BTC_USDT", "limit": "20000"})
    if account.route == "okx":  # binance has 1s candles, so 30 s bars can be built there
        message = account.error("records", {"symbol": "BTC_USDT", "period": "0.5"})
        assert "no candle period that builds 0.5 minute" in message
    else:
        rows = account.data("records", {"symbol": "BTC_USDT", "period": "0.5", "limit": "3"})
        assert len(rows) == 3 and all(r[0] % 30 == 0 for r in rows)


def test_an_empty_page_is_skipped_not_the_end(gateway, fake_binance):
    from tests.conftest import open_account
    from tests.fakes.server import Fault

    account = open_account("binance", fake_binance, gateway)
    fake_binance.faults.inject(Fault(status=200, body=b"[]"), "/api/v3/klines")  # the oldest window is empty
    rows = account.data("records", {"symbol": "ETH_USDT", "period": "1", "limit": "1500"})
    assert len(rows) == 500 and rows[-1][0] == int(time.time()) // 60 * 60  # the newest bars are there
