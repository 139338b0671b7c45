"""The daemon (`run`) and the commands that are clients of its control API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.base import (
    EXIT_BAD_INPUT,
    EXIT_RUNTIME,
    EXIT_UNREACHABLE,
    cli,
    config_option,
    fail,
    load_settings,
    parse_duration,
)
from bot.config import Settings
from bot.errors import ConfigError, DaemonUnreachable
from bot.strategy.targets import parse_target


@cli.command()
@config_option
@click.option("--network", type=click.Choice(["sim", "testnet", "mainnet"]), default=None)
@click.option("--trading", type=click.Choice(["paper", "live"]), default=None)
def run(config_path: Path | None, network: str | None, trading: str | None) -> None:
    """Run the daemon (default: embedded simulator, paper trading, no keys)."""
    from bot.app import run_daemon

    settings = load_settings(config_path, network=network, trading=trading)
    try:
        code = run_daemon(settings)
    except ConfigError as exc:
        fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
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
            fail(EXIT_UNREACHABLE, f"daemon unreachable at {exc}")
        if status == 401:
            fail(EXIT_RUNTIME, "control API refused the token (set PERPBOT_CONTROL_TOKEN)")
        if status == 400:
            fail(EXIT_BAD_INPUT, _error_text(raw))
        if status >= 300:
            fail(EXIT_RUNTIME, f"control API answered {status}")
        data: dict[str, Any] = json.loads(raw)
        return data


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200]


def _daemon(config_path: Path | None) -> _Daemon:
    return _Daemon(load_settings(config_path))


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

        settings = load_settings(config_path)
        try:
            report = asyncio.run(kill_direct(settings, reason=reason, flatten=flatten,
                                             all_orders=all_orders))
        except ConfigError as exc:
            fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
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


@cli.command("reset-peak")
@config_option
@click.option("--confirm", is_flag=True, help="Required: the drawdown stop restarts from the equity now.")
@click.option("--direct", is_flag=True,
              help="With the daemon stopped: clear the stored peak; the next run's first read sets it.")
def reset_peak(config_path: Path | None, confirm: bool, direct: bool) -> None:
    """Accept the drawdown: the live stop's peak equity becomes the equity now (prints old -> new)."""
    if not confirm:
        fail(EXIT_BAD_INPUT, "reset-peak: --confirm is required (the drawdown stop restarts from "
                             "the equity now)")
    daemon = _daemon(config_path)
    if direct:
        _reset_peak_direct(daemon)
        return
    data = daemon.call("POST", "/v1/peak/reset", {"confirm": True})
    click.echo(f"peak equity {data['old_peak']} -> {data['peak_equity']} "
               f"(pending transfers {data['pending_transfers']})")


def _reset_peak_direct(daemon: _Daemon) -> None:
    from bot.control.client import request
    from bot.peak import clear
    from bot.store import Store

    try:
        request("GET", daemon.url + "/healthz", timeout=2.0)
    except DaemonUnreachable:
        pass
    else:  # its in-memory peak would overwrite the store's
        fail(EXIT_BAD_INPUT, f"reset-peak --direct: a daemon answers at {daemon.url}; stop it, "
                             "or drop --direct")
    path = daemon.settings.db_path
    if not path.exists():
        fail(EXIT_BAD_INPUT, f"reset-peak --direct: no store at {path} (state_dir)")
    with Store.open(path) as store:
        old = clear(store)
    click.echo(f"peak equity {old} -> cleared (the next run's first account read sets it)")


@cli.command()
@config_option
def health(config_path: Path | None) -> None:
    """Exit 0 when the daemon answers /healthz (used by the container HEALTHCHECK)."""
    from bot.control.client import request

    daemon = _daemon(config_path)
    try:
        status, raw = request("GET", daemon.url + "/healthz", timeout=3.0)
    except DaemonUnreachable:
        fail(EXIT_UNREACHABLE, f"daemon unreachable at {daemon.url}")
    if status != 200:
        fail(EXIT_RUNTIME, f"unhealthy: {status}")
    click.echo(raw.decode())


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config and print the effective values with secrets redacted."""
    settings = load_settings(config_path)
    click.echo(json.dumps(settings.redacted(), indent=2, sort_keys=True))

