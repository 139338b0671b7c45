"""The Notifier service: EventBus -> dedupe -> per-channel outbox -> rate limit -> send with retry.

Trading never waits for a notification: the engine's `EventBus.publish` is a `put_nowait` into
this service's bounded queue, formatting happens in this service's task, and each channel sends
from its own outbox in its own task, so a dead or slow endpoint only fills (and then drops from)
that channel's outbox. Retries are bounded in attempts and in time.

Outboxes are ordered by urgency: a kill or a risk-mode change is sent before the fills and
decisions queued ahead of it, and is not held back by the rate limit (it still uses up a token);
when an outbox is full only routine messages are dropped; urgent ones get a second
`queue_size` of room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from bot.clock import NS_PER_SEC, Clock
from bot.config import NotifySettings, Settings
from bot.events import EventBus, OperatorEvent
from bot.notify.channels import (
    Channel,
    DeliveryError,
    DeliveryRateLimited,
    TelegramChannel,
    TransientDeliveryError,
    WebhookChannel,
)
from bot.notify.format import Message, daily_summary_fields, format_event
from bot.ratelimit import TokenBucket
from bot.telemetry import Redactor

log = structlog.get_logger("notify")
Sleep = Callable[[float], Awaitable[None]]
# Lower is sent first; same urgency keeps arrival order.
URGENCY = {"kill": 0, "risk_mode_changed": 0, "watchdog_alert": 1, "component_error": 1, "market_status": 1,
           "daily_summary": 2, "decision": 3, "fill": 3}
ROUTINE = 2  # urgency above this is dropped first when an outbox is full
RATE_LIMIT_POLL_SECS = 0.25


class _WaitRetryAfter(wait_base):
    """Wait what a 429 asked for (capped); otherwise fall back to exponential backoff with jitter."""

    def __init__(self, fallback: wait_base, cap_secs: float) -> None:
        self._fallback = fallback
        self._cap = cap_secs

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, DeliveryRateLimited):
            return min(exc.retry_after_secs, self._cap)
        return float(self._fallback(retry_state))


class Notifier:
    """Subscribes to operator events and delivers them to every configured channel."""

    name = "notifier"

    def __init__(self, settings: NotifySettings, channels: list[Channel], bus: EventBus, clock: Clock,
                 status_fn: Callable[[], dict[str, Any]] | None = None,
                 redactor: Redactor | None = None, sleep: Sleep | None = None) -> None:
        self._settings = settings
        self._channels = channels
        self._bus = bus
        self._clock = clock
        self._status_fn = status_fn
        self._redactor = redactor or Redactor()
        self._sleep: Sleep = sleep or asyncio.sleep
        # Subscribe now: events published between wiring and run() wait in the queue.
        # Generous: formatting is fast, and the bus drops (rather than waits) when this is full.
        self._events = bus.subscribe(maxsize=max(1000, settings.queue_size))
        self._outboxes: dict[str, asyncio.PriorityQueue[tuple[int, int, Message]]] = {
            c.name: asyncio.PriorityQueue() for c in channels
        }
        self._seq = 0
        self._last_sent_ns: dict[tuple[str, str], int] = {}
        self._window_ns = int(settings.dedupe_window_secs * NS_PER_SEC)
        self.counts = {"sent": 0, "suppressed": 0, "dropped": 0, "failed": 0}

    async def run(self) -> None:
        """Consume events and send until cancelled; a failing endpoint is logged, never fatal."""
        s = self._settings
        timeout = httpx.Timeout(s.request_timeout_secs)
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        try:
            async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._consume(), name="notify_consume")
                    for channel in self._channels:
                        tg.create_task(self._send_loop(channel, client), name=f"notify_{channel.name}")
                    if s.daily_summary_utc is not None and self._status_fn is not None:
                        tg.create_task(self._daily_summaries(s.daily_summary_utc), name="notify_daily")
        finally:
            self._bus.unsubscribe(self._events)

    # ---- events -> messages ------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            self.handle(await self._events.get())

    def handle(self, event: OperatorEvent) -> None:
        """Format one event and queue it on every channel, unless filtered or a duplicate."""
        if event.kind not in self._settings.kinds:
            return
        message = format_event(event, self._settings.min_fill_notional_usd)
        if message is not None:
            self.offer(message)

    def offer(self, message: Message) -> bool:
        """Queue a message on every channel; False when it was a duplicate within the window."""
        now = self._clock.now_ns()
        dedupe_key = (message.kind, message.key)
        last = self._last_sent_ns.get(dedupe_key)
        if last is not None and now - last < self._window_ns:
            self.counts["suppressed"] += 1
            log.debug("notify_suppressed", kind=message.kind)
            return False
        self._last_sent_ns[dedupe_key] = now
        if len(self._last_sent_ns) > 1000:
            self._last_sent_ns = {k: t for k, t in self._last_sent_ns.items() if now - t < self._window_ns}
        scrubbed = Message(message.kind, message.key, self._redactor.scrub(message.text))
        urgency = URGENCY.get(message.kind, ROUTINE + 1)
        room = self._settings.queue_size * (2 if urgency <= ROUTINE else 1)
        self._seq += 1
        for name, outbox in self._outboxes.items():
            if outbox.qsize() >= room:
                self.counts["dropped"] += 1
                log.warning("notify_dropped", channel=name, kind=message.kind, queued=outbox.qsize())
                continue
            outbox.put_nowait((urgency, self._seq, scrubbed))
        return True

    # ---- delivery ----------------------------------------------------------------------------

    def _retrying(self) -> AsyncRetrying:
        s = self._settings
        return AsyncRetrying(
            stop=stop_after_attempt(s.max_attempts) | stop_after_delay(s.max_retry_secs),
            wait=_WaitRetryAfter(
                wait_exponential(multiplier=s.retry_initial_secs, max=s.max_retry_secs / 4)
                + wait_random(0, s.retry_initial_secs),
                cap_secs=s.max_retry_secs / 2,
            ),
            retry=retry_if_exception_type(TransientDeliveryError),
            reraise=True,
            sleep=self._sleep,
        )

    async def _send_loop(self, channel: Channel, client: httpx.AsyncClient) -> None:
        s = self._settings
        # Monotonic, not the injected clock: the limit paces real sends, even under a frozen test clock.
        bucket = TokenBucket.full(Fraction(s.max_messages_per_min, 60), time.monotonic_ns(), burst=s.burst)
        outbox = self._outboxes[channel.name]
        while True:
            urgency, seq, message = await outbox.get()
            if urgency == 0:  # kills and risk-mode changes are never held back by the rate limit
                bucket = bucket.force_take(time.monotonic_ns())
            else:
                bucket, ok = bucket.take(time.monotonic_ns())
                if not ok:
                    # Put it back and look again soon: an urgent message may arrive meanwhile.
                    outbox.put_nowait((urgency, seq, message))
                    await self._sleep(min(float(bucket.wait_secs()), RATE_LIMIT_POLL_SECS))
                    continue
            await self.deliver(channel, client, message)

    async def deliver(self, channel: Channel, client: httpx.AsyncClient, message: Message) -> bool:
        """Send one message with bounded retries; log (never raise) a final failure."""
        attempts = 0
        try:
            async for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    await channel.send(client, message.text)
        except DeliveryError as exc:
            self.counts["failed"] += 1
            log.warning("notify_failed", channel=channel.name, kind=message.kind, error=exc.detail,
                        attempts=attempts)
            return False
        self.counts["sent"] += 1
        log.info("notify_sent", channel=channel.name, kind=message.kind, attempts=attempts)
        return True

    # ---- the daily summary -------------------------------------------------------------------

    async def _daily_summaries(self, hh_mm: str) -> None:
        assert self._status_fn is not None
        while True:
            now = self._clock.now_ns()
            due = next_daily_ns(now, hh_mm)
            await self._clock.sleep((due - now) / NS_PER_SEC)
            when = datetime.fromtimestamp(due / NS_PER_SEC, tz=UTC).strftime("%Y-%m-%d %H:%MZ")
            self._bus.publish("daily_summary", self._clock.now_ns(),
                              **daily_summary_fields(self._status_fn(), when))


def next_daily_ns(now_ns: int, hh_mm: str) -> int:
    """The next time of day `hh_mm` (UTC) strictly after `now_ns`, in ns."""
    hours, minutes = (int(x) for x in hh_mm.split(":"))
    now = datetime.fromtimestamp(now_ns / NS_PER_SEC, tz=UTC)
    due = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if due <= now:
        due += timedelta(days=1)
    return int(due.timestamp()) * NS_PER_SEC


def build_notifier(settings: Settings, bus: EventBus, clock: Clock,
                   status_fn: Callable[[], dict[str, Any]] | None = None) -> Notifier | None:
    """A Notifier over the configured channels, or None when no channel is configured."""
    n = settings.notify
    channels: list[Channel] = []
    if settings.telegram_bot_token is not None:
        if n.telegram_chat_id:
            channels.append(TelegramChannel(n.telegram_api_url, settings.telegram_bot_token,
                                            n.telegram_chat_id))
        else:
            log.warning("notify_telegram_disabled", reason="PERPBOT_TELEGRAM_BOT_TOKEN set without "
                        "notify.telegram_chat_id")
    if settings.notify_webhook_url is not None:
        channels.append(WebhookChannel(settings.notify_webhook_url))
    if not channels:
        return None
    log.info("notify_enabled", channels=[c.name for c in channels], kinds=list(n.kinds))
    return Notifier(n, channels, bus, clock, status_fn, Redactor(settings.secret_values()))
