"""Performance statistics and the two naive baselines (pure, float maths on sampled series).

Returns are per sample interval and annualised with sqrt(samples per year). Sharpe and Sortino
use a zero risk-free rate. Baselines run on the same sampled prices and settled hourly rates:

- `carry_daily`: always-on delta-neutral carry, short perp + long spot (each leg half the
  market's equity share), rebalanced to that notional at every UTC day boundary; it receives
  funding when the rate is positive and pays it when negative; taker fees on every rebalance.
- `buy_and_hold`: the equity split across the markets' spot (or perp mark when there is no
  spot book) at the first sample, one taker fee, held to the end, unhedged.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

SECS_PER_YEAR = 365 * 24 * 3600
NS_PER_SEC = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SEC


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


def buy_and_hold(samples: list[dict[str, Any]], initial: float, fee_rate: float,
                 sample_secs: float) -> dict[str, Any]:
    """Unhedged: the equity bought equally across the markets at the first sample and held."""
    markets = sorted(samples[0]["markets"]) if samples else []
    if not markets:
        return {**series_stats([], sample_secs), "fees": 0.0, "funding_pnl": 0.0}

    def price(sample: dict[str, Any], m: str) -> float:
        row = sample["markets"][m]
        return row.get("spot_mid") or row["mark"] or 0.0

    start = next((i for i, s in enumerate(samples) if all(price(s, m) for m in markets)), None)
    if start is None:
        return {**series_stats([], sample_secs), "fees": 0.0, "funding_pnl": 0.0}
    first = {m: price(samples[start], m) for m in markets}
    share = initial / len(markets)
    fees = initial * fee_rate
    qty = {m: (share * (1 - fee_rate)) / first[m] for m in markets}
    equity = [initial] * start + [sum(qty[m] * (price(s, m) or first[m]) for m in markets)
                                  for s in samples[start:]]
    return {**series_stats(equity, sample_secs), "fees": _r(fees, 6), "funding_pnl": 0.0,
            "equity": [_r(e, 4) for e in equity]}


def carry_daily(samples: list[dict[str, Any]], funding: list[dict[str, Any]], initial: float,
                perp_fee: float, spot_fee: float, sample_secs: float) -> dict[str, Any]:
    """Always-on delta-neutral carry (short perp, long spot), rebalanced at every UTC day boundary."""
    markets = sorted(samples[0]["markets"]) if samples else []
    if not markets:
        return {**series_stats([], sample_secs), "fees": 0.0, "funding_pnl": 0.0}
    by_ts: dict[int, list[dict[str, Any]]] = {}
    for row in funding:
        by_ts.setdefault(row["ts_ns"], []).append(row)
    cash = initial  # realised: fees, funding, closed price PnL
    size = dict.fromkeys(markets, 0.0)  # spot long == perp short, base units
    entry_perp = dict.fromkeys(markets, 0.0)
    entry_spot = dict.fromkeys(markets, 0.0)
    fees = funding_pnl = 0.0
    last_day = None
    equity = []
    for s in samples:
        rows = s["markets"]
        perp = {m: rows[m]["mark"] or 0.0 for m in markets}
        spot = {m: rows[m].get("spot_mid") or perp[m] for m in markets}
        for f in by_ts.get(s["ts_ns"], []):
            m = f["market"]
            if size.get(m):
                amount = size[m] * f["oracle"] * f["rate_1h"]  # a short receives a positive rate
                cash += amount
                funding_pnl += amount
        unreal = sum(size[m] * ((spot[m] - entry_spot[m]) - (perp[m] - entry_perp[m])) for m in markets)
        value = cash + unreal
        day = s["ts_ns"] // NS_PER_DAY
        if day != last_day and all(perp[m] > 0 for m in markets):
            last_day = day
            cash = value  # mark both legs to market and re-open at today's prices
            for m in markets:
                want = (value / len(markets) / 2) / perp[m]
                cost = abs(want - size[m]) * (perp[m] * perp_fee + spot[m] * spot_fee)
                cash -= cost
                fees += cost
                size[m], entry_perp[m], entry_spot[m] = want, perp[m], spot[m]
            value = cash
        equity.append(value)
    return {**series_stats(equity, sample_secs), "fees": _r(fees, 6), "funding_pnl": _r(funding_pnl, 6),
            "equity": [_r(e, 4) for e in equity]}
