"""The control core: status, pause, resume, kill, news. Transports (HTTP, CLI) only translate."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import structlog

from bot.clock import Clock
from bot.config import Settings
from bot.domain import OrderRequest, RiskMode, Side, TimeInForce
from bot.engine import Engine
from bot.errors import BotError
from bot.execution.orders import OrderManager
from bot.store import Store

log = structlog.get_logger("control")
NS_PER_SEC = 1_000_000_000
BPS = Decimal("0.0001")


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
        self._started = time.monotonic()
        self._extra = extra_status or {}

    def status(self) -> dict[str, Any]:
        """Return the daemon's state as JSON-ready data; money as decimal strings, no secrets."""
        engine = self._engine
        latch = self._store.kill_latch()
        open_orders = self._store.open_orders()
        by_venue: dict[str, int] = {}
        for order in open_orders:
            by_venue[order.venue] = by_venue.get(order.venue, 0) + 1
        realised = sum((s.position.funding_pnl for s in engine.markets.values()), Decimal(0))
        fees = sum((s.position.fees_paid for s in engine.markets.values()), Decimal(0))
        binance_key = self._settings.binance_api_key
        out: dict[str, Any] = {
            "risk_mode": engine.risk_mode.value,
            "risk_reason": engine.risk_reason,
            "kill_latched": latch is not None,
            "kill_reason": latch.reason if latch else None,
            "paused": engine.paused,
            "network": self._settings.network,
            "trading": self._settings.trading,
            "account": {
                "dydx": self._extra.get("dydx_address"),
                "binance": mask_key(binance_key.get_secret_value() if binance_key else None),
            },
            "equity": _money(engine.equity()),
            "fees_paid": _money(fees),
            "open_orders": {self._orders.venue.name: 0, **by_venue},
            "funding": {"realised": _money(realised), "expected": _money(engine.expected_funding())},
            "block_height": engine.block_height,
            "uptime_secs": round(time.monotonic() - self._started, 1),
            "markets": {t: self._market_status(t) for t in engine.markets},
        }
        if "sim" in self._extra:
            out["sim"] = self._extra["sim"]
        return out

    def _market_status(self, ticker: str) -> dict[str, Any]:
        state = self._engine.markets[ticker]
        pos = state.position
        flags = state.flags.as_dict() if state.flags else {
            name: {"tripped": False, "why": "warming_up"}
            for name in ("funding", "liquidity", "volatility", "news")
        }
        mid = state.book.mid()
        return {
            "position": _size(pos.size),
            "avg_entry": _money(pos.avg_entry),
            "target": _size(state.target),
            "oracle_price": str(state.oracle_price) if state.oracle_price is not None else None,
            "mid": str(mid) if mid is not None else None,
            "funding_rate_1h": str(state.funding.rate_1h),
            "realised_pnl": _money(pos.realised_pnl),
            "funding_pnl": _money(pos.funding_pnl),
            "flags": flags,
            "last_decision": state.last_decision,
        }

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

    async def kill(self, reason: str, flatten: bool = False) -> dict[str, Any]:
        """Latch HALTED, cancel every open order of ours, optionally flatten; report what is left."""
        now = self._clock.now_ns()
        self._store.latch_kill(reason, now)
        self._engine.set_risk_mode(RiskMode.HALTED, f"kill: {reason}")
        log.warning("kill_latched", reason=reason, flatten=flatten)
        errors: list[str] = []
        try:
            cancelled = await self._orders.cancel_all()
        except BotError as exc:
            cancelled, errors = [], [str(exc)]
        flattened = await self._flatten() if flatten else []
        remaining = self._store.open_orders()
        positions = {t: _size(s.position.size) for t, s in self._engine.markets.items()
                     if s.position.size}
        report = {
            "kill_latched": True,
            "reason": reason,
            "cancelled": cancelled,
            "flatten_orders": flattened,
            "remaining_open_orders": [o.client_id for o in remaining],
            "positions": positions,
            "errors": errors,
        }
        log.warning("kill_done", cancelled=len(cancelled), remaining=len(remaining),
                    positions=positions)
        return report

    async def _flatten(self) -> list[int]:
        sent = []
        cap = self._settings.execution.slippage_cap_bps * BPS
        for ticker, state in self._engine.markets.items():
            size = state.position.size
            if not size:
                continue
            side = Side.SELL if size > 0 else Side.BUY
            touch = state.book.best_bid() if side is Side.SELL else state.book.best_ask()
            if touch is None:
                continue
            tick = state.spec.tick_size
            raw = touch.price * (1 - cap if side is Side.SELL else 1 + cap)
            price = (raw / tick).quantize(Decimal(1)) * tick
            order = OrderRequest(self._store.next_client_id(), ticker, side, abs(size), price,
                                 TimeInForce.IOC, reduce_only=True)
            await self._orders.submit(order)
            sent.append(order.client_id)
        return sent

    def set_target(self, market: str, size: str) -> dict[str, Any]:
        """Set the directional sleeve's target for a market; raises ValueError on bad input."""
        if market not in self._engine.markets:
            raise ValueError(f"unknown market {market!r}; trading {sorted(self._engine.markets)}")
        try:
            value = Decimal(size)
        except ArithmeticError:
            raise ValueError(f"size {size!r} is not a number") from None
        if not value.is_finite():
            raise ValueError(f"size {size!r} is not a finite number")
        self._engine.set_directional_target(market, value)
        log.warning("target_set", market=market, size=str(value))
        return {"market": market, "target": str(value)}

    def news_set(self, item: str, ttl_secs: float) -> dict[str, Any]:
        """Raise an operator news flag for all markets until the TTL runs out."""
        expiry = self._clock.now_ns() + int(ttl_secs * NS_PER_SEC)
        self._engine.news[item] = expiry
        log.warning("news_set", item=item, ttl_secs=ttl_secs)
        return {"news": self._engine.active_news(self._clock.now_ns())}

    def news_clear(self, item: str | None = None) -> dict[str, Any]:
        """Clear one operator news flag, or all of them."""
        if item is None:
            self._engine.news.clear()
        else:
            self._engine.news.pop(item, None)
        log.warning("news_cleared", item=item)
        return {"news": self._engine.active_news(self._clock.now_ns())}


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.000001")))


def _size(value: Decimal) -> str:
    return "0" if value == 0 else str(value)
