"""Serve an ASGI app on 127.0.0.1 in a background thread, with fault injection.

Used for the fake exchanges and for the gateway itself in end-to-end tests and benchmarks:
real sockets, real HTTP, its own event loop, so clients in the test talk to it exactly as
the FMZ docker or ccxt would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class Fault:
    status: int = 500
    body: bytes = b'{"error":"injected"}'
    content_type: str = "application/json"
    drop: bool = False  # close the connection without an answer
    lose_answer: bool = False  # let the exchange handle the request, then drop its answer (a timeout)
    method: str | None = None  # only requests with this verb


@dataclass
class FaultInjector:
    """ASGI middleware: added latency and a queue of one-shot faults for matching paths."""

    app: ASGIApp
    latency_ms: float = 0.0
    faults: deque = field(default_factory=deque)  # (path prefix, Fault)
    requests: list = field(default_factory=list)  # (method, path) of every request seen
    record: bool = True

    def inject(self, fault: Fault, path_prefix: str = "/", times: int = 1) -> None:
        for _ in range(times):
            self.faults.append((path_prefix, fault))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.record:
            self.requests.append((scope["method"], scope["path"]))
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        for item in list(self.faults):
            prefix, fault = item
            if scope["path"].startswith(prefix) and fault.method in (None, scope["method"]):
                self.faults.remove(item)
                if fault.lose_answer:
                    await self.app(scope, receive, _discard)
                    raise ConnectionResetError("injected: answer lost after handling")
                if fault.drop:
                    raise ConnectionResetError("injected drop")
                await send(
                    {
                        "type": "http.response.start",
                        "status": fault.status,
                        "headers": [(b"content-type", fault.content_type.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": fault.body})
                return
        await self.app(scope, receive, send)


async def _discard(message: dict) -> None:
    """An ASGI send that throws the answer away."""


class BackgroundServer:
    """uvicorn on an ephemeral loopback port, in its own thread and event loop."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="auto", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> BackgroundServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
