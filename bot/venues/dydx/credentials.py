"""Which key signs the bot's dYdX transactions: a trade-only permissioned key, or the owner's.

A permissioned key (`perpbot keys grant`) is a separate secp256k1 key that an authenticator on
the owner's account lets place and cancel orders on one subaccount and some markets, and do
nothing else (DYDX_V4.md §6.1: the tx carries `TxExtension{selected_authenticators}`; sequence
and account number are the owner account's). The daemon and `kill --direct` trade with it from
`PERPBOT_DYDX_ADDRESS` + `PERPBOT_DYDX_TRADING_MNEMONIC` + `PERPBOT_DYDX_AUTHENTICATOR_ID`, and
never need the owner mnemonic, which can withdraw everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.config import Settings
from bot.errors import ConfigError
from bot.venues.dydx.node import NodeGateway


@dataclass(frozen=True, slots=True)
class DydxSigner:
    mnemonic: str = field(repr=False)
    owner_address: str | None  # None: the mnemonic's own address
    authenticator_ids: list[int] | None
    key: Literal["owner", "permissioned"]
    setting: str = "dydx_mnemonic"  # where the mnemonic came from, for error messages


def dydx_signer(settings: Settings, fallback_mnemonic: str | None = None) -> DydxSigner | None:
    """The configured signer (`fallback_mnemonic`: the embedded simulator's test key); None: none."""
    address = settings.dydx_address or settings.dydx.address
    ids = ([settings.dydx_authenticator_id] if settings.dydx_authenticator_id is not None
           else list(settings.dydx.authenticator_ids))
    if settings.dydx_trading_mnemonic is not None:
        if not address or not address.startswith("dydx1"):
            raise ConfigError("dydx_address", "a trading key needs PERPBOT_DYDX_ADDRESS (the dydx1... "
                                              "account it trades for)")
        if not ids:
            raise ConfigError("dydx_authenticator_id", "a trading key needs PERPBOT_DYDX_AUTHENTICATOR_ID "
                                                       "(printed by `perpbot keys grant`)")
        return DydxSigner(settings.dydx_trading_mnemonic.get_secret_value(), address, ids, "permissioned",
                          "dydx_trading_mnemonic")
    if settings.dydx_authenticator_id is not None:
        raise ConfigError("dydx_trading_mnemonic", "PERPBOT_DYDX_AUTHENTICATOR_ID is for a trading key: "
                                                   "set PERPBOT_DYDX_TRADING_MNEMONIC")
    owner = settings.dydx_mnemonic.get_secret_value() if settings.dydx_mnemonic else fallback_mnemonic
    if owner is None:
        return None
    # [dydx] authenticator_ids with PERPBOT_DYDX_MNEMONIC: that mnemonic is a trading key too.
    return DydxSigner(owner, address, ids or None, "permissioned" if ids else "owner")


def refuse_owner_key_on_mainnet(settings: Settings) -> None:
    """Live on mainnet, the owner mnemonic must not be in the daemon's environment unless allowed."""
    if (settings.network == "mainnet" and settings.trading == "live" and settings.dydx_mnemonic is not None
            and settings.allow_owner_key != "yes"):
        raise ConfigError("dydx_mnemonic", "refusing to trade live on mainnet with the owner mnemonic "
                          "(it can withdraw everything): create a trading key with `perpbot keys grant` and "
                          "unset PERPBOT_DYDX_MNEMONIC, or set PERPBOT_ALLOW_OWNER_KEY=yes")


def node_gateway(settings: Settings, endpoints: dict[str, str | None], signer: DydxSigner) -> NodeGateway:
    """The node gateway for `signer` on the configured network."""
    d = settings.dydx
    try:
        return NodeGateway(
            str(endpoints["node_grpc"]), str(endpoints["chain_id"]), signer.mnemonic,
            subaccount_number=d.subaccount_number, owner_address=signer.owner_address,
            authenticator_ids=signer.authenticator_ids, secure=settings.network != "sim",
            timeout_secs=d.node_timeout_secs, broadcasts_per_sec=d.broadcasts_per_sec,
            broadcast_burst=d.broadcast_burst,
        )
    except Exception:  # bip_utils' mnemonic errors (several types; a message may quote a word)
        raise ConfigError(signer.setting, "not a valid BIP39 mnemonic") from None
