"""TWAP planning: cut a change of exposure into jittered slices and size each child (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from bot.clock import NS_PER_SEC
from bot.config import ExecutionSettings
from bot.domain import BookLevel, MarketSpec, Side
from bot.execution.prices import bounded_price

BPS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class TwapPlan:
    """A parent order: move `total` (unsigned) in `side` over slices due at given times."""

    market: str
    side: Side
    total: Decimal
    reduce_only: bool
    slice_due_ns: tuple[int, ...]
    slice_sizes: tuple[Decimal, ...]
    end_ns: int
    passive: bool = False  # children rest post-only at the touch (funding favours the side)
    post_only: bool = False  # passive and never crossing, whatever the urgency (market POST_ONLY)

    def due_by(self, now_ns: int) -> Decimal:
        """Cumulative size scheduled up to now."""
        return sum(
            (s for t, s in zip(self.slice_due_ns, self.slice_sizes, strict=True) if t <= now_ns),
            Decimal(0),
        )

    def as_dict(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {
            "side": self.side.value,
            "total": str(self.total),
            "slices": len(self.slice_sizes),
            "reduce_only": self.reduce_only,
            "duration_secs": (self.end_ns - self.slice_due_ns[0]) // NS_PER_SEC,
        }
        if self.passive:
            out["passive"] = True  # only when set: decision records of taker plans are unchanged
        if self.post_only:
            out["post_only"] = True
        return out


@dataclass(frozen=True, slots=True)
class ChildOrder:
    side: Side
    size: Decimal
    limit_price: Decimal


def _floor_step(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(rounding=ROUND_DOWN) * step


def plan_twap(
    market: MarketSpec,
    current: Decimal,
    target: Decimal,
    p: ExecutionSettings,
    now_ns: int,
    seed: int,
) -> TwapPlan | None:
    """Plan the move from `current` to `target` (signed sizes); None when there is nothing to do."""
    delta = _floor_step(target - current, market.step_size) if target != current else Decimal(0)
    if abs(delta) < market.min_order_size:
        return None
    side = Side.BUY if delta > 0 else Side.SELL
    total = abs(delta)
    # Shrinking toward zero without crossing it is reduce-only.
    reduce_only = current != 0 and abs(target) < abs(current) and (target == 0 or
                                                                     (target > 0) == (current > 0))
    n = max(1, min(p.twap_slices, int(total / market.min_order_size)))
    base = _floor_step(total / n, market.step_size)
    sizes = [base] * n
    sizes[-1] = total - base * (n - 1)
    rng = random.Random(seed)
    interval_ns = int(p.twap_duration_secs * NS_PER_SEC) // n
    # Jitter each slice inside its own interval so the schedule stays ordered.
    due = tuple(
        now_ns + i * interval_ns + (int(rng.random() * interval_ns * 0.5) if i else 0)
        for i in range(n)
    )
    return TwapPlan(market.ticker, side, total, reduce_only, due, tuple(sizes),
                    now_ns + int(p.twap_duration_secs * NS_PER_SEC))


def size_child(
    side: Side,
    wanted: Decimal,
    touch_levels: list[BookLevel],
    market: MarketSpec,
    p: ExecutionSettings,
) -> ChildOrder | None:
    """Size a marketable-limit IOC child: at most a share of the depth inside the slippage cap.

    `touch_levels` are the levels the child would take (asks for a buy), best first.
    """
    if not touch_levels or wanted <= 0:
        return None
    best = touch_levels[0].price
    limit = bounded_price(side, best, p.slippage_cap_bps, market.tick_size)
    if side is Side.BUY:
        within = [lv for lv in touch_levels if lv.price <= limit]
    else:
        within = [lv for lv in touch_levels if lv.price >= limit]
    depth = sum((lv.size for lv in within), Decimal(0))
    size = _floor_step(min(wanted, depth * p.max_depth_share), market.step_size)
    if size < market.min_order_size or size * best < p.min_notional_usd:
        return None
    return ChildOrder(side, size, limit)
