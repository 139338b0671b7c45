"""Benchmark: resident memory per market of the running daemon (in-process simulator, paper).

Starts `perpbot run` with 1 market and with N markets, lets each trade for `--secs` after every
book is live, and reports the RSS difference per added market (book, estimators, rule state,
status history, paper venue), beside the 1-market baseline (interpreter, libraries, store).

    .venv/bin/python tests/bench/bench_memory.py [--markets 9] [--secs 30]
"""

from __future__ import annotations

import argparse
import json
import time

from daemon_proc import DaemonProcess, status

GENERIC = ["SOL-USD", "AVAX-USD", "DOGE-USD", "LINK-USD", "ATOM-USD", "DOT-USD", "NEAR-USD", "ARB-USD",
           "OP-USD", "LTC-USD", "BCH-USD", "UNI-USD", "AAVE-USD", "SUI-USD"]


def rss_after(markets: list[str], secs: float) -> int:
    daemon = DaemonProcess(PERPBOT_MARKETS=json.dumps(markets), PERPBOT_STRATEGY__CARRY__ENABLED="false",
                           PERPBOT_STRATEGY__TARGETS="{}").start()
    try:
        daemon.wait_for(lambda: (s := status(daemon)) is not None
                        and all(m.get("mid") for m in s["markets"].values()))
        time.sleep(secs)
        return daemon.rss_bytes()
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markets", type=int, default=9)
    parser.add_argument("--secs", type=float, default=30.0)
    args = parser.parse_args()
    many = ["BTC-USD", "ETH-USD", *GENERIC][: args.markets]
    base = rss_after(many[:1], args.secs)
    full = rss_after(many, args.secs)
    per_market = (full - base) / (len(many) - 1)
    print(f"rss_1_market_mib: {base / 2**20:.1f}")
    print(f"rss_{len(many)}_markets_mib: {full / 2**20:.1f}")
    print(f"memory_per_market_kib: {per_market / 1024:.0f}  (after {args.secs:.0f} s of trading each)")


if __name__ == "__main__":
    main()
