"""The Starlette app: wires protocol -> venues -> clients -> methods -> convert.

It decides nothing about exchanges. Every FMZ call is answered with HTTP 200 and JSON, either
`{"data", "raw"}` or `{"error"}`: bad input, unknown routes and failures included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import ccxt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.calls import Call, SingleFlight
from gateway.clients import ClientPool
from gateway.credentials import Credentials, parse_credentials
from gateway.errors import BadRequest, GatewayError, error_message, scrub
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
        self.started = time.time()

    async def handle(self, route: str, body: bytes, http_method_header: str | None) -> tuple[dict, tuple[str, ...]]:
        """One FMZ call -> (reply body, secrets to keep out of it)."""
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
            credentials = parse_credentials(
                envelope.access_key, envelope.secret_key, self.settings.credentials, venue.route
            )
            secrets = (*credentials.secrets, *secrets)
            fingerprint = credentials.fingerprint or "-"
            if method.private and credentials.empty:
                raise GatewayError(f"{method.fmz_name} needs access_key and secret_key", "AuthenticationError")
            if envelope.method == "io":
                state = self.states.get_or_create(venue.route, credentials.cache_key)
            else:
                state = self.states.peek(venue.route, credentials.cache_key)
            if method.private and not credentials.empty:
                async with self.pool.private(venue, credentials) as (exchange, index):
                    data, raw = await method.handler(self._call(envelope, venue, credentials, state, exchange, index))
            else:
                exchange, index = await self.pool.public(venue)
                data, raw = await method.handler(self._call(envelope, venue, credentials, state, exchange, index))
            return success_body(data, raw), secrets
        except Exception as exc:
            message = error_message(exc, secrets)
            self._log_failure(route, envelope, fingerprint, exc, message, secrets)
            return error_body(message), secrets

    def _call(self, envelope, venue, credentials: Credentials, state, exchange, index) -> Call:
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


def quiet_ccxt_logging() -> None:
    """ccxt logs whole signed requests (headers with passphrases, signatures) at DEBUG: never emit them."""
    ccxt_logger = logging.getLogger("ccxt")
    if ccxt_logger.getEffectiveLevel() < logging.INFO:
        ccxt_logger.setLevel(logging.INFO)


def create_app(settings: Settings) -> Starlette:
    quiet_ccxt_logging()
    gateway = Gateway(settings)
    max_body = settings.server.max_body_bytes

    async def fmz_call(request: Request) -> Response:
        route = request.path_params["route"]
        if request.method != "POST":
            return json_response(error_body(f"BadRequest: FMZ calls are POST /{route[:64]} with a JSON body"))
        try:
            body = await read_body(request, max_body)
        except BadRequest as exc:
            return json_response(error_body(error_message(exc)))
        except ClientDisconnect:
            return json_response(error_body("BadRequest: client disconnected"))
        reply, secrets = await gateway.handle(route, body, request.headers.get("http-method"))
        return json_response(reply, secrets)

    async def health(request: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime": int(time.time() - gateway.started),
                **gateway.pool.stats(),
            }
        )

    async def index(request: Request) -> Response:
        return json_response(
            {
                "name": "fmz-ccxt-gateway",
                "version": __version__,
                "usage": "POST /<exchange> with an FMZ General Protocol envelope",
                "configured_routes": gateway.venues.routes(),
                "any_ccxt_exchange": settings.allow_any_ccxt_exchange,
                "ccxt_version": ccxt.__version__,
                "methods": sorted(METHODS),
            }
        )

    async def not_found(request: Request) -> Response:
        status = 200 if request.method == "POST" else 404
        return json_response(error_body(f"BadRequest: no such endpoint {request.url.path[:100]}"), status=status)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return json_response(error_body(f"HTTPError: {detail}"), status=status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.pool.close()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/{route}", fmz_call, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    app.state.gateway = gateway
    return app


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"request body too large ({declared} bytes; limit {limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body too large (over {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(body: dict, secrets: tuple[str, ...] = (), status: int = 200) -> Response:
    text = encode_json(body)
    for secret in secrets:
        if secret and len(secret) >= 4:
            escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
            if escaped in text:  # an exchange echoed a credential back
                text = text.replace(escaped, "***")
    return Response(text, status_code=status, media_type="application/json")


def encode_json(body: Any) -> str:
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:  # NaN or Infinity somewhere in an exchange reply
        return json.dumps(_finite(body), separators=(",", ":"), ensure_ascii=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
