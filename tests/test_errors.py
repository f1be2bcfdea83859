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
