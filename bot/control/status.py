"""Status text: the decision line the operator reads, the last decision per market, a market's hedge.

Pure: values in, text and JSON-ready dicts out (decimal strings for money).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.clock import NS_PER_SEC
from bot.config import ExecutionSettings
from bot.domain import Position
from bot.execution import hedge as hedging
from bot.execution.hedge import HedgeState
from bot.execution.twap import TwapPlan
from bot.rules.flags import FLAG_NAMES
from bot.strategy.sleeves import SleeveBook


def plan_text(plan: TwapPlan | None) -> str:
    """A plan in a few words: side, total and slices."""
    if plan is None:
        return "no order"
    return f"{plan.side.value} {plan.total} in {len(plan.slice_sizes)}"


def summarize_decision(
    reason: str,
    tripped: tuple[str, ...],
    before: Decimal,
    after: Decimal,
    plan: TwapPlan | None,
    limited_by: str,
    sleeves: SleeveBook,
    spot: tuple[Decimal, Decimal, TwapPlan | None] | None,
    held: tuple[Decimal, Decimal | None] | None = None,
) -> str:
    """One line for the operator: why it traded and what it does.

    Each leg reads `target before->after`; a plan starts from the position, so where the position
    (`held`: perp, spot) is not the target before, it is shown too (`held X`).
    """
    why = f"{reason}[{','.join(tripped)}]" if reason == "flags" else reason
    perp_held, spot_held = held if held is not None else (None, None)
    parts = [why, f"perp {before}->{after}{_held(perp_held, before)} ({plan_text(plan)})"]
    if spot is not None and (spot[0] or spot[1] or spot[2] is not None or spot_held):
        parts.append(f"spot {spot[0]}->{spot[1]}{_held(spot_held, spot[0])} ({plan_text(spot[2])})")
    if limited_by:
        parts.append(f"limited_by={limited_by}")
    for target in sleeves.targets:
        if target.perp or target.spot or target.sleeve == "carry":
            extra = ""
            if target.sleeve == "carry" and "net_open_bps" in target.values:
                extra = f" net_open={target.values['net_open_bps']}bps"
            parts.append(f"{target.sleeve}={target.perp}:{target.why}{extra}")
    return " ".join(parts)


def _held(position: Decimal | None, before: Decimal) -> str:
    return "" if position is None or position == before else f" held {position}"


def decision_summary_from(ts_ns: int, reason: str, tripped: tuple[str, ...],
                          record: dict[str, Any]) -> dict[str, Any]:
    """A market's `last_decision` in status, from a decision record."""
    spot = record.get("spot") or {}
    return {
        "ts_ns": ts_ns,
        "reason": reason,
        "tripped": list(tripped),
        "target": record.get("target_after"),
        "plan": record.get("plan"),
        "spot_target": spot.get("target_after"),
        "spot_plan": spot.get("plan"),
        "summary": record.get("summary"),
    }


def decision_summary(record: Any) -> dict[str, Any]:
    """A market's `last_decision` in status, from a stored decision row."""
    plan = record.plan if isinstance(record.plan, dict) else {}
    flags = record.flags if isinstance(record.flags, dict) else {}
    tripped = tuple(n for n in FLAG_NAMES if flags.get(n, {}).get("tripped"))
    return decision_summary_from(record.ts_ns, record.reason, tripped, plan)


def hedge_status(hedge: HedgeState, spot: Position, mark: Decimal | None, held: bool,
                 ex: ExecutionSettings, now_ns: int) -> dict[str, Any]:
    """The hedge of one market for `status`: mismatch, leg risk, lag, unwinds."""
    size = spot.size
    return {
        "spot_market": hedge.spot_market,
        "required_spot": str(hedge.required),
        "mismatch_base": str(hedge.mismatch(size)),
        "mismatch_usd": str(hedge.mismatch_usd(size, mark).quantize(Decimal("0.01"))),
        "max_mismatch_usd": str(ex.hedge_max_mismatch_usd),
        "leg_risk_usd_secs": str(hedge.leg_risk_usd_secs.quantize(Decimal("0.01"))),
        "leg_risk_budget_usd_secs": str(ex.hedge_leg_risk_budget_usd_secs),
        "lag_exceeded": hedging.lag_exceeded(hedge, now_ns),
        "lag_breaches": hedge.lag_breaches,
        "perp_held": held,
        "spot_rejects": hedge.rejects,
        "unwinds": hedge.unwinds,
        "unwind_fees_usd": str(hedge.unwind_fees_usd),
        "last_unwind_reason": hedge.last_unwind_reason or None,
        "carry_latched_secs": round(max(0, hedge.latched_until_ns - now_ns) / NS_PER_SEC, 1),
    }


def drawdown_status(peak: Decimal, equity: Decimal, stop: Decimal, pending: Decimal | None) -> dict[str, Any]:
    """The drawdown stop's inputs: the peak it measures from, the drawdown now and the stop level.

    `pending_transfers` (live only): deposits (+) and withdrawals (-) seen, not yet in an account read."""
    out: dict[str, Any] = {
        "peak_equity": str(peak.quantize(Decimal("0.000001"))),
        "drawdown": str((1 - equity / peak if peak > 0 else Decimal(0)).quantize(Decimal("0.0001"))),
        "stop": str(stop),
        "source": "paper" if pending is None else "venue: stored, transfer-adjusted",
    }
    if pending is not None:
        out["pending_transfers"] = str(pending)
    return out
