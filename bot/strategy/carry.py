"""Carry bookkeeping between evaluations, and how long funding regimes last (pure).

`CarryWatch` counts the settled hours in a row in which an open carry's outlook was adverse;
the carry sleeve exits only when that count reaches `exit_confirm_hours` (hysteresis in time on
top of the entry/exit threshold gap). `FundingMedian` is the entry trend when
`carry.entry_median_hours` > 0: the median of the last settled hourly rates. Funding sits on a
level (on most venues an interest component plus a premium regime) with short spikes from
liquidation cascades that revert within hours; a carry is held for weeks, so the level is what
it earns and what the entry should read. An EWMA moves a spike's full size divided by its
span; the median does not move with it, in either direction (a spike neither delays an entry
nor lures one), yet follows a regime once it holds for half the window. `regime_hold_hours`
measures, on a history of hourly rates, how long a carry opened by the same entry rule stayed
open under the same exit rule: the research script (tools/calibrate.py) uses it to set
`horizon_hours`, the expected holding period the entry rule amortises the round-trip costs over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.clock import NS_PER_HOUR
from bot.config import CarrySettings
from bot.rules.estimators import FundingTrend, RollingMedian


@dataclass(frozen=True, slots=True)
class CarryWatch:
    """Adverse hours in a row for an open carry, and the last hour counted."""

    adverse_hours: int = 0
    hour: int | None = None


def watch_carry(watch: CarryWatch, open_side: int, adverse: bool, now_ns: int) -> CarryWatch:
    """Count one settled hour at most once; reset when the carry is closed or the hour is fine."""
    if not open_side:
        return CarryWatch()
    hour = now_ns // NS_PER_HOUR
    if watch.hour == hour:
        return watch
    return CarryWatch(watch.adverse_hours + 1 if adverse else 0, hour)


class FundingMedian:
    """The median of the last `window_hours` settled hourly funding rates (`FundingTrend`'s
    interface: seeded from venue history at start, each hour counted once)."""

    __slots__ = ("_last_hour", "_window", "hours")

    def __init__(self, window_hours: int) -> None:
        self._window = RollingMedian(window_hours)
        self._last_hour: int | None = None
        self.hours = 0

    def on_settled(self, rate_1h: Decimal | float, hour: int) -> None:
        """Fold in the rate settled for `hour` (hours since the epoch); older hours are ignored."""
        if self._last_hour is not None and hour <= self._last_hour:
            return
        self._last_hour = hour
        self._window.add(rate_1h if isinstance(rate_1h, Decimal) else Decimal(repr(rate_1h)))
        self.hours += 1

    def seed(self, rates: list[tuple[int, Decimal]]) -> None:
        """Fold in (ts_ns, hourly rate) history, oldest first or not (it is sorted here)."""
        for ts_ns, rate in sorted(rates):
            self.on_settled(rate, ts_ns // NS_PER_HOUR)

    @property
    def rate_1h(self) -> Decimal:
        """The median hourly rate of the window (positive: longs pay); zero before any hour."""
        median = self._window.median
        return Decimal(0) if median is None else median


def entry_trend_for(p: CarrySettings) -> FundingTrend | FundingMedian:
    """The estimator a closed carry decides its entry on."""
    if p.entry_median_hours > 0:
        return FundingMedian(p.entry_median_hours)
    return FundingTrend(p.entry_half_life_hours)


def median_series(rates: Sequence[float], window_hours: int) -> list[float]:
    """The rolling median of hourly rates after each hour (as `FundingMedian` computes it)."""
    est = FundingMedian(window_hours)
    out = []
    for hour, rate in enumerate(rates):
        est.on_settled(rate, hour)
        out.append(float(est.rate_1h))
    return out


def trend_series(rates: Sequence[float], half_life_hours: float) -> list[float]:
    """The bias-corrected EWMA of hourly rates after each hour (as `FundingTrend` computes it)."""
    alpha = 1 - 0.5 ** (1 / half_life_hours)
    out, ewma, decay = [], 0.0, 1.0
    for rate in rates:
        ewma += alpha * (rate - ewma)
        decay *= 1 - alpha
        out.append(ewma / (1 - decay))
    return out


def carry_episodes(trend: Sequence[float], entry_rate: float, exit_rate: float,
                   confirm_hours: int, entry_trend: Sequence[float] | None = None
                   ) -> list[tuple[int, int, int]]:
    """(start, end, side) of each carry a threshold rule holds over an hourly trend series.

    Opens on the side that receives funding when |trend| >= entry_rate; closes after
    `confirm_hours` hours in a row in which the trend received on that side is below exit_rate.
    An episode still open at the end ends at len(trend). With `entry_trend`, a closed carry
    opens on it instead (the sleeve's faster entry trend).
    """
    opener = trend if entry_trend is None else entry_trend
    episodes: list[tuple[int, int, int]] = []
    side, start, adverse = 0, 0, 0
    for i, rate in enumerate(trend):
        if side == 0:
            signal = opener[i]
            if abs(signal) >= entry_rate and signal != 0:
                side, start, adverse = (-1 if signal > 0 else 1), i, 0
            continue
        received = -side * rate
        adverse = adverse + 1 if received < exit_rate else 0
        if adverse >= confirm_hours:
            episodes.append((start, i + 1, side))
            side = 0
    if side:
        episodes.append((start, len(trend), side))
    return episodes


def regime_hold_hours(rates: Sequence[float], half_life_hours: float, entry_rate: float,
                      exit_rate: float, confirm_hours: int,
                      entry_half_life_hours: float | None = None,
                      entry_median_hours: int = 0) -> float | None:
    """Median length in hours of the carry episodes of the rule over a history (None: none)."""
    entry_trend = None if entry_half_life_hours is None else trend_series(rates, entry_half_life_hours)
    if entry_median_hours > 0:
        entry_trend = median_series(rates, entry_median_hours)
    lengths = sorted(end - start for start, end, _ in
                     carry_episodes(trend_series(rates, half_life_hours), entry_rate, exit_rate,
                                    confirm_hours, entry_trend))
    if not lengths:
        return None
    mid = len(lengths) // 2
    median = lengths[mid] if len(lengths) % 2 else (lengths[mid - 1] + lengths[mid]) / 2
    return float(median) if math.isfinite(median) else None
