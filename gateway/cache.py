"""The public micro-cache: identical public reads within a fraction of a second share one answer.

Off by default (`public_cache: {}`). With `public_cache: {ticker: 0.1}` a hundred dockers polling
one ticker cost the exchange at most ten requests a second, whatever their number; each answer
is at most that old. Only public market data is cached (never balances, orders or positions),
per route, keyed exactly as the single-flight table keys identical concurrent reads.
"""

from __future__ import annotations

import time
from typing import Any

from cachetools import TTLCache

# The read kinds of Call.read keys -> the `public_cache` name that sets their lifetime.
READ_KINDS = {
    "ticker": "ticker",
    "depth": "depth",
    "trades": "trades",
    "tickers": "tickers",
    "bidsasks": "tickers",
    "fundings": "fundings",
    "funding": "fundings",
}
MAX_ENTRIES = 10_000


class PublicCache:
    """(route, read key) -> (expiry, answer); bounded, expired entries dropped on sight."""

    def __init__(self, maxsize: int = MAX_ENTRIES) -> None:
        self._entries: TTLCache = TTLCache(maxsize=maxsize, ttl=60.0)  # 60 s: the longest lifetime allowed

    def get(self, key: tuple) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if time.monotonic() >= expires:
            self._entries.pop(key, None)
            return None
        return answer

    def put(self, key: tuple, answer: Any, ttl: float) -> None:
        self._entries[key] = (time.monotonic() + ttl, answer)

    def forget(self, routes: set[str]) -> None:
        """Drop the answers cached for these routes (keys start with the route: gateway/calls.py)."""
        for key in [key for key in list(self._entries) if key[0] in routes]:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def lifetime(ttls: dict[str, float], read_key: tuple) -> float:
    """Seconds this read may be answered from the cache (0: never)."""
    name = READ_KINDS.get(read_key[0]) if read_key else None
    return ttls.get(name, 0.0) if name else 0.0
