"""Strategy sleeves: each turns state into desired exposure within its risk budget (pure).

Capital per market (equity / market count) is split by risk budget across sleeves:

- directional: the operator's thesis (config or `perpbot target`, resolved to base units) scaled
  by volatility targeting (min(1, target_vol / sizing vol), sizing vol on the rebalance horizon)
  and the stretch trim (bot.strategy.volscale),
  cut by `adverse_funding_cap_factor` while the funding *trend* makes the position pay more than
  `adverse_funding_rate_annual`, and by `flag_risk_factor` while the flags agree: risk falls when
  volatility or funding turns against the thesis; with `rerisk_on_trend` the share rises again
  only while price is at or beyond its trend in the thesis's direction (`volscale.rerisk_gate`);
- carry (funding capture): a delta-neutral perp + spot pair on the side that *receives* funding
  (positive rate: short perp, long spot). It opens when the entry trend (the median of the last
  `entry_median_hours` settled hourly rates, or their EWMA) over the expected holding period
  `horizon_hours` (how long funding regimes last, estimated from history by
  `bot.strategy.carry.regime_hold_hours`), net of open and close costs on
  both legs and (for a short spot leg) borrow, beats `entry_threshold_bps`. It closes only after
  `exit_confirm_hours` settled hours in a row in which staying is worth less than leaving and
  coming back: the exit trend's carry over the horizon (`signal_half_life_hours`) plus the round
  trip leaving would pay is below `exit_threshold_bps` (a margin, <= 0). Entry and exit lines
  sit a round trip apart on either side of zero (hysteresis in level), and the exit must hold
  for hours in a row (hysteresis in time): never on one hour's sign. Its size is the carry notional
  (equity share x `carry.max_leverage`) at entry, then held in base units while open: never
  re-sized by volatility targeting or price; the hard limits (liquidation distance, notional
  cap) still bound it;
- vol provision: the hook for a later market-making sleeve; it asks for nothing today.

The engine sums the sleeves (`plan_sleeves`) and `sizing.size_target` applies the hard limits to
the total. Every target carries the numbers behind it, for the decision record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bot.config import CarrySettings, StrategySettings
from bot.strategy.volscale import rerisk_gate

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
HOURS_PER_YEAR = Decimal(8760)
_Q = Decimal("0.01")
_SCALE_Q = Decimal("0.0001")


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class SleeveInputs:
    """What the sleeves look at for one market, gathered by the engine."""

    market: str
    price: Decimal  # perp mark (oracle, else mid)
    spot_price: Decimal | None  # spot hedge mid; None: no hedge available now
    equity_usd: Decimal
    market_count: int
    leverage: Decimal  # volatility scale for directional risk: min(1, target_vol / sizing vol)
    funding_rate_1h: Decimal  # funding trend (slow EWMA of settled rates), positive: longs pay
    persistence_hours: int
    step_size: Decimal
    spot_step_size: Decimal | None
    perp_fee_rate: Decimal  # taker: carry legs go out as IOC children
    operator_target: Decimal = ZERO  # resolved to base units
    adverse_hours: int = 0  # settled hours in a row the open carry's outlook was below exit
    carry_size: Decimal = ZERO  # the open carry's base size (unsigned), held while it stays open
    entry_rate_1h: Decimal | None = None  # the entry trend (None: funding_rate_1h decides entry too)
    flags_agree: bool = False  # at least `rules.min_flags` flags are tripped
    spot_fee_rate: Decimal | None = None  # the hedge venue's taker rate; None: carry.spot_taker_fee_rate
    thesis_held: Decimal | None = None  # the thesis's share at the last evaluation, signed by side
    price_trend: float | None = None  # the price trend (EWMA of hourly closes; None: none kept)


@dataclass(frozen=True, slots=True)
class SleeveTarget:
    """One sleeve's desired exposure in base units (perp signed; spot signed, long > 0)."""

    sleeve: str
    perp: Decimal
    spot: Decimal = ZERO
    why: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"perp": str(self.perp), "spot": str(self.spot), "why": self.why,
                **{k: v if isinstance(v, bool | int) else str(v) for k, v in self.values.items()}}


# Not frozen: built on every evaluation and read at once (a frozen __init__ costs twice as much).
@dataclass(slots=True)
class CarryEconomics:
    """Carry over the horizon on one perp side, in bps of notional."""

    side: int  # perp side that receives funding: -1 short, +1 long, 0 none
    gross_bps: Decimal
    open_cost_bps: Decimal
    close_cost_bps: Decimal
    borrow_bps: Decimal

    @property
    def net_open_bps(self) -> Decimal:
        """What opening now and closing at the horizon is expected to earn."""
        return self.gross_bps - self.open_cost_bps - self.close_cost_bps - self.borrow_bps

    @property
    def net_hold_bps(self) -> Decimal:
        """What holding an open position to the horizon is expected to earn (opening is sunk)."""
        return self.gross_bps - self.close_cost_bps - self.borrow_bps

    @property
    def net_stay_bps(self) -> Decimal:
        """What staying in to the horizon is worth over leaving now and coming back: leaving pays
        a close now and an open later (the close at the end is paid either way)."""
        return self.gross_bps - self.borrow_bps + self.close_cost_bps + self.open_cost_bps


@dataclass(frozen=True, slots=True)
class SleeveBook:
    """All sleeves' targets for one market and their sum."""

    targets: tuple[SleeveTarget, ...]
    perp: Decimal
    spot: Decimal
    carry_side: int  # the carry sleeve's state after this evaluation (0: closed)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {t.sleeve: t.as_dict() for t in self.targets}


def _floor(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(rounding=ROUND_DOWN) * step


def carry_economics(rate_1h: Decimal, side: int, p: CarrySettings, perp_fee_rate: Decimal,
                    spot_fee_rate: Decimal | None = None) -> CarryEconomics:
    """Price the carry of holding perp `side` (+1 long, -1 short) against a spot hedge."""
    gross = -side * rate_1h * p.horizon_hours * BPS  # a short receives a positive rate
    spot_fee = p.spot_taker_fee_rate if spot_fee_rate is None else spot_fee_rate
    leg_bps = (perp_fee_rate + spot_fee) * BPS + 2 * p.expected_slippage_bps
    borrow = ZERO
    if side > 0:  # long perp is hedged by a short spot leg: borrow the asset
        borrow = p.borrow_rate_annual * p.horizon_hours / HOURS_PER_YEAR * BPS
    return CarryEconomics(side, gross, leg_bps, leg_bps, borrow)


def directional_sleeve(inp: SleeveInputs, p: StrategySettings) -> SleeveTarget:
    """The operator's thesis scaled by volatility targeting, adverse funding and agreeing flags."""
    desired = inp.operator_target
    scale = inp.leverage
    values: dict[str, Any] = {"operator_target": desired, "vol_scale": inp.leverage}
    if desired == 0 or inp.price <= 0:
        return SleeveTarget("directional", ZERO, ZERO, "no_target", values)
    why = "operator_target" if scale >= 1 else "vol_target"
    rate_annual = inp.funding_rate_1h * HOURS_PER_YEAR
    if desired * rate_annual > 0 and abs(rate_annual) >= p.adverse_funding_rate_annual:
        scale *= p.adverse_funding_cap_factor
        why = "adverse_funding"
    if inp.flags_agree:
        scale *= p.flag_risk_factor
        why = "flags"
    if p.rerisk_on_trend:
        side = 1 if desired > 0 else -1
        gated = rerisk_gate(scale.quantize(_SCALE_Q), inp.thesis_held, inp.price, inp.price_trend, side)
        if gated < scale.quantize(_SCALE_Q):
            scale, why = gated, "rerisk_gate"
    values["scale"] = scale.quantize(_SCALE_Q)
    size = _floor(abs(desired) * min(scale, ONE), inp.step_size).copy_sign(desired)
    return SleeveTarget("directional", size, ZERO, why if size != desired else "operator_target", values)


def carry_sleeve(inp: SleeveInputs, p: CarrySettings, budget_share: Decimal,
                 open_side: int) -> SleeveTarget:
    """Funding capture: open on rich, persistent, net-positive carry; exit once it decays.

    `open_side` is the sleeve's state from the previous evaluation (0 closed, -1 short perp,
    +1 long perp). The returned target's `values["side"]` is the new state.
    """
    # A closed carry decides on the entry trend (it may be faster); an open one on the exit trend.
    rate = inp.funding_rate_1h if open_side or inp.entry_rate_1h is None else inp.entry_rate_1h
    receive_side = -1 if rate > 0 else (1 if rate < 0 else 0)
    side = open_side or receive_side
    values: dict[str, Any] = {"rate_1h": rate, "persistence_hours": inp.persistence_hours}
    if side == 0:
        return _closed("no_funding", values)
    econ = carry_economics(rate, side, p, inp.perp_fee_rate, inp.spot_fee_rate)
    values["gross_bps"] = econ.gross_bps.quantize(_Q)
    values["net_open_bps"] = econ.net_open_bps.quantize(_Q)
    values["net_hold_bps"] = econ.net_hold_bps.quantize(_Q)
    values["borrow_bps"] = econ.borrow_bps.quantize(_Q)
    if not p.enabled or budget_share <= 0:
        return _closed("disabled", values)
    no_book = inp.spot_price is None or inp.spot_price <= 0
    if inp.spot_step_size is None or (no_book and not open_side):
        return _closed("no_spot_book", values)
    # An open carry whose hedge book is missing for now holds its size: never unwind blind.
    if side > 0 and not p.allow_spot_short:
        return _closed("spot_short_not_allowed", values)
    values["adverse_hours"] = inp.adverse_hours
    if open_side:
        if inp.adverse_hours >= p.exit_confirm_hours:
            return _closed("carry_decayed", values)
    elif econ.net_open_bps < p.entry_threshold_bps:
        return _closed("below_entry_threshold", values)
    elif _exit_trend_adverse(inp.funding_rate_1h, side, p, inp.perp_fee_rate, inp.spot_fee_rate,
                             econ.open_cost_bps + econ.close_cost_bps):
        # never open unless the exit trend is a round trip above its exit line (hysteresis)
        return _closed("exit_trend_adverse", values)
    elif inp.persistence_hours < p.min_persistence_hours:
        return _closed("not_persistent", values)
    if open_side and inp.carry_size > 0:
        # An open carry keeps its base size: its legs offset, so price moves change nothing to
        # hedge, and re-sizing to a notional would trade (and pay) on every trend. The hard
        # limits (liquidation distance, notional, leverage) still cut it if price runs far.
        size = inp.carry_size
    else:
        notional = inp.equity_usd / max(inp.market_count, 1) * budget_share * p.max_leverage
        ref_price = inp.price if no_book or inp.spot_price is None else max(inp.price, inp.spot_price)
        size = _floor(_floor(notional / ref_price, inp.step_size), inp.spot_step_size)
    values["notional_usd"] = (size * inp.price).quantize(_Q)
    if size <= 0:
        return _closed("too_small", values)
    values["side"] = side
    return SleeveTarget("carry", size * side, -size * side, "hold" if open_side else "open", values)


def _closed(why: str, values: dict[str, Any]) -> SleeveTarget:
    """The carry sleeve closed for `why`; `values` (the sleeve's own, fresh dict) records side 0."""
    values["side"] = 0
    return SleeveTarget("carry", ZERO, ZERO, why, values)


def carry_outlook_adverse(inp: SleeveInputs, p: CarrySettings, open_side: int) -> bool:
    """True when staying in an open carry is worth less than leaving and coming back.

    Leaving is a round trip on both legs, so an exit pays only when the funding the exit trend
    expects to pay over the horizon beats those costs by `-exit_threshold_bps`: a mildly adverse
    trend is cheaper to sit through than to trade around (most such spells end within days).
    Leaving also pays only if the entry rule would not open it again at once: the mirror of
    never opening what the exit trend would close (the two trends must agree to change state)."""
    return carry_stay_adverse(inp.funding_rate_1h, open_side, p, inp.perp_fee_rate, inp.spot_fee_rate,
                              inp.entry_rate_1h)


def carry_stay_adverse(rate_1h: Decimal, open_side: int, p: CarrySettings, perp_fee_rate: Decimal,
                       spot_fee_rate: Decimal | None, entry_rate_1h: Decimal | None = None) -> bool:
    """`carry_outlook_adverse` on the exit and entry trends and fee rates alone (no sleeve inputs
    needed); no entry trend: the exit trend decides alone."""
    if not _exit_trend_adverse(rate_1h, open_side, p, perp_fee_rate, spot_fee_rate):
        return False
    if entry_rate_1h is None:
        return True
    entry = carry_economics(entry_rate_1h, open_side, p, perp_fee_rate, spot_fee_rate)
    return entry.net_open_bps < p.entry_threshold_bps


def _exit_trend_adverse(rate_1h: Decimal, side: int, p: CarrySettings, perp_fee_rate: Decimal,
                        spot_fee_rate: Decimal | None, room_bps: Decimal = ZERO) -> bool:
    """The exit trend's carry on `side` over the horizon, plus the round trip leaving would pay,
    is below `exit_threshold_bps` + `room_bps`."""
    if not side:
        return False
    econ = carry_economics(rate_1h, side, p, perp_fee_rate, spot_fee_rate)
    return econ.net_stay_bps < p.exit_threshold_bps + room_bps


# The sleeve asks for nothing: one shared (immutable) answer per budget state.
_VOL_PROVISION = {True: SleeveTarget("vol_provision", ZERO, ZERO, "not_implemented"),
                  False: SleeveTarget("vol_provision", ZERO, ZERO, "no_budget")}


def vol_provision_sleeve(inp: SleeveInputs, budget_share: Decimal) -> SleeveTarget:
    """Hook for a later volatility-provision (market-making) sleeve: no exposure yet."""
    return _VOL_PROVISION[bool(budget_share)]


def plan_sleeves(inp: SleeveInputs, p: StrategySettings, carry_side: int) -> SleeveBook:
    """Run every sleeve and sum their targets; `carry_side` is the carry sleeve's previous state."""
    directional = directional_sleeve(inp, p)
    carry = carry_sleeve(inp, p.carry, p.carry_budget, carry_side)
    vol = vol_provision_sleeve(inp, p.vol_provision_budget)
    # Summed left to right from ZERO, as sum() would: the same Decimal exponents in the record.
    perp = ZERO + directional.perp + carry.perp + vol.perp
    spot = ZERO + directional.spot + carry.spot + vol.spot
    return SleeveBook((directional, carry, vol), perp, spot, int(carry.values.get("side", 0)))
