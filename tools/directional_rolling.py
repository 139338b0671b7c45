"""The directional preset over every three-month window that starts on a month's first (research).

tools/calibrate.py scores calendar quarters; this checks that a rule is not fitted to quarter
boundaries: the same `run` and `hold` over the windows starting on the first of every month
(2020-02 to 2023-10, Binance funding, estimators warmed on the 720 h before each), for the preset
with the re-risk gate on and off (or the given configs). It prints per config how many windows
meet each target and the windows where return/drawdown differs between the first two.

Usage: .venv/bin/python tools/directional_rolling.py [CONFIG.toml ...]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import RuleSettings, StrategySettings, load

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal

PRESET = Path(__file__).resolve().parents[1] / "examples" / "directional.toml"


def windows(hours: list[int]) -> list[tuple[int, int, str]]:
    """[start, end) hours of every three-month window from a month's first, warm-up included."""
    def hour(y: int, m: int) -> int:
        return int(datetime(y + (m - 1) // 12, (m - 1) % 12 + 1, 1, tzinfo=UTC).timestamp()) // 3600
    out = []
    first = datetime.fromtimestamp(hours[0] * 3600, UTC)
    for y in range(first.year, datetime.fromtimestamp(hours[-1] * 3600, UTC).year + 1):
        for m in range(1, 13):
            start, end = hour(y, m), hour(y, m + 3)
            if start - 720 >= hours[0] and end <= hours[-1] + 1:
                out.append((start, end, f"{y}-{m:02d}"))
    return out


def main(argv: list[str]) -> int:
    series = cal.load_series("binance")
    wins = windows(sorted(set.intersection(*(set(s.hours) for s in series))))
    configs: list[tuple[str, StrategySettings]] = [(a, load(Path(a), env_file=None).strategy) for a in argv]
    if not configs:
        preset = load(PRESET, env_file=None).strategy
        configs = [("preset", preset), ("preset, gate off",
                                        preset.model_copy(update={"rerisk_on_trend": False}))]
    results: list[list[tuple[str, dict[str, Any], dict[str, Any]]]] = []
    for name, strat in configs:
        rows = []
        for start, end, label in wins:
            rows.append((label, cal.run(series, start, end, strat, RuleSettings()),
                         cal.hold(series, start, end, 0.5)))
        results.append(rows)
        dd = sum(b["max_dd"] <= 0.75 * h["max_dd"] for _, b, h in rows)
        misses = [label for label, b, h in rows if b["ret_dd"] < h["ret_dd"]]
        print(f"{name}: {len(rows)} windows, drawdown met {dd}, return/drawdown met "
              f"{len(rows) - len(misses)}; misses {', '.join(misses) or 'none'}")
    if len(results) > 1:
        for (label, a, h), (_, b, _) in zip(results[0], results[1], strict=True):
            if abs(a["ret_dd"] - b["ret_dd"]) > 0.005:
                print(f"  {label}: {cal._pct(a['return'])} / {100 * a['max_dd']:.1f}% ({a['ret_dd']:.2f}) vs "
                      f"{cal._pct(b['return'])} / {100 * b['max_dd']:.1f}% ({b['ret_dd']:.2f}); hold "
                      f"{cal._pct(h['return'])} / {100 * h['max_dd']:.1f}% ({h['ret_dd']:.2f})")
    return 0


if __name__ == "__main__":
    cal.run_script(main, __file__)
