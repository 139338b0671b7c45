"""The four warning flags: funding, liquidity, volatility, news (pure, with hysteresis).

A tripped flag clears only once its measure is back inside `CLEAR_RATIO` of the threshold,
so a reading that hovers at the threshold does not flap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.config import RuleSettings

CLEAR_RATIO = Decimal("0.8")
_BP = Decimal("0.01")
FLAG_NAMES = ("funding", "liquidity", "volatility", "news")


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class FlagInputs:
    """What the flags look at for one market, gathered by the engine from state."""

    market: str
    position_size: Decimal
    mark_price: Decimal
    funding_rate_1h: Decimal
    intended_size: Decimal
    depth_size: Decimal
    depth_median: Decimal | None
    spread_bps: Decimal | None
    vol_short: float | None
    vol_long: float | None
    news: tuple[str, ...] = ()
    target_size: Decimal | None = None  # the position the strategy wants (None: unknown)
    persistence_hours: int = 0  # settled hours in a row with the forecast's sign

    def as_dict(self) -> dict[str, Any]:
        """The inputs as JSON-ready data for the decision record (numbers as strings)."""
        return {
            "position_size": str(self.position_size), "target_size": str(self.target_size),
            "mark_price": str(self.mark_price), "funding_rate_1h": str(self.funding_rate_1h),
            "persistence_hours": self.persistence_hours, "intended_size": str(self.intended_size),
            "depth_size": str(self.depth_size), "depth_median": str(self.depth_median),
            "spread_bps": None if self.spread_bps is None else str(self.spread_bps.quantize(_BP)),
            "vol_short": None if self.vol_short is None else round(self.vol_short, 4),
            "vol_long": None if self.vol_long is None else round(self.vol_long, 4),
            "news": list(self.news),
        }


class Flag:
    """One flag's verdict. `values`, the readings behind it, are read only by the decision
    record and the status: they are built from the raw readings the verdict used (`raw`, by
    `build`) when first read, not on every evaluation. Never mutated."""

    __slots__ = ("_build", "_raw", "_values", "name", "tripped", "why")

    def __init__(self, name: str, tripped: bool, why: str = "", values: dict[str, Any] | None = None, *,
                 build: Callable[..., dict[str, Any]] | None = None, raw: tuple[Any, ...] = ()) -> None:
        self.name, self.tripped, self.why = name, tripped, why
        self._values, self._build, self._raw = values, build, raw

    @property
    def values(self) -> dict[str, Any]:
        values = self._values
        if values is None:
            values = self._values = {} if self._build is None else self._build(*self._raw)
        return values

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Flag:
            return NotImplemented
        assert isinstance(other, Flag)
        return (self.name, self.tripped, self.why, self.values) == (other.name, other.tripped, other.why,
                                                                    other.values)

    __hash__ = None  # type: ignore[assignment]  # compared by value, holds a dict

    def __repr__(self) -> str:
        return f"Flag(name={self.name!r}, tripped={self.tripped!r}, why={self.why!r}, values={self.values!r})"

    def as_dict(self) -> dict[str, Any]:
        return {"tripped": self.tripped, "why": self.why, **{k: str(v) for k, v in self.values.items()}}


# Not frozen: built on every evaluation (a frozen __init__ costs twice as much); never mutated.
@dataclass(slots=True)
class Flags:
    funding: Flag
    liquidity: Flag
    volatility: Flag
    news: Flag
    # The names of the tripped flags, in the order above (read several times per evaluation).
    tripped: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tripped = tuple(f.name for f in (self.funding, self.liquidity, self.volatility, self.news)
                             if f.tripped)

    def all(self) -> tuple[Flag, ...]:
        return (self.funding, self.liquidity, self.volatility, self.news)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: f.as_dict() for f in self.all()}


# Answers that carry no reading: shared, as flags are never mutated.
_VOL_WARMING = Flag("volatility", False, "warming_up")
_NO_NEWS = Flag("news", False)


def _over(value: Decimal, threshold: Decimal, was_tripped: bool) -> bool:
    return value > (threshold * CLEAR_RATIO if was_tripped else threshold)


def _under(value: Decimal, threshold: Decimal, was_tripped: bool) -> bool:
    return value < (threshold / CLEAR_RATIO if was_tripped else threshold)


def _funding_values(rate_1h: Decimal, cost_usd: Decimal, persistence_hours: int) -> dict[str, Any]:
    return {"rate_1h": rate_1h, "expected_cost_usd": cost_usd.quantize(_BP),
            "persistence_hours": persistence_hours}


def funding_flag(inp: FlagInputs, p: RuleSettings, was: bool) -> Flag:
    """Trip when the forecast funding cost over the horizon beats its budget, or carry is rich.

    The cost is that of the current or the target position, whichever pays more (positive rate:
    longs pay); the harvest leg trips on a rich rate in either direction.
    """
    per_unit = inp.mark_price * inp.funding_rate_1h * p.funding_horizon_hours
    cost_usd = inp.position_size * per_unit
    if inp.target_size is not None:
        cost_usd = max(cost_usd, inp.target_size * per_unit)
    raw = (inp.funding_rate_1h, cost_usd, inp.persistence_hours)
    if _over(cost_usd, p.funding_budget_usd, was):
        return Flag("funding", True, "cost_over_budget", build=_funding_values, raw=raw)
    if _over(abs(inp.funding_rate_1h), p.funding_harvest_rate_1h, was):
        return Flag("funding", True, "harvest_threshold", build=_funding_values, raw=raw)
    return Flag("funding", False, "", build=_funding_values, raw=raw)


def _liquidity_values(depth: Decimal, spread_bps: Decimal | None, median: Decimal | None) -> dict[str, Any]:
    spread = None if spread_bps is None else spread_bps.quantize(_BP)
    values: dict[str, Any] = {"depth": depth, "spread_bps": spread}
    if median is not None:
        values["depth_median"] = median
    return values


def liquidity_flag(inp: FlagInputs, p: RuleSettings, was: bool) -> Flag:
    """Trip on thin depth near mid, a wide spread, or depth far below its rolling median."""
    # the median is recorded once it was checked
    raw: tuple[Decimal, Decimal | None, Decimal | None] = (inp.depth_size, inp.spread_bps, None)
    if inp.spread_bps is None:
        return Flag("liquidity", True, "no_book", build=_liquidity_values, raw=raw)
    needed = inp.intended_size * p.liquidity_min_depth_multiple
    if needed > 0 and _under(inp.depth_size, needed, was):
        return Flag("liquidity", True, "depth_below_order_multiple", build=_liquidity_values, raw=raw)
    if _over(inp.spread_bps, p.liquidity_max_spread_bps, was):
        return Flag("liquidity", True, "spread_wide", build=_liquidity_values, raw=raw)
    if inp.depth_median:
        floor = inp.depth_median * (1 - p.liquidity_depth_drop)
        raw = (inp.depth_size, inp.spread_bps, inp.depth_median)
        if _under(inp.depth_size, floor, was):
            return Flag("liquidity", True, "depth_drop", build=_liquidity_values, raw=raw)
    return Flag("liquidity", False, "", build=_liquidity_values, raw=raw)


def _volatility_values(short: Decimal, ratio: Decimal | None) -> dict[str, Any]:
    if ratio is None:
        return {"vol_short": short}
    return {"vol_short": short, "ratio": ratio.quantize(_BP)}


def volatility_flag(inp: FlagInputs, p: RuleSettings, was: bool) -> Flag:
    """Trip when short-window vol is above its level or far above long-window vol."""
    if inp.vol_short is None:
        return _VOL_WARMING
    short = Decimal(repr(round(inp.vol_short, 6)))
    if _over(short, p.vol_max_annual, was):
        return Flag("volatility", True, "vol_above_level", build=_volatility_values, raw=(short, None))
    if inp.vol_long:
        ratio = short / Decimal(repr(round(inp.vol_long, 6)))
        if _over(ratio, p.vol_regime_ratio, was):
            return Flag("volatility", True, "regime_shift", build=_volatility_values, raw=(short, ratio))
        return Flag("volatility", False, "", build=_volatility_values, raw=(short, ratio))
    return Flag("volatility", False, "", build=_volatility_values, raw=(short, None))


def news_flag(inp: FlagInputs) -> Flag:
    """Trip while any news item (calendar window, feed hit, operator flag) is active."""
    if inp.news:
        return Flag("news", True, "active", {"items": ",".join(inp.news)})
    return _NO_NEWS


def evaluate_flags(inp: FlagInputs, p: RuleSettings, previous: Flags | None = None) -> Flags:
    """Evaluate all four flags, using the previous result for hysteresis."""
    prev = previous.tripped if previous else ()
    return Flags(
        funding=funding_flag(inp, p, "funding" in prev),
        liquidity=liquidity_flag(inp, p, "liquidity" in prev),
        volatility=volatility_flag(inp, p, "volatility" in prev),
        news=news_flag(inp),
    )
