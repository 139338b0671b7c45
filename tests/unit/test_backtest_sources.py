"""CSV history -> backtest events: funding conversion, the UTC+3 caveat, bar paths, bad input."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.backtest import sources
from bot.backtest.codec import decode_event, encode_event
from bot.config import load
from bot.domain import BlockHeight, BookLevel, BookSnapshot, OracleUpdate, Side, Trade

HOUR = sources.NS_PER_HOUR


def test_an_8h_rate_becomes_eight_hourly_rates_and_binance_times_move_back_3h(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_binance_funding.csv"
    path.write_text("Symbol,Date,Funding Rate\nBTC-USDT,2022-11-01 03:00:00.000,0.0008\n")
    rates = sources.load_funding(path, 8)["BTC-USD"]
    settle = sources.parse_time("2022-11-01T00:00:00", "x")  # 03:00 UTC+3 is the 00:00 UTC settlement
    assert sorted(rates) == [settle - k * HOUR for k in range(7, -1, -1)]
    assert set(rates.values()) == {Decimal("0.0001")}


def test_dydx_hourly_files_are_utc_and_offsets_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_dydx_funding.csv"
    path.write_text("Symbol,Date,Funding Rate\nBTC-USDT,2022-01-01 00:00:00,0.0000058615\n")
    t = sources.parse_time("2022-01-01", "x")
    assert sources.load_funding(path, 1)["BTC-USD"] == {t: Decimal("0.0000058615")}
    assert list(sources.load_funding(path, 1, offset=2)["BTC-USD"]) == [t + 2 * HOUR]


def test_lean_headerless_v4_file_parses() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared"
    path = shared / "data/funding/dydx_v4_btcusd_2026-01-10_hourly_lean.csv"
    rates = sources.load_funding(path, 1)["BTC-USD"]
    assert len(rates) == 24 and rates[sources.parse_time("2026-01-10", "x")] == Decimal("-0.000019625")


def test_bar_paths_visit_the_extremes_in_order() -> None:
    up = sources.Bar(0, 100, 110, 95, 105, 1)
    down = sources.Bar(0, 100, 110, 95, 97, 1)
    assert sources._path_prices(up, 4) == [100, 95, 110, 105]
    assert sources._path_prices(down, 4) == [100, 110, 95, 97]
    assert sources._path_prices(up, 13)[0] == 100 and sources._path_prices(up, 13)[-1] == 105


def test_candle_source_emits_books_oracle_and_funding_per_step() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    bars = [sources.Bar(t0 + k * HOUR, 20000, 20100, 19900, 20050, 1000) for k in range(3)]
    funding = {"BTC-USD": {t0 + HOUR: Decimal("0.0001"), t0 + 2 * HOUR: Decimal("-0.0002")}}
    src = sources.candle_source(settings, {"BTC-USD": bars}, funding)
    batches = list(src.batches)
    assert len(batches) == 3 * 12 and src.spot_of == {"BTC-USD": "BTC-USDT"}
    ts, perp, spot = batches[0]
    assert ts == t0 and isinstance(perp[0], BookSnapshot) and isinstance(perp[-1], BlockHeight)
    assert isinstance(spot[0], BookSnapshot) and spot[0].market == "BTC-USDT"
    book = perp[0]
    assert book.bids[0].price < book.asks[0].price and len(book.bids) == 20
    oracles = [e for _, p, _ in batches for e in p if isinstance(e, OracleUpdate)]
    assert oracles[0].next_funding_rate == Decimal("0.0001")  # the rate settling at the hour's end
    assert oracles[12].next_funding_rate == Decimal("-0.0002")


@pytest.mark.parametrize("text, message", [
    ("Date,Open\n2022-01-01,1\n", "lacks column"),
    ("Date,Open,High,Low,Close,Volume\n2022-01-01,1,2,3,4,5\n2022-01-01 01:00,1,2,0.5,1,1\n", "low <="),
    ("Date,Open,High,Low,Close,Volume\nnope,1,2,1,1,1\n", "not a candle row"),
])
def test_bad_candle_files_name_the_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "BTCUSDT.csv"
    path.write_text(text)
    with pytest.raises(sources.SourceError) as info:
        sources.load_candles(path)
    assert info.value.option == "--candles" and message in info.value.reason


def test_events_round_trip_through_the_recording_codec() -> None:
    levels = (BookLevel(Decimal("100.5"), Decimal("0.25")),)
    events = (BookSnapshot("BTC-USD", levels, levels, 1, 2),
              Trade("BTC-USD", Decimal(1), Decimal(2), Side.SELL, 3, 4),
              OracleUpdate("BTC-USD", Decimal("65000.1"), Decimal("-0.00001"), 5, 6), BlockHeight(7, 8, 9))
    for event in events:
        assert decode_event(encode_event(event, "spot")) == ("spot", event)
    with pytest.raises(ValueError):
        decode_event({"k": "trade", "t": 1})
