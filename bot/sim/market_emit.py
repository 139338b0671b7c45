"""SimMarket's book emission: snapshots, deltas of changed levels, cached prices and sizes."""

from __future__ import annotations

from decimal import Decimal

from bot.domain import ZERO, BookDelta, BookLevel, BookSnapshot, MarketEvent
from bot.sim.event_drafts import (
    DeltaDraft,
    LevelDraft,
    book_level,
    book_snapshot,
)
from bot.sim.market_params import (
    CACHE_MAX,
    merged,
)
from bot.sim.part import Part


class Emission(Part):
    """Book events of a SimMarket (a part of it: it reads its levels and caches)."""

    def _snapshot(self, now_ns: int) -> BookSnapshot:
        shown_bids = merged(self._bids, self._over_bids)
        shown_asks = merged(self._asks, self._over_asks)
        self._dirty_bids.clear()
        self._dirty_asks.clear()
        price, size = self._price_of, self._size_of
        bids = tuple(book_level(price(i), size(shown_bids[i])) for i in sorted(shown_bids, reverse=True))
        asks = tuple(book_level(price(i), size(shown_asks[i])) for i in sorted(shown_asks))
        return book_snapshot(self._ticker, bids, asks, now_ns)

    def _emit_delta(self, events: list[MarketEvent], now_ns: int) -> None:
        delta = DeltaDraft()
        delta.market = self._ticker
        delta.bids = self._levels(self._over_bids, self._dirty_bids, True) if self._dirty_bids else ()
        delta.asks = self._levels(self._over_asks, self._dirty_asks, False) if self._dirty_asks else ()
        delta.ts_event = delta.ts_recv = now_ns
        delta.__class__ = BookDelta
        events.append(delta)  # type: ignore[arg-type]

    def _levels(self, over: dict[int, int], dirty: dict[int, int], best_high: bool) -> tuple[BookLevel, ...]:
        """The levels at the `dirty` prices as they are now (size 0: gone), best first; clears `dirty`."""
        prices, sizes, gone = self._price_cache, self._size_cache, self._gone_cache
        over_get = over.get if over else None
        out: list[BookLevel] = []
        append = out.append
        for idx in sorted(dirty, reverse=best_high):
            steps = dirty[idx]
            if over_get is not None:
                steps += over_get(idx, 0)
            if steps:
                level = LevelDraft()  # BookLevel(...), built as bot.sim.event_drafts explains
                try:
                    level.price = prices[idx]
                except KeyError:
                    level.price = self._price_of(idx)
                try:
                    level.size = sizes[steps]
                except KeyError:
                    level.size = self._size_of(steps)
                level.__class__ = BookLevel
                append(level)
            else:  # (cached levels are never falsy: `or` is a cache miss)
                append(gone.get(idx) or self._gone_level(idx))
        dirty.clear()
        return tuple(out)

    def _gone_level(self, ticks: int) -> BookLevel:
        """The size-0 level at `ticks` (a removal), cached: frozen, so one object serves every delta."""
        if len(self._gone_cache) >= CACHE_MAX:
            self._gone_cache.clear()
        level = self._gone_cache[ticks] = book_level(self._price_of(ticks), ZERO)
        return level

    def _price_of(self, ticks: int) -> Decimal:
        """ticks -> Decimal price, cached (the same few hundred prices recur)."""
        price = self._price_cache.get(ticks)
        if price is None:
            if len(self._price_cache) >= CACHE_MAX:
                self._price_cache.clear()
            price = self._price_cache[ticks] = self._tick_size * ticks
        return price

    def _size_of(self, steps: int) -> Decimal:
        """steps -> Decimal size, cached (the drawn sizes recur)."""
        size = self._size_cache.get(steps)
        if size is None:
            if len(self._size_cache) >= CACHE_MAX:
                self._size_cache.clear()
            size = self._size_cache[steps] = self._step_size * steps
        return size

    def _ticks(self, price: float) -> int:
        return max(1, round(price / self._tick))
