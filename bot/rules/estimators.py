"""Incremental estimators over market state: O(1) per update (the depth median, sampled once a
second, is O(window) on insert and O(1) to read)."""

from __future__ import annotations

import bisect
import math
from collections import deque
from decimal import Decimal

from bot.clock import NS_PER_HOUR, NS_PER_SEC, SECS_PER_YEAR


class EwmaVol:
    """Annualised realised volatility from an EWMA of log returns sampled every `sample_secs`.

    The EWMA starts at zero and is bias-corrected (divided by 1 - (1 - alpha)^n, as Adam does),
    so during warm-up it is the plain mean of the returns seen so far rather than a value
    dragged toward its first sample; a long window is then comparable with a short one early.
    """

    __slots__ = ("_alpha", "_annualised", "_annualiser", "_decay", "_ewma", "_last_ns", "_last_price",
                 "_sample_ns", "samples")

    def __init__(self, half_life_secs: float, sample_secs: float = 1.0) -> None:
        self._alpha = 1 - 0.5 ** (sample_secs / half_life_secs)
        self._sample_ns = int(sample_secs * NS_PER_SEC)
        self._annualiser = math.sqrt(SECS_PER_YEAR / sample_secs)
        self._ewma = 0.0
        self._decay = 1.0  # (1 - alpha)^samples
        self._last_price: float | None = None
        self._last_ns = 0
        self._annualised: float | None = None  # cached reading; None: compute on the next read
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
        self._ewma += self._alpha * (ret * ret / intervals - self._ewma)
        self._decay *= 1 - self._alpha
        self._last_price, self._last_ns = p, now_ns
        self.samples += 1
        self._annualised = None

    @property
    def annualised(self) -> float | None:
        if self.samples == 0:
            return None
        value = self._annualised
        if value is None:
            value = self._annualised = math.sqrt(self._ewma / (1 - self._decay)) * self._annualiser
        return value


class RollingMedian:
    """Median of the last `window` samples."""

    __slots__ = ("_fifo", "_sorted", "_window")

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
    """Blend the venue's predicted next hourly rate with an EWMA of realised hourly rates.

    Realised rates come from the predictions themselves: the last prediction seen before an
    hour boundary is that hour's settled rate (dYdX's `nextFundingRate` is the running mean of
    the hour's premium samples), so the forecast learns from the market whether or not we hold
    a position. `on_realised` takes a settled rate directly (e.g. from a historical-funding feed)
    for an hour not yet folded in. All updates are O(1); the forecast is computed when first read
    after a change (the rules read it several times per evaluation).
    """

    __slots__ = ("_alpha", "_hour", "_interval_ns", "_last_folded_hour", "_rate", "_weight",
                 "hours_seen", "last_realised", "predicted", "realised_ewma", "same_sign_streak")

    def __init__(self, realised_weight: Decimal = Decimal("0.5"), alpha: Decimal = Decimal("0.2"),
                 interval_ns: int = NS_PER_HOUR) -> None:
        self._weight = realised_weight
        self._alpha = alpha
        self._interval_ns = interval_ns
        self._hour: int | None = None
        self._last_folded_hour: int | None = None
        self.realised_ewma: Decimal | None = None
        self.last_realised: Decimal | None = None
        self.predicted: Decimal | None = None
        self.same_sign_streak = 0
        self.hours_seen = 0
        self._rate: Decimal | None = None  # cached rate_1h; None: compute on the next read

    def on_predicted(self, rate_1h: Decimal, ts_ns: int | None = None) -> None:
        """Take the venue's prediction; crossing an hour boundary settles the previous hour."""
        if ts_ns is not None:
            hour = ts_ns // self._interval_ns
            if self._hour is not None and hour > self._hour and self.predicted is not None:
                self.on_realised(self.predicted, self._hour)
            self._hour = hour
        self.predicted = rate_1h
        self._rate = None

    def on_realised(self, rate_1h: Decimal, hour: int | None = None) -> None:
        """Fold in a settled hourly rate (once per hour) and track how long its sign persisted."""
        if hour is not None:
            if self._last_folded_hour is not None and hour <= self._last_folded_hour:
                return
            self._last_folded_hour = hour
        self.hours_seen += 1
        if self.last_realised is not None and rate_1h != 0 and (rate_1h > 0) == (self.last_realised > 0):
            self.same_sign_streak += 1
        else:
            self.same_sign_streak = 1 if rate_1h != 0 else 0
        self.last_realised = rate_1h
        if self.realised_ewma is None:
            self.realised_ewma = rate_1h
        else:
            self.realised_ewma += self._alpha * (rate_1h - self.realised_ewma)
        self._rate = None

    @property
    def rate_1h(self) -> Decimal:
        """Forecast hourly rate; positive means longs pay."""
        rate = self._rate
        if rate is None:
            if self.predicted is None:
                rate = self.realised_ewma or Decimal(0)
            elif self.realised_ewma is None:
                rate = self.predicted
            else:
                rate = self._weight * self.realised_ewma + (1 - self._weight) * self.predicted
            self._rate = rate
        return rate

    @property
    def last_folded_hour(self) -> int | None:
        """The hour (since the epoch) of the last settled rate folded in, when known."""
        return self._last_folded_hour

    @property
    def persistence_hours(self) -> int:
        """Settled hours in a row whose sign matches the forecast's sign (0 when they disagree)."""
        rate, last = self.rate_1h, self.last_realised
        if last is None or rate == 0 or last == 0 or (rate > 0) != (last > 0):
            return 0
        return self.same_sign_streak


class FundingTrend:
    """A slow, bias-corrected EWMA of settled hourly funding rates (half-life in hours).

    The carry sleeve and the adverse-funding cap read this, not the hour's prediction: one hour's
    sign says little about the next day's. Seeded from venue history at start (`seed`), so a
    restart does not have to relearn it; each hour counts once (later duplicates are ignored).
    """

    __slots__ = ("_alpha", "_decay", "_ewma", "_last_hour", "_rate", "hours")

    def __init__(self, half_life_hours: float) -> None:
        self._alpha = 1 - 0.5 ** (1 / half_life_hours)
        self._ewma = 0.0
        self._decay = 1.0
        self._last_hour: int | None = None
        self._rate: Decimal | None = None  # rate_1h until the next settled hour
        self.hours = 0

    def on_settled(self, rate_1h: Decimal | float, hour: int) -> None:
        """Fold in the rate settled for `hour` (hours since the epoch); skipped hours count once."""
        if self._last_hour is not None and hour <= self._last_hour:
            return
        self._last_hour = hour
        self._ewma += self._alpha * (float(rate_1h) - self._ewma)
        self._decay *= 1 - self._alpha
        self.hours += 1
        self._rate = None

    def seed(self, rates: list[tuple[int, Decimal]]) -> None:
        """Fold in (ts_ns, hourly rate) history, oldest first or not (it is sorted here)."""
        for ts_ns, rate in sorted(rates):
            self.on_settled(rate, ts_ns // NS_PER_HOUR)

    @property
    def rate_1h(self) -> Decimal:
        """The trend hourly rate (positive: longs pay); zero before any hour is seen."""
        if self.hours == 0:
            return Decimal(0)
        if self._rate is None:
            self._rate = Decimal(repr(round(self._ewma / (1 - self._decay), 12)))
        return self._rate


def seed_vol(vol: EwmaVol, closes: list[tuple[int, Decimal]]) -> None:
    """Fold (ts_ns, close) history into a volatility estimator, oldest first."""
    for ts_ns, close in sorted(closes):
        if close > 0:
            vol.update(close, ts_ns)
