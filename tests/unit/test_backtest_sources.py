"""CSV history -> backtest events: funding conversion, the UTC+3 caveat, bar paths, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shared import SHARED, needs_shared

from bot.backtest import history, sources
from bot.backtest.codec import decode_event, encode_event
from bot.config import load
from bot.domain import BlockHeight, BookLevel, BookSnapshot, OracleUpdate, Side, Trade

HOUR = sources.NS_PER_HOUR


def test_an_8h_rate_becomes_eight_hourly_rates_read_as_utc_unless_an_offset_is_given(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_binance_funding.csv"
    path.write_text("Symbol,Date,Funding Rate\nBTC-USDT,2022-11-01 03:00:00.000,0.0008\n"
                    "BTC-USDT,2022-11-01 11:00:00.000,0.0008\n")
    rates = sources.load_funding(path)["BTC-USD"]  # 8 h inferred from the rows; no guess from the name
    settle = sources.parse_time("2022-11-01T03:00:00", "x")
    assert sorted(rates)[:8] == [settle - k * HOUR for k in range(7, -1, -1)]
    assert set(rates.values()) == {Decimal("0.0001")}
    shifted = sources.load_funding(path, 8, offset=-3)["BTC-USD"]  # the shared files' UTC+3 clock
    assert min(shifted) == settle - 3 * HOUR - 7 * HOUR


def test_dydx_hourly_files_are_utc_and_offsets_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_dydx_funding.csv"
    path.write_text("Symbol,Date,Funding Rate\nBTC-USDT,2022-01-01 00:00:00,0.0000058615\n")
    t = sources.parse_time("2022-01-01", "x")
    assert sources.load_funding(path, 1)["BTC-USD"] == {t: Decimal("0.0000058615")}
    assert list(sources.load_funding(path, 1, offset=2)["BTC-USD"]) == [t + 2 * HOUR]
    with pytest.raises(sources.SourceError) as info:
        sources.load_funding(path)  # one row: the interval cannot be inferred
    assert info.value.option == "--funding-interval"


@needs_shared
def test_lean_headerless_v4_file_parses() -> None:
    path = SHARED / "data/funding/dydx_v4_btcusd_2026-01-10_hourly_lean.csv"
    rates = sources.load_funding(path, 1)["BTC-USD"]
    assert len(rates) == 24 and rates[sources.parse_time("2026-01-10", "x")] == Decimal("-0.000019625")


def test_bar_paths_visit_the_extremes_in_order() -> None:
    up = sources.Bar(0, 100, 110, 95, 105, 1)
    down = sources.Bar(0, 100, 110, 95, 97, 1)
    assert sources._path_prices(up, 4) == [100, 95, 110, 105]
    assert sources._path_prices(down, 4) == [100, 110, 95, 97]
    twelve = sources._path_prices(up, 12)  # every 5 min: the vertices at 0, 15, 30, 45 min
    assert twelve[::3] == [100, 95, 110, 105] and twelve[-1] == 105


def test_candle_source_emits_books_oracle_and_funding_per_step() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    bars = [sources.Bar(t0 + k * HOUR, 20000, 20100, 19900, 20050, 1000) for k in range(3)]
    funding = {"BTC-USD": {t0 + HOUR: Decimal("0.0001"), t0 + 2 * HOUR: Decimal("-0.0002")}}
    src = sources.candle_source(settings, {"BTC-USD": bars}, funding)
    batches = list(src.batches)
    # 12 points per bar (5 min): the path hits High and Low exactly
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
    ("Date,Open,High,Low,Close,Volume\nnope,1,2,1,1,1\n", "'nope' is not a date"),
    ("Date,Open,High,Low,Close,Volume\n2022-01-01,1,2\n", ":2: not a candle row"),
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


def _csv(tmp_path: Path, name: str, rows: list[str], header: str = "Symbol,Date,Funding Rate") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _hourly(start: str, n: int, rate: str = "0.0001", symbol: str = "BTC-USDT") -> list[str]:
    t0 = sources.parse_time(start, "x") // 10**9
    return [f"{symbol},{datetime.fromtimestamp(t0 + 3600 * k, UTC):%Y-%m-%d %H:%M:%S},{rate}"
            for k in range(n)]


@pytest.mark.parametrize("rate", ["NaN", "inf", "-Infinity", "1e400", "0.5"])
def test_non_finite_or_absurd_rates_are_refused(tmp_path: Path, rate: str) -> None:
    path = _csv(tmp_path, "f.csv", [*_hourly("2022-01-01", 3), f"BTC-USDT,2022-01-01 03:00:00,{rate}"])
    with pytest.raises(sources.SourceError) as info:
        sources.load_funding(path)
    assert info.value.option == "--funding" and "not a funding rate" in info.value.reason


def test_the_interval_is_inferred_and_checked_against_the_flag(tmp_path: Path) -> None:
    path = _csv(tmp_path, "f.csv", _hourly("2022-01-01", 48))
    assert len(sources.load_funding(path)["BTC-USD"]) == 48
    with pytest.raises(sources.SourceError) as info:
        sources.load_funding(path, 8)  # an hourly file read as 8-hourly would scale funding down 8x
    assert info.value.option == "--funding-interval" and "1h apart, not 8h" in info.value.reason


def _candles(tmp_path: Path, times: list[str]) -> Path:
    rows = [f"{t},100,101,99,100.5,10" for t in times]
    return _csv(tmp_path, "BTCUSDT_1h.csv", rows, "Date,Open,High,Low,Close,Volume")


def test_funding_must_overlap_the_candles_and_name_their_market(tmp_path: Path) -> None:
    settings = load(None, env_file=None)
    hours = [f"2022-01-01 {h:02d}:00:00" for h in range(6)]
    candles = _candles(tmp_path, hours)
    other = _csv(tmp_path, "e.csv", _hourly("2022-01-01", 6, symbol="ETH-USDT"))
    late = _csv(tmp_path, "l.csv", _hourly("2023-01-01", 6))
    for path, words in ((other, "funding is for ETH-USD"), (late, "does not overlap")):
        with pytest.raises(sources.SourceError) as info:
            sources.load_candle_source(settings, [str(candles)], [str(path)])
        assert info.value.option == "--funding" and words in info.value.reason
    part = _csv(tmp_path, "p.csv", _hourly("2022-01-01", 3))
    src = sources.load_candle_source(settings, [str(candles)], [str(part)])
    assert any("funding covers 2 of 6 hours" in n for n in src.describe["checks"])
    oracles = [e for _, p, _ in src.batches for e in p if isinstance(e, OracleUpdate)]
    # The last rate is not carried on: hours the file does not cover pay nothing.
    assert oracles[-1].next_funding_rate == 0 and oracles[0].next_funding_rate == Decimal("0.0001")


def test_duplicates_disorder_and_gaps_are_reported_and_every_bar_replayed(tmp_path: Path) -> None:
    settings = load(None, env_file=None)
    hours = ["2022-01-01 00:00:00", "2022-01-01 00:00:00", "2022-01-01 02:00:00", "2022-01-01 01:00:00",
             "2022-01-01 05:00:00", "2022-01-01 06:00:00", "2022-01-01 07:00:00"]
    src = sources.load_candle_source(settings, [str(_candles(tmp_path, hours))])
    checks = " | ".join(src.describe["checks"])
    assert "1 duplicate times" in checks and "out of time order" in checks and "1 gaps (2 intervals" in checks
    assert src.describe["bar_secs"] == 3600  # the median spacing, not the first two rows' (0)
    starts = sorted({ts // HOUR for ts, _, _ in src.batches})
    assert [h - starts[0] for h in starts] == [0, 1, 2, 5, 6, 7]  # nothing after the gap is dropped


def test_depth_thins_as_the_range_widens() -> None:
    shape = sources.BookShape()
    assert shape.level_usd(10) > shape.level_usd(23) > shape.level_usd(124) > 0
    # The calibration points: ~$816k within 2 bps at a 23 bps hour, ~$280k at 124 bps (within 25%).
    per_2bps = [shape.level_usd(r) / shape.level_spacing_bps * 2 for r in (23, 124)]
    assert abs(per_2bps[0] / 816_000 - 1) < 0.25 and abs(per_2bps[1] / 280_000 - 1) < 0.25


_ROW = st.lists(st.sampled_from(["BTC-USDT", "2022-01-01 00:00:00", "2022-01-01 01:00",
                                 "20260110 00:00:00", "0.0001", "-1e-5", "NaN", "1e400", "inf", "", "x",
                                 ",", "2022-13-40", "1e-999999"]),
                max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["Symbol,Date,Funding Rate", "Date,Funding Rate", "",
                               "Date,Open,High,Low,Close,Volume"]),
       rows=st.lists(_ROW, max_size=6))
def test_any_file_loads_or_names_the_option(tmp_path: Path, header: str, rows: list[list[str]]) -> None:
    path = tmp_path / "BTC-USDT_x.csv"
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    for load_file, option in ((sources.load_funding, ("--funding", "--funding-interval")),
                              (sources.load_candles, ("--candles",))):
        try:
            load_file(path)
        except sources.SourceError as exc:
            assert exc.option in option and exc.reason


def test_the_candle_path_is_walked_every_10s_while_orders_are_worked() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    bars = [sources.Bar(t0 + k * HOUR, 20000, 20300, 19900, 20200, 1000) for k in range(2)]
    idle = sources.candle_source(settings, {"BTC-USD": bars}, {})
    assert len(list(idle.batches)) == 2 * 12
    worked = sources.candle_source(settings, {"BTC-USD": bars}, {})
    worked.hooks["busy"] = lambda: True
    batches = list(worked.batches)
    step = HOUR // 12
    first = [ts - t0 for ts, _, _ in batches if ts - t0 < step]
    assert first == list(range(0, step, 10 * 10**9))
    mids = [e.oracle_price for ts, p, _ in batches if ts - t0 < step
            for e in p if isinstance(e, OracleUpdate)]
    assert mids == sorted(mids, reverse=True) and mids[0] > mids[-1]  # O -> L, moving every 10 s


def test_the_bar_path_visits_extremes_only_while_exposed() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    hourly = [sources.Bar(t0 + k * HOUR, 20000, 20300, 19900, 20200, 1000) for k in range(2)]
    visited = {}
    for exposed in (False, True):
        src = sources.candle_source(settings, {"BTC-USD": hourly}, {}, steps_per_bar=4)
        src.hooks.update(busy=lambda: False, exposed=lambda e=exposed: e)
        visited[exposed] = [(ts - t0) // (HOUR // 4) for ts, _, _ in src.batches]
    # flat: the bar starts (the rules' points) and the closes (what the next hour's sample reads)
    assert visited == {False: [0, 3, 4, 7], True: list(range(8))}


def test_the_bar_path_visits_extremes_and_hour_starts_while_exposed() -> None:
    settings = load(None, env_file=None)
    t0 = sources.parse_time("2022-11-01", "x")
    bars = [sources.Bar(t0 + k * 8 * HOUR, 20000, 20300, 19900, 20200, 1000) for k in range(2)]
    rates = {t0 + h * HOUR: Decimal(h) / 10**6 for h in range(1, 17)}  # the hour ending there
    held = sources.candle_source(settings, {"BTC-USD": bars}, {"BTC-USD": rates}, steps_per_bar=4)
    held.hooks.update(busy=lambda: False, exposed=lambda: True)
    batches = list(held.batches)
    # the extremes and close at 2, 4 and 6 h, and every hour start between (funding settles at the
    # first oracle of an hour, at the rate the hour's own oracle carried)
    assert [(ts - t0) // HOUR for ts, _, _ in batches] == list(range(16))
    oracles = [e for _, p, _ in batches for e in p if isinstance(e, OracleUpdate)]
    assert [o.next_funding_rate for o in oracles] == \
        [rates[o.ts_event // HOUR * HOUR + HOUR] for o in oracles]
    assert [o.oracle_price for o in oracles[0:8:2]] == [20000, 19900, 20300, 20200]  # O, L, H, C
    assert all(isinstance(e, OracleUpdate) for _, p, _ in batches[1:8] for e in p)  # marks: no perp book


def test_millisecond_jitter_in_funding_stamps_is_neither_a_gap_nor_off_the_grid() -> None:
    # Binance stamps settlements a few ms late (2020-01-02 03:00:00.002 in the shared files).
    hour = 3_600_000_000_000
    times = [0, 8 * hour + 2_000_000, 16 * hour, 24 * hour + 5_000_000, 40 * hour]
    notes = history.grid_notes("f.csv", times, 8 * hour)
    assert notes == ["f.csv: 1 gaps (1 intervals missing), first: 1970-01-02T08:00..1970-01-02T08:00"]
    assert history.grid_notes("f.csv", [0, 8 * hour + 2 * 1_000_000_000], 8 * hour) == [
        "f.csv: 1 rows off the 28800s grid"]


# The memoised tick grid gives the Decimals the direct computation gives, digits and exponent.
@pytest.mark.parametrize("tick", ["1", "0.1", "0.0001"])
def test_tick_grid_prices_are_the_direct_ones(tick: str) -> None:
    grid = sources.TickGrid(Decimal(tick))
    for _ in range(2):  # computed, then from the memo
        assert [str(grid.price(k)) for k in (1, 7, 12345)] == \
            [str(Decimal(k) * Decimal(tick)) for k in (1, 7, 12345)]
        bids, asks = grid.ladder((100, 103, 2), 3)
        expected = [str(Decimal(k) * Decimal(tick)) for k in (100, 98, 96, 103, 105, 107)]
        assert [str(p) for p in bids + asks] == expected
        bid, ask, mid = grid.touch(100, 103)
        assert str(mid) == str(((bid + ask) / 2).quantize(Decimal(tick)))


# The per-bar level sizes are the direct formula's: whole steps rounded down from the first
# level's size growing by `level_size_growth` a level, none below the minimum order size.
@given(base=st.floats(0, 1e6, allow_nan=False), step=st.sampled_from(["1", "0.001", "0.0001", "0.5"]),
       floor_steps=st.integers(1, 50))
def test_level_sizes_are_the_direct_formula(base: float, step: str, floor_steps: int) -> None:
    from bot.backtest.synthetic import BookShape, LevelSizes
    from bot.domain import MarketSpec
    shape = BookShape()
    spec = MarketSpec("BTC-USD", Decimal(1), Decimal(step), Decimal(step) * floor_steps)
    steps = max(base, float(spec.min_order_size)) / float(spec.step_size)
    direct = [Decimal(int(steps * (1 + shape.level_size_growth * i) + 1e-9)) * spec.step_size
              for i in range(shape.depth_levels)]
    expected = [size if size >= spec.min_order_size else spec.min_order_size for size in direct]
    assert [str(s) for s in LevelSizes(spec, shape).sizes(base)] == [str(s) for s in expected]


def test_events_built_through_their_slots_are_the_constructed_ones() -> None:
    from bot.backtest.synthetic import block_height, oracle_update
    oracle = oracle_update("BTC-USD", Decimal("60000"), Decimal("0.0001"), 7)
    assert oracle == OracleUpdate("BTC-USD", Decimal("60000"), Decimal("0.0001"), 7, 7)
    assert repr(oracle) == repr(OracleUpdate("BTC-USD", Decimal("60000"), Decimal("0.0001"), 7, 7))
    assert block_height(12, 5) == BlockHeight(12, 5, 5)
    assert hash(block_height(12, 5)) == hash(BlockHeight(12, 5, 5))
