import ccxt.async_support as ccxt
import pytest

from gateway import convert


def test_ticker_maps_bid_ask_and_base_volume():
    ticker = {
        "bid": 99.5,
        "ask": 100.5,
        "high": 110,
        "low": 90,
        "open": 95,
        "last": 100,
        "baseVolume": 12.5,
        "quoteVolume": 1250,
        "timestamp": 1700000000123,
    }
    assert convert.to_fmz_ticker(ticker, "BTC_USDT") == {
        "symbol": "BTC_USDT",
        "buy": 99.5,
        "sell": 100.5,
        "high": 110,
        "low": 90,
        "open": 95,
        "last": 100,
        "vol": 12.5,
        "quoteVol": 1250,
        "time": 1700000000123,
    }


def test_ticker_without_last_or_book_prices_is_a_bad_response_not_zeros():
    with pytest.raises(ccxt.BadResponse) as caught:
        convert.to_fmz_ticker({"bid": None, "ask": float("nan"), "last": None, "high": 5}, "X_Y", exchange_id="okx")
    assert str(caught.value) == "okx ticker for X_Y has no last price (no bid/ask either)"


def test_ticker_without_last_is_refused_even_with_book_prices():
    """FMZ reads price 0 as a market order: a strategy buying at Last must never see 0."""
    with pytest.raises(ccxt.BadResponse, match="binance ticker for BTC_USDT has no last price \\(only bid/ask\\)"):
        convert.to_fmz_ticker({"bid": 99, "ask": 101}, "BTC_USDT", exchange_id="binance")


def test_ticker_missing_optional_fields_are_filled_as_fmz_does():
    data = convert.to_fmz_ticker({"bid": 99, "ask": float("nan"), "close": 100}, "X_Y", 1234)
    assert data["last"] == 100 and data["buy"] == 99 and data["sell"] == 0
    # no 24 h figures: high = ask (none here), low = bid, open = last; no volume: 0
    assert data["high"] == 0 and data["low"] == 99 and data["open"] == 100
    assert data["vol"] == 0 and data["quoteVol"] == 0 and data["time"] == 1234


OKX_SWAP = {"contract": True, "linear": True, "inverse": False, "contractSize": 0.01}


def test_contract_ticker_volume_is_in_contracts():
    # okx: ccxt's baseVolume is vol24h, in contracts for derivatives; volCcy24h is the base currency
    okx = {"last": 1, "baseVolume": 500, "info": {"vol24h": "500", "volCcy24h": "5"}}
    assert convert.to_fmz_ticker(okx, "BTC_USDT.swap", market=OKX_SWAP, exchange_id="okx")["vol"] == 500
    # elsewhere ccxt's baseVolume is base currency: divided by the contract size
    linear = {"last": 1, "baseVolume": 5, "info": {}}
    assert convert.to_fmz_ticker(linear, "BTC_USDT.swap", market=OKX_SWAP, exchange_id="bybit")["vol"] == 500
    # inverse contracts are sized in quote currency (100 USD each)
    inverse_market = {"contract": True, "inverse": True, "contractSize": 100}
    inverse = {"last": 1, "baseVolume": 2, "quoteVolume": 120_000, "info": {}}
    assert convert.to_fmz_ticker(inverse, "BTC_USD.swap", market=inverse_market, exchange_id="x")["vol"] == 1200
    # binance COIN-M states contracts itself ("volume"); ccxt's baseVolume there is BTC
    coinm = {"last": 1, "baseVolume": 2, "quoteVolume": 120_000, "info": {"volume": "1150", "baseVolume": "2"}}
    assert convert.to_fmz_ticker(coinm, "BTC_USD.swap", market=inverse_market, exchange_id="binance")["vol"] == 1150
    # spot: base currency, whatever the exchange
    assert convert.to_fmz_ticker(okx, "BTC_USDT", market={"spot": True}, exchange_id="okx")["vol"] == 500


def test_depth_sorts_sides_and_truncates():
    book = {"asks": [[102, 1], [101, 2], [103, 3]], "bids": [[98, 1], [99, 2], [97, 3]], "timestamp": 5}
    assert convert.to_fmz_depth(book, 2) == {"time": 5, "asks": [[101, 2], [102, 1]], "bids": [[99, 2], [98, 1]]}


def test_trades_oldest_first_with_side():
    trades = [
        {"id": 2, "timestamp": 20, "price": 1, "amount": 2, "side": "sell"},
        {"id": 1, "timestamp": 10, "price": 1, "amount": 3, "side": "buy"},
    ]
    assert [t["id"] for t in convert.to_fmz_trades(trades)] == ["1", "2"]
    assert convert.to_fmz_trades(trades)[1]["type"] == "sell"


def test_records_time_in_seconds_oldest_first_deduplicated():
    rows = [[120_000, 2, 3, 1, 2, 5], [60_000, 1, 2, 0.5, 1.5, 4], [120_000, 2, 4, 1, 3, 6]]
    assert convert.to_fmz_records(rows) == [[60, 1, 2, 0.5, 1.5, 4], [120, 2, 4, 1, 3, 6]]


def test_aggregate_builds_larger_bars_and_drops_a_partial_first_bucket():
    minute = 60_000
    rows = [[t * minute, t, t + 1, t - 1, t + 0.5, 1] for t in range(1, 7)]  # minutes 1..6
    bars = convert.aggregate_ohlcv(rows, 2 * minute)
    # minute 1 starts inside bucket [0,2): dropped. Buckets [2,4) and [4,6) complete, [6,8) open.
    assert [b[0] for b in bars] == [2 * minute, 4 * minute, 6 * minute]
    assert bars[0] == [2 * minute, 2, 4, 1, 3.5, 2]


def test_order_status_mapping():
    assert convert.fmz_order_status({"status": "open", "filled": 0}) == "pending"
    assert convert.fmz_order_status({"status": "open", "filled": 0.1}) == "partial-filled"
    assert convert.fmz_order_status({"status": "closed", "filled": 1}) == "filled"
    assert convert.fmz_order_status({"status": "canceled", "filled": 0}) == "canceled"
    assert convert.fmz_order_status({"status": "canceled", "filled": 0.5}) == "partial-canceled"
    assert convert.fmz_order_status({"status": "expired", "filled": 0}) == "canceled"


def test_order_id_embeds_the_fmz_symbol_and_average_falls_back_to_cost():
    order = {
        "id": "42",
        "side": "sell",
        "amount": 2,
        "price": 10,
        "filled": 2,
        "cost": 21,
        "status": "closed",
        "timestamp": 9,
        "type": "limit",
        "reduceOnly": True,
    }
    data = convert.to_fmz_order(order, "BTC_USDT.swap", "swap")
    assert data["id"] == "BTC_USDT.swap,42"
    assert data["avg_price"] == 10.5 and data["type"] == "sell" and data["status"] == "filled"
    assert data["offset"] == "close" and data["contract_type"] == "swap"


def test_order_without_an_exchange_id_is_a_bad_response():
    for missing in (None, ""):
        with pytest.raises(ccxt.BadResponse, match="binance order for BTC_USDT has no order id"):
            convert.to_fmz_order({"id": missing, "status": "open"}, "BTC_USDT", exchange_id="binance")


@pytest.mark.parametrize(
    ("info", "side", "offset"),
    [
        ({"positionSide": "LONG"}, "sell", "close"),  # binance hedge mode
        ({"positionSide": "SHORT"}, "buy", "close"),
        ({"positionSide": "LONG"}, "buy", "open"),
        ({"positionSide": "SHORT"}, "sell", "open"),
        ({"posSide": "long"}, "sell", "close"),  # okx long/short mode
        ({"posSide": "short"}, "buy", "close"),
        ({"posSide": "short"}, "sell", "open"),
        ({"positionSide": "BOTH"}, "sell", "open"),  # one-way mode: only reduceOnly closes
        ({"posSide": "net"}, "buy", "open"),
    ],
)
def test_hedge_mode_offset_comes_from_the_position_side(info: dict, side: str, offset: str):
    order = {"id": "1", "side": side, "reduceOnly": False, "status": "closed", "info": info}
    assert convert.to_fmz_order(order, "BTC_USDT.swap", "swap")["offset"] == offset


def test_one_way_mode_offset_comes_from_reduce_only():
    order = {"id": "1", "side": "sell", "reduceOnly": True, "info": {"positionSide": "BOTH"}}
    assert convert.to_fmz_order(order, "BTC_USDT.swap", "swap")["offset"] == "close"
    assert convert.to_fmz_order({**order, "reduceOnly": None}, "BTC_USDT.swap", "swap")["offset"] == "open"


def test_balance_without_an_available_amount_is_a_bad_response():
    balance = {"info": {"balances": [{"asset": "BTC"}]}, "free": {"BTC": None}, "used": {"BTC": None}, "total": {}}
    with pytest.raises(ccxt.BadResponse, match="okx balance of BTC has no free \\(available\\) amount"):
        convert.to_fmz_balances(balance, "okx")


def test_balance_reply_that_is_not_json_or_says_nothing_is_a_bad_response():
    with pytest.raises(ccxt.BadResponse, match="binance balance reply is not JSON: '<html>"):
        convert.to_fmz_balances({"info": "<html>busy</html>", "free": {}, "used": {}, "total": {}}, "binance")
    with pytest.raises(ccxt.BadResponse, match="lists no currencies and no account data"):
        convert.to_fmz_balances({"info": {}, "free": {}, "used": {}, "total": {}}, "binance")
    # an account that holds nothing is not an error: the exchange said so
    assert convert.to_fmz_balances({"info": {"balances": []}, "free": {}, "used": {}, "total": {}}) == []


def test_balances_skip_empty_currencies():
    balance = {
        "free": {"USDT": 10, "BTC": 0, "ETH": 0},
        "used": {"USDT": 5, "BTC": 0, "ETH": 1},
        "total": {"USDT": 15, "BTC": 0, "ETH": 1},
    }
    assert convert.to_fmz_balances(balance) == [
        {"currency": "ETH", "free": 0, "frozen": 1},
        {"currency": "USDT", "free": 10, "frozen": 5},
    ]


def test_position_fields():
    position = {
        "leverage": 10,
        "contracts": 3,
        "entryPrice": 100,
        "unrealizedPnl": -2,
        "side": "short",
        "initialMargin": 30,
        "marginMode": "cross",
    }
    data = convert.to_fmz_position(position, "BTC_USDT.swap", "swap")
    assert data == {
        "symbol": "BTC_USDT.swap",
        "margin_level": 10,
        "amount": 3,
        "frozen_amount": 0,
        "price": 100,
        "profit": -2,
        "type": "short",
        "contract_type": "swap",
        "margin": 30,
        "margin_mode": "cross",
    }


def test_market_under_tick_size_and_decimal_places():
    market = {
        "base": "BTC",
        "quote": "USD",
        "contract": True,
        "inverse": True,
        "contractSize": 100,
        "precision": {"price": 0.1, "amount": 1},
        "limits": {"amount": {"min": 1, "max": 1000}, "cost": {"min": None}},
    }
    data = convert.to_fmz_market(market, "BTC_USD.swap", convert.TICK_SIZE)
    assert data["tickSize"] == 0.1 and data["pricePrecision"] == 1 and data["amountPrecision"] == 0
    assert data["ctVal"] == 100 and data["ctValCcy"] == "USD" and data["minQty"] == 1
    spot = {"base": "ETH", "quote": "BTC", "precision": {"price": 5, "amount": 3}, "limits": {}}
    data = convert.to_fmz_market(spot, "ETH_BTC", convert.DECIMAL_PLACES)
    assert data["tickSize"] == 0.00001 and data["amountSize"] == 0.001 and data["pricePrecision"] == 5
    assert data["ctVal"] == 1 and data["ctValCcy"] == "ETH"


def test_funding_uses_next_funding_time():
    rate = {"fundingRate": 0.0001, "fundingTimestamp": 1700000000000}
    assert convert.to_fmz_funding(rate, "BTC_USDT.swap", 28_800_000) == {
        "symbol": "BTC_USDT.swap",
        "interval": 28_800_000,
        "time": 1700000000000,
        "rate": 0.0001,
    }
