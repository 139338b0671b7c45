"""The daemon's wiring (App, in-process) at its edges: what a fatal invariant violation leaves behind."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot.app import App
from bot.config import load
from bot.domain import OrderRequest, RiskMode, Side, TimeInForce
from bot.store import Store


async def test_an_invariant_violation_latches_the_kill_switch_and_halted(tmp_path: Path) -> None:
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["BTC-USD", "ETH-USD"],
                    watchdog={"enabled": False})
    app = await App.create(settings)
    order = OrderRequest(app.store.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.01"), Decimal(1),
                         TimeInForce.IOC)
    app.store.record_order("paper", order, 0)

    class ReusesAClientId:
        """Records the same client id again: the store refuses it (a real InvariantViolation)."""

        name = "reuses_a_client_id"

        async def run(self) -> None:
            app.store.record_order("paper", order, 1)

    app.services.append(ReusesAClientId())
    assert await app.run() == 1
    with Store.open(settings.db_path) as store:
        latch = store.kill_latch()
        assert latch is not None and "invariant" in latch.reason
        assert store.risk_mode()[0] is RiskMode.HALTED
