"""A candle backtest started inside its files warms its estimators on the rows before the start,
exactly as the daemon seeds them from venue history (bot.history) at that instant."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.shared import SHARED, needs_shared

from bot.backtest import sources
from bot.backtest.history import load_candles, load_funding
from bot.backtest.runner import Backtest
from bot.clock import NS_PER_HOUR
from bot.config import load
from bot.history import MarketHistory
from bot.market_state import _new_market, seed_history
from bot.strategy.carry import FundingMedian

CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
FUNDING = SHARED / "data/funding/BTC-USDT_bybit_2021-01-01_2024-01-01_funding_history.csv"
CARRY = Path(__file__).resolve().parents[2] / "examples/carry.toml"


def _data(start: str | None, end: str, warmup_hours: int = 720,
          funding: bool = True) -> sources.CandleData:
    return sources.load_candle_data([str(CANDLES)], [str(FUNDING)] if funding else [], market="BTC-USD",
                                    funding_offset_hours=-3,
                                    start_ns=sources.parse_time(start, "x") if start else None,
                                    end_ns=sources.parse_time(end, "x"), warmup_hours=warmup_hours)


@needs_shared
def test_a_start_inside_the_files_seeds_the_engine_as_the_daemon_would() -> None:
    settings = load(CARRY, env_file=None)
    start = sources.parse_time("2021-10-01", "x")
    src = _data("2021-10-01", "2021-10-03").source(settings)
    hours = settings.strategy.history_hours
    assert src.start_ns == start
    assert src.describe["warmup"] == {"BTC-USD": {"candles": hours, "funding": hours,
                                                  "from_ns": start - hours * NS_PER_HOUR}}
    assert not any("warm-up" in c or "cold" in c for c in src.describe["checks"])
    backtest = Backtest(settings, src)
    backtest._wire()
    state = backtest.engine.markets["BTC-USD"]
    # The daemon's seeding, built independently from the files: hourly closes of the 720 h before,
    # the hourly rates settled by the start (keyed by hour end, as the venues give them).
    since = start - hours * NS_PER_HOUR
    closes = [(b.ts_ns, Decimal(repr(b.close))) for b in load_candles(CANDLES, since, start)]
    settled = load_funding(FUNDING, 8, -3)["BTC-USD"]
    rates = [(t, r) for t, r in sorted(settled.items()) if since < t <= start]
    fresh = _new_market(settings, "BTC-USD", src.specs["BTC-USD"], None)
    seed_history(fresh, MarketHistory("BTC-USD", closes, rates))
    assert isinstance(state.entry_trend, FundingMedian)
    assert state.entry_trend.hours == fresh.entry_trend.hours > 0
    assert state.entry_trend.rate_1h == fresh.entry_trend.rate_1h
    assert state.funding_trend.rate_1h == fresh.funding_trend.rate_1h != 0
    assert backtest.engine.sizing_vol(state) == backtest.engine.sizing_vol(fresh) is not None
    # No trading, no PnL, no samples during the warm-up: everything recorded is at or after the start.
    result = backtest.run()
    assert result.funding and min(row["ts_ns"] for row in result.funding) >= start
    assert all(row["ts_ns"] >= start for row in result.timeline)
    assert result.summary["source"]["warmup"]["BTC-USD"]["candles"] == hours


@needs_shared
def test_the_warm_run_differs_from_the_cold_one_and_no_warmup_is_cold() -> None:
    settings = load(CARRY, env_file=None)
    cold = _data("2021-10-01", "2021-10-04", warmup_hours=0)
    cold.warmup = False
    cold_src = cold.source(settings)
    assert "warmup" not in cold_src.describe and "warmup" not in cold_src.hooks
    warm = Backtest(settings, _data("2021-10-01", "2021-10-04").source(settings)).run().summary
    plain = Backtest(settings, cold.source(settings)).run().summary
    assert warm["source"]["warmup"]["BTC-USD"]["candles"] == 720
    assert warm["fills"] != plain["fills"] or warm["final_equity_usd"] != plain["final_equity_usd"]


@needs_shared
def test_a_file_starting_at_the_start_stays_cold_with_a_note() -> None:
    settings = load(None, env_file=None)
    src = _data("2020-01-01", "2020-01-03", funding=False).source(settings)
    assert src.describe["warmup"] == {"BTC-USD": {"candles": 0, "funding": 0, "from_ns": None}}
    assert any("no candles before the start" in c for c in src.describe["checks"])
    backtest = Backtest(settings, src)
    backtest._wire()
    assert backtest.engine.sizing_vol(backtest.engine.markets["BTC-USD"]) is None
    short = _data("2020-01-05", "2020-01-07", funding=False).source(settings)
    assert short.describe["warmup"]["BTC-USD"]["candles"] == 96
    assert any("warm-up from 96 h of candles before the start, not 720" in c
               for c in short.describe["checks"])


@needs_shared
def test_without_a_start_nothing_is_seeded_and_the_summary_is_unchanged() -> None:
    settings = load(None, env_file=None)
    data = sources.load_candle_data([str(CANDLES)], end_ns=sources.parse_time("2020-01-03", "x"),
                                    warmup_hours=720)
    src = data.source(settings)
    assert "warmup" not in src.describe and "warmup" not in src.hooks
    assert json.dumps(src.describe, sort_keys=True)  # plain JSON, as summary.json writes it


def test_warmup_is_a_flag_taking_no_value(tmp_path: Path) -> None:
    perpbot = Path(sys.executable).parent / "perpbot"
    run = subprocess.run([str(perpbot), "backtest", "--sim", "1", "--warmup=no", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--warmup" in run.stderr


@needs_shared
def test_optimize_windows_warm_on_the_rows_before_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.research import data as rdata
    from bot.research import objective
    from bot.research.folds import Window
    from bot.research.space import parse_spec

    seen: list[dict | None] = []

    class Spy(Backtest):
        def run(self) -> Any:
            seen.append(self.source.describe.get("warmup"))
            return super().run()

    monkeypatch.setattr(objective, "Backtest", Spy)
    dydx = SHARED / "data/funding/BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
    data = rdata.load(rdata.DataSpec((str(CANDLES),), (str(dydx),), 1, 0, "2023-06-01", "2023-06-05"))
    spec = parse_spec({"space": {"strategy.max_leverage": {"low": 0.5, "high": 3.0}}})
    settings = load(None, env_file=None)
    day = 24 * NS_PER_HOUR
    for start in (data.start_ns, data.start_ns + 2 * day):
        objective.evaluate(settings, data, Window(start, start + day), spec,
                           steps_per_bar=sources.BAR_PATH_STEPS)
    # The loader cut the candles at --start but keeps the funding file whole: its rates still seed.
    assert seen[0] == {"BTC-USD": {"candles": 0, "funding": 720, "from_ns": None}}
    assert seen[1] == {"BTC-USD": {"candles": 48, "funding": 720, "from_ns": data.start_ns}}
