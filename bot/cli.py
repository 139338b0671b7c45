"""The `perpbot` command line: the daemon, and an httpx client of the control API.

Exit codes: 0 ok, 1 runtime failure, 2 bad input or config (one line naming the key),
3 daemon unreachable.
"""

from __future__ import annotations

import json
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from bot.config import Settings, load
from bot.errors import ConfigError

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
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(method, self.url + path, json=body, params=params,
                                     headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            _fail(EXIT_UNREACHABLE, f"daemon unreachable at {self.url} ({type(exc).__name__})")
        if response.status_code == 401:
            _fail(EXIT_RUNTIME, "control API refused the token (set PERPBOT_CONTROL_TOKEN)")
        if response.status_code == 400:
            _fail(EXIT_BAD_INPUT, response.json().get("error", response.text))
        if response.status_code >= 300:
            _fail(EXIT_RUNTIME, f"control API answered {response.status_code}")
        data: dict[str, Any] = response.json()
        return data


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
    """Set the directional target for MARKET to SIZE (signed, base units), e.g. `target BTC-USD -0.1`."""
    try:
        Decimal(size)
    except InvalidOperation:
        raise click.BadParameter(f"{size!r} is not a number", param_hint="SIZE") from None
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

    try:
        code = run_standalone(seed=seed, scenario_path=scenario_path, host=host)
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
    daemon = _daemon(config_path)
    try:
        response = httpx.get(daemon.url + "/healthz", timeout=3.0)
    except httpx.TransportError:
        _fail(EXIT_UNREACHABLE, f"daemon unreachable at {daemon.url}")
    if response.status_code != 200:
        _fail(EXIT_RUNTIME, f"unhealthy: {response.status_code}")
    click.echo(response.text)


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config and print the effective values with secrets redacted."""
    settings = _settings(config_path)
    click.echo(json.dumps(settings.redacted(), indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli.main(args=argv, prog_name="perpbot")
