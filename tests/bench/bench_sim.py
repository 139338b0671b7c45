"""Benchmark: in-process simulated events per second (market model + matching, no sockets).

Two markets (BTC-USD and ETH-USD: bot.venues.sim.feed.default_params, 20 levels per side, 0.65 s
blocks), stepped by 100 ms of simulated time per call (--step-ms), in two workloads:

  active   an active perp: 40 taker trades/s and 100 level redraws/s per market
           (--trades-per-sec / --level-updates-per-sec; the simulator defaults are 2 and 20)
  default  the simulator's default parameters

and two ways:

  exchange SimExchange.advance, with one account keeping 2 bids and 2 asks per market 1 and 3
           ticks behind the touch (short-term orders good for 20 blocks, re-quoted every 5
           simulated seconds; the taker flow and the moving book fill them). The quoting (book(),
           place_order) runs inside the timed loop.
  market   SimMarket.step alone (what the paper feed bot/venues/sim/feed.py calls): its events.

What counts as an event (EVENT_DEFINITION, printed with the results): one item advance() (or
step()) returns. That is every market event emitted (book snapshot, book delta, trade, oracle
update, block height) plus, for matching, one AccountUpdate per subaccount whose orders, fills
or positions changed in the call. A book delta counts once however many levels it carries.

Throughput is events per CPU second of this single-threaded process, i.e. on one core (the machine
may be shared: CPU time is what a quiet core would take; the wall-clock rate is printed alongside).
Each figure is the best of --rounds runs of --secs each; the median and every round are printed
too. The simulator's Decimal caches live as long as the process, so round 1 starts cold.

    .venv/bin/python tests/bench/bench_sim.py [--secs 2] [--rounds 3] [--workload both] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal

from bot.domain import Side
from bot.sim.exchange import SimExchange
from bot.sim.market import SimMarket, SimMarketParams
from bot.sim.perp.records import ORDER_FLAGS_SHORT_TERM, ChainError, OrderId, OrderRequest, TimeInForce
from bot.venues.sim.feed import default_params

START_NS = 1_700_000_000 * 1_000_000_000
OWNER = "dydx1bench"
TICKERS = ("BTC-USD", "ETH-USD")
REQUOTE_NS = 5_000_000_000
EVENT_DEFINITION = ("one item returned by SimExchange.advance / SimMarket.step: book snapshot, book delta, "
                    "trade, oracle update, block height, and one AccountUpdate per changed subaccount")


def workload_params(name: str, trades_per_sec: float, level_updates_per_sec: float) -> list[SimMarketParams]:
    params = [default_params(t, 0.65) for t in TICKERS]
    if name == "active":
        params = [replace(p, taker_trades_per_sec=trades_per_sec, level_updates_per_sec=level_updates_per_sec)
                  for p in params]
    return params


def describe(params: list[SimMarketParams], step_ns: int) -> str:
    p = params[0]
    return (f"{len(params)} markets ({', '.join(q.ticker for q in params)}), {p.depth_levels} levels/side, "
            f"step {step_ns / 1e6:g} ms, {p.taker_trades_per_sec:g} taker trades/s and "
            f"{p.level_updates_per_sec:g} level redraws/s per market, blocks {p.block_interval_ns / 1e9:g} s")


class Quoter:
    """Keep two bids and two asks per market a few ticks behind the touch (fresh short-term orders)."""

    def __init__(self, ex: SimExchange) -> None:
        self.ex = ex
        info = ex.markets()  # static per market: fetched once, as a client would
        self.grid = {t: (info[t].tick_size, info[t].step_size * 10) for t in TICKERS}
        self.client_id = 0

    def requote(self, now_ns: int) -> None:
        ex = self.ex
        for clob, ticker in enumerate(TICKERS):
            bids, asks = ex.book(ticker)
            if not bids or not asks:
                continue
            tick, size = self.grid[ticker]
            for side, ref, sign in ((Side.BUY, bids[0][0], -1), (Side.SELL, asks[0][0], 1)):
                for k in (1, 3):
                    self.client_id += 1
                    oid = OrderId(OWNER, 0, self.client_id, ORDER_FLAGS_SHORT_TERM, clob)
                    request = OrderRequest(oid, side, size, ref + sign * k * tick, TimeInForce.UNSPECIFIED,
                                           good_til_block=ex.height + 20)
                    try:
                        ex.place_order(request, now_ns)
                    except ChainError:
                        pass


def new_exchange(params: list[SimMarketParams]) -> tuple[SimExchange, Quoter]:
    ex = SimExchange(params, 7, START_NS)
    ex.create_account(OWNER, Decimal(1_000_000))
    return ex, Quoter(ex)


def run_exchange(params: list[SimMarketParams], step_ns: int, secs: float) -> tuple[int, float, float, int]:
    """Return (events, CPU seconds, wall seconds, simulated seconds) of SimExchange.advance."""
    ex, quoter = new_exchange(params)
    every = max(1, REQUOTE_NS // step_ns)
    now, events, steps = START_NS, 0, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    deadline = wall0 + secs
    while True:
        now += step_ns
        events += len(ex.advance(now))
        steps += 1
        if steps % every == 0:
            quoter.requote(now)
            if time.perf_counter() >= deadline:
                break
    return (events, time.process_time() - cpu0, time.perf_counter() - wall0,
            (now - START_NS) // 1_000_000_000)


def run_market(params: list[SimMarketParams], step_ns: int, secs: float) -> tuple[int, float, float, int]:
    """Return (events, CPU seconds, wall seconds, simulated seconds) of SimMarket.step alone."""
    markets = [SimMarket(p, 7 + i, START_NS) for i, p in enumerate(params)]
    now, events, steps = START_NS, 0, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    deadline = wall0 + secs
    while True:
        now += step_ns
        for market in markets:
            events += len(market.step(now))
        steps += 1
        if steps % 1000 == 0 and time.perf_counter() >= deadline:
            break
    return (events, time.process_time() - cpu0, time.perf_counter() - wall0,
            (now - START_NS) // 1_000_000_000)


def event_mix(params: list[SimMarketParams], step_ns: int, sim_secs: int = 300) -> str:
    """What the exchange run counts, by event type (a separate, untimed run)."""
    ex, quoter = new_exchange(params)
    every = max(1, REQUOTE_NS // step_ns)
    counts: Counter[str] = Counter()
    now = START_NS
    for k in range(1, sim_secs * 1_000_000_000 // step_ns + 1):
        now += step_ns
        counts.update(type(e).__name__ for e in ex.advance(now))
        if k % every == 0:
            quoter.requote(now)
    total = sum(counts.values())
    return ", ".join(f"{name} {n / total:.0%}" for name, n in counts.most_common())


def measure(kind: str, params: list[SimMarketParams], step_ns: int, secs: float,
            rounds: int) -> tuple[float, float]:
    """Print one line per kind; return (best, median) events per CPU second."""
    run = run_exchange if kind == "exchange" else run_market
    results = [run(params, step_ns, secs) for _ in range(rounds)]
    rates = sorted(events / cpu for events, cpu, _, _ in results)
    best, median = rates[-1], statistics.median(rates)
    events, cpu, wall, simulated = max(results, key=lambda r: r[0] / r[1])
    label = "SimExchange.advance" if kind == "exchange" else "SimMarket.step alone"
    print(f"  {label:21s} best {best:9,.0f} events/s ({1e6 / best:5.2f} us/event), median {median:9,.0f}; "
          f"{events / wall:9,.0f} events/s wall; {events / (simulated * 1_000_000_000 // step_ns):5.2f} "
          f"events/step; {simulated / cpu:,.0f}x real time")
    rounds = ", ".join(f"{events / cpu:,.0f}" for events, cpu, _, _ in results)
    print(f"  {'':21s} rounds (events/CPU s, in run order): {rounds}")
    return best, median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=2.0, help="wall seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-ms", type=int, default=100, help="simulated time per advance()/step()")
    parser.add_argument("--workload", choices=("active", "default", "both"), default="both")
    parser.add_argument("--trades-per-sec", type=float, default=40.0, help="active workload, per market")
    parser.add_argument("--level-updates-per-sec", type=float, default=100.0, help="active workload")
    parser.add_argument("--profile", action="store_true", help="cProfile one exchange round instead")
    args = parser.parse_args()
    step_ns = args.step_ms * 1_000_000
    names = ("active", "default") if args.workload == "both" else (args.workload,)
    if args.profile:
        params = workload_params(names[0], args.trades_per_sec, args.level_updates_per_sec)
        profiler = cProfile.Profile()
        profiler.enable()
        run_exchange(params, step_ns, args.secs)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    headline: dict[str, tuple[float, float]] = {}
    print(f"event = {EVENT_DEFINITION}")
    for name in names:
        params = workload_params(name, args.trades_per_sec, args.level_updates_per_sec)
        print(f"workload {name}: {describe(params, step_ns)}; 1 account, 2 bids + 2 asks per market "
              f"re-quoted every {REQUOTE_NS / 1e9:g} s")
        print(f"  counted events: {event_mix(params, step_ns)}")
        headline[f"{name}/exchange"] = measure("exchange", params, step_ns, args.secs, args.rounds)
        headline[f"{name}/market"] = measure("market", params, step_ns, args.secs, args.rounds)
    name = names[0]
    best = headline[f"{name}/exchange"][0]
    print(f"sim_in_process_events_per_sec: {best:.0f}  (workload {name}, SimExchange.advance, "
          f"best of {args.rounds}; median {headline[f'{name}/exchange'][1]:.0f})")
    print(f"sim_in_process_us_per_event: {1e6 / best:.2f}")
    print(f"sim_market_step_events_per_sec: {headline[f'{name}/market'][0]:.0f}  (workload {name})")
    if len(names) > 1:
        print(f"sim_in_process_events_per_sec_default_params: {headline['default/exchange'][0]:.0f}  "
              f"(SimMarket.step alone: {headline['default/market'][0]:.0f})")


if __name__ == "__main__":
    main()
