"""The watchdog status board: one chip per input with its state colour, value in human units,
the threshold it is graded against, and the reason only when it is not OK."""

from __future__ import annotations

from html import escape
from typing import Any

from bot.control import fmt
from bot.control.history import Thresholds

NAMES = {
    "chain_head_age": "chain head age",
    "block_interval": "block interval",
    "indexer_lag": "indexer lag",
    "error_rate": "probe errors",
    "withdrawal_gating": "withdrawal gating",
    "withdrawal_capacity": "withdrawal capacity",
}
UNITS = {"chain_head_age": "s", "block_interval": "s", "indexer_lag": "blocks", "error_rate": "ratio",
         "withdrawal_gating": "blocks", "withdrawal_capacity": "usd"}
STATES = ("OK", "DEGRADED", "CRITICAL")


def human(value: Any, unit: str) -> str:
    if unit == "s":
        return fmt.secs(value)
    if unit == "blocks":
        return fmt.blocks(value)
    if unit == "ratio":
        return fmt.rate_pct(value, 1)
    if unit == "usd":
        return fmt.usd(value) + " USD" if fmt.dec(value) is not None else fmt.DASH
    return fmt.fixed(value, 2)


def _limits(name: str, thresholds: Thresholds) -> tuple[float, float | None, str] | None:
    if name.startswith("feed:"):
        return thresholds.watchdog.get("feed:")
    return thresholds.watchdog.get(name)


def threshold_text(name: str, thresholds: Thresholds) -> str:
    limits = _limits(name, thresholds)
    if limits is None:
        return ""
    degraded, critical, unit = limits
    if name == "withdrawal_capacity":
        return f"below {human(degraded, unit)}" if degraded else "no minimum"
    if name == "withdrawal_gating":
        return "exits frozen"
    text = f"degraded ≥ {human(degraded, unit)}"
    return text + (f" · critical ≥ {human(critical, unit)}" if critical is not None else "")


def chip(name: str, state: str, value: str, threshold: str, reason: str | None,
         label: str | None = None) -> str:
    state = state if state in STATES else "UNKNOWN"
    reason_html = f'<span class="chip-reason">{escape(reason)}</span>' if reason and state != "OK" else ""
    threshold_html = f'<span class="chip-limit">{escape(threshold)}</span>' if threshold else ""
    return (f'<div class="chip chip-{state}" data-input="{escape(name)}" data-state="{state}">'
            f'<span class="chip-name">{escape(label or name)}</span>'
            f'<span class="chip-value">{escape(value)}</span>{threshold_html}{reason_html}</div>')


def render_board(status: dict[str, Any], thresholds: Thresholds) -> str:
    chips = [chip("block_height", "OK", fmt.fixed(status.get("block_height"), 0), "", None, "block height")]
    watchdog = status.get("watchdog")
    if isinstance(watchdog, dict):
        for name, reading in watchdog.items():
            if not isinstance(reading, dict):
                continue
            unit = UNITS.get(name, "s" if name.startswith("feed:") else "")
            label = NAMES.get(name) or name.replace("feed:", "feed ").replace("_", " ")
            value = reading.get("value")
            shown = human(value, unit) if value is not None else "no data"
            chips.append(chip(name, str(reading.get("state", "")), shown, threshold_text(name, thresholds),
                              reading.get("reason"), label))
    else:
        chips.append('<p class="muted">watchdog off</p>')
    sim = status.get("sim")
    extra = ""
    if isinstance(sim, dict) and sim:
        facts = " · ".join(f"{escape(str(k))} {escape(_scalar(v))}" for k, v in sim.items())
        extra = f'<p class="muted small">simulator: {facts}</p>'
    return f'<div class="chips">{"".join(chips)}</div>{extra}'


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in list(value.items())[:6]) + "}"
    if isinstance(value, float):
        return fmt.compact(value)
    return str(value)
