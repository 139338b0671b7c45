"""A finished run -> `BacktestResult`: the summary, the timeline, the trade list and the baselines.

Money leaves as decimal strings (`money`); ratios (returns, drawdowns, Sharpe, turnover) as
floats. Every fill carries the decision that caused it (`decision_id`, `cause`): the decision's
reason and plan summary, or `hedge_unwind` / `liquidation` for the fills no decision sent.
`turnover` is the traded notional on every leg (perp and spot) over the initial equity.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.clock import NS_PER_SEC, SECS_PER_YEAR
from bot.domain import ZERO
from bot.strategy.targets import TargetSpec, parse_target, resolve_target

from . import baselines as naive
from . import metrics as stats

CENT = Decimal("0.000001")


def money(x: Decimal) -> str:
    return str(x.quantize(CENT))


@dataclass
class BacktestResult:
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    funding: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    events: int
    baselines: dict[str, Any] = field(default_factory=dict)  # with their equity series
    elapsed_secs: float = 0.0  # wall clock of the engine loop (also summary["run_secs"])

    def __repr__(self) -> str:
        # Short: asyncio formats the finished task's result when `asyncio.run` returns (a signal
        # handler check), and the full repr of every sample and fill cost ~0.1 s per backtest.
        return (f"BacktestResult(events={self.events}, samples={len(self.samples)}, fills={len(self.fills)}, "
                f"elapsed_secs={self.elapsed_secs:.3f})")


def format_samples(raw: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The runner's raw samples (`Backtest._sample`) as `samples.json` rows (money as decimal strings)."""
    out = []
    for now, equity, mode, stopped, pnl, realised, expected_1h, gross, net, markets in raw:
        rows: dict[str, Any] = {}
        for t, pos, mark, rate, carry_side, target, spot_row, tripped in markets:
            row: dict[str, Any] = {"position": str(pos), "mark": str(mark) if mark is not None else None,
                                   "rate_1h": str(rate), "carry_side": carry_side, "target": str(target)}
            if spot_row is not None:
                row.update(spot_position=str(spot_row[0]),
                           spot_mid=str(spot_row[1]) if spot_row[1] is not None else None)
            row["flags"] = list(tripped)
            rows[t] = row
        out.append({
            "ts_ns": now, "equity": money(equity), "risk_mode": mode, "drawdown_stop": stopped,
            "pnl": {"price": money(pnl.price), "slippage": money(pnl.slippage), "fees": money(pnl.fees),
                    "funding": money(pnl.funding)},
            "funding_realised": money(realised), "funding_expected_1h": money(expected_1h),
            "gross_notional": money(gross), "net_notional": money(net),
            "leverage": round(float(gross / equity), 6) if equity > 0 else 0.0,
            "markets": rows,
        })
    return out


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def _decision_rows(store: Any) -> tuple[list[Any], dict[int, Any]]:
    decisions = list(reversed(store.decisions(None, limit=10**9)))
    return decisions, {d.id: d for d in decisions}


def _timeline(bt: Any, decisions: list[Any]) -> list[dict[str, Any]]:
    timeline = bt.timeline
    for event in drain(bt.bus):
        if event.kind == "risk_mode_changed":
            timeline.append({"ts_ns": event.ts_ns, "kind": "risk_mode", **event.fields})
    if bt.stress is not None:
        for ts, what, label, params in bt.stress.log:
            timeline.append({"ts_ns": ts, "kind": f"scenario_{what}", "scenario": label,
                             "params": {k: str(v) for k, v in params.items()}})
    for d in decisions:
        sleeves = d.plan.get("sleeves", {})
        tripped = [n for n, f in d.flags.items() if isinstance(f, dict) and f.get("tripped")]
        timeline.append({"ts_ns": d.ts_ns, "kind": "decision", "id": d.id, "market": d.market,
                         "reason": d.reason, "summary": d.plan.get("summary", ""), "tripped": tripped,
                         "target_after": d.plan.get("target_after"),
                         "carry": (sleeves.get("carry") or {}).get("why")})
    timeline.sort(key=lambda e: (e["ts_ns"], e["kind"]))
    return timeline


def _fills(bt: Any, by_id: dict[int, Any]) -> list[dict[str, Any]]:
    out = []
    for f in bt.store.fills():
        venue = "spot" if f.market in bt.source.spot_specs else "perp"
        cause_id = bt.fill_causes.get(f.fill_id)
        if isinstance(cause_id, int) and cause_id in by_id:
            d = by_id[cause_id]
            cause = f"{d.reason}: {d.plan.get('summary', '')}"
        else:
            cause_id, cause = None, cause_id or ("liquidation" if f.client_id == 0 else "hedge_unwind")
        out.append({"ts_ns": f.ts_event, "venue": venue, "market": f.market, "side": f.side.value,
                    "price": str(f.price), "size": str(f.size), "fee": str(f.fee),
                    "decision_id": cause_id, "cause": cause})
    out.sort(key=lambda f: (f["ts_ns"], f["venue"], f["market"]))
    return out


def _per_market(bt: Any, fills: list[dict[str, Any]]) -> dict[str, Any]:
    engine = bt.engine
    perp_of = {spot: perp for perp, spot in bt.source.spot_of.items()}
    traded: dict[str, Decimal] = defaultdict(lambda: ZERO)
    count: dict[str, int] = defaultdict(int)
    for f in fills:
        market = perp_of.get(f["market"], f["market"])
        traded[market] += Decimal(f["price"]) * Decimal(f["size"])
        count[market] += 1
    out = {}
    for ticker, st in sorted(engine.markets.items()):
        pnl = engine.pnl(st)
        out[ticker] = {"pnl": money(pnl.price + pnl.fees + pnl.funding), "price_pnl": money(pnl.price),
                       "fees": money(-pnl.fees), "funding_pnl": money(pnl.funding),
                       "slippage": money(-pnl.slippage), "traded_notional": money(traded[ticker]),
                       "fills": count[ticker], "position": str(st.position.size),
                       "spot_position": str(st.spot.position.size) if st.spot is not None else None}
    return out


def monthly_returns(samples: list[dict[str, Any]], initial: float) -> dict[str, float]:
    """Return per UTC month: last equity of the month over the previous month's last (or initial)."""
    out: dict[str, float] = {}
    prev, last_month, last_equity = initial, None, initial
    for s in samples:
        month = datetime.fromtimestamp(s["ts_ns"] / NS_PER_SEC, UTC).strftime("%Y-%m")
        if last_month is not None and month != last_month:
            out[last_month] = round(last_equity / prev - 1, 8) if prev > 0 else 0.0
            prev = last_equity
        last_month, last_equity = month, float(s["equity"])
    if last_month is not None:
        out[last_month] = round(last_equity / prev - 1, 8) if prev > 0 else 0.0
    return out


def _headline(equity: list[float], span_secs: float, max_dd: float, initial: float) -> dict[str, float]:
    final = equity[-1] if equity else initial
    years = span_secs / SECS_PER_YEAR
    cagr = (final / initial) ** (1 / years) - 1 if years > 0 and final > 0 and initial > 0 else 0.0
    return {"cagr": round(cagr, 8), "calmar": round(cagr / max_dd, 6) if max_dd > 0 else 0.0}


def build(bt: Any, events: int, sample_secs: int, run_secs: float) -> BacktestResult:
    s, engine = bt.settings, bt.engine
    decisions, by_id = _decision_rows(bt.store)
    timeline = _timeline(bt, decisions)
    fills = _fills(bt, by_id)
    traded = sum((Decimal(f["price"]) * Decimal(f["size"]) for f in fills), ZERO)
    initial_d = s.paper.initial_equity_usd
    initial = float(initial_d)
    pnl = engine.total_pnl()
    samples = bt.samples
    equity_curve = [float(x["equity"]) for x in samples]
    series = stats.series_stats(equity_curve, sample_secs)
    max_dd = max(series["max_drawdown"], round(float(bt.risk.max_drawdown), 8))
    in_market = sum(1 for x in samples if Decimal(x["gross_notional"])) / len(samples) if samples else 0.0
    span_secs = (bt.source.end_ns - bt.source.start_ns) / NS_PER_SEC
    summary: dict[str, Any] = {
        **series,
        "max_drawdown": max_dd,  # every mark the run saw (intrabar wicks), not only the samples
        "max_drawdown_sampled": series["max_drawdown"],
        "max_drawdown_intrabar": round(float(bt.risk.max_drawdown), 8),
        **_headline(equity_curve, span_secs, max_dd, initial),
        "time_in_market": round(in_market, 6),
        "initial_equity": money(initial_d),
        "final_equity": money(engine.equity()),
        "turnover": round(float(traded / initial_d), 6) if initial_d else 0.0,
        "traded_notional": money(traded),
        "fees": money(-pnl.fees),
        "funding_pnl": money(pnl.funding),
        "slippage": money(-pnl.slippage),
        "price_pnl": money(pnl.price),
        "liquidations": bt.liquidations,
        "participation_capped_orders": bt.capped.capped_orders if bt.capped is not None else 0,
        "fills": len(fills),
        "decisions": len(decisions),
        "events": events,
        "run_secs": round(run_secs, 3),  # engine loop only: not process start, not file loading
        "sample_secs": sample_secs,
        "risk_mode_secs": {k: round(v, 3) for k, v in bt.mode_secs.items()},
        "monthly_returns": monthly_returns(samples, initial),
        "markets": _per_market(bt, fills),
        "source": {"kind": bt.source.kind, **bt.source.describe,
                   "start_ns": bt.source.start_ns, "end_ns": bt.source.end_ns,
                   "markets": sorted(bt.source.specs)},
        "scenarios": [sc.name for sc in bt.scenarios],
        "config": s.redacted(),
    }
    lines = _baselines(bt, sample_secs) if samples else {}
    if lines:
        summary["baselines"] = {k: {n: v for n, v in b.items() if n != "equity"} for k, b in lines.items()}
        summary["baseline_fees"] = {
            "perp_taker_fee_rate": str(s.paper.taker_fee_rate),
            "spot_taker_fee_rate": str(s.strategy.carry.spot_taker_fee_rate),
            "charged": "taker fee on every trade of every leg, entry and exit (closed at the last sample)"}
    return BacktestResult(summary, samples, timeline, bt.funding_rows, fills, events, lines, run_secs)


def _baselines(bt: Any, sample_secs: int) -> dict[str, Any]:
    s = bt.settings
    samples, funding = bt.samples, bt.funding_rows
    initial = float(s.paper.initial_equity_usd)
    perp_fee, spot_fee = float(s.paper.taker_fee_rate), float(s.strategy.carry.spot_taker_fee_rate)
    p = s.strategy
    markets = max(len(bt.engine.markets), 1)
    notional = initial / markets * float(p.carry_budget) * float(p.carry.max_leverage)
    targets = _target_sizes(p.targets, samples, initial)
    return {
        "carry_always_on": naive.carry_always_on(samples, funding, initial, notional, perp_fee, spot_fee,
                                                 sample_secs),
        "carry_sign_daily": naive.carry_sign_daily(samples, funding, initial, notional, perp_fee, spot_fee,
                                                   sample_secs),
        "static_target": naive.static_target(samples, funding, initial, targets, perp_fee, sample_secs),
        "buy_and_hold": naive.buy_and_hold(samples, initial, spot_fee, sample_secs),
    }


def _target_sizes(targets: dict[str, Any], samples: list[dict[str, Any]], equity: float) -> dict[str, float]:
    """Operator targets in base units at the first mark a sample has (the very first sample may
    have none yet), resolved as the engine resolves them (bot.strategy.targets): base units as
    they are, leverage ("0.5x": notional = leverage x equity) and USD ("$5000", "-$2000") at
    that mark, not rounded to a step."""
    first = samples[0]["markets"] if samples else {}
    out = {}
    for market, value in targets.items():
        if market not in first:
            continue
        spec = value if isinstance(value, TargetSpec) else parse_target(value)
        marks = (s["markets"].get(market, {}).get("mark") for s in samples)
        mark = Decimal(str(next((m for m in marks if m), 0)))
        size = resolve_target(spec, Decimal(repr(equity)), mark if mark > 0 else None, ZERO)
        out[market] = float(size)
    return out
