"""`scripts/bench --streams`: GetTicker/GetDepth (and GetTrades/GetRecords) from websocket streams
vs REST (issue 9's proof).

Three processes, as the other benches: the fake Binance (bench/fake.py: 50 ms added REST latency,
its websocket streams at a 100 ms cadence, BTC/USDT's price one tick up every `--move-ms`), the
gateway (`python -m gateway serve`), and this load generator. The machine's cores are shared by
all three: compare figures of one run.

1. c=1 p50 of a hot `ticker` / `depth` / `trades` / `records` (route `ws`, streams on) minus p50
   of a local call (GetMarkets of one symbol: no exchange round trip) on the same gateway; trades
   and records without a limit, as FMZ asks (500 items), also against the REST route's p50;
2. REST requests the fake saw for the hot symbol (BTCUSDT: ticker, depth; aggTrades and klines
   apart: the trades and candle streams check their tapes against REST now and then) after
   warm-up, over every later phase (the REST route asks for ETH/USDT, so it cannot count);
3. c=100 answers/s: streamed `ticker` vs the REST-only route's `ticker` (streams off);
4. data age, the gateway's share: every BTC/USDT price the fake sends is new, and the fake notes
   when it handed each to the socket (CLOCK_MONOTONIC, one clock for all processes). For each answer
   (c=1), the next newer message the fake had sent before the answer came back is what the gateway
   should have served; its lateness is `answer received - that message sent` (upper bound: it also
   counts the HTTP reply's way back), 0 when no newer message had been sent;
5. memory: RSS of a second gateway process (route `many`, streams on) with markets loaded and no
   stream, then with 200 symbols streamed (ticker + depth, 400 subscriptions), all answering from
   memory.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.fake import BY_SYMBOL_PATH, WS_LOG_PATH, key_name
from bench.load import envelope
from bench.procs import log

HOT = "BTC/USDT"
HOT_PATHS = ("/api/v3/ticker/24hr?BTCUSDT", "/api/v3/depth?BTCUSDT", "/api/v3/ticker/bookTicker?BTCUSDT")
# trades and candles streams check their tape against REST now and then (gateway/streams.py `_verify`)
CHECK_PATHS = ("/api/v3/aggTrades?BTCUSDT", "/api/v3/klines?BTCUSDT")
TARGETS = {
    "ticker_added_p50_ms": 1.0,
    "depth_added_p50_ms": 1.0,
    "rest_calls_hot_after_warmup": 0,
    "c100_ratio": 3.0,
    "data_age_gateway_share_max_ms": 5.0,
    "memory_200_symbols_mb": 50.0,
}


def body(method: str, params: dict) -> bytes:
    """An FMZ envelope signed as the bench's first key."""
    return envelope(method, params, key_name(0))


class Gw:
    """Posts FMZ envelopes to one gateway route; every answer timed with time.monotonic_ns()."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def call(self, route: str, payload: bytes) -> tuple[int, int, dict]:
        started = time.monotonic_ns()
        async with self.session.post(f"{self.url}/{route}", data=payload) as response:
            raw = await response.read()
        ended = time.monotonic_ns()
        return started, ended, json.loads(raw)


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has been busy (every process), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Others:
    """CPU used, over a window, by processes other than the bench's three (others' work on the machine)."""

    def __init__(self, *children: procs.Child) -> None:
        self.children = children
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        mine = sum(c.cpu_seconds() for c in self.children) + time.process_time()
        return busy_cpu_seconds(), mine, time.perf_counter()

    def share(self) -> float:
        busy, mine, at = self._sample()
        return round(max(0.0, (busy - self.start[0]) - (mine - self.start[1])) / (at - self.start[2]), 2)


def from_stream(reply: dict) -> bool:
    raw = reply.get("raw")
    return isinstance(raw, dict) and isinstance(raw.get("source"), dict) and raw["source"].get("from") == "stream"


async def p50(gw: Gw, route: str, payload: bytes, n: int, stream_expected: bool = False) -> dict[str, Any]:
    times, not_streamed, errors = [], 0, 0
    for _ in range(n):
        t0, t1, reply = await gw.call(route, payload)
        if "data" not in reply:
            errors += 1
            continue
        times.append((t1 - t0) / 1e6)
        not_streamed += stream_expected and not from_stream(reply)
    times.sort()
    return {
        "n": len(times),
        "errors": errors,
        "not_from_stream": not_streamed,
        "p50_ms": round(statistics.median(times), 3) if times else None,
        "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3) if times else None,
    }


async def throughput(
    gw: Gw, route: str, payload: bytes, c: int, seconds: float, child: procs.Child, fake: procs.Child
) -> dict:
    done = errors = streamed = 0
    latencies: list[float] = []
    end = 0.0

    async def worker() -> None:
        nonlocal done, errors, streamed
        while time.perf_counter() < end:
            t0, t1, reply = await gw.call(route, payload)
            if "data" not in reply:
                errors += 1
                continue
            done += 1
            streamed += from_stream(reply)
            latencies.append((t1 - t0) / 1e6)

    end = time.perf_counter() + 0.5  # warm-up: every connection open
    await asyncio.gather(*(worker() for _ in range(c)))
    done = errors = streamed = 0
    latencies.clear()
    others = Others(child, fake)
    cpu_gw, cpu_me, began = child.cpu_seconds(), time.process_time(), time.perf_counter()
    end = began + seconds
    await asyncio.gather(*(worker() for _ in range(c)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "answers_per_s": round(done / elapsed, 1),
        "answers": done,
        "errors": errors,
        "from_stream": streamed,
        "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "gateway_cpu_share": round((child.cpu_seconds() - cpu_gw) / elapsed, 2),
        "loadgen_cpu_share": round((time.process_time() - cpu_me) / elapsed, 2),
        "gateway_cpu_ms_per_answer": round((child.cpu_seconds() - cpu_gw) * 1000 / done, 3) if done else None,
        "other_processes_cpu_share": others.share(),
    }


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as reply:
        return await reply.json()


def hot_rest(counts: dict[str, int]) -> dict[str, int]:
    return {path: counts.get(path, 0) for path in (*HOT_PATHS, *CHECK_PATHS)}


async def data_age(gw: Gw, seconds: float, session: aiohttp.ClientSession, fake: procs.Child) -> dict[str, Any]:
    """c=1, ticker and depth in turn for `seconds`; then each answer against the fake's send log."""
    answers: list[tuple[str, float, int, int, bool]] = []
    ticker, depth = body("ticker", {"symbol": "BTC_USDT"}), body("depth", {"symbol": "BTC_USDT", "limit": 5})
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for channel, payload in (("ticker", ticker), ("depth", depth)):
            t0, t1, reply = await gw.call("ws", payload)
            data = reply.get("data") or {}
            value = data.get("last") if channel == "ticker" else (data.get("bids") or [[None]])[0][0]
            answers.append((channel, value, t0, t1, from_stream(reply)))
    sent = await get_json(session, fake.url + WS_LOG_PATH)
    result: dict[str, Any] = {}
    for channel in ("ticker", "depth"):
        rows = sent[channel].get(HOT, [])
        index = {value: i for i, (value, _) in enumerate(rows)}
        times = [t for _, t in rows]
        upper, lower, unmatched, skipped, n = [], [], 0, [], 0
        for kind, value, t0, t1, _streamed in answers:
            if kind != channel:
                continue
            n += 1
            i = index.get(value)
            if i is None:
                unmatched += 1
                continue
            newer = i + 1
            if newer < len(times) and times[newer] < t1:
                upper.append((t1 - times[newer]) / 1e6)
                lower.append(max(0.0, (t0 - times[newer]) / 1e6))
                # messages the answer skipped entirely: newer ones sent before the request went out
                skipped.append(bisect.bisect_left(times, t0) - newer)
            else:
                upper.append(0.0)
                lower.append(0.0)
                skipped.append(0)
        upper.sort()
        lower.sort()
        result[channel] = {
            "answers": n,
            "unmatched": unmatched,
            "messages_sent": len(rows),
            "late_answers": sum(1 for u in upper if u > 0),
            "share_ms_p50": round(upper[len(upper) // 2], 3) if upper else None,
            "share_ms_p99": round(upper[int(0.99 * (len(upper) - 1))], 3) if upper else None,
            "share_ms_max": round(upper[-1], 3) if upper else None,
            "lower_bound_ms_max": round(lower[-1], 3) if lower else None,
            "answers_over_5ms": sum(1 for u in upper if u > 5.0),
            "max_messages_skipped": max(skipped) if skipped else None,
        }
    return result


async def warm(gw: Gw, route: str, calls: list[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = [(await gw.call(route, payload))[2] for payload in calls]
        if all(from_stream(r) for r in replies):
            return True
        await asyncio.sleep(0.05)
    return False


def route(fake_url: str, streams: dict) -> dict:
    return {
        "ccxt": "binance",
        "api_base": fake_url,
        "ccxt_config": {"enableRateLimit": False, "timeout": 10000},
        "streams": streams,
    }


async def main_phase(args: argparse.Namespace, workdir: Path, fake: procs.Child, results: dict) -> None:
    on = {"ticker": "on", "depth": "on", "trades": "on", "records": "on", "max_age_ms": 2000}
    off = {"ticker": "off", "depth": "off", "trades": "off", "records": "off"}
    gateway = procs.start_gateway(
        workdir, fake.url, "gateway-streams", {"ws": route(fake.url, on), "rest": route(fake.url, off)}
    )
    try:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            gw = Gw(session, gateway.url)
            ticker = body("ticker", {"symbol": "BTC_USDT"})
            depth = body("depth", {"symbol": "BTC_USDT", "limit": 20})
            rest_ticker = body("ticker", {"symbol": "ETH_USDT"})
            # as FMZ asks: no limit (the exchange's default count, 500 on Binance)
            trades, records = (
                body("trades", {"symbol": "BTC_USDT"}),
                body("records", {"symbol": "BTC_USDT", "period": 1}),
            )
            rest_trades, rest_records = (
                body("trades", {"symbol": "ETH_USDT"}),
                body("records", {"symbol": "ETH_USDT", "period": 1}),
            )
            local = body("markets", {"symbol": "BTC_USDT"})
            await gw.call("rest", body("markets", {"symbol": "ETH_USDT"}))
            if not await warm(gw, "ws", [ticker, depth, trades, records], 30):
                raise RuntimeError("the ws route never answered from its streams")
            await asyncio.sleep(1.0)
            before = hot_rest(await get_json(session, fake.url + BY_SYMBOL_PATH))
            log("phase: c=1 p50")
            for _ in range(2):  # warm-up of every kind of call
                await p50(gw, "ws", local, 50)
                await p50(gw, "ws", ticker, 50)
                await p50(gw, "ws", depth, 50)
            c1 = {
                "local_markets": await p50(gw, "ws", local, args.n),
                "stream_ticker": await p50(gw, "ws", ticker, args.n, True),
                "stream_depth": await p50(gw, "ws", depth, args.n, True),
                "rest_ticker": await p50(gw, "rest", rest_ticker, max(20, args.n // 10)),
                "stream_trades": await p50(gw, "ws", trades, args.n // 2, True),
                "rest_trades": await p50(gw, "rest", rest_trades, max(20, args.n // 10)),
                "stream_records": await p50(gw, "ws", records, args.n // 2, True),
                "rest_records": await p50(gw, "rest", rest_records, max(20, args.n // 10)),
            }
            for kind in ("ticker", "depth", "trades", "records"):
                added = c1[f"stream_{kind}"]["p50_ms"] - c1["local_markets"]["p50_ms"]
                c1[f"{kind}_added_p50_ms"] = round(added, 3)
            for kind in ("trades", "records"):  # 500 items each: converting them is most of the answer
                c1[f"{kind}_rest_over_stream_p50"] = round(
                    c1[f"rest_{kind}"]["p50_ms"] / c1[f"stream_{kind}"]["p50_ms"], 1
                )
            results["c1"] = c1
            log(
                f"  local {c1['local_markets']['p50_ms']} ms, ticker {c1['stream_ticker']['p50_ms']} ms, "
                f"depth {c1['stream_depth']['p50_ms']} ms, REST ticker {c1['rest_ticker']['p50_ms']} ms, "
                f"trades {c1['stream_trades']['p50_ms']} ms (REST {c1['rest_trades']['p50_ms']} ms), "
                f"records {c1['stream_records']['p50_ms']} ms (REST {c1['rest_records']['p50_ms']} ms)"
            )
            log("phase: c=100 answers/s")
            stream = await throughput(gw, "ws", ticker, 100, args.seconds, gateway, fake)
            counted = await get_json(session, fake.url + BY_SYMBOL_PATH)
            rest = await throughput(gw, "rest", rest_ticker, 100, args.seconds, gateway, fake)
            path = "/api/v3/ticker/24hr?ETHUSDT"
            upstream = (await get_json(session, fake.url + BY_SYMBOL_PATH)).get(path, 0) - counted.get(path, 0)
            rest["upstream_requests_incl_warmup"] = upstream
            results["c100"] = {
                "stream": stream,
                "rest": rest,
                "ratio": round(stream["answers_per_s"] / rest["answers_per_s"], 2) if rest["answers_per_s"] else None,
            }
            log(f"  stream {stream['answers_per_s']}/s, REST {rest['answers_per_s']}/s")
            log("phase: data age")
            others = Others(gateway, fake)
            results["data_age"] = await data_age(gw, args.age_seconds, session, fake)
            results["data_age"]["other_processes_cpu_share"] = others.share()
            results["data_age"]["move_ms"] = args.move_ms
            after = hot_rest(await get_json(session, fake.url + BY_SYMBOL_PATH))
            results["rest_calls_hot_after_warmup"] = {p: after[p] - before[p] for p in HOT_PATHS}
            status = await get_json(session, gateway.url + "/status?format=json")
            results["status_streams"] = status.get("streams")
    finally:
        gateway.stop()


async def memory_phase(args: argparse.Namespace, workdir: Path, fake: procs.Child, results: dict) -> None:
    on = {"ticker": "on", "depth": "on", "max_age_ms": 2000}
    gateway = procs.start_gateway(workdir, fake.url, "gateway-memory", {"many": route(fake.url, on)})
    try:
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            gw = Gw(session, gateway.url)
            await gw.call("many", body("markets", {"symbol": "C0_USDT"}))
            await asyncio.sleep(2.0)
            idle = gateway.rss_mb()
            calls = [
                body(method, params)
                for n in range(args.symbols)
                for method, params in (
                    ("ticker", {"symbol": f"C{n}_USDT"}),
                    ("depth", {"symbol": f"C{n}_USDT", "limit": 5}),
                )
            ]
            log(f"phase: memory, {args.symbols} symbols streamed (ticker + depth)")
            deadline = time.monotonic() + 120
            pending = list(calls)
            while pending and time.monotonic() < deadline:
                replies = []
                for i in range(0, len(pending), 20):
                    chunk = pending[i : i + 20]
                    replies += await asyncio.gather(*(gw.call("many", p) for p in chunk), return_exceptions=True)
                pending = [
                    p
                    for p, r in zip(pending, replies, strict=True)
                    if isinstance(r, Exception) or not from_stream(r[2])
                ]
                if pending:
                    await asyncio.sleep(1.0)
            await asyncio.sleep(3.0)
            rss = [gateway.rss_mb()]
            for _ in range(4):
                await asyncio.sleep(1.0)
                rss.append(gateway.rss_mb())
            results["memory"] = {
                "symbols": args.symbols,
                "subscriptions_answering_from_memory": len(calls) - len(pending),
                "rss_idle_mb": round(idle, 1),
                "rss_streaming_mb": round(max(rss), 1),
                "growth_mb": round(max(rss) - idle, 1),
                "gateway_cpu_share_while_streaming": None,
            }
            cpu = gateway.cpu_seconds()
            await asyncio.sleep(2.0)
            results["memory"]["gateway_cpu_share_while_streaming"] = round((gateway.cpu_seconds() - cpu) / 2.0, 2)
            log(f"  RSS {idle:.1f} MB idle -> {max(rss):.1f} MB ({len(calls) - len(pending)} subscriptions fresh)")
    finally:
        gateway.stop()


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    extra = (
        "--ws-interval",
        str(args.ws_interval),
        "--extra-symbols",
        str(args.symbols),
        "--move",
        HOT,
        "--move-ms",
        str(args.move_ms),
    )
    fake = procs.start_fake(workdir, args.latency_ms, 10, extra)
    results: dict[str, Any] = {"latency_ms": args.latency_ms}
    try:
        await main_phase(args, workdir, fake, results)
        if args.symbols:
            await memory_phase(args, workdir, fake, results)
    finally:
        fake.stop()
    return results


def targets(results: dict) -> list[dict[str, Any]]:
    rows = []

    def add(name: str, value: Any, target: str, passed: bool) -> None:
        rows.append({"target": name, "value": value, "goal": target, "pass": bool(passed)})

    c1 = results.get("c1", {})
    for kind in ("ticker", "depth"):
        value = c1.get(f"{kind}_added_p50_ms")
        add(f"hot {kind} added p50 over a local call, c=1 (ms)", value, "<= 1", value is not None and value <= 1.0)
    hot = results.get("rest_calls_hot_after_warmup")
    total = sum(hot[path] for path in HOT_PATHS) if hot else None
    add("REST calls for the hot symbol after warm-up", total, "0", total == 0)
    ratio = results.get("c100", {}).get("ratio")
    add("c=100 answers/s, streamed / REST", ratio, ">= 3", ratio is not None and ratio >= 3.0)
    age = results.get("data_age", {})
    worst = max(
        (age[k]["share_ms_max"] for k in ("ticker", "depth") if age.get(k, {}).get("share_ms_max") is not None),
        default=None,
    )
    unmatched = sum(age[k]["unmatched"] for k in ("ticker", "depth") if k in age)
    add(
        "data age past the latest exchange message, every answer (ms, upper bound)",
        worst,
        "<= 5",
        worst is not None and worst <= 5.0 and unmatched == 0,
    )
    growth = results.get("memory", {}).get("growth_mb")
    add("gateway RSS growth, 200 symbols streamed (MB)", growth, "<= 50", growth is not None and growth <= 50.0)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["target"]) for r in rows)
    lines = [f"{'target':<{width}}  {'value':>10}  {'goal':>6}  result"]
    for r in rows:
        lines.append(f"{r['target']:<{width}}  {r['value']!s:>10}  {r['goal']:>6}  {'PASS' if r['pass'] else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --streams", description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--n", type=int, default=500, help="calls per c=1 p50")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per c=100 run")
    parser.add_argument("--age-seconds", type=float, default=10.0, help="seconds of the data age run (c=1)")
    parser.add_argument("--move-ms", type=float, default=20.0, help="BTC/USDT moves one tick this often")
    parser.add_argument("--ws-interval", type=float, default=0.1, help="the fake's stream cadence (s)")
    parser.add_argument("--symbols", type=int, default=200, help="streamed symbols for the memory figure (0: skip)")
    parser.add_argument("--out", default="bench-streams.json", help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    started, load_at_start = time.time(), os.getloadavg()
    results = procs.run_benchmark("fmz-bench-streams-", lambda tmp: bench(args, tmp))
    if results is None:
        return 130
    rows = targets(results)
    processes = "fake exchange, gateway, load generator: one each"
    extra = {"cpus": len(os.sched_getaffinity(0)), "processes": processes, "loadavg_at_start": load_at_start}
    doc = {"meta": procs.meta(started, args, **extra), **results, "targets": rows}
    procs.write_results(Path(args.out), doc)
    print(json.dumps({k: v for k, v in results.items() if k != "status_streams"}, indent=2, default=str))
    print("\n" + table(rows))
    print(f"\nresults: {Path(args.out).resolve()}")
    return 1 if args.strict and not all(r["pass"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
