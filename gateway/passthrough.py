"""`__api_<path>`: a signed request to any endpoint of any ccxt exchange, reply verbatim.

The FMZ path (`/api/v3/account`, `/api/v5/trade/orders-pending`, `/v5/order/realtime`) is
resolved generically from the exchange class itself:
1. every api section of `exchange.api` (`['private']`, `['fapiPrivate']`, gate's
   `['private', 'spot']`) is asked, through `sign('', section)`, which URL path prefix it
   produces (`/api/v3/`, `/fapi/v1/`, okx `/api/v5/` that sign() prepends, bybit `/`);
2. the sections with the longest prefix of the requested path are candidates; the one whose
   endpoint table defines the remainder for the verb wins, else a private one;
3. `request(remainder, section, verb, params)` signs and sends it like any private call.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from gateway.calls import Call
from gateway.errors import BadRequest

VERBS = ("get", "post", "put", "delete", "patch")


async def api_passthrough(call: Call) -> tuple[Any, Any]:
    path = call.envelope.api_path or ""
    path, _, query = path.partition("?")
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) if query else {}
    params.update({k: v for k, v in call.params.items()})
    if not path.startswith("/"):
        path = "/" + path
    section, remainder = resolve_api_section(call.exchange, path, call.envelope.http_method)
    result = await call.exchange.request(remainder, list(section), call.envelope.http_method, params)
    return result, result


def resolve_api_section(exchange: Any, path: str, verb: str) -> tuple[tuple[str, ...], str]:
    prefixes = section_prefixes(exchange)
    best_length = -1
    candidates: list[tuple[tuple[str, ...], str]] = []
    for section, prefix in prefixes.items():
        if _is_prefix(prefix, path):
            length = len(prefix.rstrip("/"))
            if length > best_length:
                best_length, candidates = length, []
            if length == best_length:
                candidates.append((section, path[len(prefix.rstrip("/")) :].lstrip("/")))
    if not candidates:
        known = sorted({p for p in prefixes.values() if p != "/"})[:12]
        raise BadRequest(
            f"{exchange.id} has no API section for path {path[:100]!r} (known prefixes: {', '.join(known)})"
        )
    method = verb.lower()
    for section, remainder in candidates:
        if remainder in _endpoints(exchange.api, section, method):
            return section, remainder
    for section, remainder in candidates:
        if any("private" in part.lower() for part in section) or "sapi" in section[0].lower():
            return section, remainder
    return candidates[0]


def _is_prefix(prefix: str, path: str) -> bool:
    bare = prefix.rstrip("/")
    return path == bare or path.startswith(bare + "/") or bare == ""


def section_prefixes(exchange: Any) -> dict[tuple[str, ...], str]:
    """{api section: URL path prefix}, computed once per exchange instance."""
    cached = getattr(exchange, "_gateway_api_prefixes", None)
    if cached is not None:
        return cached
    prefixes = {}
    for section in _sections(exchange.api):
        try:
            signed = exchange.sign("", list(section), "GET", {})
        except Exception:  # a section sign() cannot build without more context is skipped
            continue
        url = signed.get("url") if isinstance(signed, dict) else None
        if isinstance(url, str):
            prefixes[section] = urllib.parse.urlsplit(url).path or "/"
    exchange._gateway_api_prefixes = prefixes
    return prefixes


def _sections(api: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if not isinstance(api, dict):
        return found
    for key, value in api.items():
        if not isinstance(value, dict):
            continue
        if any(verb in value for verb in VERBS) and all(isinstance(v, dict | list) for v in value.values()):
            found.append((*prefix, key))
        else:
            found.extend(_sections(value, (*prefix, key)))
    return found


def _endpoints(api: dict, section: tuple[str, ...], method: str) -> Any:
    node: Any = api
    for key in section:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    table = node.get(method) if isinstance(node, dict) else None
    return table if isinstance(table, dict | list) else {}
