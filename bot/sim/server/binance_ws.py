"""Binance spot WebSocket: event routing to streams, connections, SUBSCRIBE/UNSUBSCRIBE, pings."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from bot.domain import BookLevel
from bot.sim.faults import countdown
from bot.sim.part import Part
from bot.sim.server.binance_wire import (
    Conn,
    dumps,
    execution_report,
    fmt8,
    levels_json,
    to_ms,
)
from bot.sim.spot.records import (
    AccountPosition,
    BalanceUpdate,
    BookTickerUpdate,
    DepthUpdate,
    ExecutionReport,
    SpotEvent,
    SpotTrade,
)


class WsHandlers(Part):
    """WebSocket side of BinanceServer (a part of it: it reads and writes the server's state)."""

    # ---- events -------------------------------------------------------------------------------

    def publish(self, events: list[SpotEvent]) -> None:
        """Send exchange events to the subscribed streams (call after `spot.advance`)."""
        self._expire_listen_keys()
        for event in events:
            routed = self._route(event)
            if routed is None:
                continue
            streams, payload = routed
            for conn in list(self._conns):
                for stream in streams:
                    if stream in conn.streams:
                        text = dumps({"stream": stream, "data": payload}) if conn.combined \
                            else dumps(payload)
                        self._send(conn, text)

    def _route(self, event: SpotEvent) -> tuple[list[str], dict[str, Any]] | None:
        if isinstance(event, DepthUpdate):
            gap = self.faults.depth_gap
            if gap is not None and gap.count > 0:
                self.faults.depth_gap = countdown(gap)
                return None
            sym = event.symbol.lower()
            return [f"{sym}@depth", f"{sym}@depth@100ms"], {
                "e": "depthUpdate", "E": to_ms(event.ts_ns), "s": event.symbol,
                "U": event.first_update_id, "u": event.final_update_id,
                "b": levels_json(event.bids), "a": levels_json(event.asks)}
        if isinstance(event, BookTickerUpdate):
            bid = event.bid or BookLevel(Decimal(0), Decimal(0))
            ask = event.ask or BookLevel(Decimal(0), Decimal(0))
            return [f"{event.symbol.lower()}@bookTicker"], {
                "u": event.update_id, "s": event.symbol, "b": fmt8(bid.price), "B": fmt8(bid.size),
                "a": fmt8(ask.price), "A": fmt8(ask.size)}
        if isinstance(event, SpotTrade):
            return [f"{event.symbol.lower()}@trade"], {
                "e": "trade", "E": to_ms(event.ts_ns), "s": event.symbol, "t": event.trade_id,
                "p": fmt8(event.price), "q": fmt8(event.qty), "T": to_ms(event.ts_ns),
                "m": event.is_buyer_maker, "M": True}
        key = self._key_of_account.get(event.api_key)
        if key is None:
            return None
        if isinstance(event, ExecutionReport):
            return [key], execution_report(event)
        if isinstance(event, BalanceUpdate):
            ms = to_ms(event.ts_ns)
            return [key], {"e": "balanceUpdate", "E": ms, "a": event.asset, "d": fmt8(event.delta), "T": ms}
        assert isinstance(event, AccountPosition)
        return [key], {"e": "outboundAccountPosition", "E": to_ms(event.ts_ns),
                       "u": to_ms(self.spot.account_update_ns(event.api_key)),
                       "B": [{"a": b.asset, "f": fmt8(b.free), "l": fmt8(b.locked)} for b in event.balances]}

    def _send(self, conn: Conn, text: str) -> None:
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:  # a slow consumer is disconnected, as Binance does
            self._close_conn(conn, 1008, "send queue overflow")

    def _close_conn(self, conn: Conn, code: int, reason: str) -> None:
        self._conns.discard(conn)
        conn.close_code, conn.close_reason = code, reason
        while not conn.queue.empty():
            conn.queue.get_nowait()
        conn.queue.put_nowait(None)

    # ---- WebSocket ----------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/stream":
            names, combined = request.query.get("streams", ""), True
        else:
            names, combined = request.match_info.get("streams", ""), False
        ws = web.WebSocketResponse(autoping=False, timeout=5.0)
        loop = asyncio.get_running_loop()
        conn = Conn(ws, {s for s in names.split("/") if s}, combined,
                     asyncio.Queue(self.send_queue_size), loop.time(), loop.time())
        # Subscribed before the handshake completes: nothing published after the client sees the
        # 101 response is lost.
        self._conns.add(conn)
        try:
            await ws.prepare(request)
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(conn), name="binance-ws-writer")
                pinger = tg.create_task(self._ping(conn), name="binance-ws-pinger")
                await self._read(conn)
                pinger.cancel()
                if not writer.done():
                    self._close_conn(conn, 1000, "")
        finally:
            self._conns.discard(conn)
        return ws

    async def _read(self, conn: Conn) -> None:
        ws = conn.ws
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                self._control(conn, msg.data)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.last_pong = asyncio.get_running_loop().time()
            elif msg.type is WSMsgType.ERROR:
                break

    async def _write(self, conn: Conn) -> None:
        while True:
            text = await conn.queue.get()
            if text is None:
                with contextlib.suppress(ConnectionError):
                    await conn.ws.close(code=conn.close_code, message=conn.close_reason.encode())
                return
            try:
                await conn.ws.send_str(text)
            except ConnectionError:
                return

    async def _ping(self, conn: Conn) -> None:
        """Ping on Binance's cadence; drop a client that stops answering or outlives its session."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval_secs)
            now = loop.time()
            if now - conn.last_pong > self.pong_timeout_secs:
                self._close_conn(conn, 1008, "pong timeout")
                return
            if now - conn.opened > self.max_connection_secs:
                self._close_conn(conn, 1001, "connection lifetime exceeded")
                return
            try:
                await conn.ws.ping(str(to_ms(self.clock_ns())).encode())
            except ConnectionError:
                return

    def _control(self, conn: Conn, text: str) -> None:
        """Handle SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS requests."""
        try:
            msg = json.loads(text)
            method, req_id = msg["method"], msg.get("id")
        except (ValueError, KeyError, TypeError):
            self._send(conn, dumps({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}))
            return
        params = msg.get("params") or []
        if method == "SUBSCRIBE":
            conn.streams.update(str(s) for s in params)
            result: Any = None
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(str(s) for s in params)
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(conn.streams)
        else:
            self._send(conn, dumps({"code": 2, "msg": f"Invalid request: unknown variant {method}",
                                     "id": req_id}))
            return
        self._send(conn, dumps({"result": result, "id": req_id}))
