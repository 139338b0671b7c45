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

Fault switches, fields of `exchange.scenario` (bot.sim.faults.ScenarioState; bot.sim.scenarios sets them):
  http_error: HttpError(status 429|500|503, count N, retry_after_secs S)
      the next N REST responses fail with that status (429 adds `Retry-After`); the switch
      clears when the count is spent.
  ws_drop: WsDrop.CLOSE | ABORT -> every WS connection is closed once (code 1012; ABORT drops the
      TCP connection without a close frame), then the switch clears.
  ws_stall: true -> no channel data is sent while set (it is dropped, as a stuck indexer
      would); sockets stay open, pings and subscribe replies still flow.
  book_fault: BookFault.GAP | CROSSED -> the next orderbook update goes out with a skipped
      message_id, or with an extra bid level crossing the best ask, to every subscriber of that
      book; then the switch clears.
  ws_inject: BadFrame.GARBAGE | OVERSIZED | WRONG_TYPE -> every WS connection gets one bad frame
      (text that is not JSON; a frame above the client's 8 MiB limit; a channel_data frame on
      one of its subscriptions, with the right message_id, whose fields have the wrong types);
      then the switch clears.
  account_fault: AccountFault.DUPLICATE | REORDER -> while set, every v4_subaccounts message is
      sent twice, or held back and sent after the next one of the same subaccount (what was held
      is released when the switch goes).

Layout: this module wires the server; `indexer_publish` (fan-out and faults), `indexer_ws` (socket
side), `indexer_rest` (REST routes) and `indexer_wire` (JSON shapes) hold its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from aiohttp import web

from bot.sim.exchange import SimExchange
from bot.sim.server.indexer_publish import Publisher
from bot.sim.server.indexer_rest import RestHandlers
from bot.sim.server.indexer_ws import Conn, Key, WsHandlers


class IndexerServer(Publisher, WsHandlers, RestHandlers):
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
        self._conns: set[Conn] = set()
        self._direct: dict[Key, set[Conn]] = {}
        self._batched: dict[Key, set[Conn]] = {}
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
