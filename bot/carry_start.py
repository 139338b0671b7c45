"""The carry sleeve's committed state at start, from the legs the venues hold after reconciliation.

A hedged market's carry (short perp, long spot; or the mirror) is committed in three places that
must agree: the sleeve's side and size (`MarketState.carry_side`, `carry_size`), the spot target,
and the spot position the hedge owes (`HedgeState.required`, persisted with every perp fill it
follows). The engine builds them from the store (the fallback: a start without reconciliation,
as a backtest's); the daemon builds them again once every venue was reconciled (bot.app), so a
restart follows what the venues hold, not the store's view from before the downtime:

* the spot the hedge owes is the carry: it is what the perp fills of the carry called for, so a
  hedge cut short by a crash (the perp filled, the spot not yet) is still owed and bought, and a
  hedge the exit was closing is still closed. The spot position alone cannot say either: taken
  as the carry it would re-open a carry being closed, or close one being opened, while the
  hedge does the opposite (a round trip on both legs). A store without a hedge record (from
  before they were kept) takes the spot held after reconciliation as the hedge.
* spot that left the account while the daemon was down (the reconciliation booked the store down
  to the balance beyond `bot.recovery.beyond_tolerance`: sold or withdrawn by hand) is gone from the carry:
  it comes out of what the store held beyond the hedge first, then out of the carry, so the
  hedge does not buy it back; the next decision trades the perp to the smaller carry. A
  shortfall within the tolerance is a buy's commission booked gross by an old store: still owed,
  the hedge buys it back. A balance above the store is inventory the bot never traded: no carry.
  The same rule runs on spot booked down while the daemon runs (the hedge's balance check) and at
  its exit (`carry_after_shortfall`, `follow_shortfall`): the carry does not depend on when the
  coins left.
* the perp is not the carry's measure (it also holds the directional sleeve), so perp fills made
  while down (a predecessor's child, a manual trade, a liquidation) change nothing here: the
  next decision trades the perp to the directional target plus this carry, and that market's
  first audit is made due at once. `carry_restored` logs both legs before and after, what the
  hedge will trade and how far the perp is off the last decision's target, as a warning when
  anything moved while the daemon was down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from bot.domain import ZERO
from bot.execution.hedge import HEDGE_META_PREFIX
from bot.market_state import MarketState
from bot.recovery import beyond_tolerance
from bot.rules.gate import GateState
from bot.store import Store
from bot.strategy.carry import CarryWatch

if TYPE_CHECKING:
    from bot.engine import Engine
    from bot.execution.hedge import HedgeState

__all__ = ["CarryStart", "Legs", "StoredLegs", "carry_after_shortfall", "carry_at_start", "follow_shortfall",
           "follow_venues", "restore_from_store", "stored_legs"]

log = structlog.get_logger("engine")


@dataclass(frozen=True, slots=True)
class Legs:
    """One hedged market's legs for the carry at start (signed base units)."""

    owed: Decimal  # the spot position the hedge owed when the daemon stopped (its record; else the spot)
    spot: Decimal  # the spot position booked after reconciliation
    booked_down: Decimal = ZERO  # spot the reconciliation booked down to the account's balance
    booked_from: Decimal = ZERO  # the spot position it booked down from


@dataclass(frozen=True, slots=True)
class CarryStart:
    """The carry sleeve's committed state and the spot the hedge owes from now."""

    side: int  # 0 closed, -1 short perp (long spot), +1 long perp (short spot)
    size: Decimal  # base size while open
    owed: Decimal  # the spot position the hedge owes (the carry's spot leg)
    left_account: Decimal = ZERO  # spot taken out of the carry: it left the account while down

    @property
    def spot_target(self) -> Decimal:
        return self.owed


def carry_at_start(legs: Legs) -> CarryStart:
    """The carry the legs hold (pure): the spot the hedge owes, less spot that left the account."""
    owed, left = legs.owed, ZERO
    moved_out = beyond_tolerance(legs.booked_from, legs.booked_from - legs.booked_down)
    if moved_out and owed > 0:
        # What the store held beyond the hedge was to be sold anyway: coins gone come out of that first.
        beyond = max(legs.booked_from - owed, ZERO)
        left = min(max(legs.booked_down - beyond, ZERO), owed)
        owed -= left
    side = -1 if owed > 0 else (1 if owed < 0 else 0)
    return CarryStart(side, abs(owed), owed, left)


def carry_after_shortfall(owed: Decimal, booked: Decimal, held: Decimal) -> CarryStart | None:
    """While running (pure): the carry once the store's spot long was booked down from `booked` to
    the balance `held`, by the same rule as at start; None when no spot left the carry (a
    shortfall within the tolerance, or only spot held beyond the hedge)."""
    carry = carry_at_start(Legs(owed, held, max(booked - held, ZERO), booked))
    return carry if carry.left_account > 0 else None


def follow_shortfall(state: MarketState, hedge: HedgeState, booked: Decimal, held: Decimal,
                     stage: str) -> HedgeState | None:
    """The store's spot was booked down to the balance while running (`stage`): spot that left the
    account leaves the carry as it does at start. Commits the smaller carry, makes the market's
    audit due (the decision trades the perp to it) and logs `carry_left_account`; returns the
    hedge owing the smaller spot leg to set (None: the carry is unchanged, the hedge buys back)."""
    carry = carry_after_shortfall(hedge.required, booked, held)
    if carry is None or state.spot is None:
        return None
    was = (state.carry_side, state.carry_size)
    _commit(state, carry)
    if not carry.side:
        state.carry_watch = CarryWatch()  # as a closed carry's (strategy_state.restored)
    state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)
    log.warning("carry_left_account", market=state.spec.ticker, stage=stage, carry_side=carry.side,
                carry_size=str(carry.size), carry_side_before=was[0], carry_size_before=str(was[1]),
                hedge_owed=str(carry.owed), hedge_before=str(hedge.required), spot=str(held),
                spot_booked_down=str(booked - held), spot_left_carry=str(carry.left_account),
                hedge_to_trade=str(carry.owed - held), perp=str(state.position.size))
    return replace(hedge, required=carry.owed, goal=carry.owed)


@dataclass(frozen=True, slots=True)
class StoredLegs:
    """A hedged market as the store left it, before reconciliation: perp, spot, and the spot its
    hedge record owes (None: no record, a store from before they were kept)."""

    perp: Decimal
    spot: Decimal
    owed: Decimal | None


def stored_legs(engine: Engine, store: Store) -> dict[str, StoredLegs]:
    """Per hedged market, the legs as the engine restored them from the store (take it before
    reconciliation moves them)."""
    return {t: StoredLegs(s.position.size, s.spot.position.size,
                          engine.hedges[t].required if store.meta_get(HEDGE_META_PREFIX + t) else None)
            for t, s in engine.markets.items() if s.spot is not None and t in engine.hedges}


def restore_from_store(markets: Mapping[str, MarketState], hedges: Mapping[str, HedgeState]) -> None:
    """The fallback before any venue was read: the carry the hedge record (else the spot) says."""
    for ticker, state in markets.items():
        hedge = hedges.get(ticker)
        if state.spot is not None and hedge is not None:
            _commit(state, carry_at_start(Legs(hedge.required, state.spot.position.size)))


def follow_venues(engine: Engine, stored: Mapping[str, StoredLegs],
                  reports: Iterable[Mapping[str, Any]]) -> dict[str, CarryStart]:
    """After reconciliation: commit each hedged market's carry from the venues' legs, set the
    hedge's owed spot to it, re-read the carry watch for that side and log `carry_restored`.

    `reports` are bot.recovery.reconcile_venue's: their spot adjustments say what left the
    account, their position mismatches what the perp venue holds beyond the store's fills.
    """
    adjusted: dict[str, Mapping[str, str]] = {}
    perp_venue: dict[str, str] = {}
    for report in reports:
        adjusted.update(report.get("spot_adjustments") or {})
        perp_venue.update({m: v["venue"] for m, v in (report.get("position_mismatches") or {}).items()})
    out: dict[str, CarryStart] = {}
    for ticker, before in stored.items():
        state, hedge = engine.markets[ticker], engine.hedges.get(ticker)
        if state.spot is None or hedge is None:
            continue
        fix = adjusted.get(state.spot.ticker) or {}
        spot = state.spot.position.size  # without a hedge record, the spot held is the hedge
        legs = Legs(spot if before.owed is None else before.owed, spot, Decimal(fix.get("adjusted", "0")),
                    Decimal(fix.get("store", "0")))
        carry = out[ticker] = carry_at_start(legs)
        was = (state.carry_side, state.carry_size)
        _commit(state, carry)
        if hedge.required != carry.owed:
            engine.hedge_control.set(ticker, replace(hedge, required=carry.owed, goal=carry.owed))
        engine.decider.restore_carry_watch(ticker)
        moved = (before.perp != state.position.size or ticker in perp_venue or legs.booked_down > 0
                 or before.spot != state.spot.position.size or was != (carry.side, carry.size))
        if moved:  # the first audit comes now, whatever `audit_on_start` says (an ancient one is due)
            state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)
        if moved or carry.side:
            _log(ticker, before, state, carry, legs, perp_venue.get(ticker), moved)
    return out


def _commit(state: MarketState, carry: CarryStart) -> None:
    assert state.spot is not None
    state.carry_side, state.carry_size, state.spot.target = carry.side, carry.size, carry.spot_target


def _log(ticker: str, before: StoredLegs, state: MarketState, carry: CarryStart, legs: Legs,
         perp_venue: str | None, moved: bool) -> None:
    assert state.spot is not None
    try:  # the stored last decision's target (a record that does not parse says nothing)
        last: Decimal | None = Decimal((state.last_decision or {})["target"])
    except (KeyError, TypeError, ArithmeticError, ValueError):
        last = None
    off = None if last is None or not last.is_finite() else str(state.position.size - last)
    (log.warning if moved else log.info)(
        "carry_restored", market=ticker, carry_side=carry.side, carry_size=str(carry.size),
        hedge_owed=str(carry.owed), hedge_record=None if before.owed is None else str(before.owed),
        spot=str(state.spot.position.size), spot_before=str(before.spot),
        spot_booked_down=str(legs.booked_down), spot_left_carry=str(carry.left_account),
        hedge_to_trade=str(carry.owed - state.spot.position.size),  # > 0 the hedge buys, < 0 it sells
        perp=str(state.position.size), perp_before=str(before.perp), perp_venue=perp_venue,
        perp_off_last_target=off,
        moved_while_down=moved)
