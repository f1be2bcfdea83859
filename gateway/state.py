"""State that outlives one call: the older docker's `io` settings, and recent order nonces.

SetContractType and SetDirection arrive as `io` codes 2 and 1 and must stick: later calls whose
symbol has no contract suffix trade that contract, and a later Buy/Sell honours the direction.
The state is kept per (route, API key), so strategies that share one key on one route share it
(as they would share one exchange object). Only an `io` call creates it; other calls only read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache

ORDER_NONCE_TTL = 600.0  # how long a repeated `trade` nonce returns the first placement's outcome
ORDER_NONCES_KEPT = 10_000


@dataclass
class TradingState:
    contract_type: str | None = None  # None = never set; "spot"; "swap"; "quarter"; an exchange code
    direction: str | None = None  # buy | sell | closebuy | closesell
    margin_level: int | None = None  # from io code 0 without a symbol: applied before the next opening order
    leverage_settled: set[str] = field(default_factory=set)  # ccxt symbols whose leverage needs no pending set


class StateStore:
    """Bounded: the least recently used keys are forgotten first."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._states: LRUCache = LRUCache(maxsize=maxsize)

    def get_or_create(self, route: str, cache_key: str) -> TradingState:
        key = (route, cache_key)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = TradingState()
        return state

    def peek(self, route: str, cache_key: str) -> TradingState | None:
        return self._states.get((route, cache_key))


class OrderNonces:
    """(route, key, nonce, order) -> the placement (in flight or finished), for a bounded time.

    A docker that re-sends a `trade` (same nonce, same order) gets the first answer instead of a
    second order. Entries are small: a digest of the normalised order, never the raw request.
    """

    def __init__(self, maxsize: int = ORDER_NONCES_KEPT, ttl: float = ORDER_NONCE_TTL) -> None:
        self._entries: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl)

    @staticmethod
    def key(route: str, cache_key: str, nonce: int, order: tuple) -> tuple:
        digest = hashlib.sha256(repr(order).encode()).hexdigest()[:32]
        return (route, cache_key, nonce, digest)

    def get(self, key: tuple) -> Any:
        return self._entries.get(key)

    def put(self, key: tuple, value: Any) -> None:
        self._entries[key] = value
