"""Binance spot REST: dispatch, signing and weights, market-data, trading and user-stream handlers."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.clock import NS_PER_SEC
from bot.domain import BookLevel, Side
from bot.sim.faults import countdown
from bot.sim.part import Part
from bot.sim.server.binance_wire import (
    API_KEY_HEADER,
    API_KEY_RE,
    CLIENT_ID_RE,
    DEFAULT_RECV_WINDOW_MS,
    FAULT_BODIES,
    HISTORY_MAX_MS,
    LISTEN_KEY_TTL_NS,
    MAX_RECV_WINDOW_MS,
    OTHER_ORDER_TYPES,
    PUBLIC,
    SIGNED,
    TRANSFER_DEFAULT_MS,
    TRANSFER_KEPT_MS,
    TRANSFER_TYPES,
    WEIGHT_HEADER,
    WEIGHTS,
    Req,
    cancel_json,
    deposit_json,
    dumps,
    fill_json,
    fmt8,
    levels_json,
    order_fields,
    param_dec,
    param_int,
    param_str,
    parse_params,
    query_json,
    to_ms,
    trade_json,
    transfer_json,
    withdraw_json,
    without_signature,
)
from bot.sim.spot.records import (
    NewOrder,
    OrderType,
    SpotError,
    SpotTimeInForce,
    WalletTransfer,
)


class RestHandlers(Part):
    """REST side of BinanceServer (a part of it: it reads and writes the server's state)."""

    _weight_window: int
    _banned_until_ns: int

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.request_count += 1
        now_ns = self.clock_ns()
        route = self._routes.get((request.method, request.path))
        if route is None:
            return web.Response(status=404, text="Not Found")
        handler, security = route
        fault = self.faults.http_error
        if fault is not None and fault.count > 0:
            self.faults.http_error = countdown(fault)
            if fault.execute:
                await self._serve(request, handler, security, now_ns)
            return self._fault_response(fault.status, fault.retry_after_secs, now_ns)
        return await self._serve(request, handler, security, now_ns)

    async def _serve(self, request: web.Request, handler: Callable[[Req], Any], security: str,
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
            params = parse_params(request.rel_url.raw_query_string, body)
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
        req = Req(params, now_ns)
        try:
            if error is not None:
                raise error
            if security != PUBLIC:
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
            if not API_KEY_RE.match(api_key):
                raise SpotError(-2014, "API-key format invalid.", 401)
            raise SpotError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if security == SIGNED:
            timestamp = param_int(params, "timestamp", required=True)
            recv_window = param_int(params, "recvWindow")
            if recv_window is None:
                recv_window = DEFAULT_RECV_WINDOW_MS
            if recv_window > MAX_RECV_WINDOW_MS:
                raise SpotError(-1131, "recvWindow must be less than 60000")
            signature = params.get("signature", "")
            if not signature:
                raise SpotError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                       "or malformed.")
            server_ms = to_ms(now_ns)
            assert timestamp is not None
            if timestamp >= server_ms + 1000:
                raise SpotError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if server_ms - timestamp > recv_window:
                raise SpotError(-1021, "Timestamp for this request is outside of the recvWindow.")
            payload = without_signature(request.rel_url.raw_query_string) + without_signature(body)
            expected = hmac.new(self.credentials[api_key].encode(), payload.encode(),
                                hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature.lower()):
                raise SpotError(-1022, "Signature for this request is not valid.")
        return api_key

    def _json(self, body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
        resp = web.Response(text=dumps(body), status=status, content_type="application/json")
        resp.headers[WEIGHT_HEADER] = str(self._used_weight)
        resp.headers.update(headers or {})
        return resp

    def _fault_response(self, status: int, retry_after_secs: int | float | None,
                        now_ns: int) -> web.Response:
        code, msg = FAULT_BODIES.get(status, (-1000, "An unknown error occured while processing the "
                                                      "request."))
        until_ms = to_ms(now_ns) + int((retry_after_secs or 0) * 1000)
        headers = {} if retry_after_secs is None else {"Retry-After": str(int(retry_after_secs))}
        return self._json({"code": code, "msg": msg.format(limit=self.weight_limit_1m, until=until_ms)},
                          status, headers)

    # ---- handlers: market data ----------------------------------------------------------------

    def _exchange_info(self, req: Req) -> dict[str, Any]:
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
            "timezone": "UTC", "serverTime": to_ms(req.now_ns),
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
                    {"filterType": "PRICE_FILTER", "minPrice": fmt8(s.min_price),
                     "maxPrice": fmt8(s.max_price), "tickSize": fmt8(s.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": fmt8(s.min_qty), "maxQty": fmt8(s.max_qty),
                     "stepSize": fmt8(s.step_size)},
                    {"filterType": "NOTIONAL", "minNotional": fmt8(s.min_notional),
                     "applyMinToMarket": True, "maxNotional": fmt8(s.max_notional),
                     "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
            } for s in specs],
        }

    def _depth(self, req: Req) -> dict[str, Any]:
        symbol = param_str(req.params, "symbol", required=True)
        limit = param_int(req.params, "limit") or 100
        last_id, bids, asks = self.spot.depth(symbol, min(limit, 5000))
        return {"lastUpdateId": last_id, "bids": levels_json(bids), "asks": levels_json(asks)}

    def _klines(self, req: Req) -> list[list[Any]]:
        """Hourly klines of the symbol's simulated past (1h only), oldest first, as Binance sends."""
        symbol = param_str(req.params, "symbol", required=True)
        if param_str(req.params, "interval", required=True) != "1h":
            raise SpotError(-1120, "Invalid interval.")
        limit = min(max(param_int(req.params, "limit") or 500, 1), 1000)
        hour_ms = 3_600_000
        return [[to_ms(b.ts_ns), fmt8(b.open), fmt8(b.high), fmt8(b.low), fmt8(b.close), "0",
                 to_ms(b.ts_ns) + hour_ms - 1, "0", 0, "0", "0", "0"]
                for b in self.spot.klines(symbol, limit)]

    def _book_ticker(self, req: Req) -> Any:
        def one(symbol: str) -> dict[str, str]:
            _, bid, ask = self.spot.book_ticker(symbol)
            zero = BookLevel(Decimal(0), Decimal(0))
            bid, ask = bid or zero, ask or zero
            return {"symbol": symbol, "bidPrice": fmt8(bid.price), "bidQty": fmt8(bid.size),
                    "askPrice": fmt8(ask.price), "askQty": fmt8(ask.size)}

        if "symbol" in req.params:
            return one(req.params["symbol"])
        return [one(s.symbol) for s in self.spot.symbols()]

    # ---- handlers: trading --------------------------------------------------------------------

    def _new_order(self, req: Req) -> dict[str, Any]:
        p = req.params
        symbol = param_str(p, "symbol", required=True)
        side_s = param_str(p, "side", required=True)
        type_s = param_str(p, "type", required=True)
        if side_s not in ("BUY", "SELL"):
            raise SpotError(-1117, "Invalid side.")
        if type_s in OTHER_ORDER_TYPES:
            raise SpotError(-2010, "Unsupported order combination")
        if type_s not in OrderType.__members__:
            raise SpotError(-1116, "Invalid orderType.")
        tif_s = p.get("timeInForce")
        if tif_s is not None and tif_s not in SpotTimeInForce.__members__:
            raise SpotError(-1115, "Invalid timeInForce.")
        cid = p.get("newClientOrderId")
        if cid is not None and not CLIENT_ID_RE.match(cid):
            raise SpotError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                                   "is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        order_type = OrderType(type_s)
        resp_type = p.get("newOrderRespType") or ("FULL" if order_type is not OrderType.LIMIT_MAKER
                                                  else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise SpotError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        new = NewOrder(
            symbol=symbol, side=Side(side_s), type=order_type, quantity=param_dec(p, "quantity"),
            quote_order_qty=param_dec(p, "quoteOrderQty"), price=param_dec(p, "price"),
            time_in_force=None if tif_s is None else SpotTimeInForce(tif_s), new_client_order_id=cid,
        )
        self._count_order(req)
        order, fills = self.spot.place_order(req.api_key, new, req.now_ns)
        ack = {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
               "clientOrderId": order.client_order_id, "transactTime": to_ms(order.time_ns)}
        if resp_type == "ACK":
            return ack
        result = ack | order_fields(order) | {"workingTime": to_ms(order.time_ns),
                                              "selfTradePreventionMode": "EXPIRE_MAKER"}
        if resp_type == "FULL":
            result["fills"] = [fill_json(f) for f in fills]
        return result

    def _count_order(self, req: Req) -> None:
        ms = to_ms(req.now_ns)
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

    def _cancel_order(self, req: Req) -> dict[str, Any]:
        p = req.params
        symbol = param_str(p, "symbol", required=True)
        cid = p.get("newClientOrderId")
        if cid is not None and not CLIENT_ID_RE.match(cid):
            raise SpotError(-1100, "Illegal characters found in parameter 'newClientOrderId'.")
        order, cancel_id = self.spot.cancel_order(req.api_key, symbol, req.now_ns, param_int(p, "orderId"),
                                                  p.get("origClientOrderId"), cid)
        return cancel_json(order, cancel_id, req.now_ns)

    def _cancel_open_orders(self, req: Req) -> list[dict[str, Any]]:
        symbol = param_str(req.params, "symbol", required=True)
        cancelled = self.spot.cancel_open_orders(req.api_key, symbol, req.now_ns)
        return [cancel_json(o, cancel_id, req.now_ns) for o, cancel_id in cancelled]

    def _query_order(self, req: Req) -> dict[str, Any]:
        p = req.params
        symbol = param_str(p, "symbol", required=True)
        order = self.spot.get_order(req.api_key, symbol, param_int(p, "orderId"), p.get("origClientOrderId"))
        return query_json(order)

    def _open_orders(self, req: Req) -> list[dict[str, Any]]:
        return [query_json(o) for o in self.spot.open_orders(req.api_key, req.params.get("symbol"))]

    def _my_trades(self, req: Req) -> list[dict[str, Any]]:
        p = req.params
        limit = min(max(param_int(p, "limit") or 500, 1), 1000)
        symbol = param_str(p, "symbol", required=True)
        rows = self.spot.my_trades(req.api_key, symbol, param_int(p, "orderId"), param_int(p, "fromId"),
                                   limit)
        return [trade_json(f) for f in rows]

    def _account(self, req: Req) -> dict[str, Any]:
        cfg = self.spot.config
        omit_zero = req.params.get("omitZeroBalances", "false").lower() == "true"
        balances = [{"asset": b.asset, "free": fmt8(b.free), "locked": fmt8(b.locked)}
                    for b in self.spot.balances(req.api_key) if not (omit_zero and b.free == b.locked == 0)]
        return {
            "makerCommission": int(cfg.maker_commission_rate * 10_000),
            "takerCommission": int(cfg.taker_commission_rate * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt8(cfg.maker_commission_rate),
                                "taker": fmt8(cfg.taker_commission_rate),
                                "buyer": fmt8(Decimal(0)), "seller": fmt8(Decimal(0))},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": to_ms(self.spot.account_update_ns(req.api_key)), "accountType": "SPOT",
            "balances": balances, "permissions": ["SPOT"], "uid": 0,
        }

    # ---- handlers: wallet histories -----------------------------------------------------------

    def _deposit_history(self, req: Req) -> list[dict[str, Any]]:
        return [deposit_json(t) for t in self._wallet_history(req, "DEPOSIT")]

    def _withdraw_history(self, req: Req) -> list[dict[str, Any]]:
        return [withdraw_json(t) for t in self._wallet_history(req, "WITHDRAWAL")]

    def _transfer_history(self, req: Req) -> dict[str, Any]:
        """The account's universal transfers of `type` in [startTime, endTime] (default: the last
        7 days; only the last 6 months are kept), newest first, page `current` of `size` (max 100);
        an empty answer has no `rows`, as Binance's."""
        p = req.params
        kind = param_str(p, "type", required=True)
        if kind not in TRANSFER_TYPES:
            raise SpotError(-1100, "Illegal characters found in parameter 'type'.")
        now = to_ms(req.now_ns)
        end = param_int(p, "endTime") or now
        start = max(param_int(p, "startTime") or end - TRANSFER_DEFAULT_MS, now - TRANSFER_KEPT_MS)
        rows = [transfer_json(t) for t in reversed(self.spot.wallet_transfers(req.api_key))
                if t.kind == kind and start <= to_ms(t.ts_ns) <= end]
        current, size = max(param_int(p, "current") or 1, 1), min(max(param_int(p, "size") or 10, 1), 100)
        page = rows[(current - 1) * size:current * size]
        return {"total": len(rows), "rows": page} if page else {"total": len(rows)}

    def _wallet_history(self, req: Req, kind: str) -> list[WalletTransfer]:
        """The account's deposits or withdrawals in [startTime, endTime] (default: the last 90
        days; at most 90 days apart), of `coin` when given, newest first, `offset`/`limit` (1000)."""
        p = req.params
        end = param_int(p, "endTime") or to_ms(req.now_ns)
        start = param_int(p, "startTime")
        start = end - HISTORY_MAX_MS if start is None else start
        if not 0 <= end - start <= HISTORY_MAX_MS:
            raise SpotError(-1127, "More than 90 days between startTime and endTime.")
        coin = p.get("coin")
        rows = [t for t in reversed(self.spot.wallet_transfers(req.api_key))
                if t.kind == kind and start <= to_ms(t.ts_ns) <= end and coin in (None, "", t.asset)]
        offset, limit = param_int(p, "offset") or 0, min(max(param_int(p, "limit") or 1000, 1), 1000)
        return rows[offset:offset + limit]

    # ---- handlers: user data stream -----------------------------------------------------------

    def _listen_key_new(self, req: Req) -> dict[str, str]:
        key = self._key_of_account.get(req.api_key)
        if key is None:
            self._listen_key_seq += 1
            seed = f"{req.api_key}:{self._listen_key_seq}".encode()
            key = hashlib.sha256(seed).hexdigest()[:60]
            self._key_of_account[req.api_key] = key
        self._listen_keys[key] = (req.api_key, req.now_ns + LISTEN_KEY_TTL_NS)
        return {"listenKey": key}

    def _listen_key_keepalive(self, req: Req) -> dict[str, str]:
        key = self._own_listen_key(req)
        self._listen_keys[key] = (req.api_key, req.now_ns + LISTEN_KEY_TTL_NS)
        return {}

    def _listen_key_close(self, req: Req) -> dict[str, str]:
        key = self._own_listen_key(req)
        self._drop_listen_key(key, req.now_ns)
        return {}

    def _own_listen_key(self, req: Req) -> str:
        self._expire_listen_keys()
        key = param_str(req.params, "listenKey", required=True)
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
        payload = {"e": "listenKeyExpired", "E": to_ms(now_ns), "listenKey": key}
        for conn in list(self._conns):
            if key in conn.streams:
                self._send(conn, dumps({"stream": key, "data": payload}) if conn.combined
                           else dumps(payload))
