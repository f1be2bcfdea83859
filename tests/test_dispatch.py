"""Gateway.handle directly: every call is observed once, and observing never changes an answer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from gateway import metrics
from gateway.dispatch import Gateway, _method_label
from gateway.methods import METHODS
from gateway.protocol import parse_envelope
from gateway.settings import parse_settings
from tests.conftest import API_KEY, CANARY_SECRET, Fake, gateway_config
from tests.test_metrics import instrumented  # noqa: F401  (a fixture, used by name)


def body(method: str, **params: object) -> bytes:
    envelope = {"access_key": API_KEY, "secret_key": CANARY_SECRET, "nonce": 1, "method": method, "params": params}
    return json.dumps(envelope).encode()


@pytest.fixture
async def gateway(instrumented: None, fake_binance: Fake, fake_okx: Fake) -> AsyncIterator[Gateway]:  # noqa: F811
    gateway = Gateway(parse_settings(gateway_config(fake_binance, fake_okx, allow_any_ccxt_exchange=False)))
    yield gateway
    await gateway.pool.close()


async def test_a_failure_to_observe_never_changes_the_answer(gateway: Gateway, monkeypatch, caplog):
    def broken(*args: object) -> None:
        raise RuntimeError("metrics are down")

    monkeypatch.setattr(gateway.metrics, "record_call", broken)
    reply = await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    assert reply["data"]["symbol"] == "BTC_USDT"


async def test_the_call_scope_collects_upstream_time_and_is_reset(gateway: Gateway):
    seen = []
    original = gateway.metrics.record_call

    def record(route: str, method: str, outcome: str, seconds: float) -> None:
        seen.append(metrics.CALL.get())
        original(route, method, outcome, seconds)

    gateway.metrics.record_call = record  # type: ignore[method-assign]
    await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    assert seen == [None]  # observed after the call's scope was reset
    assert metrics.CALL.get() is None
    health = gateway.board.routes["binance"]
    assert health.last_outcome == "ok" and health.last_ok_at is not None


async def test_labels_stay_bounded_whatever_the_request(gateway: Gateway):
    await gateway.handle("binance", body("getTickerz"), None)
    await gateway.handle("binance", body("__api_/api/v3/account"), None)
    await gateway.handle("binance", b"{not json", None)
    await gateway.handle("no-such-route-1234", body("ticker", symbol="BTC_USDT"), None)
    labels = set(gateway.board.calls)
    assert labels == {("binance", "unknown"), ("binance", "__api_"), ("binance", "-"), ("-", "ticker")}


def test_method_labels():
    assert _method_label(None) == "-"
    assert _method_label(parse_envelope(b'{"method": "GetAccount"}')) == "getaccount"
    assert _method_label(parse_envelope(b'{"method": "__api_/fapi/v2/account"}')) == "__api_"
    assert _method_label(parse_envelope(b'{"method": "frobnicate"}')) == "unknown"


def test_every_known_method_is_its_own_label_in_calls_and_retries():
    for name in METHODS:  # dispatch and metrics.retry share metrics.method_label: no name may be cut
        assert metrics.method_label(name) == name


async def test_a_crash_is_logged_at_error_with_a_scrubbed_traceback(gateway: Gateway, monkeypatch):
    from gateway import methods

    async def broken(call):
        raise RuntimeError(f"boom with {CANARY_SECRET}")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("gateway").addHandler(handler)
    try:
        monkeypatch.setitem(methods.METHODS, "ticker", methods.Method(broken, False, "GetTicker"))
        reply = await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    finally:
        logging.getLogger("gateway").removeHandler(handler)
    assert reply == {"error": "InternalError: boom with ***"}
    [crash] = [r for r in records if r.name == "gateway.access"]
    assert crash.levelno == logging.ERROR and "RuntimeError" in crash.fields["traceback"]  # type: ignore[attr-defined]
    assert CANARY_SECRET not in crash.getMessage()
