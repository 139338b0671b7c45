"""OHLCV candles + funding as a backtest source: the synthetic market (`synthetic`) walked bar by bar.

Each bar's curve (`synthetic.path_at`) is sampled at `steps_per_bar` points (a multiple of 4). At
each point the source emits a book snapshot (`synthetic.BookShape`: depth that thins as the bar's
range and recent volatility grow, calibrated on the order book samples in
../shared/data/orderbook), one trade, an oracle update (price = the path price,
`next_funding_rate` = the hourly rate settling at the end of the current hour, 0 where the
funding file has none) and a block height; the spot hedge gets the same book.
`hooks["bar_starts"]` tells the runner which points the rules see. The bar path
(`BAR_PATH_STEPS`) yields the bar start in full and, while nothing is worked, only oracle marks
(and the spot twin's touch) at the extremes, the close and each hour start while a leg is open;
flat, the close and the hour starts only (what the next sample reads). While orders are worked
(`hooks["busy"]`) both walk the curve every `DENSE_SECS`. Reading and validating the files is
`history`'s job (times are UTC unless an offset is given); `CandleData` keeps them for
repeated windows (walk-forward folds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.book import new_level
from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.config import Settings
from bot.domain import BookSnapshot, Side, Trade

from .history import (
    Bar,
    SourceError,
    check_funding,
    load_candles,
    load_funding,
    market_from_name,
    median_spacing,
)
from .replay import Batch, Source, market_spec, spot_map
from .synthetic import (
    CLOSE_AT,
    BookShape,
    Ladder,
    LevelSizes,
    RangeVol,
    TickGrid,
    _bar_points,
    _vertices,
    block_height,
    oracle_update,
    path_at,
    touch_ticks,
)
from .warmup import add_warmup

DENSE_SECS = 10.0  # candle path spacing while orders are worked (a TWAP child's typical interval)
BAR_PATH_STEPS = 4  # the bar-level fast path: Open, the two extremes, Close
# A bar-path mark of one market: (perp ticker, oracle, spot twin's bid, ask; None when unhedged)
MarkPrices = tuple[str, Decimal, Decimal | None, Decimal | None]
HEIGHT_BASE = 1_000_000  # the synthetic chain's height at the start
_NO_RATE = Decimal(0)


class _Market:
    """What the candle path keeps per market for the whole run (looked up once, not per point)."""

    __slots__ = ("grid", "levels", "min_size", "rates", "spot", "tick", "tick_size", "ticker")

    def __init__(self, ticker: str, spec: Any, shape: BookShape, rates: dict[int, Decimal],
                 spot: str | None) -> None:
        self.ticker, self.rates, self.spot = ticker, rates, spot
        self.tick_size, self.min_size = spec.tick_size, spec.min_order_size
        self.tick = float(spec.tick_size)
        self.grid = TickGrid(spec.tick_size)
        self.levels = LevelSizes(spec, shape)


# One market's bar: (market, the curve's vertices, the bar's level sizes)
_Leg = tuple[_Market, tuple[float, float, float, float], tuple[Decimal, ...]]


def _point(ts: int, hour_end: int, legs: list[_Leg], prices: list[float], before: list[float] | None,
           shape: BookShape, ladders: bool, height: int) -> Batch:
    """One path point: book, trade (when there was a point before it in the bar), oracle +
    funding; spot twin; height. `ladders`: the books as `Ladder`s (the same books, without level
    objects)."""
    perp: list[Any] = []
    spot: list[Any] = []
    for k, (m, _, sizes) in enumerate(legs):
        price = prices[k]
        touch = touch_ticks(price, m.tick, shape)
        bids, asks = m.grid.ladder(touch, len(sizes))
        t = m.ticker
        if ladders:
            perp.append(Ladder(t, bids, asks, sizes, ts))
        else:
            book = BookSnapshot(t, tuple(map(new_level, bids, sizes)), tuple(map(new_level, asks, sizes)),
                                ts, ts)
            perp.append(book)
        if before is not None:
            up = price >= before[k]
            size = max(m.min_size, sizes[0] / 4)  # a quarter of the touch
            perp.append(Trade(t, asks[0] if up else bids[0], size, Side.BUY if up else Side.SELL, ts, ts))
        # The oracle is the book's mid on the tick grid. No carry-forward: an hour the file does
        # not cover pays no funding.
        mid = m.grid.touch(touch[0], touch[1])[2]
        perp.append(oracle_update(t, mid, m.rates.get(hour_end, _NO_RATE), ts))
        if m.spot is not None:
            spot.append(Ladder(m.spot, bids, asks, sizes, ts) if ladders
                        else BookSnapshot(m.spot, book.bids, book.asks, ts, ts))
    perp.append(block_height(height, ts))
    return ts, perp, spot


def _mark_prices(legs: list[_Leg], prices: list[float], shape: BookShape) -> list[MarkPrices]:
    """Each market's oracle and, when hedged, the spot twin's touch (bid, ask) at a point."""
    out: list[MarkPrices] = []
    for k, (m, _, _) in enumerate(legs):
        price = prices[k]
        if m.spot is not None:  # the touch only: nothing trades on it, it marks the hedge leg
            bid_ticks, ask_ticks, _ = touch_ticks(price, m.tick, shape)
            bid, ask, mid = m.grid.touch(bid_ticks, ask_ticks)
            out.append((m.ticker, mid, bid, ask))
        else:
            out.append((m.ticker, m.grid.price(round(price / m.tick)), None, None))
    return out


def _marks(ts: int, hour_end: int, legs: list[_Leg], marks: list[MarkPrices], ladders: bool) -> Batch:
    """A bar-path point while no order is worked: the oracle (marks, funding, liquidation) and
    the spot twin's book (the hedge leg's mark), no perp book or trade."""
    perp: list[Any] = []
    spot: list[Any] = []
    for k, (t, oracle, bid, ask) in enumerate(marks):
        m, _, sizes = legs[k]
        if bid is not None and ask is not None:
            touch = Ladder(m.spot, [bid], [ask], (sizes[0],), ts)  # type: ignore[arg-type]
            spot.append(touch if ladders else touch.snapshot())
        perp.append(oracle_update(t, oracle, m.rates.get(hour_end, _NO_RATE), ts))
    return ts, perp, spot


def candle_source(settings: Settings, candles: dict[str, list[Bar]],
                  funding: dict[str, dict[int, Decimal]], *, steps_per_bar: int | None = None,
                  shape: BookShape | None = None, notes: list[str] | None = None) -> Source:
    """A synthetic book + oracle path per bar for each market, with hourly funding from the CSVs.

    The bar length is the median spacing (the smallest over the markets); bars are replayed at
    their own times, so a gap is a stretch with no events and never shifts later bars.
    """
    shape = shape or BookShape()
    block = settings.sim.block_interval_secs
    specs = {t: market_spec(t, block) for t in candles}
    spot_of = spot_map(settings, candles)
    spot_specs = {spot_of[t]: replace(specs[t], ticker=spot_of[t]) for t in spot_of}
    start_ns = max(bars[0].ts_ns for bars in candles.values())
    bar_ns = min(median_spacing([b.ts_ns for b in bars]) for bars in candles.values())
    if bar_ns <= 0:
        raise SourceError("--candles", "need candles at two different times")
    end_ns = min(bars[-1].ts_ns for bars in candles.values()) + bar_ns
    n = steps_per_bar or max(4, min(60, bar_ns // (300 * NS_PER_SEC)))
    n = -(-n // BAR_PATH_STEPS) * BAR_PATH_STEPS  # a multiple of 4: the points include High and Low
    block_ns = int(block * NS_PER_SEC)
    markets = {t: _Market(t, specs[t], shape, funding.get(t, {}), spot_of.get(t)) for t in candles}
    by_time: dict[int, list[tuple[str, Bar]]] = {}
    for t, bars in candles.items():
        for bar in bars:
            if start_ns <= bar.ts_ns < end_ns:
                by_time.setdefault(bar.ts_ns, []).append((t, bar))
    times = sorted(by_time)

    current_bars: dict[str, tuple[int, float]] = {}  # market -> (bar start, volume): participation cap
    # The engine's rules see the bar starts only (runner.py); the points between are for the venue.
    hooks: dict[str, Any] = {"bars": current_bars, "bar_starts": frozenset(times)}
    dense_ns = int(DENSE_SECS * NS_PER_SEC)
    bar_path = n == BAR_PATH_STEPS

    def batches() -> Iterator[Batch]:
        vols = {t: RangeVol(shape, bar_ns) for t in candles}
        # (the bar's points' (offset, fraction), the close's offset) by bar shape
        point_offsets: dict[tuple[int, int], tuple[list[tuple[int, float]], int | None]] = {}
        level_usd = shape.level_usd
        for i, t0 in enumerate(times):
            until = min(times[i + 1] if i + 1 < len(times) else end_ns, t0 + bar_ns)
            legs: list[_Leg] = []
            for t, bar in by_time[t0]:
                m = markets[t]
                legs.append((m, _vertices(bar), m.levels.sizes(level_usd(vols[t].range_bps(bar)) / bar.open)))
                current_bars[t] = (t0, bar.volume)
            busy = hooks.get("busy")
            exposed = hooks.get("exposed")
            flat_closes = hooks.get("flat_closes", True)
            extreme = hooks.get("extreme")  # the runner's check of an extreme without its events
            ladders = hooks.get("ladders", False)  # books as `Ladder`s (the runner applies them)
            last: list[float] | None = None  # the prices at the bar's last full point
            shape_key = (t0 % NS_PER_HOUR, until - t0)  # bars on one grid share their points' offsets
            grid = point_offsets.get(shape_key)
            if grid is None:
                offsets = [(ts - t0, u) for ts, u in _bar_points(t0, bar_ns, n, until, bar_path)]
                grid = point_offsets[shape_key] = (offsets, next((off for off, u in offsets if u >= CLOSE_AT),
                                                                 None))
            offsets, close_off = grid
            close_ts = None if close_off is None else t0 + close_off
            fresh = True  # a batch went out since the hooks were read (they read the runner's state)
            idle = open_leg = False
            for j, (off, u) in enumerate(offsets):
                ts = t0 + off
                hour_end = ts // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR
                if bar_path and j:
                    if fresh:  # else the runner did nothing since: the same answers
                        idle = busy is None or not busy()
                        open_leg = idle and (exposed is None or exposed())
                        fresh = False
                    if idle:
                        if open_leg:
                            marks = _mark_prices(legs, [path_at(pts, u) for _, pts, _ in legs], shape)
                            if (extreme is not None and close_ts is not None and u < CLOSE_AT
                                    and ts % NS_PER_HOUR and extreme(ts, close_ts, marks)):
                                continue  # the runner took the extreme's drawdown and margin check
                            yield _marks(ts, hour_end, legs, marks, ladders)
                            fresh = True
                        elif flat_closes and (u >= CLOSE_AT or ts % NS_PER_HOUR == 0):
                            # Flat and idle, the close and the hour starts still mark: the samples and
                            # the settled-funding rows at the next hour read the price there, as on the
                            # event path.
                            marks = _mark_prices(legs, [path_at(pts, u) for _, pts, _ in legs], shape)
                            yield _marks(ts, hour_end, legs, marks, ladders)
                            fresh = True
                        continue  # (else flat and idle: the extremes move nothing)
                prices = [path_at(pts, u) for _, pts, _ in legs]
                yield _point(ts, hour_end, legs, prices, last, shape, ladders,
                             HEIGHT_BASE + (ts - start_ns) // block_ns)
                last, fresh = prices, True
                sub = ts + dense_ns
                nxt = t0 + offsets[j + 1][0] if j + 1 < len(offsets) else until
                # While orders are worked, the path is walked every DENSE_SECS up to the next point,
                # so TWAP children meet the moving price, not one book for a whole step.
                while busy is not None and sub < nxt and busy():
                    v = (sub - t0) / bar_ns
                    prices = [path_at(pts, v) for _, pts, _ in legs]
                    yield _point(sub, sub // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR, legs, prices, last,
                                 shape, ladders, HEIGHT_BASE + (sub - start_ns) // block_ns)
                    last = prices
                    sub += dense_ns

    return Source("candles", specs, spot_specs, spot_of, start_ns, end_ns, batches(),
                  {"bars": {t: len(b) for t, b in candles.items()}, "steps_per_bar": n,
                   "bar_secs": bar_ns // NS_PER_SEC, "checks": list(notes or [])}, has_heights=False,
                  hooks=hooks)


# ---- candles + funding files, validated (the CLI's and the optimizer's entry) -----------------


@dataclass
class CandleData:
    """Candles and funding read once and checked (`load_candle_data`); `source` builds a fresh,
    single-use Source from them, optionally for a window (walk-forward folds reuse one load)."""

    candles: dict[str, list[Bar]]
    funding: dict[str, dict[int, Decimal]]
    notes: list[str]
    start_ns: int | None = None  # the replay start asked of the loader (rows before it: warm-up)
    warmup: bool = True  # seed the estimators from rows before a given start (`warmup.py`)

    def source(self, settings: Settings, start_ns: int | None = None, end_ns: int | None = None,
               steps_per_bar: int | None = None) -> Source:
        start_ns = self.start_ns if start_ns is None else start_ns
        candles = {t: [b for b in bars if (start_ns is None or b.ts_ns >= start_ns)
                       and (end_ns is None or b.ts_ns < end_ns)] for t, bars in self.candles.items()}
        short = [t for t, bars in candles.items() if len(bars) < 2]
        if short:
            raise SourceError("--start", f"fewer than two candles of {short[0]} in the chosen span")
        src = candle_source(settings, candles, self.funding, notes=self.notes, steps_per_bar=steps_per_bar)
        if start_ns is not None and self.warmup:  # no start given: no rows before it, as before
            add_warmup(src, self.candles, self.funding, settings.strategy.history_hours)
        return src


def load_candle_data(candle_paths: Iterable[str], funding_paths: Iterable[str] = (), *,
                     market: str | None = None, start_ns: int | None = None, end_ns: int | None = None,
                     funding_interval_hours: int | None = None, funding_offset_hours: int = 0,
                     candles_offset_hours: int = 0, warmup_hours: int = 0) -> CandleData:
    """Read and check the files (`history`), keeping `warmup_hours` of candles before `start_ns`
    for the warm-up. Raises SourceError naming the option."""
    first_ns = None if start_ns is None else start_ns - warmup_hours * NS_PER_HOUR
    candle_paths, funding_paths = list(candle_paths), list(funding_paths)
    for option, paths in (("--candles", candle_paths), ("--funding", funding_paths)):
        missing = next((p for p in paths if not Path(p).is_file()), None)
        if missing is not None:
            raise SourceError(option, f"file not found: {missing}")
    notes: list[str] = []
    candles: dict[str, list[Bar]] = {}
    for path in candle_paths:
        try:
            ticker = market if (market and len(candle_paths) == 1) else market_from_name(path)
        except ValueError as exc:
            raise SourceError("--market", str(exc)) from None
        if ticker in candles:
            raise SourceError("--candles", f"two files for {ticker}")
        candles[ticker] = load_candles(Path(path), first_ns, end_ns, offset_hours=candles_offset_hours,
                                       notes=notes)
    funding: dict[str, dict[int, Decimal]] = {}
    for path in funding_paths:
        loaded = load_funding(Path(path), funding_interval_hours, funding_offset_hours, notes=notes)
        if market and len(candle_paths) == 1 and len(loaded) == 1:
            loaded = {market: next(iter(loaded.values()))}
        for ticker, rates in loaded.items():
            funding.setdefault(ticker, {}).update(rates)
    check_funding(funding, candles, notes)
    return CandleData(candles, funding, notes, start_ns)


def load_candle_source(settings: Settings, candle_paths: Iterable[str], funding_paths: Iterable[str] = (),
                       **options: Any) -> Source:
    """`load_candle_data(...)`, then its source; `describe["checks"]` lists what was found wrong
    but replayable."""
    return load_candle_data(candle_paths, funding_paths, **options).source(settings)
