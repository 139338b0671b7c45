"""Commands that act on a venue or its simulator without the daemon: `sim`, `decode`, `keys`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.base import EXIT_BAD_INPUT, EXIT_RUNTIME, cli, config_option, fail, load_settings
from bot.config import Settings
from bot.errors import BotError, ConfigError


@cli.command()
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scenario", "scenario_path", type=click.Path(path_type=Path), default=None,
              help="Scenario file to schedule (JSON or TOML).")
@click.option("--host", default="127.0.0.1", show_default=True)
def sim(seed: int, scenario_path: Path | None, host: str) -> None:
    """Run the exchange simulator standalone; the first stdout line is its endpoints as JSON."""
    from bot.sim.runner import run_standalone
    from bot.venues.registry import sim_exchange_config

    settings = load_settings(None)  # [sim] account_equity_usd and fee tier (PERPBOT_SIM__*)
    try:
        code = run_standalone(seed=seed, scenario_path=scenario_path, host=host,
                              config=sim_exchange_config(settings),
                              account_equity_usd=settings.sim.account_equity_usd)
    except ConfigError as exc:
        fail(EXIT_BAD_INPUT, f"{exc.key}: {exc.reason}")
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
        fail(EXIT_BAD_INPUT, str(exc))
    for event in events:
        click.echo(json.dumps(event, sort_keys=True))
    for error in errors:
        click.echo(f"perpbot: {error}", err=True)
    if errors:
        sys.exit(EXIT_BAD_INPUT)



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

    settings = load_settings(config_path, network=network)
    try:
        return asyncio.run(action(settings))
    except ConfigError as exc:
        fail(EXIT_BAD_INPUT, f"config error: {exc.key}: {exc.reason}")
    except BotError as exc:
        fail(EXIT_RUNTIME, str(exc))
    except grpc.RpcError as exc:
        fail(EXIT_RUNTIME, f"dydx node: gRPC {exc.code().name}")  # type: ignore[attr-defined]


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

