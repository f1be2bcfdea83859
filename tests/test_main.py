"""The CLI: `python -m gateway serve|check|show-config|exchanges`, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import ccxt
import httpx
import pytest
import yaml

from gateway import __version__
from gateway.settings import parse_settings
from tests.conftest import Fake
from tests.fakes import binance
from tests.fakes.server import BackgroundServer, FaultInjector

RELOAD_KEY, RELOAD_SECRET = "reload-key", "reload-secret-7f3a"


def run(
    *args: str, timeout: float = 60, env: dict | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FMZ_GATEWAY_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # the package, from any cwd
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=timeout, env=environ, cwd=cwd
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(path: Path, doc: dict | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def markets_file(path: Path) -> Path:
    """Three ccxt unified markets (two spot, one swap), as a markets_file."""
    exchange = ccxt.binance()
    spot = {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "baseId": "BTC", "quoteId": "USDT"}
    markets = [
        dict(spot, type="spot", spot=True, active=True),
        dict(spot, id="ETHUSDT", symbol="ETH/USDT", base="ETH", baseId="ETH", type="spot", spot=True, active=True),
        dict(spot, symbol="BTC/USDT:USDT", settle="USDT", settleId="USDT", type="swap", swap=True, contract=True),
    ]
    path.write_text(json.dumps({m["symbol"]: exchange.safe_market_structure(m) for m in markets}))
    return path


def test_exchanges_lists_ccxt_ids():
    result = run("exchanges")
    assert result.returncode == 0 and {"binance", "okx", "bybit"} <= set(result.stdout.split())


def test_version_names_the_gateway_and_ccxt():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"fmz-gateway {__version__} (ccxt {ccxt.__version__}, Python ")


def test_bad_config_stops_startup_naming_the_key(tmp_path):
    config = write(tmp_path / "bad.yaml", "exchanges:\n  okx-demo:\n    sandbox: yes-please\n")
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "exchanges.okx-demo.sandbox: expected a boolean" in result.stderr
    assert str(config) in result.stderr  # names the file it read


@pytest.mark.parametrize("command", ["check", "serve"])
def test_an_unknown_log_level_is_a_config_error(tmp_path, command):
    config = write(tmp_path / "gw.yaml", {"server": {"log_level": "verbose"}})
    result = run(command, "--config", str(config))
    assert result.returncode == 2
    assert "server.log_level: expected one of debug, info, warning, error, got 'verbose'" in result.stderr


def test_check_names_the_file_and_passes_a_good_config(tmp_path):
    config = write(tmp_path / "gw.yaml", {"exchanges": {"binance-test": {"ccxt": "binance", "sandbox": True}}})
    result = run("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"config: {config}"
    assert "ok    binance-test -> binance (sandbox)" in result.stdout
    assert "1 configured routes, 0 failing" in result.stdout


def test_check_reports_routes_that_would_be_refused(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text(
        "exchanges:\n  kucoin-test: {ccxt: kucoin, sandbox: true}\n  binance-test: {ccxt: binance, sandbox: true}\n"
        "  typo: {ccxt: binanse}\n"
    )
    result = run("check", "--config", str(config))
    assert result.returncode == 1
    assert "ok    binance-test -> binance (sandbox)" in result.stdout
    assert "FAIL  kucoin-test: route 'kucoin-test': kucoin has no sandbox" in result.stdout
    assert "FAIL  typo: route 'typo': 'binanse' is not a ccxt exchange id (did you mean 'binance'" in result.stdout
    assert "serve would refuse to start" in result.stdout


def test_check_loads_markets_files_and_refuses_missing_or_invalid_ones(tmp_path):
    (tmp_path / "not-markets.json").write_text('{"BTC/USDT": 1}')
    (tmp_path / "not-json.json").write_text("{markets")
    config = write(
        tmp_path / "gw.yaml",
        {
            "exchanges": {
                "pinned": {"ccxt": "binance", "markets_file": str(markets_file(tmp_path / "markets.json"))},
                "missing": {"ccxt": "binance", "markets_file": str(tmp_path / "nope.json")},
                "garbage": {"ccxt": "binance", "markets_file": str(tmp_path / "not-markets.json")},
                "broken": {"ccxt": "binance", "markets_file": str(tmp_path / "not-json.json")},
            }
        },
    )
    result = run("check", "--config", str(config))
    assert result.returncode == 1
    assert "ok    pinned -> binance: 3 markets from the markets_file (spot 2, swap 1)" in result.stdout
    assert f"FAIL  missing: route 'missing': markets_file {tmp_path / 'nope.json'}: no such file" in result.stdout
    assert "FAIL  garbage: route 'garbage': markets_file" in result.stdout and "not a ccxt market" in result.stdout
    assert "FAIL  broken: route 'broken': markets_file" in result.stdout and "not valid JSON" in result.stdout
    assert "4 configured routes, 3 failing" in result.stdout


def test_check_probes_each_api_base_with_a_tcp_connection(tmp_path, fake_binance: Fake):
    closed = free_port()
    exchanges = {
        "up": {"ccxt": "binance", "api_base": fake_binance.url},
        "down": {"ccxt": "binance", "api_base": f"http://127.0.0.1:{closed}"},
    }
    before = len(fake_binance.faults.requests)
    result = run("check", "--config", str(write(tmp_path / "gw.yaml", {"exchanges": exchanges})))
    assert result.returncode == 1
    assert "ok    up -> binance" in result.stdout
    assert f"FAIL  down: api_base http://127.0.0.1:{closed} is unreachable: Connection refused" in result.stdout
    assert len(fake_binance.faults.requests) == before  # a connection, never a request


def test_check_online_loads_every_route_through_the_pool(tmp_path, fake_binance: Fake):
    exchanges = {
        "binance": {"ccxt": "binance", "api_base": fake_binance.url, "ccxt_config": {"enableRateLimit": False}}
    }
    before = sum(1 for _, path in fake_binance.faults.requests if path == "/api/v3/exchangeInfo")
    result = run("check", "--online", "--config", str(write(tmp_path / "gw.yaml", {"exchanges": exchanges})))
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ok    binance"))
    assert "markets from the exchange (" in line and "spot " in line and "swap " in line and "future " in line
    assert sum(1 for _, path in fake_binance.faults.requests if path == "/api/v3/exchangeInfo") > before


def test_check_online_reports_a_route_whose_markets_do_not_load(tmp_path, fake_binance: Fake):
    from tests.fakes.server import Fault

    exchanges = {
        "binance": {"ccxt": "binance", "api_base": fake_binance.url, "ccxt_config": {"enableRateLimit": False}}
    }
    fault = Fault(status=503, body=b"down for maintenance", content_type="text/plain")
    fake_binance.faults.inject(fault, "/api/v3/exchangeInfo", times=5)
    try:
        result = run("check", "--online", "--config", str(write(tmp_path / "gw.yaml", {"exchanges": exchanges})))
    finally:
        fake_binance.faults.withdraw(fault)
    assert result.returncode == 1
    assert "FAIL  binance: markets did not load: " in result.stdout


def test_an_alias_for_no_route_is_a_config_error(tmp_path):
    doc = {
        "allow_any_ccxt_exchange": False,
        "exchanges": {"binance": {}},
        "credentials": {"alice": {"token": "tok-1234", "apiKey": "k", "secret": "s", "routes": ["binance", "okx"]}},
    }
    config = write(tmp_path / "gw.yaml", doc)
    result = run("check", "--config", str(config))
    assert result.returncode == 2
    assert "FAIL  credentials.alice.routes: 'okx' is not a configured route" in result.stdout
    result = run("serve", "--config", str(config))
    assert result.returncode == 2 and "credentials.alice.routes: 'okx' is not a configured route" in result.stderr
    doc["allow_any_ccxt_exchange"] = True  # then any ccxt id is a route
    assert run("check", "--config", str(write(config, doc))).returncode == 0


def test_refused_routes_stop_serve_with_the_reasons(tmp_path):
    config = write(tmp_path / "gw.yaml", {"exchanges": {"kucoin-test": {"ccxt": "kucoin", "sandbox": True}}})
    result = run("serve", "--config", str(config), "--port", str(free_port()), timeout=60)
    assert result.returncode == 1
    assert "route kucoin-test is refused: route 'kucoin-test': kucoin has no sandbox" in result.stderr
    assert "server.skip_bad_routes: true" in result.stderr


def test_config_from_the_environment_and_the_flag_wins(tmp_path):
    from_env = write(tmp_path / "env.yaml", {"server": {"port": 7101}})
    from_flag = write(tmp_path / "flag.yaml", {"server": {"port": 7102}})
    result = run("show-config", env={"FMZ_GATEWAY_CONFIG": str(from_env)})
    assert str(from_env) in result.stdout.splitlines()[0] and "port: 7101" in result.stdout
    result = run("show-config", "--config", str(from_flag), env={"FMZ_GATEWAY_CONFIG": str(from_env)})
    assert str(from_flag) in result.stdout.splitlines()[0] and "port: 7102" in result.stdout
    result = run("show-config", env={"FMZ_GATEWAY_CONFIG": str(from_env), "FMZ_GATEWAY_LOG_LEVEL": "DEBUG"})
    assert "log_level: debug" in result.stdout
    result = run("check", env={"FMZ_GATEWAY_CONFIG": str(from_env), "FMZ_GATEWAY_LOG_LEVEL": "verbose"})
    assert result.returncode == 2 and "FMZ_GATEWAY_LOG_LEVEL: expected one of" in result.stderr
    result = run("check", env={"FMZ_GATEWAY_CONFIG": str(tmp_path / "absent.yaml")})
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_show_config_fills_defaults_and_redacts_every_secret(tmp_path, monkeypatch):
    secrets = ["tok-SECRET-1", "AK-SECRET-2", "SK-SECRET-3", "PW-SECRET-4", "HDR-SECRET-5", "PROXY-SECRET-6"]
    doc = {
        "exchanges": {
            "okx-main": {
                "ccxt": "okx",
                "api_base": "http://127.0.0.1:9",
                "options": {"defaultType": "swap", "apiKey": secrets[1]},
                "ccxt_config": {
                    "timeout": 5000,
                    "headers": {"Authorization": f"Bearer {secrets[4]}", "X-Mode": "paper"},
                    "httpsProxy": f"http://user:{secrets[5]}@proxy.local:3128",
                    "password": secrets[3],
                },
            }
        },
        "credentials": {
            "alice": {"token_env": "FMZ_TEST_ALIAS_TOKEN", "apiKey": secrets[1], "secret": secrets[2]},
        },
    }
    config = write(tmp_path / "gw.yaml", doc)
    result = run("show-config", "--config", str(config), env={"FMZ_TEST_ALIAS_TOKEN": secrets[0]})
    assert result.returncode == 0, result.stderr
    assert str(config) in result.stdout.splitlines()[0]
    for secret in secrets:
        assert secret not in result.stdout
    shown = yaml.safe_load(result.stdout)
    assert shown["server"]["request_timeout"] == 10.0 and shown["clients"]["settle_window"] == 5.0  # defaults
    route = shown["exchanges"]["okx-main"]
    assert route["options"] == {"defaultType": "swap", "apiKey": "<redacted>"}
    assert route["ccxt_config"]["headers"] == {"Authorization": "<redacted>", "X-Mode": "paper"}
    assert route["ccxt_config"]["httpsProxy"] == "http://<redacted>@proxy.local:3128"
    assert route["ccxt_config"]["password"] == "<redacted>" and route["ccxt_config"]["timeout"] == 5000
    assert shown["credentials"]["alice"] == {
        "token": "<redacted>",
        "apiKey": "<redacted>",
        "secret": "<redacted>",
        "routes": [],
    }
    parse_settings(shown)  # what it prints is itself a valid config


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).json()
        except httpx.TransportError:
            assert time.monotonic() < deadline and process.poll() is None, "gateway did not start"
            time.sleep(0.2)


def test_serve_answers_on_loopback():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", "config/gateway.yaml", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", process)
        assert health["status"] == "ok"
        reply = httpx.post(f"http://127.0.0.1:{port}/okx", json={"method": "nope", "params": {}}).json()
        assert reply["error"].startswith("BadRequest: unknown method 'nope'")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_exits_3_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("serve", "--config", str(write(tmp_path / "gw.yaml", {})), "--port", str(taken.getsockname()[1]))
    assert result.returncode == 3


@pytest.fixture
def reload_fake() -> Iterator[tuple[FaultInjector, str]]:
    """A fake Binance of this test's own (its latency is changed while the gateway runs)."""
    faults = FaultInjector(binance.create_app(binance.default_engine(), {RELOAD_KEY: RELOAD_SECRET}))
    server = BackgroundServer(faults).start()
    yield faults, server.url
    server.stop()


def fmz(url: str, route: str, method: str, **params: object) -> dict:
    envelope = {"access_key": RELOAD_KEY, "secret_key": RELOAD_SECRET, "nonce": 1, "method": method, "params": params}
    return httpx.post(f"{url}/{route}", json=envelope, timeout=30).json()


def start_gateway(config: Path, log_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, process)
    return process, url


def test_skip_bad_routes_serves_the_others_and_answers_the_refused_with_the_reason(tmp_path, reload_fake):
    _, fake_url = reload_fake
    doc = {
        "server": {"skip_bad_routes": True},
        "exchanges": {
            "binance": {"ccxt": "binance", "api_base": fake_url, "ccxt_config": {"enableRateLimit": False}},
            "kucoin": {"sandbox": True},
        },
    }
    process, url = start_gateway(write(tmp_path / "gw.yaml", doc), tmp_path / "gateway.log")
    try:
        index = httpx.get(url).json()
        assert index["configured_routes"] == ["binance"]
        assert fmz(url, "binance", "ticker", symbol="BTC_USDT")["data"]["symbol"] == "BTC_USDT"
        error = fmz(url, "kucoin", "ticker", symbol="BTC_USDT")["error"]
        assert error.startswith("NotSupported: route 'kucoin': kucoin has no sandbox")  # never live kucoin
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503 and health.json()["problems"]["kucoin"].startswith("refused at startup")
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = (tmp_path / "gateway.log").read_text()
    assert "route kucoin is refused (server.skip_bad_routes" in log


def test_sighup_reloads_routes_without_dropping_a_call_in_flight(tmp_path, reload_fake):
    faults, fake_url = reload_fake
    route = {"ccxt": "binance", "api_base": fake_url, "ccxt_config": {"enableRateLimit": False}}
    doc = {"allow_any_ccxt_exchange": False, "exchanges": {"binance": route}}
    config = write(tmp_path / "gw.yaml", doc)
    process, url = start_gateway(config, tmp_path / "gateway.log")
    try:
        assert "data" in fmz(url, "binance", "accounts")  # markets loaded, a per-key client built
        assert "error" in fmz(url, "binance-b", "ticker", symbol="BTC_USDT")
        replies: list[dict] = []
        faults.latency_ms = 4000
        account_calls = sum(1 for _, path in faults.requests if path == "/api/v3/account")
        slow = threading.Thread(target=lambda: replies.append(fmz(url, "binance", "accounts")))
        slow.start()
        deadline = time.monotonic() + 10
        while sum(1 for _, path in faults.requests if path == "/api/v3/account") == account_calls:
            assert time.monotonic() < deadline, "the slow call never reached the exchange"
            time.sleep(0.02)
        # the route the slow call is on changes (its client is retired), and a route is added
        changed = dict(route, ccxt_config={"enableRateLimit": False, "timeout": 9000})
        write(config, {"allow_any_ccxt_exchange": False, "exchanges": {"binance": changed, "binance-b": route}})
        process.send_signal(signal.SIGHUP)
        while "binance-b" not in httpx.get(url).json()["configured_routes"]:
            assert time.monotonic() < deadline and process.poll() is None, "the new route never appeared"
            time.sleep(0.05)
        assert slow.is_alive()  # the reload happened while the call was in flight
        slow.join(timeout=20)
        faults.latency_ms = 0
        assert replies and "error" not in replies[0], replies
        assert any(row["currency"] == "USDT" for row in replies[0]["data"])
        assert fmz(url, "binance-b", "ticker", symbol="BTC_USDT")["data"]["symbol"] == "BTC_USDT"
        assert "data" in fmz(url, "binance", "accounts")  # the changed route, on its new client

        write(config, "exchanges: [not, a, mapping\n")  # a bad config: logged, the running one kept
        process.send_signal(signal.SIGHUP)
        log_path = tmp_path / "gateway.log"
        while "refused, the running config is kept" not in log_path.read_text():
            assert time.monotonic() < deadline + 20 and process.poll() is None, "the bad reload was not logged"
            time.sleep(0.05)
        assert httpx.get(url).json()["configured_routes"] == ["binance", "binance-b"]
        assert fmz(url, "binance-b", "ticker", symbol="BTC_USDT")["data"]["symbol"] == "BTC_USDT"
    finally:
        faults.latency_ms = 0
        process.terminate()
        process.wait(timeout=10)
    log = (tmp_path / "gateway.log").read_text()
    assert "reloaded " in log and "routes added: binance-b" in log and "changed: binance" in log
    assert RELOAD_SECRET not in log


# --- Docker ---------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions, pending = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def healthcheck_argv(port: int) -> list[str]:
    (args,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    argv = json.loads(args[args.index("CMD") + 3 :].strip())
    assert argv[0] == "python" and argv[1] == "-c" and "http://127.0.0.1:6666/healthz" in argv[2]
    return [sys.executable, "-c", argv[2].replace(":6666/", f":{port}/")]


def test_the_image_healthcheck_is_python_that_tells_a_live_gateway_from_a_dead_port():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gateway.app import create_app

    with BackgroundServer(create_app(parse_settings({}))) as live:
        assert subprocess.run(healthcheck_argv(live.port), timeout=30).returncode == 0

    async def unavailable(request: object) -> JSONResponse:
        return JSONResponse({"status": "unavailable"}, status_code=503)

    with BackgroundServer(Starlette(routes=[Route("/healthz", unavailable)])) as sick:
        assert subprocess.run(healthcheck_argv(sick.port), capture_output=True, timeout=30).returncode == 1
    dead = subprocess.run(healthcheck_argv(free_port()), capture_output=True, text=True, timeout=30)
    assert dead.returncode == 1 and not dead.stderr  # no traceback in `docker inspect`


def test_the_image_is_pinned_non_root_and_installs_the_lock_before_the_code():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    base = instructions[0]
    assert base[0] == "FROM" and "@sha256:" in base[1] and len(base[1].rsplit("@sha256:", 1)[1]) == 64
    lock_install = next(i for i, (k, rest) in enumerate(instructions) if k == "RUN" and "requirements.lock" in rest)
    code_copy = next(i for i, (k, rest) in enumerate(instructions) if k == "COPY" and rest.startswith("gateway"))
    assert keywords.index("COPY") < lock_install < code_copy  # a code change reuses the dependency layer
    assert "--require-hashes" in instructions[lock_install][1]
    user = [rest for keyword, rest in instructions if keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "FMZ_GATEWAY_CONFIG=" in env
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["fmz-gateway"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for keyword, rest in instructions:
        if keyword == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists() and source.rstrip("/") not in ignored, source


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    entry = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith(" "):
            name, _, rest = stripped.partition("==")
            assert rest, f"requirements.lock: {stripped!r} is not pinned with =="
            entry = canonicalize_name(name)
            pins[entry] = rest.split(";")[0].split("\\")[0].strip()
        elif stripped.startswith("--hash=sha256:"):
            pins[f"{entry}#hashed"] = "yes"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    regenerate = "regenerate it: see README, Docker"
    for spec in project["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock; {regenerate}"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}: {regenerate}"
    for build in project["build-system"]["requires"]:
        requirement = Requirement(build)
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)])  # for --no-build-isolation
    unhashed = [name for name in pins if "#" not in name and f"{name}#hashed" not in pins]
    assert not unhashed, f"no --hash for {unhashed}"
