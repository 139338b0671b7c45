"""The simulator's dYdX indexer on a real port, driven by real clients (websockets, httpx, aiohttp).

The exchange core runs on virtual time: each `step` advances it by 50 ms and publishes what
happened, as the simulator runner does. Frames are awaited with a sentinel (a later `subscribe`
whose reply is queued behind everything published before it), never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest
from shape import learn, mismatches
from support.shared import SHARED, needs_shared
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bot.book import OrderBook
from bot.domain import BookDelta, BookLevel, BookSnapshot, Side
from bot.sim.exchange import SimExchange
from bot.sim.faults import BookFault, HttpError, WsDrop
from bot.sim.perp.records import OrderId, OrderRequest, TimeInForce
from bot.sim.server.indexer import IndexerServer
from bot.venues.sim.feed import default_params

FIXTURES = SHARED / "fixtures" / "dydx"
pytestmark = needs_shared
OWNER = "dydx1n56z5fhmemtffzkt2eqyf9kuc7ycjfs86mvqy7"
STRANGER = "dydx1kzsvkf2ghjqlysuffdkhcdctknl4rsvcx5hkm5"
T0 = 1_765_209_600_000_000_000 - 2_000_000_000  # two seconds before the top of an hour
STEP_NS = 50_000_000
WS_FILL_EXTRA = frozenset({"fee", "affiliateRevShare", "clientMetadata", "subaccountNumber"})


def fixture(kind: str, name: str) -> Any:
    return json.loads((FIXTURES / kind / name).read_text())


def ccxt(prefix: str) -> list[Any]:
    bodies = fixture("rest", "ccxt_testnet_2025_http_responses.json")
    return [body for path, body in bodies.items() if path.startswith(prefix)]


def assert_shape(ours: Any, *samples: Any, **kwargs: Any) -> None:
    problems = mismatches(ours, learn(*samples), **kwargs)
    assert not problems, "\n".join(problems)


class Sim:
    """A SimExchange on virtual time, published to the server after every step."""

    def __init__(self, server: IndexerServer, exchange: SimExchange) -> None:
        self.server = server
        self.ex = exchange
        self.now = T0 + STEP_NS

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.now += STEP_NS
            self.server.publish(self.ex.advance(self.now))

    def flush(self) -> None:
        """Publish what place/cancel produced (the runner does this after each call)."""
        self.server.publish(self.ex.drain())


class Client:
    """A `websockets` client that decodes frames and waits for them by predicate."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._sentinels = 0

    async def recv(self, timeout_secs: float = 3.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout_secs))

    async def send(self, msg: Any) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def subscribe(self, channel: str, sub_id: str | None = None, **extra: Any) -> dict[str, Any]:
        msg = {"type": "subscribe", "channel": channel, **extra}
        if sub_id is not None:
            msg["id"] = sub_id
        await self.send(msg)
        return await self.until(lambda m: m["type"] in ("subscribed", "error"))

    async def until(self, pred: Callable[[dict[str, Any]], bool],
                    seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if pred(msg):
                return msg
            if seen is not None:
                seen.append(msg)

    async def drain(self) -> list[dict[str, Any]]:
        """Everything queued for us so far: the reply to an invalid request queues behind it.

        (A validation error takes no message_id, so the sentinel leaves the id sequence alone.)
        """
        self._sentinels += 1
        sentinel = f"sentinel{self._sentinels}"
        await self.send({"type": "subscribe", "channel": sentinel})
        seen: list[dict[str, Any]] = []
        await self.until(lambda m: m["type"] == "error" and m.get("channel") == sentinel, seen)
        return seen


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Awaitable[Sim]]]:
    servers: list[IndexerServer] = []

    async def build(**kwargs: Any) -> Sim:
        ex = SimExchange([default_params("BTC-USD", 0.65), default_params("ETH-USD", 0.65)], 7, T0)
        ex.create_account(OWNER, Decimal(100_000))
        ex.advance(T0 + STEP_NS)  # the markets' first snapshot
        server = IndexerServer(ex, **kwargs)
        await server.start()
        servers.append(server)
        return Sim(server, ex)

    yield build
    for server in servers:
        await server.stop()


@pytest.fixture
async def sim(make: Callable[..., Awaitable[Sim]]) -> Sim:
    return await make()


@pytest.fixture
async def client(sim: Sim) -> AsyncIterator[Client]:
    async with connect(sim.server.ws_url) as ws:
        c = Client(ws)
        hello = await c.recv()
        assert hello["type"] == "connected" and hello["message_id"] == 0
        assert_shape(hello, fixture("ws", "connected.json"))
        yield c


@pytest.fixture
async def http(sim: Sim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.server.rest_url, timeout=5) as c:
        yield c


def to_book(ticker: str, contents: dict[str, Any]) -> OrderBook:
    book = OrderBook(ticker)
    book.apply_snapshot(BookSnapshot(
        ticker, tuple(BookLevel(Decimal(x["price"]), Decimal(x["size"])) for x in contents["bids"]),
        tuple(BookLevel(Decimal(x["price"]), Decimal(x["size"])) for x in contents["asks"]), 0, 0))
    return book


def apply_update(book: OrderBook, contents: dict[str, Any]) -> bool:
    def levels(side: str) -> tuple[BookLevel, ...]:
        return tuple(BookLevel(Decimal(p), Decimal(s)) for p, s in contents.get(side, []))

    return book.apply_delta(BookDelta(book.market, levels("bids"), levels("asks"), 0, 0))


def assert_same_book(book: OrderBook, ex: SimExchange) -> None:
    bids, asks = ex.book(book.market)
    assert bids and asks
    assert [(lvl.price, lvl.size) for lvl in book.levels(Side.BUY, 1000)] == bids
    assert [(lvl.price, lvl.size) for lvl in book.levels(Side.SELL, 1000)] == asks


# ---- order book ---------------------------------------------------------------------------------


async def test_orderbook_snapshot_plus_updates_equals_exchange_book(sim: Sim, client: Client) -> None:
    sub = await client.subscribe("v4_orderbook", "BTC-USD")
    assert sub["type"] == "subscribed" and sub["message_id"] == 1
    assert_shape(sub, fixture("ws", "v4_orderbook_snapshot.json"))
    book = to_book("BTC-USD", sub["contents"])
    last_id = sub["message_id"]
    for _ in range(5):
        sim.step(20)
        frames = await client.drain()
        assert frames, "no orderbook updates in 1 s of simulated time"
        for msg in frames:
            assert msg["type"] == "channel_data" and msg["channel"] == "v4_orderbook"
            assert msg["message_id"] == last_id + 1  # strictly rising, no gaps
            last_id = msg["message_id"]
            assert apply_update(book, msg["contents"]), msg
        assert_same_book(book, sim.ex)
    # The sample update carries only bids; an update may carry either side or both.
    assert_shape(frames[-1], fixture("ws", "v4_orderbook.json"), optional={"bids"}, extra={"asks"})


async def test_batched_subscription_gets_channel_batch_data(sim: Sim, client: Client) -> None:
    sub = await client.subscribe("v4_orderbook", "ETH-USD", batched=True)
    book = to_book("ETH-USD", sub["contents"])
    batches = 0
    for _ in range(4):
        sim.step(10)
        for msg in await client.drain():
            assert msg["type"] == "channel_batch_data" and msg["id"] == "ETH-USD"
            assert isinstance(msg["contents"], list)
            for item in msg["contents"]:
                assert apply_update(book, item)
            batches += 1
        assert_same_book(book, sim.ex)
    assert 0 < batches <= 40  # at most one batch per publish call


async def test_unsubscribe_stops_updates(sim: Sim, client: Client) -> None:
    await client.subscribe("v4_orderbook", "BTC-USD")
    await client.send({"type": "unsubscribe", "channel": "v4_orderbook", "id": "BTC-USD"})
    reply = await client.until(lambda m: m["type"] == "unsubscribed")
    assert_shape(reply, fixture("ws", "unsubscribed.json"))
    sim.step(20)
    assert await client.drain() == []


# ---- other channels ------------------------------------------------------------------------------


async def test_trades_markets_candles_and_height_channels(sim: Sim, client: Client) -> None:
    sim.ex.scenario.indexer_lag_blocks = 2
    trades = await client.subscribe("v4_trades", "BTC-USD")
    markets = await client.subscribe("v4_markets")
    candles = await client.subscribe("v4_candles", "BTC-USD/1MIN")
    height = await client.subscribe("v4_block_height")
    assert_shape(markets, fixture("ws", "v4_markets_subscribed.json"), extra={"defaultFundingRate1H"})
    assert_shape(height, fixture("ws", "v4_block_height_subscribed.json"))
    assert int(height["contents"]["height"]) == sim.ex.height - 2
    assert_shape(candles, fixture("ws", "v4_candles_subscribed.json"))
    assert trades["id"] == "BTC-USD" and isinstance(trades["contents"]["trades"], list)
    seen: dict[str, list[dict[str, Any]]] = {}
    for _ in range(10):
        sim.step(20)
        for msg in await client.drain():
            seen.setdefault(msg["channel"], []).append(msg)
        if len(seen) == 4:
            break
    assert set(seen) == {"v4_trades", "v4_markets", "v4_candles", "v4_block_height"}
    assert_shape(seen["v4_trades"][0], fixture("ws", "v4_trades.json"))
    exchange_ids = {tid.lower() for tid, _t, _h in sim.ex.trades("BTC-USD", limit=1000)}
    assert {t["id"] for m in seen["v4_trades"] for t in m["contents"]["trades"]} <= exchange_ids
    market_samples = [fixture("ws", n) for n in (
        "v4_markets_channel_data.json", "v4_markets_trading_data.json", "v4_markets_channel_data_v8.json")]
    for msg in seen["v4_markets"]:
        sample = [s for s in market_samples if s["contents"].keys() == msg["contents"].keys()]
        assert_shape(msg, *sample)
    assert_shape(seen["v4_candles"][-1], fixture("ws", "v4_candles_channel_data.json"),
                 extra={"orderbookMidPriceOpen", "orderbookMidPriceClose"})
    for msg in seen["v4_block_height"]:
        assert_shape(msg, fixture("ws", "v4_block_height_channel_data.json"))
    assert int(seen["v4_block_height"][-1]["contents"]["blockHeight"]) == sim.ex.height - 2


async def test_subaccount_channel_gets_order_and_fill(sim: Sim, client: Client,
                                                      http: httpx.AsyncClient) -> None:
    sub = await client.subscribe("v4_subaccounts", f"{OWNER}/0")
    assert_shape(sub, fixture("ws", "v4_accounts_subscribed.json"))
    book_sub = await client.subscribe("v4_orderbook", "BTC-USD")
    book = to_book("BTC-USD", book_sub["contents"])
    _bids, asks = sim.ex.book("BTC-USD")
    req = OrderRequest(OrderId(OWNER, 0, 4242, 0, 0), Side.BUY, Decimal("0.01"), asks[0][0] + 20,
                       TimeInForce.IOC, good_til_block=sim.ex.height + 10, client_metadata=1)
    sim.ex.place_order(req, sim.now)
    sim.flush()
    frames = await client.drain()
    account = [m for m in frames if m["channel"] == "v4_subaccounts"]
    assert account, frames
    contents = account[0]["contents"]
    assert contents["orders"][0]["clientId"] == "4242"
    assert contents["fills"] and sum(Decimal(f["size"]) for f in contents["fills"]) == Decimal("0.01")
    samples = [fixture("ws", n) for n in (
        "v4_accounts_channel_data.json", "v4_accounts_channel_data_order.json",
        "v4_accounts_channel_data_order_opened.json", "v4_accounts_channel_data_transfers.json")]
    # no WS sample shows perpetualPositions/assetPositions (their items are checked via REST shapes)
    assert_shape({**account[0], "contents": {k: v for k, v in contents.items()
                                             if k not in ("perpetualPositions", "assetPositions")}},
                 *samples, extra=WS_FILL_EXTRA)
    for msg in frames:
        if msg["channel"] == "v4_orderbook":
            assert apply_update(book, msg["contents"])
    assert_same_book(book, sim.ex)

    # ... and REST agrees
    params = {"address": OWNER, "subaccountNumber": 0}
    orders = (await http.get("/v4/orders", params=params)).json()
    assert [o["clientId"] for o in orders] == ["4242"] and orders[0]["status"] == "FILLED"
    assert_shape(orders, fixture("rest", "orders.json"), fixture("rest", "mainnet_2025-12-08_orders.json"))
    one = (await http.get(f"/v4/orders/{orders[0]['id']}")).json()
    assert one["id"] == orders[0]["id"]
    fills = (await http.get("/v4/fills", params={**params, "market": "BTC-USD"})).json()
    assert_shape(fills, fixture("rest", "fills.json"), fixture("rest", "mainnet_2025-12-08_fills.json"))
    positions = (await http.get("/v4/perpetualPositions", params=params)).json()
    assert positions["positions"][0]["size"] == "0.01"
    assert_shape(positions, fixture("rest", "list_perpetual_positions.json"), *ccxt("/v4/perpetualPositions"))
    subaccount = (await http.get(f"/v4/addresses/{OWNER}/subaccountNumber/0")).json()
    assert_shape(subaccount, fixture("rest", "subaccount.json"),
                 fixture("rest", "mainnet_2025-12-08_subaccount.json"))
    addresses = (await http.get(f"/v4/addresses/{OWNER}")).json()
    assert_shape(addresses, fixture("rest", "addresses.json"))
    assets = (await http.get("/v4/assetPositions", params=params)).json()
    assert_shape(assets, fixture("rest", "asset_positions.json"))
    transfers = (await http.get("/v4/transfers", params=params)).json()
    assert transfers["transfers"][0]["type"] == "DEPOSIT"
    assert_shape(transfers, *ccxt("/v4/transfers"))


async def test_unknown_subaccount_snapshot_is_empty(client: Client) -> None:
    sub = await client.subscribe("v4_subaccounts", f"{STRANGER}/0")
    assert sub["type"] == "subscribed" and sub["contents"] == {}


# ---- REST ------------------------------------------------------------------------------------------


async def test_rest_market_endpoints(sim: Sim, http: httpx.AsyncClient) -> None:
    sim.step(60)  # crosses the top of the hour: one funding point
    markets = (await http.get("/v4/perpetualMarkets")).json()
    assert set(markets["markets"]) == {"BTC-USD", "ETH-USD"}
    assert_shape(markets, fixture("rest", "mainnet_2025-12-08_perpetual_markets.json"),
                 fixture("rest", "list_perpetual_markets_v8.json"))
    one = (await http.get("/v4/perpetualMarkets", params={"ticker": "ETH-USD"})).json()
    assert list(one["markets"]) == ["ETH-USD"]
    book = (await http.get("/v4/orderbooks/perpetualMarket/BTC-USD")).json()
    assert Decimal(book["bids"][0]["price"]) < Decimal(book["asks"][0]["price"])
    assert_shape(book, *ccxt("/v4/orderbooks"))
    trades = (await http.get("/v4/trades/perpetualMarket/BTC-USD", params={"limit": 5})).json()
    assert 0 < len(trades["trades"]) <= 5
    assert_shape(trades, fixture("rest", "mainnet_2025-12-08_trades.json"))
    funding = (await http.get("/v4/historicalFunding/BTC-USD")).json()
    rows = funding["historicalFunding"]
    # the one settlement since start, then the market's past (bot.sim.history), newest first
    assert len(rows) == 100 and Decimal(rows[0]["rate"]) != 0
    times = [r["effectiveAt"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert_shape(funding, *ccxt("/v4/historicalFunding"))
    before = rows[0]["effectiveAtHeight"]
    paged = (await http.get("/v4/historicalFunding/BTC-USD",
                            params={"effectiveBeforeOrAtHeight": int(before) - 1, "limit": 1000})).json()
    assert paged["historicalFunding"] == rows[1:] + paged["historicalFunding"][99:]  # the past only
    candles = (await http.get("/v4/candles/perpetualMarkets/BTC-USD", params={"resolution": "1MIN"})).json()
    assert_shape(candles, fixture("rest", "mainnet_2025-12-08_candles.json"))
    hourly = (await http.get("/v4/candles/perpetualMarkets/BTC-USD",
                             params={"resolution": "1HOUR", "limit": 1000})).json()["candles"]
    started = [c["startedAt"] for c in hourly]
    assert len(hourly) == 722  # the two hours the step spans (trades), then 720 hours of the past
    assert started == sorted(set(started), reverse=True)
    assert_shape({"candles": hourly}, fixture("rest", "mainnet_2025-12-08_candles.json"))
    bad = await http.get("/v4/candles/perpetualMarkets/BTC-USD")
    assert bad.status_code == 400 and bad.json()["errors"][0]["msg"]
    assert (await http.get("/v4/orderbooks/perpetualMarket/NOPE-USD")).status_code == 400


async def test_rest_height_time_and_errors(sim: Sim, http: httpx.AsyncClient) -> None:
    sim.ex.scenario.indexer_lag_blocks = 3
    height = (await http.get("/v4/height")).json()
    assert int(height["height"]) == sim.ex.height - 3
    assert_shape(height, fixture("rest", "mainnet_2025-12-08_block_height.json"))
    assert_shape((await http.get("/v4/time")).json(), fixture("rest", "mainnet_2025-12-08_time.json"))
    missing = await http.get("/v4/orders", params={"address": OWNER})
    assert missing.status_code == 400 and missing.json()["errors"][0]["msg"]
    assert (await http.get("/v4/orders")).status_code == 400
    unknown = await http.get(f"/v4/addresses/{STRANGER}")
    assert unknown.status_code == 404 and "errors" in unknown.json()
    for path in (f"/v4/addresses/{STRANGER}/subaccountNumber/0", "/v4/fills", "/v4/perpetualPositions"):
        r = await http.get(path, params={"address": STRANGER, "subaccountNumber": 0})
        assert r.status_code == 404 and r.json()["errors"][0]["msg"], path
    empty = (await http.get("/v4/orders", params={"address": OWNER, "subaccountNumber": 0,
                                                  "status": "OPEN"})).json()
    assert empty == []
    payments = (await http.get("/v4/fundingPayments",
                               params={"address": OWNER, "subaccountNumber": 0})).json()
    assert payments["fundingPayments"] == [] and payments["totalResults"] == 0


async def test_http_error_injection(sim: Sim, http: httpx.AsyncClient) -> None:
    sim.ex.scenario.http_error = HttpError(429, 2, 3)
    for _ in range(2):
        r = await http.get("/v4/height")
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert r.json()["errors"][0]["msg"]
    assert (await http.get("/v4/height")).status_code == 200
    assert sim.ex.scenario.http_error is None
    sim.ex.scenario.http_error = HttpError(503, 1)
    r = await http.get("/v4/perpetualMarkets")
    assert r.status_code == 503 and "Retry-After" not in r.headers
    assert (await http.get("/v4/perpetualMarkets")).status_code == 200


# ---- protocol: errors, heartbeat, faults ------------------------------------------------------------


async def test_malformed_and_invalid_frames_get_error_frames(client: Client) -> None:
    bad: list[Any] = [
        "not json", "[1, 2]", {"type": "bogus"}, {"type": "subscribe", "channel": "v4_nope"},
        {"type": "subscribe", "channel": "v4_orderbook", "id": "NOPE-USD"},
        {"type": "subscribe", "channel": "v4_orderbook"},
        {"type": "subscribe", "channel": "v4_candles", "id": "BTC-USD/7MINS"},
        {"type": "subscribe", "channel": "v4_subaccounts", "id": "dydx1abc/notanumber"},
        b"\x00\x01binary",
    ]
    for frame in bad:
        await client.send(frame)
        err = await client.recv()
        assert err["type"] == "error" and err["message"], frame
        assert_shape(err, fixture("ws", "error.json"), extra={"channel", "id"})
    await client.send({"type": "ping", "id": 1})  # ignored, like the real server
    ok = await client.subscribe("v4_orderbook", "BTC-USD")
    assert ok["type"] == "subscribed"
    again = await client.subscribe("v4_orderbook", "BTC-USD")
    assert again["type"] == "error" and "already subscribed" in again["message"]


async def test_server_pings_keep_a_ponging_client_and_drop_a_silent_one(
        make: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make(ping_interval_secs=0.1, pong_timeout_secs=0.2)
    async with connect(sim.server.ws_url) as ws, aiohttp.ClientSession() as session:
        silent = await session.ws_connect(sim.server.ws_url, autoping=False)
        pings = 0
        while True:
            msg = await asyncio.wait_for(silent.receive(), 3)
            if msg.type is aiohttp.WSMsgType.PING:
                pings += 1  # ... and never answered
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        assert pings >= 1 and silent.close_code == 1011
        await silent.close()
        # the websockets client answers pings: still connected after many intervals
        c = Client(ws)
        assert (await c.recv())["type"] == "connected"
        await asyncio.sleep(0.8)  # deliberately idle across several ping intervals
        assert (await c.subscribe("v4_markets"))["type"] == "subscribed"
        assert sim.server.connections == 1


@pytest.mark.parametrize("value", [WsDrop.CLOSE, WsDrop.ABORT])
async def test_ws_drop_closes_every_connection_once(sim: Sim, client: Client, value: object) -> None:
    async with connect(sim.server.ws_url) as other:
        await other.recv()
        sim.ex.scenario.ws_drop = value
        sim.step()
        for ws in (client.ws, other):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 3)
            if value is WsDrop.ABORT:  # TCP dropped: no close frame at all
                assert closed.value.rcvd is None
            else:
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert sim.ex.scenario.ws_drop is None
    async with connect(sim.server.ws_url) as again:  # reconnecting works and stays up
        c = Client(again)
        await c.recv()
        assert (await c.subscribe("v4_orderbook", "BTC-USD"))["type"] == "subscribed"
        sim.step(5)
        assert await c.drain()


async def test_ws_stall_holds_data_but_answers_pings(sim: Sim, client: Client) -> None:
    await client.subscribe("v4_orderbook", "BTC-USD")
    sim.ex.scenario.ws_stall = True
    sim.step(20)
    assert await client.drain() == []
    await asyncio.wait_for(await client.ws.ping(), 2)  # protocol pings still answered
    sim.ex.scenario.ws_stall = False
    sim.step(20)
    assert [m for m in await client.drain() if m["type"] == "channel_data"]


async def test_book_fault_gap_skips_a_message_id(sim: Sim, client: Client) -> None:
    await client.subscribe("v4_orderbook", "BTC-USD")
    sim.step(10)
    last = (await client.drain())[-1]["message_id"]
    sim.ex.scenario.book_fault = BookFault.GAP
    frames: list[dict[str, Any]] = []
    while not frames:
        sim.step()
        frames = await client.drain()
    assert frames[0]["message_id"] == last + 2
    assert sim.ex.scenario.book_fault is None


async def test_book_fault_crossed_sends_a_crossing_level(sim: Sim, client: Client) -> None:
    sub = await client.subscribe("v4_orderbook", "BTC-USD")
    book = to_book("BTC-USD", sub["contents"])
    sim.ex.scenario.book_fault = BookFault.CROSSED
    frames: list[dict[str, Any]] = []
    while not frames:
        sim.step()
        frames = await client.drain()
    assert not apply_update(book, frames[0]["contents"])
    assert book.is_crossed()
    assert sim.ex.scenario.book_fault is None
    # a resubscribe yields a clean snapshot again
    await client.send({"type": "unsubscribe", "channel": "v4_orderbook", "id": "BTC-USD"})
    fresh = await client.subscribe("v4_orderbook", "BTC-USD")
    assert not to_book("BTC-USD", fresh["contents"]).is_crossed()


async def test_slow_consumer_is_disconnected_fast_one_is_not(make: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make(max_queue_frames=50)
    async with connect(sim.server.ws_url) as fast_ws, connect(sim.server.ws_url, max_queue=1) as slow_ws:
        fast = Client(fast_ws)
        await fast.recv()
        await fast.subscribe("v4_orderbook", "BTC-USD")
        await slow_ws.send(json.dumps({"type": "subscribe", "channel": "v4_orderbook", "id": "BTC-USD"}))
        wide = tuple(BookLevel(Decimal(1000 + i), Decimal("1.5")) for i in range(80))
        received = 0
        for _round in range(2000):
            sim.server.publish([BookDelta("BTC-USD", wide, (), 0, 0) for _ in range(5)])
            for _ in range(5):
                await fast.recv()
                received += 1
            if sim.server.connections == 1:
                break
        assert sim.server.connections == 1, "the slow client was never dropped"
        assert received > 50
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(slow_ws.recv(), 3)
