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
import math
import random
from decimal import Decimal

from bot.clock import NS_PER_HOUR, NS_PER_SEC, SECS_PER_YEAR
from bot.domain import BookDelta, BookLevel, MarketEvent, MarketSpec, Side, Trade
from bot.sim.event_drafts import (
    DeltaDraft,
    LevelDraft,
    TradeDraft,
    block_height,
    oracle_update,
)
from bot.sim.history import HistoryBar, history_bars
from bot.sim.market_emit import Emission
from bot.sim.market_hooks import ExchangeHooks
from bot.sim.market_params import (
    LEVEL_BITS,
    LEVEL_MASK,
    MULTIPLES,
    REDRAW_BITS,
    REMOVALS,
    SIZE_BITS,
    TRADE_BITS,
    PoissonCount,
    PreEmitHook,
    SimMarketParams,
    StepConsts,
    TakerHook,
    level_size_table,
    rate_decimal,
    trade_size_table,
)


class SimMarket(ExchangeHooks, Emission):
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
        self._price_cache = MULTIPLES.setdefault(str(p.tick_size), {})  # ticks -> Decimal price
        self._size_cache = MULTIPLES.setdefault(str(p.step_size), {})  # steps -> Decimal size
        self._gone_cache = REMOVALS.setdefault(str(p.tick_size), {})  # ticks -> BookLevel(price, 0)
        self._oracle = self._price_of(self._ticks(math.exp(self._oracle_log)))
        self._consts: dict[int, StepConsts] = {}  # step length (ns) -> its constants
        self._ticker = p.ticker
        self._depth, self._spacing = p.depth_levels, p.level_spacing_ticks
        self._spread = p.spread_ticks
        self._spread_high = p.spread_ticks * p.high_vol_spread_multiplier
        self._jump_size = p.jump_size
        self._oracle_noise = p.oracle_noise_bps / 10_000
        self._funding_mean, self._funding_cap = p.funding_mean_1h, p.funding_clamp_1h
        self._initial_height, self._block_ns = p.initial_height, p.block_interval_ns
        self._trade_sizes = trade_size_table(float(p.mean_trade_size / p.step_size), self._min_steps)
        self._level_sizes: tuple[int, ...] = ()  # the regime's level_size_table
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
            return rate_decimal(self._hour_weight / self._hour_ns)
        return rate_decimal(self._clamped_premium())

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

    def _make_consts(self, dt_ns: int) -> StepConsts:
        if len(self._consts) >= 256:
            self._consts.clear()
        consts = self._consts[dt_ns] = StepConsts(self.params, self._sigma_sec, dt_ns)
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

    def _count(self, poisson: PoissonCount) -> int:
        """Draw a capped Poisson count: one uniform into the CDF (or a normal for large means)."""
        cdf = poisson.cdf
        if cdf:
            return bisect.bisect_right(cdf, self._random())
        if poisson.mean <= 0:
            return 0
        return min(poisson.cap, max(0, round(poisson.mean + self._normal() * poisson.root)))

    def _advance(self, c: StepConsts, now_ns: int) -> None:
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
        self._settled = (hour * NS_PER_HOUR, rate_decimal(self._hour_weight / self._hour_ns))
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
        self._level_sizes = level_size_table(mean, p.level_size_growth, p.depth_levels,
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
                book[idx] = dirty[idx] = sizes[d << SIZE_BITS | bits(SIZE_BITS)]

    def _refresh_levels(self, redraws: PoissonCount) -> None:
        """Redraw the size of a Poisson number of random levels (a level taken away stays away)."""
        cdf = redraws.cdf
        count = _bisect(cdf, self._random()) if cdf else self._count(redraws)
        if not count:
            return
        bits, n, sp, sizes = self._bits, self._depth, self._spacing, self._level_sizes
        bids, asks, dirty_bids, dirty_asks = self._bids, self._asks, self._dirty_bids, self._dirty_asks
        best_bid, best_ask = self._best_bid, self._best_ask
        for _ in range(count):
            r = bits(REDRAW_BITS)
            level = (r & LEVEL_MASK) * n >> LEVEL_BITS
            if r >> LEVEL_BITS & 1:
                idx = best_bid - level * sp
                if idx in bids:
                    bids[idx] = dirty_bids[idx] = sizes[level << SIZE_BITS | r >> (LEVEL_BITS + 1)]
            else:
                idx = best_ask + level * sp
                if idx in asks:
                    asks[idx] = dirty_asks[idx] = sizes[level << SIZE_BITS | r >> (LEVEL_BITS + 1)]

    def _take(self, takers: PoissonCount, now_ns: int, events: list[MarketEvent]) -> None:
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
        idx: int | None
        for _ in range(count):
            r = bits(TRADE_BITS + 1)
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


_TWOPI = 2.0 * math.pi  # as random.TWOPI
_bisect = bisect.bisect_right
_sqrt, _log, _exp, _sin, _cos = math.sqrt, math.log, math.exp, math.sin, math.cos
_BUY, _SELL = Side.BUY, Side.SELL
