"""The daemon on the embedded protocol simulator through the real dYdX adapter (paper and live)."""

from __future__ import annotations

import httpx
from support.wait import eventually


def venue_open_orders(status: dict) -> list[dict]:  # type: ignore[type-arg]
    sim = status["sim"]
    address = status["account"]["dydx"]["address"]
    params = {"address": address, "subaccountNumber": 0, "status": ["OPEN", "BEST_EFFORT_OPENED"]}
    return httpx.get(sim["indexer_rest"] + "/v4/orders", params=params).json()


def test_live_on_the_simulator_trades_through_the_chain_and_kill_leaves_nothing_open(  # type: ignore[no-untyped-def]
    daemon_factory,
) -> None:
    daemon = daemon_factory(PERPBOT_SIM__MODE="protocol", PERPBOT_TRADING="live",
                            PERPBOT_STRATEGY__CARRY__ENABLED="true").start()
    status = eventually(lambda: (s := daemon.status())["markets"]["ETH-USD"]["position"] != "0" and s,
                        timeout_secs=20)
    assert status["trading"] == "live" and status["sim"]["mode"] == "embedded"
    assert status["account"]["dydx"]["address"].startswith("dydx1")
    assert status["account"]["dydx"]["key"] == "owner"
    # The live start read the simulator's Binance key restrictions: no withdrawals, no IP whitelist.
    assert status["hedge_venue"]["key"] == {"withdrawals": False, "ip_restricted": False}
    sim = status["sim"]

    def venue_eth() -> list[dict]:  # type: ignore[type-arg]
        params = {"address": status["account"]["dydx"]["address"], "subaccountNumber": 0}
        positions = httpx.get(sim["indexer_rest"] + "/v4/perpetualPositions", params=params).json()
        return [p for p in positions["positions"] if p["market"] == "ETH-USD"]

    short = eventually(venue_eth, timeout_secs=10)
    assert short[0]["size"].startswith("-")  # the venue holds the short too

    result = daemon.cli("kill", "--reason", "protocol test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert daemon.status()["risk_mode"] == "HALTED"
    halted = daemon.status()
    eventually(lambda: venue_open_orders(halted) == [], timeout_secs=10)
    assert daemon.stop() == 0


def test_paper_on_the_protocol_simulator_needs_no_keys(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(PERPBOT_SIM__MODE="protocol", PERPBOT_STRATEGY__CARRY__ENABLED="true").start()
    status = eventually(lambda: (s := daemon.status())["markets"]["BTC-USD"]["position"] != "0" and s,
                        timeout_secs=20)
    assert status["trading"] == "paper" and status["account"]["dydx"]["address"] is None
    assert status["account"]["dydx"]["source"] == "paper"
    assert status["fees"]["dydx"]["source"] == "config:paper"
    assert set(status["open_orders"]) == {"paper", "paper_spot"}
    # The carry's spot leg is paper-traded over the simulator's Binance books (no keys needed).
    assert status["hedge_venue"]["market_data"] == "binance"
    assert status["hedge_venue"]["rest_url"] == status["sim"]["binance_rest"]
    spot = eventually(lambda: daemon.status()["markets"]["BTC-USD"]["spot"]["mid"], timeout_secs=10)
    assert 1000 < float(spot) < 1_000_000
    assert "mismatch_usd" in daemon.status()["markets"]["BTC-USD"]["hedge"]
    assert status["block_height"] > 0
    watchdog = eventually(lambda: daemon.status().get("watchdog"), timeout_secs=10)
    assert {"chain_head_age", "indexer_lag", "withdrawal_gating"} <= set(watchdog)
    assert all(reading["state"] in ("OK", "DEGRADED", "CRITICAL") for reading in watchdog.values())
    assert daemon.stop() == 0
