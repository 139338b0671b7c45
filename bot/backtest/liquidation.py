"""Intrabar risk in a backtest: liquidation at the venue's maintenance margin, drawdown on every mark.

The runner calls `IntrabarRisk.observe` after every batch of market events while a perp leg is
open. Candle sources walk each bar through its High and Low (`sources._path_prices`), so the
marks seen here include the bar's extremes: a wick that takes equity below maintenance margin
liquidates even if the bar closes well, and the drawdown counts it.

Liquidation (dYdX v4 style, isolated to this account): when equity (cash + unrealised on every
leg, spot included) falls below the sum of |perp notional| x the market's maintenance margin
fraction, every perp position is closed at the mark with a taker-side fee of
`LIQUIDATION_FEE_RATE` of its notional (the v4 protocol's maximum liquidation fee, 1.5%). The
close is a venue fill (`Fill.client_id` 0, `fill_id` "liquidation-..."), so positions, PnL,
fees and the store see it as the daemon would see a venue's liquidation fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bot.domain import ZERO, Fill, Liquidity, Side

LIQUIDATION_FEE_RATE = Decimal("0.015")


def maintenance_usd(engine: Any, marks: Mapping[str, Decimal] | None = None) -> Decimal:
    """Sum of |perp notional| x maintenance margin fraction over the markets with a mark (`marks`
    replaces the state's for the markets it names)."""
    total = ZERO
    for ticker, st in engine.markets.items():
        mark = st.mark if marks is None or ticker not in marks else marks[ticker]
        if st.position.size and mark is not None:
            total += abs(st.position.size * mark) * st.spec.maintenance_margin_fraction
    return total


def liquidation_fills(engine: Any, ts_ns: int, seq: int) -> list[Fill]:
    """The forced closes of every open perp position at its mark, with the liquidation fee."""
    fills = []
    for ticker, st in sorted(engine.markets.items()):
        size, mark = st.position.size, st.mark
        if not size or mark is None:
            continue
        side = Side.SELL if size > 0 else Side.BUY
        fee = abs(size) * mark * LIQUIDATION_FEE_RATE
        fills.append(Fill(f"liquidation-{seq}-{ticker}", 0, ticker, side, mark, abs(size), fee,
                          Liquidity.TAKER, ts_ns))
    return fills


class IntrabarRisk:
    """Peak and worst drawdown of equity at every observed mark; liquidation events."""

    __slots__ = ("events", "last_equity", "max_drawdown", "peak")

    def __init__(self, initial: Decimal) -> None:
        self.peak = initial
        self.last_equity = initial  # at the last observed mark
        self.max_drawdown = ZERO
        self.events: list[dict[str, Any]] = []

    def mark_equity(self, equity: Decimal) -> None:
        if equity > self.peak:
            self.peak = equity
        elif self.peak > 0:
            dd = 1 - equity / self.peak
            if dd > self.max_drawdown:
                self.max_drawdown = dd

    def observe_at(self, engine: Any, marks: Mapping[str, Decimal], spot_mids: Mapping[str, Decimal]) -> bool:
        """An intrabar extreme not applied to the state: track its drawdown and return True, or
        return False (nothing tracked) when margin would be breached there (`observe` then runs
        on the applied marks and liquidates)."""
        equity = engine.portfolio.equity_at(marks, spot_mids)
        maintenance = maintenance_usd(engine, marks)
        if maintenance and equity < maintenance:
            return False
        self.last_equity = equity
        self.mark_equity(equity)
        return True

    def observe(self, engine: Any, ts_ns: int) -> list[Fill]:
        """Track drawdown at this mark; return the liquidation fills when margin is breached."""
        equity = self.last_equity = engine.equity()
        self.mark_equity(equity)
        maintenance = maintenance_usd(engine)
        if not maintenance or equity >= maintenance:
            return []
        fills = liquidation_fills(engine, ts_ns, len(self.events) + 1)
        self.events.append({"ts_ns": ts_ns, "kind": "liquidation", "equity": str(equity),
                            "maintenance": str(maintenance),
                            "fee": str(sum((f.fee for f in fills), ZERO)),
                            "closed": {f.market: str(f.size if f.side is Side.SELL else -f.size)
                                       for f in fills}})
        return fills
