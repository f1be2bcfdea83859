"""One FMZ call through the pipeline: envelope -> venue -> credentials -> client -> handler -> reply.

`Gateway` holds what outlives a call (venues, the client pool, io state, the single-flight
table, recent order nonces) and turns any failure into `{"error": "<Kind>: <message>"}` with the
caller's secrets scrubbed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback

import ccxt
from cachetools import LRUCache

from gateway.calls import Call, SingleFlight
from gateway.clients import ClientPool
from gateway.credentials import Credentials, parse_credentials
from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    MissingCredentials,
    error_message,
    scrub,
    scrub_values,
)
from gateway.methods import METHODS, lookup
from gateway.protocol import Envelope, error_body, parse_envelope, success_body
from gateway.settings import Settings
from gateway.state import OrderNonces, StateStore
from gateway.venues import VenueRegistry

log = logging.getLogger("gateway")


class Gateway:
    """Everything one FMZ call needs, built once from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.venues = VenueRegistry(settings)
        self.pool = ClientPool(settings.clients)
        self.states = StateStore()
        self.single_flight = SingleFlight()
        self.order_nonces = OrderNonces()
        self._parsed_credentials: LRUCache = LRUCache(maxsize=4096)
        self.started = time.time()

    async def handle(self, route: str, body: bytes, http_method_header: str | None) -> dict:
        """One FMZ call -> its reply body, with the caller's secrets scrubbed from every string in it."""
        deadline = time.monotonic() + self.settings.server.request_timeout
        secrets: tuple[str, ...] = ()
        envelope: Envelope | None = None
        fingerprint = "-"
        try:
            envelope = parse_envelope(body, http_method_header)
            secrets = (envelope.secret_key, *envelope.secret_key.split(","))  # before it is even parsed
            venue = self.venues.get(route)
            method = lookup(envelope.method)
            if method is None:
                raise BadRequest(f"unknown method {envelope.method[:64]!r} (known: {', '.join(sorted(METHODS))})")
            credentials = self._credentials(envelope, venue.route)
            secrets = credentials.secrets  # parsed once per key (memoised): the secret, passphrase, token
            fingerprint = credentials.fingerprint or "-"
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
            return scrub_values(success_body(data, raw), secrets)
        except Exception as exc:
            message = error_message(exc, secrets)
            self._log_failure(route, envelope, fingerprint, exc, message, secrets)
            return error_body(message)

    def _credentials(self, envelope: Envelope, route: str) -> Credentials:
        """Parsed credentials, memoised: the same docker sends the same keys on every call."""
        key = (envelope.access_key, envelope.secret_key, route)
        credentials = self._parsed_credentials.get(key)
        if credentials is None:
            credentials = parse_credentials(envelope.access_key, envelope.secret_key, self.settings.credentials, route)
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
        )

    @staticmethod
    def _log_failure(
        route: str, envelope: Envelope | None, key: str, exc: Exception, message: str, secrets: tuple
    ) -> None:
        """One line per failed call; the key appears only as a fingerprint of its credentials."""
        method = scrub(envelope.method[:80], secrets) if envelope else "?"
        if isinstance(exc, GatewayError | ccxt.BaseError):
            log.info("%s %s key=%s failed: %s", route[:64], method, key, message)
            return
        trace = scrub("".join(traceback.format_exception(exc)), secrets)
        log.error("%s %s key=%s crashed: %s\n%s", route[:64], method, key, message, trace)


def _loop_time(monotonic_deadline: float) -> float:
    """The event loop's clock for a time.monotonic() instant (they may differ, e.g. under uvloop)."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())
