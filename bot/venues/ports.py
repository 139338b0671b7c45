"""Venue ports: small role-based protocols the core talks to. Adapters implement them."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from bot.domain import AccountEvent, AccountState, MarketEvent, MarketSpec, OrderRequest

MarketSink = Callable[[MarketEvent], None]
AccountSink = Callable[[AccountEvent], None]


class MarketData(Protocol):
    """Streams market events for a set of markets until cancelled."""

    name: str

    def specs(self) -> dict[str, MarketSpec]: ...

    async def run(self, sink: MarketSink) -> None: ...


class ExecutionVenue(Protocol):
    """Places and cancels our orders; reports order updates, fills and funding to a sink.

    `place` raises OrderRejected (no retry), TransientVenueError (nothing was sent) or
    OrderStateUnknown (it may have been sent: reconcile by client id before anything else).
    `cancel` finds orders this process did not place on the venue by client id; it returns
    False when the venue does not list the order open (no cancel was sent).
    """

    name: str

    def set_account_sink(self, sink: AccountSink) -> None: ...

    async def place(self, order: OrderRequest) -> None: ...

    async def cancel(self, client_id: int) -> bool: ...

    async def open_orders(self) -> list[int]: ...

    async def positions(self) -> dict[str, Decimal]: ...


class AccountSource(Protocol):
    """Reads one venue account as the venue reports it: equity, collateral, margin, balances, fees.

    `read` raises TransientVenueError when the venue cannot be read now (the caller keeps the
    last state and its age, which the watchdog grades).
    """

    name: str

    async def read(self) -> AccountState: ...
