"""Binance spot REST + WebSocket front-end of the simulator (aiohttp, loopback only).

Speaks the wire protocol of api.binance.com / stream.binance.com over a `SpotExchange`:

REST (JSON; errors are `{"code": <negative int>, "msg": ...}` with HTTP 400, 401 for API keys):
    GET  /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/depth, /api/v3/ticker/bookTicker,
         /api/v3/klines (1h: the symbol's simulated past)
    SIGNED  POST|DELETE|GET /api/v3/order, GET|DELETE /api/v3/openOrders, GET /api/v3/account
    API-key POST|PUT|DELETE /api/v3/userDataStream
WebSocket: `/ws/<stream>[/<stream>...]` (raw payloads) and `/stream?streams=a/b` (combined:
    `{"stream": ..., "data": ...}`), live SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS; market streams
    `<symbol>@depth`, `<symbol>@depth@100ms`, `<symbol>@bookTicker`, `<symbol>@trade`; a listenKey
    as a stream name is the user data stream (`executionReport`, `outboundAccountPosition`,
    `listenKeyExpired`).

Signing: `X-MBX-APIKEY` header; `signature` = hex HMAC-SHA256(secret, query string + body) with the
`signature` parameter itself left out; `timestamp` (ms) is required and must satisfy
`timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow` (default 5000, max
60000), else -1021. Bad signature -1022; missing/malformed key -2014 and unknown key -2015 (401).

Rate limits (data in `WEIGHTS`): every response carries `X-MBX-USED-WEIGHT-1M` (fixed minute
windows of the server clock); going over `weight_limit_1m` answers 429 -1003 with `Retry-After`
(seconds to the next window); with `ban_after_429s` set, more 429s than that in one window ban
the client: 418 with `Retry-After` until the ban ends. Order placements carry
`X-MBX-ORDER-COUNT-10S`/`-1D`.

Fault switches (`server.faults`, a plain dict a test or the admin endpoint mutates):
    {"http_error": {"status": 429|418|500|503, "count": N, "retry_after_secs": S, "execute": bool}}
        the next N REST requests answer `status` (-1003 for 429/418, -1001 for 500, -1008 for
        503); with "execute" true the request is processed first (5xx: "execution status
        UNKNOWN").
    {"depth_gap": {"count": N}}  the next N diff-depth events are not sent (clients see a U gap).
`api_restrictions` (constructor argument, or the attribute, or the `binance_key_restrictions`
scenario) is what GET /sapi/v1/account/apiRestrictions answers for every key: by default a new
key's (reading and spot trading, no withdrawals, no IP restriction).
`close_streams()` drops every WebSocket (clients must reconnect and resync).

Simplifications (documented, deliberate): one client (no per-IP accounting); unknown parameters
are ignored; both depth stream speeds forward every update as it happens; order ids are per
symbol. The credentials from `sim_binance_credentials()` are simulator-only test keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.domain import BookLevel, Side
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import (
    AccountPosition,
    BookTickerUpdate,
    DepthUpdate,
    ExecutionReport,
    NewOrder,
    OrderType,
    SpotError,
    SpotEvent,
    SpotFill,
    SpotOrder,
    SpotTimeInForce,
    SpotTrade,
)

NS_PER_MS = 1_000_000
NS_PER_SEC = 1_000_000_000
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
LISTEN_KEY_TTL_NS = 3600 * NS_PER_SEC
API_KEY_HEADER = "X-MBX-APIKEY"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Request weights of the REST API (Binance spot, 2023-08 revision); depth scales with `limit`.
WEIGHTS: dict[tuple[str, str], int | Callable[[Mapping[str, str]], int]] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/depth"): lambda p: _depth_weight(p.get("limit", "100")),
    ("GET", "/api/v3/ticker/bookTicker"): lambda p: 2 if "symbol" in p else 4,
    ("GET", "/api/v3/klines"): 2,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): lambda p: 6 if "symbol" in p else 80,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
    ("GET", "/sapi/v1/account/apiRestrictions"): 1,
}
DEFAULT_API_RESTRICTIONS = {"ipRestrict": False, "enableReading": True, "enableWithdrawals": False,
                            "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
                            "permitsUniversalTransfer": False, "enableVanillaOptions": False,
                            "enableSpotAndMarginTrading": True}
_PUBLIC, _API_KEY, _SIGNED = "NONE", "USER_STREAM", "SIGNED"

_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_INT_RE = re.compile(r"^[0-9]{1,20}$")
_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_API_KEY_RE = re.compile(r"^[A-Za-z0-9]{64}$")
_OTHER_ORDER_TYPES = {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
_FAULT_BODIES = {
    429: (-1003, "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
                 "Please use WebSocket Streams for live updates to avoid polling the API."),
    418: (-1003, "Way too much request weight used; IP banned until {until}. "
                 "Please use WebSocket Streams for live updates to avoid bans."),
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
}


def sim_binance_credentials() -> tuple[str, str]:
    """Return the simulator's fixed (api_key, api_secret): test keys, never valid on Binance."""
    key = hashlib.sha256(b"perpbot simulator binance api key (not a real key)").hexdigest()
    secret = hashlib.sha256(b"perpbot simulator binance api secret (not a real secret)").hexdigest()
    return key, secret


def _depth_weight(limit: str) -> int:
    n = int(limit) if _INT_RE.match(limit) else 100
    return 5 if n <= 100 else 25 if n <= 500 else 50 if n <= 1000 else 250


def _f(value: Decimal) -> str:
    """Binance renders amounts with 8 decimals."""
    return f"{value:.8f}"


def _ms(ns: int) -> int:
    return ns // NS_PER_MS


def _levels(levels: tuple[BookLevel, ...] | list[BookLevel]) -> list[list[str]]:
    return [[_f(lvl.price), _f(lvl.size)] for lvl in levels]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(slots=True)
class _Req:
    params: dict[str, str]
    now_ns: int
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Conn:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    queue: asyncio.Queue[str | None]
    last_pong: float
    opened: float
    close_code: int = 1000
    close_reason: str = ""


class BinanceServer:
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
        self.faults: dict[str, dict[str, Any]] = {}
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
        self._conns: set[_Conn] = set()
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], tuple[Callable[[_Req], Any], str]] = {
            ("GET", "/api/v3/ping"): (lambda r: {}, _PUBLIC),
            ("GET", "/api/v3/time"): (lambda r: {"serverTime": _ms(r.now_ns)}, _PUBLIC),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, _PUBLIC),
            ("GET", "/api/v3/depth"): (self._depth, _PUBLIC),
            ("GET", "/api/v3/ticker/bookTicker"): (self._book_ticker, _PUBLIC),
            ("GET", "/api/v3/klines"): (self._klines, _PUBLIC),
            ("POST", "/api/v3/order"): (self._new_order, _SIGNED),
            ("DELETE", "/api/v3/order"): (self._cancel_order, _SIGNED),
            ("GET", "/api/v3/order"): (self._query_order, _SIGNED),
            ("GET", "/api/v3/openOrders"): (self._open_orders, _SIGNED),
            ("DELETE", "/api/v3/openOrders"): (self._cancel_open_orders, _SIGNED),
            ("GET", "/api/v3/account"): (self._account, _SIGNED),
            ("POST", "/api/v3/userDataStream"): (self._listen_key_new, _API_KEY),
            ("PUT", "/api/v3/userDataStream"): (self._listen_key_keepalive, _API_KEY),
            ("DELETE", "/api/v3/userDataStream"): (self._listen_key_close, _API_KEY),
            ("GET", "/sapi/v1/account/apiRestrictions"): (
                lambda r: {**self.api_restrictions, "createTime": 1_700_000_000_000}, _SIGNED),
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
                        text = _dumps({"stream": stream, "data": payload}) if conn.combined \
                            else _dumps(payload)
                        self._send(conn, text)

    def _route(self, event: SpotEvent) -> tuple[list[str], dict[str, Any]] | None:
        if isinstance(event, DepthUpdate):
            gap = self.faults.get("depth_gap")
            if gap and gap.get("count", 0) > 0:
                gap["count"] -= 1
                return None
            sym = event.symbol.lower()
            return [f"{sym}@depth", f"{sym}@depth@100ms"], {
                "e": "depthUpdate", "E": _ms(event.ts_ns), "s": event.symbol,
                "U": event.first_update_id, "u": event.final_update_id,
                "b": _levels(event.bids), "a": _levels(event.asks)}
        if isinstance(event, BookTickerUpdate):
            bid = event.bid or BookLevel(Decimal(0), Decimal(0))
            ask = event.ask or BookLevel(Decimal(0), Decimal(0))
            return [f"{event.symbol.lower()}@bookTicker"], {
                "u": event.update_id, "s": event.symbol, "b": _f(bid.price), "B": _f(bid.size),
                "a": _f(ask.price), "A": _f(ask.size)}
        if isinstance(event, SpotTrade):
            return [f"{event.symbol.lower()}@trade"], {
                "e": "trade", "E": _ms(event.ts_ns), "s": event.symbol, "t": event.trade_id,
                "p": _f(event.price), "q": _f(event.qty), "T": _ms(event.ts_ns),
                "m": event.is_buyer_maker, "M": True}
        key = self._key_of_account.get(event.api_key)
        if key is None:
            return None
        if isinstance(event, ExecutionReport):
            return [key], _execution_report(event)
        assert isinstance(event, AccountPosition)
        return [key], {"e": "outboundAccountPosition", "E": _ms(event.ts_ns),
                       "u": _ms(self.spot.account_update_ns(event.api_key)),
                       "B": [{"a": b.asset, "f": _f(b.free), "l": _f(b.locked)} for b in event.balances]}

    def _send(self, conn: _Conn, text: str) -> None:
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:  # a slow consumer is disconnected, as Binance does
            self._close_conn(conn, 1008, "send queue overflow")

    def _close_conn(self, conn: _Conn, code: int, reason: str) -> None:
        self._conns.discard(conn)
        conn.close_code, conn.close_reason = code, reason
        while not conn.queue.empty():
            conn.queue.get_nowait()
        conn.queue.put_nowait(None)

    # ---- REST ---------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.request_count += 1
        now_ns = self.clock_ns()
        route = self._routes.get((request.method, request.path))
        if route is None:
            return web.Response(status=404, text="Not Found")
        handler, security = route
        fault = self.faults.get("http_error")
        if fault and fault.get("count", 0) > 0:
            fault["count"] -= 1
            if fault.get("execute"):
                await self._serve(request, handler, security, now_ns)
            return self._fault_response(int(fault["status"]), fault.get("retry_after_secs"), now_ns)
        return await self._serve(request, handler, security, now_ns)

    async def _serve(self, request: web.Request, handler: Callable[[_Req], Any], security: str,
                     now_ns: int) -> web.StreamResponse:
        window = now_ns // (60 * NS_PER_SEC)
        if window != self._weight_window:
            self._weight_window, self._used_weight, self._violations = window, 0, 0
        if now_ns < self._banned_until_ns:
            return self._fault_response(418, math.ceil((self._banned_until_ns - now_ns) / NS_PER_SEC),
                                        now_ns)
        body = await request.text() if request.method != "GET" else ""
        error: SpotError | None = None
        try:
            params = _parse_params(request.rel_url.raw_query_string, body)
        except SpotError as exc:
            params, error = {}, exc
        weight = WEIGHTS[(request.method, request.path)]
        cost = weight(params) if callable(weight) else weight
        if self._used_weight + cost > self.weight_limit_1m:
            self._violations += 1
            if self.ban_after_429s is not None and self._violations > self.ban_after_429s:
                self._banned_until_ns = now_ns + self.ban_secs * NS_PER_SEC
                return self._fault_response(418, self.ban_secs, now_ns)
            retry = math.ceil(((window + 1) * 60 * NS_PER_SEC - now_ns) / NS_PER_SEC)
            return self._fault_response(429, max(1, retry), now_ns)
        self._used_weight += cost
        req = _Req(params, now_ns)
        try:
            if error is not None:
                raise error
            if security != _PUBLIC:
                req.api_key = self._authenticate(request, security, params, body, now_ns)
            result = handler(req)
        except SpotError as exc:
            return self._json({"code": exc.code, "msg": exc.msg}, exc.http_status)
        finally:
            self.publish(self.spot.drain_events())
        return self._json(result, 200, req.headers)

    def _authenticate(self, request: web.Request, security: str, params: dict[str, str], body: str,
                      now_ns: int) -> str:
        api_key = request.headers.get(API_KEY_HEADER, "")
        if api_key not in self.credentials:
            if not _API_KEY_RE.match(api_key):
                raise SpotError(-2014, "API-key format invalid.", 401)
            raise SpotError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if security == _SIGNED:
            timestamp = _int(params, "timestamp", required=True)
            recv_window = _int(params, "recvWindow")
            if recv_window is None:
                recv_window = DEFAULT_RECV_WINDOW_MS
            if recv_window > MAX_RECV_WINDOW_MS:
                raise SpotError(-1131, "recvWindow must be less than 60000")
            signature = params.get("signature", "")
            if not signature:
                raise SpotError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                       "or malformed.")
            server_ms = _ms(now_ns)
            assert timestamp is not None
            if timestamp >= server_ms + 1000:
                raise SpotError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if server_ms - timestamp > recv_window:
                raise SpotError(-1021, "Timestamp for this request is outside of the recvWindow.")
            payload = _without_signature(request.rel_url.raw_query_string) + _without_signature(body)
            expected = hmac.new(self.credentials[api_key].encode(), payload.encode(),
                                hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature.lower()):
                raise SpotError(-1022, "Signature for this request is not valid.")
        return api_key

    def _json(self, body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
        resp = web.Response(text=_dumps(body), status=status, content_type="application/json")
        resp.headers[WEIGHT_HEADER] = str(self._used_weight)
        resp.headers.update(headers or {})
        return resp

    def _fault_response(self, status: int, retry_after_secs: int | float | None,
                        now_ns: int) -> web.Response:
        code, msg = _FAULT_BODIES.get(status, (-1000, "An unknown error occured while processing the "
                                                      "request."))
        until_ms = _ms(now_ns) + int((retry_after_secs or 0) * 1000)
        headers = {} if retry_after_secs is None else {"Retry-After": str(int(retry_after_secs))}
        return self._json({"code": code, "msg": msg.format(limit=self.weight_limit_1m, until=until_ms)},
                          status, headers)

    # ---- handlers: market data ----------------------------------------------------------------

    def _exchange_info(self, req: _Req) -> dict[str, Any]:
        names: list[str] | None = None
        if "symbol" in req.params:
            names = [req.params["symbol"]]
        elif "symbols" in req.params:
            try:
                names = [str(s) for s in json.loads(req.params["symbols"])]
            except (ValueError, TypeError) as exc:
                raise SpotError(-1130, "Data sent for parameter 'symbols' is not valid.") from exc
        specs = [self.spot.symbol(n) for n in names] if names is not None else self.spot.symbols()
        return {
            "timezone": "UTC", "serverTime": _ms(req.now_ns),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit_1m},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": self.order_limit_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [{
                "symbol": s.symbol, "status": "TRADING", "baseAsset": s.base_asset,
                "baseAssetPrecision": 8, "quoteAsset": s.quote_asset, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False,
                "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
                "cancelReplaceAllowed": False, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _f(s.min_price),
                     "maxPrice": _f(s.max_price), "tickSize": _f(s.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": _f(s.min_qty), "maxQty": _f(s.max_qty),
                     "stepSize": _f(s.step_size)},
                    {"filterType": "NOTIONAL", "minNotional": _f(s.min_notional),
                     "applyMinToMarket": True, "maxNotional": _f(s.max_notional),
                     "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
            } for s in specs],
        }

    def _depth(self, req: _Req) -> dict[str, Any]:
        symbol = _str(req.params, "symbol", required=True)
        limit = _int(req.params, "limit") or 100
        last_id, bids, asks = self.spot.depth(symbol, min(limit, 5000))
        return {"lastUpdateId": last_id, "bids": _levels(bids), "asks": _levels(asks)}

    def _klines(self, req: _Req) -> list[list[Any]]:
        """Hourly klines of the symbol's simulated past (1h only), oldest first, as Binance sends."""
        symbol = _str(req.params, "symbol", required=True)
        if _str(req.params, "interval", required=True) != "1h":
            raise SpotError(-1120, "Invalid interval.")
        limit = min(max(_int(req.params, "limit") or 500, 1), 1000)
        hour_ms = 3_600_000
        return [[_ms(b.ts_ns), _f(b.open), _f(b.high), _f(b.low), _f(b.close), "0",
                 _ms(b.ts_ns) + hour_ms - 1, "0", 0, "0", "0", "0"] for b in self.spot.klines(symbol, limit)]

    def _book_ticker(self, req: _Req) -> Any:
        def one(symbol: str) -> dict[str, str]:
            _, bid, ask = self.spot.book_ticker(symbol)
            zero = BookLevel(Decimal(0), Decimal(0))
            bid, ask = bid or zero, ask or zero
            return {"symbol": symbol, "bidPrice": _f(bid.price), "bidQty": _f(bid.size),
                    "askPrice": _f(ask.price), "askQty": _f(ask.size)}

        if "symbol" in req.params:
            return one(req.params["symbol"])
        return [one(s.symbol) for s in self.spot.symbols()]

    # ---- handlers: trading --------------------------------------------------------------------

    def _new_order(self, req: _Req) -> dict[str, Any]:
        p = req.params
        symbol = _str(p, "symbol", required=True)
        side_s = _str(p, "side", required=True)
        type_s = _str(p, "type", required=True)
        if side_s not in ("BUY", "SELL"):
            raise SpotError(-1117, "Invalid side.")
        if type_s in _OTHER_ORDER_TYPES:
            raise SpotError(-2010, "Unsupported order combination")
        if type_s not in OrderType.__members__:
            raise SpotError(-1116, "Invalid orderType.")
        tif_s = p.get("timeInForce")
        if tif_s is not None and tif_s not in SpotTimeInForce.__members__:
            raise SpotError(-1115, "Invalid timeInForce.")
        cid = p.get("newClientOrderId")
        if cid is not None and not _CLIENT_ID_RE.match(cid):
            raise SpotError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                                   "is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        order_type = OrderType(type_s)
        resp_type = p.get("newOrderRespType") or ("FULL" if order_type is not OrderType.LIMIT_MAKER
                                                  else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise SpotError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        new = NewOrder(
            symbol=symbol, side=Side(side_s), type=order_type, quantity=_dec(p, "quantity"),
            quote_order_qty=_dec(p, "quoteOrderQty"), price=_dec(p, "price"),
            time_in_force=None if tif_s is None else SpotTimeInForce(tif_s), new_client_order_id=cid,
        )
        self._count_order(req)
        order, fills = self.spot.place_order(req.api_key, new, req.now_ns)
        ack = {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
               "clientOrderId": order.client_order_id, "transactTime": _ms(order.time_ns)}
        if resp_type == "ACK":
            return ack
        result = ack | _order_fields(order) | {"workingTime": _ms(order.time_ns),
                                              "selfTradePreventionMode": "EXPIRE_MAKER"}
        if resp_type == "FULL":
            result["fills"] = [_fill_json(f) for f in fills]
        return result

    def _count_order(self, req: _Req) -> None:
        ms = _ms(req.now_ns)
        win10, n10, day, n1d = self._order_counts.get(req.api_key, (-1, 0, -1, 0))
        if ms // 10_000 != win10:
            win10, n10 = ms // 10_000, 0
        if ms // 86_400_000 != day:
            day, n1d = ms // 86_400_000, 0
        if n10 >= self.order_limit_10s:
            raise SpotError(-1015, f"Too many new orders; current limit is {self.order_limit_10s} orders "
                                   "per 10 SECOND.", 429)
        self._order_counts[req.api_key] = (win10, n10 + 1, day, n1d + 1)
        req.headers["X-MBX-ORDER-COUNT-10S"] = str(n10 + 1)
        req.headers["X-MBX-ORDER-COUNT-1D"] = str(n1d + 1)

    def _cancel_order(self, req: _Req) -> dict[str, Any]:
        p = req.params
        symbol = _str(p, "symbol", required=True)
        cid = p.get("newClientOrderId")
        if cid is not None and not _CLIENT_ID_RE.match(cid):
            raise SpotError(-1100, "Illegal characters found in parameter 'newClientOrderId'.")
        order, cancel_id = self.spot.cancel_order(req.api_key, symbol, req.now_ns, _int(p, "orderId"),
                                                  p.get("origClientOrderId"), cid)
        return _cancel_json(order, cancel_id, req.now_ns)

    def _cancel_open_orders(self, req: _Req) -> list[dict[str, Any]]:
        symbol = _str(req.params, "symbol", required=True)
        cancelled = self.spot.cancel_open_orders(req.api_key, symbol, req.now_ns)
        return [_cancel_json(o, cancel_id, req.now_ns) for o, cancel_id in cancelled]

    def _query_order(self, req: _Req) -> dict[str, Any]:
        p = req.params
        symbol = _str(p, "symbol", required=True)
        order = self.spot.get_order(req.api_key, symbol, _int(p, "orderId"), p.get("origClientOrderId"))
        return _query_json(order)

    def _open_orders(self, req: _Req) -> list[dict[str, Any]]:
        return [_query_json(o) for o in self.spot.open_orders(req.api_key, req.params.get("symbol"))]

    def _account(self, req: _Req) -> dict[str, Any]:
        cfg = self.spot.config
        omit_zero = req.params.get("omitZeroBalances", "false").lower() == "true"
        balances = [{"asset": b.asset, "free": _f(b.free), "locked": _f(b.locked)}
                    for b in self.spot.balances(req.api_key) if not (omit_zero and b.free == b.locked == 0)]
        return {
            "makerCommission": int(cfg.maker_commission_rate * 10_000),
            "takerCommission": int(cfg.taker_commission_rate * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": _f(cfg.maker_commission_rate),
                                "taker": _f(cfg.taker_commission_rate),
                                "buyer": _f(Decimal(0)), "seller": _f(Decimal(0))},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": _ms(self.spot.account_update_ns(req.api_key)), "accountType": "SPOT",
            "balances": balances, "permissions": ["SPOT"], "uid": 0,
        }

    # ---- handlers: user data stream -----------------------------------------------------------

    def _listen_key_new(self, req: _Req) -> dict[str, str]:
        key = self._key_of_account.get(req.api_key)
        if key is None:
            self._listen_key_seq += 1
            seed = f"{req.api_key}:{self._listen_key_seq}".encode()
            key = hashlib.sha256(seed).hexdigest()[:60]
            self._key_of_account[req.api_key] = key
        self._listen_keys[key] = (req.api_key, req.now_ns + LISTEN_KEY_TTL_NS)
        return {"listenKey": key}

    def _listen_key_keepalive(self, req: _Req) -> dict[str, str]:
        key = self._own_listen_key(req)
        self._listen_keys[key] = (req.api_key, req.now_ns + LISTEN_KEY_TTL_NS)
        return {}

    def _listen_key_close(self, req: _Req) -> dict[str, str]:
        key = self._own_listen_key(req)
        self._drop_listen_key(key, req.now_ns)
        return {}

    def _own_listen_key(self, req: _Req) -> str:
        self._expire_listen_keys()
        key = _str(req.params, "listenKey", required=True)
        owner = self._listen_keys.get(key)
        if owner is None or owner[0] != req.api_key:
            raise SpotError(-1125, "This listenKey does not exist.")
        return key

    def _expire_listen_keys(self) -> None:
        now_ns = self.clock_ns()
        for key, (_, expiry_ns) in list(self._listen_keys.items()):
            if expiry_ns <= now_ns:
                self._drop_listen_key(key, now_ns)

    def _drop_listen_key(self, key: str, now_ns: int) -> None:
        api_key, _ = self._listen_keys.pop(key)
        self._key_of_account.pop(api_key, None)
        payload = {"e": "listenKeyExpired", "E": _ms(now_ns), "listenKey": key}
        for conn in list(self._conns):
            if key in conn.streams:
                self._send(conn, _dumps({"stream": key, "data": payload}) if conn.combined
                           else _dumps(payload))

    # ---- WebSocket ----------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/stream":
            names, combined = request.query.get("streams", ""), True
        else:
            names, combined = request.match_info.get("streams", ""), False
        ws = web.WebSocketResponse(autoping=False, timeout=5.0)
        loop = asyncio.get_running_loop()
        conn = _Conn(ws, {s for s in names.split("/") if s}, combined,
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

    async def _read(self, conn: _Conn) -> None:
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

    async def _write(self, conn: _Conn) -> None:
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

    async def _ping(self, conn: _Conn) -> None:
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
                await conn.ws.ping(str(_ms(self.clock_ns())).encode())
            except ConnectionError:
                return

    def _control(self, conn: _Conn, text: str) -> None:
        """Handle SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS requests."""
        try:
            msg = json.loads(text)
            method, req_id = msg["method"], msg.get("id")
        except (ValueError, KeyError, TypeError):
            self._send(conn, _dumps({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}))
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
            self._send(conn, _dumps({"code": 2, "msg": f"Invalid request: unknown variant {method}",
                                     "id": req_id}))
            return
        self._send(conn, _dumps({"result": result, "id": req_id}))


# ---- wire rendering ---------------------------------------------------------------------------


def _order_fields(o: SpotOrder) -> dict[str, Any]:
    return {"price": _f(o.price), "origQty": _f(o.orig_qty), "executedQty": _f(o.executed_qty),
            "cummulativeQuoteQty": _f(o.cumm_quote_qty), "status": str(o.status),
            "timeInForce": str(o.time_in_force), "type": str(o.type), "side": str(o.side)}


def _fill_json(f: SpotFill) -> dict[str, Any]:
    return {"price": _f(f.price), "qty": _f(f.qty), "commission": _f(f.commission),
            "commissionAsset": f.commission_asset, "tradeId": f.trade_id}


def _query_json(o: SpotOrder) -> dict[str, Any]:
    return {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": o.client_order_id} | _order_fields(o) | {
        "stopPrice": _f(Decimal(0)), "icebergQty": _f(Decimal(0)), "time": _ms(o.time_ns),
        "updateTime": _ms(o.update_ns), "isWorking": o.is_working, "workingTime": _ms(o.time_ns),
        "origQuoteOrderQty": _f(o.orig_quote_order_qty), "selfTradePreventionMode": "EXPIRE_MAKER"}


def _cancel_json(o: SpotOrder, cancel_client_id: str, now_ns: int) -> dict[str, Any]:
    return {"symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id,
            "orderListId": -1, "clientOrderId": cancel_client_id, "transactTime": _ms(now_ns)
            } | _order_fields(o) | {"selfTradePreventionMode": "EXPIRE_MAKER"}


def _execution_report(ev: ExecutionReport) -> dict[str, Any]:
    o, f = ev.order, ev.fill
    return {
        "e": "executionReport", "E": _ms(ev.ts_ns), "s": o.symbol, "c": ev.client_order_id,
        "S": str(o.side), "o": str(o.type), "f": str(o.time_in_force), "q": _f(o.orig_qty),
        "p": _f(o.price), "P": _f(Decimal(0)), "F": _f(Decimal(0)), "g": -1,
        "C": ev.orig_client_order_id, "x": str(ev.execution_type), "X": str(o.status), "r": "NONE",
        "i": o.order_id, "l": _f(f.qty if f else Decimal(0)), "z": _f(o.executed_qty),
        "L": _f(f.price if f else Decimal(0)), "n": _f(f.commission) if f else "0",
        "N": f.commission_asset if f else None, "T": _ms(ev.ts_ns), "t": f.trade_id if f else -1,
        "I": 0, "w": o.is_working, "m": bool(f and f.is_maker), "M": False, "O": _ms(o.time_ns),
        "Z": _f(o.cumm_quote_qty), "Y": _f(f.quote_qty if f else Decimal(0)),
        "Q": _f(o.orig_quote_order_qty), "W": _ms(o.time_ns), "V": "EXPIRE_MAKER",
    }


# ---- request parsing --------------------------------------------------------------------------


def _parse_params(query: str, body: str) -> dict[str, str]:
    """Merge query string and form body; a parameter in both: the query string wins (Binance)."""
    merged: dict[str, str] = {}
    for part in (body, query):
        seen: set[str] = set()
        for name, value in parse_qsl(part, keep_blank_values=True):
            if name in seen:
                raise SpotError(-1101, "Duplicate values for a parameter detected.")
            seen.add(name)
            merged[name] = value
    return merged


def _without_signature(part: str) -> str:
    return "&".join(p for p in part.split("&") if p and not p.startswith("signature="))


def _str(params: Mapping[str, str], name: str, *, required: bool = False) -> str:
    value = params.get(name, "")
    if required and not value:
        raise SpotError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    value = _str(params, name, required=required)
    if not value:
        return None
    if not _INT_RE.match(value):
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^[0-9]{1,20}$'.")
    return int(value)


def _dec(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _DECIMAL_RE.match(value):
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'.") from exc
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        raise SpotError(-1111, "Precision is over the maximum defined for this asset.")
    return amount
