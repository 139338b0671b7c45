"""The perp exchange's internal state: markets with their resting account orders, accounts.

Mutable, owned by one `SimExchange`; callers only ever see the records in `records.py`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from bot.clock import NS_PER_SEC
from bot.domain import (
    ZERO,
    Liquidity,
    Position,
    Side,
    Trade,
)
from bot.domain import TimeInForce as DomainTif
from bot.sim.market import SimMarket
from bot.sim.perp.records import (
    DAY_SECS,
    FUNDING_KEPT,
    TIMESTAMP_NONCES_KEPT,
    TRADES_KEPT,
    VOLUME_SECONDS,
    FillRecord,
    FundingRecord,
    HistoricalFunding,
    OrderRecord,
    OrderState,
    PositionRecord,
    TimeInForce,
    TransferRecord,
)
from bot.venues.paper.fills import (
    RestingOrder,
)

OPEN_STATES = (OrderState.BEST_EFFORT_OPENED, OrderState.OPEN)
LIQUIDITY = {"MAKER": Liquidity.MAKER, "TAKER": Liquidity.TAKER}
DOMAIN_TIF = {TimeInForce.UNSPECIFIED: DomainTif.GTT, TimeInForce.IOC: DomainTif.IOC,
               TimeInForce.POST_ONLY: DomainTif.POST_ONLY, TimeInForce.FILL_OR_KILL: DomainTif.IOC}


class LevelView:
    """The `size_at` the paper fill model asks of a book: the model's own size at a price."""

    __slots__ = ("_market",)

    def __init__(self, market: MarketState) -> None:
        self._market = market

    def size_at(self, side: Side, price: Decimal) -> Decimal:
        m = self._market
        return m.step * m.sim.background(side).get(int(price / m.tick), 0)


@dataclass(slots=True, eq=False)
class MarketState:
    ticker: str
    clob_pair_id: int
    sim: SimMarket
    tick: Decimal
    step: Decimal
    chain: tuple[int, int, int, int]
    imf: Decimal
    mmf: Decimal
    status: str = "ACTIVE"
    # resting account orders: side -> price ticks -> orders in time priority
    book: dict[Side, dict[int, list[BookOrder]]] = field(default_factory=dict)
    # (index in its block, trade, height): the trade id is formatted when read (trades())
    trades: deque[tuple[int, Trade, int]] = field(default_factory=lambda: deque(maxlen=TRADES_KEPT))
    # traded notional in ticks x steps, per second [second, units], oldest first, and its total
    volume: deque[list[int]] = field(default_factory=deque)
    volume_units: int = 0
    funding: deque[HistoricalFunding] = field(default_factory=lambda: deque(maxlen=FUNDING_KEPT))
    view: LevelView | None = None

    def price(self, ticks: int) -> Decimal:
        return self.sim.price_of(ticks)

    def size(self, steps: int) -> Decimal:
        return self.sim.size_of(steps)

    def add_volume(self, ts_ns: int, units: int) -> None:
        """Count `units` (ticks x steps) of notional traded at `ts_ns`."""
        second = ts_ns // NS_PER_SEC
        volume = self.volume
        if volume and volume[-1][0] == second:
            volume[-1][1] += units
        else:
            volume.append([second, units])
            if len(volume) > VOLUME_SECONDS:
                self._expire_volume()
        self.volume_units += units

    def volume_24h(self) -> Decimal:
        """Notional traded in the 24 hours up to the latest trade (to the second)."""
        self._expire_volume()
        return self.tick * self.step * self.volume_units

    def _expire_volume(self) -> None:
        volume = self.volume
        if volume:
            cutoff = volume[-1][0] - DAY_SECS
            while volume[0][0] <= cutoff:
                self.volume_units -= volume.popleft()[1]


@dataclass(slots=True, eq=False)
class BookOrder:
    record: OrderRecord
    market: MarketState
    sub: SubaccountState
    price_ticks: int
    size_steps: int
    filled_steps: int = 0
    resting: RestingOrder | None = None

    @property
    def remaining_steps(self) -> int:
        return self.size_steps - self.filled_steps

    @property
    def is_open(self) -> bool:
        return self.record.status in OPEN_STATES


@dataclass(slots=True, eq=False)
class PositionState:
    pos: Position
    net_funding: Decimal = ZERO
    status: str = "OPEN"


@dataclass(slots=True, eq=False)
class SubaccountState:
    owner: str
    number: int
    usdc: Decimal = ZERO
    positions: dict[str, PositionState] = field(default_factory=dict)
    history: list[PositionRecord] = field(default_factory=list)  # closed and liquidated
    orders: dict[str, BookOrder] = field(default_factory=dict)  # uid -> order, every order seen
    fills: list[FillRecord] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class AccountState:
    number: int
    sequence: int = 0
    nonces: deque[int] = field(default_factory=lambda: deque(maxlen=TIMESTAMP_NONCES_KEPT))
    subaccounts: dict[int, SubaccountState] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Changes:
    orders: dict[str, BookOrder] = field(default_factory=dict)
    fills: list[FillRecord] = field(default_factory=list)
    positions: dict[str, None] = field(default_factory=dict)
    transfers: list[TransferRecord] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)

