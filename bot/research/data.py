"""Research data: candles and funding read once into columnar arrays, then cut into windows.

Candles come from the backtest's CSV format (`Date,Open,High,Low,Close,Volume`, any case and
column order) or from freqtrade-style feather files (`date,open,...`), parsed by pyarrow into one
int64 time array (ns, UTC) and five float64 arrays per market. Funding files go through the
backtest's own reader (`sources.load_funding`, with its interval and UTC+3 rules) once and are
kept as a sorted array of hour ends beside their Decimal rates. A fold's window is then a
`searchsorted` slice, handed to the backtest in the shape `sources.candle_source` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather

from bot.backtest import sources
from bot.backtest.sources import Bar, SourceError
from bot.clock import NS_PER_HOUR

from .folds import Window

COLUMNS = ("date", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Candles:
    """One market's bars as columns (ts in ns since the epoch, UTC, ascending)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

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
    """Read every file once; SourceError names the option of a bad file or value."""
    if not spec.candle_paths:
        raise SourceError("--candles", "at least one candle file is required")
    start_ns = sources.parse_time(spec.start, "--start") if spec.start else None
    end_ns = sources.parse_time(spec.end, "--end") if spec.end else None
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise SourceError("--end", "must be after --start")
    candles: dict[str, Candles] = {}
    for path in (*spec.candle_paths, *spec.funding_paths):
        if not Path(path).is_file():
            option = "--candles" if path in spec.candle_paths else "--funding"
            raise SourceError(option, f"file not found: {path}")
    for path in spec.candle_paths:
        try:
            ticker = spec.market if spec.market and len(spec.candle_paths) == 1 else \
                sources.market_from_name(path)
        except ValueError as exc:
            raise SourceError("--market", str(exc)) from None
        if ticker in candles:
            raise SourceError("--candles", f"two files for {ticker}")
        candles[ticker] = read_candles(Path(path), start_ns, end_ns, offset_hours=spec.candles_offset_hours)
    rates_by_market: dict[str, dict[int, Decimal]] = {}
    for path in spec.funding_paths:
        loaded = sources.load_funding(Path(path), spec.funding_interval_hours, spec.funding_offset_hours)
        if spec.market and len(spec.candle_paths) == 1 and len(loaded) == 1:
            loaded = {spec.market: next(iter(loaded.values()))}
        for ticker, rates in loaded.items():
            rates_by_market.setdefault(ticker, {}).update(rates)
    # The backtest's own checks: funding for a market with candles, overlapping their span.
    sources.check_funding(rates_by_market, {t: c.bars(int(c.ts[0]), int(c.ts[-1]) + 1)
                                            for t, c in candles.items()}, [])
    funding = {t: Funding(np.array(sorted(r), dtype=np.int64), tuple(r[k] for k in sorted(r)))
               for t, r in rates_by_market.items()}
    return ResearchData(candles, funding)


def read_candles(path: Path, start_ns: int | None = None, end_ns: int | None = None,
                 option: str = "--candles", offset_hours: int = 0) -> Candles:
    """A CSV or feather candle file as columns, rows in [start, end), checked like the backtest's."""
    if not path.is_file():
        raise SourceError(option, f"file not found: {path}")
    try:
        table = feather.read_table(path) if path.suffix in (".feather", ".arrow") else pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    names = {name.strip().lower(): name for name in table.column_names}
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise SourceError(option, f"{path} lacks column {missing[0]!r}")
    ts = _times(table.column(names["date"]), path, option) + offset_hours * NS_PER_HOUR
    try:
        o, h, lo, c, v = (table.column(names[k]).cast(pa.float64()).to_numpy(zero_copy_only=False)
                          for k in COLUMNS[1:])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(option, f"{path}: a price or volume column is not numeric") from None
    bad = ~((np.minimum(np.minimum(o, h), np.minimum(lo, c)) > 0)
            & (lo <= np.minimum(o, c)) & (np.maximum(o, c) <= h))
    if bad.any():
        row = int(np.argmax(bad))
        raise SourceError(option, f"{path}:{row + 2}: need 0 < low <= open/close <= high")
    keep = np.ones(len(ts), dtype=bool)
    if start_ns is not None:
        keep &= ts >= start_ns
    if end_ns is not None:
        keep &= ts < end_ns
    order = np.argsort(ts[keep], kind="stable")
    cols = [a[keep][order] for a in (ts, o, h, lo, c, np.maximum(v, 0.0))]
    if len(cols[0]) < 2:
        raise SourceError(option, f"{path}: fewer than two candles in the chosen span")
    if (np.diff(cols[0]) <= 0).any():
        raise SourceError(option, f"{path}: two candles share a time")
    return Candles(*cols)


def _times(column: pa.ChunkedArray, path: Path, option: str) -> np.ndarray:
    """Times as int64 ns UTC: typed timestamps directly, text through the backtest's parser."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64()).to_numpy()
    values = column.cast(pa.string()).to_pylist()
    try:
        return np.array([sources.parse_time(str(v), option) for v in values], dtype=np.int64)
    except SourceError:
        raise SourceError(option, f"{path}: the date column holds something that is not a date") from None
