"""Passive child planning: post-only at the touch, re-peg, max chase, timeout fallback (pure).

One passive parent works one resting child at a time. Each call looks at the touch and the
resting child and returns what to do now:

- nothing resting: place post-only at the touch (best bid for a buy, best ask for a sell),
  rounded to the tick on the passive side and always strictly inside the opposite touch;
- resting, and the target price moved more than `repeg_ticks` ticks: cancel it and place anew
  (the order manager places the new child only once the cancel is confirmed, so a late fill on
  the old child can never add to the new one);
- the target never goes further than `max_chase_bps` from the parent's arrival price: past it the
  child waits at the chase limit;
- after `passive_timeout_secs` of waiting (or in the tail of the parent's window), high urgency
  cancels and crosses with a marketable limit IOC bounded by the slippage cap
  (`twap.size_child`); low urgency keeps waiting.

Every order has a limit price: there is no plain market order anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.clock import NS_PER_SEC
from bot.config import ExecutionSettings
from bot.domain import BookLevel, MarketSpec, Side, TimeInForce
from bot.execution.prices import bounded_price
from bot.execution.twap import size_child


@dataclass(frozen=True, slots=True)
class PlaceChild:
    """Send a new child: post-only at `price`, or IOC with `price` as its limit."""

    side: Side
    size: Decimal
    price: Decimal
    tif: TimeInForce

    def __post_init__(self) -> None:
        if self.price <= 0 or self.size <= 0:
            raise ValueError(f"child needs a positive limit price and size: {self}")


@dataclass(frozen=True, slots=True)
class CancelChild:
    client_id: int


PassiveAction = PlaceChild | CancelChild


@dataclass(frozen=True, slots=True)
class RestingChild:
    """The parent's working post-only child as the order manager knows it."""

    client_id: int
    price: Decimal
    remaining: Decimal
    is_cancel_pending: bool = False


def _round(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Round to the tick on the passive side: down for a bid, up for an ask."""
    mode = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=mode) * tick


def chase_limit(side: Side, arrival_price: Decimal, tick: Decimal, max_chase_bps: Decimal) -> Decimal:
    """The furthest a passive child may rest from the arrival price (rounded toward arrival)."""
    return bounded_price(side, arrival_price, max_chase_bps, tick)


def peg_price(
    side: Side,
    bids: list[BookLevel],
    asks: list[BookLevel],
    arrival_price: Decimal,
    market: MarketSpec,
    p: ExecutionSettings,
) -> Decimal | None:
    """The post-only price now: the touch, capped by the chase limit, never crossing."""
    tick = market.tick_size
    same, other = (bids, asks) if side is Side.BUY else (asks, bids)
    if same:
        price = _round(same[0].price, tick, side)
    elif other:
        price = _round(other[0].price - tick * side.sign, tick, side)
    else:
        return None
    limit = chase_limit(side, arrival_price, tick, p.max_chase_bps)
    price = min(price, limit) if side is Side.BUY else max(price, limit)
    if other:
        # Strictly inside the opposite touch: a post-only at or through it would be rejected.
        inside = _round(other[0].price - tick * side.sign, tick, side)
        price = min(price, inside) if side is Side.BUY else max(price, inside)
    return price if price > 0 else None


def plan_passive(
    side: Side,
    wanted: Decimal,
    resting: RestingChild | None,
    bids: list[BookLevel],
    asks: list[BookLevel],
    arrival_price: Decimal,
    waiting_since_ns: int | None,
    now_ns: int,
    market: MarketSpec,
    p: ExecutionSettings,
    deadline_ns: int | None = None,
) -> list[PassiveAction]:
    """Return the actions that keep one passive child working for a parent.

    `wanted` is the size due and not yet working (the resting child excluded); `bids`/`asks` are
    levels best first; `waiting_since_ns` is when the parent started waiting on passive fills;
    from `deadline_ns` on (the tail of the parent's window) high urgency crosses whatever the
    timeout says, so an urgent parent completes inside its window.
    """
    if resting is not None and resting.is_cancel_pending:
        return []
    working = wanted + (resting.remaining if resting is not None else 0)
    if working <= 0:
        return []
    takes = asks if side is Side.BUY else bids
    cancel: list[PassiveAction] = [CancelChild(resting.client_id)] if resting is not None else []
    timed_out = (waiting_since_ns is not None
                 and now_ns - waiting_since_ns >= int(p.passive_timeout_secs * NS_PER_SEC)
                 ) or (deadline_ns is not None and now_ns >= deadline_ns)
    if timed_out and p.urgency == "high":
        child = size_child(side, working, takes, market, p)
        if child is not None:
            return [*cancel, PlaceChild(side, child.size, child.limit_price, TimeInForce.IOC)]
    price = peg_price(side, bids, asks, arrival_price, market, p)
    if price is None:
        return []
    if resting is not None:
        moved_ticks = abs(price - resting.price) / market.tick_size
        if moved_ticks <= p.repeg_ticks:
            return []
    # Same sizing rule as a taker child: at most a share of the depth inside the slippage band.
    sized = size_child(side, working, takes, market, p)
    if sized is None:
        return []
    return [*cancel, PlaceChild(side, sized.size, price, TimeInForce.POST_ONLY)]
