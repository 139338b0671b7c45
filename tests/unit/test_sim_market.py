import hashlib
import statistics
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.book import OrderBook
from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.domain import (
    BlockHeight,
    BookDelta,
    BookSnapshot,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)
from bot.sim.market import SimMarket, SimMarketParams

D = Decimal
START_NS = 1_700_000_000 * NS_PER_SEC
PARAMS = SimMarketParams(
    ticker="ETH-USD", initial_price=D("3000"), tick_size=D("0.1"), step_size=D("0.001"),
    min_order_size=D("0.001"), base_level_size=D("5"), mean_trade_size=D("0.5"),
    taker_trades_per_sec=5.0,
)


def times(n: int, start_ns: int = START_NS) -> list[int]:
    out, t = [], start_ns
    for k in range(n):
        out.append(t)
        t += 50_000_000 + (k % 7) * 13_000_000
    return out


def run(seed: int, steps: list[int], params: SimMarketParams = PARAMS) -> list[MarketEvent]:
    market = SimMarket(params, seed, steps[0])
    events: list[MarketEvent] = []
    for now in steps:
        events.extend(market.step(now))
    return events


def digest(events: list[MarketEvent]) -> str:
    return hashlib.sha256(repr(events).encode()).hexdigest()


def test_same_seed_same_events():
    steps = times(3000)
    assert digest(run(42, steps)) == digest(run(42, steps))
    assert digest(run(42, steps)) != digest(run(43, steps))


def test_same_seed_same_events_with_long_gaps():
    steps = [START_NS, START_NS + 1, START_NS + 3 * NS_PER_HOUR + 17, START_NS + 4 * NS_PER_HOUR]
    assert digest(run(5, steps)) == digest(run(5, steps))


def test_spec_matches_params():
    market = SimMarket(PARAMS, 1, START_NS)
    assert market.spec() == MarketSpec("ETH-USD", D("0.1"), D("0.001"), D("0.001"))
    assert market.oracle_price() == D("3000.0")


def test_time_must_not_go_backwards():
    market = SimMarket(PARAMS, 1, START_NS)
    market.step(START_NS + NS_PER_SEC)
    market.step(START_NS + NS_PER_SEC)  # zero gap is fine
    with pytest.raises(ValueError):
        market.step(START_NS)


def on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def check_stream(events: list[MarketEvent], params: SimMarketParams) -> OrderBook:
    """Replay events into an OrderBook and assert everything a consumer relies on."""
    assert isinstance(events[0], BookSnapshot)
    book = OrderBook(params.ticker)
    heights: list[int] = []
    oracle_ts: list[int] = []
    last_ts = 0
    for event in events:
        assert event.ts_event == event.ts_recv >= last_ts
        last_ts = event.ts_event
        if isinstance(event, BookSnapshot):
            book.apply_snapshot(event)
            assert not book.needs_resync
        if isinstance(event, BookSnapshot | BookDelta):
            assert event.market == params.ticker
            for lvl in (*event.bids, *event.asks):
                assert on_grid(lvl.price, params.tick_size) and lvl.price > 0
                assert on_grid(lvl.size, params.step_size) and lvl.size >= 0
            assert [lvl.price for lvl in event.bids] == sorted(
                (lvl.price for lvl in event.bids), reverse=True)
            assert [lvl.price for lvl in event.asks] == sorted(lvl.price for lvl in event.asks)
        if isinstance(event, BookDelta):
            assert event.bids or event.asks
            assert book.apply_delta(event), "sim produced a crossed book"
        elif isinstance(event, Trade):
            assert on_grid(event.price, params.tick_size)
            assert on_grid(event.size, params.step_size) and event.size >= params.min_order_size
            touch = book.best_ask() if event.aggressor is Side.BUY else book.best_bid()
            assert touch is not None and touch.price == event.price
            assert event.size <= touch.size
        elif isinstance(event, OracleUpdate):
            mid = book.mid()
            assert mid is not None and abs(event.oracle_price - mid) / mid < D("0.02")
            assert on_grid(event.oracle_price, params.tick_size)
            assert abs(event.next_funding_rate) <= D(str(params.funding_clamp_1h))
            oracle_ts.append(event.ts_event)
        elif isinstance(event, BlockHeight):
            heights.append(event.height)
    assert heights == sorted(set(heights)) and heights
    assert all(b - a >= NS_PER_SEC for a, b in pairwise(oracle_ts))
    assert not book.is_crossed()
    # takers may have emptied touch levels in the last step; the next step refills them
    assert 1 <= len(book.levels(Side.BUY, 1000)) <= params.depth_levels
    assert 1 <= len(book.levels(Side.SELL, 1000)) <= params.depth_levels
    return book


def test_events_are_well_formed():
    events = run(7, times(4000))
    check_stream(events, PARAMS)
    kinds = {type(e) for e in events}
    assert kinds == {BookSnapshot, BookDelta, Trade, OracleUpdate, BlockHeight}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 5 * NS_PER_SEC), min_size=1, max_size=60))
def test_any_gaps_stay_well_formed(seed, gaps):
    steps = [START_NS]
    for gap in gaps:
        steps.append(steps[-1] + gap)
    volatile = replace(PARAMS, high_vol_enter_per_sec=0.2, high_vol_exit_per_sec=0.2,
                       jump_per_sec=0.2, jump_size=0.002)
    check_stream(run(seed, steps, volatile), volatile)


def test_block_heights_follow_interval():
    market = SimMarket(PARAMS, 1, START_NS)
    seen = []
    for k in range(0, 100):
        seen += [e.height for e in market.step(START_NS + k * 100_000_000)
                 if isinstance(e, BlockHeight)]
    # 9.9 s at 0.65 s a block: heights 1_000_000 .. 1_000_015, each once
    assert seen == list(range(1_000_000, 1_000_016))


def test_oracle_at_most_once_per_second():
    market = SimMarket(PARAMS, 3, START_NS)
    updates = [e for k in range(0, 41) for e in market.step(START_NS + k * 100_000_000)
               if isinstance(e, OracleUpdate)]
    assert [u.ts_event for u in updates] == [START_NS + k * NS_PER_SEC for k in range(5)]
    assert market.oracle_price() == updates[-1].oracle_price
    assert updates[-1].next_funding_rate == market.funding_rate_1h()


def test_funding_bounded_and_persistent():
    steps = [START_NS + k * 60 * NS_PER_SEC for k in range(24 * 60 * 3)]  # 3 days, 1 min steps
    positive = replace(PARAMS, funding_mean_1h=0.00005, funding_vol_1h=0.00001,
                       taker_trades_per_sec=0.0, level_updates_per_sec=0.0)
    market = SimMarket(positive, 11, START_NS)
    rates, settled = [], set()
    for now in steps:
        market.step(now)
        rates.append(market.funding_rate_1h())
        if market.last_funding_settlement() is not None:
            settled.add(market.last_funding_settlement())
    clamp = D(str(positive.funding_clamp_1h))
    assert all(abs(r) <= clamp for r in rates)
    assert sum(r > 0 for r in rates) > 0.9 * len(rates)  # persistent sign
    assert len(settled) >= 70
    assert all(ts % NS_PER_HOUR == 0 for ts, _ in settled)
    assert all(r == r.quantize(D("1E-9")) for r in rates)


def test_funding_clamped():
    wild = replace(PARAMS, funding_mean_1h=0.5, funding_vol_1h=0.1, funding_clamp_1h=0.0025)
    market = SimMarket(wild, 2, START_NS)
    for k in range(500):
        market.step(START_NS + k * 30 * NS_PER_SEC)
        assert abs(market.funding_rate_1h()) <= D("0.0025")


def mean_depth(market: SimMarket, steps: list[int]) -> float:
    book = OrderBook(market.params.ticker)
    depths = []
    for now in steps:
        for e in market.step(now):
            if isinstance(e, BookSnapshot):
                book.apply_snapshot(e)
            elif isinstance(e, BookDelta):
                book.apply_delta(e)
        depths.append(float(book.depth_within_bps(D(100))))
    return statistics.fmean(depths)


def test_high_vol_regime_thins_depth():
    fixed = replace(PARAMS, high_vol_enter_per_sec=0.0, high_vol_exit_per_sec=0.0)
    steps = times(2000)
    calm = SimMarket(fixed, 9, steps[0])
    stormy = SimMarket(fixed, 9, steps[0])
    stormy.set_regime(high_vol=True)
    assert stormy.is_high_vol() and not calm.is_high_vol()
    assert mean_depth(stormy, steps) < 0.5 * mean_depth(calm, steps)


def test_regime_switch_thins_live_book():
    fixed = replace(PARAMS, high_vol_enter_per_sec=0.0, high_vol_exit_per_sec=0.0)
    market = SimMarket(fixed, 4, START_NS)
    before = mean_depth(market, times(200))
    market.set_regime(high_vol=True)
    after = mean_depth(market, times(200, START_NS + 60 * NS_PER_SEC))
    assert after < 0.5 * before


def test_high_vol_moves_price_more():
    fixed = replace(PARAMS, high_vol_enter_per_sec=0.0, high_vol_exit_per_sec=0.0,
                    jump_per_sec=0.0, oracle_noise_bps=0.0)
    steps = [START_NS + k * NS_PER_SEC for k in range(3000)]

    def oracle_returns_stdev(high: bool) -> float:
        market = SimMarket(fixed, 21, START_NS)
        market.set_regime(high)
        prices = [float(e.oracle_price) for now in steps for e in market.step(now)
                  if isinstance(e, OracleUpdate)]
        return statistics.pstdev(b / a - 1 for a, b in pairwise(prices))

    assert oracle_returns_stdev(True) > 2 * oracle_returns_stdev(False)


# ---- the fast paths keep the contract --------------------------------------------------------


def test_event_drafts_build_the_domain_types():
    from bot.domain import BookLevel
    from bot.sim import event_drafts as drafts

    level, plain = drafts.book_level(D("3000.1"), D("0.5")), BookLevel(D("3000.1"), D("0.5"))
    assert type(level) is BookLevel and level == plain
    assert repr(level) == repr(plain) and hash(level) == hash(plain)
    cases = [
        (drafts.trade("ETH-USD", D(1), D(2), Side.SELL, 5), Trade("ETH-USD", D(1), D(2), Side.SELL, 5, 5)),
        (drafts.book_delta("ETH-USD", (level,), (), 5), BookDelta("ETH-USD", (plain,), (), 5, 5)),
        (drafts.book_snapshot("ETH-USD", (level,), (level,), 6),
         BookSnapshot("ETH-USD", (plain,), (plain,), 6, 6)),
        (drafts.oracle_update("ETH-USD", D(3), D("0.00001"), 5),
         OracleUpdate("ETH-USD", D(3), D("0.00001"), 5, 5)),
        (drafts.block_height(7, 5), BlockHeight(7, 5, 5)),
    ]
    for fast, slow in cases:
        assert type(fast) is type(slow) and fast == slow
        assert repr(fast) == repr(slow) and hash(fast) == hash(slow)
        with pytest.raises(AttributeError):
            fast.ts_event = 0  # still frozen


def test_event_drafts_refuse_a_class_they_cannot_build():
    from dataclasses import dataclass

    from bot.sim.event_drafts import draft_class

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (NoSlots, Checked):
        with pytest.raises(TypeError):
            draft_class(cls)


def test_stream_events_are_exactly_the_domain_types():
    """Every emitted event and level is the domain class itself (re-typed drafts), equal to a rebuilt one."""
    from bot.domain import BookLevel

    for event in run(3, times(500)):
        rebuilt = type(event)(*(getattr(event, f) for f in type(event).__slots__))
        assert type(event).__module__ == "bot.domain" and event == rebuilt and hash(event) == hash(rebuilt)
        for level in getattr(event, "bids", ()) + getattr(event, "asks", ()):
            assert type(level) is BookLevel


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 8), st.integers(1, 3), st.integers(1, 3),
       st.lists(st.tuples(st.integers(0, 3 * NS_PER_SEC), st.sampled_from(["", "regime", "gap"])),
                min_size=1, max_size=40))
def test_book_is_recentred_exactly_on_the_touch(seed, depth, spacing, spread, moves):
    """Incremental re-centring keeps each side exactly the wanted grid of levels from the touch."""
    params = replace(PARAMS, depth_levels=depth, level_spacing_ticks=spacing, spread_ticks=spread,
                     annual_vol=5.0, taker_trades_per_sec=0.0, jump_per_sec=0.5, jump_size=0.003)
    market = SimMarket(params, seed, START_NS)
    book = OrderBook(params.ticker)
    now = START_NS
    for gap, action in moves:
        if action == "regime":
            market.set_regime(not market.is_high_vol())
        elif action == "gap":
            market.shift_price(2.0 if gap % 2 else -2.0)
        now += gap
        for event in market.step(now):
            if isinstance(event, BookSnapshot):
                book.apply_snapshot(event)
            elif isinstance(event, BookDelta):
                assert book.apply_delta(event)
        best_bid, best_ask = market.model_touch()
        assert set(market.background(Side.BUY)) == {best_bid - k * spacing for k in range(depth)
                                                     if best_bid - k * spacing > 0}
        assert set(market.background(Side.SELL)) == {best_ask + k * spacing for k in range(depth)}
        assert market.best_level(Side.BUY) == max(market.background(Side.BUY), default=None)
        assert market.best_level(Side.SELL) == min(market.background(Side.SELL))
        # the emitted book is the model's book
        shown = {lvl.price: lvl.size for lvl in book.levels(Side.BUY, 100)}
        assert shown == {params.tick_size * t: params.step_size * s
                         for t, s in market.background(Side.BUY).items()}


def test_events_do_not_depend_on_the_consts_cache():
    """Alternating step lengths (cache misses) and even steps (hits) give the same stream."""
    uneven = times(2000)
    assert digest(run(8, uneven)) == digest(run(8, list(uneven)))
    even = [START_NS + k * 100_000_000 for k in range(2000)]
    market = SimMarket(PARAMS, 8, START_NS)
    first = [e for now in even for e in market.step(now)]
    market = SimMarket(PARAMS, 8, START_NS)
    market._make_consts(123)  # a stale cache entry for another gap must not leak in
    assert [e for now in even for e in market.step(now)] == first
