"""The `perpbot` command line: the daemon, and a client of the control API.

Exit codes: 0 ok, 1 runtime failure, 2 bad input or config (one line naming the key),
3 daemon unreachable.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from bot.config import Settings, load
from bot.errors import BotError, ConfigError, DaemonUnreachable
from bot.strategy.targets import parse_target

EXIT_RUNTIME, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 1, 2, 3
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), envvar="PERPBOT_CONFIG",
    default=None, help="TOML config file (env PERPBOT_CONFIG).",
)


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"perpbot: {message}", err=True)
    sys.exit(code)


def _settings(config_path: Path | None, **overrides: Any) -> Settings:
    try:
        return load(config_path, **overrides)
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")


def parse_duration(text: str) -> float:
    """Parse '90', '90s', '15m', '2h', '1d' into seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration like 30m or 2h", param_hint="--ttl")
    return float(match.group(1)) * _UNIT_SECS[match.group(2)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perpbot")
def cli() -> None:
    """perpbot: a perpetual-futures trading daemon (dYdX v4) with an operator CLI."""


@cli.command()
@config_option
@click.option("--network", type=click.Choice(["sim", "testnet", "mainnet"]), default=None)
@click.option("--trading", type=click.Choice(["paper", "live"]), default=None)
def run(config_path: Path | None, network: str | None, trading: str | None) -> None:
    """Run the daemon (default: embedded simulator, paper trading, no keys)."""
    from bot.app import run_daemon

    settings = _settings(config_path, network=network, trading=trading)
    try:
        code = run_daemon(settings)
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    sys.exit(code)


# ---- control API client ----------------------------------------------------------------------


class _Daemon:
    """Where the running daemon listens and how to authenticate to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = self._url()
        self.token = self._token()

    def _url(self) -> str:
        endpoint = self.settings.state_dir / "daemon.json"
        try:
            return str(json.loads(endpoint.read_text())["url"])
        except (OSError, ValueError, KeyError):
            host = self.settings.control.host
            host = f"[{host}]" if ":" in host else host
            return f"http://{host}:{self.settings.control.port}"

    def _token(self) -> str | None:
        if self.settings.control_token is not None:
            return self.settings.control_token.get_secret_value()
        try:
            return self.settings.token_path.read_text().strip() or None
        except OSError:
            return None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        from bot.control.client import request

        try:
            status, raw = request(method, self.url + path, body=body, params=params, token=self.token,
                                  timeout=timeout)
        except DaemonUnreachable as exc:
            _fail(EXIT_UNREACHABLE, f"daemon unreachable at {exc}")
        if status == 401:
            _fail(EXIT_RUNTIME, "control API refused the token (set PERPBOT_CONTROL_TOKEN)")
        if status == 400:
            _fail(EXIT_BAD_INPUT, _error_text(raw))
        if status >= 300:
            _fail(EXIT_RUNTIME, f"control API answered {status}")
        data: dict[str, Any] = json.loads(raw)
        return data


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200]


def _daemon(config_path: Path | None) -> _Daemon:
    return _Daemon(_settings(config_path))


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw status object.")
def status(config_path: Path | None, as_json: bool) -> None:
    """Show the running daemon's state."""
    data = _daemon(config_path).call("GET", "/v1/status")
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from bot.control.render import render_status

    render_status(data)


@cli.command()
@config_option
@click.option("--reason", default="operator", show_default=True)
@click.option("--flatten", is_flag=True, help="Also close positions (reduce-only, bounded slippage).")
@click.option("--all", "all_orders", is_flag=True, help="Also cancel orders the bot did not place.")
@click.option("--direct", is_flag=True,
              help="Act on the venues from this process, without the daemon (when it hangs or is gone).")
def kill(config_path: Path | None, reason: str, flatten: bool, all_orders: bool, direct: bool) -> None:
    """Latch HALTED, cancel every open order of the bot, optionally flatten; exit 1 if anything remains."""
    if direct:
        import asyncio

        from bot.control.direct import kill_direct

        settings = _settings(config_path)
        try:
            report = asyncio.run(kill_direct(settings, reason=reason, flatten=flatten,
                                             all_orders=all_orders))
        except ConfigError as exc:
            _fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    else:
        body = {"reason": reason, "flatten": flatten, "all": all_orders}
        report = _daemon(config_path).call("POST", "/v1/kill", body, timeout=30.0)
    click.echo(json.dumps(report, indent=2, sort_keys=True))
    if report.get("remaining_open_orders") or (flatten and report.get("positions")):
        sys.exit(EXIT_RUNTIME)


@cli.command()
@config_option
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Render one frame and exit.")
def watch(config_path: Path | None, interval: float, once: bool) -> None:
    """A live terminal view of the running daemon."""
    from bot.control.watch import run_watch

    daemon = _daemon(config_path)
    sys.exit(run_watch(daemon.url, daemon.token, interval_secs=interval, once=once))


@cli.command()
@config_option
def pause(config_path: Path | None) -> None:
    """Stop making new decisions (orders in flight finish)."""
    click.echo(json.dumps(_daemon(config_path).call("POST", "/v1/pause")))


@cli.command()
@config_option
def resume(config_path: Path | None) -> None:
    """Clear the kill latch and pause; return to NORMAL."""
    click.echo(json.dumps(_daemon(config_path).call("POST", "/v1/resume")))


@cli.group()
def news() -> None:
    """Operator news flags (the fourth rule flag)."""


@news.command("set")
@config_option
@click.argument("item")
@click.option("--ttl", default="2h", show_default=True, help="How long the flag stays up.")
def news_set(config_path: Path | None, item: str, ttl: str) -> None:
    """Raise a news flag, e.g. `perpbot news set FOMC --ttl 2h`."""
    secs = parse_duration(ttl)
    click.echo(json.dumps(_daemon(config_path).call("POST", "/v1/news",
                                                    {"item": item, "ttl_secs": secs})))


@news.command("clear")
@config_option
@click.argument("item", required=False)
def news_clear(config_path: Path | None, item: str | None) -> None:
    """Clear one news flag, or all of them."""
    params = {"item": item} if item else None
    click.echo(json.dumps(_daemon(config_path).call("DELETE", "/v1/news", params=params)))


@cli.command(context_settings={"ignore_unknown_options": True})  # lets SIZE be negative
@config_option
@click.argument("market")
@click.argument("size")
def target(config_path: Path | None, market: str, size: str) -> None:
    """Set the directional target for MARKET: base units (-0.1), leverage (0.5x) or USD ($5000, -$2000)."""
    try:
        parse_target(size)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SIZE") from None
    click.echo(json.dumps(_daemon(config_path).call("POST", "/v1/target",
                                                    {"market": market, "size": size})))


@cli.command()
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scenario", "scenario_path", type=click.Path(path_type=Path), default=None,
              help="Scenario file to schedule (JSON or TOML).")
@click.option("--host", default="127.0.0.1", show_default=True)
def sim(seed: int, scenario_path: Path | None, host: str) -> None:
    """Run the exchange simulator standalone; the first stdout line is its endpoints as JSON."""
    from bot.sim.runner import run_standalone
    from bot.venues.setup import sim_exchange_config

    settings = _settings(None)  # [sim] account_equity_usd and fee tier (PERPBOT_SIM__*)
    try:
        code = run_standalone(seed=seed, scenario_path=scenario_path, host=host,
                              config=sim_exchange_config(settings),
                              account_equity_usd=settings.sim.account_equity_usd)
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, f"{exc.key}: {exc.reason}")
    sys.exit(code)


@cli.command()
@click.option("--venue", type=click.Choice(["dydx", "binance"]), required=True)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def decode(venue: str, path: Path) -> None:
    """Print the domain events recorded venue messages become, one JSON object per line."""
    from bot.decode import decode_file

    try:
        events, errors = decode_file(path, venue)
    except ValueError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    for event in events:
        click.echo(json.dumps(event, sort_keys=True))
    for error in errors:
        click.echo(f"perpbot: {error}", err=True)
    if errors:
        sys.exit(EXIT_BAD_INPUT)


@cli.command()
@config_option
def health(config_path: Path | None) -> None:
    """Exit 0 when the daemon answers /healthz (used by the container HEALTHCHECK)."""
    from bot.control.client import request

    daemon = _daemon(config_path)
    try:
        status, raw = request("GET", daemon.url + "/healthz", timeout=3.0)
    except DaemonUnreachable:
        _fail(EXIT_UNREACHABLE, f"daemon unreachable at {daemon.url}")
    if status != 200:
        _fail(EXIT_RUNTIME, f"unhealthy: {status}")
    click.echo(raw.decode())


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config and print the effective values with secrets redacted."""
    settings = _settings(config_path)
    click.echo(json.dumps(settings.redacted(), indent=2, sort_keys=True))


# ---- backtests, recordings, reports ------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Trade-only dYdX keys: grant one, list them, revoke one (same network settings as `run`)."""
    import logging

    # dydx_v4_client.network warns on import about its own built-in localhost preset.
    logging.getLogger("dydx_v4_client.network").setLevel(logging.ERROR)


_network_option = click.option("--network", type=click.Choice(["sim", "testnet", "mainnet"]), default=None)


def _keys_run(config_path: Path | None, network: str | None, action: Any) -> Any:
    """Run one `keys` action: exit 2 on bad config, 1 when the chain refused or did not answer."""
    import asyncio

    import grpc

    settings = _settings(config_path, network=network)
    try:
        return asyncio.run(action(settings))
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    except BotError as exc:
        _fail(EXIT_RUNTIME, str(exc))
    except grpc.RpcError as exc:
        _fail(EXIT_RUNTIME, f"dydx node: gRPC {exc.code().name}")  # type: ignore[attr-defined]


@keys.command("grant")
@config_option
@_network_option
@click.option("--markets", default=None, help="Markets the key may trade, e.g. BTC-USD,ETH-USD (default: "
                                              "the configured markets).")
@click.option("--subaccount", type=click.IntRange(0, 127_999), default=None,
              help="Subaccount the key may trade (default: [dydx] subaccount_number).")
def keys_grant(config_path: Path | None, network: str | None, markets: str | None,
               subaccount: int | None) -> None:
    """Add a trade-only key to the account of PERPBOT_DYDX_MNEMONIC; print {address, authenticator_id}."""
    from bot.venues.dydx import keys as dydx_keys

    def action(settings: Settings) -> Any:
        chosen = dydx_keys.parse_markets(markets, settings.markets)
        number = settings.dydx.subaccount_number if subaccount is None else subaccount
        return dydx_keys.grant(settings, chosen, number)

    line, generated = _keys_run(config_path, network, action)
    if generated:
        click.echo("perpbot: store trading_mnemonic now (a secret manager, PERPBOT_DYDX_TRADING_MNEMONIC): "
                   "it is printed this once and stored nowhere", err=True)
    click.echo(json.dumps(line))


@keys.command("list")
@config_option
@_network_option
def keys_list(config_path: Path | None, network: str | None) -> None:
    """List the authenticators of PERPBOT_DYDX_ADDRESS (or of the owner mnemonic's account)."""
    from bot.venues.dydx import keys as dydx_keys

    click.echo(json.dumps(_keys_run(config_path, network, dydx_keys.list_keys)))


@keys.command("revoke")
@config_option
@_network_option
@click.argument("authenticator_id", metavar="ID", type=click.IntRange(0))
def keys_revoke(config_path: Path | None, network: str | None, authenticator_id: int) -> None:
    """Remove authenticator ID from the account of PERPBOT_DYDX_MNEMONIC; wait until it is gone."""
    from bot.venues.dydx import keys as dydx_keys

    click.echo(json.dumps(_keys_run(config_path, network,
                                    lambda settings: dydx_keys.revoke(settings, authenticator_id))))


def _bad(option: str, reason: str) -> NoReturn:
    _fail(EXIT_BAD_INPUT, f"{option}: {reason}")


def _markets_option(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    markets = tuple(m.strip() for m in text.split(",") if m.strip())
    if not markets or any("-" not in m or m != m.upper() for m in markets):
        _bad("--markets", f"{text!r} is not a list like BTC-USD,ETH-USD")
    return markets


def _hours_options(funding_interval: str | None, funding_offset: str,
                   candles_offset: str) -> tuple[int | None, dict[str, int]]:
    """--funding-interval (None: inferred) and the two offsets, as whole hours; exit 2 naming the option."""
    interval_hours = None
    if funding_interval is not None:
        whole = funding_interval.endswith("h") and funding_interval[:-1].isdigit()
        if not whole or not int(funding_interval[:-1]):
            _bad("--funding-interval", f"must be whole hours like 1h or 8h (got {funding_interval!r})")
        interval_hours = int(funding_interval[:-1])
    offsets = {}
    for option, text in (("--funding-offset", funding_offset), ("--candles-offset", candles_offset)):
        try:
            offsets[option] = int(text)
        except ValueError:
            _bad(option, f"must be whole hours (got {text!r})")
    return interval_hours, offsets


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
             data_path: str | None, scenario_names: tuple[str, ...], markets: str | None, market: str | None,
             sample_secs: str | None, out_dir: str, with_report: bool) -> None:
    """Run the live engine over simulated, CSV or recorded data in simulated time; write DIR/summary.json."""
    from bot.backtest import sources
    from bot.backtest.report import write_run
    from bot.backtest.runner import Backtest
    from bot.backtest.scenarios import ScenarioError, load_scenario

    chosen = [n for n, v in (("--sim", sim_seed), ("--candles", candle_paths), ("--data", data_path)) if v]
    if len(chosen) != 1:
        _bad("--sim", "give exactly one of --sim SEED, --candles FILE or --data FILE")
    if funding_paths and not candle_paths:
        _bad("--funding", "needs --candles")
    if bar_path and not candle_paths:
        _bad("--bar-path", "needs --candles")
    interval_hours, offsets = _hours_options(funding_interval, funding_offset, candles_offset)

    def number(option: str, text: str | None, cast: Any = float) -> Any:
        if text is None:
            return None
        try:
            value = cast(text)
        except ValueError:
            _bad(option, f"{text!r} is not a number")
        if value <= 0:
            _bad(option, "must be > 0")
        return value

    scenarios = []
    for name in scenario_names:
        try:
            scenarios.append(load_scenario(name))
        except ScenarioError as exc:
            _bad("--scenario", str(exc))
    settings = _settings(config_path)
    if (m := _markets_option(markets)) is not None:  # the source decides the markets, not the config check
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
                    _bad("--candles" if path in candle_paths else "--funding", f"file not found: {path}")
            source = sources.load_candle_data(
                candle_paths, funding_paths, market=market, start_ns=start_ns, end_ns=end_ns,
                funding_interval_hours=interval_hours, funding_offset_hours=offsets["--funding-offset"],
                candles_offset_hours=offsets["--candles-offset"],
            ).source(settings, steps_per_bar=sources.BAR_PATH_STEPS if bar_path else None)
            for note in source.describe.get("checks", ()):
                click.echo(f"perpbot: note: {note}", err=True)
    except sources.SourceError as exc:
        _bad(exc.option, exc.reason)
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
        _fail(EXIT_RUNTIME, f"optimize needs the research extra (pip install 'perpbot[research]'): {exc}")
    interval, offsets = _hours_options(funding_interval, funding_offset, candles_offset)
    data = command.DataSpec(candle_paths, funding_paths, interval, offsets["--funding-offset"], start, end,
                            market, offsets["--candles-offset"])
    opts = command.Options(config_path, data, trials, folds, workers, out_dir, storage, seed, study_name,
                           join, bar_path)
    try:
        command.echo(command.run(opts))
    except SpecError as exc:
        _bad(exc.key, exc.reason)
    except StudyError as exc:
        _fail(EXIT_RUNTIME, str(exc))


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
        _bad("--network", f"must be sim, testnet or mainnet (got {network!r})")
    if not out_path:
        _bad("--out", "a recording file is required")
    secs = None
    if duration is not None:
        try:
            secs = parse_duration(duration)
        except click.BadParameter:
            _bad("--duration", f"{duration!r} is not a duration like 30s or 2h")
    rotation: dict[str, Any] = {}
    for option, text, key, scale in (("--rotate-mb", rotate_mb, "rotate_bytes", 1 << 20),
                                     ("--rotate-mins", rotate_mins, "rotate_secs", 60)):
        try:
            value = float(text)
        except ValueError:
            _bad(option, f"{text!r} is not a number")
        if value <= 0:
            _bad(option, "must be > 0")
        rotation[key] = int(value * scale) if key == "rotate_bytes" else value * scale
    overrides: dict[str, Any] = {"network": network}
    if (m := _markets_option(markets)) is not None:
        overrides["markets"] = list(m)
    settings = _settings(config_path, **overrides)
    in_process = network == "sim" and settings.sim.mode == "in_process"
    if simulated and not in_process:
        _bad("--simulated", "only the in-process simulator (sim.mode = 'in_process') runs in simulated time")
    if simulated and secs is None:
        _bad("--duration", "a simulated recording needs a duration")
    try:
        if in_process:
            writer = asyncio.run(record_sim(settings, Path(out_path), secs or float("inf"),
                                            simulated=simulated, **rotation))
        else:
            writer = asyncio.run(record_venue(settings, Path(out_path), secs, **rotation))
    except KeyboardInterrupt:
        sys.exit(0)
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    except BotError as exc:
        _fail(EXIT_RUNTIME, f"recording failed: {exc}")
    click.echo(json.dumps({"events": writer.events, "segments": [str(p) for p in writer.segments]}))


@cli.command()
@click.argument("run_dir", metavar="DIR")
def report(run_dir: str) -> None:
    """Write DIR/report.html, PNG charts and summary.json from a backtest run directory."""
    from bot.backtest.report import ReportError, build_report

    try:
        path = build_report(Path(run_dir))
    except ReportError as exc:
        _bad("DIR", str(exc))
    click.echo(str(path))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli.main(args=argv, prog_name="perpbot")
