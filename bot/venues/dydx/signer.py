"""Fast dYdX transaction signing, byte-identical to dydx-v4-client's `Builder.build(...)`.

The client rebuilds every protobuf piece of a transaction per order (PubKey, Any, SignerInfo,
Fee, AuthInfo, TxBody, SignDoc, Tx) and serialises some of them twice. Almost all of that is
constant for a signer: only the message, and for stateful transactions the sequence, change.
`TxSigner` serialises the constant pieces once with protobuf itself and concatenates them
around the per-order message bytes.

Why concatenation is exact (DYDX_V4.md §4, §6): protobuf encodes a message as its set fields
in field-number order, each as `tag + payload`, and a nested message field as `tag +
varint(len) + serialised submessage`; an unset proto3 scalar (sequence 0, account number 0,
empty memo) is omitted. So with pieces that each hold a disjoint range of fields, serialised by
protobuf, and joined in field order:

    TxBody    = [1 messages: Any{1 type_url, 2 value}] [2 memo] [2047 non_critical_extension_options]
    SignerInfo= [1 public_key Any] [2 mode_info] [3 sequence]
    AuthInfo  = [1 signer_infos] [2 fee]
    SignDoc   = [1 body_bytes] [2 auth_info_bytes] [3 chain_id] [4 account_number]
    Tx        = [1 body] [2 auth_info] [3 signatures]

The first two fields of SignDoc and of Tx are encoded identically (same tags, same bytes), so
the transaction is the SignDoc's head followed by the signature field. The tests check every
byte against the client for random orders, cancels, batch cancels, sequences and authenticators.

The signature is the client's (`KeyPair.sign`): libsecp256k1 recoverable ECDSA over
sha256(SignDoc) with the RFC 6979 nonce, r||s, s normalised to the lower half of the group
order (libsecp256k1 already emits low-S; the check is kept so the output matches
`coinsign_canonize` by construction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, TypeAlias

from coincurve import PrivateKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.utils import GROUP_ORDER_INT
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.builder import DEFAULT_FEE, as_any
from google.protobuf.message import Message as ProtoMessage
from v4_proto.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from v4_proto.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from v4_proto.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, Fee, ModeInfo, SignDoc, SignerInfo, TxBody
from v4_proto.dydxprotocol.accountplus.tx_pb2 import TxExtension

from bot.venues.dydx.protowire import field, length, varint

_HALF_ORDER = GROUP_ORDER_INT // 2
_HALF_ORDER_BYTES = _HALF_ORDER.to_bytes(32, "big")
_SIGNATURE_TAG = b"\x1a\x40"  # Tx field 3 (signatures), length 64
_sha256 = hashlib.sha256


class EncodedMessage(NamedTuple):
    """A message already serialised (see `orders.place_order_bytes`), with its type url."""

    type_url: str
    value: bytes


Message: TypeAlias = ProtoMessage | EncodedMessage


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """64-byte r||s, low-S: what `KeyPair.sign` returns for a message whose sha256 is `digest`.

    `KeyPair.sign` is coincurve's `sign_recoverable` (sha256, default RFC 6979 nonce) serialised
    and then canonised. libsecp256k1's plain and recoverable signing share one nonce derivation
    and signing routine, so r and s are the same; this calls it directly without the recovery id
    and coincurve's per-call wrapper, then applies the client's canonisation rule.
    """
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    signature = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_sign(key.context.ctx, signature, digest, key.secret, ffi.NULL, ffi.NULL):
        raise ValueError("secp256k1_ecdsa_sign failed (invalid key)")
    out = ffi.new("unsigned char[64]")
    lib.secp256k1_ecdsa_signature_serialize_compact(key.context.ctx, out, signature)
    compact = ffi.buffer(out, 64)[:]
    if compact[32:] > _HALF_ORDER_BYTES:  # never from libsecp256k1; same-length bytes compare as ints
        s = GROUP_ORDER_INT - int.from_bytes(compact[32:], "big")
        compact = compact[:32] + s.to_bytes(32, "big")
    return compact


class TxSigner:
    """Signs single-message dYdX transactions for one key, chain id, memo and fee.

    `sign(message, sequence, account_number)` returns exactly
    `Builder(chain_id, denom, memo).build(Wallet(key, account_number, sequence), message,
    fee).SerializeToString()`; with `authenticators` it matches the client's `TxOptions` path
    (`tx_options=TxOptions(authenticators, sequence, account_number)`).
    """

    def __init__(self, key: KeyPair | PrivateKey, chain_id: str, memo: str, fee: Fee = DEFAULT_FEE) -> None:
        self._key: PrivateKey = key.key if isinstance(key, KeyPair) else key
        self.chain_id = chain_id
        self.memo = memo
        public_key = PubKey(key=self._key.public_key.format(compressed=True))
        # SignerInfo fields 1-2; field 3 (sequence) is appended per sequence.
        self._signer_head = SignerInfo(
            public_key=as_any(public_key),
            mode_info=ModeInfo(single=ModeInfo.Single(mode=SignMode.SIGN_MODE_DIRECT)),
        ).SerializeToString()
        self._fee_field = AuthInfo(fee=fee).SerializeToString()  # AuthInfo field 2
        self._memo_field = TxBody(memo=memo).SerializeToString()  # TxBody field 2
        self._type_urls: dict[str, bytes] = {}  # type url -> Any field 1
        self._extensions: dict[tuple[int, ...], bytes] = {(): b""}  # -> TxBody field 2047
        self._tails: dict[int, bytes] = {}  # account number -> SignDoc fields 3-4
        # (sequence, SignDoc/Tx field 2) for the last sequence: one tuple, swapped atomically
        self._auth: tuple[int, bytes] = (-1, b"")

    # ---- cached pieces ---------------------------------------------------------------------------

    def auth_info_bytes(self, sequence: int) -> bytes:
        """The serialised AuthInfo for `sequence`."""
        return self._auth_info(sequence)

    def _auth_info(self, sequence: int) -> bytes:
        sequence_field = b"\x18" + varint(sequence) if sequence else b""
        return field(b"\x0a", self._signer_head + sequence_field) + self._fee_field

    def _auth_info_field(self, sequence: int) -> bytes:
        cached_sequence, auth_field = self._auth
        if cached_sequence != sequence:
            auth_field = field(b"\x12", self._auth_info(sequence))
            self._auth = (sequence, auth_field)
        return auth_field

    def _type_url_field(self, type_url: str) -> bytes:
        url_field = self._type_urls.get(type_url)
        if url_field is None:
            url_field = self._type_urls[type_url] = field(b"\x0a", type_url.encode())
        return url_field

    def _extension_field(self, authenticators: Sequence[int]) -> bytes:
        key = tuple(authenticators)
        extension_field = self._extensions.get(key)
        if extension_field is None:
            extension = as_any(TxExtension(selected_authenticators=list(key)))
            extension_field = self._extensions[key] = TxBody(
                non_critical_extension_options=[extension]).SerializeToString()
        return extension_field

    def _tail(self, account_number: int) -> bytes:
        tail = self._tails.get(account_number)
        if tail is None:
            tail = self._tails[account_number] = SignDoc(
                chain_id=self.chain_id, account_number=account_number).SerializeToString()
        return tail

    # ---- signing ---------------------------------------------------------------------------------

    def body_bytes(self, message: Message, authenticators: Sequence[int] | None = None) -> bytes:
        """The serialised TxBody holding `message` packed in an Any (prefix "/")."""
        if isinstance(message, EncodedMessage):
            type_url, value = message
        else:
            type_url, value = "/" + message.DESCRIPTOR.full_name, message.SerializeToString()
        packed = self._type_url_field(type_url) + b"\x12" + length(value) + value
        extension = self._extension_field(authenticators) if authenticators else b""
        return b"\x0a" + length(packed) + packed + self._memo_field + extension

    def sign_doc_bytes(self, message: Message, sequence: int, account_number: int,
                       authenticators: Sequence[int] | None = None) -> bytes:
        """The serialised SignDoc (what is hashed and signed)."""
        return self._head(message, sequence, authenticators) + self._tail(account_number)

    def _head(self, message: Message, sequence: int, authenticators: Sequence[int] | None) -> bytes:
        """SignDoc fields 1-2, which are also Tx fields 1-2."""
        body = self.body_bytes(message, authenticators)
        return b"\x0a" + length(body) + body + self._auth_info_field(sequence)

    def sign(self, message: Message, sequence: int, account_number: int,
             authenticators: Sequence[int] | None = None) -> bytes:
        """The serialised signed Tx carrying `message`."""
        head = self._head(message, sequence, authenticators)
        tail = self._tails.get(account_number) or self._tail(account_number)
        digest = _sha256(head + tail).digest()
        return head + _SIGNATURE_TAG + sign_digest(self._key, digest)
