import ccxt.async_support as ccxt

from gateway.errors import BadRequest, error_message, not_supported, scrub


def test_ccxt_errors_keep_their_class_name():
    assert error_message(ccxt.InsufficientFunds("binance balance low")) == "InsufficientFunds: binance balance low"


def test_empty_messages_are_never_empty():
    assert error_message(ccxt.RequestTimeout()) == "RequestTimeout: RequestTimeout without a message"


def test_our_errors_and_unexpected_ones():
    assert error_message(BadRequest("param 'x' is required")) == "BadRequest: param 'x' is required"
    assert error_message(not_supported("GetTickers", "foo")) == "NotSupported: GetTickers is not supported by foo"
    assert error_message(KeyError("k")).startswith("InternalError: ")


def test_scrub_removes_secrets_and_signatures():
    text = "GET https://x/api/v3/account?timestamp=1&signature=abcdef0123 secret=hunter22 my-secret-value"
    cleaned = scrub(text, ["my-secret-value"])
    assert "abcdef0123" not in cleaned and "hunter22" not in cleaned and "my-secret-value" not in cleaned
    assert "signature=***" in cleaned


def test_scrubbing_walks_values_and_never_touches_numbers():
    from gateway.errors import scrub_values

    reply = {
        "data": {"id": "BTC_USDT,1234567890", "price": 60000.1, "amount": 60000, "time": 1712345678000},
        "raw": {"px": "60000", "echo": "passphrase=60000&x=1", "ordId": "912345678", "key": "k-60000-x"},
    }
    scrubbed = scrub_values(reply, ("12345678", "60000"))
    assert scrubbed["data"] == reply["data"]  # numbers and ids that merely contain a short secret are intact
    assert scrubbed["raw"]["ordId"] == "912345678"
    assert scrubbed["raw"]["px"] == "***"  # a short secret as a whole value is still a secret
    assert scrubbed["raw"]["echo"] == "passphrase=***&x=1"
    assert scrubbed["raw"]["key"] == "k-***-x"


def test_long_secrets_are_removed_even_inside_other_text():
    from gateway.errors import scrub_values

    secret = "Zq8x0AbCdEfGhIjKlMnOp"
    assert scrub_values({"raw": [f"xx{secret}yy"]}, (secret,)) == {"raw": ["xx***yy"]}
    untouched = {"raw": ["nothing here"], "n": 1}
    assert scrub_values(untouched, (secret,)) is untouched  # no copy when nothing changes


def test_error_texts_keep_ids_that_contain_a_short_secret():
    from gateway.errors import scrub

    assert scrub("order 1234567890 not found; passphrase 12345678", ["12345678"]) == (
        "order 1234567890 not found; passphrase ***"
    )


# --- end to end: the suite's canary secret never leaves the gateway ------------------------

import json  # noqa: E402
import re  # noqa: E402

from tests.conftest import CANARY_PASSPHRASE, CANARY_SECRET, CAPTURED, open_account  # noqa: E402
from tests.fakes.server import Fault  # noqa: E402


def test_exchange_echoing_the_secret_is_scrubbed_from_raw(gateway, fake_binance):
    account = open_account("binance", fake_binance, gateway)
    echo = json.dumps({"makerCommission": 10, "echo": CANARY_SECRET, "balances": []}).encode()
    fake_binance.faults.inject(Fault(status=200, body=echo), "/api/v3/account")
    reply = account.call("__api_/api/v3/account", {})
    text = json.dumps(reply)
    assert CANARY_SECRET not in text and "***" in text


def test_signed_urls_in_errors_lose_their_signature(gateway, fake_binance):
    account = open_account("binance", fake_binance, gateway)
    fake_binance.faults.inject(
        Fault(status=502, body=b"bad gateway", content_type="text/plain"), "/api/v3/account", times=3
    )
    message = account.error("accounts")
    assert not re.search(r"signature=[0-9a-f]{16}", message)
    fake_binance.faults.faults.clear()


def test_failures_with_the_canary_keep_it_out_of_errors_and_logs(gateway, fake_okx):
    account = open_account("okx", fake_okx, gateway)
    start = len(CAPTURED.lines)
    messages = [
        account.error("accounts", secret_key=f"{CANARY_SECRET},wrong-passphrase"),
        account.error("accounts", secret_key=f"wrong-secret,{CANARY_PASSPHRASE}"),
        account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "1", "amount": "9999999"}),
        account.error("order", {"id": f"BTC_USDT,{CANARY_SECRET}"}),
    ]
    assert all(
        m.startswith(
            (
                "AuthenticationError:",
                "InsufficientFunds:",
                "OrderNotFound:",
                "BadRequest:",
                "ExchangeError:",
                "InvalidOrder:",
            )
        )
        for m in messages
    ), messages
    logged = "\n".join(CAPTURED.lines[start:])
    for text in [*messages, logged]:
        assert CANARY_SECRET not in text and CANARY_PASSPHRASE not in text


def test_a_numeric_passphrase_never_breaks_a_reply(gateway, fake_okx):
    """OKX passphrase 60000: a ticker and an order priced 60000 stay valid JSON, and the order id works."""
    key = "acct-okx-numeric-passphrase"
    fake_okx.add_key(key, CANARY_SECRET, "60000")
    secret_key = f"{CANARY_SECRET},60000"
    ticker = gateway.call("okx", "ticker", {"symbol": "BTC_USDT"}, access_key=key, secret_key=secret_key)
    assert isinstance(ticker["data"]["last"], float | int) and ticker["data"]["last"] > 0
    placed = gateway.call(
        "okx",
        "trade",
        {"symbol": "BTC_USDT", "type": "buy", "price": "60000", "amount": "0.001"},
        access_key=key,
        secret_key=secret_key,
    )
    order_id = placed["data"]["id"]
    order = gateway.call("okx", "order", {"id": order_id}, access_key=key, secret_key=secret_key)["data"]
    assert order["price"] == 60000 and order["id"] == order_id
    cancelled = gateway.call("okx", "cancel", {"id": order_id}, access_key=key, secret_key=secret_key)
    assert cancelled["data"] is True
