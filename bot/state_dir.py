"""The state directory (store, control token, endpoint file) is private to the daemon's user.

Created 0700 (an existing one of ours is tightened to it, with a warning); a directory the
process cannot write (a bind mount owned by root, a read-only volume) is a config error naming
it: one line and exit 2, not a traceback and a restart loop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from bot.errors import ConfigError

log = structlog.get_logger("state_dir")
PRIVATE_DIR = 0o700


def prepare_state_dir(path: Path) -> None:
    """Create `path` (0700) if needed, keep it private, and check that this process can write it."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            log.warning("state_dir_tightened", path=str(path), mode=oct(stat.S_IMODE(info.st_mode)))
            path.chmod(PRIVATE_DIR)
        probe = path / f".write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError("state_dir", f"{path} is not writable by this process (uid {os.getuid()}): "
                                       f"{exc.strerror}; chown it to that uid or set PERPBOT_STATE_DIR"
                          ) from None


def check_private_file(path: Path, key: str) -> None:
    """Refuse a secret file that group or others may read (its content may already have leaked)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(key, f"{path} is readable by group or others (mode {oct(mode)}): "
                               "chmod 600 it, or delete it for a new one")
