"""The CLI: `python -m gateway serve|check|exchanges`, run as real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=timeout)


def test_exchanges_lists_ccxt_ids():
    result = run("exchanges")
    assert result.returncode == 0 and {"binance", "okx", "bybit"} <= set(result.stdout.split())


def test_bad_config_stops_startup_naming_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("exchanges:\n  okx-demo:\n    sandbox: yes-please\n")
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "exchanges.okx-demo.sandbox: expected a boolean" in result.stderr


def test_check_reports_routes_that_would_be_refused(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text(
        "exchanges:\n  kucoin-test: {ccxt: kucoin, sandbox: true}\n  binance-test: {ccxt: binance, sandbox: true}\n"
    )
    result = run("check", "--config", str(config))
    assert result.returncode == 1
    assert "ok    binance-test -> binance (sandbox)" in result.stdout
    assert "FAIL  kucoin-test" in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_on_loopback():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", "config/gateway.yaml", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "gateway did not start"
                time.sleep(0.2)
        assert health["status"] == "ok"
        reply = httpx.post(f"http://127.0.0.1:{port}/okx", json={"method": "nope", "params": {}}).json()
        assert reply["error"].startswith("BadRequest: unknown method 'nope'")
    finally:
        process.terminate()
        process.wait(timeout=10)
