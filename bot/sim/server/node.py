"""The simulator's dYdX v4 node: a loopback `grpc.aio` server the real `dydx_v4_client` talks to.

Services (generated servicers from `v4_proto`; anything not listed answers UNIMPLEMENTED):

* cosmos.auth Query/Account: BaseAccount in an Any ("/" prefix); number and sequence from the
  exchange, pub_key once a tx set it; an unknown address -> NOT_FOUND.
* cosmos.base.tendermint Service/GetLatestBlock, GetNodeInfo: exchange height, block time, chain id.
* cosmos.tx Service/BroadcastTx: decode + verify (`node_tx`), sequence, then place / cancel /
  batch-cancel on the exchange; TxResponse{code, codespace, raw_log, txhash}.
  Simulate: fixed gas. GetTx: stateful txs this server accepted.
* dydxprotocol.subaccounts Query/GetWithdrawalAndTransfersBlockedInfo: gated while
  `scenario.withdrawals_gated`.
* dydxprotocol.ratelimit Query/CapacityByDenom: the genesis limiters (1 h, 1 d) for USDC, capacity =
  baseline minimum, or `scenario.withdrawal_capacity_usdc` when set.
* dydxprotocol.bridge Query/DelayedCompleteBridgeMessages: empty.
* dydxprotocol.clob Query/ClobPair(All), perpetuals Query/Perpetual, AllPerpetuals, feetiers
  Query/PerpetualFeeParams, UserFeeTier: from `exchange.markets()` and the fee config.
* dydxprotocol.accountplus Query/GetAuthenticators, GetAuthenticator, and the txs
  MsgAddAuthenticator / MsgRemoveAuthenticator; a tx that selects authenticators is verified by
  them (`node_auth`: trade-only keys). The owner's MsgWithdrawFromSubaccount and
  MsgCreateTransfer move USDC on the exchange (a signer with only a trading key is refused).

BroadcastTx follows the chain's CheckTx (BROADCAST_MODE_SYNC, whatever mode is asked):
decode and authenticate (sdk 2 / 4 / 8 ...), then for a stateful tx (long-term or conditional
order or cancel) the sequence must equal the account's; it is bumped only when the messages were
accepted (the chain discards the ante state of a failed CheckTx). Short-term txs go through
`check_sequence(..., is_stateful=False)`, which neither checks nor bumps. A `ChainError` from any
step becomes a non-zero `code` with its codespace and log; the reply's `height` is 0, as in a
real sync broadcast. The signer's pubkey is stored on the first accepted tx (as the chain's
SetPubKey decorator does) and then appears in Query/Account.

Queries read committed state, as on the chain: after a stateful tx, Query/Account keeps reporting
the old sequence until the next block. So the client's SequenceManager, which re-reads the
sequence before every broadcast, gets "account sequence mismatch" for a second stateful tx in the
same block, exactly as on mainnet (DYDX_V4.md §4.4).

Events: the exchange queues what a tx changed; the runner publishes them on its next step. For
prompt publication pass `on_tx`, a zero-argument callable run after every accepted tx (code 0).

Faults (`bot.sim.faults.ScenarioState`): `grpc_unavailable` true -> every RPC aborts with UNAVAILABLE.
`reject_orders = OrderReject(codespace, code, count, log)` -> the next `count`
txs that place an order fail CheckTx with that error (default clob/3007, undercollateralized).
`front_run = FrontRun(leave=fraction, count=N)` -> just before each of the next N
IOC orders is matched, another account takes the liquidity inside its limit price except
`fraction` of its size, so it fills partially.
`scenario.chain_halted` is the exchange's: its height stops and it rejects txs.
Every handler runs on the event loop (the exchange is single-threaded); an unexpected exception
is logged and answered INTERNAL, never taking the server down.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from v4_proto.cosmos.auth.v1beta1 import query_pb2 as auth_q
from v4_proto.cosmos.auth.v1beta1 import query_pb2_grpc as auth_grpc
from v4_proto.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from v4_proto.cosmos.base.abci.v1beta1.abci_pb2 import GasInfo, TxResponse
from v4_proto.cosmos.base.tendermint.v1beta1 import query_pb2 as tm_q
from v4_proto.cosmos.base.tendermint.v1beta1 import query_pb2_grpc as tm_grpc
from v4_proto.cosmos.base.tendermint.v1beta1 import types_pb2 as sdk_types
from v4_proto.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from v4_proto.cosmos.tx.v1beta1 import service_pb2 as tx_s
from v4_proto.cosmos.tx.v1beta1 import service_pb2_grpc as tx_grpc
from v4_proto.cosmos.tx.v1beta1.tx_pb2 import Tx
from v4_proto.dydxprotocol.accountplus import query_pb2 as accountplus_q
from v4_proto.dydxprotocol.accountplus import query_pb2_grpc as accountplus_grpc
from v4_proto.dydxprotocol.accountplus.models_pb2 import AccountAuthenticator
from v4_proto.dydxprotocol.bridge import query_pb2 as bridge_q
from v4_proto.dydxprotocol.bridge import query_pb2_grpc as bridge_grpc
from v4_proto.dydxprotocol.clob import query_pb2 as clob_q
from v4_proto.dydxprotocol.clob import query_pb2_grpc as clob_grpc
from v4_proto.dydxprotocol.clob.clob_pair_pb2 import ClobPair, PerpetualClobMetadata
from v4_proto.dydxprotocol.feetiers import query_pb2 as fee_q
from v4_proto.dydxprotocol.feetiers import query_pb2_grpc as fee_grpc
from v4_proto.dydxprotocol.feetiers.params_pb2 import PerpetualFeeParams, PerpetualFeeTier
from v4_proto.dydxprotocol.perpetuals import query_pb2 as perp_q
from v4_proto.dydxprotocol.perpetuals import query_pb2_grpc as perp_grpc
from v4_proto.dydxprotocol.perpetuals.perpetual_pb2 import Perpetual, PerpetualMarketType, PerpetualParams
from v4_proto.dydxprotocol.ratelimit import query_pb2 as rate_q
from v4_proto.dydxprotocol.ratelimit import query_pb2_grpc as rate_grpc
from v4_proto.dydxprotocol.ratelimit.capacity_pb2 import LimiterCapacity
from v4_proto.dydxprotocol.ratelimit.limit_params_pb2 import Limiter
from v4_proto.dydxprotocol.subaccounts import query_pb2 as sub_q
from v4_proto.dydxprotocol.subaccounts import query_pb2_grpc as sub_grpc
from v4_proto.tendermint.p2p.types_pb2 import DefaultNodeInfo
from v4_proto.tendermint.types import block_pb2 as tm_block
from v4_proto.tendermint.types import types_pb2 as tm_types
from v4_proto.tendermint.version.types_pb2 import Consensus

from bot.domain import Side
from bot.sim.exchange import SimExchange
from bot.sim.faults import countdown
from bot.sim.perp.records import ChainError, ExchangeConfig, MarketInfo, OrderId, OrderRequest, TimeInForce
from bot.sim.server.node_auth import AuthenticatorStore, AuthRequest, authenticate
from bot.sim.server.node_tx import (
    DecodedTx,
    MsgAddAuthenticator,
    MsgBatchCancel,
    MsgCancelOrder,
    MsgCreateTransfer,
    MsgPlaceOrder,
    MsgRemoveAuthenticator,
    MsgWithdrawFromSubaccount,
    decode_tx,
    to_batch_cancel,
    to_cancel,
    to_order_request,
    tx_hash,
    verify_signature,
)

log = structlog.get_logger("sim.node")

USDC_DENOM = "ibc/8E27BA2D5493AF5636760E354E46004562C46AB7EC0CC4C1CA14E9E20E2545B5"
SIMULATED_GAS_USED = 150_000
GATING_BLOCKS = 50  # WITHDRAWAL_AND_TRANSFERS_BLOCKED_AFTER_NEGATIVE_TNC_SUBACCOUNT_SEEN_BLOCKS
_USDC_QUANTUMS = Decimal(10**6)
# x/ratelimit genesis: max(1% TVL, 1M USDC) per hour, max(10% TVL, 10M USDC) per day
_LIMITERS = ((3600, 1_000_000, 10_000), (86_400, 10_000_000, 100_000))
_KEEP_TXS = 10_000
FRONT_RUNNER = "dydx1frontrunner000000000000000000000000000"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def serializable_int(value: int) -> bytes:
    """dYdX SerializableInt bytes: 0x02 (>= 0) or 0x03 (< 0), then the big-endian magnitude."""
    magnitude = abs(value)
    return bytes([0x03 if value < 0 else 0x02]) + magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def _rpc(method: Callable[[Any, Any], Any]) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Servicer method wrapper: the grpc_unavailable fault, _Abort -> status, bugs -> INTERNAL."""

    @functools.wraps(method)
    async def handler(self: _Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if self.node.exchange.scenario.grpc_unavailable:
                raise _Abort(grpc.StatusCode.UNAVAILABLE, "node unavailable (simulated fault)")
            return method(self, request)
        except _Abort as abort:
            await context.abort(abort.code, abort.details)
        except Exception as exc:
            log.exception("node_rpc_failed", method=method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return handler


class NodeServer:
    """The node front-end over one SimExchange; `target` is what `make_insecure(node_url=...)` takes."""

    def __init__(
        self,
        exchange: SimExchange,
        clock_ns: Callable[[], int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        chain_id: str | None = None,
        fee_config: ExchangeConfig | None = None,
        on_tx: Callable[[], None] | None = None,
    ) -> None:
        config = fee_config or getattr(exchange, "config", None) or ExchangeConfig()
        self.exchange = exchange
        self.clock_ns = clock_ns
        self.chain_id = chain_id or config.chain_id
        self.maker_fee_ppm = int(config.maker_fee_rate * 1_000_000)
        self.taker_fee_ppm = int(config.taker_fee_rate * 1_000_000)
        self._host = host
        self._port = port
        self._on_tx = on_tx
        self._server: grpc.aio.Server | None = None
        self._pubkeys: dict[str, bytes] = {}
        # address -> (height at which a stateful tx was accepted, account sequence before it)
        self._uncommitted: dict[str, tuple[int, int]] = {}
        self._txs: collections.OrderedDict[str, tuple[bytes, TxResponse]] = collections.OrderedDict()
        self._front_runs = 0  # client ids of the front_run fault's orders
        self.authenticators = AuthenticatorStore()

    @property
    def target(self) -> str:
        if self._server is None:
            raise RuntimeError("NodeServer is not started")
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        auth_grpc.add_QueryServicer_to_server(_Auth(self), server)
        tm_grpc.add_ServiceServicer_to_server(_Tendermint(self), server)
        tx_grpc.add_ServiceServicer_to_server(_TxService(self), server)
        sub_grpc.add_QueryServicer_to_server(_Subaccounts(self), server)
        rate_grpc.add_QueryServicer_to_server(_RateLimit(self), server)
        bridge_grpc.add_QueryServicer_to_server(_Bridge(self), server)
        clob_grpc.add_QueryServicer_to_server(_Clob(self), server)
        perp_grpc.add_QueryServicer_to_server(_Perpetuals(self), server)
        fee_grpc.add_QueryServicer_to_server(_FeeTiers(self), server)
        accountplus_grpc.add_QueryServicer_to_server(_AccountPlus(self), server)
        self._port = server.add_insecure_port(f"{self._host}:{self._port}")
        await server.start()
        self._server = server
        log.info("node_started", target=self.target, chain_id=self.chain_id)

    async def stop(self, grace_secs: float = 0.5) -> None:
        if self._server is not None:
            await self._server.stop(grace_secs)

    # ---- transactions -----------------------------------------------------------------------
    def broadcast(self, tx_bytes: bytes) -> TxResponse:
        """CheckTx: the TxResponse of a BROADCAST_MODE_SYNC reply (height 0, as the chain)."""
        txhash = tx_hash(tx_bytes)
        try:
            tx = self._decode(tx_bytes)
            self._injected_reject(tx)
            sequence_before = self._check_and_apply(tx)
        except ChainError as err:
            log.info("node_tx_rejected", txhash=txhash, codespace=err.codespace, code=err.code, log=err.log)
            return TxResponse(txhash=txhash, code=err.code, codespace=err.codespace, raw_log=err.log)
        if not tx.authenticators:  # SetPubKey runs only on the signer's own-key path
            self._pubkeys[tx.signer] = tx.pubkey
        response = TxResponse(txhash=txhash, code=0, raw_log="")
        if tx.is_stateful:  # short-term txs never land in a block; stateful ones do
            height = self.exchange.height
            pending = self._uncommitted.get(tx.signer)
            if pending is None or pending[0] != height:
                self._uncommitted[tx.signer] = (height, sequence_before)
            self._txs[txhash] = (tx_bytes, TxResponse(txhash=txhash, code=0, height=self.exchange.height + 1,
                                                      gas_wanted=1_000_000, timestamp=""))
            while len(self._txs) > _KEEP_TXS:
                self._txs.popitem(last=False)
        if self._on_tx is not None:
            try:
                self._on_tx()
            except Exception:  # the tx is accepted whatever the hook does
                log.exception("node_on_tx_failed", txhash=txhash)
        return response

    def _injected_reject(self, tx: DecodedTx) -> None:
        faults = self.exchange.scenario
        fault = faults.reject_orders
        if fault is None or not any(isinstance(m, MsgPlaceOrder) for m in tx.messages):
            return
        faults.reject_orders = countdown(fault)
        raise ChainError(fault.codespace, fault.code, fault.log)

    def _front_run(self, request: OrderRequest, market: MarketInfo, now: int) -> None:
        faults = self.exchange.scenario
        fault = faults.front_run
        if fault is None or request.time_in_force is not TimeInForce.IOC:
            return
        faults.front_run = countdown(fault)
        bids, asks = self.exchange.book(market.ticker)
        buy = request.side is Side.BUY
        within = sum((size for price, size in (asks if buy else bids)
                      if (price <= request.price if buy else price >= request.price)), Decimal(0))
        leave = request.size * fault.leave
        take = ((within - leave) / market.step_size).to_integral_value(ROUND_DOWN) * market.step_size
        if take <= 0:
            return
        self.exchange.create_account(FRONT_RUNNER, Decimal(10) ** 9)
        self._front_runs += 1
        order_id = OrderId(FRONT_RUNNER, 0, self._front_runs, 0, market.clob_pair_id)
        self.exchange.place_order(OrderRequest(order_id, request.side, take, request.price, TimeInForce.IOC,
                                               good_til_block=self.exchange.height + 5), now)

    def _decode(self, tx_bytes: bytes) -> DecodedTx:
        return decode_tx(tx_bytes, self.chain_id, lambda owner: self.exchange.account(owner)[0],
                         self._pubkeys.get)

    def _check_and_apply(self, tx: DecodedTx) -> int:
        """Sequence check + messages; returns the account sequence before the tx."""
        _, expected = self.exchange.account(tx.signer)
        if not tx.is_stateful:
            self.exchange.check_sequence(tx.signer, tx.sequence, False)
            self._apply(tx)
            return expected
        if tx.sequence != expected:
            # the exchange decides: a mismatch error, or (timestamp nonces) acceptance
            self.exchange.check_sequence(tx.signer, tx.sequence, True)
            self._apply(tx)
        else:
            self._apply(tx)  # a rejected message leaves the sequence alone, as CheckTx does
            self.exchange.check_sequence(tx.signer, tx.sequence, True)
        return expected

    def _authenticate(self, tx: DecodedTx) -> None:
        """The accountplus ante handler: each message must pass its selected authenticator."""
        height = self.exchange.height
        for index, (msg, selected) in enumerate(zip(tx.messages, tx.authenticators, strict=True)):
            type_url = tx.type_urls[index]
            try:
                node = self.authenticators.initialized(tx.signer, selected, height)
            except ChainError as err:
                raise ChainError(err.codespace, err.code, (
                    f"failed to get initialized authenticator (account = {tx.signer}, authenticator id = "
                    f"{selected}, msg index = {index}, msg type url = {type_url}): {err.log}")) from None
            request = AuthRequest(msg, type_url, tx.signature, tx.sign_doc, tx.account_number, tx.sequence,
                                  self.chain_id)
            try:
                authenticate(node, request, str(selected), verify_signature)
            except ChainError as err:
                raise ChainError(err.codespace, err.code, (
                    f"authentication failed for message {index}, authenticator id {selected}, type "
                    f"{node.type}: {err.log}")) from None

    def _apply(self, tx: DecodedTx) -> None:
        if tx.authenticators:
            self._authenticate(tx)
        now = self.clock_ns()
        for msg in tx.messages:
            if isinstance(msg, MsgPlaceOrder):
                market = self.exchange.market_by_clob_pair(int(msg.order.order_id.clob_pair_id))
                request = to_order_request(msg.order, market)
                self._front_run(request, market, now)
                self.exchange.place_order(request, now)
            elif isinstance(msg, MsgCancelOrder):
                cancel = to_cancel(msg)
                self.exchange.cancel_order(cancel.order_id, now, good_til_block=cancel.good_til_block,
                                           good_til_block_time=cancel.good_til_block_time)
            elif isinstance(msg, MsgBatchCancel):
                batch = to_batch_cancel(msg)
                self.exchange.batch_cancel(batch.owner, batch.subaccount_number, batch.batches,
                                           batch.good_til_block, now)
            else:
                self._apply_account_msg(msg)

    def _apply_account_msg(self, msg: Any) -> None:
        """Authenticator changes and USDC movements (asset 0, quantums of 1e-6 USDC)."""
        height = self.exchange.height
        if isinstance(msg, MsgAddAuthenticator):
            self.authenticators.add(msg.sender, msg.authenticator_type, bytes(msg.data), height)
        elif isinstance(msg, MsgRemoveAuthenticator):
            self.authenticators.remove(msg.sender, int(msg.id), height)
        else:
            withdrawal = isinstance(msg, MsgWithdrawFromSubaccount)
            sender = msg.sender if withdrawal else msg.transfer.sender
            asset, quantums = (msg.asset_id, msg.quantums) if withdrawal else (msg.transfer.asset_id,
                                                                               msg.transfer.amount)
            if asset != 0:
                raise ChainError("sending", 2, f"asset {asset}: only USDC (asset 0) is supported")
            amount = Decimal(int(quantums)) / _USDC_QUANTUMS
            self.exchange.withdraw(sender.owner, amount, int(sender.number))
            if isinstance(msg, MsgCreateTransfer):
                recipient = msg.transfer.recipient
                self.exchange.create_account(recipient.owner, amount, int(recipient.number))

    # ---- queries ----------------------------------------------------------------------------
    def account(self, address: str) -> BaseAccount:
        try:
            number, sequence = self.exchange.account(address)
        except ChainError:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"account {address} not found: key not found") from None
        pending = self._uncommitted.get(address)
        if pending is not None:
            if self.exchange.height > pending[0]:
                del self._uncommitted[address]  # a block has committed the tx
            else:
                sequence = pending[1]
        account = BaseAccount(address=address, account_number=number, sequence=sequence)
        if (pubkey := self._pubkeys.get(address)) is not None:
            account.pub_key.Pack(PubKey(key=pubkey), type_url_prefix="/")
        return account

    def stored_tx(self, txhash: str) -> tuple[bytes, TxResponse] | None:
        return self._txs.get(txhash.upper())

    def markets(self) -> list[MarketInfo]:
        return sorted(self.exchange.markets().values(), key=lambda m: m.clob_pair_id)

    def market(self, clob_pair_id: int) -> MarketInfo:
        for market in self.markets():
            if market.clob_pair_id == clob_pair_id:
                return market
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"clob pair {clob_pair_id} not found: key not found")

    def fee_tier(self) -> PerpetualFeeTier:
        return PerpetualFeeTier(name="1", maker_fee_ppm=self.maker_fee_ppm, taker_fee_ppm=self.taker_fee_ppm)


def _clob_pair(m: MarketInfo) -> ClobPair:
    name = f"STATUS_{m.status}"
    known = name in ClobPair.Status.keys()
    status = ClobPair.Status.Value(name) if known else ClobPair.Status.STATUS_UNSPECIFIED
    return ClobPair(id=m.clob_pair_id,
                    perpetual_clob_metadata=PerpetualClobMetadata(perpetual_id=m.clob_pair_id),
                    step_base_quantums=m.step_base_quantums, subticks_per_tick=m.subticks_per_tick,
                    quantum_conversion_exponent=m.quantum_conversion_exponent, status=status)


def _perpetual(m: MarketInfo) -> Perpetual:
    params = PerpetualParams(id=m.clob_pair_id, ticker=m.ticker, market_id=m.clob_pair_id,
                             atomic_resolution=m.atomic_resolution, default_funding_ppm=0, liquidity_tier=0,
                             market_type=PerpetualMarketType.PERPETUAL_MARKET_TYPE_CROSS)
    open_interest = int(m.open_interest.scaleb(-m.atomic_resolution))
    return Perpetual(params=params, funding_index=serializable_int(0),
                     open_interest=serializable_int(open_interest))


class _Servicer:
    def __init__(self, node: NodeServer) -> None:
        self.node = node


class _Auth(_Servicer, auth_grpc.QueryServicer):
    @_rpc
    def Account(self, request: auth_q.QueryAccountRequest) -> auth_q.QueryAccountResponse:
        packed = any_pb2.Any()
        packed.Pack(self.node.account(request.address), type_url_prefix="/")
        return auth_q.QueryAccountResponse(account=packed)


class _Tendermint(_Servicer, tm_grpc.ServiceServicer):
    @_rpc
    def GetLatestBlock(self, request: tm_q.GetLatestBlockRequest) -> tm_q.GetLatestBlockResponse:
        ex, chain_id = self.node.exchange, self.node.chain_id
        height, time = ex.height, _timestamp(ex.block_time_ns)
        block_hash = tx_hash(f"{chain_id}/{height}".encode())
        return tm_q.GetLatestBlockResponse(
            block_id=tm_types.BlockID(hash=bytes.fromhex(block_hash)),
            block=tm_block.Block(header=tm_types.Header(
                version=Consensus(block=11), chain_id=chain_id, height=height, time=time)),
            sdk_block=sdk_types.Block(header=sdk_types.Header(
                version=Consensus(block=11), chain_id=chain_id, height=height, time=time)),
        )

    @_rpc
    def GetNodeInfo(self, request: tm_q.GetNodeInfoRequest) -> tm_q.GetNodeInfoResponse:
        return tm_q.GetNodeInfoResponse(
            default_node_info=DefaultNodeInfo(network=self.node.chain_id, moniker="perpbot-sim"),
            application_version=tm_q.VersionInfo(name="dydxprotocol", app_name="dydxprotocold",
                                                 version="sim"),
        )


class _TxService(_Servicer, tx_grpc.ServiceServicer):
    @_rpc
    def BroadcastTx(self, request: tx_s.BroadcastTxRequest) -> tx_s.BroadcastTxResponse:
        return tx_s.BroadcastTxResponse(tx_response=self.node.broadcast(bytes(request.tx_bytes)))

    @_rpc
    def Simulate(self, request: tx_s.SimulateRequest) -> tx_s.SimulateResponse:
        gas = GasInfo(gas_wanted=SIMULATED_GAS_USED, gas_used=SIMULATED_GAS_USED)
        return tx_s.SimulateResponse(gas_info=gas)

    @_rpc
    def GetTx(self, request: tx_s.GetTxRequest) -> tx_s.GetTxResponse:
        stored = self.node.stored_tx(request.hash)
        if stored is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"tx not found: {request.hash}")
        tx_bytes, response = stored
        return tx_s.GetTxResponse(tx=Tx.FromString(tx_bytes), tx_response=response)


class _Subaccounts(_Servicer, sub_grpc.QueryServicer):
    @_rpc
    def GetWithdrawalAndTransfersBlockedInfo(
        self, request: sub_q.QueryGetWithdrawalAndTransfersBlockedInfoRequest
    ) -> sub_q.QueryGetWithdrawalAndTransfersBlockedInfoResponse:
        scenario = self.node.exchange.scenario
        if not scenario.withdrawals_gated:
            return sub_q.QueryGetWithdrawalAndTransfersBlockedInfoResponse()
        height = self.node.exchange.height  # an ongoing condition is re-seen every block
        outage = height if scenario.chain_halted else 0
        return sub_q.QueryGetWithdrawalAndTransfersBlockedInfoResponse(
            negative_tnc_subaccount_seen_at_block=0 if outage else height,
            chain_outage_seen_at_block=outage,
            withdrawals_and_transfers_unblocked_at_block=height + GATING_BLOCKS,
        )


class _RateLimit(_Servicer, rate_grpc.QueryServicer):
    @_rpc
    def CapacityByDenom(
        self, request: rate_q.QueryCapacityByDenomRequest
    ) -> rate_q.QueryCapacityByDenomResponse:
        if request.denom != USDC_DENOM:
            return rate_q.QueryCapacityByDenomResponse()
        override = self.node.exchange.scenario.withdrawal_capacity_usdc
        limiters = []
        for period_secs, baseline_usdc, tvl_ppm in _LIMITERS:
            capacity_usdc = Decimal(str(override)) if override is not None else Decimal(baseline_usdc)
            limiters.append(LimiterCapacity(
                limiter=Limiter(period=duration_pb2.Duration(seconds=period_secs),
                                baseline_minimum=serializable_int(baseline_usdc * 10**6),
                                baseline_tvl_ppm=tvl_ppm),
                capacity=serializable_int(int(capacity_usdc * _USDC_QUANTUMS)),
            ))
        return rate_q.QueryCapacityByDenomResponse(limiter_capacity_list=limiters)


class _Bridge(_Servicer, bridge_grpc.QueryServicer):
    @_rpc
    def DelayedCompleteBridgeMessages(
        self, request: bridge_q.QueryDelayedCompleteBridgeMessagesRequest
    ) -> bridge_q.QueryDelayedCompleteBridgeMessagesResponse:
        return bridge_q.QueryDelayedCompleteBridgeMessagesResponse()


class _Clob(_Servicer, clob_grpc.QueryServicer):
    @_rpc
    def ClobPair(self, request: clob_q.QueryGetClobPairRequest) -> clob_q.QueryClobPairResponse:
        return clob_q.QueryClobPairResponse(clob_pair=_clob_pair(self.node.market(request.id)))

    @_rpc
    def ClobPairAll(self, request: clob_q.QueryAllClobPairRequest) -> clob_q.QueryClobPairAllResponse:
        return clob_q.QueryClobPairAllResponse(clob_pair=[_clob_pair(m) for m in self.node.markets()])


class _Perpetuals(_Servicer, perp_grpc.QueryServicer):
    @_rpc
    def Perpetual(self, request: perp_q.QueryPerpetualRequest) -> perp_q.QueryPerpetualResponse:
        return perp_q.QueryPerpetualResponse(perpetual=_perpetual(self.node.market(request.id)))

    @_rpc
    def AllPerpetuals(self, request: perp_q.QueryAllPerpetualsRequest) -> perp_q.QueryAllPerpetualsResponse:
        return perp_q.QueryAllPerpetualsResponse(perpetual=[_perpetual(m) for m in self.node.markets()])


class _FeeTiers(_Servicer, fee_grpc.QueryServicer):
    @_rpc
    def PerpetualFeeParams(
        self, request: fee_q.QueryPerpetualFeeParamsRequest
    ) -> fee_q.QueryPerpetualFeeParamsResponse:
        return fee_q.QueryPerpetualFeeParamsResponse(params=PerpetualFeeParams(tiers=[self.node.fee_tier()]))

    @_rpc
    def UserFeeTier(self, request: fee_q.QueryUserFeeTierRequest) -> fee_q.QueryUserFeeTierResponse:
        return fee_q.QueryUserFeeTierResponse(index=0, tier=self.node.fee_tier())


class _AccountPlus(_Servicer, accountplus_grpc.QueryServicer):
    @_rpc
    def GetAuthenticators(self, request: accountplus_q.GetAuthenticatorsRequest
                          ) -> accountplus_q.GetAuthenticatorsResponse:
        listed = self.node.authenticators.listed(request.account, self.node.exchange.height)
        return accountplus_q.GetAuthenticatorsResponse(account_authenticators=[
            AccountAuthenticator(id=i, type=t, config=c) for i, t, c in listed])

    @_rpc
    def GetAuthenticator(self, request: accountplus_q.GetAuthenticatorRequest
                         ) -> accountplus_q.GetAuthenticatorResponse:
        for i, t, c in self.node.authenticators.listed(request.account, self.node.exchange.height):
            if i == request.authenticator_id:
                return accountplus_q.GetAuthenticatorResponse(
                    account_authenticator=AccountAuthenticator(id=i, type=t, config=c))
        raise _Abort(grpc.StatusCode.INTERNAL, f"authenticator {request.authenticator_id} not found for "
                                               f"account {request.account}: Authenticator is not found")
