import asyncio
import contextlib
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.book import OrderBook
from bot.domain import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Fill,
    Liquidity,
    OrderRequest,
    Position,
    Side,
    TimeInForce,
    Trade,
)
from bot.errors import OrderRejected
from bot.sim import exchange as sim
from bot.sim.perp.records import AccountUpdate
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import (
    ConsumedLiquidity,
    FeeSchedule,
    fill_crossed,
    fill_taker,
    funding_payment,
    join_queue,
    on_book_update,
    on_trade,
    post_only_would_cross,
)
from bot.venues.sim.feed import default_params

D = Decimal
M = "ETH-USD"
FEES = FeeSchedule()


def lv(price: str, size: str) -> BookLevel:
    return BookLevel(D(price), D(size))


@pytest.fixture
def book() -> OrderBook:
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(
        M,
        (lv("2000", "1"), lv("1999", "2"), lv("1998", "3")),
        (lv("2001", "0.5"), lv("2002", "1"), lv("2003", "2")),
        1, 1,
    ))
    return b


def order(side: Side, size: str, price: str, tif: TimeInForce = TimeInForce.IOC,
          client_id: int = 7) -> OrderRequest:
    return OrderRequest(client_id, M, side, D(size), D(price), tif)


def trade(price: str, size: str, aggressor: Side) -> Trade:
    return Trade(M, D(price), D(size), aggressor, 5, 5)


def test_default_fees_are_dydx_tier1():
    assert FEES.maker_fee_rate == D("0.0001")
    assert FEES.taker_fee_rate == D("0.0005")
    assert FEES.fee(D(2000), D(2), Liquidity.TAKER) == D("2.0000")
    assert FEES.fee(D(2000), D(2), Liquidity.MAKER) == D("0.4000")
    assert FeeSchedule(maker_fee_rate=D("-0.00011")).fee(D(100), D(1), Liquidity.MAKER) < 0


def test_taker_walks_levels_with_exact_fees(book):
    fills = fill_taker(order(Side.BUY, "2", "2010"), book, FEES, "p1", 9, ConsumedLiquidity())
    assert [(f.price, f.size) for f in fills] == [(D(2001), D("0.5")), (D(2002), D(1)),
                                                  (D(2003), D("0.5"))]
    assert [f.fee for f in fills] == [D("2001") * D("0.5") * D("0.0005"), D("1.0010"),
                                      D("2003") * D("0.5") * D("0.0005")]
    assert {f.liquidity for f in fills} == {Liquidity.TAKER}
    assert [f.fill_id for f in fills] == ["p1:0", "p1:1", "p1:2"]
    assert all(f.ts_event == 9 and f.client_id == 7 and f.side is Side.BUY for f in fills)


def test_taker_respects_limit_and_never_rests(book):
    fills = fill_taker(order(Side.SELL, "5", "1999"), book, FEES, "p", 1, ConsumedLiquidity())
    assert [(f.price, f.size) for f in fills] == [(D(2000), D(1)), (D(1999), D(2))]
    assert fill_taker(order(Side.BUY, "1", "2000"), book, FEES, "q", 1, ConsumedLiquidity()) == []


def test_taker_does_not_mutate_book(book):
    fill_taker(order(Side.BUY, "1", "2001"), book, FEES, "p", 1, ConsumedLiquidity())
    assert book.best_ask() == lv("2001", "0.5")


def test_consumed_liquidity_is_not_filled_twice(book):
    consumed = ConsumedLiquidity()
    first = fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "a", 1, consumed)
    assert sum(f.size for f in first) == D(1)
    second = fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "b", 2, consumed)
    assert [(f.price, f.size) for f in second] == [(D(2002), D("0.5"))]
    assert fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "c", 3, consumed) == []
    # the other side is tracked separately
    assert fill_taker(order(Side.SELL, "1", "2000"), book, FEES, "d", 4, consumed)


def test_consumed_liquidity_resets_when_level_is_restated(book):
    consumed = ConsumedLiquidity()
    fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "a", 1, consumed)
    assert fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "b", 2, consumed) == []
    book.apply_delta(BookDelta(M, (), (lv("2001", "0.8"),), 3, 3))
    again = fill_taker(order(Side.BUY, "1", "2001"), book, FEES, "c", 4, consumed)
    assert [(f.price, f.size) for f in again] == [(D(2001), D("0.8"))]


def test_consumed_liquidity_clear(book):
    consumed = ConsumedLiquidity()
    fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "a", 1, consumed)
    consumed.clear()
    assert fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "b", 2, consumed)


def test_taker_rejects_other_market(book):
    other = OrderRequest(1, "BTC-USD", Side.BUY, D(1), D(1), TimeInForce.IOC)
    with pytest.raises(ValueError):
        fill_taker(other, book, FEES, "x", 1, ConsumedLiquidity())


def test_post_only_cross_detection(book):
    assert post_only_would_cross(order(Side.BUY, "1", "2001"), book)
    assert not post_only_would_cross(order(Side.BUY, "1", "2000.5"), book)
    assert post_only_would_cross(order(Side.SELL, "1", "2000"), book)
    assert not post_only_would_cross(order(Side.SELL, "1", "2000.5"), book)
    assert not post_only_would_cross(order(Side.BUY, "1", "5000"), OrderBook(M))


def test_resting_order_fills_only_after_queue_ahead_traded(book):
    resting = join_queue(order(Side.BUY, "1", "1999", TimeInForce.POST_ONLY), book, "r")
    assert resting.queue_ahead == D(2)
    assert on_trade(resting, trade("1999", "1.5", Side.SELL), FEES, 10) is None
    assert resting.queue_ahead == D("0.5")
    fill = on_trade(resting, trade("1999", "0.75", Side.SELL), FEES, 11)
    assert fill is not None
    assert (fill.price, fill.size, fill.liquidity) == (D(1999), D("0.25"), Liquidity.MAKER)
    assert fill.fee == D(1999) * D("0.25") * D("0.0001")
    assert fill.fill_id == "r:0" and fill.ts_event == 11
    assert resting.remaining_size == D("0.75") and not resting.is_filled
    last = on_trade(resting, trade("1999", "5", Side.SELL), FEES, 12)
    assert last is not None and last.size == D("0.75") and last.fill_id == "r:1"
    assert resting.is_filled
    assert on_trade(resting, trade("1999", "5", Side.SELL), FEES, 13) is None


def test_resting_order_ignores_same_side_and_worse_prints(book):
    resting = join_queue(order(Side.SELL, "1", "2002", TimeInForce.POST_ONLY), book, "r")
    assert resting.queue_ahead == D(1)
    assert on_trade(resting, trade("2002", "9", Side.SELL), FEES, 1) is None  # same side
    assert on_trade(resting, trade("2001", "9", Side.BUY), FEES, 1) is None  # below our ask
    assert resting.queue_ahead == D(1)
    assert on_trade(resting, Trade("BTC-USD", D(2002), D(9), Side.BUY, 1, 1), FEES, 1) is None


def test_trade_through_price_fills_regardless_of_queue(book):
    resting = join_queue(order(Side.SELL, "1", "2002"), book, "r")
    fill = on_trade(resting, trade("2003", "0.4", Side.BUY), FEES, 1)
    assert fill is not None and fill.size == D("0.4") and fill.price == D(2002)
    assert resting.queue_ahead == 0


def test_queue_at_empty_level_fills_first_trade():
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(M, (lv("10", "1"),), (lv("12", "1"),), 0, 0))
    resting = join_queue(order(Side.BUY, "2", "11"), b, "r")
    assert resting.queue_ahead == 0
    fill = on_trade(resting, trade("11", "0.5", Side.SELL), FEES, 1)
    assert fill is not None and fill.size == D("0.5")


def test_book_update_shrinks_queue_but_never_grows_it(book):
    resting = join_queue(order(Side.BUY, "1", "1998"), book, "r")
    assert resting.queue_ahead == D(3)
    book.apply_delta(BookDelta(M, (lv("1998", "1.2"),), (), 2, 2))
    on_book_update(resting, book)
    assert resting.queue_ahead == D("1.2")
    book.apply_delta(BookDelta(M, (lv("1998", "10"),), (), 3, 3))
    on_book_update(resting, book)
    assert resting.queue_ahead == D("1.2")


@pytest.mark.parametrize(
    ("size", "rate", "amount"),
    [
        ("2", "0.0001", "-0.4"),  # long pays a positive rate
        ("-2", "0.0001", "0.4"),  # short receives it
        ("2", "-0.0001", "0.4"),  # long receives a negative rate
        ("-2", "-0.0001", "-0.4"),
        ("0", "0.0001", "0"),
    ],
)
def test_funding_sign(size, rate, amount):
    pay = funding_payment(M, D(size), D("2000"), D(rate), 3_600_000_000_000)
    assert pay.amount == D(amount)
    assert (pay.market, pay.rate, pay.position_size, pay.oracle_price) == (
        M, D(rate), D(size), D("2000"))
    assert pay.ts_event == 3_600_000_000_000
    assert pay.amount != 0 or not pay.amount.is_signed()  # flat shows "0", not "-0"


def test_funding_exact_decimal():
    pay = funding_payment(M, D("0.0003"), D("61234.5"), D("0.000002375"), 0)
    assert pay.amount == D("-0.0003") * D("61234.5") * D("0.000002375")
    assert str(pay.amount) == "-0.00004362958125"


@given(st.lists(st.tuples(st.sampled_from(["1999", "1998", "2000"]),
                          st.decimals("0.01", "3", places=2)), max_size=30))
def test_resting_fills_never_exceed_order_size(prints):
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(M, (lv("1999", "2"),), (lv("2001", "1"),), 0, 0))
    resting = join_queue(order(Side.BUY, "1.5", "1999"), b, "r")
    traded_at_or_through = D(0)
    total = D(0)
    for price, size in prints:
        fill = on_trade(resting, trade(price, str(size), Side.SELL), FEES, 1)
        if D(price) <= D(1999):
            traded_at_or_through += size
        if fill is not None:
            total += fill.size
    assert total == resting.filled_size <= D("1.5")
    assert total <= traded_at_or_through


def test_fills_fold_into_position(book):
    pos = Position(M)
    for f in fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "p", 1, ConsumedLiquidity()):
        assert pos.apply_fill(f)
    assert pos.size == D(1)
    assert pos.avg_entry == D("2001.5")


def test_book_moving_through_a_resting_bid_fills_it_at_its_price(book):
    resting = join_queue(order(Side.BUY, "2", "2000", TimeInForce.POST_ONLY), book, "p")
    assert fill_crossed(resting, book, FEES, 9, ConsumedLiquidity()) is None  # asks still above
    # The asks come down through our bid: 2000 (0.5) and 1999.5 (1) cross it, 2000.5 does not.
    book.apply_snapshot(BookSnapshot(M, (lv("1999", "2"),),
                                     (lv("1999.5", "1"), lv("2000", "0.5"), lv("2000.5", "4")), 8, 8))
    consumed = ConsumedLiquidity()
    fill = fill_crossed(resting, book, FEES, 9, consumed)
    assert fill is not None
    assert (fill.price, fill.size, fill.liquidity) == (D("2000"), D("1.5"), Liquidity.MAKER)
    assert fill.fee == FEES.fee(D("2000"), D("1.5"), Liquidity.MAKER)
    assert resting.remaining_size == D("0.5")
    # What crossed is consumed: neither this order again nor a taker refills against it.
    assert fill_crossed(resting, book, FEES, 10, consumed) is None
    assert fill_taker(order(Side.BUY, "1", "2000"), book, FEES, "t", 10, consumed) == []


def test_paper_venue_fills_a_crossed_resting_order_on_the_book_update(book):
    events: list[object] = []
    venue = PaperVenue({M: book}, FEES, ManualClock(0, advance_on_sleep=False))
    venue.set_account_sink(events.append)
    asyncio.run(venue.place(order(Side.SELL, "1", "2001", TimeInForce.POST_ONLY)))
    bids = (lv("2002", "0.25"), lv("2001", "5"))
    delta = BookDelta(M, bids, (lv("2001", "0"), lv("2002", "0")), 20, 20)  # bids rise through 2001
    book.apply_delta(delta)
    venue.on_market_event(delta)
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.price, f.size, f.liquidity, f.ts_event) for f in fills] == [
        (D("2001"), D("1"), Liquidity.MAKER, 20)]
    assert asyncio.run(venue.open_orders()) == []


# ---- parity with the simulator's matching engine ----------------------------------------------
#
# The same orders at the same times go to the simulator's matching engine (`SimExchange`, an
# account trading on it) and to the paper venue, whose book is fed by a twin exchange with the same
# seed and no account. Both see one market path as long as our orders are small next to the book
# (the simulator's takers really consume its liquidity and move it; the paper's cannot), so the
# orders are a few percent of the touch, and the one order that walks the book goes last.
#
# Tolerance: post-only rejects and taker (IOC) fills agree exactly (status, size, price per level);
# of the maker orders at least 90% fill the same size with their first fill within one second, and
# the total maker size filled agrees within 10%. (Makers can differ: a simulated taker that wants
# more than the touch level fills a resting account order behind it, while on the public feed it
# prints only the level and the excess it wanted is invisible to the paper venue.)

PARITY_SEED = 3
PARITY_MARKET = "BTC-USD"
STEP_NS = 100_000_000
START_NS = 1_700_000_000 * 1_000_000_000
OWNER = "dydx1paper0parity0test"


@dataclass
class Outcome:
    kind: str  # "taker", "maker", "crossing" (a post-only that would cross), "walk"
    price: Decimal  # the limit
    accepted: bool
    fills: list[tuple[Decimal, Decimal]]  # (price, size) per fill, in order
    first_fill_step: int | None

    @property
    def filled(self) -> Decimal:
        return sum((size for _, size in self.fills), D(0))

    @property
    def by_price(self) -> dict[Decimal, Decimal]:
        out: dict[Decimal, Decimal] = {}
        for price, size in self.fills:
            out[price] = out.get(price, D(0)) + size
        return out


@dataclass
class Planned:
    client_id: int
    kind: str
    side: Side
    size: Decimal
    price: Decimal


def _plan(step: int, client_id: int, paper_book: OrderBook, tick: Decimal, lot: Decimal) -> Planned:
    """Cycle taker / maker at the touch / crossing post-only; sides alternate every cycle."""
    kind = ("taker", "maker", "crossing")[(client_id - 1) % 3]
    side = Side.BUY if (client_id - 1) // 3 % 2 == 0 else Side.SELL
    bid, ask = paper_book.best_bid(), paper_book.best_ask()
    assert bid is not None and ask is not None
    buy = side is Side.BUY
    if kind == "taker":
        return Planned(client_id, kind, side, 5 * lot, ask.price + 3 * tick if buy else bid.price - 3 * tick)
    if kind == "maker":
        return Planned(client_id, kind, side, 2 * lot, bid.price if buy else ask.price)
    return Planned(client_id, kind, side, 2 * lot, ask.price if buy else bid.price)


def _run_parity(steps: int, every: int, maker_life: int) -> tuple[dict[int, Outcome], dict[int, Outcome]]:
    params = default_params(PARITY_MARKET, 0.65)
    tick, lot = params.tick_size, params.step_size * 100
    matching = sim.SimExchange([params], PARITY_SEED, START_NS)
    twin = sim.SimExchange([params], PARITY_SEED, START_NS)
    matching.create_account(OWNER, D(10_000_000))
    clock = ManualClock(0, advance_on_sleep=False)
    paper_book = OrderBook(PARITY_MARKET)
    paper = PaperVenue({PARITY_MARKET: paper_book}, FeeSchedule(), clock)
    paper_events: list[object] = []
    paper.set_account_sink(paper_events.append)
    planned: list[Planned] = []
    accepted: dict[int, tuple[bool, bool]] = {}
    cancels: dict[int, list[int]] = {}

    async def place(step: int, p: Planned) -> None:
        ioc = p.kind in ("taker", "walk")
        flags = sim.ORDER_FLAGS_SHORT_TERM if ioc else sim.ORDER_FLAGS_LONG_TERM
        request = sim.OrderRequest(
            sim.OrderId(OWNER, 0, p.client_id, flags, 0), p.side, p.size, p.price,
            sim.TimeInForce.IOC if ioc else sim.TimeInForce.POST_ONLY,
            good_til_block=matching.height + 10 if ioc else None,
            good_til_block_time=None if ioc else clock.now // 1_000_000_000 + 3600)
        on_sim = on_paper = True
        try:
            matching.place_order(request, clock.now)
        except sim.ChainError:
            on_sim = False
        try:
            await paper.place(OrderRequest(p.client_id, PARITY_MARKET, p.side, p.size, p.price,
                                           TimeInForce.IOC if ioc else TimeInForce.POST_ONLY))
        except OrderRejected:
            on_paper = False
        planned.append(p)
        accepted[p.client_id] = (on_sim, on_paper)
        if p.kind == "maker":
            cancels.setdefault(step + maker_life, []).append(p.client_id)

    async def drive() -> None:
        for step in range(steps):
            clock.now = START_NS + step * STEP_NS
            matching.advance(clock.now)
            for event in twin.advance(clock.now):
                if isinstance(event, BookDelta):
                    paper_book.apply_delta(event)
                elif isinstance(event, BookSnapshot):
                    paper_book.apply_snapshot(event)
                if not isinstance(event, AccountUpdate):
                    paper.on_market_event(event)
            for client_id in cancels.pop(step, ()):
                with contextlib.suppress(sim.ChainError):
                    matching.cancel_order(sim.OrderId(OWNER, 0, client_id, sim.ORDER_FLAGS_LONG_TERM, 0),
                                          clock.now, good_til_block_time=clock.now // 1_000_000_000 + 3600)
                await paper.cancel(client_id)
            if step >= every and step % every == 0 and step < steps - every:
                await place(step, _plan(step, len(planned) + 1, paper_book, tick, lot))
        # Last: a taker that walks several levels, then the same order again in the same instant:
        # the second gets only what the first left (no refill of consumed liquidity).
        ask = paper_book.best_ask()
        assert ask is not None
        for _ in range(2):
            walk = Planned(len(planned) + 1, "walk", Side.BUY, ask.size * 3, ask.price + 4 * tick)
            await place(steps, walk)

    asyncio.run(drive())
    uid = {sim.order_uid(sim.OrderId(OWNER, 0, p.client_id, flags, 0)): p.client_id
           for p in planned for flags in (sim.ORDER_FLAGS_SHORT_TERM, sim.ORDER_FLAGS_LONG_TERM)}
    sim_fills = [(uid[f.order_uid], f.price, f.size, (f.ts_ns - START_NS) // STEP_NS)
                 for f in reversed(matching.fills(OWNER, limit=10**6))]
    paper_fills = [(e.client_id, e.price, e.size, (e.ts_event - START_NS) // STEP_NS)
                   for e in paper_events if isinstance(e, Fill)]

    def outcomes(fills: list[tuple[int, Decimal, Decimal, int]], venue: int) -> dict[int, Outcome]:
        out = {p.client_id: Outcome(p.kind, p.price, accepted[p.client_id][venue], [], None) for p in planned}
        for client_id, price, size, step in fills:
            o = out[client_id]
            o.fills.append((price, size))
            if o.first_fill_step is None:
                o.first_fill_step = step
        return out

    return outcomes(sim_fills, 0), outcomes(paper_fills, 1)


def test_paper_fills_match_the_simulators_matching_engine():
    on_sim, on_paper = _run_parity(steps=4000, every=40, maker_life=300)
    kinds = {k: [c for c, o in on_sim.items() if o.kind == k] for k in ("taker", "maker", "crossing", "walk")}
    assert len(kinds["taker"]) >= 30 and len(kinds["maker"]) >= 30 and len(kinds["crossing"]) >= 30
    for c in kinds["crossing"]:
        assert not on_sim[c].accepted and not on_paper[c].accepted, c
    for c in kinds["taker"] + kinds["walk"]:
        assert on_sim[c].accepted and on_paper[c].accepted, c
        assert on_sim[c].by_price == on_paper[c].by_price, c
    walk, again = (on_paper[c] for c in kinds["walk"])
    assert len(walk.by_price) >= 2  # it really walked the book
    assert again.by_price != walk.by_price  # the repeat found the first one's liquidity gone
    makers = kinds["maker"]
    assert sum(on_sim[c].filled > 0 for c in makers) >= len(makers) // 2  # makers really fill
    agree = [c for c in makers if on_sim[c].filled == on_paper[c].filled and (
        on_sim[c].first_fill_step is None or on_paper[c].first_fill_step is None
        or abs(on_sim[c].first_fill_step - on_paper[c].first_fill_step) <= 10)]
    assert len(agree) >= 0.9 * len(makers), sorted(set(makers) - set(agree))
    for c in makers:
        assert {price for price, _ in on_sim[c].fills + on_paper[c].fills} <= {on_sim[c].price}
    total_sim = sum((on_sim[c].filled for c in makers), D(0))
    total_paper = sum((on_paper[c].filled for c in makers), D(0))
    assert abs(total_sim - total_paper) <= total_sim * D("0.1")
