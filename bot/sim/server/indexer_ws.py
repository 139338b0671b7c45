"""The indexer's socks WebSocket: connections, subscribe/unsubscribe, snapshots, writers and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from bot.sim.part import Part
from bot.sim.server import indexer_wire as wire
from bot.sim.server.indexer_rest import LOOKUP_ERRORS, MAX_SUBACCOUNT_NUMBER

Key = tuple[str, str]  # (channel, id); v4_markets uses id ""
CHANNEL_LIMITS = {"v4_orderbook": 32, "v4_trades": 32, "v4_candles": 32, "v4_markets": 32,
                   "v4_subaccounts": 256, "v4_block_height": 1}
HEIGHT_ID = "v4_block_height"
OVERSIZED_BYTES = 9 * 2**20  # above the 8 MiB frames the bot's feed accepts


class Conn:
    """One WebSocket client: its counter, subscriptions and outbound queue."""

    __slots__ = ("batch_prefix", "close_code", "connection_id", "data_prefix", "message_id", "pong",
                 "protocol", "queue", "subs", "transport", "wake", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.transport: asyncio.Transport | None = request.transport  # type: ignore[assignment]
        self.protocol = request.protocol
        self.connection_id = str(uuid.uuid4())
        self.data_prefix = wire.frame_prefix("channel_data", self.connection_id)
        self.batch_prefix = wire.frame_prefix("channel_batch_data", self.connection_id)
        self.message_id = 0
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.pong = asyncio.Event()
        self.subs: set[Key] = set()
        self.close_code: int | None = None

    def next_id(self) -> int:
        self.message_id += 1
        return self.message_id


class WsHandlers(Part):
    """WebSocket side of IndexerServer (a part of it: it reads and writes the server's state)."""

    _last_ws_height: int  # (also written by Publisher)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=64 * 1024)
        await ws.prepare(request)
        conn = Conn(ws, request)
        self._conns.add(conn)
        conn.queue.append(wire.connected_frame(conn.connection_id))
        conn.wake.set()
        writer = asyncio.create_task(self._writer(conn), name=f"ws_writer_{conn.connection_id}")
        heartbeat = asyncio.create_task(self._heartbeat(conn), name=f"ws_heartbeat_{conn.connection_id}")
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._error(conn, "Invalid message: binary frames are not supported")
                elif msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    conn.pong.set()
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
        finally:
            closing_by_us = conn.close_code is not None
            self._unregister(conn)
            heartbeat.cancel()
            if closing_by_us:  # let the writer finish its close handshake (drop, heartbeat, stop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), 3.0)
            for task in (writer, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not ws.closed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await ws.close(code=conn.close_code or 1000)
        return ws

    async def _writer(self, conn: Conn) -> None:
        """Drain the connection's queue: every frame queued so far goes out in one socket write.

        Data frames bypass aiohttp's per-frame `send_frame` (one syscall each, ~50 us on
        loopback) and are framed here: server frames are unmasked and uncompressed, so a text
        frame is a 2-10 byte header plus the payload. Control frames (ping/pong/close) still go
        through aiohttp; all writes happen on the loop thread, whole frames at a time.
        """
        ws, queue, transport = conn.ws, conn.queue, conn.transport
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            while queue and conn.close_code is None and not ws.closed:
                if transport is None or transport.is_closing():
                    conn.close_code = conn.close_code or 1006
                    break
                count = min(len(queue), 1024)
                parts: list[bytes] = []
                for _ in range(count):
                    payload = queue.popleft()
                    parts.append(_text_header(len(payload)))
                    parts.append(payload)
                transport.write(b"".join(parts))
                self.frames_sent += count
                if conn.protocol is not None and conn.protocol.writing_paused:
                    # aiohttp's own flow-control wait (resumed by the transport's low-water mark);
                    # meanwhile a slow reader's queue grows until `_push` drops it
                    await conn.protocol._drain_helper()
            if conn.close_code is not None:
                done = False
                if not ws.closed and transport is not None and not transport.is_closing():
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2.0):
                            done = await ws.close(code=conn.close_code)
                if not done and transport is not None:
                    transport.abort()
                return

    async def _heartbeat(self, conn: Conn) -> None:
        while conn.close_code is None:
            await asyncio.sleep(self._ping_interval_secs)
            conn.pong.clear()
            await conn.ws.ping()
            try:
                async with asyncio.timeout(self._pong_timeout_secs):
                    await conn.pong.wait()
            except TimeoutError:
                self._close(conn, 1011)  # no pong: socks closes with 1011
                return

    def _on_text(self, conn: Conn, data: str) -> None:
        try:
            msg = msgspec.json.decode(data)
        except msgspec.DecodeError:
            self._error(conn, f"Invalid message: could not parse message: {data[:100]}")
            return
        if not isinstance(msg, dict):
            self._error(conn, "Invalid message: expected a JSON object")
            return
        kind = msg.get("type")
        if kind == "ping":
            return  # the real server accepts and ignores application pings
        if kind not in ("subscribe", "unsubscribe"):
            self._error(conn, f"Invalid message type: {kind}")
            return
        channel = msg.get("channel")
        if channel not in CHANNEL_LIMITS:
            self._error(conn, f"Invalid channel: {channel}", channel=channel, id=msg.get("id"))
            return
        sub_id, problem = self._validate_id(channel, msg.get("id"))
        if problem:
            self._error(conn, problem, channel=channel, id=msg.get("id"))
            return
        key = (channel, sub_id)
        if kind == "unsubscribe":
            self._drop_sub(conn, key)
            conn.queue.append(wire.control_frame("unsubscribed", conn.connection_id, conn.next_id(),
                                                 channel=channel, id=_reply_id(key)))
            conn.wake.set()
            return
        if key in conn.subs:
            self._error(conn, f"Invalid subscribe message: already subscribed to {channel} {sub_id}".rstrip(),
                        channel=channel, id=_reply_id(key))
            return
        if sum(1 for k in conn.subs if k[0] == channel) >= CHANNEL_LIMITS[channel]:
            self._error(conn, f"Invalid subscribe message: too many subscriptions for channel {channel}",
                        channel=channel, id=_reply_id(key))
            return
        message_id = conn.next_id()
        try:
            contents = self._snapshot(key)
        except LOOKUP_ERRORS:
            self._error(conn, f"Internal error, could not fetch data for subscription: {channel}.",
                        channel=channel, id=_reply_id(key))
            return
        conn.subs.add(key)
        registry = self._batched if msg.get("batched") is True else self._direct
        registry.setdefault(key, set()).add(conn)
        fields: dict[str, Any] = {"channel": channel}
        if channel != "v4_markets":
            fields["id"] = sub_id
        conn.queue.append(wire.control_frame("subscribed", conn.connection_id, message_id,
                                             contents=contents, **fields))
        conn.wake.set()

    def _validate_id(self, channel: str, raw: object) -> tuple[str, str | None]:
        if channel == "v4_markets":
            return "", None
        if channel == "v4_block_height":
            return HEIGHT_ID, None
        if not isinstance(raw, str) or not raw:
            return "", f"Invalid subscription id for channel {channel}: id is required"
        markets = self._exchange.markets()
        if channel in ("v4_orderbook", "v4_trades"):
            return raw, None if raw in markets else f"Invalid subscription id for channel {channel}: {raw}"
        if channel == "v4_candles":
            ticker, _, resolution = raw.partition("/")
            ok = ticker in markets and resolution in wire.CANDLE_RESOLUTIONS_SECS
            return raw, None if ok else f"Invalid subscription id for channel {channel}: {raw}"
        address, _, number = raw.rpartition("/")
        ok = address.startswith("dydx1") and number.isdigit() and int(number) < MAX_SUBACCOUNT_NUMBER
        return f"{address}/{int(number)}" if ok else raw, (
            None if ok else f"Invalid subscription id for channel {channel}: {raw}")

    def _snapshot(self, key: Key) -> Any:
        channel, sub_id = key
        ex = self._exchange
        if channel == "v4_orderbook":
            bids, asks = ex.book(sub_id)
            if sub_id not in self._shown:
                self._shown[sub_id] = (dict(bids), dict(asks))
            return wire.orderbook_json(bids, asks)
        if channel == "v4_trades":
            return {"trades": [wire.trade_json(tid, t, h) for tid, t, h in ex.trades(sub_id, limit=100)]}
        if channel == "v4_markets":
            return wire.markets_json(ex.markets().values())
        if channel == "v4_candles":
            ticker, _, resolution = sub_id.partition("/")
            return {"candles": self._candles_for(ticker, resolution, ex.trades(ticker, limit=1000))[:100]}
        if channel == "v4_block_height":
            height = self._indexer_height()
            self._last_ws_height = max(self._last_ws_height, height)
            return wire.height_json(height, self._height_time(height))
        owner, _, number = sub_id.rpartition("/")
        self._accounts.setdefault(owner, set()).add(int(number))
        try:
            sub = ex.subaccount(owner, int(number))
        except LOOKUP_ERRORS:
            return {}  # socks sends {} for a subaccount that does not exist yet
        orders = [wire.order_json(o, ws=True) for o in ex.orders(owner, int(number), open_only=True)]
        return {"subaccount": self._subaccount_json(sub), "orders": orders,
                "blockHeight": str(self._indexer_height())}

    def _error(self, conn: Conn, message: str, **fields: Any) -> None:
        extra = {k: v for k, v in fields.items() if isinstance(v, str) and v}
        # validation errors reuse the current message id (socks does not count them)
        conn.queue.append(wire.control_frame("error", conn.connection_id, conn.message_id,
                                             message=message, **extra))
        conn.wake.set()

    def _drop_sub(self, conn: Conn, key: Key) -> None:
        conn.subs.discard(key)
        for registry in (self._direct, self._batched):
            members = registry.get(key)
            if members is not None:
                members.discard(conn)
                if not members:
                    del registry[key]
        if key[0] == "v4_orderbook" and key not in self._direct and key not in self._batched:
            self._shown.pop(key[1], None)

    def _unregister(self, conn: Conn) -> None:
        for key in list(conn.subs):
            self._drop_sub(conn, key)
        self._conns.discard(conn)
        if not self._conns:
            self._idle.set()
        if conn.close_code is None:
            conn.close_code = 1000
        conn.queue.clear()


def _reply_id(key: Key) -> str:
    return key[1]


def _text_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")
