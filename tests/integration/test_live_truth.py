"""Live on the embedded protocol simulator, the daemon takes money and market facts from the venue:

- equity, fees and margin in `status` are the dYdX subaccount's (funded with
  PERPBOT_SIM__ACCOUNT_EQUITY_USD, fee tier from the node), not `paper.*`, and sizing follows them;
- CANCEL_ONLY on BTC-USD: no new BTC-USD order reaches the venue during the window (read on the
  simulator's own REST), none of ours is left open, trading resumes after;
- FINAL_SETTLEMENT: the position is closed by our reduce-only orders before the settlement.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
from support.wait import eventually

from bot.sim.accounts import sim_accounts

ADDRESS = sim_accounts()["dydx"]["address"]


def live_env(**extra: str) -> dict[str, str]:
    """One market, no carry (so no hedge venue: equity is the dYdX subaccount's alone)."""
    return {
        "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live",
        "PERPBOT_MARKETS": '["BTC-USD"]', "PERPBOT_STRATEGY__TARGETS": "{}",
        "PERPBOT_STRATEGY__CARRY__ENABLED": "false", "PERPBOT_STRATEGY__CARRY_BUDGET": "0",
        "PERPBOT_STRATEGY__DIRECTIONAL_BUDGET": "1",
        "PERPBOT_PAPER__INITIAL_EQUITY_USD": "10000",  # the paper value the live daemon must ignore
        "PERPBOT_WATCHDOG__ENABLED": "false",
        **extra,
    }


class Control:
    def __init__(self, state_dir: Any) -> None:
        self.url = json.loads((state_dir / "daemon.json").read_text())["url"]
        self.headers = {"Authorization": f"Bearer {(state_dir / 'control.token').read_text().strip()}"}

    def status(self) -> dict[str, Any]:
        return httpx.get(self.url + "/v1/status", headers=self.headers, timeout=5).json()

    def target(self, market: str, size: str) -> None:
        response = httpx.post(self.url + "/v1/target", headers=self.headers, timeout=5,
                              json={"market": market, "size": size})
        assert response.status_code == 200, response.text


def _orders(indexer: str) -> list[dict[str, Any]]:
    rows = httpx.get(indexer + "/v4/orders", params={"address": ADDRESS, "subaccountNumber": 0,
                                                      "ticker": "BTC-USD", "limit": 1000}).json()
    return list(rows)


def _fills(indexer: str) -> list[dict[str, Any]]:
    params = {"address": ADDRESS, "subaccountNumber": 0, "limit": 1000}
    return [f for f in httpx.get(indexer + "/v4/fills", params=params).json()["fills"]
            if f["market"] == "BTC-USD"]


def _market(indexer: str) -> dict[str, Any]:
    markets = httpx.get(indexer + "/v4/perpetualMarkets", params={"ticker": "BTC-USD"}).json()["markets"]
    return dict(markets["BTC-USD"])


def test_equity_fees_and_sizing_come_from_the_venue_not_from_paper(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    # The "0.5x gives ~1,170 USD" is checked with base units (target parsing is issue #18):
    # a 1 BTC target capped at 0.5x leverage of the equity lands at ~0.5 x 2345.67 USD of notional.
    daemon = daemon_factory(**live_env(
        PERPBOT_SIM__ACCOUNT_EQUITY_USD="2345.67", PERPBOT_SIM__MAKER_FEE_RATE="0.00002",
        PERPBOT_SIM__TAKER_FEE_RATE="0.00035", PERPBOT_STRATEGY__MAX_LEVERAGE="0.5",
        PERPBOT_STRATEGY__TARGET_VOL_ANNUAL="100", PERPBOT_STRATEGY__TARGETS='{"BTC-USD": "1"}',
        PERPBOT_STRATEGY__ADVERSE_FUNDING_CAP_FACTOR="1",
        PERPBOT_EXECUTION__PASSIVE_WHEN_FUNDING_FAVOURS="false")).start()
    control = Control(daemon.state_dir)
    first = eventually(lambda: (s := control.status())["account"]["dydx"].get("equity") and s, 20)
    assert Decimal(first["equity"]) == Decimal("2345.67"), first["account"]
    dydx = first["account"]["dydx"]
    assert dydx["address"] == ADDRESS and dydx["source"] == "venue"
    assert Decimal(dydx["free_collateral"]) <= Decimal("2345.67")
    assert first["fees"]["dydx"] == {"maker": "0.00002", "taker": "0.00035", "source": "dydx:fee_tier 1"}
    assert first["fees"]["dydx"]["taker"] != "0.0005"  # paper.taker_fee_rate's default
    assert first["markets"]["BTC-USD"]["market_status"] == "ACTIVE"

    def traded() -> dict[str, Any] | None:
        s = control.status()
        m = s["markets"]["BTC-USD"]
        return s if Decimal(m["position"]) != 0 and Decimal(m["position"]) == Decimal(m["target"]) else None

    done = eventually(traded, 60)
    market = done["markets"]["BTC-USD"]
    notional = Decimal(market["position"]) * Decimal(market["oracle_price"])
    sizing = market["sizing"]  # the thesis (1 BTC) is cut by the hard leverage cap
    assert sizing["limited_by"] == "leverage"  # equity (one market) x max_leverage (0.5)
    assert Decimal("1150") < Decimal(sizing["cap_usd"]) < Decimal("1175"), sizing
    assert Decimal("1100") < notional < Decimal("1200"), notional  # 0.5 x 2345.67, not 0.5 x 10000
    account = done["account"]["dydx"]
    assert Decimal(account["equity"]) < Decimal("2345.67")  # fees paid, read back from the venue
    assert Decimal(account["initial_margin"]) > 0 and Decimal(account["margin_use"]) > 0
    print(f"venue equity {first['equity']} -> BTC notional {notional:.2f} USD; fees {first['fees']['dydx']}")
    assert daemon.stop() == 0


def test_cancel_only_sends_nothing_in_the_window_and_trading_resumes_after(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    # A taker TWAP (a child every 2 s) is running when BTC-USD goes CANCEL_ONLY for 8 s. (That a
    # *resting* child is cancelled is shown in-process, test_execution.py: on this simulator a
    # post-only child at the touch fills within a step or two, so none rests long enough to test.)
    daemon = daemon_factory(**live_env(
        PERPBOT_EXECUTION__TWAP_DURATION_SECS="24", PERPBOT_EXECUTION__TWAP_SLICES="12",
        PERPBOT_EXECUTION__PASSIVE_WHEN_FUNDING_FAVOURS="false")).start()
    control = Control(daemon.state_dir)
    indexer = control.status()["sim"]["indexer_rest"]
    admin = control.status()["sim"]["admin"]
    control.target("BTC-USD", "0.04")
    eventually(lambda: len(_orders(indexer)) >= 2, 30)  # the TWAP is under way
    window = {"name": "market_cancel_only", "duration_s": 8, "market": "BTC-USD"}
    assert httpx.post(admin + "/scenario", json=window).status_code == 200
    eventually(lambda: _market(indexer)["status"] == "CANCEL_ONLY", 5)
    started = time.monotonic()
    before = {o["clientId"] for o in _orders(indexer)}
    eventually(lambda: control.status()["markets"]["BTC-USD"]["market_status"] == "CANCEL_ONLY", 5)
    held = Decimal(control.status()["markets"]["BTC-USD"]["position"])
    assert held < Decimal("0.04")
    while time.monotonic() - started < 7:
        assert {o["clientId"] for o in _orders(indexer)} <= before, "a new BTC-USD order reached the venue"
        assert not [o for o in _orders(indexer) if o["status"] in ("OPEN", "BEST_EFFORT_OPENED")]
        time.sleep(0.3)
    status = control.status()["markets"]["BTC-USD"]
    assert Decimal(status["position"]) == held and status["sizing"]["limited_by"] == "cancel_only"
    eventually(lambda: _market(indexer)["status"] == "ACTIVE", 10)
    eventually(lambda: {o["clientId"] for o in _orders(indexer)} - before, 30)  # trading resumed
    eventually(lambda: Decimal(control.status()["markets"]["BTC-USD"]["position"]) == Decimal("0.04"), 90)
    assert control.status()["markets"]["BTC-USD"]["market_status"] == "ACTIVE"
    assert '"market_status_changed"' in daemon.log()
    assert daemon.stop() == 0


def test_final_settlement_closes_the_position_before_settlement(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(**live_env(
        PERPBOT_STRATEGY__TARGETS='{"BTC-USD": "0.01"}', PERPBOT_EXECUTION__TWAP_SLICES="2",
        PERPBOT_EXECUTION__PASSIVE_WHEN_FUNDING_FAVOURS="false")).start()
    control = Control(daemon.state_dir)
    sim = control.status()["sim"]
    indexer = sim["indexer_rest"]
    eventually(lambda: Decimal(control.status()["markets"]["BTC-USD"]["position"]) == Decimal("0.01"), 40)
    window = {"name": "market_final_settlement", "duration_s": 15, "market": "BTC-USD"}
    assert httpx.post(sim["admin"] + "/scenario", json=window).status_code == 200
    started = time.monotonic()
    eventually(lambda: control.status()["markets"]["BTC-USD"]["market_status"] == "FINAL_SETTLEMENT", 5)
    eventually(lambda: Decimal(control.status()["markets"]["BTC-USD"]["position"]) == 0, 12)
    closed_in = time.monotonic() - started
    assert closed_in < 15, closed_in  # before the settlement at the window's end
    ours = [f for f in _fills(indexer) if f["orderId"]]
    assert ours[0]["side"] == "SELL"  # newest first: our reduce-only close
    eventually(lambda: _market(indexer)["status"] == "ACTIVE", 20)  # the settlement ran
    settled = [f for f in _fills(indexer) if not f["orderId"]]
    assert settled == [], "nothing was left for the settlement to close"
    print(f"final settlement: position closed by our orders {closed_in:.1f}s into a 15s window")
    assert daemon.stop() == 0
