"""The directional preset on 2024 candles, never used to choose it (research script).

../shared/data has 2024 hourly candles (Binance spot, 1 January to 6 September; feather) but no
2024 funding, so funding is zero here: the adverse-funding cut never fires and neither side pays.
Estimators are warmed on the 720 h before each window (December 2023 from the perp CSV), as in
tools/calibrate.py, whose `run` and `hold` this drives unchanged. Windows: 2024Q1, 2024Q2 and
1 July to 6 September.

Usage: .venv/bin/python tools/directional_2024.py [CONFIG.toml ...]  (default: the preset)
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.feather as feather

from bot.config import RuleSettings, load

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_2024() -> list[cal.Series]:
    out = []
    for market in ("BTC-USD", "ETH-USD"):
        asset = market.split("-")[0]
        bars = cal.load_candles(cal.DATA / "candles" / f"{asset}USDT_1h_2020-01_2024-04.csv")
        path = cal.DATA / "candles" / f"{asset}_USDT-1h_2024-01_2024-09.feather"
        table = feather.read_table(path).to_pydict()
        for ts, o, h, lo, c in zip(table["date"], table["open"], table["high"], table["low"], table["close"],
                                   strict=True):
            bars[int(ts.timestamp()) // 3600 + 1] = (o, h, lo, c)  # keyed by the bar's close hour
        hours = sorted(bars)
        out.append(cal.Series(market, hours, [bars[h] for h in hours], [0.0] * len(hours)))
    return out


def _hour(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp()) // 3600


def main(argv: list[str]) -> int:
    series = load_2024()
    last = min(s.hours[-1] for s in series) + 1
    windows = [(_hour(2024, 1, 1), _hour(2024, 4, 1), "2024Q1"),
               (_hour(2024, 4, 1), _hour(2024, 7, 1), "2024Q2"),
               (_hour(2024, 7, 1), last, "2024Q3 (to 6 Sep)")]
    for config in [Path(a) for a in argv] or [EXAMPLES / "directional.toml"]:
        strat = load(config, env_file=None).strategy
        print(f"\n{config}\n\n{cal.HEADERS['directional']}")
        for start, end, label in windows:
            bot = cal.run(series, start, end, strat, RuleSettings())
            base = cal.hold(series, start, end, 0.5)
            print(cal._row_cells("directional", {"window": label, "bot": bot, "base": base}))
    return 0


if __name__ == "__main__":
    cal.run_script(main, __file__)
