import hashlib
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.domain import BookDelta, BookSnapshot, Side, Trade
from bot.errors import ConfigError
from bot.sim.exchange import SimExchange
from bot.sim.market import SimMarketParams
from bot.sim.perp.records import (
    MAX_BATCH_CANCEL,
    ORDER_FLAGS_LONG_TERM,
    ORDER_FLAGS_SHORT_TERM,
    STATEFUL_ORDER_WINDOW_SECS,
    AccountUpdate,
    ChainError,
    ExchangeConfig,
    MarketChange,
    OrderId,
    OrderRequest,
    OrderState,
    TimeInForce,
    chain_params,
    tick_step_from_chain,
)
from bot.sim.scenarios import ScenarioScheduler, parse_spec

D = Decimal
START_NS = 1_700_000_000 * NS_PER_SEC
ALICE, BOB = "dydx1alice", "dydx1bob"
BTC = SimMarketParams()
ETH = SimMarketParams(ticker="ETH-USD", initial_price=D(3000), tick_size=D("0.1"), step_size=D("0.001"),
                      min_order_size=D("0.001"), base_level_size=D(8), mean_trade_size=D("0.8"))
# A market that does not move by itself: no price moves, no level redraws, no takers.
STILL = replace(BTC, initial_price=D("60000.3"), annual_vol=1e-9, jump_per_sec=0.0,
                high_vol_enter_per_sec=0.0, level_updates_per_sec=0.0, taker_trades_per_sec=0.0,
                oracle_noise_bps=0.0)


USDC = D(100_000)


def make(markets=None, seed=1, usdc=USDC, config=None) -> SimExchange:
    ex = SimExchange(markets or [STILL, replace(ETH, taker_trades_per_sec=0.0)], seed, START_NS, config)
    ex.create_account(ALICE, usdc)
    ex.create_account(BOB, usdc)
    ex.advance(START_NS)
    return ex


def short(ex, side, size, price, client_id=1, tif=TimeInForce.UNSPECIFIED, owner=ALICE, clob=0,
          gtb=None, reduce_only=False) -> OrderRequest:
    return OrderRequest(OrderId(owner, 0, client_id, ORDER_FLAGS_SHORT_TERM, clob), side, D(size),
                        D(price), tif, reduce_only=reduce_only,
                        good_til_block=ex.height + 10 if gtb is None else gtb)


def long_term(ex, side, size, price, client_id=1, gtbt=None, owner=ALICE, tif=TimeInForce.UNSPECIFIED):
    gtbt = ex.block_time_ns // NS_PER_SEC + 3600 if gtbt is None else gtbt
    return OrderRequest(OrderId(owner, 0, client_id, ORDER_FLAGS_LONG_TERM, 0), side, D(size), D(price),
                        tif, good_til_block_time=gtbt)


def rejects(ex, request, code, codespace="clob") -> ChainError:
    with pytest.raises(ChainError) as info:
        ex.place_order(request, ex.block_time_ns)
    assert (info.value.codespace, info.value.code) == (codespace, code), info.value
    return info.value


def touch(ex, ticker="BTC-USD"):
    bids, asks = ex.book(ticker)
    return bids[0][0], asks[0][0]


def order(ex, client_id, owner=ALICE, flags=ORDER_FLAGS_SHORT_TERM):
    return next(o for o in ex.orders(owner) if o.request.order_id.client_id == client_id
                and o.request.order_id.order_flags == flags)


def advance_blocks(ex, n):
    for _ in range(n):
        ex.advance(ex.block_time_ns + ex.config.block_interval_ns)


# ---- chain parameters ------------------------------------------------------------------------


def test_chain_params_of_real_markets():
    assert chain_params(D(1), D("0.0001")) == (-10, -9, 1_000_000, 100_000)
    assert chain_params(D("0.1"), D("0.001")) == (-9, -9, 1_000_000, 100_000)


@given(st.integers(1, 999), st.integers(-8, 4), st.integers(1, 999), st.integers(-8, 4))
def test_chain_params_round_trip(tick_m, tick_e, step_m, step_e):
    tick, step = D(tick_m).scaleb(tick_e), D(step_m).scaleb(step_e)
    ar, qce, sbq, spt = chain_params(tick, step)
    assert tick_step_from_chain(ar, qce, sbq, spt) == (tick.normalize(), step.normalize())
    assert D(sbq).scaleb(ar) == step and D(spt).scaleb(qce - ar - 6) == tick


def test_market_info_is_consistent():
    ex = make([BTC, ETH])
    info = ex.markets()
    assert [m.clob_pair_id for m in info.values()] == [0, 1]
    eth = ex.market_by_clob_pair(1)
    assert (eth.atomic_resolution, eth.quantum_conversion_exponent) == (-9, -9)
    assert tick_step_from_chain(eth.atomic_resolution, eth.quantum_conversion_exponent,
                                eth.step_base_quantums, eth.subticks_per_tick) == (D("0.1"), D("0.001"))
    with pytest.raises(ChainError) as info_err:
        ex.market_by_clob_pair(7)
    assert info_err.value.code == 8


# ---- place rules -----------------------------------------------------------------------------


def test_short_term_good_til_block_window():
    ex = make()
    bid, _ = touch(ex)
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 10, gtb=ex.height), 10)
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 10, gtb=ex.height + 41), 11)
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 10, gtb=0), 5)
    ex.place_order(short(ex, Side.BUY, "0.01", bid - 10, gtb=ex.height + 40), START_NS)
    assert order(ex, 1).status is OrderState.BEST_EFFORT_OPENED


def test_long_term_good_til_block_time():
    ex = make()
    advance_blocks(ex, 1)
    bid, _ = touch(ex)
    now_secs = ex.block_time_ns // NS_PER_SEC
    rejects(ex, long_term(ex, Side.BUY, "0.01", bid - 10, gtbt=now_secs), 3003)
    rejects(ex, long_term(ex, Side.BUY, "0.01", bid - 10, gtbt=now_secs + STATEFUL_ORDER_WINDOW_SECS + 1),
            3004)
    rejects(ex, long_term(ex, Side.BUY, "0.01", bid - 10, tif=TimeInForce.IOC), 3002)
    ex.place_order(long_term(ex, Side.BUY, "0.01", bid - 10, gtbt=now_secs + STATEFUL_ORDER_WINDOW_SECS),
                   ex.block_time_ns)
    assert order(ex, 1, flags=ORDER_FLAGS_LONG_TERM).status is OrderState.OPEN
    rejects(ex, long_term(ex, Side.BUY, "0.02", bid - 11), 3005)  # stateful duplicate


def test_reduce_only_needs_ioc_and_fok_is_deprecated():
    ex = make()
    bid, ask = touch(ex)
    err = rejects(ex, short(ex, Side.SELL, "0.01", ask + 5, reduce_only=True), 9003)
    assert err.log == "reduce only orders must be short term IOC orders"
    rejects(ex, short(ex, Side.BUY, "0.01", bid, tif=TimeInForce.FILL_OR_KILL), 48)
    # reduce-only IOC with no position does nothing, and never opens one
    ex.place_order(short(ex, Side.SELL, "0.01", bid, tif=TimeInForce.IOC, reduce_only=True), START_NS)
    assert order(ex, 1).status is OrderState.CANCELED and ex.positions(ALICE) == []


def test_reduce_only_ioc_is_resized_to_the_position():
    ex = make()
    _, ask = touch(ex)
    ex.place_order(short(ex, Side.BUY, "0.05", ask + 5, tif=TimeInForce.IOC), START_NS)
    bid, _ = touch(ex)
    ex.place_order(short(ex, Side.SELL, "0.2", bid - 50, client_id=2, tif=TimeInForce.IOC,
                         reduce_only=True), START_NS)
    assert order(ex, 2).total_filled == D("0.05")
    assert ex.positions(ALICE) == []


def test_grid_size_status_and_margin_rejections():
    ex = make()
    bid, _ = touch(ex)
    rejects(ex, short(ex, Side.BUY, "0.01", bid - D("0.5")), 12)  # off tick
    rejects(ex, short(ex, Side.BUY, "0.00015", bid - 1), 12)  # off step
    rejects(ex, short(ex, Side.BUY, "0.00001", bid - 1), 12)  # below one step
    rejects(ex, short(ex, Side.BUY, "0", bid - 1), 4)
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 1, clob=9), 8)
    rejects(ex, short(ex, Side.BUY, "100", bid - 1), 3007)  # 6M notional on 100k of equity
    ex.set_market_status("BTC-USD", "CANCEL_ONLY")
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 1), 34)


def test_post_only_that_would_cross_is_rejected():
    ex = make()
    bid, ask = touch(ex)
    rejects(ex, short(ex, Side.BUY, "0.01", ask, tif=TimeInForce.POST_ONLY), 2003)
    rejects(ex, short(ex, Side.SELL, "0.01", bid, tif=TimeInForce.POST_ONLY), 2003)
    ex.place_order(short(ex, Side.BUY, "0.01", ask - 1, tif=TimeInForce.POST_ONLY), START_NS)
    assert ex.book("BTC-USD")[0][0][0] == ask - 1  # a new best bid inside the spread
    # an account order counts as a maker too
    rejects(ex, short(ex, Side.SELL, "0.01", ask - 1, client_id=5, owner=BOB, tif=TimeInForce.POST_ONLY),
            2003)


def test_replacement_rule():
    ex = make()
    bid, _ = touch(ex)
    before = dict(ex.book("BTC-USD")[0])
    ex.place_order(short(ex, Side.BUY, "0.01", bid - 5, gtb=ex.height + 5), START_NS)
    rejects(ex, short(ex, Side.BUY, "0.02", bid - 6, gtb=ex.height + 5), 20)  # same GTB
    rejects(ex, short(ex, Side.BUY, "0.02", bid - 6, gtb=ex.height + 4), 20)  # lower GTB
    rejects(ex, short(ex, Side.SELL, "0.02", bid + 50, gtb=ex.height + 6), 20)  # other side
    rejects(ex, short(ex, Side.BUY, "0.02", bid - 6, gtb=ex.height + 6, tif=TimeInForce.POST_ONLY), 20)
    ex.place_order(short(ex, Side.BUY, "0.02", bid - 6, gtb=ex.height + 6), START_NS)
    live = ex.orders(ALICE, open_only=True)
    assert len(live) == 1 and live[0].request.size == D("0.02")
    bids = dict(ex.book("BTC-USD")[0])
    assert bids[bid - 6] == before[bid - 6] + D("0.02") and bids[bid - 5] == before[bid - 5]


def test_chain_halt_stops_blocks_and_rejects_transactions():
    ex = make()
    height = ex.height
    ex.scenario.chain_halted = True
    bid, _ = touch(ex)
    events = ex.advance(START_NS + 10 * NS_PER_SEC)
    assert ex.height == height and events == []
    with pytest.raises(ChainError) as info:
        ex.place_order(short(ex, Side.BUY, "0.01", bid - 5), START_NS)
    assert info.value.codespace == "sdk"
    with pytest.raises(ChainError):
        ex.cancel_order(OrderId(ALICE, 0, 1, 0, 0), START_NS, good_til_block=ex.height + 2)
    ex.scenario.chain_halted = False
    ex.advance(START_NS + 12 * NS_PER_SEC)
    assert ex.height > height


# ---- cancels ---------------------------------------------------------------------------------


def test_cancel_short_term_needs_good_til_block_in_window():
    ex = make()
    bid, _ = touch(ex)
    before = dict(ex.book("BTC-USD")[0])
    ex.place_order(short(ex, Side.BUY, "0.01", bid - 5), START_NS)
    oid = OrderId(ALICE, 0, 1, ORDER_FLAGS_SHORT_TERM, 0)
    for gtb, code in ((None, 5), (ex.height, 10), (ex.height + 41, 11)):
        with pytest.raises(ChainError) as info:
            ex.cancel_order(oid, START_NS, good_til_block=gtb)
        assert info.value.code == code
    ex.cancel_order(oid, START_NS, good_til_block=ex.height + 3)
    record = order(ex, 1)
    assert record.status is OrderState.CANCELED
    assert record.removal_reason == "ORDER_REMOVAL_REASON_USER_CANCELED"
    assert dict(ex.book("BTC-USD")[0])[bid - 5] == before[bid - 5]
    # the cancel blocks the same id up to its GTB
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 5, gtb=ex.height + 3), 7)


def test_cancel_stateful_order():
    ex = make()
    bid, _ = touch(ex)
    ex.place_order(long_term(ex, Side.BUY, "0.01", bid - 5), START_NS)
    oid = OrderId(ALICE, 0, 1, ORDER_FLAGS_LONG_TERM, 0)
    gtbt = ex.block_time_ns // NS_PER_SEC + 60
    with pytest.raises(ChainError) as info:
        ex.cancel_order(OrderId(ALICE, 0, 2, ORDER_FLAGS_LONG_TERM, 0), START_NS, good_til_block_time=gtbt)
    assert info.value.code == 3006
    ex.cancel_order(oid, START_NS, good_til_block_time=gtbt)
    assert order(ex, 1, flags=ORDER_FLAGS_LONG_TERM).status is OrderState.CANCELED


def test_batch_cancel_limit_and_short_term_only():
    ex = make()
    bid, _ = touch(ex)
    for cid in range(1, 4):
        ex.place_order(short(ex, Side.BUY, "0.01", bid - 5 - cid, client_id=cid), START_NS)
    ex.place_order(long_term(ex, Side.BUY, "0.01", bid - 20, client_id=1), START_NS)
    with pytest.raises(ChainError) as info:
        ex.batch_cancel(ALICE, 0, [(0, list(range(60))), (1, list(range(60, 60 + 41)))], ex.height + 5,
                        START_NS)
    assert (info.value.codespace, info.value.code) == ("clob", 45)
    with pytest.raises(ChainError) as info:
        ex.batch_cancel(ALICE, 0, [(0, [1])], ex.height + 99, START_NS)
    assert info.value.code == 11
    ex.batch_cancel(ALICE, 0, [(0, list(range(1, MAX_BATCH_CANCEL + 1)))], ex.height + 5, START_NS)
    live = ex.orders(ALICE, open_only=True)
    assert [o.request.order_id.order_flags for o in live] == [ORDER_FLAGS_LONG_TERM]


# ---- sequences -------------------------------------------------------------------------------


def test_sequence_handling():
    ex = make()
    number, seq = ex.account(ALICE)
    assert seq == 0 and ex.account(BOB)[0] != number
    ex.check_sequence(ALICE, 0, is_stateful=True)
    assert ex.account(ALICE)[1] == 1
    ex.check_sequence(ALICE, 0, is_stateful=False)  # short-term: any value, no bump
    ex.check_sequence(ALICE, 12345, is_stateful=False)
    assert ex.account(ALICE)[1] == 1
    with pytest.raises(ChainError) as info:
        ex.check_sequence(ALICE, 0, is_stateful=True)
    assert (info.value.codespace, info.value.code) == ("sdk", 32)
    assert "account sequence mismatch" in info.value.log
    with pytest.raises(ChainError):
        ex.account("dydx1nobody")


# ---- matching --------------------------------------------------------------------------------


def test_ioc_walks_levels_and_consumes_them():
    ex = make()
    _, asks = ex.book("BTC-USD")
    walk = asks[:3]
    size = walk[0][1] + walk[1][1] + walk[2][1] / 2
    size = size.quantize(D("0.0001"))
    ex.place_order(short(ex, Side.BUY, str(size), str(walk[2][0]), tif=TimeInForce.IOC), START_NS)
    events = ex.advance(START_NS)
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.price, t.aggressor) for t in trades] == [(p, Side.BUY) for p, _ in walk]
    _, after = ex.book("BTC-USD")
    assert after[0] == (walk[2][0], walk[2][1] - (size - walk[0][1] - walk[1][1]))
    fills = ex.fills(ALICE)
    assert sum(f.size for f in fills) == size and {f.liquidity for f in fills} == {"TAKER"}
    assert all(f.fee == f.price * f.size * D("0.0005") for f in fills)
    assert order(ex, 1).status is OrderState.FILLED
    pos = ex.positions(ALICE)[0]
    assert pos.size == size and pos.status == "OPEN"
    # an IOC that cannot fill in full: remainder cancelled, liquidity beyond the limit untouched
    best = after[0][0]
    ex.place_order(short(ex, Side.BUY, "50", str(best), client_id=2, tif=TimeInForce.IOC), START_NS)
    record = order(ex, 2)
    assert record.status is OrderState.CANCELED and record.total_filled == after[0][1]
    assert ex.book("BTC-USD")[1][0] == after[1]


def test_crossing_gtt_takes_then_rests():
    ex = make()
    _, asks = ex.book("BTC-USD")
    size = asks[0][1] + D("0.01")
    ex.place_order(short(ex, Side.BUY, str(size), str(asks[0][0])), START_NS)
    record = order(ex, 1)
    assert record.total_filled == asks[0][1] and record.status is OrderState.OPEN
    bids, new_asks = ex.book("BTC-USD")
    assert bids[0] == (asks[0][0], D("0.01")) and new_asks[0][0] > asks[0][0]


def test_account_orders_match_by_price_time_priority():
    ex = make([replace(STILL, spread_ticks=10)])
    _, ask = touch(ex)
    ex.place_order(short(ex, Side.SELL, "0.01", ask - 2, client_id=1, owner=ALICE), START_NS)
    ex.place_order(short(ex, Side.SELL, "0.01", ask - 2, client_id=2, owner=BOB), START_NS)
    ex.place_order(short(ex, Side.SELL, "0.01", ask - 3, client_id=3, owner=BOB), START_NS)
    ex.place_order(short(ex, Side.BUY, "0.015", ask - 2, client_id=9, owner=BOB, tif=TimeInForce.IOC),
                   START_NS)
    # BOB's buy meets its own ask at ask-3 first: self-trade removes that maker
    assert order(ex, 3, BOB).removal_reason == "ORDER_REMOVAL_REASON_SELF_TRADE_ERROR"
    assert order(ex, 1, ALICE).total_filled == D("0.01")  # first in time at ask-2
    assert order(ex, 2, BOB).total_filled == 0
    alice_fill = ex.fills(ALICE)[0]
    assert alice_fill.liquidity == "MAKER" and alice_fill.fee == alice_fill.price * D("0.01") * D("0.0001")
    assert order(ex, 9, BOB).total_filled == D("0.01")  # the rest would trade with itself


def test_resting_order_fills_only_after_queue_ahead_traded():
    takers = replace(STILL, taker_trades_per_sec=20.0, mean_trade_size=D("0.1"), base_level_size=D("1"))
    ex = make([takers], seed=3)
    bid, _ = touch(ex)
    queue = dict(ex.book("BTC-USD")[0])[bid]
    ex.place_order(short(ex, Side.BUY, "0.05", str(bid), gtb=ex.height + 40), START_NS)
    sold, fills = D(0), []
    t = START_NS
    while not fills and t < START_NS + 20 * NS_PER_SEC:
        t += 100_000_000
        before = sold
        for event in ex.advance(t):
            if isinstance(event, Trade) and event.aggressor is Side.SELL and event.price == bid:
                sold += event.size
            elif isinstance(event, AccountUpdate):
                fills.extend(event.fills)
    assert fills and before < queue  # nothing filled while the queue ahead was still there
    assert sum(f.size for f in fills) == min(sold - queue, D("0.05"))  # only the excess fills us
    assert {(f.liquidity, f.price) for f in fills} == {("MAKER", bid)}


def test_short_term_expiry_at_the_right_height():
    ex = make()
    bid, _ = touch(ex)
    gtb = ex.height + 3
    ex.place_order(short(ex, Side.BUY, "0.01", bid - 5, gtb=gtb), START_NS)
    while ex.height < gtb:
        advance_blocks(ex, 1)
        assert order(ex, 1).status is OrderState.BEST_EFFORT_OPENED
    events = ex.advance(ex.block_time_ns + ex.config.block_interval_ns)
    assert ex.height == gtb + 1
    record = order(ex, 1)
    assert record.status is OrderState.CANCELED and record.removal_reason == "ORDER_REMOVAL_REASON_EXPIRED"
    deltas = [e for e in events if isinstance(e, BookDelta)]
    assert any(lvl.price == bid - 5 for d in deltas for lvl in d.bids)
    updates = [e for e in events if isinstance(e, AccountUpdate)]
    assert len(updates) == 1 and updates[0].orders[0].status is OrderState.CANCELED


def test_long_term_expiry():
    ex = make()
    bid, _ = touch(ex)
    gtbt = ex.block_time_ns // NS_PER_SEC + 5
    ex.place_order(long_term(ex, Side.BUY, "0.01", bid - 5, gtbt=gtbt), START_NS)
    ex.advance((gtbt - 1) * NS_PER_SEC)
    assert order(ex, 1, flags=ORDER_FLAGS_LONG_TERM).status is OrderState.OPEN
    ex.advance((gtbt + 1) * NS_PER_SEC)
    record = order(ex, 1, flags=ORDER_FLAGS_LONG_TERM)
    assert record.status is OrderState.CANCELED and record.removal_reason == "ORDER_REMOVAL_REASON_EXPIRED"


# ---- funding, margin -------------------------------------------------------------------------


def test_funding_sign_and_no_double_settlement():
    start = (START_NS // NS_PER_HOUR + 1) * NS_PER_HOUR - 30 * NS_PER_SEC
    ex = SimExchange([STILL], 1, start)
    ex.create_account(ALICE, D(100_000))
    ex.create_account(BOB, D(100_000))
    _, ask = touch(ex)
    bid, _ = touch(ex)
    ex.place_order(short(ex, Side.BUY, "0.1", str(ask + 10), tif=TimeInForce.IOC), start)
    ex.place_order(short(ex, Side.SELL, "0.2", str(bid - 10), owner=BOB, tif=TimeInForce.IOC), start)
    ex.scenario.funding_spike_1h = D("0.001")
    for k in range(1, 200):  # ~1.6 minutes across the top of the hour, small steps
        ex.advance(start + k * 500_000_000)
    assert ex.markets()["BTC-USD"].next_funding_rate == D("0.001")
    alice, bob = ex.funding_payments(ALICE), ex.funding_payments(BOB)
    assert len(alice) == len(bob) == 1
    oracle = alice[0].oracle_price
    assert alice[0].amount == -D("0.1") * oracle * D("0.001") < 0  # long pays
    assert bob[0].amount == D("0.2") * oracle * D("0.001") > 0  # short receives
    assert ex.positions(ALICE)[0].net_funding == alice[0].amount
    history = ex.historical_funding("BTC-USD")
    assert len(history) == 1 and history[0].rate == D("0.001")


def test_liquidation_when_equity_below_maintenance():
    ex = make([STILL], usdc=D(1000))
    _, ask = touch(ex)
    ex.place_order(short(ex, Side.BUY, "0.7", str(ask + 20), tif=TimeInForce.IOC), START_NS)
    assert ex.positions(ALICE)[0].size == D("0.7")  # ~42k notional on 1k: 2.4% margin
    ex.sim_market("BTC-USD").shift_price(-3)
    t = START_NS
    while ex.positions(ALICE) and t < START_NS + 30 * NS_PER_SEC:
        t += NS_PER_SEC
        ex.advance(t)
    assert ex.positions(ALICE) == []
    closed = ex.positions(ALICE, open_only=False)
    assert closed[-1].status == "LIQUIDATED" and closed[-1].size == 0
    assert ex.subaccount(ALICE).equity < D(1000) * D("0.6")


def test_liquidity_factor_thins_depth():
    ex = make([replace(BTC, taker_trades_per_sec=0.0)])
    depth = sum(s for _, s in ex.book("BTC-USD")[0])
    ex.scenario.liquidity_factor = 0.2
    ex.advance(START_NS + NS_PER_SEC)
    assert sum(s for _, s in ex.book("BTC-USD")[0]) < depth * D("0.4")


# ---- determinism and the book ----------------------------------------------------------------


def scripted_run(seed: int) -> str:
    ex = SimExchange([BTC, ETH], seed, START_NS, ExchangeConfig())
    ex.create_account(ALICE, D(100_000))
    events = []
    t = START_NS
    for k in range(400):
        t += 50_000_000 + (k % 5) * 7_000_000
        events.extend(ex.advance(t))
        if k % 40 == 0:
            bid, ask = touch(ex)
            ex.place_order(short(ex, Side.BUY, "0.01", str(bid), client_id=k), t)
            ex.place_order(short(ex, Side.SELL, "0.02", str(ask + 1), client_id=k + 1), t)
        if k % 97 == 0:
            _, ask = touch(ex)
            ex.place_order(short(ex, Side.BUY, "0.3", str(ask + 3), client_id=k + 2,
                                 tif=TimeInForce.IOC), t)
    return hashlib.sha256(repr(events).encode()).hexdigest()


def test_same_seed_same_event_stream():
    assert scripted_run(5) == scripted_run(5)
    assert scripted_run(5) != scripted_run(6)


def test_events_rebuild_the_aggregated_book():
    from bot.book import OrderBook

    ex = SimExchange([BTC], 1, START_NS)
    ex.create_account(ALICE, D(100_000))
    ob = OrderBook("BTC-USD")
    bid, ask = touch(ex)
    ex.place_order(short(ex, Side.BUY, "0.3", str(bid), gtb=ex.height + 40), START_NS)
    ex.place_order(short(ex, Side.SELL, "0.2", str(ask + 2), client_id=2, gtb=ex.height + 40), START_NS)
    snap_seen = False
    for k in range(1, 300):
        for event in ex.advance(START_NS + k * 100_000_000):
            if isinstance(event, BookSnapshot):
                ob.apply_snapshot(event)
                snap_seen = True
            elif isinstance(event, BookDelta) and snap_seen:
                assert ob.apply_delta(event)
    bids, asks = ex.book("BTC-USD")
    assert [(lv.price, lv.size) for lv in ob.levels(Side.BUY, 1000)] == bids
    assert [(lv.price, lv.size) for lv in ob.levels(Side.SELL, 1000)] == asks


_ACTIONS = st.lists(st.tuples(
    st.sampled_from(["order", "ioc", "post", "advance", "cancel"]),
    st.sampled_from([ALICE, BOB]), st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(-6, 6), st.integers(1, 3000), st.integers(1, 3_000_000_000)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), _ACTIONS)
def test_aggregated_book_never_crossed(seed, actions):
    lively = replace(BTC, annual_vol=3.0, level_updates_per_sec=50.0, taker_trades_per_sec=20.0)
    ex = SimExchange([lively], seed, START_NS)
    ex.create_account(ALICE, D(1_000_000))
    ex.create_account(BOB, D(1_000_000))
    t = START_NS
    ex.advance(t)
    for n, (kind, owner, side, offset, size, dt) in enumerate(actions):
        bid, ask = touch(ex)
        ref = ask if side is Side.BUY else bid
        price = ref + offset * side.sign * -1 if kind != "ioc" else ref - offset * side.sign * -1
        tif = {"ioc": TimeInForce.IOC, "post": TimeInForce.POST_ONLY}.get(kind, TimeInForce.UNSPECIFIED)
        try:
            if kind == "advance":
                t += dt
                ex.advance(t)
            elif kind == "cancel":
                ex.batch_cancel(owner, 0, [(0, list(range(n)) or [0])], ex.height + 2, t)
            else:
                ex.place_order(short(ex, side, str(D(size) / 10_000), str(max(price, 1)), client_id=n,
                                     owner=owner, tif=tif, gtb=ex.height + 1 + n % 40), t)
        except ChainError:
            pass
        bids, asks = ex.book("BTC-USD")
        assert not bids or not asks or bids[0][0] < asks[0][0]


# ---- fast paths: same results as the plain ones ---------------------------------------------


def test_trade_ids_and_24h_volume():
    ex = SimExchange([replace(BTC, taker_trades_per_sec=30.0)], 2, START_NS)
    trades = []
    for k in range(1, 60):
        for event in ex.advance(START_NS + k * 100_000_000):
            if isinstance(event, Trade):
                trades.append(event)
    assert trades
    listed = ex.trades("BTC-USD", limit=10_000)
    assert [t for _, t, _ in listed] == trades[::-1]
    for trade_id, _, height in listed:
        assert len(trade_id) == 24 and int(trade_id[:8], 16) == height and int(trade_id[8:16], 16) == 0
    # within one height, indexes count up from 1 in trade order
    by_height: dict[int, list[int]] = {}
    for trade_id, _, height in reversed(listed):
        by_height.setdefault(height, []).append(int(trade_id[16:], 16))
    assert all(ids == list(range(1, len(ids) + 1)) for ids in by_height.values())
    assert ex.markets()["BTC-USD"].volume_24h == sum((t.price * t.size for t in trades), D(0))


def test_ids_are_the_uuid5_of_the_simulator_namespace():
    import uuid

    from bot.sim.perp.records import _UUID_NS, order_uid
    from bot.sim.perp.records import uuid5 as _uuid5

    for name in ("fill-1", "transfer-77", "dydx1alice-0-5-0-64", "é"):
        assert _uuid5(name) == str(uuid.uuid5(_UUID_NS, name))
    oid = OrderId(ALICE, 2, 7, ORDER_FLAGS_LONG_TERM, 1)
    assert order_uid(oid) == str(uuid.uuid5(_UUID_NS, f"{ALICE}-2-7-1-64"))


def test_gated_taker_hook_gives_the_same_stream():
    """The model skips the exchange's taker hook only when the hook would decline the taker."""

    def run(gated: bool) -> str:
        lively = replace(BTC, taker_trades_per_sec=30.0, level_updates_per_sec=50.0)
        ex = SimExchange([lively, replace(ETH, taker_trades_per_sec=30.0)], 4, START_NS)
        for ticker in ("BTC-USD", "ETH-USD"):
            sim = ex.sim_market(ticker)
            taker, pre_emit = sim.hooks()
            sim.set_hooks(taker=taker, pre_emit=pre_emit, emit_heights=False, taker_needs_overlay=gated)
        ex.create_account(ALICE, D(1_000_000))
        events: list[object] = []
        t = START_NS
        for k in range(600):
            t += 100_000_000
            events.extend(ex.advance(t))
            if k % 10 == 0:
                bid, ask = touch(ex)
                for n, price in enumerate((bid, bid - 1, ask, ask + 2)):
                    side = Side.BUY if price <= bid else Side.SELL
                    try:
                        ex.place_order(short(ex, side, "0.02", str(price), client_id=k * 10 + n,
                                             gtb=ex.height + 15), t)
                    except ChainError:
                        pass
                events.extend(ex.drain())
        fills = ex.fills(ALICE, limit=10_000)
        assert fills  # the account orders did trade
        return hashlib.sha256(repr((events, fills)).encode()).hexdigest()

    assert run(gated=True) == run(gated=False)


# ---- market status and margin scenarios (the indexer learns of each change: MarketChange) ----


def _changes(events: list[object]) -> list[str]:
    return [e.ticker for e in events if isinstance(e, MarketChange)]


def test_cancel_only_window_refuses_new_orders_keeps_cancels_and_ends_active() -> None:
    ex = make()
    scheduler = ScenarioScheduler(ex.scenario, START_NS)
    bid, _ = touch(ex)
    resting = short(ex, Side.BUY, "0.01", bid - 5, client_id=7)
    ex.place_order(resting, START_NS)
    scheduler.trigger(parse_spec({"name": "market_cancel_only", "duration_s": 10, "market": "BTC-USD"}),
                      START_NS)
    events = ex.advance(START_NS + NS_PER_SEC)
    assert ex.markets()["BTC-USD"].status == "CANCEL_ONLY" and _changes(events) == ["BTC-USD"]
    assert ex.markets()["ETH-USD"].status == "ACTIVE"
    rejects(ex, short(ex, Side.BUY, "0.01", bid - 6, client_id=8), 34)
    ex.cancel_order(resting.order_id, START_NS + NS_PER_SEC, good_til_block=ex.height + 5)  # still allowed
    scheduler.tick(START_NS + 11 * NS_PER_SEC)
    events = ex.advance(START_NS + 11 * NS_PER_SEC)
    assert ex.markets()["BTC-USD"].status == "ACTIVE" and _changes(events) == ["BTC-USD"]
    ex.place_order(short(ex, Side.BUY, "0.01", bid - 6, client_id=9), START_NS + 11 * NS_PER_SEC)


def test_final_settlement_takes_reduce_only_then_settles_what_is_left_at_the_oracle() -> None:
    ex = make()
    _, ask = touch(ex)
    ex.place_order(short(ex, Side.BUY, "0.02", ask + 50, tif=TimeInForce.IOC), START_NS)  # long 0.02
    assert ex.positions(ALICE)[0].size == D("0.02")
    scheduler = ScenarioScheduler(ex.scenario, START_NS)
    scheduler.trigger(parse_spec({"name": "market_final_settlement", "duration_s": 5}), START_NS)
    ex.advance(START_NS + NS_PER_SEC)
    assert ex.markets()["BTC-USD"].status == "FINAL_SETTLEMENT"
    bid, ask = touch(ex)
    rejects(ex, short(ex, Side.BUY, "0.01", ask + 50, client_id=2, tif=TimeInForce.IOC), 34)
    ex.place_order(short(ex, Side.SELL, "0.01", bid - 50, client_id=3, tif=TimeInForce.IOC, reduce_only=True),
                   START_NS + NS_PER_SEC)
    assert ex.positions(ALICE)[0].size == D("0.01")
    scheduler.tick(START_NS + 6 * NS_PER_SEC)
    ex.advance(START_NS + 6 * NS_PER_SEC)
    assert ex.positions(ALICE) == [] and ex.markets()["BTC-USD"].status == "ACTIVE"
    closed = [p for p in ex.positions(ALICE, open_only=False) if p.ticker == "BTC-USD"]
    assert closed[-1].status == "CLOSED"
    settled = ex.fills(ALICE)[0]  # newest first: the settlement at the oracle, no fee
    assert settled.order_uid == "" and settled.fee == 0 and settled.size == D("0.01")
    assert ex.positions(BOB) == []


def test_margin_change_scenario_sets_and_restores_the_fractions() -> None:
    ex = make()
    scheduler = ScenarioScheduler(ex.scenario, START_NS)
    before = ex.markets()["BTC-USD"]
    scheduler.trigger(parse_spec({"name": "margin_change", "duration_s": 5, "market": "BTC-USD",
                                  "imf": "0.1", "mmf": "0.06"}), START_NS)
    events = ex.advance(START_NS + NS_PER_SEC)
    now = ex.markets()["BTC-USD"]
    assert (now.initial_margin_fraction, now.maintenance_margin_fraction) == (D("0.1"), D("0.06"))
    assert _changes(events) == ["BTC-USD"]
    scheduler.tick(START_NS + 6 * NS_PER_SEC)
    events = ex.advance(START_NS + 6 * NS_PER_SEC)
    after = ex.markets()["BTC-USD"]
    assert (after.initial_margin_fraction, after.maintenance_margin_fraction) == (
        before.initial_margin_fraction, before.maintenance_margin_fraction)
    assert _changes(events) == ["BTC-USD"]


@pytest.mark.parametrize("spec, key", [
    ({"name": "market_post_only", "market": 5}, "scenario.params"),
    ({"name": "margin_change", "imf": "0.01", "mmf": "0.05"}, "scenario.params"),
    ({"name": "margin_change", "imf": "x"}, "scenario.params"),
])
def test_bad_scenario_parameters_name_the_field(spec: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(spec)
    assert info.value.key == key
