"""Time-ordered market event sources for backtests: the seeded simulator, OHLCV candles + funding
CSVs, and recordings. Each yields batches `(ts_ns, perp_events, spot_events)` in time order.

Candles become a synthetic market: each bar is walked O->L->H->C (a rising bar) or O->H->L->C
(a falling one) in `steps_per_bar` points, and at each point the source emits a book snapshot
(`depth_levels` per side around the path price, level size a share of the bar's volume), one
trade, an oracle update (price = the path price, `next_funding_rate` = the hourly rate settling at
the end of the current hour) and a block height; the spot hedge gets the same book. Funding CSV
rates are per `interval_hours` and settle at the row's time: each is spread as rate / interval
over the interval's hours, the engine's 1-hour convention. Binance and Bybit files from the
fetcher carry local time (UTC+3): `funding_offset_hours="auto"` subtracts 3 h for them (by file
name, or when 8-hourly rows sit at 03/11/19 h) so settlements land on 00/08/16 UTC.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import orjson

from bot.config import Settings
from bot.domain import (
    BlockHeight,
    BookLevel,
    BookSnapshot,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)
from bot.sim.market import SimMarket
from bot.venues.sim.feed import default_params

from .codec import decode_event

NS_PER_SEC = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SEC
Batch = tuple[int, list[MarketEvent], list[MarketEvent]]
# Start of simulated runs: a fixed instant, so a seed alone fixes every event.
SIM_EPOCH_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_SEC
_CEX_TZ_HINT = re.compile(r"binance|bybit", re.IGNORECASE)
_BASE = re.compile(r"^([A-Z0-9]+?)[-_/]?(USDT|USDC|USD|BUSD)", re.IGNORECASE)


class SourceError(ValueError):
    """Bad backtest input; `option` names the CLI option it came from."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


@dataclass
class Source:
    """What a backtest replays: the markets, the span and the event batches (consumed once)."""

    kind: str
    specs: dict[str, MarketSpec]
    spot_specs: dict[str, MarketSpec]
    spot_of: dict[str, str]  # perp ticker -> spot ticker
    start_ns: int
    end_ns: int
    batches: Iterable[Batch]
    describe: dict[str, Any] = field(default_factory=dict)
    has_heights: bool = True


def market_from_name(text: str) -> str:
    """'BTCUSDT_1h.csv' / 'BTC-USDT' -> 'BTC-USD' (the perp ticker the engine trades)."""
    match = _BASE.match(Path(text).name)
    if not match:
        raise ValueError(f"cannot tell the market from {text!r}")
    return f"{match.group(1).upper()}-USD"


def _spec(ticker: str, block_secs: float) -> MarketSpec:
    p = default_params(ticker, block_secs)
    return MarketSpec(ticker, p.tick_size, p.step_size, p.min_order_size)


def _spot_map(settings: Settings, perps: Iterable[str]) -> dict[str, str]:
    carry = settings.strategy.carry
    if not carry.enabled:
        return {}
    return {t: carry.spot_markets[t] for t in perps if t in carry.spot_markets}


# ---- the seeded simulator (what open_in_process runs, stepped in simulated time) ---------------


def sim_source(settings: Settings, seed: int, hours: float, *, start_ns: int = SIM_EPOCH_NS,
               step_secs: float | None = None, activity: dict[str, float] | None = None) -> Source:
    """SimMarket per perp plus a spot twin per hedged perp, exactly as `open_in_process` builds them.

    `activity` overrides the markets' flow parameters (e.g. `{"taker_trades_per_sec": 40,
    "level_updates_per_sec": 100}` for a busy market); None keeps the simulator's defaults.
    """
    if hours <= 0:
        raise SourceError("--hours", "must be > 0")
    block = settings.sim.block_interval_secs
    perps = {t: SimMarket(replace(default_params(t, block), **(activity or {})), seed + i, start_ns)
             for i, t in enumerate(settings.markets)}
    spot_of = _spot_map(settings, settings.markets)
    spots = {spot_of[t]: SimMarket(replace(perps[t].params, ticker=spot_of[t]), seed + i, start_ns)
             for i, t in enumerate(settings.markets) if t in spot_of}
    step_ns = int((step_secs or settings.sim.step_interval_secs) * NS_PER_SEC)
    end_ns = start_ns + int(hours * NS_PER_HOUR)

    def batches() -> Iterator[Batch]:
        perp_markets, spot_markets = list(perps.values()), list(spots.values())
        now = start_ns
        while now <= end_ns:
            perp: list[MarketEvent] = []
            for market in perp_markets:
                perp += market.step(now)
            spot: list[MarketEvent] = []
            for market in spot_markets:
                spot += market.step(now)
            yield now, perp, spot
            now += step_ns

    return Source("sim", {t: m.spec() for t, m in perps.items()}, {t: m.spec() for t, m in spots.items()},
                  spot_of, start_ns, end_ns, batches(),
                  {"seed": seed, "hours": hours, "step_secs": step_ns / NS_PER_SEC})


# ---- CSV history ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


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


def load_candles(path: Path, start_ns: int | None = None, end_ns: int | None = None,
                 option: str = "--candles") -> list[Bar]:
    """Read `Date,Open,High,Low,Close,Volume` rows in [start, end) (any column order, any case)."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            cols = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
            missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in cols]
            if missing:
                raise SourceError(option, f"{path} lacks column {missing[0]!r}")
            bars = []
            for n, row in enumerate(reader, start=2):
                try:
                    ts = _ts(row[cols["date"]])
                    if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts >= end_ns):
                        continue
                    o, h, lo, c, v = (float(row[cols[k]]) for k in ("open", "high", "low", "close", "volume"))
                except (TypeError, ValueError):
                    raise SourceError(option, f"{path}:{n}: not a candle row") from None
                if min(o, h, lo, c) <= 0 or not lo <= min(o, c) <= max(o, c) <= h:
                    raise SourceError(option, f"{path}:{n}: need 0 < low <= open/close <= high")
                bars.append(Bar(ts, o, h, lo, c, max(v, 0.0)))
    except FileNotFoundError:
        raise SourceError(option, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    bars.sort(key=lambda b: b.ts_ns)
    if len(bars) < 2:
        raise SourceError(option, f"{path}: fewer than two candles in the chosen span")
    return bars


def funding_offset_hours(path: Path, times_ns: list[int], interval_hours: int) -> int:
    """The `auto` rule: -3 h for Binance/Bybit fetcher files (UTC+3 local time), else 0."""
    if _CEX_TZ_HINT.search(path.name):
        return -3
    if interval_hours == 8 and times_ns:
        hours = [(t // NS_PER_HOUR) % 8 for t in times_ns[:200]]
        if hours.count(3) > len(hours) // 2:
            return -3
    return 0


def load_funding(path: Path, interval_hours: int, offset: str | int = "auto",
                 option: str = "--funding") -> dict[str, dict[int, Decimal]]:
    """Read `Symbol,Date,Funding Rate` (or Lean's headerless `YYYYMMDD HH:MM:SS,rate`).

    Returns market -> {hour end (ns, UTC) -> 1-hour rate}: a rate per `interval_hours` settling at
    T covers (T - interval, T], so each of those hours gets rate / interval.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SourceError(option, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(option, f"cannot read {path}: {exc}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r]
    if not rows:
        raise SourceError(option, f"{path} is empty")
    raw: list[tuple[str, int, Decimal]] = []
    header = [c.strip().lower() for c in rows[0]]
    try:
        if "funding rate" in header and "date" in header:
            i_sym = header.index("symbol") if "symbol" in header else None
            i_date, i_rate = header.index("date"), header.index("funding rate")
            for row in rows[1:]:
                market = market_from_name(row[i_sym]) if i_sym is not None else market_from_name(path.name)
                raw.append((market, _ts(row[i_date]), Decimal(row[i_rate].strip())))
        else:  # Lean's headerless dYdX file: the market comes from the file name
            tokens = [t for t in path.stem.split("_") if re.fullmatch(r"[a-z0-9]+usd[tc]?", t, re.I)]
            market = market_from_name(tokens[0] if tokens else path.stem)
            for row in rows:
                raw.append((market, _ts(row[0]), Decimal(row[1].strip())))
    except (IndexError, ValueError, ArithmeticError) as exc:
        raise SourceError(option, f"{path}: not a funding file ({exc})") from None
    if offset == "auto":
        shift = funding_offset_hours(path, [t for _, t, _ in raw], interval_hours)
    else:
        shift = int(offset)
    per_hour = Decimal(interval_hours)
    out: dict[str, dict[int, Decimal]] = {}
    for market, ts, rate in raw:
        settle = (ts + shift * NS_PER_HOUR) // NS_PER_HOUR * NS_PER_HOUR
        hours = out.setdefault(market, {})
        for k in range(interval_hours):
            hours[settle - k * NS_PER_HOUR] = rate / per_hour
    return out


def _path_prices(bar: Bar, n: int) -> list[float]:
    """`n` points along O->L->H->C (rising bar) or O->H->L->C (falling bar)."""
    pts = [bar.open, bar.low, bar.high, bar.close] if bar.close >= bar.open else \
        [bar.open, bar.high, bar.low, bar.close]
    if n == 1:
        return [bar.close]
    out = []
    for k in range(n):
        u = 3 * k / (n - 1)
        seg = min(int(u), 2)
        frac = u - seg
        out.append(pts[seg] + (pts[seg + 1] - pts[seg]) * frac)
    return out


@dataclass(frozen=True, slots=True)
class BookShape:
    """The synthetic depth profile around each path price."""

    depth_levels: int = 20
    spread_bps: float = 1.0
    level_spacing_bps: float = 0.5
    level_volume_share: float = 0.002  # of the bar's volume, per level
    level_size_growth: float = 0.1


def _book(spec: MarketSpec, price: float, volume: float, shape: BookShape, ts: int) -> BookSnapshot:
    tick = float(spec.tick_size)
    mid_ticks = round(price / tick)
    spread = max(1, round(price * shape.spread_bps / 1e4 / tick))
    spacing = max(1, round(price * shape.level_spacing_bps / 1e4 / tick))
    best_bid = mid_ticks - spread // 2
    best_ask = best_bid + spread
    step = spec.step_size
    base = max(volume * shape.level_volume_share, float(spec.min_order_size) * 10)
    bids, asks = [], []
    for i in range(shape.depth_levels):
        size = (Decimal(repr(base * (1 + shape.level_size_growth * i))) / step).to_integral_value(
            ROUND_DOWN) * step
        size = max(size, spec.min_order_size)
        bids.append(BookLevel((best_bid - i * spacing) * spec.tick_size, size))
        asks.append(BookLevel((best_ask + i * spacing) * spec.tick_size, size))
    return BookSnapshot(spec.ticker, tuple(bids), tuple(asks), ts, ts)


def candle_source(settings: Settings, candles: dict[str, list[Bar]],
                  funding: dict[str, dict[int, Decimal]], *, steps_per_bar: int | None = None,
                  shape: BookShape | None = None) -> Source:
    """A synthetic book + oracle path per bar for each market, with hourly funding from the CSVs."""
    shape = shape or BookShape()
    block = settings.sim.block_interval_secs
    specs = {t: _spec(t, block) for t in candles}
    spot_of = _spot_map(settings, candles)
    spot_specs = {spot_of[t]: replace(specs[t], ticker=spot_of[t]) for t in spot_of}
    start_ns = max(bars[0].ts_ns for bars in candles.values())
    bar_ns = min(bars[1].ts_ns - bars[0].ts_ns for bars in candles.values())
    end_ns = min(bars[-1].ts_ns for bars in candles.values()) + bar_ns
    n = steps_per_bar or max(4, min(60, bar_ns // (300 * NS_PER_SEC)))
    step_ns = bar_ns // n
    block_ns = int(block * NS_PER_SEC)
    rates = {t: funding.get(t, {}) for t in candles}

    def batches() -> Iterator[Batch]:
        iters = {t: iter([b for b in bars if start_ns <= b.ts_ns < end_ns]) for t, bars in candles.items()}
        current = {t: next(it, None) for t, it in iters.items()}
        last_rate = {t: Decimal(0) for t in candles}
        height_base = 1_000_000
        t0 = start_ns
        while t0 < end_ns:
            paths: dict[str, tuple[list[float], float]] = {}
            for t in candles:
                bar = current[t]
                while bar is not None and bar.ts_ns < t0:
                    bar = current[t] = next(iters[t], None)
                if bar is not None and bar.ts_ns == t0:
                    paths[t] = (_path_prices(bar, n), bar.volume)
            for k in range(n):
                ts = t0 + k * step_ns
                hour_end = ts // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR
                perp: list[MarketEvent] = []
                spot: list[MarketEvent] = []
                for t, (prices, volume) in paths.items():
                    spec = specs[t]
                    price = prices[k]
                    book = _book(spec, price, volume, shape, ts)
                    perp.append(book)
                    if k:
                        up = price >= prices[k - 1]
                        touch = book.asks[0] if up else book.bids[0]
                        size = max(spec.min_order_size, touch.size / 4)
                        perp.append(Trade(t, touch.price, size, Side.BUY if up else Side.SELL, ts, ts))
                    rate = rates[t].get(hour_end)
                    if rate is not None:
                        last_rate[t] = rate
                    mid = (book.bids[0].price + book.asks[0].price) / 2
                    perp.append(OracleUpdate(t, mid.quantize(spec.tick_size), last_rate[t], ts, ts))
                    if t in spot_of:
                        spot.append(replace(book, market=spot_of[t]))
                perp.append(BlockHeight(height_base + (ts - start_ns) // block_ns, ts, ts))
                yield ts, perp, spot
            t0 += bar_ns

    return Source("candles", specs, spot_specs, spot_of, start_ns, end_ns, batches(),
                  {"bars": {t: len(b) for t, b in candles.items()}, "steps_per_bar": n,
                   "bar_secs": bar_ns // NS_PER_SEC}, has_heights=False)


# ---- recordings ------------------------------------------------------------------------------


def recording_segments(path: Path) -> list[Path]:
    """The file and its rotated successors `FILE.1`, `FILE.2`, ... in order."""
    if not path.exists():
        raise SourceError("--data", f"file not found: {path}")
    out = [path]
    k = 1
    while (nxt := path.with_name(f"{path.name}.{k}")).exists():
        out.append(nxt)
        k += 1
    return out


def _lines(paths: list[Path]) -> Iterator[bytes]:
    for p in paths:
        with p.open("rb") as probe:
            is_gzip = probe.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if is_gzip else open
        with opener(p, "rb") as f:
            yield from f


def recording_source(path: Path) -> Source:
    """Replay a recording (`perpbot record`): its header gives the markets; events in time order."""
    paths = recording_segments(path)
    specs: dict[str, MarketSpec] = {}
    spot_specs: dict[str, MarketSpec] = {}
    spot_of: dict[str, str] = {}
    first = last = None
    count = 0
    try:
        for line in _lines(paths):
            data = orjson.loads(line)
            if data.get("k") == "header":
                for key, target in (("specs", specs), ("spot_specs", spot_specs)):
                    for t, s in data.get(key, {}).items():
                        target[t] = MarketSpec(t, Decimal(s["tick_size"]), Decimal(s["step_size"]),
                                               Decimal(s["min_order_size"]))
                spot_of.update(data.get("spot_of", {}))
                continue
            ts = int(data["t"])
            first = ts if first is None else first
            last = ts
            count += 1
    except (OSError, EOFError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SourceError("--data", f"{path} is not a recording: {exc}") from None
    if not specs or first is None or last is None:
        raise SourceError("--data", f"{path} has no header or no events")

    def batches() -> Iterator[Batch]:
        ts_batch: int | None = None
        perp: list[MarketEvent] = []
        spot: list[MarketEvent] = []
        high = 0
        for line in _lines(paths):
            data = orjson.loads(line)
            if data.get("k") == "header":
                continue
            venue, event = decode_event(data)
            ts = max(event.ts_recv, high)  # receive times never go backwards in a replay
            high = ts
            if ts_batch is not None and ts != ts_batch:
                yield ts_batch, perp, spot
                perp, spot = [], []
            ts_batch = ts
            (spot if venue == "spot" else perp).append(event)
        if ts_batch is not None:
            yield ts_batch, perp, spot

    return Source("recording", specs, spot_specs, spot_of, first, last, batches(),
                  {"path": str(path), "segments": len(paths), "events": count})
