"""Carry bookkeeping between evaluations, and how long funding regimes last (pure).

`CarryWatch` counts the settled hours in a row in which an open carry's outlook was adverse;
the carry sleeve exits only when that count reaches `exit_confirm_hours` (hysteresis in time on
top of the entry/exit threshold gap). `regime_hold_hours` measures, on a history of hourly
rates, how long a carry opened by the same entry rule stayed open under the same exit rule: the
research script (tools/calibrate.py) uses it to set `horizon_hours`, the expected holding period
the entry rule amortises the round-trip costs over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import NS_PER_HOUR


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
                      entry_half_life_hours: float | None = None) -> float | None:
    """Median length in hours of the carry episodes of the rule over a history (None: none)."""
    entry_trend = None if entry_half_life_hours is None else trend_series(rates, entry_half_life_hours)
    lengths = sorted(end - start for start, end, _ in
                     carry_episodes(trend_series(rates, half_life_hours), entry_rate, exit_rate,
                                    confirm_hours, entry_trend))
    if not lengths:
        return None
    mid = len(lengths) // 2
    median = lengths[mid] if len(lengths) % 2 else (lengths[mid - 1] + lengths[mid]) / 2
    return float(median) if math.isfinite(median) else None
