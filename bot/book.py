"""L2 order book for one market (pure): absolute-size snapshots and deltas, crossed-book detection.

Each side is a `price -> size` dict plus an ascending list of its prices kept sorted with
`bisect`, so the touch is O(1) and a level update is a binary search plus a list insert/delete.
A crossed (or locked) book after a delta means we missed something: the book sets
`needs_resync` and the caller fetches a fresh snapshot.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from decimal import Decimal

from bot.domain import ZERO, BookDelta, BookLevel, BookSnapshot, Side

_BPS = Decimal(10_000)
_TWO = Decimal(2)


class OrderBook:
    """Keep the L2 book of one market, fed by snapshots and absolute-size deltas."""

    __slots__ = ("_ask_prices", "_asks", "_bid_prices", "_bids", "market", "needs_resync",
                 "ts_last_ns")

    def __init__(self, market: str) -> None:
        self.market = market
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending: the best bid is last
        self._ask_prices: list[Decimal] = []  # ascending: the best ask is first
        self.ts_last_ns = 0  # ts_recv of the last snapshot or delta applied
        self.needs_resync = True  # no snapshot yet

    # ---- updates -------------------------------------------------------------------------

    def clear(self) -> None:
        """Drop every level; the book needs a snapshot again."""
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()
        self.needs_resync = True

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """Replace the whole book; a crossed snapshot leaves `needs_resync` set."""
        if snap.market != self.market:
            raise ValueError(f"snapshot for {snap.market} applied to book {self.market}")
        self._bids = {lvl.price: lvl.size for lvl in snap.bids if lvl.size > 0}
        self._asks = {lvl.price: lvl.size for lvl in snap.asks if lvl.size > 0}
        self._bid_prices = sorted(self._bids)
        self._ask_prices = sorted(self._asks)
        self.ts_last_ns = snap.ts_recv
        self.needs_resync = self.is_crossed()

    def apply_delta(self, delta: BookDelta) -> bool:
        """Apply absolute level sizes (0 deletes); return False if the book must be resynced."""
        if delta.market != self.market:
            raise ValueError(f"delta for {delta.market} applied to book {self.market}")
        ok = _apply_side(self._bids, self._bid_prices, delta.bids)
        ok = _apply_side(self._asks, self._ask_prices, delta.asks) and ok
        self.ts_last_ns = delta.ts_recv
        if not ok or self.is_crossed():
            self.needs_resync = True
            return False
        return True

    # ---- reads ---------------------------------------------------------------------------

    def is_crossed(self) -> bool:
        """Return True when the best bid is at or above the best ask (locked counts as crossed)."""
        return bool(self._bid_prices and self._ask_prices
                    and self._bid_prices[-1] >= self._ask_prices[0])

    def best_bid(self) -> BookLevel | None:
        """Return the highest bid, if any."""
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return BookLevel(price, self._bids[price])

    def best_ask(self) -> BookLevel | None:
        """Return the lowest ask, if any."""
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return BookLevel(price, self._asks[price])

    def mid(self) -> Decimal | None:
        """Return (best bid + best ask) / 2, or None when a side is empty."""
        if not self._bid_prices or not self._ask_prices:
            return None
        return (self._bid_prices[-1] + self._ask_prices[0]) / _TWO

    def spread_bps(self) -> Decimal | None:
        """Return (ask - bid) / mid in basis points, or None when a side is empty."""
        mid = self.mid()
        if mid is None or mid <= 0:
            return None
        return (self._ask_prices[0] - self._bid_prices[-1]) / mid * _BPS

    def depth_within_bps(self, bps: Decimal, side: Side | None = None) -> Decimal:
        """Return base size within `bps` of mid: bids for BUY, asks for SELL, both for None."""
        mid = self.mid()
        if mid is None:
            return ZERO
        band = mid * bps / _BPS
        total = ZERO
        if side is not Side.SELL:
            start = bisect_left(self._bid_prices, mid - band)
            for price in self._bid_prices[start:]:
                total += self._bids[price]
        if side is not Side.BUY:
            stop = bisect_right(self._ask_prices, mid + band)
            for price in self._ask_prices[:stop]:
                total += self._asks[price]
        return total

    def levels(self, side: Side, n: int) -> list[BookLevel]:
        """Return up to n levels best first: bids for Side.BUY, asks for Side.SELL."""
        if n <= 0:
            return []
        if side is Side.BUY:
            return [BookLevel(p, self._bids[p]) for p in reversed(self._bid_prices[-n:])]
        return [BookLevel(p, self._asks[p]) for p in self._ask_prices[:n]]

    def size_at(self, side: Side, price: Decimal) -> Decimal:
        """Return the size resting at `price` on the bids (Side.BUY) or asks (Side.SELL)."""
        return (self._bids if side is Side.BUY else self._asks).get(price, ZERO)

    def walk(
        self,
        side: Side,
        size: Decimal,
        limit: Decimal | None = None,
        *,
        consumed: Mapping[Decimal, Decimal] | None = None,
    ) -> list[BookLevel]:
        """Return the levels a taker of `side` would take for `size` within `limit`, best first.

        BUY takes asks priced <= limit, SELL takes bids priced >= limit. `consumed` is size to
        treat as already gone at each price of the side being taken (paper fills). The book is
        not changed.
        """
        out: list[BookLevel] = []
        remaining = size
        if remaining <= 0:
            return out
        if side is Side.BUY:
            book, prices = self._asks, iter(self._ask_prices)
        else:
            book, prices = self._bids, reversed(self._bid_prices)
        for price in prices:
            if limit is not None and (price > limit if side is Side.BUY else price < limit):
                break
            available = book[price]
            if consumed:
                available -= consumed.get(price, ZERO)
            if available <= 0:
                continue
            take = min(available, remaining)
            out.append(BookLevel(price, take))
            remaining -= take
            if remaining <= 0:
                break
        return out


def _apply_side(book: dict[Decimal, Decimal], prices: list[Decimal],
                levels: Iterable[BookLevel]) -> bool:
    """Apply absolute sizes to one side; return False if a level had a negative size."""
    ok = True
    for lvl in levels:
        price, size = lvl.price, lvl.size
        if size > 0:
            if price not in book:
                insort(prices, price)
            book[price] = size
            continue
        if size < 0:
            ok = False  # malformed: drop the level and ask for a resync rather than crash
        if book.pop(price, None) is not None:
            del prices[bisect_left(prices, price)]
    return ok
