"""SIGKILL the live daemon mid-TWAP against a separate simulator, restart it, and check that
reconciliation leaves no orphan order, no lost or double-counted fill, and the store's
position equal to the venue's."""

from __future__ import annotations

import random
import signal
import sqlite3
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from support.sim import standalone_sim
from support.wait import eventually


@pytest.fixture
def external_sim() -> Iterator[dict]:  # type: ignore[type-arg]
    with standalone_sim(21) as endpoints:
        yield endpoints


def reconcile_reports(daemon) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [e for e in daemon.log_events() if e.get("event", "").startswith("reconcile")]


def submitted(daemon) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in daemon.log_events() if e.get("event") == "order_submitted")


def venue_fills(ep: dict, address: str) -> dict[str, dict]:  # type: ignore[type-arg]
    body = httpx.get(ep["indexer_rest"] + "/v4/fills",
                     params={"address": address, "subaccountNumber": 0, "limit": 1000}).json()
    return {f["id"]: f for f in body["fills"]}


def venue_open(ep: dict, address: str) -> list[dict]:  # type: ignore[type-arg]
    params = {"address": address, "subaccountNumber": 0, "status": ["OPEN", "BEST_EFFORT_OPENED"]}
    return httpx.get(ep["indexer_rest"] + "/v4/orders", params=params).json()


def test_sigkill_mid_twap_then_restart_reconciles(daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]
    ep = external_sim
    account = ep["accounts"]["dydx"]
    env = {
        "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live",
        "PERPBOT_DYDX__INDEXER_REST": ep["indexer_rest"], "PERPBOT_DYDX__INDEXER_WS": ep["indexer_ws"],
        "PERPBOT_DYDX__NODE_GRPC": ep["node_grpc"], "PERPBOT_DYDX__CHAIN_ID": ep["chain_id"],
        "PERPBOT_DYDX_MNEMONIC": account["mnemonic"], "PERPBOT_EXECUTION__TWAP_DURATION_SECS": "8",
    }
    rng = random.Random(3)
    reports = []
    for _round in range(4):
        daemon = daemon_factory(**env).start()
        db = daemon.state_dir / "perpbot.sqlite"
        reports += eventually(lambda d=daemon: reconcile_reports(d), timeout_secs=15)
        # Kill right after an order went out: its fill is usually still on the wire.
        seen = submitted(daemon)
        eventually(lambda d=daemon, n=seen: submitted(d) > n + rng.randrange(3), timeout_secs=15)
        daemon.stop(signal.SIGKILL)

    daemon = daemon_factory(**env).start()
    reports += eventually(lambda: reconcile_reports(daemon), timeout_secs=15)
    assert daemon.stop() == 0  # SIGTERM: cancels what it left resting
    assert all(r["event"] == "reconciled" for r in reports), reports
    corrected = sum(r["fills_applied"] + len(r["closed_in_store"]) for r in reports)
    assert corrected > 0  # the kills really left work for reconciliation

    store = sqlite3.connect(db)
    store_fills = {row[0] for row in store.execute("select fill_id from fills where venue = 'dydx'")}
    fills = venue_fills(ep, account["address"])
    assert set(fills) == store_fills  # nothing lost, nothing invented
    ids = [row[0] for row in store.execute("select client_id from orders")]
    assert len(ids) == len(set(ids))
    assert store.execute("select count(*) from orders where status in ('NEW','ACKED','PARTIALLY_FILLED')"
                         ).fetchone()[0] == 0
    assert venue_open(ep, account["address"]) == []
    positions = httpx.get(ep["indexer_rest"] + "/v4/perpetualPositions",
                          params={"address": account["address"], "subaccountNumber": 0}).json()["positions"]
    for market in ("BTC-USD", "ETH-USD"):
        from_store = sum((Decimal(size) if side == "BUY" else -Decimal(size))
                         for side, size in store.execute(
                             "select side, size from fills where market = ?", (market,)))
        venue = sum((Decimal(p["size"]) for p in positions if p["market"] == market), Decimal(0))
        assert from_store == venue, market
