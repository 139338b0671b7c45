from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.config import ExecutionSettings, StrategySettings
from bot.domain import BookLevel, MarketSpec, Side
from bot.execution.twap import plan_twap, size_child
from bot.strategy.sizing import (
    SizingInputs,
    liquidation_distance,
    scale_hedge,
    size_target,
    vol_target_leverage,
)

S = StrategySettings()
E = ExecutionSettings()
BTC = MarketSpec("BTC-USD", Decimal(1), Decimal("0.0001"), Decimal("0.0001"))


def inputs(**kw) -> SizingInputs:  # type: ignore[no-untyped-def]
    base = {
        "market": "BTC-USD", "desired_size": Decimal(1), "price": Decimal(60000),
        "equity_usd": Decimal(10000), "peak_equity_usd": Decimal(10000), "realised_vol": 0.5,
        "funding_rate_1h": Decimal(0), "step_size": Decimal("0.0001"), "market_count": 2,
    }
    base.update(kw)
    return SizingInputs(**base)


def test_leverage_is_vol_targeted_and_capped() -> None:
    assert vol_target_leverage(Decimal("0.5"), 1.0, Decimal(3)) == Decimal("0.5")
    assert vol_target_leverage(Decimal("0.5"), 0.1, Decimal(3)) == Decimal(3)
    assert vol_target_leverage(Decimal("0.5"), None, Decimal(3)) == Decimal(3)


def test_target_capped_by_max_leverage_budget() -> None:
    t = size_target(inputs(), S)  # budget 5000 x max_leverage 3 = 15000 USD -> 0.25 BTC
    assert t.size == Decimal("0.25")
    assert t.limited_by == "leverage"


def test_sizing_does_not_resize_by_vol_or_funding() -> None:
    # vol targeting and the adverse-funding cut belong to the directional sleeve: a hedged carry
    # passes through the hard limits at its size whatever the vol or the funding
    calm = size_target(inputs(desired_size=Decimal("-0.05"), realised_vol=0.2), S)
    wild = size_target(inputs(desired_size=Decimal("-0.05"), realised_vol=3.0,
                              funding_rate_1h=Decimal("-0.001")), S)
    assert calm.size == wild.size == Decimal("-0.05")


def test_drawdown_stop_flattens() -> None:
    t = size_target(inputs(equity_usd=Decimal(7000)), S)
    assert t.size == 0 and t.limited_by == "drawdown"


def test_liquidation_distance_floor_caps_notional() -> None:
    # 5000 USD per market, floor 20% + MMF 3% -> at most 21739 USD; tighter than 3 x lev when
    # the floor is raised to 50%: 5000 / 0.53 = 9434 USD
    tight = StrategySettings(min_liquidation_distance=Decimal("0.5"), max_notional_usd=Decimal(10**6))
    t = size_target(inputs(desired_size=Decimal(10), realised_vol=0.05), tight)
    assert t.limited_by == "liquidation"
    notional = t.size * Decimal(60000)
    assert notional <= Decimal(5000) / Decimal("0.53")
    distance = liquidation_distance(Decimal(5000), notional, Decimal("0.03"))
    assert distance is not None and distance >= Decimal("0.5")


def test_hard_limits_ignore_flags_and_apply_to_any_desire() -> None:
    # sizing has no flag input at all: a drawdown flattens whatever the sleeves want
    for desired in (Decimal(-3), Decimal("0.001"), Decimal(5)):
        assert size_target(inputs(desired_size=desired, equity_usd=Decimal(7900)), S).size == 0


@given(
    desired=st.decimals(-100, 100, places=4),
    price=st.decimals(1, 100000, places=2),
    vol=st.one_of(st.none(), st.floats(0.01, 5.0)),
    rate=st.decimals(Decimal("-0.001"), Decimal("0.001"), places=6),
    equity=st.decimals(100, 10**6, places=2),
    peak_extra=st.decimals(0, 10**5, places=2),
    liq=st.decimals(Decimal("0.01"), Decimal(1), places=2),
)
def test_targets_never_exceed_any_cap_property(desired, price, vol, rate, equity, peak_extra, liq) -> None:  # type: ignore[no-untyped-def]
    p = StrategySettings(min_liquidation_distance=liq)
    t = size_target(inputs(desired_size=desired, price=price, realised_vol=vol, funding_rate_1h=rate,
                           equity_usd=equity, peak_equity_usd=equity + peak_extra), p)
    budget = equity / 2
    caps = [budget * p.max_leverage, p.max_notional_usd, budget / (liq + Decimal("0.03"))]
    notional = abs(t.size) * price
    assert notional <= min(caps) + Decimal("1e-12")
    assert abs(t.size) <= abs(desired)
    assert t.leverage <= p.max_leverage
    assert t.size == 0 or (t.size > 0) == (desired > 0)
    if equity < (equity + peak_extra) * (1 - p.drawdown_stop):
        assert t.size == 0 and t.limited_by == "drawdown"


@given(st.decimals(-5, 5, places=4), st.decimals(-5, 5, places=4), st.decimals(-5, 5, places=4))
def test_hedge_never_outgrows_its_perp_cut_property(spot, desired, final) -> None:  # type: ignore[no-untyped-def]
    hedged = scale_hedge(spot, desired, final, Decimal("0.0001"))
    assert abs(hedged) <= abs(spot)
    assert hedged == 0 or (hedged > 0) == (spot > 0)
    if desired == final:
        assert hedged == spot


@given(st.floats(0.05, 3.0), st.floats(0.05, 3.0))
def test_leverage_falls_as_vol_rises_property(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert vol_target_leverage(Decimal("0.5"), hi, Decimal(3)) <= vol_target_leverage(
        Decimal("0.5"), lo, Decimal(3)
    )


@given(
    current=st.decimals(-5, 5, places=4),
    target=st.decimals(-5, 5, places=4),
    seed=st.integers(0, 1000),
)
def test_twap_slices_sum_to_the_move_property(current, target, seed) -> None:  # type: ignore[no-untyped-def]
    plan = plan_twap(BTC, current, target, E, 0, seed)
    if plan is None:
        assert abs(target - current) < BTC.min_order_size
        return
    assert sum(plan.slice_sizes) == abs(target - current)
    assert plan.side is (Side.BUY if target > current else Side.SELL)
    assert list(plan.slice_due_ns) == sorted(plan.slice_due_ns)
    assert plan.slice_due_ns[-1] <= plan.end_ns
    assert all(s > 0 for s in plan.slice_sizes)


def test_twap_reduce_only_only_when_shrinking_same_side() -> None:
    assert plan_twap(BTC, Decimal(1), Decimal("0.5"), E, 0, 1).reduce_only  # type: ignore[union-attr]
    assert not plan_twap(BTC, Decimal(1), Decimal(-1), E, 0, 1).reduce_only  # type: ignore[union-attr]
    assert not plan_twap(BTC, Decimal(0), Decimal(1), E, 0, 1).reduce_only  # type: ignore[union-attr]


ASKS = [BookLevel(Decimal(60000), Decimal("0.2")), BookLevel(Decimal(60030), Decimal("0.3")),
        BookLevel(Decimal(60100), Decimal(5))]


def test_child_is_a_share_of_depth_inside_the_slippage_cap() -> None:
    child = size_child(Side.BUY, Decimal(10), ASKS, BTC, E)
    assert child is not None
    # 10 bps of 60000 = 60 -> limit 60060: levels 60000 and 60030 count, 0.5 x 25% = 0.125
    assert child.limit_price == Decimal(60060)
    assert child.size == Decimal("0.125")


def test_child_never_below_min_notional() -> None:
    assert size_child(Side.BUY, Decimal("0.0001"), ASKS, BTC, E) is None
    assert size_child(Side.BUY, Decimal(1), [], BTC, E) is None
