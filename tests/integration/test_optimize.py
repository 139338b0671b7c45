"""`perpbot optimize` end to end on real candles: determinism, two workers on one storage, bad input."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.research import data as rdata
from bot.research.folds import walk_forward
from bot.research.space import SpecError, parse_spec
from bot.research.study import Plan, check_storage, prepare, run_worker, trial_table

SHARED = Path(__file__).resolve().parents[3] / "shared"
CANDLES = SHARED / "data/candles/BTCUSDT_1h_2020-01_2024-04.csv"
FUNDING = SHARED / "data/funding/BTC-USDT_dydx_2022-01-01_2024-01-01_funding_history.csv"
BASE = {"markets": ["BTC-USD"], "strategy": {"targets": {"BTC-USD": "1"}}}
SPACE = {"strategy.target_vol_annual": {"low": 0.2, "high": 1.0},
         "strategy.max_leverage": {"low": 0.5, "high": 3.0},
         "strategy.carry.entry_threshold_bps": {"low": 5, "high": 40, "step": 5}}
CONFIG = """markets = ["BTC-USD"]
[strategy]
targets = { "BTC-USD" = "1" }
[optimize.space]
"strategy.target_vol_annual" = { low = 0.2, high = 1.0 }
"strategy.max_leverage" = { low = 0.5, high = 3.0 }
"""
DATA_ARGS = ["--candles", str(CANDLES), "--funding", str(FUNDING), "--funding-interval", "1h",
             "--start", "2023-06-01", "--end", "2023-06-07"]


@pytest.fixture(scope="module")
def small() -> rdata.ResearchData:
    return rdata.load(rdata.DataSpec((str(CANDLES),), (str(FUNDING),), 1, 0, "2023-06-01", "2023-06-05"))


def _plan(data: rdata.ResearchData, storage: str, trials: int = 4) -> Plan:
    folds = tuple(walk_forward(data.start_ns, data.end_ns, 1, data.bar_ns))
    return Plan(BASE, parse_spec({"space": SPACE}), folds, trials, storage, "det")


def _run(tmp_path: Path, data: rdata.ResearchData, seed: int, tag: str) -> list[dict]:
    plan = _plan(data, f"journal:{tmp_path / tag}.journal")
    prepare(plan)
    run_worker(plan, data, seed, parallel=False)
    keys = ("number", "state", "value", "params")
    return [{k: t[k] for k in keys} for t in trial_table(plan, plan.folds[0])]


def test_same_seed_same_trials(tmp_path: Path, small: rdata.ResearchData) -> None:
    first, again, other = (_run(tmp_path, small, seed, tag) for seed, tag in ((7, "a"), (7, "b"), (8, "c")))
    assert len(first) == 4 and all(t["state"] == "COMPLETE" for t in first)
    assert first == again  # same parameters, same scores, same order
    assert [t["params"] for t in other] != [t["params"] for t in first]
    assert len({t["value"] for t in first}) > 1  # the parameters move the score: the search has a signal


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env["PERPBOT_STATE_DIR"] = str(tmp_path / "state")
    return env


def _postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port (skip when PostgreSQL is not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed")
    bin_dir = Path(found[-1]).parent
    # Outside pytest's 0700 temp root: the server may run as another user.
    tmp_path = Path(tempfile.mkdtemp(prefix="perpbot-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the packaged postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp_path, "postgres")
    data = tmp_path / "pg"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "optuna", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(tmp_path / "pg.log"),
                    "-o", f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "optuna", "optuna"], check=True, capture_output=True)
        yield f"postgresql://optuna@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Both kinds of shared study store: SQLite locally, PostgreSQL as a cluster would use."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'study.db'}"
    else:
        yield from _postgres()


def test_a_coordinator_and_a_joined_worker_share_one_study(tmp_path: Path, storage: str) -> None:
    config = tmp_path / "research.toml"
    config.write_text(CONFIG)
    common = [sys.executable, "-c", "from bot.cli import main; main()"]
    args = ["optimize", "--config", str(config), *DATA_ARGS, "--trials", "8", "--folds", "1",
            "--storage", storage, "--study", "shared", "--bar-path"]
    coordinator = subprocess.Popen([*common, *args, "--workers", "1", "--out", str(tmp_path / "out")],
                                   cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    joined = subprocess.Popen([*common, *args, "--join", "--out", str(tmp_path / "unused")], cwd=tmp_path,
                              env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = coordinator.communicate(timeout=600)
    joined_out, joined_err = joined.communicate(timeout=600)
    assert coordinator.returncode == 0, err
    assert joined.returncode == 0, joined_err
    assert json.loads(joined_out)["joined"] is True
    assert json.loads(out.splitlines()[-1])["out"] == str(tmp_path / "out" / "study.json")
    doc = json.loads((tmp_path / "out" / "study.json").read_text())
    (fold,) = doc["folds"]
    assert set(fold) >= {"train", "test", "best_params", "train_metrics", "test_metrics"}
    assert fold["train"]["start"] == "2023-06-01T00:00:00Z" and fold["test"]["end"] == "2023-06-07T00:00:00Z"
    assert set(fold["best_params"]) == {"strategy.target_vol_annual", "strategy.max_leverage"}
    assert doc["oos"]["windows"] == 1 and "total_return" in doc["oos"] and doc["bar_path"] is True
    assert isinstance(fold["test_metrics"]["fees"], str)  # money as decimal strings
    assert 8 <= fold["trials"] <= 9  # two workers may each start one past the count they both saw
    assert "fold 1" in (tmp_path / "out" / "report.txt").read_text()
    plan = Plan({}, parse_spec({"space": SPACE}), tuple(walk_forward(0, 48, 1, 1)), 8, check_storage(storage),
                "shared")
    workers = {t["worker"] for t in trial_table(plan, plan.folds[0])}
    assert len(workers) == 2, workers  # trials came from both processes, numbered by one storage


@pytest.mark.parametrize(("extra", "config", "key"), [
    (["--trials", "0"], CONFIG, "--trials"),
    (["--folds", "two"], CONFIG, "--folds"),
    (["--workers", "0"], CONFIG, "--workers"),
    (["--join"], CONFIG, "--join"),
    (["--storage", "ftp://db/x"], CONFIG, "--storage"),
    (["--seed", "-1"], CONFIG, "--seed"),
    (["--funding-interval", "4x"], CONFIG, "--funding-interval"),
    (["--funding-interval", "8h"], CONFIG, "--funding-interval"),  # the file is hourly
    (["--candles-offset", "3.5"], CONFIG, "--candles-offset"),
    (["--folds", "200"], CONFIG, "--folds"),
    ([], 'markets = ["BTC-USD"]\n', "optimize"),
    ([], CONFIG.replace("strategy.max_leverage", "strategy.max_levrage"),
     "optimize.space.strategy.max_levrage"),
    ([], CONFIG + '"rules.min_flags" = { low = 1, high = 9 }\n', "optimize.space.rules.min_flags"),
    ([], CONFIG + "[optimize.extra]\n", "optimize.extra"),
    ([], CONFIG.replace('"1"', '"one"'), "strategy.targets.BTC-USD"),
])
def test_bad_input_exits_2_with_one_line_naming_the_key(tmp_path: Path, extra: list[str], config: str,
                                                        key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "research.toml"
    path.write_text(config)
    result = CliRunner().invoke(cli, ["optimize", "--config", str(path), *DATA_ARGS, "--out",
                                      str(tmp_path / "out"), *extra])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"perpbot: {key}:"), lines
    assert not (tmp_path / "out" / "study.json").exists()


def test_a_missing_candle_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(CONFIG)
    for option in ("--candles", "--funding"):
        args = {"--candles": str(CANDLES), "--funding": str(FUNDING), option: "nope_BTCUSDT.csv"}
        argv = [x for kv in args.items() for x in kv]
        result = CliRunner().invoke(cli, ["optimize", "--config", "c.toml", *argv])
        assert result.exit_code == 2
        assert result.stderr == f"perpbot: {option}: file not found: nope_BTCUSDT.csv\n"


def test_a_study_refuses_a_process_with_other_inputs(tmp_path: Path, small: rdata.ResearchData) -> None:
    plan = _plan(small, f"journal:{tmp_path / 's.journal'}")
    prepare(replace(plan, fingerprint="aaaa"))
    prepare(replace(plan, fingerprint="aaaa"))  # the same inputs join
    with pytest.raises(SpecError) as err:
        prepare(replace(plan, fingerprint="bbbb"))
    assert err.value.key == "--study" and "other inputs" in err.value.reason
