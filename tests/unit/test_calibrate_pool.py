"""tools/calibrate.py's pooled walk-forward: a fold trains on every venue's quarters that end
before its test, never on later ones (the research script, on synthetic hourly history)."""

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from support.tools import load_tool


@pytest.fixture(scope="module")
def calibrate() -> ModuleType:
    return load_tool("calibrate")


def _hour(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp()) // 3600


def _venue(calibrate: ModuleType, first: int, last: int, rate: float) -> list:  # type: ignore[type-arg]
    hours = list(range(first, last))
    bar = (100.0, 101.0, 99.0, 100.0)
    return [calibrate.Series(m, hours, [bar] * len(hours), [rate] * len(hours))
            for m in ("BTC-USD", "ETH-USD")]


PARAMS = {"signal_half_life_hours": 168, "entry_half_life_hours": 72, "entry_median_hours": 336,
          "entry_threshold_bps": 0, "exit_threshold_bps": -40, "exit_confirm_hours": 48}


def test_a_fold_trains_on_every_venue_but_only_on_quarters_before_its_test(calibrate: ModuleType) -> None:
    venues = {"a": _venue(calibrate, _hour(2020, 12, 1), _hour(2021, 10, 1), 2e-5),
              "b": _venue(calibrate, _hour(2021, 3, 1), _hour(2021, 10, 1), 3e-5)}
    pool = calibrate.carry_pool(venues)
    q2, q3 = _hour(2021, 4, 1), _hour(2021, 7, 1)
    assert [(r["venue"], r["window"]) for r in pool(PARAMS, q2)] == [("a", "2021Q1")]
    got = [(r["venue"], r["window"]) for r in pool(PARAMS, q3)]
    assert got == [("a", "2021Q1"), ("a", "2021Q2"), ("b", "2021Q2")]
    # steady funding above the entry line: the carry earns it in every pooled window
    assert all(r["bot"]["funding"] > 0 for r in pool(PARAMS, q3))


def test_the_walk_forward_scores_its_folds_on_the_pool(calibrate: ModuleType,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    venues = {"a": _venue(calibrate, _hour(2020, 12, 1), _hour(2021, 10, 1), 2e-5),
              "b": _venue(calibrate, _hour(2021, 3, 1), _hour(2021, 10, 1), 3e-5)}
    monkeypatch.setattr(calibrate, "carry_grid", lambda quick: [PARAMS])
    wf = calibrate.walk_forward("carry", venues["a"], False, lambda msg: None, 1,
                                calibrate.carry_pool(venues))
    (fold,) = [f for f in wf["folds"] if f["test"] == ["2021Q3"]]
    assert [(r["venue"], r["window"]) for r in fold["train_rows"]] == [
        ("a", "2021Q1"), ("a", "2021Q2"), ("b", "2021Q2")]
    assert [r["window"] for r in fold["test_rows"]] == ["2021Q3"]


@pytest.mark.parametrize(("argv", "named"), [
    (["carry", "--venues", "dydx,nosuch"], "--venues: unknown venue 'nosuch'"),
    (["carry", "--test-quarters", "0"], "--test-quarters: must be at least 1"),
])
def test_an_option_that_cannot_run_exits_2_with_one_line_naming_it(
        calibrate: ModuleType, argv: list[str], named: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate.main([*argv, "--out", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
    assert not (tmp_path / "out.json").exists()
