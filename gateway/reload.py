"""Reload routes and credential aliases in a running gateway (SIGHUP), without dropping a call.

`reload(gateway, settings)` checks the new settings first (every route through `check_venue`,
every alias's `routes`); a config that `serve` would refuse is refused here too (`ReloadError`)
and the running one stays. Otherwise it swaps, in one step on the event loop (no await between
the first change and the last):

- `gateway.venues`: a new VenueRegistry (added, changed and removed routes; refused routes
  answer their reason when `server.skip_bad_routes` is on, as at startup);
- `gateway.settings`: the new `exchanges`, `credentials`, `allow_any_ccxt_exchange` and
  `public_cache`; `server.*` and `clients.*` keep their running values (the listen address, the
  pool's sizes, ... are bound at startup): a change there is reported as needing a restart;
- `gateway._parsed_credentials`: cleared, so the next call parses against the new aliases.

Clients: those of unchanged routes are kept (their markets, connections and rate limiters). A
client built for a route that changed or went away is retired: per-key clients are closed by
the pool once their last in-flight call is done; the keyless public client and the route's
markets (no in-flight count there) are closed once every call that could still hold them has
ended, i.e. after `server.request_timeout` (every call's deadline) plus a margin. A call in
flight during the reload finishes on the clients it started with; the next call gets the new
route. Per-key clients of an alias that was removed or whose keys changed are retired too, so a
rotated key does not linger in memory until its idle TTL; public answers cached for a changed
route (`public_cache`) are dropped.

Every client records the venue it was built from (`exchange._gateway_venue`, set by
venues.build_exchange); until the grace period is over the pool is swept every second for
clients of the old venues that a call in flight at the reload may still have created.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.credentials import make_credentials
from gateway.settings import Settings, SettingsError, Venue, load_settings
from gateway.venues import VenueRegistry, alias_problems

log = logging.getLogger("gateway.reload")
GRACE_MARGIN = 5.0  # seconds past server.request_timeout before a retired keyless client is closed
SWEEP_INTERVAL = 1.0  # seconds between two sweeps for clients of old venues during the grace period


class ReloadError(Exception):
    """The new config is refused; the running one is kept."""


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # route -> why (served as an error)
    aliases_added: list[str] = field(default_factory=list)
    aliases_removed: list[str] = field(default_factory=list)
    aliases_changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)  # keys whose new value waits for a restart
    retired_clients: int = 0

    def summary(self) -> str:
        parts = []
        for label, names in (
            ("routes added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
            ("refused", sorted(self.refused)),
            ("aliases added", self.aliases_added),
            ("aliases removed", self.aliases_removed),
            ("aliases changed", self.aliases_changed),
        ):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        if self.retired_clients:
            parts.append(f"{self.retired_clients} clients retired")
        if self.restart_needed:
            parts.append(f"changed but kept until a restart: {', '.join(self.restart_needed)}")
        return "; ".join(parts) or "no change"


@dataclass
class Prepared:
    """A checked config, ready to be swapped in (`apply`)."""

    settings: Settings  # the new reloadable sections on the running server/clients sections
    registry: VenueRegistry
    restart_needed: list[str]


def venue_fingerprint(venue: Venue) -> str:
    """Every field of a venue: two venues with the same fingerprint build the same client."""
    return json.dumps(dataclasses.asdict(venue), sort_keys=True, default=str)


def prepare(gateway: Any, settings: Settings, baseline: Settings | None = None) -> Prepared:
    """Check `settings` as `serve` would; ReloadError when they would stop it. Changes nothing
    (and may run in a worker thread). `baseline`: the settings last read from the file (for the
    keys that need a restart); default: the running ones."""
    problems = alias_problems(settings)
    if problems:
        raise ReloadError("; ".join(problems))
    running: Settings = gateway.settings
    merged = dataclasses.replace(settings, server=running.server, clients=running.clients)
    registry = VenueRegistry(merged)
    if registry.refused and not settings.server.skip_bad_routes:
        reasons = "; ".join(str(exc) for exc in registry.refused.values())
        raise ReloadError(f"{len(registry.refused)} route(s) refused (server.skip_bad_routes is off): {reasons}")
    before = baseline or running
    restart = [
        f"{section}.{f.name}"
        for section in ("server", "clients")
        for f in dataclasses.fields(getattr(settings, section))
        if getattr(getattr(settings, section), f.name) != getattr(getattr(before, section), f.name)
        and f.name != "skip_bad_routes"  # it applies to the reload itself
    ]
    return Prepared(merged, registry, restart)


def reload(gateway: Any, settings: Settings, baseline: Settings | None = None) -> ReloadReport:
    """Swap in `settings`' routes and credential aliases; call it on the gateway's event loop.
    Raises ReloadError (nothing changed) when `serve` would refuse the config."""
    return apply(gateway, prepare(gateway, settings, baseline))


def apply(gateway: Any, prepared: Prepared) -> ReloadReport:
    """The swap (synchronous: no call sees half of it), then the retirement of stale clients."""
    old_settings: Settings = gateway.settings
    old_registry: VenueRegistry = gateway.venues
    new_registry = prepared.registry
    report = _diff(old_settings, old_registry, prepared)
    gone_keys = _alias_keys(old_settings) - _alias_keys(prepared.settings)

    gateway.settings = prepared.settings
    gateway.venues = new_registry
    gateway._parsed_credentials.clear()

    retirement = _retirement(gateway)
    resolved = old_registry.resolved()
    suspects = {r for r, venue in resolved.items() if _stale_for(new_registry, r, venue, retirement.fingerprints)}
    pool = gateway.pool  # and any route the pool holds that the old registry did not resolve itself
    suspects |= pool.held_routes() - set(resolved)
    report.retired_clients = retirement.begin(suspects, gone_keys, prepared.settings)
    gateway.public_cache.forget(suspects)
    return report


def _diff(old: Settings, old_registry: VenueRegistry, prepared: Prepared) -> ReloadReport:
    new_registry = prepared.registry
    before = {**old_registry.configured, **{r: None for r in old_registry.refused}}
    after = new_registry.configured
    report = ReloadReport(restart_needed=prepared.restart_needed)
    report.added = sorted(set(after) - set(before))
    report.removed = sorted(set(before) - set(after) - set(new_registry.refused))
    report.changed = sorted(
        route
        for route in set(before) & set(after)
        if before[route] is None or venue_fingerprint(before[route]) != venue_fingerprint(after[route])
    )
    report.refused = {route: str(exc) for route, exc in new_registry.refused.items()}
    old_aliases, new_aliases = old.credentials, prepared.settings.credentials
    report.aliases_added = sorted(set(new_aliases) - set(old_aliases))
    report.aliases_removed = sorted(set(old_aliases) - set(new_aliases))
    report.aliases_changed = sorted(n for n in set(old_aliases) & set(new_aliases) if old_aliases[n] != new_aliases[n])
    return report


def _alias_keys(settings: Settings) -> set[str]:
    """The per-key client cache keys of the aliases' credentials."""
    return {make_credentials(dict(alias.fields)).cache_key for alias in settings.credentials.values()}


def _stale_for(registry: VenueRegistry, route: str, built_from: Venue | None, fingerprints: dict) -> bool:
    """True when a client built from `built_from` must not serve `route` under `registry`."""
    current = registry.peek(route)
    if current is None or built_from is None:
        return True
    return _fingerprint(built_from, fingerprints) != _fingerprint(current, fingerprints)


def _fingerprint(venue: Venue, memo: dict) -> str:
    key = id(venue)
    hit = memo.get(key)
    if hit is None or hit[0] is not venue:
        hit = memo[key] = (venue, venue_fingerprint(venue))
    return hit[1]


class _Retirement:
    """Stale clients of one gateway: retired at the reload, swept for until the grace period ends."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = weakref.ref(gateway)
        self.suspects: set[str] = set()  # routes whose old clients may still appear
        self.pending: list[tuple[float, Any]] = []  # (close at, ccxt client) for keyless clients
        self.grace_until = 0.0
        self.fingerprints: dict[int, tuple[Venue, str]] = {}
        self.task: asyncio.Task | None = None
        self.lock = asyncio.Lock()

    def begin(self, suspects: set[str], gone_keys: set[str], settings: Settings) -> int:
        grace = settings.server.request_timeout + GRACE_MARGIN
        self.grace_until = time.monotonic() + grace
        self.suspects |= suspects
        retired = self.sweep(settings, gone_keys)  # those keys once: a docker may use the same keys directly
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        return retired

    def sweep(self, settings: Settings, gone_keys: frozenset[str] | set[str] = frozenset()) -> int:
        """Retire every client of a suspect route built from a venue other than the current one,
        and the per-key clients of `gone_keys` (the credentials of removed or changed aliases)."""
        gateway = self._gateway()
        if gateway is None:
            return 0
        pool, registry, memo = gateway.pool, gateway.venues, self.fingerprints
        grace = settings.server.request_timeout + GRACE_MARGIN
        retired = 0

        def stale(route: str, exchange: Any) -> bool:
            return _stale_for(registry, route, getattr(exchange, "_gateway_venue", None), memo)

        for route in [r for r in pool.public_clients if r in self.suspects]:
            handle = pool.public_clients[route]
            if stale(route, handle.exchange):
                del pool.public_clients[route]
                self._defer_close(handle.exchange, grace)
                retired += 1
        for route in self.suspects:
            for exchange in pool.drop_spares(route, lambda e, route=route: stale(route, e)):
                self._defer_close(exchange, 0.0)
                retired += 1
        for key in list(pool.private_clients.keys()):
            route, cache_key = key
            gone = cache_key in gone_keys
            if route not in self.suspects and not gone:
                continue
            handle = pool.private_clients.get(key)
            if handle is None or not (gone or stale(route, handle.exchange)):
                continue
            pool.retire_private(key)  # closed by the pool once its last in-flight call is done
            retired += 1
        retired += self._drop_orphan_scopes(pool, registry, grace)
        return retired

    def _drop_orphan_scopes(self, pool: Any, registry: VenueRegistry, grace: float) -> int:
        """Markets no current route can use any more (their master is closed after the grace)."""
        wanted = set()
        routes = set(registry.resolved()) | pool.held_routes() | self.suspects  # resolved: configured ones too
        for route in routes:
            venue = registry.peek(route)
            if venue is not None:
                wanted.add(venue.market_scope)
        handles = [*pool.public_clients.values(), *(h for _, h in list(pool.private_clients.items()))]
        in_use = {id(handle.scope) for handle in handles}
        dropped = 0
        for key, scope in list(pool.scopes.items()):
            if key not in wanted and id(scope) not in in_use:
                del pool.scopes[key]
                self._defer_close(scope.master, grace)
                dropped += 1
        return dropped

    def _defer_close(self, exchange: Any, delay: float) -> None:
        self.pending.append((time.monotonic() + delay, exchange))

    async def _run(self) -> None:
        """Sweep every second until the grace period is over, closing retired clients when due."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            gateway = self._gateway()
            if gateway is None:
                return
            try:
                self.sweep(gateway.settings)
            except Exception:  # the sweeper must never take the gateway down; closing goes on
                log.exception("sweeping for the clients of old routes failed")
            now = time.monotonic()
            due = [exchange for at, exchange in self.pending if at <= now]
            self.pending = [(at, exchange) for at, exchange in self.pending if at > now]
            await asyncio.gather(*(_close_quietly(e) for e in due))
            if now > self.grace_until and not self.pending:
                self.suspects.clear()
                self.fingerprints.clear()
                return

    async def aclose(self) -> None:
        """Close every retired client now (the server has stopped: nothing is in flight)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        pending, self.pending = self.pending, []
        await asyncio.gather(*(_close_quietly(e) for _, e in pending))


_RETIREMENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _retirement(gateway: Any) -> _Retirement:
    retirement = _RETIREMENTS.get(gateway)
    if retirement is None:
        retirement = _RETIREMENTS[gateway] = _Retirement(gateway)
    return retirement


async def close_retired(gateway: Any) -> None:
    """Close the clients retired by reloads that are still waiting for their grace period."""
    retirement = _RETIREMENTS.get(gateway)
    if retirement is not None:
        await retirement.aclose()


async def _close_quietly(exchange: Any) -> None:
    try:
        await exchange.close()
    except Exception as exc:  # closing must never take the gateway down
        log.debug("closing %s failed: %s", getattr(exchange, "id", "?"), type(exc).__name__)


class Reloader:
    """Reloads the config file on SIGHUP: `install(loop)` once the server's loop runs."""

    def __init__(self, gateway: Any, config_path: str | Path | None, file_settings: Settings | None = None) -> None:
        self.gateway = gateway
        self.config_path = config_path
        self.file_settings = file_settings  # as last read from the file, before CLI/env overrides
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def reload(self) -> ReloadReport | None:
        """Read the file again and apply it; a refused config is logged and the running one kept."""
        where = str(self.config_path) if self.config_path is not None else "the default config"
        async with _retirement(self.gateway).lock:  # one reload at a time
            try:
                settings = await asyncio.to_thread(load_settings, self.config_path)
                prepared = await asyncio.to_thread(prepare, self.gateway, settings, self.file_settings)
            except (SettingsError, ReloadError) as exc:
                log.error("reload of %s refused, the running config is kept: %s", where, exc)
                return None
            except Exception as exc:  # a bug of ours must not stop a running gateway either
                log.exception("reload of %s failed, the running config is kept: %s", where, type(exc).__name__)
                return None
            report = apply(self.gateway, prepared)
            self.file_settings = settings
        for route, reason in report.refused.items():
            log.error("route %s is refused (server.skip_bad_routes: answered with this error): %s", route, reason)
        log.info("reloaded %s: %s", where, report.summary())
        return report

    def _on_signal(self) -> None:
        log.info("SIGHUP: reloading routes and credential aliases")
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Reload on SIGHUP; False where the platform has no SIGHUP (Windows)."""
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            return False
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_signal_handler(sighup, self._on_signal)
        return True

    async def aclose(self) -> None:
        sighup = getattr(signal, "SIGHUP", None)
        if self._loop is not None and sighup is not None:
            self._loop.remove_signal_handler(sighup)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await close_retired(self.gateway)
