"""gateway.capabilities: the report, the README table, and every ccxt exchange behind the gateway."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from pathlib import Path

import ccxt.async_support as ccxt
import pytest

from gateway import capabilities, errors
from gateway.calls import Call
from gateway.capabilities import FUNCTIONS, capability_report, offline_groups
from gateway.credentials import NO_CREDENTIALS
from gateway.dispatch import Gateway
from gateway.fallbacks import ONE, TABLES, Ask, answer, group_name, snake
from gateway.protocol import Envelope
from gateway.settings import ClientSettings, Venue, parse_settings
from gateway.symbols import MarketIndex

README = Path(__file__).resolve().parent.parent / "README.md"
STATUSES = {"native", "fallback", "unsupported"}


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {report["exchange"]: report for report in capabilities.all_reports()}


def test_the_readme_tables_are_generated_from_the_code():
    text = README.read_text(encoding="utf-8")
    assert capabilities.updated_readme(text, capabilities.readme_blocks()) == text, (
        "README's generated tables are stale: run python -m gateway.capabilities --update README.md"
    )


def test_every_ccxt_exchange_has_a_report(reports):
    assert sorted(reports) == sorted(ccxt.exchanges)
    for exchange_id, report in reports.items():
        assert set(report["functions"]) == set(FUNCTIONS), exchange_id
        assert {f["status"] for f in report["functions"].values()} <= STATUSES, exchange_id
        assert isinstance(report["credentials"]["required"], list)
        assert isinstance(report["sandbox"]["available"], bool)
        assert "markets" not in report  # offline: nothing loaded, no counts


def test_well_known_exchanges(reports):
    binance, kraken, bybit = reports["binance"], reports["kraken"], reports["bybit"]
    assert binance["functions"]["GetOrder"]["via"][0] == "fetchOrder"
    assert binance["sandbox"]["available"] and not kraken["sandbox"]["available"]
    assert kraken["functions"]["GetPositions"]["status"] == "unsupported"  # spot only in ccxt
    assert bybit["functions"]["GetHistoryOrders"] | {"groups": None} == {
        "method": "historyorders",
        "status": "fallback",  # ccxt's features: no fetchOrders for bybit
        "via": ["fetchCanceledAndClosedOrders", "fetchClosedOrders"],
        "groups": None,
        "without_symbol": "fallback",
        "symbol_required": [],
    }
    assert "spot: fetchOrders" in binance["functions"]["GetHistoryOrders"]["symbol_required"]
    assert reports["hyperliquid"]["credentials"]["required"] == ["privateKey", "walletAddress"]
    assert reports["okx"]["credentials"]["required"] == ["apiKey", "secret", "password"]


def test_totals_count_every_exchange_once(reports):
    counted = capabilities.totals(list(reports.values()))
    assert all(sum(c.values()) == len(reports) for c in counted.values())
    assert counted["GetMarkets"]["native"] == len(reports)


class Reached(Exception):
    """The first ccxt method a handler's table called (raised instead of any request)."""


RUNNABLE = [f for f, rows in TABLES.items() if all(row.ask is not None for row in rows)]


def _ask(function: str, group: tuple, case: str) -> Ask:
    if case == ONE:
        return Ask(group, symbol="BTC/USDT", order_id="1", scoped=function in ("GetPositions", "GetAccount"))
    return Ask(group, symbols=("BTC/USDT",), scoped=True)


def test_the_report_is_what_the_handlers_do(reports):
    """For every exchange, market group and table-run function: the first ccxt method the gateway
    calls is the report's first `via` (native or fallback); an unsupported one calls nothing."""

    async def first_called(exchange, function: str, ask: Ask) -> str | None:
        for rows in TABLES.values():
            for row in rows:
                name = row.ccxt

                async def reached(*args, name=name, **kwargs):
                    raise Reached(name)

                setattr(exchange, snake(name), reached)
        call = Call(
            Envelope("k", "s", "x", {}),
            Venue(route=exchange.id, ccxt_id=exchange.id),
            NO_CREDENTIALS,
            None,
            exchange,
            MarketIndex({}, exchange.id),
            ClientSettings(read_retries=0),
        )
        try:
            await answer(call, function, ask)
        except Reached as exc:
            return str(exc)
        except (errors.NotSupported, errors.BadRequest):
            return None
        raise AssertionError("answered without calling ccxt")

    async def check_all() -> list[str]:
        wrong = []
        for exchange_id in ccxt.exchanges:
            exchange = getattr(ccxt, exchange_id)({})
            for function in RUNNABLE:
                case = FUNCTIONS.get(function, ("", ONE))[1]
                for group in offline_groups(exchange):
                    judged = reports[exchange_id]["functions"][function]["groups"][group_name(group)]
                    called = await first_called(exchange, function, _ask(function, group, case))
                    expected = judged["via"][0] if judged["status"] != "unsupported" else None
                    if called != expected:
                        wrong.append(f"{exchange_id} {function} {group_name(group)}: {called} != {expected}")
        return wrong

    assert asyncio.run(check_all()) == []


def test_records_and_orders_are_judged_as_their_handlers_decide(reports):
    """GetRecords, CreateOrder and CancelOrder run outside the tables (candles.py, trading.py):
    their status must still say what those handlers do."""
    for exchange_id in ccxt.exchanges:
        exchange = getattr(ccxt, exchange_id)({})
        functions = reports[exchange_id]["functions"]
        records = functions["GetRecords"]["status"]
        has_ohlcv = exchange.has.get("fetchOHLCV")
        native = bool(has_ohlcv) and has_ohlcv != "emulated"  # ccxt's own candles, not its emulated ones
        expected = "native" if native else "fallback" if exchange.has.get("fetchTrades") else "unsupported"
        assert records == expected, exchange_id
        for function, method in (("CreateOrder", "createOrder"), ("CancelOrder", "cancelOrder")):
            assert (functions[function]["status"] == "native") == bool(exchange.has.get(method)), exchange_id


def test_a_route_report_counts_its_loaded_markets():
    venue = Venue(route="okx-demo", ccxt_id="okx", sandbox=True)
    markets = {
        "BTC/USDT": {"symbol": "BTC/USDT", "type": "spot", "spot": True},
        "ETH/USDT": {"symbol": "ETH/USDT", "type": "spot", "spot": True},
        "BTC/USD:BTC": {"symbol": "BTC/USD:BTC", "type": "swap", "contract": True, "inverse": True},
    }
    report = capability_report(venue, markets=markets)
    assert report["route"] == "okx-demo" and report["exchange"] == "okx"
    assert report["sandbox"] == {"available": True, "enabled": True}
    assert report["markets"] == {"total": 3, "spot": 2, "swap": 1}
    assert report["groups"] == ["spot", "swap.inverse"]  # what the route lists, not all ccxt knows
    assert report["functions"]["GetPositions"]["status"] == "native"


def test_a_served_route_reports_its_markets_once_loaded(tmp_path):
    markets = {
        "BTC/USDT": {
            "symbol": "BTC/USDT",
            "id": "BTCUSDT",
            "base": "BTC",
            "quote": "USDT",
            "type": "spot",
            "spot": True,
        },
        "ETH/USDT": {
            "symbol": "ETH/USDT",
            "id": "ETHUSDT",
            "base": "ETH",
            "quote": "USDT",
            "type": "spot",
            "spot": True,
        },
    }
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(markets))
    config = {"exchanges": {"pinned": {"ccxt": "binance", "markets_file": str(path)}}}
    gateway = Gateway(parse_settings(config))
    offline = capabilities.route_report(gateway, "PINNED")
    assert offline["route"] == "pinned" and offline["exchange"] == "binance" and "markets" not in offline

    async def load() -> dict:
        try:
            await gateway.pool.markets(gateway.venues.get("pinned"))
            return capabilities.route_report(gateway, "pinned")
        finally:
            await gateway.pool.close()

    loaded = asyncio.run(load())
    assert loaded["markets"] == {"total": 2, "spot": 2} and loaded["groups"] == ["spot"]
    assert loaded["functions"]["GetPositions"]["status"] == "unsupported"  # this route lists no contracts
    with pytest.raises(errors.UnknownRoute):
        capabilities.route_report(gateway, "nosuchroute")


def test_the_command_line_prints_a_report_or_the_table(capsys):
    assert capabilities.cli("BYBIT") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exchange"] == "bybit" and report["functions"]["GetOrder"]["status"] == "native"
    assert capabilities.main(["nosuchexchange"]) == 2
    assert capabilities.cli() == 0  # fmz-gateway exchanges --capabilities
    table = capsys.readouterr().out
    assert table.count("\n| ") == len(ccxt.exchanges) + 1  # a row per exchange after the header


# --- every ccxt exchange behind the gateway, with no network ---------------------------------------

OUR_KINDS = {cls.kind for cls in vars(errors).values() if inspect.isclass(cls) and issubclass(cls, errors.GatewayError)}
CCXT_KINDS = {name for name, cls in vars(ccxt).items() if inspect.isclass(cls) and issubclass(cls, ccxt.BaseError)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on leaving: connections to it are refused


def test_every_ccxt_exchange_answers_a_ticker_cleanly_without_a_network():
    """Each class constructs behind a route whose api_base is a closed loopback port; a ticker call
    answers {"error": "<kind>: ..."} at once with a ccxt or gateway kind, never InternalError."""
    port = closed_port()
    fast = {"enableRateLimit": False, "timeout": 3000}
    config = {
        "server": {"request_timeout": 5},
        "allow_any_ccxt_exchange": False,
        "exchanges": {
            exchange_id: {"ccxt": exchange_id, "api_base": f"http://127.0.0.1:{port}", "ccxt_config": fast}
            for exchange_id in ccxt.exchanges
        },
    }
    gateway = Gateway(parse_settings(config))
    body = json.dumps({"access_key": "", "secret_key": "", "method": "ticker", "params": {"symbol": "BTC_USDT"}})

    async def ask_all() -> list[dict]:
        try:
            return await asyncio.gather(*(gateway.handle(i, body.encode(), None) for i in ccxt.exchanges))
        finally:
            await gateway.pool.close()

    started = time.monotonic()
    replies = dict(zip(ccxt.exchanges, asyncio.run(ask_all()), strict=True))
    assert time.monotonic() - started < 30
    unclean = {}
    for exchange_id, reply in replies.items():
        kind = reply.get("error", "").partition(":")[0]
        if "data" in reply or kind == "InternalError" or kind not in CCXT_KINDS | OUR_KINDS:
            unclean[exchange_id] = reply
    assert unclean == {}
    assert all(capability_report(i)["exchange"] == i for i in ccxt.exchanges)


def test_the_cli_and_the_http_route_give_the_report(gateway):
    """`fmz-gateway exchanges --capabilities [id]` and `GET /capabilities/<route>`."""
    import json
    import subprocess
    import sys

    import httpx

    one = subprocess.run(
        [sys.executable, "-m", "gateway", "exchanges", "--capabilities", "bybit"], capture_output=True, text=True
    )
    report = json.loads(one.stdout)
    assert one.returncode == 0 and report["exchange"] == "bybit" and report["functions"]["GetOrder"]["status"]
    table = subprocess.run(
        [sys.executable, "-m", "gateway", "exchanges", "--capabilities"], capture_output=True, text=True
    )
    assert table.returncode == 0 and "| hyperliquid |" in table.stdout
    served = httpx.get(f"{gateway.url}/capabilities/okx")
    assert served.status_code == 200 and served.json()["exchange"] == "okx"
    missing = httpx.get(f"{gateway.url}/capabilities/nosuchroute")
    assert missing.status_code == 404 and missing.json()["error"].startswith("BadRequest:")
