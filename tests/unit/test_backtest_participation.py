"""Candle backtests cap taker fills per bar at a share of the bar's traded volume."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from bot.backtest import sources
from bot.backtest.participation import PARTICIPATION_CAP
from bot.backtest.runner import Backtest
from bot.config import load
from bot.strategy.targets import parse_target

HOUR = sources.NS_PER_HOUR
T0 = sources.parse_time("2023-01-01", "x")


def test_fills_per_bar_stay_within_the_cap_of_a_thin_bar() -> None:
    settings = load(None, env_file=None).model_copy(update={"markets": ("BTC-USD",)})
    strategy = settings.strategy.model_copy(update={
        "targets": {"BTC-USD": parse_target("0.4")}, "max_leverage": Decimal(3),
        "carry": settings.strategy.carry.model_copy(update={"enabled": False})})
    # A tight no-trade band: the remainder a capped bar leaves is always worth finishing here.
    rules = settings.rules.model_copy(update={"drift_tolerance": Decimal("0.01")})
    settings = settings.model_copy(update={"strategy": strategy, "rules": rules})
    volume = 1.0  # BTC per hour: the cap lets 0.1 BTC trade per bar
    bars = [sources.Bar(T0 + k * HOUR, 20000, 20010, 19990, 20000, volume) for k in range(8)]
    result = Backtest(settings, sources.candle_source(settings, {"BTC-USD": bars}, {})).run()
    per_bar: dict[int, Decimal] = defaultdict(Decimal)
    for f in result.fills:
        per_bar[(f["ts_ns"] - T0) // HOUR] += Decimal(f["size"])
    assert per_bar and max(per_bar.values()) <= PARTICIPATION_CAP * Decimal(volume)
    assert len(per_bar) >= 3  # the 0.4 BTC target took several bars
    assert result.summary["participation_capped_orders"] > 0
    assert Decimal(result.samples[-1]["markets"]["BTC-USD"]["position"]) > Decimal("0.3")
