"""The load generator: closed-loop workers against direct ccxt or the gateway, with latency stats.

Both sides run in this process on one event loop (uvloop when installed). The direct side is what
a strategy would do without the gateway: ccxt's binance pointed at the fake. The gateway side posts
FMZ General Protocol envelopes exactly as the FMZ docker does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async

from bench.fake import BENCH_SECRET, key_name
from bench.report import percentile
from gateway.venues import rewrite_api_urls

CONNECTION_LIMIT = 512
Call = Callable[[int], Awaitable[None]]  # one request by worker number n (worker n uses key n)


@dataclass
class RunStats:
    """Outcome of one closed-loop run: successful latencies (ms), errors, wall time (s)."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    first_error: str | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the successful latencies, in ms (NaN without any)."""
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.ok,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "req_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(self.percentile(100), 3),
            "first_error": self.first_error,
        }


async def closed_loop(
    call: Call, concurrency: int, duration: float, max_requests: int, at_least_once: bool = False
) -> RunStats:
    """`concurrency` workers, each sending its next request when the previous one is answered,
    until `duration` seconds have passed or `max_requests` requests have been sent.
    `at_least_once` (for warm-ups): every worker sends one request even after the deadline."""
    stats = RunStats()
    issued = 0
    deadline = time.perf_counter() + duration

    async def worker(n: int) -> None:
        nonlocal issued
        first = at_least_once
        while first or (issued < max_requests and time.perf_counter() < deadline):
            first = False
            issued += 1
            started = time.perf_counter()
            try:
                await call(n)
            except Exception as exc:  # counted and reported, never fatal
                stats.errors += 1
                stats.first_error = stats.first_error or f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            stats.latencies_ms.append((time.perf_counter() - started) * 1000)

    begun = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(concurrency))), timeout=duration + 60)
    stats.elapsed = time.perf_counter() - begun
    return stats


class DirectSide:
    """ccxt's binance against the fake: one shared public client, one client per API key."""

    def __init__(self, fake_url: str) -> None:
        self.fake_url = fake_url
        self.session: aiohttp.ClientSession | None = None
        self.ssl_context = ssl.create_default_context()  # shared, as the gateway shares one (~35 ms each)
        self.master: Any = None
        self.private: dict[int, Any] = {}

    def _client(self, fields: dict[str, str]) -> Any:
        config = {"enableRateLimit": False, "session": self.session, "ssl_context": self.ssl_context, **fields}
        exchange = ccxt_async.binance(config)
        exchange.urls["api"] = rewrite_api_urls(exchange.urls["api"], self.fake_url)
        exchange.timeout_on_exit = 0  # close() would sleep 250 ms per client; the shared session is ours
        return exchange

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT))
        self.master = self._client({})
        await self.master.load_markets()  # once; every other client shares them

    def client_for(self, n: int) -> Any:
        exchange = self.private.get(n)
        if exchange is None:
            exchange = self._client({"apiKey": key_name(n), "secret": BENCH_SECRET})
            exchange.set_markets_from_exchange(self.master)
            self.private[n] = exchange
        return exchange

    async def ticker(self, n: int) -> None:
        await self.master.fetch_ticker("BTC/USDT")

    async def balance(self, n: int) -> None:
        await self.client_for(n).fetch_balance()

    async def close(self) -> None:
        exchanges = [e for e in (self.master, *self.private.values()) if e is not None]
        await asyncio.gather(*(e.close() for e in exchanges), return_exceptions=True)
        if self.session is not None:
            await self.session.close()


class GatewayError(Exception):
    """The gateway answered {"error": ...} (or not JSON)."""


class GatewaySide:
    """FMZ General Protocol envelopes posted to `<gateway>/binance`."""

    def __init__(self, gateway_url: str) -> None:
        self.url = f"{gateway_url}/binance"
        self.session: aiohttp.ClientSession | None = None
        self._bodies: dict[tuple[str, int], bytes] = {}

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def post(self, body: bytes) -> Any:
        assert self.session is not None
        async with self.session.post(self.url, data=body, headers={"Content-Type": "application/json"}) as reply:
            raw = await reply.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise GatewayError(f"HTTP {reply.status}: {raw[:200]!r}") from None
        if "error" in doc or "data" not in doc:
            raise GatewayError(str(doc.get("error", doc))[:200])
        return doc["data"]

    def body(self, method: str, n: int) -> bytes:
        """Worker n's envelope; like the docker, it sends its keys with public calls too."""
        body = self._bodies.get((method, n))
        if body is None:
            params = {"symbol": "BTC_USDT"} if method == "ticker" else {}
            body = self._bodies[(method, n)] = envelope(method, params, key_name(n))
        return body

    async def health(self, n: int) -> None:
        """GET /healthz: the HTTP hop to the gateway without any exchange work."""
        assert self.session is not None
        async with self.session.get(self.url.rsplit("/", 1)[0] + "/healthz") as reply:
            await reply.read()
            if reply.status != 200:
                raise GatewayError(f"healthz: HTTP {reply.status}")

    async def ticker(self, n: int) -> None:
        await self.post(self.body("ticker", n))

    async def accounts(self, n: int) -> None:
        await self.post(self.body("accounts", n))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def envelope(method: str, params: dict[str, Any], access_key: str) -> bytes:
    """One FMZ General Protocol request body (the nonce is a millisecond timestamp, as the docker's)."""
    nonce = int(time.time() * 1000)
    body = {"access_key": access_key, "secret_key": BENCH_SECRET, "nonce": nonce, "method": method, "params": params}
    return json.dumps(body, separators=(",", ":")).encode()
