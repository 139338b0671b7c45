"""Volatility-targeted, capped position targets (pure).

Hard limits are applied here and never depend on flags: leverage cap (`max_leverage` of the
market's equity share), notional cap, liquidation-distance floor, drawdown stop. They apply to
the sum of the sleeves' perp targets; `scale_hedge` shrinks a spot hedge with its perp leg.
Volatility targeting and the adverse-funding cut are risk management of the directional thesis
and live in its sleeve (bot.strategy.sleeves): a hedged carry is not re-sized by volatility.

Liquidation distance: with equity E allotted to a market and a perp notional N, an adverse move
of d costs N x d, and the position is liquidated when what is left reaches maintenance margin
(MMF x N). Keeping d >= D means N <= E / (D + MMF).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from bot.config import StrategySettings

ZERO = Decimal(0)
ONE = Decimal(1)
_LEV_Q = Decimal("0.0001")
_CENT = Decimal("0.01")


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class SizingInputs:
    market: str
    desired_size: Decimal  # signed, base units: what the sleeves ask for before limits
    price: Decimal
    equity_usd: Decimal
    peak_equity_usd: Decimal
    realised_vol: float | None
    funding_rate_1h: Decimal
    step_size: Decimal
    market_count: int
    maintenance_margin_fraction: Decimal = Decimal("0.03")


@dataclass(frozen=True, slots=True)
class Target:
    market: str
    size: Decimal
    leverage: Decimal
    cap_usd: Decimal
    limited_by: str  # "", "leverage", "notional", "liquidation", "adverse_funding", "drawdown"

    def as_dict(self) -> dict[str, str]:
        return {
            "size": str(self.size),
            "leverage": str(self.leverage),
            "cap_usd": str(self.cap_usd),
            "limited_by": self.limited_by,
        }


def vol_target_leverage(target_vol: Decimal, realised_vol: float | None, max_lev: Decimal) -> Decimal:
    """Return min(max_lev, target_vol / realised_vol); max_lev while vol is unknown.

    The directional sleeve calls it with max_lev = 1: a scale on the operator's thesis."""
    if realised_vol is None or realised_vol <= 0:
        return max_lev
    lev = target_vol / Decimal(repr(realised_vol))
    return min(max_lev, lev).quantize(_LEV_Q, rounding=ROUND_DOWN)


def round_to_step(size: Decimal, step: Decimal) -> Decimal:
    """Round a size toward zero onto the step grid."""
    return (size / step).to_integral_value(rounding=ROUND_DOWN) * step


def size_target(inp: SizingInputs, p: StrategySettings) -> Target:
    """Clamp the desired size by the leverage, notional and liquidation caps and the drawdown stop."""
    lev = vol_target_leverage(p.target_vol_annual, inp.realised_vol, ONE)
    if inp.peak_equity_usd > 0 and inp.equity_usd < inp.peak_equity_usd * (1 - p.drawdown_stop):
        return Target(inp.market, ZERO, lev, ZERO, "drawdown")
    if inp.price <= 0 or inp.equity_usd <= 0:
        return Target(inp.market, ZERO, lev, ZERO, "no_equity")
    budget_usd = inp.equity_usd / max(inp.market_count, 1)
    cap = budget_usd * p.max_leverage
    limited_by = "leverage"
    if p.max_notional_usd < cap:
        cap, limited_by = p.max_notional_usd, "notional"
    liquidation_cap = budget_usd / (p.min_liquidation_distance + inp.maintenance_margin_fraction)
    if liquidation_cap < cap:
        cap, limited_by = liquidation_cap, "liquidation"
    desired_usd = abs(inp.desired_size) * inp.price
    if desired_usd <= cap:
        size, limited_by = inp.desired_size, ""
    else:
        size = (cap / inp.price).copy_sign(inp.desired_size)
    return Target(inp.market, round_to_step(size, inp.step_size), lev, cap.quantize(_CENT),
                  limited_by)


def liquidation_distance(equity_usd: Decimal, notional_usd: Decimal, mmf: Decimal) -> Decimal | None:
    """Return the adverse price move (fraction) that would liquidate; None for no position."""
    if notional_usd <= 0:
        return None
    return equity_usd / notional_usd - mmf


def scale_hedge(spot: Decimal, desired_perp: Decimal, final_perp: Decimal, step: Decimal) -> Decimal:
    """Shrink a spot hedge in proportion to how far the hard limits cut the perp target."""
    if spot == 0 or desired_perp == final_perp:
        return spot
    if desired_perp == 0 or final_perp == 0 or (final_perp > 0) != (desired_perp > 0):
        return ZERO
    ratio = min(ONE, final_perp / desired_perp)
    return round_to_step(spot * ratio, step)
