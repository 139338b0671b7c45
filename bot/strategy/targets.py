"""Operator targets in the units operators use (pure).

A target string is one of:
- base units, signed: `0.05`, `-0.5`;
- leverage of equity, signed: `0.5x`, `-0.25x` (notional = leverage x equity);
- USD notional, signed: `$5000`, `-$2000` (also `$-2000`, and `5000$` is refused).

`parse_target` turns the string into a `TargetSpec`; `resolve_target` turns a spec into a signed
base size at the current equity and price, floored onto the market's step grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Literal

ZERO = Decimal(0)
MAX_TARGET_UNITS = Decimal(10) ** 9  # base units
MAX_TARGET_LEVERAGE = Decimal(100)
MAX_TARGET_USD = Decimal(10) ** 12
# ASCII digits only: Decimal() takes Unicode digits and spaces a venue or operator never means.
_NUMBER = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
_FORMS = re.compile(rf"(?P<sign>[+-]?)(?:(?P<usd>\$)(?P<usd_sign>[+-]?)(?P<usd_num>{_NUMBER})"
                    rf"|(?P<num>{_NUMBER})(?:[eE][+-]?[0-9]+)?(?P<lev>[xX]?))")

Unit = Literal["base", "leverage", "usd"]


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A signed operator target and its unit, as typed (`text`) and as a number (`value`)."""

    value: Decimal
    unit: Unit = "base"

    @property
    def text(self) -> str:
        if self.unit == "leverage":
            return f"{self.value}x"
        if self.unit == "usd":
            return f"-${-self.value}" if self.value < 0 else f"${self.value}"
        return str(self.value)

    def __str__(self) -> str:
        return self.text


FLAT = TargetSpec(ZERO)


def parse_target(text: str | float | Decimal) -> TargetSpec:
    """Parse `0.05`, `0.5x`, `$5000` or `-$2000`; raise ValueError naming what is wrong."""
    if isinstance(text, bool):
        raise ValueError("a target is a number, '<n>x' or '$<n>'")
    if isinstance(text, int | float | Decimal):
        text = repr(text) if isinstance(text, float) else str(text)
    if not isinstance(text, str):
        raise ValueError("a target is a number, '<n>x' or '$<n>'")
    raw = text.strip()
    match = _FORMS.fullmatch(raw)
    if match is None:
        raise ValueError(f"{raw[:40]!r} is not a target: use base units (0.05), leverage (0.5x) "
                         "or USD ($5000, -$2000)")
    negative = (match["sign"] == "-") != (match["usd_sign"] == "-")
    if match["usd_sign"] and match["sign"]:
        raise ValueError(f"{raw[:40]!r} has two signs")
    if match["usd"]:
        value, unit, limit = Decimal(match["usd_num"]), "usd", MAX_TARGET_USD
    else:
        body = raw.lstrip("+-").rstrip("xX")
        try:
            value = Decimal(body)
        except InvalidOperation:
            raise ValueError(f"{raw[:40]!r} is not a number") from None
        unit, limit = ("leverage", MAX_TARGET_LEVERAGE) if match["lev"] else ("base", MAX_TARGET_UNITS)
    # copy_abs, not abs(): abs() rounds in the context and 1e999999999 overflows there.
    if not value.is_finite() or value.copy_abs() > limit:
        raise ValueError(f"{raw[:40]!r} is outside +-{limit}")
    return TargetSpec(-value if negative else value, unit)  # type: ignore[arg-type]


def resolve_target(spec: TargetSpec, equity_usd: Decimal, price: Decimal | None,
                   step_size: Decimal) -> Decimal:
    """The signed base size a target means now; zero when price or equity is unknown."""
    if spec.unit == "base":
        size = spec.value
    elif price is None or price <= 0:
        return ZERO
    elif spec.unit == "usd":
        size = spec.value / price
    else:
        size = spec.value * max(equity_usd, ZERO) / price
    if step_size <= 0:
        return size
    return (size / step_size).to_integral_value(rounding=ROUND_DOWN) * step_size
