"""One FMZ call through the pipeline: envelope -> venue -> credentials -> client -> handler -> reply.

`Gateway` holds what outlives a call (venues, the client pool, io state, the single-flight
table, recent order nonces, metrics and the status board) and turns any failure into
`{"error": "<Kind>: <message>"}` with the caller's secrets scrubbed. Each call is counted,
timed and logged once, after its reply is built (gateway/logs.py describes the line).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import traceback
from typing import Any

import ccxt
from cachetools import LRUCache

from gateway.cache import PublicCache
from gateway.calls import Call, SingleFlight
from gateway.clients import ClientPool
from gateway.credentials import NO_CREDENTIALS, Credentials, parse_credentials
from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    MissingCredentials,
    error_message,
    scrub,
    scrub_values,
)
from gateway.logs import emit
from gateway.methods import METHODS, lookup
from gateway.metrics import CALL, CallScope, Metrics, method_label
from gateway.protocol import Envelope, error_body, parse_envelope, success_body
from gateway.settings import Settings, Venue
from gateway.state import OrderNonces, StateStore
from gateway.status import StatusBoard, gauges, snapshot
from gateway.venues import VenueRegistry

log = logging.getLogger("gateway")
# Seconds of server.request_timeout kept for encoding and sending the answer: the docker's clock
# starts before ours and ends after, so a call cut at exactly request_timeout answers late.
ANSWER_MARGIN = 0.25
access_log = logging.getLogger("gateway.access")
audit_log = logging.getLogger("gateway.audit")
AUDITED = frozenset({"trade", "cancel", "setmarginlevel", "marginlevel", "leverage"})  # they change something
AUDIT_PARAMS = ("type", "amount", "price", "id")


class Gateway:
    """Everything one FMZ call needs, built once from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.venues = VenueRegistry(settings)
        self.pool = ClientPool(settings.clients)
        self.states = StateStore()
        self.single_flight = SingleFlight()
        self.order_nonces = OrderNonces()
        self.public_cache = PublicCache()
        self._parsed_credentials: LRUCache = LRUCache(maxsize=4096)
        self.started = time.time()
        self.board = StatusBoard(max_keys=2 * settings.clients.max_clients)
        self.metrics = Metrics(self.board, lambda: gauges(self))
        self._request_ids = itertools.count(1)
        self._request_prefix = os.urandom(3).hex()

    async def handle(self, route: str, body: bytes, http_method_header: str | None) -> dict:
        """One FMZ call -> its reply body, with the caller's secrets scrubbed from every string in it."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.settings.server.request_timeout - ANSWER_MARGIN
        scope = CallScope(self.metrics)
        token = CALL.set(scope)
        secrets: tuple[str, ...] = ()
        envelope: Envelope | None = None
        credentials = NO_CREDENTIALS
        venue_route = None
        data: Any = None
        failure: tuple[Exception, str] | None = None
        try:
            envelope = parse_envelope(body, http_method_header)
            secrets = (envelope.secret_key, *envelope.secret_key.split(","))  # before it is even parsed
            venue = self.venues.get(route)
            venue_route = venue.route
            method = lookup(envelope.method)
            if method is None:
                raise BadRequest(f"unknown method {envelope.method[:64]!r} (known: {', '.join(sorted(METHODS))})")
            credentials = self._credentials(envelope, venue)
            secrets = credentials.secrets  # parsed once per key (memoised): the secret, passphrase, token
            if method.private and credentials.empty:
                raise MissingCredentials(f"{method.fmz_name} needs access_key and secret_key")
            if envelope.method == "io":
                state = self.states.get_or_create(venue.route, credentials.cache_key)
            else:
                state = self.states.peek(venue.route, credentials.cache_key)
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    if method.private and not credentials.empty:
                        async with self.pool.private(venue, credentials) as (exchange, index):
                            call = self._call(envelope, venue, credentials, state, exchange, index, deadline)
                            data, raw = await method.handler(call)
                    else:
                        exchange, index = await self.pool.public(venue)
                        call = self._call(envelope, venue, credentials, state, exchange, index, deadline)
                        data, raw = await method.handler(call)
            except TimeoutError:
                if time.monotonic() < deadline:
                    raise  # a TimeoutError of the call's own, not the deadline
                limit = self.settings.server.request_timeout
                raise DeadlineExceeded(f"{method.fmz_name} got no answer within {limit:g} s") from None
            reply = success_body(data, raw)
            if method.private:  # public answers come from the keyless client: no secret of the caller's was sent
                reply = scrub_values(reply, secrets)
        except Exception as exc:
            message = error_message(exc, secrets)
            failure = (exc, message)
            reply = error_body(message)
        finally:
            CALL.reset(token)
        try:
            self._observe(started, scope, route, venue_route, envelope, credentials, data, failure, secrets)
        except Exception as exc:  # counting and logging must never change an answer
            log.error("observing a call failed: %s", type(exc).__name__)
        return reply

    def _credentials(self, envelope: Envelope, venue: Venue) -> Credentials:
        """Parsed credentials, memoised: the same docker sends the same keys on every call."""
        route = venue.route
        key = (envelope.access_key, envelope.secret_key, route)
        credentials = self._parsed_credentials.get(key)
        if credentials is None:
            credentials = parse_credentials(
                envelope.access_key, envelope.secret_key, self.settings.credentials, route, venue.ccxt_id
            )
            self._parsed_credentials[key] = credentials
        return credentials

    def _call(self, envelope, venue, credentials: Credentials, state, exchange, index, deadline: float) -> Call:
        return Call(
            envelope,
            venue,
            credentials,
            state,
            exchange,
            index,
            self.settings.clients,
            self.single_flight,
            self.order_nonces,
            deadline,
            self.public_cache,
            self.settings.public_cache_for(venue),
        )

    def _observe(
        self,
        started: float,
        scope: CallScope,
        route: str,
        venue_route: str | None,
        envelope: Envelope | None,
        credentials: Credentials,
        data: Any,
        failure: tuple[Exception, str] | None,
        secrets: tuple[str, ...],
    ) -> None:
        """Count, time and log one answered call: a few counters and at most one log line."""
        seconds = time.perf_counter() - started
        method = _method_label(envelope)
        if venue_route is None and failure is not None:  # failed before the route was resolved
            with contextlib.suppress(Exception):
                venue_route = self.venues.get(route).route
        route_label = venue_route or "-"  # an unknown route is one label, not one per bad URL
        outcome = "ok" if failure is None else failure[1].partition(":")[0][:64]  # the error kind
        self.metrics.record_call(route_label, method, outcome, seconds)
        key_id = credentials.key_id
        error = None if failure is None else failure[1]
        self.board.record_call(
            route_label, method, failure is None, seconds * 1000, key_id, credentials.cache_key, error
        )
        audited = method in AUDITED or (method == "__api_" and envelope is not None and envelope.http_method != "GET")
        crashed = failure is not None and not isinstance(failure[0], GatewayError | ccxt.BaseError)
        if failure is None:
            level = logging.INFO if audited else logging.DEBUG
        else:
            level = logging.ERROR if crashed else logging.WARNING
        logger = audit_log if audited else access_log
        if not logger.isEnabledFor(level):
            return
        params = envelope.params if envelope is not None else {}
        fields: dict[str, Any] = {
            "rid": f"{self._request_prefix}-{next(self._request_ids)}",
            "route": venue_route or scrub(route[:64], secrets),
            "method": scrub(envelope.method[:80], secrets) if envelope is not None else "-",
            "symbol": _param(params.get("symbol"), secrets),
            "key": key_id,
            "nonce": envelope.nonce if envelope is not None else None,
        }
        if audited:
            for name in AUDIT_PARAMS:
                if name in params:
                    fields[name] = _param(params[name], secrets)
            if failure is None and method == "trade" and isinstance(data, dict):
                fields["order_id"] = _param(data.get("id"), secrets)
        fields["outcome"] = outcome
        fields["ms"] = round(seconds * 1000, 2)
        fields["upstream_ms"] = round(scope.upstream_s * 1000, 2)
        fields["upstream_requests"] = scope.upstream_n
        if failure is not None:
            fields["error"] = failure[1]
        if crashed:
            fields["traceback"] = scrub("".join(traceback.format_exception(failure[0])), secrets)
        emit(logger, level, "audit" if audited else "call", fields)

    def status_snapshot(self) -> dict:
        return snapshot(self)


def _method_label(envelope: Envelope | None) -> str:
    """A bounded label: a known method's (metrics.method_label), `unknown` or `-` (no envelope)."""
    if envelope is None:
        return "-"
    return method_label(envelope.method) if lookup(envelope.method) is not None else "unknown"


def _param(value: Any, secrets: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    return scrub(str(value)[:64], secrets)


def _loop_time(monotonic_deadline: float) -> float:
    """The event loop's clock for a time.monotonic() instant (they may differ, e.g. under uvloop)."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())
