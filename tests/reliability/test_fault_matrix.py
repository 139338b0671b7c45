"""The fault matrix at the order-manager level: fault -> injection -> invariants.

Each row runs a TWAP parent through the real dYdX adapter against the simulator's protocol
servers (see rig.py), injects one fault while it works, lets the system heal, and asserts the
invariants it names. Rows marked `after_restart` assert them only after start-up reconciliation
(`bot.recovery`), as a restarted daemon would; the others must hold on the running system.

Daemon-level faults (SIGKILL at random points, SIGTERM during a TWAP) are in test_daemon_faults.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from reliability.invariants import (
    assert_exposure_within,
    assert_no_duplicate_client_id,
    assert_no_lost_fill,
    assert_no_open_orders,
    assert_positions_match,
)
from reliability.rig import Rig, open_rig
from support.clock import OffsetClock

from bot.clock import NS_PER_SEC
from bot.domain import OrderRequest, OrderStatus, Side, TimeInForce
from bot.execution.exit import cancel_and_settle
from bot.venues.dydx.node import NodeGateway
from bot.venues.dydx.orders import to_venue_order

ALL = ("no_duplicate_client_id", "positions_match", "no_open_order", "exposure_within_caps", "no_lost_fill")


def check(rig: Rig, name: str) -> None:
    store = rig.store
    if name == "no_duplicate_client_id":
        assert_no_duplicate_client_id(rig.venue.sent, store)
    elif name == "positions_match":
        assert_positions_match(store, rig.venue_positions())
    elif name == "no_open_order":
        assert_no_open_orders(store, rig.venue_open())
    elif name == "exposure_within_caps":
        assert_exposure_within(store.fills(), rig.caps)
    elif name == "no_lost_fill":
        assert_no_lost_fill(store, rig.venue_fills())
    else:
        raise AssertionError(f"unknown invariant {name}")


# ---- injections: start the work, inject the fault, wait for the parent ---------------------------

async def first_child_sent(rig: Rig) -> None:
    await rig.until(lambda: rig.venue.sent, 5.0, "first child sent")


def scenario_during_taker_twap(name: str, duration_s: float = 60.0, **params: Any
                               ) -> Callable[[Rig], Awaitable[None]]:
    async def inject(rig: Rig) -> None:
        rig.twap("BTC-USD", Side.BUY, "0.05")
        await first_child_sent(rig)
        rig.trigger(name, duration_s, **params)
        await rig.parent_done("BTC-USD")

    return inject


async def ws_drop(rig: Rig) -> None:
    connections = rig.venue.feed.connections if rig.venue.feed else 0
    await scenario_during_taker_twap("ws_drop")(rig)
    await rig.until(lambda: rig.venue.feed and rig.venue.feed.connections > connections, 5.0, "reconnect")


def book_fault(name: str) -> Callable[[Rig], Awaitable[None]]:
    async def inject(rig: Rig) -> None:
        resyncs = rig.venue.feed.resyncs if rig.venue.feed else 0
        await scenario_during_taker_twap(name)(rig)
        await rig.until(lambda: rig.venue.feed and rig.venue.feed.resyncs > resyncs, 5.0, "book resync")

    return inject


def bad_frame(kind: str) -> Callable[[Rig], Awaitable[None]]:
    async def inject(rig: Rig) -> None:
        feed = rig.venue.feed
        assert feed is not None
        healed = feed.resyncs + feed.connections
        await scenario_during_taker_twap("ws_bad_frame", kind=kind)(rig)
        assert rig.errors == [], rig.errors  # handled inside the feed: nothing escaped
        await rig.until(lambda: feed.resyncs + feed.connections > healed, 5.0, "resync or reconnect")
        await rig.until(lambda: all(b.best_bid() for b in rig.venue.books.values()), 5.0, "books back")

    return inject


async def passive_stall_cancel(rig: Rig) -> None:
    """The stream stalls as a passive child goes out: its fate (a cancel after the passive timeout,
    or a fill) must reach the store while the stall lasts (the known gap: it waited forever)."""
    rig.twap("BTC-USD", Side.BUY, "0.05", passive=True)
    await first_child_sent(rig)
    rig.trigger("ws_stall", 8.0)
    cid = rig.venue.sent[0]
    await rig.until(lambda: (o := rig.store.get_order(cid)) is not None and not o.status.is_open, 6.0,
                    f"child {cid} closed in the store while the stream is stalled")
    assert rig.sim.exchange.scenario.ws_stall
    await rig.parent_done("BTC-USD")
    rig.heal("ws_stall")


def rest_burst(name: str, count: int) -> Callable[[Rig], Awaitable[None]]:
    async def inject(rig: Rig) -> None:
        rig.twap("BTC-USD", Side.SELL, "0.05")
        await rig.parent_done("BTC-USD")
        await rig.settle()
        rig.trigger(name, count=count, retry_after_secs=0.2)
        attempts = rig.venue.rest.attempts
        report = await rig.reconcile()  # every read is retried through the burst
        assert rig.venue.rest.attempts - attempts > 3, "the reconcile reads ran into the burst"
        assert report["position_mismatches"] == {}

    return inject


async def grpc_unavailable(rig: Rig) -> None:
    rig.twap("BTC-USD", Side.BUY, "0.06")
    await first_child_sent(rig)
    rig.trigger("grpc_unavailable", 1.5)
    await rig.parent_done("BTC-USD")
    unknown = [o for o in rig.store.open_orders() if o.status is OrderStatus.NEW]
    assert unknown, "some children went out while the node was unreachable (state unknown)"


def order_rejects(code: int, passive: bool) -> Callable[[Rig], Awaitable[None]]:
    async def inject(rig: Rig) -> None:
        rig.trigger("order_reject", code=code, count=2)
        rig.twap("ETH-USD", Side.BUY, "0.6", passive=passive)
        await rig.parent_done("ETH-USD")
        rejected = [cid for cid in rig.venue.sent
                    if (o := rig.store.get_order(cid)) and o.status is OrderStatus.REJECTED]
        assert len(rejected) >= 2, rejected  # the injected two (a real cross may add one)

    return inject


async def partial_fill(rig: Rig) -> None:
    """Another taker empties the book ahead of one IOC child: it fills about half, the parent goes on."""
    rig.trigger("front_run", leave="0.5")
    rig.twap("ETH-USD", Side.BUY, "1.0")
    await rig.parent_done("ETH-USD")
    child = rig.store.get_order(rig.venue.sent[0])
    assert child is not None and 0 < child.filled_size < child.size, child
    assert sum((f.size for f in rig.store.fills("ETH-USD")), Decimal(0)) <= Decimal("1.0")


async def sqlite_busy(rig: Rig, hold_secs: float) -> None:
    """Another process holds the database's write lock while the TWAP works."""
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        conn = sqlite3.connect(rig.store_path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(hold_secs)
        conn.execute("COMMIT")
        conn.close()

    rig.twap("BTC-USD", Side.BUY, "0.05")
    await first_child_sent(rig)
    thread = threading.Thread(target=holder)
    thread.start()
    locked.wait(5)
    await asyncio.sleep(hold_secs)
    release.set()
    await asyncio.to_thread(thread.join)
    await rig.parent_done("BTC-USD")


async def sqlite_busy_briefly(rig: Rig) -> None:
    await sqlite_busy(rig, 1.5)
    assert rig.errors == [], rig.errors  # the busy timeout absorbed it


async def sqlite_locked(rig: Rig) -> None:
    # Held beyond the busy timeout, shortened from 5 s to 0.3 s to keep the case quick: writes fail.
    rig.store._conn.execute("PRAGMA busy_timeout = 300")
    await sqlite_busy(rig, 2.0)
    assert any(isinstance(e, sqlite3.OperationalError) for e in rig.errors), rig.errors


async def disk_full(rig: Rig) -> None:
    """The state volume is full: SQLite's max_page_count pinned at the file's size, so the first
    write that needs a new page (here: the orders or fills table outgrowing its first page)
    fails with SQLITE_FULL, "database or disk is full"."""
    conn = rig.store._conn  # the store's own connection: max_page_count is per connection
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    rig.twap("BTC-USD", Side.BUY, "0.4")
    try:
        await rig.until(lambda: any("full" in str(e) for e in rig.errors), 8.0, "a write hit the full disk")
    finally:
        conn.execute("PRAGMA max_page_count = 1073741823")
    await rig.parent_done("BTC-USD")


async def duplicated_fills(rig: Rig) -> None:
    rig.trigger("account_duplicate", 60)
    rig.twap("BTC-USD", Side.BUY, "0.05")
    await rig.parent_done("BTC-USD")


async def reordered_fills(rig: Rig) -> None:
    rig.trigger("account_reorder", 60)
    rig.twap("BTC-USD", Side.SELL, "0.05")
    await rig.parent_done("BTC-USD")
    rig.heal("account_fault")  # releases the message held back


async def clock_skew(rig: Rig) -> None:
    rig.twap("ETH-USD", Side.BUY, "0.6", passive=True)
    rig.twap("BTC-USD", Side.SELL, "0.05")
    await rig.parent_done("BTC-USD")
    await rig.parent_done("ETH-USD")


async def kill_while_stalled(rig: Rig) -> None:
    """The kill path runs while the stream is stalled: the store still learns every order's end."""
    rig.twap("ETH-USD", Side.BUY, "1.0", passive=True)
    await first_child_sent(rig)
    rig.trigger("ws_stall", 30.0)
    await rig.orders.cancel_all()
    await rig.until(lambda: not rig.venue_open(), 3.0, "nothing working at the venue")
    await rig.until(lambda: not rig.store.open_orders(), 6.0, "the store closes them without the stream")


async def fill_during_shutdown(rig: Rig) -> None:
    """A resting child fills after the daemon stopped listening (its streams end first on exit):
    the exit path's sweeps must record the fill and the order's end before the store closes.
    ETH-USD is quiet in this case (see rig.market_params): at the touch on a moving market the
    passive child often filled before it was seen resting, so only the gap below may fill it."""
    rig.twap("ETH-USD", Side.BUY, "1.0", passive=True)
    await first_child_sent(rig)
    cid = rig.venue.sent[0]
    await rig.until(lambda: cid in rig.venue_open(), 3.0, "child resting")
    await rig.stop_services()
    known = set(rig.venue_fills())
    rig.trigger("price_gap", market="ETH-USD", pct=-3)  # the market trades through the bid
    await rig.until(lambda: set(rig.venue_fills()) - known, 5.0, "the resting child filled")
    assert not set(rig.venue_fills()) <= {f.fill_id for f in rig.store.fills()}  # unseen so far
    await cancel_and_settle([rig.orders], rig.store, settle_secs=5.0)


async def sequence_mismatch_during_kill(rig: Rig) -> None:
    """Another signer uses the key (`kill --direct` beside a hung daemon) after our long-term
    order went out: the kill's cancel meets a sequence mismatch, is re-signed and goes through."""
    spec = rig.venue.specs()["ETH-USD"]
    bid = rig.venue.books["ETH-USD"].best_bid()
    assert bid is not None
    price = (bid.price * Decimal("0.9") / spec.tick_size).to_integral_value() * spec.tick_size
    resting = OrderRequest(rig.orders.next_client_id(), "ETH-USD", Side.BUY, Decimal("0.1"), price,
                           TimeInForce.GTT)
    await rig.orders.submit(resting)
    await rig.until(lambda: resting.client_id in rig.venue_open(), 3.0, "long-term order resting")
    other = NodeGateway(rig.sim.node.target, rig.sim.config.chain_id, rig.sim.accounts["dydx"]["mnemonic"],
                        secure=False)
    try:
        theirs = to_venue_order(replace(resting, client_id=resting.client_id + 10**6),
                                rig.venue.params["ETH-USD"], 0, int(time.time()))
        await other.place(theirs)  # two stateful txs: the chain's sequence moves on by two
        await other.cancel(theirs, good_til_block_time=int(time.time()) + 60)
    finally:
        other.close()
    cancelled, errors = await rig.orders.cancel_all()
    assert errors == [] and resting.client_id in cancelled, errors
    await rig.until(lambda: not rig.venue_open(), 3.0, "nothing working at the venue")


@dataclass(frozen=True)
class Case:
    fault: str
    inject: Callable[[Rig], Awaitable[None]]
    invariants: tuple[str, ...] = ALL
    after_restart: bool = False  # asserted after start-up reconciliation
    rig: dict[str, Any] = field(default_factory=dict)


MATRIX = [
    Case("ws_drop", ws_drop),
    Case("ws_silent_stall", scenario_during_taker_twap("ws_stall", 2.0)),
    Case("ws_stall_passive_cancel_lost", passive_stall_cancel),
    Case("message_gap", book_fault("book_gap")),
    Case("crossed_book", book_fault("book_crossed")),
    Case("malformed_frame", bad_frame("garbage")),
    Case("oversized_frame", bad_frame("oversized")),
    Case("wrong_typed_frame", bad_frame("wrong_type")),
    Case("http_429_burst", rest_burst("http_429", 3), after_restart=True),
    Case("http_5xx_burst", rest_burst("http_5xx", 4), after_restart=True),
    Case("grpc_unavailable", grpc_unavailable, after_restart=True),
    Case("order_rejects_undercollateralized", order_rejects(3007, passive=False)),
    Case("order_rejects_post_only_would_cross", order_rejects(2003, passive=True)),
    Case("partial_fills", partial_fill),
    Case("duplicated_fills", duplicated_fills),
    Case("out_of_order_fills", reordered_fills),
    Case("clock_skew", clock_skew,
         rig={"sim_clock": OffsetClock(90 * NS_PER_SEC), "bot_clock": OffsetClock(-45 * NS_PER_SEC)}),
    Case("sqlite_busy", sqlite_busy_briefly),
    Case("sqlite_locked", sqlite_locked, after_restart=True),
    Case("disk_full", disk_full, after_restart=True, rig={"twap_slices": 80, "twap_duration_secs": 4.0}),
    Case("kill_with_stalled_stream", kill_while_stalled, ("no_open_order", "no_duplicate_client_id")),
    Case("sequence_mismatch_during_kill", sequence_mismatch_during_kill,
         ("no_open_order", "no_duplicate_client_id")),
    Case("fill_during_shutdown", fill_during_shutdown, rig={"quiet": ("ETH-USD",)}),
]


@pytest.mark.parametrize("case", MATRIX, ids=[c.fault for c in MATRIX])
async def test_fault(case: Case, tmp_path: Path) -> None:
    async with open_rig(tmp_path, **case.rig) as rig:
        await case.inject(rig)
        await rig.settle(store_closed=not case.after_restart)
        if case.after_restart:
            await rig.reconcile()
        for name in case.invariants:
            check(rig, name)
