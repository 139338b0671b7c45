"""The live drawdown stop's peak against the simulator's real-protocol servers with the real clients
(websockets and httpx for the indexer, dydx-v4-client for orders) and a real SQLite store:

- a withdrawal of 30% reported on the subaccounts channel scales the peak, so the stop (20%) does not
  fire from the withdrawal alone; a trading loss of the same size does fire it;
- a restart after the loss reads the peak back from the store: the stop stays on;
- a withdrawal made while the daemon was down is read from `/v4/transfers` at the restart, one
  whose message a stalled stream lost by the sweep after the reconnect;
- end to end: `perpbot run` live against `perpbot sim`, the owner withdraws on chain (signed
  MsgWithdrawFromSubaccount), `status` shows the scaled peak; one more withdrawal while it is
  stopped is read at its restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from dydx_v4_client.network import NodeConfig, make_insecure
from dydx_v4_client.node.client import NodeClient
from dydx_v4_client.node.message import subaccount, withdraw
from dydx_v4_client.wallet import Wallet
from support.sim import running_simulator, standalone_sim
from support.wait import eventually, eventually_async

from bot.accounts import AccountBook
from bot.book import OrderBook
from bot.clock import SystemClock
from bot.config import Settings, load
from bot.domain import MarketSpec, OrderRequest, Side, TimeInForce, Transfer
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.sim.faults import PriceGap, WsDrop
from bot.sim.runner import Simulator
from bot.sim.server.node import USDC_DENOM
from bot.store import Store
from bot.strategy.sizing import SizingInputs, size_target
from bot.telemetry import Metrics
from bot.venues.dydx.account_state import DydxAccount
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

MARKET = "BTC-USD"
SPEC = MarketSpec(MARKET, Decimal(1), Decimal("0.0001"), Decimal("0.0001"))


@dataclass
class Live:
    sim: Simulator
    venue: DydxVenue
    rest: IndexerRest
    settings: Settings
    db: Path
    transfers: list[Transfer]
    engine: Engine | None = None
    accounts: AccountBook | None = None
    store: Store | None = None

    def start_engine(self) -> Engine:
        """A daemon's engine over the venue's account: a (re)start on the same store file."""
        if self.store is not None:
            self.store.close()
        self.store = Store.open(self.db)
        clock = SystemClock()
        address = self.sim.accounts["dydx"]["address"]
        self.accounts = AccountBook([DydxAccount(self.rest, address, 0, None)], Metrics(), clock)
        orders = OrderManager(self.venue, self.store, Metrics(), clock, self.settings.execution)
        self.engine = Engine(self.settings, {MARKET: SPEC}, self.store, orders, Metrics(), clock,
                             self.venue.books, accounts=self.accounts)

        def sink(event: object) -> None:
            if isinstance(event, Transfer):
                self.transfers.append(event)
            assert self.engine is not None
            self.engine.on_account_event(event)  # type: ignore[arg-type]

        self.venue.set_account_sink(self.accounts.watching(sink))
        return self.engine

    async def read(self) -> tuple[Decimal, Decimal]:
        """One account refresh and one engine step, as the daemon's services do: (equity, peak)."""
        assert self.accounts is not None and self.engine is not None
        await self.accounts.refresh()
        await self.engine.tick()
        return self.engine.equity(), self.engine.peak_equity

    def stopped(self) -> bool:
        """Whether the sizing's drawdown stop holds a 0.01 BTC target at zero now."""
        assert self.engine is not None
        price = self.venue.books[MARKET].mid() or Decimal(60000)
        target = size_target(SizingInputs(MARKET, Decimal("0.01"), price, self.engine.equity(),
                                          self.engine.peak_equity, None, Decimal(0), SPEC.step_size, 1),
                             self.settings.strategy)
        return target.limited_by == "drawdown"


def withdrawals(live: Live) -> list[Decimal]:
    """The withdrawals the account stream and the sweeps reported, each once."""
    return [t.amount for t in dict.fromkeys(live.transfers) if t.amount < 0]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with running_simulator(seed=5, step_secs=0.02, markets=(MARKET,),
                                 account_equity_usd=Decimal(10_000)) as sim:
        account = sim.accounts["dydx"]
        gateway = NodeGateway(sim.node.target, sim.node.chain_id, account["mnemonic"], secure=False,
                              broadcasts_per_sec=50)
        rest = IndexerRest(sim.indexer.rest_url)
        venue = DydxVenue(IndexerRest(sim.indexer.rest_url), sim.indexer.ws_url, (MARKET,), Metrics(),
                          gateway=gateway, account=(account["address"], 0))
        await venue.load_markets()
        venue.use_books({MARKET: OrderBook(MARKET)})
        settings = load(None, env_file=None, state_dir=str(tmp_path), markets=[MARKET],
                        strategy={"targets": {}})
        live = Live(sim, venue, rest, settings, tmp_path / "state.db", [])
        engine = live.start_engine()
        assert engine.live_peak is not None  # as App.run, before the first account read:
        assert engine.live_peak.catch_up(await venue.transfers()) == 0  # the funding deposit, remembered
        task = asyncio.create_task(venue.run(lambda e: None))
        try:
            await eventually_async(lambda: venue.books[MARKET].best_bid())
            await eventually_async(lambda: venue.feed
                                   and all(s.confirmed for s in venue.feed.subscriptions.values()))
            yield live
        finally:
            task.cancel()
            await venue.close()
            await rest.aclose()
            if live.store is not None:
                live.store.close()


async def test_a_withdrawal_scales_the_peak_and_does_not_trip_the_stop(live: Live) -> None:
    assert await live.read() == (Decimal(10_000), Decimal(10_000))
    live.sim.exchange.withdraw(live.sim.accounts["dydx"]["address"], Decimal(3_000))
    await eventually_async(lambda: withdrawals(live), what="the withdrawal on the subaccounts channel")
    assert withdrawals(live) == [Decimal(-3_000)]
    equity, peak = await live.read()
    assert equity == Decimal(7_000) and peak == Decimal(7_000)
    assert not live.stopped()
    # A restart keeps the adjusted peak; the transfer is not applied twice.
    live.start_engine()
    assert live.engine is not None and live.engine.peak_equity == Decimal(7_000)
    assert await live.read() == (Decimal(7_000), Decimal(7_000))


async def test_a_withdrawal_lost_in_a_stream_gap_is_read_after_the_reconnect(live: Live) -> None:
    assert await live.read() == (Decimal(10_000), Decimal(10_000))
    await eventually_async(lambda: live.transfers)  # the first sweep reads the funding deposit: seen
    assert {t.amount for t in live.transfers} == {Decimal(10_000)} and live.engine is not None
    assert await live.read() == (Decimal(10_000), Decimal(10_000))
    scenario = live.sim.exchange.scenario
    scenario.ws_stall = True  # the indexer sends no channel data: the withdrawal's message is lost
    height = live.sim.exchange.height
    live.sim.exchange.withdraw(live.sim.accounts["dydx"]["address"], Decimal(2_000))
    await eventually_async(lambda: live.sim.exchange.height > height + 1)
    scenario.ws_stall, scenario.ws_drop = False, WsDrop.CLOSE
    await eventually_async(lambda: withdrawals(live) == [Decimal(-2_000)], timeout_secs=20,
                           what="the sweep after the reconnect")
    assert await live.read() == (Decimal(8_000), Decimal(8_000)) and not live.stopped()


async def test_a_loss_of_the_same_size_trips_the_stop_and_a_restart_keeps_it(live: Live) -> None:
    assert await live.read() == (Decimal(10_000), Decimal(10_000))
    book = live.venue.books[MARKET]
    ask = book.best_ask()
    assert ask is not None
    size = (Decimal(10_000) / ask.price).quantize(Decimal("0.0001"))  # ~1x long
    await live.venue.place(OrderRequest(77, MARKET, Side.BUY, size, ask.price * Decimal("1.01"),
                                        TimeInForce.IOC))
    # The price falls 30%: about 3,000 USD lost, the size of the withdrawal above.
    live.sim.exchange.scenario.price_gap = PriceGap(MARKET, -30.0)

    for _ in range(200):  # the gap lands in a block, the oracle follows
        equity, _ = await live.read()
        if equity < Decimal(7_500):
            break
        await asyncio.sleep(0.05)
    equity, peak = await live.read()
    assert equity < Decimal(7_500) and peak >= Decimal(10_000), (equity, peak)
    assert live.stopped()
    # A restart (a crash, an upgrade) must not take the trough for the peak.
    live.start_engine()
    equity, peak = await live.read()
    assert peak >= Decimal(10_000) and live.stopped(), (equity, peak)
    assert not withdrawals(live)  # a loss, not a transfer (the sweep re-reads the funding deposit)


async def test_a_withdrawal_while_the_daemon_was_down_is_read_back_at_restart(live: Live) -> None:
    assert await live.read() == (Decimal(10_000), Decimal(10_000))
    lost: list[object] = []
    live.venue.set_account_sink(lost.append)  # down: the stream's transfer reaches no engine
    live.sim.exchange.withdraw(live.sim.accounts["dydx"]["address"], Decimal(4_000))
    await eventually_async(lambda: any(isinstance(e, Transfer) for e in lost))
    engine = live.start_engine()
    assert engine.live_peak is not None
    # What App.run does before the first account read (App._transfers_while_down): the withdrawal
    # made while down is counted, once.
    assert engine.live_peak.catch_up(await live.venue.transfers()) == 1
    equity, peak = await live.read()
    assert (equity, peak) == (Decimal(6_000), Decimal(6_000)) and not live.stopped()
    engine = live.start_engine()
    assert engine.live_peak is not None and engine.live_peak.catch_up(await live.venue.transfers()) == 0
    assert await live.read() == (Decimal(6_000), Decimal(6_000))


def _withdraw_on_chain(endpoints: dict[str, Any], usdc: int) -> None:
    """The owner withdraws USDC from subaccount 0: a signed MsgWithdrawFromSubaccount over gRPC."""
    account = endpoints["accounts"]["dydx"]

    async def send() -> None:
        config = partial(NodeConfig, endpoints["chain_id"], chaintoken_denom="adv4tnt", usdc_denom=USDC_DENOM)
        node = make_insecure(config, rest_indexer="", websocket_indexer="",
                             node_url=endpoints["node_grpc"]).node
        client = await NodeClient.connect(node)
        owner = await Wallet.from_mnemonic(client, account["mnemonic"], account["address"])
        response = await client.broadcast_message(
            owner, withdraw(subaccount(account["address"], 0), account["address"], 0, usdc * 1_000_000))
        assert response.tx_response.code == 0, response.tx_response.raw_log

    asyncio.run(send())


def test_the_daemon_scales_its_stored_peak_on_withdrawals_while_running_and_while_down(
        daemon_factory) -> None:  # type: ignore[no-untyped-def]
    with standalone_sim(23) as ep:
        env = {
            "PERPBOT_SIM__MODE": "protocol", "PERPBOT_TRADING": "live", "PERPBOT_MARKETS": '["BTC-USD"]',
            "PERPBOT_STRATEGY__TARGETS": "{}", "PERPBOT_WATCHDOG__ENABLED": "false",
            "PERPBOT_DYDX__INDEXER_REST": ep["indexer_rest"], "PERPBOT_DYDX__INDEXER_WS": ep["indexer_ws"],
            "PERPBOT_DYDX__NODE_GRPC": ep["node_grpc"], "PERPBOT_DYDX__CHAIN_ID": ep["chain_id"],
            "PERPBOT_DYDX_MNEMONIC": ep["accounts"]["dydx"]["mnemonic"],
        }
        daemon = daemon_factory(**env).start()
        first = eventually(lambda: (d := daemon.status()["drawdown"])["peak_equity"] != "0.000000" and d, 30)
        assert Decimal(first["peak_equity"]) == Decimal(10_000) and first["source"].startswith("venue")
        _withdraw_on_chain(ep, 3_000)
        after = eventually(lambda: (s := daemon.status())["equity"] == "7000.000000"
                           and s["drawdown"]["peak_equity"] == "7000.000000" and s, 30)
        assert after["drawdown"]["drawdown"] == "0.0000" and after["drawdown"]["pending_transfers"] == "0"
        assert any(e.get("event") == "peak_adjusted_for_transfers" for e in daemon.log_events())
        assert daemon.stop() == 0
        _withdraw_on_chain(ep, 1_000)  # while the daemon is down
        daemon = daemon_factory(**env).start()
        restarted = eventually(lambda: (s := daemon.status())["equity"] == "6000.000000"
                               and s["drawdown"]["pending_transfers"] == "0" and s, 30)
        assert restarted["drawdown"]["peak_equity"] == "6000.000000", restarted["drawdown"]
        assert [e["count"] for e in daemon.log_events() if e.get("event") == "transfers_while_down"] == [1]
        assert daemon.stop() == 0
