"""Tapes answer only what is proven to join a REST answer without a hole."""

from __future__ import annotations

from gateway.tapes import JOINED, MISMATCH, NO_OVERLAP, CandleTape, TradeTape


def trade(n: int, **extra) -> dict:
    return {"id": str(n), "timestamp": 1_000 * n, "price": 100.0 + n, "amount": 1.0, "side": "buy", **extra}


def candle(minute: int, close: float = 1.0) -> list:
    return [minute * 60_000, 1.0, 2.0, 0.5, close, 10.0]


def test_a_trade_tape_is_unusable_until_a_rest_answer_reaches_its_oldest_trade():
    tape = TradeTape()
    tape.extend([trade(10), trade(11)])
    assert tape.newest(1) is None  # not seeded: nothing before the subscription is known
    assert tape.offer([trade(n) for n in range(5, 10)]) == NO_OVERLAP  # ends at 9: trade 10 not in it, a hole possible
    assert tape.newest(1) is None
    assert tape.offer([trade(n) for n in range(5, 11)]) == JOINED
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


def test_trades_without_ids_never_join():
    """Two real trades may look alike without ids: the tape could not tell REST's count from its own."""
    tape = TradeTape()
    tape.extend([trade(10, id=None)])
    assert tape.offer([trade(9, id=None), trade(10, id=None)]) == MISMATCH
    assert tape.newest(1) is None


def test_an_aggregating_stream_disagrees_with_rest():
    """OKX's `trades` channel sends one message per taker order and price, with the last fill's id
    and the fills' summed amount; REST lists every fill."""
    tape = TradeTape()
    tape.extend([trade(12, amount=3.0), trade(15, amount=2.0)])  # 10..12 and 13..15 aggregated
    rest = [trade(n) for n in range(8, 16)]
    assert tape.offer(rest) == MISMATCH
    tape = TradeTape()
    tape.extend([trade(12), trade(15)])  # same amounts, but 13 and 14 never streamed
    assert tape.offer(rest) == MISMATCH


def test_a_rest_answer_newer_than_the_tape_start_still_joins():
    """A busy tape whose oldest trade fell out of REST's window: REST agrees with the overlap."""
    tape = TradeTape()
    tape.extend([trade(n) for n in range(10, 20)])
    assert tape.offer([trade(n) for n in range(15, 22)]) == JOINED  # 20, 21: not streamed yet
    assert [t["id"] for t in tape.newest(10)] == [str(n) for n in range(10, 20)]


def test_a_reset_trade_tape_needs_a_new_seed():
    tape = TradeTape()
    tape.extend([trade(10)])
    tape.offer([trade(9), trade(10)])
    tape.reset()
    tape.extend([trade(14)])
    assert tape.newest(1) is None
    assert tape.offer([trade(9), trade(10)]) == NO_OVERLAP  # trades 11..13 may have passed during the reconnect


def test_a_candle_tape_joins_rest_that_reaches_the_first_streamed_candle():
    tape = CandleTape()
    tape.extend([candle(10, close=5.0)])
    assert tape.newest(1) is None
    assert tape.offer([candle(m) for m in range(5, 10)]) == NO_OVERLAP  # ends before minute 10
    assert tape.offer([candle(m) for m in range(5, 11)]) == JOINED
    rows = tape.newest(6)
    assert [row[0] // 60_000 for row in rows] == [5, 6, 7, 8, 9, 10]
    assert rows[-1][4] == 5.0  # the streamed state of the current candle, not REST's


def test_a_candle_missing_from_the_stream_is_a_mismatch():
    tape = CandleTape()
    tape.extend([candle(10), candle(12)])  # minute 11 never streamed
    assert tape.offer([candle(m) for m in range(5, 13)]) == MISMATCH
    tape = CandleTape()
    tape.extend([candle(10), candle(11), candle(12)])
    assert tape.offer([candle(m) for m in range(5, 14)]) == JOINED  # 13: newer than the stream, fine


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


def test_an_id_less_stream_never_joins_even_without_overlap():
    tape = TradeTape()
    tape.extend([trade(10, id=None)])
    assert tape.offer([trade(n) for n in range(5, 9)]) == MISMATCH


def test_the_first_streamed_candle_moves_on_when_it_falls_out_of_the_tape():
    """A REST answer longer than the tape must not count the candles the tape let go as missing."""
    tape = CandleTape(limit=3)
    tape.extend([candle(10)])
    assert tape.offer([candle(m) for m in range(5, 11)]) == JOINED
    tape.extend([candle(11), candle(12), candle(13)])
    assert tape.first_streamed == 11 * 60_000
    assert tape.offer([candle(m) for m in range(5, 14)]) == JOINED
    assert [row[0] // 60_000 for row in tape.newest(3)] == [11, 12, 13]
