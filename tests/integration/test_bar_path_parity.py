"""The bar-level fast path agrees with the event path on the same candles.

In a candle backtest the rules see each bar's start only (decisions at bar and audit times);
the points within a bar move the books, the marks and the paper venue. Both paths sample one
price curve (O, the two extremes and C at 0, 1/4, 1/2 and 3/4 of the bar, `sources.path_at`):
the event path at 12 points per hourly bar, the bar path (`--bar-path`) at the bar start and,
while nothing is worked, only at the extremes and the close as marks (drawdown, liquidation,
the hedge leg's value); while orders or hedges are worked both walk the same curve every 10 s.
So decisions must agree exactly in time and reason, targets within one size step, fills in
count, and final equity within `EQUITY_TOLERANCE` of the initial equity (what remains is a
mark between two points the bar path does not visit: equity between vertices is monotone in
price for one leg and flat for a matched hedge, so the extremes bound it).

The runs: the default config (carry on, directional targets none), the presets
examples/carry.toml and examples/directional.toml on BTC and ETH hourly candles with Binance
funding over a volatile month (2022-10-20..2022-11-20, the FTX collapse), and a carry that
opens and closes on a synthetic 40 h / 8 h funding cycle (several decisions a week).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.shared import SHARED, needs_shared

from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.config import Settings, load
from bot.strategy.targets import parse_target

ROOT = Path(__file__).resolve().parents[2]
HOUR = sources.NS_PER_HOUR
EVENT_STEPS = 12  # the default for hourly bars: a point every 5 min
EQUITY_TOLERANCE = Decimal("0.0005")  # of the initial equity
FILES = {t: (SHARED / f"data/candles/{t}USDT_1h_2020-01_2024-04.csv",
             SHARED / f"data/funding/{t}-USDT_binance_2020-01-01_2024-01-01_funding_history.csv")
         for t in ("BTC", "ETH")}


def _both(settings: Settings, data: sources.CandleData) -> tuple[Any, Any]:
    event, bar = (Backtest(settings, data.source(settings, steps_per_bar=n)).run()
                  for n in (EVENT_STEPS, sources.BAR_PATH_STEPS))
    return event, bar


def _assert_agree(event: Any, bar: Any) -> list[dict[str, Any]]:
    assert bar.events < event.events / 2  # the point of the fast path
    d_event = [e for e in event.timeline if e["kind"] == "decision"]
    d_bar = [e for e in bar.timeline if e["kind"] == "decision"]
    assert [(e["ts_ns"], e["market"], e["reason"]) for e in d_event] == \
        [(e["ts_ns"], e["market"], e["reason"]) for e in d_bar]
    assert all(e["ts_ns"] % HOUR == 0 for e in d_bar)  # at bar starts only
    step = Decimal("0.001")  # the coarser of BTC-USD's and ETH-USD's size steps
    for a, b in zip(d_event, d_bar, strict=True):
        assert abs(Decimal(a["target_after"]) - Decimal(b["target_after"])) <= step, (a, b)
    assert event.summary["fills"] == bar.summary["fills"]
    initial = Decimal(event.summary["initial_equity"])
    gap = abs(Decimal(event.summary["final_equity"]) - Decimal(bar.summary["final_equity"]))
    assert gap <= initial * EQUITY_TOLERANCE, gap
    return d_event


@needs_shared
@pytest.mark.parametrize("config", [None, "examples/carry.toml", "examples/directional.toml"])
def test_bar_path_and_event_path_agree_on_the_presets(config: str | None) -> None:
    settings = load(ROOT / config if config else None, env_file=None)
    markets = [t.split("-")[0] for t in settings.markets]
    data = sources.load_candle_data([str(FILES[m][0]) for m in markets], [str(FILES[m][1]) for m in markets],
                                    start_ns=sources.parse_time("2022-10-20", "s"),
                                    end_ns=sources.parse_time("2022-11-20", "e"), funding_offset_hours=-3)
    decisions = _assert_agree(*_both(settings, data))
    assert decisions  # each config trades in this month


@needs_shared
def test_bar_path_and_event_path_agree_on_a_carry_that_opens_and_closes() -> None:
    settings = load(None, env_file=None)
    settings = settings.model_copy(update={
        "strategy": settings.strategy.model_copy(update={
            "targets": {"BTC-USD": parse_target("0.3")},
            # a carry that follows the 40 h / 8 h funding cycle within the week (several decisions)
            "carry": settings.strategy.carry.model_copy(update={
                "signal_half_life_hours": 6.0, "entry_half_life_hours": 6.0, "exit_confirm_hours": 3,
                "horizon_hours": 72, "exit_threshold_bps": Decimal(5), "min_persistence_hours": 2})})})
    data = sources.load_candle_data([str(FILES["BTC"][0])], start_ns=sources.parse_time("2022-11-01", "s"),
                                    end_ns=sources.parse_time("2022-11-15", "e"))
    data.funding = {"BTC-USD": {b.ts_ns + HOUR: Decimal("0.0003") * (1 if (b.ts_ns // HOUR) % 48 < 40 else -1)
                                for b in data.candles["BTC-USD"]}}
    decisions = _assert_agree(*_both(settings, data))
    carry = [e["carry"] for e in decisions]
    assert len(decisions) >= 5 and "open" in carry and carry.index("open") < len(carry) - 1, carry
