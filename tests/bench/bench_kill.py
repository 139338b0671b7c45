"""Benchmark: `perpbot kill --direct` from CLI start to every cancel confirmed, on both venues.

A standalone `perpbot sim` runs in a child process. Each round rests `--orders` short-term
post-only bids (GoodTilBlock 20 blocks ahead, ~13 s) far below the touch on the simulator's
dYdX account plus `--long-term` GTT bids, and `--spot-orders` LIMIT_MAKER bids on its Binance
account, all recorded in a fresh store as the bot's; then it times a `perpbot kill --direct`
subprocess from spawn to exit. The CLI exits only after neither the indexer nor Binance lists
any of the bot's orders, and the round checks that itself over both venues' REST too.

    .venv/bin/python tests/bench/bench_kill.py [--orders 30] [--spot-orders 30] [--long-term 0] [--rounds 10]

Prints `kill_direct_p50_secs`, `kill_direct_p99_secs` (target p99 < 2 s), the same for the
kill itself inside the CLI process (its report's `elapsed_secs`: store latch, REST, batch
cancel, confirmation; the difference is interpreter start and imports), and a summary of the
last round's report (cancel messages are batched: 100 per MsgBatchCancel;
long-term orders need one paced cancel each, so they dominate when present).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bot.domain import OrderRequest, Side, TimeInForce
from bot.errors import RateLimited
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.orders import client_id_of
from bot.venues.binance.rest import sign
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support (run as a script)
from support.sim import standalone_sim

BIN = Path(sys.executable).parent


def _env(sim: dict[str, Any], state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env.update({
        "PERPBOT_STATE_DIR": str(state_dir),
        "PERPBOT_NETWORK": "sim",
        "PERPBOT_SIM__MODE": "protocol",
        "PERPBOT_TRADING": "live",
        "PERPBOT_DYDX__INDEXER_REST": sim["indexer_rest"],
        "PERPBOT_DYDX__INDEXER_WS": sim["indexer_ws"],
        "PERPBOT_DYDX__NODE_GRPC": sim["node_grpc"],
        "PERPBOT_DYDX__CHAIN_ID": sim["chain_id"],
        "PERPBOT_DYDX_MNEMONIC": sim["accounts"]["dydx"]["mnemonic"],
        "PERPBOT_BINANCE__REST_URL": sim["binance_rest"],
        "PERPBOT_BINANCE__WS_URL": sim["binance_ws"],
        "PERPBOT_BINANCE_API_KEY": sim["accounts"]["binance"]["api_key"],
        "PERPBOT_BINANCE_API_SECRET": sim["accounts"]["binance"]["api_secret"],
        "PERPBOT_TELEMETRY__LOG_LEVEL": "error",
    })
    return env


def _open_ids(sim: dict[str, Any]) -> set[int]:
    params = {"address": sim["accounts"]["dydx"]["address"], "subaccountNumber": 0,
              "status": ["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"]}
    return {int(o["clientId"]) for o in httpx.get(sim["indexer_rest"] + "/v4/orders", params=params).json()}


def _spot_open_ids(sim: dict[str, Any]) -> set[int]:
    key, secret = sim["accounts"]["binance"]["api_key"], sim["accounts"]["binance"]["api_secret"]
    query = f"timestamp={int(time.time() * 1000)}"
    query += f"&signature={sign(secret, query)}"
    rows = httpx.get(f"{sim['binance_rest']}/api/v3/openOrders?{query}", headers={"X-MBX-APIKEY": key}).json()
    return {cid for o in rows if (cid := client_id_of(o["clientOrderId"])) is not None}


async def _rest_spot_orders(sim: dict[str, Any], db_path: Path, count: int) -> list[int]:
    keys = sim["accounts"]["binance"]
    venue = build_venue(BinanceSettings(rest_url=sim["binance_rest"], ws_url=sim["binance_ws"]), Metrics(),
                        api_key=SecretStr(keys["api_key"]), api_secret=SecretStr(keys["api_secret"]))
    ids = []
    try:
        await venue.load_markets()
        prices = {}
        for market in ("BTC-USDT", "ETH-USDT"):
            bid, _ = await venue.touch(market)
            assert bid is not None
            prices[market] = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
        with Store.open(db_path) as store:
            for i in range(count):
                market = ("BTC-USDT", "ETH-USDT")[i % 2]
                size = Decimal("0.001") if market == "BTC-USDT" else Decimal("0.01")
                order = OrderRequest(store.next_client_id(), market, Side.BUY, size, prices[market],
                                     TimeInForce.POST_ONLY)
                store.record_order("binance", order, time.time_ns())
                while True:
                    try:
                        await venue.place(order)
                        break
                    except RateLimited as exc:  # the venue's order-count window (50 per 10 s)
                        await asyncio.sleep(exc.retry_after_secs or 1.0)
                ids.append(order.client_id)
    finally:
        await venue.close()
    return ids


async def _rest_orders(sim: dict[str, Any], db_path: Path, short: int, long_term: int) -> list[int]:
    gateway = NodeGateway(sim["node_grpc"], sim["chain_id"], sim["accounts"]["dydx"]["mnemonic"],
                          secure=False, broadcasts_per_sec=200)
    venue = DydxVenue(IndexerRest(sim["indexer_rest"]), sim["indexer_ws"], ("BTC-USD", "ETH-USD"), Metrics(),
                      gateway=gateway, account=(gateway.owner, 0), gtb_offset_blocks=20)
    ids = []
    try:
        await venue.load_markets()
        prices = {}
        for market in ("BTC-USD", "ETH-USD"):
            bid, _ = await venue.touch(market)
            assert bid is not None
            prices[market] = (bid * Decimal("0.9")).quantize(Decimal(1))
        with Store.open(db_path) as store:
            for i in range(short + long_term):
                market = ("BTC-USD", "ETH-USD")[i % 2]
                tif = TimeInForce.POST_ONLY if i < short else TimeInForce.GTT
                size, price = Decimal("0.01"), prices[market]
                order = OrderRequest(store.next_client_id(), market, Side.BUY, size, price, tif)
                store.record_order("dydx", order, time.time_ns())
                await venue.place(order)
                ids.append(order.client_id)
    finally:
        await venue.close()
    return ids


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--spot-orders", type=int, default=30)
    parser.add_argument("--long-term", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with standalone_sim(5) as sim:
        times: list[float] = []
        inside: list[float] = []  # kill_direct itself, without interpreter start and imports
        last_report: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for round_no in range(args.rounds):
                state_dir = Path(tmp) / f"round{round_no}"
                state_dir.mkdir()
                db_path = state_dir / "perpbot.sqlite"
                ids = asyncio.run(_rest_orders(sim, db_path, args.orders, args.long_term))
                spot_ids = asyncio.run(_rest_spot_orders(sim, db_path, args.spot_orders))
                deadline = time.monotonic() + 5
                while not (set(ids) <= _open_ids(sim) and set(spot_ids) <= _spot_open_ids(sim)):
                    if time.monotonic() > deadline:
                        raise SystemExit("orders did not rest")
                    time.sleep(0.05)
                started = time.perf_counter()
                result = subprocess.run([str(BIN / "perpbot"), "kill", "--direct", "--reason", "bench"],
                                        env=_env(sim, state_dir), capture_output=True, text=True, timeout=60)
                elapsed = time.perf_counter() - started
                if result.returncode != 0:
                    raise SystemExit(f"kill failed: {result.stdout}{result.stderr}")
                left = (set(ids) & _open_ids(sim)) | (set(spot_ids) & _spot_open_ids(sim))
                if left:
                    raise SystemExit(f"{len(left)} orders still open after the kill")
                last_report = json.loads(result.stdout)
                times.append(elapsed)
                inside.append(float(last_report["elapsed_secs"]))
        times.sort()
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print(f"orders_per_round: dydx {args.orders} short-term + {args.long_term} long-term, "
              f"binance {args.spot_orders}; rounds: {len(times)}")
        print(f"kill_direct_p50_secs: {statistics.median(times):.3f}")
        print(f"kill_direct_p99_secs: {p99:.3f}")
        print(f"kill_direct_max_secs: {times[-1]:.3f}")
        inside.sort()
        print(f"kill_direct_in_process_p50_secs: {statistics.median(inside):.3f} "
              f"(p99 {inside[min(len(inside) - 1, round(0.99 * (len(inside) - 1)))]:.3f}; "
              f"the rest is interpreter start and imports)")
        per_venue = ", ".join(f"{name} {len(v['cancelled'])}" for name, v in last_report["venues"].items())
        print(f"cancelled_last_round: {len(last_report['cancelled'])} ({per_venue}), "
              f"errors: {len(last_report['errors'])}")
        return 0 if p99 < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
