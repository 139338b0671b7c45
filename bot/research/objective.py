"""One backtest on one window, its metrics and its score; out-of-sample metrics over several windows.

The backtest is `perpbot backtest`'s own: `sources.candle_source` over the window's bars and
funding, run by `runner.Backtest` with the trial's settings. Scores are maximised:

- `return_over_drawdown` (default): total return / max(max drawdown, min_drawdown)
- `return`, `sharpe`, `sortino`: that metric as is

each minus `turnover_penalty` x turnover (traded notional on all legs / initial equity), so a
parameter set has to earn its trading.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.backtest import metrics as stats
from bot.backtest import sources
from bot.backtest.runner import Backtest
from bot.backtest.warmup import add_warmup
from bot.clock import NS_PER_HOUR
from bot.config import Settings

from .data import ResearchData
from .folds import Window
from .space import OptimizeSpec

METRICS = ("total_return", "max_drawdown", "sharpe", "sortino", "vol_annual", "turnover", "fees",
           "funding_pnl", "slippage", "price_pnl", "liquidations", "fills", "decisions")
MONEY = ("fees", "funding_pnl", "slippage", "price_pnl")  # decimal strings, as in summary.json
SUMMED = ("turnover", "liquidations", "fills", "decisions")


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # METRICS, `score` and `run_secs`
    equity: list[float]
    sample_secs: int


def score(metrics: dict[str, Any], spec: OptimizeSpec) -> float:
    penalty = spec.turnover_penalty * float(metrics.get("turnover", 0.0))
    if spec.objective == "return_over_drawdown":
        base = metrics["total_return"] / max(metrics["max_drawdown"], spec.min_drawdown)
    else:
        base = float(metrics["total_return" if spec.objective == "return" else spec.objective])
    return round(base - penalty, 8)


def evaluate(settings: Settings, data: ResearchData, window: Window, spec: OptimizeSpec,
             steps_per_bar: int | None = None) -> Evaluation:
    """Run the backtest over `window` with `settings` and score it (`steps_per_bar`: the candle
    path's points per bar; `sources.BAR_PATH_STEPS` is the bar-level fast path)."""
    candles, funding = data.window(window)
    source = sources.candle_source(settings, candles, funding, steps_per_bar=steps_per_bar)
    # Warmed on the rows before the window, as the daemon seeds from venue history (warmup.py).
    hours, start = settings.strategy.history_hours, window.start_ns
    since = start - hours * NS_PER_HOUR
    add_warmup(source, {t: c.bars(since, start) for t, c in data.candles.items()},
               {t: f.window(since, start - NS_PER_HOUR) for t, f in data.funding.items()}, hours)
    result = Backtest(settings, source).run()
    summary = result.summary
    metrics = {k: summary[k] for k in METRICS}
    metrics["score"] = score(metrics, spec)
    metrics["run_secs"] = summary.get("run_secs", round(result.elapsed_secs, 3))
    return Evaluation(metrics, [float(s["equity"]) for s in result.samples], summary["sample_secs"])


def out_of_sample(evaluations: list[Evaluation], spec: OptimizeSpec) -> dict[str, Any]:
    """The test windows as one run: equity curves chained end to end, flows summed."""
    if not evaluations:
        return {}
    chained: list[float] = []
    for ev in evaluations:
        if not ev.equity:
            continue
        if not chained:
            chained = list(ev.equity)
            continue
        scale = chained[-1] / ev.equity[0] if ev.equity[0] else 1.0
        chained += [x * scale for x in ev.equity[1:]]
    sample_secs = evaluations[0].sample_secs
    out: dict[str, Any] = dict(stats.series_stats(chained, sample_secs))
    for key in SUMMED:
        out[key] = round(sum(ev.metrics[key] for ev in evaluations), 6)
    for key in MONEY:
        out[key] = str(sum((Decimal(str(ev.metrics[key])) for ev in evaluations), Decimal(0)))
    out["score"] = score(out, spec)
    out["windows"] = len(evaluations)
    return out
