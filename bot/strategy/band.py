"""The no-trade band: audits look, but trade only when the gap to target is worth closing (pure).

Closing a gap of `d` USD costs about `cost_rate x |d|` (fee and slippage, one way). Leaving it
open for one rebalance horizon `H` adds tracking risk: with a mean-variance investor of risk
aversion `gamma` on equity `E`, its cost is `gamma / 2 x (d x sigma_H)^2 / E`, where `sigma_H` is
the volatility over the horizon. Trading pays when the risk it removes beats its cost:

    |d| > 2 x cost_rate x E / (gamma x sigma_H^2)

so the band is wide in calm markets (little risk to remove) and narrow in wild ones. It is
capped at `max_fraction` of the target (a thesis is never more than that fraction off) and never
below the venue's minimum order. Whatever the band says, a trade that closes a position, flips
its side or follows a sleeve opening or closing (carry entry/exit) always goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)
HOURS_PER_YEAR = 8760.0


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class BandInputs:
    position: Decimal  # signed base units
    target: Decimal  # signed base units
    price: Decimal
    equity_usd: Decimal
    cost_rate: Decimal  # one-way cost of trading, fraction of notional (fee + slippage)
    vol_annual: float | None  # sizing volatility; None: unknown (the band is max_fraction)
    horizon_hours: float  # the rebalance cadence the risk is carried over
    risk_aversion: Decimal
    max_fraction: Decimal
    min_size: Decimal  # base units: the venue's minimum order


@dataclass(frozen=True, slots=True)
class BandCheck:
    outside: bool
    why: str  # "closing" | "flip" | "outside" | "inside" | "at_target"
    gap_usd: Decimal
    band_usd: Decimal


def band_usd(inp: BandInputs) -> Decimal:
    """The band's half-width in USD for the inputs."""
    cap = abs(inp.target) * inp.price * inp.max_fraction
    floor = inp.min_size * inp.price
    if inp.vol_annual is None or inp.vol_annual <= 0 or inp.risk_aversion <= 0:
        return max(cap, floor)
    var_h = inp.vol_annual * inp.vol_annual * inp.horizon_hours / HOURS_PER_YEAR
    if not (0 < var_h < math.inf):  # a vanishing vol underflows to 0.0; nan/inf say nothing
        return max(cap, floor)
    risk_band = 2 * inp.cost_rate * max(inp.equity_usd, ZERO) / (inp.risk_aversion * Decimal(repr(var_h)))
    return max(min(risk_band, cap), floor)


def check_band(inp: BandInputs) -> BandCheck:
    """Whether the position is outside the no-trade band around its target."""
    plain = band_verdict(inp.position, inp.target, inp.price, inp.min_size)
    if plain is not None:
        return plain
    gap = abs(inp.target - inp.position) * inp.price
    width = band_usd(inp)
    outside = gap > width
    return BandCheck(outside, "outside" if outside else "inside", gap, width)


_AT_TARGET = BandCheck(False, "at_target", ZERO, ZERO)


def band_verdict(position: Decimal, target: Decimal, price: Decimal, min_size: Decimal) -> BandCheck | None:
    """The verdict that needs no band (at target, closing, a flip); None: compare with the band."""
    if target == position:
        return _AT_TARGET
    if target == 0:
        outside = abs(position) >= min_size
        return BandCheck(outside, "closing" if outside else "inside", abs(target - position) * price, ZERO)
    if position != 0 and (position > 0) != (target > 0):
        return BandCheck(True, "flip", abs(target - position) * price, ZERO)
    return None
