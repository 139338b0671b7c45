"""Kept for branches in flight: the helpers moved to `support` (new code imports from there)."""

from support.daemon import Daemon, base_env
from support.shared import NO_SHARED, SHARED, needs_shared, require_shared
from support.sim import BIN, running_simulator, standalone_sim
from support.wait import eventually

__all__ = ["BIN", "NO_SHARED", "SHARED", "Daemon", "base_env", "eventually", "needs_shared",
           "require_shared", "running_simulator", "standalone_sim"]
