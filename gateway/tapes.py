"""Trade and candle tapes: a stream's recent history, stitched to a REST answer.

A websocket carries only what happens after the subscription, while GetTrades and GetRecords
answer the last N trades or candles. A tape holds what the stream brought and becomes usable
("seeded") once a REST answer has been proven to join it without a hole: the REST answer must
contain the tape's oldest streamed item (trades: by id), or reach the tape's first streamed
candle (candles: by open time). Everything older comes from REST, everything from that point on
from the stream. A reconnect may lose messages, so the stream owner resets the tape then; it is
seeded again by the next REST answer that joins it.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

TAPE_LIMIT = 1000  # items a tape keeps (ccxt.pro's own tradesLimit / OHLCVLimit)


def trade_key(trade: dict) -> Any:
    """A trade's identity: its id, else what REST and the stream both report about it."""
    ident = trade.get("id")
    if ident is not None:
        return str(ident)
    return (trade.get("timestamp"), trade.get("price"), trade.get("amount"), trade.get("side"))


class TradeTape:
    """The newest trades of one symbol, oldest first, in ccxt's unified trade structure."""

    def __init__(self, limit: int = TAPE_LIMIT) -> None:
        self.trades: deque[dict] = deque(maxlen=limit)
        self.keys: set = set()
        self.seeded = False

    def __len__(self) -> int:
        return len(self.trades)

    def reset(self) -> None:
        self.trades.clear()
        self.keys.clear()
        self.seeded = False

    def extend(self, trades: list[dict]) -> None:
        """Streamed trades, in the order the exchange sent them (a repeat is dropped)."""
        for trade in trades:
            key = trade_key(trade)
            if key in self.keys:
                continue
            if len(self.trades) == self.trades.maxlen:
                self.keys.discard(trade_key(self.trades[0]))
            self.trades.append(trade)
            self.keys.add(key)

    def offer(self, rest: list[dict]) -> bool:
        """Join a REST answer (oldest first) before the streamed trades. True when the tape is
        seeded afterwards; a REST answer that does not reach the oldest streamed trade joins
        nothing (trades between the two may be missing)."""
        if not self.trades or not rest:
            return self.seeded
        keys = [trade_key(trade) for trade in rest]
        oldest = trade_key(self.trades[0])
        if oldest not in keys:
            return self.seeded
        joined = keys.index(oldest)
        older = [trade for trade, key in zip(rest[:joined], keys[:joined], strict=True) if key not in self.keys]
        room = (self.trades.maxlen or 0) - len(self.trades)
        for trade in reversed(older[-room:] if room > 0 else []):
            self.trades.appendleft(trade)
            self.keys.add(trade_key(trade))
        self.seeded = True
        return True

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

    def offer(self, rest: list[list]) -> bool:
        """Join a REST answer (oldest first): its candles older than the first streamed one come
        before the stream's. True when the tape is seeded afterwards."""
        first = self.first_streamed
        rest = [row for row in rest if row and row[0] is not None]
        if first is None or not rest:
            return self.seeded
        if int(rest[-1][0]) < first:  # REST ends before the stream began: candles may be missing
            return self.seeded
        older = {int(row[0]): list(row) for row in rest if int(row[0]) < first and int(row[0]) not in self.rows}
        if older:
            merged = {**older, **self.rows}
            self.rows = dict(sorted(merged.items())[-self.limit :])
        self.seeded = True
        return True

    def newest(self, count: int) -> list[list] | None:
        """The newest `count` candles, oldest first, or None while the tape cannot answer them."""
        if not self.seeded or count <= 0 or count > len(self.rows):
            return None
        return [list(row) for row in itertools.islice(self.rows.values(), len(self.rows) - count, None)]
