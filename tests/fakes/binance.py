"""A fake Binance that unmodified ccxt (`ccxt.async_support.binance`) talks to as to the real one.

It serves Binance's REST dialect — spot /api/v3, USDⓈ-M futures /fapi/v1-v3, the COIN-M account
side of /dapi (exchangeInfo, positions, account; `default_engine(coin_m=True)` lists BTCUSD_PERP)
and the few /sapi calls ccxt makes while loading markets with keys — on the
shared engine, which keeps all balances, orders and positions. Accounts are keyed by API key.
Signed endpoints check the X-MBX-APIKEY header and the HMAC-SHA256 `signature` as Binance does;
errors come back as Binance's {"code": -2010, "msg": "..."} with its HTTP status, and any path
this fake does not implement answers 404 {"code": -1, "msg": "fake binance: no route GET /path"}.

    engine = default_engine()
    with BackgroundServer(create_app(engine, {"key": "secret"})) as server:
        ex = ccxt.async_support.binance({"apiKey": "key", "secret": "secret", "enableRateLimit": False})
        ex.urls["api"] = {name: re.sub(r"^https?://[^/]+", server.url, url) for name, url in ex.urls["api"].items()}

Note that ccxt picks Binance's per-market error tables (spot / linear) by the URL's host, so against
this loopback server only its global table applies: e.g. futures -2019 "Margin is insufficient."
raises ExchangeError here but InsufficientFunds against fapi.binance.com.

Dialect pieces live in binance_common.py, the handlers in binance_spot.py, binance_futures.py
(market data, orders) and binance_futures_account.py (positions, leverage, account).
"""

from __future__ import annotations

import calendar
import json
import sys
import traceback
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import binance_coinm, binance_futures, binance_futures_account, binance_spot, binance_ws
from .binance_common import BinanceError, Call, Endpoint, FakeBinance, authenticate, parse_params
from .engine import Engine, Instrument

__all__ = ["FakeBinance", "create_app", "default_engine", "quarterly_expiries"]

ROUTES: list[Endpoint] = [
    *binance_spot.ROUTES,
    *binance_futures.ROUTES,
    *binance_futures_account.ROUTES,
    *binance_coinm.ROUTES,
]


def quarterly_expiries(now: datetime | None = None, count: int = 2) -> list[datetime]:
    """Delivery times of the current and next quarterly contracts: the last Friday of March, June,
    September or December at 08:00 UTC, skipping any already past."""
    now = now or datetime.now(UTC)
    year, month = now.year, (now.month - 1) // 3 * 3 + 3
    expiries: list[datetime] = []
    while len(expiries) < count:
        last_day = datetime(year, month, calendar.monthrange(year, month)[1], 8, tzinfo=UTC)
        expiry = last_day - timedelta(days=(last_day.weekday() - calendar.FRIDAY) % 7)
        if expiry > now:
            expiries.append(expiry)
        year, month = (year + 1, 3) if month == 12 else (year, month + 3)
    return expiries


def default_engine(coin_m: bool = False) -> Engine:
    """A fresh engine with Binance's instruments: four spot pairs, two USDⓈ-M perpetuals and the
    current and next quarter BTCUSDT delivery contracts (expiries computed from now); with
    `coin_m`, also the COIN-M perpetual BTCUSD_PERP (100 USD a contract, margined in BTC)."""
    d = Decimal
    spot = [
        Instrument(
            "BTC/USDT", "BTC", "USDT", price=d("60000"), tick=d("0.01"), step=d("0.00001"), min_qty=d("0.00001")
        ),
        Instrument("ETH/USDT", "ETH", "USDT", price=d("3000"), tick=d("0.01"), step=d("0.0001"), min_qty=d("0.0001")),
        Instrument("ETH/BTC", "ETH", "BTC", price=d("0.05"), tick=d("0.00001"), step=d("0.001"), min_qty=d("0.001")),
        Instrument("LTC/USDT", "LTC", "USDT", price=d("80"), tick=d("0.01"), step=d("0.001"), min_qty=d("0.001")),
    ]
    perpetual = dict(kind="swap", funding_interval_h=8)
    swaps = [
        Instrument(
            "BTC/USDT:USDT",
            "BTC",
            "USDT",
            price=d("60000"),
            tick=d("0.1"),
            step=d("0.001"),
            min_qty=d("0.001"),
            funding_rate=d("0.0001"),
            **perpetual,
        ),
        Instrument(
            "ETH/USDT:USDT",
            "ETH",
            "USDT",
            price=d("3000"),
            tick=d("0.01"),
            step=d("0.001"),
            min_qty=d("0.001"),
            funding_rate=d("-0.00005"),
            **perpetual,
        ),
    ]
    futures = [
        Instrument(
            f"BTC/USDT:USDT-{expiry:%y%m%d}",
            "BTC",
            "USDT",
            kind="future",
            price=d(60300 + 300 * n),
            tick=d("0.1"),
            step=d("0.001"),
            min_qty=d("0.001"),
            expiry_ms=int(expiry.timestamp() * 1000),
            funding_rate=d(0),
        )
        for n, expiry in enumerate(quarterly_expiries())
    ]
    coin_margined = [
        Instrument(
            "BTC/USD:BTC",
            "BTC",
            "USD",
            kind="swap",
            price=d("60000"),
            tick=d("0.1"),
            step=d("1"),
            min_qty=d("1"),
            contract_size=d("100"),
            inverse=True,
            funding_rate=d("0.0001"),
        )
    ]
    return Engine([*spot, *swaps, *futures, *(coin_margined if coin_m else [])])


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), default=str), status, media_type="application/json")


def create_app(engine: Engine, credentials: dict[str, str]) -> Starlette:
    """The fake as an ASGI app; `credentials` maps each API key to its secret."""
    fake = FakeBinance(engine, credentials)
    table = {(e.method, e.path): e for e in ROUTES}

    async def dispatch(request: Request) -> Response:
        method, path = request.method, request.url.path
        endpoint = table.get((method, path))
        if endpoint is None:
            return _json(404, {"code": -1, "msg": f"fake binance: no route {method} {path}"})
        query = request.scope.get("query_string", b"").decode()
        body = (await request.body()).decode()
        try:
            params = parse_params(query, body)
            account = authenticate(endpoint.security, fake.credentials, request.headers, query, body, params)
            result = endpoint.handler(fake, Call(method, path, params, account))
        except BinanceError as exc:
            return _json(exc.status, {"code": exc.code, "msg": exc.msg})
        except Exception as exc:  # a bug in the fake: say so loudly instead of posing as Binance
            traceback.print_exc(file=sys.stderr)
            return _json(500, {"code": -1000, "msg": f"fake binance: internal error {exc!r}"})
        return _json(200, result)

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
    app.state.fake = fake
    app.state.ws = binance_ws.mount(app, engine)  # market streams (websocket), on the same engine
    return app
