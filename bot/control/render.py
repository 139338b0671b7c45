"""Readable terminal rendering of a status object (rich)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def _flags_cell(flags: dict[str, Any]) -> str:
    tripped = [name for name in ("funding", "liquidity", "volatility", "news")
               if flags.get(name, {}).get("tripped")]
    return f"[red]{','.join(tripped)}[/red]" if tripped else "-"


def _decision_cell(decision: dict[str, Any] | None) -> str:
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


def render_status(data: dict[str, Any], console: Console | None = None) -> None:
    """Print the header line and one row per market."""
    # Off a terminal rich assumes 80 columns and would wrap every cell; give the table room.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    mode = data["risk_mode"]
    colour = {"NORMAL": "green", "REDUCE_ONLY": "yellow", "HALTED": "red"}.get(mode, "white")
    latch = " (kill latched)" if data.get("kill_latched") else ""
    pnl = data.get("pnl") or {}
    pnl_text = (f"  pnl {pnl.get('total')} (price {pnl.get('price')} funding {pnl.get('funding')} "
                f"fees {pnl.get('fees')} slippage {pnl.get('slippage')})" if pnl else "")
    console.print(
        f"[{colour}]{mode}[/{colour}]{latch}  {data['network']}/{data['trading']}  "
        f"equity {data['equity']}  funding realised {data['funding']['realised']} "
        f"expected {data['funding']['expected']}{pnl_text}  open orders {data['open_orders']}"
    )
    news = data.get("news") or []
    if news:
        console.print("news: " + ", ".join(n["item"] for n in news))
    table = Table(show_edge=False)
    for column in ("market", "position", "target", "spot pos/target", "oracle", "funding 1h",
                   "funding real/exp", "pnl", "tripped flags"):
        table.add_column(column)
    for ticker, m in data["markets"].items():
        spot = m.get("spot")
        spot_cell = f"{spot['position']}/{spot['target']}" if spot else "-"
        ledger = m.get("funding_ledger") or {}
        funding_cell = f"{ledger.get('realised', '-')}/{ledger.get('expected', '-')}"
        table.add_row(ticker, m["position"], m["target"], spot_cell, str(m["oracle_price"]),
                      m["funding_rate_1h"], funding_cell, (m.get("pnl") or {}).get("total", "-"),
                      _flags_cell(m["flags"]))
    console.print(table)
    # "Why did it trade?": the last decision per market, one line each, never wrapped in a cell.
    for ticker, m in data["markets"].items():
        console.print(f"{ticker} last decision: {_decision_cell(m.get('last_decision'))}",
                      soft_wrap=True, highlight=False, markup=False)
