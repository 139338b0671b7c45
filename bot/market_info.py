"""Market status and parameters from the venue: the engine's view, with the audit trail.

Every status change is logged (`market_status_changed`), published to the operator event stream
(kind `market_status`, so it is notified) and exported (`perpbot_market_status{market,status}`).
What a status allows is `bot.strategy.market_status`; parameter changes become a new MarketSpec
(`apply_params`), which the engine and order manager use from the next target on.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from bot.domain import MarketParams, MarketSpec, MarketStatus, MarketStatusKind
from bot.events import EventBus
from bot.strategy import market_status as rules
from bot.telemetry import Metrics

log = structlog.get_logger("market_info")


def apply_params(spec: MarketSpec, event: MarketParams) -> MarketSpec:
    """`spec` with what the event carries; the step size is also the minimum order size (dYdX)."""
    changes: dict[str, object] = {}
    if event.tick_size is not None and event.tick_size > 0:
        changes["tick_size"] = event.tick_size
    if event.step_size is not None and event.step_size > 0:
        changes["step_size"] = changes["min_order_size"] = event.step_size
    if event.initial_margin_fraction is not None and event.initial_margin_fraction > 0:
        changes["initial_margin_fraction"] = event.initial_margin_fraction
    if event.maintenance_margin_fraction is not None and event.maintenance_margin_fraction > 0:
        changes["maintenance_margin_fraction"] = event.maintenance_margin_fraction
    return replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def _action(status: MarketStatusKind) -> str:
    if rules.must_cancel(status):
        return "cancelling our orders, placing none"
    if status is MarketStatusKind.FINAL_SETTLEMENT:
        return "closing the position with reduce-only orders before settlement (held if the venue refuses)"
    if status is MarketStatusKind.POST_ONLY:
        return "post-only children only, no new exposure"
    return "trading"


class MarketStatuses:
    """The last announced status per market (ACTIVE until the venue says otherwise)."""

    def __init__(self, markets: list[str], metrics: Metrics, events: EventBus) -> None:
        self.status = {m: MarketStatusKind.ACTIVE for m in markets}
        self._metrics = metrics
        self._events = events
        for market in markets:
            self._export(market)

    def update(self, event: MarketStatus) -> bool:
        """Take a status message; True when the status changed (logged, published, exported)."""
        old = self.status.get(event.market)
        if old is None or old is event.status:
            return False
        self.status[event.market] = event.status
        action = _action(event.status)
        log.warning("market_status_changed", market=event.market, old=old.value, new=event.status.value,
                    action=action)
        self._events.publish("market_status", event.ts_recv, market=event.market, old=old.value,
                             new=event.status.value, action=action)
        self._metrics.market_status_changes.labels(event.market, event.status.value).inc()
        self._export(event.market)
        return True

    def _export(self, market: str) -> None:
        for kind in MarketStatusKind:
            self._metrics.market_status.labels(market, kind.value).set(int(self.status[market] is kind))
