"""Research data loading: the one candle reader, then columns cut into windows.

Prints `name: value` lines. Reads the 37,660-row BTCUSDT 1h CSV (4.3 years) and the dYdX hourly
funding file from ../shared/data with the backtest's reader (`history.load_candles`, which
`bot.research.data` also uses), then cuts 100 one-month windows from the loaded columns (what a
walk-forward study does per trial) and times that against re-reading the file per window.

    .venv/bin/python tests/bench/bench_research_data.py
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.backtest import sources
from bot.research import data as rdata
from bot.research.folds import Window

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CANDLES = SHARED / "candles/BTCUSDT_1h_2020-01_2024-04.csv"
FUNDING = SHARED / "funding/BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
MONTH = 30 * 24 * 3600 * 10**9


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rows_secs = _best(lambda: sources.load_candles(CANDLES))
    spec = rdata.DataSpec((str(CANDLES),), (str(FUNDING),), 1, 0)
    load_secs = _best(lambda: rdata.load(spec))
    data = rdata.load(spec)
    starts = [data.start_ns + k * (data.end_ns - data.start_ns - MONTH) // 100 for k in range(100)]
    windows = [Window(s - s % data.bar_ns, s - s % data.bar_ns + MONTH) for s in starts]
    slice_secs = _best(lambda: [data.window(w) for w in windows]) / len(windows)
    reread_secs = _best(lambda: sources.load_candles(CANDLES, windows[50].start_ns, windows[50].end_ns), 2)
    print(f"candles_rows: {len(data.candles['BTC-USD'].ts)}")
    print(f"row_reader_secs: {rows_secs:.3f}")
    print(f"load_candles_and_funding_secs: {load_secs:.3f}")
    print(f"window_slice_ms: {slice_secs * 1000:.2f}")
    print(f"reread_file_per_window_ms: {reread_secs * 1000:.1f}")


if __name__ == "__main__":
    main()
