"""Serve an ASGI app on 127.0.0.1 in a background thread, with fault injection.

Used for the fake exchanges and for the gateway itself in end-to-end tests and benchmarks:
real sockets, real HTTP, its own event loop, so clients in the test talk to it exactly as
the FMZ docker or ccxt would.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

TRUNCATE_MODES = ("length", "chunked", "short")


@dataclass
class Fault:
    """One injected failure. By default a canned answer (`status`, `body`) instead of the exchange's.

    The other fields say whether the exchange handles the request despite the failure:

    - `drop`: close the connection without an answer (the client sees the server disconnect).
    - `handled`: the exchange handles the request first; its real answer is thrown away and
      replaced by this fault's answer (`status`/`body`, or a dropped connection with `drop`).
    - `lose_answer`: the same as `handled` with `drop` (kept for existing callers).
    - `truncate`: the exchange handles the request and its real answer is cut off after `keep`
      of its body: "length" keeps the real headers (a Content-Length promising more) and closes
      the connection; "chunked" sends the part as a chunk of an unterminated chunked body and
      closes; "short" sends a complete HTTP answer whose body (and Content-Length) is the part.
    - `handle_after`: the answer (`status`/`body`, or `drop`) goes out at once, and the captured
      request is handed to the exchange only this many seconds later, in the background.

    tests/fakes/faults.py has ready-made constructors for each kind.
    """

    status: int = 500
    body: bytes = b'{"error":"injected"}'
    content_type: str = "application/json"
    drop: bool = False  # close the connection without an answer
    lose_answer: bool = False  # let the exchange handle the request, then drop its answer (a timeout)
    method: str | None = None  # only requests with this verb
    handled: bool = False  # the exchange handles the request, then this answer replaces its own
    truncate: str | None = None  # one of TRUNCATE_MODES: the real answer, cut off
    keep: float = 0.5  # with truncate: the share of the real body that is sent
    handle_after: float | None = None  # seconds: answer now, let the exchange handle the request later
    headers: tuple[tuple[str, str], ...] = ()  # extra headers of the canned answer
    name: str = ""  # for logs and reports
    api_key: str | None = None  # only requests signed with this key (X-MBX-APIKEY or OK-ACCESS-KEY header)

    def __post_init__(self) -> None:
        if self.truncate is not None and self.truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate: one of {TRUNCATE_MODES}, not {self.truncate!r}")
        if not 0 <= self.keep < 1:
            raise ValueError("keep: a share of the body in [0, 1)")
        if self.handle_after is not None and self.handles_first:
            raise ValueError("handle_after: the request is handled later, not before the answer")

    @property
    def handles_first(self) -> bool:
        return self.handled or self.lose_answer or self.truncate is not None

    @property
    def drops(self) -> bool:
        return self.drop or self.lose_answer


@dataclass
class FaultInjector:
    """ASGI middleware: added latency and a queue of one-shot faults for matching paths."""

    app: ASGIApp
    latency_ms: float = 0.0
    faults: deque = field(default_factory=deque)  # (path prefix, Fault)
    requests: list = field(default_factory=list)  # (method, path) of every request seen
    record: bool = True
    fired: list = field(default_factory=list)  # (method, path, Fault) of every fault that struck
    late: set = field(default_factory=set)  # requests waiting to be handled late (asyncio tasks)

    def inject(self, fault: Fault, path_prefix: str = "/", times: int = 1) -> None:
        for _ in range(times):
            self.faults.append((path_prefix, fault))

    def withdraw(self, fault: Fault) -> bool:
        """Take a queued fault (every copy) back; False when none was left to take."""
        taken = False
        for item in list(self.faults):
            if item[1] is fault:
                try:
                    self.faults.remove(item)
                    taken = True
                except ValueError:  # struck meanwhile
                    pass
        return taken

    def take(self, method: str, path: str, api_key: str | None = None) -> Fault | None:
        """The first queued fault matching this request, removed from the queue."""
        for item in list(self.faults):
            prefix, fault = item
            if path.startswith(prefix) and fault.method in (None, method) and fault.api_key in (None, api_key):
                try:
                    self.faults.remove(item)
                except ValueError:  # taken meanwhile by another request
                    continue
                return fault
        return None

    @property
    def late_pending(self) -> int:
        """Requests answered already but not yet handled by the exchange (handle_after)."""
        return len(self.late)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.record:
            self.requests.append((scope["method"], scope["path"]))
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        fault = self.take(scope["method"], scope["path"], _api_key(scope)) if self.faults else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        self.fired.append((scope["method"], scope["path"], fault))
        if fault.truncate is not None:
            await self._truncated(fault, scope, receive, send)
            return
        if fault.handles_first:
            await self.app(scope, receive, _discard)
        elif fault.handle_after is not None:
            body = await read_body(receive)
            task = asyncio.get_running_loop().create_task(self._handle_late(scope, body, fault.handle_after))
            self.late.add(task)
            task.add_done_callback(self.late.discard)
        if fault.drops:
            await _drop(send)
            return
        headers = [(b"content-type", fault.content_type.encode()), (b"content-length", str(len(fault.body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in fault.headers]
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": fault.body})

    async def _truncated(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the exchange answer, then send its answer cut off after `fault.keep` of the body."""
        answer = _Captured()
        await self.app(scope, receive, answer)
        body = answer.body
        part = body[: int(len(body) * fault.keep)]
        headers = [(k, v) for k, v in answer.headers if k.lower() != b"content-length"]
        if fault.truncate == "length":  # the real headers: a Content-Length that promises all of it
            headers.append((b"content-length", str(len(body)).encode()))
        elif fault.truncate == "short":  # a complete answer whose body is the part
            headers.append((b"content-length", str(len(part)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if fault.truncate == "short":
            await send({"type": "http.response.body", "body": part})
            return
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await _drop(send)

    async def _handle_late(self, scope: Scope, body: bytes, delay: float) -> None:
        """The captured request, handed to the exchange `delay` seconds late (its answer is lost)."""
        await asyncio.sleep(delay)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(dict(scope), replay, _discard)
        except Exception:  # a bug in the fake: say so, as uvicorn would
            logging.getLogger(__name__).exception("late handling of %s %s failed", scope["method"], scope["path"])


_KEY_HEADERS = (b"x-mbx-apikey", b"ok-access-key")


def _api_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() in _KEY_HEADERS:
            return value.decode("latin-1")
    return None


class _Captured:
    """An ASGI send that keeps the answer."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def read_body(receive: Receive) -> bytes:
    """The request body an ASGI app receives, all chunks joined (those before a disconnect)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _drop(send: Send) -> None:
    """Close the client's connection at once, whatever has been sent so far.

    uvicorn passes its request cycle's bound `send`, whose `transport` is the connection; once
    it is aborted and uvicorn has seen the loss, the app may return without an answer. Under
    another server, raise instead (uvicorn itself would turn that into a 500 answer)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionResetError("injected: connection dropped")
    transport.abort()
    for _ in range(100):  # connection_lost runs on the next loop iterations
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


async def _discard(message: dict) -> None:
    """An ASGI send that throws the answer away."""


class BackgroundServer:
    """uvicorn on an ephemeral loopback port, in its own thread and event loop."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it an answer's body (sent after its headers) waits ~40 ms for a delayed ACK
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
