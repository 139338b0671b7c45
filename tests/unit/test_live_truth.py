"""Live truth, pure parts: what a market status allows, new market parameters, the venues' account
states (real dYdX bodies), the AccountBook's readiness and ages, the fees decisions use, and the
watchdog's grading of stale account data."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.accounts import AccountBook, decision_fees
from bot.config import load
from bot.domain import (
    AccountState,
    FeeRates,
    Fill,
    Liquidity,
    MarketParams,
    MarketSpec,
    MarketStatusKind,
    OrderStatus,
    OrderUpdate,
    Side,
)
from bot.errors import MalformedMessage, TransientVenueError
from bot.market_info import apply_params
from bot.strategy.market_status import may_place, must_cancel, passive_only, restrict_target
from bot.telemetry import Metrics
from bot.venues.binance import wire as binance_wire
from bot.venues.binance.account_state import commission_rates
from bot.venues.dydx import wire
from bot.venues.dydx.account_state import account_state, fee_rates
from bot.venues.dydx.chain import FeeTier
from bot.venues.dydx.indexer_rest import MarketsResponse, SubaccountStateResponse
from bot.watchdog.mode import InputState, Observation, classify

REST = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dydx" / "rest"
SEC = 1_000_000_000
sizes = st.decimals(min_value=-100, max_value=100, places=3, allow_nan=False, allow_infinity=False)


# ---- market status ---------------------------------------------------------------------------


@given(sizes, sizes, st.sampled_from([s for s in MarketStatusKind if s is not MarketStatusKind.ACTIVE]))
def test_no_status_but_active_ever_adds_exposure(desired: Decimal, position: Decimal,
                                                 status: MarketStatusKind) -> None:
    allowed, _ = restrict_target(status, desired, position)
    assert abs(allowed) <= abs(position)
    assert allowed == 0 or (allowed > 0) == (position > 0)  # never a flip through zero


@pytest.mark.parametrize("status, desired, position, allowed, why", [
    (MarketStatusKind.ACTIVE, "2", "1", "2", ""),
    (MarketStatusKind.POST_ONLY, "2", "1", "1", "post_only"),
    (MarketStatusKind.POST_ONLY, "0.5", "1", "0.5", ""),
    (MarketStatusKind.FINAL_SETTLEMENT, "2", "1", "0", "final_settlement"),
    (MarketStatusKind.CANCEL_ONLY, "0", "1", "1", "cancel_only"),
    (MarketStatusKind.PAUSED, "3", "-1", "-1", "paused"),
    (MarketStatusKind.INITIALIZING, "0", "0", "0", ""),
])
def test_each_status_restricts_the_target(status: MarketStatusKind, desired: str, position: str, allowed: str,
                                          why: str) -> None:
    assert restrict_target(status, Decimal(desired), Decimal(position)) == (Decimal(allowed), why)


def test_which_statuses_take_orders() -> None:
    assert [s.value for s in MarketStatusKind if must_cancel(s)] == ["CANCEL_ONLY", "PAUSED", "INITIALIZING"]
    assert all(may_place(s) != must_cancel(s) for s in MarketStatusKind)
    assert [s.value for s in MarketStatusKind if passive_only(s)] == ["POST_ONLY"]


def test_new_parameters_replace_only_what_the_message_carries() -> None:
    spec = MarketSpec("BTC-USD", Decimal(1), Decimal("0.0001"), Decimal("0.0001"), Decimal("0.02"),
                      Decimal("0.012"))
    tick = apply_params(spec, MarketParams("BTC-USD", Decimal(10), None, None, None, None, 0, 0))
    assert (tick.tick_size, tick.step_size, tick.initial_margin_fraction) == (Decimal(10), Decimal("0.0001"),
                                                                             Decimal("0.02"))
    margin = apply_params(spec, MarketParams("BTC-USD", None, Decimal("0.001"), Decimal("0.1"),
                                             Decimal("0.05"), "CROSS", 0, 0))
    assert margin.min_order_size == margin.step_size == Decimal("0.001")
    assert (margin.initial_margin_fraction, margin.maintenance_margin_fraction) == (Decimal("0.1"),
                                                                                   Decimal("0.05"))
    assert apply_params(spec, MarketParams("BTC-USD", Decimal(0), None, None, None, None, 0, 0)) == spec


# ---- venue accounts --------------------------------------------------------------------------


def _rest(name: str, kind: type) -> object:
    return msgspec.json.decode((REST / name).read_bytes(), type=kind)


def test_dydx_account_from_real_bodies_margins_each_position_at_its_oracle() -> None:
    sub = _rest("subaccount.json", SubaccountStateResponse).subaccount  # type: ignore[attr-defined]
    markets = _rest("list_perpetual_markets.json", MarketsResponse).markets  # type: ignore[attr-defined]
    fees = fee_rates(FeeTier(0, "1", 100, 500))
    state = account_state(sub, markets, fees, 5)
    eth = markets["ETH-USD"]
    notional = Decimal("0.003") * Decimal(eth.oraclePrice)
    assert state.equity_usd == Decimal("99.206819554")
    assert state.free_collateral_usd == Decimal("98.7695751763")
    assert state.initial_margin_usd == notional * Decimal("0.05")
    assert state.maintenance_margin_usd == notional * Decimal("0.03")
    assert state.positions == {"ETH-USD": Decimal("0.003")}
    assert state.balances == {"USDC": Decimal("90.461932")}
    assert state.fees == FeeRates(Decimal("0.0001"), Decimal("0.0005"), "dydx:fee_tier 1")
    assert state.margin_use == state.initial_margin_usd / state.equity_usd


def test_dydx_account_without_positions_needs_no_market_table() -> None:
    sub = _rest("mainnet_2025-12-08_subaccount.json", SubaccountStateResponse).subaccount  # type: ignore[attr-defined]
    state = account_state(sub, {}, None, 0)
    assert (state.equity_usd, state.initial_margin_usd, state.margin_use) == (Decimal("45.201296"), 0, 0)


def test_dydx_account_with_a_position_in_an_unknown_market_is_malformed() -> None:
    sub = _rest("subaccount.json", SubaccountStateResponse).subaccount  # type: ignore[attr-defined]
    with pytest.raises(MalformedMessage, match="ETH-USD"):
        account_state(sub, {}, None, 0)
    short = msgspec.structs.replace(sub, assetPositions={"USDC": wire.AssetPosition("USDC", "12.5", "SHORT")})
    markets = _rest("list_perpetual_markets.json", MarketsResponse).markets  # type: ignore[attr-defined]
    assert account_state(short, markets, None, 0).balances == {"USDC": Decimal("-12.5")}


def test_binance_commission_from_the_account_endpoint() -> None:
    body = {"balances": [], "makerCommission": 10, "takerCommission": 10,
            "commissionRates": {"maker": "0.00075000", "taker": "0.00100000", "buyer": "0", "seller": "0"}}
    account = msgspec.json.decode(json.dumps(body), type=binance_wire.Account)
    assert commission_rates(account) == FeeRates(Decimal("0.00075"), Decimal("0.001"), "binance:account")
    old = msgspec.json.decode(json.dumps({"balances": [], "makerCommission": 10, "takerCommission": 15}),
                              type=binance_wire.Account)
    assert commission_rates(old) == FeeRates(Decimal("0.001"), Decimal("0.0015"), "binance:account_bps")
    assert commission_rates(msgspec.json.decode(b'{"balances": []}', type=binance_wire.Account)) is None


class _Source:
    def __init__(self, name: str, equity: str, fees: FeeRates | None = None) -> None:
        self.name = name
        self.equity = Decimal(equity)
        self.fees = fees
        self.fail = False
        self.reads = 0

    async def read(self) -> AccountState:
        self.reads += 1
        if self.fail:
            raise TransientVenueError(self.name, "read", "down")
        return AccountState(self.name, self.equity, self.equity, Decimal(0), Decimal(0), {}, {}, self.fees, 0)


async def test_account_book_is_ready_once_every_venue_was_read_and_ages_when_reads_fail() -> None:
    clock = ManualClock(1_000 * SEC, real_sleep_max_secs=0)
    dydx, binance = _Source("dydx", "2345.67", FeeRates(Decimal("0.0002"), Decimal("0.0004"), "x")), _Source(
        "binance", "100")
    binance.fail = True
    book = AccountBook([dydx, binance], Metrics(), clock, poll_secs=30)  # type: ignore[arg-type]
    await book.refresh()
    assert not book.ready and book.equity() is None
    binance.fail = False
    await book.refresh()
    assert book.ready and book.equity() == Decimal("2445.67")
    assert book.fees("dydx") == dydx.fees and book.fees("binance") is None
    dydx.fail = True
    clock.now += 90 * SEC
    await book.refresh()
    assert book.equity() == Decimal("2445.67")  # the last state stands ...
    ages = book.ages_secs(clock.now)
    assert ages["dydx"] == 90.0 and ages["binance"] == 0.0  # ... and it ages


async def test_a_fill_on_the_account_stream_triggers_a_read_soon() -> None:
    clock = ManualClock(1_000 * SEC, real_sleep_max_secs=0)
    source = _Source("dydx", "10")
    book = AccountBook([source], Metrics(), clock, poll_secs=3600, min_interval_secs=1)  # type: ignore[list-item]
    seen: list[object] = []
    sink = book.watching(seen.append)
    task = asyncio.create_task(book.run())
    for _ in range(5):
        await asyncio.sleep(0)
    first = source.reads  # the first poll is due at once
    sink(OrderUpdate(1, "BTC-USD", OrderStatus.ACKED, Decimal(0), 0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert source.reads == first  # an order update is no reason to re-read
    sink(Fill("f", 1, "BTC-USD", Side.BUY, Decimal(1), Decimal(1), Decimal(0), Liquidity.TAKER, 0))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    assert source.reads == first + 1 and len(seen) == 2


def test_decisions_use_the_venue_fees_when_live_and_the_configured_ones_in_paper() -> None:
    settings = load(None, env_file=None)
    paper = decision_fees(settings, None)
    configured = FeeRates(settings.paper.maker_fee_rate, settings.paper.taker_fee_rate, "config:paper")
    assert paper["dydx"] == configured
    assert paper["binance"].taker == settings.strategy.carry.spot_taker_fee_rate
    venue = FeeRates(Decimal("0.00011"), Decimal("0.00033"), "dydx:fee_tier 2")
    clock = ManualClock(1_000 * SEC, real_sleep_max_secs=0)
    book = AccountBook([_Source("dydx", "1", venue)], Metrics(), clock)  # type: ignore[list-item]
    assert decision_fees(settings, book)["dydx"].source.endswith("(venue fees not read yet)")
    asyncio.run(book.refresh())
    live = decision_fees(settings, book)
    assert live["dydx"] == venue and live["binance"].source == "config:strategy.carry"  # no spot venue


def test_stale_account_data_degrades_then_halts() -> None:
    w = load(None, env_file=None).watchdog
    def state(age: float) -> InputState:
        readings = classify(Observation(account_age_secs={"dydx": age}), w)
        return next(r.state for r in readings if r.name == "account:dydx")
    assert state(5) is InputState.OK
    assert state(w.account_stale_degraded_secs) is InputState.DEGRADED
    assert state(w.account_stale_critical_secs + 1) is InputState.CRITICAL
