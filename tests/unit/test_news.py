"""News flag sources: calendar windows, operator TTLs, feed keyword hits (real HTTP on port 0)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from support.clock import ManualClock

from bot.config import FeedSettings
from bot.errors import ConfigError
from bot.news.board import NewsBoard, NewsHit
from bot.news.calendar import CalendarEvent, load_calendar, parse_ics, parse_toml
from bot.news.feeds import FeedPoller, compile_keywords, match_entry
from bot.news.state import load_operator_items, save_operator_items

SEC = 1_000_000_000
T0 = 1_765_393_200 * SEC  # 2025-12-10T19:00:00Z

ICS = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:1
SUMMARY:FOMC
DTSTART:20251210T190000Z
DTEND:20251210T193000Z
END:VEVENT
BEGIN:VEVENT
UID:2
SUMMARY:CPI
DTSTART;VALUE=DATE:20251211
END:VEVENT
END:VCALENDAR
"""

TOML = """
[[events]]
name = "FOMC"
start = 2025-12-10T19:00:00Z
end = "2025-12-10T19:30:00Z"

[[events]]
name = "NFP"
start = 2025-12-05T13:30:00
before_secs = 60
after_secs = 60
"""


def test_parse_ics_and_toml_agree() -> None:
    ics = parse_ics(ICS)
    assert (ics[0].name, ics[0].start_ns, ics[0].end_ns) == ("FOMC", T0, T0 + 1800 * SEC)
    assert ics[1].name == "CPI" and ics[1].start_ns == 1_765_411_200 * SEC  # all-day: 00:00 UTC
    toml = parse_toml(TOML)
    assert toml[1] == CalendarEvent("FOMC", T0, T0 + 1800 * SEC)
    assert toml[0].name == "NFP" and toml[0].before_secs == 60


def test_bad_calendars_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_toml('[[events]]\nname = "x"\n')
    assert err.value.key == "news.calendar_path"
    with pytest.raises(ConfigError):
        load_calendar(tmp_path / "missing.toml")
    path = tmp_path / "cal.ics"
    path.write_bytes(ICS)
    assert len(load_calendar(path)) == 2


@pytest.mark.parametrize(
    ("offset_secs", "active"),
    [(-1801, False), (-1800, True), (0, True), (1800 + 3599, True), (1800 + 3600, False)],
)
def test_calendar_window_edges(offset_secs: int, active: bool) -> None:
    board = NewsBoard(parse_toml(TOML), before_secs=1800, after_secs=3600)
    assert (board.active(T0 + offset_secs * SEC) == ("calendar:FOMC",)) is active


def test_board_cache_follows_time_both_ways() -> None:
    board = NewsBoard(parse_toml(TOML), before_secs=1800, after_secs=3600)
    nfp = parse_toml(TOML)[0].start_ns
    assert board.active(nfp) == ("calendar:NFP",)
    assert board.active(nfp + 61 * SEC) == ()
    assert board.active(T0) == ("calendar:FOMC",)
    assert board.active(nfp) == ("calendar:NFP",)  # going back (replays) recomputes


def test_operator_ttl_and_feed_hits_per_market() -> None:
    board = NewsBoard()
    board.set_operator("FOMC", T0 + 7200 * SEC)
    board.add_hit(NewsHit("feed:sec", T0 + 60 * SEC, ("BTC-USD",)))
    assert board.active(T0, "BTC-USD") == ("FOMC", "feed:sec")
    assert board.active(T0, "ETH-USD") == ("FOMC",)
    assert board.active(T0 + 61 * SEC, "BTC-USD") == ("FOMC",)
    assert board.active(T0 + 7200 * SEC) == ()
    board.clear_operator()
    assert board.active(T0) == ("feed:sec",)
    assert [d["source"] for d in board.describe(T0)] == ["feed"]


def test_operator_items_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    save_operator_items(path, {"FOMC": T0 + 10 * SEC, "old": T0 - SEC})
    assert load_operator_items(path, T0) == {"FOMC": T0 + 10 * SEC}
    path.write_text("{not json")
    assert load_operator_items(path, T0) == {}
    assert load_operator_items(tmp_path / "none.json", T0) == {}


def test_keyword_matching_is_whole_word_and_case_insensitive() -> None:
    pattern = compile_keywords(["SEC", "hack", "rate hike"])
    assert match_entry("SEC sues exchange", "", pattern) == "SEC"
    assert match_entry("Second quarter", "", pattern) is None
    assert match_entry("quiet", "bridge HACK drains funds", pattern) == "HACK"
    assert match_entry("Fed signals a rate hike", "", pattern) == "rate hike"
    assert match_entry("anything", "", compile_keywords([])) is None


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>1</guid><title>Exchange hack drains hot wallet</title><pubDate>{date}</pubDate></item>
<item><guid>2</guid><title>Markets calm</title><pubDate>{date}</pubDate></item>
<item><guid>3</guid><title>Old hack story</title><pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate></item>
</channel></rss>"""


@pytest.fixture
async def feed_server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}

    async def good(request: web.Request) -> web.Response:
        hits["good"] = hits.get("good", 0) + 1
        return web.Response(text=RSS.format(date="Wed, 10 Dec 2025 19:00:00 GMT"),
                            content_type="application/rss+xml")

    async def broken(request: web.Request) -> web.Response:
        hits["broken"] = hits.get("broken", 0) + 1
        return web.Response(status=503)

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\x00\x01 not a feed", content_type="text/plain")

    async def missing(request: web.Request) -> web.Response:
        hits["missing"] = hits.get("missing", 0) + 1
        return web.Response(status=404)

    app = web.Application()
    app.add_routes([web.get("/good", good), web.get("/broken", broken), web.get("/garbage", garbage),
                    web.get("/missing", missing)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def test_feed_poller_hits_and_survives_bad_feeds(feed_server) -> None:  # type: ignore[no-untyped-def]
    url, served = feed_server
    feeds = tuple(FeedSettings(url=f"{url}/{name}", keywords=("hack",), window_secs=3600,
                               markets=("BTC-USD",) if name == "good" else ())
                  for name in ("good", "broken", "garbage", "missing"))
    board = NewsBoard()
    clock = ManualClock(T0 + 600 * SEC)
    slept: list[float] = []

    async def no_sleep(secs: float) -> None:
        slept.append(secs)

    poller = FeedPoller(feeds, board, clock, 60, request_timeout_secs=2, max_attempts=3, sleep=no_sleep)
    assert await poller.poll_all() == 1  # entry 1 is fresh; entry 3 is outside the window
    assert board.active(clock.now, "BTC-USD") == ("feed:hack",)
    assert board.active(clock.now, "ETH-USD") == ()
    assert served["broken"] == 3 and len(slept) == 2  # 503 retried with backoff, then given up
    assert served["missing"] == 1  # a 404 is not retried
    errors = {u.rsplit("/", 1)[1]: st.errors for u, st in poller.state.items()}
    assert errors == {"good": 0, "broken": 1, "garbage": 1, "missing": 1}
    assert await poller.poll_all() == 0  # entries already seen do not hit again
    clock.now = T0 + 3601 * SEC
    assert board.active(clock.now, "BTC-USD") == ()  # the window (from publication) has passed
