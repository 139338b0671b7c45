"""Time-ordered market event sources for backtests: the seeded simulator, OHLCV candles + funding
CSVs, and recordings. Each yields batches `(ts_ns, perp_events, spot_events)` in time order.

Candles become a synthetic market: each bar is one price curve through O->L->H->C (a rising
bar) or O->H->L->C (a falling one), the vertices at 0, 1/4, 1/2 and 3/4 of the bar (`path_at`),
sampled at `steps_per_bar` points (a multiple of 4). At each point the source emits a book
snapshot (`BookShape`: depth that thins as the bar's range and recent volatility grow,
calibrated on the order book samples in ../shared/data/orderbook), one trade, an oracle update
(price = the path price, `next_funding_rate` = the hourly rate settling at the end of the
current hour, 0 where the funding file has none) and a block height; the spot hedge gets the
same book. `hooks["bar_starts"]` tells the runner which points the rules see. The bar path
(`BAR_PATH_STEPS`) yields the bar start in full and, while nothing is worked, only oracle marks
(and the spot twin's touch) at the extremes, the close and each hour start while a leg is open;
flat, the close and the hour starts only (what the next sample reads).
While orders are worked (`hooks["busy"]`) both walk the curve every `DENSE_SECS`. Reading and
validating the CSVs is `history`'s job (times are UTC unless an offset is given).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from bot.book import OrderBook, new_level
from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.config import Settings
from bot.domain import (
    BlockHeight,
    BookSnapshot,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)
from bot.sim.market import SimMarket
from bot.venues.registry import sim_market_params as default_params

from .codec import decode_event
from .history import (  # noqa: F401  (re-exported: the loaders' home was here)
    Bar,
    SourceError,
    check_funding,
    load_candles,
    load_funding,
    market_from_name,
    median_spacing,
    parse_time,
)
from .warmup import add_warmup

DENSE_SECS = 10.0  # candle path spacing while orders are worked (a TWAP child's typical interval)
BAR_PATH_STEPS = 4  # the bar-level fast path: Open, the two extremes, Close
CLOSE_AT = 0.75  # the path reaches the Close 3/4 into the bar and holds it (`path_at`)
Batch = tuple[int, list[MarketEvent], list[MarketEvent]]
# A bar-path mark of one market: (perp ticker, oracle, spot twin's bid, ask; None when unhedged)
MarkPrices = tuple[str, Decimal, Decimal | None, Decimal | None]
# Start of simulated runs: a fixed instant, so a seed alone fixes every event.
SIM_EPOCH_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_SEC
MEMO_SIZE = 1 << 16  # entries of a `TickGrid` memo kept before a reset


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
    # hooks["busy"]: set by the runner, true while orders are worked (the candle path densifies)
    hooks: dict[str, Any] = field(default_factory=dict)


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


def _vertices(bar: Bar) -> tuple[float, float, float, float]:
    """O->L->H->C for a rising bar, O->H->L->C for a falling one."""
    if bar.close >= bar.open:
        return bar.open, bar.low, bar.high, bar.close
    return bar.open, bar.high, bar.low, bar.close


def path_at(pts: tuple[float, float, float, float], u: float) -> float:
    """The price a fraction `u` into the bar: the vertices at 0, 1/4, 1/2 and 3/4 of the bar,
    straight lines between them, the Close held for the last quarter. Every path (event path,
    bar path, the 10 s points while orders are worked) samples this one curve, so two paths
    agree on the price wherever both have a point."""
    x = 4 * u
    seg = int(x)
    if seg >= 3:
        return pts[3]
    return pts[seg] + (pts[seg + 1] - pts[seg]) * (x - seg)


def _path_prices(bar: Bar, n: int) -> list[float]:
    """`n` points along the path at k/n of the bar (n a multiple of 4 hits High and Low exactly)."""
    if n == 1:
        return [bar.close]
    pts = _vertices(bar)
    return [path_at(pts, k / n) for k in range(n)]


def _bar_points(t0: int, bar_ns: int, n: int, until: int, bar_path: bool) -> list[tuple[int, float]]:
    """(time, fraction of the bar) of a bar's points before `until`: k/n of the bar; on the bar
    path also every hour start within a bar longer than an hour, so funding settles each hour
    at that hour's rate (the paper venue settles at the first oracle of an hour)."""
    step_ns = bar_ns // n
    at = {t0 + k * step_ns: k / n for k in range(n)}
    if bar_path:
        for hour in range(-(-t0 // NS_PER_HOUR) * NS_PER_HOUR, t0 + bar_ns, NS_PER_HOUR):
            at.setdefault(hour, (hour - t0) / bar_ns)
    return sorted((ts, u) for ts, u in at.items() if ts < until)


@dataclass(frozen=True, slots=True)
class BookShape:
    """The synthetic depth profile around each path price.

    Depth per side is `ref_depth_usd_per_bps` of notional per bps of distance from the touch,
    scaled by (ref_range / range)^range_exponent where `range` is the larger of the bar's
    high-low range and an EWMA of recent bars' ranges (both in bps, scaled to one hour): wide,
    volatile bars have thin books, quiet ones deep books (the factor is kept within
    [min_factor, max_factor]). Calibrated on the Binance BTCUSDT perp samples in
    ../shared/data/orderbook: 2022-11-01 23:49 (hour range 23 bps) ~ $816k within 2 bps of the
    touch; 2020-09-01 00:00 (hour range 124 bps) ~ $280k within 2 bps; the exponent fits both.
    Two samples of one venue: a rough calibration, applied to every market in USD terms.
    """

    depth_levels: int = 20
    spread_bps: float = 1.0
    level_spacing_bps: float = 0.5
    level_size_growth: float = 0.1
    ref_depth_usd_per_bps: float = 400_000.0
    ref_range_bps: float = 23.0
    range_exponent: float = 0.63
    vol_halflife_bars: float = 24.0
    min_factor: float = 0.02
    max_factor: float = 3.0

    def depth_factor(self, range_bps: float) -> float:
        factor = (self.ref_range_bps / max(range_bps, 1e-9)) ** self.range_exponent
        return min(max(factor, self.min_factor), self.max_factor)

    def level_usd(self, range_bps: float) -> float:
        """Notional of the first level per side at this (hourly-scaled) range."""
        return self.ref_depth_usd_per_bps * self.level_spacing_bps * self.depth_factor(range_bps)


def _level_sizes(spec: MarketSpec, base: float, shape: BookShape) -> tuple[Decimal, ...]:
    """Per-level sizes for one bar (`base` = first level, base units), on the step grid."""
    step, floor = spec.step_size, spec.min_order_size
    base = max(base, float(floor)) / float(step)
    growth = shape.level_size_growth
    # Whole steps, rounded down (the 1e-9 keeps 2999.9999999999995 steps at 3000).
    sizes = [Decimal(int(base * (1 + growth * i) + 1e-9)) * step for i in range(shape.depth_levels)]
    return tuple([size if size >= floor else floor for size in sizes])


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(memo) >= MEMO_SIZE:
        memo.clear()  # a bound, not a policy: the memo only saves work
    memo[key] = value
    return value


_UNIT = Decimal(1).as_tuple()


class TickGrid:
    """One market's prices from whole ticks, memoised: a path revisits its prices (the bench's
    16,502 points of 4,632 bars have 3,723 distinct touches). The lists it returns are shared:
    nothing may change them (books copy what they take)."""

    __slots__ = ("_ladders", "_prices", "_tick", "_touches", "_unit")

    def __init__(self, tick: Decimal) -> None:
        self._tick = tick
        self._unit = tick.as_tuple() == _UNIT
        self._prices: dict[int, Decimal] = {}
        self._ladders: dict[tuple[int, int, int, int], tuple[list[Decimal], list[Decimal]]] = {}
        self._touches: dict[tuple[int, int], tuple[Decimal, Decimal, Decimal]] = {}

    def price(self, k: int) -> Decimal:
        """Decimal(k) x tick (a tick of exactly Decimal("1") gives k's own digits)."""
        p = self._prices.get(k)
        if p is None:
            p = _remember(self._prices, k, Decimal(k) if self._unit else Decimal(k) * self._tick)
        return p

    def ladder(self, touch: tuple[int, int, int], n: int) -> tuple[list[Decimal], list[Decimal]]:
        """The `n` bid and ask prices from a touch (best bid, best ask, spacing in ticks), best first."""
        key = (*touch, n)
        out = self._ladders.get(key)
        if out is None:
            best_bid, best_ask, spacing = touch
            get, price = self._prices.get, self.price
            bid_ticks = [best_bid - i * spacing for i in range(n)]
            ask_ticks = [best_ask + i * spacing for i in range(n)]
            out = _remember(self._ladders, key, ([get(k) or price(k) for k in bid_ticks],
                                                 [get(k) or price(k) for k in ask_ticks]))
        return out

    def touch(self, bid_ticks: int, ask_ticks: int) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, mid on the tick grid) of a touch in ticks."""
        key = (bid_ticks, ask_ticks)
        out = self._touches.get(key)
        if out is None:
            bid, ask = self.price(bid_ticks), self.price(ask_ticks)
            out = _remember(self._touches, key, (bid, ask, ((bid + ask) / 2).quantize(self._tick)))
        return out


@dataclass(frozen=True, slots=True)
class Ladder:
    """A synthetic book snapshot as price lists and sizes: the book `_book`'s BookSnapshot gives,
    without its level objects (the runner asks for these with `hooks["ladders"]` when nothing
    rewrites books on the way: no stress scenario). `OrderBook.apply_ladder` applies it."""

    market: str
    bids: list[Decimal]  # best first
    asks: list[Decimal]  # best first
    sizes: tuple[Decimal, ...]  # the i-th level's size on either side (all > 0)
    ts_recv: int

    def apply(self, book: OrderBook) -> None:
        book.apply_ladder(self.bids, self.asks, self.sizes, self.ts_recv)

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(self.market, tuple(map(new_level, self.bids, self.sizes)),
                            tuple(map(new_level, self.asks, self.sizes)), self.ts_recv, self.ts_recv)


def _touch_ticks(spec: MarketSpec, price: float, shape: BookShape) -> tuple[int, int, int]:
    """Best bid, best ask and level spacing in whole ticks around `price`."""
    tick = float(spec.tick_size)
    mid_ticks = round(price / tick)
    spread = max(1, round(price * shape.spread_bps / 1e4 / tick))
    spacing = max(1, round(price * shape.level_spacing_bps / 1e4 / tick))
    best_bid = mid_ticks - spread // 2
    return best_bid, best_bid + spread, spacing


class RangeVol:
    """Per market: the EWMA of hourly-scaled bar ranges (bps), for the depth model."""

    def __init__(self, shape: BookShape, bar_ns: int) -> None:
        self._alpha = 1 - 0.5 ** (1 / shape.vol_halflife_bars)
        self._scale = math.sqrt(NS_PER_HOUR / bar_ns)
        self.ewma: float | None = None

    def range_bps(self, bar: Bar) -> float:
        """The range the book sees for this bar (max of its own and the recent EWMA); then update."""
        own = (bar.high - bar.low) / bar.open * 1e4 * self._scale
        seen = own if self.ewma is None else max(own, self.ewma)
        self.ewma = own if self.ewma is None else self.ewma + self._alpha * (own - self.ewma)
        return seen


def candle_source(settings: Settings, candles: dict[str, list[Bar]],
                  funding: dict[str, dict[int, Decimal]], *, steps_per_bar: int | None = None,
                  shape: BookShape | None = None, notes: list[str] | None = None) -> Source:
    """A synthetic book + oracle path per bar for each market, with hourly funding from the CSVs.

    The bar length is the median spacing (the smallest over the markets); bars are replayed at
    their own times, so a gap is a stretch with no events and never shifts later bars.
    """
    shape = shape or BookShape()
    block = settings.sim.block_interval_secs
    specs = {t: _spec(t, block) for t in candles}
    spot_of = _spot_map(settings, candles)
    spot_specs = {spot_of[t]: replace(specs[t], ticker=spot_of[t]) for t in spot_of}
    start_ns = max(bars[0].ts_ns for bars in candles.values())
    bar_ns = min(median_spacing([b.ts_ns for b in bars]) for bars in candles.values())
    if bar_ns <= 0:
        raise SourceError("--candles", "need candles at two different times")
    end_ns = min(bars[-1].ts_ns for bars in candles.values()) + bar_ns
    n = steps_per_bar or max(4, min(60, bar_ns // (300 * NS_PER_SEC)))
    n = -(-n // BAR_PATH_STEPS) * BAR_PATH_STEPS  # a multiple of 4: the points include High and Low
    block_ns = int(block * NS_PER_SEC)
    rates = {t: funding.get(t, {}) for t in candles}
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

    def mark_prices(at: dict[str, tuple[float, tuple[Decimal, ...]]]) -> list[MarkPrices]:
        """Each market's oracle and, when hedged, the spot twin's touch (bid, ask) at a point."""
        out = []
        for t, (price, _) in at.items():
            spec = specs[t]
            tick = spec.tick_size
            if t in spot_of:  # the touch only: nothing trades on it, it marks the hedge leg
                bid_ticks, ask_ticks, _ = _touch_ticks(spec, price, shape)
                bid, ask, mid = grids[t].touch(bid_ticks, ask_ticks)
                out.append((t, mid, bid, ask))
            else:
                out.append((t, grids[t].price(round(price / float(tick))), None, None))
        return out

    def marks(ts: int, at: dict[str, tuple[float, tuple[Decimal, ...]]],
              prices: list[MarkPrices], ladders: bool = False) -> Batch:
        """A bar-path point while no order is worked: the oracle (marks, funding, liquidation) and
        the spot twin's book (the hedge leg's mark), no perp book or trade."""
        hour_end = ts // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR
        perp: list[Any] = []
        spot: list[Any] = []
        for t, oracle, bid, ask in prices:
            if bid is not None and ask is not None:
                size = at[t][1][0]
                touch = Ladder(spot_of[t], [bid], [ask], (size,), ts)
                spot.append(touch if ladders else touch.snapshot())
            perp.append(OracleUpdate(t, oracle, rates[t].get(hour_end, no_rate), ts, ts))
        return ts, perp, spot

    def point(ts: int, at: dict[str, tuple[float, float | None, tuple[Decimal, ...]]],
              ladders: bool = False) -> Batch:
        """One path point: book, trade (when the price moved), oracle + funding; spot twin; height.
        `ladders`: the books as `Ladder`s (the same books, without level objects)."""
        hour_end = ts // NS_PER_HOUR * NS_PER_HOUR + NS_PER_HOUR
        perp: list[Any] = []
        spot: list[Any] = []
        for t, (price, before, sizes) in at.items():
            spec = specs[t]
            bids, asks = grids[t].ladder(_touch_ticks(spec, price, shape), len(sizes))
            if ladders:
                perp.append(Ladder(t, bids, asks, sizes, ts))
            else:
                book = BookSnapshot(t, tuple(map(new_level, bids, sizes)), tuple(map(new_level, asks, sizes)),
                                    ts, ts)
                perp.append(book)
            if before is not None:
                up = price >= before
                size = max(spec.min_order_size, sizes[0] / 4)  # a quarter of the touch
                perp.append(Trade(t, asks[0] if up else bids[0], size, Side.BUY if up else Side.SELL, ts, ts))
            mid = (bids[0] + asks[0]) / 2
            # No carry-forward: an hour the file does not cover pays no funding.
            rate = rates[t].get(hour_end, no_rate)
            perp.append(OracleUpdate(t, mid.quantize(spec.tick_size), rate, ts, ts))
            if t in spot_of:
                spot.append(Ladder(spot_of[t], bids, asks, sizes, ts) if ladders
                            else BookSnapshot(spot_of[t], book.bids, book.asks, ts, ts))
        perp.append(BlockHeight(height_base + (ts - start_ns) // block_ns, ts, ts))
        return ts, perp, spot

    height_base = 1_000_000
    no_rate = Decimal(0)
    grids = {t: TickGrid(specs[t].tick_size) for t in candles}

    def batches() -> Iterator[Batch]:
        vols = {t: RangeVol(shape, bar_ns) for t in candles}
        point_offsets: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for i, t0 in enumerate(times):
            until = min(times[i + 1] if i + 1 < len(times) else end_ns, t0 + bar_ns)
            bars = by_time[t0]
            paths = {t: (_vertices(bar),
                         _level_sizes(specs[t], shape.level_usd(vols[t].range_bps(bar)) / bar.open, shape))
                     for t, bar in bars}
            for t, bar in bars:
                current_bars[t] = (t0, bar.volume)
            busy = hooks.get("busy")
            exposed = hooks.get("exposed")
            flat_closes = hooks.get("flat_closes", True)
            extreme = hooks.get("extreme")  # the runner's check of an extreme without its events
            ladders = hooks.get("ladders", False)  # books as `Ladder`s (the runner applies them)
            last: dict[str, float] = {}
            shape_key = (t0 % NS_PER_HOUR, until - t0)  # bars on one grid share their points' offsets
            offsets = point_offsets.get(shape_key)
            if offsets is None:
                offsets = point_offsets[shape_key] = [(ts - t0, u) for ts, u in
                                                      _bar_points(t0, bar_ns, n, until, bar_path)]
            at = [(t0 + off, u) for off, u in offsets]
            close_ts = next((ts for ts, u in at if u >= CLOSE_AT), None)
            for j, (ts, u) in enumerate(at):
                if not bar_path or j == 0 or (busy is not None and busy()):
                    yield point(ts, {t: (path_at(pts, u), last.get(t), sizes)
                                     for t, (pts, sizes) in paths.items()}, ladders)
                elif exposed is None or exposed():
                    mark_at = {t: (path_at(pts, u), sizes) for t, (pts, sizes) in paths.items()}
                    prices = mark_prices(mark_at)
                    if (extreme is not None and close_ts is not None and u < CLOSE_AT and ts % NS_PER_HOUR
                            and extreme(ts, close_ts, prices)):
                        continue  # the runner took the extreme's drawdown and margin check as they are
                    yield marks(ts, mark_at, prices, ladders)
                    continue
                elif flat_closes and (u >= CLOSE_AT or ts % NS_PER_HOUR == 0):
                    # Flat and idle, the close and the hour starts still mark: the samples and the
                    # settled-funding rows at the next hour read the price there, as on the event path.
                    mark_at = {t: (path_at(pts, u), sizes) for t, (pts, sizes) in paths.items()}
                    yield marks(ts, mark_at, mark_prices(mark_at), ladders)
                    continue
                else:
                    continue  # flat and idle: the extremes move nothing
                last = {t: path_at(pts, u) for t, (pts, _) in paths.items()}
                sub = ts + dense_ns
                nxt = at[j + 1][0] if j + 1 < len(at) else until
                # While orders are worked, the path is walked every DENSE_SECS up to the next point,
                # so TWAP children meet the moving price, not one book for a whole step.
                while busy is not None and sub < nxt and busy():
                    v = (sub - t0) / bar_ns
                    yield point(sub, {t: (path_at(pts, v), last[t], sizes)
                                      for t, (pts, sizes) in paths.items()}, ladders)
                    last = {t: path_at(pts, v) for t, (pts, _) in paths.items()}
                    sub += dense_ns

    return Source("candles", specs, spot_specs, spot_of, start_ns, end_ns, batches(),
                  {"bars": {t: len(b) for t, b in candles.items()}, "steps_per_bar": n,
                   "bar_secs": bar_ns // NS_PER_SEC, "checks": list(notes or [])}, has_heights=False,
                  hooks=hooks)


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
