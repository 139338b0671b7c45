"""The dYdX node gateway: dydx-v4-client wrapped once, at the edge.

- The client's `async` node methods call synchronous gRPC stubs and block the event loop, so
  every node call here runs in a worker thread under a timeout (gRPC deadline as well).
- Short-term messages (GoodTilBlock) skip sequence numbers on chain; stateful ones (long-term
  orders and their cancels) need the exact account sequence: they are serialised under a lock,
  and the local sequence advances only when the chain accepted the transaction. A sequence
  mismatch (another signer used the key, e.g. `kill --direct` beside a hung daemon) resyncs from
  the node and re-signs and re-sends the tx, up to SEQUENCE_ATTEMPTS times: the rejected tx was
  not executed, so sending it again is safe.
- A transport failure after a signed order may have left the machine is `OrderStateUnknown`:
  never resend it blindly; the order manager reconciles by client id first.
- Broadcasts are paced (public validators throttle around 4-5 per second), with a burst allowance:
  a venue takes one cancel per transaction (v4-chain's clob ante handler refuses a tx holding a
  clob message beside any other message), so a kill's long-term cancels go out back to back
  within the burst rather than one per pacing interval.
- The signer may be the account's own mnemonic or a trade-only permissioned key (dYdX
  authenticators): then `owner_address` is the trading account and `authenticator_ids` select
  the authenticator.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

import grpc
import structlog
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.builder import Builder
from dydx_v4_client.node.message import batch_cancel, cancel_order
from dydx_v4_client.wallet import Wallet
from v4_proto.cosmos.auth.v1beta1 import query_pb2_grpc as auth_grpc
from v4_proto.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from v4_proto.cosmos.auth.v1beta1.query_pb2 import QueryAccountRequest
from v4_proto.cosmos.base.tendermint.v1beta1 import query_pb2_grpc as tm_grpc
from v4_proto.cosmos.base.tendermint.v1beta1.query_pb2 import GetLatestBlockRequest
from v4_proto.cosmos.tx.v1beta1 import service_pb2_grpc as tx_grpc
from v4_proto.cosmos.tx.v1beta1.service_pb2 import BroadcastMode, BroadcastTxRequest
from v4_proto.dydxprotocol.clob.tx_pb2 import OrderBatch
from v4_proto.dydxprotocol.subaccounts.subaccount_pb2 import SubaccountId

from bot.errors import (
    InsufficientMargin,
    OrderRejected,
    OrderStateUnknown,
    PostOnlyWouldCross,
    TransientVenueError,
    VenueError,
)
from bot.ratelimit import TokenBucket
from bot.venues.dydx.chain import ChainQueries
from bot.venues.dydx.errors import classify
from bot.venues.dydx.orders import (
    PLACE_ORDER_TYPE_URL,
    VenueOrder,
    order_id_proto,
    place_order_bytes,
    subaccount_field,
)
from bot.venues.dydx.signer import EncodedMessage, TxSigner

T = TypeVar("T")
log = structlog.get_logger("dydx_node")
VENUE = "dydx"
USDC_DENOM = "ibc/8E27BA2D5493AF5636760E354E46004562C46AB7EC0CC4C1CA14E9E20E2545B5"
SDK_WRONG_SEQUENCE = 32
EXPECTED_SEQUENCE = re.compile(r"account sequence mismatch, expected (\d+)")
SEQUENCE_ATTEMPTS = 3  # a stateful tx refused for its sequence is re-signed and sent again
CLOB_POST_ONLY_WOULD_CROSS = 2003
CLOB_COLLATERALIZATION_FAILED = 3007


class SequenceResynced(TransientVenueError):
    """The chain refused a stateful tx for its sequence (another signer used the key); the
    sequence was read again. The tx was not executed, so sending it again is safe."""


@dataclass(frozen=True, slots=True)
class TxResult:
    txhash: str
    code: int
    codespace: str
    raw_log: str


class Pacer:
    """At most `per_sec` calls a second on average, up to `burst` of them back to back: the
    shared token bucket behind an async wait (an infinite rate, which the config accepts, never
    waits). A caller that must wait is charged at the time it asked, not when it wakes, so late
    wake-ups do not add up to a slower rate."""

    def __init__(self, per_sec: float, clock: Callable[[], int] = time.monotonic_ns, burst: int = 1) -> None:
        # the rate as written (4.0 a second is exactly 4); full since ns 0, so the first call never waits
        self._bucket = (None if math.isinf(per_sec)
                        else TokenBucket.full(Fraction(str(per_sec)), 0, burst=burst))
        self._clock = clock
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self._bucket is None:
            return
        async with self._lock:
            now_ns = self._clock()
            bucket = self._bucket.refilled(now_ns)
            wait = bucket.wait_secs()
            if wait > 0:
                await asyncio.sleep(float(wait))
            self._bucket = bucket.force_take(now_ns)


class NodeGateway:
    """Signs and broadcasts order messages through dydx-v4-client, off the event loop."""

    def __init__(
        self,
        node_url: str,
        chain_id: str,
        mnemonic: str,
        *,
        subaccount_number: int = 0,
        owner_address: str | None = None,
        authenticator_ids: list[int] | None = None,
        secure: bool = True,
        timeout_secs: float = 5.0,
        broadcasts_per_sec: float = 4.0,
        broadcast_burst: int = 1,
        memo: str = "perpbot",
    ) -> None:
        credentials = grpc.ssl_channel_credentials() if secure else None
        self._channel = (grpc.secure_channel(node_url, credentials) if credentials
                         else grpc.insecure_channel(node_url))
        self._builder = Builder(chain_id, USDC_DENOM, memo=memo)
        self._key = KeyPair.from_mnemonic(mnemonic)
        self._wallet = Wallet(self._key, 0, 0)
        self.owner = owner_address or self._wallet.address
        self.subaccount_number = subaccount_number
        self._subaccount_field = subaccount_field(self.owner, subaccount_number)
        self._authenticators = authenticator_ids
        self._timeout = timeout_secs
        self._pacer = Pacer(broadcasts_per_sec, burst=broadcast_burst)
        self._stateful_lock = asyncio.Lock()
        self._sequence: int | None = None
        self._account_number = 0
        self._signer = TxSigner(self._key, chain_id, memo)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        async with asyncio.timeout(self._timeout + 1.0):
            return await asyncio.to_thread(fn, *args)

    # ---- queries ---------------------------------------------------------------------------------

    async def refresh_account(self) -> tuple[int, int]:
        """Read (account_number, sequence) of the owner account from the node."""
        def query() -> BaseAccount:
            response = auth_grpc.QueryStub(self._channel).Account(
                QueryAccountRequest(address=self.owner), timeout=self._timeout)
            account = BaseAccount()
            if not response.account.Unpack(account):
                raise VenueError(VENUE, "get_account", "account is not a BaseAccount")
            return account

        account = await self._query(query, "get_account")
        self._account_number, self._sequence = account.account_number, account.sequence
        self._wallet = Wallet(self._key, account.account_number, account.sequence)
        return account.account_number, account.sequence

    async def latest_height(self) -> int:
        def query() -> int:
            block = tm_grpc.ServiceStub(self._channel).GetLatestBlock(
                GetLatestBlockRequest(), timeout=self._timeout)
            return int(block.block.header.height)

        return await self._query(query, "latest_block")

    def chain_queries(self, timeout_secs: float | None = None) -> ChainQueries:
        """Read-only watchdog queries over this gateway's channel (closed with the gateway)."""
        return ChainQueries(self._channel, timeout_secs or self._timeout)

    async def _query(self, fn: Callable[[], T], op: str) -> T:
        try:
            return await self._off_loop(fn)
        except (grpc.RpcError, TimeoutError) as exc:
            raise classify(exc, op) from exc

    # ---- transactions ----------------------------------------------------------------------------

    async def place(self, order: VenueOrder) -> TxResult:
        """Sign and broadcast a MsgPlaceOrder; raise OrderRejected / OrderStateUnknown."""
        return await self._send(self.place_message(order), order.is_stateful, f"place {order.client_id}")

    def place_message(self, order: VenueOrder) -> EncodedMessage:
        """The MsgPlaceOrder for `order`, serialised (byte for byte what protobuf would write)."""
        return EncodedMessage(PLACE_ORDER_TYPE_URL, place_order_bytes(order, self._subaccount_field))

    async def cancel(self, order: VenueOrder, *, good_til_block: int | None = None,
                     good_til_block_time: int | None = None) -> TxResult:
        """Cancel one order: short-term ones need a GoodTilBlock, stateful ones a GoodTilBlockTime."""
        message = cancel_order(order_id_proto(order, self.owner, self.subaccount_number),
                               good_til_block, good_til_block_time)
        return await self._send(message, order.is_stateful, f"cancel {order.client_id}")

    async def batch_cancel(self, clob_client_ids: dict[int, list[int]], good_til_block: int) -> TxResult:
        """Cancel up to 100 short-term orders in one message."""
        if sum(len(ids) for ids in clob_client_ids.values()) > 100:
            raise ValueError("a batch cancel holds at most 100 orders")
        batches = [OrderBatch(clob_pair_id=pair, client_ids=ids) for pair, ids in clob_client_ids.items()]
        subaccount = SubaccountId(owner=self.owner, number=self.subaccount_number)
        return await self._send(batch_cancel(subaccount, batches, good_til_block), False, "batch_cancel")

    async def _send(self, message: Any, is_stateful: bool, op: str) -> TxResult:
        if self._sequence is None:
            await self.refresh_account()
        if not is_stateful:
            return await self._broadcast(message, op)
        async with self._stateful_lock:
            for attempt in range(1, SEQUENCE_ATTEMPTS + 1):
                try:
                    result = await self._broadcast(message, op)
                except OrderStateUnknown:
                    self._sequence = None  # it may or may not have been used: read it again
                    raise
                except SequenceResynced as exc:
                    if attempt == SEQUENCE_ATTEMPTS:
                        raise
                    log.warning("sequence_resynced_resend", op=op, attempt=attempt, error=str(exc))
                    continue
                assert self._sequence is not None
                self._sequence += 1
                return result
        raise AssertionError("unreachable")

    def _build(self, message: Any) -> bytes:
        """The signed tx bytes: exactly what the client's `Builder.build` would serialise.

        Same sequence, account number, chain id, memo, default fee and (with authenticators)
        the same TxExtension as the client's `TxOptions` path; the signer caches the key and the
        constant tx pieces (see signer.py), built once from this gateway's Builder and key.
        """
        assert self._sequence is not None
        self._wallet.sequence = self._sequence  # kept in step, as the client path did
        return self._signer.sign(message, self._sequence, self._account_number, self._authenticators)

    async def _broadcast(self, message: Any, op: str) -> TxResult:
        tx_bytes = self._build(message)
        txhash = hashlib.sha256(tx_bytes).hexdigest().upper()
        await self._pacer.wait()

        def call() -> Any:
            return tx_grpc.ServiceStub(self._channel).BroadcastTx(
                BroadcastTxRequest(tx_bytes=tx_bytes, mode=BroadcastMode.BROADCAST_MODE_SYNC),
                timeout=self._timeout)

        try:
            response = (await self._off_loop(call)).tx_response
        except (grpc.RpcError, TimeoutError) as exc:
            detail = exc.code().name if isinstance(exc, grpc.RpcError) else "timeout"  # type: ignore[attr-defined]
            raise OrderStateUnknown(VENUE, op, f"broadcast {txhash[:12]} {detail}") from exc
        result = TxResult(response.txhash or txhash, response.code, response.codespace, response.raw_log)
        if result.code != 0:
            await self._raise_for(result, op)
        return result

    async def _raise_for(self, result: TxResult, op: str) -> None:
        detail = f"{result.codespace}/{result.code}: {result.raw_log}"
        if result.codespace == "sdk" and result.code == SDK_WRONG_SEQUENCE:
            # The chain's own answer ("expected N") is ahead of a query, which reads committed
            # state and so lags stateful txs of the current block (DYDX_V4.md §4.4).
            expected = EXPECTED_SEQUENCE.search(result.raw_log)
            if expected is not None:
                self._sequence = int(expected.group(1))
            else:
                await self.refresh_account()
            raise SequenceResynced(VENUE, op, f"sequence resynced: {detail}")
        if result.codespace == "clob" and result.code == CLOB_POST_ONLY_WOULD_CROSS:
            raise PostOnlyWouldCross(VENUE, op, detail)
        if result.codespace == "clob" and result.code == CLOB_COLLATERALIZATION_FAILED:
            raise InsufficientMargin(VENUE, op, detail)
        raise OrderRejected(VENUE, op, detail)

    def close(self) -> None:
        self._channel.close()
