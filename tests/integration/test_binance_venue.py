"""The Binance spot venue end to end on the simulator: real httpx, websockets and aiohttp on port 0.

The server, its market and the venue share a virtual clock (wall time plus an offset that
injected sleeps advance), so Retry-After and ban waits take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr
from support.clock import OffsetClock
from support.wait import eventually_async

from bot.book import OrderBook
from bot.domain import Fill, Liquidity, OrderRequest, OrderStatus, OrderUpdate, Side, TimeInForce
from bot.errors import (
    InsufficientMargin,
    OrderRejected,
    OrderStateUnknown,
    PostOnlyWouldCross,
    RateLimited,
    TransientVenueError,
    VenueError,
)
from bot.sim.faults import DepthGap, HttpError
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue
from bot.venues.binance.errors import TimestampRejected
from bot.venues.binance.orders import client_order_id
from bot.venues.binance.rest import BinanceRest

D = Decimal
KEY, SECRET = sim_binance_credentials()
SYMBOLS = {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"}
NS = 1_000_000_000
ALL = 1 << 20


def start_of_minute(clock: OffsetClock) -> None:
    """Move to one second into the next minute (weight windows are whole minutes)."""
    clock.advance(60 - (clock.now_ns() // NS) % 60 + 1)


@pytest.fixture
def clock() -> OffsetClock:
    """Wall time plus an offset that sleeps advance (shared by the server, its market and the venue)."""
    return OffsetClock(virtual_sleep=True)


@pytest.fixture
async def server(clock: OffsetClock) -> AsyncIterator[BinanceServer]:
    srv = BinanceServer(SpotExchange(seed=5, start_ns=clock.now_ns()), clock.now_ns)
    await srv.start()
    yield srv
    await srv.stop()


def make_rest(server: BinanceServer, clock: OffsetClock, *, secret: str = SECRET,
              **kw: object) -> BinanceRest:
    return BinanceRest(server.rest_url, api_key=SecretStr(KEY), api_secret=SecretStr(secret),
                       clock=clock, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def rest(server: BinanceServer, clock: OffsetClock) -> AsyncIterator[BinanceRest]:
    client = make_rest(server, clock)
    yield client
    await client.aclose()


@dataclass
class Running:
    venue: BinanceVenue
    server: BinanceServer
    clock: OffsetClock
    market_open: asyncio.Event
    events: list[object]


@pytest.fixture
async def running(server: BinanceServer, clock: OffsetClock) -> AsyncIterator[Running]:
    venue = BinanceVenue(make_rest(server, clock), server.ws_url, SYMBOLS, Metrics(), depth_limit=5000,
                         min_session_secs=0, keepalive_secs=0.3,
                         stream_options={"first_event_wait_secs": 0.2, "snapshot_retry_secs": 0.05})
    specs = await venue.load_markets()
    venue.use_books({m: OrderBook(m) for m in specs})
    events: list[object] = []
    venue.set_account_sink(events.append)
    market_open = asyncio.Event()
    market_open.set()

    async def step() -> None:
        while True:
            if market_open.is_set():
                server.publish(server.spot.advance(clock.now_ns()))
            await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(step()), tg.create_task(venue.run(lambda e: None))]
        try:
            await eventually_async(lambda: venue.market_stream and all(
                venue.market_stream.is_synced(s) for s in SYMBOLS.values()))
            await eventually_async(lambda: venue.user_stream and venue.user_stream.is_connected.is_set()
                                   and venue.catch_ups)  # its requests done: faults hit the test's
            yield Running(venue, server, clock, market_open, events)
        finally:
            for task in tasks:
                task.cancel()
            await venue.close()


async def assert_books_match(r: Running) -> None:
    """Pause the market; the venue's books must equal the server's at the same update id."""
    r.market_open.clear()
    try:
        stream = r.venue.market_stream
        assert stream is not None
        for market, symbol in SYMBOLS.items():
            last_id, bids, asks = r.server.spot.depth(symbol)
            await eventually_async(lambda s=symbol, i=last_id: stream.update_id(s) == i)
            book = r.venue.books[market]
            assert book.levels(Side.BUY, ALL) == bids and book.levels(Side.SELL, ALL) == asks
            assert not book.is_crossed() and not book.needs_resync
    finally:
        r.market_open.set()


def updates(events: list[object], client_id: int) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate) and e.client_id == client_id]


def fills(events: list[object], client_id: int) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill) and e.client_id == client_id]


# ---- market data ------------------------------------------------------------------------------


async def test_filters_are_loaded_from_exchange_info(running: Running) -> None:
    spec = running.venue.spot_specs["BTC-USDT"]
    assert (spec.symbol, spec.base_asset, spec.quote_asset) == ("BTCUSDT", "BTC", "USDT")
    assert (spec.tick_size, spec.step_size, spec.min_qty, spec.min_notional) == (
        D("0.01"), D("0.00001"), D("0.00001"), D("5"))
    assert running.venue.specs()["ETH-USDT"].step_size == D("0.0001")


async def test_unknown_symbol_is_refused(server: BinanceServer, rest: BinanceRest) -> None:
    venue = BinanceVenue(rest, server.ws_url, {"DOGE-USDT": "DOGEUSDT"}, Metrics())
    with pytest.raises(VenueError):
        await venue.load_markets()


async def test_book_equals_the_server_after_sync_gap_and_reconnect(running: Running) -> None:
    stream = running.venue.market_stream
    assert stream is not None
    await assert_books_match(running)

    resyncs = stream.resyncs
    running.server.faults.depth_gap = DepthGap(1)
    await eventually_async(lambda: stream.resyncs > resyncs)
    await eventually_async(lambda: all(stream.is_synced(s) for s in SYMBOLS.values()))
    await assert_books_match(running)

    connections, user = stream.connections, running.venue.user_stream
    assert user is not None
    user_connections = user.connections
    await running.server.close_streams()
    await eventually_async(lambda: stream.connections > connections and user.connections > user_connections)
    await eventually_async(lambda: all(stream.is_synced(s) for s in SYMBOLS.values()))
    await assert_books_match(running)


async def test_trades_and_book_events_reach_the_sink(server: BinanceServer, clock: OffsetClock) -> None:
    venue = BinanceVenue(BinanceRest(server.rest_url, clock=clock), server.ws_url, {"BTC-USDT": "BTCUSDT"},
                         Metrics(), depth_limit=5000, min_session_secs=0,
                         stream_options={"first_event_wait_secs": 0.1})
    await venue.load_markets()
    seen: list[object] = []

    async def step() -> None:
        while True:
            server.publish(server.spot.advance(clock.now_ns()))
            await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(step()), tg.create_task(venue.run(seen.append))]
        try:
            kinds = await eventually_async(lambda: {type(e).__name__ for e in seen} >= {
                "BookSnapshot", "BookDelta", "Trade"} and {type(e).__name__ for e in seen})
        finally:
            for task in tasks:
                task.cancel()
            await venue.close()
    assert venue.user_stream is None  # no keys: market data only
    assert kinds <= {"BookSnapshot", "BookDelta", "Trade"}


# ---- execution --------------------------------------------------------------------------------


async def test_place_query_cancel_round_trip(running: Running) -> None:
    venue, events = running.venue, running.events
    bid = venue.books["BTC-USDT"].best_bid()
    assert bid is not None
    order = OrderRequest(101, "BTC-USDT", Side.BUY, D("0.01"), bid.price - 100, TimeInForce.GTT)
    await venue.place(order)
    assert 101 in await venue.open_orders()
    state = await venue.query_order(101)
    assert state is not None and (state.status, state.filled_size, state.market) == (
        OrderStatus.ACKED, D(0), "BTC-USDT")
    await eventually_async(lambda: updates(events, 101))

    await venue.cancel(101)
    await eventually_async(lambda: any(u.status is OrderStatus.CANCELLED for u in updates(events, 101)))
    assert 101 not in await venue.open_orders()
    await venue.cancel(101)  # no longer open: done, not an error
    await venue.cancel(999_999)  # never placed: logged, not an error
    closed = await venue.query_order(101)
    assert closed is not None and closed.status is OrderStatus.CANCELLED


async def test_fill_arrives_on_the_user_stream_with_our_client_id(running: Running) -> None:
    venue, events = running.venue, running.events
    before = (await venue.positions())["BTC-USDT"]
    ask = venue.books["BTC-USDT"].best_ask()
    assert ask is not None
    await venue.place(OrderRequest(102, "BTC-USDT", Side.BUY, D("0.01"), ask.price * D("1.01"),
                                   TimeInForce.IOC))
    await eventually_async(lambda: any(u.status is OrderStatus.FILLED for u in updates(events, 102)))
    got = fills(events, 102)
    assert got and sum(f.gross_size for f in got) == D("0.01")  # the order traded; its fills book the net
    assert all(f.side is Side.BUY and f.liquidity is Liquidity.TAKER and f.market == "BTC-USDT" for f in got)
    assert all(f.fee > 0 for f in got) and len({f.fill_id for f in got}) == len(got)
    assert events.index(got[-1]) < events.index(updates(events, 102)[-1])  # fills before FILLED
    after = await venue.positions()
    assert after["BTC-USDT"] == before + sum((f.size for f in got), D(0))  # the fills book the balance
    assert sum((f.withheld for f in got), D(0)) == sum((f.fee / f.price for f in got), D(0)) > 0
    await eventually_async(lambda: venue.cached_positions()["BTC-USDT"] == after["BTC-USDT"])


async def test_order_rejections_map_to_caller_actions(running: Running) -> None:
    venue, rest = running.venue, running.venue.rest
    book = venue.books["BTC-USDT"]
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None
    with pytest.raises(PostOnlyWouldCross):
        await venue.place(OrderRequest(103, "BTC-USDT", Side.BUY, D("0.01"), ask.price * D("1.01"),
                                        TimeInForce.POST_ONLY))
    with pytest.raises(InsufficientMargin):
        await venue.place(OrderRequest(104, "BTC-USDT", Side.BUY, D("100"), bid.price - 100, TimeInForce.GTT))
    sent = rest.requests
    with pytest.raises(OrderRejected, match="minNotional"):
        await venue.place(OrderRequest(105, "BTC-USDT", Side.BUY, D("0.00001"), bid.price, TimeInForce.GTT))
    with pytest.raises(OrderRejected, match="unknown market"):
        await venue.place(OrderRequest(106, "SOL-USDT", Side.BUY, D("1"), D("100"), TimeInForce.GTT))
    assert rest.requests == sent  # refused before anything was signed
    assert 103 not in await venue.open_orders()


async def test_5xx_on_place_is_state_unknown_then_query_by_client_id_finds_it(running: Running) -> None:
    venue, server = running.venue, running.server
    bid = venue.books["BTC-USDT"].best_bid()
    assert bid is not None
    server.faults.http_error = HttpError(503, 1, execute=True)
    sent = server.request_count
    with pytest.raises(OrderStateUnknown):
        await venue.place(OrderRequest(107, "BTC-USDT", Side.BUY, D("0.01"), bid.price - 50, TimeInForce.GTT))
    assert server.request_count == sent + 1  # never resent
    found = await venue.query_order(107)
    assert found is not None and found.status is OrderStatus.ACKED

    server.faults.http_error = HttpError(500, 1)
    with pytest.raises(OrderStateUnknown):
        await venue.place(OrderRequest(108, "BTC-USDT", Side.BUY, D("0.01"), bid.price - 50, TimeInForce.GTT))
    assert await venue.query_order(108) is None
    await venue.cancel(107)


async def test_place_timeout_is_state_unknown(clock: OffsetClock) -> None:
    """A venue that takes the order and never answers: the placement is not retried."""
    posts = 0

    async def server_time(request: web.Request) -> web.Response:
        return web.json_response({"serverTime": clock.now_ns() // 1_000_000})

    async def slow_order(request: web.Request) -> web.Response:
        nonlocal posts
        posts += 1
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/v3/time", server_time)
    app.router.add_post("/api/v3/order", slow_order)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rest = BinanceRest(f"http://127.0.0.1:{port}", api_key=SecretStr(KEY), api_secret=SecretStr(SECRET),
                       clock=clock, order_timeout_secs=0.2)
    try:
        with pytest.raises(OrderStateUnknown):
            await rest.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                  "quantity": "0.01", "price": "50000",
                                  "newClientOrderId": client_order_id(1)})
        assert posts == 1
    finally:
        await rest.aclose()
        await runner.cleanup()


# ---- user stream ------------------------------------------------------------------------------


async def test_listen_key_is_kept_alive_and_replaced_when_it_expires(running: Running) -> None:
    user = running.venue.user_stream
    assert user is not None and user.listen_key is not None
    await eventually_async(lambda: user.keepalives >= 2)  # PUT every keepalive_secs (0.3 s here)
    opened, connections = user.listen_keys_opened, user.connections
    async with httpx.AsyncClient(base_url=running.server.rest_url) as client:
        closed = await client.delete("/api/v3/userDataStream", params={"listenKey": user.listen_key},
                                     headers={"X-MBX-APIKEY": KEY})
    assert closed.json() == {}  # the server now sends listenKeyExpired on the stream
    await eventually_async(lambda: user.listen_keys_opened > opened and user.connections > connections)
    await eventually_async(lambda: user.is_connected.is_set())
    ask = running.venue.books["BTC-USDT"].best_ask()
    assert ask is not None
    await running.venue.place(OrderRequest(109, "BTC-USDT", Side.BUY, D("0.001"), ask.price * D("1.01"),
                                           TimeInForce.IOC))
    await eventually_async(lambda: fills(running.events, 109))  # the new key's stream delivers


# ---- signing, time and rate limits ------------------------------------------------------------


async def test_bad_signature_is_fatal_and_not_retried(server: BinanceServer, clock: OffsetClock) -> None:
    rest = make_rest(server, clock, secret="not-the-secret")
    try:
        await rest.sync_time()
        sent = server.request_count
        with pytest.raises(VenueError, match="-1022") as info:
            await rest.account()
        assert not isinstance(info.value, TransientVenueError)
        assert server.request_count == sent + 1
    finally:
        await rest.aclose()


async def test_server_time_offset_and_minus_1021_resync(server: BinanceServer, clock: OffsetClock) -> None:
    skewed = OffsetClock(-30 * NS, base=clock)  # our host clock is 30 s behind the venue
    rest = make_rest(server, skewed)
    try:
        await rest.account()  # the first signed call measures the offset
        assert rest.time_syncs == 1 and abs((rest.time_offset_ms or 0) - 30_000) < 500

        skewed.offset_ns += 10 * NS  # the host clock jumps: the stored offset is now 10 s wrong
        sent = server.request_count
        account = await rest.account()  # -1021, time resync, one retry of the read
        assert account.balances and rest.time_syncs == 2
        assert server.request_count == sent + 3  # rejected read, /api/v3/time, retried read

        skewed.offset_ns -= 10 * NS  # and back: a placement is refused, resynced, never retried
        sent = server.request_count
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                  "quantity": "0.01", "price": "1000", "newClientOrderId": client_order_id(77)}
        with pytest.raises(TimestampRejected):
            await rest.new_order(params)
        assert rest.time_syncs == 3 and server.request_count == sent + 2
        await rest.new_order(params)  # refused before processing: safe to place again
        assert server.spot.open_orders(KEY, "BTCUSDT")[0].client_order_id == "pb-77"
    finally:
        await rest.aclose()


async def test_429_retry_after_is_honoured(server: BinanceServer, clock: OffsetClock,
                                           rest: BinanceRest) -> None:
    server.faults.http_error = HttpError(429, 1, 3)
    sent = server.request_count
    snapshot = await rest.depth("BTCUSDT", 5)  # a read: waits Retry-After, then retries
    assert snapshot.lastUpdateId > 0 and server.request_count == sent + 2
    assert max(clock.sleeps) >= 3

    server.faults.http_error = HttpError(429, 1, 30)
    with pytest.raises(RateLimited) as info:
        await rest.depth("BTCUSDT", 5)  # too long to wait in place: back to the caller
    assert info.value.retry_after_secs == 30
    sent = server.request_count
    with pytest.raises(RateLimited):
        await rest.ping()  # backing off: refused without a request
    assert server.request_count == sent
    clock.advance(31)
    await rest.ping()
    assert server.request_count == sent + 1


async def test_418_ban_refuses_every_call_until_it_ends(server: BinanceServer, clock: OffsetClock,
                                                       rest: BinanceRest) -> None:
    await rest.sync_time()
    server.faults.http_error = HttpError(418, 1, 120)
    with pytest.raises(RateLimited) as info:
        await rest.depth("BTCUSDT", 5)
    assert info.value.retry_after_secs == 120 and rest.is_banned
    sent = server.request_count
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
              "price": "1000", "newClientOrderId": client_order_id(5)}
    with pytest.raises(RateLimited):
        await rest.new_order(params)  # not even order entry goes out during a ban
    clock.advance(60)
    with pytest.raises(RateLimited) as still:
        await rest.ping()
    assert 59 <= still.value.retry_after_secs <= 61 and server.request_count == sent
    clock.advance(61)
    await rest.ping()
    assert not rest.is_banned and server.request_count == sent + 1


async def test_weight_budget_is_self_imposed_with_headroom_for_orders(server: BinanceServer,
                                                                     clock: OffsetClock) -> None:
    start_of_minute(clock)
    rest = make_rest(server, clock, weight_budget_1m=45, weight_limit_1m=60)
    try:
        await rest.exchange_info(["BTCUSDT"])
        await rest.exchange_info(["BTCUSDT"])
        assert rest.weights.used == 40  # from X-MBX-USED-WEIGHT-1M
        sent = server.request_count
        with pytest.raises(RateLimited) as info:
            await rest.exchange_info(["BTCUSDT"])  # 60 > 45: refused here, not by the venue
        assert server.request_count == sent and 55 <= info.value.retry_after_secs <= 60
        await rest.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                              "quantity": "0.01", "price": "1000", "newClientOrderId": client_order_id(6)})
        assert rest.weights.used == 42  # order entry used the headroom (time sync + order)
        clock.advance(60)
        await rest.exchange_info(["BTCUSDT"])  # a new minute
    finally:
        await rest.aclose()


async def test_keys_are_never_logged(server: BinanceServer, clock: OffsetClock) -> None:
    rest = make_rest(server, clock)
    try:
        with structlog.testing.capture_logs() as logs:
            await rest.account()
            server.faults.http_error = HttpError(429, 1, 30)
            with pytest.raises(RateLimited):
                await rest.account()
        text = repr(logs) + repr(rest)
        assert logs and KEY not in text and SECRET not in text
    finally:
        await rest.aclose()


async def test_time_offset_is_refreshed_periodically(server: BinanceServer, clock: OffsetClock) -> None:
    rest = make_rest(server, clock, time_sync_interval_secs=60)
    try:
        await rest.account()
        await rest.account()
        assert rest.time_syncs == 1
        clock.advance(61)
        await rest.account()
        assert rest.time_syncs == 2
    finally:
        await rest.aclose()


async def test_5xx_on_reads_is_retried_with_bounded_backoff(server: BinanceServer, clock: OffsetClock,
                                                           rest: BinanceRest) -> None:
    server.faults.http_error = HttpError(500, 2)
    sent = server.request_count
    await rest.depth("BTCUSDT", 5)
    assert server.request_count == sent + 3 and len(clock.sleeps) == 2
    server.faults.http_error = HttpError(503, 100)
    sent = server.request_count
    with pytest.raises(TransientVenueError):
        await rest.depth("BTCUSDT", 5)
    assert server.request_count == sent + 4  # limits.READ_MAX_ATTEMPTS
