"""Benchmark the dashboard's poll: prints figures, one per line.

    .venv/bin/python tests/bench/bench_dashboard.py

A week of history as the daemon keeps it (a sample every 5 s for 2 h, one a minute for 7 days,
two markets) and ten days of hourly funding payments and six-hourly decisions in a real SQLite
store. Measured:
- record_us: one status sample taken into the history (every 5 s in the daemon);
- store_refresh_ms: re-reading the decisions and funding payments (every 30 s);
- payload_ms_<range>: one `/v1/dashboard` poll rendered (every 2 s per open page), and its size;
- history_mib: memory the filled history holds (tracemalloc).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.control.dashboard import Dashboard
from bot.control.history import RANGES, StatusHistory
from bot.domain import FundingPayment
from bot.store.repo import Store

SEC = 1_000_000_000
HOUR = 3600 * SEC
NOW = 1_780_000_000 * SEC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support
from support.clock import ManualClock  # noqa: E402


def status(t: int) -> dict[str, Any]:
    h = (t - NOW) / HOUR
    market = {"position": f"{0.05 * math.sin(h / 7):.4f}", "target": "0.05", "oracle_price": "65000",
              "funding_rate_1h": f"{0.00006 + 0.00005 * math.sin(h / 9):.8f}", "flags": {},
              "last_decision": {"ts_ns": NOW, "reason": "audit", "tripped": [], "summary": "audit"}}
    return {"risk_mode": "NORMAL", "equity": f"{10_000 + 100 * math.sin(h / 20):.2f}",
            "pnl": {"price": "1", "funding": "2", "fees": "-1", "slippage": "-0.5", "total": "1.5"},
            "markets": {"BTC-USD": market, "ETH-USD": dict(market)}}


def main() -> None:
    clock = ManualClock(NOW)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        for hour in range(240):
            t = NOW - hour * HOUR
            for ticker in ("BTC-USD", "ETH-USD"):
                store.record_funding("paper", FundingPayment(ticker, Decimal("0.0001"), Decimal("0.05"),
                                                             Decimal(65000), Decimal("-0.3"), t))
                if hour % 6 == 0:
                    store.record_decision(t, ticker, "audit", {"news": {"tripped": False}},
                                          {"target_after": "0.05", "summary": "audit"})
        history = StatusHistory(lambda: status(clock.now), clock, store=store, settings=Settings(),
                                store_refresh_secs=1e9)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        t = NOW - 7 * 24 * HOUR
        while t <= NOW:
            clock.now = t
            history.record(status(t))
            t += (60 if NOW - t > 2 * HOUR else 5) * SEC
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        n = 2000
        started = time.perf_counter()
        for _ in range(n):
            history.record(status(clock.now))
        print(f"record_us {1e6 * (time.perf_counter() - started) / n:.1f}")
        started = time.perf_counter()
        for _ in range(20):
            history.refresh_store(clock.now)
        print(f"store_refresh_ms {1e3 * (time.perf_counter() - started) / 20:.2f}")
        dashboard = Dashboard(lambda: status(clock.now), clock, history)
        for key in RANGES:
            started = time.perf_counter()
            for _ in range(20):
                payload = dashboard.payload({"range": key, "w": "660", "fw": "1330"})
            elapsed = (time.perf_counter() - started) / 20
            print(f"payload_ms_{key} {1e3 * elapsed:.2f}")
            print(f"payload_kib_{key} {len(json.dumps(payload)) / 1024:.0f}")
        print(f"history_samples {len(history.samples) + len(history.coarse)}")
        print(f"history_mib {held / 2**20:.1f}")
        store.close()


if __name__ == "__main__":
    main()
