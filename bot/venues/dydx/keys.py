"""`perpbot keys grant | list | revoke`: trade-only dYdX keys (x/accountplus authenticators).

`grant` runs once, by the operator, with the owner mnemonic (`PERPBOT_DYDX_MNEMONIC`). It adds to
the owner's account, through dydx-v4-client's `add_authenticator`, the authenticator

    AllOf[SignatureVerification(trading pubkey),
          MessageFilter(MsgPlaceOrder, MsgCancelOrder, MsgBatchCancel),
          SubaccountFilter(N), ClobPairIdFilter(the markets' clob pair ids)]

so the trading key can place and cancel orders on subaccount N in those markets, and nothing else:
no withdrawal, no transfer, no other market, no other subaccount. The chain applies the tx in the
next block, so `grant` waits until `get_authenticators` lists it and reports its id. The owner
mnemonic is only ever read here, never printed; a generated trading mnemonic is printed once.

The client's node calls are synchronous gRPC inside `async` methods; blocking is fine in this
one-shot command.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

import grpc
from bip_utils import Bip39MnemonicGenerator, Bip39WordsNum
from dydx_v4_client.key_pair import KeyPair
from dydx_v4_client.node.authenticators import Authenticator, AuthenticatorType
from dydx_v4_client.node.builder import Builder
from dydx_v4_client.node.client import NodeClient, QueryNodeClient, SequenceManager
from dydx_v4_client.node.message import convert_nested_config_to_base64
from dydx_v4_client.wallet import Wallet

from bot.clock import SYSTEM_CLOCK, monotonic_secs
from bot.config import Settings
from bot.errors import ConfigError, VenueError
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import USDC_DENOM

TRADE_MESSAGES = ("/dydxprotocol.clob.MsgPlaceOrder", "/dydxprotocol.clob.MsgCancelOrder",
                  "/dydxprotocol.clob.MsgBatchCancel")
WAIT_SECS = 30.0
POLL_SECS = 0.3


class KeysError(VenueError):
    """The chain refused the change, or it did not show up in time (exit 1)."""


def trading_authenticator(pubkey: bytes, subaccount: int, clob_pair_ids: list[int]) -> Authenticator:
    """The trade-only authenticator for `pubkey` (composed the way the client composes)."""
    return Authenticator.compose(AuthenticatorType.AllOf, [
        Authenticator.signature_verification(pubkey),
        Authenticator.message_filter(",".join(TRADE_MESSAGES)),
        Authenticator.subaccount_filter([subaccount]),
        Authenticator.clob_pair_id_filter(sorted(set(clob_pair_ids))),
    ])


def stored_config(authenticator: Authenticator) -> bytes:
    """The `data` the chain stores for `authenticator`: what `add_authenticator` sends."""
    return bytes(convert_nested_config_to_base64(authenticator.config))


def describe(kind: str, config: bytes) -> dict[str, Any]:
    """A listed authenticator as readable JSON (undecodable configs as hex)."""
    try:
        if kind == "SignatureVerification":
            return {"type": kind, "pubkey": config.hex()}
        if kind == "MessageFilter":
            return {"type": kind, "messages": config.decode().split(",")}
        if kind in ("SubaccountFilter", "ClobPairIdFilter"):
            key = "subaccounts" if kind == "SubaccountFilter" else "clob_pair_ids"
            return {"type": kind, key: [int(n) for n in config.decode().split(",")]}
        if kind in ("AllOf", "AnyOf"):
            children = json.loads(config)
            return {"type": kind, "of": [describe(str(c["type"]), base64.b64decode(c["config"]))
                                         for c in children]}
    except (ValueError, TypeError, KeyError, binascii.Error):
        pass
    return {"type": kind, "config_hex": config.hex()}


def new_mnemonic() -> str:
    return str(Bip39MnemonicGenerator().FromWordsNumber(Bip39WordsNum.WORDS_NUM_24))


def parse_markets(text: str | None, default: tuple[str, ...]) -> list[str]:
    if text is None:
        return list(default)
    markets = [m.strip().upper() for m in text.split(",") if m.strip()]
    if not markets:
        raise ConfigError("--markets", "expected markets like BTC-USD,ETH-USD")
    return markets


# ---- IO --------------------------------------------------------------------------------------------

def _connect(settings: Settings) -> NodeClient:
    endpoints = settings.dydx.endpoints(settings.network)
    for key in ("node_grpc", "chain_id"):
        if not endpoints[key]:
            raise ConfigError(f"dydx.{key}", f"no endpoint for network {settings.network!r} (for the "
                                             "simulator: point [dydx] at a running `perpbot sim`)")
    url = str(endpoints["node_grpc"])
    channel = (grpc.insecure_channel(url) if settings.network == "sim"
               else grpc.secure_channel(url, grpc.ssl_channel_credentials()))
    # What NodeClient.connect builds, minus the NodeConfig round trip.
    node = NodeClient(channel, Builder(str(endpoints["chain_id"]), USDC_DENOM, memo="perpbot keys"))
    node.sequence_manager = SequenceManager(QueryNodeClient(channel))
    return node


def _owner(settings: Settings) -> tuple[KeyPair, str]:
    """The owner's key and mnemonic (never printed); ConfigError when missing or invalid."""
    if settings.dydx_mnemonic is None:
        raise ConfigError("dydx_mnemonic", "granting or revoking needs the owner mnemonic in "
                                           "PERPBOT_DYDX_MNEMONIC")
    mnemonic = settings.dydx_mnemonic.get_secret_value()
    try:
        key = KeyPair.from_mnemonic(mnemonic)
    except Exception:  # bip_utils raises several types; their messages may echo words
        raise ConfigError("dydx_mnemonic", "not a valid BIP39 mnemonic") from None
    configured = settings.dydx_address or settings.dydx.address
    if configured and configured != Wallet(key, 0, 0).address:
        raise ConfigError("dydx_address", "is not the address of PERPBOT_DYDX_MNEMONIC")
    return key, mnemonic


async def _listed(node: NodeClient, address: str) -> list[tuple[int, str, bytes]]:
    response = await node.get_authenticators(address)
    return [(int(a.id), str(a.type), bytes(a.config)) for a in response.account_authenticators]


async def _wait_for(check: Callable[[], Any], what: str, timeout_secs: float) -> Any:
    deadline = monotonic_secs(SYSTEM_CLOCK) + timeout_secs
    while True:
        found = await check()
        if found is not None:
            return found
        if monotonic_secs(SYSTEM_CLOCK) > deadline:
            raise KeysError("dydx", "keys", f"{what}: not seen on chain after {timeout_secs:.0f} s")
        await asyncio.sleep(POLL_SECS)


def _check_broadcast(response: Any, op: str) -> None:
    tx = response.tx_response
    if tx.code != 0:
        raise KeysError("dydx", op, f"{tx.codespace}/{tx.code}: {tx.raw_log}")


async def _clob_pair_ids(settings: Settings, markets: list[str]) -> list[int]:
    endpoints = settings.dydx.endpoints(settings.network)
    if not endpoints["indexer_rest"]:
        raise ConfigError("dydx.indexer_rest", f"no endpoint for network {settings.network!r}")
    rest = IndexerRest(str(endpoints["indexer_rest"]))
    try:
        known = await rest.perpetual_markets()
    finally:
        await rest.aclose()
    unknown = [m for m in markets if m not in known]
    if unknown:
        raise ConfigError("--markets", f"unknown market {unknown[0]!r}")
    return [int(known[m].clobPairId) for m in markets]


async def grant(settings: Settings, markets: list[str], subaccount: int,
                timeout_secs: float = WAIT_SECS) -> tuple[dict[str, Any], bool]:
    """Add the trade-only authenticator; returns (the JSON line, whether the mnemonic is new)."""
    owner_key, owner_mnemonic = _owner(settings)
    given = settings.dydx_trading_mnemonic
    trading_mnemonic = given.get_secret_value() if given is not None else new_mnemonic()
    if trading_mnemonic == owner_mnemonic:
        raise ConfigError("dydx_trading_mnemonic", "is the owner mnemonic: a trading key must be another key")
    try:
        trading_key = KeyPair.from_mnemonic(trading_mnemonic)
    except Exception:  # as in _owner: never echo the words
        raise ConfigError("dydx_trading_mnemonic", "not a valid BIP39 mnemonic") from None
    clob_pair_ids = await _clob_pair_ids(settings, markets)
    authenticator = trading_authenticator(trading_key.public_key_bytes, subaccount, clob_pair_ids)
    data = stored_config(authenticator)
    node = _connect(settings)
    try:
        address = Wallet(owner_key, 0, 0).address
        before = {i for i, _, _ in await _listed(node, address)}
        wallet = await Wallet.from_mnemonic(node, owner_mnemonic, address)
        _check_broadcast(await node.add_authenticator(wallet, authenticator), "add_authenticator")

        async def new_id() -> int | None:
            ids = [i for i, kind, config in await _listed(node, address)
                   if i not in before and kind == authenticator.type and config == data]
            return max(ids) if ids else None

        authenticator_id = await _wait_for(new_id, "the new authenticator", timeout_secs)
    finally:
        node.channel.close()
    line: dict[str, Any] = {"address": address, "authenticator_id": authenticator_id}
    if given is None:
        line["trading_mnemonic"] = trading_mnemonic
    return line, given is None


async def list_keys(settings: Settings) -> dict[str, Any]:
    address = settings.dydx_address or settings.dydx.address
    if not address:
        address = Wallet(_owner(settings)[0], 0, 0).address
    node = _connect(settings)
    try:
        listed = await _listed(node, address)
    finally:
        node.channel.close()
    return {"address": address, "authenticators": [{"id": i, **describe(kind, config)}
                                                   for i, kind, config in listed]}


async def revoke(settings: Settings, authenticator_id: int,
                 timeout_secs: float = WAIT_SECS) -> dict[str, Any]:
    owner_key, owner_mnemonic = _owner(settings)
    address = Wallet(owner_key, 0, 0).address
    node = _connect(settings)
    try:
        if authenticator_id not in {i for i, _, _ in await _listed(node, address)}:
            raise ConfigError("ID", f"authenticator {authenticator_id} is not on {address}")
        wallet = await Wallet.from_mnemonic(node, owner_mnemonic, address)
        _check_broadcast(await node.remove_authenticator(wallet, authenticator_id), "remove_authenticator")

        async def gone() -> bool | None:
            return True if authenticator_id not in {i for i, _, _ in await _listed(node, address)} else None

        await _wait_for(gone, f"the removal of authenticator {authenticator_id}", timeout_secs)
    finally:
        node.channel.close()
    return {"address": address, "revoked": authenticator_id}
