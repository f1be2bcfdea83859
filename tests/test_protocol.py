import json
from decimal import Decimal

import pytest

from gateway.errors import BadRequest
from gateway.protocol import decimal_param, int_param, parse_envelope


def body(**fields):
    return json.dumps(fields).encode()


def test_parse_full_envelope():
    env = parse_envelope(
        body(access_key="k", secret_key="s", nonce=1730275031047002000, method="Ticker", params={"symbol": "BTC_USDT"})
    )
    assert (env.access_key, env.secret_key, env.method, env.params) == ("k", "s", "ticker", {"symbol": "BTC_USDT"})
    assert env.nonce == 1730275031047002000 and env.http_method == "GET"


def test_api_method_keeps_path_case_and_reads_verb():
    env = parse_envelope(body(method="__api_/api/v5/trade/orders-pending", params={}), "post")
    assert env.api_path == "/api/v5/trade/orders-pending" and env.http_method == "POST"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty request body"),
        (b"   ", "empty request body"),
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object, got an array"),
        (body(params={}), "'method' is required"),
        (body(method=5), "'method' is required"),
        (body(method="ticker", params=[1]), "'params' must be a JSON object"),
        (body(method="ticker", access_key=5), "'access_key' must be a string"),
        (body(method="ticker", nonce=True), "'nonce' must be an integer"),
        (body(method="bad method!"), "unknown method"),
        (body(method="__api_"), "__api_ needs a path"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ],
)
def test_bad_envelopes_are_bad_requests(raw, message):
    with pytest.raises(BadRequest, match=message):
        parse_envelope(raw)


def test_unknown_verb_is_refused():
    with pytest.raises(BadRequest, match="unsupported verb"):
        parse_envelope(body(method="__api_/x"), "TRACE")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", Decimal(30)),
        (30, Decimal(30)),
        ("-1", Decimal(-1)),
        ("0.001", Decimal("0.001")),
        (0.1, Decimal("0.1")),
        ("1e-3", Decimal("0.001")),
        (" 2.5 ", Decimal("2.5")),
        (".5", Decimal("0.5")),
    ],
)
def test_decimal_params_accept_numbers_and_decimal_strings(value, expected):
    assert decimal_param({"x": value}, "x") == expected


@pytest.mark.parametrize("value", [True, None, "", "abc", "NaN", "Infinity", "1,5", "١٢", "0x10", [1], {}])
def test_decimal_params_refuse_everything_else_naming_the_field(value):
    with pytest.raises(BadRequest, match="'x'"):
        decimal_param({"x": value}, "x")


def test_int_params():
    assert int_param({"limit": "30"}, "limit") == 30
    assert int_param({}, "limit", default=7) == 7
    with pytest.raises(BadRequest, match="whole number"):
        int_param({"limit": "1.5"}, "limit")
    with pytest.raises(BadRequest, match="required"):
        int_param({}, "limit", required=True)


@pytest.mark.parametrize("value", ["1e999999", "1e-40", 10**40])
def test_absurd_magnitudes_are_out_of_range(value):
    with pytest.raises(BadRequest, match="out of range"):
        decimal_param({"x": value}, "x")
