"""Benchmark: a candle + funding backtest of one market with the full live engine, beside NautilusTrader.

The workload is issue #19's: the first 4,632 hourly bars of ../shared/data/candles/BTCUSDT_1h_
2020-01_2024-04.csv (the bars the anchor `../shared/bench/bench_nautilus_bars.py --bars 4632`
reads), with the Binance 8-hourly funding of the same span (read with --funding-offset -3: the
shared Binance files carry a UTC+3 clock), through `bot.backtest.runner.run_backtest` with the
default config: rules, sleeves, sizing, TWAP, order managers, paper fills, the store (SQLite in
memory) and the synthetic candle market. The rules see each bar's start (decisions at bar and
audit times); on the bar-level fast path (`--bar-path`) the bar is otherwise visited at its
extremes and close as marks only (drawdown, liquidation, funding, the hedge leg's value; flat
and idle, the close only), and
every 10 s along the same O-L-H-C curve while orders or hedges are worked; the event path walks
12 points per hourly bar (every 5 min) whatever happens.

Figures (median of --rounds runs; files are read once, outside the timing):

  bars_run_secs        summary.json's run_secs on the bar path: the engine loop, wall clock
  bars_cpu_secs        CPU time of the same loop (the machine is shared: wall time is noisy)
  bars_per_sec         bars / run_secs
  us_per_bar           run_secs / bars, in microseconds
  event_path_run_secs, event_path_cpu_secs   the same on the 12-point event path
  nautilus_bars_run_secs, perpbot_over_nautilus
                       only when the anchor's virtual environment is given (--nautilus-python, or
                       the NAUTILUS_PYTHON environment variable): the anchor runs in that
                       interpreter in the same invocation. Nothing is installed here; build the
                       venv as ../shared/bench/README.md says.

    .venv/bin/python tests/bench/bench_bars.py [--bars 4632] [--rounds 3] \
        [--nautilus-python /tmp/nt/bin/python]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
from pathlib import Path

from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.config import load

SHARED = Path(__file__).resolve().parents[3] / "shared"
CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
FUNDING = SHARED / "data/funding/BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"
ANCHOR = SHARED / "bench/bench_nautilus_bars.py"


def _perpbot(bars: int, rounds: int, steps: int | None) -> tuple[float, float, int]:
    settings = load(None, env_file=None)
    everything = sources.load_candles(CANDLES)
    end_ns = everything[min(bars, len(everything)) - 1].ts_ns + 1
    data = sources.load_candle_data([str(CANDLES)], [str(FUNDING)], end_ns=end_ns, funding_offset_hours=-3)
    n = len(data.candles["BTC-USD"])
    walls, cpus = [], []
    for _ in range(rounds):
        run = Backtest(settings, data.source(settings, steps_per_bar=steps))
        summary = run.run().summary
        cpus.append(run.run_cpu_secs)
        walls.append(summary["run_secs"])
    return statistics.median(walls), statistics.median(cpus), n


def _nautilus(python: str, bars: int, rounds: int) -> float | None:
    proc = subprocess.run([python, str(ANCHOR), str(CANDLES), "--bars", str(bars), "--rounds", str(rounds)],
                          capture_output=True, text=True, timeout=900)
    match = re.search(r"nautilus_bars_run_secs:\s*([\d.]+)", proc.stdout)
    if match is None:
        print(f"nautilus anchor failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return None
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=4632)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nautilus-python", default=os.environ.get("NAUTILUS_PYTHON"))
    a = parser.parse_args()
    event_wall, event_cpu, _ = _perpbot(a.bars, a.rounds, None)
    wall, cpu, n = _perpbot(a.bars, a.rounds, sources.BAR_PATH_STEPS)
    print(f"bars: {n}")
    print(f"event_path_run_secs: {event_wall:.3f}")
    print(f"event_path_cpu_secs: {event_cpu:.3f}")
    print(f"bars_run_secs: {wall:.3f}")
    print(f"bars_cpu_secs: {cpu:.3f}")
    print(f"bars_per_sec: {n / wall:.0f}")
    print(f"us_per_bar: {wall / n * 1e6:.0f}")
    if a.nautilus_python:
        anchor = _nautilus(a.nautilus_python, a.bars, a.rounds)
        if anchor is not None:
            print(f"nautilus_bars_run_secs: {anchor:.3f}")
            print(f"perpbot_over_nautilus: {wall / anchor:.1f}")
    else:
        print("nautilus anchor: not run (give --nautilus-python or NAUTILUS_PYTHON)")


if __name__ == "__main__":
    main()
