"""Benchmark: in-process simulated events per second (market model + matching, no sockets).

Two markets (BTC-USD, ETH-USD with their default simulator parameters), a few resting account
orders kept on the book, stepped in 100 ms of simulated time per call (--step-ms) for about 5 s of wall
time on one core. An "event" is one item `SimExchange.advance` returns (book snapshot/delta,
trade, oracle update, block height, account update).

    .venv/bin/python tests/bench/bench_sim.py [--secs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from decimal import Decimal

from bot.domain import Side
from bot.sim.exchange import (
    ORDER_FLAGS_SHORT_TERM,
    ChainError,
    OrderId,
    OrderRequest,
    SimExchange,
    TimeInForce,
)
from bot.venues.sim.feed import default_params

START_NS = 1_700_000_000 * 1_000_000_000
OWNER = "dydx1bench"


def _requote(ex: SimExchange, client_id: int, now_ns: int) -> int:
    """Keep two bids and two asks per market a few ticks off the touch (fresh short-term orders)."""
    for clob, ticker in enumerate(("BTC-USD", "ETH-USD")):
        bids, asks = ex.book(ticker)
        if not bids or not asks:
            continue
        tick = ex.markets()[ticker].tick_size
        size = ex.markets()[ticker].step_size * 10
        for side, ref, sign in ((Side.BUY, bids[0][0], -1), (Side.SELL, asks[0][0], 1)):
            for k in (1, 3):
                client_id += 1
                request = OrderRequest(OrderId(OWNER, 0, client_id, ORDER_FLAGS_SHORT_TERM, clob), side, size,
                                       ref + sign * k * tick, TimeInForce.UNSPECIFIED,
                                       good_til_block=ex.height + 20)
                try:
                    ex.place_order(request, now_ns)
                except ChainError:
                    pass
    return client_id


def run(wall_secs: float, step_ns: int = 100_000_000) -> tuple[int, float, int]:
    """Return (events, wall seconds, simulated seconds)."""
    params = [default_params(t, 0.65) for t in ("BTC-USD", "ETH-USD")]
    ex = SimExchange(params, 7, START_NS)
    ex.create_account(OWNER, Decimal(1_000_000))
    now, client_id, events, steps = START_NS, 0, 0, 0
    started = time.perf_counter()
    deadline = started + wall_secs
    while True:
        now += step_ns
        events += len(ex.advance(now))
        steps += 1
        if steps % max(1, 5_000_000_000 // step_ns) == 0:  # every 5 simulated seconds
            client_id = _requote(ex, client_id, now)
            if time.perf_counter() >= deadline:
                break
    return events, time.perf_counter() - started, (now - START_NS) // 1_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=5.0)
    parser.add_argument("--step-ms", type=int, default=100, help="simulated time per advance()")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    events, wall, simulated = run(args.secs, args.step_ms * 1_000_000)
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    print(f"simulated {simulated} s in {wall:.2f} s wall ({simulated / wall:.0f}x real time)")
    print(f"sim_in_process_events_per_sec: {events / wall:.0f}")


if __name__ == "__main__":
    main()
