"""Trading endpoints of the fake OKX v5: place, cancel, query orders and fills, close positions.

Orders live in the engine; OKX-only details (ordType, tdMode, tgtCcy, the size as sent, tag)
are kept per order id in `Venue.order_extras`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import Decimal

from starlette.responses import Response

from .engine import Account, EngineError, Instrument, Order
from .okx_common import (
    ZERO,
    Call,
    OkxError,
    Venue,
    envelope,
    fmt,
    inst_id,
    inst_type,
    margin_mode,
    now_ms,
    parse_decimal,
)

NO_POSITION = "Order failed because you don't have any positions in this direction for this contract."
ORD_TYPES = ("market", "limit", "post_only", "fok", "ioc", "optimal_limit_ioc")
STATES = {"open": "live", "partially_filled": "partially_filled", "filled": "filled", "canceled": "canceled"}
CLORDID = re.compile(r"[A-Za-z0-9]{1,32}")

# --- JSON shapes --------------------------------------------------------------------------


def _fee_ccy(order: Order) -> str:
    inst = order.inst
    if inst.is_contract:
        return inst.settle
    return inst.base if order.side == "buy" else inst.quote


def _pos_side(order: Order) -> str:
    return order.pos_side if order.pos_side in ("long", "short") else "net"


def order_json(venue: Venue, order: Order) -> dict:
    inst, extra = order.inst, venue.order_extras.get(order.id, {})
    last = order.trades[-1] if order.trades else None
    canceled = order.status == "canceled"
    lever = str(venue.engine.leverage_of(venue.engine.account(order.account), inst)) if inst.is_contract else ""
    return {
        "accFillSz": fmt(order.filled),
        "algoClOrdId": "",
        "algoId": "",
        "attachAlgoClOrdId": "",
        "attachAlgoOrds": [],
        "avgPx": fmt(order.avg_price) if order.filled else "",
        "cTime": str(order.created_ms),
        "cancelSource": "1" if canceled else "",
        "cancelSourceReason": "Order canceled by user" if canceled else "",
        "category": "normal",
        "ccy": "",
        "clOrdId": order.client_id,
        "fee": "0",
        "feeCcy": _fee_ccy(order),
        "fillPx": fmt(last["price"]) if last else "",
        "fillSz": fmt(last["qty"]) if last else "0",
        "fillTime": str(last["time"]) if last else "",
        "instId": inst_id(inst),
        "instType": inst_type(inst),
        "isTpLimit": "false",
        "lever": extra.get("lever", lever),
        "linkedAlgoOrd": {"algoId": ""},
        "ordId": order.id,
        "ordType": extra.get("ordType", order.type),
        "pnl": fmt(order.realized_pnl),
        "posSide": _pos_side(order),
        "px": fmt(order.price) if order.type == "limit" else "",
        "pxType": "",
        "pxUsd": "",
        "pxVol": "",
        "quickMgnType": "",
        "rebate": "0",
        "rebateCcy": inst.settle if inst.is_contract else inst.quote,
        "reduceOnly": "true" if order.reduce_only else "false",
        "side": order.side,
        "slOrdPx": "",
        "slTriggerPx": "",
        "slTriggerPxType": "",
        "source": "",
        "state": STATES[order.status],
        "stpId": "",
        "stpMode": "cancel_maker",
        "sz": extra.get("sz", fmt(order.qty)),
        "tag": extra.get("tag", ""),
        "tdMode": extra.get("tdMode", "cross" if inst.is_contract else "cash"),
        "tgtCcy": extra.get("tgtCcy", ""),
        "tpOrdPx": "",
        "tpTriggerPx": "",
        "tpTriggerPxType": "",
        "tradeId": last["id"] if last else "",
        "uTime": str(order.updated_ms),
    }


def fill_json(venue: Venue, order: Order, trade: dict) -> dict:
    inst = order.inst
    share = trade["qty"] / order.filled if order.filled else ZERO
    return {
        "billId": trade["id"],
        "clOrdId": order.client_id,
        "execType": "T" if trade["id"] in venue.taker_trades else "M",
        "fee": "0",
        "feeCcy": _fee_ccy(order),
        "fillIdxPx": fmt(trade["price"]),
        "fillMarkPx": fmt(trade["price"]) if inst.is_contract else "",
        "fillMarkVol": "",
        "fillFwdPx": "",
        "fillPnl": fmt(order.realized_pnl * share),
        "fillPx": fmt(trade["price"]),
        "fillPxUsd": "",
        "fillPxVol": "",
        "fillSz": fmt(trade["qty"]),
        "fillTime": str(trade["time"]),
        "instId": inst_id(inst),
        "instType": inst_type(inst),
        "ordId": order.id,
        "posSide": _pos_side(order),
        "side": order.side,
        "subType": "1" if order.side == "buy" else "2",
        "tag": venue.order_extras.get(order.id, {}).get("tag", ""),
        "tradeId": trade["id"],
        "ts": str(trade["time"]),
    }


def closable(venue: Venue, account: str, inst: Instrument, side: str) -> Decimal:
    """Position size minus what pending closing orders already claim."""
    acc = venue.engine.account(account)
    pos = acc.positions.get((inst.key, side))
    held = pos.qty if pos else ZERO
    for order in venue.engine.orders_of(account, inst.key, open_=True):
        closes = order.pos_side == side if order.pos_side != "both" else order.reduce_only
        if closes and (order.side == "sell") == (side == "long"):
            held -= order.remaining
    return max(held, ZERO)


# --- trading ----------------------------------------------------------------------------------


def _in_micros() -> str:
    return str(int(time.time() * 1_000_000))


def _batch_reply(results: list[dict]) -> Response:
    """OKX trade replies: code 0 all ok, 1 all failed, 2 partly; per-order sCode/sMsg."""
    failed = sum(1 for r in results if r["sCode"] != "0")
    code = "0" if failed == 0 else ("1" if failed == len(results) else "2")
    msg = {"0": "", "1": "All operations failed", "2": "Bulk operation partially succeeded"}[code]
    stamp = _in_micros()
    return envelope(results, code, msg, inTime=stamp, outTime=stamp)


def _order_items(call: Call) -> list:
    items = call.body if isinstance(call.body, list) else [call.body]
    if not items or len(items) > 20:
        raise OkxError("51000", "Parameter error: 1 to 20 orders per request")
    return items


def _item_call(call: Call, item: object) -> Call:
    if not isinstance(item, dict):
        raise OkxError("50002", "Json data format error")
    return Call(call.venue, item, item, call.account)


def _engine_error(exc: EngineError, inst: Instrument, side: str) -> OkxError:
    if exc.kind == "insufficient":
        ccy = inst.settle if inst.is_contract else (inst.quote if side == "buy" else inst.base)
        what = "margin" if inst.is_contract else "balance"
        return OkxError("51008", f"Order failed. Insufficient {ccy} {what} in account.")
    if exc.kind == "min_qty":
        return OkxError("51020", "Your order should meet or exceed the minimum order amount.")
    if exc.kind == "reduce_only":
        return OkxError("51169", NO_POSITION)
    if exc.kind == "not_found":
        return OkxError("51001", "Instrument ID does not exist")
    return OkxError("51000", f"Parameter error: {exc}")


def _check_close(call: Call, inst: Instrument, acc: Account, side: str, pos_side: str, qty: Decimal) -> None:
    """Reject closing orders that exceed or miss the position, as OKX does.

    A net-mode order larger than the opposite position would reverse it on OKX; the engine
    cannot do that in one order, so the fake refuses it loudly instead of losing the rest.
    """
    reduce_only = call.get("reduceOnly") == "true"
    if pos_side in ("long", "short"):
        closes = pos_side if (side == "sell") == (pos_side == "long") else None
    else:
        closes = ("long" if side == "sell" else "short") if reduce_only else None
        held = acc.positions.get((inst.key, "long" if side == "sell" else "short"))
        if not reduce_only and held is not None and qty > held.qty:
            raise OkxError("51000", "fake okx: reversing a net-mode position in one order is not supported")
    if closes is None:
        return
    if (inst.key, closes) not in acc.positions:
        other = "short" if closes == "long" else "long"
        if pos_side == "both" and (inst.key, other) in acc.positions:
            raise OkxError("51170", "Failed to place order. A reduce-only order can't be the same trade direction.")
        raise OkxError("51169", NO_POSITION)
    if qty > closable(call.venue, call.account, inst, closes):
        raise OkxError("51112", "Close order size exceeds your available size.")


def _place(call: Call) -> Order:
    venue, engine = call.venue, call.venue.engine
    inst = venue.instrument(call.need("instId"))
    side, ord_type, td_mode = call.need("side"), call.need("ordType"), call.need("tdMode")
    if side not in ("buy", "sell"):
        raise OkxError("51000", "Parameter side error")
    if ord_type not in ORD_TYPES:
        raise OkxError("51000", "Parameter ordType error")
    if td_mode not in (("cross", "isolated") if inst.is_contract else ("cash",)):
        raise OkxError("51000", "Parameter tdMode error")
    size = parse_decimal(call.need("sz"), "sz")
    client_id = call.get("clOrdId", "")
    if client_id and not CLORDID.fullmatch(client_id):
        raise OkxError("51000", "Parameter clOrdId error")
    tgt = call.get("tgtCcy", "base_ccy") if not inst.is_contract else ""
    if tgt not in ("", "base_ccy", "quote_ccy"):
        raise OkxError("51000", "Parameter tgtCcy error")
    kind = "market" if ord_type in ("market", "optimal_limit_ioc") else "limit"
    price = None
    if kind == "limit":
        price = parse_decimal(call.need("px"), "px")
        if price % inst.tick:
            raise OkxError("51000", "Parameter px error")
        crosses = price >= inst.best_ask() if side == "buy" else price <= inst.best_bid()
        if ord_type == "post_only" and crosses:
            raise OkxError("51000", "Parameter ordType error: the post_only order would take liquidity")
    with engine.lock:
        acc = engine.account(call.account)
        pos_side = call.get("posSide")
        if not inst.is_contract:
            pos_side = "both"
        elif acc.hedged:
            if pos_side not in ("long", "short"):
                raise OkxError("51000", "Parameter posSide error")
        elif pos_side not in (None, "net"):
            raise OkxError("51000", "Parameter posSide error")
        else:
            pos_side = "both"
        quote_qty, qty = None, size
        if kind == "market" and tgt == "quote_ccy":
            if side == "buy":
                quote_qty, qty = size, None
            else:
                qty = size / inst.best_bid() // inst.step * inst.step
        if any(o.client_id == client_id for o in engine.orders_of(call.account, open_=True) if client_id):
            raise OkxError("51016", "Duplicated clOrdId")
        if qty is not None and qty % inst.step:
            raise OkxError("51121", "Order quantity must be a multiple of the lot size.")
        if qty is not None and qty < inst.min_qty:
            raise OkxError("51020", "Your order should meet or exceed the minimum order amount.")
        reduce_only = inst.is_contract and call.get("reduceOnly") == "true"
        if inst.is_contract:
            _check_close(call, inst, acc, side, pos_side, qty or ZERO)
            opens = pos_side if pos_side != "both" else ("long" if side == "buy" else "short")
            if (inst.key, opens) not in acc.positions:
                venue.pos_modes[(call.account, inst.key, opens)] = td_mode
        try:
            order = engine.place(
                call.account,
                inst.key,
                side,
                kind,
                qty,
                price,
                client_id=client_id,
                reduce_only=reduce_only,
                pos_side=pos_side,
                quote_qty=quote_qty,
            )
        except EngineError as exc:
            raise _engine_error(exc, inst, side) from exc
        venue.order_extras[order.id] = {
            "ordType": ord_type,
            "tdMode": td_mode,
            "tgtCcy": tgt,
            "sz": fmt(size),
            "tag": call.get("tag", ""),
            "lever": str(engine.leverage_of(acc, inst)) if inst.is_contract else "",
        }
        venue.taker_trades.update(t["id"] for t in order.trades)
        if ord_type in ("ioc", "fok", "optimal_limit_ioc") and order.is_open:
            engine.cancel(call.account, order.id)
    return order


def _place_item(call: Call, item: object) -> dict:
    sent = item if isinstance(item, dict) else {}
    result = {
        "clOrdId": str(sent.get("clOrdId") or ""),
        "ordId": "",
        "sCode": "0",
        "sMsg": "Order placed",
        "tag": str(sent.get("tag") or ""),
        "ts": str(now_ms()),
    }
    try:
        order = _place(_item_call(call, item))
    except OkxError as exc:
        return {**result, "sCode": exc.code, "sMsg": exc.msg}
    return {**result, "ordId": order.id}


def post_order(call: Call) -> Response:
    return _batch_reply([_place_item(call, call.body)])


def post_batch_orders(call: Call) -> Response:
    return _batch_reply([_place_item(call, item) for item in _order_items(call)])


def post_close_position(call: Call) -> list:
    """Close a whole position at market (trade/close-position)."""
    venue, engine = call.venue, call.venue.engine
    inst = venue.instrument(call.need("instId"))
    mode = margin_mode(call)
    with engine.lock:
        acc = engine.account(call.account)
        if acc.hedged:
            side = call.need("posSide")
            if side not in ("long", "short"):
                raise OkxError("51000", "Parameter posSide error")
        else:
            held = [s for s in ("long", "short") if (inst.key, s) in acc.positions]
            side = held[0] if held else "long"
        pos = acc.positions.get((inst.key, side))
        if pos is None:
            raise OkxError("51023", "Position does not exist")
        order = _place(
            Call(
                venue,
                {
                    "instId": inst_id(inst),
                    "side": "sell" if side == "long" else "buy",
                    "ordType": "market",
                    "tdMode": mode,
                    "sz": fmt(closable(venue, call.account, inst, side)),
                    "posSide": side if acc.hedged else "net",
                    "reduceOnly": not acc.hedged,
                    "clOrdId": call.get("clOrdId", ""),
                    "tag": call.get("tag", ""),
                },
                account=call.account,
            )
        )
    return [{"clOrdId": order.client_id, "instId": inst_id(inst), "posSide": call.get("posSide", "net"), "tag": ""}]


def _find_order(call: Call, inst: Instrument) -> Order:
    ord_id, client_id = call.get("ordId"), call.get("clOrdId")
    if ord_id is None and client_id is None:
        raise OkxError("51003", "Either client order ID or order ID is required.")
    engine = call.venue.engine
    if ord_id is not None:
        order = engine.orders.get(ord_id)
    else:
        matches = [o for o in engine.orders_of(call.account, inst.key) if o.client_id == client_id]
        order = matches[-1] if matches else None
    if order is None or order.account != call.account or order.inst is not inst:
        raise OkxError("51603", "Order does not exist")
    return order


def _cancel_item(call: Call, item: object) -> dict:
    sent = item if isinstance(item, dict) else {}
    result = {
        "clOrdId": str(sent.get("clOrdId") or ""),
        "ordId": str(sent.get("ordId") or ""),
        "sCode": "0",
        "sMsg": "",
        "ts": str(now_ms()),
    }
    try:
        one = _item_call(call, item)
        engine = call.venue.engine
        with engine.lock:
            try:
                order = _find_order(one, call.venue.instrument(one.need("instId")))
            except OkxError as exc:
                if exc.code != "51603":
                    raise
                raise OkxError("51400", "Order cancellation failed as the order does not exist.") from None
            if order.status == "canceled":
                raise OkxError("51401", "Order cancellation failed as the order has been canceled.")
            if order.status == "filled":
                raise OkxError("51402", "Order cancellation failed as the order has been filled.")
            engine.cancel(call.account, order.id)
    except OkxError as exc:
        return {**result, "sCode": exc.code, "sMsg": exc.msg}
    return {**result, "clOrdId": order.client_id, "ordId": order.id}


def post_cancel_order(call: Call) -> Response:
    return _batch_reply([_cancel_item(call, call.body)])


def post_cancel_batch_orders(call: Call) -> Response:
    return _batch_reply([_cancel_item(call, item) for item in _order_items(call)])


def get_order(call: Call) -> list:
    inst = call.venue.instrument(call.need("instId"))
    with call.venue.engine.lock:
        return [order_json(call.venue, _find_order(call, inst))]


def _order_list(call: Call, open_: bool) -> list:
    type_, wanted, ord_type = call.get("instType"), call.get("instId"), call.get("ordType")
    state = call.get("state")
    after, before = call.integer("after", None), call.integer("before", None)
    begin, end = call.integer("begin", None), call.integer("end", None)
    limit = call.integer("limit", 100, 100) or 100
    ord_types = set(ord_type.split(",")) if ord_type else None
    with call.venue.engine.lock:
        rows = [order_json(call.venue, o) for o in call.venue.engine.orders_of(call.account, open_=open_)]
    picked = [
        r
        for r in rows
        if (type_ is None or r["instType"] == type_)
        and (wanted is None or r["instId"] == wanted)
        and (ord_types is None or r["ordType"] in ord_types)
        and (state is None or r["state"] == state)
        and (after is None or int(r["ordId"]) < after)
        and (before is None or int(r["ordId"]) > before)
        and (begin is None or int(r["cTime"]) >= begin)
        and (end is None or int(r["cTime"]) <= end)
    ]
    picked.sort(key=lambda r: int(r["ordId"]), reverse=True)
    return picked[:limit]


def get_orders_pending(call: Call) -> list:
    return _order_list(call, open_=True)


def get_orders_history(call: Call) -> list:
    call.need("instType")
    return _order_list(call, open_=False)


def _fills(call: Call, require_type: bool) -> list:
    type_ = call.need("instType") if require_type else call.get("instType")
    wanted, ord_id = call.get("instId"), call.get("ordId")
    after, before = call.integer("after", None), call.integer("before", None)
    begin, end = call.integer("begin", None), call.integer("end", None)
    limit = call.integer("limit", 100, 100) or 100
    venue = call.venue
    with venue.engine.lock:
        rows = [fill_json(venue, o, t) for o in venue.engine.orders_of(call.account) for t in o.trades]
    picked = [
        r
        for r in rows
        if (type_ is None or r["instType"] == type_)
        and (wanted is None or r["instId"] == wanted)
        and (ord_id is None or r["ordId"] == ord_id)
        and (after is None or int(r["billId"]) < after)
        and (before is None or int(r["billId"]) > before)
        and (begin is None or int(r["ts"]) >= begin)
        and (end is None or int(r["ts"]) <= end)
    ]
    picked.sort(key=lambda r: int(r["billId"]), reverse=True)
    return picked[:limit]


def get_fills(call: Call) -> list:
    return _fills(call, require_type=False)


def get_fills_history(call: Call) -> list:
    return _fills(call, require_type=True)


ROUTES: dict[tuple[str, str], Callable[[Call], object]] = {
    ("POST", "/api/v5/trade/order"): post_order,
    ("POST", "/api/v5/trade/batch-orders"): post_batch_orders,
    ("GET", "/api/v5/trade/order"): get_order,
    ("POST", "/api/v5/trade/cancel-order"): post_cancel_order,
    ("POST", "/api/v5/trade/cancel-batch-orders"): post_cancel_batch_orders,
    ("POST", "/api/v5/trade/close-position"): post_close_position,
    ("GET", "/api/v5/trade/orders-pending"): get_orders_pending,
    ("GET", "/api/v5/trade/orders-history"): get_orders_history,
    ("GET", "/api/v5/trade/orders-history-archive"): get_orders_history,
    ("GET", "/api/v5/trade/fills"): get_fills,
    ("GET", "/api/v5/trade/fills-history"): get_fills_history,
}
