"""Candle and funding files for backtests and research: read, validate, report what is wrong.

Candles come from CSV (`Date,Open,High,Low,Close,Volume`) or freqtrade's feather files (with
pyarrow, the research extra); both go through one row check. `perpbot optimize` keeps them as
columns (`bot.research.data`) after this reader.

Times are UTC unless the caller shifts them (`offset_hours`: the CLI's `--candles-offset` and
`--funding-offset`); nothing is guessed from file names. What cannot be replayed honestly is
refused with a `SourceError` naming the option (the CLI exits 2 with that one line):

- candles: a missing column, a row that does not parse or is not finite, `0 < low <= open/close
  <= high` broken, fewer than two bars;
- funding: a rate that is not finite or over `MAX_RATE` per interval, a row spacing that is not
  whole hours or disagrees with `--funding-interval` when it is given, a market that has no
  candles, no overlap with the candles' span.

What can be replayed is reported (`notes`, written into summary.json and printed by the CLI):
rows out of order (sorted), duplicate times (the first row kept), gaps (no bar: no events; no
funding: none is paid there, a rate is never carried past its interval), off-grid bars.
The bar grid is the median spacing, so a duplicate or a gap cannot change it.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from bot.clock import NS_PER_HOUR, NS_PER_SEC


class SourceError(ValueError):
    """Bad backtest input; `option` names the CLI option it came from."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason

MAX_RATE = Decimal("0.1")  # per interval: 10% is no funding rate any venue publishes
_BASE = re.compile(r"^([A-Z0-9]+?)[-_/]?(USDT|USDC|USD|BUSD)", re.IGNORECASE)
_NOTES_SHOWN = 3  # gap times listed per note
GRID_JITTER_NS = NS_PER_SEC  # venues stamp settlements a few ms off the grid: not a gap, not off-grid


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV candle (floats: prices feed the synthetic market, never an order or the store)."""

    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def market_from_name(text: str) -> str:
    """'BTCUSDT_1h.csv' / 'BTC-USDT' -> 'BTC-USD' (the perp ticker the engine trades)."""
    match = _BASE.match(Path(text).name)
    if not match:
        raise ValueError(f"cannot tell the market from {text!r}")
    return f"{match.group(1).upper()}-USD"


def _ts(text: str) -> int:
    text = text.strip()
    if re.fullmatch(r"\d{8} \d{2}:\d{2}:\d{2}", text):  # Lean: 20260110 00:00:00
        dt = datetime.strptime(text, "%Y%m%d %H:%M:%S")
    else:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS_PER_SEC + dt.microsecond * 1000


def parse_time(text: str, option: str) -> int:
    """An ISO date or datetime (UTC unless it says otherwise) as ns since the epoch."""
    try:
        return _ts(text)
    except ValueError:
        raise SourceError(option, f"{text!r} is not a date like 2022-11-01 or 2022-11-01T12:00") from None


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_SEC, UTC).strftime("%Y-%m-%dT%H:%M")


def median_spacing(times: list[int]) -> int:
    """The median gap between consecutive distinct sorted times (0 with fewer than two)."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return gaps[len(gaps) // 2] if gaps else 0


def _off_grid(offset: int, step: int) -> bool:
    """True when `offset` is more than GRID_JITTER_NS away from a multiple of `step`."""
    rest = offset % step
    return min(rest, step - rest) > GRID_JITTER_NS


def grid_notes(label: str, times: list[int], step: int) -> list[str]:
    """Gaps and off-grid times in sorted, distinct `times` on a grid of `step` (jitter forgiven)."""
    notes: list[str] = []
    missing_after = [((b - a + step // 2) // step - 1, a, b) for a, b in itertools.pairwise(times)]
    gaps = [(n, a, b) for n, a, b in missing_after if n > 0]
    if gaps:
        missing = sum(n for n, _, _ in gaps)
        shown = ", ".join(f"{iso(a + step)}..{iso(b - step)}" for _, a, b in gaps[:_NOTES_SHOWN])
        notes.append(f"{label}: {len(gaps)} gaps ({missing} intervals missing), first: {shown}")
    off = sum(1 for t in times if _off_grid(t - times[0], step)) if times else 0
    if off:
        notes.append(f"{label}: {off} rows off the {step // NS_PER_SEC}s grid")
    return notes


T = TypeVar("T")


def _dedupe(label: str, rows: list[tuple[int, T]], notes: list[str]) -> list[tuple[int, T]]:
    """Sort by time (stable: the first row of a time wins); report disorder and duplicates."""
    disorder = sum(1 for a, b in itertools.pairwise(rows) if b[0] < a[0])
    if disorder:
        notes.append(f"{label}: {disorder} rows out of time order (sorted)")
    rows = sorted(rows, key=lambda r: r[0])
    out: list[tuple[int, T]] = []
    dupes = 0
    for row in rows:
        if out and out[-1][0] == row[0]:
            dupes += 1
            continue
        out.append(row)
    if dupes:
        notes.append(f"{label}: {dupes} duplicate times (first row kept)")
    return out


COLUMNS = ("date", "open", "high", "low", "close", "volume")
FEATHER = (".feather", ".arrow")  # freqtrade's candle files; read with pyarrow (the research extra)
Record = tuple[int, object, object, object, object, object, object]  # line, date, O, H, L, C, V


def load_candles(path: Path, start_ns: int | None = None, end_ns: int | None = None,
                 option: str = "--candles", *, offset_hours: int = 0,
                 notes: list[str] | None = None) -> list[Bar]:
    """The one candle reader (backtest, bar path and research): `Date,Open,High,Low,Close,Volume`
    rows in [start, end) from a CSV (any column order, any case) or a feather file."""
    notes = notes if notes is not None else []
    shift = offset_hours * NS_PER_HOUR
    rows: list[tuple[int, Bar]] = []
    try:
        records = _feather_records(path, option) if path.suffix in FEATHER else _csv_records(path, option)
        for n, date, *values in records:
            try:
                ts = (date if isinstance(date, int) else _ts(str(date))) + shift
            except ValueError:
                raise SourceError(option, f"{path}:{n}: {date!r} is not a date") from None
            if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts >= end_ns):
                continue
            try:
                o, h, lo, c, v = (float(x) for x in values)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise SourceError(option, f"{path}:{n}: not a candle row (a price or volume is not "
                                          "numeric)") from None
            if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
                raise SourceError(option, f"{path}:{n}: not a finite number")
            if min(o, h, lo, c) <= 0 or not lo <= min(o, c) <= max(o, c) <= h:
                raise SourceError(option, f"{path}:{n}: need 0 < low <= open/close <= high")
            rows.append((ts, Bar(ts, o, h, lo, c, max(v, 0.0))))
    except FileNotFoundError:
        raise SourceError(option, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    bars = [b for _, b in _dedupe(path.name, rows, notes)]
    if len(bars) < 2:
        raise SourceError(option, f"{path}: fewer than two candles in the chosen span")
    times = [b.ts_ns for b in bars]
    notes += grid_notes(path.name, times, median_spacing(times))
    return bars  # type: ignore[return-value]


def _columns(names: list[str], path: Path, option: str) -> list[str]:
    cols = {(name or "").strip().lower(): name for name in names}
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise SourceError(option, f"{path} lacks column {missing[0]!r}")
    return [cols[c] for c in COLUMNS]


def _csv_records(path: Path, option: str) -> Iterator[Record]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        keys = _columns(header, path, option)
        i_date, i_open, i_high, i_low, i_close, i_volume = (header.index(k) for k in keys)
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                yield n, row[i_date], row[i_open], row[i_high], row[i_low], row[i_close], row[i_volume]
            except IndexError:
                yield n, row[0], None, None, None, None, None  # a short row: not a candle row


def _feather_records(path: Path, option: str) -> Iterator[Record]:
    """A feather file's rows; typed timestamps become ns since the epoch (UTC)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.feather as feather
    except ImportError:
        raise SourceError(option, f"{path}: feather files need pyarrow "
                                  "(pip install 'perpbot[research]')") from None
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        table = feather.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    keys = _columns(table.column_names, path, option)
    date = table.column(keys[0])
    if pa.types.is_timestamp(date.type):
        date = pc.cast(date, pa.timestamp("ns", tz=date.type.tz)).cast(pa.int64())
    columns = [date.to_pylist(), *(table.column(k).to_pylist() for k in keys[1:])]
    for n, row in enumerate(zip(*columns, strict=True), start=2):
        yield (n, *row)  # type: ignore[misc]


def _funding_rows(path: Path, text: str, option: str) -> list[tuple[str, int, Decimal]]:
    rows = [r for r in csv.reader(text.splitlines()) if r]
    if not rows:
        raise SourceError(option, f"{path} is empty")
    raw: list[tuple[str, int, Decimal]] = []
    header = [c.strip().lower() for c in rows[0]]
    first = 1  # file line of the first data row, for the error
    try:
        if "funding rate" in header and "date" in header:
            i_sym = header.index("symbol") if "symbol" in header else None
            i_date, i_rate = header.index("date"), header.index("funding rate")
            first = 2
            for row in rows[1:]:
                market = market_from_name(row[i_sym]) if i_sym is not None else market_from_name(path.name)
                raw.append((market, _ts(row[i_date]), Decimal(row[i_rate].strip())))
        else:  # Lean's headerless dYdX file: the market comes from the file name
            tokens = [t for t in path.stem.split("_") if re.fullmatch(r"[a-z0-9]+usd[tc]?", t, re.I)]
            market = market_from_name(tokens[0] if tokens else path.stem)
            for row in rows:
                raw.append((market, _ts(row[0]), Decimal(row[1].strip())))
    except (IndexError, ValueError, ArithmeticError, InvalidOperation) as exc:
        raise SourceError(option, f"{path}:{first + len(raw)}: not a funding row ({exc})") from None
    for _, ts, rate in raw:
        if not rate.is_finite() or abs(rate) > MAX_RATE:
            raise SourceError(option, f"{path}: rate {rate} at {iso(ts)} is not a funding rate "
                                      f"(finite, at most {MAX_RATE} per interval)")
    return raw


def load_funding(path: Path, interval_hours: int | None = None, offset: int | str = 0,
                 option: str = "--funding", *,
                 notes: list[str] | None = None) -> dict[str, dict[int, Decimal]]:
    """Read `Symbol,Date,Funding Rate` (or Lean's headerless `YYYYMMDD HH:MM:SS,rate`).

    Returns market -> {hour end (ns, UTC) -> 1-hour rate}: a rate per interval settling at T covers
    (T - interval, T], so each of those hours gets rate / interval. The interval is the rows'
    median spacing; `interval_hours` (the CLI's `--funding-interval`), when given, must agree.
    """
    notes = notes if notes is not None else []
    offset = _offset_hours(offset, notes)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SourceError(option, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    by_market: dict[str, list[tuple[int, Decimal]]] = {}
    for market, ts, rate in _funding_rows(path, text, option):
        by_market.setdefault(market, []).append((ts + offset * NS_PER_HOUR, rate))
    out: dict[str, dict[int, Decimal]] = {}
    for market, rows in by_market.items():
        label = f"{path.name} ({market})"
        rows = _dedupe(label, rows, notes)
        times = [t for t, _ in rows]
        spacing = median_spacing(times)
        if not _off_grid(spacing, NS_PER_HOUR):  # exchanges stamp settlements a few ms late
            spacing = (spacing + NS_PER_HOUR // 2) // NS_PER_HOUR * NS_PER_HOUR
        if spacing % NS_PER_HOUR:
            raise SourceError("--funding-interval", f"{label}: rows are {spacing / NS_PER_HOUR:g} h apart, "
                                                    "not whole hours")
        inferred = spacing // NS_PER_HOUR or interval_hours
        if inferred is None:
            raise SourceError("--funding-interval", f"{label}: one row; give the interval (1h or 8h)")
        if interval_hours is not None and inferred != interval_hours:
            raise SourceError("--funding-interval", f"{label}: rows are {inferred}h apart, "
                                                    f"not {interval_hours}h")
        notes += grid_notes(label, times, inferred * NS_PER_HOUR)
        if inferred > 1 and any(_off_grid(t, NS_PER_HOUR) for t in times):
            notes.append(f"{label}: settlement times are not on the hour")
        per_hour = Decimal(inferred)
        hours = out[market] = {}
        for ts, rate in rows:
            settle = ts // NS_PER_HOUR * NS_PER_HOUR
            for k in range(inferred):
                hours[settle - k * NS_PER_HOUR] = rate / per_hour
    return out


def _offset_hours(offset: int | str, notes: list[str]) -> int:
    """Whole hours; the old 'auto' (a -3 h guess from Binance/Bybit file names) now reads UTC."""
    if offset == "auto":
        notes.append("--funding-offset auto no longer guesses: funding times are read as UTC")
        return 0
    try:
        return int(offset)
    except ValueError:
        raise SourceError("--funding-offset", f"must be whole hours (got {offset!r})") from None


def check_funding(funding: dict[str, dict[int, Decimal]], candles: dict[str, list[Bar]],
                  notes: list[str]) -> None:
    """Funding must be for markets with candles and overlap their span; report hours it misses."""
    for market, rates in funding.items():
        bars = candles.get(market)
        if bars is None:
            raise SourceError("--funding", f"funding is for {market}, the candles are for "
                                           f"{', '.join(sorted(candles))} (use --market for one file)")
        start, end = bars[0].ts_ns, bars[-1].ts_ns + median_spacing([b.ts_ns for b in bars])
        first_hour = start // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR
        wanted = range(first_hour, end + 1, NS_PER_HOUR)  # hour ends within the candles' span
        covered = sum(1 for h in wanted if h in rates)
        if not covered:
            lo, hi = min(rates), max(rates)
            raise SourceError("--funding", f"{market}: funding {iso(lo)}..{iso(hi)} does not overlap the "
                                           f"candles {iso(start)}..{iso(end)}")
        if covered < len(wanted):
            notes.append(f"{market}: funding covers {covered} of {len(wanted)} hours of the candles "
                         "(no funding paid in the others)")
