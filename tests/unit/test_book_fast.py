"""The raw-level book path: same book as the Decimal path, bounded cache, crossed detection."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.book import LevelCache, OrderBook
from bot.domain import BookDelta, BookLevel, BookSnapshot, Side
from bot.errors import MalformedMessage
from bot.telemetry import Metrics
from bot.venues.dydx.indexer_ws import IndexerFeed, default_subscriptions
from bot.venues.dydx.parse import FeedParser

D = Decimal
M = "ETH-USD"

# Prices near each other, written in several spellings of the same value ("3400", "3400.0").
price_texts = st.builds(lambda ticks, pad: f"{D(ticks) / 10}" + ("0" if pad and ticks % 10 else ""),
                        st.integers(min_value=33_990, max_value=34_010), st.booleans())
size_texts = st.sampled_from(["0", "0", "0.000", "1", "2.5", "0.001", "10", "7.25"])
raw_levels = st.lists(st.tuples(price_texts, size_texts), max_size=5)
updates = st.lists(st.tuples(raw_levels, raw_levels), max_size=30)


def decimal_levels(levels: list[tuple[str, str]]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(D(p), D(s)) for p, s in levels)


def same_book(a: OrderBook, b: OrderBook) -> bool:
    return (a.levels(Side.BUY, 1000) == b.levels(Side.BUY, 1000)
            and a.levels(Side.SELL, 1000) == b.levels(Side.SELL, 1000)
            and a.best_bid() == b.best_bid() and a.best_ask() == b.best_ask()
            and a.needs_resync == b.needs_resync and a.mid() == b.mid())


@given(raw_levels, raw_levels, updates)
def test_raw_levels_build_the_same_book_as_the_decimal_path(snap_bids, snap_asks, stream):
    fast, slow = OrderBook(M, cache=LevelCache(8)), OrderBook(M)  # tiny cache: resets often
    fast.apply_snapshot_levels(snap_bids, snap_asks, 1)
    slow.apply_snapshot(BookSnapshot(M, decimal_levels(snap_bids), decimal_levels(snap_asks), 1, 1))
    assert same_book(fast, slow)
    for ts, (bids, asks) in enumerate(stream, 2):
        fast.best_bid(), fast.best_ask()  # read the touch between updates: it must not go stale
        ok_fast = fast.apply_levels(bids, asks, ts)
        ok_slow = slow.apply_delta(BookDelta(M, decimal_levels(bids), decimal_levels(asks), ts, ts))
        assert ok_fast is ok_slow
        assert same_book(fast, slow)
        assert fast.ts_last_ns == slow.ts_last_ns == ts


@dataclass
class Update:
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


@given(updates)
def test_a_batch_is_its_updates_in_order_checked_once_at_the_end(stream):
    batched, one_by_one = OrderBook(M), OrderBook(M)
    for book in (batched, one_by_one):
        book.apply_snapshot_levels([], [], 1)
    ok = batched.apply_level_updates([Update(b, a) for b, a in stream], 2)
    for bids, asks in stream:
        one_by_one.apply_levels(bids, asks, 2)
    assert batched.levels(Side.BUY, 1000) == one_by_one.levels(Side.BUY, 1000)
    assert batched.levels(Side.SELL, 1000) == one_by_one.levels(Side.SELL, 1000)
    assert ok is not batched.is_crossed()


def test_a_batch_crossed_only_in_between_is_not_a_fault():
    book = OrderBook(M)
    book.apply_snapshot_levels([("99", "1")], [("101", "1")], 1)
    # A new ask at 99.5 crosses the bid at 99 ... which the next entry of the same frame removes.
    assert book.apply_level_updates([Update([], [("99.5", "1")]), Update([("99", "0")], [])], 2)
    assert book.best_ask() == BookLevel(D("99.5"), D(1)) and book.best_bid() is None


def test_crossed_or_locked_raw_update_returns_false_and_flags_resync():
    book = OrderBook(M)
    assert book.apply_snapshot_levels([("100", "1"), ("99", "2")], [("101", "1")], 1)
    assert not book.apply_levels([("101", "0.5")], [], 2)  # locked
    assert book.is_crossed() and book.needs_resync
    assert book.apply_snapshot_levels([("100", "1")], [("101", "1")], 3) and not book.needs_resync
    assert not book.apply_levels([], [("99.9", "1")], 4)
    assert not book.apply_snapshot_levels([("102", "1")], [("101", "1")], 5)
    assert book.needs_resync


def test_touch_level_is_reused_until_the_touch_changes():
    book = OrderBook(M)
    book.apply_snapshot_levels([("100", "1"), ("99", "2")], [("101", "1"), ("102", "3")], 1)
    bid, ask = book.best_bid(), book.best_ask()
    assert book.apply_levels([("98", "4")], [("103", "1")], 2)  # behind the touch
    assert book.best_bid() is bid and book.best_ask() is ask
    assert book.apply_levels([("100", "1.5")], [], 3)  # the best bid's size
    assert book.best_bid() == BookLevel(D(100), D("1.5")) and book.best_ask() is ask
    assert book.apply_levels([], [("101", "0")], 4)  # the best ask goes
    assert book.best_ask() == BookLevel(D(102), D(3))
    assert book.apply_levels([("100.5", "1")], [], 5)  # a better bid
    assert book.best_bid() == BookLevel(D("100.5"), D(1))


@pytest.mark.parametrize(("bids", "asks", "reason"), [
    ([("abc", "1")], [], "price is not a decimal"),
    ([("NaN", "1")], [], "price is not a positive finite decimal"),
    ([], [("Infinity", "1")], "price is not a positive finite decimal"),
    ([("0", "1")], [], "price is not a positive finite decimal"),
    ([("-5", "1")], [], "price is not a positive finite decimal"),
    ([("100", "-1")], [], "size is not a non-negative finite decimal"),
    ([], [("101", "sNaN")], "size is not a non-negative finite decimal"),
    ([], [("101", "x")], "size is not a decimal"),
])
def test_bad_strings_raise_malformed_and_flag_resync(bids, asks, reason):
    book = OrderBook(M, cache=LevelCache())
    book.apply_snapshot_levels([("99", "1")], [("105", "1")], 1)
    with pytest.raises(MalformedMessage, match=reason):
        book.apply_levels(bids, asks, 2)
    assert book.needs_resync
    with pytest.raises(MalformedMessage, match=reason):
        book.apply_snapshot_levels(bids, asks, 3)
    assert book.needs_resync and book.best_bid() is None


def test_cache_is_bounded_per_kind_and_still_correct_after_a_reset():
    cache = LevelCache(max_size=4)
    book = OrderBook(M, cache=cache)
    book.apply_snapshot_levels([], [], 0)
    for i in range(1, 50):
        assert book.apply_levels([(str(i), f"{i}.5")], [], i)
        assert len(cache) <= 8  # 4 prices + 4 sizes
    assert len(book.levels(Side.BUY, 100)) == 49
    assert book.best_bid() == BookLevel(D(49), D("49.5"))
    assert book.size_at(Side.BUY, D(1)) == D("1.5")
    # A repeated string is one lookup and the very same object.
    assert cache.price("49") is cache.price("49")
    with pytest.raises(ValueError):
        LevelCache(0)


def test_decimal_and_raw_paths_mix_on_one_book():
    book = OrderBook(M)
    book.apply_snapshot(BookSnapshot(M, (BookLevel(D(100), D(1)),), (BookLevel(D(101), D(1)),), 1, 1))
    assert book.apply_levels([("100.00", "0")], [("101.0", "2")], 2)  # same prices, other spelling
    assert book.best_bid() is None and book.best_ask() == BookLevel(D(101), D(2))
    assert book.apply_delta(BookDelta(M, (BookLevel(D("99.5"), D(3)),), (), 3, 3))
    assert book.levels(Side.BUY, 5) == [BookLevel(D("99.5"), D(3))]


# ---- the feed's use of it: one-pass decode and IndexerFeed.handle_frame (no socket needed) ----


def _frame(kind: str, contents: object, message_id: int, channel: str = "v4_orderbook") -> bytes:
    return orjson.dumps({"type": kind, "connection_id": "c", "message_id": message_id, "id": M,
                         "channel": channel, "version": "1.0.0", "contents": contents})


def test_parse_book_takes_book_frames_and_leaves_the_rest_to_parse():
    assert FeedParser.parse_book(_frame("channel_data", {"bids": [["1", "2"]]}, 1)) is not None
    assert FeedParser.parse_book(_frame("channel_batch_data", [{"asks": [["1", "0"]]}], 2)) is not None
    assert FeedParser.parse_book(_frame("channel_data", {"trades": []}, 3, "v4_trades")) is None
    assert FeedParser.parse_book(_frame("unsubscribed", None, 4)) is None
    bad = _frame("channel_data", {"bids": [[65920, "1"]]}, 5)
    assert FeedParser.parse_book(bad) is None
    with pytest.raises(MalformedMessage):
        FeedParser().parse(bad, 1)


def test_feed_handle_frame_keeps_the_book_and_asks_for_resyncs():
    book = OrderBook(M)
    changed: list[tuple[str, int]] = []
    sunk: list[object] = []
    feed = IndexerFeed("ws://unused", default_subscriptions([M]), {M: book}, sunk.append, Metrics(),
                       on_book_changed=lambda market, ts: changed.append((market, ts)))
    snap = {"bids": [{"price": "99", "size": "1"}], "asks": [{"price": "101", "size": "1"}]}
    assert feed.handle_frame(_frame("subscribed", snap, 1), 10) is None
    assert feed.handle_frame(_frame("channel_data", {"bids": [["100", "2"]]}, 2), 11) is None
    assert feed.handle_frame(_frame("channel_batch_data", [{"asks": [["100.5", "1"]]},
                                                           {"asks": [["101", "0"]]}], 3), 12) is None
    assert (book.best_bid(), book.best_ask()) == (BookLevel(D(100), D(2)), BookLevel(D("100.5"), D(1)))
    assert changed == [(M, 10), (M, 11), (M, 12)] and sunk == []
    assert feed.handle_frame(_frame("channel_data", {"asks": [["99", "1"]]}, 4), 13) == ("crossed", M)
    gap = _frame("channel_data", {"asks": [["102", "1"]]}, 9)
    assert feed.handle_frame(gap, 14) == ("sequence_gap", None)
    assert feed.handle_frame(_frame("channel_data", {"asks": [["abc", "1"]]}, 10), 15) == ("malformed", None)


def test_feed_without_callback_still_sends_book_events():
    book = OrderBook(M)
    sunk: list[object] = []
    feed = IndexerFeed("ws://unused", default_subscriptions([M]), {M: book}, sunk.append, Metrics())
    snap = {"bids": [{"price": "99", "size": "1"}], "asks": [{"price": "101", "size": "1"}]}
    assert feed.handle_frame(_frame("subscribed", snap, 1), 10) is None
    assert feed.handle_frame(_frame("channel_batch_data", [{"bids": [["99", "3"]]}, {"asks": [["102", "1"]]}],
                                    2), 11) is None
    assert [type(e) for e in sunk] == [BookSnapshot, BookDelta, BookDelta]
    assert sunk[1] == BookDelta(M, (BookLevel(D(99), D(3)),), (), 11, 11)
    assert book.levels(Side.SELL, 5) == [BookLevel(D(101), D(1)), BookLevel(D(102), D(1))]


@pytest.mark.parametrize("text", [" 1", "1 ", "1_0", "+1", "\u0661", "-0"])
def test_spellings_a_venue_never_sends_are_malformed(text: str) -> None:
    book = OrderBook("BTC-USD")
    with pytest.raises(MalformedMessage):
        book.apply_levels([("100", text)], [], 1)
    assert book.needs_resync
    with pytest.raises(MalformedMessage):
        LevelCache().price(text)
