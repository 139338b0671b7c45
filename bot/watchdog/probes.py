"""The watchdog service (IO): sample chain, indexer, feed and bridge health; drive the risk mode.

Every `sample_interval_secs` it measures:
- the chain head: the node's latest block (read-only gRPC) when a node is reachable, else the
  BlockHeight events the engine already sees; its age and the mean block interval;
- indexer lag: node head minus the indexer's `/v4/height`;
- feed staleness: per subscription of the watched channels, the time since its last frame
  (IndexerFeed) or, without an indexer feed (in-process simulator), since the market's last event;
- the failed share of its own probes (REST and gRPC) over a sliding window;
- every `bridge_poll_secs`: withdrawal gating per collateral pool and the USDC withdrawal capacity.
`mode.classify` grades them, `mode.step_mode` moves the risk mode, and the engine gets the result.

HALTED cancels every open order at once (retried while the store still has open ones, since a
halted chain rejects the first attempt) and flattens only when `halt_flatten` is set. A kill latch
in the store (also one written by `perpbot kill --direct` while this daemon was hung) is picked up
on the next sample. Probe failures are recorded and never raised: a watchdog that crashes the
daemon when the node is down would be worse than none.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from bot.clock import NS_PER_SEC, Clock
from bot.config import Settings, WatchdogSettings
from bot.domain import RiskMode
from bot.errors import BotError
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.ports import ChainHealth, FeedHealth, HealthProbes, IndexerHealth
from bot.watchdog.mode import InputState, ModeState, Observation, Reading, classify, step_mode, target_mode

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger("watchdog")
T = TypeVar("T")


class Watchdog:
    """Samples health inputs about once a second and maps them to the engine's risk mode."""

    name = "watchdog"

    def __init__(
        self,
        settings: WatchdogSettings,
        engine: Engine,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        *,
        chain: ChainHealth | None = None,
        indexer: IndexerHealth | None = None,
        feed: Callable[[], FeedHealth | None] | None = None,
        perpetual_ids: tuple[int, ...] = (0,),
        flatten: Callable[[], Awaitable[Any]] | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._s = settings
        self._engine = engine
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._chain = chain
        self._indexer = indexer
        self._feed = feed
        self._perpetual_ids = tuple(sorted(set(perpetual_ids))) or (0,)
        self._flatten = flatten
        self._mono = monotonic_ns
        self.state = ModeState(engine.risk_mode, engine.risk_reason, store.kill_latch() is not None)
        self.readings: tuple[Reading, ...] = ()
        self._started_ns: int | None = None
        self._head = 0
        self._head_ns = 0
        self._blocks: deque[tuple[int, int]] = deque()  # (ns, height) when the head advanced
        self._results: deque[tuple[int, bool]] = deque()  # (ns, ok) per probe call
        self._last_bridge_ns: int | None = None
        self._gating_until: int | None = None
        self._capacity: Decimal | None = None
        self._feed_data_ns: dict[str, int] = {}
        self._last_cancel_ns: int | None = None

    async def run(self) -> None:
        """Sample, classify and apply until cancelled."""
        while True:
            await self.tick()
            await self._clock.sleep(self._s.sample_interval_secs)

    async def tick(self) -> None:
        """One watchdog step: sample every input, grade them, move the mode, act on HALTED."""
        now = self._clock.now_ns()
        if self._started_ns is None:
            self._started_ns = now
        observation = await self.sample(now)
        readings = classify(observation, self._s)
        self._report(readings, now)
        target, reason = target_mode(readings)
        latched = self._store.kill_latch() is not None
        entered_halt = False
        self.state, change = step_mode(self.state, target, reason, now, self._s.hold_off_secs,
                                       latched=latched)
        if change is not None:
            log.warning("watchdog_mode", old=change.old.value, new=change.new.value, reason=change.reason)
        if self._engine.risk_mode is not self.state.mode:
            entered_halt = self.state.mode is RiskMode.HALTED
            self._engine.set_risk_mode(self.state.mode, f"watchdog: {self.state.reason}")
        if self.state.mode is RiskMode.HALTED:
            await self._halted(now, entered_halt, flatten=entered_halt and not self.state.latched)

    # ---- sampling ----------------------------------------------------------------------------

    async def sample(self, now_ns: int) -> Observation:
        """Measure every input once (bridge queries only every `bridge_poll_secs`)."""
        node_height = indexer_height = None
        if self._chain is not None:
            block = await self._probe("node_head", self._chain.head())
            node_height = block.height if block is not None else None
        if self._indexer is not None:
            height = await self._probe("indexer_height", self._indexer.height())
            indexer_height = int(height.height) if height is not None and height.height.isdigit() else None
        feed_height = self._engine.block_height or None
        for source, value in (("node", node_height), ("indexer", indexer_height), ("feed", feed_height)):
            if value is not None:
                self._metrics.chain_height.labels(source).set(value)
        head = max((h for h in (node_height, feed_height) if h), default=0)
        if head > self._head:
            self._head, self._head_ns = head, now_ns
            self._blocks.append((now_ns, head))
        window_ns = int(self._s.block_interval_window_secs * NS_PER_SEC)
        while self._blocks and now_ns - self._blocks[0][0] > window_ns:
            self._blocks.popleft()
        started = self._started_ns if self._started_ns is not None else now_ns
        head_age = (now_ns - max(self._head_ns, started)) / NS_PER_SEC
        lag = node_height - indexer_height if node_height is not None and indexer_height is not None else None
        await self._poll_bridge(now_ns)
        return Observation(
            head_age_secs=head_age,
            block_interval_secs=self._block_interval(),
            indexer_lag_blocks=max(0, lag) if lag is not None else None,
            feed_silence_secs=self._feed_silence(now_ns),
            error_rate=self._error_rate(now_ns),
            withdrawals_unblocked_at_block=self._gating_until,
            head_height=self._head or None,
            withdrawal_capacity_usd=self._capacity,
            account_age_secs=accounts.ages_secs(now_ns) if (accounts := self._engine.accounts) else {},
        )

    async def _poll_bridge(self, now_ns: int) -> None:
        if self._chain is None:
            return
        last = self._last_bridge_ns
        if last is not None and now_ns - last < self._s.bridge_poll_secs * NS_PER_SEC:
            return
        self._last_bridge_ns = now_ns
        until: int | None = None
        for perpetual_id in self._perpetual_ids:
            gating = await self._probe("withdrawal_gating", self._chain.withdrawal_gating(perpetual_id))
            if gating is not None:
                until = max(until or 0, gating.unblocked_at_block)
        self._gating_until = until
        capacity = await self._probe("withdrawal_capacity", self._chain.usdc_capacity())
        if capacity is not None:
            self._capacity = min((c.capacity_usdc for c in capacity), default=None)

    async def _probe(self, name: str, call: Awaitable[T]) -> T | None:
        """Run one probe under the probe timeout; record latency and outcome; None on failure."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._s.probe_timeout_secs):
                result = await call
        except (BotError, TimeoutError) as exc:
            self._metrics.watchdog_probe_errors.labels(name).inc()
            self._results.append((self._clock.now_ns(), False))
            log.debug("watchdog_probe_failed", probe=name, error=str(exc) or type(exc).__name__)
            return None
        self._metrics.watchdog_probe_seconds.labels(name).observe(time.perf_counter() - started)
        self._results.append((self._clock.now_ns(), True))
        return result

    def _block_interval(self) -> float | None:
        if len(self._blocks) < 2:
            return None
        (t0, h0), (t1, h1) = self._blocks[0], self._blocks[-1]
        return (t1 - t0) / NS_PER_SEC / (h1 - h0) if h1 > h0 else None

    def _error_rate(self, now_ns: int) -> float | None:
        window_ns = int(self._s.error_window_secs * NS_PER_SEC)
        while self._results and now_ns - self._results[0][0] > window_ns:
            self._results.popleft()
        if len(self._results) < self._s.error_min_samples:
            return None
        return sum(1 for _, ok in self._results if not ok) / len(self._results)

    def _feed_silence(self, now_ns: int) -> dict[str, float]:
        feed = self._feed() if self._feed is not None else None
        started = self._started_ns if self._started_ns is not None else now_ns
        if feed is None:
            if self._feed is not None:
                return {}  # an indexer feed not running yet: the head age covers a dead start
            # No indexer feed (in-process simulator): silence per market from its last event.
            return {f"market:{t}": (now_ns - max(s.last_event_ns, started)) / NS_PER_SEC
                    for t, s in self._engine.markets.items()}
        mono = self._mono()
        out: dict[str, float] = {}
        for sub in feed.subscriptions.values():
            if sub.channel not in self._s.feed_channels:
                continue
            key = f"{sub.channel}:{sub.id}" if sub.id else sub.channel
            # The feed stamps `last_message_ns` on its own (re)subscribe requests too: only a
            # frame that arrived after the request counts as data, or a resync would look fresh.
            if sub.last_message_ns != sub.requested_ns:
                self._feed_data_ns[key] = max(self._feed_data_ns.get(key, 0), sub.last_message_ns)
            last = self._feed_data_ns.get(key)
            if last is None:
                last = self._feed_data_ns[key] = mono
            out[key] = (mono - last) / NS_PER_SEC
        return out

    # ---- acting ------------------------------------------------------------------------------

    def _report(self, readings: tuple[Reading, ...], now_ns: int) -> None:
        before = {r.name: r for r in self.readings}
        for reading in readings:
            self._metrics.watchdog_input_state.labels(reading.name).set(int(reading.state))
            if reading.value is not None:
                self._metrics.watchdog_input_value.labels(reading.name).set(reading.value)
            old = before.get(reading.name)
            old_state = old.state if old is not None else InputState.OK
            if reading.state is not old_state:
                log.warning("watchdog_input_changed", input=reading.name, old=old_state.name,
                            new=reading.state.name, value=reading.value, reason=reading.reason or None)
                self._engine.events.publish("watchdog_alert", now_ns, input=reading.name, old=old_state.name,
                                            new=reading.state.name, value=reading.value,
                                            reason=reading.reason or "clear")
        self.readings = readings

    async def _halted(self, now_ns: int, entered: bool, *, flatten: bool) -> None:
        """Cancel every open order on entering HALTED, and again while any is left."""
        retry_ns = int(self._s.halt_cancel_retry_secs * NS_PER_SEC)
        due = entered or self._last_cancel_ns is None or now_ns - self._last_cancel_ns >= retry_ns
        if not due or (not entered and not self._store.open_orders()):
            return
        self._last_cancel_ns = now_ns
        for manager in self._engine.order_managers:
            try:
                cancelled, failed = await manager.cancel_all()
            except BotError as exc:
                log.error("watchdog_cancel_failed", venue=manager.venue.name, error=str(exc))
                continue
            if failed:
                log.error("watchdog_cancel_failed", venue=manager.venue.name, errors=failed)
            log.warning("watchdog_orders_cancelled", venue=manager.venue.name, count=len(cancelled))
        if flatten and self._s.halt_flatten and self._flatten is not None:
            try:
                sent = await self._flatten()
            except BotError as exc:
                log.error("watchdog_flatten_failed", error=str(exc))
            else:
                log.warning("watchdog_flatten", orders=sent)


def build_watchdog(
    settings: Settings,
    probes: HealthProbes,
    engine: Engine,
    store: Store,
    metrics: Metrics,
    clock: Clock,
    flatten: Callable[[], Awaitable[Any]] | None = None,
) -> Watchdog:
    """Wire a Watchdog to the venue's health probes (bot.venues.registry.open_health)."""
    return Watchdog(settings.watchdog, engine, store, metrics, clock, chain=probes.chain,
                    indexer=probes.indexer, feed=probes.feed, flatten=flatten,
                    perpetual_ids=probes.perpetual_ids)
