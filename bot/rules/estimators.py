"""Incremental estimators over market state; O(1) per update (depth median O(log n))."""

from __future__ import annotations

import bisect
import math
from collections import deque
from decimal import Decimal

SECS_PER_YEAR = 365 * 24 * 3600
NS_PER_SEC = 1_000_000_000


class EwmaVol:
    """Annualised realised volatility from an EWMA of log returns sampled every `sample_secs`."""

    def __init__(self, half_life_secs: float, sample_secs: float = 1.0) -> None:
        self._alpha = 1 - 0.5 ** (sample_secs / half_life_secs)
        self._sample_ns = int(sample_secs * NS_PER_SEC)
        self._annualiser = math.sqrt(SECS_PER_YEAR / sample_secs)
        self._variance: float | None = None
        self._last_price: float | None = None
        self._last_ns = 0
        self.samples = 0

    def update(self, price: Decimal, now_ns: int) -> None:
        """Fold in a price; only one return per sample interval counts."""
        if self._last_price is None:
            self._last_price, self._last_ns = float(price), now_ns
            return
        if now_ns - self._last_ns < self._sample_ns:
            return
        p = float(price)
        ret = math.log(p / self._last_price)
        # Scale a longer gap back to one sample interval so gaps do not inflate vol.
        intervals = (now_ns - self._last_ns) / self._sample_ns
        sq = ret * ret / intervals
        self._variance = sq if self._variance is None else (
            self._variance + self._alpha * (sq - self._variance)
        )
        self._last_price, self._last_ns = p, now_ns
        self.samples += 1

    @property
    def annualised(self) -> float | None:
        if self._variance is None:
            return None
        return math.sqrt(self._variance) * self._annualiser


class RollingMedian:
    """Median of the last `window` samples."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._fifo: deque[Decimal] = deque()
        self._sorted: list[Decimal] = []

    def add(self, value: Decimal) -> None:
        self._fifo.append(value)
        bisect.insort(self._sorted, value)
        if len(self._fifo) > self._window:
            old = self._fifo.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    @property
    def median(self) -> Decimal | None:
        if not self._sorted:
            return None
        return self._sorted[len(self._sorted) // 2]

    def __len__(self) -> int:
        return len(self._fifo)


class FundingForecast:
    """Blend the venue's predicted next hourly rate with an EWMA of realised hourly rates."""

    def __init__(self, realised_weight: Decimal = Decimal("0.5"), alpha: Decimal = Decimal("0.2")):
        self._weight = realised_weight
        self._alpha = alpha
        self.realised_ewma: Decimal | None = None
        self.predicted: Decimal | None = None
        self.same_sign_streak = 0

    def on_predicted(self, rate_1h: Decimal) -> None:
        self.predicted = rate_1h

    def on_realised(self, rate_1h: Decimal) -> None:
        """Fold in a settled hourly rate and track how long its sign has persisted."""
        if self.realised_ewma is None:
            self.realised_ewma = rate_1h
            self.same_sign_streak = 1
            return
        same = (rate_1h > 0) == (self.realised_ewma > 0)
        self.same_sign_streak = self.same_sign_streak + 1 if same else 1
        self.realised_ewma += self._alpha * (rate_1h - self.realised_ewma)

    @property
    def rate_1h(self) -> Decimal:
        """Forecast hourly rate; positive means longs pay."""
        if self.predicted is None:
            return self.realised_ewma or Decimal(0)
        if self.realised_ewma is None:
            return self.predicted
        return self._weight * self.realised_ewma + (1 - self._weight) * self.predicted
