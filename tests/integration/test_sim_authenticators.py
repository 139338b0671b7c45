"""Trade-only keys on the simulator's node, with the real dydx-v4-client over loopback gRPC.

The owner adds the authenticator `perpbot keys grant` builds (`add_authenticator`); once a block
has passed, `get_authenticators` lists it; orders, cancels and batch cancels signed by the trading
key under it (`TxOptions(authenticators=...)`, the owner's sequence and account number) are
accepted, and a withdrawal, a transfer, an order on another market or subaccount, a signature by
another key, an unknown id and a revoked authenticator are refused with the chain's errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from dydx_v4_client.indexer.rest.constants import OrderType
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.network import NodeConfig, make_insecure
from dydx_v4_client.node.builder import TxOptions
from dydx_v4_client.node.client import NodeClient
from dydx_v4_client.node.market import Market
from dydx_v4_client.node.message import place_order, subaccount, transfer, withdraw
from dydx_v4_client.wallet import Wallet
from v4_proto.dydxprotocol.clob.order_pb2 import Order
from v4_proto.dydxprotocol.clob.tx_pb2 import OrderBatch

from bot.sim.accounts import SIM_DYDX_OTHER_MNEMONIC, sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.perp.records import ExchangeConfig
from bot.sim.server.node import USDC_DENOM, NodeServer
from bot.venues.dydx.keys import new_mnemonic, stored_config, trading_authenticator
from bot.venues.sim.feed import default_params

NS = 1_000_000_000
ACCOUNT = sim_accounts()["dydx"]
OWNER = ACCOUNT["address"]
ALL_OF_FAILED = ("dydxaccountplus", 104)


async def blocking(coro: Coroutine[Any, Any, Any]) -> Any:
    """The client's coroutines make blocking gRPC calls: run them off the server's loop."""
    return await asyncio.to_thread(asyncio.run, coro)


@dataclass
class Env:
    exchange: SimExchange
    client: NodeClient
    owner: Wallet
    trader: KeyPair
    now_ns: int

    def clock_ns(self) -> int:
        return self.now_ns

    def next_block(self) -> None:
        height = self.exchange.height
        while self.exchange.height == height:
            self.now_ns += NS // 4
            self.exchange.advance(self.now_ns)

    def market(self, ticker: str) -> Market:
        m = self.exchange.markets()[ticker]
        return Market({"atomicResolution": m.atomic_resolution, "quantumConversionExponent":
                       m.quantum_conversion_exponent, "stepBaseQuantums": m.step_base_quantums,
                       "subticksPerTick": m.subticks_per_tick, "clobPairId": str(m.clob_pair_id)})

    def bid(self, ticker: str = "BTC-USD", number: int = 0, flags: int = 0) -> Order:
        bids, _ = self.exchange.book(ticker)
        market = self.market(ticker)
        order_id = market.order_id(OWNER, number, random.randrange(1, 2**32), flags)
        long_term = flags == 64
        gtb = None if long_term else self.exchange.height + 10
        gtbt = int(self.now_ns // NS) + 600 if long_term else None
        return market.order(order_id, OrderType.LIMIT, Order.Side.SIDE_BUY, size=0.01,
                            price=float(bids[0][0] * Decimal("0.95")),
                            time_in_force=Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED, reduce_only=False,
                            post_only=not long_term, good_til_block=gtb, good_til_block_time=gtbt)

    async def options(self, authenticator_id: int) -> TxOptions:
        account = await blocking(self.client.get_account(OWNER))
        return TxOptions([authenticator_id], account.sequence, account.account_number)

    def as_trader(self, key: KeyPair | None = None) -> Wallet:
        return Wallet(key or self.trader, 0, 0)  # TxOptions carries the owner's numbers

    async def grant(self, clob_pair_ids: list[int]) -> int:
        authenticator = trading_authenticator(self.trader.public_key_bytes, 0, clob_pair_ids)
        response = await blocking(self.client.add_authenticator(self.owner, authenticator))
        assert response.tx_response.code == 0, response.tx_response.raw_log
        assert (await blocking(self.client.get_authenticators(OWNER))).account_authenticators == []
        self.next_block()  # the chain applies it in the next block
        listed = (await blocking(self.client.get_authenticators(OWNER))).account_authenticators
        assert [(a.type, a.config) for a in listed][-1] == ("AllOf", stored_config(authenticator))
        return int(listed[-1].id)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = ExchangeConfig()
    params = [default_params(t, config.block_interval_ns / NS) for t in ("BTC-USD", "ETH-USD")]
    start = 1_750_000_000 * NS
    exchange = SimExchange(params, 7, start, config)
    exchange.create_account(OWNER, Decimal(100_000))
    exchange.advance(start + 5 * NS)
    e = Env(exchange, None, None, KeyPair.from_mnemonic(new_mnemonic()), start + 5 * NS)  # type: ignore[arg-type]
    server = NodeServer(exchange, e.clock_ns)
    await server.start()
    sim_node = partial(NodeConfig, config.chain_id, chaintoken_denom="adv4tnt", usdc_denom=USDC_DENOM)
    node = make_insecure(sim_node, rest_indexer="", websocket_indexer="", node_url=server.target).node
    e.client = await NodeClient.connect(node)
    e.owner = await blocking(Wallet.from_mnemonic(e.client, ACCOUNT["mnemonic"], OWNER))
    try:
        yield e
    finally:
        node.channel.close()
        await server.stop()


def refused(response: Any) -> tuple[tuple[str, int], str]:
    tx = response.tx_response
    assert tx.code != 0, "accepted"
    return (tx.codespace, tx.code), tx.raw_log


def open_ids(env: Env) -> set[int]:
    return {r.request.order_id.client_id for r in env.exchange.orders(OWNER, 0, open_only=True)}


async def test_the_trading_key_trades_its_markets_and_nothing_else(env: Env) -> None:
    btc = env.exchange.markets()["BTC-USD"].clob_pair_id
    auth_id = await env.grant([btc])
    trader = env.as_trader()

    order = env.bid()
    response = await blocking(env.client.place_order(trader, order, tx_options=await env.options(auth_id)))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert order.order_id.client_id in open_ids(env)
    # A stateful order under the authenticator uses and bumps the owner's sequence.
    _, sequence = env.exchange.account(OWNER)
    long_term = env.bid(flags=64)
    options = await env.options(auth_id)
    response = await blocking(env.client.place_order(trader, long_term, tx_options=options))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert env.exchange.account(OWNER)[1] == sequence + 1
    env.next_block()
    response = await blocking(env.client.cancel_order(trader, long_term.order_id,
                                                      good_til_block_time=long_term.good_til_block_time,
                                                      tx_options=await env.options(auth_id)))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    response = await blocking(env.client.batch_cancel_orders(
        trader, subaccount(OWNER, 0), [OrderBatch(clob_pair_id=btc, client_ids=[order.order_id.client_id])],
        env.exchange.height + 10, tx_options=await env.options(auth_id),
    ))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert open_ids(env) == set()

    usdc = env.exchange.asset_usdc(OWNER)
    env.next_block()  # queries show the sequence the last stateful tx bumped once a block is committed
    code, log = refused(await blocking(env.client.broadcast_message(
        trader, withdraw(subaccount(OWNER, 0), env.as_trader().address, 0, 1_000_000),
        tx_options=await env.options(auth_id))))
    assert code == ALL_OF_FAILED
    assert ("authentication failed for message 0, authenticator id 0, type AllOf: message types do not "
            "match. Got /dydxprotocol.sending.MsgWithdrawFromSubaccount") in log
    code, log = refused(await blocking(env.client.broadcast_message(
        trader, transfer(subaccount(OWNER, 0), subaccount(env.as_trader().address, 0), 0, 1_000_000),
        tx_options=await env.options(auth_id))))
    assert code == ALL_OF_FAILED and "Got /dydxprotocol.sending.MsgCreateTransfer" in log
    assert env.exchange.asset_usdc(OWNER) == usdc  # nothing moved

    code, log = refused(await blocking(env.client.place_order(trader, env.bid("ETH-USD"),
                                                              tx_options=await env.options(auth_id))))
    eth = env.exchange.markets()["ETH-USD"].clob_pair_id
    assert code == ALL_OF_FAILED and f"order id {eth} not in whitelist map[{btc}:{{}}]" in log
    code, log = refused(await blocking(env.client.place_order(trader, env.bid(number=1),
                                                              tx_options=await env.options(auth_id))))
    assert code == ALL_OF_FAILED and "subaccount number 1 not in whitelist map[0:{}]" in log
    other = KeyPair.from_mnemonic(SIM_DYDX_OTHER_MNEMONIC)
    code, log = refused(await blocking(env.client.place_order(env.as_trader(other), env.bid(),
                                                              tx_options=await env.options(auth_id))))
    assert code == ALL_OF_FAILED and "Signature verification failed" in log
    code, log = refused(await blocking(env.client.place_order(trader, env.bid(),
                                                              tx_options=await env.options(auth_id + 5))))
    assert code == ("dydxaccountplus", 1) and "Authenticator is not found" in log
    # Without selecting the authenticator the trading key is just a stranger to the account.
    tx = env.client.builder.build(trader, place_order(env.bid()))
    code, _ = refused(await blocking(env.client.broadcast(tx)))
    assert code == ("sdk", 8)
    assert open_ids(env) == set()

    # The owner's own key still withdraws (the node is not refusing withdrawals as such).
    response = await blocking(env.client.withdraw(env.owner, subaccount(OWNER, 0), OWNER, 0, 1_000_000))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    assert env.exchange.asset_usdc(OWNER) == usdc - 1


async def test_revoked_keys_stop_trading_after_the_next_block(env: Env) -> None:
    auth_id = await env.grant([env.exchange.markets()["BTC-USD"].clob_pair_id])
    env.next_block()
    response = await blocking(env.client.remove_authenticator(env.owner, auth_id))
    assert response.tx_response.code == 0, response.tx_response.raw_log
    env.next_block()
    assert (await blocking(env.client.get_authenticators(OWNER))).account_authenticators == []
    code, log = refused(await blocking(env.client.place_order(env.as_trader(), env.bid(),
                                                              tx_options=await env.options(auth_id))))
    assert code == ("dydxaccountplus", 1) and f"authenticator {auth_id} not found" in log
    # Ids come from one chain-wide counter: a new grant never reuses the revoked id.
    env.next_block()
    assert await env.grant([0]) == auth_id + 1
