"""The fake Binance as its own process: `python -m bench.fake --port P --latency-ms L --keys N`.

Accepts the API keys `bench-key-0 .. bench-key-<N-1>`, all with the secret `BENCH_SECRET`. Every
request waits `--latency-ms` first (FaultInjector). `GET /__bench/stats` (no added latency) answers
how many requests each path has seen, so the bench can tell coalesced upstream calls apart.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes import binance
from tests.fakes.server import FaultInjector

BENCH_SECRET = "bench-secret-0123456789abcdef"
STATS_PATH = "/__bench/stats"


def key_name(number: int) -> str:
    return f"bench-key-{number}"


class CountingApp:
    """ASGI wrapper: counts requests per path and serves the counts at STATS_PATH."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == STATS_PATH:
            body = json.dumps(self.counts).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.counts[scope["path"]] += 1
        await self.app(scope, receive, send)


def build_app(latency_ms: float, keys: int, ops: bool = False, weight_limit: int = 0) -> CountingApp:
    """`ops` (scripts/bench --ops): the latency, Binance's per-IP weight limit (`weight_limit`, 0: off),
    random failures and the request log of bench/weights.py instead of the FaultInjector's latency."""
    credentials = {key_name(n): BENCH_SECRET for n in range(keys)}
    app = binance.create_app(binance.default_engine(), credentials)
    if ops:
        from bench.weights import OpsFake

        return CountingApp(OpsFake(app, latency_ms, weight_limit))
    return CountingApp(FaultInjector(app, latency_ms=latency_ms, record=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--ops", action="store_true", help="weight limit, failures and request log (--ops bench)")
    parser.add_argument("--weight-limit", type=int, default=0, help="with --ops: Binance weight per IP per minute")
    args = parser.parse_args()
    app = build_app(args.latency_ms, args.keys, args.ops, args.weight_limit)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False)


if __name__ == "__main__":
    main()
