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

from .binance_common import SIGNED, ZERO, Call, Endpoint, FakeBinance, book_levels, now_ms, places, plain, ticker_stats
from .binance_common import symbol_id as sid
from .binance_futures import ORDER_TYPES, RATE_LIMITS, f8, px, qty
from .binance_futures_account import BRACKETS, PositionView, _asset_rows
from .engine import Instrument

PERPETUAL_DELIVERY = 4133404800000  # Binance's deliveryDate of a perpetual (2100-12-25)


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
    rows = []
    now = now_ms()
    for inst in instruments_param(fake, call):
        s = ticker_stats(fake.engine, inst)
        bars = fake.engine.candles(inst.key, 3600, limit=24)
        coin_volume = sum((b[5] * inst.contract_size / b[4] for b in bars if b[4]), ZERO)
        trades_ = fake.engine.public_trades[inst.key]
        rows.append(
            {
                "symbol": sid(inst),
                "pair": inst.base + inst.quote,
                "priceChange": px(inst, s["change"]),
                "priceChangePercent": f"{s['percent']:.3f}",
                "weightedAvgPrice": px(inst, s["vwap"]),
                "lastPrice": px(inst, s["last"]),
                "lastQty": qty(inst, trades_[-1]["qty"]),
                "openPrice": px(inst, s["open"]),
                "highPrice": px(inst, s["high"]),
                "lowPrice": px(inst, s["low"]),
                "volume": qty(inst, s["volume"]),
                "baseVolume": f8(coin_volume),
                "openTime": now - 86_400_000,
                "closeTime": now,
                "firstId": int(trades_[0]["id"]),
                "lastId": int(trades_[-1]["id"]),
                "count": len(trades_),
            }
        )
    return rows


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
    return [
        {
            "symbol": sid(inst),
            "notionalCoef": 1.0,
            "brackets": [
                {
                    "bracket": n,
                    "initialLeverage": lev,
                    "qtyCap": cap // 1000,
                    "qtyFloor": floor // 1000,
                    "maintMarginRatio": float(mmr),
                    "cum": float(cum) / 1000,
                }
                for n, (lev, floor, cap, mmr, cum) in enumerate(BRACKETS, 1)
            ],
        }
        for inst in instruments_param(fake, call)
    ]


def position_views(fake: FakeBinance, call: Call, only_active: bool) -> list[PositionView]:
    acc = fake.engine.account(call.account)
    sides = ("LONG", "SHORT") if acc.hedged else ("BOTH",)
    views = []
    with fake.engine.lock:
        for inst in instruments_param(fake, call):
            rows = [PositionView(fake, acc, inst, side) for side in sides]
            views += [v for v in rows if not only_active or v.pos or v.order_margin]
    return views


def position_risk(fake: FakeBinance, call: Call) -> list:
    rows = []
    for v in position_views(fake, call, only_active=False):
        rows.append(
            {
                "symbol": sid(v.inst),
                "positionAmt": qty(v.inst, v.amount),
                "entryPrice": plain(v.entry),
                "breakEvenPrice": plain(v.entry),
                "markPrice": f8(v.mark),
                "unRealizedProfit": f8(v.upnl),
                "liquidationPrice": plain(v.liquidation) if v.pos else "0",
                "leverage": str(v.leverage),
                "maxQty": "50",
                "marginType": "isolated" if v.isolated else "cross",
                "isolatedMargin": f8(v.margin + v.upnl) if v.isolated and v.pos else "0.00000000",
                "isAutoAddMargin": "false",
                "positionSide": v.side,
                "notionalValue": f8(v.notional),
                "isolatedWallet": f8(v.margin) if v.isolated else "0",
                "updateTime": v.updated,
            }
        )
    return rows


def _assets(fake: FakeBinance, call: Call) -> list[dict]:
    acc = fake.engine.account(call.account)
    views = position_views(fake, Call(call.method, call.path, {}, call.account), only_active=True)
    with fake.engine.lock:
        return _asset_rows(fake, acc, views, coins(fake))


def account(fake: FakeBinance, call: Call) -> dict:
    views = position_views(fake, Call(call.method, call.path, {}, call.account), only_active=False)
    assets = _assets(fake, call)
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
        for a in _assets(fake, call)
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
