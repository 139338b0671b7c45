"""The gate: act on a market when at least `min_flags` trip, or on a scheduled audit (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.clock import NS_PER_SEC
from bot.rules.flags import Flags


@dataclass(frozen=True, slots=True)
class GateState:
    """What the gate remembers per market between evaluations."""

    was_over: bool = False
    last_flag_decision_ns: int | None = None  # None: never
    last_audit_ns: int = 0


# Not frozen: built on every evaluation and read at once (a frozen __init__ costs twice as much).
@dataclass(slots=True)
class GateDecision:
    act: bool
    reason: str  # "flags" | "audit" | "" (no action)
    tripped: tuple[str, ...]
    state: GateState


def in_band(position: Decimal, target: Decimal, tolerance: Decimal, min_size: Decimal) -> bool:
    """True when the position is within the tolerance band around the target."""
    return abs(target - position) <= max(abs(target) * tolerance, min_size)


def evaluate_gate(
    flags: Flags,
    state: GateState,
    now_ns: int,
    *,
    min_flags: int,
    debounce_secs: Decimal,
    audit_interval_secs: float,
    drifted: bool = False,
) -> GateDecision:
    """Decide whether to rebalance now.

    Flags act on the rising edge of `>= min_flags`, once per debounce window, so one burst
    of events gives one decision. An audit acts only when exposure drifted out of its band.
    """
    tripped = flags.tripped
    over = len(tripped) >= min_flags
    debounce_ns = int(debounce_secs * NS_PER_SEC)
    debounced = (
        state.last_flag_decision_ns is not None
        and now_ns - state.last_flag_decision_ns < debounce_ns
    )
    if over and not state.was_over and not debounced:
        new = GateState(True, now_ns, state.last_audit_ns)
        return GateDecision(True, "flags", tripped, new)
    audit_ns = int(audit_interval_secs * NS_PER_SEC)
    if now_ns - state.last_audit_ns >= audit_ns:
        new = GateState(over, state.last_flag_decision_ns, now_ns)
        return GateDecision(drifted, "audit" if drifted else "", tripped, new)
    if state.was_over != over:  # only the flags' edge moved
        state = GateState(over, state.last_flag_decision_ns, state.last_audit_ns)
    return GateDecision(False, "", tripped, state)
