"""Intrabar risk: a wick below maintenance margin liquidates (forced close + fee); drawdown sees wicks."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from bot.backtest import sources
from bot.backtest.liquidation import LIQUIDATION_FEE_RATE
from bot.backtest.runner import Backtest, BacktestResult
from bot.config import load
from bot.strategy.targets import parse_target

HOUR = sources.NS_PER_HOUR
T0 = sources.parse_time("2023-01-01", "x")


def _run(wick_low: float, close: float = 19990, drawdown_stop: str = "0.99", steps: int | None = None,
         skip_extremes: bool = True) -> BacktestResult:
    """A 3x long held through flat hours, one bar that wicks down to `wick_low` and closes near flat."""
    settings = load(None, env_file=None).model_copy(update={"markets": ("BTC-USD",)})
    strategy = settings.strategy.model_copy(update={
        "targets": {"BTC-USD": parse_target("100")}, "max_leverage": Decimal(3),
        "max_notional_usd": Decimal(10**7),
        "min_liquidation_distance": Decimal("0.05"), "drawdown_stop": Decimal(drawdown_stop),
        "carry": settings.strategy.carry.model_copy(update={"enabled": False})})
    # The bot holds through the wick (no flag decision, no audit) so the test sees the venue act.
    rules = settings.rules.model_copy(update={"min_flags": 4, "audit_interval_secs": 10 * 3600.0})
    settings = settings.model_copy(update={"strategy": strategy, "rules": rules})
    bars = [sources.Bar(T0 + k * HOUR, 20000, 20010, 19990, 20000, 1000) for k in range(8)]
    bars.append(sources.Bar(T0 + 8 * HOUR, 20000, 20010, wick_low, close, 1000))
    bars += [sources.Bar(T0 + k * HOUR, close, close + 10, close - 10, close, 1000) for k in range(9, 12)]
    src = sources.candle_source(settings, {"BTC-USD": bars}, {}, steps_per_bar=steps)
    return Backtest(settings, src, sample_secs=3600, skip_extremes=skip_extremes).run()


def test_a_wick_below_maintenance_margin_liquidates_with_the_fee() -> None:
    result = _run(wick_low=8000)  # -60% intrabar at ~1.8x (vol-targeted): equity below maintenance
    s = result.summary
    events = [e for e in result.timeline if e["kind"] == "liquidation"]
    assert s["liquidations"] >= 1 and events
    first = events[0]
    assert T0 + 8 * HOUR <= first["ts_ns"] < T0 + 9 * HOUR  # inside the wick bar
    assert Decimal(first["equity"]) < Decimal(first["maintenance"])
    closed = Decimal(first["closed"]["BTC-USD"])
    assert closed > 0  # the long was closed
    forced = [f for f in result.fills if f["ts_ns"] == first["ts_ns"] and f["side"] == "SELL"]
    assert forced and Decimal(forced[0]["fee"]) == (Decimal(forced[0]["size"]) * Decimal(forced[0]["price"])
                                                    * LIQUIDATION_FEE_RATE)
    assert Decimal(first["fee"]) == Decimal(forced[0]["fee"])
    assert s["max_drawdown"] > 0.5  # the loss to the wick's low, not the hourly close


# The bar path takes an idle bar's extremes without applying their marks (runner `_extreme`); at a
# margin breach it applies them and the venue liquidates there, as when every extreme is applied.
@pytest.mark.parametrize("wick_low", [8000, 18500])
def test_the_bar_path_liquidates_and_draws_down_at_the_wick_either_way(wick_low: float) -> None:
    taken, applied = (_run(wick_low, steps=sources.BAR_PATH_STEPS, skip_extremes=skip)
                      for skip in (True, False))
    assert (taken.summary["liquidations"] > 0) is (wick_low == 8000)
    assert taken.summary["max_drawdown_intrabar"] > 0.1
    assert taken.timeline == applied.timeline and taken.fills == applied.fills
    assert taken.samples == applied.samples
    assert ({k: v for k, v in taken.summary.items() if k != "run_secs"}
            == {k: v for k, v in applied.summary.items() if k != "run_secs"})


def test_drawdown_counts_a_wick_the_hourly_samples_miss() -> None:
    result = _run(wick_low=18500)  # -7.5% intrabar at ~1.8x: ~14% down at the low, no liquidation
    s = result.summary
    assert s["liquidations"] == 0
    equity = [float(x["equity"]) for x in result.samples]
    sampled = max(1 - b / a for a, b in itertools.pairwise(equity))
    assert s["max_drawdown_intrabar"] > 0.1 > 0.02 > sampled
    assert s["max_drawdown"] == s["max_drawdown_intrabar"]


def test_the_drawdown_stop_shows_in_the_risk_mode_timeline() -> None:
    result = _run(wick_low=17900, close=18000, drawdown_stop="0.1")  # -10% at ~1.8x: past the 10% stop
    stops = [e for e in result.timeline if e["kind"] == "risk_mode" and e["new"] == "DRAWDOWN_STOP"]
    assert stops and T0 + 8 * HOUR < stops[0]["ts_ns"] <= T0 + 10 * HOUR
    assert "drawdown_stop" in stops[0]["reason"]
    assert result.summary["risk_mode_secs"]["DRAWDOWN_STOP"] > 0
    assert any(s["drawdown_stop"] for s in result.samples)
