"""Benchmark: order intents to signed dYdX transactions per second (issue 6).

Measured in one run, interleaved over several rounds (same intents, same key, same sequences):

  bare     coincurve `PrivateKey.sign(digest32, hasher=None)`: one ECDSA signature, nothing else.
  client   dydx-v4-client's own path per intent: `Market.order_id` + `Market.order` (float
           quantums/subticks) + `place_order` + `Builder.build(wallet, msg)` + `SerializeToString()`.
  ours     our venue path per intent, exactly what `DydxVenue.place` + `NodeGateway.place` do before
           the broadcast: `to_venue_order(OrderRequest)` (Decimal grid, GoodTilBlock) +
           `place_order(to_proto(...))` + `NodeGateway._build` (TxSigner), plus `int(time.time())`.
  om       the same venue path driven by `OrderManager.submit`, one intent per call (stub venue, no
           broadcast): adds the sqlite commit of the intent (`Store.record_orders`, WAL,
           synchronous=NORMAL), the metrics counter, the (filtered, warning-level) structlog call
           and the coroutine. Latency: the call.
  om_batch `OrderManager.submit_many` of --batch intents (what `tick()` does with the taker children
           of all markets due in one tick): one commit for the batch, then each intent is signed.
           Latency per intent: from the call to its own signed transaction.

Intents are 80 % short-term (IOC or post-only, fixed sequence) and 20 % long-term GTT orders,
which bump the sequence after each one (TxSigner's per-sequence cache misses on those).
Before timing, a sample is checked byte for byte: our tx for our message equals the client's
`Builder` tx for that message, and TxSigner on the client's message equals the client's tx.
(The two paths' messages differ on purpose: the client floors sell prices and forces
client_metadata=2, ours rounds sells up and sets 0; so the identity is asserted per message.)

    .venv/bin/python tests/bench/bench_signing.py [--intents 2000] [--rounds 5] [--seed 1]
        [--permissioned]   # a trade-only key: every tx selects authenticator 0 (TxExtension),
                           # the client path with `TxOptions` (issue 21)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from dydx_v4_client.indexer.rest.constants import OrderType
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.builder import Builder, TxOptions
from dydx_v4_client.node.market import Market
from dydx_v4_client.node.message import place_order
from dydx_v4_client.wallet import Wallet
from v4_proto.dydxprotocol.clob.order_pb2 import Order

from bot.clock import SystemClock
from bot.config import ExecutionSettings
from bot.domain import OrderRequest, Side, TimeInForce
from bot.execution.orders import OrderManager
from bot.sim.accounts import SIM_DYDX_MNEMONIC
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.dydx.node import USDC_DENOM, NodeGateway
from bot.venues.dydx.orders import MarketParams, to_proto, to_venue_order
from bot.venues.dydx.signer import TxSigner

CHAIN_ID = "dydx-mainnet-1"
ACCOUNT_NUMBER = 48_213
SEQUENCE0 = 1_234
HEIGHT = 41_000_000
MEMO = "perpbot"
BTC = MarketParams("BTC-USD", 0, -10, -9, 1_000_000, 100_000)
CLIENT_BTC = Market({"atomicResolution": -10, "quantumConversionExponent": -9, "stepBaseQuantums": 1_000_000,
                     "subticksPerTick": 100_000, "clobPairId": "0"})


class SigningVenue:
    """An ExecutionVenue whose place() signs exactly like DydxVenue.place + NodeGateway.place, unsent."""

    name = "dydx"

    def __init__(self, gateway: NodeGateway) -> None:
        self.gateway = gateway
        self.last_tx = b""
        self.signed_at: list[int] = []  # perf_counter_ns after each place(), for om_batch latency

    def sign(self, order: OrderRequest) -> bytes:
        gw = self.gateway
        venue_order = to_venue_order(order, BTC, HEIGHT, int(time.time()))
        tx = gw._build(gw.place_message(venue_order))
        if venue_order.is_stateful:  # NodeGateway._send advances it after an accepted stateful tx
            gw._sequence += 1  # type: ignore[operator]
        self.last_tx = tx
        return tx

    async def place(self, order: OrderRequest) -> None:
        self.sign(order)
        self.signed_at.append(time.perf_counter_ns())

    async def cancel(self, client_id: int) -> None:
        raise NotImplementedError


def make_intents(n: int, rng: random.Random) -> list[OrderRequest]:
    intents = []
    for i in range(n):
        tif = rng.choices([TimeInForce.IOC, TimeInForce.POST_ONLY, TimeInForce.GTT], [0.4, 0.4, 0.2])[0]
        side = rng.choice([Side.BUY, Side.SELL])
        size = Decimal(rng.randint(1, 5000)) * Decimal("0.0001")
        price = Decimal(rng.randint(6_000_000, 7_000_000)) / 100
        intents.append(OrderRequest(i + 1, "BTC-USD", side, size, price, tif,
                                    reduce_only=tif is TimeInForce.IOC and rng.random() < 0.2))
    return intents


def client_message(req: OrderRequest, owner: str) -> Any:
    """The client's MsgPlaceOrder for an intent: Market.order_id + Market.order + place_order."""
    long_term = req.tif is TimeInForce.GTT
    order = CLIENT_BTC.order(
        CLIENT_BTC.order_id(owner, 0, req.client_id, 64 if long_term else 0), OrderType.LIMIT,
        Order.Side.SIDE_BUY if req.side is Side.BUY else Order.Side.SIDE_SELL,
        size=float(req.size), price=float(req.price),
        time_in_force=(Order.TimeInForce.TIME_IN_FORCE_IOC if req.tif is TimeInForce.IOC
                       else Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED),
        reduce_only=req.reduce_only, post_only=req.tif is TimeInForce.POST_ONLY,
        good_til_block=None if long_term else HEIGHT + 10,
        good_til_block_time=int(time.time()) + 3600 if long_term else None,
    )
    return place_order(order)


AUTHENTICATORS: list[int] = []  # --permissioned: [0]


def options(wallet: Wallet) -> TxOptions | None:
    return TxOptions(AUTHENTICATORS, wallet.sequence, wallet.account_number) if AUTHENTICATORS else None


def client_one(builder: Builder, wallet: Wallet, owner: str) -> Callable[[OrderRequest], bytes]:
    """dydx-v4-client's order + build + sign path for one intent (float inputs, as it takes them)."""
    def run(req: OrderRequest) -> bytes:
        tx = builder.build(wallet, client_message(req, owner), tx_options=options(wallet)).SerializeToString()
        if req.tif is TimeInForce.GTT:
            wallet.sequence += 1
        return tx
    return run


def check_identical(gateway: NodeGateway, key: KeyPair, intents: list[OrderRequest]) -> int:
    """Assert byte identity with the client's Builder, both ways, for these intents."""
    builder = Builder(CHAIN_ID, USDC_DENOM, memo=MEMO)
    signer = TxSigner(key, CHAIN_ID, MEMO)
    wallet = Wallet(key, ACCOUNT_NUMBER, SEQUENCE0)
    gateway._sequence = SEQUENCE0
    for req in intents:
        sequence = wallet.sequence = gateway._sequence
        # ours on our message == the client's Builder on our message
        venue_order = to_venue_order(req, BTC, HEIGHT, int(time.time()))
        message = place_order(to_proto(venue_order, gateway.owner, gateway.subaccount_number))
        expected = builder.build(wallet, message, tx_options=options(wallet)).SerializeToString()
        assert gateway._build(message) == expected, req
        # TxSigner on the client's message == the client's Builder on it
        theirs = client_message(req, gateway.owner)
        assert signer.sign(theirs, sequence, ACCOUNT_NUMBER, AUTHENTICATORS or None) == \
            builder.build(wallet, theirs, tx_options=options(wallet)).SerializeToString(), req
        if venue_order.is_stateful:
            gateway._sequence += 1
    gateway._sequence = SEQUENCE0
    return len(intents)


def timed(fn: Callable[[Any], Any], items: list[Any], lat: list[int]) -> float:
    gc.collect()
    clock = time.perf_counter_ns
    start = clock()
    for item in items:
        t0 = clock()
        fn(item)
        lat.append(clock() - t0)
    return (clock() - start) / 1e9


async def timed_async(om: OrderManager, items: list[OrderRequest], lat: list[int]) -> float:
    gc.collect()
    clock = time.perf_counter_ns
    start = clock()
    for item in items:
        t0 = clock()
        await om.submit(item)
        lat.append(clock() - t0)
    return (clock() - start) / 1e9


async def timed_batches(om: OrderManager, venue: SigningVenue, items: list[OrderRequest], batch: int,
                        lat: list[int]) -> float:
    gc.collect()
    clock = time.perf_counter_ns
    start = clock()
    for i in range(0, len(items), batch):
        venue.signed_at.clear()
        t0 = clock()
        await om.submit_many(items[i:i + batch])
        lat += [t - t0 for t in venue.signed_at]
    return (clock() - start) / 1e9


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intents", type=int, default=2000, help="intents per path per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", type=int, default=300, help="intents checked byte for byte")
    parser.add_argument("--batch", type=int, default=8, help="intents per submit_many (om_batch)")
    parser.add_argument("--permissioned", action="store_true", help="sign as a trade-only key (TxExtension)")
    args = parser.parse_args()
    AUTHENTICATORS[:] = [0] if args.permissioned else []
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    rng = random.Random(args.seed)
    key = KeyPair.from_mnemonic(SIM_DYDX_MNEMONIC)
    gateway = NodeGateway("localhost:1", CHAIN_ID, SIM_DYDX_MNEMONIC, secure=False, memo=MEMO,
                          authenticator_ids=AUTHENTICATORS or None)
    gateway._account_number, gateway._sequence = ACCOUNT_NUMBER, SEQUENCE0
    gateway._wallet = Wallet(key, ACCOUNT_NUMBER, SEQUENCE0)
    intents = make_intents(args.intents, rng)
    checked = check_identical(gateway, key, intents[: args.check])

    venue = SigningVenue(gateway)
    builder = Builder(CHAIN_ID, USDC_DENOM, memo=MEMO)
    client = client_one(builder, Wallet(key, ACCOUNT_NUMBER, SEQUENCE0), gateway.owner)
    digests = [os.urandom(32) for _ in range(args.intents)]
    secret = key.key

    def bare(digest: bytes) -> bytes:
        return secret.sign(digest, hasher=None)

    lat: dict[str, list[int]] = {k: [] for k in ("bare", "client", "ours", "om", "om_batch")}
    secs: dict[str, float] = dict.fromkeys(lat, 0.0)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.sqlite")
        om = OrderManager(venue, store, Metrics(), SystemClock(), ExecutionSettings())
        # warm-up (imports, caches, sqlite pages); not counted
        timed(bare, digests[:200], [])
        timed(client, intents[:200], [])
        timed(venue.sign, intents[:200], [])
        next_id = 10**6
        for round_no in range(args.rounds):
            om_intents = [dataclasses.replace(r, client_id=next_id + i) for i, r in enumerate(intents)]
            next_id += len(intents)
            batch_intents = [dataclasses.replace(r, client_id=next_id + i) for i, r in enumerate(intents)]
            next_id += len(intents)
            paths: list[tuple[str, Callable[[], float]]] = [
                ("bare", lambda: timed(bare, digests, lat["bare"])),
                ("client", lambda: timed(client, intents, lat["client"])),
                ("ours", lambda: timed(venue.sign, intents, lat["ours"])),
                ("om", lambda items=om_intents: loop.run_until_complete(  # type: ignore[misc]
                    timed_async(om, items, lat["om"]))),
                ("om_batch", lambda items=batch_intents: loop.run_until_complete(  # type: ignore[misc]
                    timed_batches(om, venue, items, args.batch, lat["om_batch"]))),
            ]
            shift = round_no % len(paths)
            for name, run in paths[shift:] + paths[:shift]:
                secs[name] += run()
        store.close()
    loop.close()
    gateway.close()

    rate = {k: len(v) / secs[k] for k, v in lat.items()}
    p50 = {k: pct(v, 0.50) for k, v in lat.items()}
    p99 = {k: pct(v, 0.99) for k, v in lat.items()}
    print(f"rounds: {args.rounds} x {args.intents} intents per path (80% short-term, 20% long-term GTT)")
    print(f"byte_identical_sample: {checked} intents, both directions: OK")
    print(f"bare_sign_per_sec: {rate['bare']:.0f}")
    print(f"bare_sign_p50_us: {p50['bare']:.1f}")
    print(f"bare_sign_p99_us: {p99['bare']:.1f}")
    for name, label in (("client", "client"), ("ours", "ours"), ("om", "order_manager"),
                        ("om_batch", "order_manager_batch")):
        print(f"signing_intents_per_sec_{label}: {rate[name]:.0f}")
        print(f"signing_p50_us_{label}: {p50[name]:.1f}")
        print(f"signing_p99_us_{label}: {p99[name]:.1f}")
        print(f"signing_mean_us_{label}: {statistics.fmean(lat[name]) / 1000:.1f}")
    print(f"ours_over_client_throughput: {rate['ours'] / rate['client']:.2f}  (target >= 1.5)")
    print(f"ours_p99_over_bare_p99: {p99['ours'] / p99['bare']:.2f}  (target <= 3)")
    print(f"client_p99_over_bare_p99: {p99['client'] / p99['bare']:.2f}")
    print(f"order_manager_over_client_throughput: {rate['om'] / rate['client']:.2f}")
    print(f"order_manager_p99_over_bare_p99: {p99['om'] / p99['bare']:.2f}")
    print(f"order_manager_batch_size: {args.batch}")
    print(f"order_manager_batch_over_client_throughput: {rate['om_batch'] / rate['client']:.2f}")
    print(f"order_manager_batch_p99_over_bare_p99: {p99['om_batch'] / p99['bare']:.2f}")


if __name__ == "__main__":
    main()
