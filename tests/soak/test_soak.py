"""The soak test, short: `perpbot run` on the protocol simulator under scenario churn.

SOAK_TEST_SECS sets the duration (default 120 s); `make soak` runs the long one (30 min).
The bounds and what is sampled are in tests/soak/soak.py.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from soak.soak import run_soak

SECS = float(os.environ.get("SOAK_TEST_SECS", "120"))


@pytest.mark.slow
def test_daemon_under_scenario_churn_does_not_grow(tmp_path: Path) -> None:
    progress = io.StringIO()
    result = run_soak(SECS, tmp_path, out=progress)
    print(result.table())  # shown with -s, and on failure
    log_tail = "\n".join((tmp_path / "daemon.log").read_text(errors="replace").splitlines()[-30:])
    assert result.ok, f"{result.table()}\n{progress.getvalue()}\n--- daemon log ---\n{log_tail}"
    assert result.scenarios >= SECS / 10 and result.resyncs > 0  # the churn ran and reached the daemon
