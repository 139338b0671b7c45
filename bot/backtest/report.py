"""Run directories: what a backtest writes, and `perpbot report DIR` (report.html + PNG charts).

A run directory holds `summary.json` (the deterministic headline numbers), `samples.json` (the
sampled equity, PnL attribution, exposure, flags and risk mode), `timeline.json` (scenario
windows, risk-mode changes, flag changes, decisions, liquidations), `funding.json` (settled hourly
rates), `baselines.json` (the naive baselines with their equity curves) and `fills.json`.
The report recomputes `summary.json` from the samples (same numbers) and draws the charts with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bot.clock import NS_PER_SEC
from bot.control.palette import MODE_COLOURS, colour, label

from . import metrics as stats
from .runner import BacktestResult

FILES = ("summary.json", "samples.json", "timeline.json", "funding.json", "baselines.json", "fills.json")
SECTIONS = ("Summary", "Baselines", "Monthly returns", "Markets", "Equity curve", "Drawdown",
            "PnL attribution", "Funding ledger", "Exposure and leverage", "Trades",
            "Flag timeline and decisions", "Watchdog and risk mode", "Config")
TRADES_SHOWN = 2000
CHARTS = ("equity.png", "drawdown.png", "pnl_attribution.png", "funding.png", "exposure.png", "risk_mode.png")


class ReportError(ValueError):
    """The directory is not a backtest run."""


def _dump(path: Path, data: Any) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")


def write_run(result: BacktestResult, out: Path) -> None:
    """Write a run directory (deterministic bytes for the same result)."""
    out.mkdir(parents=True, exist_ok=True)
    _dump(out / "summary.json", result.summary)
    _dump(out / "samples.json", result.samples)
    _dump(out / "timeline.json", result.timeline)
    _dump(out / "funding.json", result.funding)
    _dump(out / "baselines.json", result.baselines)
    _dump(out / "fills.json", result.fills)


def _load(run: Path, name: str) -> Any:
    try:
        return orjson.loads((run / name).read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{run} is not a backtest run directory (no {name})") from None
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"{run / name} does not parse: {exc}") from None


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS_PER_SEC, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dates(samples: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromtimestamp(s["ts_ns"] / NS_PER_SEC, tz=UTC) for s in samples]


def _charts(run: Path, samples: list[dict[str, Any]], baselines: dict[str, Any],
            timeline: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x: Any = _dates(samples)  # matplotlib takes datetimes (its units registry); its stubs say floats
    equity = [float(s["equity"]) for s in samples]

    def save(fig: Any, name: str) -> None:
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(run / name, dpi=80, metadata={"Software": None})
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(x, equity, label="strategy", lw=1.4, color=colour("equity"))
    for name, b in sorted(baselines.items()):
        if len(b.get("equity", [])) == len(x):
            ax.plot(x, b["equity"], label=name, lw=0.9, alpha=0.8)
    ax.set_ylabel("equity (USD)")
    ax.legend(loc="best", fontsize=8)
    save(fig, "equity.png")

    fig, ax = plt.subplots(figsize=(9, 2.5))
    ax.fill_between(x, [-d * 100 for d in stats.drawdown(equity)], 0, color=colour("drawdown"), alpha=0.5)
    ax.set_ylabel("drawdown (%)")
    save(fig, "drawdown.png")

    fig, ax = plt.subplots(figsize=(9, 3))
    for key in ("price", "funding", "fees", "slippage"):
        ax.plot(x, [float(s["pnl"][key]) for s in samples], label=label(key), color=colour(key), lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("cumulative PnL (USD)")
    ax.legend(loc="best", fontsize=8)
    save(fig, "pnl_attribution.png")

    fig, ax = plt.subplots(figsize=(9, 3))
    expected, total = [], 0.0
    hours = (samples[1]["ts_ns"] - samples[0]["ts_ns"]) / (3600 * NS_PER_SEC) if len(samples) > 1 else 0.0
    for s in samples:
        total += float(s["funding_expected_1h"]) * hours
        expected.append(total)
    ax.plot(x, [float(s["funding_realised"]) for s in samples], label=label("realised"),
            color=colour("realised"), lw=1.2)
    ax.plot(x, expected, label=f"{label('expected')} (forecast x position)", color=colour("expected"), lw=1,
            ls="--")
    ax.set_ylabel("cumulative funding (USD)")
    ax.legend(loc="best", fontsize=8)
    save(fig, "funding.png")

    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(x, [float(s["gross_notional"]) for s in samples], label=label("gross"), color=colour("gross"),
            lw=1)
    ax.plot(x, [float(s["net_notional"]) for s in samples], label=label("net"), color=colour("net"), lw=1)
    ax.set_ylabel("USD")
    ax2 = ax.twinx()
    ax2.plot(x, [s["leverage"] for s in samples], color=colour("leverage"), lw=0.8, ls=":", label="leverage")
    ax2.set_ylabel("leverage (x)")
    ax.legend(loc="upper left", fontsize=8)
    save(fig, "exposure.png")

    fig, ax = plt.subplots(figsize=(9, 2.5))
    # The sizing's drawdown stop (targets held at zero) shows as its own level while the mode is NORMAL.
    rank = {"NORMAL": 0, "DRAWDOWN_STOP": 1, "REDUCE_ONLY": 2, "HALTED": 3}
    shown = ["DRAWDOWN_STOP" if s.get("drawdown_stop") and s["risk_mode"] == "NORMAL" else s["risk_mode"]
             for s in samples]
    ax.step(x, [rank.get(m, 0) for m in shown], where="post", color="#7d8a97")
    for mode in rank:  # the page's risk-mode colours, as bands
        ax.fill_between(x, -0.4, 3.4, where=[m == mode for m in shown], step="post",
                        color=MODE_COLOURS.get(mode, MODE_COLOURS["REDUCE_ONLY"]), alpha=0.25, lw=0)
    ax.set_yticks([0, 1, 2, 3], list(rank))
    flags = [sum(len(m.get("flags", [])) for m in s["markets"].values()) for s in samples]
    ax2 = ax.twinx()
    ax2.plot(x, flags, color=colour("flags"), lw=0.6, alpha=0.6)
    ax2.set_ylabel("tripped flags")
    save(fig, "risk_mode.png")


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _html(summary: dict[str, Any], timeline: list[dict[str, Any]], fills: list[dict[str, Any]]) -> str:
    cols = ["total_return", "cagr", "vol_annual", "sharpe", "sortino", "max_drawdown", "calmar", "fees",
            "funding_pnl"]
    rows = [["strategy", *[summary.get(c, "") for c in cols]]]
    for name, b in sorted(summary.get("baselines", {}).items()):
        rows.append([name, *[b.get(c, "") for c in cols]])
    for r in rows:
        for i in (1, 2, 3, 6):
            if isinstance(r[i], float):
                r[i] = _pct(r[i])
    extra = [[k, summary.get(k)] for k in ("initial_equity", "final_equity", "turnover", "traded_notional",
                                           "time_in_market", "max_drawdown_sampled", "max_drawdown_intrabar",
                                           "slippage", "price_pnl", "liquidations", "fills", "decisions",
                                           "events", "run_secs", "sample_secs", "scenarios")]
    fee_note = html.escape(str(summary.get("baseline_fees", "")))
    notionals = {k: b.get("notional_usd") or b.get("targets")
                 for k, b in summary.get("baselines", {}).items()}
    monthly = [[m, _pct(r)] for m, r in summary.get("monthly_returns", {}).items()]
    market_cols = ["pnl", "price_pnl", "funding_pnl", "fees", "slippage", "traded_notional", "fills",
                   "position", "spot_position"]
    per_market = [[m, *[v.get(c) for c in market_cols]] for m, v in summary.get("markets", {}).items()]
    trades = [[_time(f["ts_ns"]), f["venue"], f["market"], f["side"], f["size"], f["price"], f["fee"],
               f.get("decision_id") or "", f.get("cause", "")] for f in fills[:TRADES_SHOWN]]
    config = html.escape(orjson.dumps(summary.get("config", {}), option=orjson.OPT_INDENT_2
                                      | orjson.OPT_SORT_KEYS).decode())
    decisions = [[_time(e["ts_ns"]), e["kind"], e.get("market", ""),
                  e.get("summary") or ", ".join(e.get("tripped", [])) or e.get("scenario", "")]
                 for e in timeline if e["kind"] in ("decision", "flags", "scenario_start", "scenario_end",
                                                    "liquidation")]
    modes = [[_time(e["ts_ns"]), e.get("old", ""), e.get("new", ""), e.get("reason", "")]
             for e in timeline if e["kind"] == "risk_mode"]
    mode_secs = [[k, f"{v / 3600:.2f} h"] for k, v in summary.get("risk_mode_secs", {}).items()]
    src = summary.get("source", {})
    span = f"{_time(src['start_ns'])} -> {_time(src['end_ns'])} UTC" if "start_ns" in src else ""

    def section(title: str, body: str) -> str:
        return f"<section><h2>{html.escape(title)}</h2>{body}</section>"

    def img(name: str) -> str:
        return f'<img src="{name}" alt="{name}">'

    parts = [
        section("Summary", f"<p>{html.escape(str(src.get('kind', '')))} {html.escape(span)}</p>"
                + _table(rows, ["run", *cols]) + _table(extra, ["figure", "value"])),
        section("Baselines", f"<p>sizes: {html.escape(str(notionals))}; fees: {fee_note}</p>"),
        section("Monthly returns", _table(monthly, ["month (UTC)", "return"])),
        section("Markets", _table(per_market, ["market", *market_cols])),
        section("Equity curve", img("equity.png")),
        section("Drawdown", img("drawdown.png")),
        section("PnL attribution", "<p>price, funding, fees and slippage, cumulative.</p>"
                + img("pnl_attribution.png")),
        section("Funding ledger", "<p>realised payments against the expected funding line.</p>"
                + img("funding.png")),
        section("Exposure and leverage", img("exposure.png")),
        section("Trades", f"<p>{len(fills)} fills (first {TRADES_SHOWN} shown; all in fills.json), each with "
                "the decision that caused it.</p>" + _table(trades, ["time (UTC)", "venue", "market", "side",
                                                                     "size", "price", "fee", "decision",
                                                                     "cause"])),
        section("Flag timeline and decisions",
                _table(decisions[:2000], ["time (UTC)", "kind", "market", "what"])),
        section("Watchdog and risk mode", img("risk_mode.png") + _table(mode_secs, ["mode", "time"])
                + _table(modes, ["time (UTC)", "from", "to", "reason"])),
        section("Config", f"<pre>{config}</pre>"),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
             "margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "img{max-width:100%}")
    title = "perpbot backtest report"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body><h1>{title}</h1>{''.join(parts)}</body></html>\n")


def build_report(run: Path) -> Path:
    """Write report.html, the PNG charts and a recomputed summary.json into `run`; return the HTML path."""
    if not run.is_dir():
        raise ReportError(f"{run} is not a directory")
    summary = _load(run, "summary.json")
    samples = _load(run, "samples.json")
    timeline = _load(run, "timeline.json")
    baselines = _load(run, "baselines.json")
    fills = _load(run, "fills.json")
    if not samples:
        raise ReportError(f"{run} has no samples")
    series = stats.series_stats([float(s["equity"]) for s in samples], summary.get("sample_secs", 60))
    series["max_drawdown_sampled"] = series.pop("max_drawdown")
    summary.update(series)  # max_drawdown stays the run's: it counts intrabar marks
    _dump(run / "summary.json", summary)
    _charts(run, samples, baselines, timeline)
    out = run / "report.html"
    out.write_text(_html(summary, timeline, fills))
    return out
