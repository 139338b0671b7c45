"""Stress scenarios (pure): parsing, placement, and what they do to an event stream."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bot.backtest.scenarios import (
    NAMED,
    Scenario,
    ScenarioError,
    Step,
    StressModel,
    is_rejected,
    load_scenario,
    place,
)
from bot.domain import BlockHeight, BookSnapshot, OracleUpdate
from bot.sim.market import SimMarket
from bot.venues.sim.feed import default_params

SEC = 1_000_000_000
HOUR = 3600 * SEC
START = 1_700_000_000 * SEC


def test_the_named_scenarios_load() -> None:
    for name in ("chain-halt-2024-04-08", "chain-halt-2025-10-10", "funding-squeeze", "bridge-outage-6h",
                 "liquidity-drought"):
        assert load_scenario(name) is NAMED[name]


def test_scenario_files_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "s.json"
    good.write_text(json.dumps({"name": "mine", "steps": [{"kind": "price_gap", "at_h": 1, "pct": -5}]}))
    assert load_scenario(str(good)).steps == (Step("price_gap", 1.0, 1.0, None, {"pct": -5}),)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[steps]]\nkind = "volcano"\n')
    with pytest.raises(ScenarioError, match=r"steps\[0\]\.kind"):
        load_scenario(str(bad))
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such-thing")


def test_incident_dates_are_used_when_the_data_covers_them() -> None:
    sc = NAMED["chain-halt-2024-04-08"]
    april = 1_712_534_400 * SEC  # 2024-04-08 00:00 UTC
    [w] = place([sc], april - HOUR, april + 24 * HOUR)
    assert w.start_ns == april + 5 * HOUR + 30 * 60 * SEC and w.end_ns - w.start_ns == int(9.5 * HOUR)
    [w] = place([sc], START, START + 24 * HOUR)  # elsewhere: `at_h` after the start
    assert w.start_ns == START + 2 * HOUR


def test_rejects_are_deterministic_and_about_the_rate() -> None:
    draws = [is_rejected(i, 0.3) for i in range(10_000)]
    assert draws == [is_rejected(i, 0.3) for i in range(10_000)]
    assert 0.27 < sum(draws) / len(draws) < 0.33


def _stream(model: StressModel, market: SimMarket, secs: int) -> list[tuple[int, list]]:
    out = []
    for k in range(secs):
        ts = START + k * SEC
        perp, _ = model.apply(ts, market.step(ts), [])
        out.append((ts, perp))
    return out


def test_a_chain_halt_freezes_the_perp_stream_then_resyncs_with_a_stale_oracle() -> None:
    params = default_params("BTC-USD", 0.65)
    market = SimMarket(params, 1, START)
    sc = Scenario("t", "", (Step("chain_halt", at_h=10 / 3600, duration_h=20 / 3600,
                                  params={"stale_oracle_h": 30 / 3600}),))
    model = StressModel(place([sc], START, START + HOUR), {"BTC-USD": market.spec()}, {}, {})
    stream = _stream(model, market, 90)
    halted = [perp for ts, perp in stream if START + 10 * SEC <= ts < START + 30 * SEC]
    assert all(p == [] for p in halted)
    restart = dict(stream)[START + 30 * SEC]
    assert isinstance(restart[0], BookSnapshot)  # the restarted indexer serves a fresh book
    frozen = [e.oracle_price for _, p in stream[:10] for e in p if isinstance(e, OracleUpdate)][-1]
    stale = [e.oracle_price for ts, p in stream if START + 30 * SEC <= ts < START + 60 * SEC
             for e in p if isinstance(e, OracleUpdate)]
    assert stale and set(stale) == {frozen}
    assert model.gating_until_ns == 0  # a 20 s halt is under the 5 minute gating rule
    assert not model.halted and any(isinstance(e, BlockHeight) for _, p in stream[-5:] for e in p)


def test_a_price_gap_shifts_every_price_and_keeps_the_book_consistent() -> None:
    params = replace(default_params("BTC-USD", 0.65), jump_per_sec=0.0)
    raw = SimMarket(params, 3, START)
    ref = SimMarket(params, 3, START)
    sc = Scenario("t", "", (Step("price_gap", at_h=5 / 3600, duration_h=20 / 3600, params={"pct": -10}),))
    model = StressModel(place([sc], START, START + HOUR), {"BTC-USD": raw.spec()}, {}, {})
    from bot.book import OrderBook

    seen, truth = OrderBook("BTC-USD"), OrderBook("BTC-USD")
    for k in range(40):
        ts = START + k * SEC
        events = raw.step(ts)
        for e in ref.step(ts):
            if isinstance(e, BookSnapshot):
                truth.apply_snapshot(e)
            elif type(e).__name__ == "BookDelta":
                truth.apply_delta(e)
        perp, _ = model.apply(ts, events, [])
        for e in perp:
            if isinstance(e, BookSnapshot):
                seen.apply_snapshot(e)
            elif type(e).__name__ == "BookDelta":
                seen.apply_delta(e)
        assert not seen.is_crossed()
        ratio = seen.mid() / truth.mid()
        if 6 <= k < 25:
            assert Decimal("0.89") < ratio < Decimal("0.91")
        elif k < 5 or k >= 26:
            assert ratio == 1
