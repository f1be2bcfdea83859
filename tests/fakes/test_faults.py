"""Faults that lose or garble the answer to a request the exchange DID handle, driven by real ccxt.

Each case places (or cancels) an order with unmodified ccxt 4.5.90 against the fake Binance
(spot /api/v3 and USD-M /fapi) or the fake OKX, with one fault from tests/fakes/faults.py on the
order path, and pins two things: what ccxt raises (the exact class, in the test id) or returns,
and that the engine really holds the order (or has really cancelled it) afterwards.

What ccxt raises, by fault (place and cancel alike unless noted):

    accept_then_5xx(502 or 503), any page                    ExchangeNotAvailable (ccxt's httpExceptions)
    accept_then_5xx(504)                                     RequestTimeout
    binance_status_unknown(-1007), any 5xx or 408            RequestTimeout
    binance_status_unknown(-1006)                            OperationFailed (not a NetworkError)
    okx_status_unknown() (50004, HTTP 400)                   RequestTimeout
    truncated("length") / truncated("chunked")               ExchangeError (aiohttp ClientPayloadError)
    truncated("short") (a 200 with half a JSON body)         no exception: an order dict with id None
    answer_lost() on POST (all placements, OKX cancels)      ExchangeNotAvailable
    answer_lost() on Binance's DELETE cancel                 OrderNotFound: aiohttp re-sends an idempotent
                                                             request whose connection dropped, and the
                                                             re-sent cancel finds the order already cancelled
    handled_late(answer="drop") on POST                      ExchangeNotAvailable; the order appears later
    handled_late(answer=502)                                 ExchangeNotAvailable; the order appears later
    handled_late(answer="drop") on Binance's DELETE cancel   no exception: aiohttp's re-sent DELETE cancels
                                                             at once; the late copy is refused (-2011)
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import ccxt.async_support as ccxt
import pytest

from tests.fakes import binance, faults, okx
from tests.fakes.engine import EngineError, Order
from tests.fakes.server import BackgroundServer, Fault, FaultInjector

_ids = itertools.count(1)
OKX_PASSPHRASE = "Fault-Passphrase-1"


@dataclass(frozen=True)
class Route:
    """Where one kind of order lives: its venue, market and order paths."""

    name: str
    venue: str  # binance | okx
    symbol: str
    amount: float
    price: float
    place: tuple[str, str]  # (verb, path)
    cancel: tuple[str, str]


ROUTES = {
    "binance": Route(
        "binance", "binance", "BTC/USDT", 0.01, 50000, ("POST", "/api/v3/order"), ("DELETE", "/api/v3/order")
    ),
    "binance-usdm": Route(
        "binance-usdm",
        "binance",
        "BTC/USDT:USDT",
        0.01,
        50000,
        ("POST", "/fapi/v1/order"),
        ("DELETE", "/fapi/v1/order"),
    ),
    "okx": Route(
        "okx",
        "okx",
        "BTC/USDT",
        0.01,
        50000,
        ("POST", "/api/v5/trade/batch-orders"),
        ("POST", "/api/v5/trade/cancel-order"),
    ),
}


def _start(venue: str) -> SimpleNamespace:
    module = binance if venue == "binance" else okx
    engine = module.default_engine()
    credentials: dict[str, Any] = {}
    injector = FaultInjector(module.create_app(engine, credentials))
    server = BackgroundServer(injector).start()
    fake = SimpleNamespace(venue=venue, engine=engine, credentials=credentials, faults=injector, server=server)
    fake.url = server.url
    fake.markets = asyncio.run(_load_markets(fake))
    return fake


def _client(fake: SimpleNamespace, key: str | None = None) -> Any:
    config: dict[str, Any] = {"enableRateLimit": False, "timeout_on_exit": 0}
    if fake.venue == "binance":
        if key:
            config.update(apiKey=key, secret=fake.credentials[key])
        exchange = ccxt.binance(config)
        exchange.urls["api"] = {n: re.sub(r"^https?://[^/]+", fake.url, u) for n, u in exchange.urls["api"].items()}
    else:
        if key:
            config.update(apiKey=key, secret=fake.credentials[key][0], password=OKX_PASSPHRASE)
        exchange = ccxt.okx(config)
        exchange.urls["api"] = {"rest": fake.url}
    return exchange


async def _load_markets(fake: SimpleNamespace) -> Any:
    exchange = _client(fake)
    try:
        await exchange.load_markets()
    finally:
        await exchange.close()
    return exchange


@pytest.fixture(scope="module")
def fakes():
    started = {venue: _start(venue) for venue in ("binance", "okx")}
    yield started
    for fake in started.values():
        fake.server.stop()


@dataclass
class Trader:
    """A ccxt client on a fresh account of one route's fake."""

    route: Route
    fake: SimpleNamespace
    key: str
    exchange: Any

    @property
    def engine(self):
        return self.fake.engine

    def inject(self, fault: Fault, what: str = "place", times: int = 1) -> None:
        verb, path = self.route.place if what == "place" else self.route.cancel
        fault.method = verb
        self.fake.faults.inject(fault, path, times)

    async def place(self, client_id: str) -> dict:
        r = self.route
        return await self.exchange.create_order(
            r.symbol, "limit", "buy", r.amount, r.price, {"clientOrderId": client_id}
        )

    async def cancel(self, order_id: str) -> dict:
        return await self.exchange.cancel_order(order_id, self.route.symbol)

    def held(self, client_id: str) -> Order | None:
        """The engine's order with this client id, if the exchange has it."""
        try:
            return self.engine.find_client_order(self.key, client_id)
        except EngineError:
            return None

    def orders(self) -> list[Order]:
        return self.engine.orders_of(self.key)


@pytest.fixture
async def trader_for(fakes):
    made: list[Trader] = []

    def make(route_name: str) -> Trader:
        route = ROUTES[route_name]
        fake = fakes[route.venue]
        key = f"fault-key-{next(_ids)}"
        fake.credentials[key] = f"secret-{key}" if route.venue == "binance" else (f"secret-{key}", OKX_PASSPHRASE)
        exchange = _client(fake, key)
        exchange.set_markets_from_exchange(fake.markets)
        trader = Trader(route, fake, key, exchange)
        made.append(trader)
        return trader

    yield make
    for trader in made:
        await trader.exchange.close()
    for fake in fakes.values():
        leftover = list(fake.faults.faults)
        fake.faults.faults.clear()
        deadline = time.monotonic() + 10
        while fake.faults.late_pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not leftover, f"faults never struck: {leftover}"


def client_id() -> str:
    return f"flt{next(_ids)}x{int(time.time() * 1000) % 10**8}"  # alphanumeric: valid on both venues


NO_ID = "returns an order without id"
ALL = tuple(ROUTES)
BINANCE = ("binance", "binance-usdm")

# (fault factory, routes, {op: expected}) ; expected: a ccxt exception class or NO_ID
KINDS: list[tuple[str, Callable[[], Fault], tuple[str, ...], dict[str, Any]]] = [
    ("accept_then_502_nginx", lambda: faults.accept_then_5xx(502), ALL, {"place": ccxt.ExchangeNotAvailable}),
    ("accept_then_504_nginx", lambda: faults.accept_then_5xx(504), ALL, {"place": ccxt.RequestTimeout}),
    (
        "accept_then_502_cloudfront",
        lambda: faults.accept_then_5xx(502, "cloudfront"),
        ALL,
        {"place": ccxt.ExchangeNotAvailable},
    ),
    (
        "accept_then_502_cloudflare",
        lambda: faults.accept_then_5xx(502, "cloudflare"),
        ALL,
        {"place": ccxt.ExchangeNotAvailable},
    ),
    (
        "binance_1007_http503",
        lambda: faults.binance_status_unknown(-1007, 503),
        BINANCE,
        {"place": ccxt.RequestTimeout},
    ),
    (
        "binance_1007_http408",
        lambda: faults.binance_status_unknown(-1007, 408),
        BINANCE,
        {"place": ccxt.RequestTimeout},
    ),
    (
        "binance_1006_http500",
        lambda: faults.binance_status_unknown(-1006, 500),
        BINANCE,
        {"place": ccxt.OperationFailed},
    ),
    ("okx_50004_http400", faults.okx_status_unknown, ("okx",), {"place": ccxt.RequestTimeout}),
    ("truncated_length", lambda: faults.truncated("length"), ALL, {"place": ccxt.ExchangeError}),
    ("truncated_chunked", lambda: faults.truncated("chunked"), ALL, {"place": ccxt.ExchangeError}),
    ("truncated_short", lambda: faults.truncated("short"), ALL, {"place": NO_ID}),
    (
        "answer_lost",
        faults.answer_lost,
        ALL,
        {
            "place": ccxt.ExchangeNotAvailable,
            "cancel-binance": ccxt.OrderNotFound,
            "cancel-okx": ccxt.ExchangeNotAvailable,
        },
    ),
]


def _expected(outcomes: dict[str, Any], op: str, route: str) -> Any:
    venue = ROUTES[route].venue
    return outcomes.get(f"{op}-{venue}", outcomes.get(op, outcomes["place"]))


def _label(expected: Any) -> str:
    return "NoId" if expected is NO_ID else expected.__name__


def _cases(op: str) -> list:
    return [
        pytest.param(route, make, expected := _expected(outcomes, op, route), id=f"{route}-{kind}-{_label(expected)}")
        for kind, make, routes, outcomes in KINDS
        for route in routes
    ]


async def _outcome(call: Any, expected: Any) -> dict | None:
    """Run the ccxt call; assert it raised exactly `expected` (or returned an order without id)."""
    if expected is NO_ID:
        order = await call
        assert order["id"] is None and order["status"] is None, order
        return order
    with pytest.raises(ccxt.BaseError) as caught:
        await call
    assert type(caught.value) is expected, f"{type(caught.value).__name__}: {caught.value}"
    return None


@pytest.mark.parametrize(("route", "make", "expected"), _cases("place"))
async def test_place(trader_for, route: str, make: Callable[[], Fault], expected: Any):
    """The order is placed although ccxt saw the fault: exactly one order, open, at the exchange."""
    trader = trader_for(route)
    trader.inject(make())
    cid = client_id()
    await _outcome(trader.place(cid), expected)
    order = trader.held(cid)
    assert order is not None and order.is_open
    assert [o.client_id for o in trader.orders()] == [cid]
    fetched = await trader.exchange.fetch_order(None, trader.route.symbol, {"clientOrderId": cid})
    assert fetched["id"] == order.id and fetched["status"] == "open"


@pytest.mark.parametrize(("route", "make", "expected"), _cases("cancel"))
async def test_cancel(trader_for, route: str, make: Callable[[], Fault], expected: Any):
    """The order is cancelled although ccxt saw the fault."""
    trader = trader_for(route)
    placed = await trader.place(client_id())
    trader.inject(make(), "cancel")
    await _outcome(trader.cancel(placed["id"]), expected)
    assert trader.engine.get_order(placed["id"]).status == "canceled"
    fetched = await trader.exchange.fetch_order(placed["id"], trader.route.symbol)
    assert fetched["status"] == "canceled"


LATE_S = 0.8  # short for the suite; test_late_by_3s_is_inside_binance_recv_window covers the bench's range


async def _until(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until predicate() holds; fails after `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("route", "answer"),
    [pytest.param(r, a, id=f"{r}-{a}-ExchangeNotAvailable") for r in ALL for a in ("drop", 502)],
)
async def test_place_handled_late(trader_for, route: str, answer: str | int):
    """The answer is lost at once; a look-up right after finds nothing, one after the delay finds the order."""
    trader = trader_for(route)
    trader.inject(faults.handled_late(LATE_S, answer))
    cid = client_id()
    started = time.monotonic()
    await _outcome(trader.place(cid), ccxt.ExchangeNotAvailable)
    assert trader.held(cid) is None
    with pytest.raises(ccxt.OrderNotFound):
        await trader.exchange.fetch_order(None, trader.route.symbol, {"clientOrderId": cid})
    await _until(lambda: trader.held(cid) is not None, LATE_S + 5)
    assert time.monotonic() - started >= LATE_S * 0.9
    fetched = await trader.exchange.fetch_order(None, trader.route.symbol, {"clientOrderId": cid})
    assert fetched["status"] == "open" and [o.client_id for o in trader.orders()] == [cid]


@pytest.mark.parametrize(
    ("route", "answer"),
    [pytest.param(r, 502, id=f"{r}-502-ExchangeNotAvailable") for r in ALL]
    + [pytest.param("okx", "drop", id="okx-drop-ExchangeNotAvailable")],
)
async def test_cancel_handled_late(trader_for, route: str, answer: str | int):
    """The cancel's answer is lost at once; the order stays open until the late cancel lands."""
    trader = trader_for(route)
    placed = await trader.place(client_id())
    trader.inject(faults.handled_late(LATE_S, answer), "cancel")
    await _outcome(trader.cancel(placed["id"]), ccxt.ExchangeNotAvailable)
    order = trader.engine.get_order(placed["id"])
    assert order.is_open
    assert (await trader.exchange.fetch_order(placed["id"], trader.route.symbol))["status"] == "open"
    await _until(lambda: order.status == "canceled", LATE_S + 5)


@pytest.mark.parametrize("route", BINANCE)
async def test_binance_cancel_dropped_late_is_resent_by_aiohttp_and_succeeds(trader_for, route: str):
    """A dropped DELETE is re-sent once by aiohttp (an idempotent verb): the re-sent cancel lands at
    once and ccxt returns it as cancelled; the late original is then refused (-2011) and changes nothing."""
    trader = trader_for(route)
    placed = await trader.place(client_id())
    trader.inject(faults.handled_late(LATE_S, "drop"), "cancel")
    cancelled = await trader.cancel(placed["id"])
    assert cancelled["status"] == "canceled" and trader.engine.get_order(placed["id"]).status == "canceled"
    assert [m for m, p in trader.fake.faults.requests[-2:]] == ["DELETE", "DELETE"]
    await _until(lambda: trader.fake.faults.late_pending == 0, LATE_S + 5)
    assert trader.engine.get_order(placed["id"]).status == "canceled"


@pytest.mark.parametrize("route", BINANCE)
async def test_binance_cancel_dropped_twice_raises_network_error(trader_for, route: str):
    """With the re-sent DELETE dropped as well, ccxt raises ExchangeNotAvailable; the first one cancelled."""
    trader = trader_for(route)
    placed = await trader.place(client_id())
    trader.inject(faults.answer_lost(), "cancel", times=2)
    await _outcome(trader.cancel(placed["id"]), ccxt.ExchangeNotAvailable)
    assert trader.engine.get_order(placed["id"]).status == "canceled"


async def test_late_by_3s_is_inside_binance_recv_window(trader_for):
    """ccxt signs with recvWindow=10000: a request handled 3 s late still passes the fake's timestamp check."""
    trader = trader_for("binance")
    trader.inject(faults.handled_late(3.0, 502))
    cid = client_id()
    await _outcome(trader.place(cid), ccxt.ExchangeNotAvailable)
    waited = await _until(lambda: trader.held(cid) is not None, 8)
    assert waited >= 2.5


async def test_a_retry_with_a_new_client_id_duplicates_the_order(trader_for):
    """Why the faults matter: a strategy that re-sends after a lost answer places a second order."""
    trader = trader_for("okx")
    trader.inject(faults.okx_status_unknown())
    with pytest.raises(ccxt.RequestTimeout):
        await trader.place(client_id())
    await trader.place(client_id())
    assert len(trader.orders()) == 2


# --- the wire format of each fault ------------------------------------------------------------


def _raw_get(url: str, path: str) -> tuple[bytes, bytes]:
    """One HTTP/1.1 GET on a fresh socket, read to EOF: (head, body as received)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head, body


def _headers(head: bytes, name: str) -> list[str]:
    found = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode().partition(":")
        if key.strip().lower() == name:
            found.append(value.strip())
    return found


def _header(head: bytes, name: str) -> str | None:
    return next(iter(_headers(head, name)), None)


PRICE = "/api/v3/ticker/price?symbol=BTCUSDT"


def test_truncated_length_promises_the_whole_body_and_closes_early(fakes):
    fake = fakes["binance"]
    _, whole = _raw_get(fake.url, PRICE)
    fake.faults.inject(faults.truncated("length", keep=0.5), "/api/v3/ticker/price")
    head, body = _raw_get(fake.url, PRICE)
    assert head.startswith(b"HTTP/1.1 200") and int(_header(head, "content-length")) == len(whole)
    assert body == whole[: len(whole) // 2]


def test_truncated_short_is_a_complete_answer_with_half_a_body(fakes):
    fake = fakes["binance"]
    _, whole = _raw_get(fake.url, PRICE)
    fake.faults.inject(faults.truncated("short", keep=0.5), "/api/v3/ticker/price")
    head, body = _raw_get(fake.url, PRICE)
    assert int(_header(head, "content-length")) == len(body) == len(whole) // 2
    assert body == whole[: len(whole) // 2]


def test_truncated_chunked_never_ends_its_chunked_body(fakes):
    fake = fakes["binance"]
    _, whole = _raw_get(fake.url, PRICE)
    fake.faults.inject(faults.truncated("chunked", keep=0.5), "/api/v3/ticker/price")
    head, body = _raw_get(fake.url, PRICE)
    assert _header(head, "transfer-encoding") == "chunked" and _header(head, "content-length") is None
    assert whole[: len(whole) // 2] in body and not body.endswith(b"0\r\n\r\n")


def test_drop_sends_nothing(fakes):
    """`drop` (and `lose_answer`) close the connection without a byte, not with uvicorn's 500."""
    fake = fakes["binance"]
    fake.faults.inject(Fault(drop=True), "/api/v3/ticker/price")
    assert _raw_get(fake.url, PRICE) == (b"", b"")


def test_status_unknown_bodies_are_each_exchanges_own(fakes):
    fake = fakes["binance"]
    fake.faults.inject(faults.binance_status_unknown(), "/api/v3/ticker/price")
    head, body = _raw_get(fake.url, PRICE)
    assert head.startswith(b"HTTP/1.1 503") and _header(head, "content-type") == "application/json"
    assert body == (
        b'{"code":-1007,"msg":"Timeout waiting for response from backend server. '
        b'Send status unknown; execution status unknown."}'
    )
    fake = fakes["okx"]
    fake.faults.inject(faults.okx_status_unknown(), "/api/v5/public/time")
    head, body = _raw_get(fake.url, "/api/v5/public/time")
    assert head.startswith(b"HTTP/1.1 400")
    assert body.startswith(b'{"code":"50004","msg":"API endpoint request timeout (does not mean that the request')
    assert body.endswith(b'please check the request result)","data":[]}')


def test_accept_then_5xx_is_an_html_page(fakes):
    fake = fakes["binance"]
    fake.faults.inject(faults.accept_then_5xx(502, "cloudfront"), "/api/v3/ticker/price")
    head, body = _raw_get(fake.url, PRICE)
    assert head.startswith(b"HTTP/1.1 502") and _header(head, "content-type") == "text/html"
    assert "CloudFront" in _headers(head, "server") and b"Generated by cloudfront" in body


def test_fault_rejects_contradictions():
    with pytest.raises(ValueError):
        Fault(truncate="half")
    with pytest.raises(ValueError):
        Fault(handled=True, handle_after=1.0)
    with pytest.raises(ValueError):
        faults.truncated(keep=1.0)


def test_injector_records_what_struck(fakes):
    fake = fakes["okx"]
    before = len(fake.faults.fired)
    fault = faults.accept_then_5xx(503)
    fake.faults.inject(fault, "/api/v5/public/time")
    _raw_get(fake.url, "/api/v5/public/time")
    assert fake.faults.fired[before:] == [("GET", "/api/v5/public/time", fault)]


async def test_a_fault_for_one_api_key_spares_the_others(trader_for):
    """`api_key` aims a fault at one account's requests (how the chaos bench targets one trade)."""
    mine, other = trader_for("binance"), trader_for("binance")
    fault = faults.binance_status_unknown(method="POST")
    fault.api_key = mine.key
    mine.fake.faults.inject(fault, "/api/v3/order")
    await other.place(client_id())  # not struck
    assert mine.fake.faults.faults
    with pytest.raises(ccxt.RequestTimeout):
        await mine.place(client_id())
    assert len(mine.orders()) == len(other.orders()) == 1


def test_withdraw_takes_back_a_fault_that_never_struck(fakes):
    injector = fakes["okx"].faults
    fault = faults.answer_lost()
    injector.inject(fault, "/nowhere", times=2)
    assert injector.withdraw(fault) is True and not injector.faults
    assert injector.withdraw(fault) is False
