"""Binance's per-IP request weight and random exchange failures, as ASGI wrappers for the bench's fake.

`WeightLimit` counts the request weight of every `/api/v3` request (public and signed alike:
Binance's REQUEST_WEIGHT limit is per IP, whatever the key) in fixed one-minute windows, as
Binance does, and answers HTTP 429 with Binance's -1003 body and a `Retry-After` (seconds to the
window's end) once a request would take the minute past the limit (6000 for spot). Weights are
Binance's documented spot weights (tests/fakes does not enforce any limit; this lives in bench/).

`Failures` makes a share of the exchange calls fail: a 5xx proxy page, Binance's 429, or an
answer slower than ccxt's timeout. `OpsFake` puts both behind the added latency, keeps a log of
every request (time, path, weight, status) and serves `/__bench/ops/...` control and log paths.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes import faults
from tests.fakes.server import read_body

SPOT_WEIGHT_LIMIT = 6000  # REQUEST_WEIGHT per IP per MINUTE (exchangeInfo's rateLimits)
CONTROL_PATH = "/__bench/ops/control"
LOG_PATH = "/__bench/ops/log"
COUNTS_PATH = "/__bench/ops/counts"
LOG_ENTRIES = 400_000
RATE_LIMITED_BODY = (
    b'{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE. '
    b'Please use WebSocket Streams for live updates to avoid polling the API."}'
)

# Binance spot (/api/v3) request weights, from its REST API documentation.
_FIXED = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/historicalTrades"): 25,
    ("GET", "/api/v3/aggTrades"): 2,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/uiKlines"): 2,
    ("GET", "/api/v3/avgPrice"): 2,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/order"): 4,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/openOrders"): 1,
}


def binance_weight(method: str, path: str, query: dict[str, list[str]]) -> int:
    """The REQUEST_WEIGHT Binance charges this IP for one /api/v3 request."""
    if (method, path) in _FIXED:
        return _FIXED[(method, path)]
    has_symbol = "symbol" in query or "symbols" in query
    if path == "/api/v3/depth":
        limit = int(query.get("limit", ["100"])[0])
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path == "/api/v3/ticker/24hr":
        return 2 if has_symbol else 80
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if has_symbol else 4
    if path == "/api/v3/openOrders":
        return 6 if has_symbol else 80
    return 1


class OpsFake:
    """Latency, Binance's per-IP weight limit, random failures and a request log around the fake."""

    def __init__(self, app: ASGIApp, latency_ms: float, weight_limit: int, seed: int = 8) -> None:
        self.app = app
        self.latency = latency_ms / 1000
        self.weight_limit = weight_limit  # 0: not enforced (still counted)
        self.fail_rate = 0.0
        self.fail_mix = {"5xx": 0.5, "429": 0.35, "slow": 0.15}
        self.slow_s = 11.0  # beyond ccxt's default timeout (10 s)
        self.rng = random.Random(seed)
        self.window = 0  # the current minute (epoch minute)
        self.window_weight = 0
        self.log: deque[tuple] = deque(maxlen=LOG_ENTRIES)
        self.seq = 0
        self.counts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/__bench/ops/"):
            await self.control(scope, receive, send)
            return
        if not path.startswith("/__bench/"):
            await self.exchange(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.time()
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode())
        weight = binance_weight(method, path, query) if path.startswith("/api/v3/") else 0
        minute = int(arrived // 60)
        if minute != self.window:
            self.window, self.window_weight = minute, 0
        self.window_weight += weight
        used = self.window_weight
        key = _header(scope, b"x-mbx-apikey")
        self.seq += 1
        entry = [self.seq, arrived, method, path, weight, 0, "", key, query.get("limit", [""])[0]]
        self.log.append(entry)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.weight_limit and weight and used > self.weight_limit:
            entry[5], entry[6] = 429, "weight"
            self.counts["weight_429"] += 1
            retry = max(1, int((minute + 1) * 60 - time.time()) + 1)
            await _reply(send, 429, RATE_LIMITED_BODY, [(b"retry-after", str(retry).encode()), _used(used)])
            return
        if self.fail_rate and self.rng.random() < self.fail_rate:
            kind = self.rng.choices(list(self.fail_mix), weights=list(self.fail_mix.values()))[0]
            entry[6] = kind
            self.counts[f"fault_{kind}"] += 1
            if kind == "5xx":
                status = self.rng.choice((500, 502, 503, 504))
                entry[5] = status
                body_of, headers = faults.PAGES["cloudfront"]
                await _reply(send, status, body_of(status), [(k.encode(), v.encode()) for k, v in headers], "text/html")
                return
            if kind == "429":
                entry[5] = 429
                await _reply(send, 429, RATE_LIMITED_BODY, [(b"retry-after", b"1"), _used(used)])
                return
            await asyncio.sleep(self.slow_s)  # then answered normally: by then the client has given up

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry[5] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), _used(used)]}
            await send(message)

        await self.app(scope, receive, recording_send)

    async def control(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == CONTROL_PATH:
            changes = json.loads(await read_body(receive) or b"{}")
            for name in ("fail_rate", "slow_s", "fail_mix", "weight_limit"):
                if name in changes:
                    setattr(self, name, changes[name])
            doc: Any = {"fail_rate": self.fail_rate, "slow_s": self.slow_s, "weight_limit": self.weight_limit}
        elif path == LOG_PATH:
            since = int(parse_qs(scope.get("query_string", b"").decode()).get("since", ["0"])[0])
            doc = [e for e in self.log if e[0] > since]
        elif path == COUNTS_PATH:
            doc = {**self.counts, "seq": self.seq, "window_weight": self.window_weight}
        else:
            await _reply(send, 404, b"{}", [])
            return
        await _reply(send, 200, json.dumps(doc).encode(), [])


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode(errors="replace")
    return ""


def _used(weight: int) -> tuple[bytes, bytes]:
    return (b"x-mbx-used-weight-1m", str(weight).encode())


async def _reply(send: Send, status: int, body: bytes, headers: list, content_type: str = "application/json") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
