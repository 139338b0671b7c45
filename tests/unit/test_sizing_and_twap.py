from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.config import ExecutionSettings, StrategySettings
from bot.domain import BookLevel, MarketSpec, Side
from bot.execution.twap import plan_twap, size_child
from bot.strategy.sizing import SizingInputs, size_target, vol_target_leverage

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


def test_target_capped_by_leverage_budget() -> None:
    t = size_target(inputs(), S)  # budget 5000 x lev 1 = 5000 USD -> 0.0833 BTC
    assert t.size == Decimal("0.0833")
    assert t.limited_by == "leverage"


def test_adverse_funding_tightens_the_cap() -> None:
    favourable = size_target(inputs(funding_rate_1h=Decimal("-0.0001")), S)
    adverse = size_target(inputs(funding_rate_1h=Decimal("0.0001")), S)
    assert adverse.size < favourable.size
    assert adverse.limited_by == "adverse_funding"


def test_drawdown_stop_flattens() -> None:
    t = size_target(inputs(equity_usd=Decimal(7000)), S)
    assert t.size == 0 and t.limited_by == "drawdown"


@given(
    desired=st.decimals(-100, 100, places=4),
    price=st.decimals(1, 100000, places=2),
    vol=st.floats(0.01, 5.0),
    rate=st.decimals(Decimal("-0.001"), Decimal("0.001"), places=6),
)
def test_targets_never_exceed_caps_property(desired, price, vol, rate) -> None:  # type: ignore[no-untyped-def]
    t = size_target(inputs(desired_size=desired, price=price, realised_vol=vol, funding_rate_1h=rate), S)
    assert abs(t.size) <= abs(desired)
    assert abs(t.size) * price <= min(S.max_notional_usd, Decimal(5000) * S.max_leverage) + price * Decimal(
        "0.0001"
    )
    assert t.leverage <= S.max_leverage
    assert t.size == 0 or (t.size > 0) == (desired > 0)


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
