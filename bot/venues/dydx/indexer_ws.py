"""The dYdX indexer WebSocket feed: one connection, subscriptions as state, self-healing books.

Liveness and integrity, in the order they are checked:
- the websockets reconnect iterator retries failed connects with backoff; because that backoff
  resets after every handshake, a session shorter than `min_session_secs` adds our own
  growing delay before the next attempt (a server that accepts then drops us at once);
- protocol pings are answered by the library; the server pings every 30 s;
- per-channel maximum silence: a socket that stays open but stops delivering a channel gets
  that channel resubscribed, and a connection where every checked channel is silent is closed;
- message ids among data frames must rise by one (plus one per subscribe/unsubscribe we sent);
  a gap or a step back resyncs every order book;
- a book that is crossed after an update, or a message that does not parse, resyncs.
A resync is unsubscribe + subscribe: the `subscribed` frame carries a fresh snapshot.

The order book hot path. `handle_frame` (sync, no IO) does all the per-frame work; `_on_raw`
only performs the resync it asks for. Order book frames are decoded in one pass (the decoder
of `FeedParser.parse_book`) and their raw (price, size) strings applied straight to the shared
`OrderBook` (`apply_book_frame` -> `OrderBook.apply_level_updates`): no BookLevel/BookDelta is
built to keep the books. Every other frame, and any book frame the one-pass decoder rejects,
goes through `FeedParser.parse` as before.

How consumers learn that a book changed (the books are shared, so the feed's copy is the one
the engine and a paper venue read):
- default (`on_book_changed=None`): the sink receives the same events as before, a
  BookSnapshot per snapshot and a BookDelta per update entry. They are built only after the
  book is updated, from the level cache (no second parse), for consumers that keep their own
  book or record the stream. Building them costs about as much as the book path itself.
- `on_book_changed=callback`: the feed calls `callback(market, ts_recv)` once per applied
  order book frame (snapshot or update) instead of building book events; nothing
  book-related goes to the sink. This is for consumers that read the shared books (the
  engine: "book changed, sample depth and evaluate when due"). Events of other channels go
  to the sink in both modes. A consumer that wants the levels of an update after all can
  still get them from `book_events(frame, ts_recv)`: the BookDelta is built only when asked.
A frame whose book is not in `books` goes to the sink as domain events in both modes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bot.book import OrderBook
from bot.clock import NS_PER_SEC, SYSTEM_CLOCK, Clock
from bot.domain import BookDelta, BookSnapshot
from bot.errors import MalformedMessage
from bot.telemetry import Metrics
from bot.venues.dydx import wire
from bot.venues.dydx.parse import (
    BookFrame,
    DomainEvent,
    FeedParser,
    ParsedFrame,
    apply_book_frame,
    book_events,
)
from bot.venues.reconnect import SessionGuard

log = structlog.get_logger("dydx_ws")
DEFAULT_MAX_SILENCE_SECS: dict[str, float | None] = {
    "v4_block_height": 10.0,
    "v4_orderbook": 30.0,
    "v4_markets": 60.0,
    "v4_trades": None,
    "v4_subaccounts": None,
}


# What `handle_frame` asks of the connection: (reason, market); market None: every book.
Resync = tuple[str, str | None]
_RESYNC_MALFORMED: Resync = ("malformed", None)
_RESYNC_GAP: Resync = ("sequence_gap", None)
_decode_book_frame = wire.ORDERBOOK_FRAME.decode  # what FeedParser.parse_book does, minus a call


@dataclass(slots=True)
class Subscription:
    channel: str
    id: str | None
    batched: bool = False
    confirmed: bool = False
    last_message_ns: int = 0
    requested_ns: int = 0

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.channel, self.id)

    def request(self, kind: str) -> str:
        body: dict[str, object] = {"type": kind, "channel": self.channel}
        if self.id is not None:
            body["id"] = self.id
        if kind == "subscribe" and self.batched:
            body["batched"] = True
        return json.dumps(body)


class IndexerFeed:
    """Streams parsed indexer events into `sink`, keeping `books` whole, until cancelled."""

    name = "dydx_indexer_ws"

    def __init__(
        self,
        url: str,
        subscriptions: list[Subscription],
        books: dict[str, OrderBook],
        sink: Callable[[DomainEvent], None],
        metrics: Metrics,
        *,
        parser: FeedParser | None = None,
        max_silence_secs: dict[str, float | None] | None = None,
        min_session_secs: float = 5.0,
        max_backoff_secs: float = 30.0,
        check_interval_secs: float = 1.0,
        open_timeout_secs: float = 10.0,
        on_book_changed: Callable[[str, int], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.url = url
        self._monotonic_ns = clock.monotonic_ns
        self._now_ns = clock.now_ns
        self.subscriptions = {s.key: s for s in subscriptions}
        self._book_subs = {s.id: s for s in subscriptions if s.channel == "v4_orderbook" and s.id}
        self.books = books
        self._sink = sink
        self._metrics = metrics
        self.parser = parser or FeedParser()
        self._max_silence = {**DEFAULT_MAX_SILENCE_SECS, **(max_silence_secs or {})}
        self._min_session_secs = min_session_secs
        self._max_backoff_secs = max_backoff_secs
        self._check_secs = check_interval_secs
        self._open_timeout = open_timeout_secs
        self._on_book_changed = on_book_changed
        self._last_data_id = -1
        self._requests_since_data = 0
        self.connections = 0
        self.resyncs = 0

    async def run(self) -> None:
        """Connect, subscribe, stream; reconnect with backoff forever (until cancelled)."""
        guard = SessionGuard(self._min_session_secs, self._max_backoff_secs)
        async for ws in connect(self.url, open_timeout=self._open_timeout, max_size=8 * 2**20,
                                ping_interval=None, compression=None):
            guard.started()
            self.connections += 1
            try:
                await self._session(ws)
            except ConnectionClosed as exc:
                log.warning("feed_disconnected", url=self.url, code=exc.rcvd.code if exc.rcvd else None)
            finally:
                for sub in self.subscriptions.values():
                    sub.confirmed = False
            if delay := guard.ended():
                log.warning("feed_short_session", delay_secs=delay, sessions=guard.short_sessions)
                await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        self._last_data_id = -1
        self._requests_since_data = 0
        for sub in self.subscriptions.values():
            await self._send(ws, sub, "subscribe")
        while True:
            try:
                async with asyncio.timeout(self._check_secs):
                    raw = await ws.recv(decode=False)
            except TimeoutError:
                await self._check_silence(ws)
                continue
            await self._on_raw(ws, raw)

    async def _send(self, ws: ClientConnection, sub: Subscription, kind: str) -> None:
        await ws.send(sub.request(kind))
        self._requests_since_data += 1
        if kind == "subscribe":
            sub.requested_ns = self._monotonic_ns()
            sub.last_message_ns = sub.requested_ns

    async def _on_raw(self, ws: ClientConnection, raw: bytes) -> None:
        resync = self.handle_frame(raw, self._now_ns())
        if resync is not None:
            reason, market = resync
            if market is None:
                await self._resync_books(ws, reason)
            else:
                await self._resync(ws, self.subscriptions.get(("v4_orderbook", market)), reason)

    def handle_frame(self, raw: bytes, ts_recv: int) -> Resync | None:
        """Parse one frame, keep the books, feed the sink; return the resync it calls for, if any.

        Never raises on bad input: a frame that does not parse, or a level that is not a valid
        price/size, is counted and logged and asks for every book to be resynced.
        """
        # The order book path is inline (one call fewer per frame on the hottest path).
        try:
            frame = _decode_book_frame(raw)
        except msgspec.MsgspecError:  # another channel, or a book frame the structs refuse
            return self._on_other_frame(raw, ts_recv)
        except (ValueError, RecursionError) as exc:  # msgspec: invalid UTF-8, nesting too deep
            return self._malformed(MalformedMessage(f"{type(exc).__name__}: {exc}"), len(raw))
        market = frame.id
        is_snapshot = type(frame) is wire.OrderbookSubscribed
        sub = self._book_subs.get(market)
        if sub is not None:
            sub.last_message_ns = self._monotonic_ns()
            if is_snapshot:
                sub.confirmed = True
        if not is_snapshot and not self._check_sequence(frame):
            return _RESYNC_GAP
        book = self.books.get(market)
        try:  # a bad level raises MalformedMessage, from the book or from the events
            if book is not None:
                if not apply_book_frame(frame, book, ts_recv):
                    log.warning("feed_book_crossed", market=market)
                    return ("crossed", market)
                if self._on_book_changed is not None:
                    self._on_book_changed(market, ts_recv)
                    return None
            for event in book_events(frame, ts_recv):
                self._sink(event)
        except MalformedMessage as exc:
            return self._malformed(exc, len(raw))
        return None

    def _on_other_frame(self, raw: bytes, ts_recv: int) -> Resync | None:
        try:
            frame = self.parser.parse(raw, ts_recv)
        except MalformedMessage as exc:
            return self._malformed(exc, len(raw))
        except (ValueError, RecursionError) as exc:  # see the fuzz suite's known.py: not yet
            # MalformedMessage in parse.py (invalid UTF-8, deep nesting, bad times and digits)
            return self._malformed(MalformedMessage(f"{type(exc).__name__}: {exc}"), len(raw))
        if frame.type == "error":
            log.error("feed_error_frame", message=frame.error, channel=frame.channel or None,
                      id=frame.id or None)
            return None
        sub = self.subscriptions.get((frame.channel, frame.id or None)) or self.subscriptions.get(
            (frame.channel, None))
        if sub is not None:
            sub.last_message_ns = self._monotonic_ns()
            if frame.type == "subscribed":
                sub.confirmed = True
        if frame.type in ("channel_data", "channel_batch_data") and not self._check_sequence(frame):
            return _RESYNC_GAP
        return self._deliver(frame)

    def _malformed(self, exc: MalformedMessage, size: int) -> Resync:
        self._metrics.malformed_messages.labels("dydx").inc()
        log.error("feed_malformed_message", error=str(exc), size=size)
        return _RESYNC_MALFORMED

    def _check_sequence(self, frame: ParsedFrame | BookFrame) -> bool:
        message_id = frame.message_id
        expected_max = self._last_data_id + 1 + self._requests_since_data
        gap = self._last_data_id >= 0 and not (self._last_data_id < message_id <= expected_max)
        self._last_data_id = message_id
        self._requests_since_data = 0
        if gap:
            log.warning("feed_sequence_gap", message_id=message_id, expected_max=expected_max)
            return False
        return True

    def _deliver(self, frame: ParsedFrame) -> Resync | None:
        for event in frame.events:
            if isinstance(event, BookSnapshot | BookDelta):
                book = self.books.get(event.market)
                if book is not None and not self._apply(book, event):
                    log.warning("feed_book_crossed", market=event.market)
                    return ("crossed", event.market)
            self._sink(event)
        return None

    @staticmethod
    def _apply(book: OrderBook, event: BookSnapshot | BookDelta) -> bool:
        if isinstance(event, BookSnapshot):
            book.apply_snapshot(event)
            return not book.is_crossed()
        return book.apply_delta(event)

    async def _resync_books(self, ws: ClientConnection, reason: str) -> None:
        for sub in list(self.subscriptions.values()):
            if sub.channel == "v4_orderbook":
                await self._resync(ws, sub, reason)

    async def _resync(self, ws: ClientConnection, sub: Subscription | None, reason: str) -> None:
        if sub is None:
            return
        self.resyncs += 1
        if sub.channel == "v4_orderbook" and sub.id is not None:
            self._metrics.book_resyncs.labels(sub.id).inc()
            book = self.books.get(sub.id)
            if book is not None:
                book.clear()
        log.warning("feed_resync", channel=sub.channel, id=sub.id, reason=reason)
        if sub.confirmed:
            await self._send(ws, sub, "unsubscribe")
        sub.confirmed = False
        await self._send(ws, sub, "subscribe")

    async def _check_silence(self, ws: ClientConnection) -> None:
        now = self._monotonic_ns()
        checked = stale = 0
        for sub in list(self.subscriptions.values()):
            limit = self._max_silence.get(sub.channel)
            if limit is None:
                continue
            checked += 1
            if now - sub.last_message_ns > limit * NS_PER_SEC:
                stale += 1
                log.warning("feed_channel_silent", channel=sub.channel, id=sub.id,
                            silent_secs=round((now - sub.last_message_ns) / NS_PER_SEC, 1))
                await self._resync(ws, sub, "silent")
        if checked and stale == checked:
            log.warning("feed_all_channels_silent", url=self.url)
            await ws.close(code=4000, reason="all channels silent")


def default_subscriptions(markets: list[str], account: str | None = None) -> list[Subscription]:
    """The bot's standard set: markets, block height, and per-market book and trades."""
    subs = [Subscription("v4_markets", None), Subscription("v4_block_height", None)]
    for ticker in markets:
        subs.append(Subscription("v4_orderbook", ticker))
        subs.append(Subscription("v4_trades", ticker))
    if account is not None:
        subs.append(Subscription("v4_subaccounts", account))
    return subs


