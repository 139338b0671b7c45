"""`perpbot optimize`: checks the input, then coordinates (or, with --join, only works) a study.

Input errors raise SpecError(key, reason) (the CLI exits 2 with that one line); a study that
cannot run raises StudyError (exit 1).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.backtest.sources import BAR_PATH_STEPS, SourceError

from . import report, study
from .data import DataSpec, ResearchData, load
from .folds import iso, walk_forward
from .space import SpecError, check_space, read_config


@dataclass(frozen=True)
class Options:
    config_path: Path | None
    data: DataSpec
    trials: str
    folds: str
    workers: str
    out: str
    storage: str | None
    seed: str | None  # None: 42, or random per worker with --join (joined workers must differ)
    study_name: str | None
    join: bool
    bar_path: bool = False


def _int(option: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError(option, f"{text!r} is not a whole number") from None
    if value < low:
        raise SpecError(option, f"must be >= {low} (got {value})")
    return value


def plan_from(opts: Options) -> tuple[study.Plan, ResearchData, int, int | None]:
    """Everything checked, data loaded once: the plan, the data, the worker count and the seed."""
    if opts.config_path is None:
        raise SpecError("--config", "a config file with an [optimize.space] section is required")
    trials = _int("--trials", opts.trials, 1)
    folds = _int("--folds", opts.folds, 1)
    workers = _int("--workers", opts.workers, 0)
    seed_text = opts.seed or ("none" if opts.join else "42")
    seed = None if seed_text.lower() == "none" else _int("--seed", seed_text, 0)
    if workers == 0 and not opts.storage:
        raise SpecError("--workers", "0 (remote workers only) needs a shared --storage")
    if opts.join and not opts.storage:
        raise SpecError("--join", "needs the --storage the coordinator uses")
    if opts.join and workers == 0:
        raise SpecError("--workers", "--join needs at least one worker")
    storage = study.check_storage(opts.storage) if opts.storage else study.storage_for_dir(Path(opts.out))
    base, spec = read_config(opts.config_path)
    check_space(base, spec)
    try:
        data = load(opts.data)
    except SourceError as exc:
        raise SpecError(exc.option, exc.reason) from None
    try:
        fold_list = tuple(walk_forward(data.start_ns, data.end_ns, folds, data.bar_ns, spec.walk,
                                       min_bars=24))
    except ValueError as exc:
        raise SpecError("--folds", f"{exc} (widen --start/--end or use fewer folds)") from None
    steps = BAR_PATH_STEPS if opts.bar_path else None
    stamp = study.fingerprint(base, spec, fold_list, sorted(data.candles), steps)
    name = opts.study_name or f"perpbot-{stamp[:12]}"
    return study.Plan(base, spec, fold_list, trials, storage, name, stamp, steps), data, workers, seed


class _Progress:
    """One progress bar per fold on a terminal; otherwise one line per finished fold."""

    def __init__(self, total_folds: int, trials: int) -> None:
        self.tty = sys.stderr.isatty()
        self.total, self.trials = total_folds, trials
        self._progress: Any = None
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("best {task.fields[best]}"), TimeElapsedColumn())
            self._progress.start()

    def fold(self, index: int) -> Any:
        if self._progress is None:
            return None
        task = self._progress.add_task(f"fold {index + 1}/{self.total}", total=self.trials, best="-")

        def update(done: int, best: float | None) -> None:
            self._progress.update(task, completed=min(done, self.trials),
                                  best="-" if best is None else f"{best:.4g}")
        return update

    def done(self, picked: study.Picked) -> None:
        line = (f"fold {picked.fold.index + 1}/{self.total}: {picked.trials} trials in "
                f"{picked.wait_secs:.1f} s, best train score {picked.train['score']:.4g} "
                "(testing it on the next window)")
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def run(opts: Options) -> dict[str, Any]:
    """Run the study; returns the one-line result the CLI prints."""
    started = time.perf_counter()
    plan, data, workers, seed = plan_from(opts)
    study.prepare(plan)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through stop_workers below
    procs = study.start_workers(plan, data, workers, seed)
    if opts.join:
        try:
            for proc in procs:
                proc.join()
        finally:
            study.stop_workers(procs)
        codes = [p.exitcode for p in procs]
        if any(codes):
            raise study.StudyError(f"a worker failed (exit codes {codes})")
        return {"study": plan.name, "joined": True, "workers": workers}
    progress = _Progress(len(plan.folds), plan.trials)
    tester = study.Tester(plan, data)
    results = []
    try:
        pending = []
        for fold in plan.folds:
            t0 = time.perf_counter()
            fold_study = study.wait_fold(plan, fold, procs, progress.fold(fold.index))
            picked = study.pick(fold, fold_study, time.perf_counter() - t0)
            progress.done(picked)
            runs = tester.submit(picked.best_params, fold.test), tester.submit({}, fold.test)
            pending.append((picked, *runs))
        for picked, test, default in pending:
            results.append(study.FoldResult(**vars(picked), test=test.result(),
                                            default_test=default.result()))
    finally:
        progress.stop()
        tester.close()
        study.stop_workers(procs)
    meta = {"study": plan.name, "storage": report.masked(plan.storage), "trials_per_fold": plan.trials,
            "workers": workers, "seed": seed, "wall_secs": round(time.perf_counter() - started, 1),
            "bar_path": opts.bar_path,
            "data": {"markets": sorted(data.candles), "bar_secs": data.bar_ns // 1_000_000_000,
                     "start": iso(data.start_ns), "end": iso(data.end_ns),
                     "candles": list(opts.data.candle_paths), "funding": list(opts.data.funding_paths)}}
    doc = report.build(results, plan.spec, meta)
    out = Path(opts.out)
    report.write(doc, out)
    return {"study": plan.name, "out": str(out / "study.json"), "wall_secs": doc["wall_secs"],
            "oos_score": doc["oos"]["score"], "oos_return": doc["oos"]["total_return"],
            "warnings": len(doc["warnings"])}


def echo(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
