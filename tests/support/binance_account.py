"""The daemon's parts the drawdown peak needs over the simulator's Binance server: the engine with
the Binance account as its equity, the venue's streams feeding it, a real SQLite store, and what
App.run does before trading (the transfer catch-up). For the Binance transfer tests."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.accounts import AccountBook
from bot.book import OrderBook
from bot.clock import SYSTEM_CLOCK, Clock
from bot.config import load
from bot.domain import MarketSpec
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.peak import drawdown
from bot.peak import load as load_peak
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.account_state import BinanceAccount
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from support.wait import eventually_async

D = Decimal
KEY, SECRET = sim_binance_credentials()
SPEC = MarketSpec("BTC-USD", D(1), D("0.0001"), D("0.0001"))


class Daemon:
    """One run: `start()` does what App.run does before trading; the store keeps the catch-up's
    cursor as the daemon's does (bot.core)."""

    def __init__(self, server: BinanceServer, db: Path, tmp_path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.server, self.metrics, self.clock = server, Metrics(), clock
        self.store = Store.open(db)
        self.venue: BinanceVenue = build_venue(
            BinanceSettings(rest_url=server.rest_url, ws_url=server.ws_url, symbols={"BTC-USDT": "BTCUSDT"},
                            min_session_secs=0.1),
            self.metrics, api_key=SecretStr(KEY), api_secret=SecretStr(SECRET), clock=clock)
        self.venue.use_store(self.store)
        self.settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["BTC-USD"],
                             strategy={"targets": {}})
        self.accounts = AccountBook([BinanceAccount(self.venue)], self.metrics, clock)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Markets, books, the engine; the transfers made while down; the streams. Returns how many
        transfers the catch-up found pending."""
        venue, clock = self.venue, self.clock
        await venue.load_markets()
        venue.use_books({"BTC-USDT": OrderBook("BTC-USDT")})
        perp = PaperVenue({"BTC-USD": OrderBook("BTC-USD")}, FeeSchedule(D(0), D(0)), clock)
        ex = self.settings.execution
        spot = OrderManager(venue, self.store, self.metrics, clock, ex)
        self.engine = Engine(self.settings, {"BTC-USD": SPEC}, self.store,
                             OrderManager(perp, self.store, self.metrics, clock, ex), self.metrics,
                             clock, spot_orders=spot, spot_specs=venue.specs(), spot_books=venue.books,
                             accounts=self.accounts)
        venue.set_account_sink(self.accounts.watching(self.engine.on_spot_account_event))
        assert self.engine.live_peak is not None
        pending = self.engine.live_peak.catch_up(await venue.transfers(), venue.name)
        self._task = asyncio.create_task(venue.run(lambda event: None))
        await eventually_async(lambda: venue.user_stream is not None
                               and venue.user_stream.is_connected.is_set()
                               and venue.books["BTC-USDT"].mid() is not None)
        return pending

    async def read(self) -> tuple[Decimal, Decimal]:
        """One account refresh and one engine step: (equity, peak)."""
        await self.accounts.refresh()
        await self.engine.tick()
        return self.engine.equity(), self.engine.peak_equity

    def mid(self) -> Decimal:
        mid = self.venue.books["BTC-USDT"].mid()
        assert mid is not None
        return mid

    def stopped(self) -> bool:
        """Whether the drawdown is past the configured stop."""
        return drawdown(self.engine.peak_equity, self.engine.equity()) > self.settings.strategy.drawdown_stop

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task
        await self.venue.close()
        self.store.close()


def publish(server: BinanceServer) -> None:
    """Send what the exchange did since the last request (the runner's step does this)."""
    server.publish(server.spot.drain_events())


async def seen(daemon: Daemon, keys: int) -> None:
    """Until the peak has remembered `keys` transfer keys (stream frames are asynchronous)."""
    await eventually_async(lambda: len(load_peak(daemon.store).keys) >= keys, what=f"{keys} transfer keys")


async def lose_and_reconnect(daemon: Daemon, server: BinanceServer, keys: int) -> None:
    """The stream loses what the exchange did since the last publish (a dropped connection), then
    reconnects; until the peak has `keys` transfer keys and the book has resynced."""
    server.spot.drain_events()
    user_stream = daemon.venue.user_stream
    assert user_stream is not None and user_stream.connections == 1
    await server.close_streams()
    await eventually_async(lambda: user_stream.connections == 2 and user_stream.is_connected.is_set())
    await seen(daemon, keys)
    await eventually_async(lambda: daemon.venue.books["BTC-USDT"].mid() is not None)
