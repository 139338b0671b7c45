"""The node front-end's tx decode/verify/convert path, on transactions built by the real client."""

from __future__ import annotations

from decimal import Decimal

import pytest
from coincurve.utils import GROUP_ORDER_INT
from dydx_v4_client.indexer.rest.constants import OrderType
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.builder import Builder
from dydx_v4_client.node.market import Market
from dydx_v4_client.node.message import batch_cancel, cancel_order, deposit, place_order, subaccount, withdraw
from dydx_v4_client.wallet import Wallet
from hypothesis import given
from hypothesis import strategies as st
from v4_proto.cosmos.tx.v1beta1.tx_pb2 import SignDoc, Tx
from v4_proto.dydxprotocol.clob.order_pb2 import Order
from v4_proto.dydxprotocol.clob.tx_pb2 import MsgBatchCancel, MsgCancelOrder, MsgPlaceOrder, OrderBatch

from bot.clock import NS_PER_SEC
from bot.domain import Side
from bot.sim.accounts import SIM_DYDX_MNEMONIC, sim_accounts
from bot.sim.perp.records import ChainError, MarketInfo, OrderId, TimeInForce
from bot.sim.server.node_tx import (
    address_from_pubkey,
    decode_tx,
    price_to_subticks,
    quantums_to_size,
    size_to_quantums,
    subticks_to_price,
    to_batch_cancel,
    to_cancel,
    to_order_request,
    tx_hash,
)

CHAIN_ID = "dydx-sim-1"
USDC = "ibc/8E27BA2D5493AF5636760E354E46004562C46AB7EC0CC4C1CA14E9E20E2545B5"
ACCOUNT_NUMBER = 7
BTC = MarketInfo(
    ticker="BTC-USD", clob_pair_id=0, status="ACTIVE", oracle_price=Decimal(64000),
    next_funding_rate=Decimal(0), initial_margin_fraction=Decimal("0.05"),
    maintenance_margin_fraction=Decimal("0.03"), atomic_resolution=-10, quantum_conversion_exponent=-9,
    step_base_quantums=1_000_000, subticks_per_tick=100_000, tick_size=Decimal(1),
    step_size=Decimal("0.0001"), open_interest=Decimal(0), volume_24h=Decimal(0),
)
CLIENT_BTC = Market({"atomicResolution": -10, "quantumConversionExponent": -9, "stepBaseQuantums": 1_000_000,
                     "subticksPerTick": 100_000, "clobPairId": "0"})
TRADER = sim_accounts()["dydx"]["address"]
OTHER = sim_accounts()["dydx_other"]["address"]


def wallet(mnemonic: str = SIM_DYDX_MNEMONIC, sequence: int = 3) -> Wallet:
    return Wallet(KeyPair.from_mnemonic(mnemonic), ACCOUNT_NUMBER, sequence)


def signed(message, w: Wallet | None = None, chain_id: str = CHAIN_ID) -> bytes:  # type: ignore[no-untyped-def]
    return Builder(chain_id, USDC).build(w or wallet(), message).SerializeToString()


def short_term_order(owner: str = TRADER, client_id: int = 11, post_only: bool = True) -> Order:
    return CLIENT_BTC.order(
        CLIENT_BTC.order_id(owner, 0, client_id, 0), OrderType.LIMIT, Order.Side.SIDE_BUY,
        size=0.0123, price=64321.5, time_in_force=Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED,
        reduce_only=False, post_only=post_only, good_til_block=110,
    )


def long_term_order(client_id: int = 12) -> Order:
    return CLIENT_BTC.order(
        CLIENT_BTC.order_id(TRADER, 0, client_id, 64), OrderType.LIMIT, Order.Side.SIDE_SELL,
        size=1, price=70000, time_in_force=Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED,
        reduce_only=False, good_til_block_time=1_700_000_600,
    )


def decode(tx_bytes: bytes, **kw):  # type: ignore[no-untyped-def]
    return decode_tx(tx_bytes, kw.pop("chain_id", CHAIN_ID), lambda _addr: ACCOUNT_NUMBER, **kw)


def rejected(tx_bytes: bytes, **kw) -> ChainError:  # type: ignore[no-untyped-def]
    with pytest.raises(ChainError) as info:
        decode(tx_bytes, **kw)
    return info.value


def test_sim_accounts_derive_the_client_wallet_address() -> None:
    accounts = sim_accounts()
    assert accounts["dydx"]["address"] == wallet().address
    assert accounts["dydx"]["address"].startswith("dydx1") and TRADER != OTHER
    assert address_from_pubkey(wallet().key.public_key_bytes) == TRADER
    accounts["binance"] = {"k": "v"}
    assert "binance" not in sim_accounts()  # a fresh dict every call


def test_short_term_post_only_place_decodes_and_converts_exactly() -> None:
    tx_bytes = signed(place_order(short_term_order()))
    tx = decode(tx_bytes)
    assert tx.signer == TRADER and tx.sequence == 3 and tx.account_number == ACCOUNT_NUMBER
    assert tx.txhash == tx_hash(tx_bytes) and len(tx.txhash) == 64 and tx.txhash == tx.txhash.upper()
    assert not tx.is_stateful
    (msg,) = tx.messages
    assert isinstance(msg, MsgPlaceOrder)
    assert msg.order.quantums == 123_000_000 and msg.order.subticks == 6_432_100_000
    req = to_order_request(msg.order, BTC)
    assert req.order_id == OrderId(TRADER, 0, 11, 0, 0)
    assert req.side is Side.BUY and req.time_in_force is TimeInForce.POST_ONLY
    assert req.size == Decimal("0.0123") and req.price == Decimal(64321)
    assert req.good_til_block == 110 and req.good_til_block_time is None
    assert req.reduce_only is False and req.client_metadata == 2


def test_long_term_place_and_cancels_are_classified() -> None:
    place = decode(signed(place_order(long_term_order())))
    assert place.is_stateful
    req = to_order_request(place.messages[0].order, BTC)  # type: ignore[union-attr]
    assert req.side is Side.SELL and req.size == Decimal(1) and req.price == Decimal(70000)
    assert req.good_til_block is None and req.good_til_block_time == 1_700_000_600
    assert req.time_in_force is TimeInForce.UNSPECIFIED

    lt_cancel = decode(signed(cancel_order(long_term_order().order_id, good_til_block_time=1_700_000_900)))
    assert lt_cancel.is_stateful
    c = to_cancel(lt_cancel.messages[0])  # type: ignore[arg-type]
    assert c.order_id.order_flags == 64
    assert (c.good_til_block, c.good_til_block_time) == (None, 1_700_000_900)

    st_cancel = decode(signed(cancel_order(short_term_order().order_id, good_til_block=120)))
    assert not st_cancel.is_stateful
    c = to_cancel(st_cancel.messages[0])  # type: ignore[arg-type]
    assert c.order_id == OrderId(TRADER, 0, 11, 0, 0) and c.good_til_block == 120

    batches = [OrderBatch(clob_pair_id=0, client_ids=[11, 13]), OrderBatch(clob_pair_id=1, client_ids=[5])]
    batch = decode(signed(batch_cancel(subaccount(TRADER, 0), batches, 121)))
    assert not batch.is_stateful and isinstance(batch.messages[0], MsgBatchCancel)
    b = to_batch_cancel(batch.messages[0])
    assert (b.owner, b.subaccount_number, b.good_til_block) == (TRADER, 0, 121)
    assert b.batches == [(0, [11, 13]), (1, [5])]
    assert isinstance(st_cancel.messages[0], MsgCancelOrder)


def test_tampered_signature_is_unauthorized() -> None:
    tx = Tx.FromString(signed(place_order(short_term_order())))
    sig = bytearray(tx.signatures[0])
    sig[10] ^= 0x01
    tx.signatures[0] = bytes(sig)
    err = rejected(tx.SerializeToString())
    assert (err.codespace, err.code) == ("sdk", 4)
    assert err.log.startswith("signature verification failed") and err.log.endswith(": unauthorized")


def test_high_s_signature_is_rejected() -> None:
    tx = Tx.FromString(signed(place_order(short_term_order())))
    r, s = tx.signatures[0][:32], int.from_bytes(tx.signatures[0][32:], "big")
    tx.signatures[0] = r + (GROUP_ORDER_INT - s).to_bytes(32, "big")  # the malleable twin: valid math, high S
    assert rejected(tx.SerializeToString()).code == 4


@pytest.mark.parametrize("chain_id, account_number", [("dydx-mainnet-1", ACCOUNT_NUMBER), (CHAIN_ID, 8)])
def test_wrong_chain_id_or_account_number_fails_the_signature(chain_id: str, account_number: int) -> None:
    tx_bytes = signed(place_order(short_term_order()))
    with pytest.raises(ChainError) as info:
        decode_tx(tx_bytes, chain_id, lambda _a: account_number)
    assert info.value.code == 4 and f"chain-id ({chain_id})" in info.value.log


def test_signer_must_own_the_order() -> None:
    err = rejected(signed(place_order(short_term_order(owner=OTHER))))
    assert (err.codespace, err.code) == ("sdk", 8)
    assert OTHER in err.log


def test_missing_pubkey_uses_the_accounts_stored_key() -> None:
    tx = Tx.FromString(signed(place_order(short_term_order())))
    tx.auth_info.signer_infos[0].ClearField("public_key")
    w = wallet()
    body_bytes, auth_bytes = tx.body.SerializeToString(), tx.auth_info.SerializeToString()
    doc = SignDoc(body_bytes=body_bytes, auth_info_bytes=auth_bytes, chain_id=CHAIN_ID,
                  account_number=ACCOUNT_NUMBER)
    tx.signatures[0] = w.key.sign(doc.SerializeToString())
    assert rejected(tx.SerializeToString()).code == 8
    pub = w.key.public_key_bytes
    assert decode(tx.SerializeToString(), stored_pubkey_of=lambda _a: pub).signer == TRADER


@pytest.mark.parametrize("junk", [b"", b"not a tx", b"\xff\xff\xff", b"\x0a\x03abc"])
def test_junk_is_a_parse_error(junk: bytes) -> None:
    err = rejected(junk)
    assert (err.codespace, err.code) == ("sdk", 2) and err.log.endswith("tx parse error")


def test_unknown_fields_are_a_parse_error() -> None:
    tx_bytes = signed(place_order(short_term_order())) + b"\xa0\x06\x01"  # field 100, varint 1
    assert rejected(tx_bytes).code == 2


def test_unsupported_and_multi_message_txs() -> None:
    w = wallet()
    assert rejected(signed(deposit(TRADER, subaccount(TRADER, 0), 0, 1_000_000), w)).code == 6
    assert decode(signed(withdraw(subaccount(TRADER, 0), TRADER, 0, 1_000_000), w)).is_stateful
    anys = Tx.FromString(signed(place_order(short_term_order()))).body.messages
    builder = Builder(CHAIN_ID, USDC)
    tx = builder.build_transaction(w, [anys[0], anys[0]], builder.fee(1_000_000))
    err = rejected(tx.SerializeToString())
    assert (err.codespace, err.code) == ("sdk", 18)
    tx = builder.build_transaction(w, [], builder.fee(1_000_000))
    assert rejected(tx.SerializeToString()).code == 18


def test_unknown_account_propagates_the_exchange_error() -> None:
    def unknown(addr: str) -> int:
        raise ChainError("sdk", 9, f"account {addr} not found: unknown address")

    with pytest.raises(ChainError) as info:
        decode_tx(signed(place_order(short_term_order())), CHAIN_ID, unknown)
    assert info.value.code == 9


def _order(**overrides) -> Order:  # type: ignore[no-untyped-def]
    order = short_term_order()
    for key, value in overrides.items():
        if key == "order_flags":
            order.order_id.order_flags = value
        else:
            setattr(order, key, value)
    return order


@pytest.mark.parametrize("overrides, code", [
    ({"subticks": 6_432_150_000}, 12),  # off the SubticksPerTick grid
    ({"quantums": 123_500_000}, 12),  # off the StepBaseQuantums grid
    ({"quantums": 0}, 4),
    ({"subticks": 0}, 6),
    ({"side": Order.Side.SIDE_UNSPECIFIED}, 3),
    ({"order_flags": 32}, 9002),  # conditional: not simulated
    ({"order_flags": 7}, 3000),
    ({"condition_type": Order.ConditionType.CONDITION_TYPE_STOP_LOSS}, 6000),
])
def test_order_grid_and_field_checks(overrides: dict, code: int) -> None:  # type: ignore[type-arg]
    with pytest.raises(ChainError) as info:
        to_order_request(_order(**overrides), BTC)
    assert (info.value.codespace, info.value.code) == ("clob", code)


def test_fill_or_kill_and_reduce_only_pass_through_to_the_exchange() -> None:
    fok = _order(time_in_force=Order.TimeInForce.TIME_IN_FORCE_FILL_OR_KILL, reduce_only=True)
    req = to_order_request(fok, BTC)
    assert req.time_in_force is TimeInForce.FILL_OR_KILL and req.reduce_only


def test_worked_example_and_eth_like_market() -> None:
    assert subticks_to_price(6_432_100_000, BTC) == Decimal(64321)
    assert quantums_to_size(123_000_000, BTC) == Decimal("0.0123")
    eth = MarketInfo(**{**{f: getattr(BTC, f) for f in BTC.__slots__},  # type: ignore[arg-type]
                        "atomic_resolution": -9, "quantum_conversion_exponent": -9,
                        "step_base_quantums": 1_000_000, "subticks_per_tick": 100_000})
    assert subticks_to_price(3_456_700_000, eth) == Decimal("3456.7")
    assert quantums_to_size(290_000_000, eth) == Decimal("0.29")
    assert size_to_quantums(Decimal("0.29"), eth) == 290_000_000  # the float client can lose a step here
    with pytest.raises(ValueError):
        price_to_subticks(Decimal("0.00000000000001"), BTC)


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_integer_decimal_round_trip(n: int) -> None:
    assert price_to_subticks(subticks_to_price(n, BTC), BTC) == n
    assert size_to_quantums(quantums_to_size(n, BTC), BTC) == n


async def test_pacer_lets_a_burst_through_then_paces(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bot.venues.dydx import node

    now = [100 * NS_PER_SEC]
    slept: list[float] = []

    async def sleep(secs: float) -> None:
        slept.append(round(secs, 6))
        now[0] += round(secs * NS_PER_SEC)

    monkeypatch.setattr(node.asyncio, "sleep", sleep)
    pacer = node.Pacer(4.0, clock=lambda: now[0], burst=3)
    for _ in range(5):
        await pacer.wait()
    assert slept == [0.25, 0.25]  # three at once, then one per 1/4 s
    now[0] += 10 * NS_PER_SEC  # idle: the bucket refills to the burst, no more
    slept.clear()
    for _ in range(4):
        await pacer.wait()
    assert slept == [0.25]
    now[0] += NS_PER_SEC // 8  # half-way to the next token: waits only the rest
    slept.clear()
    await pacer.wait()
    assert slept == [0.125]
    unlimited = node.Pacer(float("inf"), clock=lambda: now[0])
    for _ in range(3):
        await unlimited.wait()
    assert slept == [0.125]


async def test_pacer_does_not_slow_down_for_late_wake_ups(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bot.venues.dydx import node

    now = [100 * NS_PER_SEC]
    slept: list[float] = []

    async def sleep(secs: float) -> None:  # wakes 0.1 s late
        slept.append(round(secs, 6))
        now[0] += round(secs * NS_PER_SEC) + NS_PER_SEC // 10

    monkeypatch.setattr(node.asyncio, "sleep", sleep)
    pacer = node.Pacer(4.0, clock=lambda: now[0])
    for _ in range(3):
        await pacer.wait()
    assert slept == [0.25, 0.15]  # the second is charged when it asked, so the third waits less
