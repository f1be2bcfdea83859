"""Every spot FMZ method end to end: FMZ envelope over HTTP -> gateway -> real ccxt -> fake exchange."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.conftest import Account
from tests.fakes.server import Fault

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_ticker_maps_best_bid_and_ask(account: Account):
    data = account.data("ticker", {"symbol": "BTC_USDT"})
    inst = account.fake.engine.instruments["BTC/USDT"]
    assert data["symbol"] == "BTC_USDT"
    assert data["buy"] == float(inst.best_bid()) and data["sell"] == float(inst.best_ask())
    assert data["last"] == float(inst.price) and data["vol"] > 0
    assert abs(data["time"] - time.time() * 1000) < 60_000  # milliseconds


def test_symbols_in_any_case(account: Account):
    assert account.data("ticker", {"symbol": "eth_usdt"})["symbol"] == "ETH_USDT"


@pytest.mark.parametrize("limit", [1, 7, 30, 450, 3000])
def test_depth_limit_never_causes_an_exchange_error(account: Account, limit: int):
    data = account.data("depth", {"symbol": "BTC_USDT", "limit": str(limit)})
    asks, bids = data["asks"], data["bids"]
    assert 0 < len(asks) <= limit and 0 < len(bids) <= limit
    if limit <= 50:  # every fake book is at least 50 levels deep
        assert len(asks) == limit and len(bids) == limit
    assert [a[0] for a in asks] == sorted(a[0] for a in asks)
    assert [b[0] for b in bids] == sorted((b[0] for b in bids), reverse=True)
    assert bids[0][0] < asks[0][0] and data["time"] > 1e12


def test_depth_without_limit_returns_the_exchange_default(account: Account):
    data = account.data("depth", {"symbol": "BTC_USDT"})
    assert len(data["asks"]) > 5


def test_trades_oldest_first(account: Account):
    data = account.data("trades", {"symbol": "BTC_USDT"})
    assert len(data) >= 20
    times = [t["time"] for t in data]
    assert times == sorted(times) and times[-1] > 1e12
    assert {t["type"] for t in data} == {"buy", "sell"}
    assert all(t["price"] > 0 and t["amount"] > 0 and t["id"] for t in data)


def test_records_hourly_in_seconds_oldest_first(account: Account):
    rows = account.data("records", {"symbol": "BTC_USDT", "period": "60", "limit": "5"})
    assert len(rows) == 5
    times = [r[0] for r in rows]
    assert times == sorted(times) and all(t % 3600 == 0 for t in times)
    assert times[-1] == int(time.time()) // 3600 * 3600  # the current, still open bar is last
    for _, o, h, low, c, v in rows:
        assert low <= min(o, c) <= max(o, c) <= h and v > 0


@pytest.mark.parametrize("period", ["2", "10", "20"])
def test_records_build_periods_the_exchange_lacks_from_smaller_bars(account: Account, period: str):
    """Neither binance nor okx has 2m, 10m or 20m bars: they are built from a smaller period."""
    minutes = int(period)
    rows = account.data("records", {"symbol": "BTC_USDT", "period": period, "limit": "4"})
    assert len(rows) == 4
    assert all(r[0] % (minutes * 60) == 0 for r in rows)
    assert [r[0] for r in rows] == [rows[0][0] + i * minutes * 60 for i in range(4)]
    base = 1 if minutes == 2 else 5  # the largest period both exchanges offer that divides it
    parts_per_bar = minutes // base
    source = account.data("records", {"symbol": "BTC_USDT", "period": str(base), "limit": str(parts_per_bar * 4 + 5)})
    by_time = {r[0]: r for r in source}
    first = rows[0]
    parts = [by_time.get(first[0] + 60 * base * i) for i in range(parts_per_bar)]
    if all(parts):  # compare with the bars it was built from (absent only if a bar boundary passed meanwhile)
        assert first[1] == parts[0][1] and first[4] == parts[-1][4]
        assert first[2] == max(p[2] for p in parts) and first[3] == min(p[3] for p in parts)
        assert first[5] == pytest.approx(sum(p[5] for p in parts))


def test_records_reject_a_bad_period(account: Account):
    assert "period" in account.error("records", {"symbol": "BTC_USDT", "period": "0"})
    assert "period" in account.error("records", {"symbol": "BTC_USDT", "period": "abc"})


def test_markets_report_precision_and_limits(account: Account):
    data = account.data("markets", {})
    assert "BTC_USDT" in data and "ETH_USDT" in data
    assert "BTC_USDT.swap" in data  # no symbol: the whole route, spot and contracts
    btc = data["BTC_USDT"]
    inst = account.fake.engine.instruments["BTC/USDT"]
    assert btc["baseAsset"] == "BTC" and btc["quoteAsset"] == "USDT"
    assert Decimal(str(btc["tickSize"])) == inst.tick
    assert btc["pricePrecision"] == -inst.tick.as_tuple().exponent
    assert btc["minQty"] == float(inst.min_qty) and btc["ctVal"] == 1
    one = account.data("markets", {"symbol": "BTC_USDT"})
    assert list(one) == ["BTC_USDT"]


def test_tickers_all_and_one(account: Account):
    data = account.data("tickers", {})
    symbols = {t["symbol"] for t in data}
    assert {"BTC_USDT", "ETH_USDT"} <= symbols
    one = account.data("gettickers", {"symbol": "ETH_USDT"})
    assert [t["symbol"] for t in one] == ["ETH_USDT"]


def test_accounts_and_assets_of_a_fresh_account(account: Account):
    rows = {r["currency"]: r for r in account.data("accounts")}
    assert rows["USDT"] == {"currency": "USDT", "free": 100000, "frozen": 0}
    assert rows["BTC"]["free"] == 10
    assets = {r["currency"] for r in account.data("assets")}
    assert {"USDT", "BTC"} <= assets


def test_limit_order_lifecycle(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000", "amount": "0.01"})
    order_id = placed["id"]
    assert order_id.startswith("BTC_USDT,")
    assert account.balance("USDT") == (100000 - 500, 500)

    open_orders = account.data("orders", {"symbol": "BTC_USDT"})
    assert [o["id"] for o in open_orders] == [order_id]
    order = account.data("order", {"id": order_id})
    assert order["status"] == "pending" and order["amount"] == 0.01 and order["price"] == 50000
    assert order["deal_amount"] == 0 and order["type"] == "buy" and order["symbol"] == "BTC_USDT"

    assert account.data("cancel", {"id": order_id}) is True
    assert account.data("order", {"id": order_id})["status"] == "canceled"
    assert account.data("orders", {"symbol": "BTC_USDT"}) == []
    assert account.balance("USDT") == (100000, 0)
    history = account.data("historyorders", {"symbol": "BTC_USDT"})
    assert order_id in [o["id"] for o in history]


def test_cancel_reply_is_true(account: Account):
    placed = account.data("trade", {"symbol": "ETH_USDT", "type": "sell", "price": "3500", "amount": "0.5"})
    reply = account.call("cancel", {"id": placed["id"]})
    assert reply["data"] is True


def test_bare_order_id_with_symbol(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "40000", "amount": "0.001"})
    bare = placed["id"].split(",", 1)[1]
    assert account.data("order", {"id": bare, "symbol": "BTC_USDT"})["id"] == placed["id"]
    assert account.data("cancel", {"id": bare, "symbol": "btc_usdt"}) is True
    assert "symbol" in account.error("order", {"id": bare})


def test_crossing_limit_order_fills_and_moves_balances(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "61000", "amount": "0.1"})
    order = account.data("order", {"id": placed["id"]})
    ask = float(account.fake.engine.instruments["BTC/USDT"].best_ask())
    assert order["status"] == "filled" and order["deal_amount"] == 0.1
    assert order["avg_price"] == pytest.approx(ask)
    free_btc, _ = account.balance("BTC")
    assert free_btc == pytest.approx(10.1)
    assert account.balance("USDT")[0] == pytest.approx(100000 - 0.1 * ask)


def test_market_sell_fills_at_the_bid(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "sell", "price": "-1", "amount": "0.5"})
    order = account.data("order", {"id": placed["id"]})
    bid = float(account.fake.engine.instruments["BTC/USDT"].best_bid())
    assert order["status"] == "filled" and order["deal_amount"] == 0.5
    assert order["avg_price"] == pytest.approx(bid)
    assert account.balance("BTC")[0] == pytest.approx(9.5)


def test_market_buy_amount_is_quote_currency(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "-1", "amount": "600"})
    order = account.data("order", {"id": placed["id"]})
    ask = float(account.fake.engine.instruments["BTC/USDT"].best_ask())
    assert order["status"] == "filled"
    assert order["deal_amount"] == pytest.approx(600 / ask, rel=1e-3)  # ~0.01 BTC, not 600 BTC
    assert account.balance("USDT")[0] == pytest.approx(100000 - 600, abs=1)


def test_partial_fill_then_cancel(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "55000", "amount": "0.2"})
    exchange_id = placed["id"].split(",")[1]
    account.fake.engine.fill(exchange_id, Decimal("0.05"))
    order = account.data("order", {"id": placed["id"]})
    assert order["status"] == "partial-filled" and order["deal_amount"] == 0.05
    account.data("cancel", {"id": placed["id"]})
    assert account.data("order", {"id": placed["id"]})["status"] == "partial-canceled"


def test_amount_that_rounds_to_zero_is_a_clear_error(account: Account):
    message = account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000", "amount": "0.000000001"})
    assert "rounds to 0" in message


def test_price_and_amount_are_rounded_to_the_market_precision(account: Account):
    placed = account.data(
        "trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000.0123456", "amount": "0.0123456789"}
    )
    order = account.data("order", {"id": placed["id"]})
    inst = account.fake.engine.instruments["BTC/USDT"]
    assert Decimal(str(order["price"])) % inst.tick == 0
    assert Decimal(str(order["amount"])) % inst.step == 0 and order["amount"] <= 0.0123456789


def test_insufficient_funds(account: Account):
    message = account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "50000", "amount": "1000"})
    assert message.startswith("InsufficientFunds:")


def test_unknown_order(account: Account):
    assert account.error("order", {"id": "BTC_USDT,999999999"}).startswith("OrderNotFound:")
    assert account.error("cancel", {"id": "BTC_USDT,999999999"}).startswith("OrderNotFound:")


def canceled_buys(account: Account, symbol: str, prices: tuple[str, ...], amount: str) -> list[str]:
    """Ids of limit buys placed at `prices` and canceled at once, oldest first."""
    ids = []
    for price in prices:
        placed = account.data("trade", {"symbol": symbol, "type": "buy", "price": price, "amount": amount})
        account.data("cancel", {"id": placed["id"]})
        ids.append(placed["id"])
    return ids


def test_history_orders_limit_and_since(account: Account):
    ids = canceled_buys(account, "BTC_USDT", ("41000", "42000", "43000"), "0.001")
    history = account.data("historyorders", {"symbol": "BTC_USDT", "since": 0, "limit": 2})
    assert [o["id"] for o in history] == ids[1:]  # the newest two, oldest first
    assert all(o["status"] == "canceled" for o in history)


def test_trade_type_is_validated(account: Account):
    assert "param 'type'" in account.error("trade", {"symbol": "BTC_USDT", "type": "hold", "price": "1", "amount": "1"})
    assert "closebuy closes a contract" in account.error(
        "trade", {"symbol": "BTC_USDT", "type": "closebuy", "price": "1", "amount": "1"}
    )
    assert "param 'amount'" in account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "1"})
    assert "param 'amount'" in account.error(
        "trade", {"symbol": "BTC_USDT", "type": "buy", "price": "1", "amount": True}
    )


def test_private_methods_need_keys(account: Account):
    message = account.error("accounts", access_key="", secret_key="")
    assert message == "AuthenticationError: GetAccount needs access_key and secret_key"


def test_wrong_secret_is_an_authentication_error(account: Account):
    wrong = "wrong-secret,wrong-pass" if account.route == "okx" else "wrong-secret"
    assert account.error("accounts", secret_key=wrong).startswith("AuthenticationError:")


def test_unknown_pair_names_the_exchange(account: Account):
    message = account.error("ticker", {"symbol": "DOGE_XYZ"})
    assert message.startswith("BadRequest:") and "DOGE_XYZ" in message and account.route in message


def test_get_order_falls_back_to_order_lists_where_fetch_order_is_missing(account: Account):
    placed = account.data("trade", {"symbol": "LTC_USDT", "type": "buy", "price": "70", "amount": "0.5"})
    pool = account.gateway.app.state.gateway.pool
    [handle] = [
        h
        for (route, _), h in pool.private_clients.items()
        if route == account.route and h.exchange.apiKey == account.access_key
    ]
    handle.exchange.has = {**handle.exchange.has, "fetchOrder": False}
    order = account.data("order", {"id": placed["id"]})
    assert order["id"] == placed["id"] and order["status"] == "pending"
    account.data("cancel", {"id": placed["id"]})
    assert account.data("order", {"id": placed["id"]})["status"] == "canceled"


@pytest.fixture
def own_gateway(fake_binance, fake_okx):
    """A gateway of its own: what it learns about a venue (e.g. tickers lacking quotes) stays here."""
    import httpx

    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.conftest import GatewayClient, gateway_config
    from tests.fakes.server import BackgroundServer

    server = BackgroundServer(create_app(parse_settings(gateway_config(fake_binance, fake_okx)))).start()
    with httpx.Client(timeout=30) as http:
        yield GatewayClient(server.url, http)
    fake_binance.faults.faults.clear()
    server.stop()


def test_ticker_without_any_price_is_an_error_not_zeros(own_gateway, fake_binance):
    from tests.fakes.server import Fault

    empty_ticker = b'{"symbol":"LTCUSDT","bidQty":"0","askQty":"0","volume":"0","quoteVolume":"0","closeTime":1}'
    fake_binance.faults.inject(Fault(status=200, body=empty_ticker), "/api/v3/ticker/24hr")
    fake_binance.faults.inject(Fault(status=200, body=b'{"lastUpdateId":1,"bids":[],"asks":[]}'), "/api/v3/depth")
    reply = own_gateway.call("binance", "ticker", {"symbol": "LTC_USDT"})
    assert "data" not in reply
    assert reply["error"].startswith("BadResponse")
    assert "binance ticker for LTC_USDT has no last price (no bid/ask either)" in reply["error"]


def test_order_without_an_exchange_id_is_an_error(account: Account):
    placed = account.data("trade", {"symbol": "LTC_USDT", "type": "buy", "price": "70", "amount": "0.5"})
    path, body = {
        "binance": (
            "/api/v3/order",
            b'{"symbol":"LTCUSDT","status":"NEW","price":"70","origQty":"0.5","executedQty":"0",'
            b'"side":"BUY","type":"LIMIT","time":1700000000000}',
        ),
        "okx": (
            "/api/v5/trade/order",
            b'{"code":"0","msg":"","data":[{"instId":"LTC-USDT","instType":"SPOT","ordId":"","state":"live",'
            b'"px":"70","sz":"0.5","accFillSz":"0","side":"buy","ordType":"limit","cTime":"1700000000000"}]}',
        ),
    }[account.route]
    account.fake.faults.inject(Fault(status=200, body=body, method="GET"), path)
    try:
        message = account.error("order", {"id": placed["id"]})
    finally:
        account.fake.faults.faults.clear()
        account.data("cancel", {"id": placed["id"]})
    assert message.startswith("BadResponse") and "LTC_USDT has no order id" in message and "None" not in message


def test_a_balance_the_exchange_did_not_give_is_an_error_not_zeros(account: Account):
    path, body = {
        "binance": ("/api/v3/account", b'{"accountType":"SPOT","balances":[{"asset":"BTC"},{"asset":"USDT"}]}'),
        "okx": (
            "/api/v5/account/balance",
            b'{"code":"0","msg":"","data":[{"uTime":"1","totalEq":"1","details":[{"ccy":"USDT","uTime":"1"}]}]}',
        ),
    }[account.route]
    account.fake.faults.inject(Fault(status=200, body=body), path)
    try:
        message = account.error("accounts")
    finally:
        account.fake.faults.faults.clear()
    assert message.startswith("BadResponse") and f"{account.route} balance of " in message
    assert "has no free (available) amount" in message


def test_history_orders_limit_counts_finished_orders_only(account: Account):
    """binance's allOrders applies the limit before the open orders are dropped: ask for enough."""
    cancelled = canceled_buys(account, "ETH_USDT", ("2000", "2100", "2200"), "0.01")
    still_open = [
        account.data("trade", {"symbol": "ETH_USDT", "type": "buy", "price": p, "amount": "0.01"})["id"]
        for p in ("1000", "1001")
    ]
    try:
        history = account.data("historyorders", {"symbol": "ETH_USDT", "limit": 2})
        assert [o["id"] for o in history] == cancelled[1:]
        assert [o["id"] for o in account.data("historyorders", {"symbol": "ETH_USDT", "limit": "3"})] == cancelled
    finally:
        for order_id in still_open:
            account.data("cancel", {"id": order_id})
