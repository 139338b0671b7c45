"""Seeded simulated market for one perpetual (pure, deterministic, no wall clock).

Model: mid follows GBM with a normal / high-volatility regime (Markov switching) and Poisson
jumps; the book is `depth_levels` per side around mid, re-drawn a few levels at a time and thinner
and wider in the high-vol regime; takers arrive as a Poisson process and eat the touch, each
Trade followed by the BookDelta of the level it consumed (so a consumer's book agrees with the
prints); the oracle is an EWMA of mid plus noise; the hourly funding premium is an
Ornstein-Uhlenbeck process whose in-hour time average is the rate that settles at the top of the
hour (as dYdX's `nextFundingRate`). Internally prices are integer ticks and sizes integer steps,
so everything emitted is an exact Decimal on the grid. Only `random.Random(seed)` supplies
randomness: the same seed and the same sequence of `now_ns` give the same events.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from bot.domain import (
    ZERO,
    BlockHeight,
    BookDelta,
    BookLevel,
    BookSnapshot,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)

NS_PER_SEC = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SEC
SECS_PER_YEAR = 365 * 24 * 3600
_RATE_DECIMALS = 9  # the indexer's 1-hour rates carry 9 decimals ("0.000002375")


@dataclass(frozen=True, slots=True)
class SimMarketParams:
    """Shape of one simulated perpetual. Hazard rates are per second: steps may be any length."""

    ticker: str = "BTC-USD"
    initial_price: Decimal = Decimal("60000")
    tick_size: Decimal = Decimal("1")
    step_size: Decimal = Decimal("0.0001")
    min_order_size: Decimal = Decimal("0.0001")
    # price
    annual_vol: float = 0.6
    high_vol_multiplier: float = 3.0
    high_vol_enter_per_sec: float = 1 / 3600  # regime switch hazard normal -> high
    high_vol_exit_per_sec: float = 1 / 600  # and back
    jump_per_sec: float = 1 / 7200
    jump_size: float = 0.01  # std of a jump's log return
    # book
    depth_levels: int = 20
    level_spacing_ticks: int = 1
    spread_ticks: int = 1
    base_level_size: Decimal = Decimal("0.5")
    level_size_growth: float = 0.1  # each level deeper is this fraction larger on average
    level_size_dispersion: float = 0.5  # sigma of the lognormal noise on level sizes
    level_updates_per_sec: float = 20.0
    high_vol_depth_factor: float = 0.3  # level sizes scale by this in the high-vol regime
    high_vol_spread_multiplier: int = 3
    # taker flow
    taker_trades_per_sec: float = 2.0
    mean_trade_size: Decimal = Decimal("0.05")
    max_trades_per_step: int = 500
    # oracle and funding (funding figures are 1-hour rates, positive: longs pay)
    oracle_lag_secs: float = 1.0
    oracle_noise_bps: float = 0.5
    funding_mean_1h: float = 0.00001
    funding_reversion_per_hour: float = 0.05
    funding_vol_1h: float = 0.000005  # per sqrt(hour)
    funding_clamp_1h: float = 0.015  # 600% x (IMF 0.05 - MMF 0.03) / 8
    # chain
    block_interval_ns: int = 650_000_000
    initial_height: int = 1_000_000

    def __post_init__(self) -> None:
        if min(self.initial_price, self.tick_size, self.step_size, self.min_order_size,
               self.base_level_size, self.mean_trade_size) <= 0:
            raise ValueError("prices and sizes must be positive")
        if self.depth_levels < 1 or self.level_spacing_ticks < 1 or self.spread_ticks < 1:
            raise ValueError("depth_levels, level_spacing_ticks and spread_ticks must be >= 1")
        if self.block_interval_ns <= 0:
            raise ValueError("block_interval_ns must be positive")


class SimMarket:
    """Advance a seeded market model and return the domain events it produces."""

    def __init__(self, params: SimMarketParams, seed: int, start_ns: int) -> None:
        p = self.params = params
        self._rng = random.Random(seed)
        self._start_ns = self._now_ns = start_ns
        self._tick = float(p.tick_size)
        self._tick_size, self._step_size = p.tick_size, p.step_size
        self._min_steps = max(1, math.ceil(p.min_order_size / p.step_size))
        self._base_steps = float(p.base_level_size / p.step_size)
        self._trade_steps = float(p.mean_trade_size / p.step_size)
        self._sigma_sec = p.annual_vol / math.sqrt(SECS_PER_YEAR)
        self._log_mid = self._oracle_log = math.log(float(p.initial_price))
        self._high_vol = False
        self._premium_1h = p.funding_mean_1h
        self._hour = start_ns // NS_PER_HOUR
        self._hour_weight = 0.0  # integral of the clamped premium over this hour, in rate x ns
        self._hour_ns = 0
        self._settled: tuple[int, Decimal] | None = None
        self._oracle = self._price(self._ticks(math.exp(self._oracle_log)))
        self._last_oracle_ns: int | None = None
        self._last_height: int | None = None
        # price in ticks -> size in steps: the model's book, and the book as last emitted
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._shown_bids: dict[int, int] = {}
        self._shown_asks: dict[int, int] = {}
        self._dirty_bids: set[int] = set()
        self._dirty_asks: set[int] = set()
        self._best_bid = self._best_ask = 0
        self._started = False
        # Extensions for the exchange core (bot.sim.exchange): size resting on top of the model's
        # levels (account orders), shown in every snapshot/delta; a depth factor (scenarios);
        # a funding rate override; hooks into the step; and whether `step` emits BlockHeight.
        self._over_bids: dict[int, int] = {}
        self._over_asks: dict[int, int] = {}
        self._depth_factor = 1.0
        self._rate_override: Decimal | None = None
        self._taker_hook: TakerHook | None = None
        self._pre_emit_hook: PreEmitHook | None = None
        self._emit_heights = True
        self._price_cache: dict[int, Decimal] = {}  # ticks -> Decimal price (levels repeat a lot)
        self._rebuild(force=True)

    # ---- public --------------------------------------------------------------------------

    def spec(self) -> MarketSpec:
        """Return the market's rounding rules."""
        p = self.params
        return MarketSpec(p.ticker, p.tick_size, p.step_size, p.min_order_size)

    def oracle_price(self) -> Decimal:
        """Return the last oracle price emitted (the initial price before the first step)."""
        return self._oracle

    def funding_rate_1h(self) -> Decimal:
        """Return the rate that settles at the next hour: this hour's average premium so far."""
        if self._rate_override is not None:
            return self._rate_override
        if self._hour_ns > 0:
            return _rate(self._hour_weight / self._hour_ns)
        return _rate(self._clamped_premium())

    def last_funding_settlement(self) -> tuple[int, Decimal] | None:
        """Return (hour boundary ns, settled 1-hour rate) of the latest top of the hour crossed."""
        return self._settled

    def is_high_vol(self) -> bool:
        """Return True in the high-volatility regime."""
        return self._high_vol

    def set_regime(self, high_vol: bool) -> None:
        """Force the volatility regime (scenarios, tests); depth adjusts on the next step."""
        if high_vol != self._high_vol:
            self._high_vol = high_vol
            self._rescale_depth()

    # ---- extensions used by the exchange core --------------------------------------------

    @property
    def now_ns(self) -> int:
        """Return the time of the last step (the start time before the first)."""
        return self._now_ns

    @property
    def is_started(self) -> bool:
        """Return True once the first step emitted the snapshot."""
        return self._started

    @property
    def min_steps(self) -> int:
        """Return the minimum order size in steps."""
        return self._min_steps

    def model_touch(self) -> tuple[int, int]:
        """Return the model's target (best bid, best ask) in ticks: real levels are at or behind them."""
        return self._best_bid, self._best_ask

    def background(self, side: Side) -> dict[int, int]:
        """Return the model's own levels (ticks -> steps): bids for BUY, asks for SELL. Read only."""
        return self._bids if side is Side.BUY else self._asks

    def overlay(self, side: Side) -> dict[int, int]:
        """Return the size resting on top of the model's levels: bids for BUY. Read only."""
        return self._over_bids if side is Side.BUY else self._over_asks

    def shown(self, side: Side) -> dict[int, int]:
        """Return the book as last emitted (model + overlay): bids for BUY, asks for SELL.

        Before the first step (no snapshot yet) this is the model's book plus the overlay.
        """
        if not self._started:
            return (_merged(self._bids, self._over_bids) if side is Side.BUY
                    else _merged(self._asks, self._over_asks))
        return self._shown_bids if side is Side.BUY else self._shown_asks

    def set_overlay(self, side: Side, ticks: int, steps: int) -> None:
        """Set the extra size resting at `ticks` on the bids (BUY) or asks (SELL); 0 removes it."""
        over, dirty = ((self._over_bids, self._dirty_bids) if side is Side.BUY
                       else (self._over_asks, self._dirty_asks))
        if steps > 0:
            over[ticks] = steps
        else:
            over.pop(ticks, None)
        dirty.add(ticks)

    def take(self, side: Side, size_steps: int, limit_ticks: int) -> list[tuple[int, int]]:
        """Consume model liquidity for a taker of `side` (BUY eats asks <= limit), best first.

        Returns (ticks, steps) per level taken. The change is emitted by the next `flush` or
        `step` as a BookDelta; the overlay is not touched.
        """
        buy = side is Side.BUY
        book, dirty = (self._asks, self._dirty_asks) if buy else (self._bids, self._dirty_bids)
        out: list[tuple[int, int]] = []
        remaining = size_steps
        if remaining <= 0 or not book:
            return out
        for idx in sorted(book, reverse=not buy):
            if remaining <= 0 or (idx > limit_ticks if buy else idx < limit_ticks):
                break
            size = min(book[idx], remaining)
            if size == book[idx]:
                del book[idx]
            else:
                book[idx] -= size
            dirty.add(idx)
            remaining -= size
            out.append((idx, size))
        return out

    def reduce_level(self, side: Side, ticks: int, steps: int) -> None:
        """Remove `steps` from the model's level at `ticks` (bids for BUY), at most all of it."""
        book, dirty = (self._bids, self._dirty_bids) if side is Side.BUY else (self._asks, self._dirty_asks)
        left = book.get(ticks, 0) - steps
        if left > 0:
            book[ticks] = left
        else:
            book.pop(ticks, None)
        dirty.add(ticks)

    def flush(self, now_ns: int) -> list[MarketEvent]:
        """Return the BookDelta of changes made since the last emission (none before the snapshot)."""
        events: list[MarketEvent] = []
        if self._started:
            self._emit_delta(events, now_ns)
        return events

    def set_depth_factor(self, factor: float) -> None:
        """Scale the model's depth by `factor` (1 = normal, < 1 thinner), live levels included."""
        factor = max(factor, 1e-6)
        if factor == self._depth_factor:
            return
        ratio = factor / self._depth_factor
        self._depth_factor = factor
        for book, dirty in ((self._bids, self._dirty_bids), (self._asks, self._dirty_asks)):
            for idx, steps in book.items():
                book[idx] = max(self._min_steps, round(steps * ratio))
                dirty.add(idx)

    def set_funding_override(self, rate_1h: Decimal | None) -> None:
        """Report `rate_1h` as the funding rate while set (None restores the model's rate)."""
        self._rate_override = rate_1h

    def shift_price(self, pct: float) -> None:
        """Gap the mid by `pct` percent (scenarios); the oracle follows with its usual lag."""
        self._log_mid += math.log1p(pct / 100)

    def set_hooks(self, taker: TakerHook | None = None, pre_emit: PreEmitHook | None = None,
                  emit_heights: bool = True) -> None:
        """Install the exchange core's hooks (see TakerHook / PreEmitHook); heights off if it makes blocks."""
        self._taker_hook = taker
        self._pre_emit_hook = pre_emit
        self._emit_heights = emit_heights

    def step(self, now_ns: int) -> list[MarketEvent]:
        """Advance the model to `now_ns` and return the events produced, in order."""
        if now_ns < self._now_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._now_ns}")
        dt_ns = now_ns - self._now_ns
        if dt_ns:
            self._advance(dt_ns / NS_PER_SEC, now_ns)
        self._now_ns = now_ns
        self._rebuild(force=False)
        self._refresh_levels(dt_ns / NS_PER_SEC)
        events: list[MarketEvent] = []
        if self._pre_emit_hook is not None:
            self._pre_emit_hook(now_ns, events)
        if not self._started:
            self._started = True
            events.append(self._snapshot(now_ns))
        else:
            self._emit_delta(events, now_ns)
        self._take(dt_ns / NS_PER_SEC, now_ns, events)
        if self._last_oracle_ns is None or now_ns - self._last_oracle_ns >= NS_PER_SEC:
            self._last_oracle_ns = now_ns
            noise = self._rng.gauss(0.0, self.params.oracle_noise_bps / 10_000)
            self._oracle = self._price(self._ticks(math.exp(self._oracle_log) * (1 + noise)))
            events.append(OracleUpdate(self.params.ticker, self._oracle, self.funding_rate_1h(),
                                       now_ns, now_ns))
        if not self._emit_heights:
            return events
        blocks = (now_ns - self._start_ns) // self.params.block_interval_ns
        height = self.params.initial_height + blocks
        # One event per step with the latest height: a long gap does not flood the caller.
        if self._last_height is None or height > self._last_height:
            self._last_height = height
            events.append(BlockHeight(height, now_ns, now_ns))
        return events

    # ---- model ---------------------------------------------------------------------------

    def _advance(self, dt_secs: float, now_ns: int) -> None:
        p, rng = self.params, self._rng
        hazard = p.high_vol_exit_per_sec if self._high_vol else p.high_vol_enter_per_sec
        if rng.random() < -math.expm1(-hazard * dt_secs):
            self._high_vol = not self._high_vol
            self._rescale_depth()
        sigma = self._sigma_sec * (p.high_vol_multiplier if self._high_vol else 1.0)
        drift = -0.5 * sigma * sigma * dt_secs
        self._log_mid += drift + sigma * math.sqrt(dt_secs) * rng.gauss(0.0, 1.0)
        if rng.random() < -math.expm1(-p.jump_per_sec * dt_secs):
            self._log_mid += rng.gauss(0.0, p.jump_size)
        weight = 1.0 if p.oracle_lag_secs <= 0 else -math.expm1(-dt_secs / p.oracle_lag_secs)
        self._oracle_log += weight * (self._log_mid - self._oracle_log)
        # Exact OU transition, so a long gap is one draw with the right variance.
        theta, dt_h = p.funding_reversion_per_hour, dt_secs / 3600
        decay = math.exp(-theta * dt_h)
        var = dt_h if theta <= 0 else -math.expm1(-2 * theta * dt_h) / (2 * theta)
        self._premium_1h = (p.funding_mean_1h + (self._premium_1h - p.funding_mean_1h) * decay
                            + p.funding_vol_1h * math.sqrt(var) * rng.gauss(0, 1))
        self._accrue_funding(now_ns)

    def _accrue_funding(self, now_ns: int) -> None:
        rate = self._clamped_premium()
        hour = now_ns // NS_PER_HOUR
        if hour == self._hour:
            self._hour_weight += rate * (now_ns - self._now_ns)
            self._hour_ns += now_ns - self._now_ns
            return
        # Close the hour we were in; a gap over several hours reports only the latest boundary.
        end_ns = (self._hour + 1) * NS_PER_HOUR
        self._hour_weight += rate * (end_ns - self._now_ns)
        self._hour_ns += end_ns - self._now_ns
        self._settled = (hour * NS_PER_HOUR, _rate(self._hour_weight / self._hour_ns))
        self._hour = hour
        self._hour_ns = now_ns - hour * NS_PER_HOUR
        self._hour_weight = rate * self._hour_ns

    def _clamped_premium(self) -> float:
        cap = self.params.funding_clamp_1h
        return max(-cap, min(cap, self._premium_1h))

    def _draw_steps(self, level: int) -> int:
        p = self.params
        mean = self._base_steps * (1 + p.level_size_growth * level) * self._depth_factor
        if self._high_vol:
            mean *= p.high_vol_depth_factor
        noise = math.exp(self._rng.gauss(0.0, p.level_size_dispersion))
        return max(self._min_steps, round(mean * noise))

    def _rescale_depth(self) -> None:
        factor = self.params.high_vol_depth_factor
        if not self._high_vol:
            factor = 1 / factor
        for book, dirty in ((self._bids, self._dirty_bids), (self._asks, self._dirty_asks)):
            for idx, steps in book.items():
                book[idx] = max(self._min_steps, round(steps * factor))
                dirty.add(idx)

    def _rebuild(self, force: bool) -> None:
        """Recenter the book on mid: drop levels out of range, fill missing ones."""
        p = self.params
        spread = p.spread_ticks * (p.high_vol_spread_multiplier if self._high_vol else 1)
        best_bid = round(math.exp(self._log_mid) / self._tick - spread / 2)
        best_ask = best_bid + spread
        full = len(self._bids) == len(self._asks) == p.depth_levels
        if not force and full and best_bid == self._best_bid and best_ask == self._best_ask:
            return
        self._best_bid, self._best_ask = best_bid, best_ask
        n, spacing = p.depth_levels, p.level_spacing_ticks
        # `in range(...)` is O(1) for ints: no per-step set building
        for book, dirty, wanted, best in (
            (self._bids, self._dirty_bids, range(best_bid, best_bid - n * spacing, -spacing),
             best_bid),
            (self._asks, self._dirty_asks, range(best_ask, best_ask + n * spacing, spacing),
             best_ask),
        ):
            for idx in [idx for idx in book if idx not in wanted]:
                del book[idx]
                dirty.add(idx)
            if len(book) < n:
                for idx in wanted:
                    if idx > 0 and idx not in book:
                        book[idx] = self._draw_steps(abs(idx - best) // spacing)
                        dirty.add(idx)

    def _refresh_levels(self, dt_secs: float) -> None:
        p, rng = self.params, self._rng
        for _ in range(_poisson(rng, p.level_updates_per_sec * dt_secs, 4 * p.depth_levels)):
            level = rng.randrange(p.depth_levels)
            if rng.random() < 0.5:
                book, dirty = self._bids, self._dirty_bids
                idx = self._best_bid - level * p.level_spacing_ticks
            else:
                book, dirty = self._asks, self._dirty_asks
                idx = self._best_ask + level * p.level_spacing_ticks
            if idx in book:
                book[idx] = self._draw_steps(level)
                dirty.add(idx)

    def _take(self, dt_secs: float, now_ns: int, events: list[MarketEvent]) -> None:
        """Let Poisson takers eat the touch, each Trade followed by its level's delta."""
        p, rng = self.params, self._rng
        for _ in range(_poisson(rng, p.taker_trades_per_sec * dt_secs, p.max_trades_per_step)):
            buy = rng.random() < 0.5
            want = max(self._min_steps, round(rng.expovariate(1.0) * self._trade_steps))
            if self._taker_hook is not None and self._taker_hook(buy, want, now_ns, events):
                continue
            book, dirty = (self._asks, self._dirty_asks) if buy else (self._bids, self._dirty_bids)
            if not book:
                continue
            idx = min(book) if buy else max(book)
            available = book[idx] if len(book) > 1 else book[idx] - self._min_steps
            size = min(want, available)
            if size < self._min_steps:
                continue
            if size == book[idx]:
                del book[idx]
            else:
                book[idx] -= size
            dirty.add(idx)
            events.append(Trade(p.ticker, self._price(idx), self._size(size),
                                Side.BUY if buy else Side.SELL, now_ns, now_ns))
            self._emit_delta(events, now_ns)

    # ---- emission ------------------------------------------------------------------------

    def _snapshot(self, now_ns: int) -> BookSnapshot:
        self._shown_bids = _merged(self._bids, self._over_bids)
        self._shown_asks = _merged(self._asks, self._over_asks)
        self._dirty_bids.clear()
        self._dirty_asks.clear()
        bids = tuple(BookLevel(self._price(i), self._size(self._shown_bids[i]))
                     for i in sorted(self._shown_bids, reverse=True))
        asks = tuple(BookLevel(self._price(i), self._size(self._shown_asks[i]))
                     for i in sorted(self._shown_asks))
        return BookSnapshot(self.params.ticker, bids, asks, now_ns, now_ns)

    def _emit_delta(self, events: list[MarketEvent], now_ns: int) -> None:
        bids = self._diff(self._bids, self._over_bids, self._shown_bids, self._dirty_bids, True)
        asks = self._diff(self._asks, self._over_asks, self._shown_asks, self._dirty_asks, False)
        if bids or asks:
            events.append(BookDelta(self.params.ticker, bids, asks, now_ns, now_ns))

    def _diff(self, book: dict[int, int], over: dict[int, int], shown: dict[int, int],
              dirty: set[int], best_high: bool) -> tuple[BookLevel, ...]:
        if not dirty:
            return ()
        step, prices = self._step_size, self._price_cache
        out = []
        for idx in sorted(dirty, reverse=best_high):
            steps = book.get(idx, 0)
            if over:
                steps += over.get(idx, 0)
            if shown.get(idx, 0) == steps:
                continue
            price = prices.get(idx)
            if price is None:
                if len(prices) > 100_000:
                    prices.clear()
                price = prices[idx] = self._tick_size * idx
            if steps:
                shown[idx] = steps
                out.append(BookLevel(price, step * steps))
            else:
                del shown[idx]
                out.append(BookLevel(price, ZERO))
        dirty.clear()
        return tuple(out)

    def _ticks(self, price: float) -> int:
        return max(1, round(price / self._tick))

    def _price(self, ticks: int) -> Decimal:
        return self._tick_size * ticks

    def _size(self, steps: int) -> Decimal:
        return self._step_size * steps


TakerHook = Callable[[bool, int, int, list[MarketEvent]], bool]
"""(is_buy, size_steps, now_ns, events) -> handled: lets the exchange route one Poisson taker."""
PreEmitHook = Callable[[int, list[MarketEvent]], None]
"""(now_ns, events): runs after the model moved its levels and before the step's book events."""


def _merged(book: dict[int, int], over: dict[int, int]) -> dict[int, int]:
    out = dict(book)
    for idx, steps in over.items():
        out[idx] = out.get(idx, 0) + steps
    return out


def _poisson(rng: random.Random, lam: float, cap: int) -> int:
    """Draw a Poisson count (normal approximation for large means), capped at `cap`."""
    if lam <= 0:
        return 0
    if lam > 30:
        return min(cap, max(0, round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit and k < cap:
        k += 1
        prod *= rng.random()
    return k


def _rate(rate_1h: float) -> Decimal:
    return Decimal(round(rate_1h * 10**_RATE_DECIMALS)).scaleb(-_RATE_DECIMALS)
