"""The exit path: cancel what works, then listen until the venues confirm it, then sweep once more.

Streams are gone by the time the daemon exits (their tasks end with the TaskGroup), so the
venues' answers are read over REST: each venue's `sweep_account` reports the states of our
orders (and, on dYdX, the recent fills) to the same account sink the streams feed. A fill found
here is therefore recorded, with its hedge obligation, exactly like one from the stream; the
store closes only after that. A failed cancel does not stop the others; it is logged and the
final sweep still runs. What the store still holds open after that (an order no cancel went to
because the venue no longer listed it: a predecessor's child that expired, an order whose
answer was lost) is reconciled against the venue as on start, so a clean exit leaves no order
open in the store that the venue has closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bot.clock import SYSTEM_CLOCK, Clock, monotonic_secs
from bot.errors import BotError
from bot.execution.orders import OrderManager
from bot.store import Store

log = structlog.get_logger("exit")
SETTLE_POLL_SECS = 0.25


async def sweep(manager: OrderManager) -> None:
    """One REST sweep of a venue's account into its sink (venues without one: nothing to do)."""
    try:
        await manager.venue.sweep_account()
    except BotError as exc:
        log.warning("exit_sweep_failed", venue=manager.venue.name, error=str(exc))


async def cancel_and_settle(managers: Sequence[OrderManager], store: Store, settle_secs: float,
                            clock: Clock = SYSTEM_CLOCK,
                            reconcile: Callable[[], Awaitable[object]] | None = None) -> list[str]:
    """Cancel every open order of ours, wait up to `settle_secs` until each order a cancel went to
    is final in the store (sweeping meanwhile), then sweep once more; orders the store still holds
    open then go through `reconcile` (the start-up reconciliation). Returns the errors."""
    errors: list[str] = []
    sent: dict[str, set[int]] = {}
    for manager in managers:
        name = manager.venue.name
        try:
            cancelled, failed = await manager.cancel_all()
        except BotError as exc:  # the listing or the venue as a whole failed: still settle the rest
            cancelled, failed = [], [str(exc)]
        errors += [f"{name}: {e}" for e in failed]
        sent[name] = set(cancelled)
        if cancelled or failed:
            log.info("orders_cancelled_on_exit", venue=name, count=len(cancelled), errors=failed or None)
    deadline = monotonic_secs(clock) + settle_secs
    while monotonic_secs(clock) < deadline:
        waiting = [m for m in managers
                   if sent[m.venue.name] & {o.client_id for o in store.open_orders(m.venue.name)}]
        if not waiting:
            break
        await asyncio.sleep(SETTLE_POLL_SECS)
        for manager in waiting:
            await sweep(manager)
    for manager in managers:  # fills reported after the last state change (indexer lag)
        await sweep(manager)
    if reconcile is not None and store.open_orders():
        # Orders no cancel went to (no longer listed open, placed by a predecessor) and orders
        # still unsettled: the venue's final word on them, as a start would read it.
        try:
            await reconcile()
        except BotError as exc:
            errors.append(f"reconcile: {exc}")
    remaining = [o.client_id for o in store.open_orders()]
    if remaining or errors:
        log.error("orders_unsettled_on_exit", open_orders=remaining, errors=errors)
    return errors
