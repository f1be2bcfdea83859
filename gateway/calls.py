"""What one FMZ call carries through the handlers, and the policies that wrap ccxt calls.

`Call` bundles the parsed envelope, the venue, the credentials and the trading state, and
resolves symbols. `read()` is the one place where reads are retried (network and rate-limit
errors only, bounded, with backoff) and where identical concurrent public reads are coalesced
into one upstream request. Orders never go through `read()`: a duplicate order loses money.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt.async_support as ccxt

from gateway import cache, metrics, ratelimit
from gateway.credentials import Credentials
from gateway.errors import RETRYABLE_READ_ERRORS, BadRequest, not_supported
from gateway.protocol import Envelope, str_param
from gateway.settings import ClientSettings
from gateway.state import OrderNonces, TradingState
from gateway.symbols import FmzSymbol, MarketIndex, SymbolRange, parse_symbol
from gateway.venues import Venue

log = logging.getLogger("gateway.calls")


class _LeaderCancelled(Exception):
    """The task running a shared call was cancelled; its followers must run the call again."""


class SingleFlight:
    """Concurrent calls with the same key share one upstream call and its outcome.

    The first caller runs the call in its own task (no extra task on the common, uncontended
    path); later callers wait on a future that the first one settles.
    """

    def __init__(self) -> None:
        self._running: dict[tuple, asyncio.Future] = {}

    async def run(self, key: tuple, factory: Callable[[], Awaitable[Any]]) -> Any:
        running = self._running.get(key)
        if running is not None:
            metrics.coalesced(key[0], str(key[1]) if len(key) > 1 else "-")
            try:
                return await asyncio.shield(running)
            except _LeaderCancelled:  # the caller that ran it went away: run it ourselves
                return await self.run(key, factory)
        shared = asyncio.get_running_loop().create_future()
        self._running[key] = shared
        try:
            result = await factory()
        except BaseException as exc:
            shared.set_exception(exc if isinstance(exc, Exception) else _LeaderCancelled())
            shared.exception()  # marks it retrieved: no "never retrieved" warning without waiters
            raise
        else:
            shared.set_result(result)
            return result
        finally:
            self._running.pop(key, None)

    def __len__(self) -> int:
        return len(self._running)


@dataclass
class Call:
    envelope: Envelope
    venue: Venue
    credentials: Credentials
    state: TradingState | None
    exchange: Any
    index: MarketIndex
    settings: ClientSettings
    single_flight: SingleFlight | None = None
    order_nonces: OrderNonces | None = None
    deadline: float = math.inf  # time.monotonic() by which the call must be answered
    public_cache: cache.PublicCache | None = None
    cache_ttls: dict[str, float] = field(default_factory=dict)  # the route's public_cache setting

    def __post_init__(self) -> None:
        ratelimit.DEADLINE.set(self.deadline)  # the rate limiter refuses waits past it

    def remaining(self) -> float:
        """Seconds left before the call's deadline."""
        return self.deadline - time.monotonic()

    @property
    def params(self) -> dict[str, Any]:
        return self.envelope.params

    @property
    def exchange_id(self) -> str:
        return self.exchange.id

    @property
    def default_contract(self) -> str | None:
        """What an unsuffixed symbol means: SetContractType's choice, else the route's defaultType."""
        if self.state is not None and self.state.contract_type is not None:
            return None if self.state.contract_type == "spot" else self.state.contract_type
        default_type = self.venue.options.get("defaultType")
        return "swap" if default_type == "swap" else None

    def require(self, ccxt_method: str, fmz_function: str) -> None:
        """NotSupported naming the FMZ function when the exchange lacks the ccxt method."""
        if not self.exchange.has.get(ccxt_method):
            raise not_supported(fmz_function, self.exchange_id)

    def has(self, ccxt_method: str) -> bool:
        return bool(self.exchange.has.get(ccxt_method))

    def symbol_param(self, required: bool = True) -> FmzSymbol | SymbolRange | None:
        text = self.params.get("symbol")
        if text is None or text == "":
            if required:
                raise BadRequest("param 'symbol' is required")
            return None
        return parse_symbol(text, self.default_contract)

    def market(self, required: bool = True) -> tuple[dict, str] | None:
        """(ccxt market, FMZ symbol) for `params.symbol`; ranges are refused here."""
        symbol = self.symbol_param(required)
        if symbol is None:
            return None
        if isinstance(symbol, SymbolRange):
            raise BadRequest(f"symbol {symbol} is a range; this function needs one instrument such as BTC_USDT")
        return self.market_of(symbol)

    def market_of(self, symbol: FmzSymbol) -> tuple[dict, str]:
        try:
            market = self.index.resolve(symbol)
        except BadRequest:
            if symbol.contract is not None or self.index.has_spot:
                raise
            market = self.index.resolve(FmzSymbol(symbol.base, symbol.quote, "swap"))
        return market, self.index.fmz_symbol(market)

    def order_id_and_market(self) -> tuple[str, dict, str]:
        """Split `"<FMZ symbol>,<exchange id>"`, or take a bare id with `params.symbol`."""
        raw_id = str_param(self.params, "id")
        fmz_part, comma, exchange_order_id = raw_id.partition(",")
        if comma and exchange_order_id:
            symbol = parse_symbol(fmz_part)  # ids we mint are explicit: no suffix means spot
            if isinstance(symbol, SymbolRange):
                raise BadRequest(f"order id {raw_id[:64]!r}: expected '<symbol>,<order id>'")
            market, fmz_symbol = self.market_of(symbol)
            return exchange_order_id, market, fmz_symbol
        resolved = self.market(required=False)
        if resolved is None:
            raise BadRequest(f"order id {raw_id[:64]!r} has no symbol: send '<symbol>,<order id>' or params.symbol")
        return raw_id, *resolved

    async def read_range(self, selector: SymbolRange, fetch: Callable[[dict], Awaitable[list]]) -> list:
        """A listing (open orders, positions) for a range such as USDT.swap, filtered to that range."""
        if not self.index.select(selector):  # the exchange lists no such contracts: nothing to ask
            return []
        result = await self.read(None, lambda: fetch(selector.ccxt_params))
        return [item for item in result if selector.matches(self.index.markets.get(item.get("symbol") or "", {}))]

    async def read(self, key: tuple | None, factory: Callable[[], Awaitable[Any]]) -> Any:
        """A ccxt read with bounded retries; `key` set = coalesce identical concurrent reads, and
        answer from the public micro-cache where the route's `public_cache` gives the read a lifetime."""
        if key is None or self.single_flight is None:
            return await self._with_retries(factory)
        shared_key = (self.venue.route, *key)
        ttl = cache.lifetime(self.cache_ttls, key) if self.public_cache is not None else 0.0
        if ttl > 0:
            cached = self.public_cache.get(shared_key)
            if cached is not None:
                metrics.cache_hit(self.venue.route, key[0])
                return cached
        result = await self.single_flight.run(shared_key, lambda: self._with_retries(factory))
        if ttl > 0:
            self.public_cache.put(shared_key, result, ttl)
        return result

    async def _with_retries(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        settings = self.settings
        for attempt in range(settings.read_retries + 1):
            try:
                return _parsed(await factory())
            except RETRYABLE_READ_ERRORS as exc:
                if attempt >= settings.read_retries or not retryable(exc):
                    raise
                wait = retry_wait(exc, attempt, settings.retry_backoff, self.exchange)
                if wait > self.remaining():
                    raise ccxt.RateLimitExceeded(
                        f"{self.exchange_id} asks to wait {wait:g} s, past this call's deadline: {exc}"
                    ) from None
                log.info(
                    "%s %s key=%s: retrying a read after %s in %.2f s (attempt %d)",
                    self.venue.route,
                    self.envelope.method[:64],
                    self.credentials.key_id,
                    type(exc).__name__,
                    wait,
                    attempt + 1,
                )
                metrics.retry(self.venue.route, self.envelope.method)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")


def _parsed(result: Any) -> Any:
    """ccxt hands a body it could not decode on as a string in `info`; that is no answer."""
    if isinstance(result, dict) and isinstance(result.get("info"), str):
        raise ccxt.BadResponse(f"the exchange answered with a body that is not JSON: {result['info'][:80]!r}")
    return result


RATE_LIMIT_WAIT = 1.0  # seconds before retrying a read the exchange refused with 429, doubled per attempt


def retryable(exc: BaseException) -> bool:
    """Not an IP ban (every further request lengthens it), nor our own budget's refusal (it already
    knows the wait is past the call's deadline)."""
    return not (ratelimit.is_ip_ban(exc) or getattr(exc, "gateway_refusal", False))


def retry_wait(exc: BaseException, attempt: int, backoff: float, exchange: Any) -> float:
    """Seconds before the next attempt: the exchange's Retry-After when it gave one, at least a
    second (doubling) after a rate-limit answer, else the configured backoff (doubling)."""
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):  # ccxt maps binance -1003 to the first
        return max(ratelimit.retry_after(exchange) or 0.0, RATE_LIMIT_WAIT * 2**attempt)
    return backoff * 2**attempt
