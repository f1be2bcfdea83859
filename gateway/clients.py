"""The client pool: shared markets per market scope, one public client per venue, per-key clients.

- Markets are loaded once per market scope by a keyless client (loading with keys would also
  call private currency endpoints), concurrent loads share one request, and every client of
  the scope gets them **by reference** (~15 us, no copy).
- Loading markets builds more than `markets`: ccxt classes also fill options (hyperliquid's
  `cachedCurrenciesById` and `spotCurrencyMapping`, binance's margin pair lists, delta's ids by
  number, ...). The master is watched while it loads (`LoadWatch`): every attribute it rebinds
  or changes and every `options` key it adds, changes or drops is the scope's `MarketState`,
  and each client gets exactly those by reference, so it is in the state of one that loaded the
  markets itself, for any ccxt class, without a list of exchanges.
- `markets_file` is either a ccxt markets dict, or a snapshot written by
  `ClientPool.write_markets_file` (markets, currencies and the market state of the options).
  Either way ccxt's own path rebuilds what it can (`set_markets`, then the class's
  `load_markets`, which sends nothing once markets are set), and the snapshot restores the rest.
- Public methods use one keyless client per venue, so all dockers share its connection pool
  and its rate limiter (exchanges limit public calls per IP, not per key).
- Private methods use a per-key client from a TTL+LRU cache keyed by (venue, sha256 of the
  credentials). An evicted client is closed once its last in-flight call has finished.
- All clients share one aiohttp session and one SSL context (a new context costs ~18 ms and
  ~0.7 MB per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import certifi
from cachetools import TTLCache

from gateway import ratelimit
from gateway.credentials import Credentials, require_credentials
from gateway.errors import MarketsUnavailable, error_message
from gateway.settings import ClientSettings
from gateway.symbols import MarketIndex
from gateway.upstream import instrument
from gateway.venues import SNAPSHOT_FORMAT, MarketsFileError, Venue, build_exchange, read_markets_file

log = logging.getLogger("gateway.clients")
# Describe-time tables ccxt never changes after construction. Every client of a venue builds an
# identical copy (binance's `api` alone is ~1,000 dicts); per-key clients drop theirs for the
# venue's, which cuts their memory and the objects every full garbage collection walks.
SHARED_TABLES = ("api", "exceptions", "httpExceptions", "features", "fees", "timeframes", "commonCurrencies")
SPARES_PER_VENUE = 2
SPARE_CREDENTIAL_FIELDS = frozenset({"apiKey", "secret", "password", "uid"})
CONNECTION_LIMIT = 512
# What ccxt's base class calls the markets a client holds (its `set_markets_from_exchange` list).
MARKET_ATTRIBUTES = frozenset(
    {"markets", "markets_by_id", "symbols", "ids", "codes", "currencies", "currencies_by_id"}
    | {"baseCurrencies", "quoteCurrencies"}
)
# The part of them `set_markets(markets, currencies)` always rebuilds (the base and quote lists
# only when no currencies are given).
SET_BY_SET_MARKETS = MARKET_ATTRIBUTES - {"baseCurrencies", "quoteCurrencies"}
# Attributes of the base ccxt client that any request or load changes but that are no market state:
# transport, rate limiter, the last request's bookkeeping, the loading task itself.
TRANSPORT_ATTRIBUTES = frozenset(
    {
        "options",  # carried key by key
        "throttler",
        "markets_loading",
        "reloading_markets",
        "lastRestRequestTimestamp",
        "last_request_body",
        "last_request_headers",
        "last_request_url",
        "last_http_response",
        "last_json_response",
        "last_response_headers",
        "session",
        "tcp_connector",
        "ssl_context",
        "asyncio_loop",
        "own_session",
        "closed_by_user",
        "socks_proxy_sessions",
        "aiohttp_socks_connector",
    }
)
RELOAD_RETRY_AFTER = 60.0  # seconds before a failed markets reload is tried again
FIRST_LOAD_RETRY_AFTER = 5.0  # seconds during which a failed first load answers without retrying


@dataclass(frozen=True)
class MarketState:
    """What loading markets builds on a ccxt client: attribute names and `options` keys."""

    attributes: frozenset[str] = MARKET_ATTRIBUTES
    option_keys: frozenset[str] = frozenset()

    def __or__(self, other: MarketState) -> MarketState:
        return MarketState(self.attributes | other.attributes, self.option_keys | other.option_keys)

    def share(self, master: Any, client: Any) -> None:
        """Give `client` the master's market state by reference (nothing is copied)."""
        for name in self.attributes:
            if hasattr(master, name):
                setattr(client, name, getattr(master, name))
        for key in self.option_keys:
            if key in master.options:
                client.options[key] = master.options[key]
            else:  # the load dropped it (a cache of the loading itself)
                client.options.pop(key, None)


class LoadWatch:
    """A client's state before it loads markets; `changes()` afterwards names what the load built.

    Attributes are compared by value where they can be copied (a load may fill a dict in place),
    markets by identity (they are always rebuilt, and copying them would cost megabytes)."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.attributes = {
            name: _before(value, deep=name not in MARKET_ATTRIBUTES)
            for name, value in vars(exchange).items()
            if name not in TRANSPORT_ATTRIBUTES
        }
        self.options = {key: _before(value) for key, value in exchange.options.items()}

    def changes(self) -> MarketState:
        after = {name: value for name, value in vars(self.exchange).items() if name not in TRANSPORT_ATTRIBUTES}
        attributes = {name for name, value in after.items() if _changed(self.attributes.get(name), value)}
        attributes |= {name for name in self.attributes if name not in after}
        options = self.exchange.options
        keys = {key for key, value in options.items() if _changed(self.options.get(key), value)}
        keys |= {key for key in self.options if key not in options}
        return MarketState(frozenset(attributes - {n for n in attributes if n.startswith("_gateway")}), frozenset(keys))


_UNCOPYABLE = object()


def _before(value: Any, deep: bool = True) -> tuple[Any, Any]:
    """(the value itself, a deep copy to compare with later, or _UNCOPYABLE)."""
    if not deep:
        return value, _UNCOPYABLE
    try:
        return value, copy.deepcopy(value)
    except Exception:  # locks, sessions, tasks: compared by identity only
        return value, _UNCOPYABLE


def _changed(before: tuple[Any, Any] | None, value: Any) -> bool:
    if before is None:
        return True
    original, snapshot = before
    if value is not original:
        return True
    if snapshot is _UNCOPYABLE:
        return False
    try:
        return bool(snapshot != value)
    except Exception:  # values that cannot be compared: assume the load touched them
        return True


@dataclass
class MarketScope:
    """One loaded markets dict (and its index) shared by every client of a market scope."""

    master: Any  # keyless ccxt client that owns the markets
    ttl: float
    index: MarketIndex | None = None
    state: MarketState = field(default_factory=MarketState)  # what its loads built, handed to every client
    version: int = 0
    loaded_at: float = 0.0
    _loading: asyncio.Task | None = None
    _first_load_failure: tuple[float, str] | None = None  # (when, message) of the last failed first load

    async def ready(self) -> MarketIndex:
        """The current markets; the first call loads them, an expired copy reloads in the background."""
        if self.index is None:
            await self._load_once()
        elif time.monotonic() - self.loaded_at > self.ttl and self._loading is None:
            self._loading = asyncio.create_task(self._load(reload=True))
            self._loading.add_done_callback(_log_reload_failure)
        assert self.index is not None
        return self.index

    async def _load_once(self) -> None:
        failed = self._first_load_failure
        if self._loading is None and failed is not None and time.monotonic() - failed[0] < FIRST_LOAD_RETRY_AFTER:
            # the exchange just failed to give its markets: answer at once, do not hammer it per call
            raise MarketsUnavailable(f"markets of {self.master.id} are not available yet: {failed[1]}")
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(reload=False))
        await asyncio.shield(self._loading)

    async def _load(self, reload: bool) -> None:
        ratelimit.DEADLINE.set(math.inf)  # shared by every caller: not bound to the call that started it
        started = time.monotonic()
        try:
            watch = LoadWatch(self.master)
            markets_file = getattr(self.master, "_gateway_markets_file", None)
            if markets_file:
                await _load_markets_file(self.master, markets_file, watch)
            else:
                await self.master.load_markets(reload)
            self.state = self.state | watch.changes()
            self.index = MarketIndex(self.master.markets, self.master.id)
            self.version += 1
            self.loaded_at = time.monotonic()
            if not reload:
                # Markets are large and live as long as the process: in the permanent generation
                # they no longer lengthen every full garbage collection (seen: 60 ms pauses).
                gc.freeze()
        except Exception as exc:
            if self.index is not None:  # keep serving the old markets; try again in a minute, not per request
                self.loaded_at = started - self.ttl + RELOAD_RETRY_AFTER
            else:
                self._first_load_failure = (time.monotonic(), error_message(exc))
            raise
        finally:
            self._loading = None


def _log_reload_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("markets reload failed, keeping the previous markets: %s", type(task.exception()).__name__)


async def _load_markets_file(master: Any, path: str, watch: LoadWatch) -> None:
    """Markets from a file, in the state a load from the exchange leaves; nothing is sent.

    The class's own `load_markets(reload=True)` runs with the file standing in for the
    exchange's answers (its `fetch_markets` and `fetch_currencies` return the file's), so ccxt
    rebuilds everything it derives from markets and currencies (`set_markets`, a class's own
    indexes). A snapshot then restores the options no rebuild can make (what `fetch_markets`
    kept from the raw answers). `watch`: the master before this load (what the load rebuilt wins
    over the snapshot)."""
    try:
        parsed = read_markets_file(path, master.id)
    except MarketsFileError as exc:
        raise ValueError(f"markets_file {path}: {exc}") from None
    markets, snapshot = parsed.markets, parsed.snapshot
    currencies = (snapshot.get("currencies") or None) if snapshot else None

    async def file_markets(params: dict | None = None) -> list:
        return markets

    async def file_currencies(params: dict | None = None) -> dict | None:
        return currencies

    master.fetch_markets, master.fetch_currencies = file_markets, file_currencies
    try:
        await master.load_markets(reload=True)
    finally:
        del master.fetch_markets, master.fetch_currencies
    if snapshot:
        rebuilt = watch.changes()
        for key, value in snapshot.get("options", {}).items():
            if key not in rebuilt.option_keys:
                master.options[key] = value
        for name, value in snapshot.get("attributes", {}).items():
            if name not in rebuilt.attributes:
                setattr(master, name, value)


def markets_snapshot(master: Any, state: MarketState) -> dict:
    """A markets_file document: the markets, the currencies and the market state of the options.

    Values that do not survive JSON unchanged (say a dict keyed by numbers) are left out; the
    class's own `load_markets` rebuilds such indexes when the file is read."""
    options = {key: master.options[key] for key in sorted(state.option_keys) if key in master.options}
    extra = {name: getattr(master, name) for name in sorted(state.attributes - SET_BY_SET_MARKETS)}
    return {
        "format": SNAPSHOT_FORMAT,
        "exchange": master.id,
        "markets": master.markets,
        "currencies": master.currencies,
        "options": {key: value for key, value in options.items() if _survives_json(value)},
        "attributes": {name: value for name, value in extra.items() if _survives_json(value)},
    }


def _survives_json(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


@dataclass
class ClientHandle:
    exchange: Any
    scope: MarketScope
    markets_version: int = 0
    in_flight: int = 0
    retired: bool = False
    closing: bool = False

    def share_markets(self) -> None:
        if self.markets_version != self.scope.version:
            self.scope.state.share(self.scope.master, self.exchange)
            self.markets_version = self.scope.version


class _ClientCache(TTLCache):
    """TTL+LRU cache that reports every evicted value (expired or least recently used)."""

    def __init__(self, maxsize: int, ttl: float, on_evict: Any) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self._on_evict = on_evict

    def popitem(self) -> tuple:
        key, value = super().popitem()
        self._on_evict(value)
        return key, value

    def expire(self, time: float | None = None) -> list:
        expired = super().expire(time)
        for _, value in expired:
            self._on_evict(value)
        return expired


@dataclass
class ClientPool:
    settings: ClientSettings
    scopes: dict[tuple, MarketScope] = field(default_factory=dict)
    public_clients: dict[str, ClientHandle] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    _ssl_context: ssl.SSLContext | None = None
    _closing_tasks: set = field(default_factory=set)
    _sweeper: asyncio.Task | None = None
    _spares: dict[str, list] = field(default_factory=dict)  # route -> prebuilt keyless clients
    _closed: bool = False
    limits: ratelimit.RateLimits = field(default_factory=ratelimit.RateLimits)
    streams: Any = None  # gateway/streams.py's StreamHub (websocket clients), made on first use

    def __post_init__(self) -> None:
        self.private_clients = _ClientCache(self.settings.max_clients, self.settings.idle_ttl, self._retire)

    # --- shared transport --------------------------------------------------------------
    def _shared_config(self) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._ssl_context = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context, limit=CONNECTION_LIMIT, enable_cleanup_closed=True, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return {"session": self._session, "ssl_context": self._ssl_context, "timeout": self.settings.timeout_ms}

    def _build(self, venue: Venue, credentials: dict[str, str]) -> Any:
        extra = self._shared_config()
        if "timeout" in venue.ccxt_config:
            extra.pop("timeout")
        exchange = build_exchange(venue, credentials, extra)
        exchange.timeout_on_exit = 0  # close() would otherwise sleep 250 ms
        instrument(exchange, venue.route)
        return exchange

    def _limit(self, exchange: Any, venue: Venue, key_id: str | None = None) -> Any:
        """Pace the client's requests on the exchange's shared budgets (gateway/ratelimit.py)."""
        ratelimit.install(exchange, self.limits, (venue.ccxt_id, venue.sandbox, venue.api_base), venue.route, key_id)
        return exchange

    # --- markets -------------------------------------------------------------------------
    def scope_for(self, venue: Venue) -> MarketScope:
        scope = self.scopes.get(venue.market_scope)
        if scope is None:
            master = self._limit(self._build(venue, {}), venue)
            master._gateway_markets_file = venue.markets_file
            scope = MarketScope(master=master, ttl=self.settings.markets_ttl)
            self.scopes[venue.market_scope] = scope
        return scope

    async def markets(self, venue: Venue) -> MarketIndex:
        return await self.scope_for(venue).ready()

    async def write_markets_file(self, venue: Venue, path: str) -> int:
        """Load the venue's markets and write them as a markets_file snapshot; returns the market count."""
        scope = self.scope_for(venue)
        await scope.ready()
        document = markets_snapshot(scope.master, scope.state)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
        return len(document["markets"])

    # --- clients ---------------------------------------------------------------------------
    async def public(self, venue: Venue) -> tuple[Any, MarketIndex]:
        """The venue's shared keyless client, markets attached."""
        scope = self.scope_for(venue)
        index = await scope.ready()
        handle = self._public_handle(venue, scope)
        handle.share_markets()
        return handle.exchange, index

    def _public_handle(self, venue: Venue, scope: MarketScope) -> ClientHandle:
        handle = self.public_clients.get(venue.route)
        if handle is None:
            handle = ClientHandle(self._limit(self._build(venue, {}), venue), scope)
            handle.exchange._gateway_pool = self  # how gateway/streams.py finds the venue's stream client
            self.public_clients[venue.route] = handle
        return handle

    @contextlib.asynccontextmanager
    async def private(self, venue: Venue, credentials: Credentials) -> AsyncIterator[tuple[Any, MarketIndex]]:
        """A per-key client for the duration of one call; never closed while the call runs.

        Credentials that lack a field the exchange class requires are refused first: before the
        markets load, so nothing at all is sent."""
        require_credentials(credentials, venue.ccxt_id)
        scope = self.scope_for(venue)
        index = await scope.ready()
        key = (venue.route, credentials.cache_key)
        handle = self.private_clients.get(key)
        new_client = handle is None or handle.retired
        if new_client:
            exchange = self._keyed_client(venue, scope, credentials.fields)
            handle = ClientHandle(self._limit(exchange, venue, credentials.key_id), scope)
        self.private_clients[key] = handle  # (re)insert: refreshes the idle TTL and LRU order
        self._ensure_sweeper()
        handle.share_markets()
        handle.in_flight += 1
        try:
            yield handle.exchange, index
        finally:
            handle.in_flight -= 1
            if handle.retired and handle.in_flight == 0:
                self._close_later(handle)
            if new_client:  # after this call's reply: the next new key finds a client ready
                asyncio.get_running_loop().call_soon(self._refill_spares, venue, scope)

    def _keyed_client(self, venue: Venue, scope: MarketScope, fields: dict[str, str]) -> Any:
        """A client for new credentials: a prebuilt spare given the keys (~3 ms saved), else built now."""
        spares = self._spares.get(venue.route)
        if spares and set(fields) <= SPARE_CREDENTIAL_FIELDS:
            exchange = spares.pop()
            for name, value in fields.items():
                setattr(exchange, name, value)
            return exchange
        return self._unkeyed_client(venue, scope, fields)

    def _unkeyed_client(self, venue: Venue, scope: MarketScope, fields: dict[str, str]) -> Any:
        exchange = self._build(venue, fields)
        prototype = self._public_handle(venue, scope).exchange
        for table in SHARED_TABLES:
            if hasattr(prototype, table):
                setattr(exchange, table, getattr(prototype, table))
        return exchange

    def _refill_spares(self, venue: Venue, scope: MarketScope) -> None:
        """Build one spare client (constructing a ccxt client is ~3 ms of CPU) when a new key took one.

        Only for exchange classes whose constructor does nothing with credentials (the base one),
        so that keys set on a spare afterwards are exactly keys given to the constructor."""
        spares = self._spares.setdefault(venue.route, [])
        prototype = self._public_handle(venue, scope).exchange
        if len(spares) >= SPARES_PER_VENUE or "__init__" in type(prototype).__dict__ or self._closed:
            return
        spares.append(self._unkeyed_client(venue, scope, {}))

    def held_routes(self) -> set[str]:
        """Every route the pool holds a client for: public, spare or per-key."""
        return {*self.public_clients, *self._spares, *(route for route, _ in list(self.private_clients.keys()))}

    def drop_spares(self, route: str, stale: Any) -> list:
        """Take out the route's spare clients for which `stale(exchange)` holds (never in flight:
        a spare is taken out before use); the caller closes them."""
        spares = self._spares.get(route, [])
        dropped = [exchange for exchange in spares if stale(exchange)]
        spares[:] = [exchange for exchange in spares if exchange not in dropped]
        return dropped

    def retire_private(self, key: tuple) -> None:
        """Drop a per-key client from the cache; it is closed once its last in-flight call is done."""
        handle = self.private_clients.pop(key, None)
        if handle is not None:
            self._retire(handle)

    def _retire(self, handle: ClientHandle) -> None:
        handle.retired = True
        if handle.in_flight == 0:
            self._close_later(handle)

    def _close_later(self, handle: ClientHandle) -> None:
        if handle.closing:
            return
        handle.closing = True
        task = asyncio.get_running_loop().create_task(_close_quietly(handle.exchange))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        interval = max(1.0, min(60.0, self.settings.idle_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            self.private_clients.expire()

    def stats(self) -> dict[str, int]:
        return {
            "private_clients": len(self.private_clients),
            "public_clients": len(self.public_clients),
            "market_scopes": len(self.scopes),
        }

    async def close(self) -> None:
        if self.streams is not None:  # websocket clients first: their tasks use the clients below
            await self.streams.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for scope in self.scopes.values():  # a load still running (say, cut off by a timeout) stops first
            if scope._loading is not None:
                scope._loading.cancel()
        exchanges = [h.exchange for h in self.private_clients.values()]
        exchanges += [h.exchange for h in self.public_clients.values()]
        exchanges += [s.master for s in self.scopes.values()]
        exchanges += [spare for spares in self._spares.values() for spare in spares]
        self._closed = True
        self.private_clients._on_evict = lambda handle: None  # closed just below, once
        self.private_clients.clear()
        await asyncio.gather(*(_close_quietly(e) for e in exchanges), *self._closing_tasks)
        if self._session is not None:
            await self._session.close()


async def _close_quietly(exchange: Any) -> None:
    try:
        await exchange.close()
    except Exception as exc:  # closing must never take the gateway down
        log.debug("closing %s failed: %s", getattr(exchange, "id", "?"), type(exc).__name__)
