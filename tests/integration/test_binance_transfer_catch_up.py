"""Transfers between the owner's own Binance accounts (spot <-> funding, futures, margin: the
universal transfer history) and the catch-up from a stored cursor, against the simulator's Binance
server with the real clients (httpx, websockets) and a real SQLite store:

- the simulator lists universal transfers as Binance does (signed, one type per request, pages,
  no `rows` when empty, -1102/-1100 for a missing or unknown type); its `binance_transfer`
  scenario makes one with a `wallet`;
- transfers to and from other wallets made while the daemon is down are read at the start: the
  peak moves with them, the drawdown does not; a second start changes nothing;
- one lost in a user stream gap is read after the reconnect, one the stream delivered is not
  counted again;
- a start after 45 days down reads everything since the cursor (older than the 30 days a start
  used to read), in windows, and moves the cursor;
- the catch-up keeps to the client's weight budget (waits for the next weight window);
- an unreadable cursor is logged and replaced; a malformed row is counted and the rest taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.binance_account import KEY, SECRET, Daemon, lose_and_reconnect, publish, seen
from support.clock import OffsetClock

from bot.clock import NS_PER_MS, NS_PER_SEC
from bot.errors import ConfigError, VenueError
from bot.peak import load as load_peak
from bot.sim.faults import ScenarioState
from bot.sim.scenarios import SCENARIOS, parse_spec
from bot.sim.server.binance import BinanceServer
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import WalletTransfer
from bot.telemetry import Metrics
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.catch_up import CURSOR_KEY, read_histories
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.rest import BinanceRest
from bot.venues.binance.transfers import DAY_MS, FIRST_CATCH_UP_MS, SPOT_TYPES, transfer_row

D = Decimal
DAY_SECS = 24 * 3600


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def server(clock: OffsetClock) -> AsyncIterator[BinanceServer]:
    # No market steps: the book stays where it starts (the drawdowns below are exact), and the
    # server's clock is the test's, which can jump days ahead.
    srv = BinanceServer(SpotExchange(seed=23, start_ns=clock.now_ns()), clock.now_ns)
    await srv.start()
    yield srv
    await srv.stop()


def cursor_ms(daemon: Daemon) -> int:
    text = daemon.store.meta_get(CURSOR_KEY)
    assert text is not None
    return int(text)


async def first_run(server: BinanceServer, db: Path, tmp_path: Path, clock: OffsetClock
                    ) -> tuple[Decimal, Decimal, int]:
    """A run with nothing to catch up: (its equity, the BTC mid, the cursor it leaves)."""
    daemon = Daemon(server, db, tmp_path, clock)
    try:
        assert await daemon.start() == 0
        equity, _ = await daemon.read()
        return equity, daemon.mid(), cursor_ms(daemon)
    finally:
        await daemon.stop()


async def test_the_simulator_lists_universal_transfers_as_binance_does(server: BinanceServer,
                                                                       clock: OffsetClock) -> None:
    out = server.spot.transfer(KEY, "MAIN_FUNDING", "USDT", D(700))
    server.spot.transfer(KEY, "MAIN_FUNDING", "USDT", D(300))
    server.spot.transfer(KEY, "UMFUTURE_MAIN", "BTC", D("0.25"))
    rest = BinanceRest(server.rest_url, api_key=SecretStr(KEY), api_secret=SecretStr(SECRET), clock=clock)
    try:
        now = rest.server_ms()
        first = await rest.transfer_history("MAIN_FUNDING", now - DAY_MS, now, 1, 1)
        second = await rest.transfer_history("MAIN_FUNDING", now - DAY_MS, now, 2, 1)
        assert first.total == second.total == 2
        rows = [transfer_row(bytes(r)) for r in first.rows + second.rows]
        assert [(r.amount, r.type, r.status) for r in rows] == [("300", "MAIN_FUNDING", "CONFIRMED"),
                                                                ("700", "MAIN_FUNDING", "CONFIRMED")]
        assert rows[1].tranId == int(out.transfer_id) and abs(rows[1].timestamp - now) < 1000
        empty = await rest.transfer_history("MAIN_MARGIN", now - DAY_MS, now)
        assert (empty.total, empty.rows) == (0, [])  # Binance leaves `rows` out
        assert (await rest.transfer_history("UMFUTURE_MAIN", now - DAY_MS, now)).total == 1
        assert (await rest.transfer_history("MARGIN_UMFUTURE", now - DAY_MS, now)).total == 0  # not spot
        for kind, code in (("", "-1102"), ("MAIN_MOON", "-1100")):
            with pytest.raises(VenueError, match=code):
                await rest.transfer_history(kind, now - DAY_MS, now)
    finally:
        await rest.aclose()
    held = {b.asset: b.free for b in server.spot.balances(KEY)}
    assert held["USDT"] == D(99_000) and held["BTC"] == D("1.25")


def test_the_transfer_scenario_moves_money_between_spot_and_a_wallet_and_refuses_bad_ones() -> None:
    spec = parse_spec({"name": "binance_transfer", "asset": "USDT", "amount": "-250", "wallet": "UMFUTURE"})
    state = ScenarioState()
    SCENARIOS[spec.name].start(state, spec.params)
    assert state.binance_transfer == ("USDT", D(-250), D(0), "UMFUTURE")
    for bad in ({"wallet": "MAIN"}, {"wallet": "FUNDING", "fee": "1"}, {"wallet": 7}, {"amount": "0"}):
        with pytest.raises(ConfigError):
            parse_spec({"name": "binance_transfer", "asset": "USDT", "amount": "-250", **bad})


async def test_transfers_to_and_from_other_wallets_while_down_move_the_peak_not_the_pnl(
        server: BinanceServer, clock: OffsetClock, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    start_equity, mid, _ = await first_run(server, db, tmp_path, clock)
    # While down (no stream hears them): 40% of the account to the funding wallet (a loss that size
    # would trip the 20% stop), 0.5 BTC back from the USD-M futures wallet.
    server.spot.transfer(KEY, "MAIN_FUNDING", "USDT", D(40_000))
    server.spot.transfer(KEY, "UMFUTURE_MAIN", "BTC", D("0.5"))
    publish(server)
    daemon = Daemon(server, db, tmp_path, clock)
    try:
        assert await daemon.start() == 2
        equity, peak = await daemon.read()
        assert equity == start_equity - 40_000 + mid / 2 and peak == equity and not daemon.stopped()
        assert {k for k in load_peak(daemon.store).keys if k.startswith("binance:transfer:")} == {
            f"binance:transfer:{t.transfer_id}" for t in server.spot.wallet_transfers(KEY)}
    finally:
        await daemon.stop()
    daemon = Daemon(server, db, tmp_path, clock)
    try:
        assert await daemon.start() == 0  # read again: known
        assert await daemon.read() == (equity, equity)
    finally:
        await daemon.stop()


async def test_a_transfer_lost_in_a_stream_gap_is_read_after_the_reconnect_and_one_delivered_is_not_twice(
        server: BinanceServer, clock: OffsetClock, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path, clock)
    try:
        await daemon.start()
        start_equity, _ = await daemon.read()
        server.spot.transfer(KEY, "MAIN_UMFUTURE", "USDT", D(10_000))  # delivered on the stream
        publish(server)
        await seen(daemon, 1)
        server.spot.transfer(KEY, "MAIN_MARGIN", "USDT", D(20_000))  # its balanceUpdate is lost
        await lose_and_reconnect(daemon, server, 3)  # the history's two: one paired, one new
        assert daemon.engine.live_peak is not None and daemon.engine.live_peak.pending == D(-30_000)
        equity, peak = await daemon.read()
        assert equity == peak == start_equity - 30_000 and not daemon.stopped()
    finally:
        await daemon.stop()


async def test_a_start_after_45_days_down_reads_everything_since_the_cursor(
        server: BinanceServer, clock: OffsetClock, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    start_equity, mid, first_cursor = await first_run(server, db, tmp_path, clock)
    assert abs(first_cursor - clock.now_ns() // NS_PER_MS) < 5_000
    clock.advance(5 * DAY_SECS)  # 40 days before the restart: older than a start used to read
    server.spot.withdraw(KEY, "USDT", D(10_000), fee=D(1), now_ns=clock.now_ns())
    clock.advance(10 * DAY_SECS)
    server.spot.transfer(KEY, "MAIN_UMFUTURE", "USDT", D(20_000), now_ns=clock.now_ns())
    clock.advance(29 * DAY_SECS)
    server.spot.deposit(KEY, "BTC", D("0.1"), now_ns=clock.now_ns())
    clock.advance(1 * DAY_SECS)
    publish(server)
    requests = server.request_count
    daemon = Daemon(server, db, tmp_path, clock)
    try:
        assert await daemon.start() == 3
        equity, peak = await daemon.read()
        assert equity == start_equity - 30_001 + mid / 10 and peak == equity and not daemon.stopped()
        assert abs(cursor_ms(daemon) - clock.now_ns() // NS_PER_MS) < 5_000
        # 46 days (the overlap's day too): one deposit and one withdrawal window, 7 windows of 7
        # days per universal transfer type (and the start's other calls).
        assert server.request_count - requests >= 2 + 7 * len(SPOT_TYPES)
    finally:
        await daemon.stop()


async def test_the_catch_up_keeps_to_the_weight_budget(server: BinanceServer) -> None:
    clock = OffsetClock(virtual_sleep=True)  # waits for the next weight window take no real time
    server.clock_ns = clock.now_ns
    server.spot.transfer(KEY, "FUNDING_MAIN", "USDT", D(5), now_ns=clock.now_ns())
    rest = BinanceRest(server.rest_url, api_key=SecretStr(KEY), api_secret=SecretStr(SECRET), clock=clock,
                       weight_budget_1m=20)
    try:
        read = await read_histories(rest, clock.now_ns() // NS_PER_MS - 40 * DAY_MS)
    finally:
        await rest.aclose()
    assert read.requests == 2 + 6 * len(SPOT_TYPES) and len(read.transfers) == 1
    assert clock.sleeps and all(0 < s <= 60 for s in clock.sleeps)
    # 86 requests of weight 1 (and the time sync) at 20 a minute: 4 waits, 3 of them whole windows.
    assert clock.offset_ns >= 3 * 60 * NS_PER_SEC


async def test_an_unreadable_cursor_is_replaced_and_a_malformed_row_counted(
        server: BinanceServer, clock: OffsetClock, tmp_path: Path) -> None:
    daemon = Daemon(server, tmp_path / "db.sqlite", tmp_path, clock)
    daemon.store.meta_set(CURSOR_KEY, "next tuesday")
    server.spot.transfer(KEY, "MAIN_FUNDING", "USDT", D(100))
    server.spot.transfer(KEY, "FUNDING_MAIN", "USDT", D(7))
    acct = server.spot._acct(KEY)  # a row Binance could garble: an asset name that is none
    acct.transfers.append(WalletTransfer("MAIN_FUNDING", "99", "US/DT", D(1), D(0), clock.now_ns(), "0x99"))
    clock.advance((FIRST_CATCH_UP_MS - DAY_MS) / 1000)  # still inside a first start's span
    try:
        transfers = await daemon.venue.transfers()
        assert sorted(t.amount for t in transfers) == [D(-100), D(7)]
        assert daemon.metrics.malformed_messages.labels("binance")._value.get() == 1
        assert abs(cursor_ms(daemon) - clock.now_ns() // NS_PER_MS) < 5_000
    finally:
        await daemon.venue.close()
        daemon.store.close()


async def test_without_a_store_the_cursor_lives_for_the_run(server: BinanceServer,
                                                            clock: OffsetClock) -> None:
    venue = build_venue(BinanceSettings(rest_url=server.rest_url, ws_url=server.ws_url,
                                        symbols={"BTC-USDT": "BTCUSDT"}),
                        Metrics(), api_key=SecretStr(KEY), api_secret=SecretStr(SECRET), clock=clock)
    try:
        assert venue.transfer_cursor.get() is None
        await venue.transfers()
        first = venue.transfer_cursor.get()
        assert first is not None and abs(first - clock.now_ns() // NS_PER_MS) < 5_000
        before = server.request_count
        await venue.transfers()  # again: from the cursor, one window per history and type
        assert server.request_count - before == 2 + len(SPOT_TYPES)
    finally:
        await venue.close()
