"""The stored strategy record (bot.strategy_state): a round trip keeps every value (hypothesis), a
malformed one is logged and ignored over a real SQLite store, and what a restart keeps."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.store import Store
from bot.strategy.carry import CarryWatch
from bot.strategy_state import META_PREFIX, StrategyRecord, load, restored, save

shares = st.none() | st.decimals(min_value=-1, max_value=1, places=4)
records = st.builds(StrategyRecord, st.sampled_from((-1, 0, 1)),
                    st.builds(CarryWatch, st.integers(0, 10_000), st.none() | st.integers(0, 2**40)), shares)


@given(records)
def test_a_record_reads_back_as_it_was_written(record: StrategyRecord) -> None:
    text = record.to_json()
    back = StrategyRecord.from_json(text)
    assert back == record
    assert back.to_json() == text
    held = json.loads(text)["thesis_held"]
    assert held is None or isinstance(held, str)  # a share is a decimal string, never a float


GOOD = {"carry_side": -1, "adverse_hours": 5, "hour": 480_000, "thesis_held": "0.3"}


@pytest.mark.parametrize("text", [
    "", "not json", "[]", "null", '"x"', "{}",
    json.dumps({**GOOD, "carry_side": 2}),
    json.dumps({**GOOD, "carry_side": True}),
    json.dumps({**GOOD, "adverse_hours": -1}),
    json.dumps({**GOOD, "adverse_hours": "5"}),
    json.dumps({**GOOD, "adverse_hours": 5.0}),
    json.dumps({**GOOD, "hour": "480000"}),
    json.dumps({**GOOD, "thesis_held": 0.3}),
    json.dumps({**GOOD, "thesis_held": "NaN"}),
    json.dumps({**GOOD, "thesis_held": "Infinity"}),
    json.dumps({**GOOD, "thesis_held": "abc"}),
    json.dumps({**GOOD, "thesis_held": "1.5"}),
    json.dumps({k: v for k, v in GOOD.items() if k != "hour"}),
])
def test_a_malformed_record_is_ignored_not_a_failed_start(tmp_path: Path, text: str) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.meta_set(META_PREFIX + "BTC-USD", text)
        assert load(store, "BTC-USD") is None


@given(st.text(max_size=60))
def test_no_text_raises_on_load(text: str) -> None:
    class Meta:
        def meta_get(self, key: str) -> str | None:
            return text

        def meta_set(self, key: str, value: str) -> None:
            raise AssertionError("a load writes nothing")

    record = load(Meta(), "BTC-USD")
    assert record is None or isinstance(record, StrategyRecord)


def test_a_saved_record_loads_from_the_store_per_market(tmp_path: Path) -> None:
    record = StrategyRecord(-1, CarryWatch(5, 480_000), D("0.3096"))
    with Store.open(tmp_path / "s.db") as store:
        assert load(store, "BTC-USD") is None
        save(store, "BTC-USD", record)
        assert load(store, "BTC-USD") == record and load(store, "ETH-USD") is None


def test_the_watch_is_kept_only_for_the_same_open_carry_and_the_share_always() -> None:
    record = StrategyRecord(-1, CarryWatch(5, 480_000), D("0.3"))
    assert restored(record, -1) == (CarryWatch(5, 480_000), D("0.3"))
    assert restored(record, 0) == (CarryWatch(), D("0.3"))  # closed while down: a fresh watch
    assert restored(record, 1) == (CarryWatch(), D("0.3"))  # open the other way: a fresh watch
    assert restored(StrategyRecord(0, CarryWatch(), None), 1) == (CarryWatch(), None)


def test_a_record_is_saved_when_what_a_restart_reads_changes_not_for_the_hour_alone() -> None:
    saved = StrategyRecord(-1, CarryWatch(0, 480_000), D("0.3"))
    assert StrategyRecord(-1, CarryWatch(0, 480_001), D("0.3")).worth_saving_over(saved) is False
    assert StrategyRecord(-1, CarryWatch(1, 480_001), D("0.3")).worth_saving_over(saved)
    assert StrategyRecord(-1, CarryWatch(0, 480_000), D("0.31")).worth_saving_over(saved)
    assert StrategyRecord(0, CarryWatch(), D("0.3")).worth_saving_over(saved)
    assert StrategyRecord(-1, CarryWatch(0, 480_000), None).worth_saving_over(saved)
    assert saved.worth_saving_over(None)
