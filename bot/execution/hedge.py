"""The spot hedge of a hedged sleeve, driven by the perp leg's fills (pure: state + clock in, decisions out).

Per hedged market the hedge keeps `required`: the spot position the perp fills so far call for.
A decision sets the leg's `goal` (the spot target) and a `ratio`: spot units required per signed
perp unit the current perp parent fills (-1 for a pure carry open: short 1 perp, buy 1 spot).
Each perp fill of that parent moves `required` toward the goal, never past it, and records an
obligation: the spot position must reach that level within `hedge_lag_secs`. A decision that
moves only the spot leg sets `required` to the goal at once. A fill of a leg that is over (its
parent replaced by a newer decision's, or given up by an unwind) is still owed, at its own leg's
ratio, and moves the goal with it (`on_stray_fill`).

    mismatch (base) = hedged perp delta + spot delta = -required + spot position
    mismatch (USD)  = mismatch (base) x perp mark
    leg risk        = integral of |mismatch USD| dt while the legs are apart (USD*s); it starts
                      over once they match (within the smallest hedge order, `min_notional_usd`)

Bounds: the perp leg has at most `perp_headroom` working (its children are capped so that if
all of it fills before the spot leg trades, |mismatch USD| reaches `hedge_max_mismatch_usd` at
the mark of the moment it was sent), and sends nothing while the limit is reached.

Unwind policy (the only one): when a leg cannot be completed, i.e. the leg risk exceeds
`hedge_leg_risk_budget_usd_secs` or `hedge_max_rejects` spot hedge orders in a row were refused
(venue down or rejecting), the perp leg is brought back to the hedged size (-spot position)
with one reduce-only IOC bounded by the slippage cap. What that IOC does not trade (a thin book)
is still held, so its hedge is owed again (`on_unwind_short`): the spot leg follows it or the
leg risk gives it up once more. The perp is never grown to match the spot
leg (a failed close is not re-opened): that part stays with the spot hedge, which keeps
working. The running parents of both legs stop, the unwind's fees are counted, and the carry
sleeve is latched closed for `hedge_cooldown_secs` so the bot does not re-open a position that
just failed. An unwind that would change nothing (no perp to reduce, nothing to stop or cancel)
does not fire again while that cooldown runs: at most once per cooldown for a stuck leg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal

from bot.clock import NS_PER_SEC
from bot.config import ExecutionSettings
from bot.domain import ZERO, BookLevel, MarketSpec, Side
from bot.execution.twap import TwapPlan, plan_twap, size_child

HEDGE_META_PREFIX = "hedge:"  # store meta key per hedged market: what `persisted` returns


@dataclass(frozen=True, slots=True)
class Obligation:
    """A perp fill's hedge: the spot position must reach `required` (moving `direction`) by `due_ns`."""

    due_ns: int
    required: Decimal
    direction: int  # +1: spot must rise to `required`; -1: fall to it
    late: bool = False  # counted as a lag breach already


@dataclass(frozen=True, slots=True)
class HedgeState:
    """The hedge of one perp market by its spot leg."""

    market: str
    spot_market: str
    required: Decimal = ZERO
    goal: Decimal = ZERO
    ratio: Decimal = ZERO  # spot units per signed perp unit of the current parent (0: none)
    obligations: tuple[Obligation, ...] = ()
    leg_risk_usd_secs: Decimal = ZERO
    last_ns: int | None = None
    rejects: int = 0  # spot hedge orders refused in a row
    latched_until_ns: int = 0  # the carry sleeve stays closed until then
    unwinds: int = 0
    unwind_fees_usd: Decimal = ZERO
    lag_breaches: int = 0  # obligations that were late
    last_unwind_reason: str = ""

    def mismatch(self, spot_position: Decimal) -> Decimal:
        """Hedged perp delta + spot delta, in base units (> 0: net long)."""
        return spot_position - self.required

    def mismatch_usd(self, spot_position: Decimal, mark: Decimal | None) -> Decimal:
        return self.mismatch(spot_position) * mark if mark is not None else ZERO

    def latched(self, now_ns: int) -> bool:
        return now_ns < self.latched_until_ns


@dataclass(frozen=True, slots=True)
class Unwind:
    """The one-leg unwind: a reduce-only perp change (signed, 0: none possible) and why."""

    perp_change: Decimal
    reason: str


def restored(market: str, spot_market: str, spot_position: Decimal,
             saved: tuple[Decimal, int] | None = None) -> HedgeState:
    """The hedge after a restart (reconciliation is done).

    `saved` is what `persisted` returned before the restart: the spot position the perp fills
    called for and the carry latch. With it an unhedged gap left by the crash is still owed
    (the next tick tops it up, and its leg risk counts); without it (a store from before this
    was kept) the spot leg as it stands is taken as the hedge.
    """
    if saved is None:
        return HedgeState(market, spot_market, required=spot_position, goal=spot_position)
    required, latched_until_ns = saved
    return HedgeState(market, spot_market, required=required, goal=required,
                      latched_until_ns=latched_until_ns)


def persisted(state: HedgeState) -> tuple[Decimal, int]:
    """What must survive a restart: (required spot position, carry latched until ns)."""
    return state.required, state.latched_until_ns


def start_leg(state: HedgeState, perp_position: Decimal, perp_target: Decimal, spot_goal: Decimal,
              perp_moves: bool, now_ns: int, p: ExecutionSettings) -> HedgeState:
    """A decision: the spot leg goes to `spot_goal`, following the perp parent's fills if it moves."""
    if perp_moves and perp_target != perp_position:
        ratio = (spot_goal - state.required) / (perp_target - perp_position)
        return replace(state, goal=spot_goal, ratio=ratio)
    obligations = state.obligations
    if spot_goal != state.required:  # the spot leg moves alone: due within the lag from now
        direction = 1 if spot_goal > state.required else -1
        obligations += (Obligation(now_ns + _lag_ns(p), spot_goal, direction),)
    return replace(state, required=spot_goal, goal=spot_goal, ratio=ZERO, obligations=obligations)


def on_perp_fill(state: HedgeState, signed_size: Decimal, ts_ns: int, p: ExecutionSettings) -> HedgeState:
    """A fill of the current perp parent: its hedge becomes due (never beyond the leg's goal)."""
    if not state.ratio or not signed_size:
        return state
    moved = state.required + signed_size * state.ratio
    low, high = sorted((state.required, state.goal))
    required = min(max(moved, low), high)
    if required == state.required:
        return state
    direction = 1 if required > state.required else -1
    return replace(state, required=required,
                   obligations=(*state.obligations, Obligation(ts_ns + _lag_ns(p), required, direction)))


def on_stray_fill(state: HedgeState, signed_size: Decimal, ratio: Decimal, ts_ns: int,
                  p: ExecutionSettings) -> HedgeState:
    """A fill of a perp parent whose leg is over (a newer decision replaced it, or an unwind gave
    it up) that the venue reported late: the perp traded all the same, so its hedge is owed at
    that parent's own `ratio`, and the current leg's goal moves with it (never clamped)."""
    return _owe(state, signed_size * ratio, ts_ns, p)


def on_unwind_short(state: HedgeState, missed: Decimal, ts_ns: int, p: ExecutionSettings) -> HedgeState:
    """An unwind ended short: `missed` (signed) of its perp change did not trade (an IOC bounded
    by the slippage cap met a thin book). `plan_unwind` took it all as done; the perp it kept is
    still held, so its hedge is owed again (and its mismatch shows until then)."""
    return _owe(state, missed, ts_ns, p)


def _owe(state: HedgeState, change: Decimal, ts_ns: int, p: ExecutionSettings) -> HedgeState:
    """`required` and the leg's goal move by `change`, due within the hedge lag."""
    if not change:
        return state
    required = state.required + change
    return replace(state, required=required, goal=state.goal + change,
                   obligations=(*state.obligations, Obligation(ts_ns + _lag_ns(p), required,
                                                                1 if change > 0 else -1)))


def observe(state: HedgeState, spot_position: Decimal, mark: Decimal | None, now_ns: int,
            p: ExecutionSettings) -> HedgeState:
    """Accrue leg risk since the last look, settle met obligations, count late ones."""
    exposure = abs(state.mismatch_usd(spot_position, mark))
    matched = exposure < p.min_notional_usd
    risk = state.leg_risk_usd_secs
    if matched:
        risk = ZERO
    elif state.last_ns is not None and now_ns > state.last_ns:
        risk += exposure * Decimal(now_ns - state.last_ns) / NS_PER_SEC
    pending = []
    breaches = 0
    for o in state.obligations:
        if matched or (spot_position - o.required) * o.direction >= 0:
            continue  # met
        if o.due_ns < now_ns and not o.late:
            breaches += 1
            o = replace(o, late=True)
        pending.append(o)
    return replace(state, leg_risk_usd_secs=risk, last_ns=now_ns, obligations=tuple(pending),
                   lag_breaches=state.lag_breaches + breaches)


def lag_exceeded(state: HedgeState, now_ns: int) -> bool:
    """Some perp fill has not been matched on spot within the hedge lag."""
    return any(o.due_ns < now_ns for o in state.obligations)


def perp_may_trade(state: HedgeState, spot_position: Decimal, mark: Decimal | None,
                   p: ExecutionSettings) -> bool:
    """The perp leg may send its next child: the unhedged delta is within the limit."""
    if not state.ratio:
        return True
    return abs(state.mismatch_usd(spot_position, mark)) <= p.hedge_max_mismatch_usd


def perp_headroom(state: HedgeState, spot_position: Decimal, mark: Decimal | None,
                  p: ExecutionSettings) -> Decimal | None:
    """Perp size (base, unsigned) whose fills the hedge can owe before |mismatch USD| reaches the
    limit: what the perp leg may have working. None: no limit applies (no ratio, or no mark).

    Every fill of the current perp parent moves `required` away from the spot position until
    the spot hedge trades, so it is counted as growing the mismatch (conservative when the spot
    leg is ahead).
    """
    if not state.ratio or mark is None or mark <= 0:
        return None
    room_usd = p.hedge_max_mismatch_usd - abs(state.mismatch_usd(spot_position, mark))
    return max(room_usd, ZERO) / mark / abs(state.ratio)


def on_spot_result(state: HedgeState, rejected: bool) -> HedgeState:
    """A spot hedge order ended: a refusal counts toward giving up, a fill starts the count over."""
    return replace(state, rejects=state.rejects + 1 if rejected else 0)


def unwind_reason(state: HedgeState, p: ExecutionSettings) -> str | None:
    """Why the leg cannot be completed, or None while it still can."""
    if state.leg_risk_usd_secs > p.hedge_leg_risk_budget_usd_secs:
        return "leg_risk_budget"
    if state.rejects >= p.hedge_max_rejects:
        return "spot_rejects"
    return None


def plan_unwind(state: HedgeState, perp_position: Decimal, spot_position: Decimal, reason: str,
                now_ns: int, p: ExecutionSettings, perp_step: Decimal) -> tuple[HedgeState, Unwind]:
    """Bring the perp back to the hedged size (reduce-only, never grown); latch the sleeve closed."""
    wanted = -state.mismatch(spot_position)  # perp change that makes the legs match
    change = ZERO
    if perp_position and wanted and (wanted > 0) != (perp_position > 0):
        size = min(abs(wanted), abs(perp_position))
        size = (size / perp_step).to_integral_value(rounding=ROUND_DOWN) * perp_step
        change = size.copy_sign(wanted)
    required = state.required - change
    after = replace(state, required=required, goal=required, ratio=ZERO, obligations=(),
                    leg_risk_usd_secs=ZERO, rejects=0,
                    latched_until_ns=now_ns + int(p.hedge_cooldown_secs * NS_PER_SEC),
                    unwinds=state.unwinds + 1, last_unwind_reason=reason)
    return after, Unwind(change, reason)


def add_unwind_fee(state: HedgeState, fee: Decimal) -> HedgeState:
    return replace(state, unwind_fees_usd=state.unwind_fees_usd + fee)


def hedge_gap(state: HedgeState, spot_position: Decimal, in_flight: Decimal) -> Decimal:
    """Spot still to trade (signed) beyond what is filled and what is already working."""
    return state.required - spot_position - in_flight


def plan_hedge(spec: MarketSpec, gap: Decimal, working_from: Decimal, levels: list[BookLevel],
               p: ExecutionSettings, now_ns: int, seed: int) -> TwapPlan | None:
    """A spot parent for `gap`: one child when the book takes it, else the TWAP planner's slices.

    `levels` are the levels the hedge would take (asks for a buy); a large hedge is spread over
    half the hedge lag so each fill is matched in time.
    """
    if abs(gap) < spec.min_order_size:
        return None
    probe = size_child(_side_of(gap), abs(gap), levels, spec, p)
    capacity = probe.size if probe is not None else spec.min_order_size
    slices = 1 if capacity >= abs(gap) else max(1, min(p.twap_slices * 4, math.ceil(abs(gap) / capacity)))
    settings = p.model_copy(update={"twap_slices": slices,
                                    "twap_duration_secs": max(p.hedge_lag_secs / 2, 0.1)})
    plan = plan_twap(spec, working_from, working_from + gap, settings, now_ns, seed)
    if plan is None:
        return None
    return replace(plan, reduce_only=False)  # spot has no reduce-only


def spot_order_refusal(signed_size: Decimal, spot_position: Decimal, working: Decimal, price: Decimal,
                       max_notional_usd: Decimal, max_mismatch_usd: Decimal,
                       required: Decimal) -> str | None:
    """Why a spot hedge order breaks the risk limits, or None.

    `working` is the signed size our open spot orders may still trade, this one included;
    `required` the spot position the hedge owes. An order that grows |position + working| beyond
    the largest hedge sizing allows (the perp's notional cap, plus the mismatch the hedge may lag
    by, at `price`) is refused, unless it brings position + working closer to `required`: a
    carry held through a rally sits above the cap at today's price, and the buy that restores
    its hedge (a commission bought back) must not count toward an unwind. One that shrinks the
    exposure is never refused. A runaway (the same order sent again and again) therefore stops
    within one order of the larger of the cap and the hedge owed.
    """
    after = spot_position + working
    before = after - signed_size
    if abs(after) <= abs(before) or abs(after - required) < abs(before - required):
        return None
    limit = max_notional_usd + max_mismatch_usd
    if abs(after) * price <= limit:
        return None
    return (f"spot exposure {after} x {price} beyond {limit} USD (position {spot_position}, "
            f"working {working}, hedge {required})")


def _side_of(gap: Decimal) -> Side:
    return Side.BUY if gap > 0 else Side.SELL


def _lag_ns(p: ExecutionSettings) -> int:
    return int(p.hedge_lag_secs * NS_PER_SEC)
