"""GetTicker/GetDepth from the exchange's websocket (gateway/streams.py), against the websocket fakes.

Every fault of the fakes (disconnect, silence, sequence gap, bad checksum, crossed book) must
leave the answers correct: REST takes over while the stream is stale or broken, memory again
once it has been rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import streams
from gateway.app import create_app
from gateway.settings import Venue, parse_settings
from tests.conftest import GatewayClient, _start_fake
from tests.fakes import binance, okx

MAX_AGE_MS = 400
# trades and candles only; trades come when someone trades, so these routes allow older messages
HISTORIES = {"ticker": "off", "depth": "off", "trades": "on", "records": "on", "max_age_ms": 3000}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict]:
    started = {}
    for name, module in (("binance", binance), ("okx", okx)):
        engine = module.default_engine()
        app = module.create_app(engine, {})
        app.state.ws.interval = 0.05
        fake = _start_fake(name, engine, app)
        fake.faults.record = True
        started[name] = (fake, app.state.ws)
    yield started
    for fake, _ in started.values():
        fake.server.stop()


def _route(fake: Any, ccxt_id: str, streams_config: dict, **extra: Any) -> dict:
    return {
        "ccxt": ccxt_id,
        "api_base": fake.url,
        "ccxt_config": {"enableRateLimit": False, "timeout": 5000},
        "streams": streams_config,
        **extra,
    }


@pytest.fixture(scope="module")
def gw(fakes: dict) -> Iterator[GatewayClient]:
    bn, ox = fakes["binance"][0], fakes["okx"][0]
    on = {"ticker": "on", "depth": "on", "max_age_ms": MAX_AGE_MS}
    config = {
        "allow_any_ccxt_exchange": False,
        "clients": {"read_retries": 1, "retry_backoff": 0.01},
        "exchanges": {
            "bn": _route(bn, "binance", on),
            "bn-swap": _route(bn, "binance", on, options={"defaultType": "swap"}),
            "bn-auto": _route(bn, "binance", {"max_age_ms": MAX_AGE_MS}),
            "bn-off": _route(bn, "binance", {"ticker": "off", "depth": "off", "trades": "off", "records": "off"}),
            "bn-cap": _route(bn, "binance", on),
            "ox": _route(ox, "okx", on),
            "ox-off": _route(ox, "okx", {"ticker": "off", "depth": "off", "trades": "off", "records": "off"}),
            "bn-hist": _route(bn, "binance", HISTORIES),
            "ox-hist": _route(ox, "okx", HISTORIES),
            "bn-seed": _route(bn, "binance", HISTORIES),
            "bn-refuse": _route(bn, "binance", HISTORIES),
            "ox-mix": _route(ox, "okx", {**HISTORIES, "ticker": "on"}),
        },
    }
    app = create_app(parse_settings(config))
    from tests.fakes.server import BackgroundServer

    server = BackgroundServer(app).start()
    with httpx.Client(timeout=30) as http:
        client = GatewayClient(server.url, http, app)
        yield client
    server.stop()


def hub(gw: GatewayClient) -> streams.StreamHub:
    return gw.app.gateway.pool.streams


def _reply(gw: GatewayClient, route: str, method: str, params: dict) -> dict:
    reply = gw.call(route, method, params)
    assert "error" not in reply, reply
    return reply


def from_stream(reply: dict) -> bool:
    raw = reply.get("raw")
    return isinstance(raw, dict) and isinstance(raw.get("source"), dict) and raw["source"].get("from") == "stream"


def until(predicate: Callable[[], Any], timeout: float = 8.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)


def streamed(gw: GatewayClient, route: str, method: str, params: dict) -> dict:
    """Ask until the answer comes from the stream."""
    return until(lambda: (lambda r: r if from_stream(r) else None)(_reply(gw, route, method, params)))


def assert_same_depth(a: dict, b: dict) -> None:
    assert a["asks"] == b["asks"] and a["bids"] == b["bids"]


def depth_of(reply: dict) -> dict:
    return reply["data"]


def rest_calls(fake: Any, fragment: str) -> int:
    return sum(1 for _, path in fake.faults.requests if fragment in path)


def checked_book(reply: dict, limit: int) -> dict:
    book = depth_of(reply)
    asks, bids = book["asks"], book["bids"]
    assert 0 < len(asks) <= limit and 0 < len(bids) <= limit
    assert bids[0][0] < asks[0][0], "crossed book served"
    assert [a[0] for a in asks] == sorted(a[0] for a in asks)
    assert [b[0] for b in bids] == sorted((b[0] for b in bids), reverse=True)
    return book


# --- the answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "off", "symbol"), [("bn", "bn-off", "LTC_USDT"), ("ox", "ox-off", "LTC_USDT")])
def test_hot_symbol_answers_from_memory_identical_to_rest(gw, fakes, route, off, symbol):
    fake = fakes["binance" if route == "bn" else "okx"][0]
    ticker = streamed(gw, route, "ticker", {"symbol": symbol})
    rest = _reply(gw, off, "ticker", {"symbol": symbol})
    assert not from_stream(rest)
    for field in ("buy", "sell", "last", "symbol", "high", "low", "open"):
        assert ticker["data"][field] == rest["data"][field], field
    assert set(ticker["data"]) == set(rest["data"])
    assert ticker["raw"]["source"]["age_ms"] <= MAX_AGE_MS

    book = streamed(gw, route, "depth", {"symbol": symbol, "limit": 10})
    rest_book = _reply(gw, off, "depth", {"symbol": symbol, "limit": 10})
    assert_same_depth(depth_of(book), depth_of(rest_book))
    assert set(book["data"]) == set(rest_book["data"])
    checked_book(book, 10)

    # warm: no REST request for the hot symbol any more
    before = rest_calls(fake, "ticker") + rest_calls(fake, "depth") + rest_calls(fake, "books")
    for _ in range(20):
        assert from_stream(_reply(gw, route, "ticker", {"symbol": symbol}))
        assert from_stream(_reply(gw, route, "depth", {"symbol": symbol, "limit": 5}))
    assert rest_calls(fake, "ticker") + rest_calls(fake, "depth") + rest_calls(fake, "books") == before


@pytest.mark.parametrize(("route", "off"), [("bn", "bn-off"), ("ox", "ox-off")])
def test_depth_without_a_limit_has_as_many_levels_as_rest(gw, route, off):
    """REST answers the exchange's default depth without a limit; the streamed book is cut to it."""
    rest = _reply(gw, off, "depth", {"symbol": "LTC_USDT"})
    book = streamed(gw, route, "depth", {"symbol": "LTC_USDT"})
    assert len(depth_of(book)["asks"]) == len(depth_of(rest)["asks"])
    assert len(depth_of(book)["bids"]) == len(depth_of(rest)["bids"])


def test_prices_follow_the_exchange(gw, fakes):
    engine = fakes["binance"][0].engine
    streamed(gw, "bn", "ticker", {"symbol": "ETH_BTC"})
    engine.set_price("ETH/BTC", "0.06")
    until(lambda: _reply(gw, "bn", "ticker", {"symbol": "ETH_BTC"})["data"]["last"] == 0.06, timeout=3)
    engine.set_price("ETH/BTC", "0.05")


def test_futures_ticker_takes_bid_ask_from_the_streamed_book(gw):
    # binance futures tickers carry no bid/ask: the answer needs the streamed book's top
    streamed(gw, "bn-swap", "depth", {"symbol": "ETH_USDT.swap", "limit": 5})
    reply = streamed(gw, "bn-swap", "ticker", {"symbol": "ETH_USDT.swap"})
    assert reply["data"]["buy"] < reply["data"]["sell"]


def test_deeper_limit_than_streamed_goes_to_rest(gw):
    streamed(gw, "bn", "depth", {"symbol": "LTC_USDT", "limit": 5})
    assert not from_stream(_reply(gw, "bn", "depth", {"symbol": "LTC_USDT", "limit": streams.BOOK_DEPTH + 1}))


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["bn", "ox"])
def test_silence_makes_it_stale_then_rest_then_memory_again(gw, fakes, route):
    _fake, ws = fakes["binance" if route == "bn" else "okx"]
    streamed(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})
    ws.silence(None)
    try:
        time.sleep(MAX_AGE_MS / 1000 + 0.2)
        reply = _reply(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})
        assert not from_stream(reply)  # stale: REST
        checked_book(reply, 5)
    finally:
        ws.speak()
    streamed(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})


@pytest.mark.parametrize("route", ["bn", "ox"])
def test_disconnect_reconnects_and_answers_stay_correct(gw, fakes, route):
    _fake, ws = fakes["binance" if route == "bn" else "okx"]
    streamed(gw, route, "ticker", {"symbol": "BTC_USDT"})
    streamed(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})
    connects = ws.connects
    ws.refuse = True
    ws.disconnect()
    try:
        until(lambda: not from_stream(_reply(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})))
        for _ in range(5):
            checked_book(_reply(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5}), 5)
            assert _reply(gw, route, "ticker", {"symbol": "BTC_USDT"})["data"]["last"] > 0
    finally:
        ws.refuse = False
    streamed(gw, route, "depth", {"symbol": "BTC_USDT", "limit": 5})
    streamed(gw, route, "ticker", {"symbol": "BTC_USDT"})
    assert ws.connects > connects
    states = {(s["kind"], s["symbol"]): s for s in hub(gw).snapshot()[route]["streams"]}
    assert states[("depth", "BTC/USDT")]["reconnects"] >= 1


@pytest.mark.parametrize(("route", "fault"), [("bn", "gap"), ("ox", "gap"), ("ox", "bad_checksum")])
def test_sequence_gap_and_bad_checksum_drop_the_book_until_rebuilt(gw, fakes, route, fault):
    _, ws = fakes["binance" if route == "bn" else "okx"]
    streamed(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5})
    key = ("depth", "ETH/USDT", "")
    before = hub(gw).routes[route].streams[key].resyncs
    getattr(ws, fault)("ETH/USDT")
    until(lambda: hub(gw).routes[route].streams[key].resyncs > before, timeout=5)
    for _ in range(10):  # meanwhile every answer is a correct book, from REST or the rebuilt stream
        checked_book(_reply(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5}), 5)
    streamed(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5})


@pytest.mark.parametrize("route", ["bn", "ox"])
def test_a_crossed_book_is_never_served(gw, fakes, route):
    _, ws = fakes["binance" if route == "bn" else "okx"]
    streamed(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5})
    ws.cross("ETH/USDT")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        checked_book(_reply(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5}), 5)
        _ = _reply(gw, route, "ticker", {"symbol": "ETH_USDT"})
    streamed(gw, route, "depth", {"symbol": "ETH_USDT", "limit": 5})


# --- modes ------------------------------------------------------------------------------------


def test_auto_mode_subscribes_hot_symbols_and_closes_idle_ones(gw, monkeypatch):
    monkeypatch.setattr(streams, "IDLE_CLOSE_S", 1.0)
    monkeypatch.setattr(streams, "SWEEP_S", 0.2)
    symbol = {"symbol": "ETH_USDT"}
    for _ in range(streams.HOT_CALLS - 1):
        assert not from_stream(_reply(gw, "bn-auto", "ticker", symbol))
    route = hub(gw).routes["bn-auto"]
    assert ("ticker", "ETH/USDT", "") not in route.streams  # asked, not yet hot
    _reply(gw, "bn-auto", "ticker", symbol)  # hot now
    assert ("ticker", "ETH/USDT", "") in route.streams
    streamed(gw, "bn-auto", "ticker", symbol)
    assert ("depth", "ETH/USDT", "") not in route.streams  # per kind
    loop = route.streams[("ticker", "ETH/USDT", "")].task.get_loop()
    loop.call_soon_threadsafe(hub(gw).restart_sweeper)  # sweep with the short period
    until(lambda: ("ticker", "ETH/USDT", "") not in route.streams, timeout=5)


def test_cap_on_subscriptions_per_route(gw, monkeypatch):
    monkeypatch.setattr(streams, "MAX_PER_ROUTE", 1)
    streamed(gw, "bn-cap", "ticker", {"symbol": "BTC_USDT"})
    for _ in range(3):
        assert not from_stream(_reply(gw, "bn-cap", "ticker", {"symbol": "ETH_USDT"}))
    assert [k for k in hub(gw).routes["bn-cap"].streams if k[0] == "ticker"] == [("ticker", "BTC/USDT", "")]


def test_off_mode_never_subscribes(gw, fakes):
    _, _ws = fakes["binance"]
    for _ in range(5):
        assert not from_stream(_reply(gw, "bn-off", "ticker", {"symbol": "LTC_USDT"}))
        assert not from_stream(_reply(gw, "bn-off", "depth", {"symbol": "LTC_USDT", "limit": 5}))
    route = hub(gw).routes["bn-off"]
    assert not route.streams and route.client is None


def test_an_exchange_without_websockets_stays_on_rest(gw, monkeypatch):
    import ccxt.pro as ccxtpro

    no_pro = next(name for name in ("bitflyer", "bitbank", "btcbox") if not hasattr(ccxtpro, name))
    route = streams.RouteStreams(hub(gw), Venue(route="x", ccxt_id=no_pro, streams={"ticker": "on"}))
    assert route.unsupported and not route.enabled("ticker") and route.client is None


def test_status_and_metrics_show_streams(gw):
    streamed(gw, "bn", "ticker", {"symbol": "BTC_USDT"})
    data = hub(gw).snapshot()["bn"]
    assert data["answers_from_memory"] > 0 and 0 < data["memory_share"] <= 1
    assert any(s["kind"] == "ticker" and s["healthy"] and s["age_ms"] is not None for s in data["streams"])
    text = gw.http.get(f"{gw.url}/metrics").text
    assert 'fmz_gateway_stream_answers_total{kind="ticker",route="bn",source="stream"}' in text
    assert "fmz_gateway_streams{" in text


# --- trades and records (gateway/tapes.py) ------------------------------------------------------

HIST = [("bn-hist", "bn-off", "binance"), ("ox-hist", "ox-off", "okx")]
TRADES_PATH = {"binance": "aggTrades", "okx": "market/trades"}
CANDLES_PATH = {"binance": "klines", "okx": "market/candles"}


@contextlib.contextmanager
def trading(engine: Any, inst_key: str, every: float = 0.03) -> Iterator[list[dict]]:
    """Other users trade `inst_key` every `every` seconds while the block runs (the trades made)."""
    made: list[dict] = []
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            made.append(engine.public_trade(inst_key, 100 + n % 7 / 10, f"0.{n % 9 + 1}", "buy" if n % 2 else "sell"))
            stop.wait(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        stop.set()
        thread.join()


def quiet_then_both(gw: GatewayClient, route: str, off: str, method: str, params: dict) -> tuple[dict, dict]:
    """The streamed and the REST answer once the last trade's message is in (no trading meanwhile)."""
    time.sleep(0.3)
    return _reply(gw, route, method, params), _reply(gw, off, method, params)


@pytest.mark.parametrize(("route", "off", "venue"), HIST)
def test_trades_from_memory_are_rests_trades(gw, fakes, route, off, venue):
    fake = fakes[venue][0]
    params = {"symbol": "LTC_USDT", "limit": 25}
    with trading(fake.engine, "LTC/USDT") as made:
        streamed(gw, route, "trades", params)
        before = rest_calls(fake, TRADES_PATH[venue])
        for _ in range(20):  # warm: the hot symbol's trades come from memory only
            assert from_stream(_reply(gw, route, "trades", params))
            time.sleep(0.01)
        assert rest_calls(fake, TRADES_PATH[venue]) == before
    memory, rest = quiet_then_both(gw, route, off, "trades", params)
    assert from_stream(memory) and not from_stream(rest)
    assert memory["data"] == rest["data"] and len(memory["data"]) == 25
    assert memory["data"][-1]["id"] == made[-1]["id"]  # the newest trade, streamed
    assert memory["raw"]["source"]["kind"] == "trades" and len(memory["raw"]["info"]) == 25


PAGE = {"binance": 500, "okx": 100}  # the fakes' trades without a limit, as the exchanges'


@pytest.mark.parametrize(("route", "off", "venue"), HIST)
def test_trades_without_a_limit_answer_rests_page(gw, fakes, route, off, venue):
    """Without a limit REST answers its page of newest trades; memory answers as many, once a larger
    limit proved that REST's answer was a page and not everything there is."""
    engine = fakes[venue][0].engine
    for n in range(PAGE[venue] + 20 - len(engine.public_trades["ETH/USDT"])):  # more than one page
        engine.public_trade("ETH/USDT", "99.5", "0.1", "buy" if n % 2 else "sell")
    with trading(engine, "ETH/USDT"):
        streamed(gw, route, "trades", {"symbol": "ETH_USDT"})
    memory, rest = quiet_then_both(gw, route, off, "trades", {"symbol": "ETH_USDT"})
    stream = hub(gw).routes[route].streams[("trades", "ETH/USDT", "")]
    assert from_stream(memory) and stream.rest_count == PAGE[venue]
    assert memory["data"] == rest["data"] and len(rest["data"]) == PAGE[venue]


@pytest.mark.parametrize(
    ("route", "venue", "symbol", "unified"),
    [("bn-hist", "binance", "ETH_BTC", "ETH/BTC"), ("ox-hist", "okx", "ETH_USDT.swap", "ETH/USDT:USDT")],
)
def test_a_young_market_answers_trades_without_a_limit_over_rest(gw, fakes, route, venue, symbol, unified):
    """Fewer trades than REST's page: REST answers all of them, a number that grows with every
    trade; memory cannot know it, so only asks with a limit come from memory."""
    engine = fakes[venue][0].engine
    assert len(engine.public_trades[unified]) < PAGE[venue]
    with trading(engine, unified):
        streamed(gw, route, "trades", {"symbol": symbol, "limit": 5})
        for _ in range(5):
            assert not from_stream(_reply(gw, route, "trades", {"symbol": symbol}))
    assert hub(gw).routes[route].streams[("trades", unified, "")].rest_count is None


@pytest.mark.parametrize(("route", "off", "venue"), HIST)
def test_records_from_memory_are_rests_candles(gw, fakes, route, off, venue):
    fake = fakes[venue][0]
    for params in ({"symbol": "LTC_USDT", "period": 1, "limit": 10}, {"symbol": "LTC_USDT", "period": 1}):
        streamed(gw, route, "records", params)
        before = rest_calls(fake, CANDLES_PATH[venue])
        for _ in range(3):  # a minute may turn between the two answers: then ask both again
            memory, rest = _reply(gw, route, "records", params), _reply(gw, off, "records", params)
            if memory["data"][-1][0] == rest["data"][-1][0]:
                break
        assert from_stream(memory) and not from_stream(rest)
        assert memory["data"] == rest["data"]
        assert len(memory["data"]) == params.get("limit", len(rest["data"])) and len(rest["data"]) >= 10
        assert rest_calls(fake, CANDLES_PATH[venue]) == before + 1  # only the REST route's
        assert memory["raw"]["source"]["kind"] == "records" and memory["raw"]["candles"]


def test_records_of_a_built_period_come_from_streamed_base_candles(gw):
    params = {"symbol": "LTC_USDT", "period": 2, "limit": 6}  # Binance has no 2m candles: built from 1m
    memory = streamed(gw, "bn-hist", "records", params)
    for _ in range(3):
        rest = _reply(gw, "bn-off", "records", params)
        if rest["data"][-1][0] == memory["data"][-1][0]:
            break
        memory = _reply(gw, "bn-hist", "records", params)
    assert memory["data"] == rest["data"] and len(memory["data"]) == 6
    assert memory["raw"]["source"]["kind"] == "records"


@pytest.mark.parametrize(("route", "off", "venue"), HIST)
def test_trades_missed_while_disconnected_are_answered_from_rest_then_memory(gw, fakes, route, off, venue):
    """A reconnect may lose messages: the tape is emptied and joined to REST again, so the trades
    made while the stream was down are in the streamed answer afterwards."""
    engine, ws = fakes[venue][0].engine, fakes[venue][1]
    params = {"symbol": "BTC_USDT", "limit": 200}
    with trading(engine, "BTC/USDT"):
        streamed(gw, route, "trades", params)
    stream = hub(gw).routes[route].streams[("trades", "BTC/USDT", "")]
    reconnects = stream.reconnects
    ws.refuse = True
    ws.disconnect()
    try:
        until(lambda: stream.reconnects > reconnects)
        missed = [engine.public_trade("BTC/USDT", "100.5", "0.3", "sell") for _ in range(3)]
        reply = _reply(gw, route, "trades", params)
        assert not from_stream(reply)  # the emptied tape answers nothing
        assert [t["id"] for t in reply["data"][-3:]] == [t["id"] for t in missed]
    finally:
        ws.refuse = False
    with trading(engine, "BTC/USDT"):
        streamed(gw, route, "trades", params)
    memory, rest = quiet_then_both(gw, route, off, "trades", params)
    assert from_stream(memory) and memory["data"] == rest["data"]
    ids = [t["id"] for t in memory["data"]]
    assert all(t["id"] in ids for t in missed) and len(ids) == 200


@pytest.mark.parametrize(("route", "off", "venue"), HIST)
def test_a_silent_trade_stream_goes_stale_and_rest_answers(gw, fakes, route, off, venue):
    engine, ws = fakes[venue][0].engine, fakes[venue][1]
    params = {"symbol": "LTC_USDT", "limit": 10}
    with trading(engine, "LTC/USDT"):
        streamed(gw, route, "trades", params)
    streams_of_route = hub(gw).routes[route]
    streams_of_route.max_age_ms = 300
    ws.silence(None)
    try:
        time.sleep(0.4)
        silent = engine.public_trade("LTC/USDT", "101.1", "0.2", "buy")  # not sent while silent
        reply = _reply(gw, route, "trades", params)
        assert not from_stream(reply) and reply["data"][-1]["id"] == silent["id"]
    finally:
        ws.speak()
        streams_of_route.max_age_ms = HISTORIES["max_age_ms"]

    def streamed_with_silent_trade() -> bool:
        reply = _reply(gw, route, "trades", params)
        return from_stream(reply) and silent["id"] in [t["id"] for t in reply["data"]]

    with trading(engine, "LTC/USDT", every=0.1):  # the stream catches up: the trade sent late is in memory
        until(streamed_with_silent_trade, timeout=5)


def test_a_connection_lost_while_the_stream_seeds_itself_leaves_no_hole(gw, fakes):
    """The connection drops while the stream waits for its own REST seed (no watch pending, so no
    error reaches it): the connection's new generation tells, and the tape starts again."""
    fake, ws = fakes["binance"]
    params = {"symbol": "LTC_USDT", "limit": 200}
    fake.faults.latency_ms = 1500  # the seed's REST is slow; the websocket is not
    try:
        with trading(fake.engine, "LTC/USDT"):
            threading.Thread(target=lambda: gw.call("bn-seed", "trades", params), daemon=True).start()
            route = until(lambda: hub(gw) and hub(gw).routes.get("bn-seed"))
            stream = until(lambda: route.streams.get(("trades", "LTC/USDT", "")))
            until(lambda: stream.next_seed > 0)  # its REST seed is in flight
            time.sleep(0.2)
            ws.disconnect()
            time.sleep(0.8)
            fake.faults.latency_ms = 0
            streamed(gw, "bn-seed", "trades", params)
    finally:
        fake.faults.latency_ms = 0
    memory, rest = quiet_then_both(gw, "bn-seed", "bn-off", "trades", params)
    assert from_stream(memory) and memory["data"] == rest["data"]


def test_a_silent_stream_closing_a_shared_connection_does_not_end_the_others(gw, fakes, monkeypatch):
    """OKX carries every public channel on one connection: a silent ticker closes it, which cancels
    the trade stream's watch too; that is a lost connection for the trade stream, not its end."""
    monkeypatch.setattr(streams, "SILENT_RECONNECT_S", 1.0)
    fake, ws = fakes["okx"]
    with trading(fake.engine, "ETH/USDT"):
        streamed(gw, "ox-mix", "trades", {"symbol": "ETH_USDT", "limit": 5})
    streamed(gw, "ox-mix", "ticker", {"symbol": "LTC_USDT"})
    trades = hub(gw).routes["ox-mix"].streams[("trades", "ETH/USDT", "")]
    ws.silence(None)
    try:
        time.sleep(1.6)  # the ticker's watch times out and its connection is closed
    finally:
        ws.speak()
    with trading(fake.engine, "ETH/USDT"):
        streamed(gw, "ox-mix", "trades", {"symbol": "ETH_USDT", "limit": 5})
    assert not trades.task.done() and trades.reconnects >= 1


def test_closing_a_trade_stream_unsubscribes_what_it_subscribed(gw, fakes):
    """Binance's trades are subscribed as aggTrade (REST's ids): closing unsubscribes aggTrade."""
    fake, ws = fakes["binance"]
    with trading(fake.engine, "ETH/BTC"):
        streamed(gw, "bn-hist", "trades", {"symbol": "ETH_BTC", "limit": 5})
    route = hub(gw).routes["bn-hist"]
    stream = route.streams[("trades", "ETH/BTC", "")]

    def subscribed() -> list[str]:
        return [s for c in list(ws.connections) if not c.closed for s in list(c.subscriptions)]

    assert "ethbtc@aggTrade" in subscribed()
    asyncio.run_coroutine_threadsafe(hub(gw).stop(route, ("trades", "ETH/BTC", "")), stream.task.get_loop()).result(10)
    until(lambda: "ethbtc@aggTrade" not in subscribed(), timeout=3)


def test_a_replaced_connection_of_the_stream_is_noticed():
    """Connections are numbered as ccxt.pro opens them, and a stream's watch notes the URL it
    subscribes on: the stream notices when that connection is gone or opened again, not when
    another one opens or closes (Binance gives subscriptions connections of their own)."""

    class Client:
        clients: dict = {}

        def on_connected(self, ws: Any, message: Any = None) -> None:
            return None

        def watch_multiple(self, url: str, hashes: list, *rest: Any) -> str:
            return url

        def watch(self, url: str, message_hash: str, *rest: Any) -> str:
            return url

    client = Client()
    streams._count_connections(client)
    stream = streams.Stream("trades", "BTC/USDT")

    def connect(url: str) -> None:
        ws = type("Ws", (), {})()
        client.on_connected(ws)
        client.clients[url] = ws

    token = streams.WATCHING.set(stream)
    try:
        assert client.watch_multiple("wss://a", ["trade::BTC/USDT"]) == "wss://a"
    finally:
        streams.WATCHING.reset(token)
    assert stream.url == "wss://a"
    connect("wss://a")
    assert not streams._reconnected(client, stream)  # first sight
    connect("wss://b")
    del client.clients["wss://b"]
    assert not streams._reconnected(client, stream)  # another subscription's connection
    connect("wss://a")  # the stream's connection opened again
    assert streams._reconnected(client, stream)
    assert not streams._reconnected(client, stream)
    del client.clients["wss://a"]  # gone (and not yet back)
    assert streams._reconnected(client, stream)


def test_a_seeded_tape_is_checked_against_rest_again(gw, fakes, monkeypatch):
    """A trade that REST reports otherwise than the stream sent it (here: changed at the exchange
    after it was streamed) is caught by the next check: the tape starts again, and its answers
    are REST's once more."""
    monkeypatch.setattr(streams, "VERIFY_FIRST_S", 0.3)
    engine = fakes["binance"][0].engine
    params = {"symbol": "ETH_USDT", "limit": 30}
    with trading(engine, "ETH/USDT"):
        streamed(gw, "bn-seed", "trades", params)
        stream = hub(gw).routes["bn-seed"].streams[("trades", "ETH/USDT", "")]
        with engine.lock:
            engine.public_trades["ETH/USDT"][-5]["qty"] += 1  # streamed already; REST now says otherwise
        until(lambda: stream.disagreements == 1, timeout=5)
        until(lambda: stream.tape.seeded, timeout=5)
    memory, rest = quiet_then_both(gw, "bn-seed", "bn-off", "trades", params)
    assert from_stream(memory) and memory["data"] == rest["data"]


def test_a_stream_that_keeps_disagreeing_with_rest_is_refused(gw, fakes):
    """Three disagreements in a row (an aggregating or id-less stream): the route answers that kind
    over REST only, its trade streams are closed, and the status says why."""
    with trading(fakes["binance"][0].engine, "BTC/USDT"):
        streamed(gw, "bn-refuse", "trades", {"symbol": "BTC_USDT", "limit": 5})
    route = hub(gw).routes["bn-refuse"]
    loop = route.streams[("trades", "BTC/USDT", "")].task.get_loop()
    stream = streams.Stream("trades", "ETH/USDT")
    streamed_trade = {"id": "7", "timestamp": 7, "price": 1.0, "amount": 3.0, "side": "buy"}
    rest = [{**streamed_trade, "id": str(n), "timestamp": n, "amount": 1.0} for n in range(5, 8)]

    async def disagree() -> list[str]:
        verdicts = []
        for _ in range(streams.MISMATCHES_TO_REFUSE):
            stream.tape.extend([streamed_trade])
            verdicts.append(route.offered(stream, rest, unlimited=False))
        return verdicts

    assert asyncio.run_coroutine_threadsafe(disagree(), loop).result(5) == ["mismatch"] * 3
    assert not route.enabled("trades") and "disagrees" in route.refused["trades"]
    until(lambda: ("trades", "BTC/USDT", "") not in route.streams, timeout=3)
    assert not from_stream(_reply(gw, "bn-refuse", "trades", {"symbol": "BTC_USDT", "limit": 5}))
    assert route.enabled("records")
    assert hub(gw).snapshot()["bn-refuse"]["refused"] == {"trades": route.refused["trades"]}


def test_rests_page_is_learnt_from_answers_without_a_limit(gw, fakes):
    """The same number of items twice while the window moved: a page (memory may answer that many
    without a limit); a different number later: not a page after all."""
    with trading(fakes["binance"][0].engine, "LTC/USDT"):
        streamed(gw, "bn-hist", "records", {"symbol": "LTC_USDT", "period": 1, "limit": 3})
    route = hub(gw).routes["bn-hist"]
    stream = streams.Stream("trades", "XRP/USDT")

    def page(first: int, n: int) -> list[dict]:
        trade = {"price": 1.0, "amount": 1.0, "side": "buy"}
        return [{**trade, "id": str(i), "timestamp": i} for i in range(first, first + n)]

    route.offered(stream, page(1, 50), unlimited=True)
    route.offered(stream, page(1, 50), unlimited=True)  # nothing happened in between: proves nothing
    assert stream.rest_count is None
    route.offered(stream, page(3, 50), unlimited=False)  # with a limit: not REST's page
    assert stream.rest_count is None
    route.offered(stream, page(5, 50), unlimited=True)
    assert stream.rest_count == 50 and stream.rest_max == 50
    route.offered(stream, page(5, 52), unlimited=True)  # grew: everything there is, not a page
    assert stream.rest_count is None


def _bare_route(client: Any = None) -> streams.RouteStreams:
    """A RouteStreams without a hub or connection: for the pieces that only keep books."""
    route = streams.RouteStreams.__new__(streams.RouteStreams)
    route.venue = Venue(route="bare", ccxt_id="binance")
    route.streams, route.refused, route.ws_has, route.closing, route.client = {}, {}, {}, set(), client
    return route


@pytest.mark.parametrize(
    ("unlimited", "probe", "page"),
    [
        (range(1, 38), range(1, 39), None),  # everything there is, and one trade more meanwhile: not a page
        (range(11, 51), range(10, 51), 40),  # the probe reached further back: a page of 40
    ],
)
async def test_the_seed_learns_rests_page_only_when_a_larger_limit_reaches_further_back(unlimited, probe, page):
    def trades(ids: range) -> list[dict]:
        return [{"id": str(i), "timestamp": i, "price": 1.0, "amount": 1.0, "side": "buy"} for i in ids]

    class Rest:
        async def fetch_trades(self, symbol: str, since: Any = None, limit: int | None = None) -> list[dict]:
            return trades(unlimited if limit is None else probe)

    stream = streams.Stream("trades", "BTC/USDT")
    stream.tape.extend(trades(range(30, 36)))
    await streams.StreamHub._seed(None, _bare_route(Rest()), stream)
    assert stream.tape.seeded and stream.rest_count == page


async def test_a_loop_that_is_no_longer_its_streams_ends():
    """A cancellation lost in wait_for must not leave a stopped stream's loop running."""
    hub_ = streams.StreamHub(None)
    route = _bare_route()
    hub_.routes["bare"] = route
    stream = streams.Stream("trades", "BTC/USDT")
    await asyncio.wait_for(hub_._run(route, stream), 1)  # not (or no longer) in route.streams: returns


def test_disagreements_far_apart_do_not_refuse():
    route = _bare_route()
    stream = streams.Stream("trades", "BTC/USDT")
    long_ago = time.monotonic() - streams.REFUSE_WINDOW_S - 1
    stream.disagreed_at.extend([long_ago] * (streams.MISMATCHES_TO_REFUSE - 1))
    streamed_trade = {"id": "7", "timestamp": 7, "price": 1.0, "amount": 3.0, "side": "buy"}
    stream.tape.extend([streamed_trade])
    assert route.offered(stream, [{**streamed_trade, "amount": 1.0}], unlimited=False) == "mismatch"
    assert "trades" not in route.refused
