"""A fake exchange that plays back real exchange answers recorded by ccxt (tests/recorded/).

ccxt keeps, per exchange, real HTTP answers together with the call that produced them and the
structure ccxt parsed from them (`ts/src/test/static/response/<id>.json`, MIT). For each recorded
case this module learns which request ccxt sends for the case's input (ccxt runs with its
`fetch` replaced, so nothing leaves the process), then serves the case's `httpResponse` to the
matching request on a loopback HTTP server. The gateway, with its route's `api_base` pointed at
that server, meets the exchange's real answers without knowing it is a recording.

Matching: a request matches the cases ccxt sent with the same verb and URL path; among several,
the one whose query and body parameters agree best (one point per equal parameter, minus one per
differing one; signatures, timestamps, nonces and client order ids are left out). A tie goes to
the case the test names as expected (`Replay.expect`), else to the first case recorded. Signatures
are not checked: these are recorded answers, not a live exchange.

A request no case matches is answered HTTP 404 `{"replay": "no recorded answer for ..."}` and
listed in `Replay.unmatched` (ccxt reports it as an exchange error, as it would any 404).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt.async_support as ccxt_async
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

RECORDED = Path(__file__).parent / "recorded"
# Parameters that differ between two sends of the same call (time, signature, our client ids).
VOLATILE = re.compile(
    r"(time|nonce|sign|recv_?window|client|cloid|text|broker|expires|^t$|^ts$|req_?id|request_?id|vaultaddress)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sent:
    """One HTTP request as ccxt sent it: verb, URL path and flattened query + body parameters."""

    verb: str
    path: str
    params: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, verb: str, url: str, body: Any) -> Sent:
        parts = urlsplit(url)
        flat: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            flat[key] = value
        flat.update(_body_params(body))
        return cls(verb.upper(), parts.path or "/", tuple(sorted(flat.items())))

    def score(self, other: Sent) -> int:
        mine, theirs = dict(self.params), dict(other.params)
        points = 0
        for key in mine.keys() & theirs.keys():
            if VOLATILE.search(key.rsplit(".", 1)[-1]):
                continue
            points += 1 if mine[key] == theirs[key] else -1
        return points


def _body_params(body: Any) -> dict[str, str]:
    if body is None or body == "":
        return {}
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = str(body)
    try:
        doc = json.loads(text)
    except ValueError:
        return dict(parse_qsl(text, keep_blank_values=True))
    flat: dict[str, str] = {}
    _flatten(doc, "", flat)
    return flat


def _flatten(node: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _flatten(value, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix or "_"] = json.dumps(node) if not isinstance(node, str) else node


@dataclass
class Case:
    """One recorded call: ccxt `method(*input)` got `http_response` and parsed `parsed`."""

    method: str
    index: int
    description: str
    input: list
    http_response: Any
    parsed: Any
    sent: list[Sent] = field(default_factory=list)  # learnt: what ccxt sends for `input`
    learn_error: str | None = None  # ccxt 4.5.90 failed on the recorded answer itself
    local_parsed: Any = None  # what the installed ccxt parses from `http_response`

    @classmethod
    def of(cls, method: str, index: int, item: dict) -> Case:
        description = item.get("description", "")
        return cls(method, index, description, item["input"], item["httpResponse"], item["parsedResponse"])

    @property
    def name(self) -> str:
        return f"{self.method}[{self.index}]"


@dataclass
class Recording:
    """One exchange's vendored fixtures: response cases, markets and the test's ccxt options."""

    exchange_id: str
    options: dict
    cases: dict[str, list[Case]]
    markets_path: Path

    @classmethod
    def load(cls, exchange_id: str) -> Recording:
        folder = RECORDED / exchange_id
        doc = json.loads((folder / "response.json").read_text(encoding="utf-8"))
        cases: dict[str, list[Case]] = {}
        for method, items in doc["methods"].items():
            cases[method] = [Case.of(method, i, item) for i, item in enumerate(items)]
        return cls(exchange_id, doc.get("options") or {}, cases, folder / "markets.json")

    def case(self, method: str, index: int = 0) -> Case:
        return self.cases[method][index]

    def all_cases(self) -> list[Case]:
        return [case for items in self.cases.values() for case in items]

    def markets(self) -> dict:
        """The vendored markets, completed with ccxt's unified market defaults (older recordings
        lack keys that ccxt 4.5 reads, such as `contract` on spot markets)."""
        vendored = json.loads(self.markets_path.read_text(encoding="utf-8"))
        shape = ccxt_async.Exchange().safe_market_structure
        return {symbol: shape(market) for symbol, market in vendored.items()}

    def write_markets(self, folder: Path) -> Path:
        """The completed markets as a `markets_file` for the gateway's route."""
        path = folder / f"{self.exchange_id}-markets.json"
        path.write_text(json.dumps(self.markets()), encoding="utf-8")
        return path


def ccxt_client(exchange_id: str, options: dict, credentials: dict[str, str]) -> Any:
    exchange_class = getattr(ccxt_async, exchange_id)
    return exchange_class({"enableRateLimit": False, "options": copy.deepcopy(options), **credentials})


async def learn(recording: Recording, credentials: dict[str, str]) -> None:
    """Run ccxt on every case with `fetch` answering the recorded body, and note what it sent."""
    exchange = ccxt_client(recording.exchange_id, recording.options, credentials)
    exchange.timeout_on_exit = 0  # close() would otherwise sleep 250 ms
    exchange.set_markets(recording.markets())
    current: list[Case] = []

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        current[0].sent.append(Sent.of(method, url, body))
        return copy.deepcopy(current[0].http_response)

    exchange.fetch = fetch
    try:
        for case in recording.all_cases():
            current[:] = [case]
            case.sent = []
            try:
                case.local_parsed = await getattr(exchange, case.method)(*copy.deepcopy(case.input))
            except Exception as exc:  # reported with the case
                case.learn_error = f"{type(exc).__name__}: {exc}"
    finally:
        await exchange.close()


@dataclass
class Served:
    case: Case
    request: Sent


class Replay:
    """ASGI app answering each request with the recorded answer of the case that matches it."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.served: list[Served] = []
        self.unmatched: list[Sent] = []
        self.expected: tuple[str, int] | None = None

    def expect(self, method: str, index: int = 0) -> None:
        """The case a test is about: it wins ties, and `served` is cleared for the test."""
        self.expected = (method, index)
        self.served.clear()
        self.unmatched.clear()

    def served_cases(self) -> list[str]:
        return [item.case.name for item in self.served]

    def match(self, request: Sent) -> Case | None:
        best: tuple[int, int, int] | None = None
        found = None
        for order, case in enumerate(self.recording.all_cases()):
            for sent in case.sent:
                if sent.verb != request.verb or sent.path != request.path:
                    continue
                expected = 1 if self.expected == (case.method, case.index) else 0
                rank = (request.score(sent), expected, -order)
                if best is None or rank > best:
                    best, found = rank, case
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        url = scope["path"] + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
        sent = Sent.of(scope["method"], url, body)
        case = self.match(sent)
        if case is None:
            self.unmatched.append(sent)
            answer = {"replay": f"no recorded answer for {sent.verb} {sent.path}"}
            response = Response(json.dumps(answer), status_code=404, media_type="application/json")
        else:
            self.served.append(Served(case, sent))
            payload = case.http_response
            text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            response = Response(text, media_type="application/json")
        await response(scope, receive, send)


def learn_all(recordings: list[Recording], credentials: dict[str, dict[str, str]]) -> None:
    async def run() -> None:
        await asyncio.gather(*(learn(recording, credentials[recording.exchange_id]) for recording in recordings))

    asyncio.run(run())
