"""TxSigner: byte-identical to dydx-v4-client's Builder, valid low-S signatures."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from coincurve.utils import GROUP_ORDER_INT
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.builder import Builder, TxOptions
from dydx_v4_client.node.message import batch_cancel, cancel_order, place_order
from dydx_v4_client.wallet import Wallet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from v4_proto.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, SignDoc, Tx, TxBody
from v4_proto.dydxprotocol.clob.order_pb2 import Order
from v4_proto.dydxprotocol.clob.tx_pb2 import OrderBatch
from v4_proto.dydxprotocol.subaccounts.subaccount_pb2 import SubaccountId

from bot.config import load as load_settings
from bot.domain import Side
from bot.sim.accounts import SIM_DYDX_MNEMONIC, SIM_DYDX_OTHER_MNEMONIC
from bot.venues.dydx.credentials import dydx_signer, node_gateway
from bot.venues.dydx.node import USDC_DENOM, NodeGateway
from bot.venues.dydx.orders import (
    ORDER_FLAGS_LONG_TERM,
    ORDER_FLAGS_SHORT_TERM,
    PLACE_ORDER_TYPE_URL,
    VenueOrder,
    order_id_proto,
    place_order_bytes,
    subaccount_field,
    to_proto,
)
from bot.venues.dydx.signer import EncodedMessage, TxSigner, sign_digest, varint

KEYS = [KeyPair.from_mnemonic(SIM_DYDX_MNEMONIC), KeyPair.from_mnemonic(SIM_DYDX_OTHER_MNEMONIC)]
OWNER = Wallet(KEYS[0], 0, 0).address
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
# Sequences: small, around varint byte boundaries, timestamp nonces (>= 2^40), the uint64 top.
SEQUENCES = st.one_of(st.integers(0, 300), st.sampled_from([127, 128, 16383, 16384, 2**40 + 1, 2**64 - 1]),
                      U64)
CONDITIONAL = 32


def client_tx(key: KeyPair, chain_id: str, memo: str, message, sequence: int,  # type: ignore[no-untyped-def]
              account_number: int, authenticators: list[int] | None = None) -> bytes:
    builder = Builder(chain_id, USDC_DENOM, memo=memo)
    wallet = Wallet(key, account_number, sequence)
    if authenticators:
        options = TxOptions(authenticators, sequence, account_number)
        return builder.build(wallet, message, tx_options=options).SerializeToString()
    return builder.build(wallet, message).SerializeToString()


@st.composite
def venue_orders(draw: st.DrawFn) -> VenueOrder:
    flags = draw(st.sampled_from([ORDER_FLAGS_SHORT_TERM, ORDER_FLAGS_LONG_TERM, CONDITIONAL]))
    short = flags == ORDER_FLAGS_SHORT_TERM
    return VenueOrder(
        client_id=draw(U32), clob_pair_id=draw(U32), order_flags=flags,
        side=draw(st.sampled_from(list(Side))), quantums=draw(U64), subticks=draw(U64),
        time_in_force=draw(st.sampled_from([0, 1, 2, 3])), reduce_only=draw(st.booleans()),
        good_til_block=draw(U32) if short else None,
        good_til_block_time=None if short else draw(U32),
    )


@st.composite
def messages(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    owner = draw(st.sampled_from([OWNER, "", "dydx1" + "q" * 38]))
    number = draw(st.integers(0, 128))
    kind = draw(st.sampled_from(["place", "cancel", "batch"]))
    if kind == "place":
        return place_order(to_proto(draw(venue_orders()), owner, number))
    if kind == "cancel":
        order = draw(venue_orders())
        gtb = draw(U32) if not order.is_stateful else None
        gtbt = draw(U32) if order.is_stateful else None
        return cancel_order(order_id_proto(order, owner, number), gtb, gtbt)
    batches = [OrderBatch(clob_pair_id=draw(U32), client_ids=draw(st.lists(U32, max_size=100)))
               for _ in range(draw(st.integers(0, 4)))]
    return batch_cancel(SubaccountId(owner=owner, number=number), batches, draw(U32))


@settings(max_examples=500, deadline=None)
@given(order=venue_orders(), owner=st.sampled_from([OWNER, "", "dydx1" + "q" * 38, "x" * 200]),
       number=st.one_of(st.integers(0, 300), U32))
def test_hand_written_place_order_equals_protobuf(order: VenueOrder, owner: str, number: int) -> None:
    """`place_order_bytes` writes what protobuf serialises for the same order, byte for byte."""
    expected = place_order(to_proto(order, owner, number))
    ours = place_order_bytes(order, subaccount_field(owner, number))
    assert ours == expected.SerializeToString()
    # and signing the pre-encoded message gives the client's transaction
    signer = TxSigner(KEYS[0], "dydx-mainnet-1", "perpbot")
    encoded = EncodedMessage(PLACE_ORDER_TYPE_URL, ours)
    assert signer.sign(encoded, 7, 3) == client_tx(KEYS[0], "dydx-mainnet-1", "perpbot", expected, 7, 3)


def test_gateway_place_message_is_the_orders_protobuf() -> None:
    gateway = NodeGateway("localhost:1", "dydx-mainnet-1", SIM_DYDX_MNEMONIC, secure=False,
                          subaccount_number=2)
    try:
        order = VenueOrder(77, 1, 0, Side.SELL, 10**6, 10**9, 2, False, good_til_block=123)
        message = gateway.place_message(order)
        assert message.type_url == PLACE_ORDER_TYPE_URL
        assert message.value == place_order(to_proto(order, gateway.owner, 2)).SerializeToString()
    finally:
        gateway.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(KEYS),
    chain_id=st.sampled_from(["dydx-mainnet-1", "dydx-testnet-4", "dydx-sim-1", ""]),
    memo=st.one_of(st.sampled_from(["perpbot", "", "Client Example"]), st.text(max_size=200)),
    message=messages(),
    sequence=SEQUENCES,
    account_number=st.one_of(st.integers(0, 2**20), U64),
    authenticators=st.one_of(st.none(), st.lists(st.integers(0, 2**64 - 1), max_size=4)),
)
def test_bytes_identical_to_the_client_builder(key, chain_id, memo, message, sequence,  # type: ignore[no-untyped-def]
                                               account_number, authenticators) -> None:
    signer = TxSigner(key, chain_id, memo)
    ours = signer.sign(message, sequence, account_number, authenticators)
    assert ours == client_tx(key, chain_id, memo, message, sequence, account_number, authenticators)
    # the pieces too, and the signature is valid and low-S over sha256(SignDoc)
    tx = Tx.FromString(ours)
    assert tx.body.SerializeToString() == signer.body_bytes(message, authenticators)
    assert tx.auth_info.SerializeToString() == signer.auth_info_bytes(sequence)
    sign_doc = signer.sign_doc_bytes(message, sequence, account_number, authenticators)
    assert sign_doc == SignDoc(body_bytes=tx.body.SerializeToString(),
                               auth_info_bytes=tx.auth_info.SerializeToString(),
                               account_number=account_number, chain_id=chain_id).SerializeToString()
    signature = tx.signatures[0]
    assert len(signature) == 64
    assert int.from_bytes(signature[32:], "big") <= GROUP_ORDER_INT // 2
    der = cdata_to_der(deserialize_compact(signature))
    assert PublicKey(key.public_key_bytes).verify(der, sign_doc)


@settings(max_examples=50, deadline=None)
@given(message=messages(), sequences=st.lists(SEQUENCES, min_size=1, max_size=8),
       account_numbers=st.lists(st.integers(0, 3), min_size=1, max_size=3))
def test_one_signer_across_sequences_and_accounts(message, sequences, account_numbers) -> None:  # type: ignore[no-untyped-def]
    """The per-sequence and per-account caches never leak into another transaction."""
    signer = TxSigner(KEYS[0], "dydx-mainnet-1", "perpbot")
    for account_number in account_numbers:
        for sequence in sequences + sequences[::-1]:
            assert signer.sign(message, sequence, account_number) == client_tx(
                KEYS[0], "dydx-mainnet-1", "perpbot", message, sequence, account_number)


@settings(max_examples=200, deadline=None)
@given(secret=st.integers(1, GROUP_ORDER_INT - 1), digest=st.binary(min_size=32, max_size=32))
def test_signature_is_the_key_pairs(secret: int, digest: bytes) -> None:
    """sign_digest(sha256(m)) == KeyPair.sign(m) for random keys (the client hashes m itself)."""
    key = PrivateKey(secret.to_bytes(32, "big"))
    message = digest * 3
    ours = sign_digest(key, hashlib.sha256(message).digest())
    assert ours == KeyPair(key).sign(message)
    assert int.from_bytes(ours[32:], "big") <= GROUP_ORDER_INT // 2


@given(value=U64)
def test_varint_matches_protobuf(value: int) -> None:
    encoded = AuthInfo(signer_infos=[{"sequence": value}]).SerializeToString()
    expected = b"\x18" + varint(value) if value else b""
    assert encoded == b"\x0a" + varint(len(expected)) + expected


def test_empty_memo_and_zero_fields_are_omitted() -> None:
    signer = TxSigner(KEYS[0], "", "")
    message = place_order(Order())
    assert signer.sign(message, 0, 0) == client_tx(KEYS[0], "", "", message, 0, 0)
    assert TxBody.FromString(signer.body_bytes(message)).memo == ""


@pytest.mark.parametrize("authenticators", [None, [], [3], [1, 2]])
@pytest.mark.parametrize("sequence, account_number", [(0, 0), (5, 12), (2**40 + 7, 99)])
def test_gateway_build_matches_the_client(authenticators, sequence: int, account_number: int) -> None:  # type: ignore[no-untyped-def]
    """NodeGateway._build: what the client's Builder produced before, for both signer paths."""
    gateway = NodeGateway("localhost:1", "dydx-sim-1", SIM_DYDX_MNEMONIC, secure=False,
                          owner_address=OWNER, authenticator_ids=authenticators)
    try:
        gateway._sequence, gateway._account_number = sequence, account_number
        gateway._wallet = Wallet(KEYS[0], account_number, sequence)
        order = VenueOrder(77, 1, 0, Side.SELL, 10**6, 10**9, 2, False, good_til_block=123)
        message = place_order(to_proto(order, OWNER, 0))
        for _ in range(2):
            assert gateway._build(message) == client_tx(KEYS[0], "dydx-sim-1", "perpbot", message, sequence,
                                                        account_number, authenticators)
    finally:
        gateway.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=venue_orders(), sequence=SEQUENCES, account_number=st.one_of(st.integers(0, 2**20), U64),
       authenticator_id=U64, number=st.integers(0, 127))
def test_trading_key_gateway_signs_the_clients_tx_options_bytes(  # type: ignore[no-untyped-def]
        monkeypatch, order: VenueOrder, sequence: int, account_number: int, authenticator_id: int,
        number: int) -> None:
    """The daemon's permissioned path: Settings with only the trading key -> our cached signer, for
    a place (pre-encoded), a cancel and a batch cancel of the owner's orders, equals the client's
    `Builder.build(Wallet(trading key, ...), msg, tx_options=TxOptions([id], owner's seq, acc))`."""
    for name, value in {"PERPBOT_DYDX_TRADING_MNEMONIC": SIM_DYDX_OTHER_MNEMONIC,
                        "PERPBOT_DYDX_ADDRESS": OWNER, "PERPBOT_DYDX_AUTHENTICATOR_ID": str(authenticator_id),
                        "PERPBOT_DYDX__SUBACCOUNT_NUMBER": str(number)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PERPBOT_DYDX_MNEMONIC", raising=False)
    settings_ = load_settings(env_file=None)
    signer = dydx_signer(settings_)
    assert signer is not None and signer.key == "permissioned"
    gateway = node_gateway(settings_, {"node_grpc": "localhost:1", "chain_id": "dydx-mainnet-1"}, signer)
    try:
        assert gateway.owner == OWNER
        gateway._sequence, gateway._account_number = sequence, account_number
        gtb = None if order.is_stateful else 99
        gtbt = 1_700_000_000 if order.is_stateful else None
        pairs = [
            (gateway.place_message(order), place_order(to_proto(order, OWNER, number))),
            (cancel_order(order_id_proto(order, OWNER, number), gtb, gtbt),) * 2,
            (batch_cancel(SubaccountId(owner=OWNER, number=number),
                          [OrderBatch(clob_pair_id=1, client_ids=[5])], 99),) * 2,
        ]
        for ours, theirs in pairs:
            assert gateway._build(ours) == client_tx(KEYS[1], "dydx-mainnet-1", "perpbot", theirs, sequence,
                                                     account_number, [authenticator_id])
    finally:
        gateway.close()
