"""Per (route, key) trading state set by the older docker's `io` calls.

SetContractType and SetDirection arrive as `io` codes 2 and 1 and must stick: later calls whose
symbol has no contract suffix trade that contract, and a later Buy/Sell honours the direction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cachetools import LRUCache, TTLCache

POSITION_MODE_TTL = 60.0
ORDER_NONCE_TTL = 600.0  # how long a repeated `trade` nonce returns the first placement's outcome
ORDER_NONCES_KEPT = 1024


def _recent_orders() -> TTLCache:
    return TTLCache(maxsize=ORDER_NONCES_KEPT, ttl=ORDER_NONCE_TTL)


@dataclass
class TradingState:
    contract_type: str | None = None  # "swap", "quarter", an exchange code...; None = spot
    direction: str | None = None  # buy | sell | closebuy | closesell
    margin_level: int | None = None  # from io code 0 without a symbol: applied before the next order
    applied_leverage: dict[str, int] = field(default_factory=dict)  # ccxt symbol -> leverage set
    hedged: dict[str, tuple[bool, float]] = field(default_factory=dict)  # ccxt symbol -> (hedged, when)
    recent_orders: TTLCache = field(default_factory=_recent_orders)  # trade nonce -> asyncio.Future of the reply

    def known_position_mode(self, ccxt_symbol: str) -> bool | None:
        entry = self.hedged.get(ccxt_symbol)
        if entry is None or time.monotonic() - entry[1] > POSITION_MODE_TTL:
            return None
        return entry[0]

    def remember_position_mode(self, ccxt_symbol: str, hedged: bool) -> None:
        self.hedged[ccxt_symbol] = (hedged, time.monotonic())


class StateStore:
    """Bounded: the least recently used keys are forgotten first."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._states: LRUCache = LRUCache(maxsize=maxsize)

    def get(self, route: str, cache_key: str) -> TradingState:
        key = (route, cache_key)
        state = self._states.get(key)
        if state is None:
            state = TradingState()
            self._states[key] = state
        return state

    def peek(self, route: str, cache_key: str) -> TradingState | None:
        return self._states.get((route, cache_key))
