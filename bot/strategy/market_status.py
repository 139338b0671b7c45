"""What a market's venue status lets the bot do (pure).

| status           | new exposure | orders                          | target                         |
|------------------|--------------|---------------------------------|--------------------------------|
| ACTIVE           | yes          | any                             | as sized                       |
| POST_ONLY        | no           | post-only children only (never  | no growth, no flip             |
|                  |              | crossing, whatever the urgency) |                                |
| FINAL_SETTLEMENT | no           | reduce-only                     | zero: closed before settlement |
| CANCEL_ONLY,     | no           | none; ours are cancelled        | held where it is               |
| PAUSED,          |              |                                 |                                |
| INITIALIZING     |              |                                 |                                |

A market whose status was never announced counts as ACTIVE (the venue lists it as tradable at
start, and REST reports its status before the first trade).
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain import ZERO, MarketStatusKind

NO_ORDERS = frozenset({MarketStatusKind.CANCEL_ONLY, MarketStatusKind.PAUSED, MarketStatusKind.INITIALIZING})


def may_place(status: MarketStatusKind) -> bool:
    """True when the venue takes new orders in this market (of some kind)."""
    return status not in NO_ORDERS


def must_cancel(status: MarketStatusKind) -> bool:
    """True when our resting orders in this market are to be cancelled and none placed."""
    return status in NO_ORDERS


def passive_only(status: MarketStatusKind) -> bool:
    return status is MarketStatusKind.POST_ONLY


def unrestricted(status: MarketStatusKind) -> bool:
    """True when `restrict_target` returns any desired target unchanged (so it need not be called)."""
    return status is MarketStatusKind.ACTIVE


def restrict_target(status: MarketStatusKind, desired: Decimal, position: Decimal) -> tuple[Decimal, str]:
    """The target this status allows, and why it differs from `desired` ("" when it does not)."""
    if unrestricted(status):
        return desired, ""
    if status is MarketStatusKind.FINAL_SETTLEMENT:
        return ZERO, "final_settlement" if desired or position else ""
    if status is MarketStatusKind.POST_ONLY:
        allowed = no_growth(desired, position)
        return allowed, "post_only" if allowed != desired else ""
    return position, status.value.lower() if desired != position else ""


def no_growth(desired: Decimal, current: Decimal) -> Decimal:
    """Never more exposure than now, never a flip through zero."""
    if current == 0 or (desired != 0 and (desired > 0) != (current > 0)):
        return ZERO
    return desired if abs(desired) <= abs(current) else current
