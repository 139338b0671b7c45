"""How much of the directional thesis to carry now (pure, and its estimator).

Two cuts, multiplied:

- volatility: the thesis is scaled by `max_scale x min(1, baseline vol / sizing vol)`, and never
  above `target_vol / sizing vol`. The sizing vol is an EWMA of hourly returns (half-life in
  days); the baseline is the same with a longer half-life: what volatility normally is for this
  market now. Volatility clusters, so the thesis is cut when volatility rises above its own norm,
  and held at `max_scale` while volatility is normal, so a steady rally is ridden, not
  de-levered. `max_scale` < 1 keeps the managed thesis below the unmanaged one's risk; the
  absolute `target_vol` is a ceiling for a regime that is wild throughout.
- stretch: the thesis is trimmed while price is stretched far from its trend (an EWMA of hourly
  closes, half-life in days) in the thesis's own direction: a long while price runs more than
  `start` above the trend, down to `floor` of the scale at `full` above it (a short mirrored).
  Falls in these markets come mostly after run-ups; a position held at a constant share of the
  thesis gives back more of its (smaller) peak than the unmanaged one, so what is trimmed is the
  exposure a fall after a run-up would hit. The trim is gone once price is back near its trend.

A third rule works on the product of every cut (`rerisk_gate`): the share held falls at once,
but rises only while price is at or beyond its trend in the thesis's direction. When a fall
releases a cut (the stretch trim once price drops back to its trend, the adverse-funding cut once
funding cools, the vol ceiling once a spike fades), the thesis is not re-risked into a market
that keeps falling; it is restored once price is back at its trend.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from bot.rules.estimators import EwmaVol

ONE = Decimal(1)
_Q = Decimal("0.0001")


def thesis_scale(target_vol: Decimal, sizing_vol: float | None, baseline_vol: float | None,
                 max_scale: Decimal) -> Decimal:
    """The share of the thesis to hold for the volatility: max_scale while vol is unknown or normal."""
    if sizing_vol is None or sizing_vol <= 0:
        return max_scale
    vol = Decimal(repr(sizing_vol))
    scale = max_scale
    if baseline_vol is not None and baseline_vol > 0:
        scale = max_scale * min(ONE, Decimal(repr(baseline_vol)) / vol)
    return min(scale, target_vol / vol, max_scale).quantize(_Q, rounding=ROUND_DOWN)


def stretch_factor(price: Decimal, trend: float | None, side: int, start: Decimal, full: Decimal,
                   floor: Decimal) -> Decimal:
    """The share of the scale kept for price's stretch from its trend in the thesis's direction
    (`side` +1 long, -1 short): 1 up to `start`, `floor` from `full`, linear between."""
    if trend is None or trend <= 0 or side == 0 or price <= 0 or full <= start:
        return ONE
    ratio = price / Decimal(repr(trend))
    stretch = ratio - ONE if side > 0 else ONE / ratio - ONE
    if stretch <= start:
        return ONE
    if stretch >= full:
        return floor
    return (ONE - (ONE - floor) * (stretch - start) / (full - start)).quantize(_Q, rounding=ROUND_DOWN)


def rerisk_gate(scale: Decimal, held: Decimal | None, price: Decimal, trend: float | None,
                side: int) -> Decimal:
    """The share of the thesis to hold now, given the share `held` at the last evaluation (signed
    by its side; None: none yet): `scale` if it is not more than held, or price is at or beyond
    its trend in the thesis's direction (`side` +1 long, -1 short); else the held share."""
    if held is None or side == 0 or held * side < 0 or trend is None or trend <= 0:
        return scale  # nothing held on this side yet, or no trend: nothing to gate
    kept = abs(held)
    if scale <= kept:
        return scale
    gap = price - Decimal(repr(trend))
    return scale if gap * side >= 0 else kept


class SizingVol(EwmaVol):
    """The sizing vol (hourly returns, `half_life_days`) that also keeps its baseline, the same
    estimator with `baseline_half_life_days` (0: none), and the price trend, an EWMA of the same
    hourly closes with `trend_half_life_days` (0: none). Seeded and updated as one."""

    __slots__ = ("_baseline", "_trend", "_trend_decay")

    def __init__(self, half_life_days: float, baseline_half_life_days: float = 0.0,
                 trend_half_life_days: float = 0.0) -> None:
        super().__init__(half_life_days * 86400, 3600)
        self._baseline = (EwmaVol(baseline_half_life_days * 86400, 3600)
                          if baseline_half_life_days > 0 else None)
        # per hour; None: no trend kept
        self._trend_decay = 0.5 ** (1 / (trend_half_life_days * 24)) if trend_half_life_days > 0 else None
        self._trend: float | None = None

    def update(self, price: Decimal, now_ns: int) -> None:
        samples, last_ns = self.samples, self._last_ns
        super().update(price, now_ns)
        if self._baseline is not None:
            self._baseline.update(price, now_ns)
        if self._trend_decay is None:
            return
        if self._trend is None:
            self._trend = float(price)
        elif self.samples != samples:  # one hourly sample was taken: fold its close in
            hours = (now_ns - last_ns) / self._sample_ns
            keep = self._trend_decay ** hours
            self._trend = keep * self._trend + (1 - keep) * float(price)

    @property
    def baseline(self) -> float | None:
        """The baseline vol, annualised; None when off or before any return."""
        return self._baseline.annualised if self._baseline is not None else None

    @property
    def trend(self) -> float | None:
        """The price trend; None when off or before any price."""
        return self._trend


def baseline_of(vol: EwmaVol) -> float | None:
    """The baseline a sizing estimator keeps (None for a plain EwmaVol)."""
    return vol.baseline if isinstance(vol, SizingVol) else None


def trend_of(vol: EwmaVol) -> float | None:
    """The price trend a sizing estimator keeps (None for a plain EwmaVol)."""
    return vol.trend if isinstance(vol, SizingVol) else None
