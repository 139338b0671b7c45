"""The bar-level fast path agrees with the event path on the same candles.

The fast path (`--bar-path`) walks each bar through 4 points (Open, the two extremes, Close)
instead of 13, and every 10 s between two points while orders are worked; everything else is the
same engine, rules, sleeves, order managers and paper fills. The comparison runs a carry that
opens and closes on real BTC candles with a synthetic funding regime (40 h rich, 8 h adverse)
through both paths and requires: the same decisions at the same times with targets within one
size step, the same number of fills, and final equity within 0.1% of the initial equity.

Sizing here does not follow volatility (`target_vol_annual` far above any realised volatility)
and flags need all four to agree (so decisions come from audits): the short-horizon volatility
estimators are fed by oracle updates, whose density differs between the paths, so with
vol-targeted sizing or the volatility flag the two paths can decide differently (issue #18's
sizing on bar-scale horizons removes that dependence).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from support.shared import SHARED, needs_shared

from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.config import load

CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
HOUR = sources.NS_PER_HOUR
EQUITY_TOLERANCE = Decimal("0.001")  # of the initial equity


def _runs() -> dict[int, Any]:
    settings = load(None, env_file=None)
    settings = settings.model_copy(update={
        "rules": settings.rules.model_copy(update={"min_flags": 4}),
        "strategy": settings.strategy.model_copy(update={
            "target_vol_annual": Decimal(1000), "targets": {"BTC-USD": Decimal("0.3")},
            # a carry that follows the 40 h / 8 h funding cycle within the week (several decisions)
            "carry": settings.strategy.carry.model_copy(update={
                "signal_half_life_hours": 6.0, "entry_half_life_hours": 6.0, "exit_confirm_hours": 3,
                "horizon_hours": 72, "exit_threshold_bps": Decimal(5), "min_persistence_hours": 2})})})
    data = sources.load_candle_data([str(CANDLES)], start_ns=sources.parse_time("2022-11-01", "s"),
                                    end_ns=sources.parse_time("2022-11-08", "e"))
    data.funding = {"BTC-USD": {b.ts_ns + HOUR: Decimal("0.0003") * (1 if (b.ts_ns // HOUR) % 48 < 40 else -1)
                                for b in data.candles["BTC-USD"]}}
    return {n: Backtest(settings, data.source(settings, steps_per_bar=n)).run()
            for n in (12, sources.BAR_PATH_STEPS)}


@needs_shared
def test_bar_path_and_event_path_agree() -> None:
    runs = _runs()
    event, bar = runs[12], runs[sources.BAR_PATH_STEPS]
    assert bar.events < event.events / 2  # the point of the fast path
    d_event = [e for e in event.timeline if e["kind"] == "decision"]
    d_bar = [e for e in bar.timeline if e["kind"] == "decision"]
    assert len(d_event) >= 5 and any(e["carry"] == "open" for e in d_event)
    assert [(e["ts_ns"], e["reason"]) for e in d_event] == [(e["ts_ns"], e["reason"]) for e in d_bar]
    step = Decimal("0.0001")  # BTC-USD step size
    for a, b in zip(d_event, d_bar, strict=True):
        assert abs(Decimal(a["target_after"]) - Decimal(b["target_after"])) <= step
    # The carry's legs are TWAP children on two books whose intrabar paths differ: the counts may
    # differ by a few children (the decisions above and the equity below must agree).
    fills_event, fills_bar = event.summary["fills"], bar.summary["fills"]
    assert abs(fills_event - fills_bar) <= max(2, fills_event // 20), (fills_event, fills_bar)
    initial = Decimal(event.summary["initial_equity"])
    gap = abs(Decimal(event.summary["final_equity"]) - Decimal(bar.summary["final_equity"]))
    assert gap <= initial * EQUITY_TOLERANCE, gap
