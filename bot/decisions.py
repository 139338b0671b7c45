"""One market's decision path as pure functions: targets, flags and gate outcome, and the plan.

The engine snapshots what a decision reads beside the market's own state into a `Context`, calls
these functions with the market's state and `now`, and applies what they return (store, order
managers, metrics). Nothing here mutates the state it is given or performs IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from bot.config import Settings, StrategySettings
from bot.control.status import summarize_decision
from bot.domain import ZERO, FeeRates, MarketStatusKind, RiskMode, Side
from bot.execution.twap import TwapPlan, plan_twap
from bot.market_state import MarketState
from bot.rules.estimators import EwmaVol
from bot.rules.flags import FlagInputs, Flags, evaluate_flags
from bot.rules.gate import GateDecision, GateState, evaluate_gate
from bot.strategy import decide as strategy_decide
from bot.strategy import market_status as status_rules
from bot.strategy.targets import TargetSpec, resolve_target
from bot.strategy.volscale import baseline_of, trend_of

# Vol estimates are reported to the flags only once warm (samples are 1 s returns): a short
# window on a handful of returns would trip the regime-shift ratio on noise at start-up.
VOL_SHORT_MIN_SAMPLES = 30
VOL_LONG_MIN_SAMPLES = 300


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class Context:
    """What a market's decision reads beside the market's own state, at one time."""

    settings: Settings
    strategy: StrategySettings  # settings.strategy, with the carry off while a failed leg is latched
    equity: Decimal
    peak_equity: Decimal
    fees: Mapping[str, FeeRates]
    market_count: int
    risk_mode: RiskMode
    status: MarketStatusKind
    operator: TargetSpec  # the operator's directional target for the market
    news: tuple[str, ...] = ()
    settlement_hold: bool = False  # the venue refused the close in final settlement: send nothing


# Not frozen: built on every evaluation and read at once (a frozen __init__ costs twice as much).
@dataclass(slots=True)
class Assessment:
    """Flags and gate for one evaluation: `gate.act` says whether to decide now."""

    inputs: FlagInputs
    flags: Flags
    gate: GateDecision


@dataclass(frozen=True, slots=True)
class Decision:
    """What a decision records and starts: the perp (and spot) targets and plans."""

    reason: str
    target: Decimal
    spot_target: Decimal
    plan: TwapPlan | None
    spot_plan: TwapPlan | None
    summary: str
    record: dict[str, Any]
    carry_side: int
    carry_size: Decimal


def sizing_vol(state: MarketState, strategy: StrategySettings) -> float | None:
    """Annualised vol of hourly returns once warm (seeded from venue candles at start)."""
    return strategy_decide.sizing_vol(state.vol_sizing.annualised, state.vol_sizing.samples,
                                      strategy.vol_min_hours)


def compute_targets(state: MarketState, mark: Decimal, now_ns: int,
                    ctx: Context) -> strategy_decide.MarketTargets:
    """Sum the sleeves and apply the hard limits: the sleeves, perp target and spot target."""
    spot = state.spot
    flags = state.flags.tripped if state.flags is not None else ()
    readings = strategy_decide.MarketReadings(
        market=state.spec.ticker, now_ns=now_ns, price=mark,
        spot_price=spot.book.mid() if spot is not None else None,
        equity_usd=ctx.equity, peak_equity_usd=ctx.peak_equity, market_count=ctx.market_count,
        sizing_vol=sizing_vol(state, ctx.settings.strategy), funding_trend_1h=state.funding_trend.rate_1h,
        persistence_hours=state.funding.persistence_hours, step_size=state.spec.step_size,
        spot_step_size=spot.spec.step_size if spot is not None else None,
        perp_fee_rate=ctx.fees["dydx"].taker, spot_fee_rate=ctx.fees["binance"].taker,
        operator_target=resolve_target(ctx.operator, ctx.equity, mark, state.spec.step_size),
        flags_agree=len(flags) >= ctx.settings.rules.min_flags,
        maintenance_margin_fraction=state.spec.maintenance_margin_fraction,
        entry_trend_1h=state.entry_trend.rate_1h, baseline_vol=baseline_of(state.vol_sizing),
        price_trend=trend_of(state.vol_sizing),
    )
    reduce_only = None
    if ctx.risk_mode is RiskMode.REDUCE_ONLY:
        reduce_only = (state.position.size, spot.position.size if spot is not None else None)
    status = ctx.status
    if status_rules.unrestricted(status):  # the status lets every target through: nothing to apply
        return strategy_decide.market_targets(readings, ctx.strategy, state.carry_side, state.carry_watch,
                                              carry_size=state.carry_size, reduce_only_from=reduce_only,
                                              thesis_held=state.thesis_held)
    return strategy_decide.market_targets(readings, ctx.strategy, state.carry_side, state.carry_watch,
                                          carry_size=state.carry_size,
                                          reduce_only_from=reduce_only,
                                          restrict=lambda d: status_rules.restrict_target(
                                              status, d, state.position.size),
                                          held_size=lambda t: t.size if status_rules.may_place(status)
                                          else state.position.size, thesis_held=state.thesis_held)


def assess_gate(state: MarketState, mark: Decimal, now_ns: int, ctx: Context) -> Assessment:
    """The flags on the market's readings, then the gate: act on flags, or on an audit that drifted."""
    assert state.sizing is not None
    rules = ctx.settings.rules
    target, spot_target = state.sizing.size, state.pending_spot_target
    move = abs(target - state.position.size) or abs(target) or state.spec.min_order_size
    inputs = FlagInputs(
        market=state.spec.ticker,
        position_size=state.position.size,
        mark_price=mark,
        funding_rate_1h=state.funding.rate_1h,
        intended_size=move / ctx.settings.execution.twap_slices,
        depth_size=state.depth,
        depth_median=state.depth_median.median if len(state.depth_median) >= 10 else None,
        spread_bps=state.book.spread_bps(),
        vol_short=_warm(state.vol_short, VOL_SHORT_MIN_SAMPLES),
        vol_long=_warm(state.vol_long, VOL_LONG_MIN_SAMPLES),
        news=ctx.news,
        target_size=target,
        persistence_hours=state.funding.persistence_hours,
    )
    flags = evaluate_flags(inputs, rules, state.flags)
    drifted = outside_band(state, target, spot_target, mark, ctx)
    gate_state = state.gate
    if gate_state.last_audit_ns == 0 and not rules.audit_on_start:
        # A zero last-audit time makes the first audit due at once; skip it when asked.
        gate_state = GateState(gate_state.was_over, gate_state.last_flag_decision_ns, now_ns)
    gate = evaluate_gate(flags, gate_state, now_ns, min_flags=rules.min_flags,
                         debounce_secs=rules.debounce_secs, audit_interval_secs=rules.audit_interval_secs,
                         drifted=drifted)
    return Assessment(inputs, flags, gate)


def outside_band(state: MarketState, target: Decimal, spot_target: Decimal, mark: Decimal,
                 ctx: Context) -> bool:
    """An audit trades when a sleeve opens or closes, or a leg is outside its no-trade band."""
    if state.sleeves is not None and state.sleeves.carry_side != state.carry_side:
        return True
    rules = ctx.settings.rules
    vol = sizing_vol(state, ctx.settings.strategy)
    slippage = ctx.settings.strategy.carry.expected_slippage_bps / 10_000
    cost = ctx.fees["dydx"].taker + slippage
    if strategy_decide.audit_should_trade(state.position.size, target, mark, ctx.equity, vol, cost,
                                          state.spec.min_order_size, rules).outside:
        return True
    spot = state.spot
    spot_mid = spot.book.mid() if spot is not None else None
    if spot is None or spot_mid is None:
        return False
    spot_cost = ctx.fees["binance"].taker + slippage
    return strategy_decide.audit_should_trade(spot.position.size, spot_target, spot_mid, ctx.equity, vol,
                                              spot_cost, spot.spec.min_order_size, rules).outside


def plan_decision(state: MarketState, reason: str, inputs: FlagInputs, now_ns: int, seed: int,
         ctx: Context) -> Decision:
    """The plans that move the perp (and spot hedge) to target, and the decision's record."""
    assert state.flags is not None and state.sizing is not None and state.sleeves is not None
    target, spot_target, sleeves = state.sizing.size, state.pending_spot_target, state.sleeves
    ex = ctx.settings.execution
    perp = plan_twap(state.spec, state.position.size, target, ex, now_ns, seed)
    if perp is not None and ex.passive_when_funding_favours and funding_favours(
            perp.side, state.funding.rate_1h):
        perp = replace(perp, passive=True)
    if perp is not None and status_rules.passive_only(ctx.status):
        perp = replace(perp, passive=True, post_only=True)
    if not status_rules.may_place(ctx.status) or ctx.settlement_hold:
        perp = None
    spot = state.spot
    spot_plan = None
    if spot is not None:
        spot_plan = plan_twap(spot.spec, spot.position.size, spot_target, ex, now_ns, seed)
    summary = summarize_decision(reason, state.flags.tripped, state.target, target, perp,
                                 state.sizing.limited_by, sleeves,
                                 (spot.target, spot_target, spot_plan) if spot is not None else None,
                                 (state.position.size, spot.position.size if spot is not None else None))
    record: dict[str, Any] = {
        "gate": reason, "summary": summary,
        "target_before": str(state.target), "target_after": str(target),
        "position": str(state.position.size), "mark": str(inputs.mark_price),
        "sizing": state.sizing.as_dict(), "sleeves": sleeves.as_dict(),
        "plan": perp.as_dict() if perp else {"action": "none"},
        "inputs": inputs.as_dict(),
    }
    if spot is not None:
        record["spot"] = {
            "market": spot.ticker, "target_before": str(spot.target),
            "target_after": str(spot_target), "position": str(spot.position.size),
            "plan": spot_plan.as_dict() if spot_plan else {"action": "none"},
            "hedge": "follows_perp_fills" if perp is not None else "spot_only",
        }
    carry = next((t for t in sleeves.targets if t.sleeve == "carry"), None)
    carry_size = abs(carry.perp) if carry is not None and sleeves.carry_side else ZERO
    return Decision(reason, target, spot_target, perp, spot_plan, summary, record, sleeves.carry_side,
                    carry_size)


def funding_favours(side: Side, rate_1h: Decimal) -> bool:
    """Positive funding: longs pay, so selling is favoured; negative: shorts pay, buying is."""
    if not rate_1h:
        return False
    return (rate_1h > 0) if side is Side.SELL else (rate_1h < 0)


def _warm(vol: EwmaVol, min_samples: int) -> float | None:
    return vol.annualised if vol.samples >= min_samples else None
