"""FMZ symbols <-> ccxt markets.

FMZ names instruments `BASE_QUOTE` (spot), `BASE_QUOTE.swap` (perpetual),
`BASE_QUOTE.<contract>` (delivery: `this_week` ... `next_quarter`, or the exchange's own
code), and selects groups with ranges (`USDT.swap`, `USD.futures`). ccxt names them
`BTC/USDT`, `BTC/USDT:USDT`, `BTC/USD:BTC-250328`. A `MarketIndex` is built once per loaded
markets dict so that every lookup on the request path is a dict access.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import BadRequest

RELATIVE_CONTRACTS = ("this_week", "next_week", "month", "next_month", "quarter", "next_quarter")
NAMED_CONTRACTS = (*RELATIVE_CONTRACTS, "swap", "spot")  # contract types FMZ names, not instrument codes
CONTRACT_KINDS = ("swap", "futures", "future", "option")
EXPECTED_FORMS = (
    "expected BASE_QUOTE (e.g. BTC_USDT), BASE_QUOTE.swap, BASE_QUOTE.<contract> "
    "(this_week, next_week, month, next_month, quarter, next_quarter or the exchange's contract code) "
    "or a range such as USDT.swap"
)
PAIR = re.compile(r"^([A-Z0-9]{1,32})_([A-Z0-9]{1,32})$")
RANGE_QUOTE = re.compile(r"^[A-Z0-9]{1,16}$")
DAY_MS = 86_400_000

# Exchange hints naming a delivery contract by its relative slot (okx `alias`, binance `contractType`).
CONTRACT_HINTS = {
    "this_week": "this_week",
    "next_week": "next_week",
    "this_month": "month",
    "next_month": "next_month",
    "quarter": "quarter",
    "next_quarter": "next_quarter",
    "current_month": "month",
    "current_quarter": "quarter",
}


@dataclass(frozen=True)
class FmzSymbol:
    base: str
    quote: str
    contract: str | None = None  # None = spot; "swap"; a relative name; or an exchange code

    def __str__(self) -> str:
        pair = f"{self.base}_{self.quote}"
        return f"{pair}.{self.contract}" if self.contract else pair


@dataclass(frozen=True)
class SymbolRange:
    """`USDT.swap`: every linear swap settled in USDT; `USD.futures`: every inverse future."""

    currency: str
    kind: str  # swap | future | option

    def __str__(self) -> str:
        return f"{self.currency}.{'futures' if self.kind == 'future' else self.kind}"

    @property
    def ccxt_params(self) -> dict[str, str]:
        """How ccxt's listing calls (open orders, positions) narrow to this group without a symbol."""
        return {"type": self.kind, "subType": "inverse" if self.currency == "USD" else "linear"}

    def matches(self, market: dict) -> bool:
        if market.get("type") != self.kind:
            return False
        if self.currency == "USD":
            return bool(market.get("inverse")) or market.get("quote") == "USD"
        return market.get("settle") == self.currency and not market.get("inverse")


def parse_symbol(text: Any, default_contract: str | None = None) -> FmzSymbol | SymbolRange:
    """Parse an FMZ symbol (any case); `default_contract` applies when it has no suffix."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"invalid symbol {repr(text)[:64]}: {EXPECTED_FORMS}")
    raw = text.strip()
    head, dot, tail = raw.partition(".")
    pair = PAIR.match(head.upper())
    if pair is None:
        if dot and RANGE_QUOTE.match(head.upper()) and tail.lower() in CONTRACT_KINDS:
            kind = "future" if tail.lower() in ("futures", "future") else tail.lower()
            return SymbolRange(head.upper(), kind)
        raise BadRequest(f"invalid symbol {raw[:64]!r}: {EXPECTED_FORMS}")
    contract = tail.strip() if dot else default_contract
    if dot and (not contract or len(contract) > 64):
        raise BadRequest(f"invalid symbol {raw[:64]!r}: {EXPECTED_FORMS}")
    if contract and contract.lower() in NAMED_CONTRACTS:
        contract = contract.lower()
    if contract == "spot":
        contract = None
    return FmzSymbol(pair.group(1), pair.group(2), contract)


class MarketIndex:
    """Lookups over one ccxt markets dict, built once when the markets are loaded."""

    def __init__(self, markets: dict[str, dict], exchange_id: str = "exchange") -> None:
        self.markets = markets
        self.exchange_id = exchange_id
        self._by_pair: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        self._by_code: dict[str, dict] = {}
        self._fmz_symbols: dict[str, str] = {}
        self.memo: dict[tuple, object] = {}  # derived views of these markets (e.g. GetMarkets replies)
        for market in markets.values():
            kind = market.get("type") or "spot"
            self._by_pair[(str(market.get("base")), str(market.get("quote")), kind)].append(market)
            for code in (market.get("id"), market.get("symbol")):
                if isinstance(code, str):
                    self._by_code.setdefault(code.upper(), market)
        for group in self._by_pair.values():
            group.sort(key=lambda m: (m.get("expiry") or 0, str(m.get("symbol"))))
        self.has_spot = any(kind == "spot" for _, _, kind in self._by_pair)

    def resolve(self, symbol: FmzSymbol, now_ms: int | None = None) -> dict:
        """The ccxt market an FMZ symbol names, or a BadRequest naming what is missing."""
        contract = symbol.contract
        if contract is None:
            market = self.markets.get(f"{symbol.base}/{symbol.quote}")
            if market is not None and market.get("spot", market.get("type") == "spot"):
                return market
            return self._first(symbol, "spot")
        if contract == "swap":
            return self._pick_settlement(symbol, self._by_pair.get((symbol.base, symbol.quote, "swap"), []))
        if contract in RELATIVE_CONTRACTS:
            return self._delivery(symbol, contract, now_ms or int(time.time() * 1000))
        market = self._by_code.get(contract.upper())
        if market is None or market.get("base") != symbol.base or market.get("quote") != symbol.quote:
            raise BadRequest(f"{self.exchange_id} has no contract {str(symbol)!r}")
        return market

    def select(self, selector: SymbolRange) -> list[dict]:
        return [m for m in self.markets.values() if selector.matches(m)]

    def fmz_symbol(self, market: dict) -> str:
        """`BTC_USDT`, `BTC_USDT.swap`, `BTC_USD.swap` or `BTC_USDT.<exchange code>`."""
        key = market.get("symbol", "")
        cached = self._fmz_symbols.get(key)
        if cached is None:
            cached = fmz_symbol_of(market)
            self._fmz_symbols[key] = cached
        return cached

    def fmz_symbol_for(self, ccxt_symbol: str | None) -> str:
        market = self.markets.get(ccxt_symbol or "")
        if market is None:
            return ccxt_symbol_to_fmz(ccxt_symbol or "")
        return self.fmz_symbol(market)

    def contract_type(self, market: dict, now_ms: int | None = None) -> str:
        """FMZ contract type: `swap`, a relative delivery name where one fits, else the code."""
        kind = market.get("type")
        if kind == "spot":
            return "spot"
        if kind == "swap":
            return "swap"
        if kind == "future":
            group = self._live(self._by_pair.get((market["base"], market["quote"], "future"), []), now_ms)
            for name in RELATIVE_CONTRACTS:
                if self._slot(group, name, now_ms or int(time.time() * 1000)) is market:
                    return name
        return str(market.get("id"))

    def _first(self, symbol: FmzSymbol, kind: str) -> dict:
        group = self._by_pair.get((symbol.base, symbol.quote, kind))
        if not group:
            raise BadRequest(f"{self.exchange_id} has no {kind} market {symbol}")
        return group[0]

    def _pick_settlement(self, symbol: FmzSymbol, group: list[dict]) -> dict:
        if not group:
            raise BadRequest(f"{self.exchange_id} has no perpetual swap {symbol}")
        inverse_wanted = symbol.quote == "USD"
        for market in group:
            if bool(market.get("inverse")) == inverse_wanted:
                return market
        return group[0]

    def _live(self, group: list[dict], now_ms: int | None) -> list[dict]:
        now = now_ms or int(time.time() * 1000)
        return [m for m in group if not m.get("expiry") or m["expiry"] > now]

    def _delivery(self, symbol: FmzSymbol, name: str, now_ms: int) -> dict:
        group = self._live(self._by_pair.get((symbol.base, symbol.quote, "future"), []), now_ms)
        if symbol.quote == "USD" and any(m.get("inverse") for m in group):
            group = [m for m in group if m.get("inverse")]
        market = self._slot(group, name, now_ms)
        if market is None:
            raise BadRequest(f"{self.exchange_id} has no {name} delivery contract for {symbol.base}_{symbol.quote}")
        return market

    @staticmethod
    def _slot(group: list[dict], name: str, now_ms: int) -> dict | None:
        """The contract filling a relative slot: the exchange's own hint, else expiry order."""
        hinted = [m for m in group if _hint(m)]
        if hinted:  # an exchange that labels its contracts is the authority on its slots
            return next((m for m in hinted if _hint(m) == name), None)
        return _slot_by_expiry(group, name, now_ms)


def _hint(market: dict) -> str | None:
    info = market.get("info") or {}
    if not isinstance(info, dict):
        return None
    for key in ("alias", "contractType", "contract_type", "deliveryType"):
        value = info.get(key)
        if isinstance(value, str) and value.lower() in CONTRACT_HINTS:
            return CONTRACT_HINTS[value.lower()]
    return None


def _slot_by_expiry(group: list[dict], name: str, now_ms: int) -> dict | None:
    dated = [m for m in group if m.get("expiry")]
    if name in ("this_week", "next_week"):
        limit_days = 7 if name == "this_week" else 14
        index = 0 if name == "this_week" else 1
        within = [m for m in dated if m["expiry"] - now_ms <= limit_days * DAY_MS + DAY_MS]
        return within[index] if len(within) > index else None
    month_end = [m for m in dated if _is_last_week_of_month(m["expiry"])]
    if name in ("quarter", "next_quarter"):
        quarterly = [m for m in month_end if _month(m["expiry"]) in (3, 6, 9, 12)]
        index = 0 if name == "quarter" else 1
        return quarterly[index] if len(quarterly) > index else None
    index = 0 if name == "month" else 1
    return month_end[index] if len(month_end) > index else None


def _is_last_week_of_month(ms: int) -> bool:
    return datetime.fromtimestamp(ms / 1000, UTC).day >= 22


def _month(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, UTC).month


def fmz_symbol_of(market: dict) -> str:
    pair = f"{market.get('base')}_{market.get('quote')}"
    kind = market.get("type")
    if kind == "spot" or kind is None:
        return pair
    if kind == "swap":
        return f"{pair}.swap"
    return f"{pair}.{market.get('id')}"


def ccxt_symbol_to_fmz(ccxt_symbol: str) -> str:
    """Best effort for a symbol that is not in the markets (e.g. a delisted pair)."""
    base_quote, _, settle = ccxt_symbol.partition(":")
    base, _, quote = base_quote.partition("/")
    if not quote:
        return ccxt_symbol
    return f"{base}_{quote}.swap" if settle and "-" not in settle else f"{base}_{quote}"
