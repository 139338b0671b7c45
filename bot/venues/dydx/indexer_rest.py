"""The dYdX indexer REST client: one shared httpx client, typed decoding, bounded retries.

Retries are for reads only (every indexer call is a GET): transient errors back off
exponentially with jitter; 429 waits at least what Retry-After says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from bot.errors import RateLimited, TransientVenueError
from bot.venues.dydx import wire
from bot.venues.dydx.errors import classify
from bot.venues.http import venue_client

T = TypeVar("T")


class Height(msgspec.Struct, frozen=True):
    height: str
    time: str


class MarketsResponse(msgspec.Struct, frozen=True):
    markets: dict[str, wire.PerpetualMarket]


class HistoricalFundingPoint(msgspec.Struct, frozen=True):
    ticker: str
    rate: str
    price: str
    effectiveAt: str
    effectiveAtHeight: str = ""


class HistoricalFundingResponse(msgspec.Struct, frozen=True):
    historicalFunding: list[HistoricalFundingPoint]


class CandleWire(msgspec.Struct, frozen=True):
    startedAt: str
    close: str
    high: str = "0"
    low: str = "0"
    open: str = "0"


class CandlesResponse(msgspec.Struct, frozen=True):
    candles: list[CandleWire]


class FillsResponse(msgspec.Struct, frozen=True):
    fills: list[wire.FillWire]


class PositionsResponse(msgspec.Struct, frozen=True):
    positions: list[wire.PerpetualPosition]


class FundingPaymentWire(msgspec.Struct, frozen=True):
    ticker: str
    createdAt: str
    oraclePrice: str
    size: str
    side: str
    rate: str
    payment: str


class FundingPaymentsResponse(msgspec.Struct, frozen=True):
    fundingPayments: list[FundingPaymentWire]


class TransfersResponse(msgspec.Struct, frozen=True):
    transfers: list[dict[str, Any]]  # read field by field (bot.venues.dydx.parse.transfer_event)


class SubaccountResponse(msgspec.Struct, frozen=True):
    subaccount: dict[str, Any]


class SubaccountStateResponse(msgspec.Struct, frozen=True):
    subaccount: wire.Subaccount


_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    if kind not in _DECODERS:
        _DECODERS[kind] = msgspec.json.Decoder(kind)
    return _DECODERS[kind]


class IndexerRest:
    """Typed GETs against one indexer base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_secs: float = 5.0,
        max_attempts: int = 5,
        max_delay_secs: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._client = venue_client(base_url, timeout_secs, transport)
        self._max_attempts = max_attempts
        self._max_delay_secs = max_delay_secs
        self._sleep = sleep
        self.attempts = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    _backoff = wait_exponential_jitter(multiplier=0.2, max=5.0)

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return max(backoff, exc.retry_after_secs)
        return backoff

    async def get(self, path: str, kind: type[T], params: dict[str, Any] | None = None) -> T:
        """GET `path` and decode it as `kind`; transient failures are retried, others raised."""
        sleep: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(self._max_delay_secs),
            wait=self._wait,
            retry=retry_if_exception_type(TransientVenueError),
            reraise=True,
            **sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_once(path, kind, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self, path: str, kind: type[T], params: dict[str, Any] | None) -> T:
        self.attempts += 1
        try:
            response = await self._client.get(path, params=params)
            response.raise_for_status()
            return _decoder(kind).decode(response.content)
        except Exception as exc:
            raise classify(exc, f"GET {path}") from exc

    # ---- endpoints ------------------------------------------------------------------------------

    async def height(self) -> Height:
        return await self.get("/v4/height", Height)

    async def perpetual_markets(self) -> dict[str, wire.PerpetualMarket]:
        return (await self.get("/v4/perpetualMarkets", MarketsResponse)).markets

    async def orderbook(self, ticker: str) -> wire.OrderbookSnapshot:
        return await self.get(f"/v4/orderbooks/perpetualMarket/{ticker}", wire.OrderbookSnapshot)

    async def historical_funding(self, ticker: str, limit: int = 100) -> list[HistoricalFundingPoint]:
        path = f"/v4/historicalFunding/{ticker}"
        return (await self.get(path, HistoricalFundingResponse, {"limit": limit})).historicalFunding

    async def candles(self, ticker: str, resolution: str = "1HOUR", limit: int = 100) -> list[CandleWire]:
        """Newest first; the indexer returns at most 1000 rows."""
        path = f"/v4/candles/perpetualMarkets/{ticker}"
        params = {"resolution": resolution, "limit": limit}
        return (await self.get(path, CandlesResponse, params)).candles

    async def orders(self, address: str, subaccount: int, **filters: Any) -> list[wire.OrderWire]:
        params = {"address": address, "subaccountNumber": subaccount, **filters}
        return await self.get("/v4/orders", list[wire.OrderWire], params)

    async def fills(self, address: str, subaccount: int, limit: int = 100,
                    before_height: int | None = None, page: int | None = None) -> list[wire.FillWire]:
        """The newest `limit` fills (newest first), at or below `before_height`, from `page` (1-based)."""
        params: dict[str, str | int] = {"address": address, "subaccountNumber": subaccount, "limit": limit}
        if before_height is not None:
            params["createdBeforeOrAtHeight"] = before_height
        if page is not None:
            params["page"] = page
        return (await self.get("/v4/fills", FillsResponse, params)).fills

    async def positions(self, address: str, subaccount: int) -> list[wire.PerpetualPosition]:
        params = {"address": address, "subaccountNumber": subaccount, "status": "OPEN"}
        return (await self.get("/v4/perpetualPositions", PositionsResponse, params)).positions

    async def funding_payments(self, address: str, subaccount: int, limit: int = 100
                               ) -> list[FundingPaymentWire]:
        params = {"address": address, "subaccountNumber": subaccount, "limit": limit}
        return (await self.get("/v4/fundingPayments", FundingPaymentsResponse, params)).fundingPayments

    async def transfers(self, address: str, subaccount: int, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` deposits, withdrawals and transfers of the subaccount (newest first)."""
        params = {"address": address, "subaccountNumber": subaccount, "limit": limit}
        return (await self.get("/v4/transfers", TransfersResponse, params)).transfers

    async def subaccount(self, address: str, subaccount: int) -> dict[str, Any]:
        path = f"/v4/addresses/{address}/subaccountNumber/{subaccount}"
        return (await self.get(path, SubaccountResponse)).subaccount

    async def subaccount_state(self, address: str, subaccount: int) -> wire.Subaccount:
        """The subaccount typed: equity, free collateral, open positions, asset positions."""
        path = f"/v4/addresses/{address}/subaccountNumber/{subaccount}"
        return (await self.get(path, SubaccountStateResponse)).subaccount
