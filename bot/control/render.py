"""Readable terminal rendering of a status object (rich): `perpbot status` and `perpbot watch`.

`status_view(data)` is the compact view (header, one row per market with its four flags, the
last decision per market); `detail=True` adds what `watch` has room for: the numbers behind
each flag, the funding ledger, hedge legs, watchdog inputs and 24 h sparklines.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

FLAGS = ("funding", "liquidity", "volatility", "news")
MODE_STYLE = {"NORMAL": "bold black on green", "REDUCE_ONLY": "bold black on yellow",
              "HALTED": "bold white on red"}
SPARK = "▁▂▃▄▅▆▇█"
# Below this width the markets table keeps whole names and only its core columns (tripped flags in
# one cell, no hedge column); below TALL_ROWS `watch` leaves out the watchdog inputs (80x24 fits).
WIDE_COLS = 120
TALL_ROWS = 48


def _num(value: Any, places: int = 2) -> str:
    if value is None or value == "":
        return "-"
    try:
        return f"{Decimal(str(value)):,.{places}f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _signed(value: Any) -> Text:
    text = _num(value)
    style = "red" if text.startswith("-") and text.strip("-0.,") else ""
    return Text(text, style=style)


def _notional(m: dict[str, Any]) -> Decimal | None:
    price = m.get("oracle_price") or m.get("mid")
    try:
        return Decimal(str(m.get("position"))) * Decimal(str(price))
    except (InvalidOperation, ValueError):
        return None


def _flag_numbers(flag: dict[str, Any]) -> str:
    parts = []
    for key, value in flag.items():
        if key in ("tripped", "why") or value in (None, "", []):
            continue
        shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{key.replace('_usd', '$').replace('_', ' ')} {shown}")
    return " ".join(parts)


def _flag_cell(flag: dict[str, Any], detail: bool) -> Text:
    tripped = bool(flag.get("tripped"))
    text = Text("TRIP" if tripped else "ok", style="bold red" if tripped else "green")
    why = flag.get("why")
    if why and (tripped or detail):
        text.append(f" {why}", style="yellow")
    if detail:
        numbers = _flag_numbers(flag)
        if numbers:
            text.append("\n" + numbers, style="dim")
    return text


def _decision_line(decision: dict[str, Any] | None) -> str:
    """The last decision in one line: when, why (gate reason and flags) and what it does."""
    if not decision:
        return "-"
    when = ""
    if decision.get("ts_ns"):
        when = datetime.fromtimestamp(decision["ts_ns"] / 1e9, tz=UTC).strftime("%H:%M:%S ")
    if decision.get("summary"):
        return when + str(decision["summary"])
    plan = decision.get("plan") or {}
    action = plan.get("side", plan.get("action", "")) + " " + str(plan.get("total", ""))
    why = decision.get("reason", "")
    tripped = ",".join(decision.get("tripped") or [])
    return f"{when}{why}[{tripped}] -> {decision.get('target')} ({action.strip()})"


def header(data: dict[str, Any]) -> Text:
    """Risk mode banner, account facts, PnL attribution and funding in two lines."""
    mode = str(data.get("risk_mode"))
    text = Text(f" {mode} ", style=MODE_STYLE.get(mode, "bold"))
    if data.get("kill_latched"):
        text.append(f"  kill latched: {data.get('kill_reason')}", style="bold red")
    elif data.get("risk_reason"):
        text.append(f"  {data['risk_reason']}", style="yellow")
    if data.get("paused"):
        text.append("  paused", style="bold yellow")
    text.append(f"  {data.get('network')}/{data.get('trading')}  equity ")
    text.append(_num(data.get("equity")), style="bold")
    uptime = data.get("uptime_secs")
    if uptime is not None:
        text.append(f"  up {int(uptime) // 3600}h{int(uptime) % 3600 // 60:02d}m", style="dim")
    dydx = (data.get("account") or {}).get("dydx")
    if isinstance(dydx, dict) and dydx.get("key"):  # live: which key signs (permissioned: no withdrawals)
        style = "green" if dydx.get("key") == "permissioned" else "yellow"
        text.append(f"  {dydx.get('key')} key", style=style)
    pnl = data.get("pnl") or {}
    funding = data.get("funding") or {}
    text.append("\npnl ")
    text.append_text(_signed(pnl.get("total")))
    text.append(f" = price {_num(pnl.get('price'))} funding {_num(pnl.get('funding'))} "
                f"fees {_num(pnl.get('fees'))} slippage {_num(pnl.get('slippage'))}", style="dim")
    text.append(f"   funding realised {_num(funding.get('realised'))} expected "
                f"{_num(funding.get('expected'))} ({funding.get('horizon_hours', '?')}h)")
    orders = data.get("open_orders") or {}
    text.append("\nopen orders " + (" ".join(f"{v}={n}" for v, n in orders.items()) or "-"))
    if data.get("block_height"):
        text.append(f"   block {data['block_height']}")
    news = data.get("news") or []
    if news:
        text.append("   news: ", style="bold")
        text.append(", ".join(str(n.get("item")) for n in news), style="bold magenta")
    return text


def markets_table(data: dict[str, Any], detail: bool = False, width: int | None = None) -> Table:
    """One row per market: position, notional, leverage, the four flags, funding, PnL, hedge.

    Narrower than WIDE_COLS: the core columns only, the tripped flags named in one cell.
    """
    if width is not None and width < WIDE_COLS:
        return _narrow_markets_table(data)
    equity = Decimal(str(data.get("equity") or 0))
    table = Table(show_edge=False, pad_edge=False, header_style="bold dim", expand=False)
    for column, justify in (("market", "left"), ("pos / target", "right"), ("notional", "right"),
                            ("lev", "right"), ("funding", "left"), ("liquidity", "left"),
                            ("volatility", "left"), ("news", "left"), ("fund 1h", "right"),
                            ("pnl", "right"), ("hedge spot / net Δ", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for ticker, m in (data.get("markets") or {}).items():
        notional = _notional(m)
        leverage = f"{abs(notional) / equity:.2f}x" if notional is not None and equity else "-"
        flags = m.get("flags") or {}
        spot = m.get("spot")
        hedge = f"{spot['position']}/{spot['target']} Δ {m.get('net_delta', '-')}" if spot else "-"
        if "hedge_mismatch" in m:
            hedge += f" mismatch {m['hedge_mismatch']}"
        hedge += _hedge_risk(m.get("hedge"))
        try:
            rate = f"{Decimal(str(m.get('funding_rate_1h'))) * 100:.4f}%"
        except (InvalidOperation, ValueError):
            rate = "-"
        table.add_row(
            Text(ticker, style="bold"), f"{m.get('position')} / {m.get('target')}", _num(notional), leverage,
            *(_flag_cell(flags.get(name) or {}, detail) for name in FLAGS),
            rate, _signed((m.get("pnl") or {}).get("total")), hedge,
        )
    return table


def _narrow_markets_table(data: dict[str, Any]) -> Table:
    equity = Decimal(str(data.get("equity") or 0))
    table = Table(show_edge=False, pad_edge=False, header_style="bold dim", expand=False)
    table.add_column("market", no_wrap=True)  # never cut: BTC-USD and ETH-USD must stay apart
    for column in ("pos / target", "notional", "lev", "pnl"):
        table.add_column(column, justify="right")
    table.add_column("flags")
    for ticker, m in (data.get("markets") or {}).items():
        notional = _notional(m)
        leverage = f"{abs(notional) / equity:.1f}x" if notional is not None and equity else "-"
        flags = m.get("flags") or {}
        tripped = [name[:4] for name in FLAGS if (flags.get(name) or {}).get("tripped")]
        table.add_row(Text(ticker, style="bold"), f"{m.get('position')} / {m.get('target')}",
                      _num(notional, 0), leverage, _signed((m.get("pnl") or {}).get("total")),
                      Text(",".join(tripped) or "-", style="bold red" if tripped else "green"))
    return table


def _hedge_risk(hedge: dict[str, Any] | None) -> str:
    """Mismatch at mark, leg risk against its budget, and what the hedge did about it."""
    if not hedge:
        return ""
    text = (f" (${_num(hedge.get('mismatch_usd'))}) leg risk {_num(hedge.get('leg_risk_usd_secs'), 0)}"
            f"/{_num(hedge.get('leg_risk_budget_usd_secs'), 0)} $s")
    if hedge.get("perp_held"):
        text += " perp held"
    if hedge.get("lag_exceeded"):
        text += " LAG"
    if hedge.get("unwinds"):
        text += f" unwinds {hedge['unwinds']} fees {_num(hedge.get('unwind_fees_usd'))}"
    if hedge.get("carry_latched_secs"):
        text += f" carry latched {int(hedge['carry_latched_secs'])}s"
    return text


def funding_table(data: dict[str, Any]) -> Table:
    table = Table(title="funding ledger (USD)", title_justify="left", show_edge=False,
                  header_style="bold dim", title_style="bold")
    for column in ("market", "realised", "expected", "paid", "received", "payments"):
        table.add_column(column, justify="left" if column == "market" else "right")
    for ticker, m in (data.get("markets") or {}).items():
        ledger = m.get("funding_ledger") or {}
        table.add_row(ticker, _num(ledger.get("realised")), _num(ledger.get("expected")),
                      _num(ledger.get("paid")), _num(ledger.get("received")),
                      str(ledger.get("payments", "-")))
    return table


def watchdog_table(data: dict[str, Any]) -> Table | None:
    rows: list[tuple[str, str]] = []
    for section in ("watchdog", "sim"):
        value = data.get(section)
        if isinstance(value, dict):
            rows += [(f"{section}.{k}", str(v)) for k, v in _flatten(value)]
    if not rows:
        return None
    table = Table(title="watchdog inputs", title_justify="left", show_edge=False, show_header=False,
                  title_style="bold")
    table.add_column("input", style="dim")
    table.add_column("value")
    for row in rows[:20]:
        table.add_row(*row)
    return table


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def sparkline(values: Sequence[float], width: int = 48) -> str:
    """Values as one line of block characters, thinned to `width`."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return SPARK[0] * len(values)
    return "".join(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in values)


def history_lines(history: dict[str, Any] | None) -> Text | None:
    """24 h sparklines of equity, exposure and funding from the daemon's `/v1/history`."""
    if not history or not history.get("rows"):
        return None
    columns = history["columns"]
    rows = history["rows"]
    text = Text("last 24h", style="bold")
    for label, column in (("equity", "equity_usd"), ("gross exposure", "gross_exposure_usd"),
                          ("funding realised", "funding_realised_usd")):
        index = columns.index(column)
        values = [float(r[index]) for r in rows]
        text.append(f"\n{label:>16} ")
        text.append(sparkline(values), style="cyan")
        text.append(f" {values[-1]:,.2f} (min {min(values):,.2f} max {max(values):,.2f})", style="dim")
    return text


def decision_lines(data: dict[str, Any]) -> Text:
    """"Why did it trade?": the last decision per market, one line each."""
    text = Text()
    for ticker, m in (data.get("markets") or {}).items():
        if text:
            text.append("\n")
        text.append(ticker, style="bold")
        text.append(f" last decision: {_decision_line(m.get('last_decision'))}")
    return text


def status_view(data: dict[str, Any], *, detail: bool = False, history: dict[str, Any] | None = None,
                size: tuple[int, int] | None = None) -> Group:
    """The status as one rich renderable (compact, or detailed for `watch`); `size` is the
    terminal's (columns, rows): a small one gets the narrow table and no watchdog inputs."""
    width, height = size if size is not None else (None, None)
    decisions = decision_lines(data)
    if width is not None and width < WIDE_COLS:
        decisions.no_wrap, decisions.overflow = True, "ellipsis"  # one row per market
    parts: list[RenderableType] = [header(data), Text(), markets_table(data, detail, width), Text(),
                                   decisions]
    if detail:
        short = height is not None and height < TALL_ROWS
        gap: list[RenderableType] = [] if short else [Text()]
        parts += [*gap, funding_table(data)]
        watchdog = watchdog_table(data)
        if watchdog is not None and not short:
            parts += [*gap, watchdog]
        lines = history_lines(history)
        if lines is not None:
            parts += [*gap, lines]
    return Group(*parts)


def render_status(data: dict[str, Any], console: Console | None = None) -> None:
    """Print the compact status view."""
    # Off a terminal rich assumes 80 columns and would wrap every cell; give the table room.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    console.print(Group(header(data), Text(), markets_table(data), Text()), highlight=False)
    # Decisions are long: never wrapped, so each stays one greppable line.
    console.print(decision_lines(data), soft_wrap=True, highlight=False)
