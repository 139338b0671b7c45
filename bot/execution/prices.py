"""The capped limit price every marketable order uses (children, hedges, unwinds, kill and flatten)."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain import Side

BPS = Decimal("0.0001")


def bounded_price(side: Side, touch: Decimal, cap_bps: Decimal, tick: Decimal) -> Decimal:
    """The touch moved by the slippage cap against us, rounded inward to the tick grid.

    A buy rounds down and a sell up, so the price is on the grid and never past the cap.
    """
    cap = cap_bps * BPS
    raw = touch * (1 + cap) if side is Side.BUY else touch * (1 - cap)
    ticks = (raw / tick).to_integral_value(rounding=ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)
    return ticks * tick
