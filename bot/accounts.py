"""The venues' accounts as they report them, for live trading: equity, margin, balances, fees.

`AccountBook` reads every `AccountSource` (bot.venues.ports) at start, again soon after the
account stream reports a fill or a funding payment (`watching` wraps a venue's account sink), and
on a slow poll. A failed read keeps the last state; its age is a watchdog input (stale account
data). Paper and backtests have no AccountBook: their equity and fees are the configured ones.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import structlog

from bot.clock import NS_PER_SEC, Clock
from bot.config import Settings
from bot.domain import ZERO, AccountEvent, AccountState, FeeRates, Fill, FundingPayment
from bot.errors import BotError
from bot.telemetry import Metrics
from bot.venues.ports import AccountSink, AccountSource

log = structlog.get_logger("accounts")
def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def account_json(state: AccountState, age_secs: float | None) -> dict[str, Any]:
    """One venue account for `status`: money as decimal strings."""
    return {
        "equity": _money(state.equity_usd),
        "free_collateral": _money(state.free_collateral_usd),
        "initial_margin": _money(state.initial_margin_usd),
        "maintenance_margin": _money(state.maintenance_margin_usd),
        "margin_use": str(state.margin_use.quantize(Decimal("0.0001"))),
        "balances": {asset: str(amount) for asset, amount in sorted(state.balances.items())},
        "source": "venue",
        "age_secs": None if age_secs is None else round(age_secs, 1),
    }


def fees_json(fees: FeeRates) -> dict[str, str]:
    return {"maker": str(fees.maker), "taker": str(fees.taker), "source": fees.source}


def decision_fees(settings: Settings, accounts: AccountBook | None) -> dict[str, FeeRates]:
    """The fee rates decisions use: {"dydx": the perp venue's, "binance": the spot hedge venue's}.

    Paper and backtests: the configured schedules (`paper.*`, `strategy.carry.spot_*`). Live: what
    the venue reports; the configured schedule only until the venue's fees were first read.
    """
    configured = {
        "dydx": FeeRates(settings.paper.maker_fee_rate, settings.paper.taker_fee_rate, "config:paper"),
        "binance": FeeRates(settings.strategy.carry.spot_maker_fee_rate,
                            settings.strategy.carry.spot_taker_fee_rate, "config:strategy.carry"),
    }
    if accounts is None:
        return configured
    out = {}
    for venue, fallback in configured.items():
        fees = accounts.fees(venue)
        if fees is None and venue in accounts.sources:
            fees = replace(fallback, source=f"{fallback.source} (venue fees not read yet)")
        out[venue] = fees or fallback
    return out


class AccountBook:
    """The last account state per venue, refreshed on the account stream and on a slow poll."""

    name = "accounts"

    def __init__(self, sources: list[AccountSource], metrics: Metrics, clock: Clock, *,
                 poll_secs: float = 15.0, min_interval_secs: float = 1.0) -> None:
        self.sources = {source.name: source for source in sources}
        self.states: dict[str, AccountState] = {}
        self._read_ns: dict[str, int] = {}
        self._read_started: dict[str, int] = {}  # when the refresh that read each venue started
        self._metrics = metrics
        self._clock = clock
        self._poll_ns = int(poll_secs * NS_PER_SEC)
        self._min_interval = min_interval_secs
        self._started_ns = clock.now_ns()
        self._last_refresh_ns = 0
        self._dirty = False

    @property
    def ready(self) -> bool:
        """True once every venue's account was read at least once."""
        return len(self.states) == len(self.sources)

    def equity(self) -> Decimal | None:
        """The sum of the venues' equities; None until every venue was read."""
        if not self.ready:
            return None
        return sum((s.equity_usd for s in self.states.values()), ZERO)

    def fees(self, venue: str) -> FeeRates | None:
        state = self.states.get(venue)
        return state.fees if state is not None else None

    def ages_secs(self, now_ns: int) -> dict[str, float]:
        """Seconds since each venue's account was last read (since start when never)."""
        return {name: (now_ns - self._read_ns.get(name, self._started_ns)) / NS_PER_SEC
                for name in self.sources}

    def read_since(self, venue: str, ns: int) -> bool:
        """True when `venue`'s state was read by a refresh that started after `ns`."""
        return self._read_started.get(venue, 0) > ns

    def nudge(self) -> None:
        """The account changed (a fill, a funding payment): read it again soon."""
        self._dirty = True

    def watching(self, sink: AccountSink) -> AccountSink:
        """`sink`, plus a nudge on every fill and funding payment the venue's stream reports."""
        def wrapped(event: AccountEvent) -> None:
            if isinstance(event, Fill | FundingPayment):
                self._dirty = True
            sink(event)

        return wrapped

    async def refresh(self) -> None:
        """Read every venue once; a failure keeps that venue's last state (and its age grows)."""
        self._dirty = False
        self._last_refresh_ns = self._clock.now_ns()
        for name, source in self.sources.items():
            try:
                state = await source.read()
            except BotError as exc:
                log.warning("account_read_failed", venue=name, error=str(exc),
                            age_secs=round(self.ages_secs(self._clock.now_ns())[name], 1))
                continue
            before = self.states.get(name)
            self.states[name] = state
            self._read_ns[name] = self._clock.now_ns()
            self._read_started[name] = self._last_refresh_ns
            self._metrics.account_equity_usd.labels(name).set(float(state.equity_usd))
            self._metrics.account_free_collateral_usd.labels(name).set(float(state.free_collateral_usd))
            if before is None:
                log.info("account_read", venue=name, equity=str(state.equity_usd),
                         free_collateral=str(state.free_collateral_usd),
                         fees=fees_json(state.fees) if state.fees else None)

    async def run(self) -> None:
        """Refresh when the stream nudged (at most once per `min_interval_secs`), while a venue was
        never read (a book still empty at start), or when the poll is due."""
        while True:
            await self._clock.sleep(self._min_interval)
            now = self._clock.now_ns()
            if self._dirty or not self.ready or now - self._last_refresh_ns >= self._poll_ns:
                await self.refresh()
            for name, age in self.ages_secs(self._clock.now_ns()).items():
                self._metrics.account_age_seconds.labels(name).set(age)

    def status(self, now_ns: int) -> dict[str, dict[str, Any] | None]:
        """Per venue: its account for `status` (venues not read yet: None)."""
        ages = self.ages_secs(now_ns)
        return {name: account_json(self.states[name], ages[name]) if name in self.states else None
                for name in self.sources}
