"""Readable terminal rendering of a status object (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _flags_cell(flags: dict[str, Any]) -> str:
    tripped = [name for name in ("funding", "liquidity", "volatility", "news")
               if flags.get(name, {}).get("tripped")]
    return f"[red]{','.join(tripped)}[/red]" if tripped else "-"


def _decision_cell(decision: dict[str, Any] | None) -> str:
    if not decision:
        return "-"
    plan = decision.get("plan") or {}
    action = plan.get("side", plan.get("action", "")) + " " + str(plan.get("total", ""))
    why = decision.get("reason", "")
    tripped = ",".join(decision.get("tripped") or [])
    return f"{why}[{tripped}] -> {decision.get('target')} ({action.strip()})"


def render_status(data: dict[str, Any], console: Console | None = None) -> None:
    """Print the header line and one row per market."""
    console = console or Console()
    mode = data["risk_mode"]
    colour = {"NORMAL": "green", "REDUCE_ONLY": "yellow", "HALTED": "red"}.get(mode, "white")
    latch = " (kill latched)" if data.get("kill_latched") else ""
    console.print(
        f"[{colour}]{mode}[/{colour}]{latch}  {data['network']}/{data['trading']}  "
        f"equity {data['equity']}  funding realised {data['funding']['realised']} "
        f"expected {data['funding']['expected']}  open orders {data['open_orders']}"
    )
    table = Table(show_edge=False)
    for column in ("market", "position", "target", "oracle", "funding 1h", "tripped flags",
                   "last decision"):
        table.add_column(column)
    for ticker, m in data["markets"].items():
        table.add_row(ticker, m["position"], m["target"], str(m["oracle_price"]),
                      m["funding_rate_1h"], _flags_cell(m["flags"]),
                      _decision_cell(m.get("last_decision")))
    console.print(table)
