"""Going live with a trade-only key, end to end on a running `perpbot sim` (real processes).

The operator grants a trading key with the owner mnemonic (`perpbot keys grant`), then runs the
daemon with only the trading key (no owner mnemonic in its environment): it reaches an operator
target through the chain, `kill --direct` cancels resting orders with the same key, `keys
revoke` removes it. Neither mnemonic shows up in any output, log, status or the store.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import base_env
from support.sim import BIN, standalone_sim
from support.wait import eventually

from bot.domain import OrderRequest, Side, TimeInForce
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

pytestmark = pytest.mark.slow


@pytest.fixture
def sim() -> Iterator[dict[str, Any]]:
    with standalone_sim(13) as endpoints:
        yield endpoints


def endpoints(sim: dict[str, Any]) -> dict[str, str]:
    return {"PERPBOT_DYDX__INDEXER_REST": sim["indexer_rest"], "PERPBOT_DYDX__INDEXER_WS": sim["indexer_ws"],
            "PERPBOT_DYDX__NODE_GRPC": sim["node_grpc"], "PERPBOT_DYDX__CHAIN_ID": sim["chain_id"]}


def perpbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "perpbot"), *args], cwd=tmp_path, env=base_env(tmp_path / "cli", **env),
                          capture_output=True, text=True, timeout=60)


def open_ids(sim: dict[str, Any]) -> set[int]:
    params = {"address": sim["accounts"]["dydx"]["address"], "subaccountNumber": 0,
              "status": ["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"]}
    return {int(o["clientId"]) for o in httpx.get(sim["indexer_rest"] + "/v4/orders", params=params).json()}


def venue_btc(sim: dict[str, Any]) -> list[Decimal]:
    params = {"address": sim["accounts"]["dydx"]["address"], "subaccountNumber": 0, "status": "OPEN"}
    positions = httpx.get(sim["indexer_rest"] + "/v4/perpetualPositions", params=params).json()["positions"]
    return [Decimal(p["size"]) for p in positions if p["market"] == "BTC-USD"]


async def rest_as_the_bot(sim: dict[str, Any], key: dict[str, Any], db_path: Path) -> list[int]:
    """Rest two post-only bids and one GTT bid far below the touch with the trading key, recorded in
    the bot's store as the order manager would."""
    gateway = NodeGateway(sim["node_grpc"], sim["chain_id"], key["trading_mnemonic"], secure=False,
                          owner_address=key["address"], authenticator_ids=[key["authenticator_id"]],
                          broadcasts_per_sec=50)
    venue = DydxVenue(IndexerRest(sim["indexer_rest"]), sim["indexer_ws"], ("BTC-USD",), Metrics(),
                      gateway=gateway, account=(key["address"], 0), gtb_offset_blocks=20)
    ours = []
    try:
        await venue.load_markets()
        bid, _ = await venue.touch("BTC-USD")
        assert bid is not None
        price = (bid * Decimal("0.9")).quantize(Decimal(1))
        with Store.open(db_path) as store:
            for tif in (TimeInForce.POST_ONLY, TimeInForce.POST_ONLY, TimeInForce.GTT):
                order = OrderRequest(store.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.001"), price,
                                     tif)
                store.record_order("dydx", order, time.time_ns())
                await venue.place(order)
                ours.append(order.client_id)
    finally:
        await venue.close()
    return ours


async def test_grant_trade_with_only_the_trading_key_kill_direct_and_revoke(  # type: ignore[no-untyped-def]
    daemon_factory, sim: dict[str, Any], tmp_path: Path
) -> None:
    owner = sim["accounts"]["dydx"]
    grant = perpbot(tmp_path, "keys", "grant", "--markets", "BTC-USD",
                    PERPBOT_DYDX_MNEMONIC=owner["mnemonic"], **endpoints(sim))
    assert grant.returncode == 0, grant.stderr
    lines = grant.stdout.strip().splitlines()
    assert len(lines) == 1 and len(grant.stderr.strip().splitlines()) == 1, (grant.stdout, grant.stderr)
    key = json.loads(lines[0])
    assert set(key) == {"address", "authenticator_id", "trading_mnemonic"}
    assert key["address"] == owner["address"]
    assert len(key["trading_mnemonic"].split()) == 24 and "store trading_mnemonic now" in grant.stderr
    assert owner["mnemonic"] not in grant.stdout + grant.stderr

    listed = perpbot(tmp_path, "keys", "list", PERPBOT_DYDX_ADDRESS=owner["address"], **endpoints(sim))
    assert listed.returncode == 0, listed.stderr
    authenticators = json.loads(listed.stdout)["authenticators"]
    (granted,) = [a for a in authenticators if a["id"] == key["authenticator_id"]]
    parts = [(c["type"], c.get("messages") or c.get("subaccounts") or c.get("clob_pair_ids"))
             for c in granted["of"]]
    trade = ["/dydxprotocol.clob.MsgPlaceOrder", "/dydxprotocol.clob.MsgCancelOrder",
             "/dydxprotocol.clob.MsgBatchCancel"]
    assert parts[1:] == [("MessageFilter", trade), ("SubaccountFilter", [0]), ("ClobPairIdFilter", [0])]

    # A second grant for a key the operator already has: a new id, nothing secret printed.
    other = perpbot(tmp_path, "keys", "grant", "--markets", "ETH-USD",
                    PERPBOT_DYDX_MNEMONIC=owner["mnemonic"],
                    PERPBOT_DYDX_TRADING_MNEMONIC=key["trading_mnemonic"], **endpoints(sim))
    assert other.returncode == 0 and other.stderr == "", other.stderr
    assert json.loads(other.stdout) == {"address": owner["address"],
                                        "authenticator_id": key["authenticator_id"] + 1}

    trading_env = {**endpoints(sim), "PERPBOT_TRADING": "live", "PERPBOT_SIM__MODE": "protocol",
                   "PERPBOT_MARKETS": '["BTC-USD"]', "PERPBOT_STRATEGY__TARGETS": '{"BTC-USD": "0"}',
                   "PERPBOT_STRATEGY__CARRY__ENABLED": "false", "PERPBOT_DYDX__GTB_OFFSET_BLOCKS": "20",
                   "PERPBOT_DYDX_ADDRESS": key["address"],
                   "PERPBOT_DYDX_TRADING_MNEMONIC": key["trading_mnemonic"],
                   "PERPBOT_DYDX_AUTHENTICATOR_ID": str(key["authenticator_id"]),
                   "PERPBOT_TELEMETRY__LOG_LEVEL": "debug"}
    daemon = daemon_factory(**trading_env).start()
    assert "PERPBOT_DYDX_MNEMONIC" not in daemon.env
    status = daemon.status()
    dydx = status["account"]["dydx"]  # identity, plus the subaccount as the venue reports it
    assert (dydx["address"], dydx["key"]) == (owner["address"], "permissioned")
    assert "permissioned key" in daemon.cli("status").stdout
    result = daemon.cli("target", "BTC-USD", "0.003")
    assert result.returncode == 0, result.stderr
    eventually(lambda: Decimal(daemon.status()["markets"]["BTC-USD"]["position"]) == Decimal("0.003"),
               timeout_secs=40)
    assert venue_btc(sim) == [Decimal("0.003")]
    final_status = daemon.cli("status", "--json")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL  # gone: the operator kills directly

    ours = await rest_as_the_bot(sim, key, daemon.state_dir / "perpbot.sqlite")
    eventually(lambda: set(ours) <= open_ids(sim), timeout_secs=5)
    killed = daemon.cli("kill", "--direct", "--reason", "trading key only")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    report = json.loads(killed.stdout)
    assert set(ours) <= set(report["cancelled"]) and report["remaining_open_orders"] == [], report
    assert open_ids(sim) == set()

    revoked = perpbot(tmp_path, "keys", "revoke", str(key["authenticator_id"]),
                      PERPBOT_DYDX_MNEMONIC=owner["mnemonic"], **endpoints(sim))
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"address": owner["address"], "revoked": key["authenticator_id"]}
    listed = perpbot(tmp_path, "keys", "list", PERPBOT_DYDX_ADDRESS=owner["address"], **endpoints(sim))
    assert key["authenticator_id"] not in [a["id"] for a in json.loads(listed.stdout)["authenticators"]]
    again = perpbot(tmp_path, "keys", "revoke", str(key["authenticator_id"]),
                    PERPBOT_DYDX_MNEMONIC=owner["mnemonic"], **endpoints(sim))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr

    db_dump = "\n".join(sqlite3.connect(daemon.state_dir / "perpbot.sqlite").iterdump())
    for text in (daemon.log(), final_status.stdout, killed.stdout, killed.stderr, listed.stdout,
                 revoked.stdout + revoked.stderr, db_dump):
        assert key["trading_mnemonic"] not in text and owner["mnemonic"] not in text
        assert " ".join(key["trading_mnemonic"].split()[:3]) not in text


def test_live_on_mainnet_with_the_owner_mnemonic_refuses_to_start(tmp_path: Path) -> None:
    env = {"PERPBOT_NETWORK": "mainnet", "PERPBOT_TRADING": "live", "PERPBOT_LIVE_CONFIRM": "yes",
           "PERPBOT_DYDX_MNEMONIC": "abandon " * 23 + "art"}
    result = perpbot(tmp_path, "run", **env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("perpbot:")]
    assert len(errors) == 1 and "dydx_mnemonic" in errors[0] and "PERPBOT_ALLOW_OWNER_KEY" in errors[0]
    assert "abandon" not in result.stdout + result.stderr
    # A trading key without its authenticator id names the missing key, before any network call.
    result = perpbot(tmp_path, "run", PERPBOT_NETWORK="mainnet", PERPBOT_TRADING="live",
                     PERPBOT_LIVE_CONFIRM="yes", PERPBOT_DYDX_TRADING_MNEMONIC="abandon " * 23 + "art",
                     PERPBOT_DYDX_ADDRESS="dydx1" + "q" * 38)
    assert result.returncode == 2 and "dydx_authenticator_id" in result.stderr, result.stderr
