"""Read-only node queries for the watchdog: chain head, withdrawal gating, USDC withdrawal capacity.

No key is needed, so paper trading on live data can watch the chain too. Every call runs off
the event loop under a timeout (the generated gRPC stubs are synchronous); a gRPC error or a
timeout is a `TransientVenueError`. The channel is either shared with a `NodeGateway` or owned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import grpc
from v4_proto.cosmos.base.tendermint.v1beta1 import query_pb2_grpc as tm_grpc
from v4_proto.cosmos.base.tendermint.v1beta1.query_pb2 import GetLatestBlockRequest
from v4_proto.dydxprotocol.bridge import query_pb2 as bridge_q
from v4_proto.dydxprotocol.bridge import query_pb2_grpc as bridge_grpc
from v4_proto.dydxprotocol.feetiers import query_pb2 as fee_q
from v4_proto.dydxprotocol.feetiers import query_pb2_grpc as fee_grpc
from v4_proto.dydxprotocol.ratelimit import query_pb2 as rate_q
from v4_proto.dydxprotocol.ratelimit import query_pb2_grpc as rate_grpc
from v4_proto.dydxprotocol.subaccounts import query_pb2 as sub_q
from v4_proto.dydxprotocol.subaccounts import query_pb2_grpc as sub_grpc

from bot.venues.dydx.errors import classify

T = TypeVar("T")
USDC_DENOM = "ibc/8E27BA2D5493AF5636760E354E46004562C46AB7EC0CC4C1CA14E9E20E2545B5"
USDC_QUANTUMS = Decimal(10**6)


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    time_ns: int


@dataclass(frozen=True, slots=True)
class Gating:
    """x/subaccounts withdrawal gating for one collateral pool (DYDX_V4.md §5.2)."""

    negative_tnc_seen_at_block: int
    chain_outage_seen_at_block: int
    unblocked_at_block: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """One x/ratelimit limiter: its period and the USDC that may still leave in it."""

    period_secs: int
    capacity_usdc: Decimal


@dataclass(frozen=True, slots=True)
class FeeTier:
    """The account's perpetual fee tier (x/feetiers): fee rates in ppm of notional."""

    index: int
    name: str
    maker_ppm: int
    taker_ppm: int


def decode_serializable_int(raw: bytes) -> int:
    """dYdX SerializableInt: 0x02 (>= 0) or 0x03 (< 0), then a big-endian magnitude; empty is 0."""
    if not raw:
        return 0
    magnitude = int.from_bytes(raw[1:], "big")
    return -magnitude if raw[0] == 0x03 else magnitude


class ChainQueries:
    """Typed read-only node queries, off the event loop and bounded in time."""

    def __init__(self, channel: grpc.Channel, timeout_secs: float, *, owns_channel: bool = False) -> None:
        self._channel = channel
        self._timeout = timeout_secs
        self._owns_channel = owns_channel

    @classmethod
    def connect(cls, node_url: str, *, secure: bool, timeout_secs: float) -> ChainQueries:
        """Open a channel of our own to `host:port`."""
        channel = (grpc.secure_channel(node_url, grpc.ssl_channel_credentials()) if secure
                   else grpc.insecure_channel(node_url))
        return cls(channel, timeout_secs, owns_channel=True)

    async def _query(self, fn: Callable[[], T], op: str) -> T:
        try:
            async with asyncio.timeout(self._timeout + 0.5):
                return await asyncio.to_thread(fn)
        except (grpc.RpcError, TimeoutError) as exc:
            raise classify(exc, op) from exc

    async def head(self) -> Head:
        """The latest block's height and time."""
        def call() -> Head:
            block = tm_grpc.ServiceStub(self._channel).GetLatestBlock(
                GetLatestBlockRequest(), timeout=self._timeout).block
            ts = block.header.time
            return Head(int(block.header.height), ts.seconds * 1_000_000_000 + ts.nanos)

        return await self._query(call, "latest_block")

    async def withdrawal_gating(self, perpetual_id: int) -> Gating:
        """Gating of the collateral pool that holds `perpetual_id`."""
        def call() -> Gating:
            r = sub_grpc.QueryStub(self._channel).GetWithdrawalAndTransfersBlockedInfo(
                sub_q.QueryGetWithdrawalAndTransfersBlockedInfoRequest(perpetual_id=perpetual_id),
                timeout=self._timeout)
            return Gating(r.negative_tnc_subaccount_seen_at_block, r.chain_outage_seen_at_block,
                          r.withdrawals_and_transfers_unblocked_at_block)

        return await self._query(call, "withdrawal_gating")

    async def usdc_capacity(self) -> list[Capacity]:
        """USDC withdrawal capacity per rate limiter (hourly, daily on genesis params)."""
        def call() -> list[Capacity]:
            r = rate_grpc.QueryStub(self._channel).CapacityByDenom(
                rate_q.QueryCapacityByDenomRequest(denom=USDC_DENOM), timeout=self._timeout)
            return [Capacity(int(c.limiter.period.seconds),
                             Decimal(decode_serializable_int(c.capacity)) / USDC_QUANTUMS)
                    for c in r.limiter_capacity_list]

        return await self._query(call, "withdrawal_capacity")

    async def delayed_bridge_messages(self, address: str) -> int:
        """How many completed DYDX-token bridge events still wait out their delay (not a USDC signal)."""
        def call() -> int:
            r = bridge_grpc.QueryStub(self._channel).DelayedCompleteBridgeMessages(
                bridge_q.QueryDelayedCompleteBridgeMessagesRequest(address=address), timeout=self._timeout)
            return len(r.messages)

        return await self._query(call, "delayed_bridge_messages")

    async def user_fee_tier(self, address: str) -> FeeTier:
        """The fee tier the chain applies to `address` (feetiers Query/UserFeeTier)."""
        def call() -> FeeTier:
            r = fee_grpc.QueryStub(self._channel).UserFeeTier(
                fee_q.QueryUserFeeTierRequest(user=address), timeout=self._timeout)
            return FeeTier(r.index, r.tier.name, r.tier.maker_fee_ppm, r.tier.taker_fee_ppm)

        return await self._query(call, "user_fee_tier")

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()
