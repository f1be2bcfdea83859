"""What a failed order request means: the one table that decides whether to look the order up.

A strategy that gets an error from `Buy()` assumes nothing happened and usually sends again, so
an order request that failed is classified before the strategy is told anything:

- **rejected**: the exchange (or ccxt, before sending) refused it. Nothing was placed; the error
  is answered as it is.
- **not sent**: the connection was never made (refused, DNS): the request never left.
- **unknown**: everything else. The exchange may hold the order (a timeout, a dropped or
  truncated answer, an HTML 502, an "execution status unknown" code, an error ccxt cannot
  place), so the gateway looks the order up before answering (gateway/settle.py).

Read `OUTCOMES` top to bottom against ccxt's exception tree (ccxt/base/errors.py): the first
class that matches wins, and a class not listed is unknown. `STATUS_UNKNOWN_CODES` lists the
exchanges' documented "outcome unknown" codes: they are unknown whatever class ccxt maps them to.
"""

from __future__ import annotations

import enum
import re
import socket
from typing import Any

import aiohttp
import ccxt.async_support as ccxt

from gateway.errors import OrderNotSent


class Outcome(enum.Enum):
    REJECTED = "rejected"
    NOT_SENT = "not sent"
    UNKNOWN = "unknown"


OUTCOMES: tuple[tuple[type[BaseException], Outcome, str], ...] = (
    (OrderNotSent, Outcome.NOT_SENT, "the gateway stopped before sending: a read it needed failed"),
    # A client id the exchange already holds: this very order was placed before (a re-send, a
    # restart, a second replica). Looked up, it answers with the order that exists.
    (ccxt.DuplicateOrderId, Outcome.UNKNOWN, "the client id exists: the order was placed earlier"),
    (ccxt.AuthenticationError, Outcome.REJECTED, "keys, permissions, suspended account"),
    (ccxt.ArgumentsRequired, Outcome.REJECTED, "ccxt refused before sending"),
    (ccxt.BadRequest, Outcome.REJECTED, "malformed request, unknown symbol"),
    (ccxt.InsufficientFunds, Outcome.REJECTED, "not enough balance or margin"),
    (ccxt.InvalidOrder, Outcome.REJECTED, "price, amount, post-only, reduce-only or contract refused"),
    (ccxt.NotSupported, Outcome.REJECTED, "ccxt or the exchange does not offer this"),
    (ccxt.OperationRejected, Outcome.REJECTED, "market closed, not modified, restricted location"),
    (ccxt.InvalidNonce, Outcome.REJECTED, "timestamp or nonce refused before processing"),
    (ccxt.RateLimitExceeded, Outcome.REJECTED, "a 429 or limit code: refused before processing"),
    # Everything else may have reached the matching engine: ExchangeError without a mapped code,
    # RequestTimeout, ExchangeNotAvailable (5xx, HTML pages), DDoSProtection (also Cloudflare
    # pages), BadResponse (truncated or non-JSON), OperationFailed, and anything not from ccxt.
    (BaseException, Outcome.UNKNOWN, "the exchange may hold the order"),
)

# Documented codes meaning "received, result unknown: check the order" (exchange API docs).
STATUS_UNKNOWN_CODES: dict[str, frozenset[str]] = {
    # -1006 "unexpected response from the message bus, execution status unknown"
    # -1007 "timeout waiting for response from backend server, send status unknown"
    "binance": frozenset({"-1006", "-1007"}),
    # 50004 "API endpoint request timeout (does not mean that the request was successful or failed)"
    # 51149 "Order timed out, please try again"
    "okx": frozenset({"50004", "51149"}),
    # 10016 "internal error", 10000 "server timeout"
    "bybit": frozenset({"10016", "10000"}),
}

# An order refused because its client id exists *is* the order: this very request was placed
# before (a re-send after a restart, a second replica). Binance -2010 "Duplicate order sent.",
# OKX 51016 "Duplicated clOrdId", Bybit 110072 "OrderLinkedID is duplicate", whatever ccxt's class.
_DUPLICATE_CLIENT_ID = re.compile(r"(?i)duplicat")
_CODE_FIELD = re.compile(r'(?i)"(?:code|retcode|scode|err-code|error_code)"\s*:\s*"?(-?[A-Za-z0-9_.-]+)"?')
_NEVER_SENT_CAUSES = (aiohttp.ClientConnectorError, socket.gaierror, ConnectionRefusedError)


def classify(exc: BaseException, exchange: Any = None) -> Outcome:
    """The outcome of an order request to `exchange` (a ccxt client) that raised `exc`."""
    if _never_sent(exc):
        return Outcome.NOT_SENT
    if _DUPLICATE_CLIENT_ID.search(str(exc)):
        return Outcome.UNKNOWN
    codes = status_unknown_codes(exchange)
    if codes and codes.intersection(_CODE_FIELD.findall(str(exc))):
        return Outcome.UNKNOWN
    for cls, outcome, _why in OUTCOMES:
        if isinstance(exc, cls):
            return outcome
    return Outcome.UNKNOWN  # unreachable: BaseException closes the table


def status_unknown_codes(exchange: Any) -> frozenset[str]:
    """The documented codes of the exchange's family (binanceusdm is a binance, by ccxt's classes)."""
    found: frozenset[str] = frozenset()
    for cls in type(exchange).__mro__:
        found |= STATUS_UNKNOWN_CODES.get(cls.__name__, frozenset())
    return found


def _never_sent(exc: BaseException) -> bool:
    """A connection that was never made: ccxt raises ExchangeNotAvailable from aiohttp's connector error."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _NEVER_SENT_CAUSES):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
