"""Backtests, parameter search, recordings and reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.base import (
    EXIT_BAD_INPUT,
    EXIT_RUNTIME,
    bad,
    cli,
    config_option,
    fail,
    load_settings,
    parse_duration,
    parse_hours,
    parse_markets,
    positive,
)
from bot.errors import BotError, ConfigError


@cli.command()
@config_option
@click.option("--sim", "sim_seed", type=str, default=None, help="Replay the seeded simulator (SEED).")
@click.option("--hours", type=str, default="24", show_default=True, help="Simulated hours (with --sim).")
@click.option("--step-secs", type=str, default=None, help="Simulator step (default: sim.step_interval_secs).")
@click.option("--candles", "candle_paths", multiple=True, help="OHLCV CSV (Date,Open,High,Low,Close,Volume).")
@click.option("--funding", "funding_paths", multiple=True, help="Funding CSV (Symbol,Date,Funding Rate).")
@click.option("--funding-interval", default=None,
              help="Funding CSV period, e.g. 1h or 8h (default: inferred from the rows; checked when given).")
@click.option("--funding-offset", default="0", show_default=True,
              help="Hours to add to funding times (files are read as UTC).")
@click.option("--candles-offset", default="0", show_default=True,
              help="Hours to add to candle times (files are read as UTC).")
@click.option("--bar-path", is_flag=True, help="Candles: the bar-level fast path (4 points per bar).")
@click.option("--start", default=None, help="Replay candles from this UTC date/time.")
@click.option("--end", default=None, help="Replay candles up to this UTC date/time.")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="Candles with --start: seed the estimators from strategy.history_hours of the files' "
                   "rows before it, as the daemon does from venue history.")
@click.option("--data", "data_path", default=None, help="A recording made by `perpbot record`.")
@click.option("--scenario", "scenario_names", multiple=True, help="Scenario NAME or FILE (repeatable).")
@click.option("--markets", default=None, help="Markets for --sim, e.g. BTC-USD,ETH-USD.")
@click.option("--market", default=None, help="Market for a single --candles file (default: from its name).")
@click.option("--sample-secs", type=str, default=None, help="Equity sample interval (default: by span).")
@click.option("--out", "out_dir", default="backtest-out", show_default=True, help="Run directory to write.")
@click.option("--report/--no-report", "with_report", default=False, help="Also write report.html + charts.")
def backtest(config_path: Path | None, sim_seed: str | None, hours: str, step_secs: str | None,
             candle_paths: tuple[str, ...], funding_paths: tuple[str, ...], funding_interval: str | None,
             funding_offset: str, candles_offset: str, bar_path: bool, start: str | None, end: str | None,
             warmup: bool, data_path: str | None, scenario_names: tuple[str, ...], markets: str | None,
             market: str | None,
             sample_secs: str | None, out_dir: str, with_report: bool) -> None:
    """Run the live engine over simulated, CSV or recorded data in simulated time; write DIR/summary.json."""
    from bot.backtest import sources
    from bot.backtest.report import write_run
    from bot.backtest.runner import Backtest
    from bot.backtest.scenarios import ScenarioError, load_scenario

    chosen = [n for n, v in (("--sim", sim_seed), ("--candles", candle_paths), ("--data", data_path)) if v]
    if len(chosen) != 1:
        bad("--sim", "give exactly one of --sim SEED, --candles FILE or --data FILE")
    if funding_paths and not candle_paths:
        bad("--funding", "needs --candles")
    if bar_path and not candle_paths:
        bad("--bar-path", "needs --candles")
    interval_hours, offsets = parse_hours(funding_interval, funding_offset, candles_offset)

    def number(option: str, text: str | None, cast: Any = float) -> Any:
        return None if text is None else positive(option, text, cast)

    scenarios = []
    for name in scenario_names:
        try:
            scenarios.append(load_scenario(name))
        except ScenarioError as exc:
            bad("--scenario", str(exc))
    settings = load_settings(config_path)
    if (m := parse_markets(markets)) is not None:  # the source decides the markets, not the config check
        settings = settings.model_copy(update={"markets": m})
    try:
        if sim_seed is not None:
            seed = number("--sim", sim_seed, int) if sim_seed != "0" else 0
            source = sources.sim_source(settings, seed, number("--hours", hours),
                                        step_secs=number("--step-secs", step_secs))
        elif data_path is not None:
            source = sources.recording_source(Path(data_path))
        else:
            start_ns = sources.parse_time(start, "--start") if start else None
            end_ns = sources.parse_time(end, "--end") if end else None
            for path in (*candle_paths, *funding_paths):
                if not Path(path).is_file():
                    bad("--candles" if path in candle_paths else "--funding", f"file not found: {path}")
            data = sources.load_candle_data(
                candle_paths, funding_paths, market=market, start_ns=start_ns, end_ns=end_ns,
                funding_interval_hours=interval_hours, funding_offset_hours=offsets["--funding-offset"],
                candles_offset_hours=offsets["--candles-offset"],
                warmup_hours=settings.strategy.history_hours if warmup else 0)
            data.warmup = warmup
            source = data.source(settings, steps_per_bar=sources.BAR_PATH_STEPS if bar_path else None)
            for note in source.describe.get("checks", ()):
                click.echo(f"perpbot: note: {note}", err=True)
    except sources.SourceError as exc:
        bad(exc.option, exc.reason)
    progress = _progress_bar(source.end_ns - source.start_ns) if sys.stderr.isatty() else None
    run = Backtest(settings, source, scenarios, sample_secs=number("--sample-secs", sample_secs, int),
                   progress=progress.update if progress else None)
    try:
        result = run.run()
    finally:
        if progress is not None:
            progress.stop()
    out = Path(out_dir)
    write_run(result, out)
    if with_report:
        from bot.backtest.report import build_report

        build_report(out)
    s = result.summary
    click.echo(json.dumps({k: s[k] for k in ("total_return", "max_drawdown", "sharpe", "turnover", "fees",
                                             "funding_pnl", "liquidations", "events")}
                          | {"out": str(out), "events_per_sec": round(result.events / max(result.elapsed_secs,
                                                                                         1e-9))}))


class _ProgressBar:
    """A rich progress bar over simulated time with events/s and ETA (only on a TTY)."""

    def __init__(self, span_ns: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                                  TextColumn("{task.fields[rate]} events/s"), TimeRemainingColumn(),
                                  transient=True)
        self._task = self._progress.add_task("backtest", total=max(span_ns, 1), rate="-")
        self._progress.start()
        import time

        self._time = time.perf_counter
        self._t0 = self._time()

    def update(self, events: int, done_ns: int) -> None:
        rate = events / max(self._time() - self._t0, 1e-9)
        self._progress.update(self._task, completed=done_ns, rate=f"{rate:,.0f}")

    def stop(self) -> None:
        self._progress.stop()


def _progress_bar(span_ns: int) -> _ProgressBar:
    return _ProgressBar(span_ns)


@cli.command()
@config_option
@click.option("--candles", "candle_paths", multiple=True, help="OHLCV CSV or feather file (repeatable).")
@click.option("--funding", "funding_paths", multiple=True, help="Funding CSV (Symbol,Date,Funding Rate).")
@click.option("--funding-interval", default=None, help="Funding period, e.g. 1h or 8h (default: inferred).")
@click.option("--funding-offset", default="0", show_default=True, help="Hours to add to funding times.")
@click.option("--candles-offset", default="0", show_default=True, help="Hours to add to candle times.")
@click.option("--bar-path", is_flag=True, help="Trials on the bar-level fast path (4 points per bar).")
@click.option("--start", default=None, help="Use candles from this UTC date/time.")
@click.option("--end", default=None, help="Use candles up to this UTC date/time.")
@click.option("--market", default=None, help="Market for a single --candles file (default: from its name).")
@click.option("--trials", default="30", show_default=True, help="Trials per fold.")
@click.option("--folds", default="2", show_default=True, help="Walk-forward folds.")
@click.option("--workers", default="1", show_default=True, help="Local worker processes.")
@click.option("--out", "out_dir", default="optimize-out", show_default=True, help="Writes DIR/study.json.")
@click.option("--storage", default=None, envvar="PERPBOT_OPTIMIZE_STORAGE",
              help="Shared Optuna storage: postgresql://..., sqlite:///FILE or journal:FILE "
                   "(default: journal:DIR/optuna.journal; env PERPBOT_OPTIMIZE_STORAGE, for passwords).")
@click.option("--study", "study_name", default=None, help="Study name (default: a hash of the inputs).")
@click.option("--seed", default=None, help="Seed; worker k uses SEED+k (default 42; none with --join).")
@click.option("--join", is_flag=True, help="Only run trials for the study at --storage (another machine).")
def optimize(config_path: Path | None, candle_paths: tuple[str, ...], funding_paths: tuple[str, ...],
             funding_interval: str | None, funding_offset: str, candles_offset: str, bar_path: bool,
             start: str | None, end: str | None, market: str | None, trials: str, folds: str, workers: str,
             out_dir: str, storage: str | None, study_name: str | None, seed: str | None, join: bool) -> None:
    """Walk-forward parameter search with Optuna over `[optimize.space]`; write DIR/study.json."""
    try:
        from bot.research import command
        from bot.research.space import SpecError
        from bot.research.study import StudyError
    except ImportError as exc:
        fail(EXIT_RUNTIME, f"optimize needs the research extra (pip install 'perpbot[research]'): {exc}")
    interval, offsets = parse_hours(funding_interval, funding_offset, candles_offset)
    data = command.DataSpec(candle_paths, funding_paths, interval, offsets["--funding-offset"], start, end,
                            market, offsets["--candles-offset"])
    opts = command.Options(config_path, data, trials, folds, workers, out_dir, storage, seed, study_name,
                           join, bar_path)
    try:
        command.echo(command.run(opts))
    except SpecError as exc:
        bad(exc.key, exc.reason)
    except StudyError as exc:
        fail(EXIT_RUNTIME, str(exc))


@cli.command()
@config_option
@click.option("--network", default="sim", show_default=True, help="sim, testnet or mainnet.")
@click.option("--markets", default=None, help="e.g. BTC-USD,ETH-USD (default: the config's markets).")
@click.option("--out", "out_path", default=None, help="Recording file (gzip JSON lines).")
@click.option("--duration", default=None, help="e.g. 30s, 15m, 2h (default: until Ctrl-C).")
@click.option("--rotate-mb", default="64", show_default=True, help="Rotate a segment past this size (MB).")
@click.option("--rotate-mins", default="60", show_default=True, help="Rotate a segment after this long.")
@click.option("--simulated", is_flag=True, help="In-process simulator only: simulated time, no waiting.")
def record(config_path: Path | None, network: str, markets: str | None, out_path: str | None,
           duration: str | None, rotate_mb: str, rotate_mins: str, simulated: bool) -> None:
    """Record market events (books, trades, oracle/funding, block heights) for `backtest --data`."""
    import asyncio

    from bot.backtest.recording import record_sim, record_venue

    if network not in ("sim", "testnet", "mainnet"):
        bad("--network", f"must be sim, testnet or mainnet (got {network!r})")
    if not out_path:
        bad("--out", "a recording file is required")
    secs = None
    if duration is not None:
        try:
            secs = parse_duration(duration)
        except click.BadParameter:
            bad("--duration", f"{duration!r} is not a duration like 30s or 2h")
    rotation: dict[str, Any] = {}
    for option, text, key, scale in (("--rotate-mb", rotate_mb, "rotate_bytes", 1 << 20),
                                     ("--rotate-mins", rotate_mins, "rotate_secs", 60)):
        value = positive(option, text)
        rotation[key] = int(value * scale) if key == "rotate_bytes" else value * scale
    overrides: dict[str, Any] = {"network": network}
    if (m := parse_markets(markets)) is not None:
        overrides["markets"] = list(m)
    settings = load_settings(config_path, **overrides)
    in_process = network == "sim" and settings.sim.mode == "in_process"
    if simulated and not in_process:
        bad("--simulated", "only the in-process simulator (sim.mode = 'in_process') runs in simulated time")
    if simulated and secs is None:
        bad("--duration", "a simulated recording needs a duration")
    try:
        if in_process:
            writer = asyncio.run(record_sim(settings, Path(out_path), secs or float("inf"),
                                            simulated=simulated, **rotation))
        else:
            writer = asyncio.run(record_venue(settings, Path(out_path), secs, **rotation))
    except KeyboardInterrupt:
        sys.exit(0)
    except ConfigError as exc:
        fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    except BotError as exc:
        fail(EXIT_RUNTIME, f"recording failed: {exc}")
    click.echo(json.dumps({"events": writer.events, "segments": [str(p) for p in writer.segments]}))


@cli.command()
@click.argument("run_dir", metavar="DIR")
def report(run_dir: str) -> None:
    """Write DIR/report.html, PNG charts and summary.json from a backtest run directory."""
    from bot.backtest.report import ReportError, build_report

    try:
        path = build_report(Path(run_dir))
    except ReportError as exc:
        bad("DIR", str(exc))
    click.echo(str(path))

