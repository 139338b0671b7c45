"""The dashboard's charts, from the sampled history, the store's markers and the live status.

Overview: equity, PnL attribution (price, funding, fees, slippage) and the risk-mode timeline.
Per market: the funding rate (expected: the live hourly estimate; realised: settled payments)
with the carry sleeve's entry/exit rates drawn, and the position against its target with one
marker per decision (hover: time, reason, tripped flags, summary). Names and colours come from
the palette the report's PNGs use.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from bot.control import fmt
from bot.control.history import Marker, Payment, Sample, Thresholds
from bot.control.palette import MODE_COLOURS, colour, label
from bot.control.svg import Band, Dot, HLine, Line, band_chart, line_chart, pct_axis, rate_axis, size_axis

MAX_MARKERS = 200
MIN_SPAN_SECS = 10
MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 280, 2000, 560


@dataclass(frozen=True, slots=True)
class View:
    """What to draw: the time span and the pixel widths the page measured."""

    t0: int
    t1: int
    width: int = DEFAULT_WIDTH
    full_width: int = 2 * DEFAULT_WIDTH

    @property
    def height(self) -> int:
        """Taller charts on wider screens, within reason."""
        return max(190, min(280, self.width // 3))


def clamp_width(value: object, default: int = DEFAULT_WIDTH) -> int:
    try:
        number = int(str(value))
    except ValueError:
        return default
    return max(MIN_WIDTH, min(MAX_WIDTH, number))


def span(series: Sequence[Sample], markers: Sequence[Marker], payments: Sequence[Payment], now_ns: int,
         range_secs: float | None) -> tuple[int, int]:
    """From the range start (or the first data point, if later) to now."""
    first = min((items[0].ts_ns for items in (series, markers, payments) if items), default=now_ns)
    first = min(first, now_ns - MIN_SPAN_SECS * fmt.NS_PER_SEC)
    if range_secs is None:
        return first, now_ns
    return max(now_ns - int(range_secs * fmt.NS_PER_SEC), first), now_ns


def in_view(items: Sequence[Marker] | Sequence[Payment], view: View) -> list:  # type: ignore[type-arg]
    return [i for i in items if view.t0 <= i.ts_ns <= view.t1]


def overview(series: Sequence[Sample], view: View) -> str:
    ts = [s.ts_ns for s in series]
    equity = line_chart("chart-equity", "Equity (USD)", [
        Line(label("equity"), colour("equity"), list(zip(ts, (s.equity_usd for s in series), strict=True)),
             last=fmt.usd(series[-1].equity_usd) if series else None),
    ], view.t0, view.t1, view.width, view.height)
    pnl_lines = [Line(label(key), colour(key),
                      list(zip(ts, (getattr(s, f"pnl_{key}") for s in series), strict=True)),
                      last=fmt.usd(getattr(series[-1], f"pnl_{key}"), sign=True) if series else None)
                 for key in ("price", "funding", "fees", "slippage")]
    pnl = line_chart("chart-pnl", "PnL attribution, cumulative (USD)", pnl_lines, view.t0, view.t1,
                     view.width, view.height, include_zero=True)
    exposure = line_chart("chart-exposure", "Exposure (USD notional, perp and spot legs)", [
        Line(label(key), colour(key), list(zip(ts, (getattr(s, f"{key}_exposure_usd") for s in series),
                                               strict=True)),
             last=fmt.usd(getattr(series[-1], f"{key}_exposure_usd")) if series else None)
        for key in ("gross", "net")], view.t0, view.t1, view.width, view.height, include_zero=True)
    slots = (equity, drawdown_chart(ts, [s.equity_usd for s in series], view), pnl, exposure)
    return ("".join(f'<div class="chart-slot">{chart}</div>' for chart in slots)
            + f'<div class="chart-slot wide">{risk_timeline(series, view)}</div>')


def drawdown_chart(ts: Sequence[int], equity: Sequence[float], view: View) -> str:
    """Equity below its running peak within the range, as a (negative) fraction."""
    points, peak = [], 0.0
    for t, value in zip(ts, equity, strict=True):
        peak = max(peak, value)
        points.append((t, value / peak - 1 if peak > 0 else 0.0))
    last = fmt.rate_pct(points[-1][1], 2) if points else None
    return line_chart("chart-drawdown", "Drawdown from the range's peak", [
        Line(label("drawdown"), colour("drawdown"), points, last=last)], view.t0, view.t1, view.width,
        view.height, y_format=pct_axis, include_zero=True, unit="pct")


def risk_timeline(series: Sequence[Sample], view: View) -> str:
    bands: list[Band] = []
    start = 0
    for i in range(1, len(series) + 1):
        if i == len(series) or series[i].risk_mode != series[start].risk_mode:
            mode = series[start].risk_mode
            end_ns = series[i].ts_ns if i < len(series) else view.t1
            bands.append(Band(series[start].ts_ns, end_ns, MODE_COLOURS.get(mode, "#7d8a97"),
                              f"{mode} {fmt.clock(series[start].ts_ns)} → {fmt.clock(end_ns)}"))
            start = i
    return band_chart("chart-risk", "Risk mode", bands, list(MODE_COLOURS.items()), view.t0, view.t1,
                      view.full_width, points=len(series))


def market_charts(ticker: str, series: Sequence[Sample], markers: Sequence[Marker],
                  payments: Sequence[Payment], thresholds: Thresholds, view: View) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in ticker)
    return (f'<div class="chart-slot">{funding_chart(slug, ticker, series, payments, thresholds, view)}</div>'
            f'<div class="chart-slot">{position_chart(slug, ticker, series, markers, view)}</div>')


def funding_chart(slug: str, ticker: str, series: Sequence[Sample], payments: Sequence[Payment],
                  thresholds: Thresholds, view: View) -> str:
    expected = [(s.ts_ns, s.markets[ticker].rate_1h) for s in series
                if ticker in s.markets and s.markets[ticker].rate_1h is not None]
    realised = [(p.ts_ns, p.rate) for p in in_view(payments, view) if p.market == ticker]
    hlines = [HLine(label("entry"), colour("entry"), r) for r in thresholds.carry_entry_rate_1h]
    hlines += [HLine(label("exit"), colour("exit"), r) for r in thresholds.carry_exit_rate_1h]
    # Realised settles hourly (steps); the live estimate is drawn over it, dashed, so both show.
    lines = [Line(label("realised"), colour("realised"), realised, step=True,
                  last=fmt.rate_pct(realised[-1][1]) if realised else None),
             Line(label("expected"), colour("expected"), expected, dashed=True,  # type: ignore[arg-type]
                  last=fmt.rate_pct(expected[-1][1]) if expected else None)]
    return line_chart(f"chart-funding-{slug}", f"{ticker} funding rate (per hour)", lines, view.t0, view.t1,
                      view.width, view.height, hlines=hlines, y_format=rate_axis, include_zero=True,
                      unit="rate")


def position_chart(slug: str, ticker: str, series: Sequence[Sample], markers: Sequence[Marker],
                   view: View) -> str:
    points = [(s.ts_ns, s.markets[ticker]) for s in series if ticker in s.markets]
    position = [(t, m.position) for t, m in points]
    target = [(t, m.target) for t, m in points]
    times = [t for t, _ in points]
    dots = []
    for marker in in_view([m for m in markers if m.market == ticker], view)[-MAX_MARKERS:]:
        y = marker.target
        if y is None:
            i = bisect_right(times, marker.ts_ns)
            y = position[max(i - 1, 0)][1] if position else 0.0
        tripped = ", ".join(marker.tripped) or "no flags tripped"
        title = f"{fmt.stamp(marker.ts_ns)} · {marker.reason} ({tripped})"
        if marker.summary:
            title += f"\n{marker.summary}"
        dot_colour = MODE_COLOURS["REDUCE_ONLY"] if marker.tripped else colour("decision")
        dots.append(Dot(marker.ts_ns, y, dot_colour, title, "marker decision"))
    lines = [Line(label("position"), colour("position"), position, step=True,
                  last=fmt.size(position[-1][1]) if position else None),
             Line(label("target"), colour("target"), target, dashed=True, step=True,
                  last=fmt.size(target[-1][1]) if target else None)]
    return line_chart(f"chart-position-{slug}", f"{ticker} position vs target (base units)", lines,
                      view.t0, view.t1, view.width, view.height, dots=dots, y_format=size_axis,
                      include_zero=True, unit="size")

