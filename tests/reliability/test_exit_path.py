"""Orders at the edges of a daemon's life (issue 16): an order the running process did not place
is still cancelled, and the store learns its end before the process exits.

A "predecessor" here is the test itself, signing with the daemon's key and recording the order
in the daemon's store as the bot's, exactly what a SIGKILLed daemon leaves behind: a resting
post-only child (short-term, GoodTilBlock 20 blocks ahead) that the store knows and no running
process placed. Its end must be a cancel (CANCELLED), not an expiry: a slow daemon fails the
test rather than passing it by waiting.
"""

from __future__ import annotations

import asyncio
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from reliability.test_daemon_faults import Venue, events, external_sim, live_env  # noqa: F401
from support.daemon import Daemon
from support.wait import eventually

from bot.domain import OrderRequest, OrderStatus, Side, TimeInForce
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway


async def _rest_post_only(ep: dict[str, Any], db_path: Path) -> int:
    """Place one post-only bid far below the touch with the bot's key; record it as the bot's."""
    gateway = NodeGateway(ep["node_grpc"], ep["chain_id"], ep["accounts"]["dydx"]["mnemonic"], secure=False)
    venue = DydxVenue(IndexerRest(ep["indexer_rest"]), ep["indexer_ws"], ("BTC-USD",), Metrics(),
                      gateway=gateway, account=(gateway.owner, 0), gtb_offset_blocks=20)
    try:
        await venue.load_markets()
        bid, _ = await venue.touch("BTC-USD")
        assert bid is not None
        with Store.open(db_path) as store:
            order = OrderRequest(store.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.01"),
                                 (bid * Decimal("0.8")).quantize(Decimal(1)), TimeInForce.POST_ONLY)
            store.record_order("dydx", order, time.time_ns())
        await venue.place(order)
    finally:
        await venue.close()
    return order.client_id


def _status(db_path: Path, client_id: int) -> OrderStatus:
    with Store.open(db_path) as store:
        order = store.get_order(client_id)
    assert order is not None
    return order.status


def _reconciled(daemon_factory, ep: dict[str, Any]) -> Daemon:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(**live_env(ep)).start()
    eventually(lambda: events(daemon, "reconciled"), 20)
    return daemon  # type: ignore[no-any-return]


def test_sigkill_with_a_resting_child_then_restart_and_sigterm_leaves_no_order(
        daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    venue = Venue(external_sim)
    first = _reconciled(daemon_factory, external_sim)
    db = first.state_dir / "perpbot.sqlite"
    first.stop(signal.SIGKILL)
    resting = asyncio.run(_rest_post_only(external_sim, db))
    assert resting in venue.open_ids()

    second = _reconciled(daemon_factory, external_sim)
    assert second.stop() == 0, second.log()[-2000:]
    assert resting not in venue.open_ids()
    assert venue.open_ids() == []
    assert _status(db, resting) is OrderStatus.CANCELLED  # cancelled, not left to expire


def test_sigterm_cancels_an_order_this_process_did_not_place_and_records_its_end(
        daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    venue = Venue(external_sim)
    daemon = _reconciled(daemon_factory, external_sim)
    db = daemon.state_dir / "perpbot.sqlite"
    resting = asyncio.run(_rest_post_only(external_sim, db))  # after start-up reconciliation
    assert daemon.stop() == 0, daemon.log()[-2000:]
    assert venue.open_ids() == []
    # The exit path read the venue's answer before closing the store.
    assert _status(db, resting) is OrderStatus.CANCELLED
