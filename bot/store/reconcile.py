"""Start-up reconciliation core (pure): the venue's open orders and spot balances are the truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from bot.domain import Fill, Liquidity, Position, Side


@dataclass(frozen=True, slots=True)
class OrderCorrections:
    close_in_store: tuple[int, ...]  # open in our store, not open at the venue
    # Open at the venue: a predecessor's order (open in the store or not) that no parent of this
    # process manages, or one the bot never placed (the caller decides about those).
    cancel_at_venue: tuple[int, ...]


def reconcile_open_orders(
    stored_open: Iterable[int], venue_open: Iterable[int]
) -> OrderCorrections:
    """Compare open client ids in the store with those open at the venue."""
    stored, venue = set(stored_open), set(venue_open)
    return OrderCorrections(tuple(sorted(stored - venue)), tuple(sorted(venue)))


ADJUSTMENT_PREFIX = "adjust:"  # fill id of a recorded correction of the store to the venue's balance


def balance_adjustment(position: Position, held: Decimal, ts_ns: int) -> Fill | None:
    """The correction that brings a spot long the store books beyond the account's balance down
    to the balance, or None when the store books no more than the account holds.

    The venue's balance is the truth: what the store books beyond it (a buy's base-asset
    commission booked gross by a store written before fills were booked net, a fill booked
    twice, coins moved out of the account) is not there to sell. The correction is recorded as a
    fill of client id 0 (no order has it), a sell at the position's average entry with no fee:
    it moves the position and realises nothing, so the PnL is what a store booking net would
    show (the commission is in the buys' fees already). Balances above the store are inventory
    the bot never traded: nothing to correct.
    """
    excess = position.size - max(held, Decimal(0))
    if position.size <= 0 or excess <= 0:
        return None
    return Fill(f"{ADJUSTMENT_PREFIX}{position.market}:{ts_ns}", 0, position.market, Side.SELL,
                position.avg_entry, excess, Decimal(0), Liquidity.TAKER, ts_ns)
