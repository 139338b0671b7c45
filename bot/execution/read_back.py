"""Read-back of the IOC children a venue has not answered: their answer was lost.

A venue that answers orders on a stream after `place` returned (Binance's user data stream) may
never deliver that answer: the stream is down or dropped a frame, or the place timed out. IOC
answers come within a second; until read, such a child counts as working and the hedge waits on
it. After UNANSWERED_NS (then again UNANSWERED_NS after the last read) it is read back from the
venue: the venue's sweep reports its fills and state to the account sink, and one the venue does
not know NEVER_ARRIVED_NS after it was sent never reached it and is closed as rejected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, cast

import structlog

from bot.clock import NS_PER_SEC
from bot.domain import ZERO, OrderStatus, TimeInForce
from bot.errors import BotError
from bot.execution.state import OrderState
from bot.venues.ports import ExecutionVenue, OrderQuery

if TYPE_CHECKING:
    from bot.execution.orders import Child

log = structlog.get_logger("orders")
UNANSWERED_NS = 10_000_000_000
# A signed order request expires on the venue's side (Binance's recvWindow: 5 s by default, 60 s
# at most): one the venue still does not know this long after it was sent never reached it.
NEVER_ARRIVED_NS = 65_000_000_000
READ_BACK_TIMEOUT_SECS = 2.0


async def read_back_unanswered(venue: ExecutionVenue, market: str, children: Iterable[Child], now_ns: int,
                               transition: Callable[[int, OrderStatus, Decimal, str], None],
                               state_of: Callable[[int], OrderState | None]) -> None:
    """Read back from `venue` (one that `reads_orders` only) the open IOC `children` on `market`
    it has not answered for UNANSWERED_NS; one it does not know NEVER_ARRIVED_NS after it was
    sent is closed as rejected (`transition`). Each is logged (`order_read_back`) with its state
    (`state_of`); a child left open is read again later."""
    if not venue.capabilities.reads_orders:
        return  # (paper: every answer went to the sink already)
    stale = [c for c in children if c.is_open and c.tif is TimeInForce.IOC
             and now_ns - max(c.sent_ns, c.read_ns) >= UNANSWERED_NS]
    if not stale:
        return
    unknown: set[int] = set()  # client ids the venue does not know
    for child in stale:
        child.read_ns = now_ns  # a venue that does not answer is asked again UNANSWERED_NS later
    try:  # bounded: the engine's tick (the perp leg too) waits on it
        async with asyncio.timeout(READ_BACK_TIMEOUT_SECS):
            await venue.sweep_account()
            query = cast(OrderQuery, venue).query_order
            for child in stale:
                if child.is_open and await query(child.client_id) is None:
                    unknown.add(child.client_id)
    except (BotError, TimeoutError) as exc:
        log.warning("order_read_back_failed", market=market, error=str(exc) or type(exc).__name__,
                    client_order_ids=[c.client_id for c in stale])
        return
    for child in stale:
        age_secs = (now_ns - child.sent_ns) / NS_PER_SEC
        known = child.client_id not in unknown
        if not known and now_ns - child.sent_ns >= NEVER_ARRIVED_NS:
            transition(child.client_id, OrderStatus.REJECTED, ZERO, "not at the venue")
            cast(OrderQuery, venue).forget_order(child.client_id)
        state = state_of(child.client_id)
        assert state is not None  # recorded before it was sent
        log.warning("order_read_back", client_order_id=child.client_id, market=market, age_secs=age_secs,
                    status=state.status.value, filled=str(state.filled), known=known)
