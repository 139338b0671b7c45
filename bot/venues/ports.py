"""Venue ports: the roles the core talks to, and what each venue can do. Adapters implement them.

| role           | protocol          | implemented by                                            |
|----------------|-------------------|-----------------------------------------------------------|
| market metadata| `Instruments`     | DydxVenue, BinanceVenue (`load_markets`), SimFeed (`specs`)|
| market data    | `MarketData`      | DydxVenue, BinanceVenue, SimFeed, PaperFeed               |
| execution      | `ExecutionVenue`  | DydxVenue, BinanceVenue, PaperVenue                       |
| account state  | `AccountSource`   | DydxAccount, BinanceAccount                               |
| venue health   | `ChainHealth`, `IndexerHealth`, `FeedHealth` | the dYdX probes (venues/dydx/probes)|

What differs between venues is stated once, in each venue's `capabilities`, never discovered by
looking for attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from bot.domain import (
    AccountEvent,
    AccountState,
    Fill,
    MarketEvent,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
)
from bot.history import MarketHistory

MarketSink = Callable[[MarketEvent], None]
AccountSink = Callable[[AccountEvent], None]
BookHook = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue does beyond the common ports, stated by the venue itself."""

    positions_are_balances: bool = False  # spot: positions are account balances (incl. inventory
    #                                       the bot never traded): sells never exceed them
    batch_cancel: bool = False  # `cancel_many` is one venue call (dYdX MsgBatchCancel, Binance
    #                             concurrent cancels): the order manager uses it for cancel-all
    reads_orders: bool = False  # `query_order` (OrderQuery) reads one of our orders, closed ones
    #                             too, and says when the venue does not know it (Binance)


@dataclass
class VenueAccount:
    """What a venue says about our account right now (start-up reconciliation reads it)."""

    open_ids: set[int]
    order_states: dict[int, tuple[OrderStatus, Decimal]] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, Decimal] | None = None


class Instruments(Protocol):
    """Market metadata: tick, step and minimum sizes per market, as the venue lists them."""

    def specs(self) -> dict[str, MarketSpec]: ...


class MarketData(Protocol):
    """Streams market events for a set of markets until cancelled.

    `on_book_changed`, when set before `run`, is called with (market, ts_recv) each time the
    source changed a shared book in place (venues that keep the books themselves); a source
    whose book events carry the change (the simulator feed) never calls it.
    """

    name: str
    on_book_changed: BookHook | None

    def specs(self) -> dict[str, MarketSpec]: ...

    async def hourly_history(self, market: str, hours: int) -> MarketHistory: ...

    async def run(self, sink: MarketSink) -> None: ...


class ExecutionVenue(Protocol):
    """Places and cancels our orders; reports order updates, fills and funding to a sink.

    `place` raises OrderRejected (no retry), TransientVenueError (nothing was sent) or
    OrderStateUnknown (it may have been sent: reconcile by client id before anything else).
    `cancel` finds orders this process did not place on the venue by client id; it returns
    False when the venue does not list the order open (no cancel was sent). `cancel_many`
    cancels the given orders (with `all_open`, every open order) and returns (cancelled, errors);
    a failed cancel does not stop the rest. `open_orders` lists the client ids the venue has open.
    `account_snapshot(orders)` reports, besides the open orders, the states and fills of `orders`
    (ours the store holds open) even when they closed.
    """

    name: str
    capabilities: Capabilities

    def set_account_sink(self, sink: AccountSink) -> None: ...

    async def place(self, order: OrderRequest) -> None: ...

    async def cancel(self, client_id: int) -> bool: ...

    async def cancel_many(self, client_ids: list[int], *, all_open: bool = False
                          ) -> tuple[list[int], list[str]]: ...

    async def open_orders(self) -> list[int]: ...

    async def positions(self) -> dict[str, Decimal]: ...

    async def account_snapshot(self, orders: Collection[int] = ()) -> VenueAccount: ...

    async def sweep_account(self) -> Any: ...


class OrderQuery(Protocol):
    """A venue that reads one of our orders by client id (`capabilities.reads_orders`)."""

    async def query_order(self, client_id: int) -> OrderUpdate | None: ...  # None: not known to it

    def forget_order(self, client_id: int) -> None: ...  # it never reached the venue: stop re-reading it


class Balances(Protocol):
    """A venue whose positions are account balances (`capabilities.positions_are_balances`): the
    balances as its stream last reported them, read without a round trip."""

    def cached_positions(self) -> dict[str, Decimal]: ...

    def cached_free(self) -> dict[str, Decimal]: ...  # not locked in open orders: what a sell may sell


class AccountSource(Protocol):
    """Reads one venue account as the venue reports it: equity, collateral, margin, balances, fees.

    `read` raises TransientVenueError when the venue cannot be read now (the caller keeps the
    last state and its age, which the watchdog grades).
    """

    name: str

    async def read(self) -> AccountState: ...


# ---- venue health (the watchdog's inputs) ---------------------------------------------------


class ChainHealth(Protocol):
    """The chain as its node reports it: head block, withdrawal gating and capacity."""

    async def head(self) -> Any: ...  # `.height`

    async def withdrawal_gating(self, perpetual_id: int) -> Any: ...  # `.unblocked_at_block`

    async def usdc_capacity(self) -> Any: ...  # iterable of `.capacity_usdc`


class IndexerHealth(Protocol):
    """The indexer's view of the chain height."""

    async def height(self) -> Any: ...  # `.height` as a decimal string


class FeedHealth(Protocol):
    """A streaming feed's subscriptions with the monotonic time of their last frame."""

    @property
    def subscriptions(self) -> Mapping[Any, Any]: ...  # each with `channel`, `id`, `last_message_ns`,
    #                                                     `requested_ns`


@dataclass
class HealthProbes:
    """What the watchdog samples for one venue; all None for the in-process simulator."""

    chain: ChainHealth | None = None
    indexer: IndexerHealth | None = None
    feed: Callable[[], FeedHealth | None] | None = None
    perpetual_ids: tuple[int, ...] = (0,)
