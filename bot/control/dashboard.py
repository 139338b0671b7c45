"""The operator dashboard: one server-rendered page and a JSON endpoint it polls.

Everything is rendered here, in Python, from the control core's `status()` object: the page's
first paint and every poll of `/v1/dashboard?range=24h&w=640&fw=1300` (the same sections as HTML
fragments, plus the raw status). The page's JavaScript (static/dashboard.js) only swaps those
fragments in, keeps the chosen range and the measured chart widths, and runs the kill
confirmation. Charts are inline SVG (charts.py, svg.py) drawn from `StatusHistory` (history.py):
sampled live state plus the store's decisions and funding payments. No build step, no CDN.

Sessions: the token is exchanged once (`/?token=...` or a bearer header on `/`) for a random
session id in an HttpOnly, SameSite=Strict cookie; the session also holds a CSRF token that the
page sends back as a header on the one state-changing call it makes (kill).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from bot.clock import Clock
from bot.control import charts, fmt
from bot.control.board import render_board
from bot.control.history import (
    DEFAULT_RANGE,
    RANGES,
    Marker,
    Sample,
    StatusHistory,
    Thresholds,
    marker_from_status,
    sample_from_status,
    thresholds_from,
)

__all__ = ["Dashboard", "Session", "Sessions", "StatusHistory", "sample_from_status"]

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
    """Renders the page and its poll payload from the control core's status and the history."""

    def __init__(self, status_fn: StatusFn, clock: Clock, history: StatusHistory | None = None) -> None:
        self._status_fn = status_fn
        self._clock = clock
        self._history = history
        self._template = Template((STATIC_DIR / "dashboard.html").read_text())
        self._assets = {name: (STATIC_DIR / name).read_bytes() for name in ASSETS}

    def page(self, csrf: str) -> str:
        """The whole page, first paint included; `csrf` goes into a meta tag for the kill call."""
        sections = self.sections(self._status_fn())
        return self._template.substitute(csrf=escape(csrf), poll_ms=POLL_INTERVAL_MS,
                                         range=DEFAULT_RANGE, **sections)

    def payload(self, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What the page polls: the sections as HTML fragments, plus the raw status.

        `query`: `range` (1h, 24h, 7d, all), `w` and `fw` (chart and full-row widths in px)."""
        query = query or {}
        status = self._status_fn()
        chosen = query.get("range", DEFAULT_RANGE)
        chosen = chosen if chosen in RANGES else DEFAULT_RANGE
        html = self.sections(status, chosen, charts.clamp_width(query.get("w")),
                             charts.clamp_width(query.get("fw"), 2 * charts.DEFAULT_WIDTH))
        return {"ts_ns": self._clock.now_ns(), "risk_mode": status.get("risk_mode"), "range": chosen,
                "html": html, "status": status}

    def asset(self, name: str) -> tuple[bytes, str] | None:
        if name not in self._assets:
            return None
        return self._assets[name], ASSETS[name]

    def sections(self, status: dict[str, Any], range_key: str = DEFAULT_RANGE,
                 width: int = charts.DEFAULT_WIDTH,
                 full_width: int = 2 * charts.DEFAULT_WIDTH) -> dict[str, str]:
        now = self._clock.now_ns()
        live = sample_from_status(status, now)
        history = self._history
        range_secs = RANGES[range_key]
        series = history.series(live, range_secs=range_secs) if history is not None else [live]
        markers = list(history.markers) if history is not None else []
        payments = list(history.payments) if history is not None else []
        markets = _markets(status)
        markers += _live_markers(markets, markers)
        t0, t1 = charts.span(series, markers, payments, now, range_secs)
        view = charts.View(t0, t1, width, full_width)
        thresholds = history.thresholds if history is not None else Thresholds()
        if history is not None and history.settings is not None and isinstance(status.get("fees"), dict):
            thresholds = thresholds_from(history.settings, status["fees"])
        return {
            "banner": render_banner(status, now),
            "charts": charts.overview(series, view),
            "market_charts": render_market_charts(markets, series, markers, payments, thresholds, view),
            "markets": render_markets(status),
            "pnl": render_pnl(status),
            "funding": render_funding(status),
            "hedge": render_hedge(status),
            "accounts": render_accounts(status),
            "orders": render_orders(status),
            "watchdog": render_board(status, thresholds),
            "news": render_news(status),
        }


def render_chart_sections(series: list[Sample], width: int = charts.DEFAULT_WIDTH) -> str:
    """The overview charts alone (tests and tools)."""
    now = series[-1].ts_ns if series else 0
    return charts.overview(series, charts.View(series[0].ts_ns if series else now, now, width, 2 * width))


def _markets(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    markets = status.get("markets")
    if not isinstance(markets, dict):
        return {}
    return {str(t): m for t, m in markets.items() if isinstance(m, dict)}


def _live_markers(markets: dict[str, dict[str, Any]], stored: list[Marker]) -> list[Marker]:
    """Each market's live last decision, when the store read has not caught up with it yet."""
    known = {(m.market, m.ts_ns) for m in stored}
    live = [marker_from_status(t, m.get("last_decision")) for t, m in markets.items()]
    return [m for m in live if m is not None and (m.market, m.ts_ns) not in known]


def render_market_charts(markets: dict[str, dict[str, Any]], series: list[Sample], markers: list[Marker],
                         payments: list[Any], thresholds: Thresholds, view: charts.View) -> str:
    cards = []
    for ticker, m in markets.items():
        notional = _notional(m.get("position"), m.get("oracle_price") or m.get("mid"))
        operator = _dict(m.get("operator_target"))
        facts = [("position", fmt.size(m.get("position"))), ("target", fmt.size(m.get("target"))),
                 *([("operator target", str(operator["spec"]))] if operator.get("spec") else []),
                 ("notional", fmt.usd(notional)), ("oracle", fmt.price(m.get("oracle_price"))),
                 ("funding", fmt.rate_pct(m.get("funding_rate_1h")) + "/h")]
        facts_html = "".join(f"<span><em>{escape(k)}</em> {escape(v)}</span>" for k, v in facts)
        cards.append(f'<article class="market-card" data-market-card="{escape(ticker)}">'
                     f"<h3>{escape(ticker)}{_market_status(m.get('market_status'))}"
                     f'<span class="market-facts">{facts_html}</span></h3>'
                     f'<div class="chart-grid">'
                     f"{charts.market_charts(ticker, series, markers, payments, thresholds, view)}"
                     "</div></article>")
    return "".join(cards) or '<p class="muted">no markets</p>'


def _market_status(value: Any) -> str:
    """The venue's market status (ACTIVE, CLOSE_ONLY, ...), when the status carries it."""
    if not isinstance(value, str) or not value:
        return ""
    state = "ok" if value.upper() == "ACTIVE" else "warn"
    return f'<span class="pill pill-{state}" data-market-status="{escape(value)}">{escape(value)}</span>'


def render_accounts(status: dict[str, Any]) -> str:
    """Per venue: identity, equity, free collateral, margin use and fee rates, as far as reported."""
    accounts, fees = _dict(status.get("account")), _dict(status.get("fees"))
    rows = []
    for venue in dict.fromkeys([*accounts, *fees]):
        account, rates = accounts.get(venue), _dict(fees.get(venue))
        if not isinstance(account, dict):  # older daemons: the identity alone
            account = {"id": account}
        ident = next((str(account[k]) for k in ("id", "address", "key") if account.get(k)), "-")
        fee = (f"{fmt.rate_pct(rates.get('maker'), 3)} / {fmt.rate_pct(rates.get('taker'), 3)}"
               if rates else "-")
        rows.append((venue, ident, fmt.usd(account.get("equity")), fmt.usd(account.get("free_collateral")),
                     fmt.rate_pct(account.get("margin_use"), 2), fee,
                     str(account.get("source") or rates.get("source") or "-")))
    if not rows:
        return '<p class="muted">no account data</p>'
    head = ("venue", "account", "equity", "free collateral", "margin use", "fees maker / taker", "source")
    return _table(head, rows, numeric_from=2)


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
    pnl = _dict(status.get("pnl"))
    facts = [
        ("network", f"{status.get('network', '-')}/{status.get('trading', '-')}"),
        ("equity (USD)", fmt.usd(status.get("equity"))),
        ("PnL (USD)", fmt.usd(pnl.get("total"), sign=True)),
        ("fees paid (USD)", fmt.usd(status.get("fees_paid"))),
        ("uptime", fmt.duration(status.get("uptime_secs"))),
        ("updated", fmt.clock(now_ns)),
    ]
    facts_html = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
    return f'<div class="banner-mode">{"".join(parts)}</div><dl class="facts">{facts_html}</dl>'


def render_markets(status: dict[str, Any]) -> str:
    equity = fmt.dec(status.get("equity"))
    head = ("Market", "Position / target", "Notional (USD)", "Leverage", *(n.capitalize() for n in FLAGS),
            "Last decision")
    rows = []
    for ticker, m in _markets(status).items():
        notional = _notional(m.get("position"), m.get("oracle_price") or m.get("mid"))
        leverage = fmt.leverage(abs(notional) / equity) if notional is not None and equity else fmt.DASH
        flags = _dict(m.get("flags"))
        cells = [
            f'<td class="market" data-label="{head[0]}"><b>{escape(ticker)}</b>'
            f'<small>oracle {escape(fmt.price(m.get("oracle_price")))}'
            f' · mid {escape(fmt.price(m.get("mid")))}</small></td>',
            f'<td class="num" data-field="position" data-label="{head[1]}">'
            f'{escape(fmt.size(m.get("position")))}'
            f'<small>target {escape(fmt.size(m.get("target")))}</small></td>',
            f'<td class="num" data-field="notional" data-label="{head[2]}">{escape(fmt.usd(notional))}</td>',
            f'<td class="num" data-field="leverage" data-label="{head[3]}">{escape(leverage)}</td>',
            *(_flag_cell(name, _dict(flags.get(name))) for name in FLAGS),
            f'<td class="decision" data-label="{head[-1]}">{_decision_html(m.get("last_decision"))}</td>',
        ]
        rows.append(f'<tr data-market="{escape(ticker)}">{"".join(cells)}</tr>')
    thead = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f'<table class="markets stack"><thead><tr>{thead}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _flag_cell(name: str, flag: dict[str, Any]) -> str:
    tripped = bool(flag.get("tripped"))
    state = "tripped" if tripped else "clear" if flag else "-"
    numbers = " · ".join(f"{escape(str(k))} {escape(_short(v))}" for k, v in flag.items()
                         if k not in ("tripped", "why") and v not in (None, ""))
    why = flag.get("why") or ""
    why_html = f'<small class="why">{escape(str(why))}</small>' if why else ""
    return (f'<td class="flag flag-{state}" data-flag="{escape(name)}" data-tripped="{str(tripped).lower()}" '
            f'data-label="{escape(name.capitalize())}"><b>{state}</b>{why_html}<small>{numbers}</small></td>')


def _decision_html(decision: Any) -> str:
    if not isinstance(decision, dict):
        return "-"
    when = fmt.clock(decision["ts_ns"]) if isinstance(decision.get("ts_ns"), int) else ""
    flags = decision.get("tripped")
    tripped = ", ".join(str(t) for t in flags if t) if isinstance(flags, list | tuple) else ""
    tripped = tripped or "no flags"
    summary = decision.get("summary") or json.dumps(decision.get("plan"))
    return (f'<b>{escape(str(decision.get("reason", "")))}</b> <span class="when">{escape(when)}</span>'
            f' <span class="tripped">({escape(tripped)})</span><small>{escape(str(summary))}</small>')


def render_pnl(status: dict[str, Any]) -> str:
    keys = ("price", "funding", "fees", "slippage", "total")
    rows = [(t, _dict(m.get("pnl"))) for t, m in _markets(status).items()]
    rows.append(("all", _dict(status.get("pnl"))))
    return _table(("", *keys), [(t, *(fmt.usd(p.get(k), sign=True) for k in keys)) for t, p in rows],
                  numeric_from=1)


def render_funding(status: dict[str, Any]) -> str:
    funding = _dict(status.get("funding"))
    horizon = funding.get("horizon_hours")
    rows = []
    for ticker, m in _markets(status).items():
        ledger = _dict(m.get("funding_ledger"))
        rows.append((ticker, fmt.rate_pct(m.get("funding_rate_1h")),
                     fmt.usd(ledger.get("realised"), sign=True),
                     fmt.usd(ledger.get("expected"), sign=True), fmt.usd(ledger.get("paid")),
                     fmt.usd(ledger.get("received")), fmt.fixed(ledger.get("payments"), 0)))
    rows.append(("all", "", fmt.usd(funding.get("realised"), sign=True),
                 fmt.usd(funding.get("expected"), sign=True), "", "", ""))
    expected = f"expected {horizon} h" if isinstance(horizon, int) else "expected"
    head = ("", "rate /h", "realised", expected, "paid", "received", "payments")
    return _table(head, rows, numeric_from=1)


def render_hedge(status: dict[str, Any]) -> str:
    markets = {t: m for t, m in _markets(status).items() if m.get("spot") or "hedge_mismatch" in m}
    if not markets:
        return '<p class="muted">no hedge legs</p>'
    has_mismatch = any("hedge_mismatch" in m for m in markets.values())
    rows = []
    for ticker, m in markets.items():
        spot = _dict(m.get("spot"))
        row = (ticker, fmt.size(m.get("position")), str(spot.get("market", "-")),
               f"{fmt.size(spot.get('position'))} / {fmt.size(spot.get('target'))}",
               fmt.size(m.get("net_delta")))
        rows.append((*row, fmt.size(m.get("hedge_mismatch"))) if has_mismatch else row)
    head = ("perp", "position", "spot", "spot pos / target", "net delta")
    return _table((*head, "mismatch") if has_mismatch else head, rows, numeric_from=1)


def render_orders(status: dict[str, Any]) -> str:
    orders = _dict(status.get("open_orders"))
    total = sum(int(n) for n in orders.values() if isinstance(n, int))
    return _table(("venue", "open orders"), [(v, str(n)) for v, n in orders.items()],
                  attrs=f' data-open-orders="{total}"', numeric_from=1)


def render_news(status: dict[str, Any]) -> str:
    items = status.get("news") or []
    if not isinstance(items, list) or not items:
        return '<p class="muted">no active news items</p>'
    rows = [(str(n.get("item")), str(n.get("source", "")), fmt.duration(n.get("remaining_secs")))
            for n in items if isinstance(n, dict)]
    return _table(("item", "source", "remaining"), rows)


# ---- helpers ---------------------------------------------------------------------------------


def _notional(size: Any, price: Any) -> Any:
    a, b = fmt.dec(size), fmt.dec(price)
    return None if a is None or b is None else a * b


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _short(value: Any) -> str:
    """Flag numbers: decimals trimmed to a readable length."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    number = fmt.dec(value)
    if number is None:
        return str(value)
    if number == number.to_integral_value() or abs(number) >= 100:
        return f"{number:,.2f}".rstrip("0").rstrip(".") if abs(number) < 1e12 else str(number)
    return f"{number:.4g}"


def _table(head: tuple[str, ...], rows: Sequence[Sequence[Any]], attrs: str = "",
           numeric_from: int = 99) -> str:
    """A plain table; every cell is escaped here. Cells carry their column name (`data-label`),
    which the phone layout shows when it stacks the cells."""
    num = [' class="num"' if i >= numeric_from else "" for i in range(len(head))]
    thead = "".join(f"<th{num[i]}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(
        f'<td{num[i]} data-label="{escape(head[i])}">{escape(str(c))}</td>'
        for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{thead}</tr></thead><tbody>{body}</tbody></table>"
