"""The Binance spot market stream: diff depth kept whole in shared books, and public trades.

One combined-stream connection (`/stream?streams=<symbol>@depth@100ms/<symbol>@trade/...`);
the subscription set lives in the URL, so every reconnect resubscribes everything at the
handshake. Every connection starts each symbol over: the book is cleared and re-synchronised
by Binance's procedure (`book_sync.DepthSync`): stream events are buffered, a REST snapshot is
fetched once the first event is buffered (or after `first_event_wait_secs` on a quiet
market), the buffer is replayed on top of it, and from then on each event must chain onto the
last. A gap, a crossed book or a level that does not parse clears that book and fetches a new
snapshot while the stream keeps buffering.

Snapshot fetches run as tasks of the connection's TaskGroup (they end with it); a fetch
retries transient failures and rate limits by itself and raises only fatal errors (an unknown
symbol, bad credentials), which end `run`.

Reconnects use the websockets iterator (backoff on failed connects); because that backoff
resets after every handshake, a session shorter than `min_session_secs` adds our own growing
delay. Pings from the server are answered by the library.

How consumers learn about book changes (the books are shared objects):
- default: a BookSnapshot each time a book is (re)synchronised and a BookDelta per event;
- `on_book_changed(market, ts_recv)`: called instead, once per applied event or snapshot.
Trades always go to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bot.book import OrderBook
from bot.clock import SYSTEM_CLOCK, Clock
from bot.domain import BookSnapshot, Side
from bot.errors import MalformedMessage, RateLimited, TransientVenueError
from bot.telemetry import Metrics
from bot.venues.binance import wire
from bot.venues.binance.book_sync import DepthSync, Step
from bot.venues.binance.parse import parse_depth_update, parse_trade
from bot.venues.binance.rest import BinanceRest
from bot.venues.ports import MarketSink
from bot.venues.reconnect import SessionGuard

log = structlog.get_logger("binance_ws")
ALL_LEVELS = 1 << 30


@dataclass(slots=True)
class _Symbol:
    symbol: str
    market: str
    sync: DepthSync[wire.DepthUpdate] = field(default_factory=DepthSync)
    buffered: asyncio.Event = field(default_factory=asyncio.Event)
    fetch: asyncio.Task[None] | None = None
    resyncs: int = 0


class MarketStream:
    """Streams depth (into `books`) and trades for a set of symbols until cancelled."""

    name = "binance_market_ws"

    def __init__(
        self,
        ws_url: str,
        rest: BinanceRest,
        markets: Mapping[str, str],
        books: dict[str, OrderBook],
        sink: MarketSink,
        metrics: Metrics,
        *,
        depth_limit: int = 1000,
        depth_stream: str = "depth@100ms",
        min_session_secs: float = 5.0,
        max_backoff_secs: float = 30.0,
        open_timeout_secs: float = 10.0,
        first_event_wait_secs: float = 1.0,
        snapshot_retry_secs: float = 1.0,
        on_book_changed: Callable[[str, int], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`markets`: Binance symbol -> our market name; `books` are keyed by market."""
        self._clock = clock
        self._rest = rest
        self._symbols = {s: _Symbol(s, m) for s, m in markets.items()}
        self.books = books
        for market in markets.values():
            books.setdefault(market, OrderBook(market))
        self._sink = sink
        self._metrics = metrics
        self._depth_limit = depth_limit
        streams = [f"{s.lower()}@{kind}" for s in markets for kind in (depth_stream, "trade")]
        self.url = f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}"
        self._min_session_secs = min_session_secs
        self._max_backoff_secs = max_backoff_secs
        self._open_timeout = open_timeout_secs
        self._first_event_wait_secs = first_event_wait_secs
        self._snapshot_retry_secs = snapshot_retry_secs
        self._on_book_changed = on_book_changed
        self._tg: asyncio.TaskGroup | None = None
        self.connections = 0
        self.resyncs = 0
        self.snapshots = 0

    def update_id(self, symbol: str) -> int | None:
        """The last update id applied to a symbol's book; None while it is not in sync."""
        return self._symbols[symbol].sync.update_id

    def is_synced(self, symbol: str) -> bool:
        return self._symbols[symbol].sync.is_synced

    # ---- connection ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, synchronise every book, stream; reconnect with backoff forever (until cancelled)."""
        guard = SessionGuard(self._min_session_secs, self._max_backoff_secs)
        async for ws in connect(self.url, open_timeout=self._open_timeout, max_size=8 * 2**20,
                                compression=None):
            guard.started()
            self.connections += 1
            await self._session(ws)
            if delay := guard.ended():
                log.warning("feed_short_session", venue="binance", delay_secs=delay,
                            sessions=guard.short_sessions)
                await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        for state in self._symbols.values():
            state.sync.reset()
            state.buffered.clear()
            state.fetch = None
            self.books[state.market].clear()
        log.info("feed_connected", venue="binance", streams=len(self._symbols) * 2)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                for state in self._symbols.values():
                    self._start_fetch(state)
                while True:
                    self._on_raw(await ws.recv(decode=False))  # bytes: msgspec decodes them as they are
            except ConnectionClosed as exc:
                log.warning("feed_disconnected", venue="binance", code=exc.rcvd.code if exc.rcvd else None)
            finally:
                self._tg = None
                for state in self._symbols.values():
                    if state.fetch is not None:
                        state.fetch.cancel()
                        state.fetch = None

    # ---- frames -------------------------------------------------------------------------------

    def _on_raw(self, raw: bytes) -> None:
        ts_recv = self._clock.now_ns()
        try:
            frame = wire.COMBINED.decode(raw)
        except msgspec.MsgspecError as exc:
            self._on_undecodable(raw, exc)
            return
        data = frame.data
        if isinstance(data, wire.DepthUpdate):
            self._on_depth(data, ts_recv)
            return
        state = self._symbols.get(data.s)
        if state is None:
            return
        try:
            trade = parse_trade(data, state.market, ts_recv)
        except MalformedMessage as exc:
            self._malformed(exc, len(raw))
            return
        self._sink(trade)

    def _on_undecodable(self, raw: bytes, exc: msgspec.MsgspecError) -> None:
        try:
            reply = wire.STREAM_REPLY.decode(raw)
        except msgspec.MsgspecError:
            reply = None
        if reply is not None and reply.code is not None:
            log.error("feed_error_frame", venue="binance", code=reply.code, message=reply.msg)
            return
        if reply is not None and reply.id is not None:
            return  # a reply to a request we did not make on this connection
        self._malformed(MalformedMessage(str(exc)), len(raw))
        for state in self._symbols.values():  # we cannot tell whose event was lost
            self._resync(state, "malformed")

    def _malformed(self, exc: MalformedMessage, size: int) -> None:
        self._metrics.malformed_messages.labels("binance").inc()
        log.error("feed_malformed_message", venue="binance", error=str(exc), size=size)

    def _on_depth(self, event: wire.DepthUpdate, ts_recv: int) -> None:
        state = self._symbols.get(event.s)
        if state is None:
            return
        step = state.sync.on_diff(event.U, event.u, event)
        if step is Step.APPLY:
            book = self.books[state.market]
            try:
                ok = book.apply_levels(event.b, event.a, ts_recv)
            except MalformedMessage as exc:
                self._malformed(exc, 0)
                self._resync(state, "malformed")
                return
            if not ok:
                log.warning("feed_book_crossed", venue="binance", market=state.market)
                self._resync(state, "crossed")
                return
            if self._on_book_changed is not None:
                self._on_book_changed(state.market, ts_recv)
            else:
                self._sink(parse_depth_update(event, state.market, ts_recv))
        elif step is Step.BUFFER:
            state.buffered.set()
            self._start_fetch(state)
        elif step is Step.RESYNC:
            log.warning("feed_sequence_gap", venue="binance", market=state.market, first_id=event.U,
                        final_id=event.u)
            self._resync(state, "sequence_gap", is_reset=True)
            state.buffered.set()

    # ---- resync -------------------------------------------------------------------------------

    def _resync(self, state: _Symbol, reason: str, *, is_reset: bool = False) -> None:
        """Drop a book and fetch a new snapshot; `is_reset`: the sync already reset (and buffered)."""
        if not is_reset:
            state.sync.reset()
            state.buffered.clear()
        self.books[state.market].clear()
        self.resyncs += 1
        state.resyncs += 1
        self._metrics.book_resyncs.labels(state.market).inc()
        log.warning("feed_resync", venue="binance", market=state.market, reason=reason)
        self._start_fetch(state)

    def _start_fetch(self, state: _Symbol) -> None:
        if state.fetch is not None or self._tg is None:
            return
        state.fetch = self._tg.create_task(self._fetch_snapshot(state),
                                           name=f"binance_depth_snapshot_{state.symbol}")

    async def _fetch_snapshot(self, state: _Symbol) -> None:
        """Fetch snapshots until one synchronises the book (transient failures are retried here)."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._first_event_wait_secs):
                    await state.buffered.wait()
            delay = self._snapshot_retry_secs
            while True:
                try:
                    snapshot = await self._rest.depth(state.symbol, self._depth_limit)
                except RateLimited as exc:
                    log.warning("depth_snapshot_rate_limited", market=state.market,
                                retry_after_secs=exc.retry_after_secs)
                    await asyncio.sleep(max(exc.retry_after_secs, delay))
                    continue
                except (TransientVenueError, MalformedMessage) as exc:
                    log.warning("depth_snapshot_failed", market=state.market, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff_secs)
                    continue
                self.snapshots += 1
                if self._apply_snapshot(state, snapshot, self._clock.now_ns()):
                    return
                await asyncio.sleep(min(delay, 0.2))
        finally:
            if state.fetch is asyncio.current_task():
                state.fetch = None

    def _apply_snapshot(self, state: _Symbol, snapshot: wire.DepthSnapshot, ts_recv: int) -> bool:
        """Synchronise a book from a snapshot and the buffered events; False: fetch another."""
        if state.sync.is_synced:
            return True
        events = state.sync.on_snapshot(snapshot.lastUpdateId)
        if events is None:
            log.info("depth_snapshot_too_old", market=state.market, last_update_id=snapshot.lastUpdateId,
                     first_buffered_id=state.sync.first_buffered_id)
            return False
        book = self.books[state.market]
        try:
            ok = book.apply_snapshot_levels(snapshot.bids, snapshot.asks, ts_recv)
            for event in events:
                ok = book.apply_levels(event.b, event.a, ts_recv) and ok
        except MalformedMessage as exc:
            self._malformed(exc, 0)
            ok = False
        if not ok:
            log.warning("depth_snapshot_unusable", market=state.market)
            state.sync.reset()
            state.buffered.clear()
            book.clear()
            return False
        state.buffered.clear()
        log.info("feed_book_synced", venue="binance", market=state.market, update_id=state.sync.update_id,
                 replayed=len(events))
        if self._on_book_changed is not None:
            self._on_book_changed(state.market, ts_recv)
        else:
            self._sink(BookSnapshot(state.market, tuple(book.levels(Side.BUY, ALL_LEVELS)),
                                    tuple(book.levels(Side.SELL, ALL_LEVELS)), ts_recv, ts_recv))
        return True
