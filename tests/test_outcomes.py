"""The outcome table: which failed order requests are looked up before the strategy is told."""

from __future__ import annotations

import socket

import aiohttp
import ccxt.async_support as ccxt
import pytest

from gateway.outcomes import OUTCOMES, Outcome, classify


def raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise exc from inner
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.InsufficientFunds("binance Account has insufficient balance"),
        ccxt.InvalidOrder("okx price out of range"),
        ccxt.OrderImmediatelyFillable("post-only would take"),
        ccxt.AuthenticationError("invalid api key"),
        ccxt.PermissionDenied("no trading permission"),
        ccxt.BadSymbol("no such market"),
        ccxt.ArgumentsRequired("symbol required"),
        ccxt.RateLimitExceeded('binance {"code":-1003,"msg":"Too many requests"}'),
        ccxt.InvalidNonce("timestamp outside recvWindow"),
        ccxt.MarketClosed("market closed"),
    ],
)
def test_refusals_are_rejected(exc):
    assert classify(exc, ccxt.binance()) is Outcome.REJECTED


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.RequestTimeout("binance POST /api/v3/order 10000ms"),
        ccxt.ExchangeNotAvailable("502 Bad Gateway <html>"),
        ccxt.DDoSProtection("cloudflare"),
        ccxt.BadResponse("truncated"),
        ccxt.NetworkError("connection reset"),
        ccxt.ExchangeError('bybit {"retCode":10016,"retMsg":"internal error"}'),
        ccxt.OperationFailed('binance {"code":-1006,"msg":"execution status unknown"}'),
        ccxt.DuplicateOrderId("client id exists"),  # the order exists: look it up and answer it
        TimeoutError(),  # the send's own time budget ran out: the request may have arrived
        KeyError("info"),  # ccxt failed while parsing an answer: the order may exist
    ],
)
def test_everything_else_is_unknown(exc):
    assert classify(exc, ccxt.bybit()) is Outcome.UNKNOWN


def test_documented_status_unknown_codes_win_over_a_rejecting_class():
    # Should ccxt ever map these to a rejecting class, the documented meaning still decides.
    assert classify(ccxt.InvalidOrder('binance {"code":-1007,"msg":"Timeout"}'), ccxt.binanceusdm()) is Outcome.UNKNOWN
    assert classify(ccxt.BadRequest('okx {"code":"1","data":[{"sCode":"50004"}]}'), ccxt.okx()) is Outcome.UNKNOWN
    # the same code from another exchange family means nothing special
    assert classify(ccxt.InvalidOrder('kraken {"code":-1007}'), ccxt.kraken()) is Outcome.REJECTED


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'),
        ccxt.InvalidOrder('okx {"code":"1","data":[{"sCode":"51016","sMsg":"Duplicated clOrdId"}]}'),
        ccxt.ExchangeError('bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}'),
    ],
)
def test_a_refused_duplicate_client_id_is_looked_up(exc):
    """Same client id = same FMZ call: the order exists, and is answered as placed."""
    assert classify(exc, ccxt.binance()) is Outcome.UNKNOWN


def test_a_connection_that_was_never_made_is_not_sent():
    refused = aiohttp.ClientConnectorError(None, ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]
    assert classify(raised_from(ccxt.ExchangeNotAvailable("binance GET"), refused), ccxt.binance()) is Outcome.NOT_SENT
    dns = socket.gaierror(-2, "Name or service not known")
    assert classify(raised_from(ccxt.ExchangeNotAvailable("x"), dns), ccxt.binance()) is Outcome.NOT_SENT
    dropped = aiohttp.ServerDisconnectedError()  # the request may have been sent before the drop
    assert classify(raised_from(ccxt.ExchangeNotAvailable("x"), dropped), ccxt.binance()) is Outcome.UNKNOWN


def test_the_table_covers_every_ccxt_error_class_and_ends_unknown():
    assert OUTCOMES[-1][0] is BaseException and OUTCOMES[-1][1] is Outcome.UNKNOWN
    everything = [ccxt.BaseError]
    for cls in everything:
        everything.extend(cls.__subclasses__())
    for cls in everything:
        assert classify(cls("x"), None) in (Outcome.REJECTED, Outcome.UNKNOWN)
    # no network failure is ever taken for a refusal
    assert all(
        classify(cls("x")) is Outcome.UNKNOWN
        for cls in everything
        if issubclass(cls, ccxt.NetworkError) and not issubclass(cls, ccxt.RateLimitExceeded | ccxt.InvalidNonce)
    )
