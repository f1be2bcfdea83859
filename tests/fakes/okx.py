"""A fake OKX v5 REST venue on the shared engine, for unmodified ccxt (`ccxt.async_support.okx`).

Point ccxt at it with `exchange.urls['api'] = {'rest': base_url}`. It speaks OKX's dialect:
`/api/v5/...` paths, `{"code": "0", "msg": "", "data": [...]}` envelopes with numbers as
strings, per-order `sCode`/`sMsg` on trade endpoints, OKX error codes, and the real request
signature (`OK-ACCESS-SIGN = base64(HMAC_SHA256(secret, timestamp + METHOD + path?query + body))`
with `OK-ACCESS-KEY`, `OK-ACCESS-PASSPHRASE` and `OK-ACCESS-TIMESTAMP`). Accounts in the engine
are keyed by api key. `app.state.simulated_trading` tells whether the last private request
carried ccxt's sandbox header `x-simulated-trading: 1` (None before any private request).

Handlers live in okx_public.py, okx_private.py (account) and okx_trade.py; shared helpers in okx_common.py.
"""

from __future__ import annotations

import json
from decimal import Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import okx_private, okx_public, okx_trade, okx_ws
from .engine import Engine, Instrument
from .okx_common import Call, OkxError, Venue, delivery_dates, envelope, yymmdd

D = Decimal


def _spot(base: str, price: int, tick: str, step: str, min_qty: str) -> Instrument:
    return Instrument(f"{base}/USDT", base, "USDT", price=D(price), tick=D(tick), step=D(step), min_qty=D(min_qty))


def _contract(key: str, kind: str, price: int, tick: str, lot: str, ct_val: str, **extra: object) -> Instrument:
    """`lot` is both lotSz and minSz; inverse contracts settle in the base currency."""
    base, quote = key.split(":")[0].split("/")
    return Instrument(
        key, base, quote, kind=kind, price=D(price), tick=D(tick), step=D(lot), min_qty=D(lot),
        contract_size=D(ct_val), **extra,
    )  # fmt: skip


def default_engine() -> Engine:
    """Spot BTC/ETH/LTC-USDT, linear BTC/ETH-USDT swaps, the inverse BTC-USD swap, and BTC
    futures (inverse BTC-USD and linear BTC-USDT) for this week, next week and the quarter."""
    instruments = [
        _spot("BTC", 60000, "0.1", "0.00000001", "0.00001"),
        _spot("ETH", 3000, "0.01", "0.000001", "0.001"),
        _spot("LTC", 80, "0.01", "0.0001", "0.01"),
        _contract("BTC/USDT:USDT", "swap", 60000, "0.1", "0.01", "0.01", funding_rate=D("0.0001")),
        _contract("ETH/USDT:USDT", "swap", 3000, "0.01", "0.1", "0.1", funding_rate=D("-0.00005")),
        _contract("BTC/USD:BTC", "swap", 60000, "0.1", "1", "100", inverse=True, funding_rate=D("0.0002")),
    ]
    for expiry in delivery_dates().values():
        day = yymmdd(expiry)
        instruments.append(
            _contract(f"BTC/USD:BTC-{day}", "future", 60000, "0.1", "1", "100", inverse=True, expiry_ms=expiry)
        )
        instruments.append(_contract(f"BTC/USDT:USDT-{day}", "future", 60000, "0.1", "0.1", "0.01", expiry_ms=expiry))
    return Engine(instruments)


def _parse_body(raw: bytes) -> object:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise OkxError("50002", "Json data format error", status=400) from None


def create_app(engine: Engine, credentials: dict[str, tuple[str, str]]) -> Starlette:
    """The fake venue; `credentials` maps api key -> (secret, passphrase)."""
    venue = Venue(engine, credentials)  # live: keys added to the dict later are honoured
    table = {
        **{k: (h, False) for k, h in okx_public.ROUTES.items()},
        **{k: (h, True) for k, h in okx_private.ROUTES.items()},
        **{k: (h, True) for k, h in okx_trade.ROUTES.items()},
    }

    async def dispatch(request: Request) -> Response:
        method, path = request.method, request.url.path
        entry = table.get((method, path))
        if entry is None:
            return envelope([], "50000", f"fake okx: no route {method} {path}", status=404)
        handler, private = entry
        try:
            raw = await request.body()
            body = _parse_body(raw) if method != "GET" else None
            account = ""
            if private:
                request.app.state.simulated_trading = request.headers.get("x-simulated-trading") == "1"
                account = okx_private.authenticate(venue, request, raw)
            params = dict(request.query_params) if method == "GET" else (body if isinstance(body, dict) else {})
            result = handler(Call(venue, params, body, account))
        except OkxError as exc:
            return envelope(exc.data, exc.code, exc.msg, status=exc.status)
        return result if isinstance(result, Response) else envelope(result)

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST", "PUT", "DELETE"])])
    app.state.venue = venue
    app.state.engine = engine
    app.state.simulated_trading = None
    app.state.ws = okx_ws.mount(app, engine)  # websockets: public (tickers, books, trades), business (candles)
    return app
