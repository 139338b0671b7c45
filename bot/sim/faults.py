"""The fault vocabulary: every fault a scenario may name, and the typed switches they flip (pure).

One vocabulary for the three places that inject faults: `perpbot sim --scenario FILE` and the
simulator's admin endpoint (`bot.sim.scenarios`: live switches on the protocol simulator) and
`perpbot backtest --scenario` (`bot.backtest.scenarios`: windows applied to a replay). `Fault`
names them all; `SIM_FAULTS` and `BACKTEST_FAULTS` say which ones each runner models (a name
means the same thing wherever both model it: chain_halt, indexer_lag, liquidity_drought,
price_gap).

`ScenarioState` holds the simulator's switches as typed fields (no string keys): the exchange
core reads the chain-level ones, the indexer, node and Binance front-ends the protocol ones.
Counted switches (`HttpError`, `OrderReject`, `FrontRun`, `DepthGap`) fire `count` times:
`countdown()` gives what is left after one use (None: spent, the switch clears).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol, TypeVar


class Fault(enum.StrEnum):
    """Every fault name a scenario may use."""

    # chain and indexer (simulator and backtest)
    CHAIN_HALT = "chain_halt"
    INDEXER_LAG = "indexer_lag"
    LIQUIDITY_DROUGHT = "liquidity_drought"
    PRICE_GAP = "price_gap"
    # simulator only
    WITHDRAWAL_GATING = "withdrawal_gating"
    FUNDING_SPIKE = "funding_spike"
    WS_DROP = "ws_drop"
    WS_STALL = "ws_stall"
    WS_BAD_FRAME = "ws_bad_frame"
    BOOK_GAP = "book_gap"
    BOOK_CROSSED = "book_crossed"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    GRPC_UNAVAILABLE = "grpc_unavailable"
    BINANCE_HTTP_ERROR = "binance_http_error"
    BINANCE_KEY_RESTRICTIONS = "binance_key_restrictions"
    BINANCE_TRANSFER = "binance_transfer"
    ACCOUNT_DUPLICATE = "account_duplicate"
    ACCOUNT_REORDER = "account_reorder"
    ORDER_REJECT = "order_reject"
    MARKET_CANCEL_ONLY = "market_cancel_only"
    MARKET_POST_ONLY = "market_post_only"
    MARKET_FINAL_SETTLEMENT = "market_final_settlement"
    MARKET_PAUSED = "market_paused"
    MARGIN_CHANGE = "margin_change"
    FRONT_RUN = "front_run"
    # backtest only
    CRASH = "crash"
    FUNDING = "funding"
    BRIDGE_OUTAGE = "bridge_outage"
    HEDGE_DELAY = "hedge_delay"
    ORDER_REJECTS = "order_rejects"


BACKTEST_FAULTS = (Fault.PRICE_GAP, Fault.CRASH, Fault.FUNDING, Fault.LIQUIDITY_DROUGHT, Fault.CHAIN_HALT,
                   Fault.INDEXER_LAG, Fault.BRIDGE_OUTAGE, Fault.HEDGE_DELAY, Fault.ORDER_REJECTS)
SIM_FAULTS = tuple(f for f in Fault if f not in BACKTEST_FAULTS or f in (
    Fault.CHAIN_HALT, Fault.INDEXER_LAG, Fault.LIQUIDITY_DROUGHT, Fault.PRICE_GAP))


def parse_fault(name: object, allowed: tuple[Fault, ...]) -> Fault | None:
    """The Fault called `name` when it is one of `allowed`, else None."""
    fault = _BY_VALUE.get(name) if isinstance(name, str) else None
    return fault if fault in allowed else None


_BY_VALUE = {f.value: f for f in Fault}


class WsDrop(enum.StrEnum):
    CLOSE = "close"  # every WS connection closed once with code 1012
    ABORT = "abort"  # the TCP connection dropped without a close frame


class BadFrame(enum.StrEnum):
    GARBAGE = "garbage"  # text that is not JSON
    OVERSIZED = "oversized"  # a frame above the client's 8 MiB limit
    WRONG_TYPE = "wrong_type"  # channel_data on a subscription, fields of the wrong types


class BookFault(enum.StrEnum):
    GAP = "gap"  # the next orderbook update skips a message_id
    CROSSED = "crossed"  # the next orderbook update adds a bid crossing the best ask


class AccountFault(enum.StrEnum):
    DUPLICATE = "duplicate"  # every v4_subaccounts message sent twice
    REORDER = "reorder"  # held back and sent after the next one of the same subaccount


class _Counted(Protocol):
    @property
    def count(self) -> int: ...


_C = TypeVar("_C", bound=_Counted)


def countdown(fault: _C) -> _C | None:
    """The switch after one use: None once its count is spent (a count <= 1 is one use)."""
    return None if fault.count <= 1 else replace(fault, count=fault.count - 1)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class HttpError:
    """The next `count` REST requests answer `status` (429 and 418 with Retry-After)."""

    status: int
    count: int = 1
    retry_after_secs: float | None = None
    execute: bool = False  # Binance: process the request first (5xx: "execution status UNKNOWN")


@dataclass(frozen=True, slots=True)
class OrderReject:
    """The next `count` txs that place an order fail CheckTx with this chain error."""

    codespace: str = "clob"
    code: int = 3007
    count: int = 1
    log: str = "Order is undercollateralized (simulated fault)"


@dataclass(frozen=True, slots=True)
class FrontRun:
    """Before each of the next `count` IOC orders, another account takes the liquidity inside its
    limit price except `leave` (a fraction of its size)."""

    leave: Decimal = Decimal("0.5")
    count: int = 1


@dataclass(frozen=True, slots=True)
class DepthGap:
    """The next `count` Binance diff-depth events are not sent (clients see a U gap)."""

    count: int = 1


@dataclass(frozen=True, slots=True)
class PriceGap:
    market: str = "BTC-USD"
    pct: float = -5.0


@dataclass(frozen=True, slots=True)
class MarginChange:
    market: str = "BTC-USD"
    imf: Decimal = Decimal("0.1")
    mmf: Decimal = Decimal("0.05")


@dataclass(slots=True)
class ScenarioState:
    """Fault switches the admin endpoint and scenario files flip (see bot.sim.scenarios)."""

    # the exchange core
    chain_halted: bool = False  # no blocks, BroadcastTx fails
    indexer_lag_blocks: int = 0  # indexer reports height - lag
    withdrawals_gated: bool = False
    liquidity_factor: float = 1.0  # < 1 thins background depth
    funding_spike_1h: Decimal | None = None  # overrides the funding rate while set
    price_gap: PriceGap | None = None  # one-shot: the market's price jumps by pct
    market_status: dict[str, str] = field(default_factory=dict)  # status -> the market it is imposed on
    margin_fractions: MarginChange | None = None
    # the indexer (bot.sim.server.indexer)
    http_error: HttpError | None = None
    ws_drop: WsDrop | None = None  # one-shot
    ws_stall: bool = False  # channel data dropped while set
    ws_inject: BadFrame | None = None  # one-shot
    book_fault: BookFault | None = None  # one-shot
    account_fault: AccountFault | None = None
    # the node (bot.sim.server.node)
    grpc_unavailable: bool = False  # every RPC aborts with UNAVAILABLE
    reject_orders: OrderReject | None = None
    front_run: FrontRun | None = None
    withdrawal_capacity_usdc: Decimal | None = None  # the bridge limiters' capacity (baseline: None)
    # the Binance server (bot.sim.server.binance), handed over by the runner
    binance_http_error: HttpError | None = None
    binance_api_restrictions: dict[str, bool] | None = None
    # one-shot: (asset, signed amount, fee, the other wallet of a universal transfer or None)
    binance_transfer: tuple[str, Decimal, Decimal, str | None] | None = None


@dataclass(slots=True)
class BinanceFaults:
    """The Binance server's own switches (tests set them; the runner hands scenario ones over)."""

    http_error: HttpError | None = None
    depth_gap: DepthGap | None = None
