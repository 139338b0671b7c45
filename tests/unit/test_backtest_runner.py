"""The backtest loop's shortcuts change nothing: the run equals one that takes none of them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.shared import SHARED, needs_shared

from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.backtest.scenarios import load_scenario
from bot.config import load

CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"


def _run(monkeypatch: pytest.MonkeyPatch | None, seed: int,
         activity: dict[str, float]) -> tuple[Backtest, Any]:
    settings = load(None, env_file=None, strategy={"targets": {"BTC-USD": "0.05", "ETH-USD": "-0.5"}})
    src = sources.sim_source(settings, seed, 0.05, step_secs=0.1, activity=activity or None)
    backtest = Backtest(settings, src, fold_worked=monkeypatch is None)
    if monkeypatch is not None:
        # No shortcut: a full Engine.tick() at every tick-grid point, and every market event
        # forwarded to the paper venues whether or not an order rests there.
        monkeypatch.setattr(Backtest, "_busy", lambda self: True)
        for venue in ("paper", "spot_paper"):
            monkeypatch.setattr(type(backtest), venue, property(
                lambda self, v=venue: self.__dict__[v],
                lambda self, value, v=venue: self.__dict__.__setitem__(v, _AlwaysResting(value))),
                raising=False)
    return backtest, backtest.run()


def _same(summary: dict[str, Any]) -> str:
    """The summary but its wall-clock figure (`run_secs`), as comparable bytes."""
    return json.dumps({k: v for k, v in summary.items() if k != "run_secs"}, sort_keys=True)


class _AlwaysResting:
    """A PaperVenue whose `resting` view is never empty, so the loop forwards everything."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def resting(self) -> dict[int, Any]:
        return {0: None}

    def on_market_event(self, event: Any) -> None:
        self._inner.on_market_event(event)


# Idle ticks keep the peak equity exactly as full ticks would (equity may rise with no order worked).
@pytest.mark.parametrize(("seed", "activity"), [
    (4, {}), (2, {"taker_trades_per_sec": 40.0, "level_updates_per_sec": 100.0})])
def test_idle_ticks_and_skipped_forwarding_give_the_same_run(monkeypatch: pytest.MonkeyPatch, seed: int,
                                                            activity: dict[str, float]) -> None:
    fast, fast_result = _run(None, seed, activity)
    full, full_result = _run(monkeypatch, seed, activity)
    assert fast_result.summary["fills"] > 0 and fast_result.summary["decisions"] > 0
    assert _same(fast_result.summary) == _same(full_result.summary)
    assert fast_result.fills == full_result.fills
    assert fast_result.timeline == full_result.timeline
    assert fast_result.samples == full_result.samples
    assert fast.engine.peak_equity == full.engine.peak_equity


def _carry_run(skip_idle: bool, ladders: bool = True, fold_worked: bool = True) -> tuple[Backtest, Any]:
    """A carry that opens, idles for a while and re-sizes on real BTC candles with rich funding."""
    settings = load(None, env_file=None).model_copy(update={"markets": ("BTC-USD",)})
    settings = settings.model_copy(update={
        "rules": settings.rules.model_copy(update={"audit_interval_secs": 900.0,
                                                   "drift_tolerance": Decimal("0.01")}),
        "execution": settings.execution.model_copy(update={"hedge_leg_risk_budget_usd_secs": Decimal(5000),
                                                           "min_notional_usd": Decimal(1)}),
    })
    start = sources.parse_time("2022-11-08T12:00", "x")
    bars = sources.load_candles(CANDLES, start, start + 4 * sources.NS_PER_HOUR)
    funding = {"BTC-USD": {b.ts_ns + sources.NS_PER_HOUR: Decimal("0.0003") for b in bars}}
    backtest = Backtest(settings, sources.candle_source(settings, {"BTC-USD": bars}, funding),
                        skip_idle=skip_idle, ladders=ladders, fold_worked=fold_worked)
    return backtest, backtest.run()


# The skipped idle ticks are folded exactly: a hedge's leg-risk clock is where a tick-by-tick run has
# it when the next perp child fills (a stale clock made a false `leg_risk_budget` unwind).
@needs_shared
def test_folding_idle_ticks_keeps_the_hedge_clock_and_every_decision() -> None:
    fast, fast_result = _carry_run(True)
    full, full_result = _carry_run(False)
    decisions = [e for e in fast_result.timeline if e["kind"] == "decision"]
    # The carry opens and then holds its base size (it is not re-sized): one decision at least.
    assert decisions and any(e["carry"] == "open" for e in decisions)
    assert decisions == [e for e in full_result.timeline if e["kind"] == "decision"]
    assert fast_result.fills == full_result.fills
    assert _same(fast_result.summary) == _same(full_result.summary)
    assert fast.engine.hedges["BTC-USD"].unwinds == full.engine.hedges["BTC-USD"].unwinds == 0


FUNDING = SHARED / "data/funding/BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"


def _bar_path_run(monkeypatch: pytest.MonkeyPatch | None, sample_secs: int | None = None,
                  skip_extremes: bool = True, target: str | None = None, ladders: bool = True,
                  fold_worked: bool = True) -> Any:
    settings = load(None, env_file=None, **({"strategy": {"targets": {"BTC-USD": target}}} if target else {}))
    data = sources.load_candle_data([str(CANDLES)], [str(FUNDING)], funding_offset_hours=-3,
                                    start_ns=sources.parse_time("2020-01-01", "x"),
                                    end_ns=sources.parse_time("2020-02-15", "x"))
    backtest = Backtest(settings, data.source(settings, steps_per_bar=sources.BAR_PATH_STEPS),
                        sample_secs=sample_secs, skip_extremes=skip_extremes, ladders=ladders,
                        fold_worked=fold_worked)
    if monkeypatch is not None:  # no skipping: every bar's extremes and close, flat or not
        monkeypatch.setattr(Backtest, "_exposed", lambda self: True)
    result = backtest.run()
    result.extremes_taken = backtest._extreme_events  # type: ignore[attr-defined]
    result.folded_ticks = backtest._folded_ticks  # type: ignore[attr-defined]
    return result


def _same_run(a: Any, b: Any, skip: frozenset[str] = frozenset({"run_secs"})) -> None:
    assert a.timeline == b.timeline
    assert a.fills == b.fills
    assert a.samples == b.samples
    assert a.funding == b.funding
    assert {k: v for k, v in a.summary.items() if k not in skip} == \
        {k: v for k, v in b.summary.items() if k not in skip}


# The bar path skips a bar's marks while flat with nothing worked; visiting them changes nothing.
@needs_shared
def test_the_bar_path_skipping_flat_bars_gives_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _bar_path_run(None)
    full = _bar_path_run(monkeypatch)
    assert full.events > fast.events  # some bars were flat and idle, and were skipped
    decisions = [e for e in fast.timeline if e["kind"] == "decision"]
    assert len(decisions) >= 2 and any(s["gross_notional"] != "0.000000" for s in fast.samples)
    _same_run(fast, full, frozenset({"run_secs", "events"}))


# While a leg is open and nothing is worked, the bar's extremes are taken without applying their
# marks (drawdown and margin at the High and the Low); applying them gives the same run. With
# samples within the bars (every 15 min) the samples read the extremes, and they are applied.
# A static long (the default config's carry is near delta-neutral) makes the extremes the drawdown.
@needs_shared
@pytest.mark.parametrize(("sample_secs", "target", "taken"),
                         [(None, None, True), (None, "0.5", True), (900, None, False)])
def test_taking_the_extremes_unapplied_gives_the_same_run(sample_secs: int | None, target: str | None,
                                                          taken: bool) -> None:
    fast = _bar_path_run(None, sample_secs, target=target)
    full = _bar_path_run(None, sample_secs, skip_extremes=False, target=target)
    assert (fast.extremes_taken > 0) is taken and full.extremes_taken == 0
    assert fast.summary["max_drawdown_intrabar"] > 0
    _same_run(fast, full)


# Candle books applied as price lists (`sources.Ladder`) are the books their snapshots make: the
# same run on the bar path (flat, exposed and worked stretches) and on the event path with a
# hedged carry worked tick by tick (spot twin books, resting passive children).
@needs_shared
def test_ladder_books_give_the_same_run_as_snapshots() -> None:
    _same_run(_bar_path_run(None), _bar_path_run(None, ladders=False))
    fast, fast_result = _carry_run(True)
    _, full_result = _carry_run(True, ladders=False)
    assert fast_result.summary["fills"] > 0 and fast.spot_paper is not None
    _same_run(fast_result, full_result)


# While a parent is worked, the ticks that would repeat a tick that changed nothing (same books,
# orders, fills and quiet hedges up to the next batch, no order-manager threshold in between) are
# folded; running every one of them gives the same decisions, fills, samples and summary: on the
# bar path (passive perp children resting for minutes) and with a hedged carry on the event path.
@needs_shared
def test_folding_worked_ticks_gives_the_same_run() -> None:
    fast, full = _bar_path_run(None), _bar_path_run(None, fold_worked=False)
    assert fast.folded_ticks > 100 and full.folded_ticks == 0
    assert [e for e in fast.timeline if e["kind"] == "decision"]
    _same_run(fast, full)
    carry, carry_result = _carry_run(True)
    every, every_result = _carry_run(True, fold_worked=False)
    assert carry._folded_ticks > 0 and every._folded_ticks == 0 and carry_result.summary["fills"] > 0
    _same_run(carry_result, every_result)
    assert carry.engine.hedges == every.engine.hedges


# A carry opening under a crash with spot hedge orders 30 s late (the hedge gives the leg up after
# 20 s of leg risk): each perp fill's hedge goes out once and the unwind cancels it before it
# reaches the venue. The old hedge counted only its running parent's children: the late order of
# a parent whose window ended was sent again every 5 s, then once per tick, 12,367 spot fills and
# 903,642 USD of fees on a 10,000 USD account in these 6 hours, the spot leg 55 BTC short.
@needs_shared
def test_late_spot_hedge_orders_are_never_sent_twice() -> None:
    settings = load(Path(__file__).resolve().parents[2] / "examples/carry.toml", env_file=None)
    settings = settings.model_copy(update={"markets": ("BTC-USD",)})
    data = sources.load_candle_data([str(CANDLES)], [str(FUNDING)], market="BTC-USD", funding_offset_hours=-3,
                                    start_ns=sources.parse_time("2022-10-20", "x"),
                                    end_ns=sources.parse_time("2022-10-20T06:00", "x"))
    scenarios = [load_scenario("crash-day"), load_scenario("hedge-delay")]
    backtest = Backtest(settings, data.source(settings, steps_per_bar=sources.BAR_PATH_STEPS), scenarios)
    result = backtest.run()

    summary = result.summary
    assert summary["decisions"] >= 1 and Decimal(summary["markets"]["BTC-USD"]["spot_position"]) == 0
    assert summary["fills"] <= 20 and Decimal(summary["fees"]) < 20, summary["fees"]
    # No spot fill larger than the carry's notional allows (max_notional_usd), nor larger than any
    # perp fill it hedges.
    largest_perp = max(Decimal(f["size"]) for f in result.fills if f["venue"] == "perp")
    for fill in (f for f in result.fills if f["venue"] == "spot"):
        assert Decimal(fill["size"]) <= largest_perp, fill
        assert Decimal(fill["size"]) * Decimal(fill["price"]) <= settings.strategy.max_notional_usd, fill
    assert Decimal(summary["final_equity"]) > Decimal("9900")
