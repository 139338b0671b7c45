"""tools/directional_windows.py: the rolling windows of each length, their funding label, the
counts it prints, and a bad option exiting 2 with one line (the research script, synthetic data)."""

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

TOOL = Path(__file__).resolve().parents[2] / "tools" / "directional_windows.py"


@pytest.fixture(scope="module")
def dw() -> ModuleType:
    spec = importlib.util.spec_from_file_location("directional_windows_under_test", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _hour(y: int, m: int, d: int = 1) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp()) // 3600


def test_windows_start_on_a_months_first_after_the_warm_up_and_end_inside(dw: ModuleType) -> None:
    hours = list(range(_hour(2020, 1, 1), _hour(2020, 12, 15)))
    got = dw.windows(hours, 3)
    # 720 h of warm-up rules out January (and 1 Feb: 31 days = 744 h before it is enough)
    assert [w[2] for w in got] == ["2020-02", "2020-03", "2020-04", "2020-05", "2020-06", "2020-07",
                                  "2020-08", "2020-09"]
    assert got[0][:2] == (_hour(2020, 2), _hour(2020, 5))
    assert [w[2] for w in dw.windows(hours, 12)] == []


@given(months=st.integers(1, 14), first_day=st.integers(1, 28), span_days=st.integers(40, 900))
def test_every_window_is_months_long_warm_and_inside_the_hours(dw: ModuleType, months: int, first_day: int,
                                                               span_days: int) -> None:
    first = _hour(2021, 3, first_day)
    hours = list(range(first, first + 24 * span_days))
    got = dw.windows(hours, months)
    for start, end, label in got:
        s = datetime.fromtimestamp(start * 3600, UTC)
        e = datetime.fromtimestamp(end * 3600, UTC)
        assert (s.day, s.hour, e.day, e.hour) == (1, 0, 1, 0)
        assert (e.year - s.year) * 12 + e.month - s.month == months
        assert start - 720 >= hours[0] and end <= hours[-1] + 1
        assert label == f"{s.year}-{s.month:02d}"
    assert [w[0] for w in got] == sorted({w[0] for w in got})  # one per month, in order


def test_a_window_is_labelled_by_the_funding_it_runs_on(dw: ModuleType) -> None:
    assert dw.period(_hour(2023, 10), _hour(2024, 1)) == "funding"
    assert dw.period(_hour(2023, 12), _hour(2024, 3)) == "mixed"
    assert dw.period(_hour(2024, 1), _hour(2024, 2)) == "2024"


def _row(dw: ModuleType, label: str, bot: tuple[float, float], hold: tuple[float, float]) -> object:
    def m(ret: float, dd: float) -> dict[str, float]:
        return {"return": ret, "max_dd": dd, "ret_dd": ret / dd}
    return dw.Row("both", 3, label, "funding", m(*bot), m(*hold))


def test_the_summary_counts_each_target_and_lists_its_misses(dw: ModuleType) -> None:
    rows = [_row(dw, "2021-01", (0.10, 0.05), (0.20, 0.20)),  # both met
            _row(dw, "2021-02", (0.10, 0.18), (0.20, 0.20)),  # drawdown 0.9x: missed; R/DD 0.56 < 1
            _row(dw, "2021-03", (-0.05, 0.10), (-0.10, 0.20))]  # both met (R/DD -0.5 = -0.5)
    out = dw.summary(rows)
    assert out[0].startswith("both 3 mo: 3 windows, drawdown met 2, return/drawdown met 2 ")
    assert "funding 2/2 of 3" in out[0]
    assert [line.split(" (")[0].strip() for line in out[1:]] == ["DD miss   2021-02", "R/DD miss 2021-02"]


@pytest.mark.parametrize(("args", "key"), [(["--lengths", "3,x"], "--lengths"),
                                           (["--lengths", "0"], "--lengths"),
                                           (["--markets", "both,SOL-USD"], "--markets")])
def test_a_bad_option_exits_2_naming_it(args: list[str], key: str) -> None:
    got = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [got.stderr.strip()]
    assert f"config error: {key}:" in got.stderr
