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

from pydantic_settings import SettingsError

BOT = Path(__file__).resolve().parents[2] / "bot"

KNOWN: dict[tuple[str, str, type[BaseException]], str] = {
    # msgspec raises UnicodeDecodeError (not a MsgspecError) on invalid UTF-8 inside a JSON string;
    # the WS feeds read frames with recv(decode=False), so no UTF-8 check happens before.
    # Anywhere in parse.py: the envelope decoders and every channel's `contents` decoder.
    ("venues/dydx/parse.py", "*", UnicodeDecodeError): "invalid UTF-8 in a frame",
    # msgspec raises RecursionError on JSON nested deeper than the recursion limit allows.
    ("venues/dydx/parse.py", "*", RecursionError): "deeply nested JSON in a frame",
    # The same for Binance REST bodies: BinanceRest._decode catches only MsgspecError.
    ("venues/binance/rest.py", "_decode", UnicodeDecodeError): "invalid UTF-8 in a REST body",
    ("venues/binance/rest.py", "_decode", RecursionError): "deeply nested JSON in a REST body",
    # datetime.fromisoformat / .timestamp() on a bad time string: ValueError, not MalformedMessage.
    ("venues/dydx/parse.py", "iso_to_ns", ValueError): "createdAt/updatedAt/effectiveAt/time not ISO-8601",
    # str.isdigit() is True for '²' or '١', which int() refuses.
    ("venues/dydx/parse.py", "_height_event", ValueError): "non-ASCII digits in blockHeight",
    ("venues/dydx/parse.py", "_account_events", ValueError): "non-ASCII digits in clientId",
    # pydantic-settings raises SettingsError (not ValidationError) when a complex field's env
    # value (PERPBOT_MARKETS, PERPBOT_STRATEGY__TARGETS, ...) is not JSON; config.load lets it out.
    ("config.py", "load", SettingsError): "non-JSON value for a list/dict setting in the environment",
    # Control API: aiohttp's request.json() raises RecursionError on deep nesting (a 500), and a
    # news TTL of NaN, inf, 1e308 or a 400-digit integer fails converting to int ns (a 500).
    ("control/api.py", "_json_body", RecursionError): "deeply nested JSON body",
    ("control/api.py", "_news_set", OverflowError): "ttl_secs an integer too large for a float",
    ("control/commands.py", "news_set", OverflowError): "ttl_secs inf or so large that ns overflow",
    ("control/commands.py", "news_set", ValueError): "ttl_secs NaN",
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
