"""The spot leg's money is what the account holds: a store that books more than the Binance balance
(a buy booked gross by a store written before fills were booked net of base-asset commissions) is
booked down to the balance on start with a recorded adjustment. On the simulator's Binance server
with the real client and a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from integration.test_spot_fills_truth import booked_fills, buy, open_venue, store_position

from bot.clock import SYSTEM_CLOCK
from bot.domain import AccountEvent, Fill, OrderRequest, OrderStatus, Position, Side, TimeInForce
from bot.recovery import reconcile_venue
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotConfig
from bot.store import Store
from bot.store.reconcile import ADJUSTMENT_PREFIX

D = Decimal
KEY, _ = sim_binance_credentials()


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    config = SpotConfig(default_balances={"USDT": D(100_000)})  # the account holds only the hedge
    srv = BinanceServer(SpotExchange(seed=11, start_ns=time.time_ns(), config=config), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


def eth_held(server: BinanceServer) -> Decimal:
    return sum((b.free + b.locked for b in server.spot.balances(KEY) if b.asset == "ETH"), D(0))


async def old_store_buy(server: BinanceServer, store: Store) -> Decimal:
    """A 0.5 ETH buy filled on the venue, booked gross (withheld 0) as stores did before the fix."""
    venue = await open_venue(server)
    try:
        order = await buy(venue, store, "ETH-USDT", D("0.5"))
        for fill in await booked_fills(venue, order.client_id):
            store.record_fill("binance", dataclasses.replace(fill, size=fill.gross_size, withheld=D(0)))
        store.update_order(order.client_id, OrderStatus.FILLED, order.size, time.time_ns())
    finally:
        await venue.close()
    return order.size


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
        venue = await open_venue(server)
        try:  # a predecessor's resting buy, far below the market (a fill could land between the reads)
            bid, _ = await venue.touch("ETH-USDT")
            assert bid is not None
            resting = OrderRequest(store.next_client_id(), "ETH-USDT", Side.BUY, D("0.1"),
                                   (bid * D("0.9")).quantize(D("0.01")), TimeInForce.GTT)
            store.record_order("binance", resting, time.time_ns())
            await venue.place(resting)
        finally:
            await venue.close()
        position = Position("ETH-USDT")
        for fill in store.fills("ETH-USDT"):
            position.apply_fill(fill)

        report = await reconcile(server, store, position)
        assert report["cancelled_at_venue"] == [resting.client_id]
        assert report["spot_adjustments"]["ETH-USDT"]["adjusted"] == "0"  # type: ignore[index]
        assert store_position(store, "ETH-USDT") == gross  # left for the next reconciliation

        await reconcile(server, store, position)
        assert store_position(store, "ETH-USDT") == eth_held(server)
