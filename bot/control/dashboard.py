"""The operator dashboard: one server-rendered page, a JSON endpoint it polls, and a status history.

Everything is rendered here, in Python, from the control core's `status()` object: the page's
first paint and every poll of `/v1/dashboard` (which returns the same sections as HTML
fragments, plus the raw status). The page's JavaScript (static/dashboard.js) only swaps those
fragments in and runs the kill confirmation. Charts are inline SVG drawn from a bounded
in-memory history that `StatusHistory` samples every few seconds. No build step, no CDN.

Sessions: the token is exchanged once (`/?token=...` or a bearer header on `/`) for a random
session id in an HttpOnly, SameSite=Strict cookie; the session also holds a CSRF token that the
page sends back as a header on the one state-changing call it makes (kill).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from bot.clock import Clock

NS_PER_SEC = 1_000_000_000
HISTORY_INTERVAL_SECS = 5.0
HISTORY_WINDOW_SECS = 24 * 3600.0
MAX_CHART_POINTS = 360
POLL_INTERVAL_MS = 2000
SESSION_COOKIE = "perpbot_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_SECS = 12 * 3600.0
MAX_SESSIONS = 32
FLAGS = ("funding", "liquidity", "volatility", "news")
STATIC_DIR = Path(__file__).parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# Everything is same-origin; inline SVG needs no img-src; the page runs no inline script or style.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

StatusFn = Callable[[], dict[str, Any]]


# ---- history ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the dashboard charts (floats: display only, never stored as money)."""

    ts_ns: int
    equity_usd: float
    gross_exposure_usd: float
    net_exposure_usd: float
    funding_realised_usd: float
    funding_expected_usd: float


def sample_from_status(status: dict[str, Any], ts_ns: int) -> Sample:
    """Equity, gross/net exposure (perp and spot legs at their marks) and funding from a status."""
    gross = net = 0.0
    for market in status.get("markets", {}).values():
        for notional in _leg_notionals(market):
            gross += abs(notional)
            net += notional
    funding = status.get("funding") or {}
    return Sample(ts_ns, _float(status.get("equity")), gross, net,
                  _float(funding.get("realised")), _float(funding.get("expected")))


class StatusHistory:
    """Samples the status every `interval_secs` and keeps the last `window_secs` in memory."""

    name = "dashboard_history"

    def __init__(self, status_fn: StatusFn, clock: Clock, interval_secs: float = HISTORY_INTERVAL_SECS,
                 window_secs: float = HISTORY_WINDOW_SECS) -> None:
        self._status_fn = status_fn
        self._clock = clock
        self._interval_secs = interval_secs
        self._window_ns = int(window_secs * NS_PER_SEC)
        self.samples: deque[Sample] = deque(maxlen=int(window_secs / interval_secs) + 2)

    async def run(self) -> None:
        while True:
            self.record(self._status_fn())
            await self._clock.sleep(self._interval_secs)

    def record(self, status: dict[str, Any]) -> Sample:
        """Append a sample taken from `status` now; drop samples older than the window."""
        now = self._clock.now_ns()
        sample = sample_from_status(status, now)
        self.samples.append(sample)
        while self.samples and now - self.samples[0].ts_ns > self._window_ns:
            self.samples.popleft()
        return sample

    def as_json(self) -> dict[str, Any]:
        """The whole window for terminal clients: column names and rows, oldest first."""
        columns = [f.name for f in fields(Sample)]
        return {"interval_secs": self._interval_secs, "columns": columns,
                "rows": [[getattr(s, c) for c in columns] for s in self.samples]}

    def series(self, live: Sample | None = None, max_points: int = MAX_CHART_POINTS) -> list[Sample]:
        """At most `max_points` samples, evenly thinned, oldest first, ending with `live` if given."""
        points = list(self.samples)
        if len(points) > max_points - 1:
            step = len(points) / (max_points - 1)
            points = [points[int(i * step)] for i in range(max_points - 1)]
        if live is not None:
            points.append(live)
        return points


# ---- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    expires: float  # monotonic seconds


class Sessions:
    """Dashboard sessions: random ids (never the token), bounded in number and lifetime."""

    def __init__(self, ttl_secs: float = SESSION_TTL_SECS, max_sessions: int = MAX_SESSIONS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_secs
        self._max = max_sessions
        self._monotonic = monotonic
        self._sessions: dict[str, Session] = {}

    @property
    def ttl_secs(self) -> float:
        return self._ttl

    def create(self) -> Session:
        now = self._monotonic()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
        while len(self._sessions) >= self._max:  # evict the oldest
            del self._sessions[next(iter(self._sessions))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self._ttl)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires <= self._monotonic():
            return None
        return session


# ---- the page --------------------------------------------------------------------------------


class Dashboard:
    """Renders the page and its poll payload from the control core's status."""

    def __init__(self, status_fn: StatusFn, clock: Clock, history: StatusHistory | None = None) -> None:
        self._status_fn = status_fn
        self._clock = clock
        self._history = history
        self._template = Template((STATIC_DIR / "dashboard.html").read_text())
        self._assets = {name: (STATIC_DIR / name).read_bytes() for name in ASSETS}

    def page(self, csrf: str) -> str:
        """The whole page, first paint included; `csrf` goes into a meta tag for the kill call."""
        sections = self.sections(self._status_fn())
        return self._template.substitute(csrf=escape(csrf), poll_ms=POLL_INTERVAL_MS, **sections)

    def payload(self) -> dict[str, Any]:
        """What the page polls: the sections as HTML fragments, plus the raw status."""
        status = self._status_fn()
        return {"ts_ns": self._clock.now_ns(), "risk_mode": status.get("risk_mode"),
                "html": self.sections(status), "status": status}

    def asset(self, name: str) -> tuple[bytes, str] | None:
        if name not in self._assets:
            return None
        return self._assets[name], ASSETS[name]

    def sections(self, status: dict[str, Any]) -> dict[str, str]:
        live = sample_from_status(status, self._clock.now_ns())
        series = self._history.series(live) if self._history is not None else [live]
        return {
            "banner": render_banner(status, self._clock.now_ns()),
            "markets": render_markets(status),
            "pnl": render_pnl(status),
            "funding": render_funding(status),
            "hedge": render_hedge(status),
            "orders": render_orders(status),
            "watchdog": render_watchdog(status),
            "news": render_news(status),
            "charts": render_charts(series),
        }


def render_banner(status: dict[str, Any], now_ns: int) -> str:
    mode = str(status.get("risk_mode", "?"))
    parts = [f'<div class="mode mode-{escape(mode)}" data-risk-mode="{escape(mode)}">{escape(mode)}</div>']
    if status.get("risk_reason"):
        parts.append(f'<span class="reason">{escape(str(status["risk_reason"]))}</span>')
    if status.get("kill_latched"):
        parts.append(f'<span class="latched">kill latched: {escape(str(status.get("kill_reason")))}'
                     "</span>")
    if status.get("paused"):
        parts.append('<span class="latched">paused</span>')
    pnl = status.get("pnl") or {}
    facts = [
        ("network", f"{status.get('network')}/{status.get('trading')}"),
        ("equity", _num(status.get("equity"))),
        ("pnl", _num(pnl.get("total"))),
        ("fees paid", _num(status.get("fees_paid"))),
        ("uptime", _duration(status.get("uptime_secs"))),
        ("updated", _hhmmss(now_ns)),
    ]
    facts_html = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
    return f'<div class="banner-mode">{"".join(parts)}</div><dl class="facts">{facts_html}</dl>'


def render_markets(status: dict[str, Any]) -> str:
    equity = _decimal(status.get("equity"))
    head = "".join(f"<th>{h}</th>" for h in (
        "Market", "Position / target", "Notional", "Leverage", "Funding", "Liquidity", "Volatility",
        "News", "Last decision"))
    rows = []
    for ticker, m in status.get("markets", {}).items():
        notional = _notional(m.get("position"), m.get("oracle_price") or m.get("mid"))
        leverage = f"{abs(notional) / equity:.2f}x" if notional is not None and equity else "-"
        flags = m.get("flags") or {}
        cells = [
            f'<td class="market"><b>{escape(ticker)}</b><small>oracle {escape(str(m.get("oracle_price")))}'
            f' · mid {escape(str(m.get("mid")))}</small></td>',
            f'<td class="num" data-field="position">{escape(str(m.get("position")))}'
            f'<small>target {escape(str(m.get("target")))}</small></td>',
            f'<td class="num" data-field="notional">{escape(_num(notional))}</td>',
            f'<td class="num" data-field="leverage">{escape(leverage)}</td>',
            *(_flag_cell(name, flags.get(name) or {}) for name in FLAGS),
            f'<td class="decision">{_decision_html(m.get("last_decision"))}</td>',
        ]
        rows.append(f'<tr data-market="{escape(ticker)}">{"".join(cells)}</tr>')
    return f'<table class="markets"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _flag_cell(name: str, flag: dict[str, Any]) -> str:
    tripped = bool(flag.get("tripped"))
    state = "tripped" if tripped else "clear"
    numbers = " · ".join(f"{escape(k)} {escape(_short(v))}" for k, v in flag.items()
                         if k not in ("tripped", "why") and v not in (None, ""))
    why = flag.get("why") or ""
    why_html = f'<small class="why">{escape(str(why))}</small>' if why else ""
    return (f'<td class="flag flag-{state}" data-flag="{escape(name)}" data-tripped="{str(tripped).lower()}">'
            f"<b>{state}</b>{why_html}<small>{numbers}</small></td>")


def _decision_html(decision: dict[str, Any] | None) -> str:
    if not decision:
        return "-"
    when = _hhmmss(decision["ts_ns"]) if decision.get("ts_ns") else ""
    tripped = ", ".join(decision.get("tripped") or []) or "no flags"
    summary = decision.get("summary") or json.dumps(decision.get("plan"))
    return (f'<b>{escape(str(decision.get("reason", "")))}</b> <span class="when">{escape(when)}</span>'
            f' <span class="tripped">({escape(tripped)})</span><small>{escape(str(summary))}</small>')


def render_pnl(status: dict[str, Any]) -> str:
    keys = ("price", "funding", "fees", "slippage", "total")
    rows = [(t, m.get("pnl") or {}) for t, m in status.get("markets", {}).items()]
    rows.append(("all", status.get("pnl") or {}))
    return _table(("", *keys), [(t, *(_num(p.get(k)) for k in keys)) for t, p in rows])


def render_funding(status: dict[str, Any]) -> str:
    funding = status.get("funding") or {}
    horizon = funding.get("horizon_hours", "?")
    rows = []
    for ticker, m in status.get("markets", {}).items():
        ledger = m.get("funding_ledger") or {}
        rows.append((ticker, _pct(m.get("funding_rate_1h")), _num(ledger.get("realised")),
                     _num(ledger.get("expected")), _num(ledger.get("paid")), _num(ledger.get("received")),
                     str(ledger.get("payments", "-"))))
    rows.append(("all", "", _num(funding.get("realised")), _num(funding.get("expected")), "", "", ""))
    head = ("", "rate 1h", "realised", f"expected ({horizon} h)", "paid", "received", "payments")
    return _table(head, rows)


def render_hedge(status: dict[str, Any]) -> str:
    markets = {t: m for t, m in status.get("markets", {}).items() if m.get("spot") or "hedge_mismatch" in m}
    if not markets:
        return '<p class="muted">no hedge legs</p>'
    has_mismatch = any("hedge_mismatch" in m for m in markets.values())
    rows = []
    for ticker, m in markets.items():
        spot = m.get("spot") or {}
        row = (ticker, str(m.get("position")), str(spot.get("market", "-")),
               f"{spot.get('position', '-')} / {spot.get('target', '-')}", str(m.get("net_delta", "-")))
        rows.append((*row, str(m.get("hedge_mismatch", "-"))) if has_mismatch else row)
    head = ("perp", "position", "spot", "spot pos / target", "net delta")
    return _table((*head, "mismatch") if has_mismatch else head, rows)


def render_orders(status: dict[str, Any]) -> str:
    orders = status.get("open_orders") or {}
    return _table(("venue", "open orders"), [(v, str(n)) for v, n in orders.items()],
                  attrs=f' data-open-orders="{sum(int(n) for n in orders.values())}"')


def render_watchdog(status: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("block height", str(status.get("block_height", "-")))]
    for section in ("watchdog", "sim"):
        value = status.get(section)
        if isinstance(value, dict):
            rows += [(f"{section}.{k}", v) for k, v in _flatten(value)]
    return _table(("input", "value"), rows)


def render_news(status: dict[str, Any]) -> str:
    items = status.get("news") or []
    if not items:
        return '<p class="muted">no active news items</p>'
    rows = [(str(n.get("item")), str(n.get("source", "")), _duration(n.get("remaining_secs")))
            for n in items]
    return _table(("item", "source", "remaining"), rows)


def render_charts(series: list[Sample]) -> str:
    ts = [s.ts_ns for s in series]
    return "".join([
        svg_chart("equity (USD)", ts, [("equity", "s1", [s.equity_usd for s in series])]),
        svg_chart("exposure (USD)", ts, [("gross", "s1", [s.gross_exposure_usd for s in series]),
                                         ("net", "s2", [s.net_exposure_usd for s in series])]),
        svg_chart("funding (USD)", ts, [("realised", "s1", [s.funding_realised_usd for s in series]),
                                        ("expected", "s2", [s.funding_expected_usd for s in series])]),
    ])


def svg_chart(title: str, ts_ns: list[int], lines: list[tuple[str, str, list[float]]],
              width: int = 480, height: int = 150) -> str:
    """An inline SVG line chart with min/max and start/end labels; CSS classes give the colours."""
    left, right, top, bottom = 64, 8, 18, 18
    values = [v for _, _, vs in lines for v in vs]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        pad = max(abs(hi) * 1e-3, 0.01)
        lo, hi = lo - pad, hi + pad
    t0, t1 = (ts_ns[0], ts_ns[-1]) if ts_ns else (0, 0)
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(t: int, v: float) -> str:
        x = left + (plot_w * (t - t0) / (t1 - t0) if t1 > t0 else plot_w)
        y = top + plot_h * (hi - v) / (hi - lo)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text class="title" x="{left}" y="12">{escape(title)}</text>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"/>',
             f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{_compact(hi)}</text>',
             f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">{_compact(lo)}</text>']
    if ts_ns:
        parts += [f'<text class="tick" x="{left}" y="{height - 4}">{_hhmm(t0)}</text>',
                  f'<text class="tick" x="{width - right}" y="{height - 4}" '
                  f'text-anchor="end">{_hhmm(t1)}</text>']
    legend_x = width - right
    for label, css, vs in reversed(lines):
        points = " ".join(xy(t, v) for t, v in zip(ts_ns, vs, strict=False))
        if len(vs) == 1:
            x, y = xy(ts_ns[0], vs[0]).split(",")
            parts.append(f'<circle class="line {css}" cx="{x}" cy="{y}" r="2"/>')
        elif vs:
            parts.append(f'<polyline class="line {css}" points="{points}"/>')
        last = _compact(vs[-1]) if vs else "-"
        parts.append(f'<text class="legend {css}" x="{legend_x}" y="12" text-anchor="end">'
                     f"{escape(label)} {last}</text>")
        legend_x -= 130
    parts.append("</svg>")
    return "".join(parts)


# ---- helpers ---------------------------------------------------------------------------------


def _leg_notionals(market: dict[str, Any]) -> Iterable[float]:
    perp = _notional(market.get("position"), market.get("oracle_price") or market.get("mid"))
    if perp is not None:
        yield float(perp)
    spot = market.get("spot") or {}
    spot_notional = _notional(spot.get("position"), spot.get("mid"))
    if spot_notional is not None:
        yield float(spot_notional)


def _notional(size: Any, price: Any) -> Decimal | None:
    if size is None or price is None:
        return None
    try:
        return Decimal(str(size)) * Decimal(str(price))
    except (InvalidOperation, ValueError):
        return None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _num(value: Any, places: int = 2) -> str:
    if value is None or value == "":
        return "-"
    try:
        return f"{Decimal(str(value)):,.{places}f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _pct(value: Any) -> str:
    try:
        return f"{Decimal(str(value)) * 100:.4f}%"
    except (InvalidOperation, ValueError, TypeError):
        return "-"


def _short(value: Any) -> str:
    """Flag numbers: decimals trimmed to a readable length."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if number == number.to_integral_value() or abs(number) >= 100:
        return f"{number:.2f}".rstrip("0").rstrip(".") if abs(number) < 1e12 else str(number)
    return f"{number:.6g}"


def _compact(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.2f}"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and len(rows) < 50:
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


def _table(head: tuple[str, ...], rows: Sequence[Sequence[Any]], attrs: str = "") -> str:
    """A plain table; every cell is escaped here."""
    thead = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{thead}</tr></thead><tbody>{body}</tbody></table>"


def _hhmmss(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_SEC, tz=UTC).strftime("%H:%M:%SZ")


def _hhmm(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_SEC, tz=UTC).strftime("%H:%M")


def _duration(secs: Any) -> str:
    try:
        total = int(float(secs))
    except (TypeError, ValueError):
        return "-"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
