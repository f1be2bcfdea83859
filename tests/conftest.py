"""Shared fixtures: fake exchanges and the gateway, all on real loopback sockets.

One canary secret (and passphrase) is used by every signed call in the suite; every log
record of the process and every gateway reply is captured, and the session fails if the canary
shows up in any of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import parse_settings
from tests.fakes import binance, okx
from tests.fakes.engine import Engine
from tests.fakes.server import BackgroundServer, FaultInjector

CANARY_SECRET = "canary-S3CRET-5e1f0c2b9d7a"
CANARY_PASSPHRASE = "canary-PASSPHRASE-8b4d"
API_KEY = "fmz-test-key"
OTHER_KEY = "fmz-other-key"


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage() + (self.formatException(record.exc_info) if record.exc_info else ""))
        except Exception:  # a broken record must not break the suite
            self.lines.append(str(record.msg))

    def formatException(self, exc_info: Any) -> str:
        return logging.Formatter().formatException(exc_info)


CAPTURED = CapturedLogs()
REPLIES: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def canary_never_leaks() -> Iterator[None]:
    root = logging.getLogger()
    root.addHandler(CAPTURED)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(CAPTURED)
    root.setLevel(previous)
    for secret in (CANARY_SECRET, CANARY_PASSPHRASE):
        assert not [line for line in CAPTURED.lines if secret in line], f"{secret} leaked into the logs"
        assert not [reply for reply in REPLIES if secret in reply], f"{secret} leaked into a gateway reply"


@dataclass
class Fake:
    name: str
    engine: Engine
    faults: FaultInjector
    server: BackgroundServer
    state: Any = None

    @property
    def url(self) -> str:
        return self.server.url

    def add_key(self, key: str, secret: str, passphrase: str) -> None:
        """Open a fresh account on the fake (each account starts with the engine's default funds)."""
        if self.name == "okx":
            self.state.venue.credentials[key] = (secret, passphrase)
        else:
            self.state.fake.credentials[key] = secret


def _start_fake(name: str, engine: Engine, app: Any) -> Fake:
    faults = FaultInjector(app)
    server = BackgroundServer(faults).start()
    return Fake(name, engine, faults, server, getattr(app, "state", None))


@pytest.fixture(scope="session")
def fake_binance() -> Iterator[Fake]:
    engine = binance.default_engine()
    fake = _start_fake("binance", engine, binance.create_app(engine, {API_KEY: CANARY_SECRET, OTHER_KEY: "other"}))
    yield fake
    fake.server.stop()


@pytest.fixture(scope="session")
def fake_okx() -> Iterator[Fake]:
    engine = okx.default_engine()
    credentials = {API_KEY: (CANARY_SECRET, CANARY_PASSPHRASE), OTHER_KEY: ("other", "otherpass")}
    fake = _start_fake("okx", engine, okx.create_app(engine, credentials))
    yield fake
    fake.server.stop()


def gateway_config(fake_binance: Fake, fake_okx: Fake, **extra: Any) -> dict:
    fast = {"enableRateLimit": False, "timeout": 5000}
    config = {
        "allow_any_ccxt_exchange": True,
        "clients": {"read_retries": 1, "retry_backoff": 0.01, "settle_window": 3},
        "exchanges": {
            "binance": {"ccxt": "binance", "api_base": fake_binance.url, "ccxt_config": fast},
            "okx": {"ccxt": "okx", "api_base": fake_okx.url, "ccxt_config": fast},
            "okx-demo": {"ccxt": "okx", "sandbox": True, "api_base": fake_okx.url, "ccxt_config": fast},
            "binance-swap": {
                "ccxt": "binance",
                "api_base": fake_binance.url,
                "ccxt_config": fast,
                "options": {"defaultType": "swap"},
            },
        },
    }
    config.update(extra)
    return config


@dataclass
class GatewayClient:
    """Posts FMZ envelopes exactly as the docker does."""

    url: str
    http: httpx.Client
    app: Any = None
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def call(
        self,
        route: str,
        method: str,
        params: dict | None = None,
        *,
        access_key: str = API_KEY,
        secret_key: str | None = None,
        http_method: str | None = None,
    ) -> dict:
        if secret_key is None:
            secret_key = self.keys.get(route.lower(), (CANARY_SECRET,))[0]
        body = {
            "access_key": access_key,
            "secret_key": secret_key,
            "nonce": time.time_ns(),
            "method": method,
            "params": params or {},
        }
        headers = {"Http-Method": http_method} if http_method else {}
        response = self.http.post(f"{self.url}/{route}", json=body, headers=headers)
        REPLIES.append(response.text)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    def data(self, route: str, method: str, params: dict | None = None, **kwargs: Any) -> Any:
        reply = self.call(route, method, params, **kwargs)
        assert "error" not in reply, reply
        return reply["data"]

    def raw_post(self, path: str, content: bytes, headers: dict | None = None) -> httpx.Response:
        response = self.http.post(f"{self.url}{path}", content=content, headers=headers or {})
        REPLIES.append(response.text)
        return response


OKX_SECRET_KEY = f"{CANARY_SECRET},{CANARY_PASSPHRASE}"
ROUTES = ("binance", "okx")


@dataclass
class Account:
    """A fresh account on one fake, and the FMZ keys that reach it through the gateway."""

    route: str
    fake: Fake
    gateway: GatewayClient
    access_key: str
    secret_key: str

    def call(self, method: str, params: dict | None = None, **kwargs: Any) -> dict:
        kwargs.setdefault("access_key", self.access_key)
        kwargs.setdefault("secret_key", self.secret_key)
        return self.gateway.call(self.route, method, params, **kwargs)

    def data(self, method: str, params: dict | None = None, **kwargs: Any) -> Any:
        reply = self.call(method, params, **kwargs)
        assert "error" not in reply, reply
        return reply["data"]

    def error(self, method: str, params: dict | None = None, **kwargs: Any) -> str:
        reply = self.call(method, params, **kwargs)
        assert "error" in reply and "data" not in reply, reply
        return reply["error"]

    def balance(self, currency: str) -> tuple[float, float]:
        rows = {row["currency"]: row for row in self.data("accounts")}
        row = rows.get(currency, {"free": 0, "frozen": 0})
        return row["free"], row["frozen"]


_account_numbers = iter(range(1, 1_000_000))


def open_account(route: str, fake: Fake, gateway: GatewayClient) -> Account:
    key = f"acct-{route}-{next(_account_numbers)}"
    fake.add_key(key, CANARY_SECRET, CANARY_PASSPHRASE)
    secret_key = OKX_SECRET_KEY if fake.name == "okx" else CANARY_SECRET
    return Account(route, fake, gateway, key, secret_key)


@pytest.fixture(scope="session")
def gateway(fake_binance: Fake, fake_okx: Fake) -> Iterator[GatewayClient]:
    settings = parse_settings(gateway_config(fake_binance, fake_okx))
    app = create_app(settings)
    server = BackgroundServer(app).start()
    keys = {"okx": (OKX_SECRET_KEY,), "okx-demo": (OKX_SECRET_KEY,)}
    with httpx.Client(timeout=30) as http:
        yield GatewayClient(server.url, http, app, keys)
    server.stop()


@pytest.fixture(params=ROUTES)
def account(request: pytest.FixtureRequest, gateway: GatewayClient) -> Account:
    """A fresh account on each fake exchange in turn (the test runs once per exchange)."""
    fake = request.getfixturevalue(f"fake_{request.param}")
    return open_account(request.param, fake, gateway)
