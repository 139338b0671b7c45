"""Issue 3's acceptance path: the unmodified dydx-v4-client NodeClient places and cancels
orders on the running simulator, a plain websockets client sees them (and a fill) on
v4_subaccounts, and the REST endpoints agree with what the stream said."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from dydx_v4_client.indexer.rest.constants import OrderType
from dydx_v4_client.network import NodeConfig, make_insecure
from dydx_v4_client.node.client import NodeClient
from dydx_v4_client.node.market import Market
from dydx_v4_client.wallet import Wallet
from support.sim import SimProcess, running_simulator
from v4_proto.dydxprotocol.clob.order_pb2 import Order

from bot.sim.runner import Simulator
from bot.sim.server.node import USDC_DENOM

GTT = Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED


async def blocking(coro: Coroutine[Any, Any, Any]) -> Any:
    """The client's async methods block: run them off the loop."""
    return await asyncio.to_thread(asyncio.run, coro)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(seed=5, step_secs=0.02) as simulator:
        yield simulator


async def recv_until(ws: Any, pred: Any, timeout_secs: float = 10.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_secs):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if pred(seen):
                return seen


def orders_in(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for f in frames for o in (f.get("contents") or {}).get("orders", [])]


def fills_in(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for f in frames for x in (f.get("contents") or {}).get("fills", [])]


async def test_client_orders_show_up_on_the_stream_and_rest(sim: Simulator) -> None:
    ep = sim.endpoints()
    account = ep["accounts"]["dydx"]
    address = account["address"]
    node_config = partial(NodeConfig, ep["chain_id"], chaintoken_denom="adv4tnt", usdc_denom=USDC_DENOM)
    network = make_insecure(node_config, rest_indexer=ep["indexer_rest"],
                            websocket_indexer=ep["indexer_ws"], node_url=ep["node_grpc"])
    client = await NodeClient.connect(network.node)
    wallet = await blocking(Wallet.from_mnemonic(client, account["mnemonic"], address))
    async with httpx.AsyncClient(base_url=ep["indexer_rest"]) as rest:
        markets = (await rest.get("/v4/perpetualMarkets", params={"ticker": "BTC-USD"})).json()
        market = Market(markets["markets"]["BTC-USD"])
        book = (await rest.get("/v4/orderbooks/perpetualMarket/BTC-USD")).json()
        best_bid, best_ask = float(book["bids"][0]["price"]), float(book["asks"][0]["price"])

        async with websockets.connect(ep["indexer_ws"]) as ws:
            await ws.recv()  # connected
            subscribe = {"type": "subscribe", "channel": "v4_subaccounts", "id": f"{address}/0"}
            await ws.send(json.dumps(subscribe))
            await recv_until(ws, lambda s: s[-1]["type"] == "subscribed")

            height = await blocking(client.latest_block_height())
            short_id = market.order_id(address, 0, random.randrange(1, 2**31), 0)
            short = market.order(short_id, OrderType.LIMIT, Order.Side.SIDE_BUY, size=0.01,
                                 price=best_bid - 100, time_in_force=GTT,
                                 reduce_only=False, post_only=True, good_til_block=height + 15)
            assert (await blocking(client.place_order(wallet, short))).tx_response.code == 0

            long_id = market.order_id(address, 0, random.randrange(1, 2**31), 64)
            long_term = market.order(long_id, OrderType.LIMIT, Order.Side.SIDE_BUY, size=0.01,
                                     price=best_bid - 200,
                                     time_in_force=GTT,
                                     reduce_only=False, good_til_block_time=int(time.time()) + 600)
            assert (await blocking(client.place_order(wallet, long_term))).tx_response.code == 0

            taker_id = market.order_id(address, 0, random.randrange(1, 2**31), 0)
            taker = market.order(taker_id, OrderType.LIMIT, Order.Side.SIDE_BUY, size=0.002,
                                 price=best_ask + 100, time_in_force=Order.TimeInForce.TIME_IN_FORCE_IOC,
                                 reduce_only=False, good_til_block=height + 15)
            assert (await blocking(client.place_order(wallet, taker))).tx_response.code == 0

            wanted = {str(short_id.client_id), str(long_id.client_id)}
            frames = await recv_until(ws, lambda s: wanted <= {o.get("clientId") for o in orders_in(s)}
                                      and fills_in(s))
            cancel = await blocking(client.cancel_order(wallet, short_id, good_til_block=height + 20))
            assert cancel.tx_response.code == 0
            frames += await recv_until(ws, lambda s: any(
                o.get("clientId") == str(short_id.client_id) and o.get("status") == "CANCELED"
                for o in orders_in(s)))

        stream_fills = {f["id"] for f in fills_in(frames)}
        params = {"address": address, "subaccountNumber": 0}
        rest_fills = {f["id"] for f in (await rest.get("/v4/fills", params=params)).json()["fills"]}
        assert stream_fills and stream_fills <= rest_fills
        rest_orders = {o["clientId"]: o for o in (await rest.get("/v4/orders", params=params)).json()}
        assert rest_orders[str(short_id.client_id)]["status"] == "CANCELED"
        assert rest_orders[str(long_id.client_id)]["status"] == "OPEN"
        positions = (await rest.get("/v4/perpetualPositions", params=params)).json()["positions"]
        filled = sum(float(f["size"]) for f in fills_in(frames))
        assert any(p["market"] == "BTC-USD" and abs(float(p["size"]) - filled) < 1e-9 for p in positions)


def test_perpbot_sim_prints_endpoints_and_takes_scenarios(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[scenarios]]\nname = "indexer_lag"\nat_s = 0\nduration_s = 30\nblocks = 25\n')
    sim = SimProcess(9, "--scenario", str(scenario))
    try:
        endpoints = sim.endpoints
        for key in ("indexer_rest", "indexer_ws", "node_grpc", "binance_rest", "binance_ws", "admin"):
            assert endpoints[key]
        assert endpoints["accounts"]["dydx"]["address"].startswith("dydx1")
        assert endpoints["accounts"]["binance"]["api_key"]
        admin = endpoints["admin"]
        listed = httpx.get(admin + "/scenarios").json()
        assert "chain_halt" in listed["scenarios"] and "indexer_lag" in listed["active"]
        state = httpx.get(admin + "/state").json()
        assert state["indexer_lag_blocks"] == 25
        started = httpx.post(admin + "/scenario", json={"name": "chain_halt", "duration_s": 5})
        assert started.status_code == 200 and "chain_halt" in started.json()["active"]
        h1 = httpx.get(endpoints["indexer_rest"] + "/v4/height").json()["height"]
        time.sleep(1.5)
        h2 = httpx.get(endpoints["indexer_rest"] + "/v4/height").json()["height"]
        assert h1 == h2  # halted: no blocks
        bad = httpx.post(admin + "/scenario", json={"name": "meteor"})
        assert bad.status_code == 400 and "name" in bad.json()["error"]
    finally:
        assert sim.stop() == 0


def test_perpbot_sim_rejects_a_bad_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.json"
    scenario.write_text(json.dumps({"scenarios": [{"name": "chain_halt", "duration_s": -1}]}))
    perpbot = Path(sys.executable).parent / "perpbot"
    result = subprocess.run([str(perpbot), "sim", "--scenario", str(scenario)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "scenarios[0]" in result.stderr
