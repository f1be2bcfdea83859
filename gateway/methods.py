"""Spot FMZ methods: one small async handler each, mapping to one ccxt unified call.

Each handler takes a `Call` and returns `(data, raw)`: `data` in FMZ's shape (convert.py),
`raw` the exchange's own reply as ccxt keeps it in `info`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt

from gateway import convert
from gateway.calls import Call
from gateway.errors import BadRequest, not_supported
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


# GetHistoryOrders where fetchOrders mixes in open orders: the largest page asked for (binance
# allOrders' maximum) and the most requests one call makes to fill `limit` finished orders.
HISTORY_PAGE_CAP = 1000
HISTORY_FETCHES = 3


def now_ms() -> int:
    return int(time.time() * 1000)


async def ticker(call: Call) -> tuple[Any, Any]:
    market, fmz_symbol = call.market()
    call.require("fetchTicker", "GetTicker")
    symbol = market["symbol"]
    lacks_quotes = ("ticker_lacks_bid_ask", market.get("type"))
    if call.index.memo.get(lacks_quotes) and call.has("fetchOrderBook"):  # both at once, as learnt
        result, book = await asyncio.gather(
            call.read(("ticker", symbol), lambda: call.exchange.fetch_ticker(symbol)), _book_top(call, market)
        )
        result = _with_best_prices(result, book)
    else:
        result = await call.read(("ticker", symbol), lambda: call.exchange.fetch_ticker(symbol))
        if (result.get("bid") is None or result.get("ask") is None) and call.has("fetchOrderBook"):
            call.index.memo[lacks_quotes] = True
            result = _with_best_prices(result, await _book_top(call, market))
    data = convert.to_fmz_ticker(result, fmz_symbol, now_ms(), market=market, exchange_id=call.exchange_id)
    return data, result.get("info")


async def _book_top(call: Call, market: dict) -> dict:
    limit = depth_fetch_limit(call.exchange.id, market, 5)
    return await call.read(("depth", market["symbol"], limit), lambda: _order_book(call, market, limit))


def _with_best_prices(ticker: dict, book: dict) -> dict:
    """Some tickers (binance futures 24hr) carry no bid/ask; FMZ's Buy/Sell come from the book top."""
    best_bid = book["bids"][0][0] if book.get("bids") else None
    best_ask = book["asks"][0][0] if book.get("asks") else None
    return {**ticker, "bid": ticker.get("bid") or best_bid, "ask": ticker.get("ask") or best_ask}


async def depth(call: Call) -> tuple[Any, Any]:
    market, _ = call.market()
    call.require("fetchOrderBook", "GetDepth")
    limit = int_param(call.params, "limit")
    if limit is not None and limit < 0:
        raise BadRequest("param 'limit' must be positive")
    limit = limit or None
    fetch_limit = depth_fetch_limit(call.exchange.id, market, limit)
    book = await call.read(("depth", market["symbol"], fetch_limit), lambda: _order_book(call, market, fetch_limit))
    return convert.to_fmz_depth(book, limit, now_ms()), _book_raw(book)


async def _order_book(call: Call, market: dict, limit: int | None) -> dict:
    try:
        return await call.exchange.fetch_order_book(market["symbol"], limit)
    except (ccxt.BadRequest, ccxt.ExchangeError) as exc:
        if limit is None or isinstance(exc, ccxt.AuthenticationError | ccxt.BadSymbol | ccxt.NotSupported):
            raise
        # The exchange refused this size: its default depth is always accepted; we truncate.
        return await call.exchange.fetch_order_book(market["symbol"])


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
    call.require("fetchTrades", "GetTrades")
    limit = int_param(call.params, "limit") or None
    result = await call.read(
        ("trades", market["symbol"], limit), lambda: call.exchange.fetch_trades(market["symbol"], None, limit)
    )
    return convert.to_fmz_trades(result), [t.get("info") for t in result]


async def markets(call: Call) -> tuple[Any, Any]:
    selector = call.symbol_param(required=False)
    if isinstance(selector, FmzSymbol):
        return _fmz_markets(call, selector), None
    memo_key = ("markets", str(selector) if selector is not None else _default_market_kind(call))
    cached = call.index.memo.get(memo_key)
    if cached is None:
        cached = _fmz_markets(call, selector)
        if cached:  # only real groups are kept: the memo stays as small as the exchange's own lists
            call.index.memo[memo_key] = cached
    return cached, None


def _fmz_markets(call: Call, selector: FmzSymbol | SymbolRange | None) -> dict:
    """GetMarkets' reply; built once per loaded markets and selector (the markets are immutable)."""
    if selector is None:
        wanted = _default_market_kind(call)
        chosen = [m for m in call.index.markets.values() if (m.get("type") or "spot") == wanted]
        if not chosen:
            chosen = list(call.index.markets.values())
    elif isinstance(selector, SymbolRange):
        chosen = call.index.select(selector)
    else:
        chosen = [call.market_of(selector)[0]]
    mode = call.exchange.precisionMode
    data = {}
    for market in chosen:
        fmz_symbol = call.index.fmz_symbol(market)
        data[fmz_symbol] = convert.to_fmz_market(market, fmz_symbol, mode)
    return data


def _default_market_kind(call: Call) -> str:
    contract = call.default_contract
    if contract is None:
        return "spot"
    from gateway.futures import pinned_market

    pinned = pinned_market(call)
    if pinned is not None:
        return pinned.get("type") or "swap"
    return "swap" if contract == "swap" else "future"


async def tickers(call: Call) -> tuple[Any, Any]:
    call.require("fetchTickers", "GetTickers")
    selector = call.symbol_param(required=False)
    symbols: list[str] | None
    if selector is None:
        symbols = None
    elif isinstance(selector, SymbolRange):
        symbols = [m["symbol"] for m in call.index.select(selector)]
        if not symbols:
            return [], []
    else:
        symbols = [call.market_of(selector)[0]["symbol"]]
    key = ("tickers", tuple(symbols) if symbols else None)
    result = await call.read(key, lambda: call.exchange.fetch_tickers(symbols))
    if call.has("fetchBidsAsks") and any(t.get("bid") is None for t in result.values()):
        quotes = await call.read(("bidsasks", key[1]), lambda: call.exchange.fetch_bids_asks(symbols))
        result = {s: {**t, **_best_prices(quotes.get(s))} for s, t in result.items()}
    wanted = set(symbols) if symbols else None
    data, raw, received = [], [], now_ms()
    for ccxt_symbol, item in result.items():
        if wanted is not None and ccxt_symbol not in wanted:
            continue
        fmz_symbol = call.index.fmz_symbol_for(ccxt_symbol)
        market = call.index.markets.get(ccxt_symbol)
        try:
            data.append(convert.to_fmz_ticker(item, fmz_symbol, received, market=market, exchange_id=call.exchange_id))
        except ccxt.BadResponse:
            if symbols and len(symbols) == 1:  # the one instrument asked for: say why there is nothing
                raise
            continue  # a market without a price (not trading yet, halted) is left out, never zeroed
        raw.append(item.get("info"))
    return data, raw


def _best_prices(quote: dict | None) -> dict:
    if not quote:
        return {}
    return {k: quote[k] for k in ("bid", "ask") if quote.get(k) is not None}


async def accounts(call: Call) -> tuple[Any, Any]:
    return await _balances(call, "GetAccount")


async def assets(call: Call) -> tuple[Any, Any]:
    return await _balances(call, "GetAssets")


async def _balances(call: Call, fmz_function: str) -> tuple[Any, Any]:
    """[{currency, free, frozen}] of every currency held (GetAccount and GetAssets alike)."""
    call.require("fetchBalance", fmz_function)
    params = _balance_params(call)
    balance = await call.read(None, lambda: call.exchange.fetch_balance(params))
    rows = convert.to_fmz_balances(balance, call.exchange_id)
    if params:  # a derivatives account: ccxt's total is the margin equity; the upnl is in the raw reply
        for row in rows:
            row["equity"] = convert.num((balance.get("total") or {}).get(row["currency"]))
            row["upnl"] = convert.unrealized_pnl(balance.get("info"), row["currency"])
    return rows, balance.get("info")


def _balance_params(call: Call) -> dict:
    """Which account GetAccount reads: spot, or the derivatives account of the contract in use
    (SetContractType's, or `params.symbol`'s when the docker sends one); on exchanges with
    separate USDⓈ-M and COIN-M accounts, an inverse contract selects the COIN-M one."""
    from gateway.futures import account_params, pinned_market

    market = pinned_market(call) or _symbol_market(call)
    if market is not None and market.get("contract"):
        return {"type": market.get("type") or "swap", **account_params(call, market)}
    contract = call.default_contract
    if contract is None or (market is not None and market.get("spot")):
        return {}
    return {"type": "swap" if contract == "swap" else "future"}


def _symbol_market(call: Call) -> dict | None:
    """The market `params.symbol` names, if the call carries one that resolves (else None)."""
    try:
        selector = call.symbol_param(required=False)
        return call.market_of(selector)[0] if isinstance(selector, FmzSymbol) else None
    except BadRequest:  # GetAccount takes no symbol in FMZ's protocol: an odd one changes nothing
        return None


async def orders(call: Call) -> tuple[Any, Any]:
    call.require("fetchOpenOrders", "GetOrders")
    selector = call.symbol_param(required=False)
    if isinstance(selector, SymbolRange):
        result = await call.read_range(
            selector, lambda params: call.exchange.fetch_open_orders(None, None, None, params)
        )
    elif selector is None:
        result = await call.read(None, lambda: call.exchange.fetch_open_orders())
    else:
        market, _ = call.market_of(selector)
        result = await call.read(None, lambda: call.exchange.fetch_open_orders(market["symbol"]))
    return [to_fmz_order(call, o) for o in result], [o.get("info") for o in result]


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
    """One order by its exchange id (GetOrder, and settling a cancel whose answer was lost)."""
    if call.has("fetchOrder"):
        return await call.read(None, lambda: call.exchange.fetch_order(order_id, symbol))
    return await _find_order(call, order_id, symbol)


async def _find_order(call: Call, order_id: str, symbol: str) -> dict:
    """Where fetchOrder is missing: fetchOpenOrder/fetchClosedOrder, then the order lists."""
    for single in ("fetchOpenOrder", "fetchClosedOrder"):
        if call.has(single):
            try:
                method = getattr(
                    call.exchange, "fetch_open_order" if single == "fetchOpenOrder" else "fetch_closed_order"
                )
                return await call.read(None, lambda m=method: m(order_id, symbol))
            except (ccxt.OrderNotFound, ccxt.NotSupported):  # not there, or not for this market type
                continue
    for listing in ("fetchOpenOrders", "fetchClosedOrders", "fetchCanceledOrders", "fetchOrders"):
        if call.has(listing):
            method = getattr(call.exchange, _snake(listing))
            found = await call.read(None, lambda m=method: m(symbol))
            for item in found:
                if str(item.get("id")) == order_id:
                    return item
    if not any(call.has(m) for m in ("fetchOpenOrders", "fetchClosedOrders", "fetchOrders")):
        raise not_supported("GetOrder", call.exchange_id)
    raise ccxt.OrderNotFound(f"{call.exchange_id} order {order_id} not found among open and closed orders")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


async def history_orders(call: Call) -> tuple[Any, Any]:
    selector = call.symbol_param(required=False)
    symbol = None
    if isinstance(selector, SymbolRange):
        raise BadRequest("GetHistoryOrders needs one instrument, not a range")
    if selector is not None:
        symbol = call.market_of(selector)[0]["symbol"]
    since = int_param(call.params, "since") or None
    limit = int_param(call.params, "limit") or None
    if call.has("fetchOrders"):
        result = await _finished_orders(call, symbol, since, limit)
    elif call.has("fetchCanceledAndClosedOrders"):
        result = await call.read(None, lambda: call.exchange.fetch_canceled_and_closed_orders(symbol, since, limit))
    elif call.has("fetchClosedOrders"):
        result = await call.read(None, lambda: call.exchange.fetch_closed_orders(symbol, since, limit))
        if call.has("fetchCanceledOrders"):
            result += await call.read(None, lambda: call.exchange.fetch_canceled_orders(symbol, since, limit))
    else:
        raise not_supported("GetHistoryOrders", call.exchange_id)
    result.sort(key=lambda o: o.get("timestamp") or 0)
    if limit:  # from `since` onwards: the oldest `limit`; without it, the newest
        result = result[:limit] if since else result[-limit:]
    return [to_fmz_order(call, o) for o in result], [o.get("info") for o in result]


async def _finished_orders(call: Call, symbol: str | None, since: int | None, limit: int | None) -> list[dict]:
    """fetchOrders lists open orders too, and the exchange applies `limit` before we drop them:
    while a full page leaves fewer than `limit` finished orders, ask again for a larger page
    (at most HISTORY_FETCHES requests, the last one for HISTORY_PAGE_CAP orders)."""
    page, finished = limit, []
    for attempt in range(HISTORY_FETCHES):
        try:
            result = await call.read(None, lambda n=page: call.exchange.fetch_orders(symbol, since, n))
        except ccxt.BadRequest:
            if attempt == 0:
                raise
            return finished  # the exchange refuses a page this large: what the smaller one had
        finished = [o for o in result if o.get("status") not in ("open", None)]
        if page is None or limit is None or len(finished) >= limit or len(result) < page:
            return finished
        if page >= HISTORY_PAGE_CAP:
            break
        grown = max(2 * page, page + limit - len(finished))
        page = HISTORY_PAGE_CAP if attempt == HISTORY_FETCHES - 2 else min(HISTORY_PAGE_CAP, grown)
    return finished


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
