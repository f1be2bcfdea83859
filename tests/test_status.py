"""GET /status (HTML and JSON), GET /healthz, and the page in a real headless browser."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.credentials import parse_credentials
from gateway.status import (
    FAILURES_KEPT,
    LATENCY_WINDOW,
    StatusBoard,
    fmt_ms,
    fmt_rate,
    percentile,
    stream_state,
)
from tests.conftest import API_KEY, CANARY_PASSPHRASE, CANARY_SECRET, REPLIES, Fake, GatewayClient
from tests.fakes.server import Fault
from tests.test_metrics import instrumented, serve  # noqa: F401  (a fixture, used by name)

KEY_ID = parse_credentials(API_KEY, CANARY_SECRET, {}, "binance").key_id


def status_json(client: GatewayClient) -> dict:
    response = client.http.get(f"{client.url}/status", params={"format": "json"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    REPLIES.append(response.text)
    return response.json()


def status_html(client: GatewayClient) -> str:
    response = client.http.get(f"{client.url}/status")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    REPLIES.append(response.text)
    return response.text


def healthz(client: GatewayClient) -> tuple[int, dict]:
    response = client.http.get(f"{client.url}/healthz")
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


@pytest.fixture
def observed(instrumented: None, fake_binance: Fake, fake_okx: Fake) -> Iterator[GatewayClient]:  # noqa: F811
    with serve(fake_binance, fake_okx, clients={"read_retries": 0, "settle_window": 3}) as client:
        yield client


def some_calls(client: GatewayClient) -> str:
    """Three good tickers, one balance, one failing cancel (the exchange knows no such order)."""
    for _ in range(3):
        client.data("binance", "ticker", {"symbol": "BTC_USDT"})
    client.data("binance", "accounts")
    return client.call("binance", "cancel", {"id": "BTC_USDT,424242"})["error"]


def test_status_json_reports_calls_keys_failures_and_routes(observed: GatewayClient):
    error = some_calls(observed)
    data = status_json(observed)
    calls = {(c["route"], c["method"]): c for c in data["calls"]}
    ticker = calls[("binance", "ticker")]
    assert ticker["count"] == 3 and ticker["errors"] == 0 and ticker["error_rate"] == 0
    assert 0 < ticker["p50_ms"] <= ticker["p99_ms"]
    assert calls[("binance", "cancel")]["errors"] == 1 and calls[("binance", "cancel")]["error_rate"] == 1
    assert data["calls_total"] == 5 and data["errors_total"] == 1
    [key] = [k for k in data["keys"] if k["route"] == "binance"]
    assert key["key_id"] == KEY_ID and key["method"] == "cancel" and key["outcome"] == error.partition(":")[0]
    [failure] = data["failures"]
    assert failure["error"] == error and failure["key_id"] == KEY_ID and failure["method"] == "cancel"
    binance = next(r for r in data["routes"] if r["route"] == "binance")
    assert binance["ok"] and 0 <= binance["markets_age_s"] < 60 and binance["last_upstream"] == "4xx"
    assert "HTTP 400" in binance["last_upstream_error"] and binance["recent_upstream"]["ok"] >= 3
    assert data["ok"] and data["clients"]["private_clients"] == 1


def test_upstream_errors_are_scrubbed_of_the_keys_secrets(observed: GatewayClient, fake_binance: Fake):
    echo = f'{{"code":-1022,"msg":"Signature for this request is not valid: {CANARY_SECRET}"}}'.encode()
    fake_binance.faults.inject(Fault(status=400, body=echo), "/api/v3/account")
    reply = observed.call("binance", "accounts")
    assert CANARY_SECRET not in json.dumps(reply)
    data = status_json(observed)
    binance = next(r for r in data["routes"] if r["route"] == "binance")
    assert "Signature for this request is not valid" in binance["last_upstream_error"]
    page = json.dumps(data) + status_html(observed)
    assert CANARY_SECRET not in page and CANARY_PASSPHRASE not in page


def test_cooldown_and_budget_that_others_report_are_shown(observed: GatewayClient):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    gateway = observed.app.state.gateway
    gateway.metrics.cooldown("binance", 30, "Retry-After from binance")
    gateway.metrics.budget("binance", 300, 1200)
    binance = next(r for r in status_json(observed)["routes"] if r["route"] == "binance")
    assert 29 < binance["cooldown_s"] <= 30 and binance["cooldown_reason"] == "Retry-After from binance"
    assert binance["budget_ratio"] == 0.25
    page = status_html(observed)
    assert "Retry-After from binance" in page and "300 / 1200 (25%)" in page


def test_the_page_is_plain_html_that_refreshes_itself(observed: GatewayClient):
    some_calls(observed)
    page = status_html(observed)
    assert '<meta http-equiv="refresh"' in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external assets
    assert KEY_ID in page and "Unknown order sent" in page


def test_html_escapes_what_it_shows():
    board = StatusBoard()
    board.record_call("binance", "ticker", False, 1.0, "<b>key</b>", "", "BadRequest: <script>alert(1)</script>")
    from gateway.status import render_html

    page = render_html(
        {
            "version": "0",
            "ccxt_version": "0",
            "now": time.time(),
            "uptime_s": 1,
            "problems": {},
            "calls_total": 1,
            "errors_total": 1,
            "clients": {},
            "routes": [],
            "calls": [],
            "keys": [],
            "failures": [
                {
                    "at": time.time(),
                    "age_s": 0,
                    "route": "r",
                    "method": "m",
                    "key_id": "<b>key</b>",
                    "error": "BadRequest: <script>alert(1)</script>",
                }
            ],
        }
    )
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;key" in page


def test_windows_are_bounded():
    board = StatusBoard(max_keys=10)
    for n in range(LATENCY_WINDOW + 100):
        board.record_call("binance", "ticker", n % 2 == 0, float(n), "k", f"cache-{n}", "Kind: failed")
    stats = board.calls[("binance", "ticker")]
    assert stats.count == LATENCY_WINDOW + 100 and len(stats.latencies) == LATENCY_WINDOW
    assert len(board.failures) == FAILURES_KEPT and len(board.clients) == 10
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert percentile([], 0.5) is None


# --- /healthz ----------------------------------------------------------------------------------


def test_healthz_is_ok_when_every_route_can_serve(observed: GatewayClient):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    status, body = healthz(observed)
    assert status == 200 and body["status"] == "ok" and "private_clients" in body and "problems" not in body


def test_healthz_names_a_route_whose_markets_failed_to_load(instrumented: None, fake_binance: Fake, fake_okx: Fake):  # noqa: F811
    closed = _closed_port()
    exchanges = {
        "dead": {"ccxt": "binance", "api_base": f"http://127.0.0.1:{closed}", "ccxt_config": {"timeout": 2000}}
    }
    with serve(fake_binance, fake_okx, exchanges=exchanges) as client:
        client.data("binance", "ticker", {"symbol": "BTC_USDT"})
        assert "error" in client.call("dead", "ticker", {"symbol": "BTC_USDT"})
        status, body = healthz(client)
        assert status == 503 and body["status"] == "unavailable" and list(body["problems"]) == ["dead"]
        assert body["problems"]["dead"].startswith("markets failed to load: ExchangeNotAvailable")
        dead = next(r for r in status_json(client)["routes"] if r["route"] == "dead")
        assert not dead["ok"] and dead["last_upstream"] == "refused" and dead["markets_age_s"] is None


@pytest.mark.parametrize(("status", "kind"), [(418, "418 (IP banned)"), (429, "429 (rate limited)")])
def test_healthz_names_a_route_whose_exchange_refuses_or_limits(
    observed: GatewayClient, fake_binance: Fake, status: int, kind: str
):
    observed.data("binance", "ticker", {"symbol": "BTC_USDT"})
    body = b'{"code":-1003,"msg":"Too many requests"}'
    fake_binance.faults.inject(Fault(status=status, body=body), "/api/v3/ticker/24hr")
    assert "error" in observed.call("binance", "ticker", {"symbol": "ETH_USDT"})
    code, health = healthz(observed)
    assert code == 503 and kind in health["problems"]["binance"] and "okx" not in health["problems"]
    if status == 418:  # the IP cools down (60 s, growing): nothing is sent meanwhile; here the time passes at once
        assert "IP banned" in observed.call("binance", "ticker", {"symbol": "ETH_USDT"})["error"]
        assert healthz(observed)[0] == 503  # it cannot serve meanwhile
        for budget in observed.app.gateway.pool.limits.public.values():
            budget.cooldown_until = 0.0
        observed.app.gateway.board.routes["binance"].cooldown_until = None
    observed.data("binance", "ticker", {"symbol": "ETH_USDT"})  # the exchange answers again
    assert healthz(observed)[0] == 200


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


# --- a real browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,1400",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed and could not be (.ci/run: apt-get install -y chromium)"
)


class Cells(HTMLParser):
    """{(table id, row key, data-k): text} of every cell with a data-k, and the text of element ids."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple, str] = {}
        self.ids: dict[str, str] = {}
        self._table = self._row = None
        self._cell: list | None = None
        self._id: list | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr":
            self._row = (a.get("data-route"), a.get("data-method") or a.get("data-key") or a.get("data-kind"))
        elif tag == "td" and "data-k" in a:
            self._cell = [(self._table, self._row, a["data-k"]), ""]
        if tag == "div" and "id" in a:
            self._id = [a["id"], ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells[self._cell[0]] = self._cell[1].strip()
            self._cell = None
        if tag == "div" and self._id is not None:
            self.ids[self._id[0]] = self._id[1].strip()
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1] += data
        if self._id is not None:
            self._id[1] += data + " "


def assert_page_shows(dom: str, data: dict) -> None:
    parsed = Cells()
    parsed.feed(dom)
    for c in data["calls"]:
        row = ("calls", (c["route"], c["method"]))
        assert parsed.cells[(*row, "count")] == str(c["count"])
        assert parsed.cells[(*row, "errors")] == str(c["errors"])
        assert parsed.cells[(*row, "error_rate")] == fmt_rate(c["error_rate"])
        assert parsed.cells[(*row, "p50_ms")] == fmt_ms(c["p50_ms"])
        assert parsed.cells[(*row, "p99_ms")] == fmt_ms(c["p99_ms"])
    for r in data["routes"]:
        assert parsed.cells[("routes", (r["route"], None), "last_upstream")].startswith(r["last_upstream"] or "")
    assert parsed.ids["calls-total"].split()[0] == str(data["calls_total"])
    assert parsed.ids["errors-total"].split()[0] == str(data["errors_total"])
    assert parsed.ids["private-clients"].split()[0] == str(data["clients"]["private_clients"])
    for failure in data["failures"]:
        assert failure["error"] in dom.replace("&amp;", "&")
    for key in data["keys"]:
        assert key["key_id"] in dom


@needs_chromium
def test_the_status_page_in_a_real_browser(observed: GatewayClient, tmp_path: Path):
    error = some_calls(observed)
    data = status_json(observed)
    assert data["calls_total"] == 5 and data["errors_total"] == 1
    url = f"{observed.url}/status"

    # 1. --dump-dom: the DOM chromium built, with its console on stderr
    dumped = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile-dump'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert "<table" in dumped.stdout and error.split(":")[0] in dumped.stdout
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert_page_shows(dumped.stdout, data)

    # 2. the DevTools protocol: console and network errors, the rendered DOM, a screenshot
    screenshot = Path(os.environ.get("STATUS_SCREENSHOT") or tmp_path / "status.png")
    dom, problems = asyncio.run(_devtools_visit(url, tmp_path / "profile-cdp", screenshot))
    assert not problems, problems
    assert_page_shows(dom, data)
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def _devtools_visit(url: str, profile: Path, screenshot: Path) -> tuple[str, list[str]]:
    """Load `url` in chromium driven over its DevTools websocket; return its DOM and every console
    message, uncaught exception or failed load."""
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        browser_ws = await asyncio.wait_for(_devtools_address(process), 60)
        port = re.search(r":(\d+)/", browser_ws).group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                targets = await reply.json(content_type=None)
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            async with http.ws_connect(page_ws, max_msg_size=0) as ws:
                return await asyncio.wait_for(_drive(ws, url, screenshot), 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def _devtools_address(process: asyncio.subprocess.Process) -> str:
    while True:
        line = await process.stderr.readline()
        if not line:
            raise RuntimeError("chromium exited before opening its DevTools port")
        found = re.search(rb"DevTools listening on (ws://\S+)", line)
        if found:
            return found.group(1).decode()


async def _drive(ws: Any, url: str, screenshot: Path) -> tuple[str, list[str]]:
    ids = iter(range(1, 1_000_000))
    problems: list[str] = []
    pending: dict[int, asyncio.Future] = {}
    loaded = asyncio.Event()

    async def reader() -> None:
        async for message in ws:
            doc = json.loads(message.data)
            if "id" in doc and doc["id"] in pending:
                pending.pop(doc["id"]).set_result(doc)
                continue
            method, params = doc.get("method"), doc.get("params", {})
            if method == "Page.loadEventFired":
                loaded.set()
            elif method == "Runtime.exceptionThrown":
                problems.append(f"uncaught: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled":
                problems.append(f"console.{params.get('type')}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                problems.append(f"log {params['entry'].get('level')}: {params['entry'].get('text')}")
            elif method == "Network.loadingFailed":
                problems.append(f"load failed: {params.get('errorText')}")
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")

    async def send(method: str, **params: Any) -> dict:
        ident = next(ids)
        pending[ident] = asyncio.get_running_loop().create_future()
        await ws.send_json({"id": ident, "method": method, "params": params})
        reply = await pending[ident]
        assert "error" not in reply, reply
        return reply.get("result", {})

    task = asyncio.create_task(reader())
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await send(f"{domain}.enable")
        await send("Page.navigate", url=url)
        await loaded.wait()
        await asyncio.sleep(0.3)  # late console messages, if any
        dom = (await send("Runtime.evaluate", expression="document.documentElement.outerHTML"))["result"]["value"]
        shot = await send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return dom, problems
    finally:
        task.cancel()


# --- streams (gateway/streams.py) -------------------------------------------------------------------


def _from_stream(reply: dict) -> bool:
    source = (reply.get("raw") or {}).get("source") if isinstance(reply.get("raw"), dict) else None
    return isinstance(source, dict) and source.get("from") == "stream"


def test_status_shows_streams_by_route_and_kind(instrumented: None, fake_binance: Fake, fake_okx: Fake):  # noqa: F811
    fast = {"enableRateLimit": False, "timeout": 5000}
    on = {"ticker": "on", "depth": "on", "max_age_ms": 2000}
    routes = {
        "bn-ws": {"ccxt": "binance", "api_base": fake_binance.url, "ccxt_config": fast, "streams": on},
        "bn-rest": {
            "ccxt": "binance",
            "api_base": fake_binance.url,
            "ccxt_config": fast,
            "streams": {"ticker": "off", "depth": "off", "trades": "off", "records": "off"},
        },
    }
    with serve(fake_binance, fake_okx, exchanges=routes) as client:
        data = status_json(client)
        assert data["streams"] == []
        assert 'id="streams-empty"' in status_html(client)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ticker = client.call("bn-ws", "ticker", {"symbol": "BTC_USDT"})
            book = client.call("bn-ws", "depth", {"symbol": "BTC_USDT", "limit": 5})
            if _from_stream(ticker) and _from_stream(book):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the streams never answered")
        for _ in range(3):
            assert _from_stream(client.call("bn-ws", "ticker", {"symbol": "BTC_USDT"}))
        client.data("bn-rest", "ticker", {"symbol": "BTC_USDT"})

        data = status_json(client)
        rows = {(r["route"], r["kind"]): r for r in data["streams"]}
        assert set(rows) == {("bn-ws", "ticker"), ("bn-ws", "depth")}  # bn-rest streams nothing
        ticker_row = rows[("bn-ws", "ticker")]
        assert ticker_row["mode"] == "on" and ticker_row["subscriptions"] == 1
        assert (ticker_row["healthy"], ticker_row["stale"], ticker_row["rebuilding"]) == (1, 0, 0)
        assert 0 <= ticker_row["age_ms_p50"] <= ticker_row["age_ms_max"] <= 2000
        assert ticker_row["reconnects"] == 0 and ticker_row["answers_from_memory"] >= 4
        asked = ticker_row["answers_from_memory"] + ticker_row["answers_over_rest"]
        assert ticker_row["memory_share"] == round(ticker_row["answers_from_memory"] / asked, 4)
        [symbol] = ticker_row["symbols"]
        assert symbol["symbol"] == "BTC/USDT" and symbol["state"] == "healthy"
        assert rows[("bn-ws", "depth")]["healthy"] == 1 and rows[("bn-ws", "depth")]["answers_from_memory"] >= 1

        parsed = Cells()
        parsed.feed(status_html(client))
        for (route, kind), row in rows.items():
            cell = {k: v for (table, key, k), v in parsed.cells.items() if table == "streams" and key == (route, kind)}
            for k in ("subscriptions", "healthy", "stale", "rebuilding", "reconnects", "resyncs"):
                assert cell[k] == str(row[k]), k
            assert cell["memory_share"] == fmt_rate(row["memory_share"])
            asked = row["answers_from_memory"] + row["answers_over_rest"]
            assert cell["answers"] == f"{row['answers_from_memory']} / {asked}"
            assert re.fullmatch(r"\d+\.\d\d", cell["age_ms_p50"]) and re.fullmatch(r"\d+\.\d\d", cell["age_ms_max"])


def test_stream_states():
    healthy = {"healthy": True, "age_ms": 12.0, "error": None}
    assert stream_state(healthy) == "healthy"
    assert stream_state({"healthy": False, "age_ms": None, "error": None}) == "rebuilding"  # first snapshot
    assert stream_state({"healthy": False, "age_ms": 80.0, "error": "InvalidNonce: gap"}) == "rebuilding"
    assert stream_state({"healthy": False, "age_ms": 80.0, "error": "crossed or empty book"}) == "rebuilding"
    assert stream_state({"healthy": False, "age_ms": 3000.0, "error": None}) == "stale"  # too old
    assert stream_state({"healthy": False, "age_ms": 10500.0, "error": "silent"}) == "stale"
    assert stream_state({"healthy": False, "age_ms": None, "error": "NetworkError: refused"}) == "stale"
