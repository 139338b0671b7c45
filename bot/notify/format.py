"""Operator events -> notification messages (pure: no IO, no clock).

Each message carries a dedupe key: the same `kind` + `key` within the dedupe window is sent
once (a flapping risk mode, a kill pressed twice, a watchdog alert repeating every probe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.events import OperatorEvent

MAX_TEXT_CHARS = 1900  # under Discord's 2000 and Telegram's 4096 limits


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    key: str
    text: str


def format_event(event: OperatorEvent, min_fill_notional_usd: Decimal) -> Message | None:
    """Return the message for an event, or None when it is not worth a message."""
    f = event.fields
    kind = event.kind
    when = _hhmmss(event.ts_ns)
    if kind == "risk_mode_changed":
        new, reason = f.get("new"), f.get("reason", "")
        text = f"[perpbot] risk mode {f.get('old')} -> {new} at {when}: {reason}"
        return _message(kind, f"{new}|{reason}", text)
    if kind == "kill":
        flatten = " with flatten" if f.get("flatten") else ""
        text = f"[perpbot] KILL{flatten} at {when}: {f.get('reason', '')} (HALTED, orders cancelled)"
        return _message(kind, str(f.get("reason", "")), text)
    if kind == "fill":
        notional = _decimal(f.get("size")) * _decimal(f.get("price"))
        if notional < min_fill_notional_usd:
            return None
        text = (f"[perpbot] fill {f.get('venue')} {f.get('market')} {f.get('side')} {f.get('size')} "
                f"@ {f.get('price')} (notional {notional:.2f} USD, fee {f.get('fee')}) "
                f"-> position {f.get('position')}")
        key = "|".join([*(str(f.get(k)) for k in ("venue", "market", "side", "size", "price")),
                        str(event.ts_ns)])
        return _message(kind, key, text)
    if kind == "decision":
        tripped = ",".join(f.get("tripped") or []) or "none"
        text = (f"[perpbot] {f.get('market')} traded ({f.get('reason')}; flags {tripped}) at {when}: "
                f"{f.get('summary', '')}")
        return _message(kind, f"{f.get('market')}|{f.get('reason')}|{f.get('summary')}", text)
    if kind == "watchdog_alert":
        name = f.get("alert") or f.get("name") or f.get("check") or f.get("input") or "alert"
        detail = " ".join(f"{k}={v}" for k, v in sorted(f.items()) if k not in ("alert", "name"))
        text = f"[perpbot] watchdog {name} at {when}: {detail}".rstrip()
        return _message(kind, str(f.get("key") or name), text)
    if kind == "component_error":
        component = f.get("component") or f.get("service") or "component"
        error = f.get("error", "")
        return _message(kind, f"{component}|{error}", f"[perpbot] {component} error at {when}: {error}")
    if kind == "daily_summary":
        return _message(kind, str(f.get("date", "")), format_daily_summary(f))
    if kind == "market_status":
        text = (f"[perpbot] {f.get('market')} market status {f.get('old')} -> {f.get('new')} at {when}: "
                f"{f.get('action', '')}").rstrip(": ")
        return _message(kind, f"{f.get('market')}|{f.get('new')}", text)
    return None


def daily_summary_fields(status: dict[str, Any], date: str) -> dict[str, Any]:
    """Pick the daily-summary fields (PnL attribution, funding, positions) out of a status object."""
    return {
        "date": date,
        "risk_mode": status.get("risk_mode"),
        "equity": status.get("equity"),
        "pnl": dict(status.get("pnl") or {}),
        "funding": {k: v for k, v in (status.get("funding") or {}).items() if k in ("realised", "expected")},
        "markets": {t: {"position": m.get("position"), "pnl": (m.get("pnl") or {}).get("total")}
                    for t, m in (status.get("markets") or {}).items()},
    }


def format_daily_summary(f: dict[str, Any]) -> str:
    """One readable block: equity, PnL split into price/funding/fees/slippage, positions."""
    pnl = f.get("pnl") or {}
    funding = f.get("funding") or {}
    lines = [
        f"[perpbot] daily summary {f.get('date', '')} ({f.get('risk_mode', '?')})",
        f"equity {_num(f.get('equity'))}  pnl {_num(pnl.get('total'))} = price {_num(pnl.get('price'))}"
        f" + funding {_num(pnl.get('funding'))} + fees {_num(pnl.get('fees'))}"
        f" + slippage {_num(pnl.get('slippage'))}",
        f"funding realised {_num(funding.get('realised'))}, expected {_num(funding.get('expected'))}",
    ]
    for ticker, m in (f.get("markets") or {}).items():
        lines.append(f"{ticker}: position {m.get('position')}, pnl {_num(m.get('pnl'))}")
    return "\n".join(lines)


def _message(kind: str, key: str, text: str) -> Message:
    if len(text) > MAX_TEXT_CHARS:
        text = text[: MAX_TEXT_CHARS - 1] + "…"
    return Message(kind, key, text)


def _decimal(value: Any) -> Decimal:
    try:
        return abs(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _num(value: Any) -> str:
    """Money for people: two decimals, sign kept; non-numbers as given."""
    try:
        return f"{Decimal(str(value)):.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _hhmmss(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%H:%M:%SZ")
