"""The simulator's node front-end driven by the real, unmodified dydx-v4-client over loopback gRPC.

The client's `async` methods make blocking gRPC calls, so every call goes through `blocking()`
(a worker thread with its own loop) while the server runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import grpc
import pytest
from dydx_v4_client.indexer.rest.constants import OrderType
from dydx_v4_client.network import NodeConfig, make_insecure
from dydx_v4_client.node.client import NodeClient
from dydx_v4_client.node.market import Market
from dydx_v4_client.node.message import place_order
from dydx_v4_client.wallet import Wallet
from v4_proto.cosmos.tx.v1beta1 import service_pb2_grpc
from v4_proto.cosmos.tx.v1beta1.service_pb2 import BroadcastMode, BroadcastTxRequest
from v4_proto.dydxprotocol.clob.order_pb2 import Order, OrderId
from v4_proto.dydxprotocol.clob.tx_pb2 import OrderBatch
from v4_proto.dydxprotocol.subaccounts.subaccount_pb2 import SubaccountId

from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.perp.records import (
    ERR_DEPRECATED_FIELD,
    ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW,
    ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW,
    ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK,
    ERR_REDUCE_ONLY_DISABLED,
    SDK_ERR_MEMPOOL_IS_FULL,
    ExchangeConfig,
    MarketInfo,
    OrderRecord,
    OrderState,
)
from bot.sim.server.node import USDC_DENOM, NodeServer, serializable_int
from bot.venues.sim.feed import default_params

NS = 1_000_000_000
START_NS = 1_750_000_000 * NS
ACCOUNT = sim_accounts()["dydx"]
TRADER = ACCOUNT["address"]


async def blocking(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one of the client's (blocking) coroutines off the loop."""
    return await asyncio.to_thread(asyncio.run, coro)


@dataclass
class Env:
    exchange: SimExchange
    server: NodeServer
    client: NodeClient
    wallet: Wallet
    now_ns: int
    accepted_txs: int = 0

    def on_tx(self) -> None:
        self.accepted_txs += 1

    def clock_ns(self) -> int:
        return self.now_ns

    def advance(self, secs: float) -> None:
        self.now_ns += int(secs * NS)
        self.exchange.advance(self.now_ns)

    def next_block(self) -> None:
        height = self.exchange.height
        for _ in range(100):
            self.advance(0.25)
            if self.exchange.height > height:
                return
        raise AssertionError("no new block")

    @property
    def btc(self) -> MarketInfo:
        return self.exchange.markets()["BTC-USD"]

    def market(self) -> Market:
        m = self.btc
        return Market({"atomicResolution": m.atomic_resolution, "quantumConversionExponent":
                       m.quantum_conversion_exponent, "stepBaseQuantums": m.step_base_quantums,
                       "subticksPerTick": m.subticks_per_tick, "clobPairId": str(m.clob_pair_id)})

    def passive_bid(self, ticks_away: int = 50) -> int:
        bids, _ = self.exchange.book("BTC-USD")
        return int(bids[0][0] - ticks_away * self.btc.tick_size)

    def order(self, flags: int, *, price: int | None = None, size: float = 0.01, gtb: int | None = None,
              gtbt: int | None = None, tif: Any = Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED,
              post_only: bool = False, reduce_only: bool = False, side: Any = Order.Side.SIDE_BUY) -> Order:
        market = self.market()
        order_id = market.order_id(TRADER, 0, random.randrange(1, 2**32), flags)
        return market.order(order_id, OrderType.LIMIT, side, size=size, price=price or self.passive_bid(),
                            time_in_force=tif, reduce_only=reduce_only, post_only=post_only,
                            good_til_block=gtb, good_til_block_time=gtbt)

    def open_order(self, order_id: OrderId) -> OrderRecord | None:
        for record in self.exchange.orders(TRADER, 0, open_only=True):
            if record.request.order_id.client_id == order_id.client_id:
                return record
        return None

    def record(self, order_id: OrderId) -> OrderRecord:
        for record in self.exchange.orders(TRADER, 0):
            if record.request.order_id.client_id == order_id.client_id:
                return record
        raise AssertionError(f"no order {order_id.client_id}")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = ExchangeConfig()
    params = [default_params(t, config.block_interval_ns / NS) for t in ("BTC-USD", "ETH-USD")]
    exchange = SimExchange(params, 7, START_NS, config)
    exchange.create_account(TRADER, Decimal(100_000))
    e = Env(exchange, None, None, None, START_NS)  # type: ignore[arg-type]
    e.advance(5)
    server = NodeServer(exchange, e.clock_ns, on_tx=e.on_tx)
    await server.start()
    sim_node = partial(NodeConfig, config.chain_id, chaintoken_denom="adv4tnt", usdc_denom=USDC_DENOM)
    node = make_insecure(sim_node, rest_indexer="", websocket_indexer="", node_url=server.target).node
    e.server, e.client = server, await NodeClient.connect(node)
    e.wallet = await blocking(Wallet.from_mnemonic(e.client, ACCOUNT["mnemonic"], TRADER))
    try:
        yield e
    finally:
        node.channel.close()
        await server.stop()


async def raw_broadcast(env: Env, wallet: Wallet, order: Order) -> Any:
    """Build and broadcast with the wallet's own sequence (no SequenceManager re-query)."""
    tx = env.client.builder.build(wallet, place_order(order))
    return (await blocking(env.client.broadcast(tx))).tx_response


async def gtb(env: Env, ahead: int = 10) -> int:
    return int(await blocking(env.client.latest_block_height())) + ahead


async def gtbt(env: Env, ahead_secs: int = 3600) -> int:
    block = await blocking(env.client.latest_block())
    return int(block.block.header.time.seconds) + ahead_secs


async def test_latest_block_and_account(env: Env) -> None:
    block = await blocking(env.client.latest_block())
    assert block.block.header.height == env.exchange.height > 0
    assert block.block.header.chain_id == env.server.chain_id
    assert block.block.header.time.seconds * NS + block.block.header.time.nanos == env.exchange.block_time_ns
    account = await blocking(env.client.get_account(TRADER))
    assert (account.account_number, account.sequence) == env.exchange.account(TRADER)
    assert env.wallet.address == TRADER
    with pytest.raises(grpc.RpcError) as info:
        await blocking(env.client.get_account(sim_accounts()["dydx_other"]["address"]))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_short_term_post_only_order_rests(env: Env) -> None:
    price = env.passive_bid()
    order = env.order(0, price=price, size=0.0123, gtb=await gtb(env), post_only=True)
    response = await blocking(env.client.place_order(env.wallet, order))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert len(response.tx_response.txhash) == 64 and env.accepted_txs == 1
    record = env.open_order(order.order_id)
    assert record is not None and record.status in (OrderState.BEST_EFFORT_OPENED, OrderState.OPEN)
    assert record.request.price == Decimal(price) and record.request.size == Decimal("0.0123")
    assert record.request.good_til_block == order.good_til_block
    account = await blocking(env.client.get_account(TRADER))
    assert account.pub_key.type_url == "/cosmos.crypto.secp256k1.PubKey"  # set by the first tx


async def test_long_term_order_bumps_the_sequence_by_one(env: Env) -> None:
    _, before = env.exchange.account(TRADER)
    order = env.order(64, gtbt=await gtbt(env))
    response = await blocking(env.client.place_order(env.wallet, order))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert env.exchange.account(TRADER)[1] == before + 1
    env.next_block()
    assert (await blocking(env.client.get_account(TRADER))).sequence == before + 1
    assert env.open_order(order.order_id) is not None
    tx = await blocking(env.client.query_transaction(response.tx_response.txhash))
    assert tx.body.messages[0].type_url == "/dydxprotocol.clob.MsgPlaceOrder"


async def test_cancel_short_term_and_batch_cancel(env: Env) -> None:
    good_til = await gtb(env, 15)
    orders = [env.order(0, price=env.passive_bid(50 + i), gtb=good_til, post_only=True) for i in range(3)]
    for order in orders:
        assert (await blocking(env.client.place_order(env.wallet, order))).tx_response.code == 0
    assert all(env.open_order(o.order_id) for o in orders)

    good_til = await gtb(env)
    response = await blocking(env.client.cancel_order(env.wallet, orders[0].order_id, good_til))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert env.open_order(orders[0].order_id) is None
    assert env.record(orders[0].order_id).status in (OrderState.CANCELED, OrderState.BEST_EFFORT_CANCELED)

    client_ids = [o.order_id.client_id for o in orders[1:]]
    batch = [OrderBatch(clob_pair_id=env.btc.clob_pair_id, client_ids=client_ids)]
    subaccount = SubaccountId(owner=TRADER, number=0)
    response = await blocking(env.client.batch_cancel_orders(env.wallet, subaccount, batch, await gtb(env)))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert not any(env.open_order(o.order_id) for o in orders)


async def test_cancel_long_term(env: Env) -> None:
    order = env.order(64, gtbt=await gtbt(env))
    assert (await blocking(env.client.place_order(env.wallet, order))).tx_response.code == 0
    env.next_block()
    response = await blocking(env.client.cancel_order(env.wallet, order.order_id,
                                                      good_til_block_time=await gtbt(env, 600)))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert env.open_order(order.order_id) is None


async def test_stale_sequence_on_a_stateful_tx_is_rejected(env: Env) -> None:
    first = env.order(64, gtbt=await gtbt(env))
    assert (await blocking(env.client.place_order(env.wallet, first))).tx_response.code == 0
    # Same block: the client re-reads the committed sequence, which has not moved yet (as on mainnet).
    second = env.order(64, gtbt=await gtbt(env))
    response = (await blocking(env.client.place_order(env.wallet, second))).tx_response
    assert (response.codespace, response.code) == ("sdk", 32), response.raw_log
    assert "sequence" in response.raw_log
    assert env.open_order(second.order_id) is None
    env.next_block()
    assert (await blocking(env.client.place_order(env.wallet, second))).tx_response.code == 0

    env.next_block()
    stale = Wallet(env.wallet.key, env.wallet.account_number, 0)
    third = env.order(64, gtbt=await gtbt(env))
    response = await raw_broadcast(env, stale, third)
    assert (response.codespace, response.code) == ("sdk", 32)
    # a short-term order ignores the sequence
    short = env.order(0, gtb=await gtb(env), post_only=True)
    response = await raw_broadcast(env, stale, short)
    assert response.code == 0, response.raw_log


async def test_tampered_signature_and_junk_are_rejected_and_the_server_keeps_serving(env: Env) -> None:
    env.wallet.sequence = env.exchange.account(TRADER)[1]
    tx = env.client.builder.build(env.wallet, place_order(env.order(0, gtb=await gtb(env), post_only=True)))
    signature = bytearray(tx.signatures[0])
    signature[5] ^= 0xFF
    tx.signatures[0] = bytes(signature)
    response = (await blocking(env.client.broadcast(tx))).tx_response
    assert (response.codespace, response.code) == ("sdk", 4)
    assert "signature verification failed" in response.raw_log

    stub = service_pb2_grpc.ServiceStub(env.client.channel)
    junk = await asyncio.to_thread(stub.BroadcastTx, BroadcastTxRequest(tx_bytes=b"\x0a\xff junk",
                                                                       mode=BroadcastMode.BROADCAST_MODE_SYNC))
    assert (junk.tx_response.codespace, junk.tx_response.code) == ("sdk", 2)

    other = sim_accounts()["dydx_other"]
    env.exchange.create_account(other["address"], Decimal(1000))
    intruder = await blocking(Wallet.from_mnemonic(env.client, other["mnemonic"], other["address"]))
    not_mine = env.order(0, gtb=await gtb(env), post_only=True)  # owned by TRADER, signed by `other`
    response = (await blocking(env.client.place_order(intruder, not_mine))).tx_response
    assert (response.codespace, response.code) == ("sdk", 8)

    assert await blocking(env.client.latest_block_height()) == env.exchange.height
    ok = await blocking(env.client.place_order(env.wallet, env.order(0, gtb=await gtb(env), post_only=True)))
    assert ok.tx_response.code == 0


async def test_reduce_only_resting_and_fill_or_kill_are_rejected(env: Env) -> None:
    reduce_only = env.order(0, gtb=await gtb(env), reduce_only=True)
    response = (await blocking(env.client.place_order(env.wallet, reduce_only))).tx_response
    assert (response.codespace, response.code) == ("clob", ERR_REDUCE_ONLY_DISABLED), response.raw_log
    assert env.open_order(reduce_only.order_id) is None

    fok = env.order(0, gtb=await gtb(env), tif=Order.TimeInForce.TIME_IN_FORCE_FILL_OR_KILL)
    response = (await blocking(env.client.place_order(env.wallet, fok))).tx_response
    assert (response.codespace, response.code) == ("clob", ERR_DEPRECATED_FIELD), response.raw_log
    assert env.open_order(fok.order_id) is None


async def test_good_til_block_outside_the_window_is_rejected(env: Env) -> None:
    height = await blocking(env.client.latest_block_height())
    window = ExchangeConfig().short_block_window
    for bad, code in ((height, ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK),
                      (height + window + 1, ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW)):
        order = env.order(0, gtb=bad, post_only=True)
        response = (await blocking(env.client.place_order(env.wallet, order))).tx_response
        assert (response.codespace, response.code) == ("clob", code), (bad, response.raw_log)
        assert env.open_order(order.order_id) is None
    far = env.order(64, gtbt=await gtbt(env, 96 * 24 * 3600))
    response = (await blocking(env.client.place_order(env.wallet, far))).tx_response
    assert response.codespace == "clob"
    assert response.code == ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW
    edge = env.order(0, gtb=height + window, post_only=True)
    assert (await blocking(env.client.place_order(env.wallet, edge))).tx_response.code == 0


async def test_watchdog_queries_follow_the_scenario(env: Env) -> None:
    gating = await blocking(env.client.get_withdrawal_and_transfer_gating_status(0))
    assert gating.withdrawals_and_transfers_unblocked_at_block <= env.exchange.height
    env.exchange.scenario.withdrawals_gated = True
    gating = await blocking(env.client.get_withdrawal_and_transfer_gating_status(0))
    assert gating.withdrawals_and_transfers_unblocked_at_block > env.exchange.height
    env.exchange.scenario.withdrawals_gated = False
    gating = await blocking(env.client.get_withdrawal_and_transfer_gating_status(0))
    assert gating.withdrawals_and_transfers_unblocked_at_block <= env.exchange.height

    capacity = await blocking(env.client.get_withdrawal_capacity_by_denom(USDC_DENOM))
    assert [c.limiter.period.seconds for c in capacity.limiter_capacity_list] == [3600, 86_400]
    assert capacity.limiter_capacity_list[0].capacity == serializable_int(1_000_000 * 10**6)
    bridge = await blocking(env.client.get_delayed_complete_bridge_messages(TRADER))
    assert list(bridge.messages) == []

    pairs = (await blocking(env.client.get_clob_pairs())).clob_pair
    perps = (await blocking(env.client.get_perpetuals())).perpetual
    assert [p.id for p in pairs] == [0, 1] and [p.params.ticker for p in perps] == ["BTC-USD", "ETH-USD"]
    assert pairs[0].subticks_per_tick == env.btc.subticks_per_tick
    assert perps[0].params.atomic_resolution == env.btc.atomic_resolution
    fees = await blocking(env.client.get_fee_tiers())
    assert fees.params.tiers[0].taker_fee_ppm == 500


async def test_chain_halt_freezes_the_head_and_rejects_txs(env: Env) -> None:
    env.exchange.scenario.chain_halted = True
    height = await blocking(env.client.latest_block_height())
    env.advance(5)
    assert await blocking(env.client.latest_block_height()) == height
    order = env.order(64, gtbt=await gtbt(env))
    _, sequence = env.exchange.account(TRADER)
    response = (await blocking(env.client.place_order(env.wallet, order))).tx_response
    assert (response.codespace, response.code) == ("sdk", SDK_ERR_MEMPOOL_IS_FULL), response.raw_log
    assert env.exchange.account(TRADER)[1] == sequence  # a rejected stateful tx leaves the sequence alone
    env.exchange.scenario.chain_halted = False
    env.advance(2)
    assert await blocking(env.client.latest_block_height()) > height


async def test_grpc_unavailable_makes_every_call_fail(env: Env) -> None:
    env.exchange.scenario.grpc_unavailable = True
    for call in (env.client.latest_block_height(), env.client.get_account(TRADER),
                 env.client.get_withdrawal_and_transfer_gating_status(0)):
        with pytest.raises(grpc.RpcError) as info:
            await blocking(call)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        await blocking(env.client.place_order(env.wallet, env.order(0, gtb=env.exchange.height + 5)))
    env.exchange.scenario.grpc_unavailable = False
    assert await blocking(env.client.latest_block_height()) == env.exchange.height



async def test_local_sequence_counter_allows_stateful_txs_in_one_block(env: Env) -> None:
    """Adapter recipe: no SequenceManager re-query; bump `wallet.sequence` per accepted stateful tx."""
    env.client.sequence_manager = None
    env.wallet.sequence = (await blocking(env.client.get_account(TRADER))).sequence
    for _ in range(3):  # same block
        order = env.order(64, gtbt=await gtbt(env))
        response = (await blocking(env.client.place_order(env.wallet, order))).tx_response
        assert response.code == 0, response.raw_log
        env.wallet.sequence += 1
    short = env.order(0, gtb=await gtb(env), post_only=True)  # short-term: the counter does not move
    assert (await blocking(env.client.place_order(env.wallet, short))).tx_response.code == 0
    assert env.exchange.account(TRADER)[1] == env.wallet.sequence
