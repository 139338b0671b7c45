"""The spot hedge's fills in the store equal the venue's trades, whichever path books them.

Binance reports fills only on the user data stream. A daemon SIGKILLed mid-hedge, an exit after
the streams ended and `kill --direct` (no stream at all) read the venue over REST instead: each
order's trades (GET /api/v3/myTrades), booked under the ids the stream gives them
(`{symbol}-{trade id}`), so no path can book a trade twice or miss one. All on the simulator's
Binance server with the real clients and a real SQLite store.

The first test is the `kill --direct --all --flatten` failure seen once in CI: the flatten's fills
were booked as `binance-kill-{orderId}`, and Binance order ids are per symbol, so when the BTC and
ETH flatten orders had the same id the second fill was dropped as a duplicate and the store kept
the ETH hedge it had just sold.
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
from pydantic import SecretStr
from support.wait import eventually_async

from bot.book import OrderBook
from bot.clock import SYSTEM_CLOCK
from bot.config import Settings
from bot.control.direct import kill_spot
from bot.domain import AccountEvent, Fill, OrderRequest, OrderStatus, OrderUpdate, Side, TimeInForce
from bot.recovery import reconcile_venue
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotConfig
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings

D = Decimal
KEY, SECRET = sim_binance_credentials()
KEYS = (SecretStr(KEY), SecretStr(SECRET))
SYMBOLS = {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"}
BASE = {"BTC-USDT": "BTC", "ETH-USDT": "ETH"}
SIZES = {"BTC-USDT": D("0.01"), "ETH-USDT": D("0.5")}


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    srv = BinanceServer(SpotExchange(seed=5, start_ns=time.time_ns()), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


def spot_settings(server: BinanceServer) -> BinanceSettings:
    return BinanceSettings(rest_url=server.rest_url, ws_url=server.ws_url, symbols=SYMBOLS)


async def open_venue(server: BinanceServer, events: list[object] | None = None) -> BinanceVenue:
    """A venue as a fresh process opens it: no stream, nothing known about earlier orders."""
    venue = build_venue(spot_settings(server), Metrics(), api_key=SecretStr(KEY),
                        api_secret=SecretStr(SECRET))
    await venue.load_markets()
    if events is not None:
        venue.set_account_sink(events.append)
    return venue


def held(server: BinanceServer) -> dict[str, Decimal]:
    balances = {b.asset: b.free + b.locked for b in server.spot.balances(KEY)}
    return {market: balances.get(asset, D(0)) for market, asset in BASE.items()}


def venue_trades(server: BinanceServer, market: str) -> dict[str, Decimal]:
    """The account's trades on a market as the venue books them: {fill id: what the base balance
    moved by} (a commission charged in the base asset never reaches the account)."""
    return {f"{t.symbol}-{t.trade_id}":
            t.side.sign * t.qty - (t.commission if t.commission_asset == BASE[market] else D(0))
            for t in server.spot.my_trades(KEY, SYMBOLS[market], limit=1000)}


def base_commission(server: BinanceServer, market: str) -> Decimal:
    return sum((t.commission for t in server.spot.my_trades(KEY, SYMBOLS[market], limit=1000)
                if t.commission_asset == BASE[market]), D(0))


def store_trades(store: Store, market: str) -> dict[str, Decimal]:
    return {f.fill_id: f.side.sign * f.size for f in store.fills(market)}


async def buy(venue: BinanceVenue, store: Store, market: str, size: Decimal) -> OrderRequest:
    """A marketable IOC buy recorded in the store before it is sent, as the order manager does."""
    _, ask = await venue.touch(market)
    assert ask is not None
    price = (ask * D("1.01")).quantize(D("0.01"))
    order = OrderRequest(store.next_client_id(), market, Side.BUY, size, price, TimeInForce.IOC)
    store.record_order("binance", order, time.time_ns())
    await venue.place(order)
    return order


async def booked_fills(venue: BinanceVenue, client_id: int) -> list[Fill]:
    """The fills the venue booked for one of our orders (as its user stream reports them)."""
    found = await venue.executed_fills(client_id)
    assert found is not None
    return found[1]


def store_position(store: Store, market: str) -> Decimal:
    return sum((f.side.sign * f.size for f in store.fills(market)), D(0))


async def test_kill_flatten_books_each_market_when_their_order_ids_coincide(server: BinanceServer,
                                                                              tmp_path: Path) -> None:
    start = held(server)
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        venue = await open_venue(server)
        try:
            for market, size in SIZES.items():  # the daemon's hedge: order id 1 on each symbol
                order = await buy(venue, store, market, size)
                for fill in await booked_fills(venue, order.client_id):  # as its stream booked them
                    store.record_fill("binance", fill)
                store.update_order(order.client_id, OrderStatus.FILLED, size, time.time_ns())
        finally:
            await venue.close()
        assert all(store_position(store, m) > 0 for m in SIZES)

        report = await kill_spot(Settings(), spot_settings(server), KEYS, store, flatten=True,
                                 all_orders=True)

        assert report["errors"] == [] and set(report["filled"]) == set(SIZES), report
        assert report["positions"] == {}, report  # the store books both sells
        for market in SIZES:
            assert store_trades(store, market) == venue_trades(server, market)
            assert store_position(store, market) == 0
            # The buy booked net of its commission (taken in the base asset): the flatten sold
            # exactly what the buy left in the account, none of its other inventory.
            assert base_commission(server, market) > 0 and held(server)[market] == start[market]


async def test_kill_books_the_fills_a_crashed_daemon_never_saw_before_it_flattens(server: BinanceServer,
                                                                                   tmp_path: Path) -> None:
    start = held(server)
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        venue = await open_venue(server)
        try:  # sent, filled, and the daemon died before its stream reported it: NEW, no fills
            order = await buy(venue, store, "ETH-USDT", SIZES["ETH-USDT"])
        finally:
            await venue.close()
        assert store.fills() == []

        report = await kill_spot(Settings(), spot_settings(server), KEYS, store, flatten=True,
                                 all_orders=True)

        assert report["errors"] == [] and report["positions"] == {}, report
        stored = store.get_order(order.client_id)
        assert stored is not None and stored.status is OrderStatus.FILLED
        assert stored.filled_size == SIZES["ETH-USDT"]
        assert store_trades(store, "ETH-USDT") == venue_trades(server, "ETH-USDT")
        assert held(server)["ETH-USDT"] == start["ETH-USDT"]


async def test_start_reconcile_books_an_open_orders_fills_and_final_state(server: BinanceServer,
                                                                          tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        before = await open_venue(server)
        try:
            order = await buy(before, store, "BTC-USDT", SIZES["BTC-USDT"])  # then SIGKILL
        finally:
            await before.close()
        applied: list[AccountEvent] = []

        def apply(event: AccountEvent) -> None:
            applied.append(event)
            if isinstance(event, Fill):
                store.record_fill("binance", event)

        venue = await open_venue(server)
        try:
            report = await reconcile_venue(store, venue, apply, dict, SYSTEM_CLOCK, compare_positions=False)
            again = await reconcile_venue(store, venue, apply, dict, SYSTEM_CLOCK, compare_positions=False)
        finally:
            await venue.close()

    assert report["fills_applied"] == len(venue_trades(server, "BTC-USDT")) > 0
    assert report["closed_in_store"] == [order.client_id]
    assert again["fills_applied"] == 0 and again["closed_in_store"] == []
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        stored = store.get_order(order.client_id)
        assert stored is not None and stored.status is OrderStatus.FILLED  # not "not at venue on start"
        assert store_trades(store, "BTC-USDT") == venue_trades(server, "BTC-USDT")


async def test_start_reconcile_cancels_a_predecessors_child_still_working(server: BinanceServer,
                                                                          tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        before = await open_venue(server)
        try:
            bid, _ = await before.touch("BTC-USDT")
            assert bid is not None
            order = OrderRequest(store.next_client_id(), "BTC-USDT", Side.BUY, D("0.001"),
                                 (bid * D("0.9")).quantize(D("0.01")), TimeInForce.POST_ONLY)
            store.record_order("binance", order, time.time_ns())
            await before.place(order)
            store.update_order(order.client_id, OrderStatus.ACKED, D(0), time.time_ns())  # then SIGKILL
        finally:
            await before.close()
        events: list[object] = []
        venue = await open_venue(server, events)
        try:
            report = await reconcile_venue(store, venue, lambda e: None, dict, SYSTEM_CLOCK,
                                           compare_positions=False)
            assert await venue.open_orders() == []
        finally:
            await venue.close()
    assert report["cancelled_at_venue"] == [order.client_id]
    assert any(isinstance(e, OrderUpdate) and e.client_id == order.client_id
               and e.status is OrderStatus.CANCELLED for e in events)


async def test_a_rest_sweep_reports_an_orders_trades_before_its_state(server: BinanceServer,
                                                                     tmp_path: Path) -> None:
    """The exit path and a user stream reconnect read orders over REST: a FILLED state without its
    fills would close the order with the fills never booked."""
    events: list[object] = []
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        venue = await open_venue(server, events)
        try:
            order = await buy(venue, store, "ETH-USDT", SIZES["ETH-USDT"])  # no stream running
            await venue.sweep_account()
            await venue.sweep_account()  # the order is final: not read again
        finally:
            await venue.close()
    fills = [e for e in events if isinstance(e, Fill)]
    updates = [e for e in events if isinstance(e, OrderUpdate)]
    assert {f.fill_id: f.size for f in fills} == venue_trades(server, "ETH-USDT")
    assert [u.status for u in updates] == [OrderStatus.FILLED]
    assert events.index(updates[0]) > max(events.index(f) for f in fills)
    assert all(f.client_id == order.client_id and f.fee > 0 for f in fills)


async def test_kill_and_a_hung_daemons_stream_book_the_flatten_once(server: BinanceServer,
                                                                   tmp_path: Path) -> None:
    """`kill --direct` against a daemon that hangs but still streams: both book the flatten's
    trades into the same store, under the same ids (they were `binance-kill-...` and `{symbol}-...`:
    the hedge sold twice in the store)."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        daemon = await open_venue(server)

        streamed_sells: list[Fill] = []

        def book(event: object) -> None:  # the hung daemon's account sink, as far as the store goes
            if isinstance(event, Fill):
                store.record_fill("binance", event)
                if event.side is Side.SELL:
                    streamed_sells.append(event)

        daemon.set_account_sink(book)
        daemon.use_books({m: OrderBook(m) for m in SYMBOLS})
        async with asyncio.TaskGroup() as tg:
            streams = tg.create_task(daemon.run(lambda e: None))
            try:
                await eventually_async(lambda: daemon.user_stream
                                       and daemon.user_stream.is_connected.is_set())
                order = await buy(daemon, store, "ETH-USDT", SIZES["ETH-USDT"])
                net = order.size - base_commission(server, "ETH-USDT")
                await eventually_async(lambda: store_position(store, "ETH-USDT") == net)
                streamed = len(store.fills())

                report = await kill_spot(Settings(), spot_settings(server), KEYS, store, flatten=True,
                                         all_orders=True)
                sold = len(venue_trades(server, "ETH-USDT")) - streamed
                assert sold > 0
                await asyncio.sleep(0.5)  # the stream's copies of the flatten's trades arrive meanwhile
            finally:
                streams.cancel()
        await daemon.close()
        assert report["errors"] == [] and report["positions"] == {}, report
        assert len(streamed_sells) == sold  # both paths booked the flatten's trades
        assert store_trades(store, "ETH-USDT") == venue_trades(server, "ETH-USDT")
        assert store_position(store, "ETH-USDT") == 0


async def test_start_reconcile_reports_a_store_that_books_more_than_the_account_holds(
        tmp_path: Path) -> None:
    """The failure's signature, caught on start: the spot hedge booked twice (the old kill's
    `binance-kill-...` copy of a trade the stream had booked), on an account holding only the hedge."""
    exchange = SpotExchange(seed=5, start_ns=time.time_ns(),
                            config=SpotConfig(default_balances={"USDT": D(100_000)}))
    server = BinanceServer(exchange, time.time_ns)
    await server.start()
    try:
        with Store.open(tmp_path / "perpbot.sqlite") as store:
            venue = await open_venue(server)
            try:
                order = await buy(venue, store, "ETH-USDT", SIZES["ETH-USDT"])
                for fill in await booked_fills(venue, order.client_id):
                    store.record_fill("binance", fill)
                    twice = dataclasses.replace(fill, fill_id=f"binance-kill-{fill.fill_id}")
                    store.record_fill("binance", twice)
                store.update_order(order.client_id, OrderStatus.FILLED, order.size, time.time_ns())

                def booked() -> dict[str, Decimal]:
                    return {m: store_position(store, m) for m in SYMBOLS}

                with structlog.testing.capture_logs() as logs:
                    await reconcile_venue(store, venue, lambda e: None, booked, SYSTEM_CLOCK,
                                          compare_positions=False)
            finally:
                await venue.close()
    finally:
        await server.stop()
    (event,) = [e for e in logs if e["event"] == "reconcile_store_exceeds_balance"]
    assert set(event["shortfalls"]) == {"ETH-USDT"}
    assert D(event["shortfalls"]["ETH-USDT"]["store"]) == 2 * D(event["shortfalls"]["ETH-USDT"]["venue"])
