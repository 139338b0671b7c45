"""What every `perpbot` command shares: the root group, exit codes, config loading, option parsing.

Exit codes: 0 ok, 1 runtime failure, 2 bad input or config (one line naming the key),
3 daemon unreachable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from bot.config import Settings, load
from bot.errors import ConfigError

EXIT_RUNTIME, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 1, 2, 3
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), envvar="PERPBOT_CONFIG",
    default=None, help="TOML config file (env PERPBOT_CONFIG).",
)


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"perpbot: {message}", err=True)
    sys.exit(code)


def load_settings(config_path: Path | None, **overrides: Any) -> Settings:
    try:
        return load(config_path, **overrides)
    except ConfigError as exc:
        fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")


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


def bad(option: str, reason: str) -> NoReturn:
    fail(EXIT_BAD_INPUT, f"{option}: {reason}")


def positive(option: str, text: str, cast: Any = float) -> Any:
    """`text` as a number > 0 (`cast` it: float or int); exit 2 naming the option otherwise."""
    try:
        value = cast(text)
    except ValueError:
        bad(option, f"{text!r} is not a number")
    if value <= 0:
        bad(option, "must be > 0")
    return value


def parse_markets(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    markets = tuple(m.strip() for m in text.split(",") if m.strip())
    if not markets or any("-" not in m or m != m.upper() for m in markets):
        bad("--markets", f"{text!r} is not a list like BTC-USD,ETH-USD")
    return markets


def parse_hours(funding_interval: str | None, funding_offset: str,
                candles_offset: str) -> tuple[int | None, dict[str, int]]:
    """--funding-interval (None: inferred) and the two offsets, as whole hours; exit 2 naming the option."""
    interval_hours = None
    if funding_interval is not None:
        whole = funding_interval.endswith("h") and funding_interval[:-1].isdigit()
        if not whole or not int(funding_interval[:-1]):
            bad("--funding-interval", f"must be whole hours like 1h or 8h (got {funding_interval!r})")
        interval_hours = int(funding_interval[:-1])
    offsets = {}
    for option, text in (("--funding-offset", funding_offset), ("--candles-offset", candles_offset)):
        try:
            offsets[option] = int(text)
        except ValueError:
            bad(option, f"must be whole hours (got {text!r})")
    return interval_hours, offsets
