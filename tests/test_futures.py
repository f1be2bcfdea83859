"""FMZ futures functions end to end on the fake Binance USDⓈ-M and OKX SWAP/FUTURES venues."""

from __future__ import annotations

import pytest

from tests.conftest import Account

# Contract sizes differ: one binance USDⓈ-M contract is 1 BTC, one OKX BTC-USDT-SWAP contract 0.01 BTC.
LOT = {"binance": "0.1", "okx": "2"}


def positions(account: Account, symbol: str | None = None) -> list[dict]:
    return account.data("positions", {"symbol": symbol} if symbol else {})


def market_order(account: Account, symbol: str, kind: str, amount: str) -> str:
    return account.data("trade", {"symbol": symbol, "type": kind, "price": "-1", "amount": amount})["id"]


def test_long_lifecycle(account: Account):
    lot = LOT[account.route]
    assert positions(account, "BTC_USDT.swap") == []
    order_id = market_order(account, "BTC_USDT.swap", "buy", lot)
    assert order_id.startswith("BTC_USDT.swap,")
    order = account.data("order", {"id": order_id})
    assert order["status"] == "filled" and order["offset"] == "open" and order["contract_type"] == "swap"

    [long] = positions(account, "BTC_USDT.swap")
    ask = float(account.fake.engine.instruments["BTC/USDT:USDT"].best_ask())
    assert long["type"] == "long" and long["amount"] == float(lot) and long["symbol"] == "BTC_USDT.swap"
    assert long["price"] == pytest.approx(ask) and long["contract_type"] == "swap"
    assert long["margin_level"] == 20 and long["margin"] > 0 and long["frozen_amount"] == 0

    closing = market_order(account, "BTC_USDT.swap", "closebuy", lot)
    assert account.data("order", {"id": closing})["offset"] == "close"
    assert positions(account, "BTC_USDT.swap") == []


def test_short_lifecycle(account: Account):
    lot = LOT[account.route]
    market_order(account, "BTC_USDT.swap", "sell", lot)
    [short] = positions(account, "BTC_USDT.swap")
    assert short["type"] == "short" and short["amount"] == float(lot)
    account.fake.engine.set_price("BTC/USDT:USDT", "59000")  # the short gains
    [short] = positions(account, "BTC_USDT.swap")
    assert short["profit"] > 0
    market_order(account, "BTC_USDT.swap", "closesell", lot)
    assert positions(account, "BTC_USDT.swap") == []
    account.fake.engine.set_price("BTC/USDT:USDT", "60000")


def test_close_without_a_position_is_refused(account: Account):
    message = account.error(
        "trade", {"symbol": "BTC_USDT.swap", "type": "closebuy", "price": "-1", "amount": LOT[account.route]}
    )
    # Refused, and said so. Against the loopback fakes ccxt applies only its global error table,
    # so -2022 / 51169 arrive as a plain ExchangeError: an unknown outcome, looked up, not placed.
    # (On the real hosts ccxt maps them to InvalidOrder: refused at once.)
    kind = message.split(":")[0]
    assert kind == "OrderNotPlaced" or "Error" in kind, message
    assert "-2022" in message or "51169" in message or "position" in message.lower(), message


def test_set_margin_level_then_position_reports_it(account: Account):
    assert account.data("setmarginlevel", {"symbol": "BTC_USDT.swap", "marginLevel": "10"}) is True
    market_order(account, "BTC_USDT.swap", "buy", LOT[account.route])
    [position] = positions(account, "BTC_USDT.swap")
    assert position["margin_level"] == 10
    market_order(account, "BTC_USDT.swap", "closebuy", LOT[account.route])


@pytest.mark.parametrize("spelling", ["marginlevel", "leverage"])
def test_margin_level_aliases_and_level_param(account: Account, spelling: str):
    assert account.data(spelling, {"symbol": "ETH_USDT.swap", "level": 3}) is True
    assert "param 'level' must be 1.." in account.error(spelling, {"symbol": "ETH_USDT.swap", "level": 0})
    assert "is spot" in account.error(spelling, {"symbol": "ETH_USDT", "level": 3})


def test_fundings_one_and_range(account: Account):
    [btc] = account.data("fundings", {"symbol": "BTC_USDT.swap"})
    assert btc["symbol"] == "BTC_USDT.swap" and btc["rate"] == pytest.approx(0.0001)
    assert btc["interval"] == 8 * 3600_000 and btc["time"] % (8 * 3600_000) == 0
    usdt = {f["symbol"]: f["rate"] for f in account.data("getfundings", {"symbol": "USDT.swap"})}
    assert usdt == {"BTC_USDT.swap": pytest.approx(0.0001), "ETH_USDT.swap": pytest.approx(-0.00005)}


def test_range_selectors_for_positions_orders_tickers(account: Account):
    lot = LOT[account.route]
    market_order(account, "BTC_USDT.swap", "buy", lot)
    resting = account.data("trade", {"symbol": "ETH_USDT.swap", "type": "sell", "price": "3500", "amount": lot})
    assert [p["symbol"] for p in positions(account, "USDT.swap")] == ["BTC_USDT.swap"]
    assert [o["id"] for o in account.data("orders", {"symbol": "USDT.swap"})] == [resting["id"]]
    tickers = {t["symbol"]: t for t in account.data("tickers", {"symbol": "USDT.swap"})}
    assert set(tickers) == {"BTC_USDT.swap", "ETH_USDT.swap"}
    assert tickers["BTC_USDT.swap"]["buy"] < tickers["BTC_USDT.swap"]["sell"]
    assert positions(account, "USD.swap") == []
    account.data("cancel", {"id": resting["id"]})
    market_order(account, "BTC_USDT.swap", "closebuy", lot)


def test_markets_of_contracts_carry_contract_value(account: Account):
    data = account.data("markets", {"symbol": "USDT.swap"})
    btc = data["BTC_USDT.swap"]
    expected = {"binance": 1, "okx": 0.01}[account.route]
    assert btc["ctVal"] == expected and btc["ctValCcy"] == "BTC"
    assert btc["tickSize"] == 0.1 and btc["minQty"] > 0


def test_ticker_of_a_swap_has_bid_and_ask(account: Account):
    data = account.data("ticker", {"symbol": "BTC_USDT.swap"})
    assert data["symbol"] == "BTC_USDT.swap" and 0 < data["buy"] < data["sell"]


def test_io_set_contract_type_applies_to_unsuffixed_symbols(account: Account):
    assert account.data("io", {"code": 2, "args": ["swap"]}) is True
    assert account.data("ticker", {"symbol": "BTC_USDT"})["symbol"] == "BTC_USDT.swap"
    lot = LOT[account.route]
    order_id = market_order(account, "BTC_USDT", "buy", lot)
    assert order_id.startswith("BTC_USDT.swap,")
    accounts = {row["currency"]: row for row in account.data("accounts")}
    assert accounts["USDT"]["frozen"] > 0 and "equity" in accounts["USDT"] and "upnl" in accounts["USDT"]
    # SetDirection("closebuy") + Sell() closes the long, as on a native FMZ futures exchange
    assert account.data("io", {"code": 1, "args": ["closebuy"]}) is True
    market_order(account, "BTC_USDT", "sell", lot)
    assert account.data("io", {"code": 3, "args": []}) == []
    # top-level code/args, as some dockers send them
    reply = account.gateway.http.post(
        f"{account.gateway.url}/{account.route}",
        json={
            "access_key": account.access_key,
            "secret_key": account.secret_key,
            "method": "io",
            "code": 2,
            "args": ["spot"],
            "params": {},
        },
    ).json()
    assert reply["data"] is True
    assert account.data("ticker", {"symbol": "BTC_USDT"})["symbol"] == "BTC_USDT"


def test_io_rejects_unknown_codes_and_directions(account: Account):
    assert "unknown code 9" in account.error("io", {"code": 9, "args": []})
    assert "SetDirection" in account.error("io", {"code": 1, "args": ["up"]})


def test_io_margin_level_without_symbol_applies_before_the_next_order(account: Account):
    assert account.data("io", {"code": 0, "args": [7]}) is True
    market_order(account, "ETH_USDT.swap", "buy", LOT[account.route])
    [position] = positions(account, "ETH_USDT.swap")
    assert position["margin_level"] == 7
    market_order(account, "ETH_USDT.swap", "closebuy", LOT[account.route])


def enable_hedge_mode(account: Account) -> None:
    if account.route == "binance":
        account.data("__api_/fapi/v1/positionSide/dual", {"dualSidePosition": "true"}, http_method="POST")
    else:
        account.data("__api_/api/v5/account/set-position-mode", {"posMode": "long_short_mode"}, http_method="POST")


def test_hedge_mode_closes_carry_the_position_side(account: Account):
    enable_hedge_mode(account)
    lot = LOT[account.route]
    market_order(account, "BTC_USDT.swap", "buy", lot)
    market_order(account, "BTC_USDT.swap", "sell", lot)
    sides = sorted(p["type"] for p in positions(account, "BTC_USDT.swap"))
    assert sides == ["long", "short"]
    market_order(account, "BTC_USDT.swap", "closebuy", lot)
    assert [p["type"] for p in positions(account, "BTC_USDT.swap")] == ["short"]
    market_order(account, "BTC_USDT.swap", "closesell", lot)
    assert positions(account, "BTC_USDT.swap") == []


def test_hedge_mode_closes_report_offset_close(account: Account):
    """ccxt sends no reduceOnly in hedge mode: the offset comes from the order's position side."""
    enable_hedge_mode(account)
    lot = LOT[account.route]
    opened = [market_order(account, "BTC_USDT.swap", kind, lot) for kind in ("buy", "sell")]
    closed = [market_order(account, "BTC_USDT.swap", kind, lot) for kind in ("closebuy", "closesell")]
    offsets = [account.data("order", {"id": order_id})["offset"] for order_id in opened + closed]
    assert offsets == ["open", "open", "close", "close"]
    history = account.data("historyorders", {"symbol": "BTC_USDT.swap", "limit": 4})
    assert [(o["type"], o["offset"]) for o in history] == [
        ("buy", "open"),
        ("sell", "open"),
        ("sell", "close"),
        ("buy", "close"),
    ]
    assert positions(account, "BTC_USDT.swap") == []


def test_limit_order_on_a_swap(account: Account):
    placed = account.data(
        "trade", {"symbol": "BTC_USDT.swap", "type": "buy", "price": "50000", "amount": LOT[account.route]}
    )
    order = account.data("order", {"id": placed["id"]})
    assert order["status"] == "pending" and order["symbol"] == "BTC_USDT.swap" and order["price"] == 50000
    assert [o["id"] for o in account.data("orders", {"symbol": "BTC_USDT.swap"})] == [placed["id"]]
    assert account.data("cancel", {"id": placed["id"]}) is True
    assert account.data("order", {"id": placed["id"]})["status"] == "canceled"


def test_delivery_contract_by_relative_name(account: Account):
    symbol = {"binance": "BTC_USDT.quarter", "okx": "BTC_USD.this_week"}[account.route]
    ticker = account.data("ticker", {"symbol": symbol})
    assert ticker["symbol"].startswith(symbol.split(".")[0] + ".") and ticker["buy"] > 0
    assert ticker["symbol"] != symbol  # answered with the exchange's own contract code
    [market] = account.data("markets", {"symbol": symbol}).values()
    assert market["symbol"] == ticker["symbol"]
    # the returned code is itself a valid symbol
    assert account.data("ticker", {"symbol": ticker["symbol"]})["symbol"] == ticker["symbol"]


def test_unknown_relative_contract_names_the_exchange(account: Account):
    message = account.error("ticker", {"symbol": "ETH_USDT.next_quarter"})
    assert "has no next_quarter delivery contract" in message


@pytest.fixture
def okx_account(gateway, fake_okx) -> Account:
    from tests.conftest import open_account

    return open_account("okx", fake_okx, gateway)


def test_inverse_swap_margined_in_the_base_currency(okx_account: Account):
    account = okx_account
    btc_before = account.balance("BTC")[0]
    market_order(account, "BTC_USD.swap", "buy", "5")
    [position] = positions(account, "BTC_USD.swap")
    assert position["type"] == "long" and position["amount"] == 5 and position["symbol"] == "BTC_USD.swap"
    assert account.balance("BTC")[0] < btc_before  # margin came out of BTC
    assert [p["symbol"] for p in positions(account, "USD.swap")] == ["BTC_USD.swap"]
    assert positions(account, "USDT.swap") == []
    market_order(account, "BTC_USD.swap", "closebuy", "5")
    assert positions(account, "BTC_USD.swap") == []
    assert account.balance("BTC")[0] == pytest.approx(btc_before, rel=1e-6)


def test_inverse_futures_range(okx_account: Account):
    fundings = okx_account.data("fundings", {"symbol": "USD.swap"})
    assert [f["symbol"] for f in fundings] == ["BTC_USD.swap"] and fundings[0]["rate"] == pytest.approx(0.0002)
    futures = okx_account.data("markets", {"symbol": "USD.futures"})
    assert futures and all(m["ctValCcy"] == "USD" for m in futures.values())


def test_usdt_futures_range(account: Account):
    markets = account.data("markets", {"symbol": "USDT.futures"})
    assert markets and all(m["quoteAsset"] == "USDT" and m["symbol"].startswith("BTC_USDT.") for m in markets.values())
    assert all(not symbol.endswith(".swap") for symbol in markets)
    tickers = account.data("tickers", {"symbol": "USDT.futures"})
    assert {t["symbol"] for t in tickers} == set(markets)
    assert account.data("positions", {"symbol": "USDT.futures"}) == []


def test_io_needs_keys(account: Account):
    assert account.error("io", {"code": 2, "args": ["swap"]}, access_key="", secret_key="").startswith(
        "AuthenticationError: IO needs access_key"
    )


def test_spot_order_ids_stay_spot_after_set_contract_type(account: Account):
    placed = account.data("trade", {"symbol": "BTC_USDT", "type": "buy", "price": "41000", "amount": "0.001"})
    account.data("io", {"code": 2, "args": ["swap"]})
    assert account.data("order", {"id": placed["id"]})["symbol"] == "BTC_USDT"
    assert account.data("cancel", {"id": placed["id"]}) is True
    account.data("io", {"code": 2, "args": ["spot"]})


def test_direction_mismatch_is_refused(account: Account):
    account.data("io", {"code": 1, "args": ["closebuy"]})
    message = account.error("trade", {"symbol": "BTC_USDT.swap", "type": "buy", "price": "-1", "amount": "1"})
    assert "does not match the direction 'closebuy'" in message
    account.data("io", {"code": 1, "args": ["buy"]})
    assert "does not match" in account.error(
        "trade", {"symbol": "BTC_USDT.swap", "type": "sell", "price": "-1", "amount": "1"}
    )


def test_pending_leverage_never_blocks_a_close_and_yields_to_an_explicit_level(account: Account):
    lot = LOT[account.route]
    market_order(account, "BTC_USDT.swap", "buy", lot)
    account.data("io", {"code": 0, "args": [500]})  # more than the exchange allows
    market_order(account, "BTC_USDT.swap", "closebuy", lot)  # the close still goes through
    assert positions(account, "BTC_USDT.swap") == []
    account.data("io", {"code": 0, "args": [5]})
    account.data("setmarginlevel", {"symbol": "BTC_USDT.swap", "marginLevel": "12"})
    market_order(account, "BTC_USDT.swap", "buy", lot)
    [position] = positions(account, "BTC_USDT.swap")
    assert position["margin_level"] == 12
    market_order(account, "BTC_USDT.swap", "closebuy", lot)


def test_io_args_must_be_plain_values(account: Account):
    assert "'args' must hold strings or numbers" in account.error("io", {"code": 2, "args": [None]})


def test_public_calls_create_no_state(gateway, fake_binance):
    states = gateway.app.state.gateway.states._states
    before = len(states)
    for n in range(5):
        gateway.data("binance", "ticker", {"symbol": "BTC_USDT"}, access_key=f"random-{n}", secret_key="x")
    assert len(states) == before


def test_set_contract_type_spot_beats_a_swap_default_route(gateway, fake_binance):
    from tests.conftest import open_account

    account = open_account("binance-swap", fake_binance, gateway)
    assert account.data("ticker", {"symbol": "BTC_USDT"})["symbol"] == "BTC_USDT.swap"
    account.data("io", {"code": 2, "args": ["spot"]})
    assert account.data("ticker", {"symbol": "BTC_USDT"})["symbol"] == "BTC_USDT"


def test_funding_interval_comes_from_the_exchange_where_rates_omit_it(fake_binance, fake_okx):
    """binance's premiumIndex has no interval: it is read once from fundingInfo (here 4 h for ETH)."""
    import httpx

    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.conftest import gateway_config
    from tests.fakes.server import BackgroundServer

    eth = fake_binance.engine.instruments["ETH/USDT:USDT"]
    eth.funding_interval_h = 4
    server = BackgroundServer(create_app(parse_settings(gateway_config(fake_binance, fake_okx)))).start()
    try:
        reply = httpx.post(f"{server.url}/binance", json={"method": "fundings", "params": {"symbol": "USDT.swap"}})
        intervals = {f["symbol"]: f["interval"] for f in reply.json()["data"]}
        assert intervals == {"BTC_USDT.swap": 8 * 3600_000, "ETH_USDT.swap": 4 * 3600_000}
    finally:
        eth.funding_interval_h = 8
        server.stop()


def test_a_failing_interval_lookup_costs_one_request_per_minute(fake_binance, fake_okx):
    import httpx

    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.conftest import gateway_config
    from tests.fakes.server import BackgroundServer, Fault

    fake_binance.faults.inject(
        Fault(status=429, body=b'{"code":-1003,"msg":"Too many requests"}'), "/fapi/v1/fundingInfo", times=50
    )
    server = BackgroundServer(create_app(parse_settings(gateway_config(fake_binance, fake_okx)))).start()
    try:
        before = sum(1 for _, path in fake_binance.faults.requests if path == "/fapi/v1/fundingInfo")
        for _ in range(3):
            reply = httpx.post(f"{server.url}/binance", json={"method": "fundings", "params": {"symbol": "USDT.swap"}})
            assert [f["interval"] for f in reply.json()["data"]] == [8 * 3600_000, 8 * 3600_000]
        after = sum(1 for _, path in fake_binance.faults.requests if path == "/fapi/v1/fundingInfo")
        assert after - before == 1
    finally:
        fake_binance.faults.faults.clear()
        server.stop()


def test_a_refused_pending_leverage_fails_one_order_with_the_reason(gateway, fake_okx):
    from tests.conftest import open_account

    account = open_account("okx", fake_okx, gateway)
    account.data("io", {"code": 0, "args": [120]})  # ETH-USDT-SWAP allows at most 100
    message = account.error("trade", {"symbol": "ETH_USDT.swap", "type": "buy", "price": "-1", "amount": "1"})
    assert "SetMarginLevel(120) failed for ETH/USDT:USDT, so the order was not sent" in message
    account.data("trade", {"symbol": "ETH_USDT.swap", "type": "buy", "price": "-1", "amount": "1"})
    assert [p["amount"] for p in positions(account, "ETH_USDT.swap")] == [1]


def test_contract_ticker_volume_is_in_contracts(account: Account):
    """FMZ's Ticker.Volume: base currency for spot, contracts for contracts (one OKX BTC-USDT-SWAP
    contract is 0.01 BTC; one binance USDⓈ-M contract is 1 BTC)."""
    reply = account.call("ticker", {"symbol": "BTC_USDT.swap"})
    raw, vol = reply["raw"], reply["data"]["vol"]
    if account.route == "okx":
        assert vol == float(raw["vol24h"]) and vol == pytest.approx(float(raw["volCcy24h"]) / 0.01)
    else:
        assert vol == float(raw["volume"])
    assert vol > 0


@pytest.fixture
def coin_m_binance(fake_okx):
    """A binance fake that also lists the COIN-M perpetual BTCUSD_PERP, and a gateway on it."""
    import httpx

    from gateway.app import create_app
    from gateway.settings import parse_settings
    from tests.conftest import API_KEY, CANARY_SECRET, Fake, GatewayClient, gateway_config
    from tests.fakes import binance
    from tests.fakes.server import BackgroundServer, FaultInjector

    engine = binance.default_engine(coin_m=True)
    faults = FaultInjector(binance.create_app(engine, {API_KEY: CANARY_SECRET}))
    fake = Fake("binance", engine, faults, BackgroundServer(faults).start())
    gateway = BackgroundServer(create_app(parse_settings(gateway_config(fake, fake_okx)))).start()
    with httpx.Client(timeout=30) as http:
        yield Account("binance", fake, GatewayClient(gateway.url, http), API_KEY, CANARY_SECRET)
    gateway.stop()
    fake.server.stop()


def test_coin_m_account_and_positions_on_binance(coin_m_binance: Account):
    from decimal import Decimal

    account = coin_m_binance
    market_order(account, "BTC_USDT.swap", "buy", "0.1")  # USDⓈ-M, through the gateway
    account.fake.engine.place(account.access_key, "BTC/USD:BTC", "sell", "market", Decimal(5))  # COIN-M
    inverse_margin = 5 * 100 / 59999.9 / 20

    # no SetContractType: both accounts' positions
    assert sorted((p["symbol"], p["type"], p["amount"]) for p in positions(account)) == [
        ("BTC_USD.swap", "short", 5),
        ("BTC_USDT.swap", "long", 0.1),
    ]
    [short] = positions(account, "BTC_USD.swap")  # one inverse contract: the COIN-M account
    assert short["type"] == "short" and short["amount"] == 5 and short["margin_level"] == 20

    assert account.data("io", {"code": 2, "args": ["swap"]}) is True
    usdm = {row["currency"] for row in account.data("accounts")}
    assert "USDT" in usdm

    for contract in ("BTCUSD_PERP", "BTC_USD.swap"):  # the exchange's code, or a whole FMZ symbol
        assert account.data("io", {"code": 2, "args": [contract]}) is True
        reply = account.call("accounts")
        [btc] = reply["data"]  # the COIN-M account holds coins only
        assert btc["currency"] == "BTC" and btc["frozen"] == pytest.approx(inverse_margin, rel=1e-3)
        assert reply["raw"]["positions"][0]["symbol"] == "BTCUSD_PERP"
        assert [p["symbol"] for p in positions(account)] == ["BTC_USD.swap"]  # narrowed to that account
        assert account.data("io", {"code": 3, "args": []})[0]["symbol"] == "BTC_USD.swap"
        ticker = account.call("ticker", {"symbol": "BTC_USD"})
        assert ticker["data"]["symbol"] == "BTC_USD.swap" and ticker["data"]["buy"] == 59999.9
        # vol in contracts (binance's `volume`), not ccxt's baseVolume (BTC)
        assert ticker["data"]["vol"] == float(ticker["raw"]["volume"]) != float(ticker["raw"]["baseVolume"])


NOT_MODIFIED = {
    "binance": ("/fapi/v1/leverage", b'{"code":-1000,"msg":"leverage not modified"}'),
    "okx": ("/api/v5/account/set-leverage", b'{"code":"59000","msg":"leverage not modified","data":[]}'),
}


def test_setting_the_leverage_already_set_answers_true(account: Account):
    """An exchange that refuses a change to the level already set (Bybit 110043) is answered as
    done, as FMZ answers it; the same refusal for another level stays an error."""
    from tests.fakes.server import Fault

    path, body = NOT_MODIFIED[account.route]
    assert account.data("setmarginlevel", {"symbol": "BTC_USDT.swap", "marginLevel": 5}) is True
    account.fake.faults.inject(Fault(status=400, body=body, method="POST"), path)
    assert account.data("setmarginlevel", {"symbol": "BTC_USDT.swap", "marginLevel": 5}) is True
    account.fake.faults.inject(Fault(status=400, body=body, method="POST"), path)
    assert "not modified" in account.error("setmarginlevel", {"symbol": "BTC_USDT.swap", "marginLevel": 6})
