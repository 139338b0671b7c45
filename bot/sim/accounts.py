"""The simulator's built-in test accounts (mnemonic + dYdX address).

THESE ARE PUBLIC TEST KEYS. The mnemonics below were generated once with bip_utils for the
simulator and are committed in the clear: never fund them on a real network, never use them
for anything but the local simulator. The runner pre-funds the "dydx" account with
`SimExchange.create_account`; the bot signs with its mnemonic through the real `dydx_v4_client`
against the simulator's node front-end.

Addresses are derived with the client's own code path (`KeyPair.from_mnemonic`, BIP44 Cosmos
path, then `Wallet.address`), so they are exactly the address `Wallet` signs as.
"""

from __future__ import annotations

import functools

# Public simulator test mnemonics (BIP39, 24 words). NOT FOR REAL FUNDS.
SIM_DYDX_MNEMONIC = (
    "spring code museum give bullet inch between clump veteran midnight affair one "
    "tired wonder click august donate modify degree patient random sunset inspire erupt"
)
# A second, unfunded-by-default key: a counterparty, or a signer that does not own an order.
SIM_DYDX_OTHER_MNEMONIC = (
    "second lemon armor garment maximum prefer aunt travel primary pretty found try "
    "twelve lamp luxury vital road record ketchup blush end scout outer convince"
)


@functools.cache
def address_of(mnemonic: str) -> str:
    """The bech32 dydx1... address `dydx_v4_client.Wallet` signs as for this mnemonic."""
    from dydx_v4_client.key_pair import KeyPair
    from dydx_v4_client.wallet import Wallet

    return Wallet(KeyPair.from_mnemonic(mnemonic), 0, 0).address


def sim_accounts() -> dict[str, dict[str, str]]:
    """A fresh, JSON-ready dict of test credentials: "dydx" is the account the bot trades with.

    `{"dydx": {"mnemonic", "address"}, "dydx_other": {"mnemonic", "address"}}`; callers may add
    their own entries (the runner adds the Binance keys).
    """
    return {
        name: {"mnemonic": mnemonic, "address": address_of(mnemonic)}
        for name, mnemonic in (("dydx", SIM_DYDX_MNEMONIC), ("dydx_other", SIM_DYDX_OTHER_MNEMONIC))
    }
