"""RSS/Atom feed poller: keyword hits in new entries raise the news flag for a window.

IO lives here (httpx, one client with an explicit Timeout); matching is the pure `match_entry`.
A bad feed never crashes the daemon: transport errors, 5xx and 429 are retried with jittered
exponential backoff up to `max_attempts`, then counted and logged like any other failure (4xx,
unparsable body); the next poll tries again.

Which entries count: an entry with a published/updated time is a hit while that time is inside
its feed's window; an entry without one counts from when we first see it, except on the first
poll of a feed, whose undated entries are the baseline (old news).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import feedparser
import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from bot.clock import NS_PER_SEC, Clock
from bot.config import FeedSettings
from bot.news.board import NewsBoard, NewsHit

log = structlog.get_logger("news")
_SEEN_LIMIT = 5000


class _Retryable(Exception):
    """A fetch failure worth retrying: network error, 5xx, 429."""


def compile_keywords(keywords: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive whole-word pattern for a feed's keywords."""
    words = sorted({k.strip() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def match_entry(title: str, summary: str, pattern: re.Pattern[str]) -> str | None:
    """Return the keyword (as written in the entry) found in the title or summary, if any."""
    found = pattern.search(title) or pattern.search(summary)
    return found.group(1) if found else None


def entry_time_ns(entry: Any) -> int | None:
    """Published (else updated) time of a parsed entry, ns since the epoch, if it has one."""
    for key in ("published_parsed", "updated_parsed"):
        value = entry.get(key)
        if value:
            return calendar.timegm(value) * NS_PER_SEC
    return None


@dataclass
class _FeedState:
    pattern: re.Pattern[str]
    seen: set[str]
    polls: int = 0
    errors: int = 0
    hits: int = 0


class FeedPoller:
    """Polls configured feeds on an interval and posts keyword hits to the news board."""

    name = "news_feeds"

    def __init__(
        self,
        feeds: tuple[FeedSettings, ...],
        board: NewsBoard,
        clock: Clock,
        poll_interval_secs: float,
        request_timeout_secs: float = 10.0,
        max_attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._feeds = feeds
        self._board = board
        self._clock = clock
        self._interval = poll_interval_secs
        self._timeout = httpx.Timeout(request_timeout_secs, connect=min(5.0, request_timeout_secs))
        self._max_attempts = max_attempts
        self._transport = transport
        self._sleep = sleep or clock.sleep
        self.state = {f.url: _FeedState(compile_keywords(f.keywords), set()) for f in feeds}

    async def run(self) -> None:
        """Poll every feed, sleep, repeat until cancelled."""
        if not self._feeds:
            return
        async with self._client() as client:
            while True:
                await self.poll_all(client)
                await self._clock.sleep(self._interval)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, transport=self._transport,
                                 follow_redirects=True, headers={"User-Agent": "perpbot-news/1"})

    async def poll_all(self, client: httpx.AsyncClient | None = None) -> int:
        """Poll each feed once; return the number of new hits."""
        if client is None:
            async with self._client() as own:
                return await self.poll_all(own)
        hits = 0
        for feed in self._feeds:
            hits += await self.poll_once(client, feed)
        return hits

    async def poll_once(self, client: httpx.AsyncClient, feed: FeedSettings) -> int:
        """Fetch and scan one feed; failures are counted and logged, never raised."""
        st = self.state[feed.url]
        st.polls += 1
        try:
            body = await self._fetch(client, feed.url)
        except (_Retryable, httpx.HTTPError) as exc:
            st.errors += 1
            log.warning("news_feed_failed", url=feed.url, error=str(exc) or repr(exc), errors=st.errors)
            return 0
        parsed = feedparser.parse(body)
        if parsed.get("bozo") and not parsed.entries:
            st.errors += 1
            log.warning("news_feed_unparsable", url=feed.url,
                        error=repr(parsed.get("bozo_exception")), errors=st.errors)
            return 0
        hits = self.scan(feed, parsed.entries, first=st.polls == 1)
        st.hits += hits
        return hits

    def scan(self, feed: FeedSettings, entries: Iterable[Any], first: bool = False) -> int:
        """Match entries against the feed's keywords and post hits to the board."""
        st = self.state[feed.url]
        now = self._clock.now_ns()
        window_ns = int(feed.window_secs * NS_PER_SEC)
        hits = 0
        for entry in entries:
            key = str(entry.get("id") or entry.get("link") or entry.get("title", ""))
            if not key or key in st.seen:
                continue
            st.seen.add(key)
            keyword = match_entry(str(entry.get("title", "")), str(entry.get("summary", "")), st.pattern)
            if keyword is None:
                continue
            published = entry_time_ns(entry)
            if published is None and first:
                continue
            until = (published if published is not None else now) + window_ns
            if until <= now:
                continue
            self._board.add_hit(NewsHit(f"feed:{keyword.lower()}", until, tuple(feed.markets)))
            log.info("news_feed_hit", url=feed.url, keyword=keyword, title=str(entry.get("title", ""))[:200],
                     until_ns=until)
            hits += 1
        if len(st.seen) > _SEEN_LIMIT:
            st.seen = set(list(st.seen)[-_SEEN_LIMIT // 2:])
        return hits

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> bytes:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(60),
            wait=wait_exponential_jitter(initial=1, max=30),
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await client.get(url)
                except httpx.TransportError as exc:
                    raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(f"HTTP {response.status_code}")
                response.raise_for_status()
                return response.content
        raise AssertionError("unreachable")  # pragma: no cover
