"""The fill-driven spot hedge (bot.execution.hedge): examples and hypothesis properties."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ExecutionSettings
from bot.domain import BookLevel, MarketSpec, Side
from bot.execution import hedge as h

D = Decimal
SEC = 1_000_000_000
P = ExecutionSettings(hedge_lag_secs=10, hedge_max_mismatch_usd=D(1000),
                      hedge_leg_risk_budget_usd_secs=D(5000), hedge_max_rejects=3, hedge_cooldown_secs=600)
SPOT = MarketSpec("BTC-USDT", D("0.01"), D("0.00001"), D("0.00001"))
MARK = D(60_000)


def opened(perp_target: str = "-1", spot_goal: str = "1") -> h.HedgeState:
    """A carry open decided at t=0: perp 0 -> target, spot 0 -> goal, following the perp fills."""
    start = h.restored("BTC-USD", "BTC-USDT", D(0))
    return h.start_leg(start, D(0), D(perp_target), D(spot_goal), True, 0, P)


def test_each_perp_fill_makes_its_hedge_due_with_the_leg_ratio() -> None:
    state = h.on_perp_fill(opened(), D("-0.25"), 1 * SEC, P)
    assert state.required == D("0.25")
    assert state.mismatch(D(0)) == D("-0.25")  # short perp, no spot yet: net short
    assert state.mismatch_usd(D("0.25"), MARK) == 0
    assert state.obligations[0].due_ns == 11 * SEC


def test_required_never_passes_the_legs_goal() -> None:
    state = opened()
    for _ in range(6):
        state = h.on_perp_fill(state, D("-0.25"), SEC, P)
    assert state.required == D(1)


def test_a_spot_only_move_is_due_within_the_lag_at_once() -> None:
    start = h.restored("BTC-USD", "BTC-USDT", D("0.5"))
    state = h.start_leg(start, D("-0.5"), D("-0.5"), D(0), False, 5 * SEC, P)
    assert state.required == 0 and state.ratio == 0
    assert state.obligations[0].due_ns == 15 * SEC and state.obligations[0].direction == -1


def test_leg_risk_accrues_unhedged_notional_times_time_and_resets_once_matched() -> None:
    state = h.on_perp_fill(opened(), D("-0.1"), 0, P)  # $6000 unhedged
    state = h.observe(state, D(0), MARK, 0, P)
    state = h.observe(state, D(0), MARK, 2 * SEC, P)
    assert state.leg_risk_usd_secs == D(12_000)
    assert h.unwind_reason(state, P) == "leg_risk_budget"
    matched = h.observe(state, D("0.1"), MARK, 3 * SEC, P)
    assert matched.leg_risk_usd_secs == 0 and matched.obligations == ()


def test_a_late_hedge_is_a_lag_breach_counted_once() -> None:
    state = h.on_perp_fill(opened(), D("-0.001"), 0, P)  # $60 due by 10 s
    state = h.observe(state, D(0), MARK, 9 * SEC, P)
    assert not h.lag_exceeded(state, 9 * SEC) and state.lag_breaches == 0
    state = h.observe(state, D(0), MARK, 11 * SEC, P)
    assert h.lag_exceeded(state, 11 * SEC) and state.lag_breaches == 1
    state = h.observe(state, D(0), MARK, 12 * SEC, P)
    assert state.lag_breaches == 1
    assert not h.lag_exceeded(h.observe(state, D("0.001"), MARK, 13 * SEC, P), 13 * SEC)


def test_a_mismatch_below_the_smallest_hedge_order_counts_as_matched() -> None:
    state = h.on_perp_fill(opened(), D("-0.0001"), 0, P)  # $6 < min_notional_usd: cannot be hedged
    state = h.observe(state, D(0), MARK, 20 * SEC, P)
    assert not h.lag_exceeded(state, 20 * SEC) and state.leg_risk_usd_secs == 0


def test_the_perp_leg_waits_while_the_mismatch_is_over_the_limit() -> None:
    state = h.on_perp_fill(opened(), D("-0.02"), 0, P)  # $1200 > $1000
    assert not h.perp_may_trade(state, D(0), MARK, P)
    assert h.perp_may_trade(state, D("0.01"), MARK, P)


def test_the_perp_headroom_is_what_may_fill_before_the_limit() -> None:
    state = opened()  # ratio -1: each perp unit sold owes one spot unit
    assert h.perp_headroom(state, D(0), MARK, P) == D(1000) / MARK  # $1000 of hedge still allowed
    after = h.on_perp_fill(state, D("-0.01"), 0, P)  # $600 owed
    assert h.perp_headroom(after, D(0), MARK, P) == D(400) / MARK
    assert h.perp_headroom(h.on_perp_fill(state, D("-0.02"), 0, P), D(0), MARK, P) == 0  # over it
    doubled = h.start_leg(h.restored("BTC-USD", "BTC-USDT", D(0)), D(0), D(-1), D(2), True, 0, P)
    assert h.perp_headroom(doubled, D(0), MARK, P) == D(1000) / MARK / 2  # 2 spot per perp unit
    assert h.perp_headroom(h.restored("BTC-USD", "BTC-USDT", D(0)), D(0), MARK, P) is None  # no leg
    assert h.perp_headroom(state, D(0), None, P) is None


@settings(max_examples=200, deadline=None)
@given(fills=st.lists(st.decimals(min_value=D("0.0001"), max_value=D("0.05"), places=4), max_size=30))
def test_filling_no_more_than_the_headroom_keeps_the_mismatch_within_the_limit(fills: list[Decimal]) -> None:
    state = opened("-1", "1")
    for size in fills:
        room = h.perp_headroom(state, D(0), MARK, P)
        assert room is not None
        state = h.on_perp_fill(state, -min(size, room), 0, P)  # the spot leg never trades here
        assert abs(state.mismatch_usd(D(0), MARK)) <= P.hedge_max_mismatch_usd


def test_spot_rejects_in_a_row_give_the_leg_up_and_a_fill_starts_the_count_over() -> None:
    state = opened()
    for _ in range(2):
        state = h.on_spot_result(state, rejected=True)
    assert h.unwind_reason(state, P) is None
    assert h.on_spot_result(state, rejected=False).rejects == 0
    assert h.unwind_reason(h.on_spot_result(state, rejected=True), P) == "spot_rejects"


def test_unwind_brings_the_perp_back_to_the_hedged_size_and_latches_the_carry() -> None:
    state = h.on_perp_fill(opened(), D("-0.6"), 0, P)
    after, unwind = h.plan_unwind(state, D("-0.6"), D("0.2"), "spot_rejects", 100 * SEC, P, D("0.0001"))
    assert unwind.perp_change == D("0.4")  # buy back what the spot leg never hedged
    assert after.mismatch(D("0.2")) == 0 and after.ratio == 0
    assert after.latched(100 * SEC + 599 * SEC) and not after.latched(100 * SEC + 600 * SEC)
    assert after.unwinds == 1 and h.unwind_reason(after, P) is None
    assert h.add_unwind_fee(after, D("1.5")).unwind_fees_usd == D("1.5")


def test_unwind_never_grows_the_perp_to_match_a_spot_leg_that_failed_to_close() -> None:
    # Closing a carry: the perp was bought back, the spot sell fails. Re-shorting would re-open.
    state = h.start_leg(h.restored("BTC-USD", "BTC-USDT", D(1)), D(-1), D(0), D(0), True, 0, P)
    state = h.on_perp_fill(state, D("0.5"), 0, P)
    after, unwind = h.plan_unwind(state, D("-0.5"), D(1), "leg_risk_budget", 0, P, D("0.0001"))
    assert unwind.perp_change == 0
    assert after.required == D("0.5") and after.latched(1)  # the spot leg keeps working toward it


def test_plan_hedge_is_one_child_when_the_book_takes_it_and_twap_slices_when_not() -> None:
    asks = [BookLevel(D("60000.00") + i, D("0.5")) for i in range(5)]
    one = h.plan_hedge(SPOT, D("0.1"), D(0), asks, P, 0, 1)
    assert one is not None and one.slice_sizes == (D("0.1"),) and one.side is Side.BUY
    assert not one.reduce_only
    large = h.plan_hedge(SPOT, D("2"), D(0), asks, P, 0, 1)
    assert large is not None and len(large.slice_sizes) > 1 and sum(large.slice_sizes) == D(2)
    assert large.end_ns == 5 * SEC  # half the hedge lag
    assert h.plan_hedge(SPOT, D("0.000001"), D(0), asks, P, 0, 1) is None


fills = st.lists(st.decimals(min_value=D("-0.3"), max_value=D("0.3"), places=4), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(fills, st.decimals(min_value=D("-2"), max_value=D("2"), places=4),
       st.decimals(min_value=D("-2"), max_value=D("2"), places=4))
def test_required_stays_between_where_it_was_and_the_goal(sizes: list[Decimal], target: Decimal,
                                                         goal: Decimal) -> None:
    state = h.start_leg(h.restored("BTC-USD", "BTC-USDT", D(0)), D(0), target, goal, True, 0, P)
    low, high = sorted((D(0), goal))
    for i, size in enumerate(sizes):
        state = h.on_perp_fill(state, size, i * SEC, P)
        assert low <= state.required <= high


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.decimals(min_value=D("-0.05"), max_value=D("0.05"), places=4),
                          st.integers(min_value=0, max_value=3 * SEC)), min_size=1, max_size=40))
def test_leg_risk_is_never_negative_and_zero_whenever_the_legs_match(path: list[tuple[Decimal, int]]) -> None:
    state = opened()
    now = 0
    for spot, step in path:
        now += step
        state = h.observe(state, spot, MARK, now, P)
        assert state.leg_risk_usd_secs >= 0
        if abs(state.mismatch_usd(spot, MARK)) < P.min_notional_usd:
            assert state.leg_risk_usd_secs == 0 and state.obligations == ()


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=D("-3"), max_value=D("3"), places=4),
       st.decimals(min_value=D("-3"), max_value=D("3"), places=4),
       st.decimals(min_value=D("-3"), max_value=D("3"), places=4))
def test_unwind_only_ever_reduces_the_perp_and_never_widens_the_mismatch(perp: Decimal, spot: Decimal,
                                                                        required: Decimal) -> None:
    state = h.HedgeState("BTC-USD", "BTC-USDT", required=required, goal=required)
    after, unwind = h.plan_unwind(state, perp, spot, "leg_risk_budget", 0, P, D("0.0001"))
    new_perp = perp + unwind.perp_change
    assert abs(new_perp) <= abs(perp) and (new_perp == 0 or (new_perp > 0) == (perp > 0))
    assert abs(after.mismatch(spot)) <= abs(state.mismatch(spot))
    assert after.required - state.required == -unwind.perp_change  # the perp change is what is hedged


CAP, SLACK = D(25_000), D(1000)


def test_a_spot_order_growing_the_exposure_beyond_the_cap_is_refused() -> None:
    # 78.49 BTC at 16,000: the size the re-sent hedge reached under hedge-delay (old code), for a
    # hedge of 1.5 BTC.
    reason = h.spot_order_refusal(D("78.49"), D(0), D("78.49"), D(16_000), CAP, SLACK, D("1.5"))
    assert reason is not None and "beyond 26000 USD" in reason
    # What a carry at the cap holds (1.5 BTC at 16,000 = 24,000 USD) passes.
    assert h.spot_order_refusal(D("0.5"), D(1), D("0.5"), D(16_000), CAP, SLACK, D("1.5")) is None
    # An order that only adds to what is already working is counted with it: 1 held + 0.5 working
    # + 0.2 of this one = 1.7 BTC = 27,200 USD.
    assert h.spot_order_refusal(D("0.2"), D(1), D("0.7"), D(16_000), CAP, SLACK, D("1.5")) is not None


def test_after_a_rally_a_buy_that_restores_the_hedge_passes_and_one_beyond_it_does_not() -> None:
    # A carry of 1 BTC opened at 16,000 (16,000 USD, under the cap) held through a rally to
    # 40,000: 40,000 USD, over the cap. A buy's commission was withheld in BTC (0.999 held): the
    # buy-back brings the spot to the hedge owed and passes (the old guard refused it, and the
    # refusals counted toward a spot-rejects unwind of a healthy carry).
    assert h.spot_order_refusal(D("0.001"), D("0.999"), D("0.001"), D(40_000), CAP, SLACK, D(1)) is None
    # A buy past the hedge owed by more than it was short grows the exposure: refused.
    assert h.spot_order_refusal(D("0.01"), D("0.999"), D("0.01"), D(40_000), CAP, SLACK, D(1)) is not None
    # The same buy while a buy of the shortfall works already: refused.
    assert h.spot_order_refusal(D("0.001"), D("0.999"), D("0.002"), D(40_000), CAP, SLACK, D(1)) is not None


sizes = st.decimals(-100, 100, places=4)
prices = st.decimals(1000, 100_000, places=0)


@given(sizes, sizes, sizes, prices, sizes)
def test_the_guard_refuses_exactly_what_grows_the_exposure_beyond_the_cap_away_from_the_hedge(
        size: Decimal, position: Decimal, other: Decimal, price: Decimal, required: Decimal) -> None:
    working = other + size  # what works with this order
    reason = h.spot_order_refusal(size, position, working, price, CAP, SLACK, required)
    after, before = position + working, position + other
    if abs(after) <= abs(before) or abs(after - required) < abs(before - required):
        assert reason is None  # shrinks the exposure, or brings it closer to the hedge owed
    else:
        assert (reason is not None) == (abs(after) * price > CAP + SLACK)


@settings(max_examples=200, deadline=None)
@given(st.decimals("0.05", 10, places=2), st.booleans(), sizes, prices, sizes)
def test_a_runaway_stops_within_one_order_of_the_cap_or_the_hedge(size: Decimal, buy: bool, position: Decimal,
                                                                  price: Decimal, required: Decimal) -> None:
    # The same order sent again and again, each counted as working once sent (the runaway the
    # guard is the last line against): the exposure it builds stays bounded.
    signed = size if buy else -size
    working = D(0)
    for _ in range(int(400 / size) + 3):
        if h.spot_order_refusal(signed, position, working + signed, price, CAP, SLACK, required) is not None:
            break
        working += signed
    else:
        raise AssertionError("never refused")
    bound = max(abs(position), (CAP + SLACK) / price, abs(required) + size)
    assert abs(position + working) <= bound


def test_a_stray_fill_is_owed_at_its_own_legs_ratio_and_moves_the_goal() -> None:
    # The current leg (spot 0.5 -> 1 for perp -0.5 -> -1) is half built; a fill of 0.2 of an
    # earlier leg's perp sell reported now is owed at that leg's ratio (-1), goal included.
    state = h.on_perp_fill(opened(), D("-0.5"), SEC, P)
    after = h.on_stray_fill(state, D("-0.2"), D(-1), 2 * SEC, P)
    assert (after.required, after.goal) == (D("0.7"), D("1.2"))
    assert after.obligations[-1] == h.Obligation(12 * SEC, D("0.7"), 1)
    # The rest of the current leg still moves the hedge toward its (moved) goal.
    assert h.on_perp_fill(after, D("-0.5"), 3 * SEC, P).required == D("1.2")
    assert h.on_stray_fill(state, D("-0.2"), D(0), 2 * SEC, P) is state  # no hedged leg: nothing owed


@given(st.decimals("0.01", 10, places=2), st.decimals(0, 1, places=2), st.decimals(0, 10, places=2))
def test_an_unwind_that_trades_short_owes_the_hedge_of_the_perp_it_kept(perp_short: Decimal, traded: Decimal,
                                                                        spot: Decimal) -> None:
    # A carry short `perp_short` perp whose spot leg holds `spot` of the `perp_short` owed: the
    # unwind plans to buy back the difference and trades only a fraction of it.
    state = h.HedgeState("BTC-USD", "BTC-USDT", required=perp_short, goal=perp_short)
    after, unwind = h.plan_unwind(state, -perp_short, spot, "leg_risk_budget", 0, P, D("0.01"))
    filled = (unwind.perp_change * traded).quantize(D("0.01"))
    settled = h.on_unwind_short(after, unwind.perp_change - filled, SEC, P)
    # What is owed is what the perp still held calls for: the perp traded `filled`, no more.
    assert settled.required == state.required - filled
    assert settled.mismatch(spot) == -(perp_short - filled) + spot
