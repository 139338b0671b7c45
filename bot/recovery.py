"""Start-up reconciliation against a venue: the venue's orders, fills and positions are the truth.

1. Fills the venue reports that the store lacks are applied (the store and the position both
   deduplicate by fill id, so replaying a known fill changes nothing).
2. Orders open in the store but not at the venue take the venue's final state (filled,
   cancelled, expired) or, if the venue does not know them, are closed as never placed. The
   venue is asked about exactly these orders (`account_snapshot(stored open)`), with their fills:
   a spot venue reports fills only on a stream, which died with the process that placed them.
3. Orders open at the venue that the store knows as ours (open there too: a predecessor's
   resting child) are cancelled; orders the bot did not place (operator's manual orders) are
   left alone unless `cancel_foreign`.
4. Perp positions that still differ after that are logged: they need an operator. A spot long
   the store books beyond the account's balance is booked down to the balance with a recorded
   adjustment (the venue's balance is the truth). At start, the carry sleeve and the hedge's owed
   spot are then committed from the reconciled legs and these reports (bot.carry_start).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import structlog

from bot.clock import Clock
from bot.domain import AccountEvent, OrderStatus, Position
from bot.errors import BotError
from bot.store import Store
from bot.store.reconcile import balance_adjustment, reconcile_open_orders
from bot.venues.ports import ExecutionVenue, VenueAccount

__all__ = ["reconcile_venue"]

log = structlog.get_logger("reconcile")
# (spot market, the long the store booked, the balance it was booked down to)
BookedDown = Callable[[str, Decimal, Decimal], None]
BALANCE_TOLERANCE = Decimal("0.01")  # of a spot position: dust, and base commissions stores booked gross


async def reconcile_venue(
    store: Store,
    venue: ExecutionVenue,
    apply: Callable[[AccountEvent], None],
    positions: Callable[[], dict[str, Decimal]],
    clock: Clock,
    *,
    cancel_foreign: bool = False,
    compare_positions: bool = True,
    stage: str = "start",
    booked_down: BookedDown | None = None,
) -> dict[str, Any]:
    """Bring the store and the engine in line with the venue; return what was corrected.

    `compare_positions=False` for a venue whose positions are account balances (spot): they
    include inventory the bot never traded, so the venue's fills and orders are reconciled and
    only a long the store books beyond the balance is corrected (`correct_to_balances`).
    `stage` ("start", "exit") names the occasion in the reasons the store records. `booked_down`
    hears of each spot long booked down to the balance (market, booked, held): after the start,
    spot that left the account leaves the carry (bot.carry_start); at start the daemon commits
    the carry from the report instead.
    """
    stored_open = [o.client_id for o in store.open_orders(venue.name)]
    account: VenueAccount = await venue.account_snapshot(stored_open)
    known_fills = {f.fill_id for f in store.fills()}
    new_fills = [f for f in account.fills if f.fill_id not in known_fills]
    for fill in new_fills:
        apply(fill)
    fixes = reconcile_open_orders(stored_open, account.open_ids)
    for client_id in fixes.close_in_store:
        status, filled = account.order_states.get(client_id, (OrderStatus.CANCELLED, Decimal(0)))
        order = store.get_order(client_id)
        filled = max(filled, order.filled_size if order else Decimal(0))
        known = client_id in account.order_states
        reason = f"venue state on {stage}" if known else f"not at venue on {stage}"
        store.update_order(client_id, status, filled, clock.now_ns(), reason)
    cancelled, foreign, errors = [], [], []
    # A predecessor's order still working (open in the store too) would trade on top of the new
    # plans, and the exit could not read its end back (this process never placed it).
    for client_id in fixes.cancel_at_venue:
        if store.get_order(client_id) is None and not cancel_foreign:
            foreign.append(client_id)
            continue
        try:  # a predecessor's order: the venue finds it by client id
            if await venue.cancel(client_id):
                cancelled.append(client_id)
        except BotError as exc:  # the next start (or the exit's cancel-all) tries again
            errors.append(f"cancel {client_id}: {exc}")
    mismatches = {}
    if account.positions is not None and compare_positions:
        ours = positions()
        for market in set(ours) | set(account.positions):
            mine, theirs = ours.get(market, Decimal(0)), account.positions.get(market, Decimal(0))
            if mine != theirs:
                mismatches[market] = {"store": str(mine), "venue": str(theirs)}
    adjustments: dict[str, dict[str, str]] = {}
    if account.positions is not None and not compare_positions:
        working = {o.market for o in map(store.get_order, account.open_ids) if o is not None}
        adjustments = correct_to_balances(store, venue.name, account.positions, working, apply,
                                          clock.now_ns(), stage, booked_down)
    report = {"venue": venue.name, "fills_applied": len(new_fills),
              "closed_in_store": list(fixes.close_in_store), "cancelled_at_venue": cancelled,
              "foreign_open_orders": foreign, "position_mismatches": mismatches,
              "spot_adjustments": adjustments, "errors": errors}
    if errors:
        log.error("start_cancels_failed", venue=venue.name, errors=errors)
    if mismatches:
        log.error("reconcile_position_mismatch", **report)
    else:
        log.info("reconciled", **report)
    return report


def correct_to_balances(store: Store, venue: str, held: dict[str, Decimal], working: set[str],
                        apply: Callable[[AccountEvent], None], now_ns: int, stage: str,
                        booked_down: BookedDown | None = None) -> dict[str, dict[str, str]]:
    """Book the store's spot longs down to the account's balances (`held`) where they exceed them,
    with a recorded adjustment (bot.store.reconcile.balance_adjustment) through `apply`, so the
    hedge sells only what is held. What is missing is bought back within BALANCE_TOLERANCE and
    leaves the carry beyond it (bot.carry_start: at start from the report, after it through
    `booked_down(market, booked, held)`, told of each correction applied). A market with an
    order of ours working at the venue is left to the next reconciliation (a fill may land
    between the reads).
    Returns {market: {store, venue, adjusted}}; logs `reconcile_store_exceeds_balance`, as an
    error beyond BALANCE_TOLERANCE (a fill booked twice, coins moved out: worth an operator's look).
    """
    out: dict[str, dict[str, str]] = {}
    for market in sorted({f.market for f in store.fills()} & set(held)):
        position = Position(market)
        for fill in store.fills(market):
            position.apply_fill(fill)
        theirs = held[market]
        adjustment = balance_adjustment(position, theirs, now_ns)
        if adjustment is None:
            continue
        out[market] = {"store": str(position.size), "venue": str(theirs), "adjusted": str(adjustment.size)}
        if market in working:
            out[market]["adjusted"] = "0"  # not now: an order of ours works there
            continue
        apply(adjustment)
        if booked_down is not None:
            booked_down(market, position.size, theirs)
    if out:
        beyond = balance_shortfalls({m: Decimal(v["store"]) for m, v in out.items()}, held)
        (log.error if beyond else log.warning)(
            "reconcile_store_exceeds_balance", venue=venue, stage=stage, shortfalls=out,
            beyond_tolerance=sorted(beyond))
    return out


def balance_shortfalls(booked: dict[str, Decimal], held: dict[str, Decimal]) -> dict[str, dict[str, str]]:
    """Spot markets whose long the store books beyond what the account holds.

    Balances include inventory the bot never traded, so only a shortfall means something: fills
    booked twice, or coins moved out of the account. Fills are booked net of a commission taken in
    the base asset, but a store written before that booked them gross (0.1% short at Binance's
    base rate): below BALANCE_TOLERANCE of the position, a shortfall is that and nothing more.
    """
    out = {}
    for market, mine in booked.items():
        theirs = held.get(market, Decimal(0))
        if beyond_tolerance(mine, theirs):
            out[market] = {"store": str(mine), "venue": str(theirs)}
    return out


def beyond_tolerance(booked: Decimal, held: Decimal) -> bool:
    """A spot long booked above the balance by more than BALANCE_TOLERANCE of it: coins that left
    the account (or fills booked twice), not a commission an old store booked gross."""
    return booked > 0 and booked - held > booked * BALANCE_TOLERANCE
