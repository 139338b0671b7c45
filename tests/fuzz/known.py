"""Crashes the fuzzers found in code this suite does not own, pinned until they are fixed.

Each entry is (file, function or "*", exception type): an exception of that type whose
innermost frame in the project is that function (any function of that file: "*") is
tolerated by the properties, so the fuzzers keep guarding everything else. Every entry has a
strict-xfail regression test (test_known_crashes.py): when the code is fixed that test
passes, fails as XPASS, and the entry must be removed here.
"""

from __future__ import annotations

import traceback
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"

KNOWN: dict[tuple[str, str, type[BaseException]], str] = {
    # Empty: every crash found so far is fixed and has a regression test in test_known_crashes.py.
}


def innermost_bot_frame(exc: BaseException) -> tuple[str, str] | None:
    """(path under bot/, function) of the deepest traceback frame inside bot/, if any."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(BOT):
            found = (path.relative_to(BOT).as_posix(), frame.name)
    return found


def is_known(exc: BaseException) -> bool:
    where = innermost_bot_frame(exc)
    if where is None:
        return False
    return any(where[0] == path and func in ("*", where[1]) and isinstance(exc, kind)
               for path, func, kind in KNOWN)
