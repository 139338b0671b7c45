"""The pure decision path (bot.decisions): state and now in, targets / gate outcome / plan out."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from bot import decisions
from bot.config import CarrySettings, Settings, StrategySettings
from bot.domain import ZERO, FeeRates, MarketSpec, MarketStatusKind, Position, RiskMode, Side
from bot.market_state import MarketState, build_markets
from bot.rules.flags import FlagInputs, evaluate_flags
from bot.strategy.market_status import may_place
from bot.strategy.sizing import Target
from bot.strategy.sleeves import SleeveBook, SleeveTarget
from bot.strategy.targets import FLAT, TargetSpec

SPEC = MarketSpec("BTC-USD", D("1"), D("0.001"), D("0.001"))
S = Settings(strategy=StrategySettings(directional_budget=D(1), carry_budget=D(0), vol_provision_budget=D(0),
                                      carry=CarrySettings(enabled=False), target_vol_annual=D(5)))
FEES = {"dydx": FeeRates(D("0.0001"), D("0.0005"), "test"),
        "binance": FeeRates(D("0.001"), D("0.001"), "test")}
NOW = 10**18


def market(position: D = ZERO, mark: D = D(60000)) -> MarketState:
    state = build_markets(S, {"BTC-USD": SPEC}, {}, {}, None)[0]["BTC-USD"]
    state.oracle_price = mark
    state.depth = D(100)  # deep enough that the liquidity flag stays quiet
    state.position = Position("BTC-USD", size=position)
    return state


def context(status: MarketStatusKind = MarketStatusKind.ACTIVE, risk: RiskMode = RiskMode.NORMAL,
            operator: TargetSpec = FLAT, hold: bool = False) -> decisions.Context:
    return decisions.Context(settings=S, strategy=S.strategy, equity=D(10_000), peak_equity=D(10_000),
                             fees=FEES, market_count=1, risk_mode=risk, status=status, operator=operator,
                             settlement_hold=hold)


def decided(state: MarketState, target: D, rate_1h: D = ZERO) -> MarketState:
    """A market with a sized target and flags, ready for `plan`."""
    state.sizing = Target("BTC-USD", target, D(1), D(10**6), "")
    state.sleeves = SleeveBook((SleeveTarget("directional", target, why="operator"),), target, ZERO, 0)
    state.funding.on_predicted(rate_1h)
    inputs = FlagInputs("BTC-USD", state.position.size, D(60000), rate_1h, D(1), D(10), None, None,
                        None, None)
    state.flags = evaluate_flags(inputs, S.rules)
    return state


def inputs_of(state: MarketState) -> FlagInputs:
    return FlagInputs("BTC-USD", state.position.size, D(60000), ZERO, D(1), D(10), None, None, None, None)


def test_the_operator_target_is_the_perp_target_and_reduce_only_never_grows_it() -> None:
    state = market()
    out = decisions.compute_targets(state, D(60000), NOW, context(operator=TargetSpec(D("0.3"))))
    assert out.sizing.size == D("0.3") and out.spot == ZERO and out.sizing.limited_by == ""
    big = decisions.compute_targets(state, D(60000), NOW, context(operator=TargetSpec(D(5))))
    assert big.sizing.size < D(5) and big.sizing.limited_by  # the hard limits cut it, and say which
    held = market(position=D("0.2"))
    reduce_only = context(operator=TargetSpec(D("0.3")), risk=RiskMode.REDUCE_ONLY)
    out = decisions.compute_targets(held, D(60000), NOW, reduce_only)
    assert out.sizing.size == D("0.2")


def test_a_market_that_takes_no_orders_is_sized_at_its_position() -> None:
    state = market(position=D("0.2"))
    ctx = context(MarketStatusKind.CANCEL_ONLY, operator=TargetSpec(D("0.3")))
    assert decisions.compute_targets(state, D(60000), NOW, ctx).sizing.size == D("0.2")


def test_the_first_audit_trades_a_drifted_market_unless_start_up_audits_are_off() -> None:
    state = market()
    ctx = context(operator=TargetSpec(D("0.3")))
    out = decisions.compute_targets(state, D(60000), NOW, ctx)
    state.sleeves, state.sizing, state.pending_spot_target = out.sleeves, out.sizing, out.spot
    seen = decisions.assess_gate(state, D(60000), NOW, ctx)
    # No book: the liquidity flag trips, but one flag alone never gates; the audit does.
    assert seen.gate.act and seen.gate.reason == "audit" and seen.flags.tripped == ("liquidity",)
    assert seen.inputs.target_size == D("0.3") and seen.inputs.position_size == ZERO
    quiet = S.model_copy(update={"rules": S.rules.model_copy(update={"audit_on_start": False})})
    seen = decisions.assess_gate(state, D(60000), NOW, replace(ctx, settings=quiet))
    assert not seen.gate.act and seen.gate.state.last_audit_ns == NOW


def test_an_audit_inside_the_band_does_not_trade() -> None:
    state = market(position=D("0.3"))
    ctx = context(operator=TargetSpec(D("0.3")))
    out = decisions.compute_targets(state, D(60000), NOW, ctx)
    state.sleeves, state.sizing, state.pending_spot_target = out.sleeves, out.sizing, out.spot
    assert not decisions.outside_band(state, out.sizing.size, out.spot, D(60000), ctx)
    assert not decisions.assess_gate(state, D(60000), NOW, ctx).gate.act


def test_a_plan_moves_the_position_to_target_and_the_record_says_why() -> None:
    state = decided(market(position=D("0.1")), D("0.5"))
    d = decisions.plan_decision(state, "audit", inputs_of(state), NOW, 7, context())
    assert d.plan is not None and d.plan.side is Side.BUY and d.plan.total == D("0.4")
    assert d.record["gate"] == "audit" and d.record["target_after"] == "0.5"
    assert d.summary.startswith("audit perp 0->0.5 held 0.1 (BUY 0.4 in")  # the plan starts from 0.1
    assert d.spot_plan is None and "spot" not in d.record


def test_a_paused_or_held_market_gets_no_plan_and_a_post_only_one_rests() -> None:
    state = decided(market(position=D("0.1")), ZERO)
    paused = context(MarketStatusKind.PAUSED)
    assert decisions.plan_decision(state, "audit", inputs_of(state), NOW, 7, paused).plan is None
    assert decisions.plan_decision(state, "audit", inputs_of(state), NOW, 7, context(hold=True)).plan is None
    post_only = context(MarketStatusKind.POST_ONLY)
    post = decisions.plan_decision(state, "audit", inputs_of(state), NOW, 7, post_only).plan
    assert post is not None and post.passive and post.post_only


def snapshot(state: MarketState) -> tuple[object, ...]:
    return (state.position.size, state.target, state.carry_side, state.carry_size, state.sizing,
            state.sleeves, state.flags, state.gate, state.pending_spot_target, state.last_decision,
            state.spot)


sizes = st.decimals(min_value=D(-3), max_value=D(3), places=3)
rates = st.sampled_from([ZERO, D("0.0001"), D("-0.0001")])


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, rates, st.sampled_from(list(MarketStatusKind)), st.booleans(), st.integers(0, 10**6))
def test_a_plan_never_overshoots_obeys_the_status_and_leaves_the_state_alone(
        position: D, target: D, rate: D, status: MarketStatusKind, hold: bool, seed: int) -> None:
    state = decided(market(position=position), target, rate)
    before = snapshot(state)
    d = decisions.plan_decision(state, "audit", inputs_of(state), NOW, seed, context(status, hold=hold))
    assert snapshot(state) == before  # pure: the caller applies the decision
    assert d.target == target and d.record["plan"] == (d.plan.as_dict() if d.plan else {"action": "none"})
    if d.plan is None:
        return
    assert may_place(status) and not hold  # a market that takes no orders, or is held, gets none
    assert d.plan.side is (Side.BUY if target > position else Side.SELL)
    assert d.plan.total <= abs(target - position) and d.plan.total % SPEC.step_size == 0
    assert sum(d.plan.slice_sizes) == d.plan.total
    favours = S.execution.passive_when_funding_favours and decisions.funding_favours(d.plan.side,
                                                                                     state.funding.rate_1h)
    assert d.plan.passive == (favours or status is MarketStatusKind.POST_ONLY)
    assert d.plan.post_only == (status is MarketStatusKind.POST_ONLY)


@settings(max_examples=200, deadline=None)
@given(sizes, sizes, st.sampled_from(list(MarketStatusKind)), st.sampled_from(list(RiskMode)))
def test_targets_never_grow_exposure_in_reduce_only_or_in_a_market_that_takes_no_orders(
        position: D, operator: D, status: MarketStatusKind, risk: RiskMode) -> None:
    state = market(position=position)
    before = snapshot(state)
    ctx = context(status, risk, operator=TargetSpec(operator))
    out = decisions.compute_targets(state, D(60000), NOW, ctx)
    assert snapshot(state) == before
    assert out.sizing.size % SPEC.step_size == 0 and out.spot == ZERO  # no carry configured
    if risk is RiskMode.REDUCE_ONLY or not may_place(status):
        assert abs(out.sizing.size) <= abs(position) and out.sizing.size * position >= 0


def test_a_summary_shows_the_position_a_plan_starts_from_when_it_is_not_the_target_before() -> None:
    from bot.control.status import summarize_decision
    from bot.execution.twap import TwapPlan

    book = SleeveBook((), ZERO, ZERO, 0)
    plan = TwapPlan("BTC-USDT", Side.BUY, D("78.4928"), False, tuple(range(6)), (D("13.0821"),) * 6, 6)
    moved = summarize_decision("audit", (), ZERO, ZERO, None, "", book, (ZERO, ZERO, plan),
                               (ZERO, D("-78.4928")))
    assert "spot 0->0 held -78.4928 (BUY 78.4928 in 6)" in moved
    assert "perp 0->0 (no order)" in moved
    usual = summarize_decision("audit", (), D("0.5"), D(1), None, "", book, None, (D("0.5"), None))
    assert usual == "audit perp 0.5->1 (no order)"
