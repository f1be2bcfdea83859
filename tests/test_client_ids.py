"""Request-level proof of gateway.client_ids: real ccxt classes, only the network replaced.

Each exchange's `fetch(url, method, headers, body)` (ccxt's async HTTP transport) is swapped for a
recorder that keeps the request and answers with a canned reply in the exchange's format, then runs
ccxt's own `handle_errors` / `handle_http_status_code` on it exactly as `fetch` does, so error
replies become the ccxt exceptions the live exchange would give. Signing, request building and
parsing are ccxt's, unmodified. No sockets, no sleeping.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import ccxt.async_support as ccxt
import pytest

from gateway import client_ids
from gateway.client_ids import LookupUnavailable, create_params, derive_client_id, find_by_client_id, rule_for

SEEDS = [f"route|key|{nonce}|order".encode() for nonce in range(200)] + [b"", b"\x00" * 64, "ü".encode()]
SEED = b"binance|key-1|1700000000123|('BTC/USDT','buy',False,'0.01','30000')"
NOW_MS = int(time.time() * 1000)
# A throwaway secp256k1 key (the well-known first Hardhat/Anvil test account): never funded, never sent anywhere.
HL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
HL_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@dataclass
class Sent:
    url: str
    method: str
    headers: dict
    body: Any

    @property
    def params(self) -> dict:
        """Query string, form or JSON body, flattened one level (Hyperliquid's action too)."""
        found: dict = dict(parse_qsl(urlsplit(self.url).query))
        if self.body:
            try:
                data = json.loads(self.body)
            except ValueError:
                data = dict(parse_qsl(self.body))
            if isinstance(data, list) and data:  # OKX places single orders through batch-orders
                data = data[0]
            if isinstance(data, dict):
                found.update(data)
        return found

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.url).path)


class Recorder:
    """Replaces exchange.fetch: records each request and answers from `routes` (first match wins)."""

    def __init__(self, exchange: Any, routes: list[tuple[str, int, Any]]):
        self.exchange = exchange
        self.routes = routes
        self.sent: list[Sent] = []
        exchange.fetch = self

    async def __call__(self, url, method="GET", headers=None, body=None):
        self.sent.append(Sent(url, method, headers or {}, body))
        route = next((r for r in self.routes if re.search(r[0], unquote(url))), None)
        if route is None:
            raise AssertionError(f"unexpected request {method} {url} {body}")
        _, status, reply = route
        text = reply if isinstance(reply, str) else json.dumps(reply)
        ex = self.exchange
        parsed = ex.parse_json(text)
        ex.handle_errors(status, "", url, method, {}, text, parsed, headers, body)
        ex.handle_http_status_code(status, "", url, method, text)
        return parsed


def market(ex_id: str, base: str, quote: str, kind: str = "spot", **extra: Any) -> dict:
    contract = kind != "spot"
    settle = quote if contract else None
    symbol = f"{base}/{quote}" + (f":{settle}" if contract else "")
    result = {
        "id": extra.pop("id", f"{base}{quote}"),
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "baseId": extra.pop("baseId", base),
        "quoteId": extra.pop("quoteId", quote),
        "settleId": extra.pop("settleId", settle),
        "type": kind,
        "spot": kind == "spot",
        "margin": False,
        "swap": kind == "swap",
        "future": False,
        "option": False,
        "active": True,
        "contract": contract,
        "linear": True if contract else None,
        "inverse": False if contract else None,
        "contractSize": 1.0 if contract else None,
        "expiry": None,
        "precision": {"amount": 0.0001, "price": 0.01},
        "limits": {"amount": {"min": 0.0001, "max": None}, "price": {"min": None, "max": None}, "cost": {}},
        "info": {},
    }
    result.update(extra)
    return result


def make(klass: type, markets: list[dict], **config: Any) -> Any:
    ex = klass({"apiKey": "k" * 16, "secret": "s" * 32, "enableRateLimit": False, **config})
    ex.set_markets(markets)
    return ex


def the_only(recorder: Recorder, path_part: str) -> Sent:
    hits = [sent for sent in recorder.sent if path_part in sent.path]
    assert len(hits) == 1, [sent.url for sent in recorder.sent]
    return hits[0]


# ---------------------------------------------------------------------------------------------
# derive_client_id / rule_for


ALL = [
    ccxt.binance,
    ccxt.binanceusdm,
    ccxt.binancecoinm,
    ccxt.okx,
    ccxt.myokx,
    ccxt.bybit,
    ccxt.kucoin,
    ccxt.kucoinfutures,
    ccxt.gate,
    ccxt.bitget,
    ccxt.htx,
    ccxt.kraken,
    ccxt.hyperliquid,
]
FORMATS = {
    "binance": r"[.A-Z:/a-z0-9_-]{1,36}",
    "okx": r"[A-Za-z][A-Za-z0-9]{0,31}",
    "bybit": r"[A-Za-z0-9_-]{1,36}",
    "kucoin": r"[A-Za-z0-9_-]{1,40}",
    "gate": r"[A-Za-su-z][0-9A-Za-z_.-]{0,27}",  # must not start with "t": ccxt then adds no "t-"
    "bitget": r"[A-Za-z0-9_-]{1,32}",
    "htx": r"[1-9][0-9]{17}",  # an integer 1 .. 2**63-1 for contracts, text <= 64 for spot
    "kraken": r"[0-9a-f]{32}",  # Kraken's short UUID form
    "hyperliquid": r"0x[0-9a-f]{32}",
}


@pytest.mark.parametrize("klass", ALL, ids=lambda k: k.__name__)
def test_ids_meet_the_exchange_rules(klass):
    ex = klass()
    rule = rule_for(ex)
    assert rule is not None
    ids = [derive_client_id(ex, seed) for seed in SEEDS]
    assert all(re.fullmatch(FORMATS[rule.family], cid) for cid in ids), ids[:3]
    assert all(len(cid) <= rule.max_length for cid in ids)
    assert len(set(ids)) == len(ids)  # different seeds, different ids
    assert ids == [derive_client_id(klass(), seed) for seed in SEEDS]  # a restart derives the same ids
    if rule.family == "htx":
        assert all(int(cid) < 2**63 for cid in ids)
    assert create_params(ex, ids[0]) == {"clientOrderId": ids[0]}


def test_rules_follow_the_class_hierarchy():
    assert rule_for(ccxt.binanceusdm()).family == "binance"
    assert rule_for(ccxt.binancecoinm()).family == "binance"
    assert rule_for(ccxt.myokx()).family == "okx"
    assert rule_for(ccxt.kucoinfutures()).family == "kucoin"
    assert not hasattr(ccxt, "huobi") and not hasattr(ccxt, "gateio")  # aliases gone in ccxt 4.5.90
    assert rule_for(ccxt.krakenfutures()) is None  # a different API (cliOrdId); not verified


@pytest.mark.parametrize("name", ["bitvavo", "ndax", "coinmate", "krakenfutures", "binanceus"])
def test_unverified_exchanges_get_nothing(name):
    ex = getattr(ccxt, name)()
    if name == "binanceus":  # a binance subclass: the binance rule is inherited on purpose
        assert rule_for(ex).family == "binance"
        return
    assert rule_for(ex) is None
    assert derive_client_id(ex, SEED) is None


async def test_unverified_exchange_lookup_is_unavailable():
    ex = ccxt.bitvavo()
    with pytest.raises(LookupUnavailable):
        await find_by_client_id(ex, {"symbol": "BTC/EUR", "type": "spot"}, "x", NOW_MS)


# ---------------------------------------------------------------------------------------------
# Binance (spot and USDⓈ-M)

BINANCE_SPOT = market(
    "binance", "BTC", "USDT", info={"orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"], "permissions": ["SPOT"]}
)
BINANCE_SWAP = market("binanceusdm", "BTC", "USDT", "swap", info={"orderTypes": ["LIMIT", "MARKET"]})


def binance_order(cid: str, order_id: int = 28457) -> dict:
    return {
        "symbol": "BTCUSDT",
        "orderId": order_id,
        "clientOrderId": cid,
        "transactTime": NOW_MS,
        "time": NOW_MS,
        "price": "30000.00",
        "origQty": "0.01",
        "executedQty": "0.00",
        "cummulativeQuoteQty": "0.00",
        "status": "NEW",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
    }


@pytest.mark.parametrize(
    ("klass", "mkt", "path"),
    [(ccxt.binance, BINANCE_SPOT, "/api/v3/order"), (ccxt.binanceusdm, BINANCE_SWAP, "/fapi/v1/order")],
)
async def test_binance(klass, mkt, path):
    ex = make(klass, [mkt])
    cid = derive_client_id(ex, SEED)
    rec = Recorder(ex, [(path, 200, binance_order(cid))])
    order = await ex.create_order(mkt["symbol"], "limit", "buy", 0.01, 30000, create_params(ex, cid))
    sent = the_only(rec, path)
    assert sent.method == "POST" and sent.params["newClientOrderId"] == cid
    assert order["clientOrderId"] == cid

    rec = Recorder(ex, [(path, 200, binance_order(cid))])
    found = await find_by_client_id(ex, mkt, cid, NOW_MS)
    sent = the_only(rec, path)
    assert sent.method == "GET" and sent.params["origClientOrderId"] == cid and "orderId" not in sent.params
    assert found["id"] == "28457"

    Recorder(ex, [(path, 400, {"code": -2013, "msg": "Order does not exist."})])
    assert await find_by_client_id(ex, mkt, cid, NOW_MS) is None

    Recorder(ex, [(path, 200, binance_order("someone-else"))])  # an answer about another order is no answer
    with pytest.raises(ccxt.ExchangeError):
        await find_by_client_id(ex, mkt, cid, NOW_MS)

    Recorder(ex, [(path, 503, "Service Unavailable")])  # could not ask: the caller retries
    with pytest.raises(ccxt.BaseError):
        await find_by_client_id(ex, mkt, cid, NOW_MS)


# ---------------------------------------------------------------------------------------------
# OKX

OKX_SPOT = market("okx", "BTC", "USDT", id="BTC-USDT", info={"instType": "SPOT"})


def okx_order(cid: str) -> dict:
    return {
        "instType": "SPOT",
        "instId": "BTC-USDT",
        "ordId": "312269865356374016",
        "clOrdId": cid,
        "px": "30000",
        "sz": "0.01",
        "ordType": "limit",
        "side": "buy",
        "state": "live",
        "accFillSz": "0",
        "avgPx": "",
        "fee": "0",
        "feeCcy": "BTC",
        "cTime": str(NOW_MS),
        "uTime": str(NOW_MS),
    }


async def test_okx():
    ex = make(ccxt.okx, [OKX_SPOT], password="p" * 8)
    cid = derive_client_id(ex, SEED)
    placed = {"code": "0", "msg": "", "data": [{"clOrdId": cid, "ordId": "312269865356374016", "sCode": "0"}]}
    rec = Recorder(ex, [("/trade/batch-orders", 200, placed)])
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30000, create_params(ex, cid))
    sent = the_only(rec, "/api/v5/trade/batch-orders")
    assert sent.method == "POST" and sent.params["clOrdId"] == cid

    rec = Recorder(ex, [("/trade/order", 200, {"code": "0", "msg": "", "data": [okx_order(cid)]})])
    found = await find_by_client_id(ex, OKX_SPOT, cid, NOW_MS)
    sent = the_only(rec, "/api/v5/trade/order")
    assert sent.method == "GET" and sent.params["clOrdId"] == cid and "ordId" not in sent.params
    assert found["id"] == "312269865356374016"

    Recorder(ex, [("/trade/order", 200, {"code": "51603", "msg": "Order does not exist", "data": []})])
    assert await find_by_client_id(ex, OKX_SPOT, cid, NOW_MS) is None


# ---------------------------------------------------------------------------------------------
# Bybit (spot and linear: the same two endpoints, different `category`)

BYBIT_SPOT = market("bybit", "BTC", "USDT")
BYBIT_SWAP = market("bybit", "ETH", "USDT", "swap", id="ETHUSDT")


def bybit_list(orders: list[dict], category: str) -> dict:
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"list": orders, "category": category, "nextPageCursor": ""},
        "retExtInfo": {},
        "time": NOW_MS,
    }


def bybit_order(cid: str, symbol: str, status: str) -> dict:
    return {
        "orderId": "1321052653536515584",
        "orderLinkId": cid,
        "symbol": symbol,
        "price": "30000",
        "qty": "0.01",
        "side": "Buy",
        "orderStatus": status,
        "orderType": "Market" if status == "Filled" else "Limit",
        "timeInForce": "GTC",
        "cumExecQty": "0.01" if status == "Filled" else "0",
        "cumExecValue": "300" if status == "Filled" else "0",
        "avgPrice": "30000" if status == "Filled" else "",
        "leavesQty": "0",
        "createdTime": str(NOW_MS),
        "updatedTime": str(NOW_MS),
    }


@pytest.mark.parametrize(("mkt", "category"), [(BYBIT_SPOT, "spot"), (BYBIT_SWAP, "linear")])
async def test_bybit(mkt, category):
    ex = make(ccxt.bybit, [mkt])
    ex.options["enableUnifiedAccount"] = True
    ex.options["enableUnifiedMargin"] = False
    cid = derive_client_id(ex, SEED)
    placed = {"retCode": 0, "retMsg": "OK", "result": {"orderId": "1321003749386327552", "orderLinkId": cid}}
    rec = Recorder(ex, [("/v5/order/create", 200, placed)])
    await ex.create_order(mkt["symbol"], "limit", "buy", 0.01, 30000, create_params(ex, cid))
    sent = the_only(rec, "/v5/order/create")
    assert sent.params["orderLinkId"] == cid and sent.params["category"] == category

    # a filled market order is no longer open: found in the history
    rec = Recorder(
        ex,
        [
            ("/v5/order/realtime", 200, bybit_list([], category)),
            ("/v5/order/history", 200, bybit_list([bybit_order(cid, mkt["id"], "Filled")], category)),
        ],
    )
    found = await find_by_client_id(ex, mkt, cid, NOW_MS - 5000)
    assert found["id"] == "1321052653536515584" and found["status"] == "closed"
    for path in ("/v5/order/realtime", "/v5/order/history"):
        sent = the_only(rec, path)
        assert sent.params["orderLinkId"] == cid and sent.params["category"] == category
    assert the_only(rec, "/v5/order/history").params["startTime"] == str(NOW_MS - 5000)

    rec = Recorder(ex, [("/v5/order/realtime", 200, bybit_list([bybit_order(cid, mkt["id"], "New")], category))])
    assert (await find_by_client_id(ex, mkt, cid, NOW_MS))["status"] == "open"
    assert len(rec.sent) == 1

    Recorder(ex, [("/v5/order/(realtime|history)", 200, bybit_list([], category))])
    assert await find_by_client_id(ex, mkt, cid, NOW_MS) is None

    # the filter was ignored (another order came back): not an answer
    Recorder(ex, [("/v5/order/realtime", 200, bybit_list([bybit_order("other", mkt["id"], "New")], category))])
    with pytest.raises(ccxt.ExchangeError):
        await find_by_client_id(ex, mkt, cid, NOW_MS)


# ---------------------------------------------------------------------------------------------
# KuCoin (spot classic and HF) and KuCoin Futures (same kucoin code path)

KUCOIN_SPOT = market("kucoin", "BTC", "USDT", id="BTC-USDT")
KUCOIN_SWAP = market("kucoinfutures", "BTC", "USDT", "swap", id="XBTUSDTM", settleId="USDT")


def kucoin_order(cid: str, symbol: str) -> dict:
    return {
        "id": "5c35c02703aa673ceec2a168",
        "symbol": symbol,
        "type": "limit",
        "side": "buy",
        "price": "30000",
        "size": "0.01",
        "dealSize": "0",
        "dealFunds": "0",
        "isActive": True,
        "cancelExist": False,
        "clientOid": cid,
        "createdAt": NOW_MS,
    }


@pytest.mark.parametrize(
    ("klass", "mkt", "hf", "create_path", "lookup_path"),
    [
        (ccxt.kucoin, KUCOIN_SPOT, False, "/api/v1/orders", "/api/v1/order/client-order/"),
        (ccxt.kucoin, KUCOIN_SPOT, True, "/api/v1/hf/orders", "/api/v1/hf/orders/client-order/"),
        (ccxt.kucoinfutures, KUCOIN_SWAP, False, "/api/v1/orders", "/api/v1/orders/byClientOid"),
    ],
)
async def test_kucoin(klass, mkt, hf, create_path, lookup_path):
    ex = make(klass, [mkt], password="p" * 8)
    ex.options["uta"] = False
    ex.options["hf"] = hf
    cid = derive_client_id(ex, SEED)
    placed = {"code": "200000", "data": {"orderId": "5c35c02703aa673ceec2a168", "clientOid": cid}}
    rec = Recorder(ex, [(create_path + "$", 200, placed)])
    await ex.create_order(mkt["symbol"], "limit", "buy", 1 if mkt["swap"] else 0.01, 30000, create_params(ex, cid))
    sent = rec.sent[-1]
    assert sent.path.endswith(create_path) and sent.params["clientOid"] == cid

    rec = Recorder(ex, [(lookup_path, 200, {"code": "200000", "data": kucoin_order(cid, mkt["id"])})])
    found = await find_by_client_id(ex, mkt, cid, NOW_MS)
    sent = rec.sent[-1]
    assert lookup_path in sent.path and cid in sent.url
    assert found["id"] == "5c35c02703aa673ceec2a168"

    Recorder(ex, [(lookup_path, 400, {"code": "400100", "msg": "order not exist."})])
    assert await find_by_client_id(ex, mkt, cid, NOW_MS) is None

    Recorder(ex, [(lookup_path, 200, {"code": "200000", "data": None})])  # no order in the answer: not "absent"
    with pytest.raises(ccxt.ExchangeError):
        await find_by_client_id(ex, mkt, cid, NOW_MS)


# ---------------------------------------------------------------------------------------------
# Gate (spot): the text lookup, then the finished-orders listing when the text is no longer accepted

GATE_SPOT = market("gate", "BTC", "USDT", id="BTC_USDT")


def gate_order(text: str, status: str = "open") -> dict:
    return {
        "id": "1852454420",
        "text": text,
        "create_time_ms": NOW_MS,
        "update_time_ms": NOW_MS,
        "status": status,
        "currency_pair": "BTC_USDT",
        "type": "limit",
        "account": "spot",
        "side": "buy",
        "amount": "0.01",
        "price": "30000",
        "time_in_force": "gtc",
        "left": "0.01" if status == "open" else "0",
        "filled_total": "0" if status == "open" else "300",
        "fee": "0",
        "fee_currency": "BTC",
        "finish_as": "open" if status == "open" else "filled",
    }


async def test_gate():
    ex = make(ccxt.gate, [GATE_SPOT])
    ex.options["unifiedAccount"] = False
    cid = derive_client_id(ex, SEED)
    wire = "t-" + cid
    rec = Recorder(ex, [("/spot/orders$", 201, gate_order(wire))])
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30000, create_params(ex, cid))
    assert the_only(rec, "/spot/orders").params["text"] == wire
    assert order["clientOrderId"] == wire

    rec = Recorder(ex, [("/spot/orders/t-", 200, gate_order(wire))])
    found = await find_by_client_id(ex, GATE_SPOT, cid, NOW_MS)
    assert the_only(rec, "/spot/orders/").path.endswith("/spot/orders/" + wire)
    assert found["id"] == "1852454420"

    not_found = {"label": "ORDER_NOT_FOUND", "message": "Order not found"}
    rec = Recorder(
        ex,
        [("/spot/orders/t-", 404, not_found), (r"/spot/orders\?", 200, [gate_order(wire, "closed")])],
    )
    found = await find_by_client_id(ex, GATE_SPOT, cid, NOW_MS - 120_000)
    listing = rec.sent[-1].params
    assert listing["status"] == "finished" and listing["from"] == str((NOW_MS - 120_000) // 1000)
    assert found["id"] == "1852454420" and found["status"] == "closed"

    Recorder(ex, [("/spot/orders/t-", 404, not_found), (r"/spot/orders\?", 200, [gate_order("t-other", "closed")])])
    assert await find_by_client_id(ex, GATE_SPOT, cid, NOW_MS) is None

    many = [gate_order("t-other", "closed")] * client_ids.LISTING_LIMIT  # not all seen: no answer
    Recorder(ex, [("/spot/orders/t-", 404, not_found), (r"/spot/orders\?", 200, many)])
    with pytest.raises(ccxt.ExchangeError):
        await find_by_client_id(ex, GATE_SPOT, cid, NOW_MS)


GATE_SWAP = market("gate", "BTC", "USDT", "swap", id="BTC_USDT", settleId="usdt", contractSize=0.0001)


def gate_futures_order(text: str, status: str = "open") -> dict:
    return {
        "id": 15675394,
        "contract": "BTC_USDT",
        "create_time": NOW_MS / 1000,
        "finish_time": None if status == "open" else NOW_MS / 1000,
        "status": "open" if status == "open" else "finished",
        "finish_as": "_new" if status == "open" else "filled",
        "size": 100,
        "price": "30000",
        "left": 100 if status == "open" else 0,
        "fill_price": "0" if status == "open" else "30000",
        "text": text,
        "tif": "gtc",
        "is_reduce_only": False,
        "is_close": False,
        "iceberg": 0,
    }


async def test_gate_swap():
    """USDT-settled perpetuals: the same text rule, on /futures/usdt/orders."""
    ex = make(ccxt.gate, [GATE_SWAP])
    ex.options["unifiedAccount"] = False
    cid = derive_client_id(ex, SEED)
    wire = "t-" + cid
    rec = Recorder(ex, [("/futures/usdt/orders$", 201, gate_futures_order(wire))])
    order = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 100, 30000, create_params(ex, cid))
    assert the_only(rec, "/futures/usdt/orders").params["text"] == wire
    assert order["clientOrderId"] == wire

    rec = Recorder(ex, [("/futures/usdt/orders/t-", 200, gate_futures_order(wire))])
    found = await find_by_client_id(ex, GATE_SWAP, cid, NOW_MS)
    assert the_only(rec, "/futures/usdt/orders/").path.endswith("/futures/usdt/orders/" + wire)
    assert found["id"] == "15675394"

    not_found = {"label": "ORDER_NOT_FOUND", "message": "Order not found"}
    by_time = r"/futures/usdt/orders_timerange\?"  # ccxt lists finished futures orders since a time here
    rec = Recorder(ex, [("/futures/usdt/orders/t-", 404, not_found), (by_time, 200, [gate_futures_order(wire, "x")])])
    found = await find_by_client_id(ex, GATE_SWAP, cid, NOW_MS - 120_000)
    listing = rec.sent[-1].params
    assert listing["contract"] == "BTC_USDT" and listing["from"] == str((NOW_MS - 120_000) // 1000)
    assert found["id"] == "15675394" and found["status"] == "closed"

    Recorder(ex, [("/futures/usdt/orders/t-", 404, not_found), (by_time, 200, [gate_futures_order("t-x", "x")])])
    assert await find_by_client_id(ex, GATE_SWAP, cid, NOW_MS) is None

    many = [gate_futures_order("t-x", "x")] * client_ids.LISTING_LIMIT  # not all seen: no answer
    Recorder(ex, [("/futures/usdt/orders/t-", 404, not_found), (by_time, 200, many)])
    with pytest.raises(ccxt.ExchangeError):
        await find_by_client_id(ex, GATE_SWAP, cid, NOW_MS)


# ---------------------------------------------------------------------------------------------
# Bitget (spot and USDT-M futures, classic account)

BITGET_SPOT = market("bitget", "BTC", "USDT")
BITGET_SWAP = market("bitget", "BTC", "USDT", "swap", id="BTCUSDT", info={"productType": "USDT-FUTURES"})


def bitget_order(cid: str) -> dict:
    return {
        "symbol": "BTCUSDT",
        "orderId": "1111461743123927040",
        "clientOid": cid,
        "price": "30000",
        "size": "0.01",
        "orderType": "limit",
        "side": "buy",
        "status": "live",
        "state": "live",
        "priceAvg": "0",
        "baseVolume": "0",
        "quoteVolume": "0",
        "cTime": str(NOW_MS),
        "uTime": str(NOW_MS),
    }


@pytest.mark.parametrize(
    ("mkt", "create_path", "lookup_path", "data"),
    [
        (BITGET_SPOT, "/api/v2/spot/trade/place-order", "/api/v2/spot/trade/orderInfo", "list"),
        (BITGET_SWAP, "/api/v2/mix/order/place-order", "/api/v2/mix/order/detail", "dict"),
    ],
)
async def test_bitget(mkt, create_path, lookup_path, data):
    ex = make(ccxt.bitget, [mkt], password="p" * 8)
    ex.options["uta"] = False
    cid = derive_client_id(ex, SEED)
    placed = {"code": "00000", "msg": "success", "data": {"orderId": "1111461743123927040", "clientOid": cid}}
    rec = Recorder(ex, [(create_path, 200, placed)])
    await ex.create_order(mkt["symbol"], "limit", "buy", 0.01, 30000, create_params(ex, cid))
    assert the_only(rec, create_path).params["clientOid"] == cid

    reply = [bitget_order(cid)] if data == "list" else bitget_order(cid)
    rec = Recorder(ex, [(lookup_path, 200, {"code": "00000", "msg": "success", "data": reply})])
    found = await find_by_client_id(ex, mkt, cid, NOW_MS)
    sent = the_only(rec, lookup_path).params
    assert sent["clientOid"] == cid and "orderId" not in sent
    assert found["id"] == "1111461743123927040"

    if data == "list":  # spot answers an unknown clientOid with an empty list: ccxt raises OrderNotFound
        Recorder(ex, [(lookup_path, 200, {"code": "00000", "msg": "success", "data": []})])
    else:
        Recorder(ex, [(lookup_path, 400, {"code": "40109", "msg": "The data of the order cannot be found"})])
    assert await find_by_client_id(ex, mkt, cid, NOW_MS) is None


async def test_bitget_unified_account():
    """The unified trading account (options uta): v3 place-order and order-info, by clientOid."""
    ex = make(ccxt.bitget, [BITGET_SPOT], password="p" * 8)
    ex.options["uta"] = True
    cid = derive_client_id(ex, SEED)
    placed = {"code": "00000", "msg": "success", "data": {"orderId": "1111461743123927040", "clientOid": cid}}
    rec = Recorder(ex, [("/api/v3/trade/place-order", 200, placed)])
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30000, create_params(ex, cid))
    assert the_only(rec, "/api/v3/trade/place-order").params["clientOid"] == cid

    info = {
        "orderId": "1111461743123927040",
        "clientOid": cid,
        "category": "SPOT",
        "symbol": "BTCUSDT",
        "orderType": "limit",
        "side": "buy",
        "price": "30000",
        "qty": "0.01",
        "cumExecQty": "0",
        "avgPrice": "0",
        "orderStatus": "live",
        "createdTime": str(NOW_MS),
        "updatedTime": str(NOW_MS),
    }
    rec = Recorder(ex, [("/api/v3/trade/order-info", 200, {"code": "00000", "msg": "success", "data": info})])
    found = await find_by_client_id(ex, BITGET_SPOT, cid, NOW_MS)
    sent = the_only(rec, "/api/v3/trade/order-info").params
    assert sent["clientOid"] == cid and "orderId" not in sent
    assert found["id"] == "1111461743123927040"

    Recorder(ex, [("/api/v3/trade/order-info", 400, {"code": "40109", "msg": "The data of the order cannot be found"})])
    assert await find_by_client_id(ex, BITGET_SPOT, cid, NOW_MS) is None
    Recorder(ex, [("/api/v3/trade/order-info", 500, {"code": "45001", "msg": "Unknown error"})])
    with pytest.raises(ccxt.ExchangeError):  # anything but a documented miss is not "absent"
        await find_by_client_id(ex, BITGET_SPOT, cid, NOW_MS)


# ---------------------------------------------------------------------------------------------
# HTX (spot; contracts are refused)

HTX_SPOT = market("htx", "BTC", "USDT", id="btcusdt", baseId="btc", quoteId="usdt")
HTX_SWAP = market("htx", "BTC", "USDT", "swap", id="BTC-USDT")


def htx_order(cid: str) -> dict:
    return {
        "id": 59378,
        "symbol": "btcusdt",
        "account-id": 100009,
        "client-order-id": cid,
        "amount": "0.01",
        "price": "30000",
        "created-at": NOW_MS,
        "type": "buy-limit",
        "field-amount": "0",
        "field-cash-amount": "0",
        "field-fees": "0",
        "state": "submitted",
    }


async def test_htx():
    ex = make(ccxt.htx, [HTX_SPOT, HTX_SWAP])
    ex.options["accountsById"] = {"100009": {"id": "100009", "type": "spot"}}
    ex.accounts = [{"id": "100009", "type": "spot", "code": None, "info": {}}]
    ex.options["accounts"] = ex.accounts
    cid = derive_client_id(ex, SEED)
    now_ms = int(time.time() * 1000)  # not NOW_MS: the suite may run long after this module was imported
    rec = Recorder(ex, [("/v1/order/orders/place", 200, {"status": "ok", "data": "59378"})])
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30000, create_params(ex, cid))
    assert the_only(rec, "/v1/order/orders/place").params["client-order-id"] == cid

    rec = Recorder(ex, [("/v1/order/orders/getClientOrder", 200, {"status": "ok", "data": htx_order(cid)})])
    found = await find_by_client_id(ex, HTX_SPOT, cid, now_ms)
    assert the_only(rec, "getClientOrder").params["clientOrderId"] == cid
    assert found["id"] == "59378"

    missing = {"status": "error", "err-code": "base-record-invalid", "err-msg": "record invalid", "data": None}
    Recorder(ex, [("getClientOrder", 200, missing)])
    assert await find_by_client_id(ex, HTX_SPOT, cid, now_ms - 5000) is None
    with pytest.raises(LookupUnavailable):  # too late for that lookup to prove absence
        await find_by_client_id(ex, HTX_SPOT, cid, now_ms - 600_000)
    with pytest.raises(LookupUnavailable):
        await find_by_client_id(ex, HTX_SWAP, cid, now_ms)


# ---------------------------------------------------------------------------------------------
# Kraken (spot): open + closed listings filtered by cl_ord_id; fetch_order would send `userref`

KRAKEN_SPOT = market("kraken", "BTC", "USD", id="XXBTZUSD", baseId="XXBT", quoteId="ZUSD", altname="XBTUSD")


def kraken_order(cid: str, status: str) -> dict:
    return {
        "refid": None,
        "userref": 0,
        "cl_ord_id": cid,
        "status": status,
        "opentm": NOW_MS / 1000,
        "starttm": 0,
        "expiretm": 0,
        "descr": {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "30000.0", "leverage": "none"},
        "vol": "0.01",
        "vol_exec": "0.01" if status == "closed" else "0",
        "cost": "300" if status == "closed" else "0",
        "fee": "0",
        "price": "30000" if status == "closed" else "0",
    }


async def test_kraken():
    ex = make(ccxt.kraken, [KRAKEN_SPOT], secret="c2VjcmV0" * 8)
    cid = derive_client_id(ex, SEED)
    placed = {
        "error": [],
        "result": {"descr": {"order": "buy 0.01 XBTUSD @ limit 30000"}, "txid": ["OUF4EM-FRGI2-MQMWZD"]},
    }
    rec = Recorder(ex, [("/private/AddOrder", 200, placed)])
    await ex.create_order("BTC/USD", "limit", "buy", 0.01, 30000, create_params(ex, cid))
    assert the_only(rec, "AddOrder").params["cl_ord_id"] == cid

    empty_open = {"error": [], "result": {"open": {}}}
    closed = {"error": [], "result": {"closed": {"OUF4EM-FRGI2-MQMWZD": kraken_order(cid, "closed")}, "count": 1}}
    rec = Recorder(ex, [("/private/OpenOrders", 200, empty_open), ("/private/ClosedOrders", 200, closed)])
    found = await find_by_client_id(ex, KRAKEN_SPOT, cid, NOW_MS - 5000)
    assert the_only(rec, "OpenOrders").params["cl_ord_id"] == cid
    sent = the_only(rec, "ClosedOrders").params
    assert sent["cl_ord_id"] == cid and sent["start"] == str((NOW_MS - 5000) // 1000) and "userref" not in sent
    assert found["id"] == "OUF4EM-FRGI2-MQMWZD" and found["status"] == "closed"

    Recorder(
        ex,
        [
            ("/private/OpenOrders", 200, empty_open),
            ("/private/ClosedOrders", 200, {"error": [], "result": {"closed": {}, "count": 0}}),
        ],
    )
    assert await find_by_client_id(ex, KRAKEN_SPOT, cid, NOW_MS) is None


# ---------------------------------------------------------------------------------------------
# Hyperliquid (perp and spot): cloid in the signed action, orderStatus by cloid

HL_SWAP = market(
    "hyperliquid", "BTC", "USDC", "swap", id="0", baseId=0, baseName="BTC", precision={"amount": 0.00001, "price": 1.0}
)


# spot assets are 10000 + their index in spotMeta (ccxt keeps it as baseId)
HL_SPOT = market(
    "hyperliquid", "PURR", "USDC", id="PURR/USDC", baseId=10000, baseName="PURR", precision={"amount": 1, "price": 1e-5}
)


@pytest.mark.parametrize(
    ("mkt", "coin", "asset"), [(HL_SWAP, "BTC", 0), (HL_SPOT, "PURR/USDC", 10000)], ids=["perp", "spot"]
)
async def test_hyperliquid(mkt, coin, asset):
    ex = make(ccxt.hyperliquid, [mkt], apiKey=None, secret=None, walletAddress=HL_ADDRESS, privateKey=HL_KEY)
    ex.options["approvedBuilderFee"] = True  # else ccxt first sends its own builder-fee approval
    cid = derive_client_id(ex, SEED)
    placed = {
        "status": "ok",
        "response": {"type": "order", "data": {"statuses": [{"resting": {"oid": 77738308}}]}},
    }
    rec = Recorder(ex, [("/exchange", 200, placed), ("/info", 200, {"referredBy": None, "cumVlm": "0"})])
    await ex.create_order(mkt["symbol"], "limit", "buy", 10, 30000, create_params(ex, cid))
    # ccxt's initialize_client first queries and sets its referrer; the order is the last /exchange call
    assert rec.sent[-1].path == "/exchange"
    action = rec.sent[-1].params["action"]
    assert action["type"] == "order" and action["orders"][0]["c"] == cid and action["orders"][0]["a"] == asset

    status = {
        "status": "order",
        "order": {
            "order": {
                "coin": coin,
                "side": "B",
                "limitPx": "30000.0",
                "sz": "0.01",
                "oid": 77738308,
                "timestamp": NOW_MS,
                "origSz": "0.01",
                "cloid": cid,
                "orderType": "Limit",
                "tif": "Gtc",
                "reduceOnly": False,
            },
            "status": "open",
            "statusTimestamp": NOW_MS,
        },
    }
    rec = Recorder(ex, [("/info", 200, status)])
    found = await find_by_client_id(ex, mkt, cid, NOW_MS)
    sent = the_only(rec, "/info").params
    assert sent["type"] == "orderStatus" and sent["oid"] == cid and sent["user"].lower() == HL_ADDRESS.lower()
    assert found["id"] == "77738308"

    Recorder(ex, [("/info", 200, {"status": "unknownOid"})])
    assert await find_by_client_id(ex, mkt, cid, NOW_MS) is None
