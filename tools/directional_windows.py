"""The directional preset on rolling windows of several lengths, both markets and each alone (research).

The acceptance windows are unknown in length and may run one market or both, so this measures
the two targets (max drawdown <= 0.75x the unmanaged hold's; return/drawdown >= the hold's) on
every window of 1, 3, 6 and 12 months that starts on a month's first, for BTC-USD and ETH-USD
together and for each alone (a one-market run as `perpbot backtest --market`: the thesis on that
market, all equity there), with tools/calibrate.py's `run` and `hold` unchanged.

History: Binance perp candles and Binance funding to 2023-12-31, then the 2024 spot candles of
tools/directional_2024.py with zero funding (there is no 2024 funding file), spliced into one
series, so windows may cross into 2024. Each window is warmed on the 720 h before it. A window is
labelled by its funding: `funding` (2020-2023 only), `2024` (zero funding only), `mixed`.

Usage: .venv/bin/python tools/directional_windows.py [CONFIG.toml ...] [--lengths 1,3,6,12]
       [--markets both,BTC-USD,ETH-USD] [--json FILE]   (default config: the preset)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import RuleSettings, StrategySettings, load
from bot.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal
import directional_2024 as d24

PRESET = Path(__file__).resolve().parents[1] / "examples" / "directional.toml"
SCOPES = ("both", "BTC-USD", "ETH-USD")
Y2024 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) // 3600


def load_spliced() -> list[cal.Series]:
    """Per market: Binance funding where it exists (to 2023-12-31), zero funding on the 2024 candles."""
    funded = {s.market: s for s in cal.load_series("binance")}
    out = []
    for late in d24.load_2024():
        early = funded[late.market]
        rates = dict(zip(early.hours, early.rates, strict=True))
        hours = [h for h in late.hours if h in rates or h >= Y2024]
        ix = {h: i for i, h in enumerate(late.hours)}
        out.append(cal.Series(late.market, hours, [late.bars[ix[h]] for h in hours],
                              [rates.get(h, 0.0) if h < Y2024 else 0.0 for h in hours]))
    return out


def month_hour(y: int, m: int) -> int:
    return int(datetime(y + (m - 1) // 12, (m - 1) % 12 + 1, 1, tzinfo=UTC).timestamp()) // 3600


def windows(hours: list[int], months: int, warm_hours: int = 720) -> list[tuple[int, int, str]]:
    """[start, end) of every `months`-month window that starts on a month's first, with
    `warm_hours` of history before it and its end inside the hours, labelled by its start."""
    first = datetime.fromtimestamp(hours[0] * 3600, UTC)
    last = datetime.fromtimestamp(hours[-1] * 3600, UTC)
    out = []
    for y in range(first.year, last.year + 1):
        for m in range(1, 13):
            start, end = month_hour(y, m), month_hour(y, m + months)
            if start - warm_hours >= hours[0] and end <= hours[-1] + 1:
                out.append((start, end, f"{y}-{m:02d}"))
    return out


def period(start: int, end: int) -> str:
    return "funding" if end <= Y2024 else "2024" if start >= Y2024 else "mixed"


@dataclass(frozen=True)
class Row:
    scope: str
    months: int
    label: str
    period: str
    bot: dict[str, Any]
    hold: dict[str, Any]

    @property
    def dd_met(self) -> bool:
        return bool(self.bot["max_dd"] <= 0.75 * self.hold["max_dd"])

    @property
    def rdd_met(self) -> bool:
        return bool(self.bot["ret_dd"] >= self.hold["ret_dd"])

    def cells(self) -> str:
        b, h = self.bot, self.hold
        ratio = b["max_dd"] / h["max_dd"] if h["max_dd"] > 0 else 0.0
        return (f"{self.label} ({self.period}): {cal._pct(b['return'])} / {100 * b['max_dd']:.1f}% vs hold "
                f"{cal._pct(h['return'])} / {100 * h['max_dd']:.1f}%; DD {ratio:.2f}x; return/DD "
                f"{b['ret_dd']:.2f} vs {h['ret_dd']:.2f}")


def evaluate(series: list[cal.Series], strat: StrategySettings, lengths: Iterable[int],
             scopes: Iterable[str]) -> list[Row]:
    rules = RuleSettings()
    common = sorted(set.intersection(*(set(s.hours) for s in series)))
    rows = []
    for scope in scopes:
        chosen = series if scope == "both" else [s for s in series if s.market == scope]
        for months in lengths:
            for start, end, label in windows(common, months):
                bot = cal.run(chosen, start, end, strat, rules)
                if bot:
                    rows.append(Row(scope, months, label, period(start, end), bot,
                                    cal.hold(chosen, start, end, 0.5)))
    return rows


def summary(rows: list[Row]) -> list[str]:
    """Per scope and length: windows, drawdown met, return/drawdown met, and the misses."""
    out = []
    groups: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.scope, r.months), []).append(r)
    for (scope, months), group in groups.items():
        dd = [r for r in group if not r.dd_met]
        rdd = [r for r in group if not r.rdd_met]
        by_period = ", ".join(
            f"{p} {sum(r.dd_met for r in group if r.period == p)}/"
            f"{sum(r.rdd_met for r in group if r.period == p)} of {sum(r.period == p for r in group)}"
            for p in ("funding", "mixed", "2024") if any(r.period == p for r in group))
        out.append(f"{scope} {months} mo: {len(group)} windows, drawdown met {len(group) - len(dd)}, "
                   f"return/drawdown met {len(group) - len(rdd)} (DD/RDD per period: {by_period})")
        out += [f"  DD miss   {r.cells()}" for r in dd]
        out += [f"  R/DD miss {r.cells()}" for r in rdd]
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", type=Path)
    ap.add_argument("--lengths", default="1,3,6,12", help="window lengths in months")
    ap.add_argument("--markets", default=",".join(SCOPES), help="both and/or single markets")
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    args = ap.parse_args(argv)
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise ConfigError("--lengths", f"months, comma separated, each >= 1: {args.lengths!r}")
    scopes = args.markets.split(",")
    if any(s not in SCOPES for s in scopes):
        raise ConfigError("--markets", f"each one of {', '.join(SCOPES)}: {args.markets!r}")
    configs = [(c, load(c, env_file=None).strategy) for c in args.configs or [PRESET]]  # bad ones first
    series = load_spliced()
    dump = {}
    for config, strat in configs:
        rows = evaluate(series, strat, lengths, scopes)
        print(f"\n{config}")
        print("\n".join(summary(rows)), flush=True)
        dump[str(config)] = [{"scope": r.scope, "months": r.months, "window": r.label, "period": r.period,
                              "bot": r.bot, "hold": r.hold} for r in rows]
    if args.json is not None:
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    cal.run_script(main, __file__)
