"""`perpbot optimize`'s pure pieces: the search spec, walk-forward folds, scores, columnar data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.backtest import sources
from bot.research import data as rdata
from bot.research.folds import walk_forward
from bot.research.objective import Evaluation, out_of_sample, score
from bot.research.report import diverges, masked
from bot.research.space import SpecError, check_space, parse_spec, with_params
from bot.research.study import check_storage

SHARED = Path(__file__).resolve().parents[3] / "shared"
CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
FEATHER = SHARED / "data/candles/BTC_USDT-1h_2024-01_2024-09.feather"
DYDX_FUNDING = SHARED / "data/funding/BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
HOUR = 3600 * 10**9
ROOT = Path(__file__).resolve().parents[2]

SPACE = {"strategy.target_vol_annual": {"low": 0.2, "high": 1.0},
         "strategy.carry.entry_threshold_bps": {"low": 5, "high": 40, "step": 5},
         "rules.vol_max_annual": {"low": 0.5, "high": 3.0, "log": True},
         "execution.urgency": {"choices": ["low", "high"]}}


BASE = {"markets": ["BTC-USD"], "strategy": {"targets": {"BTC-USD": "0.1"}}}


def test_spec_reads_ranges_steps_logs_and_choices() -> None:
    spec = parse_spec({"space": SPACE, "objective": "sharpe", "turnover_penalty": 0.0})
    kinds = {p.name: (p.kind, p.step, p.log, p.choices) for p in spec.space}
    assert kinds == {"strategy.target_vol_annual": ("float", None, False, ()),
                     "strategy.carry.entry_threshold_bps": ("int", 5, False, ()),
                     "rules.vol_max_annual": ("float", None, True, ()),
                     "execution.urgency": ("choice", None, False, ("low", "high"))}
    assert (spec.objective, spec.turnover_penalty, spec.walk) == ("sharpe", 0.0, "rolling")


@pytest.mark.parametrize(("section", "key"), [
    ({"space": SPACE, "objective": "profit"}, "optimize.objective"),
    ({"space": SPACE, "walk": "sideways"}, "optimize.walk"),
    ({"space": SPACE, "turnover_penalty": -1}, "optimize.turnover_penalty"),
    ({"space": SPACE, "turnover_penalty": "lots"}, "optimize.turnover_penalty"),
    ({"space": SPACE, "trials": 5}, "optimize.trials"),
    ({"space": {}}, "optimize.space"),
    ({}, "optimize.space"),
    ({"space": {"a.b": {"low": 2, "high": 1}}}, "optimize.space.a.b.high"),
    ({"space": {"a.b": {"low": 1}}}, "optimize.space.a.b.high"),
    ({"space": {"a.b": {"low": 0, "high": 1, "log": True}}}, "optimize.space.a.b.low"),
    ({"space": {"a.b": {"low": 0, "high": 1, "step": 2}}}, "optimize.space.a.b.step"),
    ({"space": {"a.b": {"low": 1, "high": 9, "step": 1, "log": True}}}, "optimize.space.a.b.step"),
    ({"space": {"a.b": {"low": 0, "high": 1, "stride": 1}}}, "optimize.space.a.b.stride"),
    ({"space": {"a.b": {"choices": []}}}, "optimize.space.a.b.choices"),
    ({"space": {"a.b": {"choices": [1, 1]}}}, "optimize.space.a.b.choices"),
    ({"space": {"a.b": {"choices": [1], "low": 0}}}, "optimize.space.a.b"),
    ({"space": {"a.b": 3}}, "optimize.space.a.b"),
    ({"space": {"control_token": {"choices": ["x"]}}}, "optimize.space.control_token"),
])
def test_a_bad_spec_names_its_key(section: dict, key: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(section)
    assert err.value.key == key


@pytest.mark.parametrize(("space", "key", "reason"), [
    ({"strategy.no_such_knob": {"low": 1, "high": 2}}, "optimize.space.strategy.no_such_knob",
     "not a setting"),
    ({"strategy.target_vol_annual": {"low": -1.0, "high": 1.0}}, "optimize.space.strategy.target_vol_annual",
     "greater than 0"),
    ({"execution.urgency": {"choices": ["low", "panic"]}}, "optimize.space.execution.urgency", "panic"),
    ({"strategy.targets": {"low": 1, "high": 2}}, "optimize.space.strategy.targets", "dictionary"),
])
def test_check_space_refuses_what_the_config_refuses(space: dict, key: str, reason: str) -> None:
    with pytest.raises(SpecError) as err:
        check_space(BASE, parse_spec({"space": space}))
    assert err.value.key == key and reason in err.value.reason


def test_check_space_notices_an_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPBOT_STRATEGY__TARGET_VOL_ANNUAL", "0.7")
    with pytest.raises(SpecError, match="environment"):
        check_space({}, parse_spec({"space": {"strategy.target_vol_annual": {"low": 0.2, "high": 1.0}}}))


def test_params_set_dotted_names_without_touching_the_base() -> None:
    base = {"strategy": {"carry": {"horizon_hours": 24}}}
    out = with_params(base, {"strategy.carry.entry_threshold_bps": 10, "rules.min_flags": 3})
    assert out == {"strategy": {"carry": {"horizon_hours": 24, "entry_threshold_bps": 10}},
                   "rules": {"min_flags": 3}}
    assert base == {"strategy": {"carry": {"horizon_hours": 24}}}


@given(bars=st.integers(10, 5000), folds=st.integers(1, 8), anchored=st.booleans(),
       start=st.integers(0, 10**6))
def test_folds_walk_forward_without_looking_ahead(bars: int, folds: int, anchored: bool, start: int) -> None:
    start_ns, bar_ns = start * HOUR, HOUR
    end_ns = start_ns + bars * bar_ns
    try:
        out = walk_forward(start_ns, start_ns + bars * bar_ns, folds, bar_ns,
                           "anchored" if anchored else "rolling")
    except ValueError:
        assert bars // (folds + 1) < 2
        return
    assert len(out) == folds
    for i, f in enumerate(out):
        assert f.train.start_ns < f.train.end_ns == f.test.start_ns < f.test.end_ns <= end_ns
        assert all((x - start_ns) % bar_ns == 0 for x in (f.train.start_ns, f.test.start_ns, f.test.end_ns))
        first = start_ns if anchored or i == 0 else out[i - 1].test.start_ns
        assert f.train.start_ns == first
        if i:
            assert f.test.start_ns == out[i - 1].test.end_ns  # test windows tile the span after segment 0
    assert out[-1].test.end_ns > end_ns - (folds + 1) * bar_ns


def test_scores_penalise_turnover() -> None:
    m = {"total_return": 0.1, "max_drawdown": 0.05, "sharpe": 1.5, "sortino": 2.0, "turnover": 10.0}
    assert score(m, parse_spec({"space": SPACE})) == pytest.approx(0.1 / 0.05 - 0.1)
    assert score(m, parse_spec({"space": SPACE, "objective": "sharpe", "turnover_penalty": 0})) == 1.5
    flat = {**m, "max_drawdown": 0.0}  # a flat curve does not divide by zero
    assert score(flat, parse_spec({"space": SPACE, "turnover_penalty": 0})) == pytest.approx(10.0)


def test_out_of_sample_chains_the_test_curves_and_sums_flows() -> None:
    spec = parse_spec({"space": SPACE, "objective": "return", "turnover_penalty": 0})
    flows: dict = {**dict.fromkeys(("turnover", "liquidations", "fills", "decisions"), 1),
                   **dict.fromkeys(("fees", "funding_pnl", "slippage", "price_pnl"), "1.25")}
    a = Evaluation(flows, [100.0, 110.0], 3600)
    b = Evaluation(flows, [100.0, 90.0], 3600)
    oos = out_of_sample([a, b], spec)
    assert oos["total_return"] == pytest.approx(110 * 0.9 / 100 - 1)
    assert oos["max_drawdown"] == pytest.approx(0.1)
    assert oos["fees"] == "2.50" and oos["turnover"] == 2  # money stays a decimal string
    assert oos["windows"] == 2 and oos["score"] == pytest.approx(-0.01)


@pytest.mark.parametrize(("train", "test", "warn"), [(2.0, 1.5, False), (2.0, 0.5, True), (0.1, -0.01, True),
                                                     (-1.0, -1.2, False), (-1.0, -2.0, True)])
def test_divergence_rule(train: float, test: float, warn: bool) -> None:
    assert diverges(train, test, 0.5) is warn


def test_storage_urls() -> None:
    assert masked("postgresql+pg8000://optuna:s3cret@db:5432/optuna") == "postgresql+pg8000://optuna:***@db:5432/optuna"
    assert check_storage("sqlite:///x.db") == "sqlite:///x.db"
    assert check_storage("journal:/tmp/j") == "journal:/tmp/j"
    pg = check_storage("postgresql://u:p@h/db")
    assert pg in ("postgresql://u:p@h/db", "postgresql+pg8000://u:p@h/db")
    for bad in ("ftp://x", "study.db", "journal:"):
        with pytest.raises(SpecError) as err:
            check_storage(bad)
        assert err.value.key == "--storage"


# ---- columnar data ------------------------------------------------------------------------------


def test_columnar_candles_hold_the_backtest_readers_bars() -> None:
    start, end = sources.parse_time("2023-06-01", "s"), sources.parse_time("2023-07-01", "e")
    data = rdata.load(rdata.DataSpec((str(CANDLES),)))
    columns = data.candles["BTC-USD"]
    assert columns.bars(start, end) == sources.load_candles(CANDLES, start, end)
    assert len(columns.ts) == 37_660 and columns.ts.dtype.name == "int64"


def test_feather_candles_load_with_utc_times() -> None:
    bars = sources.load_candles(FEATHER)
    assert len(bars) == 5_980
    assert bars[0].ts_ns == sources.parse_time("2024-01-01T00:00", "x")
    assert bars[1].ts_ns - bars[0].ts_ns == HOUR
    csv_twin = sources.load_candles(CANDLES, bars[0].ts_ns, bars[100].ts_ns)
    assert [b.ts_ns for b in csv_twin] == [b.ts_ns for b in bars[:100]]


def test_funding_windows_match_the_backtest_reader() -> None:
    spec = rdata.DataSpec((str(CANDLES),), (str(DYDX_FUNDING),), 1, 0, "2023-01-01", "2023-03-01")
    data = rdata.load(spec)
    assert set(data.funding) == {"BTC-USD"} and data.bar_ns == HOUR
    window = rdata.Window(sources.parse_time("2023-02-01", "s"), sources.parse_time("2023-02-03", "e"))
    _, funding = data.window(window)
    rows = sources.load_funding(DYDX_FUNDING, 1)["BTC-USD"]
    # Each replay step looks up the hour it falls in by the hour's end: (start, end + 1 h].
    want = {t: r for t, r in rows.items() if window.start_ns < t <= window.end_ns + HOUR}
    assert funding["BTC-USD"] == want and len(want) == 49


@pytest.mark.parametrize(("body", "reason"), [
    ("Date,Open,High,Low,Close,Volume\n2023-01-01 00:00,10,12,9,11,1\n2023-01-01 01:00,10,9,8,9,1\n",
     ":3: need 0 < low"),
    ("Date,Open,High,Low,Volume\n2023-01-01 00:00,10,12,9,1\n", "lacks column 'close'"),
    ("Date,Open,High,Low,Close,Volume\n2023-01-01 00:00,10,12,9,11,1\n", "fewer than two"),
    ("Date,Open,High,Low,Close,Volume\nyesterday,10,12,9,11,1\ntoday,10,12,9,11,1\n", "not a date"),
    ("Date,Open,High,Low,Close,Volume\n2023-01-01 00:00,a,12,9,11,1\n2023-01-01 01:00,b,12,9,11,1\n",
     "not numeric"),
    ("Date,Open,High,Low,Close,Volume\n2023-01-01 00:00,10,12,9,11,nan\n2023-01-01 01:00,10,12,9,11,1\n",
     ":2: not a finite number"),
])
def test_bad_candle_files_name_the_option_and_the_problem(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "BTCUSDT_1h.csv"
    path.write_text(body)
    with pytest.raises(sources.SourceError) as err:
        rdata.load(rdata.DataSpec((str(path),)))
    assert err.value.option == "--candles" and reason in err.value.reason


def test_two_candle_files_for_one_market_are_refused() -> None:
    with pytest.raises(sources.SourceError) as err:
        rdata.load(rdata.DataSpec((str(CANDLES), str(FEATHER))))
    assert err.value.option == "--candles" and "two files for BTC-USD" in err.value.reason


def test_research_lock_is_the_runtime_lock_plus_the_research_extra() -> None:
    pin = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)", re.MULTILINE)

    def lock(name: str) -> dict[str, str]:
        text = (ROOT / "requirements" / name).read_text()
        return {m.group(1).lower(): m.group(2) for m in pin.finditer(text)}

    runtime, research, dev = lock("runtime.lock"), lock("research.lock"), lock("dev.lock")
    assert {k: research.get(k) for k in runtime} == runtime
    for name in ("optuna", "numpy", "pyarrow", "pg8000"):
        assert name in research
    for name in ("optuna", "numpy", "pyarrow", "pg8000"):  # what the tests use, installed by `make test`
        assert dev[name] == research[name]


def test_the_compose_profile_runs_n_joined_workers_on_the_coordinators_study() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    coordinator, worker = services["optimize"]["command"], services["optimize-worker"]["command"]
    assert "--join" in worker and "--join" not in coordinator
    assert coordinator[coordinator.index("--workers") + 1] == "0"  # the replicas run every trial
    for option in ("--study", "--config", "--candles", "--funding", "--start", "--end",
                   "--trials", "--folds"):
        assert coordinator[coordinator.index(option) + 1] == worker[worker.index(option) + 1], option
    storage = services["optimize"]["environment"]["PERPBOT_OPTIMIZE_STORAGE"]
    assert storage.startswith("postgresql://") and "--storage" not in coordinator + worker
    assert services["optimize-worker"]["environment"]["PERPBOT_OPTIMIZE_STORAGE"] == storage
    assert "${OPTIMIZE_WORKERS" in str(services["optimize-worker"]["deploy"]["replicas"])
    assert services["optuna-db"]["profiles"] == services["optimize"]["profiles"] == ["optimize"]


def test_the_kubernetes_jobs_share_one_study_through_the_secret() -> None:
    import yaml

    text = (ROOT / "deploy/kubernetes/optimize.yaml").read_text()
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}
    (coordinator,) = docs["Job", "perpbot-optimize"]["spec"]["template"]["spec"]["containers"]
    (worker,) = docs["Job", "perpbot-optimize-workers"]["spec"]["template"]["spec"]["containers"]
    a, b = coordinator["args"], worker["args"]
    assert "--join" in b and "--join" not in a and a[a.index("--workers") + 1] == "0"
    assert a[:a.index("--workers")] == b[:b.index("--join")]  # same config, data, trials, folds, study
    assert coordinator["envFrom"] == worker["envFrom"] == [{"secretRef": {"name": "perpbot-optuna"}}]
    assert "--storage" not in a + b  # PERPBOT_OPTIMIZE_STORAGE comes from the secret
    assert ("Service", "perpbot-optuna-db") in docs and ("StatefulSet", "perpbot-optuna-db") in docs


def test_the_coordinator_waits_for_a_trial_a_joined_worker_is_still_running() -> None:
    """Our workers stop once the count (running trials included) is reached; a joined worker's
    running trial must then be waited for, unless it has made no progress for the stale limit."""
    import time

    import optuna

    from bot.research.study import STALE_RUNNING_SECS, _others_at_work

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    assert _others_at_work(study, time.monotonic())
    assert not _others_at_work(study, time.monotonic() - STALE_RUNNING_SECS - 1)
    study.tell(trial, 1.0)
    assert not _others_at_work(study, time.monotonic())
