"""Logging (structlog: JSON off a TTY, console on one), secret redaction, Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REDACTED = "**********"
_SECRET_KEY_PARTS = ("token", "mnemonic", "secret", "api_key", "password")


class Redactor:
    """A structlog processor that masks known secret values anywhere in an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register more secret values (e.g. a control token generated at start)."""
        for secret in secrets:
            # Very short values would mask ordinary words; real secrets are long.
            if secret and len(secret) >= 6 and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        """Return `value` with every secret replaced, recursing into containers."""
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub_item(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(str(value))

    def _scrub_item(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and any(p in key.lower() for p in _SECRET_KEY_PARTS):
            return REDACTED if value else value
        return self.scrub(value)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._scrub_item(key, event_dict[key])
        return event_dict


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> Redactor:
    """Configure structlog once for the process; returns the redactor so secrets can be added."""
    redactor = redactor or Redactor()
    stream = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib logging; keep them quiet and redacted too.
    handler = logging.StreamHandler(stream)
    handler.addFilter(_StdlibRedactFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    return redactor


class _StdlibRedactFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.scrub(record.getMessage())
        record.args = None
        return True


class Metrics:
    """The daemon's Prometheus metrics, on a registry of its own (tests get a fresh one each)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.market_events = Counter(
            "perpbot_market_events", "Market events received", ["market", "kind"], registry=r
        )
        self.malformed_messages = Counter(
            "perpbot_malformed_messages", "Venue messages that did not parse", ["venue"], registry=r
        )
        self.book_resyncs = Counter(
            "perpbot_book_resyncs", "Order book resyncs", ["market"], registry=r
        )
        self.flag_tripped = Gauge(
            "perpbot_flag_tripped", "1 when a flag is tripped", ["market", "flag"], registry=r
        )
        self.decisions = Counter(
            "perpbot_decisions", "Gate decisions that rebalanced", ["market", "reason"], registry=r
        )
        self.orders = Counter(
            "perpbot_orders", "Order transitions", ["venue", "status"], registry=r
        )
        self.fills = Counter("perpbot_fills", "Fills", ["venue", "market"], registry=r)
        self.position = Gauge("perpbot_position", "Signed position", ["market"], registry=r)
        self.equity_usd = Gauge("perpbot_equity_usd", "Account equity", registry=r)
        self.funding_realised_usd = Gauge(
            "perpbot_funding_realised_usd", "Funding received (+) or paid (-)", registry=r
        )
        self.funding_expected_usd = Gauge(
            "perpbot_funding_expected_usd", "Expected funding over the horizon", registry=r
        )
        self.risk_mode = Gauge(
            "perpbot_risk_mode", "0 NORMAL, 1 REDUCE_ONLY, 2 HALTED", registry=r
        )
        # Event-loop health (bot.loop_monitor): lag of a 1 s sleep, and the live asyncio tasks.
        self.loop_lag_seconds = Gauge(
            "perpbot_event_loop_lag_seconds", "Event-loop lag, latest sample", registry=r
        )
        self.loop_lag = Histogram(
            "perpbot_event_loop_lag", "Event-loop lag samples (seconds)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )
        self.asyncio_tasks = Gauge("perpbot_asyncio_tasks", "Live asyncio tasks", registry=r)
        self.watchdog_input_state = Gauge(
            "perpbot_watchdog_input_state", "Watchdog input: 0 OK, 1 DEGRADED, 2 CRITICAL", ["input"],
            registry=r,
        )
        self.watchdog_input_value = Gauge(
            "perpbot_watchdog_input_value",
            "The number behind a watchdog input (secs, blocks, share, USDC)", ["input"], registry=r,
        )
        self.chain_height = Gauge(
            "perpbot_chain_height", "Latest height seen, by source (node, indexer, feed)", ["source"],
            registry=r,
        )
        self.watchdog_probe_errors = Counter(
            "perpbot_watchdog_probe_errors", "Failed watchdog probes", ["probe"], registry=r
        )
        self.watchdog_probe_seconds = Histogram(
            "perpbot_watchdog_probe_seconds", "Watchdog probe latency", ["probe"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )
        # Refreshed when /metrics is scraped (Controller.refresh_gauges), not per event.
        self.feed_staleness_seconds = Gauge(
            "perpbot_feed_staleness_seconds", "Seconds since the last market event", ["market"], registry=r
        )
        self.open_orders = Gauge(
            "perpbot_open_orders", "The bot's open orders by venue and state", ["venue", "state"],
            registry=r,
        )
        self.pnl_usd = Gauge(
            "perpbot_pnl_usd", "PnL attribution, both legs: price, slippage, fees, funding, total",
            ["component"], registry=r,
        )
        self.hedge_mismatch_base = Gauge(
            "perpbot_hedge_mismatch_base", "Hedged perp delta + spot delta, base units", ["market"],
            registry=r,
        )
        self.hedge_mismatch_usd = Gauge(
            "perpbot_hedge_mismatch_usd", "Hedged perp delta + spot delta at mark", ["market"], registry=r
        )
        self.leg_risk_usd_secs = Gauge(
            "perpbot_leg_risk_usd_secs", "Unhedged notional x time since the legs last matched",
            ["market"], registry=r,
        )
        self.hedge_unwinds = Counter(
            "perpbot_hedge_unwinds", "Legs given up and unwound on the perp", ["market", "reason"],
            registry=r,
        )
        self.market_status = Gauge(
            "perpbot_market_status", "1 for the market's current venue status, 0 for the others",
            ["market", "status"], registry=r,
        )
        self.market_status_changes = Counter(
            "perpbot_market_status_changes", "Market status changes seen", ["market", "status"], registry=r,
        )
        self.account_equity_usd = Gauge(
            "perpbot_account_equity_usd", "Equity as the venue reports it", ["venue"], registry=r,
        )
        self.account_free_collateral_usd = Gauge(
            "perpbot_account_free_collateral_usd", "Free collateral as the venue reports it", ["venue"],
            registry=r,
        )
        self.account_age_seconds = Gauge(
            "perpbot_account_age_seconds", "Age of the last account read per venue", ["venue"], registry=r,
        )
        self.decision_latency = Histogram(
            "perpbot_decision_seconds",
            "Time from market event to plan",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1),
            registry=r,
        )
