"""The Binance spot REST client: one httpx client, HMAC-signed calls, server time, weight budget.

What every call goes through, in order:
1. admission: refused locally (RateLimited, nothing sent) while a 429 back-off or a 418 ban
   runs, or when its weight would take the minute's usage over our budget (reads) or over the
   venue's limit (order entry and cancels may use the headroom);
2. signing (SIGNED calls): `timestamp` = local time + the server-time offset measured on
   GET /api/v3/time (re-measured every `time_sync_interval_secs` and after a -1021), then
   `recvWindow`, then `signature` = hex HMAC-SHA256(secret, query string + body);
3. the answer: `X-MBX-USED-WEIGHT-1M` is recorded whatever the status; errors go through
   `errors.classify`.
Reads (and cancels, which are idempotent) are retried with bounded exponential back-off and
jitter on TransientVenueError (a RateLimited waits at least its Retry-After, and one asking for
more than `MAX_RATE_LIMIT_WAIT_SECS` goes straight back to the caller); a -1021 re-measures
the offset and retries the read exactly once. Order placement is never retried here: a
timeout or a 5xx is OrderStateUnknown, and the caller queries by client id first.
The API key and secret are SecretStr until the moment a request is signed; nothing here logs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import msgspec
import structlog
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from bot.clock import NS_PER_MS, NS_PER_SEC, Clock, SystemClock
from bot.errors import RateLimited, TransientVenueError, VenueError
from bot.venues.binance import limits, wire
from bot.venues.binance.errors import VENUE, TimestampRejected, classify
from bot.venues.http import venue_client

log = structlog.get_logger("binance_rest")
T = TypeVar("T")
API_KEY_HEADER = "X-MBX-APIKEY"
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PUBLIC, API_KEY, SIGNED = "NONE", "USER_STREAM", "SIGNED"  # Binance's endpoint security types

_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


def sign(secret: str, query: str, body: str = "") -> str:
    """Binance's signature: hex HMAC-SHA256 of the query string followed by the body."""
    return hmac.new(secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()


@dataclass(slots=True)
class WeightMeter:
    """Request weight used in the current one-minute window of the server clock."""

    window: int = -1
    used: int = 0

    def _roll(self, server_ms: int) -> None:
        window = server_ms // limits.WEIGHT_WINDOW_MS
        if window != self.window:
            self.window, self.used = window, 0

    def reserve(self, cost: int, server_ms: int, limit: int) -> float:
        """Count `cost` and return 0, or return the seconds until the next window if over `limit`."""
        self._roll(server_ms)
        if self.used + cost > limit:
            next_ms = (self.window + 1) * limits.WEIGHT_WINDOW_MS
            return max(1.0, math.ceil((next_ms - server_ms) / 1000))
        self.used += cost
        return 0.0

    def observe(self, used: int, server_ms: int) -> None:
        """Take the venue's own count (X-MBX-USED-WEIGHT-1M) as the truth."""
        self._roll(server_ms)
        self.used = used


class BinanceRest:
    """Typed, signed, rate-aware calls against one Binance spot REST base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None = None,
        api_secret: SecretStr | None = None,
        clock: Clock | None = None,
        recv_window_ms: int = 5000,
        weight_budget_1m: int = limits.DEFAULT_WEIGHT_BUDGET_1M,
        weight_limit_1m: int = limits.REQUEST_WEIGHT_LIMIT_1M,
        timeout_secs: float = 5.0,
        order_timeout_secs: float = 3.0,
        time_sync_interval_secs: float = 300.0,
        max_attempts: int = limits.READ_MAX_ATTEMPTS,
        max_delay_secs: float = limits.READ_MAX_DELAY_SECS,
        max_rate_limit_wait_secs: float = limits.MAX_RATE_LIMIT_WAIT_SECS,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._client = venue_client(base_url, timeout_secs, transport)
        self._api_key = api_key
        self._api_secret = api_secret
        self._clock = clock or SystemClock()
        self._sleep = sleep or self._clock.sleep
        self.recv_window_ms = recv_window_ms
        self.weight_budget_1m = weight_budget_1m
        self.weight_limit_1m = weight_limit_1m
        self._order_timeout = httpx.Timeout(order_timeout_secs, connect=min(order_timeout_secs, 3.0))
        self._time_sync_interval_ns = int(time_sync_interval_secs * NS_PER_SEC)
        self._max_attempts = max_attempts
        self._max_delay_secs = max_delay_secs
        self._max_rate_limit_wait_secs = max_rate_limit_wait_secs
        self.weights = WeightMeter()
        self.time_offset_ms: int | None = None  # server time - local time
        self._synced_at_ns = 0
        self._time_lock = asyncio.Lock()
        self._blocked_until_ns = 0  # 429 back-off or 418 ban: refuse calls until then
        self.is_banned = False
        self.requests = 0  # requests sent (not the ones refused locally)
        self.time_syncs = 0

    def __repr__(self) -> str:  # never the key or the secret
        return f"BinanceRest({self._client.base_url!s}, keys={'yes' if self.has_keys else 'no'})"

    @property
    def has_keys(self) -> bool:
        return self._api_key is not None and self._api_secret is not None

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- time -------------------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock requests are signed and retried by (the streams share it)."""
        return self._clock

    def server_ms(self) -> int:
        """Our best estimate of the venue's clock, in ms."""
        return self._clock.now_ns() // NS_PER_MS + (self.time_offset_ms or 0)

    async def sync_time(self) -> int:
        """Measure the server-time offset (midpoint of the round trip); return it in ms."""
        before = self._clock.now_ns()
        server = await self._read("GET", "/api/v3/time", wire.ServerTime, security=PUBLIC)
        after = self._clock.now_ns()
        local_ms = (before + after) // 2 // NS_PER_MS
        self.time_offset_ms = server.serverTime - local_ms
        self._synced_at_ns = after
        self.time_syncs += 1
        log.info("binance_time_synced", offset_ms=self.time_offset_ms,
                 round_trip_ms=(after - before) // NS_PER_MS)
        return self.time_offset_ms

    async def _ensure_time(self, *, force: bool = False) -> None:
        async with self._time_lock:
            stale = self._clock.now_ns() - self._synced_at_ns >= self._time_sync_interval_ns
            if force or self.time_offset_ms is None or stale:
                await self.sync_time()

    # ---- calls ------------------------------------------------------------------------------------

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(self._max_delay_secs),
            wait=self._wait,
            retry=retry_if_exception(self._is_retryable),
            reraise=True,
            sleep=self._sleep,
        )

    _backoff = wait_exponential_jitter(multiplier=limits.READ_BACKOFF_INITIAL_SECS,
                                       max=limits.READ_BACKOFF_MAX_SECS,
                                       jitter=limits.READ_BACKOFF_INITIAL_SECS)

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return max(backoff, exc.retry_after_secs)
        return backoff

    def _is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, TimestampRejected):
            return False  # already re-measured and retried once
        if isinstance(exc, RateLimited):
            return exc.retry_after_secs <= self._max_rate_limit_wait_secs
        return isinstance(exc, TransientVenueError)

    async def _read(self, method: str, path: str, kind: type[T], params: Mapping[str, Any] | None = None,
                    *, security: str = PUBLIC) -> T:
        """A call that is safe to repeat: retried on transient failures, -1021 once after a resync."""
        async for attempt in self._retrying():
            with attempt:
                if security != SIGNED:
                    return self._decode(await self._send(method, path, params, security=security), kind,
                                        method, path)
                await self._ensure_time()
                try:
                    response = await self._send(method, path, params, security=SIGNED)
                except TimestampRejected:
                    await self._ensure_time(force=True)
                    response = await self._send(method, path, params, security=SIGNED)
                return self._decode(response, kind, method, path)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _submit(self, path: str, params: Mapping[str, Any], kind: type[T]) -> T:
        """An order placement: sent once. Ambiguous failures are OrderStateUnknown (see errors.py)."""
        await self._ensure_time()
        try:
            response = await self._send("POST", path, params, security=SIGNED, is_submit=True,
                                        http_timeout=self._order_timeout)
        except TimestampRejected:
            await self._ensure_time(force=True)  # refused before processing: the caller may re-place
            raise
        return self._decode(response, kind, "POST", path, is_submit=True)

    def _decode(self, response: httpx.Response, kind: type[T], method: str, path: str, *,
                is_submit: bool = False) -> T:
        try:
            return _decoder(kind).decode(response.content)  # type: ignore[no-any-return]
        except msgspec.MsgspecError as exc:
            raise classify(exc, f"{method} {path}", is_submit=is_submit) from exc
        except (UnicodeDecodeError, RecursionError) as exc:  # msgspec: bad UTF-8, deep nesting
            error = msgspec.DecodeError(f"undecodable body: {type(exc).__name__}")
            raise classify(error, f"{method} {path}", is_submit=is_submit) from exc

    def _admit(self, method: str, path: str, params: Mapping[str, str], op: str) -> None:
        now_ns = self._clock.now_ns()
        if now_ns < self._blocked_until_ns:
            raise RateLimited(VENUE, op, math.ceil((self._blocked_until_ns - now_ns) / NS_PER_SEC))
        self.is_banned = False
        limit = self.weight_limit_1m if (method, path) in limits.ORDER_ENTRY else self.weight_budget_1m
        wait_secs = self.weights.reserve(limits.request_weight(method, path, params), self.server_ms(), limit)
        if wait_secs:
            log.warning("binance_weight_budget_reached", op=op, used=self.weights.used, limit=limit,
                        retry_after_secs=wait_secs)
            raise RateLimited(VENUE, op, wait_secs)

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, *, security: str,
                    is_submit: bool = False, http_timeout: httpx.Timeout | None = None) -> httpx.Response:
        op = f"{method} {path}"
        text_params = {k: str(v) for k, v in (params or {}).items()}
        self._admit(method, path, text_params, op)
        headers: dict[str, str] = {}
        if security != PUBLIC:
            if self._api_key is None or self._api_secret is None:
                raise VenueError(VENUE, op, "no API key configured (PERPBOT_BINANCE_API_KEY/_SECRET)")
            headers[API_KEY_HEADER] = self._api_key.get_secret_value()
        query = urlencode(text_params)
        if security == SIGNED:
            assert self._api_secret is not None
            extra = urlencode({"recvWindow": self.recv_window_ms,
                               "timestamp": self._clock.now_ns() // NS_PER_MS + (self.time_offset_ms or 0)})
            query = f"{query}&{extra}" if query else extra
            query = f"{query}&signature={sign(self._api_secret.get_secret_value(), query)}"
        url, content = path, None
        if method == "POST" and query:
            content = query.encode()  # Binance's recommended form: parameters in the body
            headers |= _FORM
        elif query:
            url = f"{path}?{query}"
        self.requests += 1
        try:
            response = await self._client.request(method, url, content=content, headers=headers,
                                                  timeout=http_timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise classify(exc, op, is_submit=is_submit) from exc
        used = response.headers.get(limits.WEIGHT_HEADER)
        if used is not None and used.isdigit():
            self.weights.observe(int(used), self.server_ms())
        if response.status_code < 400:
            return response
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            error = classify(exc, op, is_submit=is_submit)
            if response.status_code in (418, 429) and isinstance(error, RateLimited):
                self._block(response.status_code, error.retry_after_secs, op)
            raise error from exc
        return response  # pragma: no cover - raise_for_status raised

    def _block(self, status: int, retry_after_secs: float, op: str) -> None:
        until = self._clock.now_ns() + int(retry_after_secs * NS_PER_SEC)
        self._blocked_until_ns = max(self._blocked_until_ns, until)
        if status == 418:
            self.is_banned = True
            log.error("binance_ip_banned", op=op, retry_after_secs=retry_after_secs)
        else:
            log.warning("binance_rate_limited", op=op, retry_after_secs=retry_after_secs)

    # ---- endpoints --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read("GET", "/api/v3/ping", wire.Empty)

    async def exchange_info(self, symbols: list[str] | None = None) -> wire.ExchangeInfo:
        params = {"symbols": msgspec.json.encode(symbols).decode()} if symbols else None
        return await self._read("GET", "/api/v3/exchangeInfo", wire.ExchangeInfo, params)

    async def depth(self, symbol: str, limit: int = 1000) -> wire.DepthSnapshot:
        return await self._read("GET", "/api/v3/depth", wire.DepthSnapshot,
                                {"symbol": symbol, "limit": limit})

    async def klines(self, symbol: str, interval: str = "1h", limit: int = 500) -> list[wire.Kline]:
        """Oldest first; Binance returns at most 1000."""
        return await self._read("GET", "/api/v3/klines", list[wire.Kline],
                                {"symbol": symbol, "interval": interval, "limit": limit})

    async def account(self) -> wire.Account:
        return await self._read("GET", "/api/v3/account", wire.Account, {"omitZeroBalances": "true"},
                                security=SIGNED)

    async def api_restrictions(self) -> wire.ApiRestrictions:
        """The key's permissions (a wallet endpoint: USER_DATA, weight 1)."""
        return await self._read("GET", "/sapi/v1/account/apiRestrictions", wire.ApiRestrictions,
                                security=SIGNED)

    async def deposit_history(self, start_ms: int, end_ms: int | None = None, offset: int = 0
                              ) -> list[wire.DepositRow]:
        """Deposits inserted in [start_ms, end_ms] (less than 90 days apart; end: now), newest
        first, 1000 rows from `offset`."""
        return await self._read("GET", "/sapi/v1/capital/deposit/hisrec", list[wire.DepositRow],
                                _window(start_ms, end_ms, offset=offset, limit=1000), security=SIGNED)

    async def withdraw_history(self, start_ms: int, end_ms: int | None = None, offset: int = 0
                               ) -> list[wire.WithdrawRow]:
        """Withdrawals applied for in [start_ms, end_ms] (less than 90 days apart; end: now),
        newest first, 1000 rows from `offset`."""
        return await self._read("GET", "/sapi/v1/capital/withdraw/history", list[wire.WithdrawRow],
                                _window(start_ms, end_ms, offset=offset, limit=1000), security=SIGNED)

    async def transfer_history(self, kind: str, start_ms: int, end_ms: int, current: int = 1,
                               size: int = 100) -> wire.TransferPage:
        """Page `current` (from 1) of the universal transfers of type `kind` (MAIN_FUNDING, ...)
        in [start_ms, end_ms] (the last 6 months only), `size` rows (at most 100)."""
        return await self._read("GET", "/sapi/v1/asset/transfer", wire.TransferPage,
                                {"type": kind, **_window(start_ms, end_ms), "current": current, "size": size},
                                security=SIGNED)

    async def open_orders(self, symbol: str) -> list[wire.OrderInfo]:
        return await self._read("GET", "/api/v3/openOrders", list[wire.OrderInfo], {"symbol": symbol},
                                security=SIGNED)

    async def query_order(self, symbol: str, client_order_id: str) -> wire.OrderInfo:
        """One order by our client id; OrderNotFound (-2013) when the venue does not know it."""
        return await self._read("GET", "/api/v3/order", wire.OrderInfo,
                                {"symbol": symbol, "origClientOrderId": client_order_id}, security=SIGNED)

    async def my_trades(self, symbol: str, order_id: int) -> list[wire.MyTrade]:
        """The fills of one order (by the venue's order id), oldest first."""
        return await self._read("GET", "/api/v3/myTrades", list[wire.MyTrade],
                                {"symbol": symbol, "orderId": order_id, "limit": 1000}, security=SIGNED)

    async def new_order(self, params: Mapping[str, str]) -> wire.OrderAck:
        """Place an order once (see `_submit`)."""
        return await self._submit("/api/v3/order", params, wire.OrderAck)

    async def cancel_order(self, symbol: str, client_order_id: str) -> wire.OrderInfo:
        """Cancel by client id; OrderNotFound (-2011) when it is no longer open. Safe to repeat."""
        return await self._read("DELETE", "/api/v3/order", wire.OrderInfo,
                                {"symbol": symbol, "origClientOrderId": client_order_id}, security=SIGNED)

    async def new_listen_key(self) -> str:
        """Open (or extend and return the active) user data stream key."""
        reply = await self._read("POST", "/api/v3/userDataStream", wire.ListenKey, security=API_KEY)
        return reply.listenKey

    async def keepalive_listen_key(self, listen_key: str) -> None:
        await self._read("PUT", "/api/v3/userDataStream", wire.Empty, {"listenKey": listen_key},
                         security=API_KEY)

    async def close_listen_key(self, listen_key: str) -> None:
        await self._read("DELETE", "/api/v3/userDataStream", wire.Empty, {"listenKey": listen_key},
                         security=API_KEY)


def _window(start_ms: int, end_ms: int | None, **extra: int) -> dict[str, int]:
    return {"startTime": start_ms, **({"endTime": end_ms} if end_ms is not None else {}), **extra}
