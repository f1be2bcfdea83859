"""gateway/reload.py in process: routes and credential aliases swapped under a running Gateway,
clients of unchanged routes kept, clients of changed routes closed only after their calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import reload as reload_module
from gateway.dispatch import Gateway
from gateway.reload import Reloader, ReloadError, reload
from gateway.settings import Settings, parse_settings
from tests.conftest import API_KEY, CANARY_SECRET, CAPTURED, Fake, gateway_config

ALIAS_TOKEN = "alias-token-0001"


def body(method: str, access_key: str = API_KEY, secret_key: str = CANARY_SECRET, **params: Any) -> bytes:
    envelope = {"access_key": access_key, "secret_key": secret_key, "nonce": 1, "method": method, "params": params}
    return json.dumps(envelope).encode()


def config(fake_binance: Fake, fake_okx: Fake, **extra: Any) -> dict:
    return gateway_config(fake_binance, fake_okx, server={"request_timeout": 2}, **extra)


def with_routes(base: dict, **routes: Any) -> Settings:
    doc = json.loads(json.dumps(base))
    for name, spec in routes.items():
        if spec is None:
            doc["exchanges"].pop(name, None)
        else:
            doc["exchanges"][name] = spec
    return parse_settings(doc)


@pytest.fixture(autouse=True)
def quick_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_module, "GRACE_MARGIN", 0.2)
    monkeypatch.setattr(reload_module, "SWEEP_INTERVAL", 0.05)


@pytest.fixture
async def gateway(fake_binance: Fake, fake_okx: Fake) -> AsyncIterator[Gateway]:
    gateway = Gateway(parse_settings(config(fake_binance, fake_okx)))
    yield gateway
    await reload_module.close_retired(gateway)
    await gateway.pool.close()


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_an_added_route_is_served_and_a_removed_one_is_unknown(gateway: Gateway, fake_binance, fake_okx):
    base = config(fake_binance, fake_okx)
    spec = base["exchanges"]["binance"]
    report = reload(gateway, with_routes(base, **{"binance-b": spec, "okx-demo": None}))
    assert report.added == ["binance-b"] and report.removed == ["okx-demo"] and not report.changed
    assert "binance-b" in gateway.venues.routes() and "okx-demo" not in gateway.venues.routes()
    reply = await gateway.handle("binance-b", body("ticker", symbol="BTC_USDT"), None)
    assert reply["data"]["symbol"] == "BTC_USDT"
    reply = await gateway.handle("okx-demo", body("ticker", symbol="BTC_USDT"), None)
    assert reply["error"].startswith("BadRequest: unknown exchange 'okx-demo'")


async def test_unchanged_routes_keep_their_clients_and_markets(gateway: Gateway, fake_binance, fake_okx):
    await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    await gateway.handle("binance", body("accounts"), None)
    pool = gateway.pool
    public = pool.public_clients["binance"].exchange
    private = [handle.exchange for handle in pool.private_clients.values()]
    scopes = dict(pool.scopes)
    base = config(fake_binance, fake_okx)
    report = reload(gateway, with_routes(base, **{"okx-demo": None}))
    assert report.retired_clients == 0
    assert pool.public_clients["binance"].exchange is public
    assert [handle.exchange for handle in pool.private_clients.values()] == private
    assert all(pool.scopes.get(key) is scope for key, scope in scopes.items())
    await asyncio.sleep(0.5)  # past the grace period: still there
    assert pool.public_clients["binance"].exchange is public and not getattr(public, "closed_by_user", False)


async def test_a_call_in_flight_finishes_on_its_client_and_the_changed_route_gets_a_new_one(
    gateway: Gateway, fake_binance, fake_okx
):
    await gateway.handle("binance", body("accounts"), None)  # markets loaded, a per-key client cached
    pool = gateway.pool
    (old_handle,) = [h for key, h in pool.private_clients.items() if key[0] == "binance"]
    old_public = pool.public_clients["binance"].exchange
    base = config(fake_binance, fake_okx)
    changed = dict(base["exchanges"]["binance"], ccxt_config={"enableRateLimit": False, "timeout": 4000})
    fake_binance.faults.latency_ms = 800
    try:
        slow = asyncio.create_task(gateway.handle("binance", body("accounts"), None))
        await until(lambda: old_handle.in_flight == 1)
        report = reload(gateway, with_routes(base, binance=changed))
        assert report.changed == ["binance"] and report.retired_clients >= 2
        assert old_handle.retired and not old_handle.closing  # its call is still running
        assert "binance" not in pool.public_clients
        reply = await slow
    finally:
        fake_binance.faults.latency_ms = 0
    assert "error" not in reply and any(row["currency"] == "USDT" for row in reply["data"])
    await until(lambda: old_handle.closing)  # closed once its last call was done
    reply = await gateway.handle("binance", body("accounts"), None)
    assert "error" not in reply
    (new_handle,) = [h for key, h in pool.private_clients.items() if key[0] == "binance"]
    assert new_handle is not old_handle and new_handle.exchange._gateway_venue.ccxt_config["timeout"] == 4000
    assert pool.public_clients["binance"].exchange is not old_public
    await until(lambda: getattr(old_public, "closed_by_user", False))  # after the grace period


async def test_a_client_an_old_call_builds_after_the_reload_is_swept(gateway: Gateway, fake_binance, fake_okx):
    await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    old_venue = gateway.venues.get("binance")
    base = config(fake_binance, fake_okx)
    changed = dict(base["exchanges"]["binance"], options={"recvWindow": 7000})
    reload(gateway, with_routes(base, binance=changed))
    pool = gateway.pool
    # what a call that resolved the old venue before the reload does when it gets to build its client
    stale = pool._public_handle(old_venue, pool.scope_for(old_venue))
    await until(lambda: pool.public_clients.get("binance") is not stale)
    reply = await gateway.handle("binance", body("ticker", symbol="BTC_USDT"), None)
    assert reply["data"]["symbol"] == "BTC_USDT"
    assert pool.public_clients["binance"].exchange._gateway_venue.options == {"recvWindow": 7000}
    await until(lambda: getattr(stale.exchange, "closed_by_user", False))


async def test_credential_aliases_are_swapped_and_the_memo_cleared(gateway: Gateway, fake_binance, fake_okx):
    alias = {"token": ALIAS_TOKEN, "apiKey": API_KEY, "secret": CANARY_SECRET, "routes": ["binance"]}
    base = config(fake_binance, fake_okx, credentials={"alice": alias})
    report = reload(gateway, parse_settings(base))
    assert report.aliases_added == ["alice"]
    reply = await gateway.handle("binance", body("accounts", access_key="alice", secret_key=ALIAS_TOKEN), None)
    assert "error" not in reply
    rotated = dict(base, credentials={"alice": dict(alias, token="alias-token-0002")})
    report = reload(gateway, parse_settings(rotated))
    assert report.aliases_changed == ["alice"]
    reply = await gateway.handle("binance", body("accounts", access_key="alice", secret_key=ALIAS_TOKEN), None)
    assert reply["error"] == "AuthenticationError: credential alias 'alice': wrong token"
    reply = await gateway.handle("binance", body("accounts", access_key="alice", secret_key="alias-token-0002"), None)
    assert "error" not in reply


async def test_the_clients_of_a_removed_alias_are_retired(gateway: Gateway, fake_binance, fake_okx):
    alias = {"token": ALIAS_TOKEN, "apiKey": "fmz-other-key", "secret": "other"}
    base = config(fake_binance, fake_okx, credentials={"bob": alias})
    reload(gateway, parse_settings(base))
    reply = await gateway.handle("binance", body("accounts", access_key="bob", secret_key=ALIAS_TOKEN), None)
    assert "error" not in reply
    (handle,) = [h for h in gateway.pool.private_clients.values() if h.exchange.apiKey == "fmz-other-key"]
    report = reload(gateway, parse_settings(config(fake_binance, fake_okx)))
    assert report.aliases_removed == ["bob"] and report.retired_clients == 1
    assert handle.retired and handle not in gateway.pool.private_clients.values()
    await until(lambda: getattr(handle.exchange, "closed_by_user", False))
    reply = await gateway.handle("binance", body("accounts", access_key="bob", secret_key=ALIAS_TOKEN), None)
    assert reply["error"].startswith("AuthenticationError")  # "bob" is now an ordinary (unknown) API key


async def test_a_config_serve_would_refuse_is_refused_and_the_running_one_kept(
    gateway: Gateway, fake_binance, fake_okx
):
    venues, settings = gateway.venues, gateway.settings
    base = config(fake_binance, fake_okx)
    with pytest.raises(ReloadError, match="route 'kt': kucoin has no sandbox"):
        reload(gateway, with_routes(base, kt={"ccxt": "kucoin", "sandbox": True}))
    typo = dict(base, credentials={"a": {"token": "t-123", "apiKey": "k", "routes": ["binanse"]}})
    with pytest.raises(ReloadError, match=r"credentials\.a\.routes: 'binanse' is not"):
        reload(gateway, parse_settings(typo))
    assert gateway.venues is venues and gateway.settings is settings


async def test_with_skip_bad_routes_a_refused_route_answers_its_reason(gateway: Gateway, fake_binance, fake_okx):
    base = dict(config(fake_binance, fake_okx), server={"skip_bad_routes": True, "request_timeout": 2})
    report = reload(gateway, with_routes(base, kucoin={"sandbox": True}))
    assert list(report.refused) == ["kucoin"] and "kucoin" not in gateway.venues.routes()
    assert report.restart_needed == []  # skip_bad_routes applies to the reload itself
    reply = await gateway.handle("kucoin", body("ticker", symbol="BTC_USDT"), None)
    assert reply["error"].startswith("NotSupported: route 'kucoin': kucoin has no sandbox")  # never live kucoin


async def test_server_and_client_settings_wait_for_a_restart(gateway: Gateway, fake_binance, fake_okx):
    base = dict(config(fake_binance, fake_okx), server={"request_timeout": 2, "port": 7001})
    base["clients"] = dict(base["clients"], max_clients=5)
    report = reload(gateway, parse_settings(base))
    assert report.restart_needed == ["server.port", "clients.max_clients"]
    assert gateway.settings.server.port == 6666 and gateway.settings.clients.max_clients == 1000
    assert "changed but kept until a restart: server.port, clients.max_clients" in report.summary()


async def test_the_reloader_reads_the_file_and_keeps_the_running_config_on_a_bad_one(
    gateway: Gateway, fake_binance, fake_okx, tmp_path
):
    import yaml

    path = tmp_path / "gw.yaml"
    base = config(fake_binance, fake_okx)
    base["exchanges"]["binance-c"] = base["exchanges"]["binance"]
    path.write_text(yaml.safe_dump(base))
    reloader = Reloader(gateway, path)
    report = await reloader.reload()
    assert report is not None and report.added == ["binance-c"]
    path.write_text("exchanges:\n  binance: {sandbox: maybe}\n")
    seen = len(CAPTURED.lines)
    assert await reloader.reload() is None
    refusal = "refused, the running config is kept: exchanges.binance.sandbox: expected a boolean"
    assert any(refusal in line for line in CAPTURED.lines[seen:])
    assert "binance-c" in gateway.venues.routes()
    await reloader.aclose()


async def test_cached_public_answers_of_a_changed_route_are_forgotten(gateway: Gateway, fake_binance, fake_okx):
    base = config(fake_binance, fake_okx, public_cache={"ticker": 30})
    reload(gateway, parse_settings(base))
    for route in ("binance", "okx"):
        assert "data" in await gateway.handle(route, body("ticker", symbol="BTC_USDT"), None)
    routes = lambda: {key[0] for key in gateway.public_cache._entries}  # noqa: E731
    assert routes() == {"binance", "okx"}
    changed = dict(base["exchanges"]["binance"], options={"recvWindow": 6000})
    reload(gateway, with_routes(base, binance=changed))
    assert routes() == {"okx"}
