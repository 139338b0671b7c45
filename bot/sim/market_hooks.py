"""SimMarket's extensions for the exchange core: overlay of account orders, takes, hooks, faults."""

from __future__ import annotations

import math
from decimal import Decimal

from bot.domain import MarketEvent, Side
from bot.sim.market_params import (
    PreEmitHook,
    TakerHook,
    merged,
)
from bot.sim.part import Part


class ExchangeHooks(Part):
    """What the exchange core asks of a SimMarket (a part of it: it reads and writes its state)."""

    _traded_units: int
    _depth_factor: float

    @property
    def now_ns(self) -> int:
        """Return the time of the last step (the start time before the first)."""
        return self._now_ns

    @property
    def is_started(self) -> bool:
        """Return True once the first step emitted the snapshot."""
        return self._started

    @property
    def min_steps(self) -> int:
        """Return the minimum order size in steps."""
        return self._min_steps

    def model_touch(self) -> tuple[int, int]:
        """Return the model's target (best bid, best ask) in ticks: real levels are at or behind them."""
        return self._best_bid, self._best_ask

    def best_level(self, side: Side) -> int | None:
        """Return the model's best level in ticks (highest bid for BUY, lowest ask for SELL), if any."""
        if side is Side.BUY:
            best, book = self._best_bid, self._bids
            return best if best in book else (max(book) if book else None)
        best, book = self._best_ask, self._asks
        return best if best in book else (min(book) if book else None)

    def background(self, side: Side) -> dict[int, int]:
        """Return the model's own levels (ticks -> steps): bids for BUY, asks for SELL. Read only."""
        return self._bids if side is Side.BUY else self._asks

    def overlay(self, side: Side) -> dict[int, int]:
        """Return the size resting on top of the model's levels: bids for BUY. Read only."""
        return self._over_bids if side is Side.BUY else self._over_asks

    def shown(self, side: Side) -> dict[int, int]:
        """Return the aggregated book (model + overlay, ticks -> steps): bids for BUY, asks for SELL.

        Every public call of the exchange ends with an emission, so this is also the book as last
        emitted; a new dict each call.
        """
        if side is Side.BUY:
            return merged(self._bids, self._over_bids)
        return merged(self._asks, self._over_asks)

    def set_overlay(self, side: Side, ticks: int, steps: int) -> None:
        """Set the extra size resting at `ticks` on the bids (BUY) or asks (SELL); 0 removes it."""
        book, over, dirty = ((self._bids, self._over_bids, self._dirty_bids) if side is Side.BUY
                             else (self._asks, self._over_asks, self._dirty_asks))
        if steps > 0:
            if over.get(ticks) == steps:
                return
            over[ticks] = steps
        elif over.pop(ticks, None) is None:
            return
        dirty[ticks] = book.get(ticks, 0)

    def take(self, side: Side, size_steps: int, limit_ticks: int) -> list[tuple[int, int]]:
        """Consume model liquidity for a taker of `side` (BUY eats asks <= limit), best first.

        Returns (ticks, steps) per level taken. The change is emitted by the next `flush` or
        `step` as a BookDelta; the overlay is not touched.
        """
        buy = side is Side.BUY
        book, dirty = (self._asks, self._dirty_asks) if buy else (self._bids, self._dirty_bids)
        out: list[tuple[int, int]] = []
        remaining = size_steps
        if remaining <= 0 or not book:
            return out
        for idx in sorted(book, reverse=not buy):
            if remaining <= 0 or (idx > limit_ticks if buy else idx < limit_ticks):
                break
            size = min(book[idx], remaining)
            if size == book[idx]:
                del book[idx]
                dirty[idx] = 0
            else:
                book[idx] = dirty[idx] = book[idx] - size
            remaining -= size
            out.append((idx, size))
        return out

    def reduce_level(self, side: Side, ticks: int, steps: int) -> None:
        """Remove `steps` from the model's level at `ticks` (bids for BUY), at most all of it."""
        book, dirty = (self._bids, self._dirty_bids) if side is Side.BUY else (self._asks, self._dirty_asks)
        if ticks not in book:
            return
        left = book[ticks] - steps
        if left > 0:
            book[ticks] = dirty[ticks] = left
        else:
            del book[ticks]
            dirty[ticks] = 0

    def price_of(self, ticks: int) -> Decimal:
        """Return the Decimal price of `ticks` (cached)."""
        return self._price_of(ticks)

    def size_of(self, steps: int) -> Decimal:
        """Return the Decimal size of `steps` (cached)."""
        return self._size_of(steps)

    def drain_traded_units(self) -> int:
        """Return the notional (ticks x steps) the model's takers traded since the last call."""
        units, self._traded_units = self._traded_units, 0
        return units

    def flush(self, now_ns: int) -> list[MarketEvent]:
        """Return the BookDelta of changes made since the last emission (none before the snapshot)."""
        events: list[MarketEvent] = []
        if self._started and (self._dirty_bids or self._dirty_asks):
            self._emit_delta(events, now_ns)
        return events

    def set_depth_factor(self, factor: float) -> None:
        """Scale the model's depth by `factor` (1 = normal, < 1 thinner), live levels included."""
        factor = max(factor, 1e-6)
        if factor == self._depth_factor:
            return
        ratio = factor / self._depth_factor
        self._depth_factor = factor
        self._scale_levels(ratio)
        self._set_means()

    def set_funding_override(self, rate_1h: Decimal | None) -> None:
        """Report `rate_1h` as the funding rate while set (None restores the model's rate)."""
        self._rate_override = rate_1h

    def shift_price(self, pct: float) -> None:
        """Gap the mid by `pct` percent (scenarios); the oracle follows with its usual lag."""
        self._log_mid += math.log1p(pct / 100)

    def set_hooks(self, taker: TakerHook | None = None, pre_emit: PreEmitHook | None = None,
                  emit_heights: bool = True, taker_needs_overlay: bool = False) -> None:
        """Install the exchange core's hooks (see TakerHook / PreEmitHook); heights off if it makes blocks.

        `taker_needs_overlay`: the taker hook only ever handles a taker when overlay size rests on
        the side it hits at or better than the model's best level there (or the model's side is
        empty), so the model calls it only then.
        """
        self._taker_hook = taker
        self._pre_emit_hook = pre_emit
        self._emit_heights = emit_heights
        self._hook_needs_overlay = taker_needs_overlay

    def hooks(self) -> tuple[TakerHook | None, PreEmitHook | None]:
        """Return the installed (taker, pre_emit) hooks."""
        return self._taker_hook, self._pre_emit_hook
