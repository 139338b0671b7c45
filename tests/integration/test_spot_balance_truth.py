"""The spot leg's money is what the account holds: a store that books more than the Binance balance
(a buy booked gross by a store written before fills were booked net of base-asset commissions) is
booked down to the balance on start with a recorded adjustment. On the simulator's Binance server
with the real client and a real SQLite store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from integration.test_spot_fills_truth import booked_fills, buy, open_venue, store_position
from pydantic import SecretStr
from support.wait import eventually_async

from bot.book import OrderBook
from bot.clock import SYSTEM_CLOCK
from bot.config import load
from bot.domain import AccountEvent, Fill, MarketSpec, OrderRequest, OrderStatus, Position, Side, TimeInForce
from bot.engine import Engine
from bot.execution.hedge import HedgeState
from bot.execution.hedge_control import record
from bot.execution.orders import OrderManager
from bot.recovery import reconcile_venue
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotConfig
from bot.store import Store
from bot.store.reconcile import ADJUSTMENT_PREFIX
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

D = Decimal
KEY, SECRET = sim_binance_credentials()
HALF = D("0.5")


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    config = SpotConfig(default_balances={"USDT": D(100_000)})  # the account holds only the hedge
    srv = BinanceServer(SpotExchange(seed=11, start_ns=time.time_ns(), config=config), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


def eth_held(server: BinanceServer) -> Decimal:
    return sum((b.free + b.locked for b in server.spot.balances(KEY) if b.asset == "ETH"), D(0))


async def old_store_buy(server: BinanceServer, store: Store, size: Decimal = HALF) -> Decimal:
    """A buy filled on the venue, booked gross (withheld 0) as stores did before the fix."""
    venue = await open_venue(server)
    try:
        order = await buy(venue, store, "ETH-USDT", size)
        for fill in await booked_fills(venue, order.client_id):
            store.record_fill("binance", dataclasses.replace(fill, size=fill.gross_size, withheld=D(0)))
        store.update_order(order.client_id, OrderStatus.FILLED, order.size, time.time_ns())
    finally:
        await venue.close()
    return order.size


async def resting_buy(server: BinanceServer, store: Store) -> OrderRequest:
    """A buy of ours resting far below the market (it locks USDT, not ETH), open in the store."""
    venue = await open_venue(server)
    try:
        bid, _ = await venue.touch("ETH-USDT")
        assert bid is not None
        resting = OrderRequest(store.next_client_id(), "ETH-USDT", Side.BUY, D("0.1"),
                               (bid * D("0.5")).quantize(D("0.01")), TimeInForce.GTT)
        store.record_order("binance", resting, time.time_ns())
        await venue.place(resting)
    finally:
        await venue.close()
    return resting


async def reconcile(server: BinanceServer, store: Store, position: Position) -> dict[str, object]:
    """Start-up reconciliation with the engine's part: fills go to the store, then the position."""
    def apply(event: AccountEvent) -> None:
        if isinstance(event, Fill) and store.record_fill("binance", event):
            position.apply_fill(event)

    venue = await open_venue(server)
    try:
        return await reconcile_venue(store, venue, apply, lambda: {"ETH-USDT": position.size}, SYSTEM_CLOCK,
                                     compare_positions=False)
    finally:
        await venue.close()


async def test_start_books_an_old_store_down_to_the_balance_with_a_recorded_adjustment(
        server: BinanceServer, tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store)
        held = eth_held(server)
        assert 0 < held < gross == store_position(store, "ETH-USDT")  # the commission never arrived
        position = Position("ETH-USDT")
        for fill in store.fills("ETH-USDT"):
            position.apply_fill(fill)
        entry = position.avg_entry

        with structlog.testing.capture_logs() as logs:
            report = await reconcile(server, store, position)
        (adjusted,) = report["spot_adjustments"].values()  # type: ignore[attr-defined]
        assert {k: D(v) for k, v in adjusted.items()} == {"store": gross, "venue": held,
                                                          "adjusted": gross - held}
        assert store_position(store, "ETH-USDT") == position.size == held  # the account, to the unit
        (adjustment,) = [f for f in store.fills("ETH-USDT") if f.fill_id.startswith(ADJUSTMENT_PREFIX)]
        assert (adjustment.client_id, adjustment.side, adjustment.fee) == (0, Side.SELL, 0)
        # Booked at the entry: nothing realised, the commission stays in the buy's fee only once.
        assert adjustment.price == entry and position.realised_pnl == 0 and position.avg_entry == entry
        (event,) = [e for e in logs if e["event"] == "reconcile_store_exceeds_balance"]
        assert event["log_level"] == "warning" and event["beyond_tolerance"] == []  # commission dust

        again = await reconcile(server, store, position)  # the store is the account now: nothing to do
        assert again["spot_adjustments"] == {} and store_position(store, "ETH-USDT") == held


async def test_a_market_with_an_order_of_ours_working_is_not_adjusted_under_it(
        server: BinanceServer, tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store)
        resting = await resting_buy(server, store)  # a predecessor's (a fill could land between the reads)
        position = Position("ETH-USDT")
        for fill in store.fills("ETH-USDT"):
            position.apply_fill(fill)

        report = await reconcile(server, store, position)
        assert report["cancelled_at_venue"] == [resting.client_id]
        assert report["spot_adjustments"]["ETH-USDT"]["adjusted"] == "0"  # type: ignore[index]
        assert store_position(store, "ETH-USDT") == gross  # left for the next reconciliation

        await reconcile(server, store, position)
        assert store_position(store, "ETH-USDT") == eth_held(server)


class SpotHedge:
    """The engine with the simulator's Binance as its spot hedge venue (real client, real store);
    the perp leg is a paper venue with no book (it never trades here)."""

    def __init__(self, server: BinanceServer, store: Store, tmp_path: Path, venue: BinanceVenue) -> None:
        self.settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["ETH-USD"])
        self.server, self.store = server, store
        spec = MarketSpec("ETH-USD", D("0.1"), D("0.001"), D("0.001"))
        perp = PaperVenue({"ETH-USD": OrderBook("ETH-USD")}, FeeSchedule(D(0), D(0)), SYSTEM_CLOCK)
        self.venue = venue
        self.venue.use_books({"ETH-USDT": OrderBook("ETH-USDT")})
        ex = self.settings.execution
        self.engine = Engine(self.settings, {"ETH-USD": spec}, store,
                             OrderManager(perp, store, Metrics(), SYSTEM_CLOCK, ex), Metrics(), SYSTEM_CLOCK,
                             spot_orders=OrderManager(self.venue, store, Metrics(), SYSTEM_CLOCK, ex),
                             spot_specs=venue.specs(), spot_books=self.venue.books)
        self.venue.set_account_sink(self.engine.on_spot_account_event)

    async def run(self, goal: Decimal | None, *, start: bool = False) -> None:
        """The engine's ticks until the spot leg is settled (a second more for stray orders), after
        the daemon's start-up reconciliation (`start`), the leg sent to `goal` (None: as restored)."""
        engine, sent = self.engine, self.store.next_client_id()
        if start:
            await reconcile_venue(self.store, self.venue, engine.on_spot_account_event, engine.spot_positions,
                                  SYSTEM_CLOCK, compare_positions=False)
        async with asyncio.TaskGroup() as tg:
            streams = tg.create_task(self.venue.run(lambda e: None))
            try:
                await eventually_async(lambda: self.venue.user_stream is not None
                                       and self.venue.user_stream.is_connected.is_set()
                                       and self.venue.books["ETH-USDT"].mid() is not None)
                if goal is not None:
                    hedge = engine.hedges["ETH-USD"]
                    engine.hedge_control.set("ETH-USD", dataclasses.replace(hedge, required=goal, goal=goal))
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    await engine.tick()
                    await asyncio.sleep(0.1)
                    if self.store.next_client_id() > sent and self.settled(sent):
                        deadline = min(deadline, time.monotonic() + 1)
            finally:
                streams.cancel()
        await self.venue.close()

    @classmethod
    async def open(cls, server: BinanceServer, store: Store, tmp_path: Path) -> SpotHedge:
        venue = build_venue(BinanceSettings(rest_url=server.rest_url, ws_url=server.ws_url,
                                            symbols={"ETH-USDT": "ETHUSDT"}),
                            Metrics(), api_key=SecretStr(KEY), api_secret=SecretStr(SECRET))
        await venue.load_markets()
        return cls(server, store, tmp_path, venue)

    def settled(self, since: int) -> bool:
        """No hedge parent and none of the orders sent since `since` open."""
        spot_orders = self.engine.order_managers[1]
        return "ETH-USDT" not in spot_orders.parents and not any(
            o.client_id >= since for o in self.store.open_orders("binance"))

    def orders(self, side: Side, since: int = 0) -> list[tuple[Decimal, OrderStatus]]:
        orders = [self.store.get_order(i) for i in range(since, self.store.next_client_id())]
        return [(o.size, o.status) for o in orders if o is not None and o.side is side]

    def sells(self) -> list[tuple[Decimal, OrderStatus]]:
        return self.orders(Side.SELL)


async def test_the_daemon_never_sends_a_spot_sell_beyond_the_free_balance(
        server: BinanceServer, tmp_path: Path) -> None:
    """The store books 0.5 ETH, the account holds 0.4995 (an old store, never reconciled), and an
    order of ours works on the market, so the store is not corrected under it: the close sells
    the free balance floored to the lot step, is never refused and leaves the hedge matched."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store)
        held = eth_held(server)
        await resting_buy(server, store)
        h = await SpotHedge.open(server, store, tmp_path)
        with structlog.testing.capture_logs() as logs:
            await h.run(D(0))
        sells = h.sells()
        assert sells and all(status is OrderStatus.FILLED for _, status in sells), sells  # none refused
        assert sum((size for size, _ in sells), D(0)) == held  # 0.4995: on the lot step (0.0001)
        assert eth_held(server) == 0 and store_position(store, "ETH-USDT") == gross - held
        assert h.engine.hedges["ETH-USD"].rejects == 0 and h.engine.hedges["ETH-USD"].unwinds == 0
        capped = [e for e in logs if e["event"] == "hedge_sell_capped"]
        assert len(capped) == 1 and D(capped[0]["sellable"]) == held, capped


async def test_a_spot_long_beyond_the_balance_is_booked_down_before_the_close_sells(
        server: BinanceServer, tmp_path: Path) -> None:
    """Nothing works on the market: the venue confirms the shortfall, the store is booked down to
    the balance (recorded), and the close sells exactly what is held, leaving store and account at 0."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        await old_store_buy(server, store)
        held = eth_held(server)
        h = await SpotHedge.open(server, store, tmp_path)
        with structlog.testing.capture_logs() as logs:
            await h.run(D(0))
        sells = h.sells()
        assert sells and all(status is OrderStatus.FILLED for _, status in sells), sells
        assert sum((size for size, _ in sells), D(0)) == held
        assert eth_held(server) == 0 == store_position(store, "ETH-USDT")
        (adjustment,) = [f for f in store.fills("ETH-USDT") if f.fill_id.startswith(ADJUSTMENT_PREFIX)]
        (event,) = [e for e in logs if e["event"] == "reconcile_store_exceeds_balance"]
        assert event["stage"] == "run" and D(event["shortfalls"]["ETH-USDT"]["adjusted"]) == adjustment.size
        assert h.engine.hedges["ETH-USD"].rejects == 0


async def test_an_old_store_mid_carry_is_corrected_on_start_and_the_hedge_buys_the_commission_back(
        server: BinanceServer, tmp_path: Path) -> None:
    """A carry's 5 ETH spot leg booked gross by an old store (its hedge record says 5 are owed):
    the start books the store down to the 4.995 held, and the hedge buys the missing 0.005 back
    (worth more than `min_notional_usd`), so the account holds the hedge the perp calls for."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store, D(5))
        store.meta_set(*record("ETH-USD", HedgeState("ETH-USD", "ETH-USDT", required=gross, goal=gross)))
        held, before = eth_held(server), store.next_client_id()
        h = await SpotHedge.open(server, store, tmp_path)
        await h.run(None, start=True)
        assert h.orders(Side.SELL) == []
        (buy_back,) = h.orders(Side.BUY, since=before)
        assert buy_back == (gross - held, OrderStatus.FILLED)
        assert store_position(store, "ETH-USDT") == eth_held(server) == gross - buy_back[0] * D("0.001")
        assert h.engine.hedges["ETH-USD"].mismatch(eth_held(server)) * 3600 > -1  # within a dollar
