"""The perp exchange's records, chain constants and chain errors (pure data, no behaviour).

These are what `bot.sim.exchange.SimExchange` returns and what its protocol front-ends render.

Chain errors (codespace "clob" unless noted; codes from dydxprotocol/v4-chain
protocol/x/clob/types/errors.go). `ChainError.log` carries the message the chain wraps the
error with (cosmos prints "<log>: <description>" in raw_log).

| code | chain name | raised when |
|---|---|---|
| 4 | ErrInvalidOrderQuantums | size <= 0 |
| 5 | ErrInvalidOrderGoodTilBlock | short-term order/cancel without good_til_block |
| 6 | ErrInvalidOrderSubticks | price <= 0 |
| 7 | ErrOrderIsCanceled | re-placing a short-term id whose cancel (GTB >= order GTB) is in force |
| 8 | ErrInvalidClob | unknown clob_pair_id (place, cancel, batch cancel, market_by_clob_pair) |
| 9 | ErrMemClobCancelAlreadyExists | a short-term cancel with >= GTB exists for that id |
| 10 | ErrHeightExceedsGoodTilBlock | good_til_block <= height (place or cancel) |
| 11 | ErrGoodTilBlockExceedsShortBlockWindow | good_til_block > height + short_block_window |
| 12 | ErrInvalidPlaceOrder | price not on the tick grid, size not on the step grid or < 1 step |
| 20 | ErrInvalidReplacement | same short-term id: GTB not greater, or side/tif/reduce-only changed |
| 24 | ErrOrderFullyFilled | re-placing a fully filled short-term id before its GTB passed |
| 34 | ErrOrderConflictsWithClobPairStatus | market not ACTIVE (POST_ONLY: post-only only; FINAL_SETTLEMENT: |
|    |                                     | reduce-only only, see below) |
| 45 | ErrInvalidBatchCancel | batch cancel with 0 or more than 100 client ids |
| 48 | ErrDeprecatedField | TIME_IN_FORCE_FILL_OR_KILL |
| 2003 | ErrPostOnlyWouldCrossMakerOrder | post-only order that would take (chain: removed; here rejected) |
| 3000 | ErrInvalidOrderFlag | order_flags not 0, 32 or 64 |
| 3001 | ErrInvalidStatefulOrderGoodTilBlockTime | stateful order/cancel without good_til_block_time |
| 3002 | ErrLongTermOrdersCannotRequireImmediateExecution | long-term IOC |
| 3003 | ErrTimeExceedsGoodTilBlockTime | good_til_block_time <= block time |
| 3004 | ErrGoodTilBlockTimeExceedsStatefulOrderTimeWindow | good_til_block_time > block time + 95 days |
| 3005 | ErrStatefulOrderAlreadyExists | long-term order id already open |
| 3006 | ErrStatefulOrderDoesNotExist | cancel of a stateful order that is not open |
| 3007 | ErrStatefulOrderCollateralizationCheckFailed | order would breach initial margin (*) |
| 9002 | ErrNotImplemented | conditional orders (flags 32): not modelled |
| 9003 | ErrReduceOnlyDisabled | reduce_only without IOC (log: see below) |
| sdk 5 | ErrInsufficientFunds | withdrawal above free collateral |
| sdk 9 | ErrUnknownAddress | unknown account |
| sdk 20 | ErrMempoolIsFull | chain halted (scenario): every tx is refused so clients back off |
| sdk 32 | ErrWrongSequence | stateful tx with sequence != account sequence (or a bad timestamp nonce) |
| subaccounts 7 | UpdateResult WithdrawalsAndTransfersBlocked (code NOT verified) | withdrawal while gated |

(*) also for short-term orders, which the chain instead removes as undercollateralized.
FINAL_SETTLEMENT: the chain refuses every order once a pair is in final settlement and closes the
positions by deleveraging at the oracle price (x/clob keeper `validateOrderAgainstClobPairStatus`);
the notice comes earlier, with the delisting proposal. The model folds that notice window into the
status: while a `market_final_settlement` scenario runs, reduce-only orders are accepted, and when it
ends every position left is closed at the oracle (`set_market_status`).
9003's log is exactly "reduce only orders must be short term IOC orders".
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal

from bot.domain import (
    BlockHeight,
    BookDelta,
    BookSnapshot,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)

# ---- chain constants --------------------------------------------------------------------------

ORDER_FLAGS_SHORT_TERM = 0
ORDER_FLAGS_CONDITIONAL = 32
ORDER_FLAGS_LONG_TERM = 64
MAX_BATCH_CANCEL = 100
STATEFUL_ORDER_WINDOW_SECS = 95 * 24 * 3600


class ChainError(Exception):
    """A transaction the chain rejects: carried to the client as TxResponse code/codespace/raw_log."""

    def __init__(self, codespace: str, code: int, log: str) -> None:
        super().__init__(f"{codespace}/{code}: {log}")
        self.codespace = codespace
        self.code = code
        self.log = log


class TimeInForce(enum.StrEnum):
    """The chain's Order.TimeInForce values (UNSPECIFIED rests as GTT)."""

    UNSPECIFIED = "UNSPECIFIED"
    IOC = "IOC"
    POST_ONLY = "POST_ONLY"
    FILL_OR_KILL = "FILL_OR_KILL"


class OrderState(enum.StrEnum):
    """Indexer order statuses."""

    BEST_EFFORT_OPENED = "BEST_EFFORT_OPENED"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    BEST_EFFORT_CANCELED = "BEST_EFFORT_CANCELED"


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    chain_id: str = "dydx-sim-1"
    block_interval_ns: int = 650_000_000
    short_block_window: int = 40  # 20 before protocol v9.5
    maker_fee_rate: Decimal = Decimal("0.0001")  # tier 1
    taker_fee_rate: Decimal = Decimal("0.0005")
    funding_interval_ns: int = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """A perpetual as the indexer's /v4/perpetualMarkets describes it."""

    ticker: str
    clob_pair_id: int
    status: str  # "ACTIVE" | "PAUSED" | "CANCEL_ONLY" | ...
    oracle_price: Decimal
    next_funding_rate: Decimal  # 1-hour rate, positive: longs pay
    initial_margin_fraction: Decimal
    maintenance_margin_fraction: Decimal
    atomic_resolution: int
    quantum_conversion_exponent: int
    step_base_quantums: int
    subticks_per_tick: int
    tick_size: Decimal
    step_size: Decimal
    open_interest: Decimal
    volume_24h: Decimal


@dataclass(frozen=True, slots=True)
class OrderId:
    owner: str  # bech32 dydx1... address
    subaccount_number: int
    client_id: int  # uint32
    order_flags: int  # 0 short-term, 32 conditional, 64 long-term
    clob_pair_id: int


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A MsgPlaceOrder, already converted to Decimal price/size."""

    order_id: OrderId
    side: Side
    size: Decimal
    price: Decimal
    time_in_force: TimeInForce
    reduce_only: bool = False
    good_til_block: int | None = None  # short-term
    good_til_block_time: int | None = None  # long-term/conditional, unix seconds
    client_metadata: int = 0


@dataclass(slots=True)
class OrderRecord:
    """One order as the indexer reports it (REST /v4/orders and v4_subaccounts updates)."""

    uid: str  # stable id derived from the OrderId (the indexer's order UUID)
    request: OrderRequest
    ticker: str
    status: OrderState
    total_filled: Decimal
    created_at_height: int
    updated_at_height: int
    updated_ns: int
    removal_reason: str | None = None  # e.g. "ORDER_REMOVAL_REASON_EXPIRED"

    def copy(self) -> OrderRecord:
        """An independent copy (what callers get: the exchange keeps updating its own)."""
        return OrderRecord(self.uid, self.request, self.ticker, self.status, self.total_filled,
                           self.created_at_height, self.updated_at_height, self.updated_ns,
                           self.removal_reason)


@dataclass(frozen=True, slots=True)
class FillRecord:
    fill_id: str
    order_uid: str
    owner: str
    subaccount_number: int
    ticker: str
    side: Side
    liquidity: str  # "MAKER" | "TAKER"
    price: Decimal
    size: Decimal
    fee: Decimal  # USDC, negative for a rebate
    client_metadata: int
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class PositionRecord:
    owner: str
    subaccount_number: int
    ticker: str
    size: Decimal  # signed
    entry_price: Decimal
    realized_pnl: Decimal
    net_funding: Decimal
    status: str  # "OPEN" | "CLOSED" | "LIQUIDATED"
    height: int


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """Funding settled on one position at one hourly tick (amount > 0: received)."""

    owner: str
    subaccount_number: int
    ticker: str
    rate: Decimal
    oracle_price: Decimal
    position_size: Decimal
    amount: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class TransferRecord:
    transfer_id: str
    owner: str
    subaccount_number: int
    kind: str  # "DEPOSIT" | "WITHDRAWAL" | "TRANSFER_IN" | "TRANSFER_OUT"
    amount: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class SubaccountInfo:
    owner: str
    subaccount_number: int
    usdc_balance: Decimal
    equity: Decimal
    free_collateral: Decimal
    positions: tuple[PositionRecord, ...]
    height: int


@dataclass(frozen=True, slots=True)
class HistoricalFunding:
    ticker: str
    rate: Decimal
    price: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Everything that changed for one subaccount in one step (one v4_subaccounts message)."""

    owner: str
    subaccount_number: int
    orders: tuple[OrderRecord, ...] = ()
    fills: tuple[FillRecord, ...] = ()
    positions: tuple[PositionRecord, ...] = ()
    transfers: tuple[TransferRecord, ...] = ()
    funding: tuple[FundingRecord, ...] = ()
    height: int = 0


@dataclass(frozen=True, slots=True)
class MarketChange:
    """A market's status or parameters changed (the indexer sends a v4_markets `trading` update)."""

    ticker: str


ExchangeEvent = BookSnapshot | BookDelta | Trade | OracleUpdate | BlockHeight | AccountUpdate | MarketChange


# ---- chain parameters and errors -------------------------------------------------------------

CODESPACE_CLOB = "clob"
CODESPACE_SDK = "sdk"
ERR_INVALID_ORDER_QUANTUMS = 4
ERR_INVALID_ORDER_GOOD_TIL_BLOCK = 5
ERR_INVALID_ORDER_SUBTICKS = 6
ERR_ORDER_IS_CANCELED = 7
ERR_INVALID_CLOB = 8
ERR_CANCEL_ALREADY_EXISTS = 9
ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK = 10
ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW = 11
ERR_INVALID_PLACE_ORDER = 12
ERR_INVALID_REPLACEMENT = 20
ERR_ORDER_FULLY_FILLED = 24
ERR_ORDER_CONFLICTS_WITH_CLOB_PAIR_STATUS = 34
ERR_INVALID_BATCH_CANCEL = 45
ERR_DEPRECATED_FIELD = 48
ERR_POST_ONLY_WOULD_CROSS_MAKER_ORDER = 2003
ERR_INVALID_ORDER_FLAG = 3000
ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME = 3001
ERR_LONG_TERM_ORDERS_CANNOT_REQUIRE_IMMEDIATE_EXECUTION = 3002
ERR_TIME_EXCEEDS_GOOD_TIL_BLOCK_TIME = 3003
ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW = 3004
ERR_STATEFUL_ORDER_ALREADY_EXISTS = 3005
ERR_STATEFUL_ORDER_DOES_NOT_EXIST = 3006
ERR_STATEFUL_ORDER_COLLATERALIZATION_CHECK_FAILED = 3007
ERR_NOT_IMPLEMENTED = 9002
ERR_REDUCE_ONLY_DISABLED = 9003
SDK_ERR_INSUFFICIENT_FUNDS = 5
SDK_ERR_UNKNOWN_ADDRESS = 9
SDK_ERR_MEMPOOL_IS_FULL = 20
SDK_ERR_WRONG_SEQUENCE = 32

REMOVAL_USER_CANCELED = "ORDER_REMOVAL_REASON_USER_CANCELED"
REMOVAL_EXPIRED = "ORDER_REMOVAL_REASON_EXPIRED"
REMOVAL_IOC_WOULD_REST = "ORDER_REMOVAL_REASON_IMMEDIATE_OR_CANCEL_WOULD_REST_ON_BOOK"
REMOVAL_SELF_TRADE = "ORDER_REMOVAL_REASON_SELF_TRADE_ERROR"
REMOVAL_REDUCE_ONLY = "ORDER_REMOVAL_REASON_REDUCE_ONLY_RESIZE"
REMOVAL_REPLACED = "ORDER_REMOVAL_REASON_REPLACED"
REMOVAL_LIQUIDATED = "ORDER_REMOVAL_REASON_FULLY_FILLED"  # unused by the model; kept for the table

TIMESTAMP_NONCE_MIN = 2**40  # x/accountplus: a sequence this large is a unix-ms timestamp nonce
TIMESTAMP_NONCE_WINDOW_MS = 30_000
TIMESTAMP_NONCES_KEPT = 20
_QUOTE_RESOLUTION = -6
TRADES_KEPT = 1000
DAY_SECS = 24 * 3600
VOLUME_SECONDS = DAY_SECS + 1  # per-second volume buckets kept before old ones are expired
FUNDING_KEPT = 5000
_UUID_NS = uuid.UUID("0b5c53c0-5d0f-4c52-9d3e-7a0f4f3f5e11")
_UUID_NS_BYTES = _UUID_NS.bytes

# Margin fractions of the real markets (indexer, Dec 2025); other tickers get MarketSpec's defaults.
MARGIN_FRACTIONS: dict[str, tuple[Decimal, Decimal]] = {
    "BTC-USD": (Decimal("0.02"), Decimal("0.012")),
    "ETH-USD": (Decimal("0.02"), Decimal("0.012")),
}
DEFAULT_MARGIN = (MarketSpec("X", Decimal(1), Decimal(1), Decimal(1)).initial_margin_fraction,
                   MarketSpec("X", Decimal(1), Decimal(1), Decimal(1)).maintenance_margin_fraction)


def clob(code: int, log: str) -> ChainError:
    return ChainError(CODESPACE_CLOB, code, log)


def chain_params(tick: Decimal, step: Decimal) -> tuple[int, int, int, int]:
    """Return (atomic_resolution, quantum_conversion_exponent, step_base_quantums, subticks_per_tick).

    Follows the mainnet convention: stepBaseQuantums = step mantissa x 10^6 and subticksPerTick =
    tick mantissa x 10^5, so BTC-USD (1, 0.0001) gives (-10, -9, 1_000_000, 100_000) and ETH-USD
    (0.1, 0.001) gives (-9, -9, 1_000_000, 100_000). Invariants (DYDX_V4.md §4.6):
    step = SBQ x 10^AR and tick = SPT x 10^(QCE - AR - 6).
    """
    if tick <= 0 or step <= 0:
        raise ValueError("tick and step must be positive")
    step_m, step_e = _mantissa(step)
    tick_m, tick_e = _mantissa(tick)
    atomic_resolution = step_e - 6
    quantum_conversion_exponent = tick_e + atomic_resolution + 1
    return atomic_resolution, quantum_conversion_exponent, step_m * 10**6, tick_m * 10**5


def tick_step_from_chain(atomic_resolution: int, quantum_conversion_exponent: int,
                         step_base_quantums: int, subticks_per_tick: int) -> tuple[Decimal, Decimal]:
    """Return (tick_size, step_size) from the four chain integers (the inverse of chain_params)."""
    step = Decimal(step_base_quantums).scaleb(atomic_resolution)
    tick = Decimal(subticks_per_tick).scaleb(
        quantum_conversion_exponent - atomic_resolution + _QUOTE_RESOLUTION)
    return tick.normalize(), step.normalize()


def _mantissa(value: Decimal) -> tuple[int, int]:
    _sign, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    return int("".join(map(str, digits))), exponent


def order_uid(order_id: OrderId) -> str:
    """Return the indexer-style order UUID: deterministic from the full OrderId."""
    return uuid5(f"{order_id.owner}-{order_id.subaccount_number}-{order_id.client_id}-"
                  f"{order_id.clob_pair_id}-{order_id.order_flags}")


def uuid5(name: str) -> str:
    """Return str(uuid.uuid5(_UUID_NS, name)), without building the UUID object on the way."""
    digest = bytearray(hashlib.sha1(_UUID_NS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---- internal state ---------------------------------------------------------------------------
