"""Deterministic scenarios: the Engine and both paper venues in-process on simulated markets.

No sockets, no sleeps: a fake clock advances one second per step, the simulated perp and its
spot book are stepped at the same times, events go to the engine first and then to the venue
(as `bot/app.py` wires them), and `engine.tick()` sends due TWAP children.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import Settings, load
from bot.domain import BookDelta, BookSnapshot, Fill, Liquidity, OrderRequest, Side, TimeInForce
from bot.engine import Engine
from bot.errors import OrderRejected
from bot.execution.orders import Child, OrderManager
from bot.execution.twap import TwapPlan
from bot.sim.market import SimMarket
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.sim.feed import default_params

SEC = 1_000_000_000
HOUR = 3600 * SEC
START = 1_700_002_800 * SEC + SEC  # one second after a top of the hour


class Harness:
    """One perp market (BTC-USD) with its spot hedge book (BTC-USDT), engine and paper venues."""

    def __init__(self, tmp_path: Path, settings: dict[str, Any], **params: Any) -> None:
        self.settings: Settings = load(None, env_file=None, state_dir=str(tmp_path),
                                       markets=["BTC-USD"], **settings)
        self.clock = ManualClock(START)
        perp_params = replace(default_params("BTC-USD", 0.65), high_vol_enter_per_sec=0.0,
                              jump_per_sec=0.0, **params)
        self.perp = SimMarket(perp_params, 7, START)
        self.spot = SimMarket(replace(perp_params, ticker="BTC-USDT"), 7, START)
        s = self.settings
        self.store = Store.open(tmp_path / "perpbot.sqlite")
        metrics = Metrics()
        books = {"BTC-USD": OrderBook("BTC-USD")}
        spot_books = {"BTC-USDT": OrderBook("BTC-USDT")}
        self.venue = PaperVenue(books, FeeSchedule(s.paper.maker_fee_rate, s.paper.taker_fee_rate),
                                self.clock, s.sim.funding_interval_secs)
        self.spot_venue = PaperVenue(spot_books, FeeSchedule(s.strategy.carry.spot_maker_fee_rate,
                                                             s.strategy.carry.spot_taker_fee_rate),
                                     self.clock)
        self.spot_venue.name = "paper_spot"
        orders = OrderManager(self.venue, self.store, metrics, self.clock, s.execution)
        spot_orders = OrderManager(self.spot_venue, self.store, metrics, self.clock, s.execution)
        self.engine = Engine(s, {"BTC-USD": self.perp.spec()}, self.store, orders, metrics, self.clock,
                             books, spot_orders=spot_orders, spot_specs={"BTC-USDT": self.spot.spec()},
                             spot_books=spot_books)
        self.venue.set_account_sink(self.engine.on_account_event)
        self.spot_venue.set_account_sink(self.engine.on_spot_account_event)

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.engine.markets["BTC-USD"]

    def set_regime(self, high_vol: bool) -> None:
        self.perp.set_regime(high_vol)
        self.spot.set_regime(high_vol)

    async def run_for(self, secs: int, step_secs: int = 1) -> None:
        for _ in range(secs // step_secs):
            self.clock.now += step_secs * SEC
            now = self.clock.now
            for event in self.perp.step(now):
                self.engine.on_market_event(event)
                self.venue.on_market_event(event)
            for event in self.spot.step(now):
                if isinstance(event, BookDelta | BookSnapshot):
                    self.engine.on_spot_event(event)
                    self.spot_venue.on_market_event(event)
            await self.engine.tick()

    def decisions(self) -> list[Any]:
        return list(reversed(self.store.decisions("BTC-USD", limit=10_000)))

    def order_count(self) -> int:
        return len(self.store._read("SELECT client_id FROM orders"))


async def test_persistent_positive_funding_opens_a_delta_neutral_carry(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        {"strategy": {"targets": {"BTC-USD": "0"}, "carry": {"min_persistence_hours": 2}},
         "rules": {"audit_interval_secs": 600, "audit_on_start": False}},
        funding_mean_1h=0.0002, funding_vol_1h=0.000002, funding_reversion_per_hour=1.0,
    )
    # Two hours of rich positive funding: the funding flag is up, alone, and nothing trades.
    await h.run_for(2 * 3600 - 60, step_secs=2)
    assert h.state.flags.tripped == ("funding",)
    assert h.order_count() == 0 and h.decisions() == []
    assert h.state.funding.persistence_hours >= 1
    carry = h.state.sleeves.as_dict()["carry"]
    assert carry["why"] == "not_persistent" or carry["why"] == "open"

    # Past the second hour the sign has persisted; the next audit opens the carry.
    await h.run_for(1800, step_secs=2)
    decisions = h.decisions()
    assert decisions, "the audit should have opened the carry"
    first = decisions[0]
    assert first.reason == "audit"
    assert first.plan["sleeves"]["carry"]["why"] == "open"
    net_open = Decimal(first.plan["sleeves"]["carry"]["net_open_bps"])
    assert net_open >= h.settings.strategy.carry.entry_threshold_bps
    perp, spot = h.state.position.size, h.state.spot.position.size
    assert perp < 0 < spot  # positive funding: short perp receives, long spot hedges
    assert abs(perp + spot) <= Decimal("0.0005")  # delta-neutral within a few steps
    assert perp * h.state.mark < Decimal(-2000)  # a real position: ~40% of equity

    # Another hour: the short perp receives funding, booked once in the ledger.
    await h.run_for(3600, step_secs=2)
    ledger = h.state.ledger
    assert ledger.payments >= 1 and ledger.realised_usd > 0 and ledger.paid_usd == 0
    assert h.engine.expected_funding() > 0  # a short with positive forecast: income expected
    pnl = h.engine.pnl(h.state)
    assert pnl.funding == ledger.realised_usd and pnl.fees < 0


async def test_volatility_spike_with_thin_liquidity_reduces_exposure(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0.05"}, "carry": {"enabled": False},
                                        "flag_risk_factor": "0.5"},
                           "rules": {"audit_interval_secs": 36000}},
                high_vol_exit_per_sec=0.0)  # the spike lasts until the test ends it
    await h.run_for(1200)  # the start-up audit opens the directional position; estimators warm up
    assert h.state.position.size == Decimal("0.05")
    assert h.state.flags.tripped == ()
    before = len(h.decisions())

    h.set_regime(True)
    await h.run_for(600)
    flag_decisions = [d for d in h.decisions()[before:] if d.reason == "flags"]
    assert len(flag_decisions) == 1, "one burst gives one decision"
    d = flag_decisions[0]
    tripped = {n for n, f in d.flags.items() if f["tripped"]}
    assert {"liquidity", "volatility"} <= tripped
    assert Decimal(d.plan["target_after"]) < Decimal(d.plan["target_before"]) == Decimal("0.05")
    assert d.plan["inputs"]["vol_short"] > 1.2 or "regime" in d.flags["volatility"]["why"]
    assert Decimal("0") < h.state.position.size < Decimal("0.05")
    line = h.engine.markets["BTC-USD"].last_decision["summary"]
    assert line.startswith("flags[") and "liquidity" in line and "volatility" in line


async def test_a_single_flag_never_trades(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0.05"}, "carry": {"enabled": False}},
                           "rules": {"audit_interval_secs": 36000}})
    await h.run_for(900)
    orders, decisions = h.order_count(), len(h.decisions())
    h.engine.news.set_operator("FOMC", h.clock.now + 2 * HOUR)
    await h.run_for(900)
    assert h.state.flags.tripped == ("news",)
    assert (h.order_count(), len(h.decisions())) == (orders, decisions)


async def test_same_stream_same_decisions(tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        h = Harness(tmp_path / str(i), {"strategy": {"targets": {"BTC-USD": "0.05"}}})
        await h.run_for(300)
        h.set_regime(True)
        await h.run_for(300)
        runs.append([(d.ts_ns, d.reason, d.plan["target_after"], d.plan["plan"]) for d in h.decisions()])
    assert runs[0] == runs[1] and runs[0]



async def test_an_unhedged_gap_left_by_a_crash_is_still_hedged_after_restart(tmp_path: Path) -> None:
    """The hedge's owed spot position and carry latch survive a restart (store meta)."""
    quiet = {"strategy": {"targets": {"BTC-USD": "0"}}, "rules": {"audit_on_start": False}}
    before = Harness(tmp_path, quiet)
    await before.run_for(5)
    latched_until = before.clock.now + 3600 * SEC
    # As after perp fills of a carry open: 0.3 BTC of spot owed, none bought yet; then a crash.
    owed = replace(before.engine.hedges["BTC-USD"], required=Decimal("0.3"), goal=Decimal("0.3"),
                   latched_until_ns=latched_until)
    before.engine.hedge_control.set("BTC-USD", owed)
    before.store.close()

    after = Harness(tmp_path, quiet)  # no start-up audit: the hedge alone acts
    hedge = after.engine.hedges["BTC-USD"]
    assert hedge.required == Decimal("0.3") and hedge.latched(after.clock.now)
    assert hedge.mismatch(after.state.spot.position.size) == Decimal("-0.3")
    await after.run_for(60)
    assert after.state.spot.position.size == Decimal("0.3")  # the gap was bought on restart
    assert after.engine.hedges["BTC-USD"].mismatch(after.state.spot.position.size) == 0


async def test_a_perp_fill_and_the_hedge_it_makes_due_are_stored_in_one_transaction(tmp_path: Path) -> None:
    """A crash can fall between two commits, never inside one: the fill and its hedge share one."""
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    await h.run_for(5)
    now = h.clock.now
    # A carry opening: the perp sells 0.3 and the spot leg follows its fills one for one.
    hedge = replace(h.engine.hedges["BTC-USD"], goal=Decimal("0.3"), ratio=Decimal(-1))
    h.engine.hedge_control.set("BTC-USD", hedge)
    orders = h.engine.order_managers[0]
    orders.start_parent(TwapPlan("BTC-USD", Side.SELL, Decimal("0.3"), False, (now,), (Decimal("0.3"),),
                                 now + 60 * SEC), decision_id=1)
    parent = orders.parents["BTC-USD"]
    child = Child(777, Decimal("0.3"), Decimal(60_000), TimeInForce.IOC)
    parent.children[777] = child
    orders._child_parent[777] = (parent, child)
    h.store.record_order("paper", OrderRequest(777, "BTC-USD", Side.SELL, Decimal("0.3"), Decimal(60_000),
                                               TimeInForce.IOC), now)
    statements: list[str] = []
    h.store._conn.set_trace_callback(statements.append)
    fill = Fill("f-1", 777, "BTC-USD", Side.SELL, Decimal(60_000), Decimal("0.1"), Decimal("0.5"),
                Liquidity.TAKER, now)
    h.engine.on_account_event(fill)
    h.engine.on_account_event(fill)  # a replay changes nothing, stores nothing
    h.store._conn.set_trace_callback(None)

    transactions = " ".join(statements).split("COMMIT")
    with_fill = [t for t in transactions if "INSERT INTO fills" in t]
    assert len(with_fill) == 2  # the replayed insert is refused inside its own transaction
    assert "INSERT INTO meta" in with_fill[0] and "INSERT INTO meta" not in with_fill[1]
    assert not any("INSERT INTO meta" in t for t in transactions if "INSERT INTO fills" not in t)
    assert h.engine.hedges["BTC-USD"].required == Decimal("0.1")
    h.store.close()
    restarted = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    assert restarted.engine.hedges["BTC-USD"].required == Decimal("0.1")  # what the fill made due


async def test_perp_children_of_a_hedged_leg_fit_the_mismatch_headroom(tmp_path: Path) -> None:
    """With the spot leg unable to follow, the perp leg never owes more hedge than the limit."""
    limit = Decimal(3000)
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}},
                           "execution": {"hedge_max_mismatch_usd": str(limit)}})
    await h.run_for(5)
    h.engine.order_managers[1].venue.place = _refuse  # type: ignore[method-assign]  # spot is down
    hedge = replace(h.engine.hedges["BTC-USD"], goal=Decimal(1), ratio=Decimal(-1))
    h.engine.hedge_control.set("BTC-USD", hedge)
    now = h.clock.now
    orders = h.engine.order_managers[0]
    orders.start_parent(TwapPlan("BTC-USD", Side.SELL, Decimal(1), False, (now,), (Decimal(1),),
                                 now + 600 * SEC), decision_id=1)
    worst = Decimal(0)
    for _ in range(20):  # until the leg is given up and unwound (spot rejects in a row)
        await h.run_for(1)
        mismatch = h.engine.hedges["BTC-USD"].mismatch_usd(h.state.spot.position.size, h.state.mark)
        worst = max(worst, abs(mismatch))
    sells = [Decimal(size) for (size,) in h.store._read(
        "SELECT size FROM orders WHERE market = 'BTC-USD' AND side = 'SELL' AND reduce_only = 0")]
    assert sells  # the perp leg did trade, up to its headroom
    # All of it filled and owed, with no spot bought: within the limit (marks move a little).
    # One child for the whole 1 BTC, as without the cap, would have owed ~$65k of hedge.
    assert sum(sells) * h.state.mark <= limit * Decimal("1.01"), sells
    assert worst <= limit, worst


async def _refuse(order: object) -> None:
    raise OrderRejected("paper_spot", "place", "venue down (test)")
