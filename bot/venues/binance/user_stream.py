"""The Binance user data stream: our order executions and balance changes, kept alive.

A listenKey (POST /api/v3/userDataStream) names the stream: `<ws_url>/ws/<listenKey>`. Binance
expires a key 60 minutes after its last keepalive, so it is PUT every `keepalive_secs`
(30 minutes); a key that is gone (-1125 on keepalive, or a `listenKeyExpired` event) ends the
connection and a new key is opened. A connection may also simply drop (Binance closes every
connection after 24 h): the websockets iterator reconnects with the same key, with the
minimum-session guard against a server that accepts and drops at once.

After every (re)connect `on_connected` runs before any event is read, so the adapter can
re-read what the stream may have missed while it was down (balances, the state of the
orders it believes open). It is best effort: a failure is logged, the stream keeps going.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bot.clock import SYSTEM_CLOCK, Clock, monotonic_secs
from bot.errors import BotError, MalformedMessage, RateLimited, TransientVenueError
from bot.telemetry import Metrics
from bot.venues.binance import wire
from bot.venues.binance.errors import ListenKeyInvalid
from bot.venues.binance.rest import BinanceRest
from bot.venues.reconnect import SessionGuard

log = structlog.get_logger("binance_user_ws")
KNOWN_EVENTS = frozenset({"executionReport", "outboundAccountPosition", "balanceUpdate", "listenKeyExpired"})


class UserStream:
    """Delivers decoded user data events to `on_event` until cancelled."""

    name = "binance_user_ws"

    def __init__(
        self,
        ws_url: str,
        rest: BinanceRest,
        on_event: Callable[[wire.ExecutionReport | wire.OutboundAccountPosition | wire.BalanceUpdate], None],
        metrics: Metrics,
        *,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        keepalive_secs: float = 1800.0,
        min_session_secs: float = 5.0,
        max_backoff_secs: float = 30.0,
        open_timeout_secs: float = 10.0,
        retry_secs: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._ws_url = ws_url.rstrip("/")
        self._rest = rest
        self._on_event = on_event
        self._metrics = metrics
        self._on_connected = on_connected
        self._keepalive_secs = keepalive_secs
        self._min_session_secs = min_session_secs
        self._max_backoff_secs = max_backoff_secs
        self._open_timeout = open_timeout_secs
        self._retry_secs = retry_secs
        self.listen_key: str | None = None
        self.connections = 0
        self.keepalives = 0
        self.listen_keys_opened = 0
        self.is_connected = asyncio.Event()

    async def run(self) -> None:
        """Open a listen key, stream it, keep it alive; start over when it is gone (until cancelled)."""
        guard = SessionGuard(self._min_session_secs, self._max_backoff_secs)
        while True:
            key = await self._open_listen_key()
            try:
                async for ws in connect(f"{self._ws_url}/ws/{key}", open_timeout=self._open_timeout,
                                        compression=None):
                    guard.started()
                    self.connections += 1
                    try:
                        is_key_gone = await self._session(ws, key)
                    except ConnectionClosed as exc:
                        is_key_gone = False
                        log.warning("user_stream_disconnected", code=exc.rcvd.code if exc.rcvd else None)
                    finally:
                        self.is_connected.clear()
                    if delay := guard.ended():
                        log.warning("user_stream_short_session", delay_secs=delay,
                                    sessions=guard.short_sessions)
                        await asyncio.sleep(delay)
                    if is_key_gone:
                        await ws.close()  # breaking out of the iterator does not close it at once
                        break
            except InvalidStatus as exc:  # the server refused the key at the handshake
                log.warning("user_stream_refused", status=exc.response.status_code)
                await asyncio.sleep(self._retry_secs)

    async def _open_listen_key(self) -> str:
        delay = self._retry_secs
        while True:
            try:
                key = await self._rest.new_listen_key()
            except RateLimited as exc:
                await asyncio.sleep(max(exc.retry_after_secs, delay))
                continue
            except TransientVenueError as exc:
                log.warning("listen_key_open_failed", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_secs)
                continue
            self.listen_key = key
            self.listen_keys_opened += 1
            return key

    async def _session(self, ws: ClientConnection, key: str) -> bool:
        """Stream one connection; True when the listen key is gone (open a new one)."""
        log.info("user_stream_connected")
        if self._on_connected is not None:
            try:
                await self._on_connected()
            except BotError as exc:
                log.warning("user_stream_reconcile_failed", error=str(exc))
        self.is_connected.set()
        next_keepalive = monotonic_secs(self._clock) + self._keepalive_secs
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_keepalive - monotonic_secs(self._clock))):
                    raw = await ws.recv(decode=False)
            except TimeoutError:
                try:
                    await self._rest.keepalive_listen_key(key)
                except ListenKeyInvalid:
                    log.warning("listen_key_lost")
                    return True
                except (TransientVenueError, MalformedMessage) as exc:
                    log.warning("listen_key_keepalive_failed", error=str(exc))
                    next_keepalive = monotonic_secs(self._clock) + min(60.0, self._keepalive_secs)
                    continue
                self.keepalives += 1
                next_keepalive = monotonic_secs(self._clock) + self._keepalive_secs
                continue
            if self._on_raw(raw):
                log.warning("listen_key_expired")
                return True

    def _on_raw(self, raw: bytes) -> bool:
        """Decode and deliver one event; True on listenKeyExpired."""
        try:
            event = wire.USER_EVENT.decode(raw)
        except msgspec.MsgspecError as exc:
            try:
                kind = wire.EVENT_TYPE.decode(raw).e
            except msgspec.MsgspecError:
                kind = ""
            if kind and kind not in KNOWN_EVENTS:
                log.debug("user_event_ignored", event=kind)  # externalLockUpdate, ...
                return False
            self._metrics.malformed_messages.labels("binance").inc()
            log.error("feed_malformed_message", venue="binance", stream="user", error=str(exc))
            return False
        if isinstance(event, wire.ListenKeyExpired):
            return True
        self._on_event(event)
        return False
