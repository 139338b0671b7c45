"""Passive child planning: post-only at the touch, re-peg, chase limit, timeout fallback."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.config import ExecutionSettings
from bot.domain import BookLevel, MarketSpec, Side, TimeInForce
from bot.execution.passive import CancelChild, PlaceChild, RestingChild, chase_limit, plan_passive
from bot.execution.twap import BPS

SEC = 1_000_000_000
SPEC = MarketSpec("BTC-USD", Decimal("1"), Decimal("0.001"), Decimal("0.001"))
P = ExecutionSettings(slippage_cap_bps=Decimal(10), max_chase_bps=Decimal(20), repeg_ticks=2,
                      passive_timeout_secs=5.0, min_notional_usd=Decimal(10))


def book(bid: int, ask: int, size: str = "1") -> tuple[list[BookLevel], list[BookLevel]]:
    bids = [BookLevel(Decimal(bid - i), Decimal(size)) for i in range(5)]
    asks = [BookLevel(Decimal(ask + i), Decimal(size)) for i in range(5)]
    return bids, asks


def test_places_post_only_at_the_touch() -> None:
    bids, asks = book(50_000, 50_002)
    [buy] = plan_passive(Side.BUY, Decimal("0.1"), None, bids, asks, Decimal(50_001), None, 0, SPEC, P)
    assert buy == PlaceChild(Side.BUY, Decimal("0.1"), Decimal(50_000), TimeInForce.POST_ONLY)
    [sell] = plan_passive(Side.SELL, Decimal("0.1"), None, bids, asks, Decimal(50_001), None, 0, SPEC, P)
    assert sell.price == Decimal(50_002) and sell.tif is TimeInForce.POST_ONLY


def test_child_is_a_share_of_depth() -> None:
    bids, asks = book(50_000, 50_001, size="0.1")
    [buy] = plan_passive(Side.BUY, Decimal(5), None, bids, asks, Decimal(50_000), None, 0, SPEC, P)
    # Asks within 10 bps of 50_001: every level listed (5 x 0.1), a quarter of it.
    assert buy.size == Decimal("0.125")


def test_repegs_only_when_the_touch_moved_more_than_k_ticks() -> None:
    resting = RestingChild(7, Decimal(50_000), Decimal("0.1"))
    bids, asks = book(50_002, 50_004)
    assert plan_passive(Side.BUY, Decimal(0), resting, bids, asks, Decimal(50_000), 0, SEC, SPEC, P) == []
    bids, asks = book(50_003, 50_005)
    cancel, place = plan_passive(Side.BUY, Decimal(0), resting, bids, asks, Decimal(50_000), 0, SEC,
                                 SPEC, P)
    assert cancel == CancelChild(7)
    assert place == PlaceChild(Side.BUY, Decimal("0.1"), Decimal(50_003), TimeInForce.POST_ONLY)


def test_waits_for_a_pending_cancel() -> None:
    resting = RestingChild(7, Decimal(49_000), Decimal("0.1"), is_cancel_pending=True)
    bids, asks = book(50_000, 50_001)
    assert plan_passive(Side.BUY, Decimal(1), resting, bids, asks, Decimal(50_000), 0, 99 * SEC,
                        SPEC, P) == []


def test_stops_chasing_at_the_limit() -> None:
    bids, asks = book(50_500, 50_501)  # ran 100 bps away from the 50_000 arrival
    [place] = plan_passive(Side.BUY, Decimal("0.1"), None, bids, asks, Decimal(50_000), None, 0, SPEC, P)
    assert place.price == Decimal(50_100) == chase_limit(Side.BUY, Decimal(50_000), Decimal(1),
                                                          Decimal(20))
    resting = RestingChild(8, Decimal(50_100), Decimal("0.1"))
    assert plan_passive(Side.BUY, Decimal(0), resting, bids, asks, Decimal(50_000), 0, SEC, SPEC, P) == []


def test_timeout_crosses_with_ioc_on_high_urgency_and_waits_on_low() -> None:
    resting = RestingChild(9, Decimal(50_000), Decimal("0.1"))
    bids, asks = book(50_000, 50_001)
    cancel, ioc = plan_passive(Side.BUY, Decimal(0), resting, bids, asks, Decimal(50_000), 0, 5 * SEC,
                               SPEC, P)
    assert cancel == CancelChild(9)
    assert ioc.tif is TimeInForce.IOC and ioc.size == Decimal("0.1")
    assert ioc.price == Decimal(50_051)  # 10 bps over the ask, floored to the tick
    low = P.model_copy(update={"urgency": "low"})
    assert plan_passive(Side.BUY, Decimal(0), resting, bids, asks, Decimal(50_000), 0, 60 * SEC,
                        SPEC, low) == []


def test_one_sided_book_rests_inside_the_other_side() -> None:
    _, asks = book(50_000, 50_010)
    [place] = plan_passive(Side.BUY, Decimal("0.1"), None, [], asks, Decimal(50_010), None, 0, SPEC, P)
    assert place.price == Decimal(50_009)


prices = st.integers(min_value=1_000, max_value=100_000)


@given(
    side=st.sampled_from(list(Side)),
    bid=prices,
    spread=st.integers(min_value=1, max_value=50),
    arrival_offset_bps=st.integers(min_value=-300, max_value=300),
    tick=st.sampled_from([Decimal("0.1"), Decimal("1"), Decimal("5")]),
    wanted=st.decimals(min_value=Decimal("0"), max_value=Decimal("3"), places=3),
    resting_offset=st.one_of(st.none(), st.integers(min_value=-40, max_value=40)),
    resting_size=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("2"), places=3),
    waited_secs=st.one_of(st.none(), st.integers(min_value=0, max_value=30)),
    urgency=st.sampled_from(["low", "high"]),
    depth=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("5"), places=3),
)
def test_passive_invariants(side: Side, bid: int, spread: int, arrival_offset_bps: int, tick: Decimal,
                            wanted: Decimal, resting_offset: int | None, resting_size: Decimal,
                            waited_secs: int | None, urgency: str, depth: Decimal) -> None:
    spec = MarketSpec("X", tick, Decimal("0.001"), Decimal("0.001"))
    p = P.model_copy(update={"urgency": urgency})
    best_bid = Decimal(bid) * tick
    best_ask = best_bid + spread * tick
    bids = [BookLevel(best_bid - i * tick, depth) for i in range(5)]
    asks = [BookLevel(best_ask + i * tick, depth) for i in range(5)]
    arrival = (best_bid + best_ask) / 2 * (1 + arrival_offset_bps * BPS)
    resting = None
    if resting_offset is not None:
        resting = RestingChild(1, max(tick, best_bid + resting_offset * tick), resting_size)
    now = 100 * SEC
    since = None if waited_secs is None else now - waited_secs * SEC
    actions = plan_passive(side, wanted, resting, bids, asks, arrival, since, now, spec, p)
    limit = chase_limit(side, arrival, tick, p.max_chase_bps)
    cap = p.slippage_cap_bps * BPS
    for action in actions:
        if isinstance(action, CancelChild):
            assert resting is not None and action.client_id == resting.client_id
            continue
        assert action.price > 0 and action.price % tick == 0  # always a limit price on the tick
        assert action.size > 0 and action.size % spec.step_size == 0
        assert action.side is side
        if action.tif is TimeInForce.POST_ONLY:
            if side is Side.BUY:
                assert action.price < best_ask and action.price <= limit
            else:
                assert action.price > best_bid and action.price >= limit
        else:
            assert action.tif is TimeInForce.IOC and urgency == "high"
            if side is Side.BUY:
                assert action.price <= best_ask * (1 + cap)
            else:
                assert action.price >= best_bid * (1 - cap)
        taken = asks if side is Side.BUY else bids
        within = sum((lv.size for lv in taken
                      if (lv.price <= best_ask * (1 + cap) if side is Side.BUY
                          else lv.price >= best_bid * (1 - cap))), Decimal(0))
        assert action.size <= within * p.max_depth_share
    places = [a for a in actions if isinstance(a, PlaceChild)]
    assert len(places) <= 1
    if resting is not None and places:
        assert actions[0] == CancelChild(resting.client_id)  # cancel/replace, never two working
