"""Run the simulator: the exchange cores stepped on a clock behind their protocol front-ends.

`perpbot sim` runs it standalone and prints one JSON line of endpoints and test credentials;
tests and the daemon run it in-process with `Simulator(...)` inside their own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from bot.clock import Clock, SystemClock
from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.market import SimMarketParams
from bot.sim.perp.records import ExchangeConfig
from bot.sim.scenarios import ScenarioScheduler, ScenarioSpec, load_scenario_file
from bot.sim.server.admin import AdminServer
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.server.indexer import IndexerServer
from bot.sim.server.node import NodeServer
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotError
from bot.telemetry import configure_logging
from bot.venues.sim.feed import default_params

log = structlog.get_logger("sim")
DEFAULT_MARKETS = ("BTC-USD", "ETH-USD")
STARTING_USDC = Decimal(10_000)  # sim.account_equity_usd's default


class Simulator:
    """The dYdX exchange core + spot venue, their servers, the admin endpoint and the step loop."""

    name = "simulator"

    def __init__(
        self,
        seed: int = 42,
        clock: Clock | None = None,
        *,
        host: str = "127.0.0.1",
        markets: tuple[str, ...] = DEFAULT_MARKETS,
        step_secs: float = 0.05,
        scenarios: list[ScenarioSpec] | None = None,
        config: ExchangeConfig | None = None,
        account_equity_usd: Decimal = STARTING_USDC,
        market_params: list[SimMarketParams] | None = None,
    ) -> None:
        """`market_params` replaces the models' defaults for `markets` (tests quieten a market)."""
        self.clock = clock or SystemClock()
        self.seed = seed
        self._step_secs = step_secs
        start = self.clock.now_ns()
        config = self.config = config or ExchangeConfig()
        params = market_params or [default_params(t, config.block_interval_ns / 1e9) for t in markets]
        self.exchange = SimExchange(params, seed, start, config)
        self.spot = SpotExchange(seed=seed + 1000, start_ns=start)
        self.accounts = sim_accounts()
        self.exchange.create_account(self.accounts["dydx"]["address"], account_equity_usd)
        self.scheduler = ScenarioScheduler(self.exchange.scenario, start)
        self.scheduler.schedule(scenarios or [])
        self.indexer = IndexerServer(self.exchange, host=host)
        self.node = NodeServer(self.exchange, self.clock.now_ns, host=host)
        self.binance = BinanceServer(self.spot, self.clock.now_ns, host=host)
        self.admin = AdminServer(self.scheduler, self.clock.now_ns, self.state, host=host)
        api_key, api_secret = sim_binance_credentials()
        self.accounts["binance"] = {"api_key": api_key, "api_secret": api_secret}

    async def start(self) -> dict[str, Any]:
        """Start every front-end; return the endpoints object `perpbot sim` prints."""
        await self.indexer.start()
        await self.node.start()
        await self.binance.start()
        await self.admin.start()
        return self.endpoints()

    def endpoints(self) -> dict[str, Any]:
        return {
            "indexer_rest": self.indexer.rest_url,
            "indexer_ws": self.indexer.ws_url,
            "node_grpc": self.node.target,
            "binance_rest": self.binance.rest_url,
            "binance_ws": self.binance.ws_url,
            "admin": self.admin.url,
            "chain_id": self.config.chain_id,
            "seed": self.seed,
            "accounts": self.accounts,
        }

    def state(self) -> dict[str, Any]:
        s = self.exchange.scenario
        return {
            "height": self.exchange.height,
            "active_scenarios": self.scheduler.active(),
            "chain_halted": s.chain_halted,
            "indexer_lag_blocks": s.indexer_lag_blocks,
            "withdrawals_gated": s.withdrawals_gated,
        }

    def step(self) -> None:
        """Advance both venues to now and publish what happened."""
        now = self.clock.now_ns()
        self.scheduler.tick(now)
        self._apply_one_shots()
        self.indexer.publish(self.exchange.advance(now))
        self.binance.publish(self.spot.advance(now))

    def _apply_one_shots(self) -> None:
        faults = self.exchange.scenario
        fault, faults.binance_http_error = faults.binance_http_error, None
        if fault is not None:
            self.binance.faults.http_error = fault
        restrictions, faults.binance_api_restrictions = faults.binance_api_restrictions, None
        if restrictions is not None:
            self.binance.api_restrictions.update(restrictions)
        transfer, faults.binance_transfer = faults.binance_transfer, None
        if transfer is not None:  # the owner's deposit, withdrawal or transfer, made outside the bot
            asset, amount, fee, wallet = transfer
            move = self.spot.deposit if amount > 0 else partial(self.spot.withdraw, fee=fee)
            if wallet is not None:
                move = partial(self.spot.transfer, kind=f"{wallet}_MAIN" if amount > 0 else f"MAIN_{wallet}")
            try:
                move(self.accounts["binance"]["api_key"], asset=asset, amount=abs(amount))
            except SpotError as exc:  # more than the account holds: refused, as Binance would
                log.warning("sim_binance_transfer_refused", asset=asset, amount=str(amount), error=exc.msg)

    async def run(self) -> None:
        """Step until cancelled."""
        while True:
            self.step()
            await self.clock.sleep(self._step_secs)

    async def stop(self) -> None:
        for server in (self.admin, self.binance, self.node, self.indexer):
            with contextlib.suppress(Exception):
                await server.stop()


def run_standalone(seed: int, scenario_path: Path | None, host: str, *, config: ExchangeConfig | None = None,
                   account_equity_usd: Decimal = STARTING_USDC) -> int:
    """`perpbot sim`: print the endpoints line, then serve until SIGTERM/SIGINT."""
    scenarios = load_scenario_file(scenario_path) if scenario_path else []
    # Stdout carries exactly one line, the endpoints object; logs go to stderr.
    configure_logging(stream=sys.stderr)
    return asyncio.run(_serve(seed, scenarios, host, config, account_equity_usd))


async def _serve(seed: int, scenarios: list[ScenarioSpec], host: str, config: ExchangeConfig | None,
                 account_equity_usd: Decimal) -> int:
    sim = Simulator(seed, host=host, scenarios=scenarios, config=config,
                    account_equity_usd=account_equity_usd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    endpoints = await sim.start()
    sys.stdout.write(json.dumps(endpoints) + "\n")
    sys.stdout.flush()

    async def wait_for_stop() -> None:
        await stop.wait()
        raise _Stopped

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.run(), name="sim_step")
            tg.create_task(wait_for_stop(), name="stop")
    except* _Stopped:
        pass
    finally:
        await sim.stop()
    return 0


class _Stopped(Exception):
    """Unwinds the simulator's task group on a stop signal."""
