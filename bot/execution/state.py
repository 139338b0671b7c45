"""Order state machine, as data (pure).

One order moves NEW -> ACKED -> PARTIALLY_FILLED -> FILLED / CANCELLED / REJECTED / EXPIRED.
Venue events arrive duplicated, late and out of order, so `apply_update` folds them the same way
whatever the order: an open status only moves forward (by rank), a terminal status is final, and
the filled size is the maximum ever reported (it never decreases, even after a terminal status:
a late fill report still counts). Folding any permutation of one order's events therefore ends in
the same state: the terminal status if one was seen (an order has one), else the highest open
status, with the largest filled size.

| from \\ to        | ACKED | PARTIALLY_FILLED | FILLED / CANCELLED / REJECTED / EXPIRED |
|------------------|-------|------------------|-----------------------------------------|
| NEW              | yes   | yes              | yes                                     |
| ACKED            | -     | yes              | yes                                     |
| PARTIALLY_FILLED | -     | (filled grows)   | yes                                     |
| terminal         | -     | -                | - (filled may still grow)               |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain import OrderStatus

TERMINAL: frozenset[OrderStatus] = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
_OPEN_RANK = {OrderStatus.NEW: 0, OrderStatus.ACKED: 1, OrderStatus.PARTIALLY_FILLED: 2}

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset({OrderStatus.ACKED, OrderStatus.PARTIALLY_FILLED}) | TERMINAL,
    OrderStatus.ACKED: frozenset({OrderStatus.PARTIALLY_FILLED}) | TERMINAL,
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED}) | TERMINAL,
    **{s: frozenset() for s in TERMINAL},
}


def is_allowed(old: OrderStatus, new: OrderStatus) -> bool:
    """Return True if the table allows a status change from `old` to `new`."""
    return new in ALLOWED[old]


@dataclass(frozen=True, slots=True)
class OrderState:
    """What we know of one order: its status and the largest filled size reported."""

    status: OrderStatus
    filled: Decimal

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of folding one venue report into an order's state."""

    before: OrderState
    after: OrderState

    @property
    def is_change(self) -> bool:
        """Something to persist: the status moved or the filled size grew."""
        return self.before != self.after

    @property
    def became_terminal(self) -> bool:
        return self.after.is_terminal and not self.before.is_terminal


def apply_update(current: OrderState, status: OrderStatus, filled: Decimal) -> Transition:
    """Fold a venue report (`status`, cumulative `filled`) into `current`; never moves backwards."""
    new_status = current.status
    if current.status is not status and is_allowed(current.status, status) and (
        status in TERMINAL or _OPEN_RANK[status] > _OPEN_RANK[current.status]
    ):
        new_status = status
    return Transition(current, OrderState(new_status, max(current.filled, filled)))
