"""Funding signs and the funding ledger: positive rate, longs pay, shorts receive, hourly."""

from decimal import Decimal
from pathlib import Path

import pytest
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import load
from bot.domain import (
    BookLevel,
    BookSnapshot,
    Fill,
    FundingPayment,
    Liquidity,
    MarketSpec,
    OracleUpdate,
    OrderRequest,
    Position,
    Side,
    TimeInForce,
)
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.ledger import (
    FundingLedger,
    attribute_pnl,
    expected_funding_usd,
    funding_amount_usd,
    slippage_cost_usd,
)
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

SEC = 1_000_000_000
HOUR = 3600 * SEC
RATE = Decimal("0.0001")


@pytest.mark.parametrize(
    ("size", "rate", "amount"),
    [
        (Decimal(2), RATE, Decimal("-12")),  # long pays: 2 x 60000 x 0.0001
        (Decimal(-2), RATE, Decimal(12)),  # short receives
        (Decimal(2), -RATE, Decimal(12)),  # negative rate: long receives
        (Decimal(-2), -RATE, Decimal("-12")),  # and short pays
        (Decimal(0), RATE, Decimal(0)),
    ],
)
def test_funding_sign(size: Decimal, rate: Decimal, amount: Decimal) -> None:
    assert funding_amount_usd(size, Decimal(60000), rate) == amount
    assert expected_funding_usd(size, Decimal(60000), rate, 8) == amount * 8


def test_ledger_books_each_settlement_once() -> None:
    ledger = FundingLedger()
    pay = FundingPayment("BTC-USD", RATE, Decimal(1), Decimal(60000), Decimal(-6), HOUR)
    assert ledger.record(pay) and not ledger.record(pay)
    ledger.record(FundingPayment("BTC-USD", -RATE, Decimal(1), Decimal(60000), Decimal(6), 2 * HOUR))
    assert (ledger.paid_usd, ledger.received_usd, ledger.realised_usd) == (6, 6, 0)
    assert ledger.payments == 2 and ledger.last_rate == -RATE


async def test_hourly_funding_on_the_position_at_each_settlement(tmp_path: Path) -> None:
    """Adding to and partly closing a position between settlements never double counts."""
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=["BTC-USD"],
                    strategy={"targets": {}})
    clock = ManualClock(10 * HOUR + SEC)
    book = OrderBook("BTC-USD")
    levels = tuple(BookLevel(Decimal(60000 + i), Decimal(5)) for i in range(5))
    bids = tuple(BookLevel(Decimal(59999 - i), Decimal(5)) for i in range(5))
    book.apply_snapshot(BookSnapshot("BTC-USD", bids, levels, clock.now, clock.now))
    store = Store.open(tmp_path / "db.sqlite")
    venue = PaperVenue({"BTC-USD": book}, FeeSchedule(), clock)
    orders = OrderManager(venue, store, Metrics(), clock, settings.execution)
    spec = MarketSpec("BTC-USD", Decimal(1), Decimal("0.0001"), Decimal("0.0001"))
    engine = Engine(settings, {"BTC-USD": spec}, store, orders, Metrics(), clock, {"BTC-USD": book})
    venue.set_account_sink(engine.on_account_event)
    state = engine.markets["BTC-USD"]
    client = iter(range(1, 100))

    async def trade(side: Side, size: str) -> None:
        price = Decimal(70000) if side is Side.BUY else Decimal(50000)
        await venue.place(OrderRequest(next(client), "BTC-USD", side, Decimal(size), price, TimeInForce.IOC))

    def oracle(at_ns: int, price: int) -> None:
        clock.now = at_ns
        event = OracleUpdate("BTC-USD", Decimal(price), RATE, at_ns, at_ns)
        engine.on_market_event(event)
        venue.on_market_event(event)

    oracle(10 * HOUR + SEC, 60000)
    await trade(Side.BUY, "1")  # long 1
    oracle(10 * HOUR + 1800 * SEC, 60000)
    await trade(Side.BUY, "1")  # add: long 2 before the 11:00 settlement
    oracle(11 * HOUR + SEC, 61000)  # settles hour 11 on 2 BTC at 61000
    await trade(Side.SELL, "1.5")  # partly close: long 0.5
    oracle(11 * HOUR + 1800 * SEC, 61000)
    oracle(12 * HOUR + SEC, 62000)  # settles hour 12 on 0.5 BTC at 62000
    await trade(Side.SELL, "2.5")  # flip: short 2
    oracle(13 * HOUR + SEC, 63000)  # settles hour 13: the short receives

    expected = [Decimal(2) * 61000 * -RATE, Decimal("0.5") * 62000 * -RATE, Decimal(2) * 63000 * RATE]
    payments = store.funding_payments("BTC-USD")
    assert [p.amount for p in payments] == expected
    assert [p.ts_event for p in payments] == [11 * HOUR, 12 * HOUR, 13 * HOUR]
    assert state.ledger.realised_usd == sum(expected) == state.position.funding_pnl
    # a venue repeating a settlement (reconnect, replay) is booked once
    engine.on_account_event(payments[0])
    assert state.ledger.payments == 3 and state.ledger.realised_usd == sum(expected)
    # expected expense line: short 2 at the 63000 mark, forecast 0.0001/h over 8h -> income
    assert engine.expected_funding() == Decimal(2) * 63000 * RATE * 8
    store.close()


def test_pnl_attribution_sums_to_trading_pnl() -> None:
    pos = Position("BTC-USD")
    pos.apply_fill(Fill("a", 1, "BTC-USD", Side.BUY, Decimal(100), Decimal(2), Decimal("0.1"),
                        Liquidity.TAKER, 0))
    slip = slippage_cost_usd(Side.BUY, Decimal(100), Decimal(2), Decimal("99.5"))  # paid 0.5 over mid
    assert slip == Decimal(1)
    pnl = attribute_pnl(pos, Decimal(110), slip, Decimal(3))
    assert pnl.price == Decimal(21) and pnl.slippage == Decimal(-1) and pnl.fees == Decimal("-0.1")
    assert pnl.total == Decimal(20) - Decimal("0.1") + Decimal(3)
    assert slippage_cost_usd(Side.SELL, Decimal(99), Decimal(1), Decimal(100)) == Decimal(1)
