"""Route name -> Venue, and the construction of ccxt clients for a venue.

A route is a key under `exchanges:` in the config or, when `allow_any_ccxt_exchange` is on,
any ccxt exchange id. Construction applies, in this order: options and ccxt_config, the
sandbox switch (which must really switch: an exchange without a testnet refuses the route,
it never falls back to live), then the `api_base` rewrite of every `urls['api']` entry.

Every configured route is checked when the registry is built (`check_venue`: a ccxt id, a
client that can be built, a sandbox that really switches, a readable `markets_file`). A route
that fails is *refused*: it is not listed among the configured routes, and a call to it is
answered with the reason (never with another exchange of the same name, never live instead of
a sandbox). `fmz-gateway serve` stops on a refused route unless `server.skip_bad_routes`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async

from gateway.errors import GatewayError, SandboxUnavailable, UnknownRoute
from gateway.settings import Settings, Venue

CCXT_EXCHANGES = frozenset(ccxt_async.exchanges)
_SCHEME_HOST = re.compile(r"^[a-z]+://[^/]+", re.IGNORECASE)


class RouteRefused(GatewayError):
    """A configured route that failed its check; its kind is that of the failure (e.g. NotSupported)."""


class VenueRegistry:
    """Resolves the URL path segment to a Venue, case-insensitively.

    `configured`: the config's routes that passed `check_venue`; `refused`: route -> the error
    that refused it (a call to a refused route is answered with it)."""

    def __init__(self, settings: Settings) -> None:
        self.allow_any = settings.allow_any_ccxt_exchange
        self.configured: dict[str, Venue] = {}
        self.refused: dict[str, GatewayError] = {}
        for route, venue in settings.exchanges.items():
            try:
                check_venue(venue)
            except GatewayError as exc:
                self.refused[route] = exc
            else:
                self.configured[route] = venue
        self._cache: dict[str, Venue] = dict(self.configured)

    def get(self, route: str) -> Venue:
        name = route.lower()
        venue = self._cache.get(name)
        if venue is not None:
            return venue
        refusal = self.refused.get(name)
        if refusal is not None:  # never served as the plain ccxt exchange of the same name instead
            raise RouteRefused(f"{refusal} (the route was refused when the config was loaded)", kind=refusal.kind)
        if self.allow_any and name in CCXT_EXCHANGES:
            venue = Venue(route=name, ccxt_id=name)
            self._cache[name] = venue
            return venue
        hint = "a route from the config" if not self.allow_any else "a ccxt exchange id or a configured route"
        raise UnknownRoute(f"unknown exchange {route[:64]!r}: the URL path must name {hint}")

    def peek(self, route: str) -> Venue | None:
        """The venue a call to `route` would get, or None (unknown or refused); caches nothing."""
        name = route.lower()
        venue = self._cache.get(name)  # the configured routes and every ccxt id resolved so far
        if venue is None and name not in self.refused and self.allow_any and name in CCXT_EXCHANGES:
            venue = Venue(route=name, ccxt_id=name)
        return venue

    def resolved(self) -> dict[str, Venue]:
        """Every route resolved so far (configured ones and ccxt ids called through allow_any)."""
        return dict(self._cache)

    def routes(self) -> list[str]:
        return sorted(self.configured)


def check_venue(venue: Venue) -> None:
    """Raise at startup what would otherwise fail on the first call: an unknown ccxt id, a client
    that cannot be built from options/ccxt_config, a sandbox that does not switch, a markets_file
    that is missing or holds no ccxt markets. Sends nothing anywhere."""
    if venue.ccxt_id not in CCXT_EXCHANGES:
        hint = _close_ids(venue.ccxt_id)
        raise UnknownRoute(
            f"route {venue.route!r}: {venue.ccxt_id!r} is not a ccxt exchange id"
            + (f" (did you mean {hint}?)" if hint else " (`fmz-gateway exchanges` lists them)")
        )
    try:
        exchange = build_exchange(venue, {})
    except GatewayError:
        raise
    except Exception as exc:  # a ccxt constructor refusing options/ccxt_config
        raise RouteRefused(
            f"route {venue.route!r}: the {venue.ccxt_id} client cannot be built from its options/ccxt_config: "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            kind="BadRequest",
        ) from None
    if venue.markets_file:
        check_markets_file(venue, exchange.id)


SNAPSHOT_FORMAT = "fmz-ccxt-gateway markets snapshot"


class MarketsFileError(ValueError):
    """A markets_file that holds no ccxt markets for the exchange (the reason, without the path)."""


@dataclass
class MarketsFile:
    markets: list[dict]
    snapshot: dict | None  # a gateway snapshot's whole document (currencies, options, attributes)


def read_markets_file(path: str, exchange_id: str) -> MarketsFile:
    """The markets of a markets_file: a ccxt markets dict (symbol -> market), a list of markets, or
    a gateway snapshot (`{"format": ..., "exchange": ..., "markets": {...}}`) of this exchange."""
    if not os.path.isfile(path):
        raise MarketsFileError("no such file" if not os.path.exists(path) else "not a file")
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise MarketsFileError(f"cannot be read: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        raise MarketsFileError(f"not valid JSON: {exc}") from None
    snapshot = isinstance(document, dict) and "format" in document and isinstance(document.get("markets"), dict)
    if snapshot and document.get("exchange") not in (None, exchange_id):
        raise MarketsFileError(f"a snapshot of {document.get('exchange')!r}, not of {exchange_id!r}")
    markets = document["markets"] if snapshot else document
    if isinstance(markets, dict):
        markets = list(markets.values())
    if not isinstance(markets, list) or not markets:
        raise MarketsFileError("expected a non-empty ccxt markets dict (symbol -> market) or list of markets")
    for market in markets:
        if not isinstance(market, dict) or not all(isinstance(market.get(k), str) for k in ("id", "symbol")):
            shown = json.dumps(market, default=str)[:80]
            raise MarketsFileError(f"not a ccxt market (a ccxt market has at least an id and a symbol): {shown}")
    return MarketsFile(markets, document if snapshot else None)


def check_markets_file(venue: Venue, exchange_id: str) -> int:
    """The number of markets in the route's markets_file; RouteRefused when `read_markets_file`
    refuses it. The file is read again when the route's markets are first needed (gateway/clients.py)."""
    path = venue.markets_file or ""
    try:
        return len(read_markets_file(path, exchange_id).markets)
    except MarketsFileError as exc:
        raise RouteRefused(f"route {venue.route!r}: markets_file {path}: {exc}", kind="BadRequest") from None


def alias_problems(settings: Settings) -> list[str]:
    """Credential aliases whose `routes` name no route: configured routes, and ccxt ids when
    allow_any_ccxt_exchange is on. Such an alias could never be used where it was meant to be."""
    any_id = settings.allow_any_ccxt_exchange
    known = "a configured route" + (" or a ccxt exchange id" if any_id else "")
    candidates = [*settings.exchanges, *(CCXT_EXCHANGES if any_id else ())]
    problems = []
    for alias in settings.credentials.values():
        for route in alias.routes:
            if route in settings.exchanges or (any_id and route in CCXT_EXCHANGES):
                continue
            hint = _close_ids(route, candidates)
            problem = f"credentials.{alias.name}.routes: {route!r} is not {known}"
            problems.append(problem + (f" (did you mean {hint}?)" if hint else ""))
    return problems


def _close_ids(name: str, candidates: Any = None) -> str:
    import difflib

    matches = difflib.get_close_matches(name, sorted(candidates or CCXT_EXCHANGES), n=3, cutoff=0.6)
    return " or ".join(repr(m) for m in matches)


def build_exchange(
    venue: Venue, credentials: dict[str, str], extra_config: dict[str, Any] | None = None, family: Any = ccxt_async
) -> Any:
    """A ccxt async client for the venue (`family=ccxt.pro` for its websocket client). `extra_config`
    carries shared session/ssl objects."""
    exchange_class = getattr(family, venue.ccxt_id, None)
    if exchange_class is None:
        raise UnknownRoute(f"unknown exchange {venue.ccxt_id!r}")
    config: dict[str, Any] = {"enableRateLimit": True}
    config.update(venue.ccxt_config)
    if venue.options:
        config["options"] = {**config.get("options", {}), **venue.options}
    config.update(extra_config or {})
    config.update(credentials)
    exchange = exchange_class(config)
    exchange._gateway_venue = venue  # what it was built from: a reload retires clients of a changed route
    _apply_gateway_defaults(exchange, venue)
    if venue.sandbox:
        enable_sandbox(exchange, venue)
    if venue.api_base:
        exchange.urls["api"] = _rewrite_urls(exchange.urls["api"], venue.api_base)
    return exchange


def _rewrite_urls(api: Any, api_base: str) -> Any:
    """REST URLs keep their path (`rewrite_api_urls`); ccxt.pro's `ws` tree keeps the host in it too
    (`rewrite_ws_urls`)."""
    if not isinstance(api, dict) or "ws" not in api:
        return rewrite_api_urls(api, api_base)
    rest = rewrite_api_urls({key: value for key, value in api.items() if key != "ws"}, api_base)
    return {**rest, "ws": rewrite_ws_urls(api["ws"], api_base)}


def _apply_gateway_defaults(exchange: Any, venue: Venue) -> None:
    """Options an FMZ caller implies, and one it forbids. A GetOrders without a pair (or with a range such as
    USDT.swap) is a deliberate request, so ccxt's binance-family refusal to list open orders
    without a symbol is acknowledged, unless the config sets it."""
    if "warnOnFetchOpenOrdersWithoutSymbol" not in venue.options:
        exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    # ccxt's own retry loop would re-send an order POST after a network error: a duplicate order.
    # Reads are retried by the gateway (gateway/calls.py); orders never.
    exchange.options["maxRetriesOnFailure"] = 0


def enable_sandbox(exchange: Any, venue: Venue) -> None:
    refusal = (
        f"route {venue.route!r}: {venue.ccxt_id} has no sandbox/testnet in ccxt; "
        "the route is refused (sandbox: true never falls back to live)"
    )
    if not exchange.urls.get("test"):
        raise SandboxUnavailable(refusal)
    try:
        exchange.set_sandbox_mode(True)
    except Exception:  # ccxt raises NotSupported, or TypeError where urls['test'] is malformed
        raise SandboxUnavailable(refusal) from None
    if not getattr(exchange, "isSandboxModeEnabled", False):
        raise SandboxUnavailable(refusal)


def rewrite_api_urls(urls: Any, api_base: str) -> Any:
    """Replace scheme://host of every URL in a ccxt `urls['api']` tree, keeping the path."""
    if isinstance(urls, str):
        return _SCHEME_HOST.sub(api_base, urls, count=1)
    if isinstance(urls, dict):
        return {key: rewrite_api_urls(value, api_base) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rewrite_api_urls(value, api_base) for value in urls]
    return urls


def rewrite_ws_urls(urls: Any, api_base: str) -> Any:
    """Point a ccxt.pro `urls['api']['ws']` tree at `api_base` (http -> ws, https -> wss). The real
    host becomes the first path segment (`wss://stream.binance.com:9443/ws` ->
    `ws://127.0.0.1:8080/stream.binance.com:9443/ws`): one server stands in for several stream hosts
    that share paths, and ccxt.pro classes that tell markets apart by their URL still can."""
    if isinstance(urls, str):
        match = re.match(r"^wss?://([^/]+)(.*)$", urls, re.IGNORECASE)
        if match is None:
            return urls
        return re.sub(r"^http", "ws", api_base, flags=re.IGNORECASE) + "/" + match.group(1) + match.group(2)
    if isinstance(urls, dict):
        return {key: rewrite_ws_urls(value, api_base) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rewrite_ws_urls(value, api_base) for value in urls]
    return urls


async def probe_api_base(api_base: str, timeout: float = 3.0) -> str | None:
    """None when a TCP connection to the api_base's host and port opens within `timeout`, else why
    not. Nothing is sent over it: no request, no TLS handshake (`fmz-gateway check`)."""
    import asyncio
    import contextlib
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(api_base)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{parts.scheme}://{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"api_base {where} is unreachable: no TCP connection within {timeout:g} s"
    except OSError as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) or not exc.errno else os.strerror(exc.errno)
        return f"api_base {where} is unreachable: {reason or type(exc).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
