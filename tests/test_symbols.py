from datetime import UTC, datetime

import pytest

from gateway.errors import BadRequest
from gateway.symbols import FmzSymbol, MarketIndex, SymbolRange, fmz_symbol_of, parse_symbol

NOW = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp() * 1000)


def ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, 8, tzinfo=UTC).timestamp() * 1000)


def market(symbol, type_="spot", *, id_=None, expiry=None, inverse=False, info=None):
    base_quote, _, settle_part = symbol.partition(":")
    base, quote = base_quote.split("/")
    settle = settle_part.split("-")[0] if settle_part else None
    return {
        "symbol": symbol,
        "id": id_ or symbol.replace("/", "").replace(":", "_"),
        "base": base,
        "quote": quote,
        "settle": settle,
        "type": type_,
        "spot": type_ == "spot",
        "contract": type_ != "spot",
        "linear": None if type_ == "spot" else not inverse,
        "inverse": None if type_ == "spot" else inverse,
        "expiry": expiry,
        "info": info or {},
    }


MARKETS = {
    m["symbol"]: m
    for m in [
        market("BTC/USDT"),
        market("ETH/USDT"),
        market("BTC/USDT:USDT", "swap", id_="BTC-USDT-SWAP"),
        market("BTC/USD:BTC", "swap", id_="BTC-USD-SWAP", inverse=True),
        market("BTC/USDC:USDC", "swap", id_="BTC-USDC-SWAP"),
        market("BTC/USD:BTC-261204", "future", id_="BTC-USD-261204", expiry=ms(2026, 12, 4), inverse=True),
        market("BTC/USD:BTC-261211", "future", id_="BTC-USD-261211", expiry=ms(2026, 12, 11), inverse=True),
        market("BTC/USD:BTC-261225", "future", id_="BTC-USD-261225", expiry=ms(2026, 12, 25), inverse=True),
        market("BTC/USD:BTC-270129", "future", id_="BTC-USD-270129", expiry=ms(2027, 1, 29), inverse=True),
        market("BTC/USD:BTC-270326", "future", id_="BTC-USD-270326", expiry=ms(2027, 3, 26), inverse=True),
    ]
}
INDEX = MarketIndex(MARKETS, "testex")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC_USDT", FmzSymbol("BTC", "USDT")),
        ("eth_usdt", FmzSymbol("ETH", "USDT")),
        ("btc_usdt.SWAP", FmzSymbol("BTC", "USDT", "swap")),
        ("BTC_USD.Quarter", FmzSymbol("BTC", "USD", "quarter")),
        ("BTC_USDT.BTC-USDT-250328", FmzSymbol("BTC", "USDT", "BTC-USDT-250328")),
        ("USDT.swap", SymbolRange("USDT", "swap")),
        ("usd.futures", SymbolRange("USD", "future")),
    ],
)
def test_parse_symbol_accepts_every_documented_form(text, expected):
    assert parse_symbol(text) == expected


@pytest.mark.parametrize("text", ["USDT", "BTC-USDT", "BTC/USDT", "", "BTC_USDT.", "_USDT", "BTC__USDT", None, 5])
def test_parse_symbol_rejects_other_forms_naming_the_expected_one(text):
    with pytest.raises(BadRequest, match="expected BASE_QUOTE"):
        parse_symbol(text)


def test_default_contract_applies_only_without_a_suffix():
    assert parse_symbol("BTC_USDT", "swap") == FmzSymbol("BTC", "USDT", "swap")
    assert parse_symbol("BTC_USDT.quarter", "swap").contract == "quarter"
    assert parse_symbol("BTC_USDT.spot", "swap").contract is None


def test_spot_and_perpetual_resolution():
    assert INDEX.resolve(FmzSymbol("BTC", "USDT"))["symbol"] == "BTC/USDT"
    assert INDEX.resolve(FmzSymbol("BTC", "USDT", "swap"))["symbol"] == "BTC/USDT:USDT"
    assert INDEX.resolve(FmzSymbol("BTC", "USD", "swap"))["symbol"] == "BTC/USD:BTC"
    assert INDEX.resolve(FmzSymbol("BTC", "USDC", "swap"))["symbol"] == "BTC/USDC:USDC"


def test_unknown_pair_names_the_exchange():
    with pytest.raises(BadRequest, match="testex has no spot market DOGE_USDT"):
        INDEX.resolve(FmzSymbol("DOGE", "USDT"))
    with pytest.raises(BadRequest, match="testex has no perpetual swap ETH_USD"):
        INDEX.resolve(FmzSymbol("ETH", "USD", "swap"))


def test_relative_delivery_names_follow_expiry_order():
    def resolve(name):
        return INDEX.resolve(FmzSymbol("BTC", "USD", name), NOW)["id"]

    assert resolve("this_week") == "BTC-USD-261204"
    assert resolve("next_week") == "BTC-USD-261211"
    assert resolve("month") == "BTC-USD-261225"
    assert resolve("next_month") == "BTC-USD-270129"
    assert resolve("quarter") == "BTC-USD-261225"
    assert resolve("next_quarter") == "BTC-USD-270326"


def test_exchange_hints_win_over_expiry_order():
    hinted = {
        m["symbol"]: m
        for m in [
            market(
                "BTC/USDT:USDT-261225",
                "future",
                id_="BTCUSDT_261225",
                expiry=ms(2026, 12, 25),
                info={"contractType": "CURRENT_QUARTER"},
            ),
            market(
                "BTC/USDT:USDT-270326",
                "future",
                id_="BTCUSDT_270326",
                expiry=ms(2027, 3, 26),
                info={"contractType": "NEXT_QUARTER"},
            ),
        ]
    }
    index = MarketIndex(hinted, "binance")
    assert index.resolve(FmzSymbol("BTC", "USDT", "quarter"), NOW)["id"] == "BTCUSDT_261225"
    assert index.resolve(FmzSymbol("BTC", "USDT", "next_quarter"), NOW)["id"] == "BTCUSDT_270326"
    with pytest.raises(BadRequest, match="no this_week delivery contract"):
        index.resolve(FmzSymbol("BTC", "USDT", "this_week"), NOW)


def test_exchange_code_selects_that_contract_case_insensitively():
    assert INDEX.resolve(FmzSymbol("BTC", "USD", "btc-usd-270129"))["symbol"] == "BTC/USD:BTC-270129"
    with pytest.raises(BadRequest, match="no contract"):
        INDEX.resolve(FmzSymbol("ETH", "USD", "BTC-USD-270129"))


def test_ranges_select_linear_or_inverse_groups():
    assert {m["symbol"] for m in INDEX.select(SymbolRange("USDT", "swap"))} == {"BTC/USDT:USDT"}
    assert {m["symbol"] for m in INDEX.select(SymbolRange("USD", "swap"))} == {"BTC/USD:BTC"}
    assert len(INDEX.select(SymbolRange("USD", "future"))) == 5
    assert INDEX.select(SymbolRange("USDT", "future")) == []


def test_fmz_symbols_round_trip_through_resolve():
    for m in MARKETS.values():
        text = fmz_symbol_of(m)
        assert INDEX.resolve(parse_symbol(text), NOW) is m, text


def test_contract_type_names_the_relative_slot():
    assert INDEX.contract_type(MARKETS["BTC/USD:BTC"]) == "swap"
    assert INDEX.contract_type(MARKETS["BTC/USD:BTC-261204"], NOW) == "this_week"
    assert INDEX.contract_type(MARKETS["BTC/USD:BTC-270326"], NOW) == "next_quarter"
    assert INDEX.contract_type(MARKETS["BTC/USDT"]) == "spot"
