"""Binance spot REST + WebSocket front-end of the simulator (aiohttp, loopback only).

Speaks the wire protocol of api.binance.com / stream.binance.com over a `SpotExchange`:

REST (JSON; errors are `{"code": <negative int>, "msg": ...}` with HTTP 400, 401 for API keys):
    GET  /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/depth, /api/v3/ticker/bookTicker,
         /api/v3/klines (1h: the symbol's simulated past)
    SIGNED  POST|DELETE|GET /api/v3/order, GET|DELETE /api/v3/openOrders, GET /api/v3/account,
            GET /sapi/v1/capital/deposit/hisrec and /sapi/v1/capital/withdraw/history (the
            deposits and withdrawals a test or the `binance_transfer` scenario made with
            `SpotExchange.deposit`/`withdraw`: credited, status 1; completed, status 6),
            GET /sapi/v1/asset/transfer (the universal transfers between spot and the owner's
            other wallets made with `SpotExchange.transfer` or the scenario with a `type`:
            CONFIRMED; `type` required, `current`/`size` pages, the last 6 months)
    API-key POST|PUT|DELETE /api/v3/userDataStream
WebSocket: `/ws/<stream>[/<stream>...]` (raw payloads) and `/stream?streams=a/b` (combined:
    `{"stream": ..., "data": ...}`), live SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS; market streams
    `<symbol>@depth`, `<symbol>@depth@100ms`, `<symbol>@bookTicker`, `<symbol>@trade`; a listenKey
    as a stream name is the user data stream (`executionReport`, `outboundAccountPosition`,
    `balanceUpdate` on a deposit, withdrawal or transfer, `listenKeyExpired`).

Signing: `X-MBX-APIKEY` header; `signature` = hex HMAC-SHA256(secret, query string + body) with the
`signature` parameter itself left out; `timestamp` (ms) is required and must satisfy
`timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow` (default 5000, max
60000), else -1021. Bad signature -1022; missing/malformed key -2014 and unknown key -2015 (401).

Rate limits (data in `WEIGHTS`): every response carries `X-MBX-USED-WEIGHT-1M` (fixed minute
windows of the server clock); going over `weight_limit_1m` answers 429 -1003 with `Retry-After`
(seconds to the next window); with `ban_after_429s` set, more 429s than that in one window ban
the client: 418 with `Retry-After` until the ban ends. Order placements carry
`X-MBX-ORDER-COUNT-10S`/`-1D`.

Fault switches (`server.faults`, a bot.sim.faults.BinanceFaults a test or the runner sets):
    http_error: HttpError(status 429|418|500|503, count N, retry_after_secs S, execute)
        the next N REST requests answer `status` (-1003 for 429/418, -1001 for 500, -1008 for
        503); with `execute` true the request is processed first (5xx: "execution status
        UNKNOWN").
    depth_gap: DepthGap(count N)  the next N diff-depth events are not sent (clients see a U gap).
`api_restrictions` (constructor argument, or the attribute, or the `binance_key_restrictions`
scenario) is what GET /sapi/v1/account/apiRestrictions answers for every key: by default a new
key's (reading and spot trading, no withdrawals, no IP restriction).
`close_streams()` drops every WebSocket (clients must reconnect and resync).

Simplifications (documented, deliberate): one client (no per-IP accounting); unknown parameters
are ignored; both depth stream speeds forward every update as it happens; order ids are per
symbol. The credentials from `sim_binance_credentials()` are simulator-only test keys.

Layout: this module wires the server; `binance_rest`, `binance_ws` and `binance_wire` hold its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from bot.sim.faults import BinanceFaults
from bot.sim.server.binance_rest import RestHandlers
from bot.sim.server.binance_wire import (
    API_KEY,
    DEFAULT_API_RESTRICTIONS,
    PUBLIC,
    SIGNED,
    Conn,
    Req,
    to_ms,
)
from bot.sim.server.binance_ws import WsHandlers
from bot.sim.spot.exchange import SpotExchange


def sim_binance_credentials() -> tuple[str, str]:
    """Return the simulator's fixed (api_key, api_secret): test keys, never valid on Binance."""
    key = hashlib.sha256(b"perpbot simulator binance api key (not a real key)").hexdigest()
    secret = hashlib.sha256(b"perpbot simulator binance api secret (not a real secret)").hexdigest()
    return key, secret


class BinanceServer(RestHandlers, WsHandlers):
    """Serve a SpotExchange as Binance spot REST + WebSocket on loopback."""

    def __init__(self, spot: SpotExchange, clock_ns: Callable[[], int], *, host: str = "127.0.0.1",
                 port: int = 0, credentials: Mapping[str, str] | None = None,
                 weight_limit_1m: int = 6000, ban_after_429s: int | None = None, ban_secs: int = 120,
                 order_limit_10s: int = 100, ping_interval_secs: float = 20.0,
                 pong_timeout_secs: float = 60.0, max_connection_secs: float = 24 * 3600.0,
                 send_queue_size: int = 10_000, api_restrictions: Mapping[str, bool] | None = None) -> None:
        self.spot = spot
        self.clock_ns = clock_ns
        self.host, self.port = host, port
        self.credentials: dict[str, str] = dict(credentials or [sim_binance_credentials()])
        for api_key in self.credentials:
            spot.create_account(api_key)
        self.weight_limit_1m = weight_limit_1m
        self.ban_after_429s, self.ban_secs = ban_after_429s, ban_secs
        self.order_limit_10s = order_limit_10s
        self.ping_interval_secs, self.pong_timeout_secs = ping_interval_secs, pong_timeout_secs
        self.max_connection_secs = max_connection_secs
        self.send_queue_size = send_queue_size
        self.faults = BinanceFaults()
        self.api_restrictions = {**DEFAULT_API_RESTRICTIONS, **(api_restrictions or {})}
        self.request_count = 0  # REST requests seen, faulted ones included (for tests)
        self._weight_window = -1
        self._used_weight = 0
        self._violations = 0
        self._banned_until_ns = 0
        self._order_counts: dict[str, tuple[int, int, int, int]] = {}  # key -> (10s win, n, day, n)
        self._listen_keys: dict[str, tuple[str, int]] = {}  # listenKey -> (api key, expiry ns)
        self._key_of_account: dict[str, str] = {}
        self._listen_key_seq = 0
        self._conns: set[Conn] = set()
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], tuple[Callable[[Req], Any], str]] = {
            ("GET", "/api/v3/ping"): (lambda r: {}, PUBLIC),
            ("GET", "/api/v3/time"): (lambda r: {"serverTime": to_ms(r.now_ns)}, PUBLIC),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, PUBLIC),
            ("GET", "/api/v3/depth"): (self._depth, PUBLIC),
            ("GET", "/api/v3/ticker/bookTicker"): (self._book_ticker, PUBLIC),
            ("GET", "/api/v3/klines"): (self._klines, PUBLIC),
            ("POST", "/api/v3/order"): (self._new_order, SIGNED),
            ("DELETE", "/api/v3/order"): (self._cancel_order, SIGNED),
            ("GET", "/api/v3/order"): (self._query_order, SIGNED),
            ("GET", "/api/v3/openOrders"): (self._open_orders, SIGNED),
            ("GET", "/api/v3/myTrades"): (self._my_trades, SIGNED),
            ("DELETE", "/api/v3/openOrders"): (self._cancel_open_orders, SIGNED),
            ("GET", "/api/v3/account"): (self._account, SIGNED),
            ("POST", "/api/v3/userDataStream"): (self._listen_key_new, API_KEY),
            ("PUT", "/api/v3/userDataStream"): (self._listen_key_keepalive, API_KEY),
            ("DELETE", "/api/v3/userDataStream"): (self._listen_key_close, API_KEY),
            ("GET", "/sapi/v1/account/apiRestrictions"): (
                lambda r: {**self.api_restrictions, "createTime": 1_700_000_000_000}, SIGNED),
            ("GET", "/sapi/v1/capital/deposit/hisrec"): (self._deposit_history, SIGNED),
            ("GET", "/sapi/v1/capital/withdraw/history"): (self._withdraw_history, SIGNED),
            ("GET", "/sapi/v1/asset/transfer"): (self._transfer_history, SIGNED),
        }

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; `port` is the real one afterwards (0 picks a free port)."""
        app = web.Application()
        app.router.add_route("*", "/api/v3/{tail:.*}", self._dispatch)
        app.router.add_route("*", "/sapi/v1/{tail:.*}", self._dispatch)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/ws/{streams:.*}", self._ws_handler)
        app.router.add_get("/stream", self._ws_handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close every stream (1001 going away) and stop serving."""
        await self.close_streams(1001, "server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close_streams(self, code: int = 1001, reason: str = "") -> None:
        """Drop every WebSocket connection (a fault for reconnect/resync tests)."""
        conns = list(self._conns)
        for conn in conns:
            self._close_conn(conn, code, reason)
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=code, message=reason.encode()), 5)
