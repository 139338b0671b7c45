"""Every message the simulated indexer emits has the fields and JSON kinds of the real venue's.

Our side is built by `bot.sim.server.indexer_wire` from hand-made exchange records (the same
functions the server uses); the other side is learnt from the real samples in
shared/fixtures/dydx (see its README). `extra=` lists the few fields we send that no sample
happens to show but DYDX_V4.md §1.3/§2 documents for current indexers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from shape import Shape, learn, mismatches
from support.shared import SHARED, needs_shared

from bot.domain import BookLevel, Side, Trade
from bot.sim.perp.records import (
    FillRecord,
    FundingRecord,
    HistoricalFunding,
    MarketInfo,
    OrderId,
    OrderRecord,
    OrderRequest,
    OrderState,
    PositionRecord,
    SubaccountInfo,
    TimeInForce,
    TransferRecord,
)
from bot.sim.server import indexer_wire as wire

FIXTURES = SHARED / "fixtures" / "dydx"
pytestmark = needs_shared
OWNER = "dydx1n56z5fhmemtffzkt2eqyf9kuc7ycjfs86mvqy7"
TS = 1_765_210_316_125_000_000
CONN = "7ad53844-1f2c-4d86-83d1-42f6562844f3"
# Documented on current indexers (DYDX_V4.md §1.3) but absent from the 2023 WS fill sample.
WS_FILL_EXTRA = frozenset({"fee", "affiliateRevShare", "clientMetadata", "subaccountNumber"})


def ws(name: str) -> Any:
    return json.loads((FIXTURES / "ws" / name).read_text())


def rest(name: str) -> Any:
    return json.loads((FIXTURES / "rest" / name).read_text())


def ccxt(path_prefix: str) -> list[Any]:
    bodies = rest("ccxt_testnet_2025_http_responses.json")
    return [body for path, body in bodies.items() if path.startswith(path_prefix)]


def assert_shape(ours: Any, shape: Shape, **kwargs: Any) -> None:
    problems = mismatches(ours, shape, **kwargs)
    assert not problems, "\n".join(problems)


def frame(raw: bytes) -> Any:
    return json.loads(raw)


def data_frame(channel: str, sub_id: str | None, contents: Any, *, batch: bool = False,
               message_id: int = 7) -> Any:
    kind = "channel_batch_data" if batch else "channel_data"
    body = wire.channel_body(channel, sub_id, contents)
    return frame(wire.splice_frame(wire.frame_prefix(kind, CONN), message_id, body))


# ---- hand-built exchange records --------------------------------------------------------------


def btc() -> MarketInfo:
    return MarketInfo(
        ticker="BTC-USD", clob_pair_id=0, status="ACTIVE", oracle_price=Decimal("89919.2"),
        next_funding_rate=Decimal("0.000002545"), initial_margin_fraction=Decimal("0.02"),
        maintenance_margin_fraction=Decimal("0.012"), atomic_resolution=-10,
        quantum_conversion_exponent=-9, step_base_quantums=1_000_000, subticks_per_tick=100_000,
        tick_size=Decimal("1"), step_size=Decimal("0.0001"), open_interest=Decimal("381.7348"),
        volume_24h=Decimal("247500844.6834"),
    )


def order(*, flags: int = 0, tif: TimeInForce = TimeInForce.IOC, status: OrderState = OrderState.FILLED,
          removal: str | None = None) -> OrderRecord:
    oid = OrderId(OWNER, 0, 1_700_756_032, flags, 0)
    short = flags == 0
    req = OrderRequest(oid, Side.BUY, Decimal("0.0001"), Decimal("110372"), tif,
                       good_til_block=63_049_881 if short else None,
                       good_til_block_time=None if short else 1_765_300_000, client_metadata=1)
    return OrderRecord(uid="0f0981cb-152e-57d3-bea9-4d8e0dd5ed35", request=req, ticker="BTC-USD",
                       status=status, total_filled=Decimal("0.0001"), created_at_height=63_049_869,
                       updated_at_height=63_049_869, updated_ns=TS, removal_reason=removal)


def fill() -> FillRecord:
    return FillRecord(fill_id="6450e369-1dc3-5229-8dc2-fb3b5d1cf2ab",
                      order_uid="0f0981cb-152e-57d3-bea9-4d8e0dd5ed35", owner=OWNER, subaccount_number=0,
                      ticker="BTC-USD", side=Side.BUY, liquidity="TAKER", price=Decimal("105117"),
                      size=Decimal("0.0001"), fee=Decimal("-0.0005256"), client_metadata=1,
                      height=63_049_869, ts_ns=TS)


def position(size: str = "-0.407") -> PositionRecord:
    return PositionRecord(owner=OWNER, subaccount_number=0, ticker="BTC-USD", size=Decimal(size),
                          entry_price=Decimal("118692.048409"), realized_pnl=Decimal("476.42"),
                          net_funding=Decimal("503.13121"), status="OPEN", height=44_140_908)


def subaccount(*positions: PositionRecord) -> SubaccountInfo:
    return SubaccountInfo(owner=OWNER, subaccount_number=0, usdc_balance=Decimal("45.201296"),
                          equity=Decimal("45.201296"), free_collateral=Decimal("45.201296"),
                          positions=positions, height=63_049_869)


def transfer(kind: str = "WITHDRAWAL") -> TransferRecord:
    return TransferRecord(transfer_id="0ca37a48-0aba-55bc-96c3-aacf3dcf0663", owner=OWNER,
                          subaccount_number=0, kind=kind, amount=Decimal("45.334703"),
                          height=59_813_965, ts_ns=TS)


def trades() -> list[tuple[str, Trade, int]]:
    t1 = Trade("BTC-USD", Decimal("89942"), Decimal("0.0001"), Side.BUY, TS, TS)
    t2 = Trade("BTC-USD", Decimal("89970"), Decimal("0.0365"), Side.SELL, TS + 60_000_000_000, TS)
    return [(wire.trade_id(66_624_085, 2, 2), t2, 66_624_085),
            (wire.trade_id(66_624_083, 2, 14), t1, 66_624_083)]


def book() -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    bids = [(Decimal(89_947 - i), Decimal("0.0002") * (i + 1)) for i in range(120)]
    asks = [(Decimal(89_948 + i), Decimal("0.5")) for i in range(120)]
    return bids, asks


# ---- the comparator itself ---------------------------------------------------------------------


def test_comparator_reports_missing_extra_and_kind_differences() -> None:
    shape = learn({"a": "1.5", "b": "x", "c": None, "d": [{"p": "1"}], "t": "2025-01-01T00:00:00.000Z"},
                  {"a": "2", "b": "y", "c": "3", "d": [], "t": "2025-01-01T00:00:00.001Z", "opt": 1})
    assert mismatches({"a": "7", "b": "z", "c": "5", "d": [{"p": "2"}], "t": "2025-01-02T00:00:00.000Z"},
                      shape) == []
    problems = mismatches({"a": "1e-5", "b": "z", "d": [{"p": 2}], "t": "yesterday", "new": True}, shape)
    assert "$.a: string where the venue sends decimal" in problems
    assert "$: missing key 'c'" in problems  # null in one sample, but present in both
    assert "$.d[0].p: int where the venue sends decimal" in problems
    assert "$.t: string where the venue sends iso" in problems
    assert "$: key 'new' is not in any venue sample" in problems
    assert mismatches({"a": "1", "b": "z", "c": None, "d": [], "t": "2025-01-01T00:00:00Z"}, shape) == []
    assert mismatches({"b": "z", "c": None, "d": [], "t": "2025-01-01T00:00:00Z"}, shape) == [
        "$: missing key 'a'"]


def test_decimal_strings_never_use_exponents() -> None:
    assert wire.dec(Decimal("1E-7")) == "0.0000001"
    assert wire.dec(Decimal("6E+4")) == "60000"
    assert wire.dec(Decimal("0.500")) == "0.5"
    assert wire.dec(Decimal("-0.000")) == "0"
    assert wire.iso_ms(TS) == "2025-12-08T16:11:56.125Z"
    assert wire.parse_iso_ns("2025-12-08T16:11:56.125Z") == TS


# ---- WebSocket frames ---------------------------------------------------------------------------


def test_connected_error_unsubscribed_frames() -> None:
    assert_shape(frame(wire.connected_frame(CONN)), learn(ws("connected.json")))
    err = frame(wire.control_frame("error", CONN, 3, message="Invalid channel: v4_nope", channel="v4_nope"))
    # the real server adds channel and id to some errors (DYDX_V4.md §2.2)
    assert_shape(err, learn(ws("error.json")), extra={"channel", "id"})
    unsub = frame(wire.control_frame("unsubscribed", CONN, 4, channel="v4_trades", id="ETH-USD"))
    assert_shape(unsub, learn(ws("unsubscribed.json")))


def test_orderbook_subscribed_and_updates() -> None:
    bids, asks = book()
    contents = wire.orderbook_json(bids, asks)
    assert len(contents["bids"]) == len(contents["asks"]) == 100
    subscribed = frame(wire.control_frame("subscribed", CONN, 1, channel="v4_orderbook", id="BTC-USD",
                                          contents=contents))
    assert_shape(subscribed, learn(ws("v4_orderbook_snapshot.json")))
    update = wire.orderbook_update_contents([BookLevel(Decimal("65920"), Decimal(0))],
                                            [(Decimal("65921.5"), Decimal("0.25"))])
    sample = ws("v4_orderbook.json")
    sample["contents"]["asks"] = sample["contents"]["bids"]  # the sample shows one side; both occur
    assert_shape(data_frame("v4_orderbook", "BTC-USD", update), learn(ws("v4_orderbook.json"), sample))
    batch_sample = dict(sample, type="channel_batch_data", contents=[sample["contents"]])
    assert_shape(data_frame("v4_orderbook", "BTC-USD", [update, update], batch=True), learn(batch_sample))


def test_trades_subscribed_and_update() -> None:
    rows = trades()
    contents = {"trades": [wire.trade_json(tid, t, h) for tid, t, h in rows]}
    envelope = ws("v4_orderbook_snapshot.json")  # no trades `subscribed` sample: same envelope
    envelope["channel"] = "v4_trades"
    subscribed = frame(wire.control_frame("subscribed", CONN, 1, channel="v4_trades", id="BTC-USD",
                                          contents=contents))
    assert_shape({**subscribed, "contents": {}}, learn({**envelope, "contents": {}}))
    assert_shape(contents, learn(rest("mainnet_2025-12-08_trades.json"),
                                 *ccxt("/v4/trades/perpetualMarket")))
    update = {"trades": [wire.trade_json(tid, t, h, ws=True) for tid, t, h in rows]}
    assert_shape(data_frame("v4_trades", "BTC-USD", update), learn(ws("v4_trades.json")))


def test_markets_subscribed_and_updates() -> None:
    contents = wire.markets_json([btc()])
    subscribed = frame(wire.control_frame("subscribed", CONN, 1, channel="v4_markets", contents=contents))
    assert_shape(subscribed, learn(ws("v4_markets_subscribed.json")),
                 extra={"defaultFundingRate1H"})  # added to markets after the 2024 capture
    oracle = wire.oracle_prices_contents([(btc(), Decimal("89919.25"), 66_624_085, TS)])
    assert_shape(data_frame("v4_markets", None, oracle), learn(ws("v4_markets_channel_data.json")))
    trading = wire.trading_contents([(btc(), Decimal("0.0000125"))])
    assert_shape(data_frame("v4_markets", None, trading),
                 learn(ws("v4_markets_trading_data.json"), ws("v4_markets_channel_data_v8.json")))


def test_candles_subscribed_and_update() -> None:
    candles = wire.build_candles("BTC-USD", "1MIN", trades(), starting_open_interest=Decimal("381.7348"),
                                 mid=Decimal("89969.75"))
    assert [c["trades"] for c in candles] == [1, 1]
    subscribed = frame(wire.control_frame("subscribed", CONN, 1, channel="v4_candles", id="BTC-USD/1MIN",
                                          contents={"candles": candles}))
    assert_shape(subscribed, learn(ws("v4_candles_subscribed.json")))
    assert_shape({"candles": candles}, learn(rest("mainnet_2025-12-08_candles.json"),
                                             *ccxt("/v4/candles/perpetualMarkets")))
    update = data_frame("v4_candles", "BTC-USD/1MIN", candles[0])
    assert_shape(update, learn(ws("v4_candles_channel_data.json")),
                 extra={"orderbookMidPriceOpen", "orderbookMidPriceClose"})


def test_block_height_subscribed_and_update() -> None:
    subscribed = frame(wire.control_frame("subscribed", CONN, 2, channel="v4_block_height",
                                          id="v4_block_height", contents=wire.height_json(26_543_048, TS)))
    assert_shape(subscribed, learn(ws("v4_block_height_subscribed.json")))
    update = data_frame("v4_block_height", "v4_block_height", wire.height_json(26_543_049, TS, update=True))
    assert_shape(update, learn(ws("v4_block_height_channel_data.json")))


def test_subaccounts_subscribed() -> None:
    sub = wire.subaccount_json(subaccount(), oracle_prices={}, latest_height=66_624_141, ts_ns=TS)
    contents = {"subaccount": sub, "orders": [wire.order_json(order(status=OrderState.OPEN), ws=True)],
                "blockHeight": "66624141"}
    subscribed = frame(wire.control_frame("subscribed", CONN, 1, channel="v4_subaccounts",
                                          id=f"{OWNER}/0", contents=contents))
    assert_shape(subscribed, learn(ws("v4_accounts_subscribed.json")))


ACCOUNT_SAMPLES = [
    "v4_accounts_channel_data.json", "v4_accounts_channel_data_order.json",
    "v4_accounts_channel_data_order_canceled.json", "v4_accounts_channel_data_order_expired.json",
    "v4_accounts_channel_data_order_opened.json", "v4_accounts_channel_data_order_opened_stop_limit.json",
    "v4_accounts_channel_data_transfers.json", "v4_accounts_rewards.json",
]


@pytest.mark.parametrize("variant", ["opened", "filled", "canceled", "long_term", "transfer"])
def test_subaccounts_channel_data(variant: str) -> None:
    shape = learn(*(ws(name) for name in ACCOUNT_SAMPLES))
    contents: dict[str, Any] = {"blockHeight": "63049869"}
    if variant == "opened":
        contents["orders"] = [wire.order_json(order(status=OrderState.BEST_EFFORT_OPENED), ws=True)]
    elif variant == "filled":
        contents["orders"] = [wire.order_json(order(), ws=True)]
        contents["fills"] = [wire.fill_json(fill(), True, 0)]
    elif variant == "canceled":
        contents["orders"] = [wire.order_json(order(status=OrderState.CANCELED,
                                                    removal="ORDER_REMOVAL_REASON_EXPIRED"), ws=True)]
    elif variant == "long_term":
        contents["orders"] = [wire.order_json(order(flags=64, tif=TimeInForce.POST_ONLY,
                                                    status=OrderState.OPEN), ws=True)]
    else:
        contents["transfers"] = wire.transfer_json(transfer(), ws=True)
    assert_shape(data_frame("v4_subaccounts", f"{OWNER}/0", contents), shape, extra=WS_FILL_EXTRA)


def test_subaccounts_position_and_asset_updates_use_rest_shapes() -> None:
    # No WS sample carries perpetualPositions/assetPositions; the server sends the REST shapes
    # (plus the owner's address on asset positions, as socks does).
    pos = wire.position_json(position(), oracle_price=Decimal("119000"), created_ns=TS)
    assert_shape({"positions": [pos]}, learn(rest("list_perpetual_positions.json"),
                                             *ccxt("/v4/perpetualPositions")))
    asset = {"address": OWNER, **wire.asset_position_json(0, Decimal("-12.5"))}
    assert_shape({"positions": [asset]}, learn(rest("asset_positions.json")), extra={"address"})


# ---- REST bodies ---------------------------------------------------------------------------------


def test_rest_perpetual_markets() -> None:
    shape = learn(rest("mainnet_2025-12-08_perpetual_markets.json"), rest("list_perpetual_markets_v8.json"),
                  rest("list_perpetual_markets.json"), *ccxt("/v4/perpetualMarkets"))
    assert_shape(wire.markets_json([btc()]), shape)


def test_rest_orderbook_is_uncrossed_and_capped() -> None:
    bids, asks = book()
    crossed_bids = [(Decimal(89_950), Decimal("0.1")), *bids]
    body = wire.orderbook_json(crossed_bids, asks)
    assert Decimal(body["bids"][0]["price"]) < Decimal(body["asks"][0]["price"])
    assert len(body["bids"]) == 100
    assert_shape(body, learn(*ccxt("/v4/orderbooks"), ws("v4_orderbook_snapshot.json")["contents"]))


def test_rest_trades_and_historical_funding() -> None:
    body = {"trades": [wire.trade_json(tid, t, h) for tid, t, h in trades()]}
    assert_shape(body, learn(rest("mainnet_2025-12-08_trades.json"), *ccxt("/v4/trades")))
    point = HistoricalFunding("BTC-USD", Decimal("0.000176"), Decimal("118536.67532"), 45_103_017, TS)
    assert_shape({"historicalFunding": [wire.historical_funding_json(point)]},
                 learn(*ccxt("/v4/historicalFunding")))


def test_rest_orders() -> None:
    shape = learn(rest("orders.json"), rest("mainnet_2025-12-08_orders.json"), *ccxt("/v4/orders?"))
    ours = [wire.order_json(order()), wire.order_json(order(flags=64, tif=TimeInForce.UNSPECIFIED,
                                                            status=OrderState.OPEN))]
    assert_shape(ours, shape)
    assert_shape(wire.order_json(order(flags=64, tif=TimeInForce.POST_ONLY)),
                 learn(rest("order.json"), *ccxt("/v4/orders/")))


def test_rest_fills() -> None:
    body = {"fills": [wire.fill_json(fill(), False)]}
    assert_shape(body, learn(rest("fills.json"), rest("mainnet_2025-12-08_fills.json")))


def test_rest_subaccount_and_addresses() -> None:
    sub = wire.subaccount_json(subaccount(position()), oracle_prices={"BTC-USD": Decimal("119000")},
                               latest_height=66_624_141, ts_ns=TS)
    assert sub["openPerpetualPositions"]["BTC-USD"]["side"] == "SHORT"
    assert_shape({"subaccount": sub},
                 learn(rest("subaccount.json"), rest("mainnet_2025-12-08_subaccount.json"),
                       *ccxt("/v4/addresses/dydx14zzueazeh0hj67cghhf9jypslcf9sh2n5k6art/")))
    body = {"subaccounts": [sub], "totalTradingRewards": "0"}
    assert_shape(body, learn(rest("addresses.json"),
                             *[b for b in ccxt("/v4/addresses/") if "subaccounts" in b]))


def test_rest_positions_and_asset_positions() -> None:
    body = {"positions": [wire.position_json(position(), oracle_price=Decimal("119000"), created_ns=TS)]}
    assert_shape(body, learn(rest("list_perpetual_positions.json"), *ccxt("/v4/perpetualPositions")))
    assert_shape({"positions": [wire.asset_position_json(0, Decimal("90.461932"))]},
                 learn(rest("asset_positions.json")))


@pytest.mark.parametrize("kind", ["DEPOSIT", "WITHDRAWAL", "TRANSFER_IN", "TRANSFER_OUT"])
def test_rest_transfers(kind: str) -> None:
    # ccxt 2025 and the nautilus WS sample spell `size`/`symbol`; the Dec-2025 mainnet sample
    # spells `amount`/`asset` (DYDX_V4.md §1.3): we send the former, so compare with those.
    body = {"transfers": [wire.transfer_json(transfer(kind))]}
    assert_shape(body, learn(*ccxt("/v4/transfers")))


def test_rest_height_and_time() -> None:
    assert_shape(wire.height_json(66_624_132, TS), learn(rest("mainnet_2025-12-08_block_height.json")))
    assert_shape(wire.time_json(TS), learn(rest("mainnet_2025-12-08_time.json"), *ccxt("/v4/time")))


def test_funding_payment_fields_are_the_documented_ones() -> None:
    # No real sample exists; DYDX_V4.md §1.3 lists the fields.
    payment = FundingRecord(OWNER, 0, "BTC-USD", Decimal("0.0000125"), Decimal("89919.2"), Decimal("-0.5"),
                            Decimal("0.562"), 66_624_000, TS)
    row = wire.funding_payment_json(payment, 0)
    assert set(row) == {"createdAt", "createdAtHeight", "perpetualId", "ticker", "oraclePrice", "size",
                        "side", "rate", "payment", "subaccountNumber", "fundingIndex"}
    assert row["side"] == "SHORT" and row["payment"] == "0.562"

