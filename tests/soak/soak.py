"""Soak: run the daemon on the protocol simulator under scenario churn and watch its resources.

`perpbot run` (sim.mode=protocol: the simulator's servers run inside the daemon and the real
dYdX adapter trades them) runs as a subprocess for SOAK_SECS (default 1800). Every few seconds
a fault scenario is triggered through the simulator's admin endpoint (WS drops and stalls, 5xx
and 429 bursts, book gaps, crossed books, price gaps, funding spikes, liquidity droughts, gRPC
outages, indexer lag). Once a second the soak samples the process: RSS and open file
descriptors from /proc/PID, asyncio task count and event-loop lag from /metrics (bot.loop_monitor).

It fails when, after the warm-up (the first WARMUP_SHARE of the run, at least 20 s):
- RSS grows by more than RSS_BOUND_MIB + RSS_BOUND_SHARE of the post-warm-up baseline,
- open fds grow by more than FD_BOUND, or tasks by more than TASK_BOUND (baseline and end are
  medians of a window, so a reconnect in flight does not count),
- p99 event-loop lag exceeds LAG_P99_BOUND_SECS (from the daemon's lag histogram),
- the daemon dies, stops answering, or does not exit 0 on SIGTERM.

Run: `make soak` (SOAK_SECS=600 make soak), or `python tests/soak/soak.py [secs]`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent
DEFAULT_SECS = 1800.0
SAMPLE_SECS = 1.0
CHURN_SECS = 6.0
WARMUP_SHARE = 0.25
MIN_WARMUP_SECS = 20.0
WINDOW_SECS = 15.0  # baseline: median of the first window after warm-up; end: of the last one

# Room for bounded caches that fill during a run (the order book's level cache alone holds up to
# 2 x 65,536 decimal strings before it resets), so a plateau passes and a steady leak does not.
RSS_BOUND_MIB = 40.0
RSS_BOUND_SHARE = 0.10
FD_BOUND = 8
TASK_BOUND = 10
LAG_P99_BOUND_SECS = 0.25

CHURN: list[dict[str, Any]] = [
    {"name": "ws_drop"},
    {"name": "http_5xx", "count": 3},
    {"name": "price_gap", "market": "BTC-USD", "pct": -3},
    {"name": "ws_stall", "duration_s": 3},
    {"name": "funding_spike", "rate_1h": "0.002", "duration_s": 20},
    {"name": "book_gap"},
    {"name": "http_429", "count": 2, "retry_after_secs": 1},
    {"name": "liquidity_drought", "factor": 0.3, "duration_s": 15},
    {"name": "book_crossed"},
    {"name": "price_gap", "market": "ETH-USD", "pct": 4},
    {"name": "grpc_unavailable", "duration_s": 3},
    {"name": "indexer_lag", "blocks": 20, "duration_s": 5},
]


@dataclass
class Sample:
    t: float  # seconds since start
    rss_mib: float
    fds: int
    tasks: float
    lag_secs: float


@dataclass
class Result:
    secs: float
    warmup_secs: float
    samples: list[Sample]
    lag_p99_secs: float
    scenarios: int
    exit_code: int | None
    resyncs: float = 0.0  # book resyncs the churn caused (the faults did reach the daemon)
    failures: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str, str, str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        head = ("metric", "baseline", "end", "max", "growth", "bound", "ok")
        rows = [head, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        summary = (f"soak: {self.secs:.0f} s (warm-up {self.warmup_secs:.0f} s), {len(self.samples)} "
                   f"samples, {self.scenarios} scenarios triggered, {self.resyncs:.0f} book resyncs, "
                   f"exit code {self.exit_code}")
        return "\n".join([summary, *lines, *(f"FAIL: {f}" for f in self.failures)])


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(client: httpx.Client, url: str) -> dict[str, Any]:
    """The loop monitor's gauges and the lag histogram's cumulative buckets."""
    text = client.get(url + "/metrics").text
    out: dict[str, Any] = {"buckets": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "perpbot_asyncio_tasks":
                out["tasks"] = s.value
            elif s.name == "perpbot_event_loop_lag_seconds":
                out["lag"] = s.value
            elif s.name == "perpbot_event_loop_lag_bucket":
                out["buckets"][float(s.labels["le"])] = s.value
            elif s.name in ("perpbot_book_resyncs_total", "perpbot_malformed_messages_total"):
                key = "resyncs" if "resyncs" in s.name else "malformed"
                out[key] = out.get(key, 0.0) + s.value
    return out


def p99_from_buckets(start: dict[float, float], end: dict[float, float]) -> float:
    """The upper bound of the bucket holding the 99th percentile of the samples in between."""
    bounds = sorted(end)
    counts = [end[b] - start.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= 0.99 * total:
            return bound
    return float("inf")


def soak_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env.update({
        "PERPBOT_STATE_DIR": str(state_dir),
        "PERPBOT_CONTROL__PORT": "0",
        "PERPBOT_SIM__MODE": "protocol",
        "PERPBOT_TELEMETRY__LOG_FORMAT": "json",
        "PERPBOT_TELEMETRY__STATUS_INTERVAL_SECS": "30",
        "PERPBOT_EXECUTION__TWAP_DURATION_SECS": "5",
    })
    return env


def wait_for(cond: Any, timeout_secs: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def run_soak(secs: float, workdir: Path, out: Any = sys.stdout) -> Result:
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "daemon.log"
    warmup = max(MIN_WARMUP_SECS, WARMUP_SHARE * secs)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(BIN / "perpbot"), "run"], cwd=workdir, env=soak_env(state),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        return _observe(proc, state, secs, warmup, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _observe(proc: subprocess.Popen[bytes], state: Path, secs: float, warmup: float, out: Any) -> Result:
    endpoint = state / "daemon.json"
    wait_for(lambda: endpoint.exists() or proc.poll() is not None, 60, "daemon.json")
    if proc.poll() is not None:
        raise RuntimeError(f"daemon exited at start with {proc.returncode}")
    url = json.loads(endpoint.read_text())["url"]
    token = (state / "control.token").read_text().strip()
    client = httpx.Client(timeout=5.0)
    auth = {"Authorization": f"Bearer {token}"}
    status = wait_for(lambda: client.get(url + "/v1/status", headers=auth).json(), 30, "status")
    admin = status["sim"]["admin"]
    samples: list[Sample] = []
    failures: list[str] = []
    churn = itertools.cycle(CHURN)
    scenarios = 0
    start = time.monotonic()
    next_churn = start + CHURN_SECS
    lag_buckets_at_warmup: dict[float, float] | None = None
    last_metrics: dict[str, Any] = {}
    try:
        while (now := time.monotonic()) - start < secs:
            if proc.poll() is not None:
                failures.append(f"daemon exited with {proc.returncode} after {now - start:.0f} s")
                break
            try:
                last_metrics = scrape(client, url)
                samples.append(Sample(now - start, proc_rss_mib(proc.pid), proc_fds(proc.pid),
                                      last_metrics.get("tasks", float("nan")),
                                      last_metrics.get("lag", float("nan"))))
            except (httpx.HTTPError, OSError) as exc:
                failures.append(f"daemon did not answer at {now - start:.0f} s: {exc!r}")
                break
            if lag_buckets_at_warmup is None and now - start >= warmup:
                lag_buckets_at_warmup = dict(last_metrics["buckets"])
            if now >= next_churn:
                spec = next(churn)
                response = client.post(admin + "/scenario", json={"duration_s": 60, **spec})
                if response.status_code != 200:
                    failures.append(f"scenario {spec} refused: {response.status_code} {response.text}")
                scenarios += 1
                next_churn = now + CHURN_SECS
            if len(samples) % 60 == 0:
                s = samples[-1]
                print(f"soak t={s.t:5.0f}s rss={s.rss_mib:6.1f}MiB fds={s.fds} tasks={s.tasks:.0f} "
                      f"lag={s.lag_secs * 1000:.1f}ms scenarios={scenarios}", file=out, flush=True)
            time.sleep(max(0.0, SAMPLE_SECS - (time.monotonic() - now)))
    finally:
        client.close()
    exit_code = stop(proc)
    if exit_code != 0:
        failures.append(f"daemon exit code on SIGTERM was {exit_code}, not 0")
    lag_p99 = p99_from_buckets(lag_buckets_at_warmup or {}, last_metrics.get("buckets", {}))
    result = Result(secs, warmup, samples, lag_p99, scenarios, exit_code,
                    resyncs=last_metrics.get("resyncs", 0.0), failures=failures)
    judge(result)
    return result


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return None


def judge(result: Result) -> None:
    """Fill the table and the failures from the samples after warm-up."""
    after = [s for s in result.samples if s.t >= result.warmup_secs]
    if len(after) < 2 * WINDOW_SECS / SAMPLE_SECS:
        result.failures.append(f"too few samples after warm-up ({len(after)})")
        return
    first = [s for s in after if s.t < after[0].t + WINDOW_SECS]
    last = [s for s in after if s.t > after[-1].t - WINDOW_SECS]

    def check(name: str, get: Any, bound: float, fmt: str) -> None:
        base = statistics.median(get(s) for s in first)
        end = statistics.median(get(s) for s in last)
        peak = max(get(s) for s in after)
        growth = end - base
        ok = growth <= bound
        result.rows.append((name, fmt.format(base), fmt.format(end), fmt.format(peak), fmt.format(growth),
                            f"<= {fmt.format(bound)}", "yes" if ok else "NO"))
        if not ok:
            result.failures.append(f"{name} grew by {fmt.format(growth)} (bound {fmt.format(bound)})")

    rss_base = statistics.median(s.rss_mib for s in first)
    check("rss_mib", lambda s: s.rss_mib, RSS_BOUND_MIB + RSS_BOUND_SHARE * rss_base, "{:.1f}")
    check("open_fds", lambda s: s.fds, FD_BOUND, "{:.0f}")
    check("asyncio_tasks", lambda s: s.tasks, TASK_BOUND, "{:.0f}")
    lag_ok = result.lag_p99_secs <= LAG_P99_BOUND_SECS
    peak_lag = max(s.lag_secs for s in after)
    result.rows.append(("loop_lag_p99_s", "-", f"{result.lag_p99_secs:g}", f"{peak_lag:.3f}", "-",
                        f"<= {LAG_P99_BOUND_SECS:g}", "yes" if lag_ok else "NO"))
    if not lag_ok:
        result.failures.append(f"p99 event-loop lag {result.lag_p99_secs:g} s above {LAG_P99_BOUND_SECS} s")


def main() -> int:
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else float(os.environ.get("SOAK_SECS", DEFAULT_SECS))
    with tempfile.TemporaryDirectory(prefix="perpbot-soak-") as tmp:
        result = run_soak(secs, Path(tmp))
        print(result.table())
        if not result.ok:
            print("\n--- daemon log (last 40 lines) ---\n" + "\n".join(
                (Path(tmp) / "daemon.log").read_text(errors="replace").splitlines()[-40:]))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
