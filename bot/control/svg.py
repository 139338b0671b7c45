"""Server-side SVG charts: time-series lines, threshold lines, hoverable markers, state bands.

Drawn at the pixel width the page asks for (so text stays 11 px on a phone and on a wide screen),
coloured with presentation attributes from the shared palette (the page's CSP allows no inline
style). Hover text is SVG `<title>`: the browser's own tooltip, no script needed. Every chart
carries `data-points` (the number of drawn data points) so a test can tell it is not empty.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from bot.control import fmt

Point = tuple[int, float]  # (ts_ns, value)
AxisFormat = Callable[[float, float], str]  # (value, tick step) -> label
FONT = 11
CHAR_W = FONT * 0.62  # a generous average glyph width of the page's sans-serif at 11 px
PAD_LEFT, PAD_RIGHT, PAD_BOTTOM = 62, 12, 22
TITLE_Y, LEGEND_Y, ROW_H = 15, 32, 15
TIME_STEPS_SECS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
                   86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400, 365 * 86400)


def usd_axis(value: float, step: float) -> str:
    """Money ticks: decimals only as fine as the tick step needs, k/M for large round steps."""
    if step >= 1000 and abs(value) >= 1e5:
        return fmt.compact(value)
    return f"{value:,.{_decimals(step, 0, 2)}f}"


def size_axis(value: float, step: float) -> str:
    return f"{value:,.{_decimals(step, 0, 4)}f}"


def rate_axis(value: float, step: float) -> str:
    """Hourly rates as percentages: 0.0001 -> 0.010%."""
    return f"{value * 100:.{_decimals(step * 100, 2, 5)}f}%"


def pct_axis(value: float, step: float) -> str:
    """Fractions as percentages with as many decimals as the step needs: -0.025 -> -2.5%."""
    return f"{value * 100:.{_decimals(step * 100, 0, 3)}f}%"


def _decimals(step: float, least: int, most: int) -> int:
    if step <= 0 or not math.isfinite(step):
        return least
    places = -math.floor(math.log10(step) + 1e-9)
    if abs(round(step, max(places, 0)) - step) > step * 1e-6:  # 2.5 x 10^n needs one more
        places += 1
    return max(least, min(most, places))


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    colour: str
    points: Sequence[Point]
    dashed: bool = False
    step: bool = False
    last: str | None = None  # the legend's value text; default: the last value, compact


@dataclass(frozen=True, slots=True)
class HLine:
    label: str
    colour: str
    value: float


@dataclass(frozen=True, slots=True)
class Dot:
    ts_ns: int
    value: float
    colour: str
    title: str
    css: str = "marker"


@dataclass(frozen=True, slots=True)
class Band:
    start_ns: int
    end_ns: int
    colour: str
    title: str


@dataclass(slots=True)
class Frame:
    """Maps (time, value) to pixels inside the plot area."""

    width: int
    height: int
    t0: int
    t1: int
    lo: float
    hi: float
    top: int
    left: int = PAD_LEFT
    plot_w: float = field(init=False)
    plot_h: float = field(init=False)

    def __post_init__(self) -> None:
        self.plot_w = self.width - self.left - PAD_RIGHT
        self.plot_h = self.height - self.top - PAD_BOTTOM

    def x(self, ts_ns: int) -> float:
        if self.t1 <= self.t0:
            return self.left + self.plot_w
        return self.left + self.plot_w * (ts_ns - self.t0) / (self.t1 - self.t0)

    def y(self, value: float) -> float:
        return self.top + self.plot_h * (self.hi - value) / (self.hi - self.lo)


def nice_ticks(lo: float, hi: float, count: int = 4) -> tuple[list[float], float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^n steps), and the step."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo], 0.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step)
    ticks: list[float] = []
    index = first
    while index * step <= hi + step * 1e-9 and len(ticks) < 12:
        ticks.append(index * step if index else 0.0)
        index += 1
    return ticks, step


CHARTABLE_MAX = 1e15  # beyond any real equity, size or rate


def value_range(values: Sequence[float], include_zero: bool = False) -> tuple[float, float]:
    """The y range of the values worth drawing: non-finite or absurd ones (a broken field) are left out."""
    finite = [v for v in values if math.isfinite(v) and abs(v) <= CHARTABLE_MAX]
    if include_zero:
        finite.append(0.0)
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        pad = max(abs(hi) * 0.01, 1e-6 if abs(hi) < 1 else 0.5)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_chart(chart_id: str, title: str, lines: Sequence[Line], t0: int, t1: int, width: int,
               height: int = 200, hlines: Sequence[HLine] = (), dots: Sequence[Dot] = (),
               y_format: AxisFormat = usd_axis, include_zero: bool = False, unit: str = "usd") -> str:
    """A time-series chart: grid, y ticks, time ticks, a legend with last values, and the lines."""
    values = [v for line in lines for _, v in line.points]
    values += [h.value for h in hlines] + [d.value for d in dots]
    lo, hi = value_range(values, include_zero)
    legend, top = _legend(width, [(line.label, line.colour, _last(line, y_format), line.dashed)
                                  for line in lines])
    frame = Frame(width, height + top - LEGEND_Y, t0, t1, lo, hi, top)
    parts = _open(chart_id, title, frame, sum(len(line.points) for line in lines) + len(dots), unit)
    parts += legend + _y_grid(frame, y_format) + _x_ticks(frame)
    labels = []
    for h in hlines:
        y = frame.y(h.value)
        parts.append(f'<line class="threshold" x1="{frame.left}" x2="{frame.left + frame.plot_w:.1f}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{h.colour}" stroke-dasharray="6 4">'
                     f"<title>{escape(h.label)}: {escape(y_format(h.value, 0))}</title></line>")
        labels.append(f'<text class="tick threshold-label" x="{frame.left + frame.plot_w - 2:.1f}" '
                      f'y="{y - 3:.1f}" text-anchor="end" fill="{h.colour}">{escape(h.label)}</text>')
    for line in lines:
        parts.append(_path(frame, line))
    parts += labels  # over the lines, on a halo
    for d in dots:
        parts.append(f'<circle class="{d.css}" cx="{frame.x(d.ts_ns):.1f}" cy="{frame.y(d.value):.1f}" '
                     'r="4.5" '
                     f'fill="{d.colour}" stroke="#0f1419" stroke-width="1.5"><title>{escape(d.title)}</title>'
                     "</circle>")
    parts.append("</svg>")
    return "".join(parts)


def band_chart(chart_id: str, title: str, bands: Sequence[Band], legend_entries: Sequence[tuple[str, str]],
               t0: int, t1: int, width: int, height: int = 76, points: int | None = None) -> str:
    """A state timeline: one coloured band per interval, each with its hover text; `points`:
    how many samples the bands summarise (default: one per band)."""
    legend, top = _legend(width, [(name, colour, "", False) for name, colour in legend_entries])
    frame = Frame(width, height + top - LEGEND_Y, t0, t1, 0.0, 1.0, top)
    parts = _open(chart_id, title, frame, len(bands) if points is None else points)
    parts += legend + _x_ticks(frame)
    for b in bands:
        x0, x1 = frame.x(b.start_ns), frame.x(b.end_ns)
        parts.append(f'<rect class="band" x="{x0:.1f}" y="{frame.top}" width="{max(x1 - x0, 2.0):.1f}" '
                     f'height="{frame.plot_h:.1f}" fill="{b.colour}"><title>{escape(b.title)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _open(chart_id: str, title: str, frame: Frame, points: int, unit: str = "") -> list[str]:
    # The plot's geometry lets the page's script turn a cursor position back into time and value.
    geometry = (f'data-unit="{unit}" data-lo="{frame.lo!r}" data-hi="{frame.hi!r}" data-top="{frame.top}" '
                f'data-ph="{frame.plot_h:.3f}" data-left="{frame.left}" data-pw="{frame.plot_w:.3f}" '
                f'data-t0="{frame.t0 // 1_000_000}" data-t1="{frame.t1 // 1_000_000}"') if unit else ""
    return [f'<svg class="chart" id="{escape(chart_id)}" data-points="{points}" width="{frame.width}" '
            f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}" role="img" '
            f'aria-label="{escape(title)}" {geometry}>',
            f'<text class="title" x="10" y="{TITLE_Y}">{escape(title)}</text>']


def _y_grid(frame: Frame, y_format: AxisFormat) -> list[str]:
    parts = []
    right = frame.left + frame.plot_w
    ticks, step = nice_ticks(frame.lo, frame.hi)
    for tick in ticks:
        y = frame.y(tick)
        parts.append(f'<line class="grid" x1="{frame.left}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{frame.left - 5}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(y_format(tick, step))}</text>")
    return parts


def _x_ticks(frame: Frame) -> list[str]:
    bottom = frame.top + frame.plot_h
    parts = [f'<line class="axis" x1="{frame.left}" x2="{frame.left + frame.plot_w:.1f}" '
             f'y1="{bottom:.1f}" y2="{bottom:.1f}"/>']
    if frame.t1 <= frame.t0:
        return parts
    span = frame.t1 - frame.t0
    most = max(2, min(8, int(frame.plot_w // (110 if span > 2 * 86400 * fmt.NS_PER_SEC else 80))))
    step = next((s * fmt.NS_PER_SEC for s in TIME_STEPS_SECS if span / (s * fmt.NS_PER_SEC) <= most),
                span)
    ts = -(-frame.t0 // step) * step  # round times: the first multiple of the step (UTC)
    right = frame.left + frame.plot_w
    while ts <= frame.t1:
        x = frame.x(ts)
        anchor = "start" if x - frame.left < 28 else "end" if right - x < 28 else "middle"
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom:.1f}" '
                     f'y2="{bottom + 3:.1f}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{frame.height - 6}" '
                     f'text-anchor="{anchor}">{escape(fmt.axis_time(ts, span, step))}</text>')
        ts += step
    return parts


def _pixels(frame: Frame, line: Line) -> list[tuple[float, float]]:
    """The line's points in pixels; a step line keeps only where its value changes (and its end)."""
    if frame.t1 > frame.t0:
        ax = frame.plot_w / (frame.t1 - frame.t0)
        bx = frame.left - ax * frame.t0
    else:
        ax, bx = 0.0, frame.left + frame.plot_w
    ay = -frame.plot_h / (frame.hi - frame.lo)
    by = frame.top + frame.plot_h * frame.hi / (frame.hi - frame.lo)
    points = [(t, v) for t, v in line.points if math.isfinite(v)]
    if line.step and len(points) > 2:
        last = len(points) - 1
        points = [p for i, p in enumerate(points) if i in (0, last) or p[1] != points[i - 1][1]]
    return [(ax * t + bx, ay * v + by) for t, v in points]


def _path(frame: Frame, line: Line) -> str:
    points = _pixels(frame, line)
    dash = ' stroke-dasharray="5 3"' if line.dashed else ""
    if len(points) == 1:
        x, y = points[0]
        return f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{line.colour}"/>'
    if not points:
        return ""
    commands = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    if line.step:
        commands += [f"H{x:.1f}V{y:.1f}" if y != y_prev else f"H{x:.1f}"
                     for (_, y_prev), (x, y) in itertools.pairwise(points)]
    else:
        commands += [f"L{x:.1f},{y:.1f}" for x, y in points[1:]]
    return (f'<path class="line" d="{"".join(commands)}" fill="none" stroke="{line.colour}" '
            f'stroke-width="1.8" stroke-linejoin="round"{dash}><title>{escape(line.label)}</title></path>')


def _last(line: Line, y_format: AxisFormat) -> str:
    if line.last is not None:
        return line.last
    return y_format(line.points[-1][1], 0) if line.points else fmt.DASH


def _legend(width: int, entries: Sequence[tuple[str, str, str, bool]]) -> tuple[list[str], int]:
    """Swatch, name and value per series, in rows under the title; returns the parts and the plot top."""
    parts = []
    x, y = 10.0, LEGEND_Y
    for label, colour, value, dashed in entries:
        text = f"{label} {value}".strip()
        item_w = 16 + len(text) * CHAR_W
        if x + item_w > width - PAD_RIGHT and x > 10:
            x, y = 10.0, y + ROW_H
        dash = ' stroke-dasharray="3 2"' if dashed else ""
        parts.append(f'<line x1="{x:.1f}" x2="{x + 11:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
                     f'stroke-width="3"{dash}/>')
        parts.append(f'<text class="legend" x="{x + 15:.1f}" y="{y}">{escape(text)}</text>')
        x += item_w + 14
    return parts, y + 12
