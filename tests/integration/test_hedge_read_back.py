"""A spot hedge child the venue never answers is read back from it (REST), not waited on forever.

Binance answers orders on the user data stream, after the place returned. With the stream down
(or its frame lost), or a place that timed out, the child stays open: it counts as working, so
the hedge sends no top-up and waits, and the leg risk grows until the unwind. After
`UNANSWERED_NS` the order manager reads it back: the venue's sweep books its fills and final
state; one the venue does not know `NEVER_ARRIVED_NS` after it was sent never reached it and is
closed as rejected. On the simulator's Binance server, the real client, a real SQLite store.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import structlog
from integration.test_spot_fills_truth import server  # noqa: F401  (the fixture)
from pydantic import SecretStr
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import BookLevel, BookSnapshot, OrderStatus, RiskMode, Side
from bot.execution.orders import NEVER_ARRIVED_NS, UNANSWERED_NS, OrderManager
from bot.execution.twap import TwapPlan
from bot.sim.faults import HttpError
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings

D = Decimal
SEC = 1_000_000_000
MARKET = "BTC-USDT"
KEY, SECRET = sim_binance_credentials()


Setup = tuple[BinanceVenue, OrderManager, Store, ManualClock]


async def setup(srv: BinanceServer, tmp_path: Path) -> Setup:
    """The spot venue with no user stream running (every answer it would carry is lost) and the
    order manager that sends the hedge's children to it."""
    venue = build_venue(BinanceSettings(rest_url=srv.rest_url, ws_url=srv.ws_url,
                                        symbols={MARKET: "BTCUSDT"}),
                        Metrics(), api_key=SecretStr(KEY), api_secret=SecretStr(SECRET))
    await venue.load_markets()
    await venue.positions()  # a signed read: the server time offset is known before any place
    store = Store.open(tmp_path / "perpbot.sqlite")
    clock = ManualClock(time.time_ns())
    manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings())
    venue.set_account_sink(manager.on_account_event)
    return venue, manager, store, clock


async def send_buy(srv: BinanceServer, venue: BinanceVenue, manager: OrderManager, clock: ManualClock,
                   size: Decimal, fault: HttpError | None = None) -> int:
    """A hedge parent buying `size` in one IOC child at the venue's book (its place answered with
    `fault`); returns its client id."""
    depth = await venue.rest.depth("BTCUSDT", 20)
    book = OrderBook(MARKET)
    bids = tuple(BookLevel(D(p), D(q)) for p, q in depth.bids)
    asks = tuple(BookLevel(D(p), D(q)) for p, q in depth.asks)
    book.apply_snapshot(BookSnapshot(MARKET, bids, asks, clock.now, clock.now))
    now = clock.now
    manager.start_parent(TwapPlan(MARKET, Side.BUY, size, False, (now,), (size,), now + 5 * SEC), 1)
    srv.faults.http_error = fault
    await manager.tick({MARKET: book}, venue.specs(), RiskMode.NORMAL)
    parent = manager.parent(MARKET)
    assert parent is not None and len(parent.children) == 1
    return next(iter(parent.children))


async def test_an_unanswered_child_is_read_back_and_its_fills_booked(server: BinanceServer,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    venue, manager, store, clock = await setup(server, tmp_path)
    client_id = await send_buy(server, venue, manager, clock, D("0.01"))
    # Filled on the venue, never answered: it counts as working (the hedge waits on it).
    assert server.spot.my_trades(KEY, "BTCUSDT", limit=10)
    assert manager.working(MARKET) == D("0.01") and not store.fills(MARKET)

    clock.now += UNANSWERED_NS - SEC
    await manager.read_back_unanswered(MARKET, clock.now)
    assert manager.working(MARKET) == D("0.01")  # not yet: an answer may still come
    clock.now += SEC
    with structlog.testing.capture_logs() as logs:
        await manager.read_back_unanswered(MARKET, clock.now)

    state = manager.order_state(client_id)
    assert state is not None and state.status is OrderStatus.FILLED and state.filled == D("0.01")
    assert manager.working(MARKET) == 0
    booked = {f.fill_id: f.gross_size for f in store.fills(MARKET)}
    traded = {f"BTCUSDT-{t.trade_id}": t.qty for t in server.spot.my_trades(KEY, "BTCUSDT", limit=10)}
    assert booked == traded
    read = [e for e in logs if e["event"] == "order_read_back"]
    assert len(read) == 1 and read[0]["status"] == "FILLED" and read[0]["known"], logs
    await venue.close()
    store.close()


async def test_a_child_that_never_reached_the_venue_is_closed_once_it_cannot_arrive(
        server: BinanceServer, tmp_path: Path) -> None:  # noqa: F811
    venue, manager, store, clock = await setup(server, tmp_path)
    # The place is answered 503 unprocessed: its state is unknown, the child stays open.
    client_id = await send_buy(server, venue, manager, clock, D("0.01"), HttpError(503, count=1))
    assert manager.working(MARKET) == D("0.01") and not server.spot.my_trades(KEY, "BTCUSDT", limit=10)

    clock.now += UNANSWERED_NS
    await manager.read_back_unanswered(MARKET, clock.now)
    # The venue does not know it, but a signed request may still arrive within its window.
    assert manager.working(MARKET) == D("0.01")
    clock.now += NEVER_ARRIVED_NS - UNANSWERED_NS
    with structlog.testing.capture_logs() as logs:
        await manager.read_back_unanswered(MARKET, clock.now)

    row = store.get_order(client_id)
    assert row is not None and row.status is OrderStatus.REJECTED and row.filled_size == 0
    assert manager.working(MARKET) == 0 and not store.fills(MARKET)
    read = [e for e in logs if e["event"] == "order_read_back"]
    assert len(read) == 1 and read[0]["status"] == "REJECTED" and not read[0]["known"], logs
    await venue.close()
    store.close()


async def test_a_read_back_the_venue_fails_is_tried_again_later(server: BinanceServer,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    venue, manager, store, clock = await setup(server, tmp_path)
    await send_buy(server, venue, manager, clock, D("0.01"))
    clock.now += UNANSWERED_NS
    server.faults.http_error = HttpError(503, count=1_000)  # the venue is down when it is read
    with structlog.testing.capture_logs() as logs:
        await manager.read_back_unanswered(MARKET, clock.now)
    read = [e["event"] for e in logs if e["event"].startswith("order_read_back")]
    assert read == ["order_read_back_failed"], logs
    assert manager.working(MARKET) == D("0.01")  # still waited on, never closed blind

    server.faults.http_error = None
    clock.now += UNANSWERED_NS - SEC
    await manager.read_back_unanswered(MARKET, clock.now)
    assert manager.working(MARKET) == D("0.01")  # not asked again before UNANSWERED_NS
    clock.now += SEC
    await manager.read_back_unanswered(MARKET, clock.now)
    assert manager.working(MARKET) == 0
    assert sum((f.gross_size for f in store.fills(MARKET)), D(0)) == D("0.01")
    await venue.close()
    store.close()
