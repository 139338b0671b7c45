"""Watchdog core: input grading (table-driven) and the risk-mode state machine (properties)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import WatchdogSettings
from bot.domain import RiskMode
from bot.watchdog.mode import (
    InputState,
    ModeState,
    Observation,
    Reading,
    classify,
    step_mode,
    target_mode,
)

NS = 1_000_000_000
RANK = {RiskMode.NORMAL: 0, RiskMode.REDUCE_ONLY: 1, RiskMode.HALTED: 2}
S = WatchdogSettings(
    head_stall_degraded_secs=5, head_stall_critical_secs=15, indexer_lag_degraded_blocks=10,
    indexer_lag_critical_blocks=300, feed_stale_degraded_secs=15, feed_stale_critical_secs=60,
    error_rate_degraded=0.25, error_rate_critical=0.9, block_interval_degraded_secs=2,
    min_withdrawal_capacity_usd=Decimal(1000),
)


def state_of(readings: tuple[Reading, ...], name: str) -> InputState:
    return next(r.state for r in readings if r.name == name)


@pytest.mark.parametrize(("obs", "name", "expected"), [
    (Observation(), "chain_head_age", InputState.OK),
    (Observation(head_age_secs=4.9), "chain_head_age", InputState.OK),
    (Observation(head_age_secs=5.0), "chain_head_age", InputState.DEGRADED),
    (Observation(head_age_secs=15.0), "chain_head_age", InputState.CRITICAL),
    (Observation(block_interval_secs=0.65), "block_interval", InputState.OK),
    (Observation(block_interval_secs=2.5), "block_interval", InputState.DEGRADED),
    (Observation(indexer_lag_blocks=2), "indexer_lag", InputState.OK),
    (Observation(indexer_lag_blocks=30), "indexer_lag", InputState.DEGRADED),
    (Observation(indexer_lag_blocks=300), "indexer_lag", InputState.CRITICAL),
    (Observation(error_rate=0.1), "error_rate", InputState.OK),
    (Observation(error_rate=0.5), "error_rate", InputState.DEGRADED),
    (Observation(error_rate=1.0), "error_rate", InputState.CRITICAL),
    (Observation(feed_silence_secs={"v4_orderbook:BTC-USD": 20}), "feed:v4_orderbook:BTC-USD",
     InputState.DEGRADED),
    (Observation(feed_silence_secs={"v4_orderbook:BTC-USD": 61}), "feed:v4_orderbook:BTC-USD",
     InputState.CRITICAL),
    (Observation(withdrawals_unblocked_at_block=150, head_height=100), "withdrawal_gating",
     InputState.DEGRADED),
    (Observation(withdrawals_unblocked_at_block=100, head_height=100), "withdrawal_gating", InputState.OK),
    (Observation(withdrawals_unblocked_at_block=0, head_height=100), "withdrawal_gating", InputState.OK),
    (Observation(withdrawal_capacity_usd=Decimal(999)), "withdrawal_capacity", InputState.DEGRADED),
    (Observation(withdrawal_capacity_usd=Decimal(10**6)), "withdrawal_capacity", InputState.OK),
])
def test_inputs_are_graded_against_their_thresholds(
    obs: Observation, name: str, expected: InputState
) -> None:
    readings = classify(obs, S)
    assert state_of(readings, name) is expected
    reading = next(r for r in readings if r.name == name)
    assert bool(reading.reason) == (expected is not InputState.OK)


@pytest.mark.parametrize(("action", "expected"), [
    ("ignore", InputState.OK), ("reduce_only", InputState.DEGRADED), ("halt", InputState.CRITICAL)])
def test_withdrawal_gating_reaction_is_configurable(action: str, expected: InputState) -> None:
    s = WatchdogSettings(withdrawal_gating_action=action)  # type: ignore[arg-type]
    obs = Observation(withdrawals_unblocked_at_block=150, head_height=100)
    assert state_of(classify(obs, s), "withdrawal_gating") is expected


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="indexer_lag"):
        WatchdogSettings(indexer_lag_degraded_blocks=50, indexer_lag_critical_blocks=20)


TABLE = [  # (now_s, target, expected mode after the step), hold-off 10 s, from NORMAL
    (0, RiskMode.NORMAL, RiskMode.NORMAL),
    (1, RiskMode.REDUCE_ONLY, RiskMode.REDUCE_ONLY),  # degradation is immediate
    (2, RiskMode.HALTED, RiskMode.HALTED),
    (3, RiskMode.NORMAL, RiskMode.HALTED),  # clear since 3 s
    (12, RiskMode.NORMAL, RiskMode.HALTED),  # 9 s clear: not yet
    (13, RiskMode.NORMAL, RiskMode.NORMAL),  # 10 s clear: recovered
    (14, RiskMode.HALTED, RiskMode.HALTED),
    (15, RiskMode.REDUCE_ONLY, RiskMode.HALTED),
    (20, RiskMode.NORMAL, RiskMode.HALTED),  # <= REDUCE_ONLY since 15 s, NORMAL since 20 s
    (25, RiskMode.NORMAL, RiskMode.REDUCE_ONLY),  # REDUCE_ONLY level clear for 10 s
    (29, RiskMode.REDUCE_ONLY, RiskMode.REDUCE_ONLY),  # NORMAL's clock restarts
    (35, RiskMode.NORMAL, RiskMode.REDUCE_ONLY),
    (44, RiskMode.NORMAL, RiskMode.REDUCE_ONLY),
    (45, RiskMode.NORMAL, RiskMode.NORMAL),
]


def test_mode_table() -> None:
    state = ModeState()
    for now_s, target, expected in TABLE:
        state, change = step_mode(state, target, f"target {target}", now_s * NS, 10.0)
        assert state.mode is expected, (now_s, target)
        if change is not None:
            assert change.new is expected and change.reason


def test_kill_latch_holds_halted_and_resume_applies_the_current_target_at_once() -> None:
    state, change = step_mode(ModeState(), RiskMode.NORMAL, "clear", 0, 10.0, latched=True)
    assert state.mode is RiskMode.HALTED and change is not None and "kill" in change.reason
    for t in range(1, 100):
        state, change = step_mode(state, RiskMode.NORMAL, "clear", t * NS, 10.0, latched=True)
        assert state.mode is RiskMode.HALTED and change is None
    state, change = step_mode(state, RiskMode.REDUCE_ONLY, "lag", 100 * NS, 10.0)
    assert state.mode is RiskMode.REDUCE_ONLY and change is not None and "latch cleared" in change.reason


def test_worst_input_wins_and_the_reason_names_it() -> None:
    readings = classify(Observation(head_age_secs=20, indexer_lag_blocks=50, error_rate=0.0), S)
    mode, reason = target_mode(readings)
    assert mode is RiskMode.HALTED and "chain_head_age" in reason and "indexer_lag" not in reason


modes = st.sampled_from(list(RiskMode))
steps = st.lists(st.tuples(st.integers(0, 5 * NS), modes, st.booleans()), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(steps=steps, hold_off_secs=st.floats(0, 10), start=modes)
def test_mode_never_recovers_before_the_hold_off(
    steps: list[tuple[int, RiskMode, bool]], hold_off_secs: float, start: RiskMode
) -> None:
    hold_off_ns = int(hold_off_secs * NS)
    state = ModeState(start, "start")
    now = 0
    history: list[tuple[int, RiskMode]] = []
    for dt, target, latched in steps:
        now += dt
        before = state
        state, change = step_mode(state, target, "t", now, hold_off_secs, latched=latched)
        history.append((now, target))
        if latched:
            assert state.mode is RiskMode.HALTED  # the latch always holds
            continue
        assert RANK[state.mode] >= RANK[target]  # degradation is immediate
        if change is None:
            assert state.mode is before.mode
        elif RANK[state.mode] < RANK[before.mode] and not before.latched:
            # A recovery to `level`: the target has been at or below it for the whole hold-off.
            level = state.mode
            above = [i for i, (_, m) in enumerate(history) if RANK[m] > RANK[level]]
            run_start = history[above[-1] + 1][0] if above else history[0][0]
            assert now - run_start >= hold_off_ns, (history, level)
            assert change.reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(list(InputState))),
                min_size=1, max_size=8))
def test_worst_input_wins(pairs: list[tuple[str, InputState]]) -> None:
    readings = [Reading(name, state, 1.0, f"{name} bad" if state else "") for name, state in pairs]
    mode, reason = target_mode(readings)
    worst = max(state for _, state in pairs)
    assert mode is worst.mode
    for name, state in pairs:
        if state is worst and state is not InputState.OK:
            assert f"{name} bad" in reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * NS), modes), min_size=1, max_size=60), st.floats(0.5, 5))
def test_watchdog_never_lifts_a_latched_halt(steps: list[tuple[int, RiskMode]], hold_off_secs: float) -> None:
    state, now = ModeState(RiskMode.HALTED, "kill", latched=True), 0
    for dt, target in steps:
        now += dt
        state, change = step_mode(state, target, "t", now, hold_off_secs, latched=True)
        assert state.mode is RiskMode.HALTED and state.latched and change is None
