"""Funding on time: paper and backtests settle the rate dated T at T, not an hour early.

The candle source's oracle updates carry the rate that settles at the end of the current hour;
the paper venue must pay the rate dated 12:00 at 12:00 (the boundary the hour ends on), with the
rate the update *before* the boundary carried.
"""

from __future__ import annotations

from decimal import Decimal

from support.clock import ManualClock

from bot.backtest import sources
from bot.book import OrderBook
from bot.config import load
from bot.domain import FundingPayment, OracleUpdate
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

HOUR = 3600 * 1_000_000_000
SPIKE = Decimal("0.01")
BASE = Decimal("0.00001")


def _paper(position: Decimal) -> tuple[PaperVenue, list[FundingPayment]]:
    fees = FeeSchedule(Decimal(0), Decimal(0))
    clock = ManualClock(0, advance_on_sleep=False)
    venue = PaperVenue({"BTC-USD": OrderBook("BTC-USD")}, fees, clock, 3600.0)
    venue.restore_positions({"BTC-USD": position})
    paid: list[FundingPayment] = []
    venue.set_account_sink(lambda e: paid.append(e) if isinstance(e, FundingPayment) else None)
    return venue, paid


def test_the_backtest_spike_dated_at_a_known_hour_is_paid_at_that_hour() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    bars = [sources.Bar(t0 + k * HOUR, 20000, 20100, 19900, 20050, 1000) for k in range(6)]
    spike_at = t0 + 3 * HOUR
    hours = [t0 + k * HOUR for k in range(1, 7)]
    funding = {"BTC-USD": {t: SPIKE if t == spike_at else BASE for t in hours}}
    src = sources.candle_source(settings, {"BTC-USD": bars}, funding)
    venue, paid = _paper(Decimal(1))
    for _, perp, _ in src.batches:
        for event in perp:
            if isinstance(event, OracleUpdate):
                venue.on_market_event(event)
    by_hour = {p.ts_event: p.rate for p in paid}
    assert by_hour[spike_at] == SPIKE  # the rate dated T is settled at T ...
    assert by_hour[spike_at - HOUR] == BASE  # ... not an hour early
    assert by_hour[spike_at + HOUR] == BASE
    assert [p.ts_event for p in paid] == [t0 + k * HOUR for k in range(1, 6)]


def test_paper_settles_with_the_rate_of_the_hour_that_ended_at_the_new_oracle() -> None:
    venue, paid = _paper(Decimal(2))
    venue.on_market_event(OracleUpdate("BTC-USD", Decimal(100), Decimal("0.001"), HOUR - 5, HOUR - 5))
    venue.on_market_event(OracleUpdate("BTC-USD", Decimal(110), Decimal("0.5"), HOUR + 1, HOUR + 1))
    assert len(paid) == 1
    assert paid[0].rate == Decimal("0.001") and paid[0].ts_event == HOUR
    assert paid[0].amount == Decimal(-2) * Decimal(110) * Decimal("0.001")  # longs pay a positive rate
