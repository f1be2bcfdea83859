"""FMZ functions -> ccxt calls, in order of preference, as data; and which account each call asks.

`TABLES` holds, per FMZ function, the ccxt calls that can answer it, best first. A row is used
when ccxt says the exchange has the method (`has`) and ccxt's `features` for the market's type
(`spot`, `swap.linear`, `future.inverse`, ...) do not rule it out (the method listed as `None`
for that type). A row that raises `ArgumentsRequired` or `NotSupported` when called hands over
to the next one (Bybit's fetchOrder on a unified account asks for `acknowledged` and suggests
fetchOpenOrder / fetchClosedOrder; the next rows are exactly those; a listing that needs a
symbol raises ArgumentsRequired before sending anything). `features`' `symbolRequired` is
reported, not obeyed: it overstates some exchanges (kucoin lists open orders without one).
`answer()` runs a table; `usable_rows()` is what the capability report (gateway/capabilities.py)
and GetRecords (gateway/candles.py, whose rows it runs itself) read, so the report cannot drift
from behaviour.

Accounts: ccxt picks the account a call without a symbol reaches from `options` (`defaultType`,
`defaultSubType`, or the method's own entry): Hyperliquid and Bybit default to swap, Binance to
spot and USDⓈ-M. `scope_params()` names the account FMZ means (`type`, `subType`) wherever it
differs from ccxt's default and the ccxt method reads that param (learnt from ccxt's source
once per class, so a param the method ignores is never sent on to the exchange).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import ccxt.async_support as ccxt

from gateway.errors import BadRequest, not_supported

Group = tuple[str, str | None]  # ("spot", None), ("swap", "linear"), ("future", "inverse"), ...
GROUP_ORDER: tuple[Group, ...] = (
    ("spot", None),
    ("swap", "linear"),
    ("swap", "inverse"),
    ("future", "linear"),
    ("future", "inverse"),
)
ONE, MANY, ANY = "one", "many", "any"  # the call names one instrument / a group or all / either
MAX_PER_SYMBOL = 20  # instruments a per-instrument fallback asks for, at most, in one call
HISTORY_PAGE_CAP = 1000  # largest fetchOrders page where ccxt's features give no limit
HISTORY_FETCHES = 3  # requests one GetHistoryOrders makes, at most, to fill `limit` finished orders
DAY_MS = 86_400_000
MOVES_ON = (ccxt.ArgumentsRequired, ccxt.NotSupported)


def group_of(market: dict) -> Group:
    kind = market.get("type") or "spot"
    if kind in ("swap", "future", "option") or market.get("contract"):
        return kind, "inverse" if market.get("inverse") else "linear"
    return "spot", None


def group_name(group: Group) -> str:
    return group[0] if group[1] is None else f"{group[0]}.{group[1]}"


# --- ccxt facts ----------------------------------------------------------------------------------

_MISSING = object()


def feature(exchange: Any, group: Group, method: str, param: str | None = None) -> Any:
    """ccxt's `features` entry for `method` (or one of its params) on the group's markets.

    `_MISSING` where ccxt states nothing (no features, no such type, no such key); `None` where
    ccxt states the method is unavailable for that type."""
    features = getattr(exchange, "features", None)
    if not isinstance(features, dict) or group[0] not in features:
        return _MISSING
    section = features[group[0]]
    if isinstance(section, dict) and group[1] is not None:
        section = section.get(group[1])
    if not isinstance(section, dict) or method not in section:
        return _MISSING  # a market type ccxt does not describe (None) says nothing either
    entry = section[method]
    if param is None or entry is None:
        return entry
    return entry.get(param, _MISSING) if isinstance(entry, dict) else _MISSING


def stated_limit(exchange: Any, group: Group, method: str, default: int) -> int:
    """`features`' `limit` of `method` (the most items one request returns) for the group, else `default`."""
    limit = feature(exchange, group, method, "limit")
    return int(limit) if isinstance(limit, int | float) and limit > 0 else default


def snake(method: str) -> str:
    """ccxt's Python name of a unified method (`fetchOpenOrders` -> `fetch_open_orders`)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()


_READS_MARKERS = {
    "type": ("handle_market_type_and_params", "params, 'type'", "[params.type]"),
    "subType": ("handle_sub_type_and_params", "params, 'subType'", "[params.subType]"),
}
_SELF_CALL = re.compile(r"self\.(\w+)\(")
_READS: dict[tuple[type, str, str], bool] = {}


def reads_param(exchange: Any, method: str, param: str) -> bool:
    """Whether ccxt's `method` of this exchange class reads `params[param]` (itself or through the
    class's own helpers): only then does passing it pick an account rather than reach the
    exchange as an unknown parameter. Learnt once per class from ccxt's source."""
    key = (type(exchange), method, param)
    if key not in _READS:
        _READS[key] = _source_reads(type(exchange), snake(method), _READS_MARKERS[param], 3, set())
    return _READS[key]


def _source_reads(cls: type, name: str, markers: tuple[str, ...], depth: int, seen: set[str]) -> bool:
    source = _own_source(cls, name)
    if source is None:
        return False
    if any(marker in source for marker in markers):
        return True
    if depth == 0:
        return False
    for called in set(_SELF_CALL.findall(source)) - seen:
        seen.add(called)
        if _source_reads(cls, called, markers, depth - 1, seen):
            return True
    return False


def _own_source(cls: type, name: str) -> str | None:
    """Source of `name` as the exchange class (not ccxt's base Exchange) defines it."""
    for klass in cls.__mro__:
        if klass.__module__.startswith(("ccxt.base", "ccxt.async_support.base")) or klass is object:
            return None
        function = klass.__dict__.get(name)
        if function is not None:
            try:
                return inspect.getsource(function)
            except (OSError, TypeError):
                return None
    return None


def scope_params(exchange: Any, method: str, group: Group) -> dict:
    """Params that make `method` (called without a symbol) reach the group's account or markets:
    `type` / `subType` where they differ from what ccxt would pick and the method reads them."""
    params: dict[str, str] = {}
    default_type, _ = exchange.handle_market_type_and_params(method, None, {})
    if group[0] != default_type and reads_param(exchange, method, "type"):
        params["type"] = group[0]
    if group[1] is not None:
        default_sub_type, _ = exchange.handle_sub_type_and_params(method, None, {}, "linear")
        if group[1] != default_sub_type and reads_param(exchange, method, "subType"):
            params["subType"] = group[1]
    return params


def scopes(exchange: Any, method: str, groups: list[Group]) -> list[tuple[Group, dict]]:
    """One (group, params) per distinct request `method` needs to cover `groups`."""
    found: dict[tuple, tuple[Group, dict]] = {}
    for group in groups:
        params = scope_params(exchange, method, group)
        found.setdefault(tuple(sorted(params.items())), (group, params))
    return list(found.values())


def route_groups(markets: dict) -> list[Group]:
    present = {group_of(m) for m in markets.values() if (m.get("type") or "spot") != "option"}
    return [g for g in GROUP_ORDER if g in present]


# --- the tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """What one FMZ call asks of ccxt, whichever row answers it."""

    group: Group
    symbol: str | None = None  # the one instrument (ccxt symbol)
    symbols: tuple[str, ...] = ()  # several instruments, for MANY asks that name them
    whole: bool = False  # MANY: everything in the group's account (ccxt gets no symbol list)
    order_id: str | None = None
    since: int | None = None
    limit: int | None = None
    scoped: bool = False  # name the group's account (scope_params) to each ccxt call
    shared: bool = False  # a public read: identical concurrent asks share one upstream request

    @property
    def case(self) -> str:
        return ONE if self.symbol is not None else MANY


class NotHere(Exception):
    """A row looked and the order is not among what it sees: the next row may know it."""


Asker = Callable[[Any, Ask], Awaitable[Any]]


@dataclass(frozen=True)
class Row:
    ccxt: str  # the ccxt unified method, as `has` and `features` name it
    ask: Asker | None  # None: the handler outside this module runs it (GetRecords, orders, ...)
    when: str = ANY  # ONE, MANY or ANY: the calls this row answers
    per_symbol: bool = False  # asked once per instrument, for at most MAX_PER_SYMBOL of them
    final_miss: bool = True  # OrderNotFound from this row is the answer (else the next row looks)
    native_only: bool = False  # ccxt's 'emulated' does not count (it would be a weaker fallback)
    note: str = ""

    def usable(self, exchange: Any, group: Group, case: str) -> bool:
        has = exchange.has.get(self.ccxt)
        if not has or (self.native_only and has == "emulated"):
            return False
        if self.when not in (ANY, case):
            return False
        # ccxt's `symbolRequired` does not rule a row out: where the method really needs a symbol,
        # ccxt raises ArgumentsRequired before sending anything (and the next row is tried), and
        # where features overstate it (kucoin lists every open order without one) the call works.
        return feature(exchange, group, self.ccxt) is not None  # None: ccxt says not for this market type

    def symbol_required(self, exchange: Any, group: Group) -> bool:
        """ccxt's `symbolRequired` for this row's method (a per-instrument row always has one)."""
        return not self.per_symbol and feature(exchange, group, self.ccxt, "symbolRequired") is True

    def fans_out_to(self, ask: Ask) -> bool:
        """A per-instrument row serves an ask naming at most MAX_PER_SYMBOL instruments."""
        return not self.per_symbol or (not ask.whole and 0 < len(ask.symbols) <= MAX_PER_SYMBOL)


async def _read(call: Any, ask: Ask, key: tuple, factory: Callable[[], Awaitable[Any]]) -> Any:
    return await call.read(key if ask.shared else None, factory)


def ask_params(call: Any, ask: Ask, method: str) -> dict:
    """The params that make `method` reach the ask's account (see scope_params), if it is scoped."""
    return scope_params(call.exchange, method, ask.group) if ask.scoped else {}


def params_key(params: dict, *parts: Any) -> tuple:
    """A shared read's key: `parts`, then the params it sends (sorted): asks of two accounts never share."""
    return (*parts, tuple(sorted(params.items())))


def _method(call: Any, row_method: str) -> Callable:
    return getattr(call.exchange, snake(row_method))


async def _each_symbol(call: Any, ask: Ask, one: Callable[[str], Awaitable[Any]]) -> dict:
    symbols = ask.symbols  # at most MAX_PER_SYMBOL: Row.fans_out_to
    answers = await asyncio.gather(*(one(symbol) for symbol in symbols))
    return dict(zip(symbols, answers, strict=True))


def _pick(found: dict, symbol: str, what: str, call: Any) -> Any:
    item = found.get(symbol)
    if item is None:
        raise ccxt.BadResponse(f"{call.exchange_id} answered {what} without {symbol}")
    return item


# One instrument, several, or each in turn (GetTicker / GetTickers, GetFundings)
def _one(kind: str, method: str) -> Asker:
    """`method(symbol)` for the ask's one instrument, keyed `(kind, symbol)`."""

    async def ask_one(call, ask):
        return await _read(call, ask, (kind, ask.symbol), lambda: _method(call, method)(ask.symbol))

    return ask_one


def _one_from_many(kind: str, method: str) -> Asker:
    """The plural `method` asked for the ask's one instrument, and its entry picked out."""

    async def ask_one(call, ask):
        found = await _read(call, ask, (kind, (ask.symbol,)), lambda: _method(call, method)([ask.symbol]))
        return _pick(found, ask.symbol, method, call)

    return ask_one


def _many(kind: str, method: str) -> Asker:
    """The plural `method` for the ask's instruments, or (whole) everything in the group's account."""

    async def ask_many(call, ask):
        symbols = None if ask.whole else list(ask.symbols)
        params = ask_params(call, ask, method)
        key = params_key(params, kind, None if ask.whole else ask.symbols)
        return await _read(call, ask, key, lambda: _method(call, method)(symbols, params))

    return ask_many


def _one_by_one(one: Asker) -> Asker:
    """`one` asked per instrument of the ask (at most MAX_PER_SYMBOL: Row.fans_out_to)."""

    async def each(call, ask):
        return await _each_symbol(call, ask, lambda s: one(call, replace(ask, symbol=s)))

    return each


_ticker = _one("ticker", "fetchTicker")
_funding = _one("funding", "fetchFundingRate")


# GetDepth
async def _order_book(call, ask):
    symbol, limit = ask.symbol, ask.limit

    async def fetch():
        try:
            return await call.exchange.fetch_order_book(symbol, limit)
        except (ccxt.BadRequest, ccxt.ExchangeError) as exc:
            if limit is None or isinstance(exc, ccxt.AuthenticationError | ccxt.BadSymbol | ccxt.NotSupported):
                raise
            # The exchange refused this size: its default depth is always accepted; the handler truncates.
            return await call.exchange.fetch_order_book(symbol)

    return await _read(call, ask, ("depth", symbol, limit), fetch)


async def _order_book_from_books(call, ask):
    found = await _read(
        call, ask, ("depths", ask.symbol, ask.limit), lambda: call.exchange.fetch_order_books([ask.symbol], ask.limit)
    )
    return _pick(found, ask.symbol, "fetchOrderBooks", call)


# GetTrades
async def _trades(call, ask):
    return await _read(
        call, ask, ("trades", ask.symbol, ask.limit), lambda: call.exchange.fetch_trades(ask.symbol, None, ask.limit)
    )


# GetAccount / GetAssets
async def _balance(call, ask):
    params = ask_params(call, ask, "fetchBalance")
    return await _read(call, ask, params_key(params, "balance"), lambda: call.exchange.fetch_balance(params))


# GetOrder
def _single_order(method: str) -> Asker:
    """`method(order_id, symbol)`: one order by its id."""

    async def ask_one(call, ask):
        return await call.read(None, lambda: _method(call, method)(ask.order_id, ask.symbol))

    return ask_one


def _scan_for_order(method: str) -> Asker:
    async def scan(call, ask):
        listed = await call.read(None, lambda: _method(call, method)(ask.symbol))
        for item in listed:
            if str(item.get("id")) == ask.order_id:
                return item
        raise NotHere(method)

    return scan


# GetOrders
async def _open_orders(call, ask):
    params = ask_params(call, ask, "fetchOpenOrders")
    return await call.read(None, lambda: call.exchange.fetch_open_orders(ask.symbol, None, None, params))


async def _open_among_orders(call, ask):
    params = ask_params(call, ask, "fetchOrders")
    listed = await call.read(None, lambda: call.exchange.fetch_orders(ask.symbol, None, None, params))
    return [o for o in listed if o.get("status") == "open"]


# GetHistoryOrders
def history_since(
    exchange: Any, group: Group, method: str, since: int | None, now_ms: int | None = None, days_key: str = "daysBack"
) -> int | None:
    """`since`, no further back than ccxt's `features` say the exchange keeps orders (`daysBack`,
    or `days_key`: `daysBackCanceled` for canceled ones)."""
    days = feature(exchange, group, method, days_key)
    if not isinstance(days, int | float) or days <= 0 or since is None:
        return since
    earliest = (now_ms or int(time.time() * 1000)) - int(days * DAY_MS)
    return max(since, earliest)


async def _finished_among_orders(call, ask):
    """fetchOrders lists open orders too, and the exchange applies `limit` before we drop them:
    while a full page leaves fewer than `limit` finished orders, ask again for a larger page
    (at most HISTORY_FETCHES requests, the last one for the largest page ccxt says it serves)."""
    cap = stated_limit(call.exchange, ask.group, "fetchOrders", HISTORY_PAGE_CAP)
    since = history_since(call.exchange, ask.group, "fetchOrders", ask.since)
    params = ask_params(call, ask, "fetchOrders")
    page, limit, finished = ask.limit, ask.limit, []
    for attempt in range(HISTORY_FETCHES):
        try:
            result = await call.read(None, lambda n=page: call.exchange.fetch_orders(ask.symbol, since, n, params))
        except ccxt.BadRequest:
            if attempt == 0:
                raise
            return finished  # the exchange refuses a page this large: what the smaller one had
        finished = [o for o in result if o.get("status") not in ("open", None)]
        if page is None or limit is None or len(finished) >= limit or len(result) < page:
            return finished
        if page >= cap:
            break
        grown = max(2 * page, page + limit - len(finished))
        page = cap if attempt == HISTORY_FETCHES - 2 else min(cap, grown)
    return finished


async def _canceled_and_closed(call, ask):
    since = history_since(call.exchange, ask.group, "fetchClosedOrders", ask.since)
    params = ask_params(call, ask, "fetchCanceledAndClosedOrders")
    return await call.read(
        None, lambda: call.exchange.fetch_canceled_and_closed_orders(ask.symbol, since, ask.limit, params)
    )


async def _closed_and_canceled(call, ask):
    since = history_since(call.exchange, ask.group, "fetchClosedOrders", ask.since)
    params = ask_params(call, ask, "fetchClosedOrders")
    closed = await call.read(None, lambda: call.exchange.fetch_closed_orders(ask.symbol, since, ask.limit, params))
    if not call.has("fetchCanceledOrders"):
        return closed
    canceled_since = history_since(call.exchange, ask.group, "fetchClosedOrders", since, days_key="daysBackCanceled")
    canceled_params = ask_params(call, ask, "fetchCanceledOrders")
    try:
        canceled = await call.read(
            None, lambda: call.exchange.fetch_canceled_orders(ask.symbol, canceled_since, ask.limit, canceled_params)
        )
    except MOVES_ON:  # listed in `has` but refused for this market or without a symbol: closed ones only
        return closed
    known = {str(o.get("id")) for o in closed}
    return closed + [o for o in canceled if str(o.get("id")) not in known]


# GetPositions
async def _positions(call, ask):
    symbols = [ask.symbol] if ask.symbol else None
    params = ask_params(call, ask, "fetchPositions")
    return await call.read(None, lambda: call.exchange.fetch_positions(symbols, params))


async def _positions_for_symbol(call, ask):
    return await call.read(None, lambda: call.exchange.fetch_positions_for_symbol(ask.symbol))


async def _position(call, ask):
    position = await call.read(None, lambda: call.exchange.fetch_position(ask.symbol))
    return [position] if position else []


TABLES: dict[str, tuple[Row, ...]] = {
    "GetTicker": (
        Row("fetchTicker", _ticker),
        Row("fetchTickers", _one_from_many("tickers", "fetchTickers"), note="asked for the one symbol"),
    ),
    "GetDepth": (
        Row("fetchOrderBook", _order_book),
        Row("fetchOrderBooks", _order_book_from_books, note="asked for the one symbol"),
    ),
    "GetTrades": (Row("fetchTrades", _trades),),
    "GetRecords": (
        Row("fetchOHLCV", None, native_only=True, note="not ccxt's emulated one"),
        Row("fetchTrades", None, note="bars built from public trades, gateway/candles.py"),
    ),
    "GetMarkets": (Row("fetchMarkets", None, note="loaded once per route, shared"),),
    "GetTickers": (
        Row("fetchTickers", _many("tickers", "fetchTickers"), note="one request per account type the route lists"),
        Row("fetchTicker", _one_by_one(_ticker), per_symbol=True, note=f"per instrument, at most {MAX_PER_SYMBOL}"),
    ),
    "GetAccount": (Row("fetchBalance", _balance),),
    "GetAssets": (Row("fetchBalance", _balance),),
    "CreateOrder": (Row("createOrder", None, note="gateway/trading.py"),),
    "GetOrders": (
        Row("fetchOpenOrders", _open_orders),
        Row("fetchOrders", _open_among_orders, note="open ones"),
    ),
    "GetOrder": (
        Row("fetchOrder", _single_order("fetchOrder")),
        Row("fetchOpenOrder", _single_order("fetchOpenOrder"), final_miss=False),
        Row("fetchClosedOrder", _single_order("fetchClosedOrder"), final_miss=False),
        Row("fetchOpenOrders", _scan_for_order("fetchOpenOrders"), note="scanned for the id"),
        Row("fetchClosedOrders", _scan_for_order("fetchClosedOrders"), note="scanned for the id"),
        Row("fetchCanceledOrders", _scan_for_order("fetchCanceledOrders"), note="scanned for the id"),
        Row("fetchOrders", _scan_for_order("fetchOrders"), note="scanned for the id"),
    ),
    "GetHistoryOrders": (
        Row("fetchOrders", _finished_among_orders, note="finished ones"),
        Row("fetchCanceledAndClosedOrders", _canceled_and_closed),
        Row("fetchClosedOrders", _closed_and_canceled, note="+ fetchCanceledOrders where the exchange has it"),
    ),
    "CancelOrder": (Row("cancelOrder", None, note="gateway/trading.py"),),
    "GetPositions": (
        Row("fetchPositions", _positions),
        Row("fetchPositionsForSymbol", _positions_for_symbol, when=ONE),
        Row("fetchPosition", _position, when=ONE),
    ),
    "SetMarginLevel": (Row("setLeverage", None, note="gateway/futures.py"),),
    "GetFundings": (
        Row("fetchFundingRate", _funding, when=ONE),
        Row("fetchFundingRates", _many("fundings", "fetchFundingRates"), note="asked for the symbols, or for all"),
        Row(
            "fetchFundingRate",
            _one_by_one(_funding),
            when=MANY,
            per_symbol=True,
            note=f"per instrument, at most {MAX_PER_SYMBOL}",
        ),
    ),
}
CONTRACT_ONLY = frozenset({"GetPositions", "SetMarginLevel", "GetFundings"})


def usable_rows(exchange: Any, function: str, group: Group, case: str = ONE) -> list[Row]:
    """The rows of `function`'s table this exchange can use for the group's markets, best first."""
    if function in CONTRACT_ONLY and group[0] == "spot":
        return []
    return [row for row in TABLES[function] if row.usable(exchange, group, case)]


async def answer(call: Any, function: str, ask: Ask) -> Any:
    """The first answer a usable row gives; ArgumentsRequired / NotSupported move on to the next row.

    NotSupported naming the FMZ function where no row is usable; BadRequest where the call names no
    instrument and every row asked for one (ArgumentsRequired); OrderNotFound where the rows that
    look for an order did not find it."""
    exchange = call.exchange
    usable = usable_rows(exchange, function, ask.group, ask.case)
    rows = [row for row in usable if row.fans_out_to(ask)]
    if not rows:
        if usable and not ask.whole:
            raise BadRequest(
                f"{function} on {call.exchange_id} asks one instrument per request: name at most {MAX_PER_SYMBOL}"
            )
        raise not_supported(function, call.exchange_id)
    moved_on: list[BaseException] = []
    for row in rows:
        assert row.ask is not None, f"{function}: row {row.ccxt} is run by its handler"
        try:
            return await row.ask(call, ask)
        except NotHere as exc:
            moved_on.append(exc)
        except ccxt.OrderNotFound as exc:
            if row.final_miss:
                raise
            moved_on.append(exc)
        except MOVES_ON as exc:
            moved_on.append(exc)
    if any(isinstance(exc, NotHere | ccxt.OrderNotFound) for exc in moved_on):
        looked = ", ".join(row.ccxt for row in rows)
        raise ccxt.OrderNotFound(f"{call.exchange_id} order {ask.order_id} not found (looked with {looked})")
    if ask.case == MANY and all(isinstance(exc, ccxt.ArgumentsRequired) for exc in moved_on):
        raise BadRequest(f"{function} on {call.exchange_id} needs a symbol ({moved_on[-1]})")
    raise moved_on[-1]


# --- orders: decisions for gateway/trading.py ------------------------------------------------------


def market_buy_by_cost(exchange: Any, market: dict) -> bool:
    """Whether a spot market buy can spend an amount of quote currency through ccxt's
    createMarketBuyOrderWithCost (else the gateway converts the amount at the ask).

    ccxt's own method counts (`has`), and so does ccxt's createMarketBuyOrderRequiresPrice option
    (ccxt then takes the amount as the cost). `features.createOrder.marketBuyByCost` false for the
    market's type overrides neither: it is about createOrder's `cost` param, not the method."""
    if market.get("contract"):
        return False
    if exchange.has.get("createMarketBuyOrderWithCost"):
        return True
    return exchange.options.get("createMarketBuyOrderRequiresPrice") is True


def market_buy_needs_price(exchange: Any, market: dict) -> bool:
    """Whether createOrder needs a price for a market buy (ccxt computes the cost as amount x price):
    `features.createOrder.marketBuyRequiresPrice` for the market's type, or ccxt's option."""
    required = feature(exchange, group_of(market), "createOrder", "marketBuyRequiresPrice")
    if required is True:
        return True
    return exchange.options.get("createMarketBuyOrderRequiresPrice") is True
