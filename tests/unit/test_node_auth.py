"""The simulator's x/accountplus rules as plain functions: what may be added, what authenticates."""

from __future__ import annotations

import base64
import json

import pytest
from coincurve import PrivateKey
from dydx_v4_client.node.authenticators import AuthenticatorType
from v4_proto.dydxprotocol.clob.tx_pb2 import MsgBatchCancel, MsgPlaceOrder, OrderBatch
from v4_proto.dydxprotocol.sending.tx_pb2 import MsgCreateTransfer

from bot.sim.perp.records import ChainError
from bot.sim.server.node_auth import AuthenticatorStore, AuthRequest, authenticate, initialize
from bot.sim.server.node_tx import verify_signature
from bot.venues.dydx.keys import describe, stored_config, trading_authenticator

KEY = PrivateKey(b"\x01" * 32)
OTHER = PrivateKey(b"\x02" * 32)
PUB = KEY.public_key.format(compressed=True)
OWNER = "dydx1owner"
PLACE = "/dydxprotocol.clob.MsgPlaceOrder"


def composite(kind: str, *children: tuple[str, bytes]) -> bytes:
    return json.dumps([{"type": t, "config": base64.b64encode(c).decode()} for t, c in children]).encode()


def place(number: int = 0, clob_pair_id: int = 0) -> MsgPlaceOrder:
    msg = MsgPlaceOrder()
    msg.order.order_id.subaccount_id.number = number
    msg.order.order_id.clob_pair_id = clob_pair_id
    return msg


def request(msg: object, type_url: str = PLACE, key: PrivateKey = KEY) -> AuthRequest:
    sign_doc = b"sign doc bytes"
    return AuthRequest(msg, type_url, key.sign_recoverable(sign_doc)[:64], sign_doc, 1, 2, "dydx-sim-1")


def check(config: bytes, kind: str, req: AuthRequest) -> ChainError | None:
    try:
        authenticate(initialize(kind, config), req, "0", verify_signature)
    except ChainError as err:
        return err
    return None


def test_a_lone_filter_or_an_any_of_with_an_unsigned_branch_is_unsafe() -> None:
    store = AuthenticatorStore()
    unsigned_branch = composite("AnyOf", ("SignatureVerification", PUB), ("MessageFilter", b"x"))
    for kind, config in [("MessageFilter", PLACE.encode()), ("AnyOf", unsigned_branch)]:
        with pytest.raises(ChainError, match="unsafe: authenticator tree does not require signature"):
            store.add(OWNER, kind, config, 10)
    with pytest.raises(ChainError, match="allOf must have at least 2 sub-authenticators"):
        store.add(OWNER, "AllOf", composite("AllOf", ("SignatureVerification", PUB)), 10)
    with pytest.raises(ChainError, match="invalid secp256k1 public key size"):
        store.add(OWNER, "SignatureVerification", PUB[:20], 10)
    with pytest.raises(ChainError) as info:
        store.add(OWNER, "SignatureVerification", b"x" * 1025, 10)
    assert (info.value.codespace, info.value.code) == ("dydxaccountplus", 3)
    assert store.listed(OWNER, 11) == []  # nothing was stored, and no id was spent
    assert store.add(OWNER, "SignatureVerification", PUB, 10) == 0


def test_any_of_passes_when_one_branch_passes_and_names_every_failure() -> None:
    config = composite("AnyOf", ("SignatureVerification", OTHER.public_key.format(compressed=True)),
                       ("SignatureVerification", PUB))
    assert check(config, "AnyOf", request(place())) is None
    err = check(config, "AnyOf", request(place(), key=PrivateKey(b"\x03" * 32)))
    assert err is not None and (err.codespace, err.code) == ("dydxaccountplus", 105)
    assert "[SignatureVerification (id = 0.0)]" in err.log and "[SignatureVerification (id = 0.1)]" in err.log


def test_filters_pass_messages_they_do_not_know_and_the_message_filter_refuses_them() -> None:
    transfer = "/dydxprotocol.sending.MsgCreateTransfer"
    assert check(b"0", "SubaccountFilter", request(MsgCreateTransfer(), transfer)) is None
    assert check(b"0", "ClobPairIdFilter", request(MsgCreateTransfer(), transfer)) is None
    err = check(PLACE.encode(), "MessageFilter", request(MsgCreateTransfer(), transfer))
    assert err is not None and err.code == 101
    batch = MsgBatchCancel(short_term_cancels=[OrderBatch(clob_pair_id=0), OrderBatch(clob_pair_id=7)])
    err = check(b"0,1", "ClobPairIdFilter", request(batch, "/dydxprotocol.clob.MsgBatchCancel"))
    assert err is not None
    assert err.log == "order id 7 not in whitelist map[0:{} 1:{}]: Clob pair id verification failed"


def test_the_granted_authenticator_round_trips_through_the_store() -> None:
    authenticator = trading_authenticator(PUB, 3, [1, 0, 1])
    assert authenticator.type == AuthenticatorType.AllOf
    data = stored_config(authenticator)
    store = AuthenticatorStore()
    auth_id = store.add(OWNER, "AllOf", data, 10)
    with pytest.raises(ChainError, match="Authenticator is not found"):
        store.initialized(OWNER, auth_id, 10)  # not before the next block
    node = store.initialized(OWNER, auth_id, 11)
    assert [c.type for c in node.children] == ["SignatureVerification", "MessageFilter", "SubaccountFilter",
                                               "ClobPairIdFilter"]
    assert authenticate(node, request(place(3, 1)), "0", verify_signature) is None
    assert describe("AllOf", data)["of"][3] == {"type": "ClobPairIdFilter", "clob_pair_ids": [0, 1]}
    store.remove(OWNER, auth_id, 12)
    assert store.listed(OWNER, 12) != [] and store.listed(OWNER, 13) == []
