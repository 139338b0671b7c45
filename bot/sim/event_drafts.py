"""Build the simulator's frozen domain events fast: fill a mutable draft, then re-type it.

A frozen slots dataclass's __init__ sets every field through object.__setattr__, which is most
of what an event costs the simulator (about 1 us for a Trade on the reference machine). A plain
class with exactly the same __slots__ has the same memory layout, and Python lets an instance of
it take on the dataclass as its __class__: filling a draft's slots and re-typing it gives an
object that is the event (`type(e) is Trade`, same ==, hash and repr as `Trade(...)`) in about a
third of the time. The hot loops of bot.sim.market inline the three statements; the functions
below do the same for everyone else.

`draft_class` checks at import that a class still qualifies (a slots dataclass whose slots are
its fields, no __post_init__ to skip, re-typing accepted), so a change in bot.domain fails
loudly here instead of producing malformed events.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from bot.domain import BlockHeight, BookDelta, BookLevel, BookSnapshot, OracleUpdate, Side, Trade


def draft_class(cls: type) -> type:
    """Return a mutable class with `cls`'s slots; its instances may be re-typed to `cls` once filled."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    if tuple(cls.__dict__.get("__slots__", ())) != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a slots dataclass of {names} without __post_init__")
    draft = type(f"{cls.__name__}Draft", (), {"__slots__": names, "__module__": __name__})
    probe = draft()
    for name in names:
        setattr(probe, name, None)
    probe.__class__ = cls  # TypeError here if Python finds the layouts incompatible
    return draft


LevelDraft = draft_class(BookLevel)
TradeDraft = draft_class(Trade)
DeltaDraft = draft_class(BookDelta)
SnapshotDraft = draft_class(BookSnapshot)
OracleDraft = draft_class(OracleUpdate)
HeightDraft = draft_class(BlockHeight)


def book_level(price: Decimal, size: Decimal) -> BookLevel:
    level = LevelDraft()
    level.price = price
    level.size = size
    level.__class__ = BookLevel
    return level  # type: ignore[return-value]


def trade(market: str, price: Decimal, size: Decimal, aggressor: Side, ts_ns: int) -> Trade:
    """A Trade with ts_event = ts_recv = `ts_ns` (the simulator's clock is both)."""
    event = TradeDraft()
    event.market = market
    event.price = price
    event.size = size
    event.aggressor = aggressor
    event.ts_event = event.ts_recv = ts_ns
    event.__class__ = Trade
    return event  # type: ignore[return-value]


def book_delta(market: str, bids: tuple[BookLevel, ...], asks: tuple[BookLevel, ...],
               ts_ns: int) -> BookDelta:
    event = DeltaDraft()
    event.market = market
    event.bids = bids
    event.asks = asks
    event.ts_event = event.ts_recv = ts_ns
    event.__class__ = BookDelta
    return event  # type: ignore[return-value]


def book_snapshot(market: str, bids: tuple[BookLevel, ...], asks: tuple[BookLevel, ...],
                  ts_ns: int) -> BookSnapshot:
    event = SnapshotDraft()
    event.market = market
    event.bids = bids
    event.asks = asks
    event.ts_event = event.ts_recv = ts_ns
    event.__class__ = BookSnapshot
    return event  # type: ignore[return-value]


def oracle_update(market: str, oracle_price: Decimal, next_funding_rate: Decimal, ts_ns: int) -> OracleUpdate:
    event = OracleDraft()
    event.market = market
    event.oracle_price = oracle_price
    event.next_funding_rate = next_funding_rate
    event.ts_event = event.ts_recv = ts_ns
    event.__class__ = OracleUpdate
    return event  # type: ignore[return-value]


def block_height(height: int, ts_ns: int) -> BlockHeight:
    event = HeightDraft()
    event.height = height
    event.ts_event = event.ts_recv = ts_ns
    event.__class__ = BlockHeight
    return event  # type: ignore[return-value]
