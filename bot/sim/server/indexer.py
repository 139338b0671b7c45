"""dYdX v4 indexer front-end of the simulator: comlink REST and socks WebSocket on one loopback port.

REST: GET `/v4/...` (DYDX_V4.md §1), JSON bodies shaped by `indexer_wire`. WebSocket at `/v4/ws`
(§2): `connected` on connect, `subscribe`/`unsubscribe` for v4_markets, v4_orderbook, v4_trades,
v4_candles, v4_block_height and v4_subaccounts, `subscribed` frames carrying the snapshot,
`channel_data` or (for `batched: true`) one `channel_batch_data` per channel id per `publish`,
protocol pings every `ping_interval_secs` and a close (1011) when no pong follows within
`pong_timeout_secs`. Application-level JSON pings are ignored, as on the real server.

Fan-out: `publish(events)` is synchronous. Each message is encoded once per channel id; each
subscriber gets it spliced behind its own `connection_id`/`message_id` and appended to a bounded
per-connection queue drained by that connection's writer task. A client that lets its queue
overflow is disconnected (the real socks server terminates slow sockets too).

Fault switches, read from `exchange.scenario.extra` (bot.sim.scenarios sets them):
  "http_error": {"status": 429|500|503, "count": N, "retry_after_secs": S}
      the next N REST responses fail with that status (429 adds `Retry-After`); the key is
      removed when the count reaches 0 (a missing count means 1).
  "ws_drop": truthy -> every WS connection is closed once (code 1012; the value "abort" drops the
      TCP connection without a close frame), then the key is removed.
  "ws_stall": truthy -> no channel data is sent while set (it is dropped, as a stuck indexer
      would); sockets stay open, pings and subscribe replies still flow.
  "book_fault": "gap" | "crossed" -> the next orderbook update goes out with a skipped
      message_id, or with an extra bid level crossing the best ask, to every subscriber of that
      book; then the key is removed.
  "ws_inject": "garbage" | "oversized" | "wrong_type" -> every WS connection gets one bad frame
      (text that is not JSON; a frame above the client's 8 MiB limit; a channel_data frame on
      one of its subscriptions, with the right message_id, whose fields have the wrong types);
      then the key is removed.
  "account_fault": "duplicate" | "reorder" -> while set, every v4_subaccounts message is sent
      twice, or held back and sent after the next one of the same subaccount (what was held is
      released when the switch goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import msgspec
from aiohttp import WSMsgType, web

from bot.domain import BlockHeight, BookDelta, BookLevel, BookSnapshot, OracleUpdate, Trade
from bot.sim.exchange import SimExchange
from bot.sim.perp.records import AccountUpdate, ChainError, ExchangeEvent, MarketChange
from bot.sim.server import indexer_wire as wire

Key = tuple[str, str]  # (channel, id); v4_markets uses id ""
_CHANNEL_LIMITS = {"v4_orderbook": 32, "v4_trades": 32, "v4_candles": 32, "v4_markets": 32,
                   "v4_subaccounts": 256, "v4_block_height": 1}
_HEIGHT_ID = "v4_block_height"
_MAX_SUBACCOUNT_NUMBER = 128_000
_OVERSIZED_BYTES = 9 * 2**20  # above the 8 MiB frames the bot's feed accepts
_LOOKUP_ERRORS = (ChainError, LookupError, ValueError)  # unknown account or market


class _Conn:
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


class IndexerServer:
    """Serve the simulated exchange as a dYdX v4 indexer (REST + WebSocket) on loopback."""

    def __init__(self, exchange: SimExchange, *, host: str = "127.0.0.1", port: int = 0,
                 ping_interval_secs: float = 30.0, pong_timeout_secs: float = 10.0,
                 max_queue_frames: int = 20_000, clock_ns: Callable[[], int] | None = None) -> None:
        self._exchange = exchange
        self._host = host
        self._port = port
        self._ping_interval_secs = ping_interval_secs
        self._pong_timeout_secs = pong_timeout_secs
        self._max_queue = max_queue_frames
        self._clock_ns = clock_ns or time.time_ns  # /v4/time; pass the simulator's clock
        self._runner: web.AppRunner | None = None
        self._conns: set[_Conn] = set()
        self._direct: dict[Key, set[_Conn]] = {}
        self._batched: dict[Key, set[_Conn]] = {}
        # wire book per subscribed ticker: lets a BookSnapshot event go out as a level diff
        self._shown: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self._height_ns: dict[int, int] = {}
        self._heights: deque[int] = deque()
        self._last_ws_height = 0
        self._accounts: dict[str, set[int]] = {}  # owners seen (REST /v4/orders/{id}, addresses)
        self._ticks: dict[str, Decimal] = {}
        self._idle = asyncio.Event()  # set when the last WebSocket is gone
        self._held: dict[Key, Any] = {}  # account messages held back by the "reorder" fault
        self.frames_sent = 0

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; `rest_url`/`ws_url` are valid afterwards."""
        app = web.Application(middlewares=[self._faults])
        r = app.router
        r.add_get("/v4/ws", self._ws_handler)
        r.add_get("/v4/height", self._height)
        r.add_get("/v4/time", self._time)
        r.add_get("/v4/perpetualMarkets", self._markets)
        r.add_get("/v4/orderbooks/perpetualMarket/{ticker}", self._orderbook)
        r.add_get("/v4/trades/perpetualMarket/{ticker}", self._trades)
        r.add_get("/v4/candles/perpetualMarkets/{ticker}", self._candles)
        r.add_get("/v4/historicalFunding/{ticker}", self._historical_funding)
        r.add_get("/v4/addresses/{address}", self._address)
        r.add_get("/v4/addresses/{address}/subaccountNumber/{number}", self._subaccount)
        r.add_get("/v4/orders", self._orders)
        r.add_get("/v4/orders/{order_id}", self._order)
        r.add_get("/v4/fills", self._fills)
        r.add_get("/v4/perpetualPositions", self._positions)
        r.add_get("/v4/assetPositions", self._asset_positions)
        r.add_get("/v4/transfers", self._transfers)
        r.add_get("/v4/fundingPayments", self._funding_payments)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = cast(asyncio.Server, site._server)  # aiohttp has no public accessor for the port
        self._port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every WebSocket (1001 going away, bounded to 2 s) and stop serving."""
        for conn in list(self._conns):
            self._close(conn, 1001)
        if self._conns:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._idle.wait()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def rest_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self._port}/v4/ws"

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def backlog_frames(self) -> int:
        """The longest outbound queue (frames not yet written to a socket)."""
        return max((len(c.queue) for c in self._conns), default=0)

    # ---- publish (called by the runner after advance/place/cancel) ------------------------------

    def publish(self, events: list[ExchangeEvent]) -> None:
        """Fan exchange events out to WebSocket subscribers; synchronous and non-blocking."""
        extra = self._exchange.scenario.extra
        for ev in events:  # REST-side bookkeeping, subscribers or not
            if type(ev) is BlockHeight:
                self._remember_height(ev.height, ev.ts_event)
            elif type(ev) is AccountUpdate:
                self._accounts.setdefault(ev.owner, set()).add(ev.subaccount_number)
        drop = extra.get("ws_drop")
        if drop:
            extra.pop("ws_drop", None)
            for conn in list(self._conns):
                self._close(conn, 1012, abort=drop == "abort")
        if not self._conns:
            self._shown.clear()
            return
        inject = extra.pop("ws_inject", None)
        if inject is not None:
            for conn in list(self._conns):
                self._push(conn, self._bad_frame(conn, str(inject)))
        messages = self._translate(events)
        if extra.get("ws_stall"):
            return
        account_fault = extra.get("account_fault")
        if account_fault or self._held:
            messages = self._fault_accounts(messages, account_fault)
        batches: dict[Key, list[Any]] = {}
        for key, contents in messages:
            direct = self._direct.get(key)
            batched = self._batched.get(key)
            if not direct and not batched:
                continue
            if key[0] == "v4_orderbook" and extra.get("book_fault"):
                contents = self._apply_book_fault(key, contents, extra.pop("book_fault"))
            if direct:
                body = wire.channel_body(key[0], _wire_id(key), contents)
                for conn in direct:
                    self._push(conn, wire.splice_frame(conn.data_prefix, conn.next_id(), body))
            if batched:
                batches.setdefault(key, []).append(contents)
        for key, items in batches.items():
            body = wire.channel_body(key[0], _wire_id(key), items)
            for conn in self._batched[key]:
                self._push(conn, wire.splice_frame(conn.batch_prefix, conn.next_id(), body))

    def _translate(self, events: list[ExchangeEvent]) -> list[tuple[Key, Any]]:
        """Turn events into (key, contents) in order, only for channel ids someone listens to."""
        subs = self._direct.keys() | self._batched.keys()
        out: list[tuple[Key, Any]] = []
        trades: dict[str, list[Trade]] = {}
        oracles: list[OracleUpdate] = []
        heights: list[BlockHeight] = []
        for ev in events:
            if isinstance(ev, BookDelta):
                shown = self._shown.get(ev.market)
                if shown is not None:
                    _apply_levels(shown[0], ev.bids)
                    _apply_levels(shown[1], ev.asks)
                    contents = wire.orderbook_update_contents(ev.bids, ev.asks)
                    out.append((("v4_orderbook", ev.market), contents))
            elif isinstance(ev, BookSnapshot):
                diff = self._snapshot_diff(ev)
                if diff:
                    out.append((("v4_orderbook", ev.market), diff))
            elif isinstance(ev, Trade):
                trades.setdefault(ev.market, []).append(ev)
            elif isinstance(ev, OracleUpdate):
                oracles.append(ev)
            elif isinstance(ev, BlockHeight):
                heights.append(ev)
            elif isinstance(ev, AccountUpdate):
                key = ("v4_subaccounts", f"{ev.owner}/{ev.subaccount_number}")
                if key in subs:
                    out.extend((key, c) for c in self._account_contents(ev))
            elif isinstance(ev, MarketChange) and ("v4_markets", "") in subs:
                # Status or parameters changed: the whole market object, as the indexer sends on a listing.
                market = self._exchange.markets()[ev.ticker]
                out.append((("v4_markets", ""), {"trading": {ev.ticker: wire.market_json(market)}}))
        for ticker, rows in trades.items():
            if ("v4_trades", ticker) in subs:
                out.append((("v4_trades", ticker), {"trades": self._trade_rows(ticker, rows)}))
            for key in subs:
                if key[0] == "v4_candles" and key[1].startswith(ticker + "/"):
                    candle = self._current_candle(ticker, key[1].split("/", 1)[1])
                    if candle is not None:
                        out.append((key, candle))
        if oracles and ("v4_markets", "") in subs:
            out.extend(self._market_contents(oracles))
        if heights and ("v4_block_height", _HEIGHT_ID) in subs:
            lag = self._exchange.scenario.indexer_lag_blocks
            reported = heights[-1].height - lag
            if reported > self._last_ws_height:
                self._last_ws_height = reported
                ts = self._height_ns.get(reported, heights[-1].ts_event)
                out.append((("v4_block_height", _HEIGHT_ID), wire.height_json(reported, ts, update=True)))
        return out

    def _snapshot_diff(self, snap: BookSnapshot) -> dict[str, Any] | None:
        shown = self._shown.get(snap.market)
        if shown is None:
            return None
        new_bids = {lvl.price: lvl.size for lvl in snap.bids if lvl.size > 0}
        new_asks = {lvl.price: lvl.size for lvl in snap.asks if lvl.size > 0}
        bids = _level_diff(shown[0], new_bids)
        asks = _level_diff(shown[1], new_asks)
        self._shown[snap.market] = (new_bids, new_asks)
        return wire.orderbook_update_contents(bids, asks) if bids or asks else None

    def _trade_rows(self, ticker: str, rows: list[Trade]) -> list[dict[str, Any]]:
        """Trades newest first with the exchange's trade ids (matched by identity, then equality)."""
        known = self._exchange.trades(ticker, limit=len(rows) + 16)
        by_obj = {id(t): tid for tid, t, _h in known}
        by_val = {t: tid for tid, t, _h in known}
        height = self._exchange.height
        out = []
        for i, trade in enumerate(reversed(rows)):
            tid = by_obj.get(id(trade)) or by_val.get(trade) or wire.trade_id(height, 0, 1_000_000 + i)
            out.append(wire.trade_json(tid, trade, height, ws=True))
        return out

    def _current_candle(self, ticker: str, resolution: str) -> dict[str, Any] | None:
        width_ns = wire.CANDLE_RESOLUTIONS_SECS[resolution] * 1_000_000_000
        recent = self._exchange.trades(ticker, limit=1000)
        if not recent:
            return None
        bucket = recent[0][1].ts_event // width_ns
        rows = [r for r in recent if r[1].ts_event // width_ns == bucket]
        candles = self._candles_for(ticker, resolution, rows)
        return candles[0] if candles else None

    def _market_contents(self, oracles: list[OracleUpdate]) -> list[tuple[Key, Any]]:
        markets = self._exchange.markets()
        height = self._exchange.height
        latest: dict[str, OracleUpdate] = {o.market: o for o in oracles}
        prices = [(markets[t], o.oracle_price, height, o.ts_event) for t, o in latest.items() if t in markets]
        rates = [(markets[t], o.next_funding_rate) for t, o in latest.items() if t in markets]
        key = ("v4_markets", "")
        return [(key, wire.oracle_prices_contents(prices)), (key, wire.trading_contents(rates))]

    def _account_contents(self, update: AccountUpdate) -> list[dict[str, Any]]:
        markets = self._exchange.markets()
        contents: dict[str, Any] = {}
        if update.orders:
            contents["orders"] = [wire.order_json(o, ws=True) for o in update.orders]
        if update.fills:
            contents["fills"] = [
                wire.fill_json(f, True, markets[f.ticker].clob_pair_id if f.ticker in markets else None)
                for f in update.fills
            ]
        if update.positions:
            contents["perpetualPositions"] = [
                wire.position_json(p, oracle_price=_oracle(markets, p.ticker), created_ns=_ts(update))
                for p in update.positions
            ]
        if update.fills or update.transfers or update.funding:
            with contextlib.suppress(*_LOOKUP_ERRORS):
                usdc = self._exchange.asset_usdc(update.owner, update.subaccount_number)
                asset = wire.asset_position_json(update.subaccount_number, usdc)
                contents["assetPositions"] = [{"address": update.owner, **asset}]
        transfers = [wire.transfer_json(t, ws=True) for t in update.transfers]
        if transfers:
            contents["transfers"] = transfers[0]  # a single object on the wire, not a list
        if not contents:
            return []
        height = str(update.height)
        contents["blockHeight"] = height
        # further transfers of the same block go out as their own messages
        return [contents] + [{"transfers": t, "blockHeight": height} for t in transfers[1:]]

    def _apply_book_fault(self, key: Key, contents: dict[str, Any], fault: object) -> dict[str, Any]:
        subscribers = self._direct.get(key, set()) | self._batched.get(key, set())
        if fault == "gap":
            for conn in subscribers:
                conn.message_id += 1  # this update arrives with a skipped message_id
            return contents
        if fault == "crossed":
            shown = self._shown.get(key[1])
            if shown and shown[1]:
                tick = self._tick(key[1])
                price = min(shown[1]) + tick
                faulted = dict(contents)
                faulted["bids"] = [*contents.get("bids", []), [wire.dec(price), "1"]]
                return faulted
        return contents

    def _bad_frame(self, conn: _Conn, kind: str) -> bytes:
        if kind == "oversized":
            return b'{"type":"channel_data","pad":"' + b"x" * _OVERSIZED_BYTES + b'"}'
        if kind == "wrong_type" and conn.subs:
            key = sorted(conn.subs)[-1]  # v4_subaccounts when subscribed, else v4_trades / orderbook
            contents = ({"fills": [{"id": 7, "side": 1, "size": 0.5, "price": None}]}
                        if key[0] == "v4_subaccounts" else {"bids": [[1, {"x": 2}]], "trades": 3})
            return wire.splice_frame(conn.data_prefix, conn.next_id(),
                                     wire.channel_body(key[0], _wire_id(key), contents))
        return b'{"type": "channel_data", "connection_id": "' + conn.connection_id.encode() + b'", "mes'

    def _fault_accounts(self, messages: list[tuple[Key, Any]], fault: object) -> list[tuple[Key, Any]]:
        out: list[tuple[Key, Any]] = []
        for key, contents in messages:
            if key[0] != "v4_subaccounts":
                out.append((key, contents))
            elif fault == "duplicate":
                out += [(key, contents), (key, contents)]
            elif fault == "reorder":
                held = self._held.pop(key, None)
                if held is None:
                    self._held[key] = contents
                else:
                    out += [(key, contents), (key, held)]
            else:
                out.append((key, contents))
        if fault != "reorder":
            out += list(self._held.items())
            self._held.clear()
        return out

    def _push(self, conn: _Conn, frame: bytes) -> None:
        if conn.close_code is not None:
            return
        if len(conn.queue) >= self._max_queue:
            self._close(conn, 4000, abort=True)  # slow consumer: terminate, as socks does
            return
        conn.queue.append(frame)
        conn.wake.set()

    def _close(self, conn: _Conn, code: int, *, abort: bool = False) -> None:
        if conn.close_code is not None:
            return
        conn.close_code = code
        conn.queue.clear()
        if abort and conn.transport is not None:
            conn.transport.abort()
        conn.wake.set()

    # ---- WebSocket -----------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=64 * 1024)
        await ws.prepare(request)
        conn = _Conn(ws, request)
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

    async def _writer(self, conn: _Conn) -> None:
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

    async def _heartbeat(self, conn: _Conn) -> None:
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

    def _on_text(self, conn: _Conn, data: str) -> None:
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
        if channel not in _CHANNEL_LIMITS:
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
        if sum(1 for k in conn.subs if k[0] == channel) >= _CHANNEL_LIMITS[channel]:
            self._error(conn, f"Invalid subscribe message: too many subscriptions for channel {channel}",
                        channel=channel, id=_reply_id(key))
            return
        message_id = conn.next_id()
        try:
            contents = self._snapshot(key)
        except _LOOKUP_ERRORS:
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
            return _HEIGHT_ID, None
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
        ok = address.startswith("dydx1") and number.isdigit() and int(number) < _MAX_SUBACCOUNT_NUMBER
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
        except _LOOKUP_ERRORS:
            return {}  # socks sends {} for a subaccount that does not exist yet
        orders = [wire.order_json(o, ws=True) for o in ex.orders(owner, int(number), open_only=True)]
        return {"subaccount": self._subaccount_json(sub), "orders": orders,
                "blockHeight": str(self._indexer_height())}

    def _error(self, conn: _Conn, message: str, **fields: Any) -> None:
        extra = {k: v for k, v in fields.items() if isinstance(v, str) and v}
        # validation errors reuse the current message id (socks does not count them)
        conn.queue.append(wire.control_frame("error", conn.connection_id, conn.message_id,
                                             message=message, **extra))
        conn.wake.set()

    def _drop_sub(self, conn: _Conn, key: Key) -> None:
        conn.subs.discard(key)
        for registry in (self._direct, self._batched):
            members = registry.get(key)
            if members is not None:
                members.discard(conn)
                if not members:
                    del registry[key]
        if key[0] == "v4_orderbook" and key not in self._direct and key not in self._batched:
            self._shown.pop(key[1], None)

    def _unregister(self, conn: _Conn) -> None:
        for key in list(conn.subs):
            self._drop_sub(conn, key)
        self._conns.discard(conn)
        if not self._conns:
            self._idle.set()
        if conn.close_code is None:
            conn.close_code = 1000
        conn.queue.clear()

    # ---- REST ----------------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v4/ws":
            fault = self._exchange.scenario.extra.get("http_error")
            if isinstance(fault, dict):
                count = int(fault.get("count", 1))
                if count <= 1:
                    self._exchange.scenario.extra.pop("http_error", None)
                else:
                    fault["count"] = count - 1
                if count >= 1:
                    return _http_fault(int(fault.get("status", 503)), fault.get("retry_after_secs"))
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _json(wire.error_body(exc.msg, **exc.fields), status=exc.status)

    async def _height(self, request: web.Request) -> web.Response:
        height = self._indexer_height()
        return _json(wire.height_json(height, self._height_time(height)))

    async def _time(self, request: web.Request) -> web.Response:
        return _json(wire.time_json(self._clock_ns()))

    async def _markets(self, request: web.Request) -> web.Response:
        markets = self._exchange.markets()
        ticker = request.query.get("ticker") or request.query.get("market")
        if ticker:
            return _json(wire.markets_json([markets[ticker]] if ticker in markets else []))
        limit = _limit(request, 1000)
        return _json(wire.markets_json(list(markets.values())[:limit]))

    async def _orderbook(self, request: web.Request) -> web.Response:
        bids, asks = self._exchange.book(self._ticker(request))
        return _json(wire.orderbook_json(bids, asks))

    async def _trades(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        limit = _limit(request, 100)
        before_h = _opt_int(request, "createdBeforeOrAtHeight", 0)
        before_ns = _iso(request, "createdBeforeOrAt")
        paged = before_h is not None or before_ns is not None
        rows = self._exchange.trades(ticker, limit=1000 if paged else limit)
        rows = [r for r in rows if (before_h is None or r[2] <= before_h)
                and (before_ns is None or r[1].ts_event <= before_ns)][:limit]
        return _json({"trades": [wire.trade_json(tid, t, h) for tid, t, h in rows]})

    async def _candles(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        resolution = request.query.get("resolution", "")
        if resolution not in wire.CANDLE_RESOLUTIONS_SECS:
            raise _BadRequest("resolution must be a valid Candle Resolution, one of "
                              + ", ".join(wire.CANDLE_RESOLUTIONS_SECS), param="resolution",
                              location="query", value=resolution)
        limit = _limit(request, 1000)
        from_ns, to_ns = _iso(request, "fromISO"), _iso(request, "toISO")
        rows = [r for r in self._exchange.trades(ticker, limit=10_000)
                if (from_ns is None or r[1].ts_event >= from_ns)
                and (to_ns is None or r[1].ts_event <= to_ns)]
        candles = self._candles_for(ticker, resolution, rows)[:limit]
        if resolution == "1HOUR" and len(candles) < limit:  # the market's past, before the start
            oldest = candles[-1]["startedAt"] if candles else None
            past = [wire.history_candle_json(ticker, b) for b in reversed(self._exchange.history(ticker, 720))
                    if (from_ns is None or b.ts_ns >= from_ns) and (to_ns is None or b.ts_ns <= to_ns)]
            candles += [c for c in past if oldest is None or c["startedAt"] < oldest][:limit - len(candles)]
        return _json({"candles": candles})

    async def _historical_funding(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        limit = _limit(request, 100)
        before_h = _opt_int(request, "effectiveBeforeOrAtHeight", 0)
        before_ns = _iso(request, "effectiveBeforeOrAt")
        paged = before_h is not None or before_ns is not None
        rows = self._exchange.historical_funding(ticker, limit=100_000 if paged else limit)
        rows += self._exchange.past_funding(ticker, 720)  # the market's past, before the start
        rows = [p for p in rows if (before_h is None or p.height <= before_h)
                and (before_ns is None or p.ts_ns <= before_ns)][:limit]
        return _json({"historicalFunding": [wire.historical_funding_json(p) for p in rows]})

    async def _address(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        subs = []
        for number in sorted({0, *self._accounts.get(address, set())}):
            with contextlib.suppress(*_LOOKUP_ERRORS):
                subs.append(self._subaccount_json(self._exchange.subaccount(address, number)))
        if not subs:
            return _json(wire.error_body(f"No subaccounts found for address {address}"), status=404)
        return _json({"subaccounts": subs, "totalTradingRewards": "0"})

    async def _subaccount(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        number = _parse_number(request.match_info["number"], "subaccountNumber", "params")
        return _json({"subaccount": self._subaccount_json(self._lookup(address, number))})

    async def _orders(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        statuses = _multi(request, "status")
        ticker = request.query.get("ticker")
        side = request.query.get("side")
        limit = _limit(request, 1000)
        gtb_max = _opt_int(request, "goodTilBlockBeforeOrAt", 0)
        gtb_min = _opt_int(request, "goodTilBlockAfter", 0)
        rows = []
        for order in self._exchange.orders(owner, number):
            gtb = order.request.good_til_block
            if ((statuses and order.status.value not in statuses) or (ticker and order.ticker != ticker)
                    or (side and order.request.side.value != side)
                    or (gtb_max is not None and (gtb is None or gtb > gtb_max))
                    or (gtb_min is not None and (gtb is None or gtb <= gtb_min))):
                continue
            rows.append(order)
        rows.sort(key=lambda o: (o.updated_at_height, o.updated_ns), reverse=True)
        return _json([wire.order_json(o) for o in rows[:limit]])

    async def _order(self, request: web.Request) -> web.Response:
        uid = request.match_info["order_id"]
        for owner, numbers in list(self._accounts.items()):
            for number in numbers:
                with contextlib.suppress(*_LOOKUP_ERRORS):
                    for order in self._exchange.orders(owner, number):
                        if order.uid == uid:
                            return _json(wire.order_json(order))
        return _json(wire.error_body(f"Unable to find order with id: {uid}"), status=404)

    async def _fills(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        market = request.query.get("market") or request.query.get("ticker")
        limit = _limit(request, 1000)
        before_h = _opt_int(request, "createdBeforeOrAtHeight", 0)
        before_ns = _iso(request, "createdBeforeOrAt")
        rows = [f for f in self._exchange.fills(owner, number, limit=100_000)
                if (not market or f.ticker == market) and (before_h is None or f.height <= before_h)
                and (before_ns is None or f.ts_ns <= before_ns)]
        body: dict[str, Any] = {}
        page = _opt_int(request, "page", 1)
        start = (page - 1) * limit if page else 0
        body["fills"] = [wire.fill_json(f, False) for f in rows[start:start + limit]]
        if page:
            body.update(pageSize=limit, totalResults=len(rows), offset=start)
        return _json(body)

    async def _positions(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        statuses = _multi(request, "status")
        limit = _limit(request, 1000)
        markets = self._exchange.markets()
        rows = [p for p in self._exchange.positions(owner, number, open_only=False)
                if not statuses or p.status in statuses]
        ts = self._height_time(self._exchange.height)
        return _json({"positions": [
            wire.position_json(p, oracle_price=_oracle(markets, p.ticker),
                               created_ns=self._height_ns.get(p.height, ts))
            for p in rows[:limit]
        ]})

    async def _asset_positions(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        self._lookup(owner, number)
        usdc = self._exchange.asset_usdc(owner, number)
        rows = [wire.asset_position_json(number, usdc)] if usdc else []
        return _json({"positions": rows})

    async def _transfers(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        limit = _limit(request, 1000)
        rows = sorted(self._exchange.transfers(owner, number), key=lambda t: (t.height, t.ts_ns),
                      reverse=True)
        return _json({"transfers": [wire.transfer_json(t) for t in rows[:limit]]})

    async def _funding_payments(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        ticker = request.query.get("ticker")
        limit = _limit(request, 1000)
        page = _opt_int(request, "page", 1) or 1
        after_ns = _iso(request, "afterOrAt")
        markets = self._exchange.markets()
        rows = sorted((f for f in self._exchange.funding_payments(owner, number)
                       if (not ticker or f.ticker == ticker) and (after_ns is None or f.ts_ns >= after_ns)),
                      key=lambda f: f.ts_ns, reverse=True)
        start = (page - 1) * limit
        items = [wire.funding_payment_json(f, markets[f.ticker].clob_pair_id if f.ticker in markets else 0)
                 for f in rows[start:start + limit]]
        return _json({"fundingPayments": items, "pageSize": limit, "totalResults": len(rows),
                      "offset": start})

    # ---- helpers -------------------------------------------------------------------------------

    def _ticker(self, request: web.Request) -> str:
        ticker = request.match_info["ticker"]
        if ticker not in self._exchange.markets():
            raise _BadRequest("ticker must be a valid ticker (BTC-USD, etc)", param="ticker",
                              location="params", value=ticker)
        return ticker

    def _account_params(self, request: web.Request) -> tuple[str, int]:
        owner = request.query.get("address")
        if not owner:
            raise _BadRequest("address must be a valid dydx address", param="address", location="query")
        raw = request.query.get("subaccountNumber")
        if raw is None:
            raise _BadRequest("subaccountNumber must be a non-negative integer less than 128001",
                              param="subaccountNumber", location="query")
        number = _parse_number(raw, "subaccountNumber", "query")
        self._lookup(owner, number)
        return owner, number

    def _lookup(self, owner: str, number: int) -> Any:
        try:
            sub = self._exchange.subaccount(owner, number)
        except _LOOKUP_ERRORS:
            raise _BadRequest(f"No subaccount found with address {owner} and subaccountNumber {number}",
                              status=404) from None
        self._accounts.setdefault(owner, set()).add(number)
        return sub

    def _subaccount_json(self, sub: Any) -> dict[str, Any]:
        markets = self._exchange.markets()
        return wire.subaccount_json(sub, oracle_prices={t: m.oracle_price for t, m in markets.items()},
                                    latest_height=self._indexer_height(),
                                    ts_ns=self._height_ns.get(sub.height, self._exchange.block_time_ns),
                                    usdc_asset=self._exchange.asset_usdc(sub.owner, sub.subaccount_number))

    def _candles_for(self, ticker: str, resolution: str, rows: list[Any]) -> list[dict[str, Any]]:
        market = self._exchange.markets()[ticker]
        bids, asks = self._exchange.book(ticker)
        mid = (bids[0][0] + asks[0][0]) / 2 if bids and asks else None
        return wire.build_candles(ticker, resolution, rows, starting_open_interest=market.open_interest,
                                  mid=mid)

    def _indexer_height(self) -> int:
        return max(0, self._exchange.height - self._exchange.scenario.indexer_lag_blocks)

    def _height_time(self, height: int) -> int:
        return self._height_ns.get(height) or self._exchange.block_time_ns

    def _remember_height(self, height: int, ts_ns: int) -> None:
        if height not in self._height_ns:
            self._height_ns[height] = ts_ns
            self._heights.append(height)
            if len(self._heights) > 10_000:
                self._height_ns.pop(self._heights.popleft(), None)

    def _tick(self, ticker: str) -> Decimal:
        tick = self._ticks.get(ticker)
        if tick is None:
            tick = self._ticks[ticker] = self._exchange.markets()[ticker].tick_size
        return tick


class _BadRequest(Exception):
    def __init__(self, msg: str, *, status: int = 400, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.fields = fields


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(obj), status=status, content_type="application/json")


def _http_fault(status: int, retry_after_secs: object) -> web.Response:
    headers = {}
    if status == 429:
        secs = float(retry_after_secs) if isinstance(retry_after_secs, int | float | str) else 1.0
        headers["Retry-After"] = str(max(0, round(secs)))
        body = wire.error_body("Too many requests, please try again later.")
    else:
        body = wire.error_body("Internal Server Error" if status == 500 else "Service Unavailable")
    return web.Response(body=wire.encode(body), status=status, headers=headers,
                        content_type="application/json")


def _limit(request: web.Request, default: int) -> int:
    """The `limit` query parameter: 1..1000 (comlink's API_LIMIT_V4)."""
    value = _opt_int(request, "limit", 1, 1000)
    return default if value is None else value


def _opt_int(request: web.Request, name: str, lo: int, hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if value < lo or (hi is not None and value > hi):
        bound = f" and at most {hi}" if hi is not None else ""
        raise _BadRequest(f"{name} must be an integer at least {lo}{bound}", param=name,
                          location="query", value=raw)
    return value


def _iso(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return wire.parse_iso_ns(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a valid ISO 8601 date", param=name, location="query",
                          value=raw) from None


def _multi(request: web.Request, name: str) -> set[str]:
    return {part for value in request.query.getall(name, []) for part in value.split(",") if part}


def _parse_number(raw: str, name: str, location: str) -> int:
    if not raw.isdigit() or int(raw) >= _MAX_SUBACCOUNT_NUMBER:
        raise _BadRequest(f"{name} must be a non-negative integer less than 128001", param=name,
                          location=location, value=raw)
    return int(raw)


def _wire_id(key: Key) -> str | None:
    return None if key[0] == "v4_markets" else key[1]


def _reply_id(key: Key) -> str:
    return key[1]


def _oracle(markets: dict[str, Any], ticker: str) -> Decimal | None:
    market = markets.get(ticker)
    return market.oracle_price if market is not None else None


def _ts(update: AccountUpdate) -> int:
    for group in (update.fills, update.transfers, update.funding):
        if group:
            return group[0].ts_ns
    return max((o.updated_ns for o in update.orders), default=0)


def _apply_levels(book: dict[Decimal, Decimal], levels: tuple[BookLevel, ...]) -> None:
    for lvl in levels:
        if lvl.size > 0:
            book[lvl.price] = lvl.size
        else:
            book.pop(lvl.price, None)


def _level_diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[tuple[Decimal, Decimal]]:
    out = [(p, s) for p, s in new.items() if old.get(p) != s]
    out.extend((p, Decimal(0)) for p in old if p not in new)
    return out


def _text_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")
