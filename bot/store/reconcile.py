"""Start-up reconciliation core (pure): the venue's open orders are the truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
