"""Two-venue kill on the embedded protocol simulator, live: the daemon holds a carry (short BTC-USD on
dYdX, long BTC-USDT on Binance) and 60+ resting orders of the bot across both venues plus a few
placed by hand. `perpbot kill` leaves none of the bot's orders open on either venue and the
operator's ones alone; `kill --all --flatten` leaves no order and no position on either; all
checked through the simulator's own REST (dYdX indexer /v4/orders, Binance openOrders)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from support.wait import eventually

from bot.domain import OrderRequest, Side, TimeInForce
from bot.sim.accounts import sim_accounts
from bot.sim.server.binance import sim_binance_credentials
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.rest import sign
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

PER_VENUE = 30
FOREIGN_DYDX = (4_000_000_001, 4_000_000_002)
FOREIGN_BINANCE = ("manual-1", "manual-2")


def carry_env() -> dict[str, str]:
    """A carry opened by the first audit after the test raised the funding (short perp, long spot)."""
    return {
        "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live",
        "PERPBOT_MARKETS": '["BTC-USD"]', "PERPBOT_STRATEGY__TARGETS": "{}",
        "PERPBOT_PAPER__TAKER_FEE_RATE": "0",
        "PERPBOT_STRATEGY__CARRY__MIN_PERSISTENCE_HOURS": "0",
        "PERPBOT_STRATEGY__CARRY__ENABLED": "true", "PERPBOT_STRATEGY__CARRY_BUDGET": "0.4",
        "PERPBOT_STRATEGY__CARRY__ENTRY_THRESHOLD_BPS": "0",
        "PERPBOT_STRATEGY__CARRY__EXPECTED_SLIPPAGE_BPS": "0",
        "PERPBOT_STRATEGY__CARRY__SPOT_TAKER_FEE_RATE": "0",
        "PERPBOT_RULES__AUDIT_ON_START": "false", "PERPBOT_RULES__AUDIT_INTERVAL_SECS": "5",
        "PERPBOT_EXECUTION__PASSIVE_WHEN_FUNDING_FAVOURS": "false",
        "PERPBOT_WATCHDOG__ENABLED": "false",
        "PERPBOT_DYDX__GTB_OFFSET_BLOCKS": "20",
    }


def binance_get(rest_url: str, path: str, **params: str) -> Any:
    key, secret = sim_binance_credentials()
    query = "&".join(f"{k}={v}" for k, v in {**params, "timestamp": str(int(time.time() * 1000))}.items())
    query += f"&signature={sign(secret, query)}"
    return httpx.get(f"{rest_url}{path}?{query}", headers={"X-MBX-APIKEY": key}).json()


def binance_open(rest_url: str) -> set[str]:
    return {o["clientOrderId"] for o in binance_get(rest_url, "/api/v3/openOrders")}


def binance_btc(rest_url: str) -> Decimal:
    balances = binance_get(rest_url, "/api/v3/account")["balances"]
    return next(Decimal(b["free"]) + Decimal(b["locked"]) for b in balances if b["asset"] == "BTC")


def dydx_open(indexer: str) -> set[int]:
    params = {"address": sim_accounts()["dydx"]["address"], "subaccountNumber": 0,
              "status": ["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"]}
    return {int(o["clientId"]) for o in httpx.get(indexer + "/v4/orders", params=params).json()}


def dydx_positions(indexer: str) -> dict[str, str]:
    params = {"address": sim_accounts()["dydx"]["address"], "subaccountNumber": 0, "status": "OPEN"}
    rows = httpx.get(indexer + "/v4/perpetualPositions", params=params).json()["positions"]
    return {p["market"]: p["size"] for p in rows if Decimal(p["size"])}


async def rest_orders(sim: dict[str, Any], db_path: Path) -> tuple[list[int], list[int]]:
    """Rest PER_VENUE post-only bids far below the touch on each venue as the bot (recorded in its
    store first, as the order manager does) and two by hand on each; return the bot's ids."""
    accounts = sim_accounts()
    gateway = NodeGateway(sim["node_grpc"], sim["chain_id"], accounts["dydx"]["mnemonic"], secure=False,
                          broadcasts_per_sec=100)
    dydx = DydxVenue(IndexerRest(sim["indexer_rest"]), sim["indexer_ws"], ("BTC-USD",), Metrics(),
                     gateway=gateway, account=(gateway.owner, 0), gtb_offset_blocks=20)
    key, secret = sim_binance_credentials()
    binance = build_venue(BinanceSettings(rest_url=sim["binance_rest"], ws_url=sim["binance_ws"],
                                          symbols={"BTC-USDT": "BTCUSDT"}), Metrics(),
                          api_key=SecretStr(key), api_secret=SecretStr(secret))
    ours_dydx, ours_binance = [], []
    try:
        await dydx.load_markets()
        await binance.load_markets()
        bid, _ = await dydx.touch("BTC-USD")
        spot_bid, _ = await binance.touch("BTC-USDT")
        assert bid is not None and spot_bid is not None
        price, spot_price = (bid * Decimal("0.9")).quantize(Decimal(1)), (spot_bid * Decimal("0.9")).quantize(
            Decimal("0.01"))
        with Store.open(db_path) as store:
            for venue, ids, market, at in ((dydx, ours_dydx, "BTC-USD", price),
                                           (binance, ours_binance, "BTC-USDT", spot_price)):
                for _ in range(PER_VENUE):
                    order = OrderRequest(store.next_client_id(), market, Side.BUY, Decimal("0.001"), at,
                                         TimeInForce.POST_ONLY)
                    store.record_order(venue.name, order, time.time_ns())
                    await venue.place(order)
                    ids.append(order.client_id)
        for client_id in FOREIGN_DYDX:
            await dydx.place(OrderRequest(client_id, "BTC-USD", Side.BUY, Decimal("0.001"), price,
                                          TimeInForce.POST_ONLY))
        for client_order_id in FOREIGN_BINANCE:
            await binance.rest.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER",
                                          "quantity": "0.001", "price": str(spot_price),
                                          "newClientOrderId": client_order_id})
    finally:
        await dydx.close()
        await binance.close()
    return ours_dydx, ours_binance


def test_kill_cancels_the_bots_orders_on_both_venues_and_flatten_closes_both_legs(
    daemon_factory: Any,
) -> None:
    daemon = daemon_factory(**carry_env()).start()
    control_status = daemon.status()
    sim = control_status["sim"]
    btc_start = binance_btc(sim["binance_rest"])
    spike = {"name": "funding_spike", "duration_s": 300, "rate_1h": "0.0005"}
    assert httpx.post(sim["admin"] + "/scenario", json=spike).status_code == 200

    def both_legs() -> dict[str, Any] | None:
        market = daemon.status()["markets"]["BTC-USD"]
        return market if Decimal(market["position"]) < 0 < Decimal(market["spot"]["position"]) else None

    eventually(both_legs, timeout_secs=40, interval_secs=0.5)
    ours_dydx, ours_binance = asyncio.run(rest_orders(sim, daemon.state_dir / "perpbot.sqlite"))
    ours_binance_ids = {f"pb-{cid}" for cid in ours_binance}
    eventually(lambda: set(ours_dydx) <= dydx_open(sim["indexer_rest"])
               and ours_binance_ids <= binance_open(sim["binance_rest"]), timeout_secs=10)

    started = time.monotonic()
    result = daemon.cli("kill", "--reason", "two venues")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert set(ours_dydx) <= set(report["venues"]["dydx"]["cancelled"])
    assert set(ours_binance) <= set(report["venues"]["binance"]["cancelled"])
    assert report["remaining_open_orders"] == [] and report["errors"] == []
    # The venues' own view: none of the bot's orders left, the hand-placed ones untouched.
    assert dydx_open(sim["indexer_rest"]) == set(FOREIGN_DYDX)
    assert binance_open(sim["binance_rest"]) == set(FOREIGN_BINANCE)
    print(f"kill: {len(ours_dydx) + len(ours_binance)} orders on two venues cancelled and confirmed, "
          f"CLI {elapsed:.2f}s")
    assert elapsed < 10

    result = daemon.cli("kill", "--all", "--flatten", "--reason", "everything")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["positions"] == {} and report["flatten_orders"], report
    assert set(report["venues"]["binance"]["filled"]) == {"BTC-USDT"}
    assert dydx_open(sim["indexer_rest"]) == set() and binance_open(sim["binance_rest"]) == set()
    eventually(lambda: dydx_positions(sim["indexer_rest"]) == {}, timeout_secs=5)
    # Binance charges buys' commission in BTC and the fills book the buys net of it: the flatten
    # sold what they left, down to the lot step (0.00001), and none of the account's other BTC.
    assert 0 <= binance_btc(sim["binance_rest"]) - btc_start < Decimal("0.00001")
    status = daemon.status()
    assert status["risk_mode"] == "HALTED"
    assert status["markets"]["BTC-USD"]["position"] == "0"
    assert Decimal(status["markets"]["BTC-USD"]["spot"]["position"]) < Decimal("0.00001")  # dust: no lot
    assert daemon.stop() == 0
