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

Speed (target: 200k events/s on one core, for backtests; measured by
tests/bench/bench_sim.py): a step costs the same for any gap (the gap's constants are cached),
re-centring drops only the levels the touch passed and draws only the ones it uncovered, and
only changed levels are diffed and emitted, through Decimal and BookLevel caches and constructors
that skip the frozen dataclasses' __init__. The hot loops inline random.Random's own gauss,
randrange and expovariate: the stream of draws, and so every event, is the same as calling them.
Keep the draw order when changing the model, or same-seed streams change.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable
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
        self._hook_needs_overlay = False
        self._price_cache: dict[int, Decimal] = {}  # ticks -> Decimal price (levels repeat a lot)
        self._size_cache: dict[int, Decimal] = {}  # steps -> Decimal size
        self._gone_cache: dict[int, BookLevel] = {}  # ticks -> BookLevel(price, 0)
        # hot-path copies of the parameters and bound RNG methods (the stream is random.Random's:
        # `_normal` is its gauss, `_refresh_levels` its randrange, `_take` its expovariate)
        self._random, self._getrandbits = self._rng.random, self._rng.getrandbits
        self._gauss_next: float | None = None
        self._consts: dict[int, tuple] = {}  # step length (ns) -> _make_consts(step length)
        self._ticker = p.ticker
        self._depth, self._spacing = p.depth_levels, p.level_spacing_ticks
        self._depth_bits = p.depth_levels.bit_length()
        self._spread = p.spread_ticks
        self._spread_high = p.spread_ticks * p.high_vol_spread_multiplier
        self._dispersion, self._jump_size = p.level_size_dispersion, p.jump_size
        self._oracle_noise = p.oracle_noise_bps / 10_000
        self._funding_mean, self._funding_cap = p.funding_mean_1h, p.funding_clamp_1h
        self._refresh_cap, self._trade_cap = 4 * p.depth_levels, p.max_trades_per_step
        self._initial_height, self._block_ns = p.initial_height, p.block_interval_ns
        self._means: list[float] = []
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
        dt_ns = now_ns - prev_ns
        consts = None
        if dt_ns:
            consts = self._consts.get(dt_ns) or self._make_consts(dt_ns)
            self._advance(consts, now_ns)
        self._now_ns = now_ns
        self._rebuild(False)
        if consts is not None and consts[11] > 0:
            self._refresh_levels(consts)
        events: list[MarketEvent] = []
        if self._pre_emit_hook is not None:
            self._pre_emit_hook(now_ns, events)
        if not self._started:
            self._started = True
            events.append(self._snapshot(now_ns))
        elif self._dirty_bids or self._dirty_asks:
            self._emit_delta(events, now_ns)
        if consts is not None and consts[14] > 0:
            self._take(consts, now_ns, events)
        if self._last_oracle_ns is None or now_ns - self._last_oracle_ns >= NS_PER_SEC:
            self._last_oracle_ns = now_ns
            noise = self._normal() * self._oracle_noise
            self._oracle = self._price(self._ticks(math.exp(self._oracle_log) * (1 + noise)))
            events.append(_mk_oracle(self._ticker, self._oracle, self.funding_rate_1h(), now_ns, now_ns))
        if not self._emit_heights:
            return events
        height = self._initial_height + (now_ns - self._start_ns) // self._block_ns
        # One event per step with the latest height: a long gap does not flood the caller.
        if self._last_height is None or height > self._last_height:
            self._last_height = height
            events.append(_mk_height(height, now_ns, now_ns))
        return events

    # ---- model ---------------------------------------------------------------------------

    def _make_consts(self, dt_ns: int) -> tuple:
        """Everything in a step that depends only on its length (cached: step lengths recur)."""
        p = self.params
        dt_secs = dt_ns / NS_PER_SEC
        sigma_n = self._sigma_sec * 1.0
        sigma_h = self._sigma_sec * p.high_vol_multiplier
        theta, dt_h = p.funding_reversion_per_hour, dt_secs / 3600
        var = dt_h if theta <= 0 else -math.expm1(-2 * theta * dt_h) / (2 * theta)
        lvl_lam = p.level_updates_per_sec * dt_secs
        tk_lam = p.taker_trades_per_sec * dt_secs
        consts = (
            dt_secs,
            -math.expm1(-p.high_vol_enter_per_sec * dt_secs),  # 1 P(normal -> high)
            -math.expm1(-p.high_vol_exit_per_sec * dt_secs),  # 2 P(high -> normal)
            -0.5 * sigma_n * sigma_n * dt_secs, sigma_n * math.sqrt(dt_secs),  # 3, 4 normal regime
            -0.5 * sigma_h * sigma_h * dt_secs, sigma_h * math.sqrt(dt_secs),  # 5, 6 high vol
            -math.expm1(-p.jump_per_sec * dt_secs),  # 7 P(jump)
            1.0 if p.oracle_lag_secs <= 0 else -math.expm1(-dt_secs / p.oracle_lag_secs),  # 8
            math.exp(-theta * dt_h), p.funding_vol_1h * math.sqrt(var),  # 9, 10 OU decay and vol
            lvl_lam, _poisson_limit(lvl_lam), math.sqrt(max(lvl_lam, 0.0)),  # 11-13 level redraws
            tk_lam, _poisson_limit(tk_lam), math.sqrt(max(tk_lam, 0.0)),  # 14-16 takers
        )
        if len(self._consts) >= 256:
            self._consts.clear()
        self._consts[dt_ns] = consts
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

    def _count(self, lam: float, limit: float, root: float, cap: int) -> int:
        """Draw a Poisson count (normal approximation for large means), capped at `cap`."""
        if lam <= 0:
            return 0
        if lam > 30:
            return min(cap, max(0, round(lam + self._normal() * root)))
        rnd = self._random
        k, prod = 0, rnd()
        while prod > limit and k < cap:
            k += 1
            prod *= rnd()
        return k

    def _advance(self, c: tuple, now_ns: int) -> None:
        rnd = self._random
        if rnd() < (c[2] if self._high_vol else c[1]):
            self._high_vol = not self._high_vol
            self._rescale_depth()
        if self._high_vol:
            self._log_mid += c[5] + c[6] * self._normal()
        else:
            self._log_mid += c[3] + c[4] * self._normal()
        if rnd() < c[7]:
            self._log_mid += self._normal() * self._jump_size
        self._oracle_log += c[8] * (self._log_mid - self._oracle_log)
        # Exact OU transition, so a long gap is one draw with the right variance.
        mean = self._funding_mean
        self._premium_1h = mean + (self._premium_1h - mean) * c[9] + c[10] * self._normal()
        self._accrue_funding(now_ns)

    def _accrue_funding(self, now_ns: int) -> None:
        cap = self._funding_cap
        premium = self._premium_1h
        rate = -cap if premium < -cap else (cap if premium > cap else premium)
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

    def _set_means(self) -> None:
        """Mean size in steps of each level (by distance from the touch) in the current regime."""
        p = self.params
        means = [self._base_steps * (1 + p.level_size_growth * level) * self._depth_factor
                 for level in range(p.depth_levels)]
        if self._high_vol:
            means = [mean * p.high_vol_depth_factor for mean in means]
        self._means = means

    def _rescale_depth(self) -> None:
        factor = self.params.high_vol_depth_factor
        if not self._high_vol:
            factor = 1 / factor
        for book, dirty in ((self._bids, self._dirty_bids), (self._asks, self._dirty_asks)):
            for idx, steps in book.items():
                book[idx] = max(self._min_steps, round(steps * factor))
                dirty.add(idx)
        self._set_means()

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

    def _recentre(self, book: dict[int, int], dirty: set[int], old: int, best: int, sp: int,
                  force: bool) -> None:
        """One side of `_rebuild`; `sp` is the signed step from the touch outwards."""
        n = self._depth
        move = best - old
        news: range | None = None  # the levels the move uncovered, in order from the touch
        if not move or not book:
            pass
        elif force or move % sp:  # off the old grid: nothing survives
            wanted = range(best, best + n * sp, sp)
            for idx in [idx for idx in book if idx not in wanted]:
                del book[idx]
                dirty.add(idx)
        else:
            shift = move // sp  # levels moved: > 0 outwards (away from the other side)
            if shift >= n or shift <= -n:
                for idx in book:
                    dirty.add(idx)
                book.clear()
            else:
                if shift > 0:  # the touch passed the old inner levels; new ones appear outside
                    gone, news = range(old, best, sp), range(old + n * sp, best + n * sp, sp)
                else:
                    gone, news = range(best + n * sp, old + n * sp, sp), range(best, old, sp)
                for idx in gone:
                    if idx in book:
                        del book[idx]
                        dirty.add(idx)
        missing = n - len(book)
        if not missing:
            return
        rnd, min_steps, disp, means = self._random, self._min_steps, self._dispersion, self._means
        if news is not None and not force and missing == len(news):
            candidates = news  # no holes (from takers): only the uncovered levels are missing
        else:
            candidates = range(best, best + n * sp, sp)
        spare = self._gauss_next  # `_normal` inlined: the same draws in the same order
        for idx in candidates:
            if idx > 0 and idx not in book:
                if spare is None:
                    x2pi = rnd() * _TWOPI
                    g2rad = _sqrt(-2.0 * _log(1.0 - rnd()))
                    z, spare = _cos(x2pi) * g2rad, _sin(x2pi) * g2rad
                else:
                    z, spare = spare, None
                steps = round(means[(idx - best) // sp] * _exp(z * disp))
                book[idx] = steps if steps > min_steps else min_steps
                dirty.add(idx)
        self._gauss_next = spare

    def _refresh_levels(self, c: tuple) -> None:
        rnd, getrandbits = self._random, self._getrandbits
        n, bits, sp = self._depth, self._depth_bits, self._spacing
        bids, asks, dirty_bids, dirty_asks = self._bids, self._asks, self._dirty_bids, self._dirty_asks
        min_steps, disp, means = self._min_steps, self._dispersion, self._means
        best_bid, best_ask = self._best_bid, self._best_ask
        lam, cap = c[11], self._refresh_cap
        if lam > 30:
            count = self._count(lam, c[12], c[13], cap)
        else:  # `_count` inlined
            limit, count, prod = c[12], 0, rnd()
            while prod > limit and count < cap:
                count += 1
                prod *= rnd()
        spare = self._gauss_next  # `_normal` inlined: the same draws in the same order
        for _ in range(count):
            level = getrandbits(bits)  # random.randrange(n), same stream
            while level >= n:
                level = getrandbits(bits)
            if rnd() < 0.5:
                book, dirty = bids, dirty_bids
                idx = best_bid - level * sp
            else:
                book, dirty = asks, dirty_asks
                idx = best_ask + level * sp
            if idx in book:
                if spare is None:
                    x2pi = rnd() * _TWOPI
                    g2rad = _sqrt(-2.0 * _log(1.0 - rnd()))
                    z, spare = _cos(x2pi) * g2rad, _sin(x2pi) * g2rad
                else:
                    z, spare = spare, None
                steps = round(means[level] * _exp(z * disp))
                book[idx] = steps if steps > min_steps else min_steps
                dirty.add(idx)
        self._gauss_next = spare

    def _take(self, c: tuple, now_ns: int, events: list[MarketEvent]) -> None:
        """Let Poisson takers eat the touch, each Trade followed by its level's delta."""
        rnd, lam, cap = self._random, c[14], self._trade_cap
        if lam > 30:
            count = self._count(lam, c[15], c[16], cap)
        else:  # `_count` inlined
            limit, count, prod = c[15], 0, rnd()
            while prod > limit and count < cap:
                count += 1
                prod *= rnd()
        if not count:
            return
        hook, min_steps, trade_steps = self._taker_hook, self._min_steps, self._trade_steps
        gated = self._hook_needs_overlay
        bids, asks, over_bids, over_asks = self._bids, self._asks, self._over_bids, self._over_asks
        ticker, append = self._ticker, events.append
        prices, sizes = self._price_cache, self._size_cache
        for _ in range(count):
            buy = rnd() < 0.5
            want = round(-_log(1.0 - rnd()) * trade_steps)  # random.expovariate(1.0), same stream
            if want < min_steps:
                want = min_steps
            if buy:
                idx = self._best_ask
                if idx not in asks:
                    idx = min(asks) if asks else None
                # gated: overlay at or better than the model's best is the hook's own precondition
                if hook is not None and (not gated or (over_asks and (idx is None or min(over_asks) <= idx))):
                    if hook(True, want, now_ns, events):
                        continue
                    idx = min(asks) if asks else None  # (an ungated hook may have changed the book)
                book, dirty, other = asks, self._dirty_asks, self._dirty_bids
            else:
                idx = self._best_bid
                if idx not in bids:
                    idx = max(bids) if bids else None
                if hook is not None and (not gated or (over_bids and (idx is None or max(over_bids) >= idx))):
                    if hook(False, want, now_ns, events):
                        continue
                    idx = max(bids) if bids else None
                book, dirty, other = bids, self._dirty_bids, self._dirty_asks
            if idx is None:
                continue
            have = book[idx]
            available = have if len(book) > 1 else have - min_steps
            size = want if want < available else available
            if size < min_steps:
                continue
            if size == have:
                del book[idx]
            else:
                book[idx] = have - size
            price = prices.get(idx) or self._price_of(idx)
            append(_mk_trade(ticker, price, sizes.get(size) or self._size_of(size), _BUY if buy else _SELL,
                             now_ns, now_ns))
            if dirty or other:  # something else changed too (a hook): the general diff
                dirty.add(idx)
                self._emit_delta(events, now_ns)
                continue
            # the usual case: just this level changed, emit its delta directly
            shown = self._shown_asks if buy else self._shown_bids
            steps = book.get(idx, 0)
            over = over_asks if buy else over_bids
            if over:
                steps += over.get(idx, 0)
            if shown.get(idx, 0) == steps:
                continue
            if steps:
                shown[idx] = steps
                level = (_mk_level(price, sizes.get(steps) or self._size_of(steps)),)
            else:
                del shown[idx]
                level = (self._gone_cache.get(idx) or self._gone_level(idx),)
            append(_mk_delta(ticker, (), level, now_ns, now_ns) if buy
                   else _mk_delta(ticker, level, (), now_ns, now_ns))

    # ---- emission ------------------------------------------------------------------------

    def _snapshot(self, now_ns: int) -> BookSnapshot:
        self._shown_bids = _merged(self._bids, self._over_bids)
        self._shown_asks = _merged(self._asks, self._over_asks)
        self._dirty_bids.clear()
        self._dirty_asks.clear()
        price, size = self._price_of, self._size_of
        bids = tuple(_mk_level(price(i), size(self._shown_bids[i]))
                     for i in sorted(self._shown_bids, reverse=True))
        asks = tuple(_mk_level(price(i), size(self._shown_asks[i]))
                     for i in sorted(self._shown_asks))
        return _mk_snapshot(self._ticker, bids, asks, now_ns, now_ns)

    def _emit_delta(self, events: list[MarketEvent], now_ns: int) -> None:
        bids = (self._diff(self._bids, self._over_bids, self._shown_bids, self._dirty_bids, True)
                if self._dirty_bids else ())
        asks = (self._diff(self._asks, self._over_asks, self._shown_asks, self._dirty_asks, False)
                if self._dirty_asks else ())
        if bids or asks:
            events.append(_mk_delta(self._ticker, bids, asks, now_ns, now_ns))

    def _diff(self, book: dict[int, int], over: dict[int, int], shown: dict[int, int],
              dirty: set[int], best_high: bool) -> tuple[BookLevel, ...]:
        if len(dirty) == 1:
            order: Iterable[int] = (dirty.pop(),)
        else:
            order = sorted(dirty, reverse=best_high)
            dirty.clear()
        prices, sizes, gone = self._price_cache, self._size_cache, self._gone_cache
        book_get, shown_get = book.get, shown.get
        over_get = over.get if over else None
        fast = _new_level
        if fast is not None:
            new, set_price, set_size = fast
        out = []
        for idx in order:
            steps = book_get(idx, 0)
            if over_get is not None:
                steps += over_get(idx, 0)
            if shown_get(idx, 0) == steps:
                continue
            if steps:  # (cached Decimals and levels are never zero/falsy: `or` is a cache miss)
                shown[idx] = steps
                if fast is not None:  # BookLevel(price, size) without its __init__ (see _fast_new)
                    level = new(BookLevel)
                    set_price(level, prices.get(idx) or self._price_of(idx))
                    set_size(level, sizes.get(steps) or self._size_of(steps))
                else:
                    level = BookLevel(prices.get(idx) or self._price_of(idx),
                                      sizes.get(steps) or self._size_of(steps))
                out.append(level)
            else:
                del shown[idx]
                out.append(gone.get(idx) or self._gone_level(idx))
        return tuple(out)

    def _gone_level(self, ticks: int) -> BookLevel:
        """The size-0 level at `ticks` (a removal), cached: frozen, so one object serves every delta."""
        if len(self._gone_cache) >= _CACHE_MAX:
            self._gone_cache.clear()
        level = self._gone_cache[ticks] = _mk_level(self._price_of(ticks), ZERO)
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
        """steps -> Decimal size, cached."""
        size = self._size_cache.get(steps)
        if size is None:
            if len(self._size_cache) >= _CACHE_MAX:
                self._size_cache.clear()
            size = self._size_cache[steps] = self._step_size * steps
        return size

    def _ticks(self, price: float) -> int:
        return max(1, round(price / self._tick))

    def _price(self, ticks: int) -> Decimal:
        return self._tick_size * ticks



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
_sqrt, _log, _exp, _sin, _cos = math.sqrt, math.log, math.exp, math.sin, math.cos
_BUY, _SELL = Side.BUY, Side.SELL
_CACHE_MAX = 65_536  # entries per ticks/steps -> Decimal (or level) cache before it is dropped


def _poisson_limit(lam: float) -> float:
    return math.exp(-lam) if 0 < lam <= 30 else 0.0


def _fast_new(cls: type, names: tuple[str, ...]) -> Callable[..., object]:
    """Return a positional constructor for the frozen slots dataclass `cls` that skips __init__.

    A frozen dataclass's __init__ sets each field through object.__setattr__; setting the slots
    directly builds an identical (==, same repr and hash) object in about half the time. Falls back
    to `cls` itself if the class no longer looks like that (fields changed, __post_init__, no slots).
    """
    fields = tuple(f.name for f in dataclasses.fields(cls))
    setters = [getattr(cls.__dict__.get(name), "__set__", None) for name in names]
    if (fields != names or hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__
            or None in setters):
        return cls
    new = object.__new__
    if len(names) == 2:
        s0, s1 = setters

        def make2(a, b):  # type: ignore[no-untyped-def]
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            return obj

        return make2
    if len(names) == 3:
        s0, s1, s2 = setters

        def make3(a, b, c):  # type: ignore[no-untyped-def]
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            return obj

        return make3
    if len(names) == 5:
        s0, s1, s2, s3, s4 = setters

        def make5(a, b, c, d, e):  # type: ignore[no-untyped-def]
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            s3(obj, d)
            s4(obj, e)
            return obj

        return make5
    if len(names) == 6:
        s0, s1, s2, s3, s4, s5 = setters

        def make6(a, b, c, d, e, f):  # type: ignore[no-untyped-def]
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            s3(obj, d)
            s4(obj, e)
            s5(obj, f)
            return obj

        return make6
    return cls


_mk_level = _fast_new(BookLevel, ("price", "size"))
# (object.__new__, price setter, size setter) when BookLevel allows it, else None (use the class)
_new_level = ((object.__new__, BookLevel.price.__set__, BookLevel.size.__set__)  # type: ignore[attr-defined]
              if _mk_level is not BookLevel else None)
_mk_trade = _fast_new(Trade, ("market", "price", "size", "aggressor", "ts_event", "ts_recv"))
_mk_delta = _fast_new(BookDelta, ("market", "bids", "asks", "ts_event", "ts_recv"))
_mk_snapshot = _fast_new(BookSnapshot, ("market", "bids", "asks", "ts_event", "ts_recv"))
_mk_oracle = _fast_new(OracleUpdate, ("market", "oracle_price", "next_funding_rate", "ts_event", "ts_recv"))
_mk_height = _fast_new(BlockHeight, ("height", "ts_event", "ts_recv"))
