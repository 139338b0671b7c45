"""A simulated market's past: hourly bars and funding before the simulator started (pure).

A real venue has history; the daemon reads it at start to seed its sizing volatility and
funding trend (bot.history). So that the simulator behaves the same, each simulated market has a
deterministic past drawn from its own parameters: hourly GBM at the model's average variance
(normal and high-volatility regimes mixed at their long-run shares, plus jumps) and the same
Ornstein-Uhlenbeck funding premium as the live model, hourly. The path is scaled so that the
last close is the market's starting price, and its seed is separate from the live model's
stream, so asking for history never changes what the simulator does next.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from bot.clock import NS_PER_HOUR

if TYPE_CHECKING:
    from bot.sim.market import SimMarketParams

HOURS_PER_YEAR = 8760
MAX_HOURS = 24 * 365


@dataclass(frozen=True, slots=True)
class HistoryBar:
    """One past hour: `ts_ns` is the bar's start; the rate settled at the bar's end."""

    ts_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    funding_rate_1h: Decimal


def _hourly_sigma(p: SimMarketParams) -> float:
    enter, leave = p.high_vol_enter_per_sec, p.high_vol_exit_per_sec
    high_share = enter / (enter + leave) if enter + leave > 0 else 0.0
    var_year = p.annual_vol ** 2 * ((1 - high_share) + high_share * p.high_vol_multiplier ** 2)
    var_year += p.jump_per_sec * 365 * 24 * 3600 * p.jump_size ** 2
    return math.sqrt(var_year / HOURS_PER_YEAR)


def history_bars(p: SimMarketParams, seed: int, start_ns: int, hours: int) -> list[HistoryBar]:
    """The `hours` bars before `start_ns` (oldest first), the last one ending at its hour."""
    hours = max(0, min(hours, MAX_HOURS))
    rnd = random.Random(f"history:{seed}:{p.ticker}")
    sigma = _hourly_sigma(p)
    theta = p.funding_reversion_per_hour
    decay = math.exp(-theta)
    ou_sd = p.funding_vol_1h * math.sqrt((1 - decay * decay) / (2 * theta)) if theta > 0 else p.funding_vol_1h
    log_p, premium = 0.0, p.funding_mean_1h
    raw = []
    for _ in range(hours):
        o = log_p
        log_p += -0.5 * sigma * sigma + sigma * rnd.gauss(0, 1)
        wick_hi = abs(rnd.gauss(0, 1)) * sigma * 0.5
        wick_lo = abs(rnd.gauss(0, 1)) * sigma * 0.5
        premium = p.funding_mean_1h + (premium - p.funding_mean_1h) * decay + ou_sd * rnd.gauss(0, 1)
        premium = max(-p.funding_clamp_1h, min(p.funding_clamp_1h, premium))
        raw.append((o, max(o, log_p) + wick_hi, min(o, log_p) - wick_lo, log_p, premium))
    if not raw:
        return []
    shift = math.log(float(p.initial_price)) - raw[-1][3]
    tick = p.tick_size
    end_hour = start_ns // NS_PER_HOUR
    out = []
    for k, (o, hi, lo, c, rate) in enumerate(raw):
        ts = (end_hour - hours + k) * NS_PER_HOUR
        o_, h_, l_, c_ = (_on_tick(math.exp(x + shift), tick) for x in (o, hi, lo, c))
        out.append(HistoryBar(ts, o_, max(h_, o_, c_), min(l_, o_, c_), c_,
                              Decimal(repr(round(rate, 9))).normalize() + Decimal(0)))
    return out


def _on_tick(price: float, tick: Decimal) -> Decimal:
    steps = Decimal(repr(price)) / tick
    return max(steps.to_integral_value(rounding=ROUND_HALF_EVEN), Decimal(1)) * tick
