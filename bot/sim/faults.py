"""Fault switches the scenarios flip and the simulator's exchange core and front-ends read."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(slots=True)
class ScenarioState:
    """Fault switches the admin endpoint and scenario files flip (see bot.sim.scenarios)."""

    chain_halted: bool = False  # no blocks, BroadcastTx fails
    indexer_lag_blocks: int = 0  # indexer reports height - lag
    withdrawals_gated: bool = False
    liquidity_factor: float = 1.0  # < 1 thins background depth
    funding_spike_1h: Decimal | None = None  # overrides the funding rate while set
    extra: dict[str, object] = field(default_factory=dict)
