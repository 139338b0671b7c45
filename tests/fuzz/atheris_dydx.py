"""Coverage-guided fuzzing of the dYdX frame parser with atheris (libFuzzer), run by `make fuzz`.

The corpus starts from the real indexer frames in shared/fixtures/dydx/ws. The property is the
one tests/fuzz/test_fuzz_dydx.py checks: `FeedParser.parse` and the feed's `handle_frame` either
work or raise MalformedMessage (handle_frame: never raise), apart from the crashes already
reported in tests/fuzz/known.py. A new crash stops the run and libFuzzer writes the input to
crash-<hash> in the working directory.

    python tests/fuzz/atheris_dydx.py -atheris_runs=200000     # atheris is an optional dep
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris
import structlog

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

with atheris.instrument_imports(include=["bot"]):
    from bot.book import OrderBook
    from bot.errors import MalformedMessage
    from bot.telemetry import Metrics
    from bot.venues.dydx.indexer_ws import IndexerFeed, Subscription
    from bot.venues.dydx.parse import FeedParser

from fuzz.known import is_known  # noqa: E402  (after the instrumented imports, on purpose)
from fuzz.mutate import DYDX_FIXTURES  # noqa: E402

MARKETS = ("BTC-USD", "ETH-USD")


def make_feed() -> IndexerFeed:
    subs = [Subscription("v4_orderbook", m) for m in MARKETS] + [Subscription("v4_markets", None)]
    return IndexerFeed("ws://127.0.0.1:9/unused", subs, {m: OrderBook(m) for m in MARKETS},
                       lambda event: None, Metrics())


FEED = make_feed()


def one_input(data: bytes) -> None:
    try:
        FeedParser().parse(data, 1)
    except MalformedMessage:
        pass
    except Exception as exc:
        if not is_known(exc):
            raise
    try:
        FEED.handle_frame(data, 1)
    except Exception as exc:
        if not is_known(exc):
            raise


def main() -> None:
    # Every malformed frame is logged by the feed: keep libFuzzer's own output readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with tempfile.TemporaryDirectory(prefix="atheris-dydx-") as corpus:
        for path in sorted((DYDX_FIXTURES / "ws").glob("*.json")):
            (Path(corpus) / path.name).write_bytes(path.read_bytes())
        atheris.Setup([*sys.argv, corpus], one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
