"""Performance statistics on sampled equity series (pure, float maths).

Returns are per sample interval and annualised with sqrt(samples per year). Sharpe and Sortino
use a zero risk-free rate. The naive baselines are in `baselines`.
"""

from __future__ import annotations

import itertools
import math

from bot.clock import SECS_PER_YEAR


def _r(x: float, digits: int = 8) -> float:
    return round(float(x), digits) if math.isfinite(x) else 0.0


def series_stats(equity: list[float], sample_secs: float) -> dict[str, float]:
    """Total return, annualised vol, Sharpe, Sortino and max drawdown of an equity series."""
    if len(equity) < 2 or equity[0] <= 0:
        return {"total_return": 0.0, "vol_annual": 0.0, "sharpe": 0.0, "sortino": 0.0, "max_drawdown": 0.0}
    rets = [b / a - 1 if a > 0 else 0.0 for a, b in itertools.pairwise(equity)]
    n = len(rets)
    mean = sum(rets) / n
    var = sum((r - mean) ** 2 for r in rets) / (n - 1) if n > 1 else 0.0
    down = sum(min(r, 0.0) ** 2 for r in rets) / n
    per_year = SECS_PER_YEAR / sample_secs
    vol = math.sqrt(var * per_year)
    sharpe = mean / math.sqrt(var) * math.sqrt(per_year) if var > 1e-30 else 0.0
    sortino = mean / math.sqrt(down) * math.sqrt(per_year) if down > 1e-30 else 0.0
    peak, mdd = equity[0], 0.0
    for v in equity:
        peak = max(peak, v)
        if peak > 0:
            mdd = max(mdd, 1 - v / peak)
    return {"total_return": _r(equity[-1] / equity[0] - 1), "vol_annual": _r(vol, 6),
            "sharpe": _r(sharpe, 6), "sortino": _r(sortino, 6), "max_drawdown": _r(mdd)}


def drawdown(equity: list[float]) -> list[float]:
    """Drawdown from the running peak at each sample (0 .. 1)."""
    out, peak = [], 0.0
    for v in equity:
        peak = max(peak, v)
        out.append(1 - v / peak if peak > 0 else 0.0)
    return out
