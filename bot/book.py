"""L2 order book for one market (pure): absolute-size snapshots and deltas, crossed-book detection.

Each side is a `price -> size` dict plus an ascending list of its prices kept sorted with
`bisect`, so the touch is O(1) and a level update is a dict store (size change) or a binary
search plus a list insert/delete (new or removed price). A crossed (or locked) book after an
update means we missed something: the book sets `needs_resync` and the caller fetches a fresh
snapshot.

Two ways in, one book:
- `apply_snapshot` / `apply_delta` take domain `BookSnapshot` / `BookDelta` (Decimal levels);
- `apply_snapshot_levels` / `apply_levels` take the venue's raw `(price, size)` decimal strings
  and are the feed's hot path: no `BookLevel`/`BookDelta` objects are built. Strings become
  Decimals through a `LevelCache` (prices and sizes repeat, so almost every lookup is one dict
  hit); a string is validated once, when it enters the cache.
Everything read out of the book is Decimal. `best_bid`/`best_ask` keep their `BookLevel` until
the touch of that side changes, so reading the touch after every update allocates nothing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Protocol

from bot.domain import ZERO, BookDelta, BookLevel, BookSnapshot, Side
from bot.errors import MalformedMessage

_BPS = Decimal(10_000)
_TWO = Decimal(2)
_ZERO = Decimal(0)
_INF = Decimal("Infinity")
DEFAULT_CACHE_SIZE = 1 << 16  # distinct strings per kind (price, size) kept before a reset

RawLevel = tuple[str, str]  # (price, size) as the venue sends them: decimal strings


class LevelUpdate(Protocol):
    """One raw update: absolute sizes per side (a venue wire struct fits as it is)."""

    @property
    def bids(self) -> Sequence[RawLevel]: ...

    @property
    def asks(self) -> Sequence[RawLevel]: ...


class LevelCache:
    """Map decimal strings to validated Decimals; each kind is bounded at `max_size` entries.

    Prices must be finite and > 0, sizes finite and >= 0; anything else raises
    MalformedMessage. When a kind is full it is emptied (not LRU): the cache only saves work,
    and a reset costs one burst of misses, which keeps the hit path to one dict lookup.
    """

    __slots__ = ("_prices", "_sizes", "max_size", "price_get", "size_get")

    def __init__(self, max_size: int = DEFAULT_CACHE_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self._prices: dict[str, Decimal] = {}
        self._sizes: dict[str, Decimal] = {}
        # Bound once: the hot path calls these directly (the dicts are cleared, never replaced).
        self.price_get = self._prices.get
        self.size_get = self._sizes.get

    def __len__(self) -> int:
        return len(self._prices) + len(self._sizes)

    def price(self, text: str) -> Decimal:
        """Return the Decimal for a price string (> 0, finite)."""
        value = self._prices.get(text)
        if value is None:
            value = _remember(self._prices, self.max_size, text, _parse(text, "price", zero_ok=False))
        return value

    def size(self, text: str) -> Decimal:
        """Return the Decimal for a size string (>= 0, finite)."""
        value = self._sizes.get(text)
        if value is None:
            value = _remember(self._sizes, self.max_size, text, _parse(text, "size", zero_ok=True))
        return value


def _parse(text: str, what: str, *, zero_ok: bool) -> Decimal:
    """A plain finite decimal string (> 0, or >= 0 with `zero_ok`) as Decimal; else MalformedMessage."""
    try:
        value = Decimal(text)
        in_range = (_ZERO <= value if zero_ok else _ZERO < value) and value < _INF  # NaN raises: trapped
        is_valid = in_range and _is_plain(text)
    except (InvalidOperation, TypeError, ValueError):
        is_valid = False
    if not is_valid:
        expected = "a non-negative finite decimal" if zero_ok else "a positive finite decimal"
        raise _invalid(text, what, expected)
    return value


def _remember(cache: dict[str, Decimal], max_size: int, text: str, value: Decimal) -> Decimal:
    if len(cache) >= max_size:
        cache.clear()  # emptied, not LRU: the hit path stays one dict lookup
    cache[text] = value
    return value


def _is_plain(text: str) -> bool:
    """No spelling a venue never sends that Decimal() would still take: spaces, '_', a sign,
    non-ASCII digits."""
    return text.isascii() and text.strip() == text and "_" not in text and text[:1] not in "+-"


def _invalid(text: object, what: str, expected: str) -> MalformedMessage:
    try:
        Decimal(text)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        return MalformedMessage(f"{what} is not a decimal: {text!r}")
    return MalformedMessage(f"{what} is not {expected}: {text!r}")


DEFAULT_CACHE = LevelCache()  # shared by every book: a pure memo, invisible except for memory


class OrderBook:
    """Keep the L2 book of one market, fed by snapshots and absolute-size deltas."""

    __slots__ = ("_ask_prices", "_asks", "_best_ask", "_best_bid", "_bid_prices", "_bids", "_cache",
                 "market", "needs_resync", "ts_last_ns")

    def __init__(self, market: str, *, cache: LevelCache | None = None) -> None:
        self.market = market
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending: the best bid is last
        self._ask_prices: list[Decimal] = []  # ascending: the best ask is first
        self._best_bid: BookLevel | None = None  # the touch as last read; None: read it again
        self._best_ask: BookLevel | None = None
        self._cache = cache or DEFAULT_CACHE
        self.ts_last_ns = 0  # ts_recv of the last snapshot or delta applied
        self.needs_resync = True  # no snapshot yet

    # ---- updates -------------------------------------------------------------------------

    def clear(self) -> None:
        """Drop every level; the book needs a snapshot again."""
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()
        self._best_bid = self._best_ask = None
        self.needs_resync = True

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """Replace the whole book; a crossed snapshot leaves `needs_resync` set."""
        if snap.market != self.market:
            raise ValueError(f"snapshot for {snap.market} applied to book {self.market}")
        self._replace({lvl.price: lvl.size for lvl in snap.bids if lvl.size > 0},
                      {lvl.price: lvl.size for lvl in snap.asks if lvl.size > 0}, snap.ts_recv)

    def apply_snapshot_levels(self, bids: Iterable[RawLevel], asks: Iterable[RawLevel],
                              ts_recv: int) -> bool:
        """Replace the whole book from raw (price, size) strings; return False if it is crossed.

        Raises MalformedMessage (book left cleared) when a string is not a valid price/size.
        """
        price, size = self._cache.price, self._cache.size
        try:
            # Zero sizes are skipped before the dict is built, as apply_snapshot does.
            new_bids = {p: s for p, s in [(price(p), size(s)) for p, s in bids] if s}
            new_asks = {p: s for p, s in [(price(p), size(s)) for p, s in asks] if s}
        except MalformedMessage:
            self.clear()
            raise
        self._replace(new_bids, new_asks, ts_recv)
        return not self.needs_resync

    def apply_ladder(self, bids: list[Decimal], asks: list[Decimal], sizes: Sequence[Decimal],
                     ts_recv: int) -> None:
        """Replace the whole book with `sizes[i]` at the i-th price of each side: `bids` strictly
        descending and `asks` strictly ascending (best first), as many as `sizes`, every size > 0.
        The book `apply_snapshot` makes of those levels, without building them (backtests'
        synthetic books); the lists are copied, not kept."""
        self._bids = dict(zip(bids, sizes, strict=True))
        self._asks = dict(zip(asks, sizes, strict=True))
        self._bid_prices = bids[::-1]
        self._ask_prices = asks[:]
        self._best_bid = self._best_ask = None
        self.ts_last_ns = ts_recv
        self.needs_resync = bool(bids and asks and bids[0] >= asks[0])

    def _replace(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], ts_recv: int) -> None:
        self._bids, self._asks = bids, asks
        self._bid_prices = sorted(bids)
        self._ask_prices = sorted(asks)
        self._best_bid = self._best_ask = None
        self.ts_last_ns = ts_recv
        self.needs_resync = self.is_crossed()

    def apply_delta(self, delta: BookDelta) -> bool:
        """Apply absolute level sizes (0 deletes); return False if the book must be resynced."""
        if delta.market != self.market:
            raise ValueError(f"delta for {delta.market} applied to book {self.market}")
        ok = _apply_side(self._bids, self._bid_prices, delta.bids)
        ok = _apply_side(self._asks, self._ask_prices, delta.asks) and ok
        self._best_bid = self._best_ask = None
        self.ts_last_ns = delta.ts_recv
        if not ok or self.is_crossed():
            self.needs_resync = True
            return False
        return True

    def apply_levels(self, bids: Sequence[RawLevel], asks: Sequence[RawLevel], ts_recv: int) -> bool:
        """Apply raw (price, size) strings as absolute sizes ("0" deletes); False if now crossed.

        The same update as `apply_delta` without building domain objects. Raises
        MalformedMessage (and sets `needs_resync`) on a string that is not a valid price/size;
        levels before it are already applied, so the caller resyncs.
        """
        try:
            if bids:
                self._set_bids(bids)
            if asks:
                self._set_asks(asks)
        except MalformedMessage:
            self._best_bid = self._best_ask = None
            self.needs_resync = True
            raise
        return self._settled(ts_recv)

    def apply_level_updates(self, updates: Iterable[LevelUpdate], ts_recv: int) -> bool:
        """Apply several raw updates in order, then check the book once; False if now crossed.

        For a venue message that batches updates (dYdX `channel_batch_data`): the message is
        the unit, so a level that is crossed only in between two of its updates is no fault.
        """
        try:
            for update in updates:
                bids, asks = update.bids, update.asks
                if bids:
                    self._set_bids(bids)
                if asks:
                    self._set_asks(asks)
        except MalformedMessage:
            self._best_bid = self._best_ask = None
            self.needs_resync = True
            raise
        return self._settled(ts_recv)

    def _settled(self, ts_recv: int) -> bool:
        """Stamp the update and check the book once; a crossed book needs a resync."""
        self.ts_last_ns = ts_recv
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        if bid_prices and ask_prices and bid_prices[-1] >= ask_prices[0]:
            self.needs_resync = True
            return False
        return True

    # The two side loops differ only in where the touch is; kept apart because this is the
    # hottest code in the process (no per-level branching on the side).

    def _set_bids(self, levels: Iterable[RawLevel]) -> None:
        cache = self._cache
        price_get, size_get = cache.price_get, cache.size_get
        book, prices = self._bids, self._bid_prices
        best = prices[-1] if prices else None  # the touch moves only via a level at or above it
        for p_text, s_text in levels:
            price = price_get(p_text) or cache.price(p_text)
            size = size_get(s_text)
            if size is None:
                size = cache.size(s_text)
            if best is None or price >= best:
                self._best_bid = best = None
            if size:
                if book.get(price) is None:
                    insort(prices, price)
                book[price] = size
            elif book.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]

    def _set_asks(self, levels: Iterable[RawLevel]) -> None:
        cache = self._cache
        price_get, size_get = cache.price_get, cache.size_get
        book, prices = self._asks, self._ask_prices
        best = prices[0] if prices else None  # the touch moves only via a level at or below it
        for p_text, s_text in levels:
            price = price_get(p_text) or cache.price(p_text)
            size = size_get(s_text)
            if size is None:
                size = cache.size(s_text)
            if best is None or price <= best:
                self._best_ask = best = None
            if size:
                if book.get(price) is None:
                    insort(prices, price)
                book[price] = size
            elif book.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]

    # ---- reads ---------------------------------------------------------------------------

    def is_crossed(self) -> bool:
        """Return True when the best bid is at or above the best ask (locked counts as crossed)."""
        return bool(self._bid_prices and self._ask_prices
                    and self._bid_prices[-1] >= self._ask_prices[0])

    def best_bid(self) -> BookLevel | None:
        """Return the highest bid, if any."""
        level = self._best_bid
        if level is None:
            if not self._bid_prices:
                return None
            price = self._bid_prices[-1]
            level = self._best_bid = new_level(price, self._bids[price])
        return level

    def best_ask(self) -> BookLevel | None:
        """Return the lowest ask, if any."""
        level = self._best_ask
        if level is None:
            if not self._ask_prices:
                return None
            price = self._ask_prices[0]
            level = self._best_ask = new_level(price, self._asks[price])
        return level

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
        # sum() adds in the loop's order from the same start: the same Decimal, without the loop
        if side is not Side.SELL:
            start = bisect_left(self._bid_prices, mid - band)
            total = sum(map(self._bids.__getitem__, self._bid_prices[start:]), total)
        if side is not Side.BUY:
            stop = bisect_right(self._ask_prices, mid + band)
            total = sum(map(self._asks.__getitem__, self._ask_prices[:stop]), total)
        return total

    def levels(self, side: Side, n: int) -> list[BookLevel]:
        """Return up to n levels best first: bids for Side.BUY, asks for Side.SELL."""
        if n <= 0:
            return []
        if side is Side.BUY:
            return [new_level(p, self._bids[p]) for p in reversed(self._bid_prices[-n:])]
        return [new_level(p, self._asks[p]) for p in self._ask_prices[:n]]

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


_new_object = object.__new__
_set_level_price = BookLevel.price.__set__  # type: ignore[attr-defined,misc]
_set_level_size = BookLevel.size.__set__  # type: ignore[attr-defined,misc]


def new_level(price: Decimal, size: Decimal) -> BookLevel:
    """Return BookLevel(price, size), built through its slots (half the cost of the frozen init)."""
    level = _new_object(BookLevel)
    _set_level_price(level, price)
    _set_level_size(level, size)
    return level


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
