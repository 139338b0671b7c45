"""The watchdog in a real daemon on the protocol simulator: faults in, risk modes out, recovery.

Scenarios are triggered through the simulator's admin endpoint (`status.sim.admin`); thresholds
are shortened through env vars so each test runs in well under 30 s.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from support.daemon import Daemon
from support.wait import eventually

FAST = {
    "PERPBOT_SIM__MODE": "protocol",
    "PERPBOT_WATCHDOG__SAMPLE_INTERVAL_SECS": "0.25",
    "PERPBOT_WATCHDOG__BRIDGE_POLL_SECS": "0.5",
    "PERPBOT_WATCHDOG__HOLD_OFF_SECS": "2",
    "PERPBOT_WATCHDOG__HEAD_STALL_DEGRADED_SECS": "1.5",
    "PERPBOT_WATCHDOG__HEAD_STALL_CRITICAL_SECS": "3",
    "PERPBOT_WATCHDOG__BLOCK_INTERVAL_WINDOW_SECS": "3",
    "PERPBOT_WATCHDOG__FEED_STALE_DEGRADED_SECS": "2",
    "PERPBOT_WATCHDOG__INDEXER_LAG_DEGRADED_BLOCKS": "10",
}


class Api:
    """The daemon's control API over httpx (faster than a CLI subprocess per poll)."""

    def __init__(self, daemon: Daemon) -> None:
        # daemon.json is written in place (not atomically): read it once it parses.
        self.url = eventually(lambda: _endpoint(daemon), timeout_secs=5)
        token = (daemon.state_dir / "control.token").read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}

    def status(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/v1/status", headers=self.headers, timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def mode(self) -> tuple[str, str]:
        s = self.status()
        return s["risk_mode"], s.get("risk_reason") or ""


def _endpoint(daemon: Daemon) -> str | None:
    try:
        return str(json.loads((daemon.state_dir / "daemon.json").read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None


def start(daemon_factory: Any, **env: str) -> tuple[Daemon, Api, dict[str, Any]]:
    daemon = daemon_factory(**{**FAST, **env}).start()
    api = Api(daemon)
    # Warm: the feed delivers, the node answers, and the watchdog has nothing to say.
    status = eventually(lambda: (s := api.status())["block_height"] > 0 and s["risk_mode"] == "NORMAL" and s,
                        timeout_secs=20)
    return daemon, api, status


def trigger(status: dict[str, Any], name: str, duration_s: float, **params: Any) -> float:
    response = httpx.post(status["sim"]["admin"] + "/scenario",
                          json={"name": name, "duration_s": duration_s, **params}, timeout=5)
    assert response.status_code == 200, response.text
    return time.monotonic()


def wait_mode(api: Api, mode: str, timeout_secs: float) -> tuple[float, str]:
    """Wait for a risk mode; return (when, its reason)."""
    reason = eventually(lambda: (m := api.mode())[0] == mode and (m[1] or "-"), timeout_secs=timeout_secs,
                        interval_secs=0.1)
    return time.monotonic(), reason


def test_chain_halt_halts_within_detection_time_and_recovers_after_hold_off(daemon_factory: Any) -> None:
    daemon, api, status = start(daemon_factory, PERPBOT_TRADING="live")
    started = trigger(status, "chain_halt", 5)
    halted_at, reason = wait_mode(api, "HALTED", timeout_secs=6)
    # critical after 3 s without a block, sampled every 0.25 s
    assert halted_at - started < 3 + 1.5, halted_at - started
    assert "chain_head_age" in reason
    # never back before the chain is back (5 s) plus the hold-off (2 s)
    assert api.mode()[0] == "HALTED"
    recovered_at, reason = wait_mode(api, "NORMAL", timeout_secs=15)
    assert recovered_at - started >= 5 + 2
    assert "recovered" in reason
    events = [e for e in daemon.log_events() if e.get("event") == "watchdog_input_changed"]
    assert any(e["input"] == "chain_head_age" and e["new"] == "CRITICAL" for e in events)
    assert daemon.stop() == 0


def test_indexer_lag_goes_reduce_only_then_recovers(daemon_factory: Any) -> None:
    daemon, api, status = start(daemon_factory)
    started = trigger(status, "indexer_lag", 4, blocks=30)
    _, reason = wait_mode(api, "REDUCE_ONLY", timeout_secs=5)
    assert "indexer_lag" in reason
    assert api.mode()[0] != "HALTED"  # a lagging indexer is not a dead chain
    recovered_at, _ = wait_mode(api, "NORMAL", timeout_secs=25)
    assert recovered_at - started >= 4 + 2
    metrics = httpx.get(api.url + "/metrics", timeout=5).text
    assert 'perpbot_watchdog_input_state{input="indexer_lag"}' in metrics
    assert 'perpbot_chain_height{source="indexer"}' in metrics
    assert daemon.stop() == 0


def test_withdrawal_gating_takes_the_configured_reaction(daemon_factory: Any) -> None:
    daemon, api, status = start(daemon_factory, PERPBOT_WATCHDOG__WITHDRAWAL_GATING_ACTION="halt")
    trigger(status, "withdrawal_gating", 3)
    _, reason = wait_mode(api, "HALTED", timeout_secs=5)
    assert "withdrawal_gating" in reason and "exits frozen" in reason
    assert sum(api.status()["open_orders"].values()) == 0  # HALTED cancelled everything
    wait_mode(api, "NORMAL", timeout_secs=15)
    assert daemon.stop() == 0


def test_feed_stall_degrades_then_recovers(daemon_factory: Any) -> None:
    daemon, api, status = start(daemon_factory)
    trigger(status, "ws_stall", 4)
    _, reason = wait_mode(api, "REDUCE_ONLY", timeout_secs=5)
    assert "feed:" in reason
    wait_mode(api, "NORMAL", timeout_secs=15)
    assert daemon.stop() == 0
