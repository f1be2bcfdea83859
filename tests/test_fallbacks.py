"""gateway.fallbacks: the FMZ function tables, and the account each ccxt call reaches.

Two kinds of proof:
- the tables' semantics on a stub exchange (which row answers, which errors move on);
- request level on real ccxt classes: the exchange's `fetch` (ccxt's HTTP transport) is replaced
  by a recorder that keeps each request and answers in the exchange's format. Signing, request
  building, parsing and error mapping are ccxt's own. No sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import ccxt.async_support as ccxt
import pytest

from gateway import fallbacks
from gateway.calls import Call
from gateway.credentials import NO_CREDENTIALS
from gateway.errors import BadRequest, NotSupported
from gateway.fallbacks import Ask, scope_params
from gateway.methods import METHODS, fetch_order_by_id
from gateway.protocol import Envelope
from gateway.settings import ClientSettings, Venue
from gateway.state import TradingState
from gateway.symbols import MarketIndex

# --- helpers ---------------------------------------------------------------------------------------


@dataclass
class Sent:
    method: str
    url: str
    body: Any

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.url).path)

    @property
    def params(self) -> dict:
        found = dict(parse_qsl(urlsplit(self.url).query))
        if self.body:
            try:
                doc = json.loads(self.body)
            except ValueError:
                doc = dict(parse_qsl(self.body))
            if isinstance(doc, dict):
                found.update(doc)
        return found


@dataclass
class Recorder:
    """Stands in for exchange.fetch: records the request, answers from `routes` (first match wins)."""

    exchange: Any
    routes: list[tuple[str, Any]]
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exchange.fetch = self

    async def __call__(self, url, method="GET", headers=None, body=None):
        sent = Sent(method, url, body)
        self.sent.append(sent)
        for pattern, reply in self.routes:
            if re.search(pattern, unquote(url)):
                return reply(sent) if callable(reply) else json.loads(json.dumps(reply))
        raise AssertionError(f"unexpected request {method} {url} {body}")

    def paths(self) -> list[str]:
        return [s.path for s in self.sent]


def market(base: str, quote: str, kind: str = "spot", *, inverse: bool = False, **extra: Any) -> dict:
    contract = kind != "spot"
    settle = (base if inverse else quote) if contract else None
    symbol = f"{base}/{quote}" + (f":{settle}" if contract else "")
    result = {
        "id": f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "baseId": base,
        "quoteId": quote,
        "settleId": settle,
        "type": kind,
        "spot": kind == "spot",
        "margin": False,
        "swap": kind == "swap",
        "future": kind == "future",
        "option": False,
        "active": True,
        "contract": contract,
        "linear": (not inverse) if contract else None,
        "inverse": inverse if contract else None,
        "contractSize": 1.0 if contract else None,
        "expiry": None,
        "precision": {"amount": 0.0001, "price": 0.01},
        "limits": {"amount": {"min": 0.0001, "max": None}, "price": {}, "cost": {}, "leverage": {}},
        "info": {},
    }
    result.update(extra)
    return result


def make(klass: type, markets: list[dict], **config: Any) -> Any:
    exchange = klass({"apiKey": "k" * 16, "secret": "s" * 32, "enableRateLimit": False, **config})
    exchange.timeout_on_exit = 0  # close() would sleep 250 ms
    exchange.set_markets(markets)
    return exchange


def call_for(exchange: Any, method: str, params: dict | None = None, contract_type: str | None = None) -> Call:
    state = TradingState(contract_type=contract_type) if contract_type else None
    return Call(
        Envelope("key", "secret", method, dict(params or {})),
        Venue(route=exchange.id, ccxt_id=exchange.id),
        NO_CREDENTIALS,
        state,
        exchange,
        MarketIndex(exchange.markets, exchange.id),
        ClientSettings(read_retries=0),
    )


def run(exchange: Any, method: str, params: dict | None = None, contract_type: str | None = None) -> Any:
    async def go():
        try:
            data, _ = await METHODS[method].handler(call_for(exchange, method, params, contract_type))
            return data
        finally:
            await exchange.close()

    return asyncio.run(go())


# --- the tables on a stub exchange -------------------------------------------------------------------


class Stub:
    """An exchange with only the ccxt methods a test gives it, each recording that it was asked."""

    id = "stub"

    def __init__(self, has: dict, features: dict | None = None, **methods: Any) -> None:
        self.has = has
        self.features = features
        self.asked: list[str] = []
        self.options: dict = {}
        for name, behaviour in methods.items():
            setattr(self, name, self._recording(name, behaviour))

    def _recording(self, name: str, behaviour: Any):
        async def method(*args, **kwargs):
            self.asked.append(name)
            if isinstance(behaviour, BaseException):
                raise behaviour
            return behaviour(*args) if callable(behaviour) else behaviour

        return method

    def handle_market_type_and_params(self, method, market, params, default=None):
        return ["spot", params]

    def handle_sub_type_and_params(self, method, market, params, default=None):
        return [default, params]


def stub_call(exchange: Stub) -> Call:
    exchange.markets = {"BTC/USDT": market("BTC", "USDT")}
    return Call(
        Envelope("k", "s", "order", {}),
        Venue(route="stub", ccxt_id="stub"),
        NO_CREDENTIALS,
        None,
        exchange,
        MarketIndex(exchange.markets, "stub"),
        ClientSettings(read_retries=0),
    )


SPOT = ("spot", None)
ORDER = {"id": "7", "symbol": "BTC/USDT", "status": "open"}


def find(exchange: Stub) -> Any:
    return asyncio.run(fetch_order_by_id(stub_call(exchange), "7", "BTC/USDT"))


def test_get_order_moves_on_when_fetch_order_wants_arguments():
    exchange = Stub(
        {"fetchOrder": True, "fetchOpenOrder": True},
        fetch_order=ccxt.ArgumentsRequired("stub fetchOrder() ... use fetchOpenOrder or fetchClosedOrder"),
        fetch_open_order=ORDER,
    )
    assert find(exchange) == ORDER
    assert exchange.asked == ["fetch_order", "fetch_open_order"]


def test_get_order_takes_fetch_orders_not_found_as_the_answer():
    exchange = Stub(
        {"fetchOrder": True, "fetchOpenOrder": True},
        fetch_order=ccxt.OrderNotFound("no such order"),
        fetch_open_order=ORDER,
    )
    with pytest.raises(ccxt.OrderNotFound, match="no such order"):
        find(exchange)
    assert exchange.asked == ["fetch_order"]


def test_get_order_looks_through_every_listing_before_answering_not_found():
    exchange = Stub(
        {"fetchOpenOrder": True, "fetchClosedOrder": True, "fetchOpenOrders": True, "fetchCanceledOrders": True},
        fetch_open_order=ccxt.OrderNotFound("not open"),
        fetch_closed_order=ccxt.NotSupported("not for this market"),
        fetch_open_orders=[{"id": "8"}],
        fetch_canceled_orders=[{"id": "9"}],
    )
    with pytest.raises(ccxt.OrderNotFound, match="order 7 not found") as caught:
        find(exchange)
    assert "fetchOpenOrder, fetchClosedOrder, fetchOpenOrders, fetchCanceledOrders" in str(caught.value)
    assert exchange.asked == ["fetch_open_order", "fetch_closed_order", "fetch_open_orders", "fetch_canceled_orders"]


def test_get_order_finds_the_id_in_a_listing():
    canceled = {**ORDER, "status": "canceled"}
    exchange = Stub(
        {"fetchOpenOrders": True, "fetchCanceledOrders": True},
        fetch_open_orders=[],
        fetch_canceled_orders=[{"id": "6"}, canceled],
    )
    assert find(exchange) == canceled


def test_a_function_without_a_usable_row_is_not_supported():
    with pytest.raises(NotSupported, match=r"^GetOrder is not supported by stub$"):
        find(Stub({"fetchOrder": False, "fetchMyTrades": True}))


def test_a_method_ccxt_features_rule_out_for_the_market_type_is_not_used():
    features = {"spot": {"fetchOrder": None, "fetchOpenOrder": {"symbolRequired": True}}}
    exchange = Stub({"fetchOrder": True, "fetchOpenOrder": True}, features, fetch_open_order=ORDER)
    assert find(exchange) == ORDER
    assert exchange.asked == ["fetch_open_order"]


def test_the_last_refusal_is_the_answer_when_every_row_refuses():
    exchange = Stub(
        {"fetchOrder": True, "fetchOpenOrder": True},
        fetch_order=ccxt.ArgumentsRequired("first"),
        fetch_open_order=ccxt.ArgumentsRequired("second"),
    )
    with pytest.raises(ccxt.ArgumentsRequired, match="second"):
        find(exchange)


def test_a_listing_features_say_needs_a_symbol_is_still_asked_without_one():
    """ccxt's features overstate symbolRequired for some exchanges (kucoin lists every open order)."""
    features = {"spot": {"fetchOpenOrders": {"symbolRequired": True}}}
    exchange = Stub({"fetchOpenOrders": True}, features, fetch_open_orders=[ORDER])
    assert asyncio.run(fallbacks.answer(stub_call(exchange), "GetOrders", Ask(SPOT, whole=True))) == [ORDER]


def test_listings_that_all_want_a_symbol_answer_that_one_is_needed():
    exchange = Stub(
        {"fetchOrders": True, "fetchClosedOrders": True},
        fetch_orders=ccxt.ArgumentsRequired("stub fetchOrders() requires a symbol argument"),
        fetch_closed_orders=ccxt.ArgumentsRequired("stub fetchClosedOrders() requires a symbol argument"),
    )
    with pytest.raises(BadRequest, match=r"GetHistoryOrders on stub needs a symbol \(stub fetchClosedOrders"):
        asyncio.run(fallbacks.answer(stub_call(exchange), "GetHistoryOrders", Ask(SPOT, whole=True)))
    assert exchange.asked == ["fetch_orders", "fetch_closed_orders"]


def test_tickers_one_by_one_only_for_a_few_named_instruments():
    exchange = Stub({"fetchTickers": False, "fetchTicker": True}, fetch_ticker=lambda s: {"symbol": s})
    call = stub_call(exchange)
    few = Ask(SPOT, symbols=("A/USDT", "B/USDT"))
    assert asyncio.run(fallbacks.answer(call, "GetTickers", few)) == {s: {"symbol": s} for s in few.symbols}
    many = Ask(SPOT, symbols=tuple(f"C{i}/USDT" for i in range(fallbacks.MAX_PER_SYMBOL + 1)))
    with pytest.raises(BadRequest, match="one instrument per request"):
        asyncio.run(fallbacks.answer(call, "GetTickers", many))
    with pytest.raises(NotSupported, match=r"^GetTickers is not supported by stub$"):
        asyncio.run(fallbacks.answer(call, "GetTickers", Ask(SPOT, symbols=("A/USDT",), whole=True)))


def test_ticker_falls_back_to_the_tickers_listing():
    exchange = Stub({"fetchTicker": False, "fetchTickers": True}, fetch_tickers=lambda s: {s[0]: {"symbol": s[0]}})
    ask = Ask(SPOT, symbol="BTC/USDT")
    assert asyncio.run(fallbacks.answer(stub_call(exchange), "GetTicker", ask)) == {"symbol": "BTC/USDT"}


def test_history_since_is_kept_within_the_days_ccxt_says_the_exchange_keeps():
    exchange = SimpleNamespace(features={"swap": {"linear": {"fetchOrders": {"daysBack": 90}}}})
    now = 1_000 * fallbacks.DAY_MS
    assert fallbacks.history_since(exchange, ("swap", "linear"), "fetchOrders", 0, now) == now - 90 * fallbacks.DAY_MS
    assert fallbacks.history_since(exchange, ("swap", "linear"), "fetchOrders", now - 5, now) == now - 5
    assert fallbacks.history_since(exchange, SPOT, "fetchOrders", 0, now) == 0  # ccxt says nothing for spot
    assert fallbacks.history_since(exchange, ("swap", "linear"), "fetchOrders", None, now) is None


# --- request level: Bybit's fetchOrder on a unified account ------------------------------------------

BYBIT_UNIFIED = {"enableUnifiedAccount": True, "enableUnifiedMargin": False}  # as ccxt learns it from the account


def bybit_order(order_id: str, status: str, filled: str = "0") -> dict:
    return {
        "orderId": order_id,
        "orderLinkId": "",
        "symbol": "BTCUSDT",
        "price": "30000",
        "qty": "0.01",
        "side": "Buy",
        "orderStatus": status,
        "orderType": "Limit",
        "cumExecQty": filled,
        "cumExecValue": str(float(filled) * 30000),
        "avgPrice": "30000" if filled != "0" else "",
        "timeInForce": "GTC",
        "createdTime": "1700000000000",
        "updatedTime": "1700000000000",
    }


def bybit_list(*orders: dict, category: str = "spot") -> dict:
    return {"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": list(orders), "nextPageCursor": ""}}


def bybit(markets: list[dict] | None = None) -> Any:
    return make(ccxt.bybit, markets or [market("BTC", "USDT")], options=dict(BYBIT_UNIFIED))


def bybit_history(orders_by_status: dict[str, list[dict]]):
    def answer(sent: Sent) -> dict:
        status = sent.params.get("orderStatus")
        found = orders_by_status.get(status, []) if status else [o for os in orders_by_status.values() for o in os]
        order_id = sent.params.get("orderId")
        return bybit_list(*[o for o in found if not order_id or o["orderId"] == order_id])

    return answer


def test_bybit_get_order_of_an_open_order_comes_from_fetch_open_order():
    exchange = bybit()
    recorder = Recorder(exchange, [("/v5/order/realtime", bybit_list(bybit_order("111", "New")))])
    order = run(exchange, "order", {"id": "BTC_USDT,111"})
    assert order["id"] == "BTC_USDT,111" and order["status"] == "pending"
    [sent] = recorder.sent  # fetchOrder refused before any request (ArgumentsRequired: 'acknowledged')
    assert sent.path == "/v5/order/realtime" and sent.params["orderId"] == "111"


def test_bybit_get_order_of_a_filled_order_comes_from_fetch_closed_order():
    exchange = bybit()
    filled = bybit_order("222", "Filled", filled="0.01")
    recorder = Recorder(
        exchange,
        [("/v5/order/realtime", bybit_list()), ("/v5/order/history", bybit_history({"Filled": [filled]}))],
    )
    order = run(exchange, "order", {"id": "BTC_USDT,222"})
    assert order["status"] == "filled" and order["deal_amount"] == 0.01
    assert recorder.paths() == ["/v5/order/realtime", "/v5/order/history"]
    assert recorder.sent[1].params["orderId"] == "222"


def test_bybit_get_order_of_a_cancelled_order_is_found_in_the_cancelled_orders():
    exchange = bybit()
    cancelled = bybit_order("333", "Cancelled")
    recorder = Recorder(
        exchange,
        [("/v5/order/realtime", bybit_list()), ("/v5/order/history", bybit_history({"Cancelled": [cancelled]}))],
    )
    order = run(exchange, "order", {"id": "BTC_USDT,333"})
    assert order["status"] == "canceled"
    statuses = [s.params.get("orderStatus") for s in recorder.sent if s.path == "/v5/order/history"]
    assert "Cancelled" in statuses


def test_bybit_get_order_of_an_unknown_order_is_order_not_found():
    exchange = bybit()
    Recorder(exchange, [("/v5/order/realtime", bybit_list()), ("/v5/order/history", bybit_list())])
    with pytest.raises(ccxt.OrderNotFound, match="order 444 not found"):
        run(exchange, "order", {"id": "BTC_USDT,444"})


def test_bybit_history_orders_use_canceled_and_closed_orders():
    """ccxt's features list no fetchOrders for bybit: GetHistoryOrders asks fetchCanceledAndClosedOrders."""
    exchange = bybit()
    assert fallbacks.feature(exchange, ("spot", None), "fetchOrders") is None
    done = [bybit_order("1", "Filled", filled="0.01"), bybit_order("2", "Cancelled")]
    recorder = Recorder(exchange, [("/v5/order/history", bybit_list(*done))])
    history = run(exchange, "historyorders", {"symbol": "BTC_USDT"})
    assert {o["id"] for o in history} == {"BTC_USDT,1", "BTC_USDT,2"}
    [sent] = recorder.sent
    assert sent.params["category"] == "spot" and "orderStatus" not in sent.params


# --- request level: the account FMZ means ----------------------------------------------------------

BINANCE_MARKETS = [
    market("BTC", "USDT"),
    market("BTC", "USDT", "swap"),
    market("BTC", "USD", "swap", inverse=True, id="BTCUSD_PERP"),
]


def binance() -> Any:
    return make(ccxt.binance, BINANCE_MARKETS)


def test_scope_params_name_the_account_only_where_ccxt_would_pick_another():
    hyperliquid, bybit_ = ccxt.hyperliquid(), ccxt.bybit()
    assert scope_params(hyperliquid, "fetchBalance", ("spot", None)) == {"type": "spot"}  # ccxt default: swap
    assert scope_params(hyperliquid, "fetchBalance", ("swap", "linear")) == {}
    assert scope_params(bybit_, "fetchOpenOrders", ("spot", None)) == {"type": "spot"}
    assert scope_params(bybit_, "fetchOpenOrders", ("swap", "inverse")) == {"subType": "inverse"}
    assert scope_params(ccxt.binance(), "fetchBalance", ("spot", None)) == {}
    assert scope_params(ccxt.binance(), "fetchBalance", ("swap", "inverse")) == {"type": "swap", "subType": "inverse"}
    assert "subType" not in scope_params(ccxt.binancecoinm(), "fetchPositions", ("swap", "inverse"))  # its default
    # OKX's positions listing reads neither: nothing is passed on to reach okx as an unknown parameter
    assert not fallbacks.reads_param(ccxt.okx(), "fetchPositions", "type")
    assert scope_params(ccxt.okx(), "fetchPositions", ("swap", "inverse")) == {}


def test_hyperliquid_spot_account_is_asked_for_explicitly():
    """ccxt's Hyperliquid defaults to the perp account; FMZ's GetAccount on spot means the spot one."""
    markets = [market("ETH", "USDC", id="@1"), market("ETH", "USDC", "swap", id="1")]
    exchange = make(
        ccxt.hyperliquid,
        markets,
        walletAddress="0x" + "ab" * 20,
        privateKey="0x" + "11" * 32,
        options={"enableUnifiedMargin": False},
    )
    held = [{"coin": "USDC", "hold": "0.0", "total": "100.0"}, {"coin": "UETH", "hold": "0.1", "total": "0.5"}]
    spot = {"balances": held}
    perp = {
        "marginSummary": {"accountValue": "250.0", "totalMarginUsed": "10.0"},
        "crossMarginSummary": {"accountValue": "250.0", "totalMarginUsed": "10.0"},
        "withdrawable": "240.0",
        "assetPositions": [],
    }

    def info(sent: Sent) -> dict:
        return {"spotClearinghouseState": spot, "clearinghouseState": perp}[sent.params["type"]]

    recorder = Recorder(exchange, [("/info", info)])
    rows = {row["currency"]: row for row in run(exchange, "accounts")}
    assert [s.params["type"] for s in recorder.sent] == ["spotClearinghouseState"]
    assert rows["ETH"]["free"] == pytest.approx(0.4) and rows["ETH"]["frozen"] == pytest.approx(0.1)  # ccxt: UETH

    exchange = make(ccxt.hyperliquid, markets, walletAddress="0x" + "ab" * 20, options={"enableUnifiedMargin": False})
    recorder = Recorder(exchange, [("/info", info)])
    rows = run(exchange, "accounts", contract_type="swap")
    assert [s.params["type"] for s in recorder.sent] == ["clearinghouseState"]
    assert [row["currency"] for row in rows] == ["USDC"]


def test_bybit_open_orders_without_a_symbol_list_the_account_fmz_means():
    markets = [market("BTC", "USDT"), market("BTC", "USDT", "swap"), market("BTC", "USD", "swap", inverse=True)]
    exchange = bybit(markets)
    recorder = Recorder(exchange, [("/v5/order/realtime", bybit_list())])
    assert run(exchange, "orders") == []
    assert [s.params["category"] for s in recorder.sent] == ["spot"]  # ccxt's bybit default would be linear

    exchange = bybit(markets)
    recorder = Recorder(exchange, [("/v5/order/realtime", bybit_list())])
    assert run(exchange, "orders", contract_type="swap") == []
    assert sorted(s.params["category"] for s in recorder.sent) == ["inverse", "linear"]


BINANCE_ACCOUNTS = [
    ("/api/v3/account", {"balances": [{"asset": "USDT", "free": "10", "locked": "0"}]}),
    ("/(fapi/v3|dapi/v1)/account", {"assets": [{"asset": "USDT", "walletBalance": "5", "availableBalance": "5"}]}),
]


@pytest.mark.parametrize(
    ("params", "contract_type", "path"),
    [
        ({}, None, "/api/v3/account"),
        ({}, "swap", "/fapi/v3/account"),
        ({"symbol": "BTC_USD.swap"}, None, "/dapi/v1/account"),
        ({}, "BTC_USD.swap", "/dapi/v1/account"),
    ],
)
def test_binance_accounts_follow_the_contract_in_use(params, contract_type, path):
    exchange = binance()
    if contract_type == "BTC_USD.swap":
        contract_type = "BTC/USD:BTC"  # what SetContractType keeps for a whole FMZ symbol
    recorder = Recorder(exchange, BINANCE_ACCOUNTS)
    [row] = run(exchange, "accounts", params, contract_type)
    assert recorder.paths() == [path]
    assert row["currency"] == "USDT"


def test_binance_positions_without_a_symbol_cover_usdm_and_coinm():
    exchange = binance()
    recorder = Recorder(exchange, [("positionRisk", []), ("leverageBracket", [])])
    assert run(exchange, "positions") == []
    listed = sorted(p for p in recorder.paths() if "positionRisk" in p)
    assert listed == ["/dapi/v1/positionRisk", "/fapi/v3/positionRisk"]

    exchange = binance()
    recorder = Recorder(exchange, [("positionRisk", []), ("leverageBracket", [])])
    run(exchange, "positions", contract_type="BTCUSD_PERP")  # SetContractType named one contract
    assert [p for p in recorder.paths() if "positionRisk" in p] == ["/dapi/v1/positionRisk"]


def test_okx_positions_without_a_symbol_are_one_request_with_no_stray_params():
    markets = [
        market("BTC", "USDT", "swap", id="BTC-USDT-SWAP"),
        market("BTC", "USD", "swap", inverse=True, id="BTC-USD-SWAP"),
    ]
    exchange = make(ccxt.okx, markets, password="p" * 8)
    recorder = Recorder(exchange, [("/account/positions", {"code": "0", "msg": "", "data": []})])
    assert run(exchange, "positions") == []
    [sent] = recorder.sent
    assert not {"type", "subType"} & set(sent.params)


def test_a_contracts_only_exchange_reads_its_own_account():
    exchange = make(
        ccxt.kucoinfutures, [market("BTC", "USDT", "swap", id="XBTUSDTM")], password="p" * 8, options={"uta": False}
    )
    overview = {"code": "200000", "data": {"currency": "USDT", "accountEquity": 5, "availableBalance": 4}}
    recorder = Recorder(exchange, [("/account-overview", overview)])
    [row] = run(exchange, "accounts")
    assert row["currency"] == "USDT" and row["free"] == 4 and "equity" in row
    [sent] = recorder.sent
    assert "type" not in sent.params


# --- request level: no symbol means the whole route ---------------------------------------------------


def binance_tickers(sent: Sent) -> list[dict]:
    quotes = {"bidPrice": "99", "askPrice": "101"}
    if sent.path.startswith("/api/v3/ticker/24hr"):  # spot's carries bidQty (ccxt tells the types apart by it)
        spot = {"bidQty": "1", "askQty": "1", **quotes}
        return [{"symbol": "BTCUSDT", "lastPrice": "100", "volume": "1", "closeTime": 1700000000000, **spot}]
    if sent.path.startswith("/fapi/"):
        return [{"symbol": "BTCUSDT", "lastPrice": "100", "volume": "2", "closeTime": 1700000000000, **quotes}]
    return [{"symbol": "BTCUSD_PERP", "pair": "BTCUSD", "lastPrice": "100", "volume": "3", "closeTime": 1700000000000}]


def binance_book_tickers(sent: Sent) -> list[dict]:
    return [{"symbol": "BTCUSD_PERP", "bidPrice": "99.5", "askPrice": "100.5"}]


TICKER_ROUTES = [("ticker/24hr", binance_tickers), ("ticker/bookTicker", binance_book_tickers)]


def test_tickers_without_a_symbol_ask_each_market_type_of_the_route():
    exchange = binance()
    recorder = Recorder(exchange, TICKER_ROUTES)
    data = {t["symbol"]: t for t in run(exchange, "tickers")}
    assert set(data) == {"BTC_USDT", "BTC_USDT.swap", "BTC_USD.swap"}
    assert data["BTC_USD.swap"]["buy"] == 99.5  # COIN-M's 24hr ticker has no quotes: the book tickers fill them
    assert sorted(p for p in recorder.paths() if "24hr" in p) == [
        "/api/v3/ticker/24hr",
        "/dapi/v1/ticker/24hr",
        "/fapi/v1/ticker/24hr",
    ]


def test_set_contract_type_narrows_tickers_and_markets_alike():
    exchange = binance()
    recorder = Recorder(exchange, TICKER_ROUTES)
    data = run(exchange, "tickers", contract_type="swap")
    assert {t["symbol"] for t in data} == {"BTC_USDT.swap", "BTC_USD.swap"}
    assert not [p for p in recorder.paths() if p.startswith("/api/v3")]
    assert set(run(binance(), "markets", contract_type="swap")) == {"BTC_USDT.swap", "BTC_USD.swap"}
    assert set(run(binance(), "markets", contract_type="spot")) == {"BTC_USDT"}
    assert set(run(binance(), "markets")) == {"BTC_USDT", "BTC_USDT.swap", "BTC_USD.swap"}

    exchange = binance()
    recorder = Recorder(exchange, TICKER_ROUTES)
    assert [t["symbol"] for t in run(exchange, "tickers", contract_type="spot")] == ["BTC_USDT"]
    assert [p for p in recorder.paths() if "24hr" in p] == ["/api/v3/ticker/24hr"]


def test_tickers_of_a_type_ccxt_asks_in_one_request_are_asked_once():
    """OKX's tickers listing takes instType only: linear and inverse swaps come in one request."""
    markets = [
        market("BTC", "USDT", id="BTC-USDT"),
        market("BTC", "USDT", "swap", id="BTC-USDT-SWAP"),
        market("BTC", "USD", "swap", inverse=True, id="BTC-USD-SWAP"),
    ]
    exchange = make(ccxt.okx, markets, password="p" * 8)

    def okx_tickers(sent: Sent) -> dict:
        ids = {"SPOT": ["BTC-USDT"], "SWAP": ["BTC-USDT-SWAP", "BTC-USD-SWAP"]}[sent.params["instType"]]
        row = {"last": "100", "bidPx": "99", "askPx": "101", "vol24h": "1", "ts": "1700000000000"}
        rows = [{"instId": i, **row} for i in ids]
        return {"code": "0", "msg": "", "data": rows}

    recorder = Recorder(exchange, [("/market/tickers", okx_tickers)])
    data = run(exchange, "tickers")
    assert {t["symbol"] for t in data} == {"BTC_USDT", "BTC_USDT.swap", "BTC_USD.swap"}
    assert sorted(s.params["instType"] for s in recorder.sent) == ["SPOT", "SWAP"]


# --- decisions for trading.py: a spot market buy spending quote currency --------------------------


@pytest.mark.parametrize(
    ("exchange_id", "by_cost", "needs_price"),
    [
        ("binance", True, False),  # ccxt's createMarketBuyOrderWithCost
        ("hyperliquid", False, False),  # neither: the gateway converts the amount at the ask
        ("mercado", False, True),  # features.createOrder.marketBuyRequiresPrice: createOrder wants the ask too
        ("cryptomus", True, True),  # ccxt's createMarketBuyOrderRequiresPrice option: amount x 1 = the cost
    ],
)
def test_market_buy_by_cost_follows_ccxt(exchange_id, by_cost, needs_price):
    exchange = getattr(ccxt, exchange_id)()
    spot = market("BTC", "USDT")
    assert fallbacks.market_buy_by_cost(exchange, spot) is by_cost
    assert fallbacks.market_buy_needs_price(exchange, spot) is needs_price
    assert fallbacks.market_buy_by_cost(exchange, market("BTC", "USDT", "swap")) is False  # contracts: amounts


# --- exchange ids the gateway names itself, and the proof that ccxt lacks the fact -----------------


def test_binance_depth_sizes_are_not_in_ccxt():
    """methods.DEPTH_SIZES names binance ids: ccxt neither states the sizes nor rounds a limit to one."""
    from gateway.methods import DEPTH_SIZES

    exchange = make(ccxt.binance, BINANCE_MARKETS)
    assert {exchange_id for exchange_id, _ in DEPTH_SIZES} <= {"binance", "binanceus", "binanceusdm", "binancecoinm"}
    assert fallbacks.feature(exchange, ("swap", "linear"), "fetchOrderBook") is fallbacks._MISSING
    recorder = Recorder(exchange, [("/fapi/v1/depth", {"lastUpdateId": 1, "bids": [], "asks": []})])

    async def ask() -> None:
        try:
            await exchange.fetch_order_book("BTC/USDT:USDT", 7)
        finally:
            await exchange.close()

    asyncio.run(ask())
    assert recorder.sent[0].params["limit"] == "7"  # sent as asked; USDⓈ-M refuses it (-4021)


def test_options_are_listed_only_when_set_contract_type_names_one():
    option = market(
        "BTC", "USDT", "option", id="BTC-261225-100000-C", symbol="BTC/USDT:USDT-261225-100000-C", option=True
    )
    other = market("BTC", "USDT", "option", id="BTC-261225-90000-P", symbol="BTC/USDT:USDT-261225-90000-P", option=True)
    exchange = make(ccxt.binance, [*BINANCE_MARKETS, option, other])
    index = MarketIndex(exchange.markets, exchange.id)  # one index: GetMarkets replies are memoised on it

    async def markets(contract_type: str | None) -> list[str]:
        call = call_for(exchange, "markets", contract_type=contract_type)
        call.index = index
        data, _ = await METHODS["markets"].handler(call)
        return list(data)

    async def ask_all() -> list[list[str]]:
        return [await markets(c) for c in (None, "BTC-261225-100000-C", "BTC-261225-90000-P", None)]

    everything, first, second, again = asyncio.run(ask_all())
    assert set(everything) == set(again) == {"BTC_USDT", "BTC_USDT.swap", "BTC_USD.swap"}
    assert first == ["BTC_USDT.BTC-261225-100000-C"] and second == ["BTC_USDT.BTC-261225-90000-P"]
