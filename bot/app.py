"""Wiring and supervision: build(settings) -> App; App.run() owns every long-lived task.

Supervision policy: each service handles its own transient failures (reconnects, retries).
An exception that escapes a service is fatal: the TaskGroup cancels the others, the daemon
logs one `daemon_failed` line, runs the shutdown actions and exits 1, and the container's
restart policy starts it again with safety state (kill latch, risk mode) read from the store.
SIGTERM/SIGINT stop it cleanly within `shutdown_budget_secs`; a second signal forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog

from bot.carry_start import follow_venues, stored_legs
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.control.api import ControlServer, ensure_token
from bot.control.commands import Controller
from bot.control.dashboard import StatusHistory
from bot.core import build_core
from bot.domain import RiskMode
from bot.engine import Engine
from bot.errors import BotError, ConfigError, InvariantViolation
from bot.execution.exit import cancel_and_settle
from bot.execution.orders import OrderManager
from bot.loop_monitor import LoopMonitor
from bot.news.feeds import FeedPoller
from bot.notify import build_notifier
from bot.recovery import reconcile_venue
from bot.state_dir import prepare_state_dir
from bot.store import Store
from bot.telemetry import Metrics, Redactor, configure_logging
from bot.venues.ports import MarketData, MarketSink
from bot.venues.registry import open_health
from bot.venues.start_retry import retry_start
from bot.watchdog.probes import build_watchdog

log = structlog.get_logger("app")


class Service(Protocol):
    name: str

    async def run(self) -> None: ...


class _Shutdown(Exception):
    """Raised inside the TaskGroup to unwind it on a stop signal."""


class StatusLog:
    """Logs one status line per interval: equity, positions, funding, tripped flags."""

    name = "status_log"

    def __init__(self, controller: Controller, interval_secs: float, clock: Clock) -> None:
        self._controller = controller
        self._interval = interval_secs
        self._clock = clock

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self._interval)
            s = self._controller.status()
            markets = {
                t: f"{m['position']}@{m['oracle_price']} "
                   f"flags={','.join(n for n, f in m['flags'].items() if f['tripped']) or '-'}"
                for t, m in s["markets"].items()
            }
            log.info("status", risk_mode=s["risk_mode"], equity=s["equity"],
                     peak_equity=s["drawdown"]["peak_equity"], drawdown=s["drawdown"]["drawdown"],
                     funding_realised=s["funding"]["realised"],
                     funding_expected=s["funding"]["expected"], open_orders=s["open_orders"],
                     **markets)


@dataclass
class App:
    settings: Settings
    store: Store
    engine: Engine
    orders: OrderManager
    controller: Controller
    control: ControlServer
    services: list[Service]
    clock: Clock
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    closers: list[Any] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, redactor: Redactor | None = None,
                     clock: Clock | None = None) -> App:
        """Wire the daemon from settings (opens venues, loads markets); nothing trades until `run()`."""
        clock = clock or SystemClock()
        prepare_state_dir(settings.state_dir)
        token = ensure_token(
            settings.control_token.get_secret_value() if settings.control_token else None,
            settings.token_path,
        )
        if redactor is not None:
            redactor.add(token)
        metrics = Metrics()
        core = await build_core(settings, metrics, clock)
        engine, store, perp, hedge, accounts = core.engine, core.store, core.perp, core.hedge, core.accounts
        status_extra = dict(perp.status)
        if hedge is not None:
            status_extra["hedge_venue"] = hedge.status
        controller = Controller(settings, engine, core.orders, store, clock, status_extra)
        history = StatusHistory(controller.status, clock, store=store, settings=settings)  # dashboard charts
        control = ControlServer(controller, metrics, token, settings.control.host,
                                settings.control.port, settings.state_dir / "daemon.json",
                                history=history, clock=clock)
        notifier = build_notifier(settings, engine.events, clock, controller.status)
        feeds: list[Service] = []
        for leg, sink, on_book_changed in core.market_sinks():
            assert leg.market_data is not None
            leg.market_data.on_book_changed = on_book_changed
            feeds.append(_FeedService(leg.market_data, sink))
        services: list[Service] = [
            *perp.services, *feeds, engine, control,
            StatusLog(controller, settings.telemetry.status_interval_secs, clock), history,
            LoopMonitor(metrics), *([notifier] if notifier is not None else []),
            *([accounts] if accounts is not None else []),
        ]
        if settings.news.feeds:
            news = settings.news
            services.append(FeedPoller(news.feeds, core.news, clock, news.poll_interval_secs,
                                       news.request_timeout_secs, news.max_attempts))
        if settings.watchdog.enabled:
            watchdog = build_watchdog(settings, open_health(settings, perp), engine, store, metrics, clock,
                                      controller.flatten)
            controller.watchdog = watchdog
            services.append(watchdog)
        return cls(settings, store, engine, core.orders, controller, control, services, clock,
                   closers=[core.venues.close])

    async def reconcile(self, stage: str = "start") -> list[dict[str, Any]]:
        """Line the store and the engine up with every venue before trading, and at the exit for
        what the store still holds open (bot.recovery); returns each venue's report."""
        engine, reports = self.engine, []
        for manager in engine.order_managers:
            if manager is engine.orders:
                apply, positions = engine.on_account_event, engine.perp_positions
            else:
                apply, positions = engine.on_spot_account_event, engine.spot_positions
            balances = manager.venue.capabilities.positions_are_balances
            follow = None if stage == "start" else partial(engine.hedge_control.spot_booked_down, stage=stage)
            reports.append(await reconcile_venue(self.store, manager.venue, apply, positions, self.clock,
                                                 cancel_foreign=self.settings.trading == "paper",
                                                 compare_positions=not balances, stage=stage,
                                                 booked_down=follow))
        return reports

    async def run(self) -> int:
        """Run until a stop signal or a fatal error; return the process exit code."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        s = self.settings
        log.info("daemon_starting", network=s.network, trading=s.trading, markets=list(s.markets),
                 state_dir=str(s.state_dir), risk_mode=self.engine.risk_mode.value,
                 kill_latched=self.store.kill_latch() is not None)
        code = 0
        try:
            await self.start()
            async with asyncio.TaskGroup() as tg:
                for service in self.services:
                    tg.create_task(service.run(), name=service.name)
                tg.create_task(self._wait_for_stop(), name="stop")
        except* _Shutdown:
            log.info("daemon_stopping")
        except* InvariantViolation as group:
            self._latch_invariant(group)
            code = 1
        except* Exception as group:
            for exc in group.exceptions:
                log.error("daemon_failed", error=repr(exc), exc_info=exc)
            code = 1
        finally:
            await self._shutdown()
            self._restore_signals(loop)
        log.info("daemon_stopped", exit_code=code)
        return code

    async def start(self) -> None:
        """Line up with the venues before the first decision: reconcile, commit the carry the venues
        hold (bot.carry_start), count transfers made while down, read the accounts (live)."""
        s = self.settings
        stored = stored_legs(self.engine, self.store)  # the carry as the store left it, then the venues'
        follow_venues(self.engine, stored, await retry_start("reconcile", self.reconcile, s.start_retry_secs))
        await self._transfers_while_down()
        if self.engine.accounts is not None:  # size nothing on a paper equity
            await retry_start("accounts", self.engine.accounts.refresh, s.start_retry_secs)

    async def _transfers_while_down(self) -> None:
        """Deposits and withdrawals made while the daemon was down, on every venue, move the stored
        peak (bot.peak) before the first account read; unread (a venue without them, a failed
        read), they count as PnL."""
        for manager in self.engine.order_managers:
            read = getattr(manager.venue, "transfers", None)
            if self.engine.live_peak is None or read is None:
                continue
            try:
                self.engine.live_peak.catch_up(await read(), manager.venue.name)
            except BotError as exc:
                log.warning("transfers_unread", venue=manager.venue.name, error=str(exc))

    def _latch_invariant(self, group: BaseExceptionGroup[InvariantViolation]) -> None:
        """Something that must never happen did: the kill latch and HALTED hold across restarts."""
        exc = _leaves(group)[0]
        log.error("daemon_failed", error=repr(exc), exc_info=exc)
        self.store.latch_kill(f"invariant violated: {exc}", self.clock.now_ns())
        self.engine.set_risk_mode(RiskMode.HALTED, f"invariant violated: {exc}")
        log.error("kill_latched", reason="invariant violated", error=str(exc))

    async def _wait_for_stop(self) -> None:
        await self.stop.wait()
        with contextlib.suppress(TimeoutError):  # orders in flight get their answer first
            async with asyncio.timeout(self.settings.shutdown_budget_secs):
                for manager in self.engine.order_managers:
                    await manager.quiesce()
        raise _Shutdown

    async def _shutdown(self) -> None:
        """Cancel resting orders, read the venues' answers, then close the store, within the budget."""
        budget = self.settings.shutdown_budget_secs
        try:
            async with asyncio.timeout(budget):
                # Resting orders must not outlive the process that manages them (bot.execution.exit).
                await cancel_and_settle(self.engine.order_managers, self.store, settle_secs=budget * 0.6,
                                        clock=self.clock, reconcile=lambda: self.reconcile("exit"))
        except TimeoutError:
            log.error("shutdown_budget_exceeded", budget_secs=self.settings.shutdown_budget_secs)
        finally:
            with contextlib.suppress(FileNotFoundError):
                (self.settings.state_dir / "daemon.json").unlink()
            self.store.close()
            for close in self.closers:
                with contextlib.suppress(Exception):
                    await close()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        def on_signal(signum: int) -> None:
            if self.stop.is_set():
                log.error("forced_exit", signal=signal.Signals(signum).name)
                os._exit(1)
            log.info("signal_received", signal=signal.Signals(signum).name)
            self.stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

    def _restore_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class _FeedService:
    """Runs a MarketData source into a sink as a supervised service."""

    def __init__(self, feed: MarketData, sink: MarketSink) -> None:
        self.name = feed.name
        self._feed = feed
        self._sink = sink

    async def run(self) -> None:
        await self._feed.run(self._sink)


def run_daemon(settings: Settings) -> int:
    """Configure logging, build the app and run it to completion; returns the exit code."""
    redactor = configure_logging(settings.telemetry.log_level, settings.telemetry.log_format,
                                 Redactor(settings.secret_values()))

    async def main() -> int:
        try:
            app = await App.create(settings, redactor)
        except ConfigError:
            raise
        except BotError as exc:
            # e.g. the venue's markets could not be loaded: one line, exit 1, let the
            # container's restart policy try again.
            log.error("daemon_failed", stage="start", error=str(exc))
            return 1
        return await app.run()

    return asyncio.run(main())
