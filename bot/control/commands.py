"""The control core: status, pause, resume, kill, news. Transports (HTTP, CLI) only translate."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import structlog

from bot.accounts import fees_json
from bot.clock import NS_PER_SEC, Clock, monotonic_secs
from bot.config import Settings
from bot.control.status import drawdown_status
from bot.domain import OrderRequest, OrderStatus, RiskMode, Side, TimeInForce
from bot.engine import Engine, MarketState
from bot.errors import BotError
from bot.execution.orders import OrderManager
from bot.execution.prices import bounded_price
from bot.news.state import save_operator_items
from bot.store import Store
from bot.strategy.targets import parse_target

log = structlog.get_logger("control")
KILL_CONFIRM_SECS = 3.0
FLATTEN_SETTLE_SECS = 5.0
CONFIRM_POLL_SECS = 0.05
# Operator input bounds: far beyond any real use, well inside what Decimal and int ns can hold.
MAX_NEWS_TTL_SECS = 366 * 24 * 3600


def mask_key(value: str | None) -> str | None:
    """Show only the last four characters of a key id."""
    if not value:
        return None
    return "*" * max(len(value) - 4, 4) + value[-4:]


class Controller:
    """One control core for every transport: the HTTP API, the CLI and the dashboard."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        orders: OrderManager,
        store: Store,
        clock: Clock,
        extra_status: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._orders = orders
        self._store = store
        self._clock = clock
        self._started = monotonic_secs(clock)
        self._extra = extra_status or {}
        self.watchdog: Any = None  # set by the app when a watchdog runs; has `.readings`

    def refresh_gauges(self, metrics: Any) -> None:
        """Set the gauges that are cheaper to read at scrape time than to keep per event."""
        engine = self._engine
        now = self._clock.now_ns()
        for ticker, state in engine.markets.items():
            if state.last_event_ns:
                age_secs = max(now - state.last_event_ns, 0) / NS_PER_SEC
                metrics.feed_staleness_seconds.labels(ticker).set(age_secs)
        counts: dict[tuple[str, str], int] = {
            (m.venue.name, status.value): 0 for m in engine.order_managers
            for status in OrderStatus if status.is_open}
        for order in self._store.open_orders():
            key = (order.venue, order.status.value)
            counts[key] = counts.get(key, 0) + 1
        for (venue, status), count in counts.items():
            metrics.open_orders.labels(venue, status).set(count)
        for component, value in engine.total_pnl().as_dict().items():
            metrics.pnl_usd.labels(component).set(float(value))

    def status(self) -> dict[str, Any]:
        """Return the daemon's state as JSON-ready data; money as decimal strings, no secrets."""
        engine = self._engine
        latch = self._store.kill_latch()
        open_orders = self._store.open_orders()
        by_venue: dict[str, int] = {}
        for order in open_orders:
            by_venue[order.venue] = by_venue.get(order.venue, 0) + 1
        realised = sum((s.ledger.realised_usd for s in engine.markets.values()), Decimal(0))
        fees = sum((s.position.fees_paid + (s.spot.position.fees_paid if s.spot else 0)
                    for s in engine.markets.values()), Decimal(0))
        now = self._clock.now_ns()
        binance_key = self._settings.binance_api_key
        out: dict[str, Any] = {
            "risk_mode": engine.risk_mode.value,
            "risk_reason": engine.risk_reason,
            "kill_latched": latch is not None,
            "kill_reason": latch.reason if latch else None,
            "paused": engine.paused,
            "network": self._settings.network,
            "trading": self._settings.trading,
            "account": account_status(engine, self._extra.get("dydx_account"),  # {address, key}
                                      mask_key(binance_key.get_secret_value() if binance_key else None), now),
            "equity": _money(engine.equity()),
            "drawdown": drawdown_status(engine.peak_equity, engine.equity(),
                                        self._settings.strategy.drawdown_stop,
                                        None if engine.live_peak is None else engine.live_peak.pending),
            "fees": {venue: fees_json(rates) for venue, rates in engine.fee_rates().items()},
            "fees_paid": _money(fees),
            "open_orders": {**{m.venue.name: 0 for m in engine.order_managers}, **by_venue},
            "funding": {"realised": _money(realised), "expected": _money(engine.expected_funding()),
                        "horizon_hours": self._settings.rules.funding_horizon_hours},
            "pnl": engine.total_pnl().as_dict(),
            "news": engine.news.describe(now),
            "block_height": engine.block_height,
            "uptime_secs": round(monotonic_secs(self._clock) - self._started, 1),
            "markets": {t: self._market_status(t) for t in engine.markets},
        }
        if "sim" in self._extra:
            out["sim"] = self._extra["sim"]
        if "hedge_venue" in self._extra:
            out["hedge_venue"] = self._extra["hedge_venue"]
        if self.watchdog is not None:
            out["watchdog"] = {
                r.name: {"state": r.state.name, "value": r.value, "reason": r.reason or None}
                for r in self.watchdog.readings
            }
        return out

    def _operator_target(self, ticker: str) -> dict[str, str] | None:
        """The operator's directional target as set and resolved to base units now (None: unset)."""
        spec = self._engine.directional.get(ticker)
        if spec is None:
            return None
        return {"spec": spec.text, "base": _size(self._engine.resolved_target(
            ticker, self._engine.markets[ticker].mark))}

    def _market_status(self, ticker: str) -> dict[str, Any]:
        engine = self._engine
        state = engine.markets[ticker]
        pos = state.position
        flags = state.flags.as_dict() if state.flags else {
            name: {"tripped": False, "why": "warming_up"}
            for name in ("funding", "liquidity", "volatility", "news")
        }
        mid = state.book.mid()
        spot = state.spot
        out: dict[str, Any] = {
            "position": _size(pos.size),
            "avg_entry": _money(pos.avg_entry),
            "target": _size(state.target),
            "market_status": engine.statuses.status[ticker].value,
            "operator_target": self._operator_target(ticker),
            "oracle_price": str(state.oracle_price) if state.oracle_price is not None else None,
            "mid": str(mid) if mid is not None else None,
            "funding_rate_1h": str(state.funding.rate_1h),
            "funding_persistence_hours": state.funding.persistence_hours,
            "realised_pnl": _money(pos.realised_pnl),
            "funding_pnl": _money(pos.funding_pnl),
            "funding_ledger": state.ledger.as_dict(engine.expected_funding_market(state)),
            "pnl": engine.pnl(state).as_dict(),
            "flags": flags,
            "sleeves": state.sleeves.as_dict() if state.sleeves else {},
            "sizing": state.sizing.as_dict() if state.sizing else None,
            "last_decision": state.last_decision,
        }
        if spot is not None:
            spot_mid = spot.book.mid()
            out["spot"] = {
                "market": spot.ticker,
                "position": _size(spot.position.size),
                "target": _size(spot.target),
                "mid": str(spot_mid) if spot_mid is not None else None,
            }
            out["net_delta"] = _size(pos.size + spot.position.size)
        hedge = engine.hedge_status(ticker)
        if hedge is not None:
            out["hedge"] = hedge
            out["hedge_mismatch"] = hedge["mismatch_base"]
        return out

    def pause(self) -> dict[str, Any]:
        """Stop making new decisions; running orders finish."""
        self._engine.paused = True
        log.warning("paused")
        return {"paused": True}

    async def resume(self) -> dict[str, Any]:
        """Clear the kill latch and pause and return to NORMAL."""
        self._store.clear_kill_latch()
        self._engine.paused = False
        self._engine.set_risk_mode(RiskMode.NORMAL, "operator resume")
        log.warning("resumed")
        return {"risk_mode": self._engine.risk_mode.value, "kill_latched": False}

    async def kill(self, reason: str, flatten: bool = False, *, all_orders: bool = False) -> dict[str, Any]:
        """Latch HALTED, cancel every open order of ours, optionally flatten; report what is left."""
        now = self._clock.now_ns()
        self._store.latch_kill(reason, now)
        self._engine.set_risk_mode(RiskMode.HALTED, f"kill: {reason}")
        log.warning("kill_latched", reason=reason, flatten=flatten)
        self._engine.events.publish("kill", now, reason=reason, flatten=flatten)
        errors: list[str] = []
        cancelled: list[int] = []
        per_venue: dict[str, dict[str, Any]] = {}

        async def cancel_on(manager: OrderManager) -> None:
            name = manager.venue.name
            try:
                sent, failed = await manager.cancel_all(all_open=all_orders)
            except BotError as exc:
                errors.append(f"{name}: {exc}")
                sent, failed = [], []
            per_venue[name] = {"cancelled": sent}
            cancelled.extend(sent)
            errors.extend(f"{name}: {e}" for e in failed)

        # Both venues at once: the kill takes as long as the slower one, not the sum.
        await asyncio.gather(*(cancel_on(m) for m in self._engine.order_managers))
        await self._await_closed(KILL_CONFIRM_SECS)
        before = self._positions()
        flattened = await self._flatten() if flatten else []
        if flattened:
            await self._await_flat(FLATTEN_SETTLE_SECS)
        remaining = self._store.open_orders()
        positions = self._positions()
        for manager in self._engine.order_managers:
            entry = per_venue.setdefault(manager.venue.name, {"cancelled": []})
            markets = self._markets_of(manager)
            entry["remaining_open_orders"] = [o.client_id for o in remaining if o.venue == manager.venue.name]
            entry["filled"] = {m: _size(abs(Decimal(before.get(m, "0")) - Decimal(positions.get(m, "0"))))
                               for m in markets if before.get(m, "0") != positions.get(m, "0")}
            entry["positions"] = {m: positions[m] for m in markets if m in positions}
        report = {
            "kill_latched": True,
            "reason": reason,
            "cancelled": cancelled,
            "flatten_orders": flattened,
            "remaining_open_orders": [o.client_id for o in remaining],
            "positions": positions,
            "venues": per_venue,
            "errors": errors,
        }
        log.warning("kill_done", cancelled=len(cancelled), remaining=len(remaining),
                    positions=positions)
        return report

    def _positions(self) -> dict[str, str]:
        """Both legs' non-zero positions as the bot books them (perp and spot markets)."""
        positions = {t: _size(s.position.size) for t, s in self._engine.markets.items() if s.position.size}
        # A spot long below one lot step (a buy's commission dust: fills book what the account
        # gets) is no position: no order can sell it.
        positions.update({s.spot.ticker: _size(s.spot.position.size) for s in self._engine.markets.values()
                          if s.spot and abs(s.spot.position.size) >= s.spot.spec.step_size})
        return positions

    def _markets_of(self, manager: OrderManager) -> list[str]:
        if manager is self._engine.orders:
            return list(self._engine.markets)
        return [s.spot.ticker for s in self._engine.markets.values() if s.spot is not None]

    async def _await_flat(self, timeout_secs: float) -> None:
        """Give the flatten orders' fills a moment to arrive over the account streams."""
        for _ in range(int(timeout_secs / CONFIRM_POLL_SECS)):
            if not self._positions() and not self._store.open_orders():
                return
            await asyncio.sleep(CONFIRM_POLL_SECS)

    async def _await_closed(self, timeout_secs: float) -> None:
        """Give venue confirmations (cancel updates over the account stream) a moment to land."""
        for _ in range(int(timeout_secs / CONFIRM_POLL_SECS)):
            if not self._store.open_orders():
                return
            await asyncio.sleep(CONFIRM_POLL_SECS)

    async def flatten(self) -> list[int]:
        """Send reduce-only IOC orders that close every position, bounded by the slippage cap."""
        return await self._flatten()

    async def _flatten(self) -> list[int]:
        sent = []
        legs = []
        for state in self._engine.markets.values():
            legs.append((self._engine.order_managers[0], state.spec, state.book, state.position.size))
            if state.spot is not None and len(self._engine.order_managers) > 1:
                spot_orders = self._engine.order_managers[1]
                legs.append((spot_orders, state.spot.spec, state.spot.book,
                             _sellable(spot_orders.venue, state.spot.spec, state.spot.position.size)))
        for manager, spec, book, size in legs:
            order = _flatten_order(self._store.next_client_id, spec, book, size,
                                   self._settings.execution.slippage_cap_bps)
            if order is not None:
                await manager.submit(order, book.mid())
                sent.append(order.client_id)
        return sent

    def set_target(self, market: str, size: str) -> dict[str, Any]:
        """Set the directional sleeve's target for a market; raises ValueError on bad input."""
        if market not in self._engine.markets:
            raise ValueError(f"unknown market {market!r}; trading {sorted(self._engine.markets)}")
        spec = parse_target(size)  # ValueError names what is wrong
        self._engine.set_directional_target(market, spec)
        state = self._engine.markets[market]
        base = self._engine.resolved_target(market, state.mark)
        log.warning("target_set", market=market, size=spec.text, base=str(base))
        return {"market": market, "target": spec.text, "base": str(base)}

    def reset_peak(self) -> dict[str, Any]:
        """Live: the drawdown stop's peak becomes the equity now (bot.peak); raises ValueError in
        paper (no stored peak) and before the first account read."""
        live = self._engine.live_peak
        if live is None:
            raise ValueError("paper trading stores no peak: it starts at paper.initial_equity_usd each run")
        old, new = live.reset()
        self._engine.peak_equity = new
        return {"old_peak": _money(old), "peak_equity": _money(new),
                "pending_transfers": _money(live.pending)}

    def news_set(self, item: str, ttl_secs: float) -> dict[str, Any]:
        """Raise an operator news flag for all markets until the TTL runs out (survives restarts).

        Raises ValueError unless 0 < ttl_secs <= MAX_NEWS_TTL_SECS.
        """
        if not 0 < ttl_secs <= MAX_NEWS_TTL_SECS:  # False for NaN too
            raise ValueError(f"ttl_secs must be in (0, {MAX_NEWS_TTL_SECS}]")
        now = self._clock.now_ns()
        self._engine.news.set_operator(item, now + int(ttl_secs * NS_PER_SEC))
        self._save_news(now)
        log.warning("news_set", item=item, ttl_secs=ttl_secs)
        return {"news": list(self._engine.active_news(now))}

    def news_clear(self, item: str | None = None) -> dict[str, Any]:
        """Clear one operator news flag, or all of them."""
        now = self._clock.now_ns()
        self._engine.news.clear_operator(item)
        self._save_news(now)
        log.warning("news_cleared", item=item)
        return {"news": list(self._engine.active_news(now))}

    def _save_news(self, now_ns: int) -> None:
        board = self._engine.news
        board.prune(now_ns)
        try:
            save_operator_items(self._settings.news_state_path, dict(board.operator))
        except OSError as exc:  # the flag still holds in memory; only the restart copy is lost
            log.error("news_state_not_saved", error=str(exc))


def _sellable(venue: Any, spec: Any, size: Decimal) -> Decimal:
    """A spot sell never exceeds the base balance the venue reports (a store written before fills
    were booked net of base-asset commissions may book a little more than the account holds)."""
    if size <= 0 or not venue.capabilities.positions_are_balances:
        return size
    held = venue.cached_positions().get(spec.ticker, Decimal(0))
    return min(size, (held // spec.step_size) * spec.step_size)


def _flatten_order(next_id: Any, spec: Any, book: Any, size: Decimal,
                   cap_bps: Decimal) -> OrderRequest | None:
    """A reduce-only IOC that closes `size`, priced at the touch plus the slippage cap."""
    if not size:
        return None
    side = Side.SELL if size > 0 else Side.BUY
    touch = book.best_bid() if side is Side.SELL else book.best_ask()
    if touch is None:
        return None
    price = bounded_price(side, touch.price, cap_bps, spec.tick_size)
    return OrderRequest(next_id(), spec.ticker, side, abs(size), price, TimeInForce.IOC, reduce_only=True)


def account_status(engine: Engine, dydx_account: dict[str, Any] | None, binance_key: str | None,
                   now_ns: int) -> dict[str, Any]:
    """`account` per venue: its identity, and its equity, free collateral and margin use.

    Live: as the venues report them (bot.accounts). Paper: the paper account on the dYdX side
    (configured equity plus PnL; margin from the markets' fractions at the mark).
    """
    out: dict[str, dict[str, Any]] = {"dydx": dict(dydx_account or {"address": None}),
                                      "binance": {"key": binance_key}}
    if engine.accounts is not None:
        for venue, data in engine.accounts.status(now_ns).items():
            out.setdefault(venue, {}).update(data or {"equity": None, "source": "venue (not read yet)"})
        return out
    equity = engine.equity()
    initial = sum((_margin(s, s.spec.initial_margin_fraction) for s in engine.markets.values()), Decimal(0))
    maintenance = sum((_margin(s, s.spec.maintenance_margin_fraction) for s in engine.markets.values()),
                      Decimal(0))
    out["dydx"].update({
        "equity": _money(equity), "free_collateral": _money(equity - initial),
        "initial_margin": _money(initial), "maintenance_margin": _money(maintenance),
        "margin_use": str((initial / equity).quantize(Decimal("0.0001")) if equity > 0 else Decimal(0)),
        "source": "paper",
    })
    return out


def _margin(state: MarketState, fraction: Decimal) -> Decimal:
    mark = state.mark
    return abs(state.position.size) * mark * fraction if mark is not None else Decimal(0)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.000001")))


def _size(value: Decimal) -> str:
    return "0" if value == 0 else str(value)
