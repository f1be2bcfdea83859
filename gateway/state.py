"""State that outlives one call: the older docker's `io` settings, and recent order nonces.

SetContractType and SetDirection arrive as `io` codes 2 and 1 and must stick: later calls whose
symbol has no contract suffix trade that contract, and a later Buy/Sell honours the direction.
The state is kept per (route, API key), so strategies that share one key on one route share it
(as they would share one exchange object). Only an `io` call creates it; other calls only read.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache

ORDER_NONCE_TTL = 600.0  # how long a repeated `trade` nonce returns the first placement's outcome
ORDER_NONCES_KEPT = 10_000
NONCE_CLOCK_SKEW = 2.0  # seconds the docker's clock may run ahead of ours


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


def nonce_seconds(nonce: int) -> float | None:
    """The time an FMZ nonce names (nanoseconds; milliseconds from older dockers), None if none."""
    return nonce / 1e9 if nonce > 10**17 else nonce / 1e3 if nonce > 10**11 else None


class OrderNonces:
    """(route, key, nonce, order) -> the placement (in flight or finished), for a bounded time.

    A docker that re-sends a `trade` (same nonce, same order) gets the first answer instead of a
    second order. Entries are small: a digest of the normalised order, never the raw request.
    """

    def __init__(self, maxsize: int = ORDER_NONCES_KEPT, ttl: float = ORDER_NONCE_TTL) -> None:
        self._entries: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl)
        self.started = time.time()  # calls older than this were never seen by this process
        self.ttl = ttl

    def remembers(self, nonce: int) -> bool:
        """Whether a call sent at `nonce` (FMZ: nanoseconds) would be in this store had it come
        before: it came after this process started and within the store's lifetime. A nonce that
        is no time (not ns or ms since 1970) counts as remembered: nothing can be said of it."""
        seconds = nonce_seconds(nonce)
        if seconds is None:
            return True
        return seconds >= max(self.started, time.time() - self.ttl) - NONCE_CLOCK_SKEW

    @staticmethod
    def key(route: str, cache_key: str, nonce: int, order: tuple) -> tuple:
        digest = hashlib.sha256(repr(order).encode()).hexdigest()[:32]
        return (route, cache_key, nonce, digest)

    def get(self, key: tuple) -> Any:
        return self._entries.get(key)

    def put(self, key: tuple, value: Any) -> None:
        self._entries[key] = value
