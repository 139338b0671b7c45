"""Walk-forward search on Optuna: one study per fold in one storage, trials run by worker processes.

Workers are plain processes that open the storage, load the fold's study and call
`study.optimize` until the study holds `trials` trials (Optuna's `MaxTrialsCallback`, counting
running ones, so W workers stop together). Local workers (`--workers W`) and workers on other
machines (`perpbot optimize --join` with the same options and `--storage`) are the same code:
the storage is the only thing they share; Optuna's RDB storage (PostgreSQL, MySQL, SQLite) or
its journal file makes trial numbering and results consistent. The coordinator only watches the
trial counts (the per-fold progress), and when a fold is done runs its best parameters on the
test window (and the base config, for comparison) while the workers go on with the next fold.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import TPESampler
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from bot.clock import SYSTEM_CLOCK, monotonic_secs
from bot.errors import ConfigError

from .data import ResearchData
from .folds import Fold, Window
from .objective import Evaluation, evaluate
from .space import OptimizeSpec, SpecError, Value, settings_for

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
POLL_SECS = 0.5
STALE_RUNNING_SECS = 600.0  # a RUNNING trial with no progress for this long is a dead worker's
OPEN_ATTEMPTS = 5


class StudyError(RuntimeError):
    """The study could not run (storage unreachable, workers died, no trial completed)."""


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs besides the data: picklable, identical on every machine."""

    base: dict[str, Any]  # the raw config without [optimize]
    spec: OptimizeSpec
    folds: tuple[Fold, ...]
    trials: int
    storage: str  # an SQLAlchemy URL, or journal:PATH
    name: str
    fingerprint: str = ""  # of the inputs that make trials comparable (see `fingerprint`)
    steps_per_bar: int | None = None  # the candle path's points per bar (None: the backtest's default)

    def study_name(self, fold: Fold) -> str:
        return f"{self.name}.fold{fold.index}"


def fingerprint(base: dict[str, Any], spec: OptimizeSpec, folds: tuple[Fold, ...], markets: list[str],
                steps_per_bar: int | None = None) -> str:
    """A hash of everything that makes trials comparable: config, space, objective, markets, windows."""
    key = json.dumps({"base": base, "spec": spec.describe(), "markets": markets, "steps": steps_per_bar,
                      "folds": [(f.train.start_ns, f.train.end_ns, f.test.start_ns, f.test.end_ns)
                                for f in folds]}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def check_storage(url: str) -> str:
    """The storage URL as Optuna will get it; SpecError for a kind it cannot be."""
    if url.startswith("journal:"):
        if not url.removeprefix("journal:"):
            raise SpecError("--storage", "journal:PATH needs a file path")
        return url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+")[0] not in RDB_SCHEMES:
        raise SpecError("--storage", f"{url.split('://')[0]!r} is not a storage: use postgresql://..., "
                        "sqlite:///FILE or journal:FILE")
    if scheme == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+pg8000://" + url.split("://", 1)[1]  # the driver the research extra ships
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StudyError(f"cannot open the study journal {path}: {exc.strerror}") from None
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # local workers take turns on the file lock
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:  # SQLAlchemy's errors: unreachable host, bad credentials, no driver
            # Processes that open a fresh database together race to create its schema: the
            # losers see "already exists" or a unique-key error and find the schema there on
            # the next attempt. (An unreachable server is retried too, for a few seconds.)
            if attempt == OPEN_ATTEMPTS - 1:
                raise StudyError(f"cannot open the study storage: {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _study(plan: Plan, fold: Fold, storage: optuna.storages.BaseStorage,
           sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(study_name=plan.study_name(fold), storage=storage, direction="maximize",
                               sampler=sampler, load_if_exists=True)


def suggest(trial: optuna.Trial, spec: OptimizeSpec) -> dict[str, Value]:
    params: dict[str, Value] = {}
    for p in spec.space:
        if p.kind == "choice":
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))  # type: ignore
        elif p.kind == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1),
                                               log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def _objective(plan: Plan, data: ResearchData, fold: Fold) -> Callable[[optuna.Trial], float]:
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        params = suggest(trial, plan.spec)
        try:
            settings = settings_for(plan.base, params)
        except ConfigError as exc:  # a combination the config refuses (e.g. budgets over 1)
            trial.set_user_attr("error", f"{exc.key}: {exc.reason}")
            raise optuna.TrialPruned(f"{exc.key}: {exc.reason}") from None
        ev = evaluate(settings, data, fold.train, plan.spec, plan.steps_per_bar)
        trial.set_user_attr("metrics", ev.metrics)
        return float(ev.metrics["score"])

    return run


def run_worker(plan: Plan, data: ResearchData, seed: int | None, parallel: bool) -> None:
    """Work every fold's study until it holds `plan.trials` trials (one worker; any machine)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)
    for fold in plan.folds:
        sampler = TPESampler(seed=None if seed is None else seed + 1000 * fold.index, constant_liar=parallel)
        study = _study(plan, fold, storage, sampler)
        if len(study.get_trials(deepcopy=False)) >= plan.trials:
            continue
        study.optimize(_objective(plan, data, fold), catch=(Exception,),
                       callbacks=[MaxTrialsCallback(plan.trials, states=None)])


def _worker_main(plan: Plan, data: ResearchData, seed: int | None, parallel: bool) -> None:
    parent = os.getppid()

    def orphaned() -> None:  # a coordinator killed outright takes its workers with it
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    run_worker(plan, data, seed, parallel)


def start_workers(plan: Plan, data: ResearchData, workers: int,
                  seed: int | None) -> list[multiprocessing.process.BaseProcess]:
    """W worker processes (spawned: a clean interpreter each, the data pickled over once)."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = []
    for w in range(workers):
        worker_seed = None if seed is None else seed + w
        proc = ctx.Process(target=_worker_main, args=(plan, data, worker_seed, workers > 1),
                           name=f"optimize-worker-{w}", daemon=True)
        proc.start()
        procs.append(proc)
    return procs


def stop_workers(procs: list[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


@dataclass
class Picked:
    """A fold's search result: its best trial."""

    fold: Fold
    trials: int
    completed: int
    best_params: dict[str, Value]
    train: dict[str, Any]
    wait_secs: float


@dataclass
class FoldResult(Picked):
    test: Evaluation  # the best parameters on the test window
    default_test: Evaluation  # the base config on the test window


def prepare(plan: Plan) -> None:
    """Create every fold's study before the workers start (no two processes race to create one).

    The first process to create a study stamps it with the plan's fingerprint; a process whose
    inputs differ (another config, data span or fold count under the same --study name) is
    refused instead of mixing incomparable trials into it.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)
    for fold in plan.folds:
        try:
            study = _study(plan, fold, storage)
            stamped = study.user_attrs.get("fingerprint")
            if stamped is None and plan.fingerprint:
                study.set_user_attr("fingerprint", plan.fingerprint)
        except Exception as exc:
            raise StudyError(f"cannot open the study storage: {type(exc).__name__}: "
                             f"{_first_line(exc)}") from None
        if stamped is not None and plan.fingerprint and stamped != plan.fingerprint:
            raise SpecError("--study", f"{plan.study_name(fold)} at this storage was made from other inputs "
                            "(config, space, data span or folds): use another --study name")


def wait_fold(plan: Plan, fold: Fold, procs: list[multiprocessing.process.BaseProcess],
              on_progress: Callable[[int, float | None], None] | None = None) -> optuna.Study:
    """Block until the fold's study holds `plan.trials` finished trials."""
    study = _study(plan, fold, open_storage(plan.storage))
    finished_before, changed_at = -1, monotonic_secs(SYSTEM_CLOCK)
    while True:
        trials = study.get_trials(deepcopy=False, states=FINISHED)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if on_progress is not None:
            on_progress(len(trials), max((t.value for t in done if t.value is not None), default=None))
        if len(trials) >= plan.trials:
            return study
        if len(trials) != finished_before:
            finished_before, changed_at = len(trials), monotonic_secs(SYSTEM_CLOCK)
        if procs and not any(p.is_alive() for p in procs) and not _others_at_work(study, changed_at):
            codes = sorted({p.exitcode for p in procs}, key=str)
            raise StudyError(f"every worker exited (codes {codes}) with fold {fold.index + 1} at "
                             f"{len(trials)} of {plan.trials} trials")
        time.sleep(POLL_SECS)


def _others_at_work(study: optuna.Study, changed_at: float) -> bool:
    """A joined worker elsewhere still runs a trial (our workers stop when the count, running ones
    included, is reached): wait for it, unless nothing finished for STALE_RUNNING_SECS (a worker
    that died mid-trial leaves it RUNNING for ever)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return bool(running) and monotonic_secs(SYSTEM_CLOCK) - changed_at < STALE_RUNNING_SECS


def pick(fold: Fold, study: optuna.Study, waited: float) -> Picked:
    """The fold's best completed trial (ties: the earliest)."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        failed = [t for t in trials if t.state != TrialState.COMPLETE]
        why = next((t.user_attrs.get("error") for t in failed if t.user_attrs.get("error")), None)
        raise StudyError(f"fold {fold.index + 1}: no trial completed ({len(failed)} failed or pruned"
                         + (f"; first reason: {why})" if why else "; see the worker output)"))
    best = max(done, key=lambda t: (t.value, -t.number))
    return Picked(fold, len(trials), len(done), dict(best.params), dict(best.user_attrs["metrics"]), waited)


def _test_run(plan: Plan, params: dict[str, Value], data: ResearchData, window: Window) -> Evaluation:
    return evaluate(settings_for(plan.base, params), data, window, plan.spec, plan.steps_per_bar)


class Tester:
    """Test-window backtests in two spawned processes: they overlap the next fold's search, and
    the last fold's two runs (best parameters, base config) run side by side."""

    def __init__(self, plan: Plan, data: ResearchData) -> None:
        self._plan, self._data = plan, data
        self._pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, params: dict[str, Value], window: Window) -> Future[Evaluation]:
        return self._pool.submit(_test_run, self._plan, params, self._data, window)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def trial_table(plan: Plan, fold: Fold) -> list[dict[str, Any]]:
    """Every trial of a fold (number, state, value, params, worker), for study.json and tests."""
    study = _study(plan, fold, open_storage(plan.storage))
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "worker": t.user_attrs.get("worker")}
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def storage_for_dir(out: Path) -> str:
    return f"journal:{out / 'optuna.journal'}"
