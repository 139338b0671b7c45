"""Watchdog observations -> per-input state -> risk mode (pure: no IO, no clock; `now_ns` is passed in).

Two steps, both deterministic:

1. `classify(observation, settings)` maps each input to a `Reading`: OK, DEGRADED or CRITICAL,
   with the number behind it and a reason. A missing number (no source yet) is OK: an input
   that cannot be measured must not halt trading by itself; the chain head's age is measured
   from the watchdog's start, so a feed that never delivers still degrades.
2. `step_mode(state, readings, now_ns, hold_off_secs, latched)` moves the risk-mode state machine:

   | input states (worst wins) | target      |
   |---------------------------|-------------|
   | all OK                    | NORMAL      |
   | any DEGRADED              | REDUCE_ONLY |
   | any CRITICAL              | HALTED      |

   A target worse than the current mode applies at once. A better one applies only after the
   target has stayed at or below it for `hold_off_secs` (per level: HALTED may recover to
   REDUCE_ONLY while one input is still degraded). The kill latch forces HALTED and is never
   lifted here: only the operator's `resume` clears it, after which the current target applies.
   Every change carries a reason.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from bot.clock import NS_PER_SEC
from bot.config import WatchdogSettings
from bot.domain import RiskMode

_RANK = {RiskMode.NORMAL: 0, RiskMode.REDUCE_ONLY: 1, RiskMode.HALTED: 2}
_RECOVERY_LEVELS = (RiskMode.NORMAL, RiskMode.REDUCE_ONLY)  # least severe first


class InputState(enum.IntEnum):
    OK = 0
    DEGRADED = 1
    CRITICAL = 2

    @property
    def mode(self) -> RiskMode:
        """The risk mode this input state asks for."""
        return (RiskMode.NORMAL, RiskMode.REDUCE_ONLY, RiskMode.HALTED)[self]


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample of every watchdog input; None: not measurable now (no source, or not yet)."""

    head_age_secs: float | None = None  # since the chain head last advanced
    block_interval_secs: float | None = None  # mean over the recent window
    indexer_lag_blocks: int | None = None  # node head - indexer height
    feed_silence_secs: Mapping[str, float] = field(default_factory=dict)  # per subscription
    error_rate: float | None = None  # failed share of probes over the window (None: few samples)
    withdrawals_unblocked_at_block: int | None = None  # gating: exits frozen until this height
    head_height: int | None = None
    withdrawal_capacity_usd: Decimal | None = None  # the smallest limiter's capacity
    account_age_secs: Mapping[str, float] = field(default_factory=dict)  # live: per venue account


@dataclass(frozen=True, slots=True)
class Reading:
    """One input's state, the number behind it and (when not OK) why."""

    name: str
    state: InputState
    value: float | None
    reason: str = ""


def _grade(name: str, value: float | None, degraded: float, critical: float, unit: str) -> Reading:
    if value is None:
        return Reading(name, InputState.OK, None)
    shown = f"{value:.3g}{unit}"
    if value >= critical:
        return Reading(name, InputState.CRITICAL, value, f"{name} {shown} >= {critical:g}{unit}")
    if value >= degraded:
        return Reading(name, InputState.DEGRADED, value, f"{name} {shown} >= {degraded:g}{unit}")
    return Reading(name, InputState.OK, value)


def classify(obs: Observation, settings: WatchdogSettings) -> tuple[Reading, ...]:
    """Grade every input of an observation against the configured thresholds."""
    s = settings
    readings = [
        _grade("chain_head_age", obs.head_age_secs, s.head_stall_degraded_secs, s.head_stall_critical_secs,
               "s"),
        _grade("block_interval", obs.block_interval_secs, s.block_interval_degraded_secs, float("inf"), "s"),
        _grade("indexer_lag", None if obs.indexer_lag_blocks is None else float(obs.indexer_lag_blocks),
               s.indexer_lag_degraded_blocks, s.indexer_lag_critical_blocks, " blocks"),
        _grade("error_rate", obs.error_rate, s.error_rate_degraded, s.error_rate_critical, ""),
    ]
    for key in sorted(obs.feed_silence_secs):
        readings.append(_grade(f"feed:{key}", obs.feed_silence_secs[key], s.feed_stale_degraded_secs,
                               s.feed_stale_critical_secs, "s"))
    for venue in sorted(obs.account_age_secs):
        readings.append(_grade(f"account:{venue}", obs.account_age_secs[venue], s.account_stale_degraded_secs,
                               s.account_stale_critical_secs, "s"))
    readings.append(_gating(obs, s))
    readings.append(_capacity(obs, s))
    return tuple(readings)


def _gating(obs: Observation, s: WatchdogSettings) -> Reading:
    until, head = obs.withdrawals_unblocked_at_block, obs.head_height
    if until is None or head is None:
        return Reading("withdrawal_gating", InputState.OK, None)
    # DYDX_V4.md §5.2: exits are frozen while the unblock height is still ahead of the head.
    blocks_left = max(0, until - head)
    if not blocks_left or s.withdrawal_gating_action == "ignore":
        return Reading("withdrawal_gating", InputState.OK, float(blocks_left))
    state = InputState.CRITICAL if s.withdrawal_gating_action == "halt" else InputState.DEGRADED
    return Reading("withdrawal_gating", state, float(blocks_left),
                   f"withdrawal_gating: exits frozen until block {until} ({blocks_left} blocks)")


def _capacity(obs: Observation, s: WatchdogSettings) -> Reading:
    capacity = obs.withdrawal_capacity_usd
    if capacity is None:
        return Reading("withdrawal_capacity", InputState.OK, None)
    if s.min_withdrawal_capacity_usd and capacity < s.min_withdrawal_capacity_usd:
        return Reading("withdrawal_capacity", InputState.DEGRADED, float(capacity),
                       f"withdrawal_capacity {capacity} USDC < {s.min_withdrawal_capacity_usd}")
    return Reading("withdrawal_capacity", InputState.OK, float(capacity))


def target_mode(readings: Iterable[Reading]) -> tuple[RiskMode, str]:
    """The worst input wins; the reason lists every input at that worst state."""
    readings = list(readings)
    worst = max((r.state for r in readings), default=InputState.OK)
    if worst is InputState.OK:
        return RiskMode.NORMAL, "all inputs clear"
    return worst.mode, "; ".join(r.reason for r in readings if r.state is worst)


@dataclass(frozen=True, slots=True)
class ModeState:
    """The watchdog's risk mode and, per recovery level, since when the target allowed it."""

    mode: RiskMode = RiskMode.NORMAL
    reason: str = ""
    latched: bool = False
    clear_since_ns: tuple[int | None, int | None] = (None, None)  # target <= NORMAL, <= REDUCE_ONLY


@dataclass(frozen=True, slots=True)
class ModeChange:
    old: RiskMode
    new: RiskMode
    reason: str


def step_mode(
    state: ModeState,
    target: RiskMode,
    target_reason: str,
    now_ns: int,
    hold_off_secs: float,
    *,
    latched: bool = False,
) -> tuple[ModeState, ModeChange | None]:
    """Advance the risk-mode state machine by one observation; return the new state and any change."""
    if latched:
        reason = "kill latched (only an operator resume lifts it)"
        new = ModeState(RiskMode.HALTED, reason, True)
        return new, None if state.mode is RiskMode.HALTED and state.latched else ModeChange(
            state.mode, RiskMode.HALTED, reason)
    clear = (_clear_since(state.clear_since_ns[0], target, RiskMode.NORMAL, now_ns),
             _clear_since(state.clear_since_ns[1], target, RiskMode.REDUCE_ONLY, now_ns))
    if state.latched:
        # The operator resumed: the current conditions apply from now, without a hold-off.
        reason = f"kill latch cleared; {target_reason}"
        return ModeState(target, reason, False, clear), ModeChange(state.mode, target, reason)
    if _RANK[target] > _RANK[state.mode]:
        return (ModeState(target, target_reason, False, clear),
                ModeChange(state.mode, target, target_reason))
    hold_off_ns = int(hold_off_secs * NS_PER_SEC)
    for level, since in zip(_RECOVERY_LEVELS, clear, strict=True):
        if _RANK[level] < _RANK[state.mode] and since is not None and now_ns - since >= hold_off_ns:
            held = (now_ns - since) / NS_PER_SEC
            reason = f"recovered from {state.mode.value}: clear for {held:.1f}s (hold-off {hold_off_secs:g}s)"
            if level is not RiskMode.NORMAL:
                reason += f"; still {target_reason}"
            return ModeState(level, reason, False, clear), ModeChange(state.mode, level, reason)
    return ModeState(state.mode, state.reason, False, clear), None


def _clear_since(since: int | None, target: RiskMode, level: RiskMode, now_ns: int) -> int | None:
    """Since when the target has been at or below `level` (None: it is above it now)."""
    if _RANK[target] > _RANK[level]:
        return None
    return since if since is not None else now_ns
