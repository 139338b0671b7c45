"""Volatility-targeted, capped position targets (pure).

Hard limits are applied here and never depend on flags: leverage cap, notional cap (tighter
when funding runs against the position), drawdown stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from bot.config import StrategySettings

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Target:
    market: str
    size: Decimal
    leverage: Decimal
    cap_usd: Decimal
    limited_by: str  # "", "leverage", "notional", "adverse_funding", "drawdown"

    def as_dict(self) -> dict[str, str]:
        return {
            "size": str(self.size),
            "leverage": str(self.leverage),
            "cap_usd": str(self.cap_usd),
            "limited_by": self.limited_by,
        }


def vol_target_leverage(target_vol: Decimal, realised_vol: float | None, max_lev: Decimal) -> Decimal:
    """Return min(max_leverage, target_vol / realised_vol); max_leverage while vol is unknown."""
    if realised_vol is None or realised_vol <= 0:
        return max_lev
    lev = target_vol / Decimal(repr(realised_vol))
    return min(max_lev, lev).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)


def round_to_step(size: Decimal, step: Decimal) -> Decimal:
    """Round a size toward zero onto the step grid."""
    return (size / step).to_integral_value(rounding=ROUND_DOWN) * step


def size_target(inp: SizingInputs, p: StrategySettings) -> Target:
    """Clamp the desired size by vol-targeted leverage, notional caps and the drawdown stop."""
    lev = vol_target_leverage(p.target_vol_annual, inp.realised_vol, p.max_leverage)
    if inp.peak_equity_usd > 0 and inp.equity_usd < inp.peak_equity_usd * (1 - p.drawdown_stop):
        return Target(inp.market, ZERO, lev, ZERO, "drawdown")
    if inp.price <= 0 or inp.equity_usd <= 0:
        return Target(inp.market, ZERO, lev, ZERO, "no_equity")
    budget_usd = inp.equity_usd / max(inp.market_count, 1)
    cap = budget_usd * lev
    limited_by = "leverage"
    if p.max_notional_usd < cap:
        cap, limited_by = p.max_notional_usd, "notional"
    # Positive funding: longs pay. A position that pays funding gets a tighter cap.
    if inp.desired_size * inp.funding_rate_1h > 0:
        cap, limited_by = cap * p.adverse_funding_cap_factor, "adverse_funding"
    desired_usd = abs(inp.desired_size) * inp.price
    if desired_usd <= cap:
        size, limited_by = inp.desired_size, ""
    else:
        size = (cap / inp.price).copy_sign(inp.desired_size)
    return Target(inp.market, round_to_step(size, inp.step_size), lev, cap.quantize(Decimal("0.01")),
                  limited_by)
