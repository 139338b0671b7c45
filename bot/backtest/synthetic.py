"""The synthetic market a candle backtest replays: each bar's price curve and its books.

Each bar is one price curve through O->L->H->C (a rising bar) or O->H->L->C (a falling one), the
vertices at 0, 1/4, 1/2 and 3/4 of the bar (`path_at`). Around each path price the book is a
ladder of `BookShape.depth_levels` levels per side whose depth thins as the bar's range and
recent volatility grow (`BookShape`, `RangeVol`), on whole ticks (`TickGrid`), handed to the
runner as price lists (`Ladder`) or domain snapshots. `candles.candle_source` walks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.book import OrderBook, new_level
from bot.clock import NS_PER_HOUR
from bot.domain import BlockHeight, BookSnapshot, MarketSpec, OracleUpdate

from .history import Bar

CLOSE_AT = 0.75  # the path reaches the Close 3/4 into the bar and holds it (`path_at`)
MEMO_SIZE = 1 << 16  # entries of a `TickGrid` memo kept before a reset


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


class LevelSizes:
    """One market's per-level book sizes for a bar, on the step grid: `sizes(base)` with `base`
    the first level in base units, each next level `level_size_growth` of it larger, rounded
    down to whole steps, never below the minimum order size."""

    __slots__ = ("_floor", "_floor_f", "_growth", "_step", "_step_f")

    def __init__(self, spec: MarketSpec, shape: BookShape) -> None:
        self._step, self._floor = spec.step_size, spec.min_order_size
        self._step_f, self._floor_f = float(spec.step_size), float(spec.min_order_size)
        self._growth = [1 + shape.level_size_growth * i for i in range(shape.depth_levels)]

    def sizes(self, base: float) -> tuple[Decimal, ...]:
        base = max(base, self._floor_f) / self._step_f
        step = self._step
        # Whole steps, rounded down (the 1e-9 keeps 2999.9999999999995 steps at 3000).
        sizes = [Decimal(int(base * g + 1e-9)) * step for g in self._growth]
        floor = self._floor
        if sizes and sizes[0] < floor:  # the sizes grow with the level: only low ones can be under
            return tuple([size if size >= floor else floor for size in sizes])
        return tuple(sizes)


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


# Not frozen: one per book the candle path sends (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
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


def touch_ticks(price: float, tick: float, shape: BookShape) -> tuple[int, int, int]:
    """Best bid, best ask and level spacing in whole ticks (`tick` in price units) around `price`."""
    mid_ticks = round(price / tick)
    spread = max(1, round(price * shape.spread_bps / 1e4 / tick))
    spacing = max(1, round(price * shape.level_spacing_bps / 1e4 / tick))
    best_bid = mid_ticks - spread // 2
    return best_bid, best_bid + spread, spacing


# The candle path builds these by the million: through their slots (a frozen dataclass's own
# __init__ costs about twice as much), as `bot.book.new_level` builds book levels.
_new_object = object.__new__
_ORACLE_SLOTS = tuple(getattr(OracleUpdate, k).__set__
                      for k in ("market", "oracle_price", "next_funding_rate", "ts_event", "ts_recv"))
_HEIGHT_SLOTS = tuple(getattr(BlockHeight, k).__set__ for k in ("height", "ts_event", "ts_recv"))


def oracle_update(market: str, price: Decimal, rate: Decimal, ts: int) -> OracleUpdate:
    """OracleUpdate(market, price, rate, ts, ts)."""
    event = _new_object(OracleUpdate)
    set_market, set_price, set_rate, set_event, set_recv = _ORACLE_SLOTS
    set_market(event, market)
    set_price(event, price)
    set_rate(event, rate)
    set_event(event, ts)
    set_recv(event, ts)
    return event


def block_height(height: int, ts: int) -> BlockHeight:
    """BlockHeight(height, ts, ts)."""
    event = _new_object(BlockHeight)
    set_height, set_event, set_recv = _HEIGHT_SLOTS
    set_height(event, height)
    set_event(event, ts)
    set_recv(event, ts)
    return event


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
