"""Backtests end to end: the live engine in simulated time over the simulator, real CSVs and recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.shared import SHARED, needs_shared

from bot.backtest import sources
from bot.backtest.recording import record_sim, record_venue
from bot.backtest.report import CHARTS, SECTIONS, build_report, write_run
from bot.backtest.runner import Backtest, BacktestResult
from bot.backtest.scenarios import load_scenario
from bot.config import load

CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
FUNDING = SHARED / "data/funding"
DYDX_BTC = FUNDING / "BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
DYDX_ETH = FUNDING / "ETH-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
SUMMARY_KEYS = {"total_return", "max_drawdown", "sharpe", "turnover", "fees", "funding_pnl", "liquidations"}


# The default config trades no directional thesis; these runs need some orders to look at.
DEMO_TARGETS = {"targets": {"BTC-USD": "0.05", "ETH-USD": "-0.5"}}


def _settings(markets: list[str] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    kw["strategy"] = {**DEMO_TARGETS, **kw.get("strategy", {})}
    settings = load(None, env_file=None, **kw)
    return settings.model_copy(update={"markets": tuple(markets)}) if markets else settings


def _candle_run(start: str, end: str, scenario: str | None = None,
                funding: dict | None = None, **kw: Any) -> BacktestResult:
    settings = _settings(**kw)
    bars = sources.load_candles(CANDLES, sources.parse_time(start, "s"), sources.parse_time(end, "e"))
    src = sources.candle_source(settings, {"BTC-USD": bars}, funding or {})
    return Backtest(settings, src, [load_scenario(scenario)] if scenario else []).run()


def _events(result: BacktestResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.timeline if e["kind"] == kind]


@needs_shared
def test_same_seed_same_summary_bytes(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        settings = _settings(markets=["BTC-USD"])
        src = sources.sim_source(settings, 11, 0.1, step_secs=1.0)
        result = Backtest(settings, src).run()
        write_run(result, tmp_path / str(i))
        summary = json.loads((tmp_path / str(i) / "summary.json").read_bytes())
        assert summary.pop("run_secs") > 0  # the one wall-clock figure
        outs.append(json.dumps(summary, sort_keys=True))
    assert outs[0] == outs[1]
    summary = json.loads(outs[0])
    assert SUMMARY_KEYS <= summary.keys() and summary["fills"] > 0 and summary["events"] > 1000
    for key in ("initial_equity", "final_equity", "fees", "funding_pnl", "traded_notional"):
        assert isinstance(summary[key], str) and Decimal(summary[key]).is_finite()  # money: decimal strings


@needs_shared
def test_chain_halt_2024_04_08_halts_on_its_real_date_and_recovers() -> None:
    result = _candle_run("2024-04-07", "2024-04-10", "chain-halt-2024-04-08")
    modes = [(e["new"], e["ts_ns"]) for e in _events(result, "risk_mode")]
    start = sources.parse_time("2024-04-08T05:30", "x")
    assert [m for m, _ in modes] == ["REDUCE_ONLY", "HALTED", "REDUCE_ONLY", "NORMAL"]
    assert start < modes[1][1] <= start + 20 * 10**9  # HALTED within the head-stall threshold
    assert modes[2][1] >= start + int(9.5 * 3600e9)  # and not before the chain is back
    assert result.summary["risk_mode_secs"]["HALTED"] > 9 * 3600


@needs_shared
def test_chain_halt_2025_10_10_stays_reduce_only_while_the_oracle_is_stale() -> None:
    result = _candle_run("2024-04-07", "2024-04-09", "chain-halt-2025-10-10")
    modes = _events(result, "risk_mode")
    assert [e["new"] for e in modes] == ["REDUCE_ONLY", "HALTED", "REDUCE_ONLY", "NORMAL"]
    assert "oracle_stale" in modes[2]["reason"]
    restart = _events(result, "scenario_end")[0]["ts_ns"]
    assert modes[3]["ts_ns"] >= restart + int(1.5 * 3600e9)


@needs_shared
def test_funding_squeeze_opens_then_exits_the_carry() -> None:
    # A one-day squeeze: trends that forget in hours (both: an exit waits for the entry trend to
    # agree) and an exit confirmed within the hour.
    fast = {"signal_half_life_hours": 2, "entry_half_life_hours": 2, "entry_median_hours": 0,
            "exit_confirm_hours": 1, "horizon_hours": 72}
    result = _candle_run("2024-04-07", "2024-04-08", "funding-squeeze",
                         strategy={"carry": fast, "targets": {}})
    carry = [(d["ts_ns"], d["carry"]) for d in _events(result, "decision")]
    opened = [t for t, why in carry if why == "open"]
    exited = [t for t, why in carry if why == "carry_decayed"]
    assert opened and exited and opened[0] < exited[0]
    # The flip to -0.1%/h comes at hour 8: the exit waits for confirmation (never one hour's
    # sign) but comes within 3 h, so the carry pays for well under half of the 6 bad hours.
    flip = sources.parse_time("2024-04-07T08:00", "x")
    assert flip < exited[0] <= flip + 3 * 3600 * 10**9
    notional = 0.1 * 70_000  # at least 0.1 BTC was open (10,000 USD of equity)
    assert float(result.summary["funding_pnl"]) > -0.001 * 6 * notional / 2


@needs_shared
def test_bridge_outage_keeps_the_bot_reduce_only_for_six_hours() -> None:
    result = _candle_run("2024-04-07", "2024-04-08", "bridge-outage-6h")
    modes = _events(result, "risk_mode")
    assert [e["new"] for e in modes] == ["REDUCE_ONLY", "NORMAL"]
    assert "withdrawal_gating" in modes[0]["reason"]
    assert 6 * 3600e9 <= modes[1]["ts_ns"] - modes[0]["ts_ns"] <= 6 * 3600e9 + 120e9


@needs_shared
def test_liquidity_drought_trips_the_liquidity_flag_while_it_lasts() -> None:
    result = _candle_run("2024-04-07", "2024-04-08", "liquidity-drought")
    window = _events(result, "scenario_start")[0]["ts_ns"], _events(result, "scenario_end")[0]["ts_ns"]
    trips = [e for e in _events(result, "flags") if "liquidity" in e["tripped"]]
    assert any(window[0] <= e["ts_ns"] <= window[0] + 600e9 for e in trips)


@needs_shared
def test_real_csvs_ftx_weeks_with_dydx_hourly_and_binance_8h_funding(tmp_path: Path) -> None:
    hourly = sources.load_funding(FUNDING / "BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv", 1)
    # The shared Binance files carry the fetcher's UTC+3 clock (../shared/data/README.md): -3 h.
    binance = FUNDING / "BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"
    eight = sources.load_funding(binance, 8, -3)
    settle = sources.parse_time("2022-11-08T08:00", "x")  # Binance settles at 00/08/16 UTC
    assert eight["BTC-USD"][settle] == eight["BTC-USD"][settle - 7 * 3600 * 10**9]
    for funding in (hourly, eight):
        result = _candle_run("2022-11-01", "2022-11-15", funding=funding)
        s = result.summary
        assert SUMMARY_KEYS <= s.keys() and s["fills"] > 0 and Decimal(s["funding_pnl"]) != 0
        assert s["baselines"]["buy_and_hold"]["total_return"] < -0.1  # BTC fell ~20% in the FTX week
        assert set(s["baselines"]) == {"carry_always_on", "carry_sign_daily", "static_target", "buy_and_hold"}
        always = s["baselines"]["carry_always_on"]
        # 10k equity x carry budget 1 x 1x: the carry sleeve's own size
        assert Decimal(always["funding_pnl"]) != 0 and Decimal(always["notional_usd"]) == 10_000
        assert Decimal(always["fees"]) > 0 and "taker fee" in s["baseline_fees"]["charged"]
        fills = result.fills
        perp = sum(Decimal(f["price"]) * Decimal(f["size"]) for f in fills)
        assert s["turnover"] == round(float(perp / Decimal(s["initial_equity"])), 6)  # every leg counted
        assert all(f["cause"] for f in fills) and any(f["decision_id"] for f in fills)
    write_run(result, tmp_path / "run")
    html = build_report(tmp_path / "run").read_text()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in html
    for chart in CHARTS:
        assert (tmp_path / "run" / chart).stat().st_size > 1000
        assert f'src="{chart}"' in html
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["sortino"] is not None


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from bot.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@needs_shared
@pytest.mark.parametrize("args, option", [
    (["--candles", "missing.csv"], "--candles"),
    (["--candles", str(CANDLES), "--funding-interval", "1.5h"], "--funding-interval"),
    (["--candles", str(CANDLES), "--funding-offset", "auto"], "--funding-offset"),
    (["--sim", "1", "--hours", "0.01", "--bar-path"], "--bar-path"),
    (["--candles", str(CANDLES), "--funding", str(DYDX_BTC), "--funding-interval", "8h"],
     "--funding-interval"),
    (["--candles", str(CANDLES), "--funding", str(DYDX_ETH)], "--funding"),  # another market
    (["--candles", str(CANDLES), "--start", "2024-03-01", "--funding", str(DYDX_BTC)],
     "--funding"),  # no overlap
    (["--candles", str(CANDLES), "--funding", "nan.csv"], "--funding"),
    (["--sim", "1", "--hours", "0.01", "--scenario", "volcano"], "--scenario"),
    (["--data", "nope.jsonl.gz"], "--data"),
    ([], "--sim"),
])
@needs_shared
def test_cli_bad_input_exits_2_with_one_line_naming_the_option(tmp_path: Path, args: list[str],
                                                               option: str) -> None:
    (tmp_path / "nan.csv").write_text("Symbol,Date,Funding Rate\nBTC-USDT,2022-01-01 00:00:00,0.0001\n"
                                      "BTC-USDT,2022-01-01 01:00:00,NaN\n")
    proc = _cli("backtest", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"perpbot: {option}:"), proc.stderr


@needs_shared
def test_cli_backtest_and_report(tmp_path: Path) -> None:
    proc = _cli("backtest", "--candles", str(CANDLES), "--start", "2023-06-01", "--end", "2023-06-03",
                "--funding", str(FUNDING / "BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"),
                "--funding-interval", "8h", "--funding-offset", "-3", "--bar-path", "--out", "run",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys() and summary["source"]["steps_per_bar"] == 4  # the bar path
    proc = _cli("report", "run", cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "run/report.html").exists(), proc.stderr
    assert _cli("report", "nowhere", cwd=tmp_path).returncode == 2


async def test_record_the_simulator_and_replay_it(tmp_path: Path) -> None:
    settings = _settings(markets=["BTC-USD"])
    path = tmp_path / "rec.jsonl.gz"
    writer = await record_sim(settings, path, 120, simulated=True, rotate_secs=60)
    assert writer.events > 500 and len(writer.segments) >= 2  # rotated by time
    src = sources.recording_source(path)
    assert set(src.specs) == {"BTC-USD"} and src.spot_of == {"BTC-USD": "BTC-USDT"}
    result = await Backtest(settings, src).run_async()
    assert result.events == writer.events and result.summary["fills"] > 0


async def test_record_from_the_dydx_adapter_on_the_protocol_simulator(tmp_path: Path) -> None:
    settings = _settings(markets=["BTC-USD"], sim={"mode": "protocol"}, watchdog={"enabled": False})
    path = tmp_path / "dydx.jsonl.gz"
    writer = await record_venue(settings, path, 4.0)
    assert writer.events > 20
    src = sources.recording_source(path)
    kinds = {type(e).__name__ for _, perp, _ in src.batches for e in perp}
    assert {"BookSnapshot", "OracleUpdate", "BlockHeight"} <= kinds
