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
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import structlog
from integration.test_spot_fills_truth import server  # noqa: F401  (the fixture)
from pydantic import SecretStr
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings, load
from bot.domain import BookLevel, BookSnapshot, MarketSpec, OrderStatus, RiskMode, Side
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.execution.read_back import NEVER_ARRIVED_NS, UNANSWERED_NS
from bot.execution.twap import TwapPlan
from bot.sim.faults import HttpError
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

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


async def venue_book(venue: BinanceVenue, clock: ManualClock) -> OrderBook:
    """The venue's BTC-USDT book as its REST depth gives it now."""
    depth = await venue.rest.depth("BTCUSDT", 20)
    book = OrderBook(MARKET)
    bids = tuple(BookLevel(D(p), D(q)) for p, q in depth.bids)
    asks = tuple(BookLevel(D(p), D(q)) for p, q in depth.asks)
    book.apply_snapshot(BookSnapshot(MARKET, bids, asks, clock.now, clock.now))
    return book


async def send_buy(srv: BinanceServer, venue: BinanceVenue, manager: OrderManager, clock: ManualClock,
                   size: Decimal, fault: HttpError | None = None) -> int:
    """A hedge parent buying `size` in one IOC child at the venue's book (its place answered with
    `fault`); returns its client id."""
    book = await venue_book(venue, clock)
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
    assert client_id not in venue._open  # later account sweeps do not ask the venue about it again
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


async def test_the_hedge_waits_on_an_unanswered_child_then_books_it_and_sends_nothing_twice(
        server: BinanceServer, tmp_path: Path) -> None:  # noqa: F811
    # The engine's spot leg on the simulator's Binance with no user stream (every answer lost),
    # the perp a paper venue with no book. A hedge of 0.01 BTC is owed: the buy fills on the venue
    # unanswered; the hedge waits on it (nothing sent again), then reads it back and is matched.
    # The old hedge waited forever: the spot position never moved and the leg risk grew.
    venue, _manager, store, clock = await setup(server, tmp_path)
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["BTC-USD"])
    books = {MARKET: await venue_book(venue, clock)}
    venue.use_books(books)
    perp = PaperVenue({"BTC-USD": OrderBook("BTC-USD")}, FeeSchedule(D(0), D(0)), clock)
    ex = settings.execution
    engine = Engine(settings, {"BTC-USD": MarketSpec("BTC-USD", D(1), D("0.0001"), D("0.0001"))}, store,
                    OrderManager(perp, store, Metrics(), clock, ex), Metrics(), clock,
                    spot_orders=OrderManager(venue, store, Metrics(), clock, ex),
                    spot_specs=venue.specs(), spot_books=books)
    venue.set_account_sink(engine.on_spot_account_event)
    owed = D("0.01")
    engine.hedge_control.set("BTC-USD", replace(engine.hedges["BTC-USD"], required=owed, goal=owed))
    spot = engine.markets["BTC-USD"].spot
    assert spot is not None
    for _ in range(UNANSWERED_NS // SEC - 1):
        await engine.tick()
        clock.now += SEC
    assert spot.position.size == 0 and len(store.open_orders("binance")) == 1  # waited on, not resent
    for _ in range(3):
        await engine.tick()
        clock.now += SEC

    rows = store._read("SELECT status FROM orders WHERE market = ?", (MARKET,))
    assert rows == [(OrderStatus.FILLED.value,)], rows
    assert spot.position.size == sum((f.size for f in store.fills(MARKET)), D(0)) > 0
    hedge = engine.hedges["BTC-USD"]
    assert hedge.unwinds == 0 and abs(hedge.mismatch(spot.position.size)) < owed  # at most the commission
    await venue.close()
    store.close()
