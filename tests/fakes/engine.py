"""A small exchange engine shared by the fake exchanges.

It knows instruments, a synthetic order book around a mid price, accounts with balances,
orders (limit and market, spot and contracts) and positions. Each fake (binance.py, okx.py)
only translates its exchange's REST dialect to and from this engine, so both fakes keep the
same real state: orders rest or fill, balances move, positions open and close.

Amounts and prices are Decimals; the dialects format them as the real exchange does.
Mutations take one lock, since tests poke the engine (set_price, fill) from their own thread
while the fake serves requests from the uvicorn thread.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
BOOK_LEVELS = 50


class EngineError(Exception):
    """A business error; `kind` lets each dialect pick its own error code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # insufficient | not_found | invalid | reduce_only | min_qty


@dataclass
class Instrument:
    key: str  # the engine's name, e.g. "BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC-261225"
    base: str
    quote: str
    kind: str = "spot"  # spot | swap | future
    price: Decimal = Decimal("100")
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.0001")
    min_qty: Decimal = Decimal("0.0001")
    contract_size: Decimal = Decimal("1")
    inverse: bool = False
    expiry_ms: int | None = None
    funding_rate: Decimal = Decimal("0.0001")
    funding_interval_h: int = 8

    @property
    def settle(self) -> str:
        return self.base if self.inverse else self.quote

    @property
    def is_contract(self) -> bool:
        return self.kind != "spot"

    def best_ask(self) -> Decimal:
        return self.price + self.tick

    def best_bid(self) -> Decimal:
        return self.price - self.tick

    def book(self, depth: int = BOOK_LEVELS) -> tuple[list, list]:
        """Asks ascending, bids descending: [(price, qty), ...]."""
        asks = [(self.price + self.tick * i, self.step * 1000 * i) for i in range(1, depth + 1)]
        bids = [(self.price - self.tick * i, self.step * 1000 * i) for i in range(1, depth + 1)]
        return asks, bids

    def margin_for(self, qty: Decimal, price: Decimal, leverage: int) -> Decimal:
        """Initial margin in the settle currency for `qty` contracts at `price`."""
        if self.inverse:
            return qty * self.contract_size / price / leverage
        return qty * self.contract_size * price / leverage

    def pnl(self, side: str, qty: Decimal, entry: Decimal, exit_: Decimal) -> Decimal:
        sign = 1 if side == "long" else -1
        if self.inverse:
            return sign * qty * self.contract_size * (1 / entry - 1 / exit_)
        return sign * qty * self.contract_size * (exit_ - entry)

    def next_funding_ms(self, now_ms: int) -> int:
        period = self.funding_interval_h * 3600_000
        return (now_ms // period + 1) * period


@dataclass
class Order:
    id: str
    client_id: str
    account: str
    inst: Instrument
    side: str  # buy | sell
    type: str  # limit | market
    price: Decimal  # 0 for market
    qty: Decimal
    created_ms: int
    reduce_only: bool = False
    pos_side: str = "both"  # long | short | both (one-way)
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of fill qty * fill price
    status: str = "open"  # open | partially_filled | filled | canceled
    updated_ms: int = 0
    reserved: Decimal = ZERO  # funds held in `used` for the unfilled part
    reserved_ccy: str = ""
    quote_qty: Decimal | None = None  # market buy by quote amount
    trades: list[dict] = field(default_factory=list)  # this order's fills, as appended to public_trades
    realized_pnl: Decimal = ZERO  # pnl of the position part this order closed

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def avg_price(self) -> Decimal:
        return self.cost / self.filled if self.filled else ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "partially_filled")


@dataclass
class Position:
    inst: Instrument
    side: str  # long | short
    qty: Decimal = ZERO
    entry: Decimal = ZERO
    margin: Decimal = ZERO
    opened_ms: int = 0
    updated_ms: int = 0


@dataclass
class Account:
    key: str
    balances: dict[str, list[Decimal]] = field(default_factory=dict)  # ccy -> [free, used]
    leverage: dict[str, int] = field(default_factory=dict)  # instrument key -> leverage
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    hedged: bool = False

    def balance(self, ccy: str) -> list[Decimal]:
        return self.balances.setdefault(ccy, [ZERO, ZERO])


DEFAULT_FUNDS = {
    "USDT": Decimal("100000"),
    "USDC": Decimal("50000"),
    "BTC": Decimal("10"),
    "ETH": Decimal("100"),
}


class Engine:
    def __init__(self, instruments: list[Instrument], funds: dict[str, Decimal] | None = None):
        self.instruments = {i.key: i for i in instruments}
        self.funds = dict(DEFAULT_FUNDS if funds is None else funds)
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.public_trades: dict[str, list[dict]] = {k: self._seed_trades(i) for k, i in self.instruments.items()}
        self._ids = itertools.count(1000001)
        self._trade_ids = itertools.count(5000001)
        self.lock = threading.RLock()
        self.default_leverage = 20
        # Book update ids per instrument (Binance's lastUpdateId / U / u, OKX's seqId): one per change
        # of the book, starting from the clock so they look like the exchange's. Listeners (the
        # websocket fakes) are told the instrument key after every change, from the changing thread.
        start = _now_ms()
        self.book_seqs: dict[str, int] = dict.fromkeys(self.instruments, start)
        self.listeners: list = []

    # --- accounts -------------------------------------------------------------
    def account(self, key: str) -> Account:
        with self.lock:
            acc = self.accounts.get(key)
            if acc is None:
                acc = Account(key)
                for ccy, amount in self.funds.items():
                    acc.balances[ccy] = [amount, ZERO]
                self.accounts[key] = acc
            return acc

    def leverage_of(self, acc: Account, inst: Instrument) -> int:
        return acc.leverage.get(inst.key, self.default_leverage)

    def set_leverage(self, account_key: str, inst_key: str, leverage: int) -> int:
        if not 1 <= leverage <= 125:
            raise EngineError("invalid", f"leverage {leverage} out of range 1..125")
        with self.lock:
            self.account(account_key).leverage[self.instrument(inst_key).key] = leverage
        return leverage

    def instrument(self, key: str) -> Instrument:
        inst = self.instruments.get(key)
        if inst is None:
            raise EngineError("not_found", f"unknown instrument {key}")
        return inst

    # --- orders ---------------------------------------------------------------
    def place(
        self,
        account_key: str,
        inst_key: str,
        side: str,
        type_: str,
        qty: Decimal | None,
        price: Decimal | None = None,
        *,
        client_id: str = "",
        reduce_only: bool = False,
        pos_side: str = "both",
        quote_qty: Decimal | None = None,
    ) -> Order:
        inst = self.instrument(inst_key)
        with self.lock:
            acc = self.account(account_key)
            now = _now_ms()
            if type_ == "market" and quote_qty is not None:
                if inst.is_contract or side != "buy":
                    raise EngineError("invalid", "quote quantity only for spot market buys")
                qty = _floor_to(quote_qty / inst.best_ask(), inst.step)
            if qty is None or qty <= 0:
                raise EngineError("invalid", "quantity must be positive")
            if qty % inst.step != 0:
                raise EngineError("invalid", f"quantity {qty} is not a multiple of the step {inst.step}")
            if qty < inst.min_qty:
                raise EngineError("min_qty", f"quantity {qty} below minimum {inst.min_qty}")
            if type_ == "limit":
                if price is None or price <= 0:
                    raise EngineError("invalid", "limit order needs a positive price")
                if price % inst.tick != 0:
                    raise EngineError("invalid", f"price {price} is not a multiple of the tick {inst.tick}")
            order = Order(
                id=str(next(self._ids)),
                client_id=client_id,
                account=account_key,
                inst=inst,
                side=side,
                type=type_,
                price=price if type_ == "limit" else ZERO,
                qty=qty,
                created_ms=now,
                updated_ms=now,
                reduce_only=reduce_only,
                pos_side=pos_side,
                quote_qty=quote_qty,
            )
            self._reserve(acc, order)
            self.orders[order.id] = order
            self._match(order)
            return order

    def _closing(self, acc: Account, order: Order) -> tuple[str, bool]:
        """(position side the order acts on, whether it reduces that position)."""
        if order.pos_side in ("long", "short"):
            opens = (order.side == "buy") == (order.pos_side == "long")
            return order.pos_side, not opens
        net_long = acc.positions.get((order.inst.key, "long"))
        net_short = acc.positions.get((order.inst.key, "short"))
        if order.side == "sell" and net_long and net_long.qty > 0:
            return "long", True
        if order.side == "buy" and net_short and net_short.qty > 0:
            return "short", True
        return ("long" if order.side == "buy" else "short"), False

    def _reserve(self, acc: Account, order: Order) -> None:
        inst = order.inst
        if not inst.is_contract:
            if order.side == "buy":
                price = order.price if order.type == "limit" else inst.best_ask()
                need, ccy = order.qty * price, inst.quote
            else:
                need, ccy = order.qty, inst.base
        else:
            pos_side, reduces = self._closing(acc, order)
            if reduces or order.reduce_only:
                pos = acc.positions.get((inst.key, pos_side))
                held = pos.qty if pos else ZERO
                if order.reduce_only and (not reduces or held < order.qty):
                    raise EngineError("reduce_only", "reduce-only order would open or exceed the position")
                return
            price = order.price if order.type == "limit" else inst.price
            need, ccy = inst.margin_for(order.qty, price, self.leverage_of(acc, inst)), inst.settle
        bal = acc.balance(ccy)
        if bal[0] < need:
            raise EngineError("insufficient", f"insufficient {ccy}: need {need}, free {bal[0]}")
        bal[0] -= need
        bal[1] += need
        order.reserved, order.reserved_ccy = need, ccy

    def _match(self, order: Order) -> None:
        inst = order.inst
        if order.type == "market":
            self.fill(order.id, order.remaining, inst.best_ask() if order.side == "buy" else inst.best_bid())
        elif order.side == "buy" and order.price >= inst.best_ask():
            self.fill(order.id, order.remaining, inst.best_ask())
        elif order.side == "sell" and order.price <= inst.best_bid():
            self.fill(order.id, order.remaining, inst.best_bid())

    def fill(self, order_id: str, qty: Decimal, price: Decimal | None = None) -> Order:
        """Fill `qty` of an open order at `price` (its limit price by default)."""
        with self.lock:
            order = self.get_order(order_id)
            if not order.is_open:
                raise EngineError("invalid", f"order {order_id} is {order.status}")
            qty = min(Decimal(qty), order.remaining)
            price = order.price if price is None else Decimal(price)
            acc = self.account(order.account)
            release = order.reserved * qty / order.remaining if order.remaining else ZERO
            if order.reserved_ccy:
                acc.balance(order.reserved_ccy)[1] -= release
                order.reserved -= release
            if order.inst.is_contract:
                self._fill_contract(acc, order, qty, price, release)
            else:
                self._fill_spot(acc, order, qty, price, release)
            order.filled += qty
            order.cost += qty * price
            order.updated_ms = _now_ms()
            order.status = "filled" if order.remaining == 0 else "partially_filled"
            if order.status == "filled" and order.reserved_ccy and order.reserved:
                acc.balance(order.reserved_ccy)[0] += order.reserved
                acc.balance(order.reserved_ccy)[1] -= order.reserved
                order.reserved = ZERO
            trade = {"id": str(next(self._trade_ids)), "price": price, "qty": qty, "side": order.side}
            trade["time"] = order.updated_ms
            self.public_trades[order.inst.key].append(trade)
            order.trades.append(trade)
            self._changed(order.inst.key)  # listeners only schedule work: safe under the lock
            return order

    def _fill_spot(self, acc: Account, order: Order, qty: Decimal, price: Decimal, release: Decimal) -> None:
        inst = order.inst
        if order.side == "buy":
            acc.balance(inst.quote)[0] += release - qty * price  # refund price improvement
            acc.balance(inst.base)[0] += qty
        else:
            acc.balance(inst.quote)[0] += qty * price

    def _fill_contract(self, acc: Account, order: Order, qty: Decimal, price: Decimal, release: Decimal) -> None:
        inst = order.inst
        pos_side, reduces = self._closing(acc, order)
        now = _now_ms()
        pos = acc.positions.setdefault((inst.key, pos_side), Position(inst, pos_side, opened_ms=now))
        pos.updated_ms = now
        settle = acc.balance(inst.settle)
        if reduces:
            qty = min(qty, pos.qty)
            freed = pos.margin * qty / pos.qty if pos.qty else ZERO
            pnl = inst.pnl(pos_side, qty, pos.entry, price)
            order.realized_pnl += pnl
            settle[1] -= freed
            settle[0] += freed + pnl
            pos.margin -= freed
            pos.qty -= qty
            if pos.qty == 0:
                del acc.positions[(inst.key, pos_side)]
            return
        margin = inst.margin_for(qty, price, self.leverage_of(acc, inst))
        settle[0] += release - margin
        settle[1] += margin
        pos.entry = (pos.entry * pos.qty + price * qty) / (pos.qty + qty)
        pos.qty += qty
        pos.margin += margin

    def cancel(self, account_key: str, order_id: str) -> Order:
        with self.lock:
            order = self.get_order(order_id, account_key)
            if not order.is_open:
                raise EngineError("not_found", f"order {order_id} is {order.status}, cannot cancel")
            if order.reserved_ccy:
                bal = self.account(account_key).balance(order.reserved_ccy)
                bal[0] += order.reserved
                bal[1] -= order.reserved
                order.reserved = ZERO
            order.status = "canceled"
            order.updated_ms = _now_ms()
            return order

    def get_order(self, order_id: str, account_key: str | None = None) -> Order:
        order = self.orders.get(str(order_id))
        if order is None or (account_key is not None and order.account != account_key):
            raise EngineError("not_found", f"order {order_id} does not exist")
        return order

    def find_client_order(self, account_key: str, client_id: str) -> Order:
        for order in self.orders.values():
            if order.account == account_key and client_id and order.client_id == client_id:
                return order
        raise EngineError("not_found", f"order with client id {client_id} does not exist")

    def orders_of(self, account_key: str, inst_key: str | None = None, open_: bool | None = None) -> list[Order]:
        """Orders of an account, oldest first; `open_` filters by open/closed."""
        with self.lock:
            return [
                o
                for o in self.orders.values()
                if o.account == account_key
                and (inst_key is None or o.inst.key == inst_key)
                and (open_ is None or o.is_open == open_)
            ]

    # --- market moves -----------------------------------------------------------
    def set_price(self, inst_key: str, price: Decimal | str | float) -> None:
        """Move the mid price; resting limit orders that now cross fill at their price."""
        with self.lock:
            inst = self.instrument(inst_key)
            inst.price = Decimal(str(price))
            for order in list(self.orders.values()):
                if order.inst is not inst or not order.is_open or order.type != "limit":
                    continue
                if (order.side == "buy" and order.price >= inst.best_ask()) or (
                    order.side == "sell" and order.price <= inst.best_bid()
                ):
                    self.fill(order.id, order.remaining)
            self.book_seqs[inst.key] += 1
        self._changed(inst.key)

    def touch(self, inst_key: str) -> int:
        """An update that changes no level (the exchange's steady cadence): the id moves on."""
        with self.lock:
            key = self.instrument(inst_key).key
            self.book_seqs[key] += 1
            seq = self.book_seqs[key]
        self._changed(key)
        return seq

    def public_trade(self, inst_key: str, price: Decimal | str | float, qty: Decimal | str | float, side: str) -> dict:
        """A trade between other users (no account moves): appended to `public_trades`, listeners told."""
        with self.lock:
            inst = self.instrument(inst_key)
            trade = {
                "id": str(next(self._trade_ids)),
                "price": Decimal(str(price)),
                "qty": Decimal(str(qty)),
                "side": side,
                "time": _now_ms(),
            }
            self.public_trades[inst.key].append(trade)
        self._changed(inst.key)
        return trade

    def book_state(self, inst_key: str, depth: int) -> tuple[int, list, list]:
        """(update id, asks, bids) read together, so a snapshot and its id always match."""
        with self.lock:
            inst = self.instrument(inst_key)
            asks, bids = inst.book(depth)
            return self.book_seqs[inst.key], asks, [(p, q) for p, q in bids if p > 0]

    def _changed(self, inst_key: str) -> None:
        for listener in list(self.listeners):
            listener(inst_key)

    # --- public data --------------------------------------------------------------
    def candles(self, inst_key: str, interval_s: int, end_ms: int | None = None, limit: int = 100) -> list[tuple]:
        """Deterministic bars aligned to the interval, oldest first, the last one still open.

        Rows are (open_time_ms, open, high, low, close, base_volume).
        """
        inst = self.instrument(inst_key)
        step_ms = interval_s * 1000
        last_open = ((end_ms or _now_ms()) // step_ms) * step_ms
        rows = []
        for n in range(limit - 1, -1, -1):
            t = last_open - n * step_ms
            rows.append(self._bar(inst, t, step_ms))
        return rows

    @staticmethod
    def _bar(inst: Instrument, t: int, step_ms: int) -> tuple:
        def px(x: int) -> Decimal:
            wave = Decimal(str(round(math.sin(x / 3_600_000) * 0.01, 6)))
            return _floor_to(inst.price * (1 + wave), inst.tick)

        o, c = px(t), px(t + step_ms)
        hi = max(o, c) + inst.tick * 5
        lo = min(o, c) - inst.tick * 5
        vol = inst.step * 1000 * _minute_weights(t, step_ms)
        return (t, o, hi, lo, c, vol)

    def _seed_trades(self, inst: Instrument) -> list[dict]:
        now = _now_ms()
        return [
            {
                "id": str(4000000 + n),
                "price": inst.price + inst.tick * (n % 5 - 2),
                "qty": inst.step * (10 + n),
                "side": "buy" if n % 2 else "sell",
                "time": now - (40 - n) * 1000,
            }
            for n in range(40)
        ]


def _minute_weights(t: int, step_ms: int) -> Decimal:
    """Sum of per-minute weights 1..7 over the bar, so volumes add up across timeframes."""
    if step_ms < 60_000:
        return Decimal(1 + (t // 60_000) % 7) * step_ms / 60_000
    first, count = t // 60_000, step_ms // 60_000
    cycles, rest = divmod(count, 7)
    return Decimal(cycles * 28 + sum(1 + (first + cycles * 7 + i) % 7 for i in range(rest)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value // step) * step
