"""The backtest runner: the daemon's engine, order managers, paper fills and store, in simulated time.

Wiring is `bot/app.py`'s for the in-process simulator (perp paper venue on the engine's books,
spot paper venue for the carry hedge, events to the engine first and then to the venue), minus
every socket and the wall clock. The loop replays source batches in time order; before each batch
it fires the timers that fell due, in order of time:

- the engine's `tick()` (TWAP children, hedges) every `TICK_SECS` while any order is worked or a
  hedge is not quiet (`quiet_hedges`); otherwise the idle ticks between two batches are folded
  into one whose hedge clock is the last skipped tick's (exact: `skip_idle=False` runs every tick
  and gives the same run), so a decision's first child goes out on the same 100 ms grid as in the daemon;
- the watchdog under stress scenarios (`stress_watchdog`): the daemon's pure mode machine on
  observations derived from the scenarios, while anything is abnormal;
- the sampler (`sampler`): equity, positions, PnL attribution, exposure, flags and risk mode
  every `sample_secs`, and the settled funding rate at each top of the hour (for the baselines).

After every batch with an open leg, `liquidation.IntrabarRisk` tracks drawdown on that mark and
liquidates at maintenance margin. `summary.build` turns the finished run into the result.

Candle sources mark their bar starts (`hooks["bar_starts"]`): there the bar's books are applied
first and the rest goes to the engine (decisions at bar and audit times); points within a bar
only move the books, the oracle marks and the paper venue (`_between`). Scenario runs send every
point to the engine.

Logging below WARNING is switched off for the run (the engine logs every decision and order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from bot.book import OrderBook
from bot.clock import NS_PER_SEC
from bot.config import Settings
from bot.domain import (
    ZERO,
    AccountEvent,
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    OracleUpdate,
    Trade,
)
from bot.engine import TICK_SECS, Engine
from bot.execution.orders import OrderManager
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.registry import paper_venues

from .clock import SimClock
from .liquidation import IntrabarRisk
from .participation import CappedVenue
from .quiet_hedges import QuietHedges
from .sampler import Sampler
from .scenario_venue import ScenarioVenue
from .scenarios import Scenario, StressModel, place
from .sources import Ladder, Source
from .stress_watchdog import StressWatchdog
from .summary import BacktestResult
from .summary import build as build_result

TICK_NS = int(TICK_SECS * NS_PER_SEC)
PROGRESS_EVERY = 1 << 15  # events between progress-bar refreshes


def auto_sample_secs(span_ns: int) -> int:
    """Equity sample interval: 1 min up to 2 days, 5 min up to 2 weeks, else 1 h (divides an hour)."""
    days = span_ns / (86_400 * NS_PER_SEC)
    return 60 if days <= 2 else 300 if days <= 14 else 3600


@contextlib.contextmanager
def quiet_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Drop engine log lines below `level` for the run and restore the logging config after."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level),
                        cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**saved)


@dataclass
class Backtest:
    """One run of the live engine over a source, optionally under stress scenarios."""

    settings: Settings
    source: Source
    scenarios: list[Scenario] = field(default_factory=list)
    sample_secs: int | None = None
    progress: Callable[[int, int], None] | None = None  # (events so far, simulated ns done)
    log_level: int = logging.ERROR
    skip_idle: bool = True  # fold idle engine ticks (exact: tests/unit/test_backtest_runner.py)
    skip_extremes: bool = True  # bar path: take an idle bar's extremes unapplied (`_extreme`; exact)
    ladders: bool = True  # candles: books as `sources.Ladder` (the same books, no level objects; exact)
    fold_worked: bool = True  # fold the ticks that repeat a no-op while orders are worked (`_fold_worked`)

    def run(self) -> BacktestResult:
        return asyncio.run(self.run_async())

    async def run_async(self) -> BacktestResult:
        with quiet_logs(self.log_level):
            return await self._run()

    # ---- wiring ---------------------------------------------------------------------------------

    def _wire(self) -> None:
        src = self.source
        s = self.settings = self.settings.model_copy(update={"markets": tuple(src.specs)})
        self.clock = clock = SimClock(src.start_ns)
        self.store = store = Store.open(Path(":memory:"))
        metrics = Metrics()
        books = {t: OrderBook(t) for t in src.specs}
        spot_books = {t: OrderBook(t) for t in src.spot_specs}
        self.paper, self.spot_paper = paper_venues(s, books, spot_books, clock)
        windows = place(self.scenarios, src.start_ns, src.end_ns) if self.scenarios else []
        self.stress = StressModel(windows, src.specs, src.spot_specs, src.spot_of,
                                  s.sim.block_interval_secs) if windows else None
        perp_exec: Any = self.paper
        spot_exec: Any = self.spot_paper
        self.wrapped: list[ScenarioVenue] = []
        if self.stress is not None:
            perp_exec = ScenarioVenue(self.paper, self.stress, "perp", clock)
            spot_exec = ScenarioVenue(self.spot_paper, self.stress, "spot", clock)
            self.wrapped = [perp_exec, spot_exec]
        self.capped: CappedVenue | None = None
        if "bars" in src.hooks:  # candles: taker fills within a share of each bar's volume
            perp_exec = self.capped = CappedVenue(perp_exec, src.hooks["bars"], src.specs, clock)
        orders = OrderManager(perp_exec, store, metrics, clock, s.execution)
        spot_orders = OrderManager(spot_exec, store, metrics, clock, s.execution)
        self.engine = Engine(s, src.specs, store, orders, metrics, clock, books,
                             spot_orders=spot_orders if src.spot_specs else None,
                             spot_specs=src.spot_specs, spot_books=spot_books)
        for history in src.hooks.get("warmup", ()):  # the files' rows before the start (warmup.py)
            self.engine.seed_history(history)
        self.engine.portfolio.batch_funding()  # flushed after the loop (`_run`)
        # A spot venue whose positions are balances has the hedge read them on a clock of its own
        # (hedge_control's balance check), which `_fold_worked` does not know: no folding then.
        self._foldable = not spot_exec.capabilities.positions_are_balances
        perp_exec.set_account_sink(self._on_perp_account)
        spot_exec.set_account_sink(self._on_spot_account)
        self._managers = self.engine.order_managers
        # The engine's spot hedge books by spot ticker (what `on_spot_event` applies a snapshot to).
        self._spot_books = {st.spot.ticker: st.spot.book for st in self.engine.markets.values()
                            if st.spot is not None}
        # Every leg's Position (updated in place by fills): an idle tick checks them for exposure.
        states = list(self.engine.markets.values())
        self._legs = [st.position for st in states] + [st.spot.position for st in states if st.spot]
        self._equity = ZERO  # the engine's equity when last computed (valid while not `_equity_stale`)
        self._equity_stale = True  # an account event arrived since equity was last computed (or a
        # batch moved the marks of an open leg and `_intrabar` has not computed it yet)
        self._last_tick_busy = True
        self.quiet_hedges = QuietHedges(self.engine, s.execution)  # folded ticks' view of them (`_idle_tick`)
        self._folded_ticks = 0  # worked ticks folded by `_fold_worked`
        self.bus = self.engine.events.subscribe(maxsize=0)
        # True while orders are worked or a hedge needs a tick: the candle path then densifies.
        src.hooks["busy"] = lambda: self._busy() or not self.quiet_hedges.quiet()
        src.hooks["exposed"] = self._exposed
        # Under scenarios every point reaches the rules: the bar path visits no more of them flat.
        src.hooks["flat_closes"] = self.stress is None
        src.hooks["extreme"] = self._extreme
        # Synthetic books as price lists, applied straight to the books (`Ladder`), unless a
        # scenario rewrites books on the way (it takes domain snapshots).
        src.hooks["ladders"] = self.stress is None and self.ladders
        self._extreme_events = 0  # events of the extremes taken by `_extreme` (counted as replayed)
        self.books = books
        self.watchdog = StressWatchdog(self.stress, self.engine, s)
        self.timeline: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []  # `sampler`'s rows once the loop is done
        self.funding_rows: list[dict[str, Any]] = []  # and its settled-funding rows
        self.liquidations = 0
        self.risk = IntrabarRisk(s.paper.initial_equity_usd)
        self.fill_causes: dict[str, int | str] = {}
        self.run_secs = 0.0

    def _on_perp_account(self, event: AccountEvent) -> None:
        self._equity_stale = True
        if event.__class__ is Fill:
            self._note_cause(self.engine.orders, event)  # type: ignore[arg-type]
        self.engine.on_account_event(event)

    def _on_spot_account(self, event: AccountEvent) -> None:
        self._equity_stale = True
        if event.__class__ is Fill and len(self._managers) > 1:
            self._note_cause(self._managers[1], event)  # type: ignore[arg-type]
        self.engine.on_spot_account_event(event)

    def _note_cause(self, manager: OrderManager, fill: Fill) -> None:
        """The decision whose parent sent this fill's order (for the trade list)."""
        entry = manager._child_parent.get(fill.client_id)
        if entry is not None:
            self.fill_causes[fill.fill_id] = entry[0].decision_id

    # ---- the loop -------------------------------------------------------------------------------

    async def _run(self) -> BacktestResult:
        self._wire()
        started = time.perf_counter()  # the engine loop: wiring and file loading are not counted
        cpu_started = time.process_time()
        src, engine, stress = self.source, self.engine, self.stress
        clock = self.clock
        sample_secs = self.sample_secs or auto_sample_secs(src.end_ns - src.start_ns)
        self._sample_ns = sample_ns = int(sample_secs * NS_PER_SEC)
        self._next_tick = src.start_ns
        self._next_sample = -(-src.start_ns // sample_ns) * sample_ns
        self.sampler = Sampler(engine, self.bus, self.timeline, sample_ns,
                               self.settings.rules.funding_horizon_hours)
        self._next_wd = src.start_ns
        on_perp, on_spot = engine.on_market_event, engine.on_spot_event
        paper_on, spot_on = self.paper.on_market_event, self.spot_paper.on_market_event
        # Live views: while no paper order rests, only oracle updates (funding) matter to a venue.
        perp_resting, spot_resting = self.paper.resting, self.spot_paper.resting
        delta, snapshot, trade, oracle, ladder = BookDelta, BookSnapshot, Trade, OracleUpdate, Ladder
        spot_paper = self.spot_paper
        progress = self.progress
        legs = self._legs
        spot_books = self._spot_books
        # Candles: the rules see each bar's first point (decisions at bar and audit times); the
        # points within a bar move the books, the marks and the venue only (`_between`). Under
        # stress scenarios every point reaches the rules: a drought or a halt starts mid-bar.
        bar_starts = src.hooks.get("bar_starts") if stress is None else None
        count = next_progress = 0
        for ts, perp, spot in src.batches:
            if stress is not None:
                # Timers before this batch see the scenario state as it was before it.
                if ts > self._next_tick or ts > self._next_sample or ts > self._next_wd:
                    await self._timers(ts - 1)
                perp, spot = stress.apply(ts, perp, spot)
            if ts >= self._next_tick or ts >= self._next_sample or ts >= self._next_wd:
                if (ts < self._next_sample and ts < self._next_wd and not self._last_tick_busy
                        and self.skip_idle and not self._busy() and self.quiet_hedges.quiet()):
                    # Only idle ticks are due: what _timers would do, without the coroutine.
                    clock.set(self._next_tick)
                    self._idle_tick(ts)
                    self._next_tick = max(self._next_tick + TICK_NS, (ts // TICK_NS + 1) * TICK_NS)
                else:
                    await self._timers(ts)
            if ts > clock.now:
                clock.now = ts
            count += len(perp) + len(spot)
            if bar_starts is not None:
                if ts not in bar_starts:
                    self._between(perp)
                    perp = ()  # type: ignore[assignment]
                else:  # the bar's books first, so its evaluation (on the oracle) sees books and price
                    perp, spot = self._books_first(perp, spot), ()  # type: ignore[assignment]
            for ev in perp:
                on_perp(ev)
                if perp_resting or ev.__class__ is oracle:
                    paper_on(ev)
            for ev in spot:
                kind = ev.__class__
                if kind is ladder:  # a candle source's spot twin: what a snapshot of it does
                    book = spot_books.get(ev.market)  # type: ignore[union-attr]
                    if book is not None:
                        ev.apply(book)  # type: ignore[union-attr]
                    if spot_resting:
                        spot_paper.on_book_changed(ev.market, ev.ts_recv)  # type: ignore[union-attr]
                elif kind is snapshot and ev.market in spot_books:  # type: ignore[union-attr]
                    spot_books[ev.market].apply_snapshot(ev)  # type: ignore[union-attr,arg-type]  # as on_spot
                    if spot_resting:
                        spot_on(ev)
                elif kind is delta or kind is snapshot:
                    on_spot(ev)
                    if spot_resting:
                        spot_on(ev)
                elif kind is trade and spot_resting:  # the engine keeps no spot trades
                    spot_on(ev)
                # spot has no oracle, no funding and no chain: other kinds go nowhere
            for leg in legs:
                if leg.size:
                    fills = self._intrabar(ts)
                    if fills:
                        await self._liquidate(fills)
                    break
            if progress is not None and count >= next_progress:
                next_progress = count + PROGRESS_EVERY
                progress(count, ts - src.start_ns)
        count += self._extreme_events
        end = max(src.end_ns, clock.now)
        await self._timers(end)
        self.quiet_hedges.set_clocks()
        engine.portfolio.flush_funding(self.store)
        if progress is not None:
            progress(count, end - src.start_ns)
        self.run_secs = time.perf_counter() - started
        self.run_cpu_secs = time.process_time() - cpu_started  # the benchmark's figure on a busy machine
        return self._result(count, sample_secs)

    def _between(self, perp: list[Any]) -> None:
        """A point within a bar: books and oracle marks move, the venue sees it, the rules do not."""
        markets, paper_on, resting = self.engine.markets, self.paper.on_market_event, self.paper.resting
        for ev in perp:
            kind = ev.__class__
            if kind is OracleUpdate:
                markets[ev.market].oracle_price = ev.oracle_price
                paper_on(ev)
                continue
            if kind is Ladder:
                ev.apply(self.books[ev.market])
                if resting:
                    self.paper.on_book_changed(ev.market, ev.ts_recv)
                continue
            if kind is BookSnapshot:
                self.books[ev.market].apply_snapshot(ev)
            elif kind is BlockHeight:
                self.engine.block_height = ev.height
                continue
            if resting:
                paper_on(ev)

    def _books_first(self, perp: list[Any], spot: list[Any]) -> list[Any]:
        """Apply the bar start's book snapshots (perp and spot); return the other perp events."""
        for ev in spot:
            kind = ev.__class__
            if kind is Ladder:
                book = self._spot_books.get(ev.market)
                if book is not None:
                    ev.apply(book)
                if self.spot_paper.resting:
                    self.spot_paper.on_book_changed(ev.market, ev.ts_recv)
            elif kind is BookSnapshot:
                self.engine.on_spot_event(ev)
                if self.spot_paper.resting:
                    self.spot_paper.on_market_event(ev)
        rest = []
        for ev in perp:
            kind = ev.__class__
            if kind is Ladder:
                ev.apply(self.books[ev.market])
                if self.paper.resting:
                    self.paper.on_book_changed(ev.market, ev.ts_recv)
            elif kind is BookSnapshot:
                self.books[ev.market].apply_snapshot(ev)
                if self.paper.resting:
                    self.paper.on_market_event(ev)
            else:
                rest.append(ev)
        return rest

    def _extreme(self, ts: int, close_ts: int, prices: list[Any]) -> bool:
        """A bar path's extreme between the bar start and its close while a leg is open and nothing
        is worked: its drawdown is taken at its marks without applying them, and True says the
        source need not send it. The close (applied) overwrites every mark it would have set before
        anything reads one, so the run is the same (`Backtest(skip_extremes=False)` applies
        them; tests/unit/test_backtest_runner.py compares). False (send it) when anything could
        read those marks or the time before the close: a sample or the watchdog due by then, a
        resting order, an order or hedge worked, a hedge not matched, an account event not yet in
        the equity, or a margin breach there (the liquidation happens on the applied marks)."""
        if (not self.skip_extremes or self.stress is not None or self._equity_stale
                or self._last_tick_busy or not self.skip_idle or self._next_sample <= close_ts
                or self._next_wd <= close_ts or self.paper.resting or self.spot_paper.resting
                or self._busy() or not self.quiet_hedges.matched()):
            return False
        marks = {t: oracle for t, oracle, _, _ in prices}
        mids = {t: (bid + ask) / 2 for t, _, bid, ask in prices if bid is not None and ask is not None}
        if not self.risk.observe_at(self.engine, marks, mids):
            return False
        engine = self.engine
        if self.risk.last_equity > engine.peak_equity:  # as `_intrabar` takes it
            engine.peak_equity = self.risk.last_equity
        self._extreme_events += len(marks) + len(mids)
        return True

    def _exposed(self) -> bool:
        for leg in self._legs:
            if leg.size:
                return True
        return False

    def _intrabar(self, ts: int) -> list[Fill]:
        """Drawdown at this mark; the liquidation fills when equity is below maintenance margin
        (`_liquidate` sends them: liquidation.py)."""
        fills = self.risk.observe(self.engine, ts)
        if not fills:
            # Equity at these marks is known: the peak takes it now and the idle ticks before the
            # next batch (same marks, no account event) need not compute it again.
            equity = self._equity = self.risk.last_equity
            if equity > self.engine.peak_equity:
                self.engine.peak_equity = equity
            self._equity_stale = False
        return fills

    async def _liquidate(self, fills: list[Fill]) -> None:
        self.timeline.append(self.risk.events[-1])
        self.liquidations += 1
        await self.engine.orders.cancel_all()
        for fill in fills:
            self.paper._emit(fill)  # the venue's own liquidation fill: positions, store and PnL see it

    async def _timers(self, until: int) -> None:
        while True:
            t = min(self._next_tick, self._next_sample, self._next_wd)
            if t > until:
                return
            self.clock.set(t)
            if t == self._next_wd:
                self._next_wd = await self.watchdog.step(t)  # type: ignore[assignment]  # inf: never
            if t == self._next_tick:
                for venue in self.wrapped:
                    if venue.delayed:
                        await venue.release(t)
                busy = self._busy() or not self.quiet_hedges.quiet()
                before = None
                if busy or self._last_tick_busy or not self.skip_idle:
                    self.quiet_hedges.set_clocks()
                    if self.fold_worked and self.skip_idle and self.stress is None:
                        before = self._worked_state()
                    await self.engine.tick()
                    self._last_tick_busy = busy
                    busy = self._busy() or not self.quiet_hedges.quiet() or not self.skip_idle
                else:  # idle: sends nothing and leaves quiet hedges quiet (`QuietHedges`): not busy after
                    self._idle_tick(until)
                    self._last_tick_busy = False
                if not busy:
                    self._next_tick = max(t + TICK_NS, (until // TICK_NS + 1) * TICK_NS)
                elif before is None or not self._fold_worked(t, until, before):
                    self._next_tick = t + TICK_NS
            if t == self._next_sample:
                # The equity `_intrabar` or an idle tick computed, while no account event came since.
                equity = self.engine.equity() if self._equity_stale else self._equity
                self.risk.mark_equity(equity)
                self.sampler.sample(t, equity)
                self._next_sample = t + self._sample_ns

    def _worked_state(self) -> tuple[Any, ...]:
        """All a tick can change but the hedges' clocks (and the gauges and the peak, which the
        next tick on the same marks and fills leaves as they are): compared around a full tick."""
        engine = self.engine
        control = engine.hedge_control
        out: list[Any] = [len(engine._pulled), len(engine.decider.settlement_hold), tuple(control.held_perp),
                          len(control._children_seen)]
        out += [replace(h, last_ns=None) for h in engine.hedges.values()]
        for m in self._managers:
            out += [m._bucket, m.throttled, len(m._orphans), len(m._states), len(m._child_parent)]
            for market, parent in m.parents.items():
                out += [market, id(parent), parent.filled, parent.arrival_price, parent.waiting_since_ns]
                out += [(c.client_id, c.is_open, c.is_cancel_pending, c.filled)
                        for c in parent.children.values()]
        return tuple(out)

    def _fold_worked(self, t: int, until: int, before: tuple[Any, ...]) -> bool:
        """After a full tick at `t` that changed nothing (`before` is what it found), fold the ticks
        up to the next batch (`until`) that would do the same: the books, orders, fills, marks and
        hedges they see are this tick's (no batch before `until`), and they differ from it only in
        the time, which the order managers compare against the thresholds `next_wake_ns` gives.
        Stops before the first tick at or past one of those, a sample or the watchdog; the
        hedges must be quiet (a tick then moves only their clocks: `QuietHedges.fold`).
        `Backtest(fold_worked=False)` runs every tick; tests/unit/test_backtest_runner.py
        compares. Returns True when it folded (and set `_next_tick`)."""
        if not self._foldable or not self.quiet_hedges.quiet() or self._worked_state() != before:
            return False
        # A sample due at `t` runs after this tick: the next one bounds the fold.
        sample = self._next_sample if self._next_sample > t else self._next_sample + self._sample_ns
        bound = min(until + 1, sample, self._next_wd)
        for manager in self._managers:
            if manager._orphans:
                return False
            wake = manager.next_wake_ns(t)
            if wake is not None and wake < bound:
                bound = wake
        last = t + (bound - 1 - t) // TICK_NS * TICK_NS  # the last grid point before `bound`
        if last <= t:
            return False
        self.quiet_hedges.fold(last)
        self._next_tick = last + TICK_NS
        self._folded_ticks += (last - t) // TICK_NS
        return True

    def _busy(self) -> bool:
        """Orders to work: a running parent on any venue, or a scenario-delayed order."""
        for manager in self._managers:
            if manager.parents or manager._orphans:
                return True
        for venue in self.wrapped:
            if venue.delayed:
                return True
        return False

    def _idle_tick(self, until: int) -> None:
        """What the `Engine.tick()`s up to `until` change when no order is being worked.

        The order managers have nothing to send (no parent, no orphan; the tick after the last
        parent finished is a full one) and the gauges are not read in a backtest. Quiet hedges
        (`QuietHedges.quiet`) are observed at the last skipped tick, so their leg-risk clock is where
        the daemon's would be when the next order fills. Flat on every leg, equity moves only with
        an account event: with none since it was last computed, the computation is skipped and the
        peak stays exact. With exposure, `_intrabar` computed it at the marks of the last batch
        (and took the peak), so the same holds until an account event.
        """
        engine = self.engine
        if engine.hedges:
            self.quiet_hedges.fold(max(self.clock.now, until // TICK_NS * TICK_NS))
        if not self._equity_stale:
            return
        self._equity_stale = False
        equity = self._equity = engine.equity()
        if equity > engine.peak_equity:
            engine.peak_equity = equity

    # ---- results --------------------------------------------------------------------------------

    def _result(self, events: int, sample_secs: int) -> BacktestResult:
        sampler = self.sampler
        self.samples += sampler.rows()
        self.funding_rows, self.mode_secs = sampler.funding_rows(), sampler.mode_secs
        sampler.drain_modes()
        return build_result(self, events, sample_secs, self.run_secs)


def run_backtest(settings: Settings, source: Source, scenarios: list[Scenario] | None = None, *,
                 sample_secs: int | None = None) -> dict[str, Any]:
    """One backtest of `settings` over a fresh `source` (e.g. `CandleData.source(settings, start,
    end)`); returns the summary dict (what summary.json holds). The entry point for research
    tools: same engine, rules and sleeves as the daemon."""
    return Backtest(settings, source, scenarios or [], sample_secs=sample_secs).run().summary
