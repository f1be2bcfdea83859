"""Order placement details beyond the lifecycle tests: idempotency per FMZ nonce, direction state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Account


def post_trade(account: Account, nonce: int, price: str = "45000") -> dict:
    body = {
        "access_key": account.access_key,
        "secret_key": account.secret_key,
        "nonce": nonce,
        "method": "trade",
        "params": {"symbol": "BTC_USDT", "type": "buy", "price": price, "amount": "0.001"},
    }
    return account.gateway.http.post(f"{account.gateway.url}/{account.route}", json=body).json()


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
    assert client_id.startswith("fmz") and len(client_id) == 23


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
