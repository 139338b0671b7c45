"""`perpbot reset-peak`: the operator accepts a drawdown and the live stop restarts from the equity now.

A live daemon on the embedded protocol simulator, restarted over a store whose peak (20000) is far
above the venue's equity (2345.67): the stop holds until `reset-peak --confirm` sets the peak to the equity,
through the control API; paper has no stored peak and says so; `--direct` clears the stored record
only with the daemon stopped.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
from integration.test_live_truth import Control, live_env
from support.wait import eventually

from bot.peak import META_KEY, PeakRecord, load
from bot.store import Store


def test_reset_peak_sets_the_live_peak_to_the_equity_and_direct_clears_it(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    env = live_env(PERPBOT_SIM__ACCOUNT_EQUITY_USD="2345.67")
    daemon = daemon_factory(**env).start()  # the simulator funds the account: a deposit, seen
    eventually(lambda: Decimal(daemon.status()["drawdown"]["peak_equity"]) > 0, 20)
    assert daemon.stop() == 0
    with Store.open(daemon.state_dir / "perpbot.sqlite") as store:  # as after a loss from 20000
        record = load(store)
        assert record.keys and not record.pending
        store.meta_set(META_KEY, PeakRecord(Decimal(20000), record.pending, record.keys).to_json())
    daemon = daemon_factory(**env).start()
    control = Control(daemon.state_dir)
    first = eventually(lambda: (s := control.status())["account"]["dydx"].get("equity") and s, 20)
    assert Decimal(first["drawdown"]["peak_equity"]) == 20000  # restored, the stop holds

    refused = daemon.cli("reset-peak")
    assert refused.returncode == 2 and "--confirm is required" in refused.stderr, refused.stderr
    assert daemon.cli("reset-peak", "--direct", "--confirm").returncode == 2  # the daemon runs
    response = httpx.post(control.url + "/v1/peak/reset", json={"confirm": True}, timeout=5)
    assert response.status_code == 401  # no token
    response = httpx.post(control.url + "/v1/peak/reset", headers=control.headers, json={}, timeout=5)
    assert response.status_code == 400 and "confirm" in response.json()["error"]
    assert Decimal(control.status()["drawdown"]["peak_equity"]) == 20000

    done = daemon.cli("reset-peak", "--confirm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("peak equity 20000.000000 -> 2345.670000"), done.stdout
    drawdown = control.status()["drawdown"]
    assert Decimal(drawdown["peak_equity"]) == Decimal("2345.67") and Decimal(drawdown["drawdown"]) == 0
    assert daemon.stop() == 0
    events = [e for e in daemon.log_events() if e.get("event") == "peak_reset"]
    assert [(e["old_peak"], e["peak"]) for e in events] == [("20000", "2345.67")]
    with Store.open(daemon.state_dir / "perpbot.sqlite") as store:
        assert load(store).peak == Decimal("2345.67")  # stored: a restart keeps it

    cleared = daemon.cli("reset-peak", "--confirm", "--direct")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "2345.67 -> cleared" in cleared.stdout
    with Store.open(daemon.state_dir / "perpbot.sqlite") as store:
        assert load(store).peak == 0


def test_reset_peak_in_paper_says_there_is_no_stored_peak(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    result = daemon.cli("reset-peak", "--confirm")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("perpbot: paper trading stores no peak: it starts at "
                                     "paper.initial_equity_usd each run")
    assert daemon.stop() == 0
