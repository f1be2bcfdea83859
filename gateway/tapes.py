"""Trade and candle tapes: a stream's recent history, stitched to a REST answer.

A websocket carries only what happens after the subscription, while GetTrades and GetRecords
answer the last N trades or candles. A tape holds what the stream brought and becomes usable
("seeded") once a REST answer overlaps it and agrees with it:

- trades: every REST trade in the overlap is on the tape with the same price, amount, side and
  time, and no REST trade older than the tape's newest is missing from it. A stream that
  aggregates fills (OKX's `trades` channel: one message per taker order and price) or carries no
  trade ids cannot be proven to be REST's trades, and never agrees;
- candles: every REST candle from the first streamed one to the tape's newest is on the tape
  (values of the newest candles legitimately differ in time, so only their presence is checked).

REST's items older than the tape's oldest are put in front of it. A REST answer that does not
reach the tape joins nothing; one that disagrees is a `MISMATCH` and the owner empties the tape.
A reconnect may lose messages, so the stream owner resets the tape then too; it is seeded again
by the next REST answer that joins it.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

TAPE_LIMIT = 1000  # items a tape keeps (ccxt.pro's own tradesLimit / OHLCVLimit)
JOINED, NO_OVERLAP, MISMATCH = "joined", "no overlap", "mismatch"  # what offering a REST answer did


def trade_key(trade: dict) -> Any:
    """A trade's identity: its id, else what REST and the stream both report about it."""
    ident = trade.get("id")
    if ident is not None:
        return str(ident)
    return (trade.get("timestamp"), trade.get("price"), trade.get("amount"), trade.get("side"))


def _facts(trade: dict) -> tuple:
    return (trade.get("price"), trade.get("amount"), trade.get("side"), trade.get("timestamp"))


class TradeTape:
    """The newest trades of one symbol, oldest first, in ccxt's unified trade structure."""

    def __init__(self, limit: int = TAPE_LIMIT) -> None:
        self.trades: deque[dict] = deque(maxlen=limit)
        self.keys: set = set()
        self.seeded = False
        self.idless = False  # a streamed trade without an id: the tape can never be proven

    def __len__(self) -> int:
        return len(self.trades)

    def reset(self) -> None:
        self.trades.clear()
        self.keys.clear()
        self.seeded = False

    def extend(self, trades: list[dict]) -> None:
        """Streamed trades, in the order the exchange sent them (a repeat is dropped)."""
        for trade in trades:
            self.idless = self.idless or trade.get("id") is None
            key = trade_key(trade)
            if key in self.keys:
                continue
            if len(self.trades) == self.trades.maxlen:
                self.keys.discard(trade_key(self.trades[0]))
            self.trades.append(trade)
            self.keys.add(key)

    def offer(self, rest: list[dict]) -> str:
        """Check a REST answer (oldest first) against the streamed trades and put its older trades
        in front of them: JOINED, NO_OVERLAP (nothing changed) or MISMATCH (see the module)."""
        if not self.trades or not rest:
            return NO_OVERLAP
        if self.idless or any(trade.get("id") is None for trade in rest):
            return MISMATCH
        keys = [trade_key(trade) for trade in rest]
        if not any(key in self.keys for key in keys):
            return NO_OVERLAP
        oldest = trade_key(self.trades[0])
        joined = keys.index(oldest) if oldest in keys else 0
        mine = {trade_key(trade): trade for trade in self.trades}
        newest_time = self.trades[-1].get("timestamp")
        for trade, key in zip(rest[joined:], keys[joined:], strict=True):
            streamed = mine.get(key)
            if streamed is None:  # not streamed: only right when it is newer than the newest streamed
                time_ = trade.get("timestamp")
                if time_ is None or newest_time is None or time_ < newest_time:
                    return MISMATCH
            elif _facts(streamed) != _facts(trade):
                return MISMATCH
        older = [trade for trade, key in zip(rest[:joined], keys[:joined], strict=True) if key not in self.keys]
        room = (self.trades.maxlen or 0) - len(self.trades)
        for trade in reversed(older[-room:] if room > 0 else []):
            self.trades.appendleft(trade)
            self.keys.add(trade_key(trade))
        self.seeded = True
        return JOINED

    def newest(self, count: int) -> list[dict] | None:
        """The newest `count` trades, oldest first, or None while the tape cannot answer them."""
        if not self.seeded or count <= 0 or count > len(self.trades):
            return None
        return list(itertools.islice(self.trades, len(self.trades) - count, None))


class CandleTape:
    """The newest candles of one symbol and timeframe ([ms, o, h, l, c, v] rows), by open time."""

    def __init__(self, limit: int = TAPE_LIMIT) -> None:
        self.limit = limit
        self.rows: dict[int, list] = {}
        self.first_streamed: int | None = None
        self.seeded = False

    def __len__(self) -> int:
        return len(self.rows)

    def reset(self) -> None:
        self.rows = {}
        self.first_streamed = None
        self.seeded = False

    def extend(self, rows: list[list]) -> None:
        """Streamed candles: each replaces the candle with the same open time (its newer state)."""
        for row in rows:
            if not row or row[0] is None:
                continue
            opened = int(row[0])
            if self.first_streamed is None:
                self.first_streamed = opened
            newest = next(reversed(self.rows), None)
            self.rows[opened] = list(row)
            if newest is not None and opened < newest:  # out of order: keep the rows sorted
                self.rows = dict(sorted(self.rows.items()))
        while len(self.rows) > self.limit:
            del self.rows[next(iter(self.rows))]
        if self.first_streamed is not None and self.rows:  # what fell out is no longer the stream's to show
            self.first_streamed = max(self.first_streamed, next(iter(self.rows)))

    def offer(self, rest: list[list]) -> str:
        """Check a REST answer (oldest first) against the streamed candles and put its candles older
        than the first streamed one in front: JOINED, NO_OVERLAP or MISMATCH (see the module)."""
        first = self.first_streamed
        rest = [row for row in rest if row and row[0] is not None]
        if first is None or not rest or int(rest[-1][0]) < first:  # REST ends before the stream began
            return NO_OVERLAP
        newest = next(reversed(self.rows))
        if any(first <= int(row[0]) < newest and int(row[0]) not in self.rows for row in rest):
            return MISMATCH  # a candle REST has is missing from the stream
        older = {int(row[0]): list(row) for row in rest if int(row[0]) < first and int(row[0]) not in self.rows}
        if older:
            merged = {**older, **self.rows}
            self.rows = dict(sorted(merged.items())[-self.limit :])
        self.seeded = True
        return JOINED

    def newest(self, count: int) -> list[list] | None:
        """The newest `count` candles, oldest first, or None while the tape cannot answer them."""
        if not self.seeded or count <= 0 or count > len(self.rows):
            return None
        return [list(row) for row in itertools.islice(self.rows.values(), len(self.rows) - count, None)]
