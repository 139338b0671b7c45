"""`perpbot kill --direct` against a running `perpbot sim` while the daemon is dead (SIGKILL).

The daemon trades live on the standalone simulator, both legs: perps on its dYdX servers and the
carry's spot hedge on its Binance server (funding raised so the carry opens). It is killed hard,
then resting orders are placed as the bot (recorded in its store) and by someone else, on the
same subaccount and the same Binance account. The direct kill must cancel the bot's orders on
both venues and leave the others, `--all` must leave nothing open, `--flatten` must close the
perp positions and the spot hedge, all checked through the simulator's own REST (indexer
/v4/orders and positions, Binance openOrders and balances); and the latch must hold when the
daemon comes back.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from support.sim import standalone_sim
from support.wait import eventually

from bot.domain import OrderRequest, Side, TimeInForce
from bot.sim.server.binance import sim_binance_credentials
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.rest import sign
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

FOREIGN_IDS = (4_000_000_001, 4_000_000_002)
FOREIGN_SPOT = ("manual-1",)


@pytest.fixture
def sim() -> Iterator[dict[str, Any]]:
    with standalone_sim(11) as endpoints:
        yield endpoints


def sim_env(sim: dict[str, Any]) -> dict[str, str]:
    key, secret = sim_binance_credentials()
    return {
        "PERPBOT_BINANCE__REST_URL": sim["binance_rest"],
        "PERPBOT_BINANCE__WS_URL": sim["binance_ws"],
        "PERPBOT_BINANCE_API_KEY": key,
        "PERPBOT_BINANCE_API_SECRET": secret,
        # The carry opens at the first audit once the test raised the funding: a spot leg to flatten.
        "PERPBOT_STRATEGY__CARRY__MIN_PERSISTENCE_HOURS": "0",
        "PERPBOT_STRATEGY__CARRY__ENABLED": "true", "PERPBOT_STRATEGY__CARRY_BUDGET": "0.4",
        "PERPBOT_STRATEGY__CARRY__ENTRY_THRESHOLD_BPS": "0",
        "PERPBOT_STRATEGY__CARRY__EXPECTED_SLIPPAGE_BPS": "0",
        "PERPBOT_STRATEGY__CARRY__SPOT_TAKER_FEE_RATE": "0",
        "PERPBOT_PAPER__TAKER_FEE_RATE": "0",
        "PERPBOT_RULES__AUDIT_ON_START": "false", "PERPBOT_RULES__AUDIT_INTERVAL_SECS": "5",
        "PERPBOT_SIM__MODE": "protocol",
        "PERPBOT_TRADING": "live",
        "PERPBOT_DYDX__INDEXER_REST": sim["indexer_rest"],
        "PERPBOT_DYDX__INDEXER_WS": sim["indexer_ws"],
        "PERPBOT_DYDX__NODE_GRPC": sim["node_grpc"],
        "PERPBOT_DYDX__CHAIN_ID": sim["chain_id"],
        "PERPBOT_DYDX_MNEMONIC": sim["accounts"]["dydx"]["mnemonic"],
        "PERPBOT_DYDX__GTB_OFFSET_BLOCKS": "20",
    }


def venue_orders(sim: dict[str, Any]) -> set[int]:
    params = {"address": sim["accounts"]["dydx"]["address"], "subaccountNumber": 0,
              "status": ["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"]}
    return {int(o["clientId"]) for o in httpx.get(sim["indexer_rest"] + "/v4/orders", params=params).json()}


def venue_positions(sim: dict[str, Any]) -> dict[str, str]:
    params = {"address": sim["accounts"]["dydx"]["address"], "subaccountNumber": 0, "status": "OPEN"}
    rows = httpx.get(sim["indexer_rest"] + "/v4/perpetualPositions", params=params).json()["positions"]
    return {p["market"]: p["size"] for p in rows if Decimal(p["size"])}


async def place_resting(sim: dict[str, Any], db_path: Path) -> list[int]:
    """Rest post-only (short-term) and GTT (long-term) bids far below the touch: 3 + 1 as the bot
    (recorded in its store, as the order manager would) and 2 foreign ones; returns the bot's ids."""
    gateway = NodeGateway(sim["node_grpc"], sim["chain_id"], sim["accounts"]["dydx"]["mnemonic"],
                          secure=False, broadcasts_per_sec=50)
    venue = DydxVenue(IndexerRest(sim["indexer_rest"]), sim["indexer_ws"], ("BTC-USD",), Metrics(),
                      gateway=gateway, account=(gateway.owner, 0), gtb_offset_blocks=20)
    ours = []
    try:
        await venue.load_markets()
        bid, _ = await venue.touch("BTC-USD")
        assert bid is not None
        price = (bid * Decimal("0.9")).quantize(Decimal(1))
        with Store.open(db_path) as store:
            for tif in (TimeInForce.POST_ONLY,) * 3 + (TimeInForce.GTT,):
                order = OrderRequest(store.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.001"), price,
                                     tif)
                store.record_order("dydx", order, time.time_ns())
                await venue.place(order)
                ours.append(order.client_id)
        for client_id in FOREIGN_IDS:
            await venue.place(OrderRequest(client_id, "BTC-USD", Side.BUY, Decimal("0.001"), price,
                                           TimeInForce.POST_ONLY))
    finally:
        await venue.close()
    return ours


def binance_get(sim: dict[str, Any], path: str) -> Any:
    key, secret = sim_binance_credentials()
    query = f"timestamp={int(time.time() * 1000)}"
    query += f"&signature={sign(secret, query)}"
    return httpx.get(f"{sim['binance_rest']}{path}?{query}", headers={"X-MBX-APIKEY": key}).json()


def binance_open(sim: dict[str, Any]) -> set[str]:
    return {o["clientOrderId"] for o in binance_get(sim, "/api/v3/openOrders")}


def binance_btc(sim: dict[str, Any]) -> Decimal:
    balances = binance_get(sim, "/api/v3/account")["balances"]
    return next(Decimal(b["free"]) + Decimal(b["locked"]) for b in balances if b["asset"] == "BTC")


async def place_resting_spot(sim: dict[str, Any], db_path: Path) -> list[int]:
    """Rest 3 LIMIT_MAKER bids far below the touch on Binance as the bot (in its store) and one by hand."""
    key, secret = sim_binance_credentials()
    venue = build_venue(BinanceSettings(rest_url=sim["binance_rest"], ws_url=sim["binance_ws"],
                                        symbols={"BTC-USDT": "BTCUSDT"}), Metrics(),
                        api_key=SecretStr(key), api_secret=SecretStr(secret))
    ours = []
    try:
        await venue.load_markets()
        bid, _ = await venue.touch("BTC-USDT")
        assert bid is not None
        price = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
        with Store.open(db_path) as store:
            for _ in range(3):
                order = OrderRequest(store.next_client_id(), "BTC-USDT", Side.BUY, Decimal("0.001"), price,
                                     TimeInForce.POST_ONLY)
                store.record_order("binance", order, time.time_ns())
                await venue.place(order)
                ours.append(order.client_id)
        for client_order_id in FOREIGN_SPOT:
            await venue.rest.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER",
                                        "quantity": "0.001", "price": str(price),
                                        "newClientOrderId": client_order_id})
    finally:
        await venue.close()
    return ours


async def test_kill_direct_with_the_daemon_dead_cancels_ours_then_all_and_flattens(
    daemon_factory: Any, sim: dict[str, Any]
) -> None:
    spike = {"name": "funding_spike", "duration_s": 600, "rate_1h": "0.0005"}
    async with httpx.AsyncClient() as client:
        assert (await client.post(sim["admin"] + "/scenario", json=spike)).status_code == 200
    btc_start = binance_btc(sim)
    daemon = daemon_factory(**sim_env(sim)).start()
    eventually(lambda: venue_positions(sim) and binance_btc(sim) > btc_start + Decimal("0.001"),
               timeout_secs=40)
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL  # crashed: nothing cleaned up

    ours = await place_resting(sim, daemon.state_dir / "perpbot.sqlite")
    ours_spot = await place_resting_spot(sim, daemon.state_dir / "perpbot.sqlite")
    eventually(lambda: set(ours) | set(FOREIGN_IDS) <= venue_orders(sim), timeout_secs=5)
    assert {f"pb-{cid}" for cid in ours_spot} | set(FOREIGN_SPOT) <= binance_open(sim)

    started = time.monotonic()
    result = daemon.cli("kill", "--direct", "--reason", "daemon dead")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert set(ours) <= set(report["cancelled"]) and report["remaining_open_orders"] == []
    assert set(ours_spot) <= set(report["venues"]["binance"]["cancelled"])
    assert report["kill_latched"] is True and report["errors"] == []
    assert venue_orders(sim) == set(FOREIGN_IDS), "orders the bot did not place survive without --all"
    assert binance_open(sim) == set(FOREIGN_SPOT)
    assert elapsed < 10, elapsed  # short-term orders rest 20 blocks (~13 s): these were cancelled

    result = daemon.cli("kill", "--direct", "--all", "--flatten", "--reason", "everything")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert venue_orders(sim) == set() and binance_open(sim) == set()
    assert venue_positions(sim) == {} and report["positions"] == {}, report
    assert report["filled"] and report["flatten_orders"]
    assert "BTC-USDT" in report["venues"]["binance"]["filled"]
    # The hedge's buys booked net of their BTC commission: the flatten sold what they left, down to
    # the lot step (0.00001), and none of the account's other BTC.
    assert 0 <= binance_btc(sim) - btc_start < Decimal("0.00001")

    again = daemon_factory(**sim_env(sim)).start()
    status = again.status()
    assert status["risk_mode"] == "HALTED" and status["kill_latched"] is True
    assert status["kill_reason"] == "daemon dead"  # the first latch holds until a resume
    assert again.stop() == 0
