"""The dashboard's pure parts: history tiers and ranges, the thresholds it draws, the watchdog
board, number formats and the SVG charts, fed with partial and malformed status as well."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.config import Settings
from bot.control import fmt
from bot.control.board import render_board
from bot.control.dashboard import Dashboard
from bot.control.history import RANGES, StatusHistory, Thresholds, marker_from_status, thresholds_from
from bot.control.palette import MODE_COLOURS, colour
from bot.control.svg import Line, line_chart, nice_ticks, rate_axis, usd_axis
from bot.strategy.sleeves import SleeveInputs, carry_outlook_adverse, carry_sleeve

SEC = 1_000_000_000
T0 = 1_780_000_000 * SEC


def status(equity: str = "10000", mode: str = "NORMAL", position: str = "0.5", rate: str = "0.0001") -> dict:
    return {
        "risk_mode": mode, "equity": equity,
        "pnl": {"price": "1.5", "funding": "0.25", "fees": "-0.75", "slippage": "-0.1", "total": "0.9"},
        "funding": {"realised": "0.25", "expected": "1"},
        "markets": {"BTC-USD": {"position": position, "target": "0.5", "oracle_price": "60000",
                                "funding_rate_1h": rate,
                                "last_decision": {"ts_ns": T0, "reason": "flags",
                                                  "tripped": ["news", "funding"],
                                                  "summary": "flags perp 0->0.5", "target": "0.5"}}},
        "watchdog": {"chain_head_age": {"state": "OK", "value": 0.4, "reason": None},
                     "indexer_lag": {"state": "DEGRADED", "value": 12.0,
                                     "reason": "indexer_lag 12 blocks >= 10 blocks"},
                     "error_rate": {"state": "CRITICAL", "value": 0.95, "reason": "error_rate 0.95 >= 0.9"},
                     "feed:v4_orderbook/BTC-USD": {"state": "OK", "value": None, "reason": None}},
    }


def test_history_keeps_two_hours_fine_and_a_week_coarse_and_serves_each_range() -> None:
    clock = ManualClock(T0)
    history = StatusHistory(lambda: status(), clock)
    for i in range(3 * 86400 // 5):  # three days of samples every 5 s
        history.record(status(equity=str(10_000 + i), mode="HALTED" if i % 5000 < 100 else "NORMAL"))
        clock.now += 5 * SEC
    assert len(history.samples) <= 2 * 3600 / 5 + 2
    assert 3 * 1440 - 2 <= len(history.coarse) <= 3 * 1440 + 2, "one a minute"
    for key, secs in RANGES.items():
        series = history.series(max_points=300, range_secs=secs)
        assert 2 <= len(series) <= 300
        assert [s.ts_ns for s in series] == sorted(s.ts_ns for s in series)
        assert series[-1].ts_ns == history.samples[-1].ts_ns, key
        if secs is not None:
            assert clock.now - series[0].ts_ns <= secs * SEC + 60 * SEC, key
    day = history.series(max_points=300, range_secs=86400)
    gaps = [b.ts_ns - a.ts_ns for a, b in itertools.pairwise(day[:-15])]  # the tail: the last minute
    assert max(gaps) <= 1.3 * min(gaps), "24 h: evenly spaced, not crowded into the last two hours"
    hour = history.series(max_points=10_000, range_secs=3600)
    assert max(b.ts_ns - a.ts_ns for a, b in itertools.pairwise(hour)) == 5 * SEC, "1 h: every sample"
    everything = history.series(max_points=10_000, range_secs=None)
    assert clock.now - everything[0].ts_ns >= 3 * 86400 * SEC - 10 * SEC
    assert history.as_json()["columns"][:2] == ["ts_ns", "equity_usd"]


def test_samples_take_pnl_attribution_positions_and_mode() -> None:
    clock = ManualClock(T0)
    history = StatusHistory(lambda: status(), clock)
    sample = history.record(status(mode="REDUCE_ONLY"))
    pnl = (sample.pnl_price, sample.pnl_funding, sample.pnl_fees, sample.pnl_slippage)
    assert pnl == (1.5, 0.25, -0.75, -0.1)
    assert sample.risk_mode == "REDUCE_ONLY"
    market = sample.markets["BTC-USD"]
    assert (market.position, market.target, market.rate_1h) == (0.5, 0.5, 0.0001)
    assert sample.gross_exposure_usd == 30_000


def test_carry_thresholds_drawn_are_where_the_sleeve_opens_and_exits() -> None:
    cfg = Settings()
    thresholds = thresholds_from(cfg)
    (entry,), (exit_,) = thresholds.carry_entry_rate_1h, thresholds.carry_exit_rate_1h
    assert entry > 0 > exit_  # the exit waits for a trend that pays more than a round trip

    def inputs(rate: float) -> SleeveInputs:
        return SleeveInputs("BTC-USD", Decimal(60000), Decimal(60000), Decimal(100_000), 1, Decimal(1),
                            Decimal(repr(rate)), 24, Decimal("0.0001"), Decimal("0.0001"),
                            cfg.paper.taker_fee_rate)

    def sleeve(rate: float, open_side: int) -> str:
        return carry_sleeve(inputs(rate), cfg.strategy.carry, Decimal("0.4"), open_side).why

    assert sleeve(entry * 1.001, 0) == "open" and sleeve(entry * 0.999, 0) == "below_entry_threshold"
    # Below the exit line an hour counts as adverse; the carry closes after exit_confirm_hours of them.
    assert not carry_outlook_adverse(inputs(exit_ * 0.999), cfg.strategy.carry, -1)
    assert carry_outlook_adverse(inputs(exit_ * 1.001), cfg.strategy.carry, -1)
    assert thresholds_from(None) == Thresholds()


def test_watchdog_board_one_chip_per_input_reason_only_when_not_ok() -> None:
    html = render_board(status(), thresholds_from(Settings()))
    chips = re.findall(r'data-input="([^"]+)" data-state="(\w+)"', html)
    assert chips == [("block_height", "OK"), ("chain_head_age", "OK"), ("indexer_lag", "DEGRADED"),
                     ("error_rate", "CRITICAL"), ("feed:v4_orderbook/BTC-USD", "OK")]
    assert "0.40 s" in html and "12 blocks" in html and "95.0 %" in html and "no data" in html
    assert "degraded ≥ 5.00 s · critical ≥ 15.0 s" in html
    assert "degraded ≥ 10 blocks · critical ≥ 300 blocks" in html
    assert html.count('class="chip-reason"') == 2 and "indexer_lag 12 blocks" in html
    assert "watchdog off" in render_board({}, Thresholds())


def test_number_formats() -> None:
    assert fmt.usd("1234567.891") == "1,234,567.89" and fmt.usd("-3", sign=True) == "-3.00"
    assert fmt.usd("2", sign=True) == "+2.00" and fmt.usd(None) == "-" and fmt.usd("NaN") == "-"
    assert fmt.size("-0.5") == "-0.5000" and fmt.price("65010.5") == "65,010.50"
    assert fmt.rate_pct("0.0001") == "0.0100 %" and fmt.leverage("0.333") == "0.33x"
    assert fmt.secs(0.65) == "0.65 s" and fmt.blocks(12.0) == "12 blocks"
    assert fmt.duration(90061) == "1d01h" and fmt.duration("x") == "-"
    assert nice_ticks(0, 1) == ([0.0, 0.25, 0.5, 0.75, 1.0], 0.25)
    assert usd_axis(9998.5, 0.5) == "9,998.5" and usd_axis(250_000, 50_000) == "250.0k"
    assert rate_axis(0.000025, 0.000025) == "0.0025%"


def test_chart_counts_its_points_and_takes_the_shared_colours() -> None:
    points = [(T0 + i * SEC, float(i)) for i in range(10)]
    svg = line_chart("c", "t", [Line("equity", colour("equity"), points)], T0, T0 + 9 * SEC, 400)
    assert 'data-points="10"' in svg and 'width="400"' in svg and colour("equity") in svg
    day = line_chart("d", "t", [Line("equity", colour("equity"), points)], T0, T0 + 86400 * SEC, 600)
    ticks = re.findall(r'text-anchor="\w+">(\d\d:\d\d)</text>', day)
    assert len(ticks) >= 3 and all(t.endswith(":00") and int(t[:2]) % 3 == 0 for t in ticks), ticks
    empty = line_chart("e", "t", [Line("equity", colour("equity"), [])], T0, T0, 400)
    assert 'data-points="0"' in empty and "<path" not in empty


def test_page_charts_markers_and_thresholds() -> None:
    clock = ManualClock(T0)
    history = StatusHistory(lambda: status(), clock, settings=Settings())
    for i in range(50):
        history.record(status(position=str(i / 100), mode="HALTED" if i > 40 else "NORMAL"))
        clock.now += 5 * SEC
    dashboard = Dashboard(lambda: status(), clock, history)
    html = dashboard.payload({"range": "1h", "w": "700", "fw": "1400"})["html"]
    assert re.search(r'id="chart-position-BTC-USD" data-points="(\d+)"', html["market_charts"])
    assert "carry entry" in html["market_charts"] and "carry exit" in html["market_charts"]
    assert "flags (news, funding)" in html["market_charts"], "the decision marker's hover text"
    assert MODE_COLOURS["HALTED"] in html["charts"] and "HALTED" in html["charts"]
    assert 'width="700"' in html["market_charts"] and 'width="1400"' in html["charts"]
    assert marker_from_status("X", {"ts_ns": "soon"}) is None


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(junk, st.sampled_from(sorted(RANGES)))
@example({"tripped": True}, "24h")  # a decision whose tripped flags are not a list
def test_partial_or_malformed_status_never_breaks_the_page(extra: Any, range_key: str) -> None:
    """Other parts of the daemon add and change status fields: render what exists, tolerate the rest."""
    base = status()
    variants = [extra, {"markets": extra}, {"markets": {"BTC-USD": extra}}, {"watchdog": extra},
                {**base, "pnl": extra, "funding": extra, "news": extra, "open_orders": extra},
                {**base, "account": extra, "fees": extra, "sim": extra},
                {**base, "account": {"dydx": extra}, "fees": {"dydx": extra, "binance": {"taker": extra}}},
                {**base, "markets": {"BTC-USD": {**base["markets"]["BTC-USD"], "last_decision": extra,
                                                 "flags": extra, "spot": extra, "funding_ledger": extra,
                                                 "market_status": extra, "operator_target": extra}}}]
    clock = ManualClock(T0)
    for variant in variants:
        value = variant if isinstance(variant, dict) else {"equity": variant}
        history = StatusHistory(lambda value=value: value, clock, settings=Settings())
        history.record(value)
        payload = Dashboard(lambda value=value: value, clock, history).payload({"range": range_key})
        assert payload["html"]["charts"].count("<svg") == 5


def test_fields_other_parts_add_are_shown_when_present() -> None:
    """account per venue, fee rates, market status and the operator's target spec (newer daemons)."""
    clock = ManualClock(T0)
    old = status()
    old["account"] = {"dydx": "dydx1abc", "binance": None}
    html = Dashboard(lambda: old, clock).payload()["html"]
    assert "dydx1abc" in html["accounts"] and "pill" not in html["market_charts"]
    new = status()
    new["account"] = {"dydx": {"address": "dydx1abc", "equity": "10000.5", "free_collateral": "9500",
                               "margin_use": "0.05", "source": "paper"}, "binance": {"key": "abcd…wxyz"}}
    new["fees"] = {"dydx": {"maker": "0.0001", "taker": "0.0005", "source": "venue"}}
    new["markets"]["BTC-USD"].update(market_status="CLOSE_ONLY",
                                     operator_target={"spec": "5%", "base": "0.01"})
    history = StatusHistory(lambda: new, clock, settings=Settings())
    history.record(new)
    html = Dashboard(lambda: new, clock, history).payload()["html"]
    assert "10,000.50" in html["accounts"] and "9,500.00" in html["accounts"] and "5.00 %" in html["accounts"]
    assert "0.010 % / 0.050 %" in html["accounts"] and "abcd…wxyz" in html["accounts"]
    assert 'data-market-status="CLOSE_ONLY"' in html["market_charts"]
    assert "operator target</em> 5%" in html["market_charts"]


def test_carry_edges_follow_the_fee_rates_the_venue_reports() -> None:
    cfg = Settings()
    (entry,) = thresholds_from(cfg).carry_entry_rate_1h
    (cheaper,) = thresholds_from(cfg, {"dydx": {"taker": "0"}}).carry_entry_rate_1h
    reported = {"dydx": {"taker": "0.001"}, "binance": {"taker": "0.002"}}
    (dearer,) = thresholds_from(cfg, reported).carry_entry_rate_1h
    assert cheaper < entry < dearer
    assert thresholds_from(cfg, {"dydx": {"taker": "junk"}}).carry_entry_rate_1h == (entry,)
