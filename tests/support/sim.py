"""The exchange simulator for tests: `perpbot sim` as a subprocess, or in process on this loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


class SimProcess:
    """`perpbot sim --seed SEED [ARGS]` as a subprocess; `endpoints` is its first stdout line (JSON)."""

    def __init__(self, seed: int, *args: str) -> None:
        self.proc = subprocess.Popen([str(BIN / "perpbot"), "sim", "--seed", str(seed), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert self.proc.stdout is not None
            self.endpoints: dict[str, Any] = json.loads(self.proc.stdout.readline())
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_secs: float = 10) -> int:
        """SIGTERM and the exit code; a simulator still running after the timeout is killed (and fails)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_secs)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@contextlib.contextmanager
def standalone_sim(seed: int, *args: str) -> Iterator[dict[str, Any]]:
    """`perpbot sim --seed SEED` as a subprocess for the block; yields its endpoints line."""
    sim = SimProcess(seed, *args)
    try:
        yield sim.endpoints
    finally:
        sim.stop()


@contextlib.asynccontextmanager
async def running_simulator(**kwargs: Any) -> AsyncIterator[Any]:
    """A started `bot.sim.runner.Simulator(**kwargs)`, stepped in the background until the block ends."""
    from bot.sim.runner import Simulator

    simulator = Simulator(**kwargs)
    await simulator.start()
    async with asyncio.TaskGroup() as tg:
        stepper = tg.create_task(simulator.run())
        try:
            yield simulator
        finally:
            stepper.cancel()
    await simulator.stop()
