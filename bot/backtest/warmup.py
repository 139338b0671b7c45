"""Warm-up of a candle backtest: the estimators seeded from the files' rows before the replay start.

The daemon reads `strategy.history_hours` of venue history at start (bot.history) and folds it
into the sizing vol and the funding estimators before its first evaluation. A backtest whose files
hold rows before its start does the same with them, through the same `Engine.seed_history`, so a
window starts as the daemon would at that instant (no trading, no PnL, no samples in the warm-up).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from bot.clock import NS_PER_HOUR
from bot.history import MarketHistory

if TYPE_CHECKING:
    from .history import Bar
    from .sources import Source


def market_history(market: str, bars: list[Bar], funding: dict[int, Decimal], start_ns: int,
                   hours: int) -> MarketHistory:
    """What a venue's `hourly_history` would give at `start_ns`: the last close of each hour in
    [start - hours, start), labelled by the hour's start, and the hourly rates settled by then
    (keyed by hour end, as the sim's and dYdX's histories are)."""
    since = start_ns - hours * NS_PER_HOUR
    closes: dict[int, Decimal] = {}
    for bar in bars:
        if since <= bar.ts_ns < start_ns:
            closes[bar.ts_ns // NS_PER_HOUR * NS_PER_HOUR] = Decimal(repr(bar.close))
    rates = [(ts, rate) for ts, rate in sorted(funding.items()) if since < ts <= start_ns]
    return MarketHistory(market, sorted(closes.items()), rates, source="files")


def add_warmup(src: Source, candles: dict[str, list[Bar]], funding: dict[str, dict[int, Decimal]],
               hours: int) -> None:
    """Attach each market's warm-up history to `src` (the runner seeds the engine with
    `hooks["warmup"]`), record it in `describe["warmup"]` and note a short one in the checks."""
    if hours <= 0:  # the daemon reads no history either
        return
    histories = [market_history(t, candles.get(t, []), funding.get(t, {}), src.start_ns, hours)
                 for t in src.specs]
    src.hooks["warmup"] = [h for h in histories if h.closes or h.funding]  # none: cold, as before
    src.describe["warmup"] = {h.market: {"candles": len(h.closes), "funding": len(h.funding),
                                         "from_ns": h.closes[0][0] if h.closes else None}
                              for h in histories}
    checks = src.describe.setdefault("checks", [])
    for h in histories:
        got = (src.start_ns - h.closes[0][0]) // NS_PER_HOUR if h.closes else 0
        if not h.closes:
            checks.append(f"{h.market}: no candles before the start: the estimators start cold "
                          f"(the daemon seeds {hours} h, strategy.history_hours)")
        elif got < hours:
            checks.append(f"{h.market}: warm-up from {got} h of candles before the start, not {hours} "
                          "(strategy.history_hours)")
