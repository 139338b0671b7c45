"""The order-manager rig: the simulator's protocol servers, the real dYdX adapter, a real store.

`open_rig()` starts a `Simulator` (indexer REST + WS, node gRPC, admin) in this event loop, a
`DydxVenue` signing with the simulator's test key through `dydx-v4-client`, a SQLite `Store` and
an `OrderManager` ticked every 50 ms, the way the engine drives it. Faults go in through the
simulator's scenario scheduler (the same switches `POST {admin}/scenario` flips); the venue's
truth is read from the exchange core, never from what the bot was told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from reliability.invariants import store_positions
from support.wait import eventually_async

from bot.book import OrderBook
from bot.clock import Clock, SystemClock
from bot.config import ExecutionSettings
from bot.domain import OrderRequest, RiskMode, Side
from bot.execution.orders import OrderManager
from bot.execution.twap import TwapPlan, plan_twap
from bot.recovery import reconcile_venue
from bot.sim.market import SimMarketParams
from bot.sim.perp.records import ExchangeConfig
from bot.sim.runner import Simulator
from bot.sim.scenarios import ScenarioSpec
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway
from bot.venues.sim.feed import default_params

MARKETS = ("BTC-USD", "ETH-USD")
TICK_SECS = 0.05
FAST_FEED = {
    "min_session_secs": 0.0,
    "check_interval_secs": 0.2,
    "max_silence_secs": {"v4_block_height": 1.5, "v4_orderbook": 3.0},
}


class RecordingVenue(DydxVenue):
    """The dYdX adapter, noting every client id it was asked to send."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[int] = []
        self.before_place: Callable[[OrderRequest], None] | None = None  # a fault's hook

    async def place(self, order: OrderRequest) -> None:
        self.sent.append(order.client_id)
        if self.before_place is not None:
            self.before_place(order)
        await super().place(order)


@dataclass
class Rig:
    sim: Simulator
    venue: RecordingVenue
    store: Store
    orders: OrderManager
    clock: Clock
    settings: ExecutionSettings
    store_path: Path
    risk_mode: RiskMode = RiskMode.NORMAL
    caps: dict[str, Decimal] = field(default_factory=dict)  # largest |position| a parent aimed at
    errors: list[BaseException] = field(default_factory=list)  # escaped a tick or the feed
    services: list[asyncio.Task[None]] = field(default_factory=list)  # the feed and the ticks
    _seed: int = 0

    @property
    def owner(self) -> str:
        return str(self.sim.accounts["dydx"]["address"])

    # ---- faults ---------------------------------------------------------------------------------

    def trigger(self, name: str, duration_s: float = 60.0, **params: Any) -> None:
        self.sim.scheduler.trigger(ScenarioSpec(name, 0.0, duration_s, params), self.sim.clock.now_ns())

    async def stop_services(self) -> None:
        """End the feed (stream and account sweeps) and the ticks, as a daemon's exit does."""
        for task in self.services:
            task.cancel()
        for task in self.services:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def heal(self, key: str) -> None:
        """End a fault switch now (scenarios otherwise end after their duration)."""
        scenario = self.sim.exchange.scenario
        setattr(scenario, key, getattr(type(scenario)(), key))

    # ---- driving --------------------------------------------------------------------------------

    def twap(self, market: str, side: Side, total: str, *, passive: bool = False) -> TwapPlan:
        """Start a parent moving the position by `total` in `side` (from the store's position)."""
        spec = self.venue.specs()[market]
        current = store_positions(self.store.fills()).get(market, Decimal(0))
        target = current + Decimal(total) * side.sign
        self._seed += 1
        plan = plan_twap(spec, current, target, self.settings, self.clock.now_ns(), self._seed)
        assert plan is not None
        plan = replace(plan, passive=passive)
        self.caps[market] = max(self.caps.get(market, Decimal(0)), abs(current), abs(target))
        self.orders.start_parent(plan, decision_id=0)
        return plan

    async def until(self, cond: Any, timeout_secs: float = 10.0, what: str = "condition") -> Any:
        return await eventually_async(cond, timeout_secs, 0.05, what)

    async def parent_done(self, market: str, timeout_secs: float = 15.0) -> None:
        await self.until(lambda: market not in self.orders.parents, timeout_secs, f"{market} parent done")

    async def settle(self, timeout_secs: float = 10.0, *, store_closed: bool = True) -> None:
        """Wait until nothing of ours works at the venue, its fills have reached the store and
        (with `store_closed`) the store has closed every order."""
        def settled() -> bool:
            stored = {f.fill_id for f in self.store.fills()}
            return (not self.venue_open() and set(self.venue_fills()) <= stored
                    and not (store_closed and self.store.open_orders()))

        with contextlib.suppress(AssertionError):
            await self.until(settled, timeout_secs)

    async def reconcile(self) -> dict[str, Any]:
        """What the daemon runs on start: the venue's orders, fills and positions are the truth."""
        return await reconcile_venue(self.store, self.venue, self.orders.on_account_event,
                                     lambda: store_positions(self.store.fills()), self.clock)

    # ---- the venue's truth (the exchange core) --------------------------------------------------

    def venue_positions(self) -> dict[str, Decimal]:
        return {p.ticker: p.size for p in self.sim.exchange.positions(self.owner)}

    def venue_fills(self) -> dict[str, Decimal]:
        return {f.fill_id: f.size for f in self.sim.exchange.fills(self.owner, limit=1_000_000)}

    def venue_open(self) -> list[int]:
        return [o.request.order_id.client_id for o in self.sim.exchange.orders(self.owner, open_only=True)]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def market_params(quiet: tuple[str, ...]) -> list[SimMarketParams]:
    """The simulator's markets; a `quiet` one's price moves only when a scenario moves it (no
    random walk, jumps, high-volatility regime or taker flow): a resting order there fills only
    when a test says so."""
    block_secs = ExchangeConfig().block_interval_ns / 1e9
    params = [default_params(t, block_secs) for t in MARKETS]
    return [replace(p, annual_vol=0.0, jump_per_sec=0.0, high_vol_enter_per_sec=0.0, taker_trades_per_sec=0.0)
            if p.ticker in quiet else p for p in params]


@contextlib.asynccontextmanager
async def open_rig(tmp_path: Path, *, seed: int = 11, sim_clock: Clock | None = None,
                   bot_clock: Clock | None = None, quiet: tuple[str, ...] = (),
                   **execution: Any) -> AsyncIterator[Rig]:
    sim = Simulator(seed, clock=sim_clock, markets=MARKETS, step_secs=0.02,
                    market_params=market_params(quiet))
    await sim.start()
    account = sim.accounts["dydx"]
    gateway = NodeGateway(sim.node.target, sim.config.chain_id, account["mnemonic"], secure=False,
                          broadcasts_per_sec=50, timeout_secs=1.0)
    venue = RecordingVenue(IndexerRest(sim.indexer.rest_url, max_delay_secs=5.0), sim.indexer.ws_url,
                           MARKETS, Metrics(), gateway=gateway, account=(account["address"], 0),
                           feed_options=dict(FAST_FEED))
    venue.sweep_secs = 0.5
    specs = await venue.load_markets()
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    clock = bot_clock or SystemClock()
    settings = ExecutionSettings(**{"twap_duration_secs": 2.0, "twap_slices": 3, "passive_timeout_secs": 1.0,
                                    "max_orders_per_sec": 50, **execution})
    store_path = tmp_path / "perpbot.sqlite"
    store = Store.open(store_path)
    orders = OrderManager(venue, store, Metrics(), clock, settings)
    venue.set_account_sink(orders.on_account_event)
    rig = Rig(sim, venue, store, orders, clock, settings, store_path)

    async def feed() -> None:
        while True:  # the daemon would exit and be restarted; here the feed is restarted at once
            try:
                await venue.run(lambda event: None)
            except Exception as exc:
                rig.errors.extend(_leaves(exc))
                await asyncio.sleep(0.1)

    async def ticks() -> None:
        while True:
            try:
                await orders.tick(books, specs, rig.risk_mode)
            except Exception as exc:
                rig.errors.append(exc)
            await asyncio.sleep(TICK_SECS)

    tasks = [asyncio.create_task(sim.run(), name="sim"), asyncio.create_task(feed(), name="feed")]
    try:
        def warm() -> bool:
            feed = venue.feed
            return (all(b.best_bid() and b.best_ask() for b in books.values()) and feed is not None
                    and all(s.confirmed for s in feed.subscriptions.values()))

        await rig.until(warm, 10.0, "feed warm")
        tasks.append(asyncio.create_task(ticks(), name="ticks"))
        rig.services = tasks[1:]
        yield rig
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await venue.close()
        store.close()
        await sim.stop()
