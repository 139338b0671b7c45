"""dYdX venue settings: endpoints per network and the trading account (no secrets here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

# Public endpoints used by the official clients (DYDX_V4.md §0).
NETWORKS = {
    "mainnet": {"indexer_rest": "https://indexer.dydx.trade", "indexer_ws": "wss://indexer.dydx.trade/v4/ws",
                "node_grpc": "dydx-ops-grpc.kingnodes.com:443", "chain_id": "dydx-mainnet-1"},
    "testnet": {"indexer_rest": "https://indexer.v4testnet.dydx.exchange",
                "indexer_ws": "wss://indexer.v4testnet.dydx.exchange/v4/ws",
                "node_grpc": "test-dydx-grpc.kingnodes.com:443", "chain_id": "dydx-testnet-4"},
}


class DydxSettings(BaseModel):
    """Endpoints default per network; set them to point at a running `perpbot sim`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    indexer_rest: str | None = None
    indexer_ws: str | None = None
    node_grpc: str | None = None
    chain_id: str | None = None
    address: str | None = None  # the trading account; derived from the mnemonic when unset
    subaccount_number: int = Field(default=0, ge=0, lt=128_000)
    authenticator_ids: tuple[int, ...] = ()  # trade-only permissioned key
    node_timeout_secs: PositiveFloat = 5.0
    broadcasts_per_sec: PositiveFloat = 4.0
    broadcast_burst: int = Field(default=16, ge=1, le=100)  # back to back (a kill's cancels), then paced
    gtb_offset_blocks: int = Field(default=10, ge=3, le=20)
    long_term_secs: int = Field(default=3600, ge=60, le=95 * 24 * 3600)

    def endpoints(self, network: str) -> dict[str, str | None]:
        """Configured endpoints, falling back to the network's public ones."""
        preset = NETWORKS.get(network, {})
        return {key: getattr(self, key) or preset.get(key)
                for key in ("indexer_rest", "indexer_ws", "node_grpc", "chain_id")}
