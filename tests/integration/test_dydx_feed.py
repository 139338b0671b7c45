"""The dYdX indexer feed against the simulator's indexer front-end (real websockets both ends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from support.wait import eventually_async

from bot.book import OrderBook
from bot.domain import BlockHeight, Side
from bot.sim.exchange import SimExchange
from bot.sim.faults import BookFault, WsDrop
from bot.sim.server.indexer import IndexerServer
from bot.telemetry import Metrics
from bot.venues.dydx.indexer_ws import IndexerFeed, default_subscriptions
from bot.venues.sim.feed import default_params

MARKETS = ["BTC-USD", "ETH-USD"]


@dataclass
class Harness:
    exchange: SimExchange
    server: IndexerServer
    feed: IndexerFeed
    events: list[object] = field(default_factory=list)

    def books_equal(self) -> bool:
        for ticker in MARKETS:
            bids, asks = self.exchange.book(ticker)
            book = self.feed.books[ticker]
            ours_bids = [(lv.price, lv.size) for lv in book.levels(Side.BUY, 1000)]
            ours_asks = [(lv.price, lv.size) for lv in book.levels(Side.SELL, 1000)]
            if ours_bids != list(bids)[:len(ours_bids)] or ours_asks != list(asks)[:len(ours_asks)]:
                return False
            if not ours_bids or not ours_asks:
                return False
        return True


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    exchange = SimExchange([default_params(t, 0.65) for t in MARKETS], 7, time.time_ns())
    server = IndexerServer(exchange)
    await server.start()
    books = {t: OrderBook(t) for t in MARKETS}
    h = Harness(exchange, server, None)  # type: ignore[arg-type]
    h.feed = IndexerFeed(server.ws_url, default_subscriptions(MARKETS), books, h.events.append, Metrics(),
                         min_session_secs=0.0, check_interval_secs=0.1,
                         max_silence_secs={"v4_block_height": 1.0, "v4_orderbook": 2.0})

    async def step() -> None:
        while True:
            server.publish(exchange.advance(time.time_ns()))
            await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as tg:
        stepper = tg.create_task(step())
        feeding = tg.create_task(h.feed.run())
        try:
            yield h
        finally:
            stepper.cancel()
            feeding.cancel()
    await server.stop()


async def quiesce(h: Harness) -> None:
    """Wait until the feed's books equal the simulator's (the stream may lag a step)."""
    await eventually_async(h.books_equal)


async def test_snapshot_and_updates_track_the_simulator(harness: Harness) -> None:
    await eventually_async(lambda: any(isinstance(e, BlockHeight) for e in harness.events))
    await quiesce(harness)
    heights = [e.height for e in harness.events if isinstance(e, BlockHeight)]
    assert heights == sorted(heights)


async def test_disconnect_mid_stream_resyncs_to_the_same_book(harness: Harness) -> None:
    await quiesce(harness)
    harness.exchange.scenario.ws_drop = WsDrop.CLOSE
    await eventually_async(lambda: harness.feed.connections >= 2)
    await quiesce(harness)


@pytest.mark.parametrize("fault", ["gap", "crossed"])
async def test_gap_or_crossed_update_forces_a_resync(harness: Harness, fault: str) -> None:
    await quiesce(harness)
    before = harness.feed.resyncs
    harness.exchange.scenario.book_fault = BookFault(fault)
    await eventually_async(lambda: harness.feed.resyncs > before)
    await quiesce(harness)


async def test_silent_stall_is_detected_and_healed(harness: Harness) -> None:
    await quiesce(harness)
    before = harness.feed.resyncs + harness.feed.connections
    harness.exchange.scenario.ws_stall = True
    await eventually_async(lambda: harness.feed.resyncs + harness.feed.connections > before, timeout_secs=10)
    harness.exchange.scenario.ws_stall = False
    await quiesce(harness)
