"""Order placement details beyond the lifecycle tests: idempotency per FMZ nonce, direction state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
