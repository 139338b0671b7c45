"""Seeded simulated market for one perpetual (pure, deterministic, no wall clock).

Model: mid follows GBM with a normal / high-volatility regime (Markov switching) and Poisson
jumps; the book is `depth_levels` per side around mid, re-drawn a few levels at a time and thinner
and wider in the high-vol regime; takers arrive as a Poisson process and eat the touch, each
Trade followed by the BookDelta of the level it consumed (so a consumer's book agrees with the
prints); the oracle is an EWMA of mid plus noise; the hourly funding premium is an
Ornstein-Uhlenbeck process whose in-hour time average is the rate that settles at the top of the
hour (as dYdX's `nextFundingRate`). Internally prices are integer ticks and sizes integer steps;
Decimal appears only in the emitted events, so everything emitted is exact and on the grid.

Randomness: only `random.Random(seed)`, so the same seed and the same sequence of `now_ns` give
the same events. The few draws per step that move prices (GBM, jumps, oracle noise, funding) are
exact normals; the many per-event draws read precomputed distributions with random bits: a
level's size is one of 256 lognormal quantiles for its distance from the touch, a taker's size
one of 4096 exponential quantiles, a Poisson count a bisect into the step's cached CDF, and a
redraw's level and side come from the same getrandbits call as its size. (The stream is not the
one of the model before Nov 2026, which called gauss/expovariate per draw: same model, new draws.)

Speed (target: 200k events/s on one core, for backtests; measured by
tests/bench/bench_sim.py): a step costs the same for any gap (the gap's constants are cached),
re-centring drops only the levels the touch passed and draws only the ones it uncovered, and
only changed levels are emitted, through process-wide Decimal caches and the event drafts of
bot.sim.event_drafts (no frozen-dataclass __init__). The book as last emitted is not stored:
after every emission it equals the model's levels plus the overlay, so `shown` computes it.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist

from bot.domain import ZERO, BookDelta, BookLevel, BookSnapshot, MarketEvent, MarketSpec, Side, Trade
from bot.sim.event_drafts import (
    DeltaDraft,
    LevelDraft,
    TradeDraft,
    block_height,
    book_level,
    book_snapshot,
    oracle_update,
)
from bot.sim.history import HistoryBar, history_bars

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


# Precomputed distributions, indexed by random bits (see the module docstring).
_SIZE_BITS = 8  # level sizes: 256 lognormal quantiles per level distance
_TRADE_BITS = 12  # taker sizes: 4096 exponential quantiles
_LEVEL_BITS = 16  # a redraw's level: (16 random bits x depth) >> 16
_LEVEL_MASK = (1 << _LEVEL_BITS) - 1
_REDRAW_BITS = _LEVEL_BITS + 1 + _SIZE_BITS  # level, side, size quantile
_NORMAL_QUANTILES = tuple(NormalDist().inv_cdf((k + 0.5) / (1 << _SIZE_BITS)) for k in range(1 << _SIZE_BITS))
_EXP_QUANTILES = tuple(-math.log1p(-(k + 0.5) / (1 << _TRADE_BITS)) for k in range(1 << _TRADE_BITS))
_POISSON_TAIL = 1e-12  # a Poisson CDF table stops where this much probability is left


@functools.lru_cache(maxsize=64)
def _level_size_table(mean_steps: float, growth: float, depth: int, dispersion: float,
                      min_steps: int) -> tuple[int, ...]:
    """Level sizes in steps: [d << _SIZE_BITS | k] is quantile k of level distance d's lognormal."""
    mults = [math.exp(dispersion * z) for z in _NORMAL_QUANTILES]
    table: list[int] = []
    for level in range(depth):
        mean = mean_steps * (1 + growth * level)
        table += [max(min_steps, round(mean * mult)) for mult in mults]
    return tuple(table)


@functools.lru_cache(maxsize=64)
def _trade_size_table(mean_steps: float, min_steps: int) -> tuple[int, ...]:
    """Taker sizes in steps: the exponential's quantiles, at least `min_steps`."""
    return tuple(max(min_steps, round(q * mean_steps)) for q in _EXP_QUANTILES)


# unit (str: "1" and "1.0" make different Decimals) -> multiple -> unit * multiple, shared by every
# market on that grid (Decimals are immutable), and the size-0 BookLevels (removals) by tick size
_MULTIPLES: dict[str, dict[int, Decimal]] = {}
_REMOVALS: dict[str, dict[int, BookLevel]] = {}


class _StepConsts:
    """Everything in a step that depends only on its length (cached: step lengths recur)."""

    __slots__ = (
        "drift_h",
        "drift_n",
        "oracle_alpha",
        "ou_decay",
        "ou_vol",
        "p_enter",
        "p_exit",
        "p_jump",
        "redraws",
        "takers",
        "vol_h",
        "vol_n",
    )

    def __init__(self, params: SimMarketParams, sigma_sec: float, dt_ns: int) -> None:
        p = params
        dt = dt_ns / NS_PER_SEC
        sigma_n, sigma_h = sigma_sec, sigma_sec * p.high_vol_multiplier
        self.p_enter = -math.expm1(-p.high_vol_enter_per_sec * dt)
        self.p_exit = -math.expm1(-p.high_vol_exit_per_sec * dt)
        self.drift_n, self.vol_n = -0.5 * sigma_n * sigma_n * dt, sigma_n * math.sqrt(dt)
        self.drift_h, self.vol_h = -0.5 * sigma_h * sigma_h * dt, sigma_h * math.sqrt(dt)
        self.p_jump = -math.expm1(-p.jump_per_sec * dt)
        self.oracle_alpha = 1.0 if p.oracle_lag_secs <= 0 else -math.expm1(-dt / p.oracle_lag_secs)
        theta, dt_h = p.funding_reversion_per_hour, dt / 3600
        var = dt_h if theta <= 0 else -math.expm1(-2 * theta * dt_h) / (2 * theta)
        self.ou_decay, self.ou_vol = math.exp(-theta * dt_h), p.funding_vol_1h * math.sqrt(var)
        self.redraws = _PoissonCount(p.level_updates_per_sec * dt, 4 * p.depth_levels)
        self.takers = _PoissonCount(p.taker_trades_per_sec * dt, p.max_trades_per_step)


class _PoissonCount:
    """A capped Poisson count: its CDF for bisect (mean <= 30), else a normal approximation."""

    __slots__ = ("cap", "cdf", "mean", "root")

    def __init__(self, mean: float, cap: int) -> None:
        self.mean, self.cap = max(mean, 0.0), cap
        self.root = math.sqrt(self.mean)
        cdf: list[float] = []
        if 0 < self.mean <= 30:
            pmf = total = math.exp(-self.mean)
            k = 0
            while total < 1 - _POISSON_TAIL and k < cap:
                cdf.append(total)
                k += 1
                pmf *= self.mean / k
                total += pmf
        self.cdf = cdf


class SimMarket:
    """Advance a seeded market model and return the domain events it produces."""

    def __init__(self, params: SimMarketParams, seed: int, start_ns: int) -> None:
        p = self.params = params
        self.seed = seed
        self._rng = random.Random(seed)
        self._random, self._bits = self._rng.random, self._rng.getrandbits
        self._gauss_next: float | None = None
        self._start_ns = self._now_ns = start_ns
        self._tick = float(p.tick_size)
        self._tick_size, self._step_size = p.tick_size, p.step_size
        self._min_steps = max(1, math.ceil(p.min_order_size / p.step_size))
        self._base_steps = float(p.base_level_size / p.step_size)
        self._sigma_sec = p.annual_vol / math.sqrt(SECS_PER_YEAR)
        self._log_mid = self._oracle_log = math.log(float(p.initial_price))
        self._high_vol = False
        self._premium_1h = p.funding_mean_1h
        self._hour = start_ns // NS_PER_HOUR
        self._hour_weight = 0.0  # integral of the clamped premium over this hour, in rate x ns
        self._hour_ns = 0
        self._settled: tuple[int, Decimal] | None = None
        self._last_oracle_ns: int | None = None
        self._last_height: int | None = None
        # price in ticks -> size in steps: the model's book, and the levels changed since the last
        # emission with the model's size there now (0: none; the overlay is added when emitting)
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._dirty_bids: dict[int, int] = {}
        self._dirty_asks: dict[int, int] = {}
        self._best_bid = self._best_ask = 0
        self._started = False
        self._traded_units = 0  # notional of the model's taker trades (ticks x steps), see drain_...
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
        self._hook_needs_overlay = False
        self._price_cache = _MULTIPLES.setdefault(str(p.tick_size), {})  # ticks -> Decimal price
        self._size_cache = _MULTIPLES.setdefault(str(p.step_size), {})  # steps -> Decimal size
        self._gone_cache = _REMOVALS.setdefault(str(p.tick_size), {})  # ticks -> BookLevel(price, 0)
        self._oracle = self._price_of(self._ticks(math.exp(self._oracle_log)))
        self._consts: dict[int, _StepConsts] = {}  # step length (ns) -> its constants
        self._ticker = p.ticker
        self._depth, self._spacing = p.depth_levels, p.level_spacing_ticks
        self._spread = p.spread_ticks
        self._spread_high = p.spread_ticks * p.high_vol_spread_multiplier
        self._jump_size = p.jump_size
        self._oracle_noise = p.oracle_noise_bps / 10_000
        self._funding_mean, self._funding_cap = p.funding_mean_1h, p.funding_clamp_1h
        self._initial_height, self._block_ns = p.initial_height, p.block_interval_ns
        self._trade_sizes = _trade_size_table(float(p.mean_trade_size / p.step_size), self._min_steps)
        self._level_sizes: tuple[int, ...] = ()  # the regime's _level_size_table
        self._set_means()
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

    def history(self, hours: int) -> list[HistoryBar]:
        """The market's deterministic past before it started: hourly bars and funding."""
        return history_bars(self.params, self.seed, self._start_ns, hours)

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

    def best_level(self, side: Side) -> int | None:
        """Return the model's best level in ticks (highest bid for BUY, lowest ask for SELL), if any."""
        if side is Side.BUY:
            best, book = self._best_bid, self._bids
            return best if best in book else (max(book) if book else None)
        best, book = self._best_ask, self._asks
        return best if best in book else (min(book) if book else None)

    def background(self, side: Side) -> dict[int, int]:
        """Return the model's own levels (ticks -> steps): bids for BUY, asks for SELL. Read only."""
        return self._bids if side is Side.BUY else self._asks

    def overlay(self, side: Side) -> dict[int, int]:
        """Return the size resting on top of the model's levels: bids for BUY. Read only."""
        return self._over_bids if side is Side.BUY else self._over_asks

    def shown(self, side: Side) -> dict[int, int]:
        """Return the aggregated book (model + overlay, ticks -> steps): bids for BUY, asks for SELL.

        Every public call of the exchange ends with an emission, so this is also the book as last
        emitted; a new dict each call.
        """
        if side is Side.BUY:
            return _merged(self._bids, self._over_bids)
        return _merged(self._asks, self._over_asks)

    def set_overlay(self, side: Side, ticks: int, steps: int) -> None:
        """Set the extra size resting at `ticks` on the bids (BUY) or asks (SELL); 0 removes it."""
        book, over, dirty = ((self._bids, self._over_bids, self._dirty_bids) if side is Side.BUY
                             else (self._asks, self._over_asks, self._dirty_asks))
        if steps > 0:
            if over.get(ticks) == steps:
                return
            over[ticks] = steps
        elif over.pop(ticks, None) is None:
            return
        dirty[ticks] = book.get(ticks, 0)

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
                dirty[idx] = 0
            else:
                book[idx] = dirty[idx] = book[idx] - size
            remaining -= size
            out.append((idx, size))
        return out

    def reduce_level(self, side: Side, ticks: int, steps: int) -> None:
        """Remove `steps` from the model's level at `ticks` (bids for BUY), at most all of it."""
        book, dirty = (self._bids, self._dirty_bids) if side is Side.BUY else (self._asks, self._dirty_asks)
        if ticks not in book:
            return
        left = book[ticks] - steps
        if left > 0:
            book[ticks] = dirty[ticks] = left
        else:
            del book[ticks]
            dirty[ticks] = 0

    def price_of(self, ticks: int) -> Decimal:
        """Return the Decimal price of `ticks` (cached)."""
        return self._price_of(ticks)

    def size_of(self, steps: int) -> Decimal:
        """Return the Decimal size of `steps` (cached)."""
        return self._size_of(steps)

    def drain_traded_units(self) -> int:
        """Return the notional (ticks x steps) the model's takers traded since the last call."""
        units, self._traded_units = self._traded_units, 0
        return units

    def flush(self, now_ns: int) -> list[MarketEvent]:
        """Return the BookDelta of changes made since the last emission (none before the snapshot)."""
        events: list[MarketEvent] = []
        if self._started and (self._dirty_bids or self._dirty_asks):
            self._emit_delta(events, now_ns)
        return events

    def set_depth_factor(self, factor: float) -> None:
        """Scale the model's depth by `factor` (1 = normal, < 1 thinner), live levels included."""
        factor = max(factor, 1e-6)
        if factor == self._depth_factor:
            return
        ratio = factor / self._depth_factor
        self._depth_factor = factor
        self._scale_levels(ratio)
        self._set_means()

    def set_funding_override(self, rate_1h: Decimal | None) -> None:
        """Report `rate_1h` as the funding rate while set (None restores the model's rate)."""
        self._rate_override = rate_1h

    def shift_price(self, pct: float) -> None:
        """Gap the mid by `pct` percent (scenarios); the oracle follows with its usual lag."""
        self._log_mid += math.log1p(pct / 100)

    def set_hooks(self, taker: TakerHook | None = None, pre_emit: PreEmitHook | None = None,
                  emit_heights: bool = True, taker_needs_overlay: bool = False) -> None:
        """Install the exchange core's hooks (see TakerHook / PreEmitHook); heights off if it makes blocks.

        `taker_needs_overlay`: the taker hook only ever handles a taker when overlay size rests on
        the side it hits at or better than the model's best level there (or the model's side is
        empty), so the model calls it only then.
        """
        self._taker_hook = taker
        self._pre_emit_hook = pre_emit
        self._emit_heights = emit_heights
        self._hook_needs_overlay = taker_needs_overlay

    def hooks(self) -> tuple[TakerHook | None, PreEmitHook | None]:
        """Return the installed (taker, pre_emit) hooks."""
        return self._taker_hook, self._pre_emit_hook

    def step(self, now_ns: int) -> list[MarketEvent]:
        """Advance the model to `now_ns` and return the events produced, in order.

        The cost of a step does not grow with its length: hazards, the Poisson counts and the
        GBM/OU transitions are exact for any gap (their dt-dependent constants are cached per gap
        length), the book is re-centred only when the touch moved, and only the levels that
        changed are redrawn and emitted.
        """
        prev_ns = self._now_ns
        if now_ns < prev_ns:
            raise ValueError(f"time went backwards: {now_ns} < {prev_ns}")
        consts = None
        if now_ns != prev_ns:
            consts = self._consts.get(now_ns - prev_ns) or self._make_consts(now_ns - prev_ns)
            self._advance(consts, now_ns)
        self._now_ns = now_ns
        self._rebuild(False)
        if consts is not None and consts.redraws.mean > 0:
            self._refresh_levels(consts.redraws)
        events: list[MarketEvent] = []
        if self._pre_emit_hook is not None:
            self._pre_emit_hook(now_ns, events)
        if not self._started:
            self._started = True
            events.append(self._snapshot(now_ns))
        elif self._dirty_bids or self._dirty_asks:
            self._emit_delta(events, now_ns)
        if consts is not None and consts.takers.mean > 0:
            self._take(consts.takers, now_ns, events)
        if self._last_oracle_ns is None or now_ns - self._last_oracle_ns >= NS_PER_SEC:
            self._last_oracle_ns = now_ns
            noise = self._normal() * self._oracle_noise
            self._oracle = self._price_of(self._ticks(_exp(self._oracle_log) * (1 + noise)))
            events.append(oracle_update(self._ticker, self._oracle, self.funding_rate_1h(), now_ns))
        if self._emit_heights:
            height = self._initial_height + (now_ns - self._start_ns) // self._block_ns
            # One event per step with the latest height: a long gap does not flood the caller.
            if self._last_height is None or height > self._last_height:
                self._last_height = height
                events.append(block_height(height, now_ns))
        return events

    # ---- model ---------------------------------------------------------------------------

    def _make_consts(self, dt_ns: int) -> _StepConsts:
        if len(self._consts) >= 256:
            self._consts.clear()
        consts = self._consts[dt_ns] = _StepConsts(self.params, self._sigma_sec, dt_ns)
        return consts

    def _normal(self) -> float:
        """A standard normal draw: `random.Random.gauss`'s algorithm (and stream), one call cheaper."""
        z = self._gauss_next
        if z is not None:
            self._gauss_next = None
            return z
        rnd = self._random
        x2pi = rnd() * _TWOPI
        g2rad = _sqrt(-2.0 * _log(1.0 - rnd()))
        self._gauss_next = _sin(x2pi) * g2rad
        return _cos(x2pi) * g2rad

    def _count(self, poisson: _PoissonCount) -> int:
        """Draw a capped Poisson count: one uniform into the CDF (or a normal for large means)."""
        cdf = poisson.cdf
        if cdf:
            return bisect.bisect_right(cdf, self._random())
        if poisson.mean <= 0:
            return 0
        return min(poisson.cap, max(0, round(poisson.mean + self._normal() * poisson.root)))

    def _advance(self, c: _StepConsts, now_ns: int) -> None:
        rnd = self._random
        if rnd() < (c.p_exit if self._high_vol else c.p_enter):
            self._high_vol = not self._high_vol
            self._rescale_depth()
        # One Box-Muller pair per step (as random.gauss draws it): the mid's and the premium's shocks.
        x2pi = rnd() * _TWOPI
        g2rad = _sqrt(-2.0 * _log(1.0 - rnd()))
        z_mid, z_premium = _cos(x2pi) * g2rad, _sin(x2pi) * g2rad
        if self._high_vol:
            log_mid = self._log_mid + c.drift_h + c.vol_h * z_mid
        else:
            log_mid = self._log_mid + c.drift_n + c.vol_n * z_mid
        if rnd() < c.p_jump:
            log_mid += self._normal() * self._jump_size
        self._log_mid = log_mid
        self._oracle_log += c.oracle_alpha * (log_mid - self._oracle_log)
        # Exact OU transition, so a long gap is one draw with the right variance.
        mean, cap = self._funding_mean, self._funding_cap
        premium = self._premium_1h = mean + (self._premium_1h - mean) * c.ou_decay + c.ou_vol * z_premium
        rate = -cap if premium < -cap else (cap if premium > cap else premium)
        if now_ns // NS_PER_HOUR == self._hour:
            self._hour_weight += rate * (now_ns - self._now_ns)
            self._hour_ns += now_ns - self._now_ns
        else:
            self._close_hour(now_ns, rate)

    def _close_hour(self, now_ns: int, rate: float) -> None:
        """Settle the hour the last step was in; a gap over several hours reports only the latest."""
        hour = now_ns // NS_PER_HOUR
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

    def _set_means(self) -> None:
        """Point `_level_sizes` at the size table of the current regime and depth factor."""
        p = self.params
        mean = self._base_steps * self._depth_factor
        if self._high_vol:
            mean *= p.high_vol_depth_factor
        self._level_sizes = _level_size_table(mean, p.level_size_growth, p.depth_levels,
                                              p.level_size_dispersion, self._min_steps)

    def _rescale_depth(self) -> None:
        factor = self.params.high_vol_depth_factor
        self._scale_levels(factor if self._high_vol else 1 / factor)
        self._set_means()

    def _scale_levels(self, ratio: float) -> None:
        min_steps = self._min_steps
        for book, dirty in ((self._bids, self._dirty_bids), (self._asks, self._dirty_asks)):
            for idx, steps in book.items():
                book[idx] = dirty[idx] = max(min_steps, round(steps * ratio))

    def _rebuild(self, force: bool) -> None:
        """Recenter the book on mid: drop levels out of range, fill missing ones.

        Invariant (after every call): each side holds only levels of its wanted range (the
        `depth_levels` grid prices from its touch outwards). Nothing else adds levels, so a move
        of the touch drops just the levels it passed and draws just the ones it uncovered.
        """
        spread = self._spread_high if self._high_vol else self._spread
        best_bid = round(_exp(self._log_mid) / self._tick - spread / 2)
        best_ask = best_bid + spread
        n = self._depth
        bids, asks = self._bids, self._asks
        if (not force and best_bid == self._best_bid and best_ask == self._best_ask
                and len(bids) == n and len(asks) == n):
            return
        old_bid, old_ask = self._best_bid, self._best_ask
        self._best_bid, self._best_ask = best_bid, best_ask
        sp = self._spacing
        self._recentre(bids, self._dirty_bids, old_bid, best_bid, -sp, force)
        self._recentre(asks, self._dirty_asks, old_ask, best_ask, sp, force)

    def _recentre(self, book: dict[int, int], dirty: dict[int, int], old: int, best: int, sp: int,
                  force: bool) -> None:
        """One side of `_rebuild`; `sp` is the signed step from the touch outwards."""
        n = self._depth
        move = best - old
        news: range | None = None  # distances from the touch of the levels the move uncovered
        if not move or not book:
            pass
        elif force or move % sp:  # off the old grid: nothing survives
            wanted = range(best, best + n * sp, sp)
            for idx in [idx for idx in book if idx not in wanted]:
                del book[idx]
                dirty[idx] = 0
        else:
            shift = move // sp  # levels moved: > 0 outwards (away from the other side)
            if shift >= n or shift <= -n:
                dirty.update(dict.fromkeys(book, 0))
                book.clear()
            else:
                if shift > 0:  # the touch passed the old inner levels; new ones appear outside
                    gone, news = range(old, best, sp), range(n - shift, n)
                else:
                    gone, news = range(best + n * sp, old + n * sp, sp), range(-shift)
                for idx in gone:
                    if idx in book:
                        del book[idx]
                        dirty[idx] = 0
        missing = n - len(book)
        if not missing:
            return
        if news is None or force or missing != len(news):
            news = range(n)  # holes too (takers): look at every level
        sizes, bits = self._level_sizes, self._bits
        for d in news:
            idx = best + d * sp
            if idx > 0 and idx not in book:
                book[idx] = dirty[idx] = sizes[d << _SIZE_BITS | bits(_SIZE_BITS)]

    def _refresh_levels(self, redraws: _PoissonCount) -> None:
        """Redraw the size of a Poisson number of random levels (a level taken away stays away)."""
        cdf = redraws.cdf
        count = _bisect(cdf, self._random()) if cdf else self._count(redraws)
        if not count:
            return
        bits, n, sp, sizes = self._bits, self._depth, self._spacing, self._level_sizes
        bids, asks, dirty_bids, dirty_asks = self._bids, self._asks, self._dirty_bids, self._dirty_asks
        best_bid, best_ask = self._best_bid, self._best_ask
        for _ in range(count):
            r = bits(_REDRAW_BITS)
            level = (r & _LEVEL_MASK) * n >> _LEVEL_BITS
            if r >> _LEVEL_BITS & 1:
                idx = best_bid - level * sp
                if idx in bids:
                    bids[idx] = dirty_bids[idx] = sizes[level << _SIZE_BITS | r >> (_LEVEL_BITS + 1)]
            else:
                idx = best_ask + level * sp
                if idx in asks:
                    asks[idx] = dirty_asks[idx] = sizes[level << _SIZE_BITS | r >> (_LEVEL_BITS + 1)]

    def _take(self, takers: _PoissonCount, now_ns: int, events: list[MarketEvent]) -> None:
        """Let Poisson takers eat the touch, each Trade followed by its level's delta."""
        cdf = takers.cdf
        count = _bisect(cdf, self._random()) if cdf else self._count(takers)
        if not count:
            return
        hook, min_steps, trade_sizes, bits = self._taker_hook, self._min_steps, self._trade_sizes, self._bits
        gated = self._hook_needs_overlay
        bids, asks, over_bids, over_asks = self._bids, self._asks, self._over_bids, self._over_asks
        dirty_bids, dirty_asks = self._dirty_bids, self._dirty_asks
        ticker, append = self._ticker, events.append
        prices, sizes = self._price_cache, self._size_cache
        traded = 0
        for _ in range(count):
            r = bits(_TRADE_BITS + 1)
            want = trade_sizes[r >> 1]
            buy = r & 1
            if buy:
                idx = self._best_ask
                if idx not in asks:
                    idx = min(asks) if asks else None
                # gated: overlay at or better than the model's best is the hook's own precondition
                if hook is not None and (not gated or (over_asks and (idx is None or min(over_asks) <= idx))):
                    if hook(True, want, now_ns, events):
                        continue
                    idx = min(asks) if asks else None  # (an ungated hook may have changed the book)
                book, over = asks, over_asks
            else:
                idx = self._best_bid
                if idx not in bids:
                    idx = max(bids) if bids else None
                if hook is not None and (not gated or (over_bids and (idx is None or max(over_bids) >= idx))):
                    if hook(False, want, now_ns, events):
                        continue
                    idx = max(bids) if bids else None
                book, over = bids, over_bids
            if idx is None:
                continue
            have = book[idx]
            available = have if len(book) > 1 else have - min_steps
            size = want if want < available else available
            if size < min_steps:
                continue
            left = have - size
            if left:
                book[idx] = left
            else:
                del book[idx]
            traded += idx * size
            try:
                price = prices[idx]
            except KeyError:
                price = self._price_of(idx)
            trade = TradeDraft()  # Trade(...), built as bot.sim.event_drafts explains
            trade.market = ticker
            trade.price = price
            try:
                trade.size = sizes[size]
            except KeyError:
                trade.size = self._size_of(size)
            trade.aggressor = _BUY if buy else _SELL
            trade.ts_event = trade.ts_recv = now_ns
            trade.__class__ = Trade
            append(trade)
            if dirty_bids or dirty_asks:  # something else changed too (a hook): the general diff
                (dirty_asks if buy else dirty_bids)[idx] = left
                self._emit_delta(events, now_ns)
                continue
            # the usual case: just this level changed, emit its delta directly
            if over:
                left += over.get(idx, 0)
            if left:
                level = LevelDraft()
                level.price = price
                try:
                    level.size = sizes[left]
                except KeyError:
                    level.size = self._size_of(left)
                level.__class__ = BookLevel
            else:
                level = self._gone_cache.get(idx) or self._gone_level(idx)
            delta = DeltaDraft()
            delta.market = ticker
            if buy:
                delta.bids, delta.asks = (), (level,)
            else:
                delta.bids, delta.asks = (level,), ()
            delta.ts_event = delta.ts_recv = now_ns
            delta.__class__ = BookDelta
            append(delta)
        self._traded_units += traded

    # ---- emission ------------------------------------------------------------------------

    def _snapshot(self, now_ns: int) -> BookSnapshot:
        shown_bids = _merged(self._bids, self._over_bids)
        shown_asks = _merged(self._asks, self._over_asks)
        self._dirty_bids.clear()
        self._dirty_asks.clear()
        price, size = self._price_of, self._size_of
        bids = tuple(book_level(price(i), size(shown_bids[i])) for i in sorted(shown_bids, reverse=True))
        asks = tuple(book_level(price(i), size(shown_asks[i])) for i in sorted(shown_asks))
        return book_snapshot(self._ticker, bids, asks, now_ns)

    def _emit_delta(self, events: list[MarketEvent], now_ns: int) -> None:
        delta = DeltaDraft()
        delta.market = self._ticker
        delta.bids = self._levels(self._over_bids, self._dirty_bids, True) if self._dirty_bids else ()
        delta.asks = self._levels(self._over_asks, self._dirty_asks, False) if self._dirty_asks else ()
        delta.ts_event = delta.ts_recv = now_ns
        delta.__class__ = BookDelta
        events.append(delta)  # type: ignore[arg-type]

    def _levels(self, over: dict[int, int], dirty: dict[int, int], best_high: bool) -> tuple[BookLevel, ...]:
        """The levels at the `dirty` prices as they are now (size 0: gone), best first; clears `dirty`."""
        prices, sizes, gone = self._price_cache, self._size_cache, self._gone_cache
        over_get = over.get if over else None
        out = []
        append = out.append
        for idx in sorted(dirty, reverse=best_high):
            steps = dirty[idx]
            if over_get is not None:
                steps += over_get(idx, 0)
            if steps:
                level = LevelDraft()  # BookLevel(...), built as bot.sim.event_drafts explains
                try:
                    level.price = prices[idx]
                except KeyError:
                    level.price = self._price_of(idx)
                try:
                    level.size = sizes[steps]
                except KeyError:
                    level.size = self._size_of(steps)
                level.__class__ = BookLevel
                append(level)
            else:  # (cached levels are never falsy: `or` is a cache miss)
                append(gone.get(idx) or self._gone_level(idx))
        dirty.clear()
        return tuple(out)

    def _gone_level(self, ticks: int) -> BookLevel:
        """The size-0 level at `ticks` (a removal), cached: frozen, so one object serves every delta."""
        if len(self._gone_cache) >= _CACHE_MAX:
            self._gone_cache.clear()
        level = self._gone_cache[ticks] = book_level(self._price_of(ticks), ZERO)
        return level

    def _price_of(self, ticks: int) -> Decimal:
        """ticks -> Decimal price, cached (the same few hundred prices recur)."""
        price = self._price_cache.get(ticks)
        if price is None:
            if len(self._price_cache) >= _CACHE_MAX:
                self._price_cache.clear()
            price = self._price_cache[ticks] = self._tick_size * ticks
        return price

    def _size_of(self, steps: int) -> Decimal:
        """steps -> Decimal size, cached (the drawn sizes recur)."""
        size = self._size_cache.get(steps)
        if size is None:
            if len(self._size_cache) >= _CACHE_MAX:
                self._size_cache.clear()
            size = self._size_cache[steps] = self._step_size * steps
        return size

    def _ticks(self, price: float) -> int:
        return max(1, round(price / self._tick))


TakerHook = Callable[[bool, int, int, list[MarketEvent]], bool]
"""(is_buy, size_steps, now_ns, events) -> handled: lets the exchange route one Poisson taker."""
PreEmitHook = Callable[[int, list[MarketEvent]], None]
"""(now_ns, events): runs after the model moved its levels and before the step's book events."""


def _merged(book: dict[int, int], over: dict[int, int]) -> dict[int, int]:
    out = dict(book)
    for idx, steps in over.items():
        out[idx] = out.get(idx, 0) + steps
    return out


def _rate(rate_1h: float) -> Decimal:
    return Decimal(round(rate_1h * 10**_RATE_DECIMALS)).scaleb(-_RATE_DECIMALS)


_TWOPI = 2.0 * math.pi  # as random.TWOPI
_bisect = bisect.bisect_right
_sqrt, _log, _exp, _sin, _cos = math.sqrt, math.log, math.exp, math.sin, math.cos
_BUY, _SELL = Side.BUY, Side.SELL
_CACHE_MAX = 65_536  # entries per ticks/steps -> Decimal (or level) cache before it is dropped
