"""Private OKX v5 endpoints of the fake: the signature check, account, positions, leverage.

Trading endpoints are in okx_trade.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from starlette.requests import Request

from .engine import Account, EngineError, Position
from .okx_common import (
    MMR_RATE,
    ZERO,
    Call,
    OkxError,
    Venue,
    fmt,
    inst_id,
    inst_type,
    margin_mode,
    now_ms,
    numeric_id,
    parse_decimal,
)
from .okx_public import base_amount, max_leverage, quote_amount
from .okx_trade import closable

SIGN_WINDOW_MS = 30_000
CHAINS = {"BTC": "Bitcoin", "LTC": "Litecoin", "USDT": "TRC20"}

# --- authentication -----------------------------------------------------------------------


def _auth_error(code: str, msg: str) -> OkxError:
    return OkxError(code, msg, status=401)


def authenticate(venue: Venue, request: Request, raw_body: bytes) -> str:
    """Check OKX's headers and signature; return the api key (the engine account)."""
    headers = request.headers
    key = headers.get("ok-access-key")
    passphrase = headers.get("ok-access-passphrase")
    sign = headers.get("ok-access-sign")
    stamp = headers.get("ok-access-timestamp")
    for value, code, name in (
        (key, "50103", "OK-ACCESS-KEY"),
        (passphrase, "50104", "OK-ACCESS-PASSPHRASE"),
        (sign, "50106", "OK-ACCESS-SIGN"),
        (stamp, "50107", "OK-ACCESS-TIMESTAMP"),
    ):
        if not value:
            raise _auth_error(code, f'Request header "{name}" can not be empty.')
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise _auth_error("50112", "Invalid OK-ACCESS-TIMESTAMP") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if abs(now_ms() - when.timestamp() * 1000) > SIGN_WINDOW_MS:
        raise _auth_error("50102", "Timestamp request expired")
    creds = venue.credentials.get(key)
    if creds is None:
        raise _auth_error("50111", "Invalid OK-ACCESS-KEY")
    secret, expected_passphrase = creds
    if passphrase != expected_passphrase:
        raise _auth_error("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
    path = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string", b"")
    prehash = stamp.encode() + request.method.encode() + path + (b"?" + query if query else b"") + raw_body
    expected = base64.b64encode(hmac.new(secret.encode(), prehash, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, sign):
        raise _auth_error("50113", "Invalid Sign")
    return key


# --- positions ------------------------------------------------------------------------------


def _liq_price(pos: Position, lever: int) -> Decimal:
    inv = Decimal(1) / lever
    if pos.inst.inverse:
        denom = (1 + inv - MMR_RATE) if pos.side == "long" else (1 - inv + MMR_RATE)
        return pos.entry / denom if denom > 0 else ZERO
    factor = (1 - inv + MMR_RATE) if pos.side == "long" else (1 + inv - MMR_RATE)
    return max(pos.entry * factor, ZERO)


def position_json(venue: Venue, account: str, acc: Account, pos: Position) -> dict:
    inst = pos.inst
    mark = inst.price
    lever = venue.engine.leverage_of(acc, inst)
    upl = inst.pnl(pos.side, pos.qty, pos.entry, mark)
    mode = venue.pos_modes.get((account, inst.key, pos.side), "cross")
    maintenance = (base_amount(inst, pos.qty, mark) if inst.inverse else quote_amount(inst, pos.qty, mark)) * MMR_RATE
    margin = pos.margin
    ratio = fmt(upl / margin) if margin else "0"
    trades = [t for o in venue.engine.orders_of(account, inst.key) for t in o.trades]
    return {
        "adl": "1",
        "availPos": fmt(closable(venue, account, inst, pos.side)),
        "avgPx": fmt(pos.entry),
        "baseBal": "",
        "bePx": fmt(pos.entry),
        "bizRefId": "",
        "bizRefType": "",
        "cTime": str(pos.opened_ms),
        "ccy": inst.settle,
        "closeOrderAlgo": [],
        "deltaBS": "",
        "deltaPA": "",
        "fee": "0",
        "fundingFee": "0",
        "gammaBS": "",
        "gammaPA": "",
        "idxPx": fmt(mark),
        "imr": fmt(margin) if mode == "cross" else "",
        "instId": inst_id(inst),
        "instType": inst_type(inst),
        "interest": "",
        "last": fmt(mark),
        "lever": str(lever),
        "liab": "",
        "liabCcy": "",
        "liqPenalty": "0",
        "liqPx": fmt(_liq_price(pos, lever)),
        "margin": fmt(margin) if mode == "isolated" else "",
        "markPx": fmt(mark),
        "mgnMode": mode,
        "mgnRatio": fmt((margin + upl) / maintenance) if maintenance else "",
        "mmr": fmt(maintenance),
        "notionalUsd": fmt(quote_amount(inst, pos.qty, mark)),
        "optVal": "",
        "pendingCloseOrdLiabVal": "",
        "pnl": "0",
        "pos": fmt(pos.qty if (acc.hedged or pos.side == "long") else -pos.qty),
        "posCcy": "",
        "posId": numeric_id(account, inst.key, pos.side),
        "posSide": pos.side if acc.hedged else "net",
        "quoteBal": "",
        "realizedPnl": "0",
        "spotInUseAmt": "",
        "spotInUseCcy": "",
        "thetaBS": "",
        "thetaPA": "",
        "tradeId": max((t["id"] for t in trades), key=int, default=""),
        "uTime": str(pos.updated_ms),
        "upl": fmt(upl),
        "uplLastPx": fmt(upl),
        "uplRatio": ratio,
        "uplRatioLastPx": ratio,
        "usdPx": "",
        "vegaBS": "",
        "vegaPA": "",
    }


# --- account --------------------------------------------------------------------------------


def get_balance(call: Call) -> list:
    venue, engine = call.venue, call.venue.engine
    wanted = set(call.get("ccy", "").split(",")) - {""}
    now = str(now_ms())
    with engine.lock:
        acc = engine.account(call.account)
        upl: dict[str, Decimal] = {}
        imr: dict[str, Decimal] = {}
        for pos in acc.positions.values():
            ccy = pos.inst.settle
            upl[ccy] = upl.get(ccy, ZERO) + pos.inst.pnl(pos.side, pos.qty, pos.entry, pos.inst.price)
            imr[ccy] = imr.get(ccy, ZERO) + pos.margin
        frozen: dict[str, Decimal] = {}
        for order in engine.orders_of(call.account, open_=True):
            if order.reserved_ccy:
                frozen[order.reserved_ccy] = frozen.get(order.reserved_ccy, ZERO) + order.reserved
        details, totals = [], {"eq": ZERO, "imr": ZERO, "upl": ZERO, "ord": ZERO}
        for ccy, (free, used) in sorted(acc.balances.items()):
            cash = free + used
            eq = cash + upl.get(ccy, ZERO)
            if (wanted and ccy not in wanted) or (not wanted and cash == 0 and eq == 0):
                continue
            usd = venue.usd_price(ccy)
            totals["eq"] += eq * usd
            totals["imr"] += imr.get(ccy, ZERO) * usd
            totals["upl"] += upl.get(ccy, ZERO) * usd
            totals["ord"] += frozen.get(ccy, ZERO) * usd
            details.append(
                {
                    "availBal": fmt(free),
                    "availEq": fmt(eq - used),  # available equity: upl counts, frozen does not
                    "borrowFroz": "",
                    "cashBal": fmt(cash),
                    "ccy": ccy,
                    "crossLiab": "",
                    "disEq": fmt(eq * usd),
                    "eq": fmt(eq),
                    "eqUsd": fmt(eq * usd),
                    "fixedBal": "0",
                    "frozenBal": fmt(used),
                    "imr": fmt(imr.get(ccy, ZERO)),
                    "interest": "",
                    "isoEq": "0",
                    "isoLiab": "",
                    "isoUpl": "0",
                    "liab": "",
                    "maxLoan": "",
                    "mgnRatio": "",
                    "mmr": fmt(imr.get(ccy, ZERO) * MMR_RATE * 20),
                    "notionalLever": "",
                    "ordFrozen": fmt(frozen.get(ccy, ZERO)),
                    "rewardBal": "0",
                    "spotBal": "",
                    "spotInUseAmt": "",
                    "spotIsoBal": "0",
                    "stgyEq": "0",
                    "twap": "0",
                    "uTime": now,
                    "upl": fmt(upl.get(ccy, ZERO)),
                    "uplLiab": "",
                }
            )
    return [
        {
            "adjEq": fmt(totals["eq"]),
            "borrowFroz": "",
            "details": details,
            "imr": fmt(totals["imr"]),
            "isoEq": "0",
            "mgnRatio": "",
            "mmr": fmt(totals["imr"] * MMR_RATE * 20),
            "notionalUsd": "",
            "ordFroz": fmt(totals["ord"]),
            "totalEq": fmt(totals["eq"]),
            "uTime": now,
            "upl": fmt(totals["upl"]),
        }
    ]


def get_funding_balances(call: Call) -> list:
    return []  # the fake keeps every asset in the trading account


def get_config(call: Call) -> list:
    acc = call.venue.engine.account(call.account)
    uid = numeric_id(call.account)
    return [
        {
            "acctLv": "2",
            "acctStpMode": "cancel_maker",
            "autoLoan": False,
            "ctIsoMode": "automatic",
            "enableSpotBorrow": False,
            "greeksType": "PA",
            "ip": "",
            "kycLv": "2",
            "label": "fake okx",
            "level": "Lv1",
            "levelTmp": "",
            "liquidationGear": "-1",
            "mainUid": uid,
            "mgnIsoMode": "automatic",
            "opAuth": "0",
            "perm": "read_only,trade",
            "posMode": "long_short_mode" if acc.hedged else "net_mode",
            "roleType": "0",
            "spotBorrowAutoRepay": False,
            "spotOffsetType": "",
            "spotRoleType": "0",
            "spotTraderInsts": [],
            "traderInsts": [],
            "type": "0",
            "uid": uid,
            "settleCcy": "USDT",
            "settleCcyList": ["USD", "USDC", "USDT"],
        }
    ]


def set_position_mode(call: Call) -> list:
    mode = call.need("posMode")
    if mode not in ("net_mode", "long_short_mode"):
        raise OkxError("51000", "Parameter posMode error")
    engine = call.venue.engine
    with engine.lock:
        acc = engine.account(call.account)
        busy = any(o.inst.is_contract for o in engine.orders_of(call.account, open_=True))
        if acc.positions or busy:
            raise OkxError("59000", "Settings failed. Close any open positions or orders before modifying settings.")
        acc.hedged = mode == "long_short_mode"
    return [{"posMode": mode}]


def get_positions(call: Call) -> list:
    venue, engine = call.venue, call.venue.engine
    type_ = call.get("instType")
    if type_ is not None and type_ not in ("MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    wanted = set(call.get("instId", "").split(",")) - {""}
    pos_ids = set(call.get("posId", "").split(",")) - {""}
    with engine.lock:
        acc = engine.account(call.account)
        rows = [position_json(venue, call.account, acc, p) for p in acc.positions.values() if p.qty > 0]
    return [
        r
        for r in rows
        if (type_ is None or r["instType"] == type_)
        and (not wanted or r["instId"] in wanted)
        and (not pos_ids or r["posId"] in pos_ids)
    ]


def set_leverage(call: Call) -> list:
    mode = margin_mode(call)
    lever = parse_decimal(call.need("lever"), "lever")
    pos_side = call.get("posSide", "net")
    target = call.get("instId")
    if target is None:
        call.need("ccy")  # currency-level margin leverage: accepted, nothing to keep
        return [{"instId": "", "lever": fmt(lever), "mgnMode": mode, "posSide": pos_side}]
    inst = call.venue.instrument(target)
    if lever < 1 or lever != lever.to_integral_value():
        raise OkxError("51000", "Parameter lever error")
    if lever > max_leverage(inst):
        raise OkxError("59102", "Leverage exceeds the maximum leverage. Please adjust the leverage.")
    try:
        call.venue.engine.set_leverage(call.account, inst.key, int(lever))
    except EngineError as exc:
        raise OkxError("51000", "Parameter lever error") from exc
    return [{"instId": target, "lever": fmt(lever), "mgnMode": mode, "posSide": pos_side}]


def get_leverage_info(call: Call) -> list:
    mode = margin_mode(call)
    engine = call.venue.engine
    acc = engine.account(call.account)
    out = []
    for target in call.need("instId").split(","):
        inst = call.venue.instrument(target)
        lever = str(engine.leverage_of(acc, inst))
        sides = ("long", "short") if (acc.hedged and mode == "isolated" and inst.is_contract) else ("net",)
        out.extend({"instId": target, "lever": lever, "mgnMode": mode, "posSide": s} for s in sides)
    return out


def get_trade_fee(call: Call) -> list:
    type_ = call.need("instType")
    zero = "0"  # the engine charges no fees, so neither does the venue
    return [
        {
            "category": "1",
            "delivery": "",
            "exercise": "",
            "instType": type_,
            "level": "Lv1",
            "maker": zero,
            "makerU": zero,
            "makerUSDC": zero,
            "ruleType": "normal",
            "taker": zero,
            "takerU": zero,
            "takerUSDC": zero,
            "ts": str(now_ms()),
        }
    ]


def get_currencies(call: Call) -> list:
    engine = call.venue.engine
    codes = set(engine.funds) | {c for i in engine.instruments.values() for c in (i.base, i.quote)}
    return [
        {
            "canDep": True,
            "canInternal": True,
            "canWd": True,
            "ccy": ccy,
            "chain": f"{ccy}-{CHAINS.get(ccy, 'ERC20')}",
            "fee": "0.0001" if ccy in ("BTC", "ETH", "LTC") else "1",
            "mainNet": True,
            "maxFee": "",
            "maxWd": "1000000",
            "minDep": "0.00000001",
            "minFee": "",
            "minWd": "0.001",
            "name": ccy,
            "wdTickSz": "8",
        }
        for ccy in sorted(codes - {"USD"})
    ]


ROUTES: dict[tuple[str, str], Callable[[Call], object]] = {
    ("GET", "/api/v5/account/balance"): get_balance,
    ("GET", "/api/v5/asset/balances"): get_funding_balances,
    ("GET", "/api/v5/asset/currencies"): get_currencies,
    ("GET", "/api/v5/account/config"): get_config,
    ("POST", "/api/v5/account/set-position-mode"): set_position_mode,
    ("GET", "/api/v5/account/positions"): get_positions,
    ("POST", "/api/v5/account/set-leverage"): set_leverage,
    ("GET", "/api/v5/account/leverage-info"): get_leverage_info,
    ("GET", "/api/v5/account/trade-fee"): get_trade_fee,
}
