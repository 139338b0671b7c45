"""Decode, verify and convert dYdX v4 transactions for the simulator's node front-end (pure).

What the chain's ante handler does before an order reaches the memclob, in the order it does it:

1. `decode_tx`: TxRaw -> TxBody/AuthInfo (junk -> sdk 2 "tx parse error"), message types (the
   clob messages MsgPlaceOrder / MsgCancelOrder / MsgBatchCancel, the sending module's
   MsgWithdrawFromSubaccount / MsgCreateTransfer and accountplus' MsgAddAuthenticator /
   MsgRemoveAuthenticator; one message per tx), one signer, the signer's secp256k1 pubkey whose
   address must be the owner named in the message (sdk 8), and the SIGN_MODE_DIRECT signature
   over SignDoc{body_bytes, auth_info_bytes, chain_id, account_number} (sdk 4 "unauthorized").
   A tx that selects authenticators (TxExtension) skips the last two: its signature is the
   authenticators' to check (`node_auth`), against the owner's account number and sequence.
2. The caller checks the sequence (stateful txs only; `DecodedTx.is_stateful`) with the exchange.
3. `to_order_request` / `to_order_id` / `to_cancel` / `to_batch_cancel`: protobuf -> the exchange's
   types. Quantums and subticks become exact Decimals (DYDX_V4.md §4.6):
   `size = quantums × 10^AR`, `price = subticks × 10^(QCE − AR − 6)`; the integer grid checks
   (quantums/subticks > 0 and multiples of StepBaseQuantums/SubticksPerTick) raise the chain's
   clob errors. Everything else (GTB window, TIF rules, reduce-only, post-only) is the exchange's.

Errors are `ChainError(codespace, code, log)` with the log written as cosmos-sdk wraps errors
("<detail>: <registered description>"). No IO, no clock, no asyncio.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, TypeAlias

import bech32
import coincurve
from Crypto.Hash import RIPEMD160
from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError
from v4_proto.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from v4_proto.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from v4_proto.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, SignDoc, TxBody, TxRaw
from v4_proto.dydxprotocol.accountplus.tx_pb2 import MsgAddAuthenticator, MsgRemoveAuthenticator, TxExtension
from v4_proto.dydxprotocol.clob.order_pb2 import Order
from v4_proto.dydxprotocol.clob.order_pb2 import OrderId as OrderIdProto
from v4_proto.dydxprotocol.clob.tx_pb2 import MsgBatchCancel, MsgCancelOrder, MsgPlaceOrder
from v4_proto.dydxprotocol.sending.transfer_pb2 import MsgWithdrawFromSubaccount
from v4_proto.dydxprotocol.sending.tx_pb2 import MsgCreateTransfer

from bot.domain import Side
from bot.sim.perp.records import (
    ORDER_FLAGS_CONDITIONAL,
    ORDER_FLAGS_LONG_TERM,
    ORDER_FLAGS_SHORT_TERM,
    ChainError,
    MarketInfo,
    OrderId,
    OrderRequest,
    TimeInForce,
)

ClobMsg: TypeAlias = MsgPlaceOrder | MsgCancelOrder | MsgBatchCancel
TxMsg: TypeAlias = (ClobMsg | MsgWithdrawFromSubaccount | MsgCreateTransfer | MsgAddAuthenticator
                    | MsgRemoveAuthenticator)

QUOTE_ATOMIC_RESOLUTION = -6
_PUBKEY_TYPE_URL = "/" + PubKey.DESCRIPTOR.full_name
_CLOB_MSGS: dict[str, type[ClobMsg]] = {
    "/" + cls.DESCRIPTOR.full_name: cls for cls in (MsgPlaceOrder, MsgCancelOrder, MsgBatchCancel)
}
_MSGS: dict[str, type[TxMsg]] = {
    **_CLOB_MSGS,
    **{"/" + cls.DESCRIPTOR.full_name: cls for cls in (MsgWithdrawFromSubaccount, MsgCreateTransfer,
                                                       MsgAddAuthenticator, MsgRemoveAuthenticator)},
}
_TX_EXTENSION_TYPE_URL = "/" + TxExtension.DESCRIPTOR.full_name

# cosmos-sdk types/errors (codespace "sdk"): code -> registered description
_SDK = {
    2: "tx parse error",
    4: "unauthorized",
    6: "unknown request",
    8: "invalid pubkey",
    15: "no signatures supplied",
    18: "invalid request",
}


def sdk_error(code: int, detail: str = "") -> ChainError:
    desc = _SDK[code]
    return ChainError("sdk", code, f"{detail}: {desc}" if detail else desc)


def clob_error(code: int, desc: str, detail: str = "") -> ChainError:
    return ChainError("clob", code, f"{detail}: {desc}" if detail else desc)


def tx_hash(tx_bytes: bytes) -> str:
    """The chain's tx hash: upper-case hex SHA-256 of the raw tx bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def address_from_pubkey(compressed_pubkey: bytes, prefix: str = "dydx") -> str:
    """bech32(prefix, RIPEMD160(SHA256(compressed secp256k1 pubkey)))."""
    digest = RIPEMD160.new(hashlib.sha256(compressed_pubkey).digest()).digest()
    words = bech32.convertbits(digest, 8, 5)
    assert words is not None
    return str(bech32.bech32_encode(prefix, words))


def verify_signature(compressed_pubkey: bytes, signature: bytes, message: bytes) -> bool:
    """secp256k1 ECDSA over sha256(message); `signature` is 64-byte r||s, high-S rejected (as cosmos)."""
    if len(signature) != 64:
        return False
    try:
        der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(signature))
        return coincurve.PublicKey(compressed_pubkey).verify(der, message)
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True, slots=True)
class DecodedTx:
    """A tx that parsed, names one signer who owns every message, and carries a valid signature."""

    txhash: str
    signer: str  # bech32 owner of the messages (== the signing key's address unless authenticators)
    pubkey: bytes  # compressed secp256k1 of the signing key
    sequence: int
    account_number: int
    memo: str
    messages: tuple[TxMsg, ...]
    is_stateful: bool  # any long-term/conditional order or cancel: the sequence is checked and bumped
    # TxExtension.selected_authenticators; when set, node_auth verifies `signature` over `sign_doc`
    authenticators: tuple[int, ...] = ()
    signature: bytes = b""
    sign_doc: bytes = b""
    type_urls: tuple[str, ...] = ()


def message_owner(msg: TxMsg) -> str:
    """The message's signer (GetMsgV1Signers): the account that owns the order or the funds."""
    if isinstance(msg, MsgPlaceOrder):
        return str(msg.order.order_id.subaccount_id.owner)
    if isinstance(msg, MsgCancelOrder):
        return str(msg.order_id.subaccount_id.owner)
    if isinstance(msg, MsgBatchCancel):
        return str(msg.subaccount_id.owner)
    if isinstance(msg, MsgWithdrawFromSubaccount):
        return str(msg.sender.owner)
    if isinstance(msg, MsgCreateTransfer):
        return str(msg.transfer.sender.owner)
    return str(msg.sender)


def is_stateful_message(msg: TxMsg) -> bool:
    if isinstance(msg, MsgPlaceOrder):
        return int(msg.order.order_id.order_flags) != ORDER_FLAGS_SHORT_TERM
    if isinstance(msg, MsgCancelOrder):
        return int(msg.order_id.order_flags) != ORDER_FLAGS_SHORT_TERM
    return not isinstance(msg, MsgBatchCancel)  # a batch cancel cancels short-term orders only


def selected_authenticators(body: TxBody) -> tuple[int, ...]:
    """TxExtension.selected_authenticators from the body's non-critical extension options."""
    for option in body.non_critical_extension_options:
        if option.type_url == _TX_EXTENSION_TYPE_URL:
            extension = _parse(TxExtension, option.value, "tx extension")
            return tuple(int(i) for i in extension.selected_authenticators)
    return ()


def _parse(cls: Any, data: bytes, what: str) -> Any:
    try:
        msg = cls.FromString(data)
    except DecodeError as exc:
        raise sdk_error(2, f"failed to decode {what}: {exc}") from None
    if len(unknown_fields.UnknownFieldSet(msg)):
        raise sdk_error(2, f"{what} has unknown fields")
    return msg


def decode_tx(
    tx_bytes: bytes,
    chain_id: str,
    account_number_of: Callable[[str], int],
    stored_pubkey_of: Callable[[str], bytes | None] | None = None,
) -> DecodedTx:
    """Decode and authenticate a broadcast tx; raise ChainError the way the chain rejects it.

    `account_number_of(address)` raises ChainError for an unknown account; `stored_pubkey_of`
    supplies the account's pubkey when the tx omits it (set by an earlier tx).
    """
    if not tx_bytes:
        raise sdk_error(2, "tx bytes are empty")
    raw: TxRaw = _parse(TxRaw, tx_bytes, "tx")
    body: TxBody = _parse(TxBody, raw.body_bytes, "tx body")
    auth_info: AuthInfo = _parse(AuthInfo, raw.auth_info_bytes, "auth info")

    if not body.messages:
        raise sdk_error(18, "must contain at least one message")
    messages: list[TxMsg] = []
    for packed in body.messages:
        cls = _MSGS.get(packed.type_url)
        if cls is None:
            raise sdk_error(6, f"message type {packed.type_url!r} is not supported by the simulator")
        messages.append(_parse(cls, packed.value, packed.type_url))
    if len(messages) > 1:
        raise sdk_error(18, "a transaction containing MsgCancelOrder or MsgPlaceOrder may not contain "
                            "more than one message" if any(m.type_url in _CLOB_MSGS for m in body.messages)
                        else "the simulator takes one message per transaction")

    if not raw.signatures:
        raise sdk_error(15)
    owners = {message_owner(m) for m in messages}
    if len(raw.signatures) != len(owners):
        raise sdk_error(4, f"wrong number of signers; expected {len(owners)}, got {len(raw.signatures)}")
    if len(auth_info.signer_infos) != len(raw.signatures):
        raise sdk_error(4, f"invalid number of signer;  expected: {len(raw.signatures)}, "
                           f"got {len(auth_info.signer_infos)}")
    (owner,) = owners
    signer_info = auth_info.signer_infos[0]
    authenticators = selected_authenticators(body)
    if authenticators:
        if len(authenticators) != len(messages):
            raise sdk_error(18, "Mismatch between the number of selected authenticators and messages, "
                            f"msg count {len(messages)}, got {len(authenticators)} selected authenticators")
        return _with_authenticators(tx_bytes, raw, body, signer_info, owner, chain_id, account_number_of,
                                    tuple(messages), authenticators)

    if signer_info.HasField("public_key"):
        if signer_info.public_key.type_url != _PUBKEY_TYPE_URL:
            raise sdk_error(8, f"unsupported pubkey type {signer_info.public_key.type_url!r}")
        pubkey = bytes(_parse(PubKey, signer_info.public_key.value, "pubkey").key)
    else:
        stored = stored_pubkey_of(owner) if stored_pubkey_of else None
        if stored is None:
            raise sdk_error(8, "pubkey on account is not set")
        pubkey = stored
    if len(pubkey) != 33:
        raise sdk_error(8, f"invalid secp256k1 pubkey length {len(pubkey)}")
    signer = address_from_pubkey(pubkey)
    if signer != owner:
        raise sdk_error(8, f"pubKey does not match signer address {owner} with signer index: 0")

    account_number = account_number_of(owner)
    sequence = int(signer_info.sequence)
    single = signer_info.mode_info.single if signer_info.mode_info.HasField("single") else None
    sign_doc = SignDoc(body_bytes=raw.body_bytes, auth_info_bytes=raw.auth_info_bytes,
                       chain_id=chain_id, account_number=account_number).SerializeToString()
    if (single is None or single.mode != SignMode.SIGN_MODE_DIRECT
            or not verify_signature(pubkey, bytes(raw.signatures[0]), sign_doc)):
        raise sdk_error(4, f"signature verification failed; please verify account number ({account_number}), "
                           f"sequence ({sequence}) and chain-id ({chain_id})")

    return DecodedTx(
        txhash=tx_hash(tx_bytes),
        signer=signer,
        pubkey=pubkey,
        sequence=sequence,
        account_number=account_number,
        memo=body.memo,
        messages=tuple(messages),
        is_stateful=any(is_stateful_message(m) for m in messages),
    )


def _with_authenticators(tx_bytes: bytes, raw: TxRaw, body: TxBody, signer_info: Any, owner: str,
                         chain_id: str, account_number_of: Callable[[str], int],
                         messages: tuple[TxMsg, ...], authenticators: tuple[int, ...]) -> DecodedTx:
    """The authenticator flow: the signature is checked later, over the owner's SignDoc."""
    pubkey = b""
    if signer_info.HasField("public_key") and signer_info.public_key.type_url == _PUBKEY_TYPE_URL:
        pubkey = bytes(_parse(PubKey, signer_info.public_key.value, "pubkey").key)
    account_number = account_number_of(owner)
    sign_doc = SignDoc(body_bytes=raw.body_bytes, auth_info_bytes=raw.auth_info_bytes,
                       chain_id=chain_id, account_number=account_number).SerializeToString()
    return DecodedTx(
        txhash=tx_hash(tx_bytes), signer=owner, pubkey=pubkey, sequence=int(signer_info.sequence),
        account_number=account_number, memo=body.memo, messages=messages,
        is_stateful=any(is_stateful_message(m) for m in messages), authenticators=authenticators,
        signature=bytes(raw.signatures[0]), sign_doc=sign_doc,
        type_urls=tuple(m.type_url for m in body.messages),
    )


# ---- chain integers <-> Decimal (exact) -----------------------------------------------------------

def _price_exponent(market: MarketInfo) -> int:
    return market.quantum_conversion_exponent - market.atomic_resolution + QUOTE_ATOMIC_RESOLUTION


def subticks_to_price(subticks: int, market: MarketInfo) -> Decimal:
    """price = subticks × 10^(QCE − AR − 6), exact (string construction never rounds)."""
    return Decimal(f"{int(subticks)}E{_price_exponent(market)}")


def quantums_to_size(quantums: int, market: MarketInfo) -> Decimal:
    """size = quantums × 10^AR, exact."""
    return Decimal(f"{int(quantums)}E{market.atomic_resolution}")


def _to_integer(value: Decimal, exponent: int, what: str) -> int:
    with localcontext() as ctx:
        ctx.prec = 200
        scaled = value.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{what} {value} is not a whole number of chain units")
        return int(scaled)


def price_to_subticks(price: Decimal, market: MarketInfo) -> int:
    """Inverse of `subticks_to_price`; ValueError if the price is finer than one subtick."""
    return _to_integer(price, -_price_exponent(market), "price")


def size_to_quantums(size: Decimal, market: MarketInfo) -> int:
    """Inverse of `quantums_to_size`; ValueError if the size is finer than one base quantum."""
    return _to_integer(size, -market.atomic_resolution, "size")


# ---- protobuf -> exchange types ---------------------------------------------------------------------

_SIDES = {Order.Side.SIDE_BUY: Side.BUY, Order.Side.SIDE_SELL: Side.SELL}
_TIFS = {
    Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED: TimeInForce.UNSPECIFIED,
    Order.TimeInForce.TIME_IN_FORCE_IOC: TimeInForce.IOC,
    Order.TimeInForce.TIME_IN_FORCE_POST_ONLY: TimeInForce.POST_ONLY,
    Order.TimeInForce.TIME_IN_FORCE_FILL_OR_KILL: TimeInForce.FILL_OR_KILL,
}
_KNOWN_FLAGS = (ORDER_FLAGS_SHORT_TERM, ORDER_FLAGS_CONDITIONAL, ORDER_FLAGS_LONG_TERM)


def to_order_id(proto: OrderIdProto) -> OrderId:
    return OrderId(
        owner=str(proto.subaccount_id.owner),
        subaccount_number=int(proto.subaccount_id.number),
        client_id=int(proto.client_id),
        order_flags=int(proto.order_flags),
        clob_pair_id=int(proto.clob_pair_id),
    )


def _good_til(msg: Order | MsgCancelOrder) -> tuple[int | None, int | None]:
    which = msg.WhichOneof("good_til_oneof")
    if which == "good_til_block":
        return int(msg.good_til_block), None
    if which == "good_til_block_time":
        return None, int(msg.good_til_block_time)
    return None, None


def to_order_request(order: Order, market: MarketInfo) -> OrderRequest:
    """MsgPlaceOrder.order -> OrderRequest, with the chain's stateless and integer-grid checks."""
    flags = int(order.order_id.order_flags)
    if flags not in _KNOWN_FLAGS:
        raise clob_error(3000, "Invalid order flags", f"invalid order flags {flags}")
    if flags == ORDER_FLAGS_CONDITIONAL:
        raise clob_error(9002, "This function is not implemented",
                         "conditional orders are not supported by the simulator")
    if order.condition_type != Order.ConditionType.CONDITION_TYPE_UNSPECIFIED:
        raise clob_error(6000, "Conditional type is invalid",
                         "condition type must be unspecified for a non-conditional order")
    side = _SIDES.get(order.side)
    if side is None:
        raise clob_error(3, "Invalid order side", f"invalid order side {int(order.side)}")
    tif = _TIFS.get(order.time_in_force)
    if tif is None:
        raise clob_error(42, "Unexpected time in force", f"time in force {int(order.time_in_force)}")
    quantums, subticks = int(order.quantums), int(order.subticks)
    if quantums == 0:
        raise clob_error(4, "Invalid order quantums", "order size quantums cannot be 0")
    if subticks == 0:
        raise clob_error(6, "Invalid order subticks", "order subticks cannot be 0")
    if subticks % market.subticks_per_tick:
        raise clob_error(12, "MsgPlaceOrder is invalid",
                         f"Order subticks {subticks} must be a multiple of the ClobPair's SubticksPerTick "
                         f"{market.subticks_per_tick}")
    if quantums % market.step_base_quantums:
        raise clob_error(12, "MsgPlaceOrder is invalid",
                         f"Order Quantums {quantums} must be a multiple of the ClobPair's StepBaseQuantums "
                         f"{market.step_base_quantums}")
    good_til_block, good_til_block_time = _good_til(order)
    return OrderRequest(
        order_id=to_order_id(order.order_id),
        side=side,
        size=quantums_to_size(quantums, market),
        price=subticks_to_price(subticks, market),
        time_in_force=tif,
        reduce_only=bool(order.reduce_only),
        good_til_block=good_til_block,
        good_til_block_time=good_til_block_time,
        client_metadata=int(order.client_metadata),
    )


@dataclass(frozen=True, slots=True)
class CancelRequest:
    order_id: OrderId
    good_til_block: int | None
    good_til_block_time: int | None


def to_cancel(msg: MsgCancelOrder) -> CancelRequest:
    good_til_block, good_til_block_time = _good_til(msg)
    return CancelRequest(to_order_id(msg.order_id), good_til_block, good_til_block_time)


@dataclass(frozen=True, slots=True)
class BatchCancelRequest:
    owner: str
    subaccount_number: int
    batches: list[tuple[int, list[int]]]  # (clob_pair_id, client ids)
    good_til_block: int


def to_batch_cancel(msg: MsgBatchCancel) -> BatchCancelRequest:
    return BatchCancelRequest(
        owner=str(msg.subaccount_id.owner),
        subaccount_number=int(msg.subaccount_id.number),
        batches=[(int(b.clob_pair_id), [int(c) for c in b.client_ids]) for b in msg.short_term_cancels],
        good_til_block=int(msg.good_til_block),
    )
