"""Naive baselines beside a backtest, at the bot's own sizes, net of entry and exit fees on both legs.

All run on the run's own sampled prices (perp mark, spot mid) and the settled hourly funding
rates (`funding.json` rows: rate and oracle at each top of the hour); fees are taker fees on
every trade of every leg, the position is closed at the last sample (exit fees paid):

- `carry_always_on`: short perp + long spot of `notional_usd` per market from the first sample
  to the last, never re-sized. `notional_usd` is what the carry sleeve may hold: the market's
  equity share x `carry_budget` x `carry.max_leverage` (the bot's own carry size).
- `carry_sign_daily`: the same legs, held on a UTC day only when the previous day's funding
  sum was positive (a short perp receives it); each switch pays both legs' fees.
- `static_target`: the operator's directional targets (base units) held on the perp,
  unmanaged, paying or receiving funding.
- `buy_and_hold`: the whole equity bought in spot (perp mark without a spot book) split across
  the markets, unhedged, no funding.

Funding on a short perp of base size q at oracle price P and hourly rate r: +q x P x r.
Prices are floats (a baseline is a yardstick, not an account); money leaves as decimal strings.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bot.clock import NS_PER_DAY

from .metrics import series_stats


def _money(x: float) -> str:
    return str(Decimal(repr(x)).quantize(Decimal("0.000001")))


def _num(x: Any) -> float:
    return float(x) if x is not None else 0.0


class _Prices:
    """Per sample and market: the perp mark and the spot mid (the mark without a spot book)."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.markets = sorted(samples[0]["markets"]) if samples else []
        self.perp = [{m: _num(s["markets"][m]["mark"]) for m in self.markets} for s in samples]
        self.spot = [{m: _num(s["markets"][m].get("spot_mid")) or self.perp[i][m] for m in self.markets}
                     for i, s in enumerate(samples)]
        self.ts = [s["ts_ns"] for s in samples]

    def first_priced(self) -> int | None:
        return next((i for i, p in enumerate(self.perp) if all(p.values())), None)


def _result(equity: list[float], sample_secs: float, fees: float, funding: float, initial: float,
            **extra: Any) -> dict[str, Any]:
    """Statistics from the initial equity (so the entry fees count), the curve as sampled."""
    stats = series_stats([initial, *equity] if equity else [], sample_secs)
    return {**stats, "fees": _money(fees), "funding_pnl": _money(funding), **extra,
            "equity": [round(e, 4) for e in equity]}


def _empty(sample_secs: float) -> dict[str, Any]:
    return _result([], sample_secs, 0.0, 0.0, 0.0)


def _funding_by_ts(funding: list[dict[str, Any]]) -> dict[int, list[tuple[str, float, float]]]:
    out: dict[int, list[tuple[str, float, float]]] = {}
    for row in funding:
        out.setdefault(row["ts_ns"], []).append((row["market"], _num(row["rate_1h"]), _num(row["oracle"])))
    return out


def _carry(prices: _Prices, funding: list[dict[str, Any]], initial: float, notional: float,
           perp_fee: float, spot_fee: float, sample_secs: float,
           hold: Callable[[str, dict[str, float] | None], bool]) -> dict[str, Any]:
    """Short perp + long spot of `notional` per market on the UTC days `hold(market, the previous
    day's summed hourly rates or None on the first day)` says; entered at that day's first sample."""
    start = prices.first_priced()
    if start is None:
        return _empty(sample_secs)
    by_ts = _funding_by_ts(funding)
    cash = initial
    size = dict.fromkeys(prices.markets, 0.0)  # base units: spot long == perp short
    entry_perp = dict.fromkeys(prices.markets, 0.0)
    entry_spot = dict.fromkeys(prices.markets, 0.0)
    day_funding = dict.fromkeys(prices.markets, 0.0)  # the rate summed over the current UTC day
    last_day: int | None = None
    fees = funding_pnl = 0.0
    equity = [initial] * start

    def trade(m: str, want: float, perp: float, spot: float) -> None:
        nonlocal cash, fees
        if want == size[m]:
            return
        cash += size[m] * ((spot - entry_spot[m]) - (perp - entry_perp[m]))  # realise the old legs
        cost = abs(want - size[m]) * (perp * perp_fee + spot * spot_fee)
        cash -= cost
        fees += cost
        size[m], entry_perp[m], entry_spot[m] = want, perp, spot

    last = len(prices.ts) - 1
    for i in range(start, len(prices.ts)):
        perp, spot = prices.perp[i], prices.spot[i]
        for m, rate, oracle in by_ts.get(prices.ts[i], ()):
            if m in size:
                day_funding[m] += rate
                if size[m]:
                    amount = size[m] * oracle * rate
                    cash += amount
                    funding_pnl += amount
        day = prices.ts[i] // NS_PER_DAY
        if day != last_day:
            previous = day_funding if last_day is not None else None
            for m in prices.markets:
                on = hold(m, previous) and perp[m] > 0
                trade(m, (size[m] or notional / perp[m]) if on else 0.0, perp[m], spot[m])
            day_funding = dict.fromkeys(prices.markets, 0.0)
            last_day = day
        if i == last:
            for m in prices.markets:
                trade(m, 0.0, perp[m], spot[m])  # exit: both legs' fees
        equity.append(cash + sum(size[m] * ((spot[m] - entry_spot[m]) - (perp[m] - entry_perp[m]))
                                 for m in prices.markets))
    return _result(equity, sample_secs, fees, funding_pnl, initial, notional_usd=_money(notional))


def carry_always_on(samples: list[dict[str, Any]], funding: list[dict[str, Any]], initial: float,
                    notional: float, perp_fee: float, spot_fee: float, sample_secs: float) -> dict[str, Any]:
    return _carry(_Prices(samples), funding, initial, notional, perp_fee, spot_fee, sample_secs,
                  lambda market, previous: True)


def carry_sign_daily(samples: list[dict[str, Any]], funding: list[dict[str, Any]], initial: float,
                     notional: float, perp_fee: float, spot_fee: float, sample_secs: float) -> dict[str, Any]:
    return _carry(_Prices(samples), funding, initial, notional, perp_fee, spot_fee, sample_secs,
                  lambda market, previous: previous is not None and previous[market] > 0)


def static_target(samples: list[dict[str, Any]], funding: list[dict[str, Any]], initial: float,
                  targets: dict[str, float], perp_fee: float, sample_secs: float) -> dict[str, Any]:
    """The operator targets held on the perp from the first priced sample, exit at the last."""
    prices = _Prices(samples)
    start = prices.first_priced()
    held = {m: targets.get(m, 0.0) for m in prices.markets}
    if start is None:
        return _empty(sample_secs)
    by_ts = _funding_by_ts(funding)
    entry = prices.perp[start]
    fees = sum(abs(q) * entry[m] * perp_fee for m, q in held.items())
    cash, funding_pnl = initial - fees, 0.0
    equity = [initial] * start
    for i in range(start, len(prices.ts)):
        for m, rate, oracle in by_ts.get(prices.ts[i], ()):
            if held.get(m):
                amount = -held[m] * oracle * rate  # a long pays a positive rate
                cash += amount
                funding_pnl += amount
        value = cash + sum(q * (prices.perp[i][m] - entry[m]) for m, q in held.items())
        if i == len(prices.ts) - 1:
            exit_fee = sum(abs(q) * prices.perp[i][m] * perp_fee for m, q in held.items())
            value -= exit_fee
            fees += exit_fee
        equity.append(value)
    return _result(equity, sample_secs, fees, funding_pnl, initial,
                   targets={m: _money(q) for m, q in sorted(held.items())})


def buy_and_hold(samples: list[dict[str, Any]], initial: float, spot_fee: float,
                 sample_secs: float) -> dict[str, Any]:
    """The equity bought equally across the markets' spot at the first priced sample, sold at the last."""
    prices = _Prices(samples)
    start = prices.first_priced()
    if start is None or not prices.markets:
        return _empty(sample_secs)
    first = prices.spot[start]
    share = initial / len(prices.markets)
    qty = {m: share * (1 - spot_fee) / first[m] for m in prices.markets}
    fees = initial * spot_fee
    equity = [initial] * start
    for i in range(start, len(prices.ts)):
        value = sum(qty[m] * prices.spot[i][m] for m in prices.markets)
        if i == len(prices.ts) - 1:
            fees += value * spot_fee
            value *= 1 - spot_fee
        equity.append(value)
    return _result(equity, sample_secs, fees, 0.0, initial)
