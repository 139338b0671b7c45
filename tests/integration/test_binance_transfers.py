"""The drawdown peak follows the Binance hedge account's deposits and withdrawals: the engine over the
simulator's Binance server with the real clients (httpx, websockets) and a real SQLite store; the
perp leg is a paper venue with no account (the equity is the Binance account's).

- a withdrawal (USDT with its fee, BTC at the mid) and a deposit while running scale the peak: the
  drawdown does not move; a loss of the same size (not a transfer) trips the stop;
- a withdrawal made while the daemon was down is read from the withdrawal history at the start,
  once; a second start reads it again and changes nothing;
- a withdrawal whose balanceUpdate the stream lost is read from the history after the user stream
  reconnects, and the one the stream did deliver is not counted again;
- a BTC deposit seen while the book is empty (a resync) is valued at a REST depth read's mid;
- a malformed balanceUpdate is counted and logged, the stream goes on;
- the simulator's two histories over the real client (signed, newest first, 90-day window);
- end to end: `perpbot run` live against `perpbot sim`, the owner withdraws from Binance (the
  simulator's `binance_transfer` scenario) while it runs and while it is down, and moves money to
  the funding wallet while it is down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from support.binance_account import KEY, SECRET, Daemon, lose_and_reconnect, publish, seen
from support.sim import standalone_sim
from support.wait import eventually

from bot.domain import BookSnapshot
from bot.errors import VenueError
from bot.peak import load as load_peak
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.venues.binance.rest import BinanceRest
from bot.venues.binance.transfers import utc_ms

D = Decimal


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    # No market steps: the book stays where it starts, so the mid that values a BTC transfer is the
    # one the next equity read uses (the drawdowns below are exact).
    srv = BinanceServer(SpotExchange(seed=17, start_ns=time.time_ns()), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


async def test_transfers_while_running_leave_the_drawdown_and_a_loss_does_not(
        server: BinanceServer, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path)
    try:
        assert await daemon.start() == 0
        equity, peak = await daemon.read()
        assert equity == peak == D(100_000) + daemon.mid()
        # 30% of the account out in USDT (the fee is out too), then 0.5 BTC out at the mid.
        server.spot.withdraw(KEY, "USDT", D(30_000), fee=D(1))
        publish(server)
        await seen(daemon, 1)
        server.spot.withdraw(KEY, "BTC", D("0.5"))
        publish(server)
        await seen(daemon, 2)
        after = await daemon.read()
        assert after[0] == D(70_000 - 1) + daemon.mid() / 2 and after[1] == after[0]
        assert not daemon.stopped()
        server.spot.deposit(KEY, "USDT", D(5_000))  # a deposit lifts the peak with the equity
        publish(server)
        await seen(daemon, 3)
        equity, peak = await daemon.read()
        assert equity == peak == after[0] + 5_000 and daemon.engine.live_peak is not None
        assert daemon.engine.live_peak.pending == 0 and load_peak(daemon.store).venues == []
        # The same 30% lost (no transfer): the stop holds the sizing.
        server.spot.set_balance(KEY, "USDT", D(75_000 - 1) - D(30_000))
        equity, peak = await daemon.read()
        assert peak == after[0] + 5_000 and daemon.stopped(), (equity, peak)
    finally:
        await daemon.stop()


async def test_a_withdrawal_while_down_is_read_at_the_start_once(server: BinanceServer,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    daemon = Daemon(server, db, tmp_path)
    try:
        await daemon.start()
        start_equity, _ = await daemon.read()
    finally:
        await daemon.stop()
    server.spot.withdraw(KEY, "USDT", D(40_000), fee=D("2.5"))  # while the daemon is down
    publish(server)  # no stream to hear it
    daemon = Daemon(server, db, tmp_path)
    try:
        assert await daemon.start() == 1
        equity, peak = await daemon.read()
        assert equity == start_equity - D("40002.5") and peak == equity and not daemon.stopped()
    finally:
        await daemon.stop()
    daemon = Daemon(server, db, tmp_path)
    try:
        assert await daemon.start() == 0  # read again: known
        assert await daemon.read() == (equity, equity)
    finally:
        await daemon.stop()


async def test_a_reconnect_reads_what_the_stream_lost_and_not_what_it_delivered(
        server: BinanceServer, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path)
    try:
        await daemon.start()
        start_equity, _ = await daemon.read()
        server.spot.withdraw(KEY, "USDT", D(10_000), fee=D(1))  # delivered on the stream
        publish(server)
        await seen(daemon, 1)
        server.spot.withdraw(KEY, "USDT", D(20_000), fee=D(1))  # its balanceUpdate is lost
        await lose_and_reconnect(daemon, server, 3)  # the history's two: one paired, one new
        assert daemon.engine.live_peak is not None and daemon.engine.live_peak.pending == D(-30_002)
        equity, peak = await daemon.read()
        assert equity == peak == start_equity - 30_002 and not daemon.stopped()
        assert load_peak(daemon.store).unpaired == [(k, m) for k, m in load_peak(daemon.store).unpaired
                                                     if k.startswith("binance:withdraw:")]
    finally:
        await daemon.stop()


async def test_a_btc_transfer_seen_with_no_book_is_valued_at_a_rest_depth_read(
        server: BinanceServer, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path)
    try:
        await daemon.start()
        await daemon.read()
        mid = daemon.mid()
        daemon.venue.books["BTC-USDT"].apply_snapshot(BookSnapshot("BTC-USDT", (), (), 0, 0))  # a resync
        requests = server.request_count
        server.spot.deposit(KEY, "BTC", D("0.25"))
        publish(server)
        await seen(daemon, 1)
        assert daemon.engine.live_peak is not None and daemon.engine.live_peak.pending == mid / 4
        assert server.request_count == requests + 1 and daemon.venue.books["BTC-USDT"].mid() is None
    finally:
        await daemon.stop()


async def test_a_malformed_balance_update_is_counted_and_the_stream_goes_on(
        server: BinanceServer, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path)
    try:
        await daemon.start()
        start_equity, _ = await daemon.read()
        assert daemon.venue.user_stream is not None
        for conn in [c for c in server._conns if daemon.venue.user_stream.listen_key in c.streams]:
            for frame in ('{"e":"balanceUpdate","E":1,"a":"USDT","d":"lots","T":1}',
                          '{"e":"balanceUpdate","E":1,"a":"USDT"}'):
                server._send(conn, frame)
        server.spot.withdraw(KEY, "USDT", D(1_000))
        publish(server)
        await seen(daemon, 1)
        assert daemon.metrics.malformed_messages.labels("binance")._value.get() == 2
        assert await daemon.read() == (start_equity - 1_000, start_equity - 1_000)
    finally:
        await daemon.stop()


def _owner_transfer(admin: str, amount: str, asset: str = "USDT", wallet: str | None = None) -> None:
    """The owner moves money on the Binance account outside the bot (the simulator's scenario):
    deposits or withdraws it, or with `wallet` moves it between spot and that wallet."""
    body = {"name": "binance_transfer", "asset": asset, "amount": amount}
    if wallet is not None:
        body["wallet"] = wallet
    reply = httpx.post(f"{admin}/scenario", json=body, timeout=5)
    assert reply.status_code == 200, reply.text


def test_the_daemon_keeps_its_drawdown_through_binance_withdrawals_running_and_down(
        daemon_factory) -> None:  # type: ignore[no-untyped-def]
    """`perpbot run` live against `perpbot sim` with the carry's BTC-USDT hedge leg (nothing trades:
    the carry's entry threshold is out of reach); the owner withdraws 40% of the total equity from
    Binance while it runs and more while it is down (a withdrawal and a transfer to its funding
    wallet): the drawdown stays near zero, not past the 20% stop. The BTC mid moves with the
    simulated market, so the drawdown is not exactly zero."""
    with standalone_sim(29) as ep:
        key, secret = sim_binance_credentials()
        env = {
            "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live", "PERPBOT_MARKETS": '["BTC-USD"]',
            "PERPBOT_STRATEGY__TARGETS": "{}", "PERPBOT_WATCHDOG__ENABLED": "false",
            "PERPBOT_STRATEGY__CARRY__ENABLED": "true",
            "PERPBOT_STRATEGY__CARRY__ENTRY_THRESHOLD_BPS": "100000",
            "PERPBOT_DYDX__INDEXER_REST": ep["indexer_rest"], "PERPBOT_DYDX__INDEXER_WS": ep["indexer_ws"],
            "PERPBOT_DYDX__NODE_GRPC": ep["node_grpc"], "PERPBOT_DYDX__CHAIN_ID": ep["chain_id"],
            "PERPBOT_DYDX_MNEMONIC": ep["accounts"]["dydx"]["mnemonic"],
            "PERPBOT_BINANCE__REST_URL": ep["binance_rest"], "PERPBOT_BINANCE__WS_URL": ep["binance_ws"],
            "PERPBOT_BINANCE_API_KEY": key, "PERPBOT_BINANCE_API_SECRET": secret,
        }
        daemon = daemon_factory(**env).start()
        first = eventually(lambda: (s := daemon.status())["drawdown"]["peak_equity"] != "0.000000"
                           and s["account"]["binance"] and s, 40)
        equity = Decimal(first["equity"])
        _owner_transfer(ep["admin"], str(-(equity * D("0.4")).quantize(D(1))))
        after = eventually(lambda: (s := daemon.status())["drawdown"]["pending_transfers"] == "0"
                           and Decimal(s["equity"]) < equity * D("0.65") and s, 30)
        assert Decimal(after["drawdown"]["drawdown"]) < D("0.02"), after["drawdown"]
        assert any(e.get("event") == "peak_adjusted_for_transfers" and e.get("venues") == ["binance"]
                   for e in daemon.log_events())
        assert daemon.stop() == 0
        _owner_transfer(ep["admin"], "-20000")  # while the daemon is down
        _owner_transfer(ep["admin"], "-10000", wallet="FUNDING")  # and to the funding wallet
        daemon = daemon_factory(**env).start()
        restarted = eventually(lambda: (s := daemon.status())["drawdown"]["pending_transfers"] == "0"
                               and s["account"]["binance"] and Decimal(s["drawdown"]["peak_equity"])
                               < Decimal(after["drawdown"]["peak_equity"]) - 25_000 and s, 40)
        assert Decimal(restarted["drawdown"]["drawdown"]) < D("0.02"), restarted["drawdown"]
        down = [e for e in daemon.log_events() if e.get("event") == "transfers_while_down"]
        assert [(e["venue"], e["count"]) for e in down] == [("binance", 2)]
        assert daemon.stop() == 0


async def test_the_simulator_lists_deposits_and_withdrawals_as_binance_does(server: BinanceServer) -> None:
    """The two SAPI histories over the real client: signed, newest first, a window of at most 90
    days (-1127 beyond), the withdrawal's fee apart from its amount, times as Binance writes them."""
    server.spot.deposit(KEY, "USDT", D(5))
    server.spot.deposit(KEY, "BTC", D("0.2"))
    withdrawal = server.spot.withdraw(KEY, "BTC", D("0.1"), fee=D("0.0005"))
    publish(server)
    rest = BinanceRest(server.rest_url, api_key=SecretStr(KEY), api_secret=SecretStr(SECRET))
    try:
        day_ago = rest.server_ms() - 24 * 3600 * 1000
        deposits = await rest.deposit_history(day_ago)
        assert [(d.coin, d.amount, d.status) for d in deposits] == [("BTC", "0.20000000", 1),
                                                                    ("USDT", "5.00000000", 1)]
        assert all(d.completeTime == d.insertTime >= day_ago for d in deposits)
        (row,) = await rest.withdraw_history(day_ago)
        assert (row.id, row.coin, row.amount, row.transactionFee, row.status) == (
            withdrawal.transfer_id, "BTC", "0.10000000", "0.00050000", 6)
        assert abs(utc_ms(row.applyTime, "applyTime") - withdrawal.ts_ns // 1_000_000) < 1000
        with pytest.raises(VenueError, match="-1127"):
            await rest.withdraw_history(day_ago - 90 * 24 * 3600 * 1000)
    finally:
        await rest.aclose()
    held = {b.asset: b.free for b in server.spot.balances(KEY)}
    assert held["BTC"] == D("1.0995") and held["USDT"] == D(100_005)
