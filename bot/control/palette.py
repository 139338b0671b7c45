"""Series colours and names shared by the dashboard's SVG charts and `perpbot report`'s PNGs.

One place, so a line called "funding" is the same colour on the page and in the report. The
colours read on the page's dark panels and on the report's white background alike.
"""

from __future__ import annotations

from typing import NamedTuple


class Series(NamedTuple):
    label: str
    colour: str


SERIES: dict[str, Series] = {
    "equity": Series("equity", "#4c9be8"),
    "price": Series("price", "#4c9be8"),
    "funding": Series("funding", "#3fb27f"),
    "fees": Series("fees", "#e5534b"),
    "slippage": Series("slippage", "#d4a72c"),
    "total": Series("total", "#b083f0"),
    "gross": Series("gross notional", "#4c9be8"),
    "net": Series("net delta notional", "#b083f0"),
    "leverage": Series("leverage", "#b083f0"),
    "drawdown": Series("drawdown", "#e5534b"),
    "realised": Series("realised", "#3fb27f"),
    "expected": Series("expected", "#d4a72c"),
    "position": Series("position", "#4c9be8"),
    "target": Series("target", "#b083f0"),
    "decision": Series("decision", "#e6edf3"),
    "entry": Series("carry entry", "#3fb27f"),
    "exit": Series("carry exit", "#e5534b"),
    "flags": Series("tripped flags", "#4c9be8"),
}

# Risk modes and watchdog input states.
MODE_COLOURS = {"NORMAL": "#3fb27f", "REDUCE_ONLY": "#d4a72c", "HALTED": "#e5534b"}
STATE_COLOURS = {"OK": "#3fb27f", "DEGRADED": "#d4a72c", "CRITICAL": "#e5534b"}


def colour(key: str) -> str:
    return SERIES[key].colour


def label(key: str) -> str:
    return SERIES[key].label
