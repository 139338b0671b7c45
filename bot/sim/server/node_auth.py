"""The chain's smart-account authenticators (x/accountplus) for the simulator's node (pure).

What dydxprotocol/v4-chain `protocol/x/accountplus` does, as far as a trade-only key needs it:

* `MsgAddAuthenticator{sender, authenticator_type, data}` stores an authenticator under the next
  id of a chain-wide counter (0, 1, 2, ...); the tree must require a signature on every path
  (AllOf: any child does; AnyOf: every child does), else "unsafe: ...". `MsgRemoveAuthenticator`
  deletes one ("Authenticator is not found" if absent). Both land in the next block: queries
  and the ante handler see the change once the height has moved past the tx's.
* A tx whose body carries `TxExtension{selected_authenticators}` (non-critical extension option)
  is authenticated by those authenticators instead of the signer's own key: one id per message,
  each looked up for the message's signer (the account that owns the order or the funds).
* Configs: SignatureVerification = the 33-byte compressed secp256k1 pubkey; MessageFilter =
  type urls joined by ","; SubaccountFilter / ClobPairIdFilter = decimal numbers joined by ",";
  AllOf / AnyOf = JSON `[{"type": ..., "config": base64}, ...]` (Go's encoding of []byte), at
  least two children. The subaccount and clob-pair filters pass any message that is not a clob
  order, cancel or batch cancel; the message filter is what refuses withdrawals and transfers.

Errors are the chain's (codespace "dydxaccountplus", codes from `types/errors.go`), with logs
wrapped the way cosmos-sdk's errorsmod wraps them ("<detail>: <description>").
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from v4_proto.dydxprotocol.clob.tx_pb2 import MsgBatchCancel, MsgCancelOrder, MsgPlaceOrder

from bot.sim.perp.records import ChainError

CODESPACE = "dydxaccountplus"
DATA_MAX_LENGTH = 1024  # AUTHENTICATOR_DATA_MAX_LENGTH
_ERRORS = {
    1: "Authenticator is not found",
    3: "Authenticator data exceeds maximum length",
    100: "Signature verification failed",
    101: "Message type verification failed",
    102: "Clob pair id verification failed",
    103: "Subaccount verification failed",
    104: "AllOf verification failed",
    105: "AnyOf verification failed",
}
LEAF_TYPES = ("SignatureVerification", "MessageFilter", "SubaccountFilter", "ClobPairIdFilter")
COMPOSITE_TYPES = ("AllOf", "AnyOf")


def accountplus_error(code: int, detail: str) -> ChainError:
    return ChainError(CODESPACE, code, f"{detail}: {_ERRORS[code]}")


def _invalid(detail: str) -> ChainError:
    return ChainError("sdk", 18, f"{detail}: invalid request")


def _undefined(detail: str) -> ChainError:
    """An error the chain raises with fmt.Errorf (no registered code): codespace "undefined", 1."""
    return ChainError("undefined", 1, detail)


@dataclass(frozen=True, slots=True)
class Node:
    """An initialised authenticator: a leaf with its parsed config, or a composite of children."""

    type: str
    pubkey: bytes = b""
    whitelist: frozenset[Any] = frozenset()
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What the ante handler hands an authenticator for one message."""

    msg: Any
    type_url: str
    signature: bytes
    sign_doc: bytes
    account_number: int
    sequence: int
    chain_id: str


def _go_set(values: frozenset[Any]) -> str:
    """Go's `%v` of a map[T]struct{}: keys sorted, `map[k:{} ...]`."""
    return "map[" + " ".join(f"{v}:{{}}" for v in sorted(values)) + "]"


def _numbers(config: bytes) -> frozenset[int]:
    out = set()
    for text in config.decode(errors="replace").split(","):
        if not text.isdigit() or int(text) >= 2**32:
            raise _undefined(f'strconv.ParseUint: parsing "{text}": invalid syntax')
        out.add(int(text))
    return frozenset(out)


def _children(kind: str, config: bytes) -> list[tuple[str, bytes]]:
    try:
        items = json.loads(config)
        parsed = [(str(i["type"]), base64.b64decode(i["config"] or "", validate=True)) for i in items]
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise _undefined(f"failed to parse sub-authenticators initialization data: {exc}") from None
    if len(parsed) <= 1:
        raise _invalid(f"{kind[0].lower()}{kind[1:]} must have at least 2 sub-authenticators")
    return parsed


def initialize(kind: str, config: bytes) -> Node:
    """Parse a stored (type, config) into a Node; ChainError when the chain could not either."""
    if kind == "SignatureVerification":
        return Node(kind, pubkey=bytes(config))
    if kind == "MessageFilter":
        return Node(kind, whitelist=frozenset(config.decode(errors="replace").split(",")))
    if kind in ("SubaccountFilter", "ClobPairIdFilter"):
        return Node(kind, whitelist=_numbers(config))
    if kind in COMPOSITE_TYPES:
        return Node(kind, children=tuple(initialize(t, c) for t, c in _children(kind, config)))
    raise _undefined(f"authenticator type {kind} is not registered")


def requires_signature(kind: str, config: bytes) -> bool:
    """`OnAuthenticatorAdded`: whether every path verifies a signature (raises for bad configs)."""
    if kind == "SignatureVerification":
        if len(config) != 33:
            raise _undefined(f"invalid secp256k1 public key size, expected 33, got {len(config)}")
        return True
    if kind in COMPOSITE_TYPES:
        subs = [requires_signature(t, c) for t, c in _children(kind, config)]
        return all(subs) if kind == "AnyOf" else any(subs)
    if kind in LEAF_TYPES:
        return False
    raise _invalid("sub-authenticator failed to be added in function `OnAuthenticatorAdded` as type is not "
                   "registered in manager")


def _order_fields(msg: Any) -> tuple[list[int], list[int]] | None:
    """(subaccount numbers, clob pair ids) of a clob message; None for any other message."""
    if isinstance(msg, MsgPlaceOrder):
        oid = msg.order.order_id
        return [int(oid.subaccount_id.number)], [int(oid.clob_pair_id)]
    if isinstance(msg, MsgCancelOrder):
        return [int(msg.order_id.subaccount_id.number)], [int(msg.order_id.clob_pair_id)]
    if isinstance(msg, MsgBatchCancel):
        return [int(msg.subaccount_id.number)], [int(b.clob_pair_id) for b in msg.short_term_cancels]
    return None


def authenticate(node: Node, request: AuthRequest, node_id: str,
                 verify: Callable[[bytes, bytes, bytes], bool]) -> None:
    """Raise the chain's ChainError when `node` does not authorise `request` (`verify` checks ECDSA)."""
    if node.type == "SignatureVerification":
        if not verify(node.pubkey, request.signature, request.sign_doc):
            raise accountplus_error(100, f"signature verification failed; please verify account number "
                                         f"({request.account_number}), sequence ({request.sequence}) and "
                                         f"chain-id ({request.chain_id})")
    elif node.type == "MessageFilter":
        if request.type_url not in node.whitelist:
            raise accountplus_error(101, f"message types do not match. Got {request.type_url}, Expected "
                                         f"{_go_set(node.whitelist)}")
    elif node.type in ("SubaccountFilter", "ClobPairIdFilter"):
        fields = _order_fields(request.msg)
        if fields is None:
            return
        subaccounts, pairs = fields
        is_subaccount = node.type == "SubaccountFilter"
        for value in subaccounts if is_subaccount else pairs:
            if value not in node.whitelist:
                what, code = ("subaccount number", 103) if is_subaccount else ("order id", 102)
                raise accountplus_error(code, f"{what} {value} not in whitelist {_go_set(node.whitelist)}")
    elif node.type == "AllOf":
        for i, child in enumerate(node.children):
            try:
                authenticate(child, request, f"{node_id}.{i}", verify)
            except ChainError as err:
                raise accountplus_error(104, err.log) from None
    else:  # AnyOf
        failures = []
        for i, child in enumerate(node.children):
            try:
                authenticate(child, request, f"{node_id}.{i}", verify)
                return
            except ChainError as err:
                failures.append(f"[{child.type} (id = {node_id}.{i})] {err.log}; ")
        raise accountplus_error(105, "all sub-authenticators failed to authenticate: " + "; ".join(failures))


@dataclass(slots=True)
class _Entry:
    id: int
    type: str
    config: bytes
    added_at: int  # height at which the adding tx was accepted: live from the next block
    removed_at: int | None = None


class AuthenticatorStore:
    """Every account's authenticators, with the chain's global id counter and block visibility."""

    def __init__(self) -> None:
        self._next_id = 0
        self._entries: dict[str, dict[int, _Entry]] = {}

    def add(self, account: str, kind: str, data: bytes, height: int) -> int:
        """MsgAddAuthenticator (ValidateBasic, then the keeper); returns the new id."""
        if len(data) > DATA_MAX_LENGTH:
            raise accountplus_error(3, "authenticator data exceeds maximum length")
        if kind not in LEAF_TYPES + COMPOSITE_TYPES:
            raise _undefined(f"authenticator type {kind} is not registered")
        new_id = self._next_id
        try:
            safe = requires_signature(kind, data)
        except ChainError as err:
            detail = f"`OnAuthenticatorAdded` failed on authenticator type {kind}: {err.log}"
            raise ChainError(err.codespace, err.code, detail) from None
        if not safe:
            raise _undefined(f"unsafe: authenticator tree does not require signature verification all "
                             f"possible paths, type = {kind}, config = {list(data)}")
        self._next_id += 1
        self._entries.setdefault(account, {})[new_id] = _Entry(new_id, kind, bytes(data), height)
        return new_id

    def remove(self, account: str, authenticator_id: int, height: int) -> None:
        entry = self._visible(account, height).get(authenticator_id)
        if entry is None:
            raise accountplus_error(1, f"RemoveAuthenticator: failed to get authenticator {authenticator_id} "
                                       f"for address {account}")
        entry.removed_at = height

    def _visible(self, account: str, height: int) -> dict[int, _Entry]:
        return {i: e for i, e in self._entries.get(account, {}).items()
                if height > e.added_at and (e.removed_at is None or height <= e.removed_at)}

    def listed(self, account: str, height: int) -> list[tuple[int, str, bytes]]:
        """GetAuthenticators: (id, type, config) in id order, as committed at `height`."""
        return [(e.id, e.type, e.config) for _, e in sorted(self._visible(account, height).items())]

    def initialized(self, account: str, authenticator_id: int, height: int) -> Node:
        entry = self._visible(account, height).get(authenticator_id)
        if entry is None:
            raise accountplus_error(1, f"authenticator {authenticator_id} not found for account {account}")
        return initialize(entry.type, entry.config)
