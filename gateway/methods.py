"""Spot FMZ methods: one small async handler each, answered through the ccxt calls of its table.

Each handler takes a `Call` and returns `(data, raw)`: `data` in FMZ's shape (convert.py),
`raw` the exchange's own reply as ccxt keeps it in `info`. Which ccxt call answers (and what
happens when the exchange lacks it or refuses it) is the FMZ function's table in fallbacks.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt

from gateway import convert, streams
from gateway.calls import Call
from gateway.errors import BadRequest
from gateway.fallbacks import GROUP_ORDER, Ask, Group, answer, ask_params, group_of, params_key, route_groups, scopes
from gateway.protocol import int_param
from gateway.symbols import FmzSymbol, SymbolRange

# Depths an exchange accepts, where it accepts only some (ask for the next size up, truncate).
DEPTH_SIZES = {
    ("binance", "spot"): (5, 10, 20, 50, 100, 500, 1000, 5000),
    ("binance", "contract"): (5, 10, 20, 50, 100, 500, 1000),
    ("binanceus", "spot"): (5, 10, 20, 50, 100, 500, 1000, 5000),
    ("binanceusdm", "contract"): (5, 10, 20, 50, 100, 500, 1000),
    ("binancecoinm", "contract"): (5, 10, 20, 50, 100, 500, 1000),
}


def now_ms() -> int:
    return int(time.time() * 1000)


async def ticker(call: Call) -> tuple[Any, Any]:
    market, fmz_symbol = call.market()
    streamed = await streams.fresh(call, "ticker", market)
    if streamed is not None:  # from the exchange's websocket, fresh, with both quotes (gateway/streams.py)
        result, source = streamed
        data = convert.to_fmz_ticker(result, fmz_symbol, now_ms(), market=market, exchange_id=call.exchange_id)
        return data, {"info": result.get("info"), "source": source}
    ask = Ask(group_of(market), symbol=market["symbol"], shared=True)
    lacks_quotes = ("ticker_lacks_bid_ask", market.get("type"))
    if call.index.memo.get(lacks_quotes) and call.has("fetchOrderBook"):  # both at once, as learnt
        result, book = await asyncio.gather(answer(call, "GetTicker", ask), _book_top(call, market))
        result = _with_best_prices(result, book)
    else:
        result = await answer(call, "GetTicker", ask)
        if (result.get("bid") is None or result.get("ask") is None) and call.has("fetchOrderBook"):
            call.index.memo[lacks_quotes] = True
            result = _with_best_prices(result, await _book_top(call, market))
    data = convert.to_fmz_ticker(result, fmz_symbol, now_ms(), market=market, exchange_id=call.exchange_id)
    return data, result.get("info")


async def _book_top(call: Call, market: dict) -> dict:
    limit = depth_fetch_limit(call.exchange.id, market, 5)
    return await answer(call, "GetDepth", Ask(group_of(market), symbol=market["symbol"], limit=limit, shared=True))


def _with_best_prices(ticker: dict, book: dict) -> dict:
    """Some tickers (binance futures 24hr) carry no bid/ask; FMZ's Buy/Sell come from the book top."""
    best_bid = book["bids"][0][0] if book.get("bids") else None
    best_ask = book["asks"][0][0] if book.get("asks") else None
    return {**ticker, "bid": ticker.get("bid") or best_bid, "ask": ticker.get("ask") or best_ask}


async def depth(call: Call) -> tuple[Any, Any]:
    market, _ = call.market()
    limit = int_param(call.params, "limit")
    if limit is not None and limit < 0:
        raise BadRequest("param 'limit' must be positive")
    limit = limit or None
    # Without a limit, REST answers the exchange's default depth: a streamed book is cut to the
    # depth REST gave for this market type, once learnt, so both answer the same number of levels.
    default_depth = ("rest_default_depth", market.get("type"))
    levels = limit or call.index.memo.get(default_depth)
    if levels:
        streamed = await streams.fresh(call, "depth", market, levels)
        if streamed is not None:  # from the exchange's websocket, fresh and consistent (gateway/streams.py)
            book, source = streamed
            return convert.to_fmz_depth(book, levels, now_ms()), {**_book_raw(book), "source": source}
    fetch_limit = depth_fetch_limit(call.exchange.id, market, limit)
    ask = Ask(group_of(market), symbol=market["symbol"], limit=fetch_limit, shared=True)
    book = await answer(call, "GetDepth", ask)
    if limit is None:
        call.index.memo[default_depth] = max(len(book.get("asks") or []), len(book.get("bids") or []), 1)
    return convert.to_fmz_depth(book, limit, now_ms()), _book_raw(book)


def depth_fetch_limit(exchange_id: str, market: dict, limit: int | None) -> int | None:
    if limit is None:
        return None
    sizes = DEPTH_SIZES.get((exchange_id, "spot" if market.get("spot") else "contract"))
    if not sizes:
        return limit
    return next((size for size in sizes if size >= limit), sizes[-1])


def _book_raw(book: dict) -> Any:
    return {"asks": book.get("asks"), "bids": book.get("bids"), "timestamp": book.get("timestamp")}


async def trades(call: Call) -> tuple[Any, Any]:
    market, _ = call.market()
    limit = int_param(call.params, "limit") or None
    streamed = await streams.fresh(call, "trades", market, limit)
    if streamed is not None:  # from the exchange's websocket, joined to REST's trades (gateway/tapes.py)
        result, source = streamed
        return convert.to_fmz_trades(result), {"source": source, "info": [t.get("info") for t in result]}
    result = await answer(call, "GetTrades", Ask(group_of(market), symbol=market["symbol"], limit=limit, shared=True))
    streams.offer(call, "trades", market, result, limit)
    return convert.to_fmz_trades(result), [t.get("info") for t in result]


async def markets(call: Call) -> tuple[Any, Any]:
    """GetMarkets: one instrument, a range, or (no symbol) the whole route: spot and contracts,
    unless SetContractType narrowed it. Built once per loaded markets and selector."""
    selector = call.symbol_param(required=False)
    if isinstance(selector, FmzSymbol):
        market = call.market_of(selector)[0]
        return _fmz_markets(call, [market]), None
    if isinstance(selector, SymbolRange):
        memo_key: tuple = ("markets", str(selector))
    else:
        memo_key = ("markets", None, tuple(_listing_groups(call)), _pinned_option(call))
    cached = call.index.memo.get(memo_key)
    if cached is None:
        chosen = call.index.select(selector) if isinstance(selector, SymbolRange) else listed_markets(call)
        cached = _fmz_markets(call, chosen)
        if cached:  # only real groups are kept: the memo stays as small as the exchange's own lists
            call.index.memo[memo_key] = cached
    return cached, None


def _fmz_markets(call: Call, chosen: list[dict]) -> dict:
    mode = call.exchange.precisionMode
    data = {}
    for market in chosen:
        fmz_symbol = call.index.fmz_symbol(market)
        data[fmz_symbol] = convert.to_fmz_market(market, fmz_symbol, mode)
    return data


def _listing_groups(call: Call) -> list[Group]:
    from gateway.futures import narrowed_groups

    return narrowed_groups(call) or route_groups(call.index.markets)


def listed_markets(call: Call) -> list[dict]:
    """What GetMarkets and GetTickers without a symbol cover: every spot and contract market of the
    route, or the groups SetContractType narrowed to (an option only when it names that option)."""
    pinned = _pinned_option(call)
    if pinned is not None:
        return [call.index.markets[pinned]]
    groups = set(_listing_groups(call))
    return [m for m in call.index.markets.values() if group_of(m) in groups and m.get("type") != "option"]


def _pinned_option(call: Call) -> str | None:
    """The option SetContractType named by its code, if it did (its ccxt symbol)."""
    from gateway.futures import pinned_market

    pinned = pinned_market(call)
    return pinned["symbol"] if pinned is not None and pinned.get("type") == "option" else None


async def tickers(call: Call) -> tuple[Any, Any]:
    """GetTickers: one instrument, a range, or the whole route (one request per account/market type
    the route lists, concurrently: fetchTickers answers one type per call on many exchanges)."""
    selector = call.symbol_param(required=False)
    if selector is None:
        wanted = listed_markets(call)
        groups = sorted({group_of(m) for m in wanted}, key=_group_rank)
        asks = [
            Ask(group, symbols=_symbols_of(wanted, group), whole=True, scoped=True, shared=True)
            for group, _ in scopes(call.exchange, "fetchTickers", groups)
        ]
    else:
        wanted = call.index.select(selector) if isinstance(selector, SymbolRange) else [call.market_of(selector)[0]]
        if not wanted:
            return [], []
        asks = [Ask(group_of(wanted[0]), symbols=tuple(m["symbol"] for m in wanted), shared=True)]
    if not asks:
        return [], []
    answers = await asyncio.gather(*(_tickers_with_quotes(call, ask) for ask in asks))
    symbols = [m["symbol"] for m in wanted]
    merged: dict[str, dict] = {}
    for found in answers:
        merged.update(found)
    data, raw, received = [], [], now_ms()
    for ccxt_symbol in symbols:
        item = merged.get(ccxt_symbol)
        if item is None:
            continue
        fmz_symbol = call.index.fmz_symbol_for(ccxt_symbol)
        market = call.index.markets.get(ccxt_symbol)
        try:
            data.append(convert.to_fmz_ticker(item, fmz_symbol, received, market=market, exchange_id=call.exchange_id))
        except ccxt.BadResponse:
            if len(symbols) == 1:  # the one instrument asked for: say why there is nothing
                raise
            continue  # a market without a price (not trading yet, halted) is left out, never zeroed
        raw.append(item.get("info"))
    return data, raw


def _group_rank(group: Group) -> int:
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def _symbols_of(markets: list[dict], group: Group) -> tuple[str, ...]:
    return tuple(m["symbol"] for m in markets if group_of(m) == group)


async def _tickers_with_quotes(call: Call, ask: Ask) -> dict:
    """One ask's tickers; where they lack bid/ask, the exchange's bids/asks listing fills them in."""
    result = await answer(call, "GetTickers", ask)
    if call.has("fetchBidsAsks") and any(t.get("bid") is None for t in result.values()):
        symbols = None if ask.whole else list(ask.symbols)
        params = ask_params(call, ask, "fetchBidsAsks")
        key = params_key(params, "bidsasks", None if ask.whole else ask.symbols)
        quotes = await call.read(key, lambda: call.exchange.fetch_bids_asks(symbols, params))
        result = {s: {**t, **_best_prices(quotes.get(s))} for s, t in result.items()}
    return result


def _best_prices(quote: dict | None) -> dict:
    if not quote:
        return {}
    return {k: quote[k] for k in ("bid", "ask") if quote.get(k) is not None}


async def accounts(call: Call) -> tuple[Any, Any]:
    return await _balances(call, "GetAccount")


async def assets(call: Call) -> tuple[Any, Any]:
    return await _balances(call, "GetAssets")


async def _balances(call: Call, fmz_function: str) -> tuple[Any, Any]:
    """[{currency, free, frozen}] of every currency held (GetAccount and GetAssets alike), from the
    account FMZ means: spot, or the derivatives account of the contract in use (SetContractType's,
    or `params.symbol`'s when the docker sends one)."""
    group = _balance_group(call)
    balance = await answer(call, fmz_function, Ask(group, scoped=True))
    rows = convert.to_fmz_balances(balance, call.exchange_id)
    if group[0] != "spot":  # a derivatives account: ccxt's total is the margin equity; the upnl is in the raw reply
        for row in rows:
            row["equity"] = convert.num((balance.get("total") or {}).get(row["currency"]))
            row["upnl"] = convert.unrealized_pnl(balance.get("info"), row["currency"])
    return rows, balance.get("info")


def _balance_group(call: Call) -> Group:
    from gateway.futures import account_groups, pinned_market

    market = pinned_market(call) or _symbol_market(call)
    if market is not None:
        return group_of(market)
    return account_groups(call)[0]


def _symbol_market(call: Call) -> dict | None:
    """The market `params.symbol` names, if the call carries one that resolves (else None)."""
    try:
        selector = call.symbol_param(required=False)
        return call.market_of(selector)[0] if isinstance(selector, FmzSymbol) else None
    except BadRequest:  # GetAccount takes no symbol in FMZ's protocol: an odd one changes nothing
        return None


async def orders(call: Call) -> tuple[Any, Any]:
    """GetOrders: open orders of one instrument, a range, or (no symbol) the account FMZ means."""
    result = await _order_listing(call, "GetOrders", "fetchOpenOrders")
    return [to_fmz_order(call, o) for o in result], [o.get("info") for o in result]


async def _order_listing(
    call: Call, function: str, method: str, since: int | None = None, limit: int | None = None
) -> list[dict]:
    selector = call.symbol_param(required=False)
    if isinstance(selector, FmzSymbol):
        market = call.market_of(selector)[0]
        ask = Ask(group_of(market), symbol=market["symbol"], since=since, limit=limit)
        return await answer(call, function, ask)
    if isinstance(selector, SymbolRange):
        chosen = call.index.select(selector)
        if not chosen:  # the exchange lists no such contracts: nothing to ask
            return []
        groups = [group_of(chosen[0])]
    else:
        from gateway.futures import account_groups

        groups = account_groups(call)
    scoped = scopes(call.exchange, method, groups)
    asks = [Ask(group, whole=True, since=since, limit=limit, scoped=True) for group, _ in scoped]
    listings = await asyncio.gather(*(answer(call, function, ask) for ask in asks))
    seen, result = set(), []
    for item in (o for listing in listings for o in listing):
        market = call.index.markets.get(item.get("symbol") or "", {})
        if isinstance(selector, SymbolRange) and not selector.matches(market):
            continue
        key = (item.get("symbol"), str(item.get("id")))
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


def to_fmz_order(call: Call, order: dict) -> dict:
    market = call.index.markets.get(order.get("symbol") or "")
    fmz_symbol = call.index.fmz_symbol_for(order.get("symbol"))
    contract_type = call.index.contract_type(market) if market else None
    return convert.to_fmz_order(order, fmz_symbol, contract_type, exchange_id=call.exchange_id)


async def order(call: Call) -> tuple[Any, Any]:
    order_id, market, _ = call.order_id_and_market()
    result = await fetch_order_by_id(call, order_id, market["symbol"])
    return to_fmz_order(call, result), result.get("info")


async def fetch_order_by_id(call: Call, order_id: str, symbol: str) -> dict:
    """One order by its exchange id (GetOrder, and settling a cancel whose answer was lost), through
    the GetOrder table: fetchOrder, fetchOpenOrder / fetchClosedOrder, then the order lists."""
    market = call.index.markets.get(symbol) or {"type": "spot"}
    return await answer(call, "GetOrder", Ask(group_of(market), symbol=symbol, order_id=order_id))


async def history_orders(call: Call) -> tuple[Any, Any]:
    selector = call.symbol_param(required=False)
    if isinstance(selector, SymbolRange):
        raise BadRequest("GetHistoryOrders needs one instrument, not a range")
    since = int_param(call.params, "since") or None
    limit = int_param(call.params, "limit") or None
    result = await _order_listing(call, "GetHistoryOrders", "fetchOrders", since, limit)
    result.sort(key=lambda o: o.get("timestamp") or 0)
    if limit:  # from `since` onwards: the oldest `limit`; without it, the newest
        result = result[:limit] if since else result[-limit:]
    return [to_fmz_order(call, o) for o in result], [o.get("info") for o in result]


# --- the method table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    handler: Callable[[Call], Awaitable[tuple[Any, Any]]]
    private: bool  # needs the caller's keys (a per-key client)
    fmz_name: str


def _registry() -> dict[str, Method]:
    from gateway.candles import records
    from gateway.futures import fundings, io, positions, set_margin_level
    from gateway.passthrough import api_passthrough
    from gateway.trading import cancel, trade

    table = {
        "ticker": Method(ticker, False, "GetTicker"),
        "depth": Method(depth, False, "GetDepth"),
        "trades": Method(trades, False, "GetTrades"),
        "records": Method(records, False, "GetRecords"),
        "markets": Method(markets, False, "GetMarkets"),
        "tickers": Method(tickers, False, "GetTickers"),
        "accounts": Method(accounts, True, "GetAccount"),
        "assets": Method(assets, True, "GetAssets"),
        "trade": Method(trade, True, "CreateOrder"),
        "orders": Method(orders, True, "GetOrders"),
        "order": Method(order, True, "GetOrder"),
        "historyorders": Method(history_orders, True, "GetHistoryOrders"),
        "cancel": Method(cancel, True, "CancelOrder"),
        "positions": Method(positions, True, "GetPositions"),
        "setmarginlevel": Method(set_margin_level, True, "SetMarginLevel"),
        "fundings": Method(fundings, False, "GetFundings"),
        "io": Method(io, True, "IO"),
        "__api_": Method(api_passthrough, True, "IO(api)"),
    }
    aliases = {
        "getmarkets": "markets",
        "gettickers": "tickers",
        "position": "positions",
        "getpositions": "positions",
        "getposition": "positions",
        "marginlevel": "setmarginlevel",
        "leverage": "setmarginlevel",
        "getfundings": "fundings",
        "funding": "fundings",
        "account": "accounts",
        "getaccount": "accounts",
        "getassets": "assets",
    }
    table.update({alias: table[target] for alias, target in aliases.items()})
    return table


METHODS = _registry()


def lookup(method: str) -> Method | None:
    if method.startswith("__api_"):
        return METHODS["__api_"]
    return METHODS.get(method)
