"""Route name -> Venue, and the construction of ccxt clients for a venue.

A route is a key under `exchanges:` in the config or, when `allow_any_ccxt_exchange` is on,
any ccxt exchange id. Construction applies, in this order: options and ccxt_config, the
sandbox switch (which must really switch: an exchange without a testnet refuses the route,
it never falls back to live), then the `api_base` rewrite of every `urls['api']` entry.
"""

from __future__ import annotations

import re
from typing import Any

import ccxt.async_support as ccxt_async

from gateway.errors import SandboxUnavailable, UnknownRoute
from gateway.settings import Settings, Venue

CCXT_EXCHANGES = frozenset(ccxt_async.exchanges)
_SCHEME_HOST = re.compile(r"^[a-z]+://[^/]+", re.IGNORECASE)


class VenueRegistry:
    """Resolves the URL path segment to a Venue, case-insensitively."""

    def __init__(self, settings: Settings) -> None:
        self.allow_any = settings.allow_any_ccxt_exchange
        self.configured = dict(settings.exchanges)
        self._cache: dict[str, Venue] = dict(self.configured)

    def get(self, route: str) -> Venue:
        name = route.lower()
        venue = self._cache.get(name)
        if venue is not None:
            return venue
        if self.allow_any and name in CCXT_EXCHANGES:
            venue = Venue(route=name, ccxt_id=name)
            self._cache[name] = venue
            return venue
        hint = "a route from the config" if not self.allow_any else "a ccxt exchange id or a configured route"
        raise UnknownRoute(f"unknown exchange {route[:64]!r}: the URL path must name {hint}")

    def routes(self) -> list[str]:
        return sorted(self.configured)


def check_venue(venue: Venue) -> None:
    """Raise at startup what would otherwise fail on the first call (unknown id, no sandbox)."""
    if venue.ccxt_id not in CCXT_EXCHANGES:
        raise UnknownRoute(f"route {venue.route!r}: {venue.ccxt_id!r} is not a ccxt exchange id")
    build_exchange(venue, {})


def build_exchange(venue: Venue, credentials: dict[str, str], extra_config: dict[str, Any] | None = None) -> Any:
    """A ccxt async client for the venue. `extra_config` carries shared session/ssl objects."""
    exchange_class = getattr(ccxt_async, venue.ccxt_id, None)
    if exchange_class is None:
        raise UnknownRoute(f"unknown exchange {venue.ccxt_id!r}")
    config: dict[str, Any] = {"enableRateLimit": True}
    config.update(venue.ccxt_config)
    if venue.options:
        config["options"] = {**config.get("options", {}), **venue.options}
    config.update(extra_config or {})
    config.update(credentials)
    exchange = exchange_class(config)
    _apply_gateway_defaults(exchange, venue)
    if venue.sandbox:
        enable_sandbox(exchange, venue)
    if venue.api_base:
        exchange.urls["api"] = rewrite_api_urls(exchange.urls["api"], venue.api_base)
    return exchange


def _apply_gateway_defaults(exchange: Any, venue: Venue) -> None:
    """Options an FMZ caller implies. A GetOrders without a pair (or with a range such as
    USDT.swap) is a deliberate request, so ccxt's binance-family refusal to list open orders
    without a symbol is acknowledged, unless the config sets it."""
    if "warnOnFetchOpenOrdersWithoutSymbol" not in venue.options:
        exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False


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
