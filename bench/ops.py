"""`scripts/bench --ops`: the gateway in operation against the fake Binance with its rate limits on.

The fake Binance runs at 50 ms added latency behind bench/weights.py: Binance's per-IP request
weight (6000 per minute, public and signed requests alike, fixed minute windows, HTTP 429 with
Retry-After over it), a log of every request and, in phase 4, random failures. The gateway runs
with its defaults (ccxt's rate limiting on, `server.request_timeout` 10 s); each phase gets a
fresh fake and a fresh gateway. Phases:

1. poll: 100 closed-loop dockers polling one ticker, default settings, then `public_cache:
   {ticker: 0.1}`: answers/s, upstream calls/s and weight/min (the fake's log), 429s.
2. strategy: one key, a loop of ticker, depth, account, open orders: per call the time waited in
   the gateway's limiter (/metrics, between sequential calls) vs the wait ccxt's costs require
   (Binance's limits as ccxt models them: cost x rateLimit between requests of one IP, public
   and signed alike), and the weight per minute the fake counted.
3. soak: c=100 mixed public/private dockers (docker n uses key n: the ticker back to back, and
   every `--private-every` 30 s its account or open orders, so that the offered weight fits
   Binance's per-IP limit) for `--soak-minutes` (1 with --ops; `--soak` alone: 10): gateway RSS
   at start/end, errors, 429s.
4. faults: the same mixed load while 5 % of exchange requests fail (5xx, 429, answers slower
   than ccxt's timeout): answer time p50/p99/max and answers later than the deadline.

    scripts/bench --ops [--soak-minutes 1] [--out bench-ops.json]
    scripts/bench --soak [minutes]          # the soak alone (default 10 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async

from bench import procs
from bench.fake import key_name
from bench.load import CONNECTION_LIMIT, envelope
from bench.procs import log
from bench.report import Target, number, percentile, targets_table
from bench.weights import CONTROL_PATH, COUNTS_PATH, LOG_PATH, SPOT_WEIGHT_LIMIT

LATENCY_MS = 50
KEYS = 200
DOCKERS = 100
SYMBOL = "BTC_USDT"
STRATEGY_LOOP = ("ticker", "depth", "accounts", "orders")
PARAMS = {"ticker": {"symbol": SYMBOL}, "depth": {"symbol": SYMBOL}, "orders": {"symbol": SYMBOL}, "accounts": {}}
WAIT_TOLERANCE_S = 0.005  # timer and event-loop granularity when comparing waits


# --- processes -------------------------------------------------------------------------------------


def start_fake(workdir: Path, name: str, weight_limit: int) -> procs.Child:
    extra = ("--ops", "--weight-limit", str(weight_limit))
    return procs.start_fake(workdir, LATENCY_MS, KEYS, extra, name=f"fake-{name}")


REST_ONLY = {"ticker": "off", "depth": "off", "trades": "off", "records": "off"}


def start_gateway(workdir: Path, fake_url: str, name: str, extra: dict | None = None) -> procs.Child:
    """The gateway with its defaults: ccxt's rate limiting on (no ccxt_config), request_timeout 10 s.

    Websocket answers are off here (REST_ONLY): this bench measures the REST path, its rate
    budgets and deadlines; `scripts/bench --streams` measures the streamed one."""
    config = {
        "server": {"log_level": "warning"},
        "allow_any_ccxt_exchange": False,
        "exchanges": {"binance": {"ccxt": "binance", "api_base": fake_url, "streams": REST_ONLY}},
        **(extra or {}),
    }
    return procs.spawn_gateway(workdir, f"gateway-{name}", config)


class Bench:
    """One fake + one gateway, and the HTTP session that drives and observes them."""

    def __init__(self, fake: procs.Child, gw: procs.Child) -> None:
        self.fake, self.gw = fake, gw
        self.http: aiohttp.ClientSession | None = None
        self.bodies: dict[tuple[str, int], bytes] = {}

    async def __aenter__(self) -> Bench:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT), timeout=aiohttp.ClientTimeout(total=60)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.close()

    async def call(self, method: str, n: int) -> tuple[bool, str]:
        """One FMZ call by docker n (key n): (ok, error text)."""
        assert self.http is not None
        body = self.bodies.get((method, n))
        if body is None:
            body = self.bodies[(method, n)] = envelope(method, PARAMS[method], key_name(n))
        try:
            async with self.http.post(f"{self.gw.url}/binance", data=body) as reply:
                raw = await reply.read()
            doc = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return False, f"bench client: {type(exc).__name__}"
        if "error" in doc or "data" not in doc:
            return False, str(doc.get("error", doc))
        return True, ""

    async def control(self, **changes: Any) -> None:
        assert self.http is not None
        async with self.http.post(self.fake.url + CONTROL_PATH, json=changes) as reply:
            await reply.read()

    async def fake_log(self, since: int = 0) -> list[list]:
        assert self.http is not None
        async with self.http.get(f"{self.fake.url}{LOG_PATH}?since={since}") as reply:
            return await reply.json()

    async def fake_counts(self) -> dict[str, int]:
        assert self.http is not None
        async with self.http.get(self.fake.url + COUNTS_PATH) as reply:
            return await reply.json()

    async def metrics(self) -> dict[str, float]:
        """/metrics as {'name{labels}': value} (samples summed by name and labels as rendered)."""
        assert self.http is not None
        async with self.http.get(self.gw.url + "/metrics") as reply:
            text = await reply.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in metrics.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


def metric_diff(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, float]:
    """Increase of every labelled sample of `name` between two scrapes (non-zero ones)."""
    out = {}
    for key, value in after.items():
        if key.split("{", 1)[0] == name and value - before.get(key, 0.0):
            out[key.split("{", 1)[1].rstrip("}") if "{" in key else ""] = round(value - before.get(key, 0.0), 3)
    return out


# --- load ------------------------------------------------------------------------------------------


class Answers:
    """Every answer of a run: time (s), method and outcome; errors by kind."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.ok_seconds: list[float] = []
        self.by_method: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.elapsed = 0.0

    def add(self, method: str, seconds: float, ok: bool, error: str) -> None:
        self.seconds.append(seconds)
        self.by_method[method] += 1
        if ok:
            self.ok_seconds.append(seconds)
        else:
            self.errors[error_kind(error)] += 1

    @property
    def ok(self) -> int:
        return len(self.ok_seconds)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self, deadline: float | None = None) -> dict[str, Any]:
        doc = {
            "answers": len(self.seconds),
            "ok": self.ok,
            "errors": self.error_count,
            "seconds": round(self.elapsed, 2),
            "answers_per_s": round(len(self.seconds) / self.elapsed, 1) if self.elapsed else None,
            "ok_per_s": round(self.ok / self.elapsed, 1) if self.elapsed else None,
            "p50_ms": ms(percentile(self.seconds, 50)),
            "p99_ms": ms(percentile(self.seconds, 99)),
            "max_ms": ms(max(self.seconds, default=math.nan)),
            "by_method": dict(self.by_method),
            "error_kinds": dict(self.errors.most_common(12)),
        }
        if deadline is not None:
            doc["over_deadline"] = sum(1 for s in self.seconds if s > deadline)
            doc["over_deadline_plus_100ms"] = sum(1 for s in self.seconds if s > deadline + 0.1)
        return doc


def error_kind(error: str) -> str:
    """A bounded label for an error answer: its leading words, numbers and keys blanked out."""
    text = re.sub(r"bench-key-\d+", "key-N", error)
    text = re.sub(r"\d+(\.\d+)?", "#", text)
    return text[:90]


async def dockers(
    bench: Bench, calls_of: Callable[[int], Iterator[str]], count: int, seconds: float, answers: Answers
) -> None:
    """`count` closed-loop dockers (docker n uses key n), each sending the calls `calls_of(n)` yields
    one after the other, for `seconds`."""
    stop_at = time.perf_counter() + seconds

    async def docker(n: int) -> None:
        for method in calls_of(n):
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            ok, error = await bench.call(method, n)
            answers.add(method, time.perf_counter() - started, ok, error)

    begun = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(docker(n) for n in range(count))), timeout=seconds + 120)
    answers.elapsed = time.perf_counter() - begun


def polling(n: int) -> Iterator[str]:
    return itertools.repeat("ticker")


def mixed(private_every: float) -> Callable[[int], Iterator[str]]:
    """Docker n polls the ticker back to back and, every `private_every` seconds (docker n first
    after n/100 of it), makes its next private call: account, then open orders, in turn."""

    def calls(n: int) -> Iterator[str]:
        private = itertools.cycle(("accounts", "orders"))
        due = time.perf_counter() + private_every * n / DOCKERS
        while True:
            if time.perf_counter() >= due:
                due += private_every
                yield next(private)
            else:
                yield "ticker"

    return calls


async def warm(bench: Bench, count: int) -> None:
    """Markets, the public client and `count` per-key clients, before anything is measured."""
    ok, error = await bench.call("ticker", 0)
    if not ok:
        raise RuntimeError(f"gateway ticker fails before the bench: {error}; log: {bench.gw.tail(800)}")
    results = await asyncio.gather(*(bench.call("accounts", n) for n in range(count)))
    failed = [e for ok, e in results if not ok]
    if failed:
        log(f"  warm-up: {len(failed)} of {count} first private calls failed, e.g. {failed[0][:120]}")


def weight_figures(entries: list[list], start: float, end: float) -> dict[str, Any]:
    """Upstream requests and Binance weight the fake saw in [start, end)."""
    inside = [e for e in entries if start <= e[1] < end]
    span = max(end - start, 1e-9)
    minutes: Counter[int] = Counter()
    for e in inside:
        minutes[int(e[1] // 60)] += e[4]
    paths = Counter(e[3] for e in inside)
    statuses = Counter(str(e[5]) for e in inside)
    weight = sum(e[4] for e in inside)
    return {
        "requests": len(inside),
        "requests_per_s": round(len(inside) / span, 1),
        "weight": weight,
        "weight_per_min": round(weight / span * 60, 1),
        "max_weight_in_a_minute_window": max(minutes.values(), default=0),
        "by_path": dict(paths.most_common()),
        "by_status": dict(statuses.most_common()),
        "weight_429": sum(1 for e in inside if e[6] == "weight"),
    }


# --- phases ----------------------------------------------------------------------------------------


async def phase_poll(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out = {}
    for name, extra in (("default", {}), ("cache", {"public_cache": {"ticker": 0.1}})):
        fake = start_fake(workdir, f"poll-{name}", args.weight_limit)
        gw = start_gateway(workdir, fake.url, f"poll-{name}", extra)
        try:
            async with Bench(fake, gw) as bench:
                await warm(bench, 0)
                warmup = Answers()
                await dockers(bench, polling, DOCKERS, args.warmup, warmup)
                before = await bench.metrics()
                answers = Answers()
                start = time.time()
                await dockers(bench, polling, DOCKERS, args.poll_seconds, answers)
                end = time.time()
                after = await bench.metrics()
                entries = await bench.fake_log()
        finally:
            gw.stop()
            fake.stop()
        upstream = weight_figures(entries, start, end)
        ticker_calls = upstream["by_path"].get("/api/v3/ticker/24hr", 0)
        out[name] = {
            "config": extra,
            "answers": answers.summary(),
            "upstream": upstream,
            "ticker_upstream_per_s": round(ticker_calls / (end - start), 1),
            "all_429": sum(1 for e in entries if e[5] == 429),
            "metrics": {
                "upstream_requests": metric_diff(before, after, "fmz_gateway_upstream_requests_total"),
                "cache_hits": metric_diff(before, after, "fmz_gateway_public_cache_hits_total"),
                "coalesced": metric_diff(before, after, "fmz_gateway_coalesced_reads_total"),
                "rate_limit_waits": metric_diff(before, after, "fmz_gateway_rate_limit_waits_total"),
                "rate_limit_wait_s": metric_diff(before, after, "fmz_gateway_rate_limit_wait_seconds_total"),
            },
        }
        a = out[name]["answers"]
        log(
            f"  poll {name}: {a['ok_per_s']} answers/s, p50 {a['p50_ms']} ms, errors {a['errors']}; upstream "
            f"{out[name]['ticker_upstream_per_s']} ticker/s, {upstream['weight_per_min']} weight/min, "
            f"429s {out[name]['all_429']}"
        )
    return out


class Costs:
    """ccxt's rate-limiter cost of a request the fake logged (its own binance definitions)."""

    def __init__(self) -> None:
        self.exchange = ccxt_async.binance()
        self.rate_limit_ms = float(self.exchange.rateLimit)

    def cost(self, method: str, path: str, query: dict[str, Any]) -> float:
        endpoint = path.removeprefix("/api/v3/")
        for api in ("public", "private"):
            config = self.exchange.api.get(api, {}).get(method.lower(), {}).get(endpoint)
            if config is not None:
                params = {k: _number(v) for k, v in query.items()}
                return float(self.exchange.calculate_rate_limiter_cost(api, method, endpoint, params, config) or 1)
        return 1.0

    async def close(self) -> None:
        await self.exchange.close()


def _number(value: str) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


async def phase_strategy(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fake = start_fake(workdir, "strategy", args.weight_limit)
    gw = start_gateway(workdir, fake.url, "strategy")
    key = 7
    calls: list[dict[str, Any]] = []
    costs = Costs()
    try:
        async with Bench(fake, gw) as bench:
            await warm(bench, 0)
            for method in STRATEGY_LOOP:  # the key's client and every path once, unmeasured
                await bench.call(method, key)
            await asyncio.sleep(1.0)  # the budgets are idle again
            seq = (await bench.fake_counts())["seq"]
            wait_metric = "fmz_gateway_rate_limit_wait_seconds_total"
            waited_before = metric_sum(await bench.metrics(), wait_metric)
            stop_at = time.perf_counter() + args.strategy_seconds
            for method in itertools.cycle(STRATEGY_LOOP):
                if time.perf_counter() >= stop_at and method == STRATEGY_LOOP[0]:
                    break
                sent = time.time()
                started = time.perf_counter()
                ok, error = await bench.call(method, key)
                seconds = time.perf_counter() - started
                answered = time.time()
                waited_after = metric_sum(await bench.metrics(), wait_metric)
                calls.append(
                    {
                        "method": method,
                        "sent": sent,
                        "answered": answered,
                        "seconds": seconds,
                        "ok": ok,
                        "error": error[:160],
                        "waited_s": waited_after - waited_before,
                    }
                )
                waited_before = waited_after
            entries = await bench.fake_log(seq)
    finally:
        gw.stop()
        fake.stop()
        await costs.close()
    # Each call's upstream requests: the ones the fake received while the call was open (sequential).
    ordered = sorted(entries, key=lambda e: e[1])
    prev_send, prev_cost = -math.inf, 0.0
    index = 0
    for call in calls:
        mine = []
        while index < len(ordered) and ordered[index][1] < call["answered"]:
            if ordered[index][1] >= call["sent"]:
                mine.append(ordered[index])
            index += 1
        required = 0.0
        request_costs = []
        for position, entry in enumerate(mine):
            query = {"symbol": "x"} if entry[3].endswith(("ticker/24hr", "openOrders")) else {}
            if entry[8]:
                query["limit"] = entry[8]
            cost = costs.cost(entry[2], entry[3], query)
            due = prev_send + prev_cost * costs.rate_limit_ms / 1000
            if position == 0:
                required = max(0.0, due - call["sent"])
            prev_send, prev_cost = entry[1], cost
            request_costs.append({"path": entry[3], "cost": cost, "weight": entry[4], "status": entry[5]})
        call["upstream"] = request_costs
        call["required_s"] = required
    per_method: dict[str, dict[str, Any]] = {}
    for method in STRATEGY_LOOP:
        mine = [c for c in calls if c["method"] == method]
        waited = [c["waited_s"] for c in mine]
        required = [c["required_s"] for c in mine]
        first = next((c["upstream"][0] for c in mine if c["upstream"]), {})
        per_method[method] = {
            "calls": len(mine),
            "errors": sum(1 for c in mine if not c["ok"]),
            "upstream_path": first.get("path"),
            "ccxt_cost": first.get("cost"),
            "ccxt_spacing_ms": round(first.get("cost", 0) * costs.rate_limit_ms, 1),
            "binance_weight": first.get("weight"),
            "waited_p50_ms": ms(percentile(waited, 50)),
            "waited_max_ms": ms(max(waited, default=math.nan)),
            "required_p50_ms": ms(percentile(required, 50)),
            "required_max_ms": ms(max(required, default=math.nan)),
            "answer_p50_ms": ms(percentile([c["seconds"] for c in mine], 50)),
            "waited_longer_than_required": sum(1 for c in mine if c["waited_s"] > c["required_s"] + WAIT_TOLERANCE_S),
        }
    start, end = (calls[0]["sent"], calls[-1]["answered"]) if calls else (0.0, 0.0)
    weights = weight_figures(entries, start, end)
    result = {
        "key": key_name(key),
        "seconds": round(end - start, 1),
        "calls": len(calls),
        "loops": len(calls) // len(STRATEGY_LOOP),
        "errors": sum(1 for c in calls if not c["ok"]),
        "error_kinds": dict(Counter(error_kind(c["error"]) for c in calls if not c["ok"]).most_common(5)),
        "rate_limit_ms": costs.rate_limit_ms,
        "per_method": per_method,
        "waited_total_s": round(sum(c["waited_s"] for c in calls), 3),
        "required_total_s": round(sum(c["required_s"] for c in calls), 3),
        "waited_longer_than_required": sum(m["waited_longer_than_required"] for m in per_method.values()),
        "upstream": weights,
        "calls_detail": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items() if k not in ("sent", "answered")}
            for c in calls[:400]
        ],
    }
    log(
        f"  strategy: {result['loops']} loops in {result['seconds']} s, waited {result['waited_total_s']} s vs "
        f"required {result['required_total_s']} s; {weights['weight_per_min']} weight/min, "
        f"429s {weights['weight_429']}, errors {result['errors']}"
    )
    return result


async def phase_mixed(
    args: argparse.Namespace, workdir: Path, name: str, seconds: float, fail_rate: float
) -> dict[str, Any]:
    """c=100 mixed dockers for `seconds` (after an unmeasured warm-up of the same load)."""
    fake = start_fake(workdir, name, args.weight_limit)
    gw = start_gateway(workdir, fake.url, name)
    rss: list[tuple[float, float]] = []
    try:
        async with Bench(fake, gw) as bench:
            await warm(bench, DOCKERS)
            await dockers(bench, mixed(args.private_every), DOCKERS, args.mixed_warmup, Answers())
            await bench.control(fail_rate=fail_rate)
            await asyncio.sleep(0.5)
            before = await bench.metrics()
            rss.append((0.0, gw.rss_mb()))
            answers = Answers()
            start = time.time()

            async def sample() -> None:
                while True:
                    await asyncio.sleep(args.rss_every)
                    rss.append((round(time.time() - start, 1), gw.rss_mb()))

            sampler = asyncio.create_task(sample())
            try:
                await dockers(bench, mixed(args.private_every), DOCKERS, seconds, answers)
            finally:
                sampler.cancel()
            end = time.time()
            await bench.control(fail_rate=0.0)
            await asyncio.sleep(1.0)
            rss.append((round(time.time() - start, 1), gw.rss_mb()))
            after = await bench.metrics()
            entries = await bench.fake_log()
            counts = await bench.fake_counts()
    finally:
        gw.stop()
        fake.stop()
    upstream = weight_figures(entries, start, end + 15)
    faults = {k: v for k, v in counts.items() if k.startswith("fault_")}
    result = {
        "seconds": seconds,
        "fail_rate": fail_rate,
        "private_every": args.private_every,
        "answers": answers.summary(deadline=args.request_timeout),
        "rss_start_mb": round(rss[0][1], 1),
        "rss_end_mb": round(rss[-1][1], 1),
        "rss_growth_pct": round((rss[-1][1] - rss[0][1]) / rss[0][1] * 100, 2),
        "rss_samples": rss,
        "upstream": upstream,
        "faults_injected": faults,
        "metrics": {
            "upstream_requests": metric_diff(before, after, "fmz_gateway_upstream_requests_total"),
            "coalesced": metric_diff(before, after, "fmz_gateway_coalesced_reads_total"),
            "rate_limit_waits": metric_diff(before, after, "fmz_gateway_rate_limit_waits_total"),
            "rate_limit_wait_s": metric_diff(before, after, "fmz_gateway_rate_limit_wait_seconds_total"),
            "cooldowns": metric_diff(before, after, "fmz_gateway_cooldowns_total"),
            "retries": metric_diff(before, after, "fmz_gateway_read_retries_total"),
        },
    }
    a = result["answers"]
    log(
        f"  {name}: {a['answers_per_s']} answers/s ({a['ok']} ok, {a['errors']} errors), p50 {a['p50_ms']} / "
        f"p99 {a['p99_ms']} / max {a['max_ms']} ms, over deadline {a['over_deadline']}; RSS "
        f"{result['rss_start_mb']} -> {result['rss_end_mb']} MB; weight/min {upstream['weight_per_min']}, "
        f"429s {upstream['weight_429']}, faults {faults}"
    )
    return result


# --- report ----------------------------------------------------------------------------------------


def evaluate(doc: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    targets = []
    limit = args.weight_limit or SPOT_WEIGHT_LIMIT
    poll = doc.get("poll", {})
    for name, floor in (("default", args.poll_target), ("cache", args.cache_target)):
        p = poll.get(name)
        if not p:
            continue
        rate = p["answers"]["ok_per_s"] or 0.0
        targets.append(Target(f"1. ticker c=100 answers/s, {name}", f">= {floor:g}", rate, "/s", rate >= floor))
        w = p["upstream"]["weight_per_min"]
        targets.append(Target(f"1. upstream weight/min, {name}", f"<= {limit}", w, "w/min", w <= limit))
        n = p["all_429"]
        targets.append(Target(f"1. 429s caused, {name}", "= 0", n, "", n == 0))
    s = doc.get("strategy")
    if s:
        n = s["waited_longer_than_required"]
        targets.append(Target("2. calls waiting longer than the limits require", "= 0", n, "calls", n == 0))
        n = s["upstream"]["weight_429"]
        targets.append(Target("2. 429s caused, strategy loop", "= 0", n, "", n == 0))
        w = s["upstream"]["max_weight_in_a_minute_window"]
        targets.append(Target("2. strategy: max weight in a minute window", f"<= {limit}", w, "w", w <= limit))
    k = doc.get("soak")
    if k:
        g = k["rss_growth_pct"]
        targets.append(Target(f"3. soak {k['seconds'] / 60:g} min RSS growth", "< 5 %", g, "%", g < 5))
        n = k["answers"]["errors"]
        targets.append(Target("3. soak errors", "= 0", n, "", n == 0))
        n = k["upstream"]["weight_429"]
        targets.append(Target("3. soak 429s caused", "= 0", n, "", n == 0))
    f = doc.get("faults")
    if f:
        n = f["answers"]["over_deadline"]
        targets.append(
            Target(f"4. 5 % faults: answers over the {args.request_timeout:g} s deadline", "= 0", n, "", n == 0)
        )
        n = f["answers"]["over_deadline_plus_100ms"]
        targets.append(Target("4. 5 % faults: answers over the deadline + 100 ms", "= 0", n, "", n == 0))
        n = f["upstream"]["weight_429"]
        targets.append(Target("4. 429s caused (weight, not injected)", "= 0", n, "", n == 0))
    return targets


def report(doc: dict[str, Any], targets: list[Target]) -> str:
    lines = [
        f"\nfmz-ccxt-gateway ops bench: fake Binance at {LATENCY_MS} ms, weight limit "
        f"{doc['meta']['weight_limit']}/min per IP, gateway defaults (ccxt rate limiting on, "
        f"request_timeout {doc['meta']['request_timeout']:g} s); {doc['meta']['cpus']} CPUs shared"
    ]
    for name, p in doc.get("poll", {}).items():
        a, u, m = p["answers"], p["upstream"], p["metrics"]
        lines.append(
            f"1. poll {name:<7}: {a['ok_per_s']:>7} answers/s (p50 {a['p50_ms']} p99 {a['p99_ms']} ms, "
            f"{a['errors']} errors) | upstream {p['ticker_upstream_per_s']} ticker/s, {u['weight_per_min']} "
            f"weight/min, 429s {p['all_429']} | cache hits {sum(m['cache_hits'].values()):.0f}, coalesced "
            f"{sum(m['coalesced'].values()):.0f}, limiter waits {sum(m['rate_limit_waits'].values()):.0f}"
        )
    s = doc.get("strategy")
    if s:
        lines.append(
            f"2. strategy loop, one key, {s['loops']} loops in {s['seconds']} s ({s['errors']} errors); "
            f"rateLimit {s['rate_limit_ms']:g} ms per unit of ccxt cost"
        )
        head = (
            f"   {'call':<9}{'path':<22}{'cost':>6}{'sp ms':>7}{'wght':>5}{'n':>5}{'waited p50/max ms':>19}"
            f"{'required p50/max ms':>21}{'longer':>7}{'ans p50':>8}"
        )
        lines.append(head)
        for method, m in s["per_method"].items():
            lines.append(
                f"   {method:<9}{str(m['upstream_path']).removeprefix('/api/v3/'):<22}{m['ccxt_cost'] or 0:>6g}"
                f"{m['ccxt_spacing_ms']:>7g}{m['binance_weight'] or 0:>5}{m['calls']:>5}"
                f"{_pair(m['waited_p50_ms'], m['waited_max_ms']):>19}"
                f"{_pair(m['required_p50_ms'], m['required_max_ms']):>21}"
                f"{m['waited_longer_than_required']:>7}{number(m['answer_p50_ms']):>8}"
            )
        u = s["upstream"]
        lines.append(
            f"   waited {s['waited_total_s']} s in all vs required {s['required_total_s']} s (required: ccxt cost "
            f"x rateLimit after the previous request of this IP, public and signed alike); the fake counted "
            f"{u['weight_per_min']} weight/min (max {u['max_weight_in_a_minute_window']} in a minute window), "
            f"429s {u['weight_429']}"
        )
    for phase, title in (("soak", "3. soak"), ("faults", "4. faults")):
        k = doc.get(phase)
        if not k:
            continue
        a, u = k["answers"], k["upstream"]
        lines.append(
            f"{title}: {k['seconds'] / 60:g} min c={DOCKERS} mixed (private every {k['private_every']:g} s), "
            f"fail rate {k['fail_rate']:g}: "
            f"{a['answers']} answers "
            f"({a['answers_per_s']}/s), {a['errors']} errors; answer p50 {a['p50_ms']} / p99 {a['p99_ms']} / max "
            f"{a['max_ms']} ms; over deadline {a['over_deadline']} (> +100 ms: {a['over_deadline_plus_100ms']})"
        )
        lines.append(
            f"   RSS {k['rss_start_mb']} -> {k['rss_end_mb']} MB ({k['rss_growth_pct']:+.2f} %); upstream "
            f"{u['requests_per_s']} req/s, {u['weight_per_min']} weight/min, 429s (weight) {u['weight_429']}, "
            f"statuses {u['by_status']}; injected {k['faults_injected']}"
        )
        if a["error_kinds"]:
            lines.append("   errors: " + "; ".join(f"{v}x {e}" for e, v in list(a["error_kinds"].items())[:5]))
    lines += ["\ntargets:", targets_table(targets)]
    return "\n".join(lines)


def _pair(a: float | None, b: float | None) -> str:
    return f"{number(a)}/{number(b)}"


def ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 1)


# --- entry -----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--soak-minutes", type=float, help="soak length (default 1 with --ops, 10 with --soak)")
    parser.add_argument("--soak-only", action="store_true", help="run only the soak (what --soak does)")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="measured seconds per poll setting (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured poll seconds first (2)")
    parser.add_argument("--strategy-seconds", type=float, default=70.0, help="strategy loop seconds (70)")
    parser.add_argument("--fault-seconds", type=float, default=60.0, help="seconds of the 5 %% fault phase (60)")
    parser.add_argument("--fail-rate", type=float, default=0.05, help="share of exchange requests failing (0.05)")
    parser.add_argument(
        "--private-every", type=float, default=30.0, help="mixed load: seconds between a docker's private calls (30)"
    )
    parser.add_argument("--mixed-warmup", type=float, default=10.0, help="unmeasured mixed-load seconds (10)")
    parser.add_argument("--rss-every", type=float, default=10.0, help="RSS sample interval, seconds (10)")
    parser.add_argument("--weight-limit", type=int, default=SPOT_WEIGHT_LIMIT, help="fake's weight/min (0: off)")
    parser.add_argument("--poll-target", type=float, default=700.0)
    parser.add_argument("--cache-target", type=float, default=1500.0)
    parser.add_argument("--out", default="bench-ops.json", help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    if args.soak_minutes is None:
        args.soak_minutes = 10.0 if args.soak_only else 1.0
    if not 0 < args.soak_minutes <= 24 * 60 or not 0 <= args.fail_rate <= 1:
        parser.error("--soak-minutes in (0, 1440], --fail-rate in [0, 1]")
    from gateway.settings import parse_settings

    args.request_timeout = parse_settings({"exchanges": {}}).server.request_timeout
    return args


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if not args.soak_only:
        log("phase 1: 100 dockers polling one ticker (default, then public_cache ticker 0.1)")
        doc["poll"] = await phase_poll(args, workdir)
        log("phase 2: strategy loop on one key")
        doc["strategy"] = await phase_strategy(args, workdir)
    log(f"phase 3: soak, c={DOCKERS} mixed, {args.soak_minutes:g} min")
    doc["soak"] = await phase_mixed(args, workdir, "soak", args.soak_minutes * 60, 0.0)
    if not args.soak_only:
        log(f"phase 4: c={DOCKERS} mixed with {args.fail_rate:.0%} of exchange requests failing")
        doc["faults"] = await phase_mixed(args, workdir, "faults", args.fault_seconds, args.fail_rate)
    return doc


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.time()
    results = procs.run_benchmark("fmz-ops-", lambda tmp: run(args, tmp))
    if results is None:
        return 130
    extra = {"cpus": len(os.sched_getaffinity(0)), "weight_limit": args.weight_limit}
    doc = {"meta": procs.meta(started, args, **extra, request_timeout=args.request_timeout), **results}
    targets = evaluate(doc, args)
    doc["targets"] = [t.as_dict() for t in targets]
    out = Path(args.out)
    procs.write_results(out, doc)
    print(report(doc, targets))
    print(f"\nresults: {out.resolve()}  ({doc['meta']['seconds']:.0f} s)")
    return 1 if args.strict and not all(t.passed for t in targets) else 0
