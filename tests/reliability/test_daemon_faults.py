"""Process faults on the real daemon (`perpbot run`, live on an external `perpbot sim`).

- SIGKILL at random points: a bounded number of kills at seeded random delays (the seed is
  printed; set PERPBOT_FAULT_SEED to replay one), then a restart whose reconciliation must leave
  the store equal to the venue.
- SIGTERM during a TWAP: the daemon exits 0 inside its budget and leaves nothing working.

The venue's truth is read over the simulator's REST; the store straight from SQLite.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability.invariants import (
    assert_exposure_within,
    assert_no_lost_fill,
    assert_no_open_orders,
    assert_positions_match,
)
from support.daemon import START_TIMEOUT_SECS, Daemon
from support.sim import standalone_sim
from support.wait import eventually

from bot.store import Store

KILLS = 3
KILL_POINTS = ("start", "reconciled", "order_submitted")
MAX_NOTIONAL_USD = Decimal(4000)
PRICE_MOVE_TOLERANCE = Decimal("1.02")  # sizing uses the mark at decision time; fills land later


@pytest.fixture
def external_sim() -> Iterator[dict[str, Any]]:
    with standalone_sim(5) as endpoints:
        yield endpoints


def live_env(ep: dict[str, Any]) -> dict[str, str]:
    return {
        "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live",
        "PERPBOT_DYDX__INDEXER_REST": ep["indexer_rest"], "PERPBOT_DYDX__INDEXER_WS": ep["indexer_ws"],
        "PERPBOT_DYDX__NODE_GRPC": ep["node_grpc"], "PERPBOT_DYDX__CHAIN_ID": ep["chain_id"],
        "PERPBOT_DYDX_MNEMONIC": ep["accounts"]["dydx"]["mnemonic"],
        "PERPBOT_EXECUTION__TWAP_DURATION_SECS": "4",
        "PERPBOT_STRATEGY__MAX_NOTIONAL_USD": str(MAX_NOTIONAL_USD),
    }


class Venue:
    """The simulator's account over its indexer REST."""

    def __init__(self, ep: dict[str, Any]) -> None:
        self.url = ep["indexer_rest"]
        self.params = {"address": ep["accounts"]["dydx"]["address"], "subaccountNumber": 0}

    def _get(self, path: str, **params: Any) -> Any:
        return httpx.get(self.url + path, params={**self.params, **params}, timeout=5).json()

    def open_ids(self) -> list[int]:
        return [int(o["clientId"]) for o in self._get("/v4/orders", status=["OPEN", "BEST_EFFORT_OPENED"])]

    def fills(self) -> dict[str, Decimal]:
        return {f["id"]: Decimal(f["size"]) for f in self._get("/v4/fills", limit=1000)["fills"]}

    def positions(self) -> dict[str, Decimal]:
        return {p["market"]: Decimal(p["size"]) for p in self._get("/v4/perpetualPositions")["positions"]
                if p["status"] == "OPEN"}


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.log_events() if e.get("event") == name]


def submitted_ids(daemons: list[Daemon]) -> list[int]:
    return [e["client_order_id"] for d in daemons for e in events(d, "order_submitted")]


def assert_invariants(daemons: list[Daemon], venue: Venue, store_path: Path, context: str) -> None:
    ids = submitted_ids(daemons)
    assert len(ids) == len(set(ids)), f"{context}: a client id was sent twice: {sorted(ids)}"
    with Store.open(store_path) as store:
        assert_no_open_orders(store, venue.open_ids())
        assert_no_lost_fill(store, venue.fills())
        assert_positions_match(store, venue.positions())
        fills = store.fills()
        lowest: dict[str, Decimal] = {}
        for f in fills:
            lowest[f.market] = min(lowest.get(f.market, f.price), f.price)
        caps = {m: MAX_NOTIONAL_USD * PRICE_MOVE_TOLERANCE / p for m, p in lowest.items()}
        assert_exposure_within(fills, caps)


def reconciled(daemon: Daemon) -> list[dict[str, Any]]:
    return events(daemon, "reconciled") or events(daemon, "reconcile_position_mismatch")


def restart_and_reconcile(start: Callable[[], Daemon]) -> Daemon:
    daemon = start()
    try:
        eventually(lambda: reconciled(daemon), START_TIMEOUT_SECS)
    except AssertionError:
        raise AssertionError(f"no reconciliation: {daemon.log()[-3000:]}") from None
    assert daemon.stop() == 0, daemon.log()[-2000:]
    return daemon


def kill_points(rng: random.Random) -> list[tuple[str, float]]:
    """Where each kill lands: right after start (mid-reconciliation), after reconciliation, or
    after an order went out; plus a random delay. At least one kill lands while trading."""
    points = [rng.choice(KILL_POINTS) for _ in range(KILLS)]
    if "order_submitted" not in points:
        points[rng.randrange(KILLS)] = "order_submitted"
    return [(point, rng.uniform(0.0, 1.5)) for point in points]


def test_sigkill_at_random_points_then_restart_reconciles(daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]
    seed = int(os.environ.get("PERPBOT_FAULT_SEED", random.randrange(2**32)))
    print(f"PERPBOT_FAULT_SEED={seed}")
    env = live_env(external_sim)
    daemons: list[Daemon] = []
    for round_, (point, delay) in enumerate(kill_points(random.Random(seed))):
        daemon = daemon_factory(**env).start()
        daemons.append(daemon)
        if point != "start":
            eventually(lambda d=daemon, p=point: events(d, p), START_TIMEOUT_SECS)
        print(f"round {round_}: SIGKILL {delay:.2f}s after {point}")
        time.sleep(delay)
        daemon.stop(signal.SIGKILL)
    assert submitted_ids(daemons), f"the daemon traded before being killed (seed {seed})"
    daemons.append(restart_and_reconcile(lambda: daemon_factory(**env).start()))
    assert_invariants(daemons, Venue(external_sim), daemons[0].state_dir / "perpbot.sqlite", f"seed {seed}")


def test_sigterm_during_a_twap_exits_clean_and_leaves_nothing_working(daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]
    env = live_env(external_sim)
    venue = Venue(external_sim)
    daemon = daemon_factory(**env).start()
    # Mid-TWAP: a decision planned a parent and its first child went out, the parent is not done.
    eventually(lambda: events(daemon, "order_submitted"), START_TIMEOUT_SECS)
    assert not events(daemon, "parent_done")
    assert daemon.stop(signal.SIGTERM, timeout=15) == 0, daemon.log()[-2000:]
    assert events(daemon, "daemon_stopped")
    assert venue.open_ids() == []  # the shutdown cancelled what it had resting
    daemons = [daemon, restart_and_reconcile(lambda: daemon_factory(**env).start())]
    assert_invariants(daemons, venue, daemon.state_dir / "perpbot.sqlite", "sigterm")


def test_venue_503_at_start_is_retried_then_the_daemon_runs(daemon_factory, external_sim) -> None:  # type: ignore[no-untyped-def]
    """More 503s than one read's own retries absorb: start-up waits them out, a line per attempt."""
    burst = {"name": "http_5xx", "duration_s": 60, "count": 8, "retry_after_secs": 0.1}
    assert httpx.post(external_sim["admin"] + "/scenario", json=burst, timeout=5).status_code == 200
    daemon = daemon_factory(**live_env(external_sim)).start()
    eventually(lambda: reconciled(daemon), 30)
    retries = events(daemon, "venue_start_retry")
    assert retries, daemon.log()[-2000:]
    assert retries[0]["what"] == "dydx markets" and "503" in retries[0]["error"]
    assert daemon.stop() == 0
