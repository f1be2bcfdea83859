"""USDⓈ-M futures positions and account of the fake Binance: leverage and its brackets, margin type,
position mode, positionRisk (v2, v3), account (v2, v3) and balance.

Positions follow Binance: one-way mode has one BOTH row per symbol whose positionAmt is negative
for a short; hedge mode (positionSide/dual) has LONG and SHORT rows, the SHORT amount negative.
Only v2 rows carry leverage and marginType; v3 lists only symbols with a position or open orders.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .binance_common import (
    MAINT_MARGIN_RATE,
    SIGNED,
    ZERO,
    BinanceError,
    Call,
    Endpoint,
    FakeBinance,
    mandatory,
    now_ms,
    plain,
)
from .binance_common import symbol_id as sid
from .binance_futures import MARGIN_ASSETS, f8, instruments_param, one_or_all, qty
from .engine import Account, Instrument

BRACKETS = [  # (initial leverage, notional floor, notional cap, maintenance margin ratio, cum)
    (125, 0, 50_000, Decimal("0.004"), 0),
    (100, 50_000, 600_000, Decimal("0.005"), 50),
    (75, 600_000, 3_000_000, Decimal("0.0065"), 950),
    (50, 3_000_000, 12_000_000, Decimal("0.01"), 11_450),
    (25, 12_000_000, 70_000_000, Decimal("0.02"), 131_450),
]
DONE = {"code": 200, "msg": "success"}
InstrumentsParam = Callable[[FakeBinance, Call], list[Instrument]]  # the instruments a call names


def max_notional(leverage: int) -> int:
    return max(cap for lev, _, cap, _, _ in BRACKETS if lev >= leverage)


# --- leverage, margin type, position mode -------------------------------------------------------------------------


def bracket_rows(instruments: list[Instrument], unit: str = "notional", scale: int = 1) -> list[dict]:
    """BRACKETS per symbol; caps and floors named `unit`Cap/`unit`Floor, they and cum divided by `scale`
    (COIN-M: "qty", in contracts)."""
    return [
        {
            "symbol": sid(inst),
            "notionalCoef": 1.0,
            "brackets": [
                {
                    "bracket": n,
                    "initialLeverage": lev,
                    f"{unit}Cap": cap // scale,
                    f"{unit}Floor": floor // scale,
                    "maintMarginRatio": float(mmr),
                    "cum": float(cum) / scale,
                }
                for n, (lev, floor, cap, mmr, cum) in enumerate(BRACKETS, 1)
            ],
        }
        for inst in instruments
    ]


def leverage_bracket(fake: FakeBinance, call: Call) -> Any:
    return one_or_all(call, bracket_rows(instruments_param(fake, call)))


def set_leverage(fake: FakeBinance, call: Call) -> dict:
    inst = fake.usdm_symbol(call)
    leverage = call.int("leverage")
    if leverage is None:
        raise mandatory("leverage")
    if not 1 <= leverage <= 125:
        raise BinanceError(-4028, f"Leverage {leverage} is not valid")
    fake.engine.set_leverage(call.account, inst.key, leverage)
    return {"symbol": sid(inst), "leverage": leverage, "maxNotionalValue": str(max_notional(leverage))}


def set_margin_type(fake: FakeBinance, call: Call) -> dict:
    inst = fake.usdm_symbol(call)
    margin_type = call.need("marginType").upper()
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'marginType'; legal range is 'ISOLATED, CROSSED'."
        )
    if margin_type == fake.margin_types.get((call.account, inst.key), "CROSSED"):
        raise BinanceError(-4046, "No need to change margin type.")
    acc = fake.engine.account(call.account)
    if any(key == inst.key for key, _ in acc.positions):
        raise BinanceError(-4048, "Margin type cannot be changed if there exists position.")
    if fake.engine.orders_of(call.account, inst.key, open_=True):
        raise BinanceError(-4047, "Margin type cannot be changed if there exists open orders.")
    fake.margin_types[(call.account, inst.key)] = margin_type
    return DONE


def get_position_mode(fake: FakeBinance, call: Call) -> dict:
    return {"dualSidePosition": fake.engine.account(call.account).hedged}


def set_position_mode(fake: FakeBinance, call: Call) -> dict:
    dual = call.bool("dualSidePosition")
    if dual is None:
        raise mandatory("dualSidePosition")
    acc = fake.engine.account(call.account)
    if dual == acc.hedged:
        raise BinanceError(-4059, "No need to change position side.")
    usdm = {i.key for i in fake.usdm_instruments().values()}
    if any(key in usdm for key, _ in acc.positions):
        raise BinanceError(-4068, "Position side cannot be changed if there exists position.")
    if any(o.inst.key in usdm for o in fake.engine.orders_of(call.account, open_=True)):
        raise BinanceError(-4067, "Position side cannot be changed if there exists open orders.")
    acc.hedged = dual
    return DONE


def symbol_config(fake: FakeBinance, call: Call) -> list:
    acc = fake.engine.account(call.account)
    return [
        {
            "symbol": sid(inst),
            "marginType": fake.margin_types.get((call.account, inst.key), "CROSSED"),
            "isAutoAddMargin": "false",
            "leverage": fake.engine.leverage_of(acc, inst),
            "maxNotionalValue": str(max_notional(fake.engine.leverage_of(acc, inst))),
        }
        for inst in instruments_param(fake, call)
    ]


class PositionView:
    """One Binance position row (BOTH, LONG or SHORT) of an account on an instrument, in numbers."""

    def __init__(self, fake: FakeBinance, acc: Account, inst: Instrument, side: str) -> None:
        self.inst, self.side = inst, side
        if side == "BOTH":
            pos = acc.positions.get((inst.key, "long")) or acc.positions.get((inst.key, "short"))
        else:
            pos = acc.positions.get((inst.key, side.lower()))
        self.pos = pos
        sign = -1 if pos is not None and pos.side == "short" else 1
        self.amount = sign * pos.qty if pos else ZERO
        self.entry = pos.entry if pos else ZERO
        self.mark = inst.price
        self.upnl = inst.pnl(pos.side, pos.qty, pos.entry, self.mark) if pos else ZERO
        if inst.inverse:  # COIN-M: contracts of `contract_size` USD; the notional is in the coin
            self.notional = self.amount * inst.contract_size / self.mark if self.mark else ZERO
        else:
            self.notional = self.amount * inst.contract_size * self.mark
        self.leverage = fake.engine.leverage_of(acc, inst)
        self.isolated = fake.margin_types.get((acc.key, inst.key)) == "ISOLATED"
        self.margin = pos.margin if pos else ZERO
        self.initial = abs(self.notional) / self.leverage
        orders = fake.engine.orders_of(acc.key, inst.key, open_=True)
        self.order_margin = sum(
            (o.reserved for o in orders if o.reserved_ccy == inst.settle and side in ("BOTH", o.pos_side.upper())),
            ZERO,
        )
        self.maint = abs(self.notional) * MAINT_MARGIN_RATE
        self.updated = pos.updated_ms if pos else 0

    @property
    def liquidation(self) -> Decimal:
        if self.pos is None:
            return ZERO
        move = Decimal(1) / self.leverage - MAINT_MARGIN_RATE
        return max(ZERO, self.entry * (1 - move if self.amount > 0 else 1 + move))

    def common(self) -> dict:
        inst = self.inst
        return {
            "symbol": sid(inst),
            "positionSide": self.side,
            "positionAmt": qty(inst, self.amount),
            "entryPrice": plain(self.entry),
            "breakEvenPrice": plain(self.entry),
            "markPrice": f8(self.mark),
            "unRealizedProfit": f8(self.upnl),
            "liquidationPrice": plain(self.liquidation) if self.pos else "0",
            "isolatedMargin": f8(self.margin + self.upnl) if self.isolated and self.pos else "0",
            "notional": f8(self.notional),
            "isolatedWallet": f8(self.margin) if self.isolated else "0",
            "updateTime": self.updated,
        }

    def v2(self) -> dict:
        row = self.common()
        row.update(
            leverage=str(self.leverage),
            maxNotionalValue=str(max_notional(self.leverage)),
            marginType="isolated" if self.isolated else "cross",
            isAutoAddMargin="false",
            isolated=self.isolated,
            adlQuantile=1 if self.pos else 0,
        )
        return row

    def v3(self) -> dict:
        row = self.common()
        row.update(
            marginAsset=self.inst.settle,
            initialMargin=f8(self.initial + self.order_margin),
            maintMargin=f8(self.maint),
            positionInitialMargin=f8(self.initial),
            openOrderInitialMargin=f8(self.order_margin),
            adl=1 if self.pos else 0,
            bidNotional="0",
            askNotional="0",
        )
        return row

    def account_row(self, version: int) -> dict:
        """A `positions` entry of /fapi/v2 or /fapi/v3 account."""
        row = {
            "symbol": sid(self.inst),
            "positionSide": self.side,
            "positionAmt": qty(self.inst, self.amount),
            "unrealizedProfit": f8(self.upnl),
            "isolatedMargin": f8(self.margin + self.upnl) if self.isolated and self.pos else "0",
            "notional": f8(self.notional),
            "isolatedWallet": f8(self.margin) if self.isolated else "0",
            "initialMargin": f8(self.initial + self.order_margin),
            "maintMargin": f8(self.maint),
            "updateTime": self.updated,
        }
        if version == 2:
            row.update(
                positionInitialMargin=f8(self.initial),
                openOrderInitialMargin=f8(self.order_margin),
                leverage=str(self.leverage),
                isolated=self.isolated,
                entryPrice=plain(self.entry),
                breakEvenPrice=plain(self.entry),
                maxNotional=str(max_notional(self.leverage)),
                bidNotional="0",
                askNotional="0",
            )
        return row


def position_views(
    fake: FakeBinance, call: Call, only_active: bool, instruments: InstrumentsParam = instruments_param
) -> list[PositionView]:
    """The position rows of the instruments `instruments(fake, call)` names (USDⓈ-M unless told)."""
    acc = fake.engine.account(call.account)
    sides = ("LONG", "SHORT") if acc.hedged else ("BOTH",)
    views = []
    with fake.engine.lock:
        for inst in instruments(fake, call):
            rows = [PositionView(fake, acc, inst, side) for side in sides]
            views += [v for v in rows if not only_active or v.pos or v.order_margin]
    return views


def position_risk_v2(fake: FakeBinance, call: Call) -> list:
    return [v.v2() for v in position_views(fake, call, only_active=False)]


def position_risk_v3(fake: FakeBinance, call: Call) -> list:
    """v3 lists only symbols with a position or open orders, and carries no leverage."""
    return [v.v3() for v in position_views(fake, call, only_active=True)]


def _asset_rows(
    fake: FakeBinance, acc: Account, views: list[PositionView], assets: tuple[str, ...] = MARGIN_ASSETS
) -> list[dict]:
    rows = []
    now = now_ms()
    for asset in assets:
        if asset not in acc.balances:
            continue
        free, used = acc.balance(asset)
        mine = [v for v in views if v.inst.settle == asset]
        upnl = sum((v.upnl for v in mine), ZERO)
        position_margin = sum((v.margin for v in mine), ZERO)
        order_margin = sum((v.order_margin for v in mine), ZERO)
        wallet = free + used
        available = free + upnl
        rows.append(
            {
                "asset": asset,
                "walletBalance": f8(wallet),
                "unrealizedProfit": f8(upnl),
                "marginBalance": f8(wallet + upnl),
                "maintMargin": f8(sum((v.maint for v in mine), ZERO)),
                "initialMargin": f8(position_margin + order_margin),
                "positionInitialMargin": f8(position_margin),
                "openOrderInitialMargin": f8(order_margin),
                "crossWalletBalance": f8(wallet),
                "crossUnPnl": f8(upnl),
                "availableBalance": f8(available),
                "maxWithdrawAmount": f8(min(available, wallet)),
                "updateTime": now if wallet else 0,
            }
        )
    return rows


def account_rows(
    fake: FakeBinance,
    call: Call,
    only_active: bool,
    assets: tuple[str, ...] = MARGIN_ASSETS,
    instruments: InstrumentsParam = instruments_param,
) -> tuple[list[PositionView], list[dict]]:
    """The account's position rows on every instrument of its kind, and its rows of `assets`."""
    acc = fake.engine.account(call.account)
    views = position_views(fake, Call(call.method, call.path, {}, call.account), only_active, instruments)
    with fake.engine.lock:
        return views, _asset_rows(fake, acc, views, assets)


def _account(fake: FakeBinance, call: Call, version: int) -> dict:
    views, assets = account_rows(fake, call, only_active=version == 3)
    usdt = next((a for a in assets if a["asset"] == "USDT"), None) or {}

    def total(field: str) -> str:
        return usdt.get(field, "0.00000000")

    body: dict[str, Any] = {
        "totalInitialMargin": total("initialMargin"),
        "totalMaintMargin": total("maintMargin"),
        "totalWalletBalance": total("walletBalance"),
        "totalUnrealizedProfit": total("unrealizedProfit"),
        "totalMarginBalance": total("marginBalance"),
        "totalPositionInitialMargin": total("positionInitialMargin"),
        "totalOpenOrderInitialMargin": total("openOrderInitialMargin"),
        "totalCrossWalletBalance": total("crossWalletBalance"),
        "totalCrossUnPnl": total("crossUnPnl"),
        "availableBalance": total("availableBalance"),
        "maxWithdrawAmount": total("maxWithdrawAmount"),
    }
    if version == 3:
        return {**body, "assets": assets, "positions": [v.account_row(3) for v in views]}
    return {
        "feeTier": 0,
        "feeBurn": True,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
        **body,
        "assets": [{**a, "marginAvailable": True} for a in assets],
        "positions": [v.account_row(2) for v in views],
    }


def account_v2(fake: FakeBinance, call: Call) -> dict:
    return _account(fake, call, 2)


def account_v3(fake: FakeBinance, call: Call) -> dict:
    return _account(fake, call, 3)


def balance(fake: FakeBinance, call: Call) -> list:
    _, assets = account_rows(fake, call, only_active=True)
    return [
        {
            "accountAlias": "SgsR",
            "asset": a["asset"],
            "balance": a["walletBalance"],
            "crossWalletBalance": a["crossWalletBalance"],
            "crossUnPnl": a["crossUnPnl"],
            "availableBalance": a["availableBalance"],
            "maxWithdrawAmount": a["maxWithdrawAmount"],
            "marginAvailable": True,
            "updateTime": a["updateTime"],
        }
        for a in assets
    ]


ROUTES = [
    Endpoint("GET", "/fapi/v1/leverageBracket", leverage_bracket, SIGNED),
    Endpoint("POST", "/fapi/v1/leverage", set_leverage, SIGNED),
    Endpoint("POST", "/fapi/v1/marginType", set_margin_type, SIGNED),
    Endpoint("GET", "/fapi/v1/positionSide/dual", get_position_mode, SIGNED),
    Endpoint("POST", "/fapi/v1/positionSide/dual", set_position_mode, SIGNED),
    Endpoint("GET", "/fapi/v1/symbolConfig", symbol_config, SIGNED),
    Endpoint("GET", "/fapi/v2/positionRisk", position_risk_v2, SIGNED),
    Endpoint("GET", "/fapi/v3/positionRisk", position_risk_v3, SIGNED),
    Endpoint("GET", "/fapi/v2/account", account_v2, SIGNED),
    Endpoint("GET", "/fapi/v3/account", account_v3, SIGNED),
    Endpoint("GET", "/fapi/v2/balance", balance, SIGNED),
    Endpoint("GET", "/fapi/v3/balance", balance, SIGNED),
]
