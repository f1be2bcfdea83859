"""GetRecords on exchanges without a candle endpoint: bars built from public trades.

Unit tests of the aggregation and of the paging against stub exchanges, then end to end over
HTTP: a small fake of bitflyer (ccxt has no fetchOHLCV for it; its public executions, in the
real format, newest first) and blockchaincom (neither candles nor public trades in ccxt).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import candles
from gateway.app import create_app
from gateway.candles import Tape, bars_from_public_trades, bars_from_trades, merge, newest_tape, trim
from gateway.settings import parse_settings
from tests.conftest import GatewayClient
from tests.fakes.server import BackgroundServer, FaultInjector

M = 60_000  # one minute in ms
T0 = 1_700_000_040_000  # a minute boundary (ms)


@pytest.fixture(autouse=True)
def fresh_tapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trades kept between calls are per test."""
    monkeypatch.setattr(candles, "_TAPES", OrderedDict())


# --- aggregation ---------------------------------------------------------------------------------


def test_one_trade_in_a_fully_seen_period_is_one_bar():
    assert bars_from_trades([(T0 + 5_000, 100.0, 2.0)], M, T0, T0 + 30_000) == [[T0, 100.0, 100.0, 100.0, 100.0, 2.0]]


def test_the_oldest_period_is_left_out_when_its_start_was_not_seen():
    trades = [(T0 + 5_000, 100.0, 1.0), (T0 + M + 1_000, 101.0, 1.0)]
    assert bars_from_trades(trades, M, T0 + 1, T0 + M + 2_000) == [[T0 + M, 101.0, 101.0, 101.0, 101.0, 1.0]]
    assert bars_from_trades(trades[:1], M, T0 + 1, T0 + 10_000) == []  # one trade, its period not seen whole


def test_periods_without_trades_are_flat_bars_at_the_previous_close_up_to_the_current_one():
    trades = [(T0 + 1_000, 10.0, 1.0), (T0 + 2_000, 12.0, 1.0), (T0 + 3 * M + 1, 11.0, 0.5)]
    bars = bars_from_trades(trades, M, T0, T0 + 5 * M + 7)
    assert bars == [
        [T0, 10.0, 12.0, 10.0, 12.0, 2.0],
        [T0 + M, 12.0, 12.0, 12.0, 12.0, 0.0],
        [T0 + 2 * M, 12.0, 12.0, 12.0, 12.0, 0.0],
        [T0 + 3 * M, 11.0, 11.0, 11.0, 11.0, 0.5],
        [T0 + 4 * M, 11.0, 11.0, 11.0, 11.0, 0.0],
        [T0 + 5 * M, 11.0, 11.0, 11.0, 11.0, 0.0],  # the current period: no trade yet
    ]


def test_unsorted_trades_build_the_same_bars():
    trades = [(T0 + 50_000, 3.0, 1.0), (T0 + 1_000, 1.0, 1.0), (T0 + M + 9, 5.0, 1.0), (T0 + 20_000, 9.0, 1.0)]
    assert bars_from_trades(trades, M, T0, T0 + M + 10) == bars_from_trades(sorted(trades), M, T0, T0 + M + 10)
    assert bars_from_trades(trades, M, T0, T0 + M + 10)[0] == [T0, 1.0, 9.0, 1.0, 3.0, 3.0]


def test_a_trade_exactly_on_a_boundary_opens_the_new_bar():
    trades = [(T0 + M - 1, 7.0, 1.0), (T0 + M, 8.0, 1.0), (T0 + 2 * M - 1, 6.0, 1.0)]
    bars = bars_from_trades(trades, M, T0, T0 + 2 * M)
    assert bars == [
        [T0, 7.0, 7.0, 7.0, 7.0, 1.0],
        [T0 + M, 8.0, 8.0, 6.0, 6.0, 2.0],
        [T0 + 2 * M, 6.0, 6.0, 6.0, 6.0, 0.0],  # `hi` on the boundary: the new period has begun
    ]
    # the first period seen whole starts exactly at `lo`
    assert bars_from_trades(trades, M, T0 + M, T0 + 2 * M)[0] == [T0 + M, 8.0, 8.0, 6.0, 6.0, 2.0]


def test_volumes_add_up_exactly():
    trades = [(T0 + i, 1.0, 0.1) for i in range(3)]
    assert bars_from_trades(trades, M, T0, T0 + 10)[0][5] == 0.3


def test_count_keeps_the_newest_bars_and_carries_the_close_into_them():
    trades = [(T0 + 1, 5.0, 1.0), (T0 + 10 * M + 1, 6.0, 1.0)]
    assert bars_from_trades(trades, M, T0, T0 + 12 * M, 4) == [
        [T0 + 9 * M, 5.0, 5.0, 5.0, 5.0, 0.0],
        [T0 + 10 * M, 6.0, 6.0, 6.0, 6.0, 1.0],
        [T0 + 11 * M, 6.0, 6.0, 6.0, 6.0, 0.0],
        [T0 + 12 * M, 6.0, 6.0, 6.0, 6.0, 0.0],
    ]
    assert bars_from_trades(trades, M, T0, T0 + 12 * M, 4) == bars_from_trades(trades, M, T0, T0 + 12 * M)[-4:]
    # a quiet market over 30 days in 1-second bars: only the asked bars are built
    started = time.monotonic()
    month = 30 * 86_400_000
    bars = bars_from_trades([(T0 + 1, 5.0, 1.0), (T0 + month, 6.0, 1.0)], 1_000, T0, T0 + month + 500, 3)
    assert [b[0] for b in bars] == [T0 + month - 2_000, T0 + month - 1_000, T0 + month]
    assert [b[4] for b in bars] == [5.0, 5.0, 6.0] and time.monotonic() - started < 1.0


def test_tapes_join_only_where_they_meet():
    old = Tape([(T0 + 1, 1.0, 1.0), (T0 + 5, 2.0, 1.0)], T0, T0 + 9)
    new = Tape([(T0 + 5, 2.0, 1.0), (T0 + 12, 3.0, 1.0)], T0 + 5, T0 + 20)
    joined = merge(old, new)
    assert joined is not None and (joined.lo, joined.hi) == (T0, T0 + 20)
    assert joined.trades == [(T0 + 1, 1.0, 1.0), (T0 + 5, 2.0, 1.0), (T0 + 12, 3.0, 1.0)]  # no double count
    assert merge(old, Tape([], T0 + 10, T0 + 20)) is not None  # adjacent
    assert merge(old, Tape([], T0 + 11, T0 + 20)) is None  # a gap of 1 ms


def test_the_newest_page_is_complete_only_after_its_oldest_millisecond():
    page = [{"timestamp": T0 + 7, "price": 2, "amount": 1}, {"timestamp": T0 + 3, "price": 1, "amount": 1}]
    page.append({"timestamp": None, "price": 1, "amount": 1})  # skipped
    tape = newest_tape(page, T0 + 100)
    assert tape is not None and (tape.lo, tape.hi) == (T0 + 4, T0 + 100) and tape.trades == [(T0 + 7, 2.0, 1.0)]
    assert newest_tape([], T0) is None


def test_trimming_cuts_at_a_millisecond_and_keeps_the_rest_complete(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(candles, "TAPE_MAX_TRADES", 3)
    tape = Tape([(T0 + 1, 1.0, 1.0), (T0 + 2, 1.0, 1.0), (T0 + 2, 1.0, 1.0), (T0 + 3, 1.0, 1.0)], T0, T0 + 9)
    trimmed = trim(tape, 0)
    assert trimmed.lo == T0 + 2 and len(trimmed.trades) == 3
    assert trim(tape, T0 + 3).trades == [(T0 + 3, 1.0, 1.0)]


def test_candles_ccxt_only_emulates_are_built_here_too():
    for has, native in ((True, True), ("emulated", False), (False, False), (None, False)):
        exchange = type("X", (), {"has": {"fetchOHLCV": has}})()
        assert (candles.records_source(exchange, ("spot", None)) == "fetchOHLCV") is native


# --- paging, against stub exchanges --------------------------------------------------------------


class StubExchange:
    """Public trades the way ccxt hands them on: oldest first, filtered by `since`, cut to `limit`.

    `honours_since`: the exchange itself answers from `since` (else it answers its newest
    `page_size` trades whatever `since` says, and ccxt filters them)."""

    id = "stub"

    def __init__(self, trades: list[tuple[int, float, float]], *, honours_since: bool, page_size: int = 100):
        self.trades = sorted(trades)
        self.honours_since = honours_since
        self.page_size = page_size
        self.has = {"fetchOHLCV": None, "fetchTrades": True}
        self.features: dict = {}
        self.requests: list[tuple[int | None, int | None]] = []

    async def fetch_trades(self, symbol: str, since: int | None = None, limit: int | None = None) -> list[dict]:
        self.requests.append((since, limit))
        size = min(limit or self.page_size, self.page_size)
        if since is not None and self.honours_since:
            answer = [t for t in self.trades if t[0] >= since][:size]
        else:
            answer = self.trades[-size:]
        rows = [{"timestamp": ts, "price": price, "amount": amount} for ts, price, amount in answer]
        if since is not None:
            rows = [row for row in rows if row["timestamp"] >= since]
        return rows[:limit] if since is not None else rows[-limit:] if limit else rows


class StubCall:
    def __init__(self, exchange: StubExchange, remaining: float = math.inf):
        self.exchange = exchange
        self.venue = type("V", (), {"market_scope": ("stub", id(exchange))})()
        self._remaining = remaining

    async def read(self, key, factory):
        return await factory()

    def remaining(self) -> float:
        return self._remaining


def quiet_now_ms() -> int:
    """Now (ms), at least 3 s before the minute ends: the bars the test expects stay the current ones."""
    at_a_quiet_moment()
    return int(time.time() * 1000)


def minute_trades(now_ms: int, minutes: int, per_minute: int) -> list[tuple[int, float, float]]:
    """`per_minute` trades in each of the last `minutes` minutes, prices 100 + minute + tick."""
    start = (now_ms // M - minutes + 1) * M
    return [
        (start + k * M + i * (M // per_minute), 100.0 + k + i / 100, 1.0)
        for k in range(minutes)
        for i in range(per_minute)
        if start + k * M + i * (M // per_minute) <= now_ms
    ]


def truth(trades: list, count: int, now_ms: int) -> list[list]:
    """Bars from every trade, as if the whole history had been seen."""
    return bars_from_trades(trades, M, 0, now_ms, count)


async def test_an_exchange_that_honours_since_is_paged_back_for_the_whole_count():
    now_ms = quiet_now_ms()
    trades = minute_trades(now_ms, 30, 20)  # 600 trades, 100 a page
    exchange = StubExchange(trades, honours_since=True)
    bars = await bars_from_public_trades(StubCall(exchange), {"symbol": "X/Y"}, 60, 20)
    assert bars == truth(trades, 20, now_ms) and len(bars) == 20
    assert bars[-1][0] == now_ms // M * M
    assert exchange.requests[0] == (None, 100) and 2 <= len(exchange.requests) <= candles.MAX_TRADE_PAGES
    assert exchange.requests[1][0] == (now_ms // M - 19) * M  # paging starts at the oldest bar asked for


async def test_an_exchange_that_ignores_since_costs_one_try_then_none():
    now_ms = quiet_now_ms()
    trades = minute_trades(now_ms, 30, 20)
    exchange = StubExchange(trades, honours_since=False)
    call = StubCall(exchange)
    bars = await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 20)
    assert len(exchange.requests) == 2  # the newest page, one page asked by `since`, nothing more
    newest_oldest = exchange.trades[-100][0]
    assert bars[0][0] >= newest_oldest  # built only from what the newest page covers whole
    assert bars == truth(trades, 20, now_ms)[-len(bars) :] and 3 <= len(bars) < 20
    await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 20)
    assert len(exchange.requests) == 3  # `since` is not tried again for a while


async def test_paging_stops_at_the_page_budget_and_invents_nothing_in_between(monkeypatch: pytest.MonkeyPatch):
    now_ms = quiet_now_ms()
    trades = minute_trades(now_ms, 60, 30)  # 1,800 trades: far more than 3 pages of 100
    monkeypatch.setattr(candles, "MAX_TRADE_PAGES", 3)
    exchange = StubExchange(trades, honours_since=True)
    bars = await bars_from_public_trades(StubCall(exchange), {"symbol": "X/Y"}, 60, 60)
    assert len(exchange.requests) <= 3
    assert bars == truth(trades, 60, now_ms)[-len(bars) :] and len(bars) < 60
    # the start was moved to where the budget can reach: the pages met the newest one
    assert bars[0][0] < exchange.trades[-100][0] - M


async def test_pages_that_do_not_move_forward_end_the_paging():
    now_ms = quiet_now_ms()
    stuck = [(now_ms - 5 * M, 1.0, 1.0)] * 100  # a full page, every trade in one millisecond
    trades = stuck + [(now_ms - 2 * M + i * 1000, 2.0, 1.0) for i in range(100)]
    exchange = StubExchange(trades, honours_since=True)
    bars = await bars_from_public_trades(StubCall(exchange), {"symbol": "X/Y"}, 60, 10)
    assert len(exchange.requests) <= 3  # the newest page, one from `since`, one stuck at the same millisecond
    assert bars and bars[0][0] >= now_ms - 3 * M


async def test_no_page_back_without_time_left_before_the_deadline():
    now_ms = quiet_now_ms()
    exchange = StubExchange(minute_trades(now_ms, 30, 20), honours_since=True)
    await bars_from_public_trades(StubCall(exchange, remaining=0.5), {"symbol": "X/Y"}, 60, 20)
    assert exchange.requests == [(None, 100)]


async def test_trades_are_kept_between_calls_so_bars_grow_as_on_fmz():
    now_ms = quiet_now_ms()
    trades = minute_trades(now_ms, 10, 20)
    exchange = StubExchange(trades[:-30], honours_since=False, page_size=50)
    call = StubCall(exchange)
    first = await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 10)
    exchange.trades = trades  # 30 newer trades: the newest page of 50 still overlaps the first one
    second = await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 10)
    assert first and second[0][0] == first[0][0]  # the older bars are still there
    assert second == truth(trades, 10, now_ms)[-len(second) :]


async def test_trades_kept_are_dropped_when_a_gap_follows_them(monkeypatch: pytest.MonkeyPatch):
    now_ms = quiet_now_ms()
    old = [(now_ms - 20 * M + i * 5000, 1.0, 1.0) for i in range(50)]  # over 4 minutes
    exchange = StubExchange(old, honours_since=False, page_size=50)
    call = StubCall(exchange)
    with monkeypatch.context() as patched:  # the first call is made 15 minutes ago
        clock = type("Clock", (), {"time": staticmethod(lambda: (now_ms - 15 * M) / 1000), "monotonic": time.monotonic})
        patched.setattr(candles, "time", clock)
        first = await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 30)
    assert first and first[-1][0] == now_ms - now_ms % M - 15 * M
    exchange.trades = old + [(now_ms - 6 * M + i * 3000, 2.0, 1.0) for i in range(100)]  # the page misses the gap
    bars = await bars_from_public_trades(call, {"symbol": "X/Y"}, 60, 30)
    assert bars and all(bar[4] == 2.0 for bar in bars)  # nothing of the old trades across the unseen gap


# --- end to end: a fake bitflyer, and an exchange with neither candles nor trades -----------------


class FakeBitflyer:
    """bitflyer's public API as ccxt's bitflyer uses it: markets and /v1/getexecutions.

    Executions are answered newest first with `exec_date` in UTC without a zone, as bitflyer does;
    `count` (default 100) is honoured, `page_cap` caps it further (a short public history)."""

    def __init__(self) -> None:
        self.executions: list[dict] = []
        self.page_cap = 500
        self._next_id = 2_278_466_664

    def add(self, ms: int, price: float, size: float, side: str = "BUY") -> None:
        self._next_id += 1
        exec_date = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        self.executions.append(
            {
                "id": self._next_id,
                "side": side,
                "price": price,
                "size": size,
                "exec_date": exec_date,
                "buy_child_order_acceptance_id": f"JRF{self._next_id}B",
                "sell_child_order_acceptance_id": f"JRF{self._next_id}S",
            }
        )

    def app(self) -> Starlette:
        async def markets(request: Request) -> JSONResponse:
            return JSONResponse(
                [
                    {"product_code": "BTC_JPY", "market_type": "Spot"},
                    {"product_code": "FX_BTC_JPY", "market_type": "FX"},
                ]
            )

        async def markets_usa(request: Request) -> JSONResponse:
            return JSONResponse([{"product_code": "BTC_USD", "market_type": "Spot"}])

        async def markets_eu(request: Request) -> JSONResponse:
            return JSONResponse([{"product_code": "BTC_EUR", "market_type": "Spot"}])

        async def executions(request: Request) -> JSONResponse:
            if request.query_params.get("product_code") != "BTC_JPY":
                return JSONResponse({"status": -156, "error_message": "Invalid product", "data": None}, 400)
            count = min(int(request.query_params.get("count", "100")), self.page_cap)
            return JSONResponse(list(reversed(self.executions))[:count])

        return Starlette(
            routes=[
                Route("/v1/getmarkets", markets),
                Route("/v1/getmarkets/usa", markets_usa),
                Route("/v1/getmarkets/eu", markets_eu),
                Route("/v1/getexecutions", executions),
            ]
        )


@pytest.fixture
def bitflyer_gateway(tmp_path) -> Iterator[tuple[FakeBitflyer, FaultInjector, GatewayClient]]:
    fake = FakeBitflyer()
    recorder = FaultInjector(fake.app())
    markets = tmp_path / "blockchaincom.json"
    markets.write_text(json.dumps({"BTC/USD": blockchaincom_market()}))
    with BackgroundServer(recorder) as exchange_server:
        fast = {"enableRateLimit": False, "timeout": 5000}
        settings = parse_settings(
            {
                "allow_any_ccxt_exchange": True,
                "clients": {"read_retries": 0},
                "exchanges": {
                    "bitflyer": {"ccxt": "bitflyer", "api_base": exchange_server.url, "ccxt_config": fast},
                    "blockchaincom": {
                        "ccxt": "blockchaincom",
                        "api_base": exchange_server.url,
                        "markets_file": str(markets),
                        "ccxt_config": fast,
                    },
                },
            }
        )
        with BackgroundServer(create_app(settings)) as gateway_server, httpx.Client(timeout=30) as http:
            yield fake, recorder, GatewayClient(gateway_server.url, http)


def blockchaincom_market() -> dict:
    return {
        "id": "BTC-USD",
        "symbol": "BTC/USD",
        "base": "BTC",
        "quote": "USD",
        "baseId": "BTC",
        "quoteId": "USD",
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "active": True,
        "precision": {"amount": 1e-08, "price": 0.01},
        "limits": {"amount": {"min": 1e-05, "max": None}, "price": {"min": None, "max": None}},
        "info": {},
    }


def executions_requests(recorder: FaultInjector) -> int:
    return sum(1 for _, path in recorder.requests if path == "/v1/getexecutions")


def at_a_quiet_moment() -> int:
    """The current minute's start (ms), at least 2 s into the minute (bars end a second before the
    call: CLOCK_MARGIN_MS) with at least 3 s of it left for the test."""
    second = time.time() % 60
    if second > 57 or second < 2:
        time.sleep((62 - second) % 60 + 0.05)
    return int(time.time()) // 60 * 60_000


def test_bitflyer_records_are_built_from_its_executions(bitflyer_gateway):
    fake, recorder, gateway = bitflyer_gateway
    now = at_a_quiet_moment()
    fake.add(now - 4 * M + 10_000, 100.0, 1.0)  # the oldest execution: its minute was not seen whole
    fake.add(now - 3 * M, 101.0, 0.5, "SELL")  # exactly on a minute boundary
    fake.add(now - 3 * M + 30_000, 99.0, 0.25)
    fake.add(now - M + 5_000, 103.0, 2.0)  # the minute before has no executions
    fake.add(now - M + 50_000, 102.0, 1.0, "SELL")
    fake.add(now, 104.0, 0.1)  # the current minute, in progress

    rows = gateway.data("bitflyer", "records", {"symbol": "BTC_JPY", "period": "1", "limit": "5"})
    s = now // 1000
    assert rows == [
        [s - 180, 101, 101, 99, 99, 0.75],
        [s - 120, 99, 99, 99, 99, 0],  # no executions: flat at the previous close
        [s - 60, 103, 103, 102, 102, 3],
        [s, 104, 104, 104, 104, 0.1],
    ]  # fewer than 5: nothing is invented before the oldest minute seen whole
    assert executions_requests(recorder) == 2  # the newest executions; `since` tried once (bitflyer ignores it)

    fake.page_cap = 3  # the public history moves on: only the 3 newest executions are served
    fake.add(now + 1, 110.0, 0.4)
    rows = gateway.data("bitflyer", "records", {"symbol": "BTC_JPY", "period": "1", "limit": "5"})
    assert rows[0] == [s - 180, 101, 101, 99, 99, 0.75]  # kept from the first call, as FMZ's docker keeps them
    assert rows[-1] == [s, 104, 110, 104, 110, 0.5]
    assert executions_requests(recorder) == 3  # one request: `since` is not tried again


def test_an_exchange_with_neither_candles_nor_trades_answers_not_supported(bitflyer_gateway):
    _, recorder, gateway = bitflyer_gateway
    reply = gateway.call("blockchaincom", "records", {"symbol": "BTC_USD", "period": "1"})
    assert reply == {"error": "NotSupported: GetRecords is not supported by blockchaincom"}
    assert recorder.requests == []
