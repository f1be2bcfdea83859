"""`scripts/bench --chaos`: trades through the gateway while the exchange loses or garbles answers.

The fake Binance and the fake OKX run in this process (each on its own loopback port, thread and
event loop, behind a FaultInjector), the gateway in its own process, and strategy-like workers
on this process's loop: one worker per API key, each trading in turn. Every trade posts `trade`
(a limit buy far below the market, at a price unique to the trade) with a fresh nonce; on an
error answer it re-sends with a NEW nonce, as a strategy that retries does, until it gets an id
or has tried 3 times. Some trades are cancelled afterwards (a cancel is retried the same way).

A share of the trades (`--chaos-rate`, 10 %) is hit by one fault of tests/fakes/faults.py, aimed
at that trade's own request by its API key: on the placement or on the cancel (alternately),
the kind rotating through KINDS. At the end the exchange's real order book is reconciled with
what the strategy was told: duplicate orders, orders answered with their real id, successes
without a usable id, answers later than the gateway's deadline, and answer times of faulted vs
clean calls. The figures measure whatever the gateway does today; nothing here knows how it settles.

    scripts/bench --chaos [--chaos-trades 1000] [--chaos-rate 0.1] [--chaos-venues binance,okx]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.procs import log
from bench.report import number, percentile
from tests.fakes import binance, faults, okx
from tests.fakes.server import BackgroundServer, Fault, FaultInjector

SECRET = "chaos-secret-0123456789abcdef"
PASSPHRASE = "Chaos-Passphrase-1"
KINDS = (
    "accept-then-502",
    "status-unknown",
    "truncated-length",
    "late-drop",
    "accept-then-504",
    "truncated-short",
    "late-502",
    "answer-lost",
    "truncated-chunked",
)
BASE_PRICE = Decimal("30000")  # half the fakes' BTC price: the buys rest on the book
PRICE_STEP = Decimal("0.1")  # on both fakes' tick grids: trade n buys at BASE_PRICE + n * PRICE_STEP
AMOUNT = "0.001"
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class VenueSpec:
    name: str
    place: tuple[str, str]  # (verb, path prefix) of order placement
    cancel: tuple[str, str]

    def secret_key(self) -> str:
        return f"{SECRET},{PASSPHRASE}" if self.name == "okx" else SECRET


VENUES = {
    "binance": VenueSpec("binance", ("POST", "/api/v3/order"), ("DELETE", "/api/v3/order")),
    "okx": VenueSpec("okx", ("POST", "/api/v5/trade/"), ("POST", "/api/v5/trade/cancel")),
}


def make_fault(kind: str, venue: str, late_delay: float) -> Fault:
    if kind == "status-unknown":
        return faults.okx_status_unknown() if venue == "okx" else faults.binance_status_unknown()
    if kind.startswith("accept-then-"):
        return faults.accept_then_5xx(int(kind.rsplit("-", 1)[1]))
    if kind.startswith("truncated-"):
        return faults.truncated(kind.split("-", 1)[1])
    if kind == "late-drop":
        return faults.handled_late(late_delay, "drop")
    if kind == "late-502":
        return faults.handled_late(late_delay, 502)
    if kind == "answer-lost":
        return faults.answer_lost()
    raise ValueError(kind)


class FakeVenue:
    """One fake exchange in this process, its accounts keyed by the bench's API keys."""

    def __init__(self, spec: VenueSpec, keys: list[str]) -> None:
        self.spec = spec
        self.keys = keys
        module = okx if spec.name == "okx" else binance
        self.engine = module.default_engine()
        credentials: dict[str, Any] = {k: (SECRET, PASSPHRASE) if spec.name == "okx" else SECRET for k in keys}
        self.injector = FaultInjector(module.create_app(self.engine, credentials), record=False)
        self.server = BackgroundServer(self.injector).start()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Answer:
    """One call to the gateway, as the strategy saw it."""

    op: str  # trade | cancel
    nonce: int
    seconds: float
    ok: bool
    id: str | None = None  # data.id of a trade answer
    error: str | None = None
    faulted: bool = False  # the trade's fault struck during this call


@dataclass
class Trade:
    index: int
    venue: str
    key: str
    price: str
    cancel: bool
    fault_kind: str | None = None
    fault_target: str | None = None  # place | cancel
    fault_struck: bool = False
    fault_path: str | None = None
    answers: list[Answer] = field(default_factory=list)
    reported_id: str | None = None  # the exchange part of the id the strategy kept
    cancel_ok: bool | None = None  # the strategy's view of its cancel (None: not cancelled)
    orders: list[dict] = field(default_factory=list)  # filled in by reconcile()

    @property
    def faulted(self) -> bool:
        return self.fault_kind is not None


def exchange_part(fmz_id: Any) -> str:
    """The exchange order id inside the gateway's "<FMZ symbol>,<exchange id>" ('' if absent)."""
    if not isinstance(fmz_id, str):
        return "" if fmz_id is None else str(fmz_id)
    part = fmz_id.partition(",")[2] if "," in fmz_id else fmz_id
    return "" if part.strip().lower() in ("", "none", "null", "undefined") else part.strip()


class Gateway:
    """FMZ envelopes posted to the gateway, as a strategy's docker sends them."""

    _nonces = itertools.count()

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Gateway:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), connector=aiohttp.TCPConnector(limit=256)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    @classmethod
    def nonce(cls) -> int:
        """A fresh nonce per call: ns time plus a counter, never reused in a run."""
        return time.time_ns() + next(cls._nonces)

    async def call(self, route: str, key: str, secret: str, method: str, params: dict) -> tuple[int, float, Any]:
        assert self.session is not None
        nonce = self.nonce()
        body = {"access_key": key, "secret_key": secret, "nonce": nonce, "method": method, "params": params}
        started = time.perf_counter()
        try:
            async with self.session.post(f"{self.url}/{route}", json=body) as reply:
                raw = await reply.read()
            try:
                doc: Any = json.loads(raw)
            except ValueError:
                doc = {"error": f"HTTP {reply.status}: not JSON: {raw[:120]!r}"}
        except (TimeoutError, aiohttp.ClientError) as exc:
            doc = {"error": f"BenchClient: {type(exc).__name__} {exc}"[:200]}
        return nonce, time.perf_counter() - started, doc


class Chaos:
    def __init__(self, args: argparse.Namespace, fakes: dict[str, FakeVenue], gateway: Gateway) -> None:
        self.args = args
        self.fakes = fakes
        self.gateway = gateway
        self.stop_at = time.monotonic() + args.chaos_budget

    async def place(self, trade: Trade, fault: Fault | None) -> None:
        fake = self.fakes[trade.venue]
        params = {"symbol": "BTC_USDT", "type": "buy", "price": trade.price, "amount": AMOUNT}
        for _ in range(MAX_ATTEMPTS):
            fired = len(fake.injector.fired)
            nonce, seconds, doc = await self.gateway.call(
                trade.venue, trade.key, fake.spec.secret_key(), "trade", params
            )
            answer = Answer("trade", nonce, seconds, ok="data" in doc and "error" not in doc)
            answer.faulted = self.struck(fake, fault, fired, trade)
            if answer.ok:
                data = doc["data"]
                answer.id = data.get("id") if isinstance(data, dict) else None
                trade.answers.append(answer)
                trade.reported_id = exchange_part(answer.id)
                return
            answer.error = str(doc.get("error", doc))[:300]
            trade.answers.append(answer)

    async def cancel(self, trade: Trade, fault: Fault | None) -> None:
        fake = self.fakes[trade.venue]
        for _ in range(MAX_ATTEMPTS):
            fired = len(fake.injector.fired)
            nonce, seconds, doc = await self.gateway.call(
                trade.venue, trade.key, fake.spec.secret_key(), "cancel", {"id": f"BTC_USDT,{trade.reported_id}"}
            )
            answer = Answer("cancel", nonce, seconds, ok="data" in doc and "error" not in doc)
            answer.faulted = self.struck(fake, fault, fired, trade)
            if not answer.ok:
                answer.error = str(doc.get("error", doc))[:300]
            trade.answers.append(answer)
            if answer.ok:
                trade.cancel_ok = True
                return
        trade.cancel_ok = False

    @staticmethod
    def struck(fake: FakeVenue, fault: Fault | None, fired_before: int, trade: Trade) -> bool:
        if fault is None:
            return False
        for method, path, struck in fake.injector.fired[fired_before:]:
            if struck is fault:
                trade.fault_struck = True
                trade.fault_path = f"{method} {path}"
                return True
        return False

    def arm(self, trade: Trade, target: str) -> Fault | None:
        if trade.fault_target != target:
            return None
        assert trade.fault_kind is not None
        fake = self.fakes[trade.venue]
        fault = make_fault(trade.fault_kind, trade.venue, self.args.late_delay)
        fault.method, prefix = getattr(fake.spec, target)
        fault.api_key = trade.key
        fake.injector.inject(fault, prefix)
        return fault

    async def run_trade(self, trade: Trade) -> None:
        injector = self.fakes[trade.venue].injector
        fault = self.arm(trade, "place")
        try:
            await self.place(trade, fault)
        finally:
            if fault is not None:
                injector.withdraw(fault)
        if not (trade.cancel and trade.reported_id):
            return
        fault = self.arm(trade, "cancel")
        try:
            await self.cancel(trade, fault)
        finally:
            if fault is not None:
                injector.withdraw(fault)

    async def worker(self, trades: list[Trade]) -> None:
        for trade in trades:
            if time.monotonic() > self.stop_at:
                return
            await self.run_trade(trade)


def plan(args: argparse.Namespace, keys: dict[str, list[str]]) -> list[Trade]:
    """The trades: venues alternate, a `rate` share faulted (kinds rotate per venue, targets
    alternate place/cancel), every cancel-faulted trade and a `cancel_share` of the others cancelled."""
    rng = random.Random(args.seed)
    venues = list(keys)
    faulted = set(rng.sample(range(args.chaos_trades), round(args.chaos_trades * args.chaos_rate)))
    rotation = {venue: itertools.cycle(itertools.product(KINDS, ("place", "cancel"))) for venue in venues}
    workers = {venue: itertools.cycle(keys[venue]) for venue in venues}
    trades = []
    for index in range(args.chaos_trades):
        venue = venues[index % len(venues)]
        price = BASE_PRICE + index * PRICE_STEP
        trade = Trade(index, venue, next(workers[venue]), f"{price}", cancel=rng.random() < args.cancel_share)
        if index in faulted:
            trade.fault_kind, trade.fault_target = next(rotation[venue])
            trade.cancel = trade.cancel or trade.fault_target == "cancel"
        trades.append(trade)
    return trades


def reconcile(trades: list[Trade], fakes: dict[str, FakeVenue]) -> dict[str, Any]:
    """Attach each order the exchange really holds to its trade (by account and unique price)."""
    by_price = {(t.venue, t.key, Decimal(t.price)): t for t in trades}
    stray = 0
    for name, fake in fakes.items():
        for key in fake.keys:
            for order in fake.engine.orders_of(key):
                trade = by_price.get((name, key, order.price))
                if trade is None:
                    stray += 1
                    continue
                trade.orders.append({"id": order.id, "client_id": order.client_id, "status": order.status})
    return {"stray_orders": stray}


def timing(seconds: list[float]) -> dict[str, Any]:
    return {
        "answers": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1) if seconds else None,
        "p99_ms": round(percentile(seconds, 99) * 1000, 1) if seconds else None,
        "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
    }


def error_kind(answer: Answer) -> str:
    if answer.ok:
        if answer.op == "cancel":
            return "ok"
        return "ok-id" if exchange_part(answer.id) else "ok-NO-ID"
    return (answer.error or "?").split(":", 1)[0].strip()[:40]


def summarize(trades: list[Trade], deadline: float, done: list[Trade]) -> dict[str, Any]:
    placed = [o for t in done for o in t.orders]
    answered_real = sum(1 for t in done for o in t.orders if o["id"] == t.reported_id)
    duplicates = sum(max(0, len(t.orders) - 1) for t in done)
    no_id = [a for t in done for a in t.answers if a.op == "trade" and a.ok and not exchange_part(a.id)]
    unknown_id = [t.index for t in done if t.reported_id and t.reported_id not in {o["id"] for o in t.orders}]
    gave_up = [t for t in done if not t.reported_id]
    gave_up_but_placed = [t.index for t in gave_up if t.orders]
    cancel_ok_but_open = [
        t.index
        for t in done
        if t.cancel_ok and any(o["id"] == t.reported_id and o["status"] != "canceled" for o in t.orders)
    ]
    cancel_failed_but_cancelled = [
        t.index
        for t in done
        if t.cancel_ok is False and any(o["id"] == t.reported_id and o["status"] == "canceled" for o in t.orders)
    ]
    answers = [a for t in done for a in t.answers]
    late = [a for a in answers if a.seconds > deadline]
    faulted_answers = [a.seconds for a in answers if a.faulted]
    clean_answers = [a.seconds for t in done for a in t.answers if not a.faulted]
    clean_trade_answers = [a.seconds for t in done if not t.faulted for a in t.answers]
    faulted_trade_answers = [a.seconds for t in done if t.faulted for a in t.answers]
    summary = {
        "trades_planned": len(trades),
        "trades_run": len(done),
        "faulted_trades": sum(1 for t in done if t.faulted),
        "faults_struck": sum(1 for t in done if t.fault_struck),
        "orders_at_exchange": len(placed),
        "duplicate_orders": duplicates,
        "trades_with_duplicates": sum(1 for t in done if len(t.orders) > 1),
        "orders_answered_with_real_id": answered_real,
        "orders_answered_with_real_id_pct": round(100 * answered_real / len(placed), 2) if placed else None,
        "successes_without_id": len(no_id),
        "successes_with_unknown_id": len(unknown_id),
        "trades_given_up": len(gave_up),
        "trades_given_up_but_placed": len(gave_up_but_placed),
        "cancels": sum(1 for t in done if t.cancel_ok is not None),
        "cancel_ok_but_order_open": len(cancel_ok_but_open),
        "cancel_failed_but_order_cancelled": len(cancel_failed_but_cancelled),
        "answers": len(answers),
        "deadline_s": deadline,
        "answers_over_deadline": len(late),
        "faulted_answer_time": timing(faulted_answers),
        "clean_answer_time": timing(clean_answers),
        "faulted_trades_answer_time": timing(faulted_trade_answers),
        "clean_trades_answer_time": timing(clean_trade_answers),
        "examples": {
            "trades_given_up_but_placed": gave_up_but_placed[:10],
            "successes_with_unknown_id": unknown_id[:10],
            "cancel_ok_but_order_open": cancel_ok_but_open[:10],
            "cancel_failed_but_order_cancelled": cancel_failed_but_cancelled[:10],
            "over_deadline": [round(a.seconds, 2) for a in sorted(late, key=lambda a: -a.seconds)[:10]],
        },
    }
    return summary


def by_kind(done: list[Trade], deadline: float) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Trade]] = defaultdict(list)
    for t in done:
        groups[(t.fault_kind or "-clean-", t.fault_target or "-", t.venue)].append(t)
    rows = []
    for (kind, target, venue), group in sorted(groups.items()):
        first = Counter()
        for t in group:
            struck = [a for a in t.answers if a.faulted]
            shown = (
                struck[0]
                if struck
                else next((a for a in t.answers if a.op == ("cancel" if target == "cancel" else "trade")), None)
            )
            if shown is not None:
                first[error_kind(shown)] += 1
        seconds = [a.seconds for t in group for a in t.answers if a.faulted or kind == "-clean-"]
        rows.append(
            {
                "kind": kind,
                "target": target,
                "venue": venue,
                "trades": len(group),
                "struck": sum(1 for t in group if t.fault_struck),
                "answer": dict(first.most_common()),
                "attempts": sum(sum(1 for a in t.answers if a.op == "trade") for t in group),
                "orders": sum(len(t.orders) for t in group),
                "duplicates": sum(max(0, len(t.orders) - 1) for t in group),
                "real_id": sum(1 for t in group for o in t.orders if o["id"] == t.reported_id),
                "given_up_placed": sum(1 for t in group if not t.reported_id and t.orders),
                "cancel_wrong": sum(
                    1
                    for t in group
                    if t.cancel_ok is not None
                    and any(o["id"] == t.reported_id and (o["status"] == "canceled") != t.cancel_ok for o in t.orders)
                ),
                "over_deadline": sum(1 for s in seconds if s > deadline),
                "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'fault kind':<18}{'on':<7}{'venue':<8}{'n':>4}{'hit':>4}{'att':>5}{'ord':>5}{'dup':>4}{'realid':>7}"
        f"{'lost':>5}{'cxl!':>5}{'late':>5}{'max ms':>9}  answer to the faulted call"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        answer = ", ".join(f"{k} {v}" for k, v in r["answer"].items())
        lines.append(
            f"{r['kind']:<18}{r['target']:<7}{r['venue']:<8}{r['trades']:>4}{r['struck']:>4}{r['attempts']:>5}"
            f"{r['orders']:>5}{r['duplicates']:>4}{r['real_id']:>7}{r['given_up_placed']:>5}{r['cancel_wrong']:>5}"
            f"{r['over_deadline']:>5}{number(r['max_ms'], 0):>9}  {answer}"
        )
    lines.append(
        "n = trades, hit = faults that struck, att = trade calls sent (retries with new nonces included), "
        "ord = orders at the exchange,\ndup = orders beyond one per trade, realid = orders whose id the "
        "strategy got, lost = trades given up although an order exists,\ncxl! = cancels whose answer "
        "contradicts the exchange, late = answers over the deadline, max ms = slowest faulted answer "
        "(all answers for clean rows)."
    )
    return "\n".join(lines)


def gateway_config(fakes: dict[str, FakeVenue], args: argparse.Namespace) -> tuple[dict, float, list[str]]:
    """The gateway's config; optional keys the gateway does not know (yet) are left out. Returns
    the config, the answer deadline (server.request_timeout, else ccxt's timeout) and notes."""
    from gateway.settings import SettingsError, parse_settings

    config: dict[str, Any] = {
        "server": {"log_level": "warning"},
        "allow_any_ccxt_exchange": False,
        "exchanges": {
            name: {"ccxt": name, "api_base": fake.url, "ccxt_config": {"enableRateLimit": False}}
            for name, fake in fakes.items()
        },
    }
    optional = []
    if args.request_timeout is not None:
        optional.append(("server", "request_timeout", args.request_timeout))
    if args.settle_window is not None:
        optional.append(("clients", "settle_window", args.settle_window))
    notes = []
    for section, key, value in optional:
        trial = json.loads(json.dumps(config))
        trial.setdefault(section, {})[key] = value
        try:
            parse_settings(trial)
        except SettingsError as exc:
            notes.append(f"{section}.{key} left out: {exc}")
            continue
        config = trial
    settings = parse_settings(config)
    deadline = getattr(settings.server, "request_timeout", None)
    if deadline is None:
        clients = getattr(settings, "clients", None)
        deadline = getattr(clients, "timeout_ms", 10_000) / 1000
        notes.append(f"no server.request_timeout in this gateway: the deadline is ccxt's timeout, {deadline:g} s")
    clients = getattr(settings, "clients", None)
    if clients is not None and hasattr(clients, "settle_window"):
        notes.append(f"clients.settle_window = {clients.settle_window:g} s")
    return config, float(deadline), notes


async def warm_up(gateway: Gateway, keys: dict[str, list[str]], gw: procs.Child) -> None:
    """Unmeasured: markets and every key's client; stops the bench if a venue does not work."""
    for venue, venue_keys in keys.items():
        for method, key in [("ticker", venue_keys[0]), *(("accounts", k) for k in venue_keys)]:
            params = {"symbol": "BTC_USDT"} if method == "ticker" else {}
            _, _, doc = await gateway.call(venue, key, VENUES[venue].secret_key(), method, params)
            if "error" in doc or "data" not in doc:
                raise RuntimeError(f"{venue} {method} fails before any fault: {doc}; gateway log: {gw.tail(800)}")


async def chaos(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    venues = args.chaos_venues
    keys = {v: [f"chaos-{v}-{n}" for n in range(args.chaos_workers)] for v in venues}
    fakes = {v: FakeVenue(VENUES[v], keys[v]) for v in venues}
    try:
        config, deadline, notes = gateway_config(fakes, args)
        for note in notes:
            log(f"  {note}")
        gw = procs.spawn_gateway(workdir, "gateway-chaos", config)
        try:
            trades = plan(args, keys)
            async with Gateway(gw.url, timeout=deadline + args.client_slack) as gateway:
                await warm_up(gateway, keys, gw)
                runner = Chaos(args, fakes, gateway)
                per_worker: dict[str, list[Trade]] = defaultdict(list)
                for trade in trades:
                    per_worker[trade.key].append(trade)
                log(
                    f"chaos: {len(trades)} trades on {', '.join(venues)} by {len(per_worker)} workers, "
                    f"{sum(t.faulted for t in trades)} faulted, deadline {deadline:g} s"
                )
                started = time.perf_counter()
                await asyncio.wait_for(
                    asyncio.gather(*(runner.worker(ts) for ts in per_worker.values())),
                    timeout=args.chaos_budget + 2 * MAX_ATTEMPTS * (deadline + args.client_slack) + 30,
                )
                elapsed = time.perf_counter() - started
            waited = time.monotonic()
            while any(f.injector.late_pending for f in fakes.values()) and time.monotonic() - waited < 15:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
        finally:
            gw.stop()
        done = [t for t in trades if t.answers]
        extra = reconcile(trades, fakes)
    finally:
        for fake in fakes.values():
            fake.stop()
    return {
        "notes": notes,
        "seconds_trading": round(elapsed, 1),
        "summary": {**summarize(trades, deadline, done), **extra},
        "by_kind": by_kind(done, deadline),
        "trades": [_trade_doc(t) for t in done if t.faulted or len(t.orders) != 1 or not t.reported_id],
    }


def _trade_doc(trade: Trade) -> dict[str, Any]:
    doc = asdict(trade)
    for answer in doc["answers"]:
        answer["seconds"] = round(answer["seconds"], 4)
    return doc


def report(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    ft, ftt, ct = s["faulted_answer_time"], s["faulted_trades_answer_time"], s["clean_trades_answer_time"]
    lines = [
        f"\nchaos bench: {s['trades_run']} trades ({s['faulted_trades']} faulted, {s['faults_struck']} struck), "
        f"{doc['seconds_trading']} s of trading; deadline {s['deadline_s']:g} s",
        *(f"  note: {n}" for n in doc["notes"]),
        "",
        table(doc["by_kind"]),
        "",
        f"orders at the exchange            {s['orders_at_exchange']:>6}   "
        f"(stray, matching no trade: {s['stray_orders']})",
        f"duplicate orders                  {s['duplicate_orders']:>6}   in {s['trades_with_duplicates']} trades",
        f"answered with their real id       {s['orders_answered_with_real_id']:>6}   "
        f"= {_pct(s['orders_answered_with_real_id_pct'])} of the orders placed",
        f"successes without an id           {s['successes_without_id']:>6}",
        f"successes with an unknown id      {s['successes_with_unknown_id']:>6}",
        f"trades given up                   {s['trades_given_up']:>6}   of which an order exists: "
        f"{s['trades_given_up_but_placed']}",
        f"cancels                           {s['cancels']:>6}   ok but open: {s['cancel_ok_but_order_open']}, "
        f"failed but cancelled: {s['cancel_failed_but_order_cancelled']}",
        f"answers over the deadline         {s['answers_over_deadline']:>6}   of {s['answers']}",
        *(
            f"answer time, {name:<20}p50 {number(t['p50_ms'], 0):>6} ms  p99 {number(t['p99_ms'], 0):>6} ms  "
            f"max {number(t['max_ms'], 0):>6} ms  ({t['answers']} answers)"
            for name, t in (("the faulted calls", ft), ("faulted trades", ftt), ("clean trades", ct))
        ),
    ]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chaos-trades", type=int, default=1000, help="trades in all (default 1000)")
    parser.add_argument("--chaos-rate", type=float, default=0.1, help="share of trades hit by a fault (0.1)")
    parser.add_argument("--chaos-venues", default="binance,okx", help="fake venues, comma-separated")
    parser.add_argument("--chaos-workers", type=int, default=8, help="strategies (API keys) per venue (8)")
    parser.add_argument("--chaos-budget", type=float, default=150, help="seconds after which no trade starts")
    parser.add_argument("--cancel-share", type=float, default=0.3, help="share of unfaulted trades cancelled")
    parser.add_argument("--late-delay", type=float, default=2.0, help="seconds a late-handled request waits (2)")
    parser.add_argument("--request-timeout", type=float, help="gateway server.request_timeout (default: its own)")
    parser.add_argument("--settle-window", type=float, help="gateway clients.settle_window (default: its own)")
    parser.add_argument("--client-slack", type=float, default=5, help="the bench waits deadline + this for an answer")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", default="bench-chaos.json", help="JSON results file")
    args = parser.parse_args(argv)
    args.chaos_venues = [v.strip() for v in args.chaos_venues.split(",") if v.strip()]
    unknown = set(args.chaos_venues) - set(VENUES)
    if unknown or not args.chaos_venues:
        parser.error(f"--chaos-venues: from {', '.join(VENUES)}")
    if not 0 <= args.chaos_rate <= 1 or args.chaos_trades < 1 or args.chaos_workers < 1:
        parser.error("--chaos-rate in [0, 1], --chaos-trades and --chaos-workers >= 1")
    if args.late_delay >= 9:
        parser.error("--late-delay: below ccxt's Binance recvWindow (10 s)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    doc = procs.run_benchmark("fmz-chaos-", lambda tmp: chaos(args, tmp), plain_asyncio=True)
    if doc is None:
        return 130
    doc = {"meta": procs.meta(started, args), **doc}
    out = Path(args.out)
    procs.write_results(out, doc)
    print(report(doc))
    print(f"\nresults: {out.resolve()}  ({doc['meta']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
