"""Read the Binance spot account's transfers since the last catch-up (IO; the rules are pure, in
bot.venues.binance.transfers).

A catch-up reads the deposit, withdrawal and universal transfer histories from the stored cursor
(`catch_up_start`) to the venue's time now, window by window (90 days for the first two, 7 for the
third, one request per type), page by page, and returns what they list with the cursor the next
one starts from (`next_cursor`). The cursor is kept in the store's meta (`CURSOR_KEY`, ms as
text) and moves only after a read that listed everything (`commit`): a failed read leaves it.

Request cost: per 90-day window one deposit and one withdrawal request (the withdrawal history
weighs 18,000 of the key's UID budget), per 7-day window one request per type (14, weight 1): a
catch-up over minutes sends 16, one after 6 months down 2 x 3 + 14 x 26 = 370. Each goes
through the client's weight budget; a `RateLimited` wait of at most a minute (the weight window)
is waited out here, a longer one (a ban) fails the catch-up.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import structlog

from bot.errors import RateLimited
from bot.store.meta import MetaStore
from bot.venues.binance import wire
from bot.venues.binance.limits import WEIGHT_WINDOW_MS
from bot.venues.binance.rest import BinanceRest
from bot.venues.binance.transfers import (
    HISTORY_PAGE_ROWS,
    HISTORY_SPAN_MS,
    MAX_PAGES,
    SPOT_TYPES,
    TRANSFER_PAGE_ROWS,
    TRANSFER_SPAN_MS,
    catch_up_start,
    windows,
)

log = structlog.get_logger("binance")
CURSOR_KEY = "binance_transfer_cursor"
MAX_RATE_WAITS = 5  # weight-window waits one catch-up sits out before it gives up
T = TypeVar("T")


@dataclass(slots=True)
class HistoryRead:
    """What one catch-up listed over [start_ms, end_ms]: raw universal transfer rows, and whether a
    pager was cut short (the cursor then stays at `start_ms`)."""

    start_ms: int
    end_ms: int
    deposits: list[wire.DepositRow] = field(default_factory=list)
    withdrawals: list[wire.WithdrawRow] = field(default_factory=list)
    transfers: list[bytes] = field(default_factory=list)
    is_cut: bool = False
    requests: int = 0  # answered


class TransferCursor:
    """The catch-up's cursor: in the store when the venue has one (`use_store`), else in memory."""

    def __init__(self) -> None:
        self._store: MetaStore | None = None
        self._ms: int | None = None

    def use_store(self, store: MetaStore) -> None:
        self._store = store

    def get(self) -> int | None:
        """The stored cursor in ms; None on a first start (or an unreadable one, logged)."""
        if self._store is None:
            return self._ms
        text = self._store.meta_get(CURSOR_KEY)
        if text is None:
            return None
        if not text.isdigit() or len(text) > 16:
            log.error("transfer_cursor_unreadable", value=text[:40])
            return None
        return int(text)

    def commit(self, ms: int) -> None:
        """Move the cursor to `ms` (never back: an older catch-up finishing late changes nothing)."""
        old = self.get()
        if old is not None and ms <= old:
            return
        self._ms = ms
        if self._store is not None:
            self._store.meta_set(CURSOR_KEY, str(ms))


async def read_histories(rest: BinanceRest, cursor_ms: int | None) -> HistoryRead:
    """Everything the three histories list from the cursor's start to the venue's time now."""
    end = rest.server_ms()
    start, is_clipped = catch_up_start(cursor_ms, end)
    if is_clipped:
        assert cursor_ms is not None
        log.error("transfers_beyond_reach", venue="binance", cursor_ms=cursor_ms, read_from_ms=start,
                  unread_days=round((start - cursor_ms) / 86_400_000, 1))
    read = HistoryRead(start, end)
    for first, last in windows(start, end, HISTORY_SPAN_MS):
        read.deposits += await _offset_pages(rest, read, partial(rest.deposit_history, first, last))
        read.withdrawals += await _offset_pages(rest, read, partial(rest.withdraw_history, first, last))
    for kind in SPOT_TYPES:
        for first, last in windows(start, end, TRANSFER_SPAN_MS):
            read.transfers += await _transfer_pages(rest, read, kind, first, last)
    return read


async def _offset_pages(rest: BinanceRest, read: HistoryRead, page: Callable[[int], Awaitable[list[T]]]
                        ) -> list[T]:
    rows: list[T] = []
    for _ in range(MAX_PAGES):
        got = await _paced(rest, read, partial(page, len(rows)))
        rows += got
        if len(got) < HISTORY_PAGE_ROWS:
            return rows
    read.is_cut = True
    log.error("transfer_pages_cut", venue="binance", rows=len(rows))
    return rows


async def _transfer_pages(rest: BinanceRest, read: HistoryRead, kind: str, first: int, last: int
                          ) -> list[bytes]:
    rows: list[bytes] = []
    for current in range(1, MAX_PAGES + 1):
        page = await _paced(rest, read, partial(rest.transfer_history, kind, first, last, current,
                                                TRANSFER_PAGE_ROWS))
        rows += [bytes(raw) for raw in page.rows]
        if len(page.rows) < TRANSFER_PAGE_ROWS or current * TRANSFER_PAGE_ROWS >= page.total:
            return rows
    read.is_cut = True
    log.error("transfer_pages_cut", venue="binance", type=kind, rows=len(rows))
    return rows


async def _paced(rest: BinanceRest, read: HistoryRead, call: Callable[[], Awaitable[T]]) -> T:
    """One request; a weight-budget wait within one weight window is sat out, up to a few times."""
    for attempt in range(MAX_RATE_WAITS + 1):
        try:
            answer = await call()
        except RateLimited as exc:
            if attempt == MAX_RATE_WAITS or exc.retry_after_secs * 1000 > WEIGHT_WINDOW_MS:
                raise
            log.info("transfer_catch_up_paced", venue="binance", wait_secs=exc.retry_after_secs)
            await rest.clock.sleep(math.ceil(exc.retry_after_secs))
            continue
        read.requests += 1
        return answer
    raise AssertionError("unreachable")  # pragma: no cover
