from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.book import OrderBook
from bot.domain import BookDelta, BookLevel, BookSnapshot, Side

D = Decimal
M = "BTC-USD"


def lv(price: str, size: str) -> BookLevel:
    return BookLevel(D(price), D(size))


def snap(bids, asks, ts: int = 1) -> BookSnapshot:
    return BookSnapshot(M, tuple(lv(*b) for b in bids), tuple(lv(*a) for a in asks), ts, ts)


def delta(bids=(), asks=(), ts: int = 2) -> BookDelta:
    return BookDelta(M, tuple(lv(*b) for b in bids), tuple(lv(*a) for a in asks), ts, ts)


@pytest.fixture
def book() -> OrderBook:
    b = OrderBook(M)
    b.apply_snapshot(snap(
        bids=[("100", "1"), ("99", "2"), ("98", "3")],
        asks=[("101", "1.5"), ("102", "2.5"), ("103", "4")],
    ))
    return b


def test_new_book_is_empty_and_needs_snapshot():
    b = OrderBook(M)
    assert b.needs_resync
    assert b.best_bid() is None and b.best_ask() is None
    assert b.mid() is None and b.spread_bps() is None
    assert b.depth_within_bps(D(100)) == 0


def test_snapshot_sets_touch_mid_spread(book):
    assert not book.needs_resync
    assert book.best_bid() == lv("100", "1")
    assert book.best_ask() == lv("101", "1.5")
    assert book.mid() == D("100.5")
    assert book.spread_bps() == D(1) / D("100.5") * 10_000
    assert book.ts_last_ns == 1


def test_snapshot_replaces_previous_state(book):
    book.apply_snapshot(snap(bids=[("90", "1")], asks=[("91", "1")], ts=5))
    assert book.levels(Side.BUY, 10) == [lv("90", "1")]
    assert book.levels(Side.SELL, 10) == [lv("91", "1")]


def test_snapshot_for_other_market_is_rejected(book):
    with pytest.raises(ValueError):
        book.apply_snapshot(BookSnapshot("ETH-USD", (), (), 1, 1))


def test_delta_sets_absolute_sizes_and_adds_levels(book):
    assert book.apply_delta(delta(bids=[("100", "7"), ("99.5", "1")], asks=[("104", "1")]))
    assert book.levels(Side.BUY, 2) == [lv("100", "7"), lv("99.5", "1")]
    assert book.levels(Side.SELL, 5)[-1] == lv("104", "1")
    assert book.ts_last_ns == 2


def test_delta_zero_deletes_level_and_missing_delete_is_fine(book):
    assert book.apply_delta(delta(bids=[("100", "0")], asks=[("101", "0.000"), ("150", "0")]))
    assert book.best_bid() == lv("99", "2")
    assert book.best_ask() == lv("102", "2.5")


def test_equal_decimals_with_other_exponent_hit_same_level(book):
    assert book.apply_delta(delta(bids=[("100.00", "5")]))
    assert book.levels(Side.BUY, 10)[0].size == D(5)
    assert book.apply_delta(delta(bids=[("100.0", "0")]))
    assert len(book.levels(Side.BUY, 10)) == 2


def test_crossed_delta_returns_false_and_flags_resync(book):
    assert not book.apply_delta(delta(bids=[("101", "1")]))
    assert book.is_crossed()
    assert book.needs_resync
    book.apply_snapshot(snap(bids=[("100", "1")], asks=[("101", "1")]))
    assert not book.needs_resync


def test_locked_book_counts_as_crossed(book):
    assert not book.apply_delta(delta(asks=[("100", "1")]))


def test_negative_size_flags_resync(book):
    assert not book.apply_delta(delta(bids=[("99", "-1")]))
    assert book.needs_resync
    assert book.size_at(Side.BUY, D(99)) == 0


def test_crossed_snapshot_needs_resync():
    b = OrderBook(M)
    b.apply_snapshot(snap(bids=[("101", "1")], asks=[("100", "1")]))
    assert b.needs_resync


def test_clear_empties_and_requires_snapshot(book):
    book.clear()
    assert book.best_bid() is None and book.needs_resync


def test_levels_best_first_and_bounds(book):
    assert book.levels(Side.BUY, 2) == [lv("100", "1"), lv("99", "2")]
    assert book.levels(Side.SELL, 2) == [lv("101", "1.5"), lv("102", "2.5")]
    assert book.levels(Side.BUY, 0) == []
    assert len(book.levels(Side.SELL, 99)) == 3


def test_depth_within_bps(book):
    # mid 100.5; 100 bps band = 1.005 -> bids >= 99.495, asks <= 101.505
    assert book.depth_within_bps(D(100), Side.BUY) == D(1)
    assert book.depth_within_bps(D(100), Side.SELL) == D("1.5")
    assert book.depth_within_bps(D(100)) == D("2.5")
    # 250 bps = 2.5125 -> bids >= 97.9875, asks <= 103.0125
    assert book.depth_within_bps(D(250)) == D(6) + D(8)
    assert book.depth_within_bps(D(0)) == 0


def test_walk_buy_takes_asks_up_to_size(book):
    assert book.walk(Side.BUY, D(3)) == [lv("101", "1.5"), lv("102", "1.5")]


def test_walk_respects_limit_and_does_not_mutate(book):
    assert book.walk(Side.SELL, D(10), D("99")) == [lv("100", "1"), lv("99", "2")]
    assert book.walk(Side.BUY, D(1), D("100.99")) == []
    assert book.levels(Side.BUY, 1) == [lv("100", "1")]


def test_walk_skips_consumed_size(book):
    got = book.walk(Side.BUY, D(2), consumed={D(101): D("1.5"), D(102): D(1)})
    assert got == [lv("102", "1.5"), lv("103", "0.5")]


def test_walk_whole_side_when_size_exceeds_depth(book):
    got = book.walk(Side.SELL, D(100))
    assert sum(level.size for level in got) == D(6)


prices = st.integers(min_value=1, max_value=40).map(D)
sizes = st.sampled_from(["0", "0", "1", "2.5", "0.001"]).map(D)
side_levels = st.lists(st.tuples(prices, sizes), max_size=6)


@given(st.lists(st.tuples(side_levels, side_levels), max_size=40))
def test_book_matches_naive_reference(deltas):
    book = OrderBook(M)
    book.apply_snapshot(BookSnapshot(M, (), (), 0, 0))
    ref_bids: dict[Decimal, Decimal] = {}
    ref_asks: dict[Decimal, Decimal] = {}
    for ts, (bids, asks) in enumerate(deltas):
        for ref, levels in ((ref_bids, bids), (ref_asks, asks)):
            for price, size in levels:
                if size:
                    ref[price] = size
                else:
                    ref.pop(price, None)
        ok = book.apply_delta(BookDelta(
            M, tuple(BookLevel(p, s) for p, s in bids), tuple(BookLevel(p, s) for p, s in asks),
            ts, ts))
        best_bid = max(ref_bids, default=None)
        best_ask = min(ref_asks, default=None)
        assert (book.best_bid().price if book.best_bid() else None) == best_bid
        assert (book.best_ask().price if book.best_ask() else None) == best_ask
        crossed = best_bid is not None and best_ask is not None and best_bid >= best_ask
        assert ok is not crossed
        assert book.levels(Side.BUY, 100) == [
            BookLevel(p, ref_bids[p]) for p in sorted(ref_bids, reverse=True)]
        assert book.levels(Side.SELL, 100) == [BookLevel(p, ref_asks[p]) for p in sorted(ref_asks)]


nonzero_levels = st.lists(st.tuples(prices, sizes.filter(bool)), min_size=1, max_size=6)


@given(nonzero_levels, nonzero_levels)
def test_uncrossed_snapshot_stays_uncrossed(bids, asks):
    bid_map = dict(bids)
    ask_map = {p + 40: s for p, s in asks}  # asks all above bids
    book = OrderBook(M)
    book.apply_snapshot(BookSnapshot(
        M, tuple(BookLevel(p, s) for p, s in bid_map.items()),
        tuple(BookLevel(p, s) for p, s in ask_map.items()), 0, 0))
    assert not book.is_crossed() and not book.needs_resync
    assert book.depth_within_bps(D(10**6)) == sum(bid_map.values()) + sum(ask_map.values())


ladder_sizes = st.lists(sizes.filter(bool), min_size=1, max_size=8)


# A synthetic book from price lists (backtests) is the book the snapshot of those levels makes.
@given(ladder_sizes, st.integers(1, 5), st.integers(-3, 3))
def test_a_ladder_is_the_book_its_snapshot_gives(level_sizes, spacing, gap):
    top = D(1000)
    bids = [top - spacing * i for i in range(len(level_sizes))]
    asks = [top + gap + spacing * i for i in range(len(level_sizes))]  # gap <= 0: crossed or locked
    ladder, reference = OrderBook(M), OrderBook(M)
    ladder.apply_snapshot(snap([("1", "1")], [("2000", "1")]))  # replaced entirely
    ladder.apply_ladder(bids, asks, level_sizes, 7)
    reference.apply_snapshot(BookSnapshot(M, tuple(map(BookLevel, bids, level_sizes)),
                                          tuple(map(BookLevel, asks, level_sizes)), 7, 7))
    for side in Side:
        assert ladder.levels(side, 100) == reference.levels(side, 100)
    assert (ladder.best_bid(), ladder.best_ask(), ladder.mid()) == \
        (reference.best_bid(), reference.best_ask(), reference.mid())
    assert ladder.needs_resync is reference.needs_resync is (gap <= 0)
    assert ladder.ts_last_ns == reference.ts_last_ns == 7
    assert ladder.depth_within_bps(D(50)) == reference.depth_within_bps(D(50))
