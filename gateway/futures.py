"""Derivatives FMZ methods: positions, margin level, funding rates and the older `io` form."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import ccxt.async_support as ccxt

from gateway import convert
from gateway.calls import Call
from gateway.errors import BadRequest, in_context, not_supported
from gateway.fallbacks import Ask, Group, answer, group_of, route_groups, scopes, usable_rows
from gateway.protocol import int_param
from gateway.symbols import NAMED_CONTRACTS, RELATIVE_CONTRACTS, FmzSymbol, SymbolRange, parse_symbol

DEFAULT_FUNDING_INTERVAL_MS = 8 * 3600_000
INTERVAL_RETRY_AFTER = 60.0
MAX_LEVERAGE = 1000
DIRECTIONS = ("buy", "sell", "closebuy", "closesell")


async def positions(call: Call) -> tuple[Any, Any]:
    """GetPositions: one contract, a range, or (no symbol) every contract account of the route,
    one request per account ccxt tells apart (linear / inverse, swap / future), unless
    SetContractType named a contract kind or one contract."""
    selector = call.symbol_param(required=False)
    if isinstance(selector, FmzSymbol):
        market = _contract_market(call, selector)
        symbol = market["symbol"]
        ask = Ask(group_of(market), symbol=symbol, scoped=True)
        result = [p for p in await answer(call, "GetPositions", ask) if p.get("symbol") == symbol]
    else:
        if isinstance(selector, SymbolRange):
            chosen = call.index.select(selector)
            groups = [group_of(chosen[0])] if chosen else []
        else:
            groups = contract_groups(call)
        asks = [Ask(group, whole=True, scoped=True) for group, _ in scopes(call.exchange, "fetchPositions", groups)]
        listings = await asyncio.gather(*(answer(call, "GetPositions", ask) for ask in asks))
        result = _distinct_positions(p for listing in listings for p in listing)
        if isinstance(selector, SymbolRange):
            result = [p for p in result if selector.matches(call.index.markets.get(p.get("symbol") or "", {}))]
    unreadable = [p for p in result if p.get("contracts") is None and p.get("entryPrice")]
    if unreadable:  # an open position whose size ccxt could not read: never answered as "no position"
        symbols = ", ".join(sorted({str(p.get("symbol")) for p in unreadable}))
        raise ccxt.BadResponse(f"{call.exchange_id} lists a position in {symbols} whose size ccxt cannot read")
    open_positions = [p for p in result if convert.num(p.get("contracts"))]
    data = []
    for position in open_positions:
        market = call.index.markets.get(position.get("symbol") or "", {})
        fmz_symbol = call.index.fmz_symbol_for(position.get("symbol"))
        contract_type = call.index.contract_type(market) if market else "swap"
        leverage = None
        if convert.position_leverage(position) is None:  # binance v3 positionRisk omits it
            leverage = await _known_leverage(call, position.get("symbol")) or convert.implied_leverage(position)
        data.append(convert.to_fmz_position(position, fmz_symbol, contract_type, leverage))
    return data, [p.get("info") for p in open_positions]


def _distinct_positions(found: Any) -> list[dict]:
    """Positions from several listings, each once (two account scopes may reach one endpoint)."""
    seen, result = set(), []
    for position in found:
        key = (position.get("symbol"), position.get("side"), str(position.get("id")))
        if key not in seen:
            seen.add(key)
            result.append(position)
    return result


def narrowed_groups(call: Call) -> list[Group] | None:
    """The market groups SetContractType narrowed listings to (None: it did not): `spot`, the
    route's swaps, its delivery futures (a relative name), or the one contract it named."""
    contract = call.state.contract_type if call.state is not None else None
    if contract is None:
        return None
    if contract == "spot":
        return [("spot", None)]
    listed = route_groups(call.index.markets)
    if contract == "swap":
        return [g for g in listed if g[0] == "swap"] or [("swap", "linear")]
    if contract in RELATIVE_CONTRACTS:
        return [g for g in listed if g[0] == "future"] or [("future", "linear")]
    pinned = pinned_market(call)
    return [group_of(pinned)] if pinned is not None else None


def contract_groups(call: Call) -> list[Group]:
    """The contract groups a listing without a symbol covers (positions)."""
    narrowed = [g for g in narrowed_groups(call) or [] if g[0] != "spot"]
    return narrowed or [g for g in route_groups(call.index.markets) if g[0] != "spot"]


def account_groups(call: Call) -> list[Group]:
    """The account(s) FMZ means by a private call without a symbol (GetAccount, GetOrders,
    GetHistoryOrders): what SetContractType chose, else the route's own default (a swap route),
    else spot, or on a contracts-only exchange (ccxt: no spot; the route lists none) its contracts."""
    narrowed = narrowed_groups(call)
    if narrowed:
        return narrowed
    listed = route_groups(call.index.markets)
    if call.default_contract == "swap":
        return [g for g in listed if g[0] == "swap"] or [("swap", "linear")]
    if ("spot", None) in listed or call.exchange.has.get("spot") or not listed:  # ccxt: the class has spot
        return [("spot", None)]
    return [g for g in listed if g[0] != "spot"]


def pinned_market(call: Call) -> dict | None:
    """The one contract SetContractType named by its code (BTCUSD_PERP, BTC-USD-SWAP), if it did."""
    contract = call.state.contract_type if call.state is not None else None
    if not contract or contract in NAMED_CONTRACTS:
        return None
    memo_key = ("market_by_code", contract.upper())
    if memo_key not in call.index.memo:
        code = contract.upper()
        found = [
            m
            for m in call.index.markets.values()
            if m.get("contract") and code in (str(m.get("id")).upper(), str(m.get("symbol")).upper())
        ]
        call.index.memo[memo_key] = found[0] if len(found) == 1 else None
    market = call.index.memo[memo_key]
    return market if isinstance(market, dict) else None


async def _known_leverage(call: Call, symbol: str | None) -> float | None:
    """Leverage for a position that does not report it: the exchange's setting for the symbol."""
    if not symbol:
        return None
    if not call.has("fetchLeverage"):
        return None
    try:
        setting = await call.read(None, lambda: call.exchange.fetch_leverage(symbol))
    except Exception:  # leverage is informative here; the position itself is already known
        return None
    return setting.get("longLeverage") or setting.get("shortLeverage")


def _contract_market(call: Call, symbol: FmzSymbol) -> dict:
    market, fmz_symbol = call.market_of(symbol)
    if not market.get("contract"):
        raise BadRequest(f"{fmz_symbol} is spot; positions, leverage and funding need a contract such as BTC_USDT.swap")
    return market


async def set_margin_level(call: Call) -> tuple[Any, Any]:
    name = "marginLevel" if "marginLevel" in call.params else "level" if "level" in call.params else "leverage"
    level = int_param(call.params, name, required=True)
    if not 1 <= level <= MAX_LEVERAGE:
        raise BadRequest(f"param '{name}' must be 1..{MAX_LEVERAGE}, got {level}")
    symbol = call.symbol_param(required=True)
    if isinstance(symbol, SymbolRange):
        raise BadRequest("SetMarginLevel needs one contract, not a range")
    market = _contract_market(call, symbol)
    if not usable_rows(call.exchange, "SetMarginLevel", group_of(market)):
        raise not_supported("SetMarginLevel", call.exchange_id)
    async with leverage_lock(call, market["symbol"]):  # the key's orders for this contract wait for it
        try:
            result = await change_leverage(call, level, market["symbol"])
        except ccxt.BaseError as exc:
            if not await leverage_already_at(call, market["symbol"], level, exc):
                raise
            result = None
        if call.state is not None:  # an explicit level wins over a pending io SetMarginLevel
            call.state.leverage_settled.add(market["symbol"])
    return True, result if isinstance(result, dict | list) else None


DEFAULT_MARGIN_MODE = "cross"  # where ccxt insists on naming one: FMZ's default margin mode


async def change_leverage(call: Call, level: int, symbol: str) -> Any:
    """ccxt's set_leverage; where ccxt refuses it without a margin mode (poloniex, raised before
    anything is sent), again with the cross margin mode FMZ uses by default."""
    try:
        return await call.exchange.set_leverage(level, symbol)
    except ccxt.ArgumentsRequired as exc:
        if "marginmode" not in str(exc).lower():
            raise
        return await call.exchange.set_leverage(level, symbol, {"marginMode": DEFAULT_MARGIN_MODE})


async def leverage_already_at(call: Call, symbol: str, level: int, failure: Exception) -> bool:
    """A refused change to the level already set is done, as FMZ answers it (Bybit 110043
    "leverage not modified" arrives as BadRequest): ccxt's NoChange, or the exchange's own current
    leverage read back where it can tell."""
    if isinstance(failure, ccxt.NoChange):
        return True
    if isinstance(failure, ccxt.NetworkError) or not call.has("fetchLeverage"):
        return False
    try:
        current = await call.read(None, lambda: call.exchange.fetch_leverage(symbol))
    except ccxt.BaseError:
        return False
    levels = {convert.num(current.get(side)) for side in ("longLeverage", "shortLeverage")} - {0}
    return levels == {level}


@contextlib.asynccontextmanager
async def leverage_lock(call: Call, symbol: str) -> AsyncIterator[None]:
    """Held while a key changes a contract's leverage: its orders for that contract wait for it."""
    locks: dict = call.exchange.__dict__.setdefault("_gateway_leverage_locks", {})
    lock = locks.get(symbol)
    if lock is None:
        lock = locks[symbol] = asyncio.Lock()
    async with lock:
        yield


async def apply_pending_leverage(call: Call, market: dict) -> None:
    """A SetMarginLevel that arrived (io code 0) without a symbol applies before the next opening order.

    Called under `leverage_lock`: a concurrent order waits for the change instead of trading at
    the old leverage. A level the exchange refuses fails one order, with the reason, and later orders
    trade at the contract's current level; a change that failed on the way is tried again."""
    state = call.state
    if state is None or state.margin_level is None or not call.has("setLeverage"):
        return
    symbol = market["symbol"]
    if symbol in state.leverage_settled:
        return
    try:
        await change_leverage(call, state.margin_level, symbol)
    except ccxt.BaseError as exc:
        if not await leverage_already_at(call, symbol, state.margin_level, exc):
            if isinstance(exc, ccxt.ExchangeError):  # the exchange answered no: later orders trade as it is
                state.leverage_settled.add(symbol)
            context = f"SetMarginLevel({state.margin_level}) failed for {symbol}, so the order was not sent"
            raise in_context(exc, context) from None
    state.leverage_settled.add(symbol)  # set (or already at it); a network failure leaves it pending


async def fundings(call: Call) -> tuple[Any, Any]:
    """GetFundings: one contract, a range, or (no symbol) every swap of the route (one request per
    account ccxt tells apart, e.g. Binance USDⓈ-M and COIN-M)."""
    selector = call.symbol_param(required=False)
    if isinstance(selector, FmzSymbol):
        market = _contract_market(call, selector)
        rates = [await answer(call, "GetFundings", Ask(group_of(market), symbol=market["symbol"], shared=True))]
    else:
        if isinstance(selector, SymbolRange):
            chosen = call.index.select(selector)
            asks = [Ask(group_of(chosen[0]), symbols=tuple(m["symbol"] for m in chosen), shared=True)] if chosen else []
        else:
            groups = [g for g in route_groups(call.index.markets) if g[0] == "swap"]
            chosen = [m for m in call.index.markets.values() if m.get("type") == "swap" and group_of(m) in groups]
            asks = [
                Ask(group, symbols=tuple(m["symbol"] for m in chosen if group_of(m) == group), whole=True, scoped=True)
                for group, _ in scopes(call.exchange, "fetchFundingRates", groups)
            ]
        found: dict[str, dict] = {}
        for answered in await asyncio.gather(*(answer(call, "GetFundings", replace(a, shared=True)) for a in asks)):
            found.update(answered)
        wanted = {m["symbol"] for m in chosen}
        rates = [rate for symbol, rate in found.items() if symbol in wanted]
    lacking = {
        "inverse" if call.index.markets.get(r.get("symbol") or "", {}).get("inverse") else "linear"
        for r in rates
        if _interval_ms(call, r.get("interval")) is None
    }
    known: dict[str, int] = {}
    for sub_type in sorted(lacking):  # at most one lookup per kind and call, whatever the number of rates
        known.update(await _exchange_intervals(call, sub_type))
    data = []
    for rate in rates:
        fmz_symbol = call.index.fmz_symbol_for(rate.get("symbol"))
        interval = _interval_ms(call, rate.get("interval"))
        if interval is None:
            interval = known.get(rate.get("symbol"), DEFAULT_FUNDING_INTERVAL_MS)
        data.append(convert.to_fmz_funding(rate, fmz_symbol, interval))
    return data, [r.get("info") for r in rates]


def _interval_ms(call: Call, interval: Any) -> int | None:
    if isinstance(interval, str) and interval:
        try:
            return int(call.exchange.parse_timeframe(interval)) * 1000
        except Exception:  # an interval ccxt cannot parse counts as not given
            return None
    return None


async def _exchange_intervals(call: Call, sub_type: str) -> dict[str, int]:
    """{symbol: interval ms} where funding rates omit it (binance lists only non-default intervals
    in fundingInfo); fetched once per loaded markets. Informative only: a failed lookup is not
    retried and not repeated for a minute (during a rate-limit episode it must cost nothing)."""
    if not call.has("fetchFundingIntervals"):
        return {}
    memo_key = ("funding_intervals", sub_type)
    cached = call.index.memo.get(memo_key)
    if isinstance(cached, tuple):  # (retry after, {}) from a failed lookup
        if time.monotonic() < cached[0]:
            return cached[1]
    elif cached is not None:
        return cached
    try:
        found = await call.exchange.fetch_funding_intervals(None, {"subType": sub_type})
    except Exception:  # FMZ's default interval applies meanwhile
        call.index.memo[memo_key] = (time.monotonic() + INTERVAL_RETRY_AFTER, {})
        return {}
    intervals = {symbol: ms for symbol, item in found.items() if (ms := _interval_ms(call, item.get("interval")))}
    call.index.memo[memo_key] = intervals
    return intervals


async def io(call: Call) -> tuple[Any, Any]:
    """The older docker's `io` form: 0 SetMarginLevel, 1 SetDirection, 2 SetContractType, 3 GetPosition."""
    source = call.params if "code" in call.params else call.envelope.extra
    code = int_param(source, "code", required=True)
    args = source.get("args") or []
    if not isinstance(args, list):
        raise BadRequest("io: 'args' must be a list")
    state = call.state
    if state is None:
        raise BadRequest("io calls need an access_key: the contract and direction are kept per key")
    if any(not isinstance(arg, str | int | float) or isinstance(arg, bool) for arg in args):
        raise BadRequest("io: 'args' must hold strings or numbers")
    if code == 0:
        level = int_param({"level": args[0] if args else None}, "level", required=True)
        if not 1 <= level <= MAX_LEVERAGE:
            raise BadRequest(f"io SetMarginLevel: level must be 1..{MAX_LEVERAGE}, got {level}")
        state.margin_level = level
        state.leverage_settled.clear()
        if call.params.get("symbol"):
            call.params["marginLevel"] = level
            return await set_margin_level(call)
        return True, None
    if code == 1:
        direction = str(args[0]).lower() if args else ""
        if direction not in DIRECTIONS:
            raise BadRequest(f"io SetDirection: expected one of {', '.join(DIRECTIONS)}, got {direction[:20]!r}")
        state.direction = direction
        return True, None
    if code == 2:
        contract = str(args[0]).strip() if args else ""
        if not contract or len(contract) > 64 or any(c in contract for c in " ,/"):
            raise BadRequest("io SetContractType: expected swap, this_week, ..., quarter or an exchange code")
        lowered = contract.lower()
        if "." in contract:  # a whole FMZ symbol (BTC_USD.swap): remember that contract by its code
            symbol = parse_symbol(contract)
            if not isinstance(symbol, FmzSymbol) or symbol.contract is None:
                raise BadRequest(f"io SetContractType: {contract[:64]!r} names no contract")
            state.contract_type = _contract_market(call, symbol)["symbol"]
            return True, None
        state.contract_type = lowered if lowered in NAMED_CONTRACTS else contract
        return True, None
    if code == 3:
        return await positions(call)
    raise BadRequest(f"io: unknown code {code} (0 SetMarginLevel, 1 SetDirection, 2 SetContractType, 3 GetPosition)")
