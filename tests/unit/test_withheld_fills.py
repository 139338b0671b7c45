"""A spot buy whose commission the venue takes in the base asset: its fills book the net size,
and the order manager still sees the order (and its parent) filled in full, never a remainder."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import AccountEvent, BookLevel, BookSnapshot, OrderRequest, OrderStatus, RiskMode, Side
from bot.execution.orders import OrderManager
from bot.execution.twap import TwapPlan
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance import wire
from bot.venues.binance.parse import parse_execution_report, parse_spec

D = Decimal
SEC = 1_000_000_000
MARKET = "ETH-USDT"
REPORT = (b'{"e":"executionReport","E":1733587200123,"s":"ETHUSDT","c":"pb-0","S":"BUY","o":"LIMIT",'
          b'"f":"IOC","q":"0.5","p":"3605.00","C":"","x":"TRADE","X":"PARTIALLY_FILLED","r":"NONE","i":1944,'
          b'"l":"0.2","z":"0.2","L":"3601.27","n":"0.0002","N":"ETH","T":1733587200121,"t":1,"m":false}')


class RecordingVenue:
    """Accepts every order and says nothing: the test delivers the venue's events itself."""

    name = "binance"

    def __init__(self) -> None:
        self.placed: list[OrderRequest] = []

    async def place(self, order: OrderRequest) -> None:
        self.placed.append(order)

    async def cancel(self, client_id: int) -> None:
        return None

    async def open_orders(self) -> list[int]:
        return []


def spec():  # type: ignore[no-untyped-def]
    lot = wire.Filter("LOT_SIZE", minQty="0.0001", maxQty="9000", stepSize="0.0001")
    price = wire.Filter("PRICE_FILTER", minPrice="0.01", maxPrice="1000000", tickSize="0.01")
    return parse_spec(wire.SymbolInfo("ETHUSDT", "TRADING", "ETH", "USDT", [price, lot]), MARKET)


def book() -> OrderBook:
    out = OrderBook(MARKET)
    bids = tuple(BookLevel(D(3600 - i), D(10)) for i in range(5))
    asks = tuple(BookLevel(D(3601 + i), D(10)) for i in range(5))
    out.apply_snapshot(BookSnapshot(MARKET, bids, asks, 0, 0))
    return out


def reports(client_id: int) -> list[AccountEvent]:
    """The child's two trades as the user stream reports them: 0.2 then 0.3, 0.1% in ETH each."""
    first = msgspec.structs.replace(wire.USER_EVENT.decode(REPORT), c=f"pb-{client_id}")
    second = msgspec.structs.replace(first, X="FILLED", l="0.3", z="0.5", n="0.0003", t=2)
    out: list[AccountEvent] = []
    for report in (first, second):
        update, fill = parse_execution_report(report, spec())
        assert update is not None and fill is not None
        out += [fill, update]  # the adapter's order: the fill, then the state it leads to
    return out


@pytest.mark.parametrize("order", ["stream", "updates_first", "fills_only_then_final_state"])
def test_a_parent_filled_net_of_base_commission_is_complete(tmp_path: Path, order: str) -> None:
    async def run() -> None:
        clock = ManualClock(1_000 * SEC)
        venue = RecordingVenue()
        with Store.open(tmp_path / "s.sqlite") as store:
            manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings())  # type: ignore[arg-type]
            plan = TwapPlan(MARKET, Side.BUY, D("0.5"), False, (0,), (D("0.5"),), 10**20)
            manager.start_parent(plan, decision_id=1)
            parent = manager.parents[MARKET]
            books, specs = {MARKET: book()}, {MARKET: spec().market_spec()}
            await manager.tick(books, specs, RiskMode.NORMAL)
            (child,) = venue.placed
            assert child.size == D("0.5")
            events = reports(child.client_id)
            if order == "updates_first":
                events = events[1::2] + events[0::2]
            elif order == "fills_only_then_final_state":
                events = events[0::2] + events[-1:]
            for event in events:
                manager.on_account_event(event)
            assert parent.filled == parent.sent == D("0.5")  # what the order traded
            stored = store.get_order(child.client_id)
            assert stored is not None and stored.status is OrderStatus.FILLED
            assert stored.filled_size == D("0.5")
            fills = store.fills(MARKET)
            assert sum((f.size for f in fills), D(0)) == D("0.4995")  # what the account was credited
            assert sum((f.fee for f in fills), D(0)) == D("0.0005") * D("3601.27")
            clock.advance(1)
            await manager.tick(books, specs, RiskMode.NORMAL)
            assert MARKET not in manager.parents and len(venue.placed) == 1  # done, nothing re-sent

    asyncio.run(run())
