"""What the operator sees: `GET /status` (HTML, or JSON with `?format=json`) and `GET /healthz`.

`StatusBoard` (one per Gateway) keeps what the page needs beyond the Prometheus counters, all of
it bounded: per route a `RouteHealth`, per route and method the counts and the last 1,000
latencies, the last call of every key the pool caches, the last 50 failures.

`RouteHealth` is the interface for the rest of the gateway: the upstream instrumentation
(gateway/upstream.py) fills the upstream fields; a rate limiter fills `cooldown_until`,
`cooldown_reason`, `budget_used` and `budget_limit`, through `gateway.metrics.cooldown()` and
`gateway.metrics.budget()`; the page shows what is set.

A route cannot serve (`/healthz` answers 503 naming it) when its markets never loaded, or its
exchange's last answer, within HEALTH_WINDOW seconds, was a refused connection, a 429 or a 418.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ccxt

from gateway import __version__
from gateway.metrics import gauge
from gateway.settings import STREAM_KINDS

if TYPE_CHECKING:
    from gateway.dispatch import Gateway

LATENCY_WINDOW = 1000  # latencies kept per route and method for p50/p99
FAILURES_KEPT = 50
RECENT_UPSTREAM = 50  # upstream outcomes kept per route
HEALTH_WINDOW = 60.0  # seconds a refused connection, a 429 or a 418 marks its route as unable to serve
BLOCKING_OUTCOMES = {
    "refused": "the exchange refuses connections",
    "429": "the exchange answers 429 (rate limited)",
    "418": "the exchange answers 418 (IP banned)",
}
REFRESH_SECONDS = 5
DASH = "\u2013"  # an en dash: no value
KEYS_SHOWN = 200  # rows of the keys table on the HTML page (the JSON has them all)


@dataclass
class RouteHealth:
    """One route's health. Upstream fields: gateway/upstream.py. Rate fields: the rate limiter."""

    route: str
    last_outcome: str | None = None  # of the last upstream HTTP request: ok, 429, refused, ...
    last_outcome_at: float | None = None  # wall-clock seconds
    last_ok_at: float | None = None
    last_error: str | None = None  # scrubbed text of the last failed upstream request
    last_error_at: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_UPSTREAM))  # (at, outcome)
    cooldown_until: float | None = None  # wall-clock seconds; None or past = not cooling down
    cooldown_reason: str = ""
    budget_used: float | None = None  # requests (or weight) used in the limiter's current window
    budget_limit: float | None = None
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0

    def record_upstream(self, outcome: str, at: float, error: str | None) -> None:
        self.recent.append((at, outcome))
        if outcome == "cancelled":  # our own deadline, not the exchange's answer
            return
        self.last_outcome = outcome
        self.last_outcome_at = at
        if outcome == "ok":
            self.last_ok_at = at
        elif error:
            self.last_error = error[:500]
            self.last_error_at = at

    def blocking(self, now: float) -> str | None:
        """Why the exchange cannot serve this route now, from its last answer; None if it can."""
        reason = BLOCKING_OUTCOMES.get(self.last_outcome or "")
        if reason is not None and self.last_outcome_at is not None and now - self.last_outcome_at <= HEALTH_WINDOW:
            return f"{reason} ({now - self.last_outcome_at:.0f} s ago)"
        if self.cooldown_left(now) > 0 and "banned" in self.cooldown_reason.lower():  # nothing is sent meanwhile
            return f"cooling down {self.cooldown_left(now):.0f} s more: {self.cooldown_reason}"
        return None

    def cooldown_left(self, now: float) -> float:
        return max(0.0, self.cooldown_until - now) if self.cooldown_until else 0.0


class CallStats:
    __slots__ = ("count", "errors", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: deque = deque(maxlen=LATENCY_WINDOW)  # gateway ms


class StatusBoard:
    def __init__(self, max_keys: int = 10_000) -> None:
        self.routes: dict[str, RouteHealth] = {}
        self.calls: dict[tuple[str, str], CallStats] = {}
        self.clients: dict[tuple[str, str], tuple] = {}  # (route, cache key) -> (key id, method, at, outcome)
        self.failures: deque = deque(maxlen=FAILURES_KEPT)
        self.max_keys = max_keys

    def route(self, route: str) -> RouteHealth:
        health = self.routes.get(route)
        if health is None:
            health = self.routes[route] = RouteHealth(route)
        return health

    def record_call(
        self, route: str, method: str, ok: bool, ms: float, key_id: str, cache_key: str, error: str | None
    ) -> None:
        stats = self.calls.get((route, method))
        if stats is None:
            stats = self.calls[(route, method)] = CallStats()
        stats.count += 1
        stats.latencies.append(ms)
        now = time.time()
        if not ok:
            stats.errors += 1
            self.failures.append((now, route, method, key_id, error or ""))
        if cache_key:
            clients = self.clients
            key = (route, cache_key)
            clients.pop(key, None)  # re-inserted last: the dict stays in least-recent-first order
            clients[key] = (key_id, method, now, "ok" if ok else (error or "").partition(":")[0])
            if len(clients) > self.max_keys:
                del clients[next(iter(clients))]


# --- reading it all ------------------------------------------------------------------------------


def known_routes(gateway: Gateway) -> list[str]:
    routes = set(gateway.venues.configured) | set(gateway.pool.public_clients) | set(gateway.board.routes)
    routes |= {route for route, _ in gateway.board.calls}
    routes |= {route for route, _ in list(gateway.pool.private_clients.keys())}
    routes.discard("-")
    return sorted(routes)


def _scope(gateway: Gateway, route: str) -> tuple[Any, Any]:
    """(venue, market scope) a call to `route` would use; reading the page resolves nothing new."""
    venue = gateway.venues.peek(route)
    if venue is None:
        return None, None
    return venue, gateway.pool.scopes.get(venue.market_scope)


def markets_state(scope: Any) -> tuple[float | None, str | None]:
    """(age of the loaded markets in seconds, why they never loaded) of a market scope."""
    if scope is None:
        return None, None
    if scope.index is not None:
        return max(0.0, time.monotonic() - scope.loaded_at), None
    failure = getattr(scope, "_first_load_failure", None)
    return None, failure[1] if failure else None


def route_views(gateway: Gateway) -> dict[str, tuple[Any, Any, float | None, str | None]]:
    """route -> (venue, market scope, markets age, why the markets never loaded), every known route."""
    views = {}
    for name in known_routes(gateway):
        venue, scope = _scope(gateway, name)
        views[name] = (venue, scope, *markets_state(scope))
    return views


def route_problems(gateway: Gateway, views: dict | None = None) -> dict[str, str]:
    """{route: why it cannot serve}; empty when every route can. `views`: `route_views(gateway)`."""
    now = time.time()
    problems = {}
    for name, (_, _, _, markets_error) in (route_views(gateway) if views is None else views).items():
        health = gateway.board.routes.get(name)
        blocking = health.blocking(now) if health is not None else None
        if markets_error:
            problems[name] = f"markets failed to load: {markets_error}"
        elif blocking:
            detail = f": {health.last_error}" if health is not None and health.last_error else ""
            problems[name] = blocking + detail
    for name, refusal in sorted(gateway.venues.refused.items()):  # server.skip_bad_routes
        problems[name] = f"refused at startup: {refusal}"
    return problems


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


def snapshot(gateway: Gateway) -> dict[str, Any]:
    """Everything /status shows, as JSON-ready data (times: epoch seconds and ages in seconds)."""
    now = time.time()
    board = gateway.board
    views = route_views(gateway)
    problems = route_problems(gateway, views)
    routes = []
    for name, (venue, scope, age, markets_error) in views.items():
        health = board.routes.get(name) or RouteHealth(name)
        recent: dict[str, int] = {}
        for _, outcome in health.recent:
            recent[outcome] = recent.get(outcome, 0) + 1
        ratio = None
        if health.budget_used is not None and health.budget_limit:
            ratio = round(health.budget_used / health.budget_limit, 4)
        routes.append(
            {
                "route": name,
                "ccxt": venue.ccxt_id if venue is not None else None,
                "sandbox": bool(venue.sandbox) if venue is not None else False,
                "ok": name not in problems,
                "used": scope is not None or health.last_outcome is not None,
                "problem": problems.get(name),
                "markets_age_s": _round(age, 1),
                "markets_error": markets_error,
                "last_upstream": health.last_outcome,
                "last_upstream_age_s": _age(now, health.last_outcome_at),
                "last_upstream_error": health.last_error,
                "last_upstream_error_age_s": _age(now, health.last_error_at),
                "recent_upstream": recent,
                "cooldown_s": _round(health.cooldown_left(now), 1),
                "cooldown_reason": health.cooldown_reason or None,
                "budget_used": health.budget_used,
                "budget_limit": health.budget_limit,
                "budget_ratio": ratio,
                "rate_limit_waits": health.rate_limit_waits,
                "rate_limit_wait_s": round(health.rate_limit_wait_s, 3),
            }
        )
    calls = []
    for (name, method), stats in sorted(board.calls.items()):
        ordered = sorted(stats.latencies)
        calls.append(
            {
                "route": name,
                "method": method,
                "count": stats.count,
                "errors": stats.errors,
                "error_rate": round(stats.errors / stats.count, 4) if stats.count else 0.0,
                "p50_ms": _round(percentile(ordered, 0.50), 2),
                "p99_ms": _round(percentile(ordered, 0.99), 2),
                "window": len(ordered),
            }
        )
    keys = []
    cached = set(gateway.pool.private_clients.keys())
    for (name, cache_key), (key_id, method, at, outcome) in reversed(list(board.clients.items())):
        if (name, cache_key) in cached:
            keys.append(
                {
                    "key_id": key_id,
                    "route": name,
                    "method": method,
                    "at": round(at, 3),
                    "age_s": _age(now, at),
                    "outcome": outcome,
                }
            )
    failures = [
        {"at": round(at, 3), "age_s": _age(now, at), "route": name, "method": method, "key_id": key_id, "error": error}
        for at, name, method, key_id, error in reversed(board.failures)
    ]
    total = sum(s.count for s in board.calls.values())
    errors = sum(s.errors for s in board.calls.values())
    return {
        "streams": streams_status(gateway),
        "name": "fmz-ccxt-gateway",
        "version": __version__,
        "ccxt_version": ccxt.__version__,
        "now": round(now, 3),
        "uptime_s": round(now - gateway.started, 1),
        "ok": not problems,
        "problems": problems,
        "calls_total": total,
        "errors_total": errors,
        "clients": gateway.pool.stats(),
        "routes": routes,
        "calls": calls,
        "keys": keys,
        "failures": failures,
    }


STREAM_STATES = ("healthy", "stale", "rebuilding")
_BOOK_FAILURES = ("ChecksumError", "InvalidNonce", "crossed or empty book")


def stream_state(stream: dict) -> str:
    """healthy (fresh, answers from memory), rebuilding (waiting for its first or a new book
    snapshot after a gap, bad checksum or crossed book), or stale (too old, silent, disconnected)."""
    if stream["healthy"]:
        return "healthy"
    error = stream.get("error")
    if (error is None and stream.get("age_ms") is None) or (error or "").startswith(_BOOK_FAILURES):
        return "rebuilding"
    return "stale"


def _stream_answers(gateway: Gateway) -> dict[tuple[str, str], dict[str, float]]:
    """{(route, kind): {"stream": n, "rest": n}} from the gateway's stream_answers counter."""
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for family in gateway.metrics.stream_answers.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                row = counts.setdefault((labels["route"], labels["kind"]), {"stream": 0, "rest": 0})
                row[labels["source"]] = row.get(labels["source"], 0) + sample.value
    return counts


def streams_status(gateway: Gateway) -> list[dict[str, Any]]:
    """Per route and kind (gateway/streams.py's StreamHub.snapshot()): subscriptions by state, the
    age of their data, reconnects, book rebuilds and the share of streamed asks answered from memory."""
    hub = gateway.pool.streams
    if hub is None:
        return []
    answers = _stream_answers(gateway)
    rows = []
    for name, route_data in sorted(hub.snapshot().items()):
        for kind in STREAM_KINDS:
            mine = [s for s in route_data["streams"] if s["kind"] == kind]
            mode = route_data["modes"].get(kind)
            counted = answers.get((name, kind), {"stream": 0, "rest": 0})
            if not mine and mode != "on" and not any(counted.values()):  # nothing to show yet
                continue
            states = {state: 0 for state in STREAM_STATES}
            for stream in mine:
                stream["state"] = stream_state(stream)
                states[stream["state"]] += 1
            ages = sorted(s["age_ms"] for s in mine if s["state"] == "healthy" and s["age_ms"] is not None)
            from_memory, over_rest = int(counted.get("stream", 0)), int(counted.get("rest", 0))
            asked = from_memory + over_rest
            rows.append(
                {
                    "route": name,
                    "kind": kind,
                    "mode": mode,
                    "max_age_ms": route_data["max_age_ms"],
                    "unsupported": route_data["unsupported"] or route_data.get("refused", {}).get(kind),
                    "subscriptions": len(mine),
                    **states,
                    "age_ms_p50": percentile(ages, 0.50),
                    "age_ms_max": ages[-1] if ages else None,
                    "reconnects": sum(s["reconnects"] for s in mine),
                    "resyncs": sum(s["resyncs"] for s in mine),
                    "answers_from_memory": from_memory,
                    "answers_over_rest": over_rest,
                    "memory_share": round(from_memory / asked, 4) if asked else None,
                    "symbols": sorted(mine, key=lambda s: s["symbol"]),
                }
            )
    return rows


def gauges(gateway: Gateway) -> list:
    """Scrape-time gauges for /metrics: cached clients, markets age, route health, cooldowns, budgets."""
    stats = gateway.pool.stats()
    clients = gauge("cached_clients", "ccxt clients the pool holds, by kind", ("kind",))
    clients.add_metric(["private"], stats.get("private_clients", 0))
    clients.add_metric(["public"], stats.get("public_clients", 0))
    scopes = gauge("market_scopes", "Loaded market scopes (shared markets copies)")
    scopes.add_metric([], stats.get("market_scopes", 0))
    age = gauge("markets_age_seconds", "Seconds since the route's markets were loaded", ("route",))
    up = gauge("route_up", "1 when the route can serve, 0 when /healthz names it", ("route",))
    cooling = gauge("cooldown_remaining_seconds", "Seconds left in the route's cooldown", ("route",))
    budget = gauge("rate_budget_used_ratio", "Share of the route's rate budget in use", ("route",))
    views = route_views(gateway)
    problems = route_problems(gateway, views)
    now = time.time()
    for name, (_, _, markets_age, _) in views.items():
        if markets_age is not None:
            age.add_metric([name], markets_age)
        up.add_metric([name], 0 if name in problems else 1)
        health = gateway.board.routes.get(name)
        if health is not None:
            cooling.add_metric([name], health.cooldown_left(now))
            if health.budget_used is not None and health.budget_limit:
                budget.add_metric([name], health.budget_used / health.budget_limit)
    return [clients, scopes, age, up, cooling, budget]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 1)


# --- the HTML page ---------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def fmt_rate(value: float) -> str:
    return f"{value * 100:.1f}%"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def fmt_budget(route: dict) -> str:
    if route["budget_used"] is None:
        return DASH
    used = f"{route['budget_used']:g}"
    if route["budget_limit"]:
        return f"{used} / {route['budget_limit']:g} ({route['budget_ratio'] * 100:.0f}%)"
    return used


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header .meta{color:#aab3c5;font-size:13px}
main{padding:12px 20px 32px}h2{font-size:15px;margin:22px 0 6px}
.badge{padding:2px 10px;border-radius:10px;font-weight:600;font-size:13px}
.ok{background:#d9f2e3;color:#11663a}.bad{background:#fbe0e0;color:#9b1c1c}.idle{background:#e6e9ef;color:#5d6677}
.cards{display:flex;gap:10px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:20px}.card span{color:#5d6677;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde2ea;min-width:50%}
th,td{padding:4px 10px;border-bottom:1px solid #eef1f5;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:12px;color:#4a5364}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.err{color:#9b1c1c;max-width:60ch;overflow-wrap:anywhere}tr:nth-child(even) td{background:#fafbfc}
.empty{color:#7a8394;font-style:italic}.note{color:#5d6677;font-size:12px}
"""


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    problems = data["problems"]
    badge = (
        '<span class="badge ok">all routes serving</span>'
        if not problems
        else f'<span class="badge bad">{len(problems)} route{"s" if len(problems) > 1 else ""} cannot serve</span>'
    )
    error_rate = data["errors_total"] / data["calls_total"] if data["calls_total"] else 0.0
    clients = data["clients"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{'OK' if not problems else 'DEGRADED'} · fmz-ccxt-gateway status</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>fmz-ccxt-gateway {e(data['version'])}</h1>{badge}",
        f'<span class="meta">ccxt {e(data["ccxt_version"])} · up {fmt_age(data["uptime_s"])} · '
        f"updated {fmt_clock(data['now'])} UTC · refreshes every {REFRESH_SECONDS} s · "
        '<a href="?format=json" style="color:#aab3c5">JSON</a></span></header><main>',
        '<div class="cards">',
        _card("calls", str(data["calls_total"]), "calls-total"),
        _card("errors", str(data["errors_total"]), "errors-total"),
        _card("error rate", fmt_rate(error_rate), "error-rate"),
        _card("cached keys", str(clients.get("private_clients", 0)), "private-clients"),
        _card("public clients", str(clients.get("public_clients", 0)), "public-clients"),
        _card("market scopes", str(clients.get("market_scopes", 0)), "market-scopes"),
        "</div>",
    ]
    if problems:
        parts.append('<h2>Cannot serve</h2><ul id="problems">')
        parts += [f'<li data-route="{e(r)}"><b>{e(r)}</b>: {e(why)}</li>' for r, why in problems.items()]
        parts.append("</ul>")

    parts.append("<h2>Routes</h2>")
    rows = []
    for r in data["routes"]:
        state = '<span class="badge ok">ok</span>' if r["ok"] else '<span class="badge bad">down</span>'
        if r["ok"] and not r["used"]:
            state = '<span class="badge idle">idle</span>'
        markets = fmt_age(r["markets_age_s"]) if r["markets_error"] is None else "failed"
        last = r["last_upstream"] or DASH
        if r["last_upstream_age_s"] is not None:
            last += f" ({fmt_age(r['last_upstream_age_s'])} ago)"
        error = r["last_upstream_error"] or r["markets_error"] or ""
        if error and r["last_upstream_error_age_s"] is not None:
            error += f" ({fmt_age(r['last_upstream_error_age_s'])} ago)"
        cooldown = DASH if not r["cooldown_s"] else f"{r['cooldown_s']:.1f} s {r['cooldown_reason'] or ''}".strip()
        ccxt_id = (r["ccxt"] or "?") + (" (sandbox)" if r["sandbox"] else "")
        rows.append(
            f'<tr data-route="{e(r["route"])}"><td>{e(r["route"])}</td><td>{e(ccxt_id)}</td><td>{state}</td>'
            f'<td class="num" data-k="markets_age">{markets}</td><td data-k="last_upstream">{e(last)}</td>'
            f'<td class="err" data-k="last_upstream_error">{e(error)}</td><td data-k="cooldown">{e(cooldown)}</td>'
            f'<td class="num" data-k="budget">{e(fmt_budget(r))}</td>'
            f'<td class="num" data-k="rate_limit_waits">{r["rate_limit_waits"]}</td></tr>'
        )
    parts.append(
        _table(
            "routes",
            [
                "Route",
                "ccxt",
                "Health",
                "Markets age",
                "Last upstream",
                "Last upstream error",
                "Cooldown",
                "Budget",
                "Rate waits",
            ],
            rows,
            "no route has been used yet",
        )
    )

    parts.append(
        f'<h2>Calls <span class="note">(p50/p99 over the last {LATENCY_WINDOW} per route and method)</span></h2>'
    )
    rows = [
        f'<tr data-route="{e(c["route"])}" data-method="{e(c["method"])}"><td>{e(c["route"])}</td>'
        f"<td>{e(c['method'])}</td>"
        f'<td class="num" data-k="count">{c["count"]}</td><td class="num" data-k="errors">{c["errors"]}</td>'
        f'<td class="num" data-k="error_rate">{fmt_rate(c["error_rate"])}</td>'
        f'<td class="num" data-k="p50_ms">{fmt_ms(c["p50_ms"])}</td>'
        f'<td class="num" data-k="p99_ms">{fmt_ms(c["p99_ms"])}</td></tr>'
        for c in data["calls"]
    ]
    parts.append(
        _table("calls", ["Route", "Method", "Calls", "Errors", "Error rate", "p50 ms", "p99 ms"], rows, "no calls yet")
    )

    parts.append(
        '<h2>Streams <span class="note">(GetTicker/GetDepth from the exchange\'s websocket; '
        "share: streamed symbols' asks answered from memory)</span></h2>"
    )
    rows = [
        f'<tr data-route="{e(st["route"])}" data-kind="{e(st["kind"])}"><td>{e(st["route"])}</td>'
        f"<td>{e(st['kind'])}</td><td>{e(st['mode'] or DASH)}"
        f"{' (' + e(st['unsupported']) + ')' if st['unsupported'] else ''}</td>"
        f'<td class="num" data-k="subscriptions">{st["subscriptions"]}</td>'
        f'<td class="num" data-k="healthy">{st["healthy"]}</td>'
        f'<td class="num" data-k="stale">{st["stale"]}</td>'
        f'<td class="num" data-k="rebuilding">{st["rebuilding"]}</td>'
        f'<td class="num" data-k="age_ms_p50">{fmt_ms(st["age_ms_p50"])}</td>'
        f'<td class="num" data-k="age_ms_max">{fmt_ms(st["age_ms_max"])}</td>'
        f'<td class="num" data-k="reconnects">{st["reconnects"]}</td>'
        f'<td class="num" data-k="resyncs">{st["resyncs"]}</td>'
        f'<td class="num" data-k="memory_share">'
        f"{DASH if st['memory_share'] is None else fmt_rate(st['memory_share'])}</td>"
        f'<td class="num" data-k="answers">{st["answers_from_memory"]} / '
        f"{st['answers_from_memory'] + st['answers_over_rest']}</td></tr>"
        for st in data.get("streams", [])
    ]
    parts.append(
        _table(
            "streams",
            [
                "Route",
                "Kind",
                "Mode",
                "Subscriptions",
                "Healthy",
                "Stale",
                "Rebuilding",
                "Age p50 ms",
                "Age max ms",
                "Reconnects",
                "Book rebuilds",
                "From memory",
                "Memory / asked",
            ],
            rows,
            "no streams: GetTicker and GetDepth are answered over REST",
        )
    )

    keys = data["keys"]
    shown = (
        "" if len(keys) <= KEYS_SHOWN else f' <span class="note">(the {KEYS_SHOWN} most recent of {len(keys)})</span>'
    )
    parts.append(f"<h2>Cached keys{shown}</h2>")
    rows = [
        f'<tr data-key="{e(k["key_id"])}" data-route="{e(k["route"])}"><td><code>{e(k["key_id"])}</code></td>'
        f"<td>{e(k['route'])}</td><td>{e(k['method'])}</td><td>{fmt_clock(k['at'])} ({fmt_age(k['age_s'])} ago)</td>"
        f'<td class="{"" if k["outcome"] == "ok" else "err"}">{e(k["outcome"])}</td></tr>'
        for k in keys[:KEYS_SHOWN]
    ]
    parts.append(
        _table("keys", ["Key id", "Route", "Last method", "Last call (UTC)", "Outcome"], rows, "no cached keys")
    )

    parts.append(f'<h2>Last failures <span class="note">(newest first, at most {FAILURES_KEPT})</span></h2>')
    rows = [
        f"<tr><td>{fmt_clock(f['at'])}</td><td>{e(f['route'])}</td><td>{e(f['method'])}</td>"
        f'<td><code>{e(f["key_id"])}</code></td><td class="err">{e(f["error"])}</td></tr>'
        for f in data["failures"]
    ]
    parts.append(_table("failures", ["Time (UTC)", "Route", "Method", "Key id", "Error"], rows, "no failures"))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _card(label: str, value: str, ident: str) -> str:
    return f'<div class="card" id="{ident}"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def _table(ident: str, headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{ident}-empty">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
