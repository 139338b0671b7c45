"""How much of the directional thesis to carry for the volatility now (pure, and its estimator).

The thesis is scaled by `max_scale x min(1, baseline vol / sizing vol)`, and never above
`target_vol / sizing vol`. The sizing vol is an EWMA of hourly returns (half-life in days); the
baseline is the same with a longer half-life: what volatility normally is for this market now.
Volatility clusters, and drawdowns come with it, so the thesis is cut when volatility rises above
its own norm, whatever that norm is (a calm 2023 and a wild 2021 alike), and held at `max_scale`
while volatility is normal, so a steady rally is ridden, not de-levered. `max_scale` < 1 keeps the
managed thesis below the unmanaged one's risk; the absolute `target_vol` ceiling still cuts it in
a regime that is wild throughout (the baseline has caught up with it).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from bot.rules.estimators import EwmaVol

ONE = Decimal(1)
_Q = Decimal("0.0001")


def thesis_scale(target_vol: Decimal, sizing_vol: float | None, baseline_vol: float | None,
                 max_scale: Decimal) -> Decimal:
    """The share of the thesis to hold: max_scale while vol is unknown or normal."""
    if sizing_vol is None or sizing_vol <= 0:
        return max_scale
    vol = Decimal(repr(sizing_vol))
    scale = max_scale
    if baseline_vol is not None and baseline_vol > 0:
        scale = max_scale * min(ONE, Decimal(repr(baseline_vol)) / vol)
    return min(scale, target_vol / vol, max_scale).quantize(_Q, rounding=ROUND_DOWN)


class SizingVol(EwmaVol):
    """The sizing vol (hourly returns, `half_life_days`) that also keeps its baseline, the same
    estimator with `baseline_half_life_days` (0: none). Seeded and updated as one."""

    __slots__ = ("_baseline",)

    def __init__(self, half_life_days: float, baseline_half_life_days: float = 0.0) -> None:
        super().__init__(half_life_days * 86400, 3600)
        self._baseline = (EwmaVol(baseline_half_life_days * 86400, 3600)
                          if baseline_half_life_days > 0 else None)

    def update(self, price: Decimal, now_ns: int) -> None:
        super().update(price, now_ns)
        if self._baseline is not None:
            self._baseline.update(price, now_ns)

    @property
    def baseline(self) -> float | None:
        """The baseline vol, annualised; None when off or before any return."""
        return self._baseline.annualised if self._baseline is not None else None


def baseline_of(vol: EwmaVol) -> float | None:
    """The baseline a sizing estimator keeps (None for a plain EwmaVol)."""
    return vol.baseline if isinstance(vol, SizingVol) else None
