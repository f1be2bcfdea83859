"""`scripts/bench`: the gateway against direct ccxt on the fake Binance, in one run.

The fake exchange, the gateway and this load generator each run in their own process (the
machine's cores are shared by all three, so every figure is noisy; compare figures of one run).

1. Matrix: added exchange latency {0, 50} ms x concurrency {1, 10, 100}, for a public call
   (direct fetch_ticker vs gateway `ticker`) and a private one (direct fetch_balance vs gateway
   `accounts`, worker n using API key n).
2. Memory: gateway RSS before and after 1,000 distinct keys each made one `accounts` call.
3. A new key's first private call: p50 of first calls minus p50 of a cached key's calls.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.load import Call, DirectSide, GatewaySide, RunStats, closed_loop
from bench.procs import log
from bench.report import evaluate, matrix_table, targets_table

UPSTREAM_PATHS = {"ticker": "/api/v3/ticker/24hr", "accounts": "/api/v3/account"}
MATRIX_KEYS = 100  # keys 0..99: the private matrix; 100.. : the new-key test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (~1 minute in all)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 4, quick 1)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run (default 0.5, quick 0.3)")
    parser.add_argument("--requests", type=int, default=1_000_000, help="at most this many requests per run")
    parser.add_argument("--concurrency", default="1,10,100", help="comma-separated worker counts")
    parser.add_argument("--latencies", default="0,50", help="comma-separated added exchange latencies (ms)")
    parser.add_argument("--memory-keys", type=int, default=1000, help="keys for the memory figure (0: skip)")
    parser.add_argument("--new-keys", type=int, help="brand-new keys timed (default 200, quick 50; 0: skip)")
    parser.add_argument("--out", default="bench-results.json", help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument(
        "--chaos", action="store_true", help="run the chaos bench instead: scripts/bench --chaos --help"
    )
    parser.add_argument(
        "--ops", action="store_true", help="rate limits on, soak, faults vs deadlines: scripts/bench --ops --help"
    )
    parser.add_argument(
        "--streams", action="store_true", help="websocket answers vs REST: scripts/bench --streams --help"
    )
    parser.add_argument("--soak", metavar="MINUTES", help="the --ops soak alone (default 10 minutes)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.new_keys = args.new_keys if args.new_keys is not None else (50 if args.quick else 200)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.latencies = [int(x) for x in args.latencies.split(",")]
    if max(args.concurrency) > MATRIX_KEYS:
        parser.error(f"--concurrency: at most {MATRIX_KEYS}")
    return args


async def fake_counts(http: aiohttp.ClientSession, fake: procs.Child) -> dict[str, int]:
    async with http.get(fake.url + procs.STATS_PATH) as reply:
        return await reply.json()


async def run_cell(
    call_name: str,
    latency: int,
    concurrency: int,
    direct: Call,
    gateway: Call,
    gw: procs.Child,
    fake: procs.Child,
    http: aiohttp.ClientSession,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Direct, then the gateway, each after its own warm-up; plus the gateway's CPU and upstream calls."""
    await closed_loop(direct, concurrency, args.warmup, args.requests, at_least_once=True)
    d = await closed_loop(direct, concurrency, args.duration, args.requests)
    await closed_loop(gateway, concurrency, args.warmup, args.requests, at_least_once=True)
    before, cpu = await fake_counts(http, fake), gw.cpu_seconds()
    g = await closed_loop(gateway, concurrency, args.duration, args.requests)
    cpu, after = gw.cpu_seconds() - cpu, await fake_counts(http, fake)
    path = UPSTREAM_PATHS[call_name]
    upstream = after.get(path, 0) - before.get(path, 0)
    cell = {
        "call": call_name,
        "latency_ms": latency,
        "concurrency": concurrency,
        "direct": d.summary(),
        "gateway": g.summary(),
        "throughput_ratio": g.throughput / d.throughput if d.throughput else float("nan"),
        "added_p50_ms": g.percentile(50) - d.percentile(50),
        "added_p99_ms": g.percentile(99) - d.percentile(99),
        "gateway_cpu_ms_per_req": cpu * 1000 / g.ok if g.ok else float("nan"),
        "upstream_per_reply": upstream / g.ok if g.ok else float("nan"),
    }
    log(
        f"  {call_name:<8} {latency:>2} ms c={concurrency:<3} direct {d.throughput:7.1f}/s p50 {d.percentile(50):6.2f}"
        f" | gateway {g.throughput:7.1f}/s p50 {g.percentile(50):6.2f} | errors {d.errors}+{g.errors}"
    )
    for side, stats in (("direct", d), ("gateway", g)):
        if stats.first_error:
            log(f"    {side} error: {stats.first_error}")
    return cell


async def matrix(
    latency: int,
    fake: procs.Child,
    gw: procs.Child,
    args: argparse.Namespace,
    new_keys: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every cell of one latency; then, with `new_keys`, the new-key test and the HTTP hop floor
    (GET /healthz) on the same gateway."""
    direct, gateway = DirectSide(fake.url), GatewaySide(gw.url)
    cells, extras = [], {}
    async with aiohttp.ClientSession() as http:
        try:
            await direct.start()
            await gateway.start()
            for concurrency in args.concurrency:
                cells.append(
                    await run_cell("ticker", latency, concurrency, direct.ticker, gateway.ticker, gw, fake, http, args)
                )
                cells.append(
                    await run_cell(
                        "accounts", latency, concurrency, direct.balance, gateway.accounts, gw, fake, http, args
                    )
                )
            if new_keys:
                extras["new_key"] = await new_key_cost(gateway, new_keys)
                await closed_loop(gateway.health, 1, args.warmup, args.requests, at_least_once=True)
                hop = await closed_loop(gateway.health, 1, args.duration, args.requests)
                extras["hop_floor"] = hop.summary()
                log(f"  hop floor: GET /healthz p50 {hop.percentile(50):.2f} ms")
        finally:
            await direct.close()
            await gateway.close()
    return cells, extras


NEW_KEY_GAP_S = 0.02  # dockers start one by one: each timed call is isolated from the previous one


async def new_key_cost(gateway: GatewaySide, count: int) -> dict[str, Any]:
    """`count` brand-new keys' first `accounts` calls, between two blocks of `count` calls by a
    cached key (c=1), every call NEW_KEY_GAP_S after the previous reply. The blocks are not
    interleaved with the first calls, whose after-effects (garbage collection of the new client's
    objects) would otherwise slow the cached calls too. Then, for the record, `count // 2` more
    new keys back to back (a burst of new dockers), where one key's setup overlaps the next call."""
    first, cached, burst = RunStats(), RunStats(), RunStats()
    await gateway.accounts(0)
    new_keys = iter(range(MATRIX_KEYS, MATRIX_KEYS + count + count // 2))
    plan = [(cached, 0)] * count + [(first, next(new_keys)) for _ in range(count)] + [(cached, 0)] * count
    for stats, key in plan:
        await asyncio.sleep(NEW_KEY_GAP_S)
        started = time.perf_counter()
        await gateway.accounts(key)
        stats.latencies_ms.append((time.perf_counter() - started) * 1000)
    for key in new_keys:
        started = time.perf_counter()
        await gateway.accounts(key)
        burst.latencies_ms.append((time.perf_counter() - started) * 1000)
    result = {
        "keys": count,
        "gap_ms": NEW_KEY_GAP_S * 1000,
        "first_call_p50_ms": first.percentile(50),
        "first_call_p99_ms": first.percentile(99),
        "cached_p50_ms": cached.percentile(50),
        "cached_p99_ms": cached.percentile(99),
        "extra_p50_ms": first.percentile(50) - cached.percentile(50),
        "burst_keys": len(burst.latencies_ms),
        "burst_first_call_p50_ms": burst.percentile(50),
    }
    log(f"  new key: first call p50 {result['first_call_p50_ms']:.2f} ms, cached p50 {result['cached_p50_ms']:.2f} ms")
    return result


async def memory_cost(gw: procs.Child, keys: int, duration: float) -> dict[str, Any]:
    """RSS of a fresh gateway (markets loaded) before and after `keys` keys each made one private call;
    then `duration` s of calls by those (now cached) keys, c=10: the latency with a full cache."""
    gateway = GatewaySide(gw.url)
    await gateway.start()
    try:
        await gateway.ticker(0)  # loads the shared markets and the public client
        await asyncio.sleep(0.2)
        before = gw.rss_mb()
        numbers = itertools.count()
        stats = await closed_loop(lambda _: gateway.accounts(next(numbers)), 10, 600, keys)
        await asyncio.sleep(0.2)
        after = gw.rss_mb()
        cycle = itertools.cycle(range(keys))
        cached = await closed_loop(lambda _: gateway.accounts(next(cycle)), 10, duration, 1_000_000)
        async with gateway.session.get(gw.url + "/healthz") as reply:
            health = await reply.json()
    finally:
        await gateway.close()
    result = {
        "keys": keys,
        "errors": stats.errors + cached.errors,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "per_key_mb": (after - before) / keys,
        "cached_private_clients": health.get("private_clients"),
        "first_calls_c10": stats.summary(),
        "cached_calls_c10": cached.summary(),
    }
    log(f"  memory: {before:.1f} MB -> {after:.1f} MB with {keys} keys ({result['per_key_mb'] * 1024:.0f} kB/key)")
    return result


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fake_keys = max(args.memory_keys, MATRIX_KEYS + args.new_keys)
    results: dict[str, Any] = {"cells": [], "new_key": {}, "hop_floor": {}, "memory": {}}
    for latency in args.latencies:
        log(f"phase: exchange latency {latency} ms")
        fake = procs.start_fake(workdir, latency, fake_keys)
        try:
            gw = procs.start_gateway(workdir, fake.url)
            try:
                first_zero = latency == 0 and not results["new_key"]
                cells, extras = await matrix(latency, fake, gw, args, args.new_keys if first_zero else 0)
                results["cells"] += cells
                results.update(extras)
            finally:
                gw.stop()
            if latency == 0 and args.memory_keys and not results["memory"]:
                gw = procs.start_gateway(workdir, fake.url, "gateway-memory")
                try:
                    results["memory"] = await memory_cost(gw, args.memory_keys, args.duration)
                finally:
                    gw.stop()
        finally:
            fake.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--chaos" in argv:  # faults on the fake exchanges, reconciled with what the strategy was told
        from bench import chaos

        return chaos.main([arg for arg in argv if arg != "--chaos"])
    if "--streams" in argv:  # hot ticker/depth from websockets vs REST
        from bench import streams

        return streams.main([arg for arg in argv if arg != "--streams"])
    if "--ops" in argv or "--soak" in argv:  # operation: rate limits on, soak, faults vs deadlines
        from bench import ops

        return ops.main(ops_argv(argv))
    args = parse_args(argv)
    started = time.time()
    results = procs.run_benchmark("fmz-bench-", lambda tmp: bench(args, tmp))
    if results is None:
        return 130
    targets = evaluate(results["cells"], results["memory"], results["new_key"])
    elapsed = time.time() - started
    doc = {
        "meta": procs.meta(started, args, machine=platform.machine(), cpus=_cpus()),
        **results,
        "targets": [t.as_dict() for t in targets],
    }
    out = Path(args.out)
    procs.write_results(out, doc)
    print(report(doc, targets, args, elapsed, out))
    return 1 if args.strict and not all(t.passed for t in targets) else 0


def ops_argv(argv: list[str]) -> list[str]:
    """`--ops ...` -> bench/ops.py's options; `--soak [minutes]` -> `--soak-only [--soak-minutes minutes]`."""
    out, items = [], iter(argv)
    for arg in items:
        if arg == "--ops":
            continue
        if arg == "--soak":
            out.append("--soak-only")
            continue
        if out and out[-1] == "--soak-only" and re.fullmatch(r"\d+(\.\d+)?", arg):
            out += ["--soak-minutes", arg]
            continue
        out.append(arg)
    if "--ops" in argv and "--soak-only" in out:  # --ops --soak N: every phase, with an N-minute soak
        out.remove("--soak-only")
    return out


def report(doc: dict[str, Any], targets: list, args: argparse.Namespace, elapsed: float, out: Path) -> str:
    memory, new_key, hop = doc["memory"], doc["new_key"], doc["hop_floor"]
    parts = [
        f"\nfmz-ccxt-gateway bench: {args.duration:g} s per run, {doc['meta']['cpus']} CPUs shared by the load "
        "generator, the gateway and the fake Binance (noisy: compare within one run)\n",
        matrix_table(doc["cells"]),
    ]
    coalesced = [c for c in doc["cells"] if c["upstream_per_reply"] < 0.5]
    if coalesced:
        where = ", ".join(f"{c['call']} {c['latency_ms']} ms c={c['concurrency']}" for c in coalesced)
        parts.append(
            f"note: coalesced by the gateway's single-flight (the fake saw < 0.5 requests per reply): {where}; "
            "those gateway figures are not per-request costs. `accounts` is never coalesced."
        )
    if memory:
        parts.append(
            f"\nmemory: gateway RSS {memory['rss_before_mb']:.1f} MB (markets loaded) -> "
            f"{memory['rss_after_mb']:.1f} MB "
            f"with {memory['keys']} cached keys = {memory['per_key_mb'] * 1024:.0f} kB per key "
            f"({memory['cached_private_clients']} per-key clients cached, {memory['errors']} errors)"
        )
        first, cached = memory["first_calls_c10"], memory["cached_calls_c10"]
        parts.append(
            f"  accounts, c=10, 0 ms: first calls p50 {first['p50_ms']:.1f} / p99 {first['p99_ms']:.1f} / "
            f"max {first['max_ms']:.1f} ms; then with all {memory['keys']} cached: p50 {cached['p50_ms']:.1f} / "
            f"p99 {cached['p99_ms']:.1f} / max {cached['max_ms']:.1f} ms ({cached['req_per_s']:.0f} req/s)"
        )
    if new_key:
        parts.append(
            f"new key: first private call p50 {new_key['first_call_p50_ms']:.2f} ms (p99 "
            f"{new_key['first_call_p99_ms']:.2f}) vs cached key p50 {new_key['cached_p50_ms']:.2f} ms, "
            f"over {new_key['keys']} new keys {new_key.get('gap_ms', 0):g} ms apart, 0 ms latency, c=1"
        )
        if new_key.get("burst_keys"):
            parts.append(
                f"  back to back (a burst of {new_key['burst_keys']} new keys, each setup overlapping the next "
                f"call): first call p50 {new_key['burst_first_call_p50_ms']:.2f} ms"
            )
    if hop:
        parts.append(
            f"HTTP hop floor: GET /healthz on the gateway (no exchange work), c=1: p50 {hop['p50_ms']:.2f} ms, "
            f"p99 {hop['p99_ms']:.2f} ms, {hop['req_per_s']:.0f} req/s"
        )
    parts += ["\ntargets:", targets_table(targets), f"\nresults: {out.resolve()}  ({elapsed:.0f} s)"]
    return "\n".join(parts)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
