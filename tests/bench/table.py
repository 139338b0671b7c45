"""`make bench`: run every benchmark once and print one table of the headline figures.

Each benchmark is a standalone script that prints `name: value` lines (see its docstring for
what it measures and how to run it longer); this collects the figures that the issues and the
README quote, beside the reference measured in the same run where one exists.

    .venv/bin/python tests/bench/table.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURE = re.compile(r"^\s*([a-z0-9_]+):\s+(?:best\s+)?([-+]?[\d,]*\.?\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    figure: str
    bench: str
    key: str
    unit: str
    target: str = ""
    reference_key: str = ""  # measured in the same run
    reference: str = ""


BENCHES = [
    Bench("book", "bench_book.py", (), ("--frames", "60000")),
    Bench("sim", "bench_sim.py", (), ("--rounds", "1")),
    Bench("indexer_ws", "bench_indexer_ws.py", (), ()),
    Bench("signing", "bench_signing.py", (), ("--rounds", "1")),
    Bench("rules", "bench_rules.py", (), ()),
    Bench("backtest", "bench_backtest.py", (), ("--rounds", "1")),
    Bench("bars", "bench_bars.py", (), ("--rounds", "1")),
    Bench("kill", "bench_kill.py", (), ("--rounds", "4")),
    Bench("kill_long_term", "bench_kill.py", ("--orders", "20", "--long-term", "12", "--spot-orders", "32"),
          ("--orders", "20", "--long-term", "12", "--spot-orders", "32", "--rounds", "4")),
    Bench("memory", "bench_memory.py", (), ("--secs", "10")),
    Bench("cold_start", "bench_cold_start.py", (), ("--rounds", "2")),
]

ROWS = [
    Row("book frames/s (parse + apply + best bid/ask)", "book", "book_feed_frames_per_sec", "/s",
        "mean <= 1.3x floor", "book_floor_frames_per_sec", "orjson.loads alone"),
    Row("book mean / floor mean", "book", "book_feed_mean_over_floor", "x", "<= 1.3"),
    Row("book p99 / floor p99", "book", "book_feed_p99_over_floor_p99", "x", "<= 2.5"),
    Row("plain dict-of-Decimal book frames/s", "book", "book_naive_frames_per_sec", "/s", "",
        "", "reference"),
    Row("market event -> order intent p50", "book", "intent_latency_p50_us", "us"),
    Row("market event -> order intent p99", "book", "intent_latency_p99_us", "us"),
    Row("decision (evaluate + targets) ", "rules", "evaluate_with_targets_us", "us"),
    Row("intents -> signed dYdX orders/s (venue path)", "signing", "signing_intents_per_sec_ours",
        "/s", ">= 1.5x client", "signing_intents_per_sec_client", "dydx-v4-client alone"),
    Row("... through the order manager (intent in SQLite)", "signing",
        "signing_intents_per_sec_order_manager", "/s", ">= 1.5x client"),
    Row("... through the order manager, 8 intents per commit", "signing",
        "signing_intents_per_sec_order_manager_batch", "/s", ">= 1.5x client"),
    Row("signing p99 / bare signature p99", "signing", "ours_p99_over_bare_p99", "x", "<= 3"),
    Row("simulator in-process events/s (active workload)", "sim", "sim_in_process_events_per_sec", "/s",
        ">= 200,000"),
    Row("simulator market model alone events/s", "sim", "sim_market_step_events_per_sec", "/s"),
    Row("simulator WS messages/s", "indexer_ws", "indexer_ws_messages_per_sec", "/s", ">= 20,000"),
    Row("backtest events/s, default sim market (~65 ev/s)", "backtest", "backtest_events_per_sec_default",
        "/s", ">= 200,000"),
    Row("backtest events/s, active market (~370 ev/s)", "backtest", "backtest_events_per_sec_active",
        "/s", ">= 200,000"),
    Row("backtest events/s incl. simulator, active", "backtest", "backtest_with_sim_events_per_sec_active",
        "/s"),
    Row("bar-path backtest run_secs, 4,632 h bars + funding", "bars", "bars_run_secs", "s", "<= 2x Nautilus",
        "nautilus_bars_run_secs", "NautilusTrader (NAUTILUS_PYTHON)"),
    Row("bar-path backtest loop CPU secs (steadier on a busy machine)", "bars", "bars_cpu_secs", "s"),
    Row("bar-path backtest bars/s", "bars", "bars_per_sec", "/s"),
    Row("bar-path backtest us per bar", "bars", "us_per_bar", "us"),
    Row("event-path backtest run_secs, same bars", "bars", "event_path_run_secs", "s"),
    Row("kill --direct p50", "kill", "kill_direct_p50_secs", "s"),
    Row("kill --direct p99", "kill", "kill_direct_p99_secs", "s", "< 2"),
    Row("kill --direct p99, 12 long-term + 20 short-term dYdX + 32 Binance", "kill_long_term",
        "kill_direct_p99_secs", "s", "< 2"),
    Row("... in-process p50 (without interpreter start)", "kill_long_term",
        "kill_direct_in_process_p50_secs", "s"),
    Row("memory per market", "memory", "memory_per_market_kib", "KiB"),
    Row("RSS, 1 market", "memory", "rss_1_market_mib", "MiB"),
    Row("cold start to control API (in-process sim)", "cold_start",
        "cold_start_in_process_control_api_p50_secs", "s"),
    Row("cold start to live books (protocol sim)", "cold_start",
        "cold_start_protocol_books_live_p50_secs", "s"),
]


def run(bench: Bench, quick: bool) -> tuple[dict[str, float], float, str]:
    args = bench.quick_args if quick else bench.args
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / bench.script), *args], capture_output=True,
                          text=True, env=env, timeout=1800)
    elapsed = time.perf_counter() - started
    figures = {k: float(v.replace(",", "")) for k, v in FIGURE.findall(done.stdout)}
    error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
    return figures, elapsed, error


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    failures = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        figures, elapsed, error = run(bench, args.quick)
        results[bench.name] = figures
        outcome = f" - FAILED: {error}" if error else ""
        print(f"ran {bench.script} in {elapsed:.0f} s{outcome}", file=sys.stderr)
        if error:
            failures.append(bench.name)
    print(f"perpbot benchmarks, {datetime.date.today()}, {os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}{' (quick)' if args.quick else ''}")
    header = f"| {'figure':48s} | {'value':>12s} | {'target':18s} | {'same-run reference':30s} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in ROWS:
        if row.bench not in results:
            continue
        figures = results[row.bench]
        value = figures.get(row.key)
        ref = ""
        if row.reference_key:
            ref = f"{_fmt(figures.get(row.reference_key))} {row.unit} ({row.reference})"
        elif row.reference:
            ref = row.reference
        print(f"| {row.figure:48s} | {_fmt(value) + ' ' + row.unit:>12s} | {row.target:18s} | {ref:30s} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
