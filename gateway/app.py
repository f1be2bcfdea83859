"""The ASGI app: FMZ calls on a lean fast path, everything else through Starlette.

It decides nothing about exchanges: `POST /<route>` goes straight to `Gateway.handle`
(dispatch.py) without Starlette's routing and request objects, since that path is the one
every docker call takes; `/`, `/healthz`, `/metrics`, `/status`, other verbs and other paths
are Starlette routes. Every FMZ call is answered with HTTP 200 and JSON, `{"data", "raw"}` or
`{"error"}`; every other answer is JSON too, except the Prometheus text of `/metrics` and the
operator's HTML page `/status`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import __version__
from gateway.capabilities import route_report
from gateway.dispatch import Gateway
from gateway.errors import BadRequest, GatewayError, error_message
from gateway.methods import METHODS
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.protocol import error_body
from gateway.settings import Settings
from gateway.status import render_html, route_problems

JSON_HEADERS = [(b"content-type", b"application/json")]
log = logging.getLogger("gateway")
REFUSAL_LOG_INTERVAL = 60.0  # seconds between two log lines about the same refused client


class GatewayApp:
    """ASGI entry point. `state.gateway` is the call pipeline (tests and the bench inspect it)."""

    def __init__(self, gateway: Gateway, fallback: Starlette) -> None:
        self.gateway = gateway
        self.fallback = fallback
        self.state = fallback.state
        self.max_body = gateway.settings.server.max_body_bytes
        self.client_filter = ClientFilter(gateway.settings.server.allowed_clients)
        self._refusals_logged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.client_filter.allows(scope.get("client")):
            host = (scope.get("client") or ("unknown",))[0]
            self._log_refusal(str(host), scope)
            await send_json(send, error_body(f"Forbidden: client {host} is not in server.allowed_clients"), 403)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if len(path) > 1 and path.find("/", 1) == -1:
                await self.fmz_call(path[1:], scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    async def fmz_call(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        http_method = None
        declared = None
        for name, value in scope["headers"]:
            if name == b"http-method":
                http_method = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        try:
            body = await read_body(receive, declared, self.max_body)
        except BadRequest as exc:
            await send_json(send, error_body(error_message(exc)))
            return
        await send_json(send, await self.gateway.handle(route, body, http_method))

    def _log_refusal(self, host: str, scope: Scope) -> None:
        """A refused client, logged at most once a minute per address (a flood must not flood the log)."""
        now = time.monotonic()
        last = self._refusals_logged.get(host)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return
        if len(self._refusals_logged) >= 10_000:
            self._refusals_logged.clear()
        self._refusals_logged[host] = now
        path = str(scope.get("path", ""))[:100]
        log.warning(
            "refused client %s (%s %s): not in server.allowed_clients (its refusals are logged once per %.0f s)",
            host[:64],
            scope.get("method", "?"),
            json.dumps(path),
            REFUSAL_LOG_INTERVAL,
        )


class ClientFilter:
    """`server.allowed_clients`: who may call. Loopback always may; an empty list lets anyone."""

    def __init__(self, networks: tuple[str, ...]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._verdicts: dict[str, bool] = {}

    def allows(self, client: tuple | list | None) -> bool:
        if not self.networks:
            return True
        host = client[0] if client else ""
        verdict = self._verdicts.get(host)
        if verdict is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:  # a unix socket or an unknown peer: only an explicit opening lets it in
                verdict = False
            else:
                verdict = address.is_loopback or any(address in network for network in self.networks)
            if len(self._verdicts) < 10_000:
                self._verdicts[host] = verdict
        return verdict


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"request body too large ({declared.decode()} bytes; limit {limit})")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body too large (over {limit} bytes)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send: Send, body: Any, status: int = 200) -> None:
    payload = encode_json(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def encode_json(body: Any) -> bytes:
    """JSON bytes; NaN and Infinity become null. Secrets were scrubbed from the values before."""
    try:
        return orjson.dumps(body, default=str)
    except TypeError:  # e.g. an integer beyond 64 bits in an exchange reply
        return json.dumps(_finite(body), default=str, ensure_ascii=False, allow_nan=False).encode()


def _finite(value: Any) -> Any:
    """NaN and Infinity (not JSON) as null, the way orjson writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_response(body: Any, status: int = 200) -> Response:
    return Response(encode_json(body), status_code=status, media_type="application/json")


def quiet_ccxt_logging() -> None:
    """ccxt logs whole signed requests (headers with passphrases, signatures) at DEBUG: never emit them."""
    ccxt_logger = logging.getLogger("ccxt")
    if ccxt_logger.getEffectiveLevel() < logging.INFO:
        ccxt_logger.setLevel(logging.INFO)


def create_app(settings: Settings) -> GatewayApp:
    quiet_ccxt_logging()
    gateway = Gateway(settings)

    async def wrong_verb(request: Request) -> Response:
        route = request.path_params["route"][:64]
        return json_response(error_body(f"BadRequest: FMZ calls are POST /{route} with a JSON body"))

    async def health(request: Request) -> Response:
        stats = gateway.pool.stats()
        problems = route_problems(gateway)
        body = {
            "status": "ok" if not problems else "unavailable",
            "version": __version__,
            "uptime": int(time.time() - gateway.started),
            **stats,
        }
        if problems:
            body["problems"] = problems  # route -> why it cannot serve
        return json_response(body, status=503 if problems else 200)

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def status(request: Request) -> Response:
        data = gateway.status_snapshot()
        if request.query_params.get("format") == "json":
            return json_response(data)
        return HTMLResponse(render_html(data), headers={"cache-control": "no-store"})

    async def index(request: Request) -> Response:
        return json_response(
            {
                "name": "fmz-ccxt-gateway",
                "version": __version__,
                "usage": "POST /<exchange> with an FMZ General Protocol envelope",
                "configured_routes": gateway.venues.routes(),
                "any_ccxt_exchange": gateway.settings.allow_any_ccxt_exchange,
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

    async def capabilities_of(request: Request) -> Response:
        try:
            return json_response(route_report(gateway, request.path_params["route"]))
        except GatewayError as exc:
            return json_response(error_body(error_message(exc)), status=404)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.pool.close()

    verbs = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/capabilities/{route}", capabilities_of, methods=["GET"]),
        Route("/{route}", wrong_verb, methods=verbs),
        Route("/{path:path}", not_found, methods=verbs),
    ]
    fallback = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error, Exception: http_error}
    )
    fallback.state.gateway = gateway
    return GatewayApp(gateway, fallback)
