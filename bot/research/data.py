"""Research data: candles and funding read once into columnar arrays, then cut into windows.

The files go through the backtest's one reader (`sources.load_candle_data`: CSV or feather
candles, funding with its interval and offset rules, the same checks and notes), once per study;
each market's bars are then kept as one int64 time array (ns, UTC) and five float64 arrays, and
funding as a sorted array of hour ends beside their Decimal rates. A fold's window is a
`searchsorted` slice, handed to the backtest in the shape `sources.candle_source` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from bot.backtest import sources
from bot.backtest.sources import Bar, SourceError
from bot.clock import NS_PER_HOUR

from .folds import Window


@dataclass(frozen=True)
class Candles:
    """One market's bars as columns (ts in ns since the epoch, UTC, ascending)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_bars(cls, bars: list[Bar]) -> Candles:
        return cls(np.array([b.ts_ns for b in bars], dtype=np.int64),
                   *(np.array([getattr(b, k) for b in bars], dtype=np.float64)
                     for k in ("open", "high", "low", "close", "volume")))

    def bars(self, start_ns: int, end_ns: int) -> list[Bar]:
        lo, hi = np.searchsorted(self.ts, [start_ns, end_ns])
        cols = (self.ts[lo:hi].tolist(), self.open[lo:hi].tolist(), self.high[lo:hi].tolist(),
                self.low[lo:hi].tolist(), self.close[lo:hi].tolist(), self.volume[lo:hi].tolist())
        return [Bar(*row) for row in zip(*cols, strict=True)]


@dataclass(frozen=True)
class Funding:
    """One market's hourly rates: `ts` are hour ends (ns), `rates` the 1-hour rate settling there."""

    ts: np.ndarray
    rates: tuple[Decimal, ...]

    def window(self, start_ns: int, end_ns: int) -> dict[int, Decimal]:
        # The replay looks up the rate of the hour each step falls in, by that hour's end.
        lo, hi = np.searchsorted(self.ts, [start_ns, end_ns + NS_PER_HOUR], side="right")
        return dict(zip(self.ts[lo:hi].tolist(), self.rates[lo:hi], strict=True))


@dataclass(frozen=True)
class DataSpec:
    """The backtest data options, as `perpbot backtest` takes them."""

    candle_paths: tuple[str, ...]
    funding_paths: tuple[str, ...] = ()
    funding_interval_hours: int | None = None  # None: the rows' spacing
    funding_offset_hours: int = 0  # hours to add to the funding files' times (UTC unless given)
    start: str | None = None
    end: str | None = None
    market: str | None = None
    candles_offset_hours: int = 0


@dataclass
class ResearchData:
    candles: dict[str, Candles]
    funding: dict[str, Funding] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader found wrong but replayable

    @property
    def bar_ns(self) -> int:
        return min(int(c.ts[1] - c.ts[0]) for c in self.candles.values())

    @property
    def start_ns(self) -> int:
        return max(int(c.ts[0]) for c in self.candles.values())

    @property
    def end_ns(self) -> int:
        return min(int(c.ts[-1]) for c in self.candles.values()) + self.bar_ns

    def window(self, w: Window) -> tuple[dict[str, list[Bar]], dict[str, dict[int, Decimal]]]:
        candles = {t: c.bars(w.start_ns, w.end_ns) for t, c in self.candles.items()}
        funding = {t: f.window(w.start_ns, w.end_ns) for t, f in self.funding.items()}
        return candles, funding


def load(spec: DataSpec) -> ResearchData:
    """Read every file once with the backtest's reader and checks; SourceError names the option."""
    if not spec.candle_paths:
        raise SourceError("--candles", "at least one candle file is required")
    start_ns = sources.parse_time(spec.start, "--start") if spec.start else None
    end_ns = sources.parse_time(spec.end, "--end") if spec.end else None
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise SourceError("--end", "must be after --start")
    loaded = sources.load_candle_data(spec.candle_paths, spec.funding_paths, market=spec.market,
                                      start_ns=start_ns, end_ns=end_ns,
                                      funding_interval_hours=spec.funding_interval_hours,
                                      funding_offset_hours=spec.funding_offset_hours,
                                      candles_offset_hours=spec.candles_offset_hours)
    candles = {t: Candles.from_bars(bars) for t, bars in loaded.candles.items()}
    funding = {t: Funding(np.array(sorted(r), dtype=np.int64), tuple(r[k] for k in sorted(r)))
               for t, r in loaded.funding.items()}
    return ResearchData(candles, funding, loaded.notes)
