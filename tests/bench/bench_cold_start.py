"""Benchmark: cold start of `perpbot run` (embedded in-process simulator, paper trading, no keys).

Times each stage from spawning the process: control API answering (`daemon.json` written and
`/status` served), then every market's book live (a mid in status). Runs both sim modes:
in_process (the quick start) and protocol (the simulator's servers + the real dYdX adapter).

    .venv/bin/python tests/bench/bench_cold_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics

from daemon_proc import DaemonProcess, status


def _books_live(daemon: DaemonProcess) -> bool:
    doc = status(daemon)
    return doc is not None and all(m.get("mid") for m in doc["markets"].values())


def one_round(mode: str) -> tuple[float, float]:
    daemon = DaemonProcess(PERPBOT_SIM__MODE=mode).start()
    try:
        api = daemon.wait_for(lambda: status(daemon) is not None)
        books = daemon.wait_for(lambda: _books_live(daemon))
        return api, books
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for mode in ("in_process", "protocol"):
        rounds = [one_round(mode) for _ in range(args.rounds)]
        api = sorted(r[0] for r in rounds)
        books = sorted(r[1] for r in rounds)
        print(f"cold_start_{mode}_control_api_p50_secs: {statistics.median(api):.2f}  (max {api[-1]:.2f})")
        print(f"cold_start_{mode}_books_live_p50_secs: {statistics.median(books):.2f}  (max {books[-1]:.2f}, "
              f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()
