"""Tapes answer only what is proven to join a REST answer without a hole."""

from __future__ import annotations

from gateway.tapes import CandleTape, TradeTape


def trade(n: int, **extra) -> dict:
    return {"id": str(n), "timestamp": 1_000 * n, "price": 100.0 + n, "amount": 1.0, "side": "buy", **extra}


def candle(minute: int, close: float = 1.0) -> list:
    return [minute * 60_000, 1.0, 2.0, 0.5, close, 10.0]


def test_a_trade_tape_is_unusable_until_a_rest_answer_reaches_its_oldest_trade():
    tape = TradeTape()
    tape.extend([trade(10), trade(11)])
    assert tape.newest(1) is None  # not seeded: nothing before the subscription is known
    assert tape.offer([trade(n) for n in range(5, 10)]) is False  # ends at 9: trade 10 not in it, a hole possible
    assert tape.newest(1) is None
    assert tape.offer([trade(n) for n in range(5, 11)]) is True
    assert [t["id"] for t in tape.newest(6)] == ["6", "7", "8", "9", "10", "11"]
    assert [t["id"] for t in tape.newest(7)] == [str(n) for n in range(5, 12)]
    assert tape.newest(8) is None  # more than it holds: REST answers


def test_a_trade_tape_drops_repeats_and_rest_trades_newer_than_the_stream():
    tape = TradeTape()
    tape.extend([trade(10)])
    tape.offer([trade(n) for n in range(8, 13)])  # 11, 12 not streamed yet: they come with the stream
    assert [t["id"] for t in tape.newest(3)] == ["8", "9", "10"]
    tape.extend([trade(10), trade(11), trade(12)])
    assert [t["id"] for t in tape.newest(5)] == ["8", "9", "10", "11", "12"]


def test_a_seeded_trade_tape_grows_back_from_a_longer_rest_answer():
    tape = TradeTape()
    tape.extend([trade(20), trade(21)])
    tape.offer([trade(19), trade(20)])
    assert len(tape) == 3
    tape.offer([trade(n) for n in range(15, 22)])
    assert [t["id"] for t in tape.newest(7)] == [str(n) for n in range(15, 22)]
    tape.offer([trade(n) for n in range(30, 32)])  # unrelated: changes nothing, stays seeded
    assert tape.seeded and len(tape) == 7


def test_a_trade_tape_keeps_its_limit_from_the_newest_side():
    tape = TradeTape(limit=4)
    tape.extend([trade(n) for n in range(10, 13)])
    tape.offer([trade(n) for n in range(5, 11)])
    assert [t["id"] for t in tape.newest(4)] == ["9", "10", "11", "12"]
    tape.extend([trade(13)])
    assert [t["id"] for t in tape.newest(4)] == ["10", "11", "12", "13"]
    tape.extend([trade(9)])  # fell out of the tape: no longer a repeat, appended as the stream sent it
    assert tape.newest(1)[0]["id"] == "9"


def test_trades_without_ids_join_on_what_both_sides_report():
    tape = TradeTape()
    tape.extend([trade(10, id=None)])
    assert tape.offer([trade(9, id=None), trade(10, id=None)]) is True
    assert [t["timestamp"] for t in tape.newest(2)] == [9_000, 10_000]


def test_a_reset_trade_tape_needs_a_new_seed():
    tape = TradeTape()
    tape.extend([trade(10)])
    tape.offer([trade(9), trade(10)])
    tape.reset()
    tape.extend([trade(14)])
    assert tape.newest(1) is None
    assert tape.offer([trade(9), trade(10)]) is False  # trades 11..13 may have passed during the reconnect


def test_a_candle_tape_joins_rest_that_reaches_the_first_streamed_candle():
    tape = CandleTape()
    tape.extend([candle(10, close=5.0)])
    assert tape.newest(1) is None
    assert tape.offer([candle(m) for m in range(5, 10)]) is False  # ends before minute 10
    assert tape.offer([candle(m) for m in range(5, 11)]) is True
    rows = tape.newest(6)
    assert [row[0] // 60_000 for row in rows] == [5, 6, 7, 8, 9, 10]
    assert rows[-1][4] == 5.0  # the streamed state of the current candle, not REST's


def test_a_candle_tape_updates_the_current_candle_and_appends_new_ones():
    tape = CandleTape(limit=3)
    tape.extend([candle(10)])
    tape.offer([candle(m) for m in range(8, 11)])
    tape.extend([candle(10, close=3.0), candle(11, close=4.0)])
    rows = tape.newest(3)
    assert [row[0] // 60_000 for row in rows] == [9, 10, 11]
    assert [row[4] for row in rows] == [1.0, 3.0, 4.0]
    assert tape.newest(4) is None
    tape.extend([candle(7)])  # late and out of order: kept in order, the oldest beyond the limit dropped
    assert [row[0] // 60_000 for row in tape.newest(3)] == [9, 10, 11]


def test_newest_candles_are_copies():
    tape = CandleTape()
    tape.extend([candle(1)])
    tape.offer([candle(0), candle(1)])
    tape.newest(1)[0][4] = 99.0
    assert tape.newest(1)[0][4] == 1.0
