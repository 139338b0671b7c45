"""The live peak with transfers of two venues and of two sources (bot.peak): pending waits for a read
of each venue that reported one; a transfer reported by the stream (no id) and by the history (an
id) counts once whatever the order, across restarts (hypothesis over interleavings and replays);
pairing as a pure function. Real SQLite store, a stand-in for the venues' account reads."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.domain import Transfer, TransferMatch
from bot.peak import (
    CATCH_UP_GRACE_NS,
    MAX_UNPAIRED,
    META_KEY,
    PAIR_WINDOW_MS,
    LivePeak,
    PeakRecord,
    adjust_peak,
    load,
    pair_index,
)
from bot.store import Store

D = Decimal
T0 = 1_765_000_000_000  # ms


class Reads:
    """Equity and per-venue read times as `LivePeak` sees them (bot.accounts.AccountBook)."""

    def __init__(self, equity: str) -> None:
        self.value: Decimal | None = D(equity)
        self.read_ns: dict[str, int] = {}
        self.nudges = 0

    def equity(self) -> Decimal | None:
        return self.value

    def read_since(self, venue: str, ns: int) -> bool:
        return self.read_ns.get(venue, 0) > ns

    def nudge(self) -> None:
        self.nudges += 1

    def read(self, equity: str, at_ns: int, *venues: str) -> None:
        self.value = D(equity)
        for venue in venues:
            self.read_ns[venue] = at_ns


def stream(asset: str, delta: str, ms: int) -> Transfer:
    return Transfer(f"binance:bu:{asset}:{ms}:{delta}", D(delta), 0, ms * 1_000_000,
                    TransferMatch(asset, (D(delta),), ms, False))


def history(ref: str, asset: str, delta: str, ms: int, usd: str | None = None, also: str | None = None
            ) -> Transfer:
    quantities = (D(delta),) if also is None else (D(delta), D(also))
    return Transfer(f"binance:withdraw:{ref}", D(usd or delta), 0, ms * 1_000_000,
                    TransferMatch(asset, quantities, ms, True))


def started(store: Store, reads: Reads, clock: ManualClock) -> LivePeak:
    peak = LivePeak(store, reads, clock, "dydx")
    assert peak.observe() > 0
    return peak


def test_a_binance_transfer_waits_for_a_binance_read_not_a_dydx_one(tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        clock.now = 2_000
        peak.on_transfer(stream("USDT", "-3000", T0), "binance")
        assert reads.nudges == 1 and load(store).venues == ["binance"]
        reads.read("7000", 2_001, "dydx")  # the perp venue only: the spot read may predate it
        assert peak.observe() == D(10000)
        reads.read("7000", 2_002, "binance")
        assert peak.observe() == D(7000) and peak.pending == 0 and load(store).venues == []


def test_transfers_of_both_venues_wait_for_both_and_survive_a_restart(tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        reads.read("8000", 1_500, "dydx", "binance")  # a loss: 20% down
        peak.observe()
        clock.now = 2_000
        peak.on_transfer(Transfer("tx:WITHDRAWAL", D(-1000), 5, 0))  # dYdX
        peak.on_transfer(stream("USDT", "-1000", T0), "binance")
    clock.now = 3_000
    with Store.open(tmp_path / "db.sqlite") as store:
        reads.read("6000", 2_500, "dydx", "binance")  # before the restart: not trusted
        restarted = LivePeak(store, reads, clock, "dydx")
        assert restarted.pending == D(-2000) and restarted.observe() == D(10000)
        reads.read("6000", 3_001, "binance")
        assert restarted.observe() == D(10000)  # dYdX not read since
        reads.read("6000", 3_002, "dydx")
        assert restarted.observe() == D(10000) * 6000 / 8000  # still 20% down


def test_the_stream_then_the_history_count_once_and_so_the_other_way(tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        peak.on_transfer(stream("USDT", "-1001", T0), "binance")
        # The history's record of it: 1000 plus a fee of 1, applied a second later (second precision).
        assert peak.catch_up([history("w1", "USDT", "-1001", T0 + 900, also="-1000")], "binance") == 0
        assert peak.pending == D(-1001)
        # Another one, read from the history first (a reconnect's catch-up), then the stream's frame.
        assert peak.catch_up([history("w2", "BTC", "-0.5", T0 + 5000, usd="-30000")], "binance") == 1
        peak.on_transfer(stream("BTC", "-0.5", T0 + 5400), "binance")
        assert peak.pending == D(-31001)
        assert load(store).unpaired == []


def test_a_pair_survives_a_restart_and_identical_transfers_each_count(tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        peak.on_transfer(stream("USDT", "-500", T0), "binance")  # seen, then the daemon stops
    with Store.open(tmp_path / "db.sqlite") as store:
        restarted = LivePeak(store, reads, clock, "dydx")
        # Two withdrawals of 500 in the history: one is the stream's, the other was made while down.
        both = [history("a", "USDT", "-500", T0 + 1000), history("b", "USDT", "-500", T0 + 60_000)]
        assert restarted.catch_up(both, "binance") == 1
        assert restarted.pending == D(-1000)
        assert restarted.catch_up(both, "binance") == 0  # a second catch-up: both known


def test_a_catch_up_does_not_count_again_what_an_earlier_one_listed_once_its_key_is_forgotten(
        tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    day_ms = CATCH_UP_GRACE_NS // 1_000_000
    old, new = history("old", "USDT", "-100", T0), history("new", "USDT", "-200", T0 + 3 * day_ms)
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        assert peak.catch_up([old, new], "binance") == 2
        record = load(store)
        store.meta_set(META_KEY, PeakRecord(record.peak, record.pending, [], record.venues, [],
                                            record.listed).to_json())  # every key forgotten
        restarted = LivePeak(store, reads, clock, "dydx")
        # `old` is beyond the grace before the newest listed: not new; `new` is inside it: its key
        # is what says it was counted, and it is gone, so it counts again (the keys cover a day).
        assert restarted.catch_up([old, new], "binance") == 1 and restarted.pending == D(-500)
        assert restarted.catch_up([old], "dydx") == 1  # another venue's horizon is its own


def test_no_pair_across_assets_quantities_sources_or_the_window() -> None:
    waiting = [("s", TransferMatch("USDT", (D(-100),), T0, False))]
    assert pair_index(waiting, TransferMatch("USDT", (D(-100),), T0 + 10, True)) == 0
    assert pair_index(waiting, TransferMatch("USDC", (D(-100),), T0, True)) is None
    assert pair_index(waiting, TransferMatch("USDT", (D(-101),), T0, True)) is None
    assert pair_index(waiting, TransferMatch("USDT", (D(-100),), T0, False)) is None  # the same source
    assert pair_index(waiting, TransferMatch("USDT", (D(-100),), T0 + PAIR_WINDOW_MS + 1, True)) is None
    two = [*waiting, ("t", TransferMatch("USDT", (D(-100),), T0 + 50, False))]
    assert pair_index(two, TransferMatch("USDT", (D("-100.00"),), T0 + 60, True)) == 1  # the closest


def test_waiting_reports_are_bounded_and_a_bad_stored_one_starts_afresh(tmp_path: Path) -> None:
    clock, reads = ManualClock(1_000), Reads("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = started(store, reads, clock)
        for i in range(MAX_UNPAIRED + 5):  # transfers between the user's own accounts: stream only
            peak.on_transfer(stream("USDT", "-1", T0 + i), "binance")
        assert len(load(store).unpaired) == MAX_UNPAIRED
        store.meta_set(META_KEY, '{"peak": "5", "unpaired": [{"key": "k", "asset": "X", "q": ["NaN"], '
                                 '"ms": 1, "id": true}]}')
        assert load(store).peak == 0  # logged as unreadable: the next read starts the peak


# Distinct times: two stream reports of the same asset, delta and time would be one (no id on them).
moves = st.lists(
    st.tuples(st.sampled_from(["USDT", "BTC"]), st.integers(-5, 5).filter(bool), st.integers(0, 7_200_000)),
    min_size=1, max_size=6, unique_by=lambda m: m[2])


@settings(max_examples=60, deadline=None)
@given(moves=moves, data=st.data())
def test_every_transfer_counts_once_whatever_the_order_of_its_reports(tmp_path_factory, moves, data) -> None:  # type: ignore[no-untyped-def]
    """Each transfer reported by the stream and by the history (within a minute of each other), in
    any interleaving, with replays and a restart anywhere: the pending sum is each counted once."""
    reports = []
    for i, (asset, qty, ms) in enumerate(moves):
        jitter = data.draw(st.integers(-60_000, 60_000))
        reports += [stream(asset, str(qty), ms + T0), history(f"r{i}", asset, str(qty), ms + T0 + jitter)]
    order = data.draw(st.permutations(reports))
    replays = data.draw(st.lists(st.sampled_from(reports), max_size=4))
    restart_at = data.draw(st.integers(0, len(order)))
    clock, reads = ManualClock(1_000), Reads("1000000")
    with Store.open(tmp_path_factory.mktemp("peak") / "db.sqlite") as store:
        peak = started(store, reads, clock)
        for i, report in enumerate([*order, *replays]):
            if i == restart_at:
                peak = LivePeak(store, reads, clock, "dydx")
            if report.match is not None and report.match.by_id:
                peak.catch_up([report], "binance")
            else:
                peak.on_transfer(report, "binance")
        assert peak.pending == sum((D(qty) for _, qty, _ in moves), D(0))
        assert load(store).unpaired == []


money = st.decimals(min_value=D("0.01"), max_value=D(10_000_000), places=2)


@given(peak=money, equity=money, flows=st.lists(money, min_size=2, max_size=5),
       signs=st.lists(st.booleans(), min_size=5, max_size=5))
def test_transfers_scale_the_same_read_one_by_one_or_together(
        peak: Decimal, equity: Decimal, flows: list[Decimal], signs: list[bool]) -> None:
    """Two venues' transfers shown by one read (pending summed) or by one read each: the same peak."""
    peak = max(peak, equity)
    amounts = [f if up else -f for f, up in zip(flows, signs, strict=False)]
    one_by_one, now = peak, equity
    for amount in amounts:
        if now + amount <= 0:
            return  # an account emptied on the way starts afresh: not a scaling
        now += amount
        one_by_one = adjust_peak(one_by_one, now, amount)
    together = adjust_peak(peak, now, sum(amounts, D(0)))
    assert abs(one_by_one - together) <= D("1e-18") * peak
