"""Benchmark the rule engine on a replayed simulated stream; prints figures, one per line.

    .venv/bin/python tests/bench/bench_rules.py [--minutes 30]

What is measured, per market event of a recorded BTC-USD stream (book deltas, trades, oracle):
- book_only_us_per_event: applying the event to an order book, which any consumer pays;
- state_update_us_per_event: Engine.on_market_event with evaluation switched off (book +
  estimators + counters);
- engine_us_per_event: Engine.on_market_event as the daemon runs it (evaluation throttled to
  one per `rules.eval_interval_secs` per market);
- rule_engine_us_per_event: engine minus book-only, i.e. what the rule engine adds per event;
- evaluate_us: one evaluation as throttled in the daemon (flags + gate; sleeves and limits are
  refreshed at most once a second, so most evaluations reuse them);
- evaluate_with_targets_us: one evaluation that also recomputes sleeves and hard limits;
- decide_us: one decision (TWAP plans for both legs, store write of the decision record);
- decisions_per_sec: full evaluations per second on one core (1 / evaluate_with_targets_us);
- bar_evaluate_us: CPU time of one evaluation (`Decider.evaluate`: sleeves, limits, flags, gate)
  at the bar starts of issue #19's bar-path backtest (tests/bench/bench_bars.py's 4,632 hourly
  BTCUSDT bars, default config; the best of --bar-rounds runs), where price, funding trend and
  sizing vol move at every bar, so every evaluation recomputes everything. Skipped when
  ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from bot.book import OrderBook
from bot.config import RuleSettings, load
from bot.domain import BookDelta, BookSnapshot, MarketEvent
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.rules.gate import GateState
from bot.sim.market import SimMarket
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.sim.feed import default_params

SEC = 1_000_000_000
DEFAULT_EVAL_SECS = RuleSettings().eval_interval_secs  # what the daemon runs with
START = 1_700_000_000 * SEC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support
from support.clock import ManualClock  # noqa: E402


def record_stream(minutes: int) -> tuple[list[MarketEvent], list[MarketEvent], SimMarket, SimMarket]:
    params = default_params("BTC-USD", 0.65)
    perp = SimMarket(params, 3, START)
    spot = SimMarket(replace(params, ticker="BTC-USDT"), 3, START)
    events: list[MarketEvent] = []
    spot_events: list[MarketEvent] = []
    for i in range(1, minutes * 600 + 1):  # 100 ms steps, as the daemon's feed
        now = START + i * SEC // 10
        events.extend(e for e in perp.step(now) if getattr(e, "market", None))
        spot_events.extend(e for e in spot.step(now) if isinstance(e, BookDelta | BookSnapshot))
    return events, spot_events, perp, spot


def build(tmp: Path, perp: SimMarket, spot: SimMarket, eval_interval_secs: float) -> Engine:
    settings = load(None, env_file=None, state_dir=str(tmp), markets=["BTC-USD"],
                    strategy={"targets": {"BTC-USD": "0.05"}},
                    rules={"eval_interval_secs": eval_interval_secs, "audit_on_start": False})
    clock = ManualClock(START)
    store = Store.open(tmp / f"bench-{eval_interval_secs}.sqlite")
    books = {"BTC-USD": OrderBook("BTC-USD")}
    spot_books = {"BTC-USDT": OrderBook("BTC-USDT")}
    venue = PaperVenue(books, FeeSchedule(), clock)
    spot_venue = PaperVenue(spot_books, FeeSchedule(), clock)
    spot_venue.name = "paper_spot"
    metrics = Metrics()
    return Engine(settings, {"BTC-USD": perp.spec()}, store,
                  OrderManager(venue, store, metrics, clock, settings.execution), metrics, clock, books,
                  spot_orders=OrderManager(spot_venue, store, metrics, clock, settings.execution),
                  spot_specs={"BTC-USDT": spot.spec()}, spot_books=spot_books)


def book_only(events: list[MarketEvent]) -> float:
    book = OrderBook("BTC-USD")
    t0 = time.perf_counter()
    for e in events:
        if isinstance(e, BookDelta):
            book.apply_delta(e)
        elif isinstance(e, BookSnapshot):
            book.apply_snapshot(e)
    return time.perf_counter() - t0


def replay(engine: Engine, events: list[MarketEvent], spot_events: list[MarketEvent]) -> float:
    for e in spot_events:
        engine.on_spot_event(e)
    on_event = engine.on_market_event
    t0 = time.perf_counter()
    for e in events:
        on_event(e)
    return time.perf_counter() - t0


def bar_evaluations(bars: int, rounds: int) -> tuple[float, int] | None:
    """(CPU seconds per `Decider.evaluate`, evaluations) over the bench_bars span; None: no data."""
    from bench_bars import CANDLES, FUNDING  # the same files and span as the bar benchmark

    from bot.backtest import sources
    from bot.backtest.runner import Backtest
    from bot.decider import Decider

    if not CANDLES.is_file() or not FUNDING.is_file():
        return None
    settings = load(None, env_file=None)
    everything = sources.load_candles(CANDLES)
    end_ns = everything[min(bars, len(everything)) - 1].ts_ns + 1
    data = sources.load_candle_data([str(CANDLES)], [str(FUNDING)], end_ns=end_ns, funding_offset_hours=-3)
    inner = Decider.evaluate
    spent = [0.0, 0]

    def timed(self: Decider, *args: Any) -> None:
        t0 = time.thread_time()
        inner(self, *args)
        spent[0] += time.thread_time() - t0
        spent[1] += 1

    best: tuple[float, int] | None = None
    Decider.evaluate = timed  # type: ignore[method-assign]
    try:
        for _ in range(rounds):
            spent[:] = [0.0, 0]
            Backtest(settings, data.source(settings, steps_per_bar=sources.BAR_PATH_STEPS)).run()
            if spent[1] and (best is None or spent[0] / spent[1] < best[0]):
                best = (spent[0] / spent[1], spent[1])
    finally:
        Decider.evaluate = inner  # type: ignore[method-assign]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=30, help="length of the replayed stream")
    parser.add_argument("--evaluations", type=int, default=20_000)
    parser.add_argument("--bars", type=int, default=4632, help="bars of the bar-path span (bar_evaluate_us)")
    parser.add_argument("--bar-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    events, spot_events, perp, spot = record_stream(args.minutes)
    n = len(events)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        base = min(book_only(events) for _ in range(3))
        upd = min(replay(build(tmp / f"u{i}", perp, spot, 1e9), events, spot_events) for i in range(3))
        full_engines = [build(tmp / f"f{i}", perp, spot, DEFAULT_EVAL_SECS) for i in range(3)]
        full = min(replay(e, events, spot_events) for e in full_engines)
        engine = full_engines[0]
        state = engine.markets["BTC-USD"]
        now = state.last_event_ns
        far = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, now)
        t0 = time.perf_counter()
        for i in range(args.evaluations):  # flags + gate; targets refreshed once a second
            state.gate = far
            engine.evaluate(state, now + i)
        eval_secs = (time.perf_counter() - t0) / args.evaluations
        t0 = time.perf_counter()
        for i in range(args.evaluations):  # the same with sleeves + limits recomputed every time
            state.gate = far
            state.last_target_ns = 0
            engine.evaluate(state, now + i)
        eval_full_secs = (time.perf_counter() - t0) / args.evaluations
        assert state.flags is not None and state.sizing is not None
        inputs_state = state
        decide_n = 2000
        engine.evaluate(inputs_state, now)
        from bot.rules.flags import FlagInputs

        dummy = FlagInputs("BTC-USD", Decimal(0), state.mark or Decimal(1), Decimal(0), Decimal(0),
                           Decimal(0), None, None, None, None)
        t0 = time.perf_counter()
        for i in range(decide_n):
            engine.decide(state, "flags", dummy, now + i)
        decide_secs = (time.perf_counter() - t0) / decide_n
    book_us = base / n * 1e6
    print(f"events: {n} ({args.minutes} simulated minutes of BTC-USD, 100 ms steps)")
    print(f"book_only_us_per_event: {book_us:.2f}")
    print(f"state_update_us_per_event: {upd / n * 1e6:.2f}")
    print(f"engine_us_per_event: {full / n * 1e6:.2f}")
    print(f"rule_engine_us_per_event: {(full - base) / n * 1e6:.2f}")
    print(f"evaluate_us: {eval_secs * 1e6:.1f}")
    print(f"evaluate_with_targets_us: {eval_full_secs * 1e6:.1f}")
    print(f"decide_us: {decide_secs * 1e6:.1f}")
    print(f"decisions_per_sec: {1 / eval_full_secs:.0f}")
    bar = bar_evaluations(args.bars, args.bar_rounds) if args.bar_rounds > 0 else None
    if bar is not None:
        print(f"bar_evaluate_us: {bar[0] * 1e6:.1f} ({bar[1]} evaluations, CPU time, "
              f"best of {args.bar_rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
