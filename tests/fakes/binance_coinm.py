"""COIN-M futures routes of the fake Binance (/dapi): exchangeInfo, 24 h ticker, depth, leverage
brackets, positionRisk, account and balance — enough for ccxt to load inverse markets, quote them
and read the COIN-M account.

COIN-M contracts are inverse: sized in USD (100 USD per BTCUSD_PERP contract), margined and
settled in the coin. Orders on /dapi are not served; tests open COIN-M positions on the engine.
Response shapes follow Binance's COIN-M docs: `contractStatus` instead of `status`, an integer
`contractSize`, `notionalValue` in the coin, `qtyCap`/`qtyFloor` brackets in contracts, a 24 h
`volume` in contracts beside `baseVolume` in the coin, and tickers always as a list.
"""

from __future__ import annotations

from typing import Any

from .binance_common import (
    PERPETUAL_DELIVERY,
    SIGNED,
    ZERO,
    Call,
    Endpoint,
    FakeBinance,
    book_levels,
    now_ms,
    places,
    plain,
)
from .binance_common import symbol_id as sid
from .binance_futures import ORDER_TYPES, RATE_LIMITS, f8, px, qty, ticker_row
from .binance_futures_account import account_rows, bracket_rows, position_views
from .engine import Instrument


def instruments_param(fake: FakeBinance, call: Call) -> list[Instrument]:
    """The contract named by `symbol`, or those of `pair` (BTCUSD), or of `marginAsset`, or all."""
    instruments = list(fake.coinm_instruments().values())
    if call.get("symbol"):
        return [fake._lookup(fake.coinm_instruments(), call.need("symbol"))]
    if call.get("pair"):
        instruments = [i for i in instruments if i.base + i.quote == call.need("pair").upper()]
    if call.get("marginAsset"):
        instruments = [i for i in instruments if i.settle == call.need("marginAsset").upper()]
    return instruments


def coins(fake: FakeBinance) -> tuple[str, ...]:
    return tuple(sorted({i.settle for i in fake.coinm_instruments().values()}))


def symbol_info(inst: Instrument) -> dict:
    return {
        "symbol": sid(inst),
        "pair": inst.base + inst.quote,
        "contractType": "PERPETUAL" if inst.kind == "swap" else "CURRENT_QUARTER",
        "deliveryDate": inst.expiry_ms if inst.kind == "future" else PERPETUAL_DELIVERY,
        "onboardDate": 1597042800000,
        "contractStatus": "TRADING",
        "contractSize": int(inst.contract_size),
        "marginAsset": inst.settle,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": inst.base,
        "quoteAsset": inst.quote,
        "pricePrecision": places(inst.tick),
        "quantityPrecision": places(inst.step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "maxMoveOrderLimit": 10000,
        "triggerProtect": "0.0500",
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": px(inst, inst.tick),
                "maxPrice": "4520958",
                "tickSize": plain(inst.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": plain(inst.min_qty),
                "maxQty": "1000000",
                "stepSize": plain(inst.step),
            },
            {"filterType": "MARKET_LOT_SIZE", "minQty": plain(inst.min_qty), "maxQty": "60000", "stepSize": "1"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": 4,
            },
        ],
        "orderTypes": ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        "liquidationFee": "0.015000",
        "marketTakeBound": "0.05",
    }


def exchange_info(fake: FakeBinance, call: Call) -> dict:
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [symbol_info(inst) for inst in fake.coinm_instruments().values()],
    }


def ticker_24hr(fake: FakeBinance, call: Call) -> list:
    now = now_ms()
    return [ticker_row(fake, inst, now, lambda i, _: coin_fields(fake, i)) for inst in instruments_param(fake, call)]


def coin_fields(fake: FakeBinance, inst: Instrument) -> dict:
    """COIN-M's own ticker fields: its pair, and the 24 h volume in the coin beside `volume` in contracts."""
    bars = fake.engine.candles(inst.key, 3600, limit=24)
    coin_volume = sum((b[5] * inst.contract_size / b[4] for b in bars if b[4]), ZERO)
    return {"pair": inst.base + inst.quote, "baseVolume": f8(coin_volume)}


def depth(fake: FakeBinance, call: Call) -> dict:
    inst = fake._lookup(fake.coinm_instruments(), call.need("symbol"))
    asks, bids = book_levels(inst, call.int("limit") or 500)
    now = now_ms()
    return {
        "lastUpdateId": now,
        "symbol": sid(inst),
        "pair": inst.base + inst.quote,
        "E": now,
        "T": now,
        "bids": [[px(inst, p), qty(inst, q)] for p, q in bids],
        "asks": [[px(inst, p), qty(inst, q)] for p, q in asks],
    }


def leverage_bracket(fake: FakeBinance, call: Call) -> list:
    """v2: per symbol; COIN-M brackets are in contracts (qtyCap / qtyFloor)."""
    return bracket_rows(instruments_param(fake, call), unit="qty", scale=1000)


def position_risk(fake: FakeBinance, call: Call) -> list:
    """USDⓈ-M's v2 row but for `notionalValue` (in the coin) and the zero isolatedMargin as "0.00000000"."""
    rows = []
    for v in position_views(fake, call, only_active=False, instruments=instruments_param):
        row = v.common()
        row["notionalValue"] = row.pop("notional")
        if not (v.isolated and v.pos):
            row["isolatedMargin"] = "0.00000000"
        row.update(
            leverage=str(v.leverage),
            maxQty="50",
            marginType="isolated" if v.isolated else "cross",
            isAutoAddMargin="false",
        )
        rows.append(row)
    return rows


def account(fake: FakeBinance, call: Call) -> dict:
    views, assets = account_rows(fake, call, only_active=False, assets=coins(fake), instruments=instruments_param)
    body: dict[str, Any] = {
        "assets": [{k: v for k, v in a.items() if k != "marginAvailable"} for a in assets],
        "positions": [
            {
                "symbol": sid(v.inst),
                "positionAmt": qty(v.inst, v.amount),
                "initialMargin": f8(v.initial + v.order_margin),
                "maintMargin": f8(v.maint),
                "unrealizedProfit": f8(v.upnl),
                "positionInitialMargin": f8(v.initial),
                "openOrderInitialMargin": f8(v.order_margin),
                "leverage": str(v.leverage),
                "isolated": v.isolated,
                "positionSide": v.side,
                "entryPrice": plain(v.entry),
                "maxQty": "50",
                "updateTime": v.updated,
            }
            for v in views
        ],
        "canDeposit": True,
        "canTrade": True,
        "canWithdraw": True,
        "feeTier": 0,
        "updateTime": 0,
    }
    return body


def balance(fake: FakeBinance, call: Call) -> list:
    return [
        {
            "accountAlias": "SgsR",
            "asset": a["asset"],
            "balance": a["walletBalance"],
            "withdrawAvailable": a["maxWithdrawAmount"],
            "crossWalletBalance": a["crossWalletBalance"],
            "crossUnPnl": a["crossUnPnl"],
            "availableBalance": a["availableBalance"],
            "updateTime": a["updateTime"],
        }
        for a in account_rows(fake, call, only_active=True, assets=coins(fake), instruments=instruments_param)[1]
    ]


ROUTES = [
    Endpoint("GET", "/dapi/v1/exchangeInfo", exchange_info),
    Endpoint("GET", "/dapi/v1/ticker/24hr", ticker_24hr),
    Endpoint("GET", "/dapi/v1/depth", depth),
    Endpoint("GET", "/dapi/v2/leverageBracket", leverage_bracket, SIGNED),
    Endpoint("GET", "/dapi/v1/positionRisk", position_risk, SIGNED),
    Endpoint("GET", "/dapi/v1/account", account, SIGNED),
    Endpoint("GET", "/dapi/v1/balance", balance, SIGNED),
]
