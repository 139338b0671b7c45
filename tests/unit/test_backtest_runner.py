"""The backtest loop's shortcuts change nothing: the run equals one that takes none of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.config import load


def _run(monkeypatch: pytest.MonkeyPatch | None, seed: int,
         activity: dict[str, float]) -> tuple[Backtest, Any]:
    settings = load(None, env_file=None)
    src = sources.sim_source(settings, seed, 0.05, step_secs=0.1, activity=activity or None)
    backtest = Backtest(settings, src)
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
    assert json.dumps(fast_result.summary, sort_keys=True) == json.dumps(full_result.summary, sort_keys=True)
    assert fast_result.fills == full_result.fills
    assert fast_result.timeline == full_result.timeline
    assert fast_result.samples == full_result.samples
    assert fast.engine.peak_equity == full.engine.peak_equity
