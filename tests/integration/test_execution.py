"""Execution end to end in-process: Engine + OrderManager + PaperVenue on a simulated market.

A fake clock steps the simulated perp one second at a time; events go to the engine, then to the
paper venue (as `bot/app.py` wires them), and `engine.tick()` sends due children. A thin wrapper
around the paper venue records the book each child saw when it was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import Settings, load
from bot.domain import (
    Fill,
    Liquidity,
    MarketParams,
    MarketStatus,
    MarketStatusKind,
    OrderRequest,
    Side,
    TimeInForce,
)
from bot.engine import Engine
from bot.errors import OrderRejected
from bot.execution.orders import OrderManager
from bot.execution.twap import BPS
from bot.sim.market import SimMarket
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.sim.feed import default_params

SEC = 1_000_000_000
START = 1_700_002_800 * SEC + SEC
MARKET = "BTC-USD"


@dataclass(frozen=True, slots=True)
class Sent:
    order: OrderRequest
    ts_ns: int
    best_bid: Decimal
    best_ask: Decimal
    depth_in_cap: Decimal  # size on the side a taker child takes, within the slippage cap


class RecordingVenue(PaperVenue):
    """The paper venue, noting the touch and the depth inside the cap when each order arrives."""

    cap_bps = Decimal(10)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[Sent] = []

    async def place(self, order: OrderRequest) -> None:
        book = self._books[order.market]
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None
        cap = self.cap_bps * BPS
        if order.side is Side.BUY:
            depth = sum((lv.size for lv in book.levels(Side.SELL, 50) if lv.price <= ask.price * (1 + cap)),
                        Decimal(0))
        else:
            depth = sum((lv.size for lv in book.levels(Side.BUY, 50) if lv.price >= bid.price * (1 - cap)),
                        Decimal(0))
        self.sent.append(Sent(order, self._clock.now_ns(), bid.price, ask.price, depth))
        await super().place(order)


class Harness:
    def __init__(self, tmp_path: Path, settings: dict[str, Any], **params: Any) -> None:
        self.settings: Settings = load(None, env_file=None, state_dir=str(tmp_path), markets=[MARKET],
                                       **settings)
        self.clock = ManualClock(START)
        sim_params = replace(default_params(MARKET, 0.65), high_vol_enter_per_sec=0.0, jump_per_sec=0.0,
                             **params)
        self.perp = SimMarket(sim_params, 11, START)
        s = self.settings
        self.store = Store.open(tmp_path / "perpbot.sqlite")
        books = {MARKET: OrderBook(MARKET)}
        self.venue = RecordingVenue(books, FeeSchedule(s.paper.maker_fee_rate, s.paper.taker_fee_rate),
                                    self.clock, s.sim.funding_interval_secs)
        self.venue.cap_bps = s.execution.slippage_cap_bps
        metrics = Metrics()
        self.orders = OrderManager(self.venue, self.store, metrics, self.clock, s.execution)
        self.engine = Engine(s, {MARKET: self.perp.spec()}, self.store, self.orders, metrics, self.clock,
                             books)
        self.venue.set_account_sink(self.engine.on_account_event)

    async def run_for(self, secs: int) -> None:
        for _ in range(secs):
            self.clock.now += SEC
            for event in self.perp.step(self.clock.now):
                self.engine.on_market_event(event)
                self.venue.on_market_event(event)
            await self.engine.tick()

    def fills(self) -> list[Fill]:
        return self.store.fills(MARKET)


def _settings(target: str, **execution: Any) -> dict[str, Any]:
    return {"strategy": {"targets": {MARKET: target}, "carry": {"enabled": False},
                         "max_notional_usd": 1_000_000},
            "paper": {"initial_equity_usd": 2_000_000},
            "rules": {"audit_interval_secs": 36000},
            "execution": {"twap_duration_secs": 60, "twap_slices": 6, **execution}}


async def test_taker_twap_larger_than_the_touch_completes_inside_depth_share_and_cap(tmp_path: Path) -> None:
    h = Harness(tmp_path, _settings("1.5"), funding_mean_1h=0.0, funding_vol_1h=0.0)
    await h.run_for(5)
    decisions = list(reversed(h.store.decisions(MARKET)))
    assert decisions and decisions[0].plan["plan"]["total"] == "1.5"
    assert "passive" not in decisions[0].plan["plan"]
    top = h.engine.markets[MARKET].book.best_ask()
    assert top is not None and top.size < Decimal("1.5")  # bigger than the top of the book
    await h.run_for(70)
    assert h.engine.markets[MARKET].position.size == Decimal("1.5")
    start = decisions[0].ts_ns
    fills = h.fills()
    assert fills and max(f.ts_event for f in fills) <= start + 60 * SEC  # inside its window
    share = h.settings.execution.max_depth_share
    by_id = {s.order.client_id: s for s in h.venue.sent}
    for sent in h.venue.sent:
        assert sent.order.tif is TimeInForce.IOC
        assert sent.order.size <= sent.depth_in_cap * share
    assert len(h.venue.sent) > 1
    notional = sum((f.price * f.size for f in fills), Decimal(0))
    touch_cost = sum(((f.price - by_id[f.client_id].best_ask) * f.size for f in fills), Decimal(0))
    avg_slippage_bps = touch_cost / notional / BPS
    assert Decimal(0) <= avg_slippage_bps <= h.settings.execution.slippage_cap_bps
    for f in fills:  # every single fill inside the cap, not just the average
        assert f.price <= by_id[f.client_id].best_ask * (1 + h.settings.execution.slippage_cap_bps * BPS)


async def test_funding_favouring_a_buy_rests_post_only_and_fills_as_maker(tmp_path: Path) -> None:
    # Negative funding: shorts pay, so buying is favoured and children rest at the bid.
    h = Harness(tmp_path, _settings("0"), funding_mean_1h=-0.0002, funding_vol_1h=0.000002,
                funding_reversion_per_hour=1.0)
    await h.run_for(5)  # the oracle (and its predicted funding rate) has arrived
    assert h.engine.markets[MARKET].funding.rate_1h < 0
    h.engine.set_directional_target(MARKET, Decimal("1.0"))
    await h.run_for(2)
    decisions = list(reversed(h.store.decisions(MARKET)))
    assert decisions and decisions[0].plan["plan"]["passive"] is True
    await h.run_for(90)
    posts = [s for s in h.venue.sent if s.order.tif is TimeInForce.POST_ONLY]
    assert posts, "passive children rest as post-only"
    for s in posts:
        assert s.order.price < s.best_ask  # never crossing the touch
        assert not s.order.reduce_only
    fills = h.fills()
    assert any(f.liquidity is Liquidity.MAKER for f in fills), "some children fill as maker"
    for s in h.venue.sent:
        assert s.order.size <= s.depth_in_cap * h.settings.execution.max_depth_share
        if s.order.tif is TimeInForce.IOC:  # the high-urgency fallback stays inside the cap
            assert s.order.price <= s.best_ask * (1 + h.settings.execution.slippage_cap_bps * BPS)
    assert h.engine.markets[MARKET].position.size == Decimal("1.0")
    assert h.store.open_orders() == []  # nothing left resting once the parent is done


# ---- market status and parameters from the venue -------------------------------------------------


def _announce(h: Harness, event: MarketStatus | MarketParams) -> None:
    """A v4_markets message, routed as bot/app.py routes market events."""
    h.engine.on_market_event(event)
    h.venue.on_market_event(event)


def _status(h: Harness, status: MarketStatusKind) -> MarketStatus:
    return MarketStatus(MARKET, status, h.clock.now, h.clock.now)


async def test_cancel_only_cancels_our_resting_order_places_none_and_trading_resumes_after(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, _settings("0"), funding_mean_1h=-0.0002, funding_vol_1h=0.000002,
                funding_reversion_per_hour=1.0)
    await h.run_for(5)
    h.engine.set_directional_target(MARKET, Decimal("1.0"))
    for _ in range(30):
        await h.run_for(1)
        if h.venue.resting:
            break
    assert h.venue.resting, "a passive child rests at the bid"
    operator = h.engine.events.subscribe()
    _announce(h, _status(h, MarketStatusKind.CANCEL_ONLY))
    await h.run_for(1)
    assert not h.venue.resting and MARKET not in h.orders.parents
    sent = len(h.venue.sent)
    await h.run_for(30)
    assert len(h.venue.sent) == sent, "nothing reaches the venue while the market is CANCEL_ONLY"
    assert h.engine.markets[MARKET].sizing.limited_by == "cancel_only"  # type: ignore[union-attr]
    event = operator.get_nowait()
    assert event.kind == "market_status" and (event.fields["old"], event.fields["new"]) == ("ACTIVE",
                                                                                           "CANCEL_ONLY")
    registry = h.engine._metrics.registry
    for status, value in (("CANCEL_ONLY", 1), ("ACTIVE", 0)):
        labels = {"market": MARKET, "status": status}
        assert registry.get_sample_value("perpbot_market_status", labels) == value
    _announce(h, _status(h, MarketStatusKind.ACTIVE))
    await h.run_for(60)
    assert len(h.venue.sent) > sent and h.engine.markets[MARKET].position.size > 0


async def test_final_settlement_closes_the_position_with_reduce_only_orders(tmp_path: Path) -> None:
    h = Harness(tmp_path, _settings("1.0"), funding_mean_1h=0.0, funding_vol_1h=0.0)
    await h.run_for(70)
    assert h.engine.markets[MARKET].position.size == Decimal("1.0")
    sent = len(h.venue.sent)
    _announce(h, _status(h, MarketStatusKind.FINAL_SETTLEMENT))
    await h.run_for(70)
    assert h.engine.markets[MARKET].position.size == 0
    closing = [s.order for s in h.venue.sent[sent:]]
    assert closing
    assert all(o.reduce_only and o.side is Side.SELL and o.tif is TimeInForce.IOC for o in closing)
    h.engine.set_directional_target(MARKET, Decimal("2.0"))  # no new exposure while it settles
    await h.run_for(20)
    assert len(h.venue.sent) == sent + len(closing)


async def test_post_only_market_reduces_passively_only_and_opens_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, _settings("1.0", passive_timeout_secs=2, urgency="high"), funding_mean_1h=0.0,
                funding_vol_1h=0.0)
    await h.run_for(70)
    assert h.engine.markets[MARKET].position.size == Decimal("1.0")
    sent = len(h.venue.sent)
    _announce(h, _status(h, MarketStatusKind.POST_ONLY))
    h.engine.set_directional_target(MARKET, Decimal("3.0"))
    await h.run_for(20)
    assert len(h.venue.sent) == sent  # more exposure is not allowed
    h.engine.set_directional_target(MARKET, Decimal("0.2"))
    await h.run_for(70)  # well past the passive timeout: high urgency would cross, POST_ONLY must not
    reducing = [s for s in h.venue.sent[sent:]]
    assert reducing and all(s.order.tif is TimeInForce.POST_ONLY for s in reducing)
    assert all(s.order.price > s.best_bid for s in reducing)  # sells rest above the bid, never cross


async def test_new_tick_and_margin_fractions_apply_to_the_next_target_and_child(tmp_path: Path) -> None:
    settings = _settings("0")
    settings["strategy"]["max_notional_usd"] = 10**9  # the liquidation-distance floor is the binding cap
    h = Harness(tmp_path, settings, funding_mean_1h=0.0, funding_vol_1h=0.0)
    await h.run_for(5)
    state = h.engine.markets[MARKET]
    cap_before = state.sizing.cap_usd  # type: ignore[union-attr]
    _announce(h, MarketParams(MARKET, Decimal(5), None, Decimal("0.95"), Decimal("0.9"), None, h.clock.now,
                              h.clock.now))
    assert h.engine.specs[MARKET].tick_size == Decimal(5) == state.spec.tick_size
    h.engine.set_directional_target(MARKET, Decimal("0.5"))
    await h.run_for(3)
    assert state.spec.maintenance_margin_fraction == Decimal("0.9")
    floor = h.settings.strategy.min_liquidation_distance
    assert state.sizing is not None and state.sizing.cap_usd < cap_before
    expected = h.engine.equity() / (floor + Decimal("0.9"))  # equity moved by a fill's fee since
    assert abs(state.sizing.cap_usd - expected) < expected * Decimal("0.0001")
    sent = [s.order for s in h.venue.sent]
    assert sent and all(o.price % 5 == 0 for o in sent)


class RefusingVenue(RecordingVenue):
    """A venue that, like dYdX, refuses every order once the pair is in final settlement."""

    settling = False

    async def place(self, order: OrderRequest) -> None:
        if self.settling:
            self.sent.append(Sent(order, self._clock.now_ns(), Decimal(0), Decimal(0), Decimal(0)))
            raise OrderRejected("paper", "place", "clob/34: trading is disabled (final settlement)")
        await super().place(order)


async def test_final_settlement_holds_and_says_why_when_the_venue_refuses_the_close(tmp_path: Path) -> None:
    h = Harness(tmp_path, _settings("1.0"), funding_mean_1h=0.0, funding_vol_1h=0.0)
    venue = RefusingVenue(h.venue._books, h.venue._fees, h.clock, h.settings.sim.funding_interval_secs)
    h.venue = venue
    h.orders.venue = venue
    venue.set_account_sink(h.engine.on_account_event)
    await h.run_for(70)
    assert h.engine.markets[MARKET].position.size == Decimal("1.0")
    venue.settling = True
    sent = len(venue.sent)
    with capture_logs() as logs:
        _announce(h, _status(h, MarketStatusKind.FINAL_SETTLEMENT))
        await h.run_for(60)
    refused = venue.sent[sent:]
    assert len(refused) == 1 and refused[0].order.reduce_only  # one refusal, then the bot holds
    assert MARKET not in h.orders.parents and h.engine.markets[MARKET].position.size == Decimal("1.0")
    held = [e for e in logs if e["event"] == "final_settlement_hold"]
    assert len(held) == 1 and "refuses orders" in held[0]["why"]
