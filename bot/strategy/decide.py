"""From one market's readings to its targets, and whether an audit should trade (pure).

The engine gathers the readings (`MarketReadings`) and calls `market_targets` on every refresh
and `audit_should_trade` on every evaluation; the research script (tools/calibrate.py) calls
the same two functions over hourly history, so what is calibrated is what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal

from bot.config import RuleSettings, StrategySettings
from bot.strategy.band import BandCheck, BandInputs, band_verdict, check_band
from bot.strategy.carry import CarryWatch, watch_carry
from bot.strategy.market_status import no_growth
from bot.strategy.sizing import SizingInputs, Target, scale_hedge, size_target
from bot.strategy.sleeves import SleeveBook, SleeveInputs, carry_stay_adverse, plan_sleeves
from bot.strategy.volscale import stretch_factor, thesis_scale

ZERO = Decimal(0)
ONE = Decimal(1)
_Q = Decimal("0.0001")


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class MarketReadings:
    """What the strategy reads for one market at one time."""

    market: str
    now_ns: int
    price: Decimal
    spot_price: Decimal | None
    equity_usd: Decimal
    peak_equity_usd: Decimal
    market_count: int
    sizing_vol: float | None  # annualised, hourly returns; None: not warm
    funding_trend_1h: Decimal
    persistence_hours: int
    step_size: Decimal
    spot_step_size: Decimal | None
    perp_fee_rate: Decimal
    operator_target: Decimal  # resolved, base units
    flags_agree: bool
    maintenance_margin_fraction: Decimal = Decimal("0.03")
    entry_trend_1h: Decimal | None = None  # the carry's entry trend (None: funding_trend_1h)
    spot_fee_rate: Decimal | None = None  # the hedge venue's taker rate (None: carry settings)
    baseline_vol: float | None = None  # the sizing vol's long-run norm (bot.strategy.volscale)
    price_trend: float | None = None  # the EWMA of hourly closes the stretch trim reads (volscale)


# Not frozen: built on every evaluation and read at once (a frozen __init__ costs twice as much).
@dataclass(slots=True)
class MarketTargets:
    sleeves: SleeveBook
    sizing: Target
    spot: Decimal
    watch: CarryWatch

    @property
    def carry_size(self) -> Decimal:
        """The carry sleeve's base size (unsigned) in this plan: what to commit if it is traded."""
        for target in self.sleeves.targets:
            if target.sleeve == "carry":
                return abs(target.perp)
        return ZERO

    @property
    def thesis_held(self) -> Decimal | None:
        """The directional thesis's share in this plan, signed by its side (None: no thesis): what
        the next evaluation's re-risk gate compares with."""
        for target in self.sleeves.targets:
            if target.sleeve == "directional" and "scale" in target.values:
                scale: Decimal = target.values["scale"]
                return scale if target.values["operator_target"] > 0 else -scale
        return None


def market_targets(r: MarketReadings, p: StrategySettings, carry_side: int, watch: CarryWatch,
                   *, carry_size: Decimal = ZERO,
                   reduce_only_from: tuple[Decimal, Decimal | None] | None = None,
                   restrict: Callable[[Decimal], tuple[Decimal, str]] | None = None,
                   held_size: Callable[[Target], Decimal] | None = None,
                   thesis_held: Decimal | None = None) -> MarketTargets:
    """Sleeves, then hard limits: the perp and spot targets for one market.

    `carry_side`/`watch`/`carry_size` are the carry sleeve's committed state; `reduce_only_from` (perp, spot
    positions) forbids any growth of exposure (REDUCE_ONLY); `restrict` (the market's status,
    bot.strategy.market_status) may cut the desired perp and say why, and then `held_size` gives
    the size the hard-limited target is held at. `thesis_held` is the directional thesis's share
    at the last evaluation (`MarketTargets.thesis_held`), which `rerisk_on_trend` gates against.
    """
    # The watch counts the exit trend's adverse hours first; the sleeves then read its count.
    adverse = carry_stay_adverse(r.funding_trend_1h, carry_side, p.carry, r.perp_fee_rate, r.spot_fee_rate,
                                 r.entry_trend_1h)
    watch = watch_carry(watch, carry_side, adverse, r.now_ns)
    inp = SleeveInputs(
        market=r.market, price=r.price, spot_price=r.spot_price, equity_usd=r.equity_usd,
        market_count=r.market_count,
        leverage=directional_scale(r, p),
        funding_rate_1h=r.funding_trend_1h, persistence_hours=r.persistence_hours,
        step_size=r.step_size, spot_step_size=r.spot_step_size, perp_fee_rate=r.perp_fee_rate,
        operator_target=r.operator_target, adverse_hours=watch.adverse_hours, flags_agree=r.flags_agree,
        carry_size=carry_size, entry_rate_1h=r.entry_trend_1h, spot_fee_rate=r.spot_fee_rate,
        thesis_held=thesis_held, price_trend=r.price_trend,
    )
    sleeves = plan_sleeves(inp, p, carry_side)
    desired, spot_desired = sleeves.perp, sleeves.spot
    if reduce_only_from is not None:
        desired = no_growth(desired, reduce_only_from[0])
        if reduce_only_from[1] is not None:
            spot_desired = no_growth(spot_desired, reduce_only_from[1])
    status_why = ""
    if restrict is not None:
        restricted, status_why = restrict(desired)
        if status_why and r.spot_step_size is not None:
            spot_desired = scale_hedge(spot_desired, desired, restricted, r.spot_step_size)
        desired = restricted
    target = size_target(
        SizingInputs(market=r.market, desired_size=desired, price=r.price, equity_usd=r.equity_usd,
                     peak_equity_usd=r.peak_equity_usd, realised_vol=r.sizing_vol,
                     funding_rate_1h=r.funding_trend_1h, step_size=r.step_size,
                     market_count=r.market_count,
                     maintenance_margin_fraction=r.maintenance_margin_fraction),
        p,
    )
    if status_why and held_size is not None:
        target = replace(target, size=held_size(target), limited_by=status_why)
    spot = ZERO
    if r.spot_step_size is not None:
        spot = scale_hedge(spot_desired, desired, target.size, r.spot_step_size)
    return MarketTargets(sleeves, target, spot, watch)


def directional_scale(r: MarketReadings, p: StrategySettings) -> Decimal:
    """The share of the thesis to hold: the volatility cut times the stretch trim."""
    scale = thesis_scale(p.target_vol_annual, r.sizing_vol, r.baseline_vol, p.thesis_max_scale)
    side = (r.operator_target > 0) - (r.operator_target < 0)
    trim = stretch_factor(r.price, r.price_trend, side, p.stretch_start, p.stretch_full, p.stretch_floor)
    return scale if trim == ONE else (scale * trim).quantize(_Q, rounding=ROUND_DOWN)


def audit_should_trade(position: Decimal, target: Decimal, price: Decimal, equity_usd: Decimal,
                       sizing_vol: float | None, cost_rate: Decimal, min_size: Decimal,
                       rules: RuleSettings) -> BandCheck:
    """The no-trade band for one leg at an audit (bot.strategy.band)."""
    plain = band_verdict(position, target, price, min_size)
    if plain is not None:  # at target, closing or a flip: no band to build
        return plain
    return check_band(BandInputs(
        position=position, target=target, price=price, equity_usd=equity_usd, cost_rate=cost_rate,
        vol_annual=sizing_vol, horizon_hours=rules.band_horizon_hours,
        risk_aversion=rules.band_risk_aversion, max_fraction=rules.drift_tolerance, min_size=min_size))


def sizing_vol(hourly_vol: float | None, hourly_samples: int, min_hours: int) -> float | None:
    """The sizing volatility once it has `min_hours` hourly returns; None before."""
    return hourly_vol if hourly_samples >= min_hours else None
