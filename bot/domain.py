"""Frozen value types shared by every layer. Money and sizes are Decimal; time is integer ns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class TimeInForce(enum.StrEnum):
    GTT = "GTT"  # rests until cancelled or its good-til time/block
    IOC = "IOC"
    POST_ONLY = "POST_ONLY"


class OrderStatus(enum.StrEnum):
    NEW = "NEW"
    ACKED = "ACKED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.ACKED, OrderStatus.PARTIALLY_FILLED)


class RiskMode(enum.StrEnum):
    NORMAL = "NORMAL"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


class Liquidity(enum.StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """A tradable perpetual: its ticker and rounding steps."""

    ticker: str
    tick_size: Decimal
    step_size: Decimal
    min_order_size: Decimal
    initial_margin_fraction: Decimal = Decimal("0.05")
    maintenance_margin_fraction: Decimal = Decimal("0.03")


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    size: Decimal


# ---- market events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Full L2 state; bids best first, asks best first."""

    market: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BookDelta:
    """Absolute level sizes; size 0 deletes the level."""

    market: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Trade:
    market: str
    price: Decimal
    size: Decimal
    aggressor: Side
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class OracleUpdate:
    """Oracle price and the venue's predicted next hourly funding rate (positive: longs pay)."""

    market: str
    oracle_price: Decimal
    next_funding_rate: Decimal
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BlockHeight:
    height: int
    ts_event: int
    ts_recv: int


class MarketStatusKind(enum.StrEnum):
    """A market's trading status as the venue announces it (dYdX ClobPair status)."""

    ACTIVE = "ACTIVE"
    POST_ONLY = "POST_ONLY"
    CANCEL_ONLY = "CANCEL_ONLY"
    PAUSED = "PAUSED"
    INITIALIZING = "INITIALIZING"
    FINAL_SETTLEMENT = "FINAL_SETTLEMENT"


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """The venue says a market's trading status is now `status` (snapshot or change)."""

    market: str
    status: MarketStatusKind
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Rounding grid and margin fractions of a market; None: not in this message (unchanged)."""

    market: str
    tick_size: Decimal | None
    step_size: Decimal | None
    initial_margin_fraction: Decimal | None
    maintenance_margin_fraction: Decimal | None
    market_type: str | None  # "CROSS" | "ISOLATED"
    ts_event: int
    ts_recv: int


MarketEvent = BookSnapshot | BookDelta | Trade | OracleUpdate | BlockHeight | MarketStatus | MarketParams


# ---- orders and account events -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the order manager asks a venue to do: a limit order, never a plain market order."""

    client_id: int
    market: str
    side: Side
    size: Decimal
    price: Decimal
    tif: TimeInForce
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    client_id: int
    market: str
    status: OrderStatus
    filled_size: Decimal
    ts_event: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders. `fill_id` is unique per venue (dedup key).

    `size` is what the position moves by. A venue that takes the commission out of the traded
    asset (a Binance spot buy credits the base less its commission) books less than the order
    traded: `withheld` is that commission in base units (already in `fee`, in quote terms), and
    `gross_size` what the order's filled quantity counts.
    """

    fill_id: str
    client_id: int
    market: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal
    liquidity: Liquidity
    ts_event: int
    withheld: Decimal = ZERO

    @property
    def gross_size(self) -> Decimal:
        """The quantity the order traded in this fill (its share of the order's filled size)."""
        return self.size + self.withheld


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """Funding settled on a position: `amount` > 0 means we received it."""

    market: str
    rate: Decimal
    position_size: Decimal
    oracle_price: Decimal
    amount: Decimal
    ts_event: int


@dataclass(frozen=True, slots=True)
class TransferMatch:
    """What pairs one transfer a venue reports twice, once without an id (Binance's balanceUpdate)
    and once with one (its deposit or withdrawal history): the asset, the balance changes it may
    show (a withdrawal's fee may or may not be in its amount), and when, in ms."""

    asset: str
    quantities: tuple[Decimal, ...]
    ms: int
    by_id: bool


@dataclass(frozen=True, slots=True)
class Transfer:
    """Money moved into (`amount` > 0: deposit, transfer in) or out of (< 0) the account: not PnL.

    `key` identifies it at the venue (dYdX: transaction hash, type and size), `height` is its block;
    `match`, when set, pairs it with the same transfer reported by another source (bot.peak)."""

    key: str
    amount: Decimal
    height: int
    ts_event: int
    match: TransferMatch | None = None


AccountEvent = OrderUpdate | Fill | FundingPayment | Transfer


@dataclass(frozen=True, slots=True)
class FeeRates:
    """Maker and taker fee rates (fractions of notional; a negative maker rate is a rebate)."""

    maker: Decimal
    taker: Decimal
    source: str  # where they come from: "dydx:fee_tier 1", "binance:account", "config:paper" ...


@dataclass(frozen=True, slots=True)
class AccountState:
    """One venue account as the venue reports it, valued in USD at `ts_ns`.

    `balances` are asset -> amount (dYdX: the USDC asset position; Binance: free + locked);
    margin requirements are USD (zero on a spot venue).
    """

    venue: str
    equity_usd: Decimal
    free_collateral_usd: Decimal
    initial_margin_usd: Decimal
    maintenance_margin_usd: Decimal
    balances: dict[str, Decimal]
    positions: dict[str, Decimal]
    fees: FeeRates | None
    ts_ns: int

    @property
    def margin_use(self) -> Decimal:
        """Initial margin requirement as a share of equity (0 for no equity)."""
        return self.initial_margin_usd / self.equity_usd if self.equity_usd > 0 else ZERO


@dataclass(slots=True)
class Position:
    """Signed size (long > 0) with average entry and realised PnL; mutated only by apply_fill."""

    market: str
    size: Decimal = ZERO
    avg_entry: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    funding_pnl: Decimal = ZERO
    fill_ids: set[str] = field(default_factory=set)

    def apply_fill(self, fill: Fill) -> bool:
        """Fold one fill into the position; a fill seen before is ignored. Returns True if applied."""
        if fill.fill_id in self.fill_ids:
            return False
        self.fill_ids.add(fill.fill_id)
        signed = fill.size * fill.side.sign
        self.fees_paid += fill.fee
        if self.size == 0 or (self.size > 0) == (signed > 0):
            new_size = self.size + signed
            self.avg_entry = (self.avg_entry * abs(self.size) + fill.price * fill.size) / abs(new_size)
            self.size = new_size
            return True
        closing = min(abs(signed), abs(self.size))
        direction = 1 if self.size > 0 else -1
        self.realised_pnl += (fill.price - self.avg_entry) * closing * direction
        new_size = self.size + signed
        if new_size == 0:
            self.avg_entry = ZERO
        elif (new_size > 0) != (self.size > 0):
            self.avg_entry = fill.price  # flipped through zero: the remainder opened at this price
        self.size = new_size
        return True

    def unrealised_pnl(self, mark: Decimal) -> Decimal:
        return (mark - self.avg_entry) * self.size
