"""The walking skeleton end to end: `perpbot run` as a subprocess, driven through the CLI."""

from __future__ import annotations

import signal
import sqlite3
import time

from support.wait import eventually

MNEMONIC = ("abandon " * 23 + "art").strip()
TOKEN = "ctl-token-0123456789abcdef"


def test_runs_trades_reports_status_and_stops_on_sigterm(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    status_lines = eventually(
        lambda: [e for e in daemon.log_events() if e.get("event") == "status"], timeout_secs=10
    )
    assert status_lines[0]["risk_mode"] == "NORMAL"

    status = eventually(lambda: (s := daemon.status())["markets"]["BTC-USD"]["position"] != "0" and s)
    for key in ("risk_mode", "kill_latched", "network", "trading", "account", "equity",
                "open_orders", "funding", "markets", "sim"):
        assert key in status
    assert status["network"] == "sim" and status["trading"] == "paper"
    btc = status["markets"]["BTC-USD"]
    assert set(btc["flags"]) == {"funding", "liquidity", "volatility", "news"}
    assert all("tripped" in f for f in btc["flags"].values())
    assert btc["last_decision"]["reason"] == "audit"
    assert btc["oracle_price"] is not None

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    events = [e.get("event") for e in daemon.log_events()]
    assert "daemon_stopped" in events

    db = sqlite3.connect(daemon.state_dir / "perpbot.sqlite")
    fills = db.execute("select count(*) from fills").fetchone()[0]
    decisions = db.execute("select count(*) from decisions").fetchone()[0]
    assert fills > 0 and decisions >= 2


def test_kill_latches_halted_cancels_and_survives_restart(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    eventually(lambda: daemon.status()["markets"]["BTC-USD"]["position"] != "0")
    result = daemon.cli("kill", "--reason", "test kill")
    assert result.returncode == 0, result.stdout + result.stderr
    status = daemon.status()
    assert status["risk_mode"] == "HALTED" and status["kill_latched"] is True
    assert sum(status["open_orders"].values()) == 0
    db = sqlite3.connect(daemon.state_dir / "perpbot.sqlite")
    assert db.execute(
        "select count(*) from orders where status in ('NEW','ACKED','PARTIALLY_FILLED')"
    ).fetchone()[0] == 0
    # No new orders while halted.
    orders_before = db.execute("select count(*) from orders").fetchone()[0]
    time.sleep(1.5)
    assert db.execute("select count(*) from orders").fetchone()[0] == orders_before
    assert daemon.stop() == 0

    again = daemon_factory().start()
    status = again.status()
    assert status["risk_mode"] == "HALTED" and status["kill_latched"] is True
    assert status["kill_reason"] == "test kill"
    resumed = again.cli("resume")
    assert resumed.returncode == 0
    assert again.status()["risk_mode"] == "NORMAL"
    assert again.stop() == 0


def test_kill_flatten_closes_positions(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    eventually(lambda: daemon.status()["markets"]["ETH-USD"]["position"] != "0")
    result = daemon.cli("kill", "--flatten", "--reason", "flatten test")
    assert result.returncode == 0, result.stdout + result.stderr
    status = daemon.status()
    assert all(m["position"] == "0" for m in status["markets"].values()), status["markets"]
    assert daemon.stop() == 0


def test_secrets_never_reach_logs_or_status(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(PERPBOT_DYDX_MNEMONIC=MNEMONIC, PERPBOT_CONTROL_TOKEN=TOKEN,
                            PERPBOT_BINANCE_API_KEY="binance-key-ABCD1234",
                            PERPBOT_TELEMETRY__LOG_LEVEL="debug").start()
    eventually(lambda: any(e.get("event") == "status" for e in daemon.log_events()))
    status = daemon.cli("status", "--json")
    table = daemon.cli("status")
    check = daemon.cli("config", "check")
    assert status.returncode == 0 and table.returncode == 0 and check.returncode == 0
    assert daemon.stop() == 0
    outputs = [daemon.log(), status.stdout, status.stderr, table.stdout, check.stdout]
    db_dump = "\n".join(sqlite3.connect(daemon.state_dir / "perpbot.sqlite").iterdump())
    for text in [*outputs, db_dump]:
        assert MNEMONIC not in text
        assert "abandon abandon" not in text
        assert TOKEN not in text
        assert "binance-key-ABCD1234" not in text
    assert "********1234" in status.stdout  # the key id is shown masked


def test_control_api_refuses_missing_or_wrong_token(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    import httpx

    daemon = daemon_factory(PERPBOT_CONTROL_TOKEN=TOKEN).start()
    url = __import__("json").loads((daemon.state_dir / "daemon.json").read_text())["url"]
    assert httpx.get(url + "/v1/status").status_code == 401
    assert httpx.post(url + "/v1/kill", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(url + "/healthz").status_code == 200
    metrics = httpx.get(url + "/metrics").text
    assert "perpbot_market_events_total" in metrics
    # Scrape-time gauges: feed staleness, open orders by state, PnL attribution, event-loop lag.
    for series in ('perpbot_feed_staleness_seconds{market="BTC-USD"}',
                   'perpbot_open_orders{state="ACKED",venue="paper"}',
                   'perpbot_pnl_usd{component="total"}', "perpbot_asyncio_tasks "):
        assert series in metrics, series
    assert daemon.status()["kill_latched"] is False  # the refused kill did nothing
    bad_body = httpx.post(url + "/v1/kill", headers={"Authorization": f"Bearer {TOKEN}"},
                          content=b"{not json")
    assert bad_body.status_code == 400
    assert daemon.cli("health").returncode == 0
    assert daemon.stop() == 0


def test_generated_token_file_is_private(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    mode = (daemon.state_dir / "control.token").stat().st_mode & 0o777
    assert mode == 0o600
    assert daemon.stop() == 0


def test_cli_exit_codes(daemon_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    unreachable = daemon.cli("status", "--json")
    assert unreachable.returncode == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('[sim]\nseed = "abc"\n')
    result = daemon.cli("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sim.seed" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[rules]\nmin_flgs = 3\n")
    result = daemon.cli("run", "--config", str(unknown))
    assert result.returncode == 2 and "rules.min_flgs" in result.stderr
    assert daemon.cli("news", "set", "FOMC", "--ttl", "soon").returncode == 2


def test_operator_target_rebalances_and_bad_target_exits_2(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    eventually(lambda: daemon.status()["markets"]["BTC-USD"]["position"] != "0")
    result = daemon.cli("target", "BTC-USD", "-0.02")
    assert result.returncode == 0, result.stderr
    eventually(lambda: daemon.status()["markets"]["BTC-USD"]["position"] == "-0.0200", timeout_secs=15)
    assert daemon.cli("target", "DOGE-USD", "1").returncode == 2
    assert daemon.cli("target", "BTC-USD", "lots").returncode == 2
    assert daemon.stop() == 0
