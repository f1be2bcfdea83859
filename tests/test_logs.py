"""Logs: one line per FMZ call, trades and cancels as an audit trail, text or JSON, never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.credentials import parse_credentials
from gateway.logs import configure_logging, emit, line, log_startup
from gateway.settings import ServerSettings, parse_settings
from tests.conftest import CANARY_PASSPHRASE, CANARY_SECRET, Fake, GatewayClient, open_account
from tests.fakes.server import BackgroundServer, Fault
from tests.test_metrics import instrumented, serve  # noqa: F401  (a fixture, used by name)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, logger: str | None = None, event: str | None = None) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if (logger is None or r.name == logger) and (event is None or r.getMessage().startswith(event + " "))
        ]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def observed(instrumented: None, fake_binance: Fake, fake_okx: Fake) -> Iterator[GatewayClient]:  # noqa: F811
    with serve(fake_binance, fake_okx) as client:
        yield client


def fields(record: logging.LogRecord) -> dict:
    return record.fields  # type: ignore[attr-defined]


def test_a_successful_trade_is_audited_with_key_id_and_order_id_never_the_secret(
    observed: GatewayClient, fake_binance: Fake, records: Records
):
    account = open_account("binance", fake_binance, observed)
    key_id = parse_credentials(account.access_key, account.secret_key, {}, "binance").key_id
    order_id = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "20000", "amount": "0.01"})["id"]
    [audit] = records.lines("gateway.audit")
    text = audit.getMessage()
    assert audit.levelno == logging.INFO and text.startswith("audit ")
    assert f"key={key_id}" in text and f"order_id={order_id}" in text
    assert "route=binance" in text and "symbol=BTC_USDT" in text and "type=buy" in text
    assert "amount=0.01" in text and "price=20000" in text and "outcome=ok" in text
    assert CANARY_SECRET not in text and CANARY_SECRET not in json.dumps(fields(audit))
    assert fields(audit)["order_id"] == order_id and fields(audit)["key"] == key_id

    account.data("cancel", {"id": order_id})
    [_, cancel] = records.lines("gateway.audit")
    assert cancel.levelno == logging.INFO and f"id={order_id}" in cancel.getMessage()
    assert f"key={key_id}" in cancel.getMessage() and "method=cancel" in cancel.getMessage()


def test_a_failed_trade_is_audited_at_warning_with_its_error(
    observed: GatewayClient, fake_binance: Fake, records: Records
):
    account = open_account("binance", fake_binance, observed)
    error = account.error("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "20000", "amount": "1000000"})
    [audit] = records.lines("gateway.audit")
    assert audit.levelno == logging.WARNING and fields(audit)["error"] == error
    assert fields(audit)["outcome"] == error.partition(":")[0] and "order_id" not in fields(audit)


def test_one_line_per_call_reads_at_debug_failures_at_warning(observed: GatewayClient, records: Records):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    error = observed.call("binance", "ticker", {"symbol": "NOPE_USDT"})["error"]
    ok, failed = records.lines("gateway.access", "call")
    assert ok.levelno == logging.DEBUG and failed.levelno == logging.WARNING
    line_fields = fields(ok)
    for name in ("rid", "route", "method", "symbol", "key", "nonce", "outcome", "ms", "upstream_ms"):
        assert name in line_fields, name
    assert line_fields["outcome"] == "ok" and line_fields["symbol"] == "BTC_USDT" and line_fields["method"] == "ticker"
    assert line_fields["upstream_ms"] > 0 and line_fields["upstream_requests"] >= 1  # markets and the ticker
    assert line_fields["ms"] >= line_fields["upstream_ms"]
    assert fields(failed)["error"] == error and fields(failed)["rid"] != line_fields["rid"]


def test_the_key_in_logs_is_the_api_keys_fingerprint(observed: GatewayClient, records: Records):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"}, access_key="some-api-key", secret_key="secret-one")
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"}, access_key="some-api-key", secret_key="secret-two")
    one, two = (fields(r)["key"] for r in records.lines("gateway.access", "call"))
    assert one == two == parse_credentials("some-api-key", "", {}, "binance").key_id


def test_a_retry_line_names_route_method_and_key(observed: GatewayClient, fake_binance: Fake, records: Records):
    account = open_account("binance", fake_binance, observed)
    fake_binance.faults.inject(Fault(status=503, body=b"busy", content_type="text/plain"), "/api/v3/account")
    account.data("accounts")
    key_id = parse_credentials(account.access_key, "", {}, "binance").key_id
    [retry] = [r for r in records.records if "retrying a read" in r.getMessage()]
    assert retry.getMessage().startswith(f"binance accounts key={key_id}: retrying a read after")


def test_a_refused_client_is_logged_once_a_minute(records: Records):
    app = create_app(parse_settings({"server": {"allowed_clients": ["10.0.0.0/8"]}}))
    app.client_filter.allows = lambda client: False
    server = BackgroundServer(app).start()
    try:
        for _ in range(3):
            assert httpx.post(f"{server.url}/binance", json={"method": "ticker"}).status_code == 403
    finally:
        server.stop()
    [refusal] = [r for r in records.records if r.getMessage().startswith("refused client")]
    assert refusal.levelno == logging.WARNING and "127.0.0.1" in refusal.getMessage()
    assert "POST" in refusal.getMessage() and "/binance" in refusal.getMessage()


def test_values_that_could_forge_a_line_are_quoted():
    text = line("call", {"route": "binance", "symbol": "BTC_USDT\nfake=line", "error": 'a "quoted" error', "x": None})
    assert "\n" not in text
    assert text == r'call route=binance symbol="BTC_USDT\nfake=line" error="a \"quoted\" error" x=-'


@pytest.fixture
def own_logging() -> Iterator[io.StringIO]:
    """configure_logging on a stream, the test session's root logging restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_the_same_fields(own_logging: io.StringIO):
    configure_logging(ServerSettings(log_format="json", log_level="debug"), own_logging)
    configure_logging(ServerSettings(log_format="json", log_level="debug"), own_logging)  # idempotent
    call = {"rid": "ab-1", "route": "binance", "method": "ticker", "symbol": "BTC_USDT", "key": "0123456789"}
    emit(logging.getLogger("gateway.access"), logging.DEBUG, "call", {**call, "outcome": "ok", "ms": 1.5})
    logging.getLogger("gateway.calls").info("plain %s", "message")
    first, second = [json.loads(text) for text in own_logging.getvalue().splitlines()]
    assert first["event"] == "call" and first["level"] == "debug" and first["logger"] == "gateway.access"
    assert {k: first[k] for k in call} == call and first["ms"] == 1.5 and first["ts"].endswith("Z")
    assert second["msg"] == "plain message" and second["level"] == "info"


def test_text_logs_and_levels(own_logging: io.StringIO):
    configure_logging(ServerSettings(log_format="text", log_level="info"), own_logging)
    logging.getLogger("gateway.access").debug("not shown")
    emit(logging.getLogger("gateway.audit"), logging.INFO, "audit", {"route": "okx", "order_id": "BTC_USDT,1"})
    [text] = own_logging.getvalue().splitlines()
    assert text.endswith(" INFO gateway.audit: audit route=okx order_id=BTC_USDT,1")
    assert logging.getLogger("ccxt").getEffectiveLevel() >= logging.WARNING


def test_startup_line(own_logging: io.StringIO, tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("exchanges:\n  okx-demo: {ccxt: okx, sandbox: true}\n  binance: {}\n")
    settings = parse_settings(
        {"server": {"log_format": "json"}, "exchanges": {"okx-demo": {"ccxt": "okx", "sandbox": True}, "binance": {}}}
    )
    configure_logging(settings.server, own_logging)
    log_startup(settings, config, port=7777)
    [doc] = [json.loads(text) for text in own_logging.getvalue().splitlines()]
    assert doc["event"] == "startup" and doc["version"] and doc["config"] == str(config)
    assert doc["routes"] == "binance, okx-demo (okx, sandbox)" and doc["listen"] == "127.0.0.1:7777"
    assert "/metrics" in doc["endpoints"] and "/status" in doc["endpoints"]


def test_no_secret_in_any_line_of_a_busy_session(observed: GatewayClient, fake_okx: Fake, records: Records):
    account = open_account("okx", fake_okx, observed)
    account.data("accounts")
    account.call("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "20000", "amount": "0.01"})
    account.call("cancel", {"id": "BTC_USDT,nope"})
    account.call("__api_/api/v5/account/balance", {})
    text = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in records.records)
    assert records.records and CANARY_SECRET not in text and CANARY_PASSPHRASE not in text
