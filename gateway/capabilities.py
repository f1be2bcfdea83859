"""Which FMZ functions an exchange serves, and how: native, through a fallback, or not at all.

Derived from the same tables the handlers run (gateway/fallbacks.py) with ccxt's `has` and
`features`, per market group the exchange lists (spot, swap.linear, future.inverse, ...): a
function is **native** where its table's first (preferred) row is usable, **fallback** where only
a later row is, **unsupported** where none is. The report adds the credentials the exchange
needs (and how to type them in FMZ), whether ccxt knows a sandbox (`urls['test']`), and, when
the route's markets are loaded, how many markets of each type it lists.

    python -m gateway.capabilities bybit              # one exchange's report, JSON
    python -m gateway.capabilities --markdown         # the README table, every ccxt exchange
    python -m gateway.capabilities --update README.md # rewrite the README's generated tables
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import ccxt.async_support as ccxt_async

from gateway.credentials import credential_forms
from gateway.fallbacks import ANY, GROUP_ORDER, MANY, ONE, TABLES, Group, group_name, route_groups, usable_rows
from gateway.settings import Venue

NATIVE, FALLBACK, UNSUPPORTED = "native", "fallback", "unsupported"
RANK = {NATIVE: 2, FALLBACK: 1, UNSUPPORTED: 0}
# FMZ function -> (the `method` the docker sends, the case the report judges: the function named
# with one instrument (ONE) or without (MANY)). GetAssets, GetMarkets and IO are like GetAccount /
# always native, and are left out of the table.
FUNCTIONS: dict[str, tuple[str, str]] = {
    "GetTicker": ("ticker", ONE),
    "GetDepth": ("depth", ONE),
    "GetTrades": ("trades", ONE),
    "GetRecords": ("records", ONE),
    "GetTickers": ("tickers", MANY),
    "GetMarkets": ("markets", MANY),
    "GetAccount": ("accounts", MANY),
    "GetAssets": ("assets", MANY),
    "CreateOrder": ("trade", ONE),
    "CancelOrder": ("cancel", ONE),
    "GetOrder": ("order", ONE),
    "GetOrders": ("orders", ONE),
    "GetHistoryOrders": ("historyorders", ONE),
    "GetPositions": ("positions", ONE),
    "SetMarginLevel": ("setmarginlevel", ONE),
    "GetFundings": ("fundings", ONE),
}
WITHOUT_SYMBOL = ("GetOrders", "GetHistoryOrders", "GetPositions", "GetFundings")  # also judged with no symbol
TABLE_FUNCTIONS = tuple(f for f in FUNCTIONS if f not in ("GetMarkets", "GetAssets"))
MARKS = {NATIVE: "✓", FALLBACK: "◐", UNSUPPORTED: "·"}
GENERATED = "(generated: python -m gateway.capabilities --update README.md)"
CASES = {ANY: "", ONE: "one instrument", MANY: "no symbol, or a range"}


def capability_report(exchange_or_venue: str | Venue, markets: dict | None = None, exchange: Any = None) -> dict:
    """The capability report of a ccxt exchange id or a configured route (Venue).

    `markets` (the route's loaded ccxt markets) adds market counts and judges the groups the
    route really lists; without them, the groups ccxt says the exchange has. `exchange` is a
    client to read `has` / `features` from (default: one built offline, no network)."""
    venue = exchange_or_venue if isinstance(exchange_or_venue, Venue) else None
    exchange_id = venue.ccxt_id if venue else str(exchange_or_venue)
    if exchange is None:
        exchange = _offline_client(venue, exchange_id)
    groups = route_groups(markets) if markets else offline_groups(exchange)
    functions = {}
    for function, (method, case) in FUNCTIONS.items():
        functions[function] = {"method": method, **judge(exchange, function, groups, case)}
        if function in WITHOUT_SYMBOL:
            functions[function]["without_symbol"] = judge(exchange, function, groups, MANY)["status"]
            functions[function]["symbol_required"] = symbol_required(exchange, function, groups)
    report: dict[str, Any] = {
        "exchange": exchange_id,
        "name": getattr(exchange, "name", exchange_id),
        "route": venue.route if venue else exchange_id,
        "ccxt_version": getattr(ccxt_async, "__version__", "?"),
        "groups": [group_name(g) for g in groups],
        "functions": functions,
        "credentials": credentials_of(exchange),
        "sandbox": {"available": bool((exchange.urls or {}).get("test"))},
    }
    if venue is not None:
        report["sandbox"]["enabled"] = venue.sandbox
    if markets:
        counts = Counter((m.get("type") or "spot") for m in markets.values())
        report["markets"] = {"total": len(markets), **dict(sorted(counts.items()))}
    return report


def route_report(gateway: Any, route: str) -> dict:
    """`GET /capabilities/<route>`: the report of a route the gateway serves (`gateway` is
    dispatch.Gateway), with market counts once the route's markets are loaded. UnknownRoute
    (kind BadRequest) for a route it does not serve."""
    venue = gateway.venues.get(route)
    scope = gateway.pool.scopes.get(venue.market_scope)
    markets = scope.index.markets if scope is not None and scope.index is not None else None
    return capability_report(venue, markets=markets)


def cli(exchange_id: str | None = None) -> int:
    """`fmz-gateway exchanges --capabilities [id]`: one exchange's report as JSON, else the table."""
    return main([exchange_id] if exchange_id else ["--markdown"])


def judge(exchange: Any, function: str, groups: list[Group], case: str) -> dict:
    """Best status over the groups, the ccxt calls used there, and the status per group."""
    per_group = {}
    for group in groups:
        rows = usable_rows(exchange, function, group, case)
        first = _first_row(function, group, case)
        status = UNSUPPORTED if not rows else NATIVE if rows[0] is first else FALLBACK
        per_group[group_name(group)] = {"status": status, "via": [row.ccxt for row in rows]}
    best = max((g["status"] for g in per_group.values()), key=RANK.__getitem__, default=UNSUPPORTED)
    via = next((g["via"] for g in per_group.values() if g["status"] == best), [])
    return {"status": best, "via": via, "groups": per_group}


def symbol_required(exchange: Any, function: str, groups: list[Group]) -> list[str]:
    """The function's usable ccxt calls that ccxt's `features` say need a symbol (group: method);
    the gateway still tries them without one (ccxt refuses with ArgumentsRequired where it must)."""
    return [
        f"{group_name(group)}: {row.ccxt}"
        for group in groups
        for row in usable_rows(exchange, function, group, MANY)
        if row.symbol_required(exchange, group)
    ]


def _first_row(function: str, group: Group, case: str) -> Any:
    return next((row for row in TABLES[function] if row.when in (ANY, case)), None)


def offline_groups(exchange: Any) -> list[Group]:
    """The market groups ccxt says the exchange has (`has` for the type; `features` for linear /
    inverse where it describes them, else linear)."""
    has = exchange.has
    features = getattr(exchange, "features", None) or {}
    groups: list[Group] = []
    if has.get("spot"):
        groups.append(("spot", None))
    for kind in ("swap", "future"):
        if not has.get(kind):
            continue
        described = features.get(kind) if isinstance(features.get(kind), dict) else {}
        subs = [s for s in ("linear", "inverse") if described.get(s)] or ["linear"]
        groups.extend((kind, s) for s in subs)
    return [g for g in GROUP_ORDER if g in groups]


def credentials_of(exchange: Any) -> dict:
    """ccxt's required credential fields, and how to write them in FMZ (gateway.credentials)."""
    required = [field for field, needed in (exchange.requiredCredentials or {}).items() if needed]
    form = credential_forms(exchange.id)
    return {"required": required, "how_to_write": form["how_to_write"], "form": form}


def _offline_client(venue: Venue | None, exchange_id: str) -> Any:
    if venue is not None:
        from gateway.venues import build_exchange

        return build_exchange(venue, {})
    exchange_class = getattr(ccxt_async, exchange_id, None)
    if exchange_class is None or exchange_id not in ccxt_async.exchanges:
        raise ValueError(f"{exchange_id!r} is not a ccxt exchange id")
    return exchange_class({})


def all_reports() -> list[dict]:
    return [capability_report(exchange_id) for exchange_id in ccxt_async.exchanges]


def totals(reports: list[dict]) -> dict[str, dict[str, int]]:
    """{FMZ function: {native, fallback, unsupported}} over the reports."""
    counted: dict[str, dict[str, int]] = {}
    for function in FUNCTIONS:
        statuses = Counter(report["functions"][function]["status"] for report in reports)
        counted[function] = {status: statuses.get(status, 0) for status in (NATIVE, FALLBACK, UNSUPPORTED)}
    return counted


def render_table(reports: list[dict]) -> str:
    """The README's capability table: one row per exchange, one column per FMZ function."""
    header = ["exchange", *TABLE_FUNCTIONS, "sandbox", "credentials"]
    lines = [
        f"{MARKS[NATIVE]} native (the table's preferred ccxt call); {MARKS[FALLBACK]} through a fallback (a later "
        f"row of the function's table); {MARKS[UNSUPPORTED]} unsupported. Judged with one instrument named (GetTickers "
        "and GetAccount without); per market type and without a symbol in `GET /capabilities/<route>`. "
        f"`sandbox`: ccxt knows a testnet. `credentials`: ccxt's required fields. "
        f"ccxt {getattr(ccxt_async, '__version__', '?')}, {len(reports)} exchanges.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for report in reports:
        marks = [MARKS[report["functions"][f]["status"]] for f in TABLE_FUNCTIONS]
        sandbox = "yes" if report["sandbox"]["available"] else ""
        required = ", ".join(report["credentials"]["required"])
        lines.append("| " + " | ".join([report["exchange"], *marks, sandbox, required]) + " |")
    count = totals(reports)
    summary = [f"{sum(c[s] for f, c in count.items() if f in TABLE_FUNCTIONS)} {s}" for s in MARKS]
    lines += ["", f"Totals over {len(reports)} exchanges x {len(TABLE_FUNCTIONS)} functions: {', '.join(summary)}."]
    return "\n".join(lines) + "\n"


def render_fallbacks() -> str:
    """The README's table of tables: each FMZ function's ccxt calls, in order of preference."""
    lines = ["| FMZ function | ccxt calls, in order of preference |", "|---|---|"]
    for function, rows in TABLES.items():
        steps = []
        for row in rows:
            notes = [n for n in (CASES[row.when], row.note) if n]
            steps.append(f"`{row.ccxt}`" + (f" ({'; '.join(notes)})" if notes else ""))
        lines.append(f"| {function} | {' → '.join(steps)} |")
    return "\n".join(lines) + "\n"


def updated_readme(text: str, blocks: dict[str, str]) -> str:
    """`text` with each generated block (between its markers) replaced by its new content."""
    for name, content in blocks.items():
        begin, end = f"<!-- {name}:begin {GENERATED} -->", f"<!-- {name}:end -->"
        head, found, rest = text.partition(begin)
        _, closed, tail = rest.partition(end)
        if not found or not closed:
            raise ValueError(f"README has no {begin!r} ... {end!r} section")
        text = f"{head}{begin}\n{content}{end}{tail}"
    return text


def readme_blocks() -> dict[str, str]:
    return {"fallbacks": render_fallbacks(), "capabilities": render_table(all_reports())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.capabilities", description=__doc__.split("\n\n")[0])
    parser.add_argument("exchange", nargs="?", help="a ccxt exchange id: its report as JSON")
    parser.add_argument("--markdown", action="store_true", help="the table of every ccxt exchange, as markdown")
    parser.add_argument("--update", metavar="README", help="rewrite the generated tables of this README in place")
    args = parser.parse_args(argv)
    if args.exchange:
        try:
            print(json.dumps(capability_report(args.exchange.lower()), indent=2, ensure_ascii=False))
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    if args.update:
        with open(args.update, encoding="utf-8") as handle:
            text = handle.read()
        with open(args.update, "w", encoding="utf-8") as handle:
            handle.write(updated_readme(text, readme_blocks()))
        return 0
    print(render_table(all_reports()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
