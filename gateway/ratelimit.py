"""Rate limits as exchanges apply them: one budget per IP, one per account, cooldowns, deadlines.

ccxt's own limiter is per client instance, so N per-key clients (and two routes of one exchange)
would multiply the request rate the exchange sees from this IP. Here:

- **Public requests** of every route and client of one exchange host (ccxt id, sandbox, api_base)
  draw from one budget: the exchange counts public calls per IP.
- **Signed requests** of one API key draw from that key's budget: exchanges count them per account.
- Costs are ccxt's own (`calculate_rate_limiter_cost`: the endpoint weights ccxt ships), paced at
  the class's `rateLimit` (ms per unit of cost), as ccxt's limiter would.
- A 429 (or `Retry-After`) cools the budget it concerns down, for the time asked or growing from
  1 s; a 418 or "IP banned" answer cools the exchange's IP budget down (60 s growing, or the time
  asked) and is never retried. A request that would wait past its FMZ call's deadline is refused
  at once with `RateLimitExceeded` naming the wait, instead of hanging.
- Exchanges whose signatures carry an incrementing nonce (ccxt signs them with
  `incrementing_nonce()`, or a bare `nonce()` without a time window) get one key's signed calls
  serialised: two in flight could reach the exchange out of order and one be refused.

A route whose `ccxt_config` sets `enableRateLimit: false` is not paced (cooldowns still apply).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import ccxt.async_support as ccxt

from gateway import metrics

DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("fmz_call_deadline", default=math.inf)
RATE_LIMIT_COOLDOWN = 1.0  # seconds after a 429 without Retry-After, doubled while they repeat
BAN_COOLDOWN = 60.0  # seconds after a 418 without Retry-After, doubled while they repeat
MAX_COOLDOWN = 3600.0
UPSTREAM_MARGIN_MS = 50.0  # a request's timeout ends this long before its call's deadline
MIN_TIMEOUT_MS = 100.0
STREAK_RESET = 300.0  # seconds without a refusal after which cooldowns start small again
_IP_BAN = re.compile(r"(?i)^\S+ 418\b|\bip (?:has been |is )?banned|\bbanned until\b")


def is_ip_ban(exc: BaseException) -> bool:
    """HTTP 418, or an exchange saying the IP is banned: every further request lengthens the ban."""
    return isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded) and bool(_IP_BAN.search(str(exc)))


@dataclass
class Budget:
    """A leaky bucket on a virtual clock: a reservation is a time slot, so a wait is known up front."""

    name: str
    ms_per_cost: float  # ccxt rateLimit; 0 = not paced
    next_free: float = 0.0  # time.monotonic() when the next unit of cost may go
    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    streak: int = 0  # refusals in a row (cooldowns grow with it)
    last_refusal: float = 0.0
    requests: int = 0
    waited: float = 0.0  # seconds spent waiting in total
    cooldowns: int = 0
    refused: int = 0  # requests answered at once because the wait would outlast their deadline

    def reserve(self, cost: float, deadline: float, now: float | None = None) -> float:
        """Seconds to wait before sending; raises RateLimitExceeded when that is past `deadline`."""
        now = time.monotonic() if now is None else now
        start = max(now, self.next_free, self.cooldown_until)
        wait = start - now
        if now + wait > deadline:
            why = f"cooling down: {self.cooldown_reason}" if self.cooldown_until > now else "its request budget"
            raise self.refusal(f"a request would wait {wait:.2f} s ({why})")
        self.next_free = start + cost * self.ms_per_cost / 1000
        self.requests += 1
        self.waited += wait
        return wait

    def refusal(self, what: str) -> ccxt.RateLimitExceeded:
        """The answer for a request that is not sent because its call's deadline comes first."""
        self.refused += 1
        refusal = ccxt.RateLimitExceeded(f"{self.name}: {what}, past this call's deadline")
        refusal.gateway_refusal = True  # type: ignore[attr-defined]  # never retried (gateway/calls.py)
        return refusal

    def cool_down(self, seconds: float | None, base: float, reason: str, now: float | None = None) -> float:
        """Stop sending for the time the exchange asked, else `base` doubled per refusal in a row."""
        now = time.monotonic() if now is None else now
        if now - self.last_refusal > STREAK_RESET:
            self.streak = 0
        self.streak += 1
        self.last_refusal = now
        pause = seconds if seconds and seconds > 0 else base * 2 ** (self.streak - 1)
        pause = min(pause, MAX_COOLDOWN)
        self.cooldown_until = max(self.cooldown_until, now + pause)
        self.cooldown_reason = reason
        self.cooldowns += 1
        return pause

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        return {
            "budget": self.name,
            "requests": self.requests,
            "waited_s": round(self.waited, 3),
            "cooldowns": self.cooldowns,
            "refused": self.refused,
            "cooling_down_s": round(max(0.0, self.cooldown_until - now), 3),
            "cooldown_reason": self.cooldown_reason if self.cooldown_until > now else "",
        }


@dataclass
class RateLimits:
    """Every budget of the process: per exchange host (public, per IP) and per API key (signed)."""

    public: dict[tuple, Budget] = field(default_factory=dict)
    private: dict[tuple, Budget] = field(default_factory=dict)
    locks: dict[tuple, asyncio.Lock] = field(default_factory=dict)

    def public_budget(self, host: tuple, ms_per_cost: float) -> Budget:
        budget = self.public.get(host)
        if budget is None:
            budget = self.public[host] = Budget(f"{host[0]} public (per IP)", ms_per_cost)
        return budget

    def private_budget(self, host: tuple, key_id: str, ms_per_cost: float) -> Budget:
        budget = self.private.get((host, key_id))
        if budget is None:
            budget = self.private[(host, key_id)] = Budget(f"{host[0]} key {key_id}", ms_per_cost)
        return budget

    def key_lock(self, host: tuple, key_id: str) -> asyncio.Lock:
        lock = self.locks.get((host, key_id))
        if lock is None:
            lock = self.locks[(host, key_id)] = asyncio.Lock()
        return lock

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [b.snapshot(now) for b in (*self.public.values(), *self.private.values())]


def install(exchange: Any, limits: RateLimits, host: tuple, route: str, key_id: str | None = None) -> None:
    """Route every request of this ccxt client through the shared budgets (replaces ccxt's own limiter).

    `host` identifies the exchange's IP budget (ccxt id, sandbox, api_base); `key_id` the account
    of a per-key client (None for the keyless public client)."""
    paced = bool(exchange.enableRateLimit)
    ms_per_cost = float(exchange.rateLimit or 0) if paced else 0.0
    exchange.enableRateLimit = False  # ccxt's per-instance limiter would pace each client on its own
    public = limits.public_budget(host, ms_per_cost)
    private = limits.private_budget(host, key_id, ms_per_cost) if key_id else None
    lock = limits.key_lock(host, key_id) if key_id and needs_serial_nonce(type(exchange)) else None
    original = exchange.fetch2
    base_timeout = float(exchange.timeout)

    @functools.wraps(original)
    async def fetch2(path: Any, api: Any = "public", method: str = "GET", params: Any = None, config: Any = None):
        params = {} if params is None else params
        config = {} if config is None else config
        budget = private if private is not None and is_signed(api) else public
        try:
            cost = float(exchange.calculate_rate_limiter_cost(api, method, path, params, config) or 1)
        except Exception:  # a cost ccxt cannot compute for this call: count it as one unit
            cost = 1.0
        banned = public is not budget and public.cooldown_until > time.monotonic()  # a ban stops every request
        wait = max(public.reserve(0, DEADLINE.get()) if banned else 0.0, budget.reserve(cost, DEADLINE.get()))
        metrics.budget(route, round(max(0.0, budget.next_free - time.monotonic()), 3), None)
        if wait > 0:
            metrics.rate_limit_wait(route, wait)
            await asyncio.sleep(wait)
        if lock is None or budget is not private:
            return await send(budget, path, api, method, params, config)
        async with lock:
            if time.monotonic() >= DEADLINE.get():  # the call was answered meanwhile: send nothing
                raise budget.refusal("waited for the key's previous signed request")
            return await send(budget, path, api, method, params, config)

    async def send(budget: Budget, *request: Any) -> Any:
        exchange.timeout = bounded_timeout(base_timeout, DEADLINE.get())  # read by ccxt before its first await
        try:
            return await original(*request)
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as exc:  # the exchange's refusal: cool down
            asked = retry_after(exchange)
            if is_ip_ban(exc):
                reason = f"IP banned (HTTP 418): {str(exc)[:120]}"
                pause = public.cool_down(asked, BAN_COOLDOWN, reason)
            else:
                reason = f"rate limited (HTTP 429): {str(exc)[:120]}"
                pause = budget.cool_down(asked, RATE_LIMIT_COOLDOWN, reason)
            metrics.cooldown(route, pause, reason)
            raise

    exchange.fetch2 = fetch2


def bounded_timeout(base_ms: float, deadline: float) -> float:
    """ccxt's per-request timeout (ms), cut to what is left of the call's deadline: a request that
    hangs fails in time for the call to answer, never after it."""
    if math.isinf(deadline):
        return base_ms
    left_ms = (deadline - time.monotonic()) * 1000 - UPSTREAM_MARGIN_MS
    return max(MIN_TIMEOUT_MS, min(base_ms, left_ms))


def is_signed(api: Any) -> bool:
    """ccxt's api section of a request: signed unless it names itself public (binance `sapi` is signed)."""
    names = api if isinstance(api, list | tuple) else [api]
    return not any("public" in str(name).lower() for name in names)


def retry_after(exchange: Any) -> float | None:
    """Seconds from the last answer's Retry-After header, if it gave one."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


@functools.cache
def needs_serial_nonce(exchange_class: type) -> bool:
    """Whether the class signs with a nonce that must only grow (read from ccxt's own sign())."""
    try:
        source = inspect.getsource(exchange_class.sign)
    except (OSError, TypeError):
        return False
    if "incrementing_nonce" in source:
        return True
    windowed = any(word in source.lower() for word in ("recvwindow", "recv_window", "timestamp", "window"))
    return "self.nonce()" in source and not windowed
