"""One contract over every venue: what the core may rely on from an ExecutionVenue.

Each venue is opened the way the daemon opens it, by the composition root from settings
(bot.venues.registry): `paper` is the paper venue over the in-process simulator; `dydx-sim` and
`binance-sim` are the real adapters (httpx, websockets, dydx-v4-client) trading live on the
embedded simulator's real-protocol servers with its test accounts. Nothing is mocked.

The contract: place, cancel (False for an order the venue does not list), cancel-many (the given
orders, or every open one), open-order lookup, fills reaching the account sink, positions (or
balances) moving by the fill, the account snapshot and equity, and recovery after the venue
dropped its streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.wait import eventually_async

from bot.accounts import AccountBook
from bot.book import OrderBook
from bot.clock import SystemClock
from bot.config import load
from bot.domain import (
    BookDelta,
    BookSnapshot,
    Fill,
    MarketEvent,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    TimeInForce,
)
from bot.telemetry import Metrics
from bot.venues.leg import Leg
from bot.venues.ports import ExecutionVenue
from bot.venues.registry import Venues, open_accounts, open_venues

VENUES = {
    "paper": {"trading": "paper", "sim": {"mode": "in_process"}},
    "dydx-sim": {"trading": "live", "sim": {"mode": "protocol"}},
    "binance-sim": {"trading": "live", "sim": {"mode": "protocol"}},
}
NOTIONAL_USD = Decimal(25)  # above every venue's minimum order size and notional
WAIT_SECS = 20.0


async def eventually(cond: Callable[[], Any], timeout_secs: float = WAIT_SECS,
                     poke: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """Wait until `cond()` is truthy; `poke` (a REST sweep) runs about once a second meanwhile."""
    return await eventually_async(cond, timeout_secs, 0.05, poke=poke)


async def open_ids_eventually(venue: ExecutionVenue, cond: Callable[[set[int]], bool]) -> set[int]:
    deadline = time.monotonic() + WAIT_SECS
    while True:
        ids = set(await venue.open_orders())
        if cond(ids):
            return ids
        if time.monotonic() > deadline:
            raise AssertionError(f"open orders never matched: {sorted(ids)}")
        await asyncio.sleep(0.1)


@dataclass
class Subject:
    """One venue under the contract, with the market it trades and what its sink received."""

    id: str
    venues: Venues
    leg: Leg
    venue: ExecutionVenue
    market: str
    spec: MarketSpec
    book: OrderBook
    account_events: list[Any]
    market_events: list[MarketEvent]
    accounts: AccountBook | None
    next_id: Callable[[], int]
    tasks: dict[str, asyncio.Task[Any]]
    sink: Callable[[MarketEvent], None]

    def updates(self, client_id: int) -> list[OrderUpdate]:
        return [e for e in self.account_events if isinstance(e, OrderUpdate) and e.client_id == client_id]

    def fills(self, client_id: int) -> list[Fill]:
        return [e for e in self.account_events if isinstance(e, Fill) and e.client_id == client_id]

    def size(self) -> Decimal:
        ask = self.book.best_ask()
        assert ask is not None
        steps = (NOTIONAL_USD / ask.price / self.spec.step_size).to_integral_value(ROUND_CEILING)
        return max(steps * self.spec.step_size, self.spec.min_order_size)

    def resting(self, side: Side = Side.BUY) -> OrderRequest:
        """A post-only order 5% away from the touch: it rests."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is not None and ask is not None
        raw = bid.price * Decimal("0.95") if side is Side.BUY else ask.price * Decimal("1.05")
        price = (raw / self.spec.tick_size).to_integral_value(ROUND_FLOOR) * self.spec.tick_size
        return OrderRequest(self.next_id(), self.market, side, self.size(), price, TimeInForce.POST_ONLY)

    def crossing(self, side: Side = Side.BUY) -> OrderRequest:
        """An IOC order 2% through the touch: it fills."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is not None and ask is not None
        if side is Side.BUY:
            price = (ask.price * Decimal("1.02") / self.spec.tick_size).to_integral_value(ROUND_CEILING)
        else:
            price = (bid.price * Decimal("0.98") / self.spec.tick_size).to_integral_value(ROUND_FLOOR)
        return OrderRequest(self.next_id(), self.market, side, self.size(), price * self.spec.tick_size,
                            TimeInForce.IOC)

    async def restart_feed(self) -> None:
        """Stop and restart the leg's market-data stream (the paper venue's 'reconnect')."""
        task = self.tasks.pop("feed")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert self.leg.market_data is not None
        self.tasks["feed"] = asyncio.create_task(self.leg.market_data.run(self.sink))

    async def drop_streams(self) -> None:
        """The venue drops every stream connection of ours, as a real one does on a restart."""
        if self.id == "paper":
            await self.restart_feed()
        elif self.id == "dydx-sim":
            admin = self.venues.perp.status["sim"]["admin"]
            async with httpx.AsyncClient() as client:
                response = await client.post(f"{admin}/scenario", json={"name": "ws_drop"})
                assert response.status_code == 200, response.text
        else:
            simulator = self.venues.perp.services[0]
            await simulator.binance.close_streams()


@pytest.fixture(params=list(VENUES), ids=list(VENUES))
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    name = request.param
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["BTC-USD"],
                    watchdog={"enabled": False}, **VENUES[name])
    metrics, clock = Metrics(), SystemClock()
    venues = await open_venues(settings, metrics, clock)
    leg = venues.hedge if name == "binance-sim" else venues.perp
    assert leg is not None and leg.market_data is not None
    market = next(iter(leg.specs))
    account_events: list[Any] = []
    market_events: list[MarketEvent] = []
    leg.execution.set_account_sink(account_events.append)

    def sink(event: MarketEvent) -> None:
        market_events.append(event)
        # The in-process feed's book events are applied by its consumer (the engine, here the
        # test); the adapters keep their shared books themselves.
        if name == "paper" and isinstance(event, BookSnapshot) and event.market in leg.books:
            leg.books[event.market].apply_snapshot(event)
        elif name == "paper" and isinstance(event, BookDelta) and event.market in leg.books:
            leg.books[event.market].apply_delta(event)

    counter = iter(range(1_000, 1_000_000))
    tasks = {f"service{i}": asyncio.create_task(s.run()) for i, s in enumerate(venues.perp.services)}
    tasks["feed"] = asyncio.create_task(leg.market_data.run(sink))
    if leg is not venues.perp and venues.perp.market_data is not None:
        tasks["perp_feed"] = asyncio.create_task(venues.perp.market_data.run(lambda event: None))
    book = leg.books[market]
    subject = Subject(name, venues, leg, leg.execution, market, leg.specs[market], book, account_events,
                      market_events, open_accounts(settings, venues, metrics, clock), lambda: next(counter),
                      tasks, sink)
    try:
        await eventually(lambda: book.best_bid() is not None and book.best_ask() is not None)
        yield subject
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await venues.close()


async def test_place_lookup_cancel(subject: Subject) -> None:
    venue = subject.venue
    order = subject.resting()
    await venue.place(order)
    await open_ids_eventually(venue, lambda ids: order.client_id in ids)
    assert await venue.cancel(order.client_id) is True
    await open_ids_eventually(venue, lambda ids: order.client_id not in ids)
    await eventually(lambda: any(u.status is OrderStatus.CANCELLED for u in subject.updates(order.client_id)),
                     poke=venue.sweep_account)
    assert await venue.cancel(999_999) is False  # never placed: not listed, nothing was sent


async def test_cancel_many_given_then_all_open(subject: Subject) -> None:
    venue = subject.venue
    a, b, c = subject.resting(), subject.resting(), subject.resting(Side.SELL)
    for order in (a, b, c):
        await venue.place(order)
    await open_ids_eventually(venue, lambda ids: {a.client_id, b.client_id, c.client_id} <= ids)
    cancelled, errors = await venue.cancel_many([a.client_id, b.client_id])
    assert (sorted(cancelled), errors) == (sorted([a.client_id, b.client_id]), [])
    ids = await open_ids_eventually(venue, lambda ids: not ids & {a.client_id, b.client_id})
    assert c.client_id in ids  # not asked for: still working
    cancelled, errors = await venue.cancel_many([], all_open=True)
    assert (cancelled, errors) == ([c.client_id], [])
    await open_ids_eventually(venue, lambda ids: not ids)


async def test_a_fill_reaches_the_sink_and_moves_the_position(subject: Subject) -> None:
    venue = subject.venue
    before = (await venue.positions()).get(subject.market, Decimal(0))
    order = subject.crossing()
    await venue.place(order)
    await eventually(lambda: any(u.status is OrderStatus.FILLED for u in subject.updates(order.client_id)),
                     poke=venue.sweep_account)
    fills = subject.fills(order.client_id)
    assert sum((f.gross_size for f in fills), Decimal(0)) == order.size
    booked = sum((f.size for f in fills), Decimal(0))  # less a commission withheld in the base
    assert all(f.side is Side.BUY and 0 < f.price <= order.price for f in fills)
    assert len({f.fill_id for f in fills}) == len(fills)

    async def moved() -> Decimal:
        deadline = time.monotonic() + WAIT_SECS
        while True:
            delta = (await venue.positions()).get(subject.market, Decimal(0)) - before
            if delta or time.monotonic() > deadline:
                return delta
            await asyncio.sleep(0.1)

    # What the fills book is what the venue's position (a spot balance: net of commission) moved by.
    assert await moved() == booked


async def test_account_snapshot_and_equity(subject: Subject) -> None:
    venue = subject.venue
    order = subject.resting()
    await venue.place(order)
    await open_ids_eventually(venue, lambda ids: order.client_id in ids)
    snapshot = await venue.account_snapshot()
    assert order.client_id in snapshot.open_ids
    assert snapshot.positions is not None
    if subject.accounts is None:  # paper trading: the configured equity is the truth, no venue reads
        assert subject.id == "paper"
    else:
        state = await subject.accounts.sources[venue.name].read()
        assert state.venue == venue.name
        assert state.equity_usd > 0 and state.margin_use >= 0
        assert state.fees is not None
    cancelled, errors = await venue.cancel_many([order.client_id])
    assert (cancelled, errors) == ([order.client_id], [])


async def test_streams_recover_after_the_venue_drops_them(subject: Subject) -> None:
    venue = subject.venue
    await subject.drop_streams()
    seen = len(subject.market_events)
    await eventually(lambda: len(subject.market_events) > seen + 5)  # market data flows again
    order = subject.crossing()
    await venue.place(order)
    # The fill arrives on the re-opened account stream: no REST sweep here.
    await eventually(lambda: any(u.status is OrderStatus.FILLED for u in subject.updates(order.client_id)))
    assert sum((f.gross_size for f in subject.fills(order.client_id)), Decimal(0)) == order.size
    resting = subject.resting()
    await venue.place(resting)
    await open_ids_eventually(venue, lambda ids: resting.client_id in ids)
    assert await venue.cancel(resting.client_id) is True
