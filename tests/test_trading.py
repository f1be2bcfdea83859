"""Order placement details beyond the lifecycle tests: idempotency per FMZ nonce, direction state."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Account


def trade_body(account: Account, nonce: int, price: str = "45000", kind: str = "buy") -> dict:
    return {
        "access_key": account.access_key,
        "secret_key": account.secret_key,
        "nonce": nonce,
        "method": "trade",
        "params": {"symbol": "BTC_USDT", "type": kind, "price": price, "amount": "0.001"},
    }


def post_trade(account: Account, nonce: int, price: str = "45000") -> dict:
    body = trade_body(account, nonce, price)
    return account.gateway.http.post(f"{account.gateway.url}/{account.route}", json=body).json()


def post_to_replica(account: Account, fake_binance, fake_okx, body: dict) -> dict:
    """`body` posted to a second gateway started now on the same exchanges (a restart, a replica)."""
    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.conftest import gateway_config
    from tests.fakes.server import BackgroundServer

    replica = BackgroundServer(create_app(parse_settings(gateway_config(fake_binance, fake_okx)))).start()
    try:
        return account.gateway.http.post(f"{replica.url}/{account.route}", json=body).json()
    finally:
        replica.stop()


def test_a_resent_request_does_not_place_a_second_order(account: Account):
    first = post_trade(account, 1730275031047002001)
    again = post_trade(account, 1730275031047002001)
    assert first["data"]["id"] == again["data"]["id"]
    assert len(account.data("orders", {"symbol": "BTC_USDT"})) == 1
    other = post_trade(account, 1730275031047002002)  # a new call: a new order
    assert other["data"]["id"] != first["data"]["id"]
    assert len(account.data("orders", {"symbol": "BTC_USDT"})) == 2


def test_concurrent_duplicates_share_one_placement(account: Account):
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: post_trade(account, 1730275031047009999, "44000"), range(6)))
    assert len({r["data"]["id"] for r in replies}) == 1
    assert len(account.data("orders", {"symbol": "BTC_USDT"})) == 1


def test_same_nonce_with_other_params_is_another_order(account: Account):
    a = post_trade(account, 1730275031047003000, "43000")
    b = post_trade(account, 1730275031047003000, "42000")
    assert a["data"]["id"] != b["data"]["id"]


@pytest.mark.parametrize(
    ("exchange_id", "digits", "side", "price", "expected"),
    [
        ("bitfinex", 5, "buy", "12345.6", "12345"),
        ("bitfinex", 5, "sell", "12344.4", "12345"),
        ("bitfinex", 5, "buy", "0.123456", "0.12345"),
        ("bithumb", 4, "buy", "12345.6", "12340"),
        ("bitfinex", 5, "buy", "12345", "12345"),  # already on the grid: unchanged
    ],
)
def test_limit_prices_round_in_the_callers_favour_under_significant_digits(exchange_id, digits, side, price, expected):
    from decimal import Decimal
    from types import SimpleNamespace

    import ccxt.async_support as ccxt

    from gateway.trading import favourable_price

    exchange = getattr(ccxt, exchange_id)()
    market = {
        "id": "X",
        "symbol": "BTC/USD",
        "base": "BTC",
        "quote": "USD",
        "type": "spot",
        "spot": True,
        "precision": {"price": digits, "amount": 8},
        "limits": {},
    }
    exchange.set_markets([market])
    rounded = favourable_price(SimpleNamespace(exchange=exchange), exchange.markets["BTC/USD"], Decimal(price), side)
    assert rounded == Decimal(expected)


def test_tick_size_prices_round_down_for_buys_and_up_for_sells(account: Account):
    buy = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000.019", "amount": "0.001"})
    sell = account.data("trade", {"symbol": "BTC_USDT", "type": "sell", "price": "70000.011", "amount": "0.001"})
    tick = float(account.fake.engine.instruments["BTC/USDT"].tick)
    assert account.data("order", {"id": buy["id"]})["price"] == pytest.approx(50000.0 if tick == 0.1 else 50000.01)
    assert account.data("order", {"id": sell["id"]})["price"] == pytest.approx(70000.1 if tick == 0.1 else 70000.02)


ORDER_PATHS = {"binance": "/api/v3/order", "okx": "/api/v5/trade/batch-orders"}


def test_orders_carry_a_client_id_derived_from_the_nonce(account: Account):
    first = post_trade(account, 1730275031047004000, "41000")
    order_id = first["data"]["id"].split(",")[1]
    client_id = account.fake.engine.get_order(order_id).client_id
    assert client_id.startswith("fmz") and len(client_id) == 32


def test_a_lost_answer_is_recovered_by_client_id_not_sent_again(account: Account):
    from tests.fakes.server import Fault

    path = ORDER_PATHS[account.route]
    account.fake.faults.inject(Fault(lose_answer=True, method="POST"), path)
    before = sum(1 for m, p in account.fake.faults.requests if p == path and m == "POST")
    reply = post_trade(account, 1730275031047005000, "40500")
    assert "data" in reply, reply
    orders = account.data("orders", {"symbol": "BTC_USDT"})
    assert [o["id"] for o in orders] == [reply["data"]["id"]]  # exactly one order, and it is the one reported
    assert sum(1 for m, p in account.fake.faults.requests if p == path and m == "POST") - before == 1


def test_an_order_that_never_arrived_is_reported_as_not_placed(account: Account):
    from tests.fakes.server import Fault

    account.fake.faults.inject(
        Fault(status=503, body=b"busy", content_type="text/plain", method="POST"), ORDER_PATHS[account.route]
    )
    reply = post_trade(account, 1730275031047006000, "40400")
    assert reply["error"].startswith("OrderNotPlaced:") and "no order with client id fmz" in reply["error"]
    assert account.data("orders", {"symbol": "BTC_USDT"}) == []


# --- unknown outcomes are settled, never guessed ------------------------------------------------

from tests.fakes import faults  # noqa: E402

PLACE_PATHS = ORDER_PATHS
CANCEL_PATHS = {"binance": "/api/v3/order", "okx": "/api/v5/trade/cancel-"}  # okx: cancel-order or cancel-batch-orders


def struck(account: Account, since: int) -> int:
    """How many injected faults fired since `since` (a length of `fired`): a test that injects one must see it."""
    return len(account.fake.faults.fired) - since


CANCEL_VERBS = {"binance": "DELETE", "okx": "POST"}


def status_unknown(route: str) -> faults.Fault:
    return faults.binance_status_unknown(method="POST") if route == "binance" else faults.okx_status_unknown()


ANSWER_FAULTS = {
    "accept-then-502": lambda route: faults.accept_then_5xx(502, method="POST"),
    "accept-then-cloudflare-520": lambda route: faults.accept_then_5xx(520, page="cloudflare", method="POST"),
    "accept-then-status-unknown": status_unknown,
    "accept-then-truncated": lambda route: faults.truncated("length", method="POST"),
    "accept-then-short-body": lambda route: faults.truncated("short", method="POST"),
    "accept-and-list-late": lambda route: faults.handled_late(1.5, method="POST"),
}


@pytest.mark.parametrize("fault", sorted(ANSWER_FAULTS))
def test_a_placed_order_whose_answer_went_wrong_is_answered_with_its_real_id(account: Account, fault: str):
    path = PLACE_PATHS[account.route]
    account.fake.faults.inject(ANSWER_FAULTS[fault](account.route), path)
    before = sum(1 for m, p in account.fake.faults.requests if p == path and m == "POST")
    fired = len(account.fake.faults.fired)
    reply = post_trade(account, 1730275031047100000 + sorted(ANSWER_FAULTS).index(fault), "40100")
    assert struck(account, fired) == 1
    assert "data" in reply, reply
    fmz_symbol, _, exchange_id = reply["data"]["id"].partition(",")
    assert fmz_symbol == "BTC_USDT" and exchange_id not in ("", "None")
    held = account.data("orders", {"symbol": "BTC_USDT"})
    assert [o["id"] for o in held] == [reply["data"]["id"]]  # the one order the exchange holds
    assert sum(1 for m, p in account.fake.faults.requests if p == path and m == "POST") - before == 1


def test_an_order_refused_before_processing_is_not_placed_after_the_window(account: Account):
    account.fake.faults.inject(
        faults.Fault(status=503, body=b"busy", content_type="text/plain", method="POST"), PLACE_PATHS[account.route]
    )
    reply = post_trade(account, 1730275031047200000, "40200")
    assert reply["error"].startswith("OrderNotPlaced:"), reply
    assert "client id fmz" in reply["error"] and "s after the request" in reply["error"]
    assert account.data("orders", {"symbol": "BTC_USDT"}) == []


def test_a_rejection_is_answered_at_once_without_a_lookup(account: Account):
    requests_before = len(account.fake.faults.requests)
    message = account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "40000", "amount": "100000"})
    assert message.startswith(("InsufficientFunds:", "InvalidOrder:", "ExchangeError:")), message
    paths = [p for _, p in account.fake.faults.requests[requests_before:]]
    assert paths.count(PLACE_PATHS[account.route]) == 1
    assert not any("openOrders" in p or "orders-pending" in p or p.endswith("/trade/order") for p in paths)


def test_a_restarted_gateway_resending_the_same_nonce_gets_the_existing_order(account: Account, fake_binance, fake_okx):
    """A second gateway (or a restart) derives the same client id; the exchange refuses the
    duplicate, and the existing order is the answer, never an error nor a second order."""
    nonce = 1730275031047400000
    first = post_trade(account, nonce, "40400")
    again = post_to_replica(account, fake_binance, fake_okx, trade_body(account, nonce, "40400"))
    assert again.get("data", {}).get("id") == first["data"]["id"], again
    assert len(account.data("orders", {"symbol": "BTC_USDT"})) == 1


CANCEL_FAULTS = {
    "answer-lost": lambda route: faults.answer_lost(method=CANCEL_VERBS[route]),
    "accept-then-502": lambda route: faults.accept_then_5xx(502, method=CANCEL_VERBS[route]),
    "accept-then-status-unknown": lambda route: (
        faults.binance_status_unknown(method="DELETE") if route == "binance" else faults.okx_status_unknown()
    ),
    "accept-then-truncated": lambda route: faults.truncated("short", method=CANCEL_VERBS[route]),
    "accept-and-list-late": lambda route: faults.handled_late(1.0, method=CANCEL_VERBS[route]),
}


@pytest.mark.parametrize("fault", sorted(CANCEL_FAULTS))
def test_a_cancel_whose_answer_went_wrong_is_settled(account: Account, fault: str):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "40500", "amount": "0.001"})
    account.fake.faults.inject(CANCEL_FAULTS[fault](account.route), CANCEL_PATHS[account.route])
    fired = len(account.fake.faults.fired)
    reply = account.call("cancel", {"id": placed["id"]})
    assert struck(account, fired) == 1
    assert reply.get("data") is True, reply
    assert account.data("order", {"id": placed["id"]})["status"] == "canceled"
    again = account.call("cancel", {"id": placed["id"]})  # the strategy retries: the order is cancelled
    assert again.get("data") is True, again


def test_a_cancel_that_never_took_says_the_order_is_still_open(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "40600", "amount": "0.001"})
    verb = CANCEL_VERBS[account.route]
    account.fake.faults.inject(
        faults.Fault(status=503, body=b"busy", content_type="text/plain", method=verb), CANCEL_PATHS[account.route]
    )
    fired = len(account.fake.faults.fired)
    message = account.error("cancel", {"id": placed["id"]})
    assert struck(account, fired) == 1
    assert message.startswith("OrderNotCancelled:") and "still open" in message, message
    assert account.data("order", {"id": placed["id"]})["status"] == "pending"


def test_cancelling_a_filled_order_says_so(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "40700", "amount": "0.001"})
    exchange_id = placed["id"].split(",")[1]
    order = account.fake.engine.get_order(exchange_id)
    account.fake.engine.fill(exchange_id, order.qty)
    message = account.error("cancel", {"id": placed["id"]})
    assert "filled" in message or "closed" in message, message


LEVERAGE_PATHS = {"binance": "/fapi/v1/leverage", "okx": "/api/v5/account/set-leverage"}
CONTRACT_ORDER_PATHS = {"binance": "/fapi/v1/order", "okx": "/api/v5/trade/batch-orders"}


class SlowPath:
    """ASGI wrapper for one test: `path` takes `delay` seconds; arrival and finish times are kept."""

    def __init__(self, app, path: str, delay: float) -> None:
        self.app, self.path, self.delay = app, path, delay
        self.arrived: list[tuple[str, float]] = []
        self.finished: list[tuple[str, float]] = []

    async def __call__(self, scope, receive, send) -> None:
        import asyncio
        import time

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.arrived.append((scope["path"], time.monotonic()))
        if scope["path"] == self.path:
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)
        self.finished.append((scope["path"], time.monotonic()))


def test_orders_wait_for_an_in_flight_leverage_change(account: Account):
    """io SetMarginLevel without a symbol: two concurrent orders both trade at the new leverage."""
    injector = account.fake.faults
    slow = SlowPath(injector.app, LEVERAGE_PATHS[account.route], 0.5)
    assert account.data("io", {"code": 0, "args": [9]}) is True
    injector.app = slow
    try:
        params = {"symbol": "BTC_USDT.swap", "type": "buy", "price": "30000", "amount": LOT_OF[account.route]}
        with ThreadPoolExecutor(max_workers=2) as pool:
            replies = list(pool.map(lambda _: account.call("trade", dict(params)), range(2)))
    finally:
        injector.app = slow.app
    assert all("data" in r for r in replies), replies
    [leverage_done] = [t for p, t in slow.finished if p == LEVERAGE_PATHS[account.route]]
    orders_sent = [t for p, t in slow.arrived if p == CONTRACT_ORDER_PATHS[account.route]]
    assert len(orders_sent) == 2 and all(t >= leverage_done for t in orders_sent)
    held = account.fake.engine.accounts[account.access_key].leverage
    assert 9 in held.values()


LOT_OF = {"binance": "0.01", "okx": "1"}


# --- not sent, and the call's deadline ---------------------------------------------------------


@pytest.fixture
def lone_binance():
    """A Binance fake of this test's own, which the test may stop (a connection then is refused)."""
    from tests.conftest import API_KEY, CANARY_SECRET
    from tests.fakes import binance
    from tests.fakes.server import BackgroundServer, FaultInjector

    engine = binance.default_engine()
    injector = FaultInjector(binance.create_app(engine, {API_KEY: CANARY_SECRET}))
    server = BackgroundServer(injector).start()
    yield server, injector
    if server.thread.is_alive():
        server.stop()


def own_gateway(fake_url: str, **server: object):
    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.fakes.server import BackgroundServer

    config = {
        "server": server,
        "clients": {"read_retries": 1, "retry_backoff": 0.01, "settle_window": 3},
        "exchanges": {
            "lone": {"ccxt": "binance", "api_base": fake_url, "ccxt_config": {"enableRateLimit": False}},
        },
    }
    return BackgroundServer(create_app(parse_settings(config))).start()


def lone_trade(url: str, nonce: int, timeout: float = 30) -> tuple[dict, float]:
    import time

    import httpx

    from tests.conftest import API_KEY, CANARY_SECRET, REPLIES

    body = {
        "access_key": API_KEY,
        "secret_key": CANARY_SECRET,
        "nonce": nonce,
        "method": "trade",
        "params": {"symbol": "BTC_USDT", "type": "buy", "price": "40000", "amount": "0.001"},
    }
    started = time.monotonic()
    response = httpx.post(f"{url}/lone", json=body, timeout=timeout)
    REPLIES.append(response.text)
    return response.json(), time.monotonic() - started


def test_an_order_that_could_not_connect_is_answered_as_not_sent_at_once(lone_binance):
    server, _ = lone_binance
    gateway = own_gateway(server.url)
    base = time.time_ns()  # calls newer than this gateway (an older one is looked up first)
    try:
        import httpx

        assert (
            "data"
            in httpx.post(f"{gateway.url}/lone", json={"method": "ticker", "params": {"symbol": "BTC_USDT"}}).json()
        )
        server.stop()  # the exchange is gone: connections are refused
        reply, _ = lone_trade(gateway.url, base + 0)
    finally:
        gateway.stop()
    assert reply["error"].startswith("ExchangeNotAvailable: the order was not sent"), reply


class SlowAnswers:
    """ASGI wrapper for one test: requests are handled at once, their answers held back `delay` seconds."""

    def __init__(self, app, delay: float, path: str = "/", method: str | None = None) -> None:
        self.app, self.delay, self.path, self.method = app, delay, path, method

    async def __call__(self, scope, receive, send) -> None:
        import asyncio

        slow = (
            scope["type"] == "http" and scope["path"].startswith(self.path) and self.method in (None, scope["method"])
        )
        if not slow or not self.delay:
            await self.app(scope, receive, send)
            return
        held: list = []

        async def hold(message: dict) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        release = asyncio.get_running_loop().time() + self.delay
        while self.delay and asyncio.get_running_loop().time() < release:  # delay = 0 lets held answers go
            await asyncio.sleep(0.05)
        for message in held:
            await send(message)


def test_a_slow_order_answer_leaves_time_to_settle_within_the_deadline(lone_binance):
    """The order is taken at once but its answer would come after the deadline: the send is cut
    short in time to look the order up, and the strategy gets its real id within the deadline."""
    server, injector = lone_binance
    gateway = own_gateway(server.url, request_timeout=5)
    base = time.time_ns()  # calls newer than this gateway (an older one is looked up first)
    try:
        lone_trade(gateway.url, base + 0)  # warm: markets, connections
        injector.app = SlowAnswers(injector.app, 6.0, "/api/v3/order", "POST")
        reply, elapsed = lone_trade(gateway.url, base + 1)
    finally:
        gateway.stop()
    assert "data" in reply, reply
    exchange_id = reply["data"]["id"].split(",")[1]
    engine = injector.app.app.state.fake.engine
    assert engine.get_order(exchange_id).status == "open"
    assert elapsed < 5


def test_a_trade_is_answered_within_the_deadline_even_while_it_settles(lone_binance):
    """Nothing the exchange says arrives within the deadline: the strategy hears OrderStatusUnknown
    with the client id in time; the same call re-sent later gets the settled outcome, never a 2nd order."""
    import time

    server, injector = lone_binance
    gateway = own_gateway(server.url, request_timeout=2)
    base = time.time_ns()  # calls newer than this gateway (an older one is looked up first)
    try:
        lone_trade(gateway.url, base + 0)  # warm: markets, connections
        slow = injector.app = SlowAnswers(injector.app, 10)
        reply, elapsed = lone_trade(gateway.url, base + 1)
        assert reply["error"].startswith("OrderStatusUnknown:") and "client id fmz" in reply["error"], reply
        assert elapsed < 2.5
        slow.delay = 0
        time.sleep(0.5)  # the first placement's look-ups end with the window
        again, _ = lone_trade(gateway.url, base + 1)  # the same call, re-sent: looked up again
    finally:
        gateway.stop()
    assert "data" in again, again
    engine = slow.app.state.fake.engine
    assert sorted(o.status for o in engine.orders.values()) == ["open", "open"]  # warm-up + this one, no duplicate


async def test_a_market_order_that_ccxt_wants_priced_gets_the_current_price_of_its_side():
    """Hyperliquid: ccxt refuses a market order without a price (it bounds the slippage) before
    sending anything; the order goes out once, priced at the side it takes (a sell: the bid)."""
    from types import SimpleNamespace

    import ccxt.async_support as ccxt

    from gateway.trading import PreparedOrder, send
    from tests.test_client_ids import HL_ADDRESS, HL_KEY, HL_SWAP, Recorder, make

    exchange = make(ccxt.hyperliquid, [HL_SWAP], apiKey=None, secret=None, walletAddress=HL_ADDRESS, privateKey=HL_KEY)
    exchange.options["approvedBuilderFee"] = True
    filled = {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"filled": {"oid": 296683658818}}]}}}
    recorder = Recorder(exchange, [("/exchange", 200, filled), ("/info", 200, {"referredBy": None, "cumVlm": "0"})])
    reads = []

    async def read(key, factory):
        reads.append(key)
        return {"bid": 25000.0, "ask": 25010.0, "last": 25005.0}

    call = SimpleNamespace(
        exchange=exchange,
        exchange_id="hyperliquid",
        read=read,
        remaining=lambda: 30.0,
        settings=SimpleNamespace(settle_window=5.0),
    )
    result = await send(call, PreparedOrder("BTC/USDC:USDC", "market", "sell", 0.01, None, {}))
    assert result["id"] == "296683658818" and reads == [("ticker", "BTC/USDC:USDC")]
    orders = [sent for sent in recorder.sent if sent.path == "/exchange" and sent.params["action"]["type"] == "order"]
    assert len(orders) == 1  # sent once (ccxt's own referrer set-up is another /exchange action)
    [wire] = orders[0].params["action"]["orders"]
    assert wire["b"] is False and float(wire["p"]) < 25000  # a sell, bounded below the bid by ccxt's slippage


def test_a_filled_order_resent_to_a_restarted_gateway_is_answered_not_placed_again(
    account: Account, fake_binance, fake_okx
):
    """Exchanges refuse a duplicate client id only while the first order is open (Binance); a call
    older than the process is looked up before it is sent, so a filled order is not placed twice."""
    body = trade_body(account, time.time_ns(), "-1", kind="sell")
    first = account.gateway.http.post(f"{account.gateway.url}/{account.route}", json=body).json()
    assert account.data("order", {"id": first["data"]["id"]})["status"] == "filled"
    time.sleep(2.5)  # the replica starts after the call was first sent (beyond the clock-skew allowance)
    again = post_to_replica(account, fake_binance, fake_okx, body)
    assert again.get("data", {}).get("id") == first["data"]["id"], again
    placed = [o for o in account.fake.engine.orders.values() if o.account == account.access_key]
    assert len(placed) == 1


async def test_a_market_buy_priced_by_ccxt_reads_the_ticker_once(monkeypatch):
    """A spot market buy of a quote amount, where ccxt needs the price to compute the cost: the
    quantity and the price come from one ticker, read once before the order is sent."""
    from decimal import Decimal
    from types import SimpleNamespace

    from gateway import fallbacks
    from gateway.trading import OrderRequest, prepare

    monkeypatch.setattr(fallbacks, "market_buy_by_cost", lambda exchange, market: False)
    monkeypatch.setattr(fallbacks, "market_buy_needs_price", lambda exchange, market: True)
    asks = iter([40000.0, 41000.0])
    reads = []

    async def read(key, factory):
        reads.append(key)
        return {"ask": next(asks), "last": 39000.0}

    exchange = SimpleNamespace(amount_to_precision=lambda symbol, amount: f"{amount:.6f}")
    call = SimpleNamespace(exchange=exchange, read=read)
    spot = {"symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "type": "spot", "contract": False}
    order = OrderRequest(spot, "BTC_USDT", "buy", False, Decimal("100"), None)
    prepared = await prepare(call, order, None)
    assert reads == [("ticker", "BTC/USDT")]
    assert (prepared.order_type, prepared.side, prepared.amount, prepared.price) == ("market", "buy", 0.0025, 40000.0)


async def test_a_resent_unknown_order_counts_its_absence_window_from_the_first_placements_end(monkeypatch):
    """A re-send after an unknown outcome may find nothing on its first look-up only because the
    exchange lists late: "not placed" needs the window from when the first placement ended (after
    its send), never an assumed long-past send."""
    import asyncio as aio
    import time as clock
    from types import SimpleNamespace

    from gateway import trading

    seen = {}

    async def settle(call, market, client_id, failure, since_ms, sent_at):
        seen["sent_at"] = sent_at
        return {"id": "7", "info": {}}

    monkeypatch.setattr(trading, "settle_placement", settle)
    failed = aio.get_running_loop().create_future()
    failed.set_exception(trading.OrderStatusUnknown("lost"))
    before = clock.monotonic()
    first = trading._outcome(failed)
    assert isinstance(first, trading.PlacementFailed) and before <= first.ended_at <= clock.monotonic()
    order = SimpleNamespace(market={"symbol": "BTC/USDT"}, fmz_symbol="BTC_USDT")
    data, _ = await trading._settle_again(SimpleNamespace(), order, "fmzcid", first.ended_at)
    assert data == {"id": "BTC_USDT,7"} and seen["sent_at"] == first.ended_at
