"""`scripts/bench --streams`: GetTicker/GetDepth from websocket streams vs REST (issue 9's proof).

One process (fake Binance with 50 ms added REST latency, the gateway, and the load generator,
each on its own event loop; so the figures are noisy and the memory figure is an upper bound):

1. c=1 p50 of a hot `ticker` / `depth` (streams on) minus p50 of a local call (GetMarkets of
   one symbol: no exchange round trip);
2. REST requests for the hot symbols during the measured runs (0 expected);
3. c=100 answers/s of the streamed route vs the REST-only route;
4. data age: after a price move, time until the gateway answers with the new price (what the
   exchange sent last is served as soon as it has arrived);
5. RSS growth with 200 streamed symbols (ticker + depth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from decimal import Decimal
from typing import Any

import aiohttp

from gateway.app import create_app
from gateway.settings import parse_settings
from tests.fakes import binance
from tests.fakes.engine import Instrument
from tests.fakes.server import BackgroundServer, FaultInjector


def rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def engine_with(extra: int) -> Any:
    engine = binance.default_engine()
    for n in range(extra):
        inst = Instrument(f"C{n}/USDT", f"C{n}", "USDT", price=Decimal(100 + n), tick=Decimal("0.01"))
        engine.instruments[inst.key] = inst
        engine.book_seqs[inst.key] = engine.book_seqs["BTC/USDT"]
        engine.public_trades[inst.key] = engine._seed_trades(inst)
    return engine


def body(method: str, params: dict) -> bytes:
    envelope = {"access_key": "k", "secret_key": "s", "nonce": time.time_ns(), "method": method, "params": params}
    return json.dumps(envelope).encode()


async def timed(session: aiohttp.ClientSession, url: str, method: str, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    async with session.post(url, data=body(method, params)) as response:
        reply = await response.json()
    return time.perf_counter() - started, reply


async def p50(session: aiohttp.ClientSession, url: str, method: str, params: dict, n: int) -> float:
    times = [(await timed(session, url, method, params))[0] for _ in range(n)]
    return statistics.median(times) * 1000


async def throughput(session: aiohttp.ClientSession, url: str, method: str, params: dict, c: int, s: float) -> float:
    done = 0
    end = time.perf_counter() + s

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await timed(session, url, method, params)
            done += 1

    await asyncio.gather(*(worker() for _ in range(c)))
    return done / s


def from_stream(reply: dict) -> bool:
    raw = reply.get("raw")
    return isinstance(raw, dict) and isinstance(raw.get("source"), dict)


async def run(args: argparse.Namespace) -> dict:
    from tests.test_streams import wire  # until methods.ticker/depth call streams.fresh themselves

    wire()
    engine = engine_with(args.symbols)
    app = binance.create_app(engine, {})
    app.state.ws.interval = 0.1
    faults = FaultInjector(app)
    faults.latency_ms = args.latency_ms
    faults.record = True
    fake = BackgroundServer(faults).start()
    cfg = {"enableRateLimit": False, "timeout": 10000}
    on = {"ticker": "on", "depth": "on", "max_age_ms": 2000}
    settings = parse_settings(
        {
            "allow_any_ccxt_exchange": False,
            "exchanges": {
                "ws": {"ccxt": "binance", "api_base": fake.url, "ccxt_config": cfg, "streams": on},
                "many": {"ccxt": "binance", "api_base": fake.url, "ccxt_config": cfg, "streams": on},
                "rest": {
                    "ccxt": "binance",
                    "api_base": fake.url,
                    "ccxt_config": cfg,
                    "streams": {"ticker": "off", "depth": "off"},
                },
            },
        }
    )
    gateway_app = create_app(settings)
    gateway = BackgroundServer(gateway_app).start()
    results: dict[str, Any] = {"latency_ms": args.latency_ms}
    try:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            ws, rest, many = (f"{gateway.url}/{r}" for r in ("ws", "rest", "many"))
            sym = {"symbol": "BTC_USDT"}
            book = {"symbol": "BTC_USDT", "limit": 20}
            await timed(session, rest, "markets", sym)
            # warm-up: hot and subscribed, answers from memory
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                _, t = await timed(session, ws, "ticker", sym)
                _, d = await timed(session, ws, "depth", book)
                if from_stream(t) and from_stream(d):
                    break
                await asyncio.sleep(0.05)
            rest_before = len(faults.requests)
            local = await p50(session, ws, "markets", sym, args.n)
            ticker = await p50(session, ws, "ticker", sym, args.n)
            depth = await p50(session, ws, "depth", book, args.n)
            hot_rest = [p for _, p in faults.requests[rest_before:] if "depth" in p or "ticker" in p]
            rest_ticker = await p50(session, rest, "ticker", sym, max(20, args.n // 10))
            results["c1_p50_ms"] = {
                "local_markets": round(local, 3),
                "stream_ticker": round(ticker, 3),
                "stream_depth": round(depth, 3),
                "rest_ticker": round(rest_ticker, 3),
                "ticker_added_over_local": round(ticker - local, 3),
                "depth_added_over_local": round(depth - local, 3),
            }
            after_c1 = len(faults.requests)
            stream_rps = await throughput(session, ws, "ticker", sym, 100, args.seconds)
            hot_rest += [p for _, p in faults.requests[after_c1:] if "depth" in p or "ticker" in p]
            rest_rps = await throughput(session, rest, "ticker", sym, 100, args.seconds)
            results["rest_requests_for_hot_symbols_after_warmup"] = len(hot_rest)
            results["c100_answers_per_s"] = {
                "stream": round(stream_rps),
                "rest": round(rest_rps),
                "ratio": round(stream_rps / rest_rps, 2) if rest_rps else None,
            }
            # data age: a price move until the gateway serves it
            lags = []
            for n in range(args.moves):
                price = Decimal(60000 + (n % 2) * 10 + n)
                moved = time.perf_counter()
                engine.set_price("BTC/USDT", price)
                while True:
                    _, reply = await timed(session, ws, "ticker", sym)
                    if reply.get("data", {}).get("last") == float(price):
                        lags.append((time.perf_counter() - moved) * 1000)
                        break
                    if time.perf_counter() - moved > 5:
                        break
                await asyncio.sleep(0.02)
            ages = [(await timed(session, ws, "ticker", sym))[1]["raw"]["source"]["age_ms"] for _ in range(100)]
            results["data_age"] = {
                "price_move_to_answer_ms_p50": round(statistics.median(lags), 2) if lags else None,
                "price_move_to_answer_ms_max": round(max(lags), 2) if lags else None,
                "age_since_latest_message_ms_p50": statistics.median(ages),
                "age_since_latest_message_ms_max": max(ages),
                "stream_cadence_ms": app.state.ws.interval * 1000,
            }
            # memory: 200 streamed symbols
            before = rss_mb()
            symbols = [f"C{n}_USDT" for n in range(args.symbols)]
            print(json.dumps(results), flush=True)  # the figures so far, should the memory part fail
            for s in symbols:
                for method, params in (("ticker", {"symbol": s}), ("depth", {"symbol": s, "limit": 5})):
                    try:
                        await timed(session, many, method, params)
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
            deadline = time.monotonic() + 60
            hub = gateway_app.gateway.pool.streams
            while time.monotonic() < deadline:
                states = hub.routes["many"].streams.values()
                if len(states) >= 2 * args.symbols and all(s.healthy for s in states):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)
            results["memory_200_symbols"] = {
                "symbols": args.symbols,
                "streams_healthy": sum(1 for s in hub.routes["many"].streams.values() if s.healthy),
                "rss_growth_mb_upper_bound": round(rss_mb() - before, 1),
                "note": "one process: includes the fake exchange's side of the 400 subscriptions",
            }
    finally:
        gateway.stop()
        fake.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --streams", description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--n", type=int, default=300, help="calls per c=1 p50")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per c=100 run")
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
