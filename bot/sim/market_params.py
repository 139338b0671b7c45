"""A simulated market's parameters, hook types and precomputed draw tables (see bot.sim.market)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist

from bot.clock import NS_PER_SEC
from bot.domain import BookLevel, MarketEvent

RATE_DECIMALS = 9  # the indexer's 1-hour rates carry 9 decimals ("0.000002375")


@dataclass(frozen=True, slots=True)
class SimMarketParams:
    """Shape of one simulated perpetual. Hazard rates are per second: steps may be any length."""

    ticker: str = "BTC-USD"
    initial_price: Decimal = Decimal("60000")
    tick_size: Decimal = Decimal("1")
    step_size: Decimal = Decimal("0.0001")
    min_order_size: Decimal = Decimal("0.0001")
    # price
    annual_vol: float = 0.6
    high_vol_multiplier: float = 3.0
    high_vol_enter_per_sec: float = 1 / 3600  # regime switch hazard normal -> high
    high_vol_exit_per_sec: float = 1 / 600  # and back
    jump_per_sec: float = 1 / 7200
    jump_size: float = 0.01  # std of a jump's log return
    # book
    depth_levels: int = 20
    level_spacing_ticks: int = 1
    spread_ticks: int = 1
    base_level_size: Decimal = Decimal("0.5")
    level_size_growth: float = 0.1  # each level deeper is this fraction larger on average
    level_size_dispersion: float = 0.5  # sigma of the lognormal noise on level sizes
    level_updates_per_sec: float = 20.0
    high_vol_depth_factor: float = 0.3  # level sizes scale by this in the high-vol regime
    high_vol_spread_multiplier: int = 3
    # taker flow
    taker_trades_per_sec: float = 2.0
    mean_trade_size: Decimal = Decimal("0.05")
    max_trades_per_step: int = 500
    # oracle and funding (funding figures are 1-hour rates, positive: longs pay)
    oracle_lag_secs: float = 1.0
    oracle_noise_bps: float = 0.5
    funding_mean_1h: float = 0.00001
    funding_reversion_per_hour: float = 0.05
    funding_vol_1h: float = 0.000005  # per sqrt(hour)
    funding_clamp_1h: float = 0.015  # 600% x (IMF 0.05 - MMF 0.03) / 8
    # chain
    block_interval_ns: int = 650_000_000
    initial_height: int = 1_000_000

    def __post_init__(self) -> None:
        if min(self.initial_price, self.tick_size, self.step_size, self.min_order_size,
               self.base_level_size, self.mean_trade_size) <= 0:
            raise ValueError("prices and sizes must be positive")
        if self.depth_levels < 1 or self.level_spacing_ticks < 1 or self.spread_ticks < 1:
            raise ValueError("depth_levels, level_spacing_ticks and spread_ticks must be >= 1")
        if self.block_interval_ns <= 0:
            raise ValueError("block_interval_ns must be positive")


# Precomputed distributions, indexed by random bits (see the module docstring).
SIZE_BITS = 8  # level sizes: 256 lognormal quantiles per level distance
TRADE_BITS = 12  # taker sizes: 4096 exponential quantiles
LEVEL_BITS = 16  # a redraw's level: (16 random bits x depth) >> 16
LEVEL_MASK = (1 << LEVEL_BITS) - 1
REDRAW_BITS = LEVEL_BITS + 1 + SIZE_BITS  # level, side, size quantile
NORMAL_QUANTILES = tuple(NormalDist().inv_cdf((k + 0.5) / (1 << SIZE_BITS)) for k in range(1 << SIZE_BITS))
EXP_QUANTILES = tuple(-math.log1p(-(k + 0.5) / (1 << TRADE_BITS)) for k in range(1 << TRADE_BITS))
POISSON_TAIL = 1e-12  # a Poisson CDF table stops where this much probability is left


@functools.lru_cache(maxsize=64)
def level_size_table(mean_steps: float, growth: float, depth: int, dispersion: float,
                      min_steps: int) -> tuple[int, ...]:
    """Level sizes in steps: [d << SIZE_BITS | k] is quantile k of level distance d's lognormal."""
    mults = [math.exp(dispersion * z) for z in NORMAL_QUANTILES]
    table: list[int] = []
    for level in range(depth):
        mean = mean_steps * (1 + growth * level)
        table += [max(min_steps, round(mean * mult)) for mult in mults]
    return tuple(table)


@functools.lru_cache(maxsize=64)
def trade_size_table(mean_steps: float, min_steps: int) -> tuple[int, ...]:
    """Taker sizes in steps: the exponential's quantiles, at least `min_steps`."""
    return tuple(max(min_steps, round(q * mean_steps)) for q in EXP_QUANTILES)


# unit (str: "1" and "1.0" make different Decimals) -> multiple -> unit * multiple, shared by every
# market on that grid (Decimals are immutable), and the size-0 BookLevels (removals) by tick size
MULTIPLES: dict[str, dict[int, Decimal]] = {}
REMOVALS: dict[str, dict[int, BookLevel]] = {}


class StepConsts:
    """Everything in a step that depends only on its length (cached: step lengths recur)."""

    __slots__ = (
        "drift_h",
        "drift_n",
        "oracle_alpha",
        "ou_decay",
        "ou_vol",
        "p_enter",
        "p_exit",
        "p_jump",
        "redraws",
        "takers",
        "vol_h",
        "vol_n",
    )

    def __init__(self, params: SimMarketParams, sigma_sec: float, dt_ns: int) -> None:
        p = params
        dt = dt_ns / NS_PER_SEC
        sigma_n, sigma_h = sigma_sec, sigma_sec * p.high_vol_multiplier
        self.p_enter = -math.expm1(-p.high_vol_enter_per_sec * dt)
        self.p_exit = -math.expm1(-p.high_vol_exit_per_sec * dt)
        self.drift_n, self.vol_n = -0.5 * sigma_n * sigma_n * dt, sigma_n * math.sqrt(dt)
        self.drift_h, self.vol_h = -0.5 * sigma_h * sigma_h * dt, sigma_h * math.sqrt(dt)
        self.p_jump = -math.expm1(-p.jump_per_sec * dt)
        self.oracle_alpha = 1.0 if p.oracle_lag_secs <= 0 else -math.expm1(-dt / p.oracle_lag_secs)
        theta, dt_h = p.funding_reversion_per_hour, dt / 3600
        var = dt_h if theta <= 0 else -math.expm1(-2 * theta * dt_h) / (2 * theta)
        self.ou_decay, self.ou_vol = math.exp(-theta * dt_h), p.funding_vol_1h * math.sqrt(var)
        self.redraws = PoissonCount(p.level_updates_per_sec * dt, 4 * p.depth_levels)
        self.takers = PoissonCount(p.taker_trades_per_sec * dt, p.max_trades_per_step)


class PoissonCount:
    """A capped Poisson count: its CDF for bisect (mean <= 30), else a normal approximation."""

    __slots__ = ("cap", "cdf", "mean", "root")

    def __init__(self, mean: float, cap: int) -> None:
        self.mean, self.cap = max(mean, 0.0), cap
        self.root = math.sqrt(self.mean)
        cdf: list[float] = []
        if 0 < self.mean <= 30:
            pmf = total = math.exp(-self.mean)
            k = 0
            while total < 1 - POISSON_TAIL and k < cap:
                cdf.append(total)
                k += 1
                pmf *= self.mean / k
                total += pmf
        self.cdf = cdf


TakerHook = Callable[[bool, int, int, list[MarketEvent]], bool]
"""(is_buy, size_steps, now_ns, events) -> handled: lets the exchange route one Poisson taker."""
PreEmitHook = Callable[[int, list[MarketEvent]], None]
"""(now_ns, events): runs after the model moved its levels and before the step's book events."""


def rate_decimal(rate_1h: float) -> Decimal:
    return Decimal(round(rate_1h * 10**RATE_DECIMALS)).scaleb(-RATE_DECIMALS)


CACHE_MAX = 65_536  # entries per ticks/steps -> Decimal (or level) cache before it is dropped


def merged(book: dict[int, int], over: dict[int, int]) -> dict[int, int]:
    out = dict(book)
    for idx, steps in over.items():
        out[idx] = out.get(idx, 0) + steps
    return out
