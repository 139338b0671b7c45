"""Number formats for the dashboard: fixed decimals per unit, thousands separators, '-' for none."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.clock import NS_PER_SEC

DASH = "-"


def dec(value: Any) -> Decimal | None:
    """`value` as a finite Decimal, or None (missing, malformed, NaN or infinite)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def fixed(value: Any, places: int, suffix: str = "", sign: bool = False) -> str:
    number = dec(value)
    if number is None:
        return DASH
    spec = f"{'+' if sign else ''},.{places}f"
    return f"{number:{spec}}{suffix}"


def usd(value: Any, sign: bool = False) -> str:
    """Money: two decimals, thousands separators."""
    return fixed(value, 2, sign=sign)


def price(value: Any) -> str:
    number = dec(value)
    if number is None:
        return DASH
    return fixed(number, 2 if abs(number) >= 10 else 4)


def size(value: Any) -> str:
    """Base-asset sizes: four decimals (enough for BTC steps), thousands separators."""
    return fixed(value, 4)


def rate_pct(value: Any, places: int = 4) -> str:
    """A fraction as a percentage: 0.0001 -> '0.0100 %'."""
    number = dec(value)
    return DASH if number is None else fixed(number * 100, places, " %")


def leverage(value: Any) -> str:
    return fixed(value, 2, "x")


def secs(value: Any) -> str:
    number = dec(value)
    if number is None:
        return DASH
    return fixed(number, 2 if abs(number) < 10 else 1 if abs(number) < 100 else 0, " s")


def blocks(value: Any) -> str:
    return fixed(value, 0, " blocks")


def compact(value: float) -> str:
    """Axis ticks: 1,234 / 12.3k / 1.23M, with decimals only where the magnitude needs them."""
    size_ = abs(value)
    if size_ >= 1e6:
        return f"{value / 1e6:,.2f}M"
    if size_ >= 1e4:
        return f"{value / 1e3:,.1f}k"
    if size_ >= 100 or value == 0:
        return f"{value:,.0f}"
    if size_ >= 1:
        return f"{value:,.2f}"
    if size_ >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


def duration(value: Any) -> str:
    number = dec(value)
    if number is None:
        return DASH
    total = int(number)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def clock(ts_ns: int, seconds: bool = True) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_SEC, tz=UTC).strftime("%H:%M:%SZ" if seconds else "%H:%M")


def stamp(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_SEC, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def axis_time(ts_ns: int, span_ns: int, step_ns: int = 0) -> str:
    """Time-axis labels: HH:MM:SS for steps under a minute, HH:MM within two days, '07 Dec 12h'
    beyond, '07 Dec' for whole-day steps."""
    when = datetime.fromtimestamp(ts_ns / NS_PER_SEC, tz=UTC)
    if step_ns >= 86400 * NS_PER_SEC:
        return when.strftime("%d %b")
    if (step_ns and step_ns < 60 * NS_PER_SEC) or span_ns < 120 * NS_PER_SEC:
        return when.strftime("%H:%M:%S")
    return when.strftime("%H:%M") if span_ns <= 2 * 86400 * NS_PER_SEC else when.strftime("%d %b %Hh")
