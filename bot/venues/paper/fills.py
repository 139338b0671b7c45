"""Paper fill model (pure): book-walking taker fills, queue-aware maker fills, hourly funding.

Taker orders are IOC against the visible book. Liquidity they take is remembered in a
`ConsumedLiquidity` the caller owns (one per market) and passes to every `fill_taker` call: the
same resting size is not filled twice until the book restates that level. A level counts as
restated when its size in the book differs from the size it had when we consumed from it, so the
caller need not forward book events to it.

Maker orders rest in a `RestingOrder` with `queue_ahead`, the size resting at their price when
they joined. Trades printed at that price eat the queue first; only the excess fills us. A trade
printed through our price means the level was exhausted, so it fills us straight away. When the
book moves through a resting order (asks at or below our bid), the crossing size trades with it
at our price (`fill_crossed`), and that size counts as consumed for later takers.

This is the simulator's matching model too: `bot.sim.exchange` rests account orders with these
functions, so paper and simulator fills agree (tests/unit/test_paper_fills.py measures how well).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.book import OrderBook
from bot.domain import ZERO, Fill, FundingPayment, Liquidity, OrderRequest, Side, Trade


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fee rates as fractions of notional; the default is dYdX tier 1 (maker 1 bp, taker 5 bp)."""

    maker_fee_rate: Decimal = Decimal("0.0001")
    taker_fee_rate: Decimal = Decimal("0.0005")

    def fee(self, price: Decimal, size: Decimal, liquidity: Liquidity) -> Decimal:
        """Return the fee in quote currency (> 0 paid, < 0 a rebate), exact."""
        rate = self.maker_fee_rate if liquidity is Liquidity.MAKER else self.taker_fee_rate
        return price * size * rate


class ConsumedLiquidity:
    """Remember resting size our paper takers took, per price, until the book restates the level."""

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        # price -> (book size when we consumed from it, total size consumed since)
        self._bids: dict[Decimal, tuple[Decimal, Decimal]] = {}
        self._asks: dict[Decimal, tuple[Decimal, Decimal]] = {}

    def taken(self, taker_side: Side, book: OrderBook) -> dict[Decimal, Decimal]:
        """Return size already taken per price on the side `taker_side` takes; drop stale levels."""
        entries = self._asks if taker_side is Side.BUY else self._bids
        book_side = taker_side.opposite()
        out: dict[Decimal, Decimal] = {}
        for price, (seen, amount) in list(entries.items()):
            if book.size_at(book_side, price) != seen:
                del entries[price]
            else:
                out[price] = amount
        return out

    def record(self, taker_side: Side, price: Decimal, book_size: Decimal, amount: Decimal) -> None:
        """Add `amount` taken at `price` whose book level currently shows `book_size`."""
        entries = self._asks if taker_side is Side.BUY else self._bids
        seen, before = entries.get(price, (book_size, ZERO))
        if seen != book_size:
            before = ZERO
        entries[price] = (book_size, before + amount)

    def clear(self) -> None:
        """Forget everything (e.g. after a resync)."""
        self._bids.clear()
        self._asks.clear()


def fill_taker(
    order: OrderRequest,
    book: OrderBook,
    fees: FeeSchedule,
    fill_id_prefix: str,
    ts_ns: int,
    consumed: ConsumedLiquidity,
) -> list[Fill]:
    """Fill `order` as IOC against `book` up to its limit price; one Fill per level taken.

    Never rests; returns [] when nothing crosses. Fill ids are `f"{fill_id_prefix}:{i}"`, so the
    prefix must be unique per call. Taken size is recorded in `consumed`.
    """
    if order.market != book.market:
        raise ValueError(f"order for {order.market} filled against book {book.market}")
    book_side = order.side.opposite()
    taken = consumed.taken(order.side, book)
    fills: list[Fill] = []
    for i, lvl in enumerate(book.walk(order.side, order.size, order.price, consumed=taken)):
        consumed.record(order.side, lvl.price, book.size_at(book_side, lvl.price), lvl.size)
        fills.append(Fill(
            fill_id=f"{fill_id_prefix}:{i}",
            client_id=order.client_id,
            market=order.market,
            side=order.side,
            price=lvl.price,
            size=lvl.size,
            fee=fees.fee(lvl.price, lvl.size, Liquidity.TAKER),
            liquidity=Liquidity.TAKER,
            ts_event=ts_ns,
        ))
    return fills


def post_only_would_cross(order: OrderRequest, book: OrderBook) -> bool:
    """Return True if `order` would take liquidity now (a post-only venue rejects it)."""
    if order.side is Side.BUY:
        ask = book.best_ask()
        return ask is not None and order.price >= ask.price
    bid = book.best_bid()
    return bid is not None and order.price <= bid.price


@dataclass(slots=True)
class RestingOrder:
    """A paper maker order in the book's queue at its limit price."""

    order: OrderRequest
    queue_ahead: Decimal  # size ahead of us at our price; only shrinks
    fill_id_prefix: str
    filled_size: Decimal = ZERO
    fill_count: int = 0

    @property
    def remaining_size(self) -> Decimal:
        return self.order.size - self.filled_size

    @property
    def is_filled(self) -> bool:
        return self.filled_size >= self.order.size


def join_queue(order: OrderRequest, book: OrderBook, fill_id_prefix: str) -> RestingOrder:
    """Rest `order` behind everything currently at its price (call after post_only_would_cross)."""
    return RestingOrder(order, book.size_at(order.side, order.price), fill_id_prefix)


def on_book_update(resting: RestingOrder, book: OrderBook) -> None:
    """Shrink the queue ahead when the level at our price now holds less than it."""
    level = book.size_at(resting.order.side, resting.order.price)
    if level < resting.queue_ahead:
        resting.queue_ahead = level


def on_trade(resting: RestingOrder, trade: Trade, fees: FeeSchedule, ts_ns: int) -> Fill | None:
    """Fill `resting` (partially) once volume traded at or through its price passes the queue."""
    order = resting.order
    remaining = resting.remaining_size
    if trade.market != order.market or trade.aggressor is order.side or remaining <= 0:
        return None
    # A SELL aggressor hits bids: our bid at P is reached by prints at P or below.
    delta = (order.price - trade.price) * order.side.sign
    if delta < 0:
        return None
    volume = trade.size
    if delta > 0:
        resting.queue_ahead = ZERO  # the taker printed worse than us: our level is exhausted
    else:
        eaten = min(resting.queue_ahead, volume)
        resting.queue_ahead -= eaten
        volume -= eaten
    size = min(volume, remaining)
    if size <= 0:
        return None
    return _maker_fill(resting, size, fees, ts_ns)


def fill_crossed(
    resting: RestingOrder, book: OrderBook, fees: FeeSchedule, ts_ns: int, consumed: ConsumedLiquidity,
) -> Fill | None:
    """Fill `resting` at its price when the opposite side of `book` now reaches it (maker fill).

    Takes the opposite levels priced at or better than our limit, best first, up to what is
    left of the order, minus liquidity our takers already consumed; records what it takes.
    """
    order = resting.order
    remaining = resting.remaining_size
    if remaining <= 0 or book.needs_resync:
        return None
    if order.side is Side.BUY:
        touch = book.best_ask()
        if touch is None or touch.price > order.price:
            return None
    else:
        touch = book.best_bid()
        if touch is None or touch.price < order.price:
            return None
    book_side = order.side.opposite()
    taken = consumed.taken(order.side, book)
    size = ZERO
    for lvl in book.walk(order.side, remaining, order.price, consumed=taken):
        consumed.record(order.side, lvl.price, book.size_at(book_side, lvl.price), lvl.size)
        size += lvl.size
    if size <= 0:
        return None
    resting.queue_ahead = ZERO  # the level behind us traded through
    return _maker_fill(resting, size, fees, ts_ns)


def _maker_fill(resting: RestingOrder, size: Decimal, fees: FeeSchedule, ts_ns: int) -> Fill:
    """Book `size` of a resting order as filled at its own price, as a maker."""
    order = resting.order
    fill = Fill(
        fill_id=f"{resting.fill_id_prefix}:{resting.fill_count}",
        client_id=order.client_id,
        market=order.market,
        side=order.side,
        price=order.price,
        size=size,
        fee=fees.fee(order.price, size, Liquidity.MAKER),
        liquidity=Liquidity.MAKER,
        ts_event=ts_ns,
    )
    resting.filled_size += size
    resting.fill_count += 1
    return fill


def funding_payment(
    market: str, position_size: Decimal, oracle_price: Decimal, rate_1h: Decimal, ts_ns: int
) -> FundingPayment:
    """Settle one hour of funding: amount = -size * oracle * rate (positive rate: longs pay)."""
    amount = ZERO - position_size * oracle_price * rate_1h  # ZERO - avoids a "-0" for flat
    return FundingPayment(market, rate_1h, position_size, oracle_price, amount, ts_ns)
