"""Every real dYdX indexer sample parses; malformed variants are rejected with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from support.shared import SHARED, needs_shared

from bot.book import OrderBook
from bot.domain import (
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketParams,
    MarketStatus,
    MarketStatusKind,
    OracleUpdate,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
    Transfer,
)
from bot.errors import MalformedMessage
from bot.venues.dydx.parse import FeedParser, transfer_event

WS = SHARED / "fixtures" / "dydx" / "ws"
pytestmark = needs_shared
SAMPLES = sorted(WS.glob("*.json"))

EXPECTED = {
    "connected.json": set(),
    "error.json": set(),
    "unsubscribed.json": set(),
    "v4_accounts_channel_data.json": {OrderUpdate, Fill},
    "v4_accounts_channel_data_order.json": {OrderUpdate},
    "v4_accounts_channel_data_order_canceled.json": {OrderUpdate},
    "v4_accounts_channel_data_order_expired.json": {OrderUpdate},
    "v4_accounts_channel_data_order_opened.json": {OrderUpdate},
    "v4_accounts_channel_data_order_opened_stop_limit.json": {OrderUpdate},
    "v4_accounts_channel_data_transfers.json": {Transfer},
    "v4_accounts_rewards.json": set(),
    "v4_accounts_subscribed.json": {OrderUpdate},
    "v4_block_height_channel_data.json": {BlockHeight},
    "v4_block_height_subscribed.json": {BlockHeight},
    "v4_candles_channel_data.json": set(),
    "v4_candles_subscribed.json": set(),
    "v4_markets_channel_data.json": {OracleUpdate},
    "v4_markets_channel_data_v8.json": {MarketStatus, MarketParams},  # a new ISOLATED market listed
    "v4_markets_subscribed.json": {OracleUpdate, MarketStatus, MarketParams},
    "v4_markets_trading_data.json": set(),
    "v4_orderbook.json": {BookDelta},
    "v4_orderbook_snapshot.json": {BookSnapshot},
    "v4_trades.json": {Trade},
}


def test_every_sample_is_covered() -> None:
    assert {p.name for p in SAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_parses_to_expected_events(path: Path) -> None:
    parsed = FeedParser().parse(path.read_bytes(), ts_recv=1)
    assert {type(e) for e in parsed.events} == EXPECTED[path.name]
    if path.name == "error.json":
        assert parsed.type == "error" and "could not fetch" in parsed.error


def test_snapshot_builds_an_uncrossed_book() -> None:
    parsed = FeedParser().parse((WS / "v4_orderbook_snapshot.json").read_bytes(), ts_recv=1)
    book = OrderBook("ETH-USD")
    book.apply_snapshot(parsed.events[0])  # type: ignore[arg-type]
    assert not book.is_crossed()
    best_ask = book.best_ask()
    assert best_ask is not None and best_ask.price == Decimal("3393.5")
    assert len(book.levels(Side.SELL, 200)) == 100 and len(book.levels(Side.BUY, 200)) == 100


def test_fill_is_linked_to_client_id_through_the_order_uuid() -> None:
    parser = FeedParser()
    opened = json.loads((WS / "v4_accounts_channel_data_order_opened.json").read_text())
    order = opened["contents"]["orders"][0]
    fill_msg = {
        "type": "channel_data", "channel": "v4_subaccounts", "id": opened["id"], "message_id": 9,
        "version": "3.0.0",
        "contents": {"fills": [{"id": "f-1", "side": "BUY", "liquidity": "TAKER", "price": "2791.6",
                                "size": "0.002", "fee": "0.0028", "createdAt": "2024-08-13T00:00:00.000Z",
                                "orderId": order["id"], "ticker": "ETH-USD", "type": "LIMIT"}]},
    }
    parser.parse(json.dumps(opened), 1)
    fill = parser.parse(json.dumps(fill_msg), 2).events[0]
    assert isinstance(fill, Fill)
    assert fill.client_id == int(order["clientId"])
    assert fill.fee == Decimal("0.0028")


def test_expired_and_partially_filled_statuses() -> None:
    parser = FeedParser()
    expired = parser.parse((WS / "v4_accounts_channel_data_order_expired.json").read_bytes(), 1)
    assert expired.events[0].status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    snap = parser.parse((WS / "v4_accounts_subscribed.json").read_bytes(), 1)
    assert snap.events[0].status is OrderStatus.PARTIALLY_FILLED  # type: ignore[union-attr]


def test_funding_rate_and_oracle_merge_across_messages() -> None:
    parser = FeedParser()
    def markets(frame_type: str, contents: object) -> str:
        return json.dumps({"type": frame_type, "channel": "v4_markets", "contents": contents})

    btc = {"ticker": "BTC-USD", "oraclePrice": "60000", "nextFundingRate": "0.00001"}
    parser.parse(markets("subscribed", {"markets": {"BTC-USD": btc}}), 1)
    oracle = {"oraclePrices": {"BTC-USD": {"oraclePrice": "60100"}}}
    events = parser.parse(markets("channel_data", oracle), 2).events
    assert events == [OracleUpdate("BTC-USD", Decimal(60100), Decimal("0.00001"), 2, 2)]
    trading = {"trading": {"BTC-USD": {"nextFundingRate": "-0.00002"}}}
    events = parser.parse(markets("channel_data", trading), 3).events
    assert events == [OracleUpdate("BTC-USD", Decimal(60100), Decimal("-0.00002"), 3, 3)]


def _book_update(contents: object) -> bytes:
    return json.dumps({"type": "channel_data", "channel": "v4_orderbook", "id": "BTC-USD",
                       "message_id": 5, "contents": contents}).encode()


MALFORMED = {
    "truncated": b'{"type": "channel_data", "channel": "v4_orderbook", "contents": {"bids": [["1"',
    "not_json": b"hello",
    "number_price": _book_update({"bids": [[65920, "1"]]}),
    "not_decimal": _book_update({"bids": [["abc", "1"]]}),
    "nan_price": _book_update({"bids": [["NaN", "1"]]}),
    "negative_size": _book_update({"asks": [["100", "-1"]]}),
    "zero_price": _book_update({"asks": [["0", "1"]]}),
    "bids_not_list": _book_update({"bids": "oops"}),
    "missing_type": b'{"channel": "v4_orderbook", "contents": {}}',
    "bad_side": json.dumps({"type": "channel_data", "channel": "v4_trades", "id": "BTC-USD", "contents": {
        "trades": [{"id": "1", "side": "UP", "size": "1", "price": "1", "createdAt": "2024-01-01T00:00Z"}]},
    }).encode(),
    "bad_height": json.dumps({"type": "channel_data", "channel": "v4_block_height",
                              "contents": {"blockHeight": "12x"}}).encode(),
    "bad_status": json.dumps({"type": "channel_data", "channel": "v4_subaccounts", "id": "a/0",
                              "contents": {"orders": [{"id": "u", "status": "WEIRD"}]}}).encode(),
    "message_id_string": b'{"type": "channel_data", "channel": "v4_orderbook", "message_id": "x"}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_variants_raise_malformed_message(name: str) -> None:
    with pytest.raises(MalformedMessage):
        FeedParser().parse(MALFORMED[name], ts_recv=1)


def test_unknown_channel_and_new_fields_are_tolerated() -> None:
    parser = FeedParser()
    assert parser.parse(b'{"type": "channel_data", "channel": "v4_future", "contents": {}}', 1).events == []
    update = _book_update({"bids": [["1", "2"]], "newField": True})
    assert len(parser.parse(update, 1).events) == 1


def test_decode_cli_reports_malformed_messages_and_exits_nonzero(tmp_path: Path) -> None:
    lines = [
        (WS / "v4_orderbook.json").read_text().replace("\n", ""),
        MALFORMED["not_decimal"].decode(),
        (WS / "v4_trades.json").read_text().replace("\n", ""),
    ]
    recording = tmp_path / "rec.jsonl"
    recording.write_text("\n".join(lines) + "\n")
    perpbot = Path(sys.executable).parent / "perpbot"
    result = subprocess.run([str(perpbot), "decode", "--venue", "dydx", str(recording)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["BookDelta", "Trade", "Trade"]
    assert "message 2:" in result.stderr and "not a decimal" in result.stderr


def test_markets_snapshot_carries_each_market_status_and_grid() -> None:
    events = FeedParser().parse((WS / "v4_markets_subscribed.json").read_bytes(), ts_recv=7).events
    statuses = {e.market: e.status for e in events if isinstance(e, MarketStatus)}
    assert statuses["JTO-USD"] is MarketStatusKind.FINAL_SETTLEMENT  # real: a market in final settlement
    assert statuses["JUP-USD"] is MarketStatusKind.FINAL_SETTLEMENT
    assert statuses["BTC-USD"] is MarketStatusKind.ACTIVE
    assert sum(s is not MarketStatusKind.ACTIVE for s in statuses.values()) == 2
    btc = next(e for e in events if isinstance(e, MarketParams) and e.market == "BTC-USD")
    assert (btc.tick_size, btc.step_size) == (Decimal("1"), Decimal("0.0001"))
    fractions = (btc.initial_margin_fraction, btc.maintenance_margin_fraction)
    assert fractions == (Decimal("0.05"), Decimal("0.03"))


def test_a_listing_update_carries_status_type_and_fractions() -> None:
    events = FeedParser().parse((WS / "v4_markets_channel_data_v8.json").read_bytes(), ts_recv=1).events
    assert events == [
        MarketStatus("TRY-USD", MarketStatusKind.ACTIVE, 1, 1),
        MarketParams("TRY-USD", Decimal("0.00001"), Decimal("100"), Decimal("0.01"), Decimal("0.005"),
                     "ISOLATED", 1, 1),
    ]


def _trading(market: dict[str, object]) -> bytes:
    return json.dumps({"type": "channel_data", "channel": "v4_markets", "message_id": 5, "version": "1.0.0",
                       "contents": {"trading": {"BTC-USD": market}}}).encode()


def test_a_status_only_trading_update_is_a_status_event_and_nothing_else() -> None:
    parser = FeedParser()
    assert parser.parse(_trading({"id": "0", "status": "CANCEL_ONLY"}), 3).events == [
        MarketStatus("BTC-USD", MarketStatusKind.CANCEL_ONLY, 3, 3)]
    changed = parser.parse(_trading({"id": "0", "initialMarginFraction": "0.1"}), 4).events
    assert changed == [MarketParams("BTC-USD", None, None, Decimal("0.1"), None, None, 4, 4)]
    assert parser.parse(_trading({"id": "0", "baseOpenInterest": "5"}), 5).events == []
    # A status this code does not know is left out rather than failing the frame.
    assert parser.parse(_trading({"id": "0", "status": "SOMETHING_NEW"}), 6).events == []
    with pytest.raises(MalformedMessage, match="initialMarginFraction"):
        parser.parse(_trading({"id": "0", "initialMarginFraction": "abc"}), 7)


def test_decode_cli_prints_the_market_status(tmp_path: Path) -> None:
    perpbot = Path(sys.executable).parent / "perpbot"
    snapshot = WS / "v4_markets_subscribed.json"
    result = subprocess.run([str(perpbot), "decode", "--venue", "dydx", str(snapshot)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    jto = [e for e in events if e["event"] == "MarketStatus" and e["market"] == "JTO-USD"]
    assert jto == [{"event": "MarketStatus", "market": "JTO-USD", "status": "FINAL_SETTLEMENT",
                    "ts_event": 0, "ts_recv": 0}]
    assert any(e["event"] == "MarketParams" and e["market"] == "JTO-USD" for e in events)


def test_transfers_are_signed_money_moves_from_the_ws_object_and_both_rest_spellings() -> None:
    """WS: one object under `transfers`; REST: `size`/`symbol`, or `amount`/`asset` (Dec-2025 mainnet)."""
    frame = FeedParser().parse((WS / "v4_accounts_channel_data_transfers.json").read_bytes(), 1)
    assert frame.events == [Transfer(
        "C0A42DABFC98F8B51D0F092A9B8EB48BA189B3B77128D8A453FCD69D4365BD9C:WITHDRAWAL:10",
        Decimal(-10), 19079256, 1723797802999000000)]
    rest = json.loads((SHARED / "fixtures/dydx/rest/mainnet_2025-12-08_transfers.json").read_text())
    events = [transfer_event(row) for row in rest["transfers"]]
    assert events and all(e is not None for e in events)
    first = rest["transfers"][0]
    assert events[0] == Transfer(f"{first['transactionHash']}:DEPOSIT:45.334703", Decimal("45.334703"),
                                 59813965, events[0].ts_event)  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "error"), [
    ({"type": "GIFT"}, "unknown transfer type"),
    ({"type": ["DEPOSIT"]}, "unknown transfer type"),
    ({"size": "-5"}, "negative"),
    ({"size": "NaN"}, "not finite"),
    ({"size": 5}, "without size"),
    ({"createdAtHeight": "12a"}, "without size"),
    ({"createdAt": "yesterday"}, "ISO-8601"),
])
def test_a_malformed_transfer_is_a_malformed_message(change: dict[str, object], error: str) -> None:
    raw = json.loads((WS / "v4_accounts_channel_data_transfers.json").read_text())
    raw["contents"]["transfers"].update(change)
    with pytest.raises(MalformedMessage, match=error):
        FeedParser().parse(json.dumps(raw), 1)


def test_a_transfer_of_another_asset_is_not_equity_money() -> None:
    raw = json.loads((WS / "v4_accounts_channel_data_transfers.json").read_text())
    raw["contents"]["transfers"]["symbol"] = "DYDX"
    assert FeedParser().parse(json.dumps(raw), 1).events == []
