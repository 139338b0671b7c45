"""Parity: the engine run live-path on the protocol simulator and as an in-process backtest over the
same market make the same decisions and get the same fills, within a stated tolerance.

Live path: the daemon's own wiring (`App.create` with sim.mode=protocol and paper trading): the
embedded simulator's indexer servers, the dYdX adapter's WebSocket feed and parser, the shared
books, the engine, the order manager and the paper venue, in real time. Everything the engine is
handed is captured as it arrives (a book change as the full book the engine then reads). The
backtest replays that capture through `Backtest`: simulated clock, no sockets, the same settings.

Tolerance. Evaluations are driven by the events, so they happen at the same instants on both
paths; what differs is time between events: the live engine ticks every 100 ms of wall time from
whenever it started (plus scheduling delay) and the backtest on the 100 ms grid, so a TWAP child
leaves up to ~100 ms apart and may meet a book that moved in between. Hence:
- decisions: the same sequence of (market, reason), each within 1 s, with the same target
  after it within one size step (sizing reads equity, which the fill prices move by cents);
- fills: per market and side the same total size (every TWAP completes on both paths); the
  volume-weighted fill price within 5 bps; the number of fills within a factor of two.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.app import App
from bot.backtest.runner import Backtest
from bot.backtest.sources import Source
from bot.config import Settings, load
from bot.domain import BookSnapshot, MarketEvent, Side

LIVE_SECS = 24.0
NS_PER_SEC = 1_000_000_000
DECISION_SLACK_NS = NS_PER_SEC
VWAP_BPS = Decimal(5)


def _settings(state_dir: Path) -> Settings:
    return load(
        None, env_file=None, state_dir=state_dir, network="sim", trading="paper",
        markets=("BTC-USD", "ETH-USD"),
        sim={"mode": "protocol", "seed": 42},
        control={"port": 0},
        watchdog={"enabled": False},  # wall-clock probes have no backtest counterpart here
        rules={"audit_interval_secs": 6},  # an audit (re-size and rebalance) every few seconds
        execution={"twap_duration_secs": 4, "twap_slices": 4},
        strategy={"carry": {"enabled": False},  # protocol mode has no spot hedge venue
                  "targets": {"BTC-USD": "0.05", "ETH-USD": "-0.5"},
                  "target_vol_annual": "5",  # the whole thesis, whatever the vol: enough fills
                  "history_hours": 0},  # the backtest starts cold: so does the live run here
    )


Rows = list[dict[str, Any]]


async def _run_live(settings: Settings, secs: float) -> tuple[Source, Rows, Rows]:
    """Run the daemon's wiring for `secs`; return the capture as a Source, decisions and fills."""
    app = await App.create(settings)
    engine = app.engine
    on_event, on_book = engine.on_market_event, engine.on_book_changed
    batches: list[tuple[int, list[MarketEvent], list[MarketEvent]]] = []

    def capture(ts: int, event: MarketEvent) -> None:
        if batches and batches[-1][0] == ts:
            batches[-1][1].append(event)
        else:
            batches.append((max(ts, batches[-1][0]) if batches else ts, [event], []))

    def record_event(event: MarketEvent) -> None:
        capture(event.ts_recv, event)
        on_event(event)

    def record_book(market: str, ts_recv: int) -> None:
        book = engine.markets[market].book
        capture(ts_recv, BookSnapshot(market, tuple(book.levels(Side.BUY, 1 << 20)),
                                      tuple(book.levels(Side.SELL, 1 << 20)), ts_recv, ts_recv))
        on_book(market, ts_recv)

    # The app's feed sink looks these up on the engine at each call: instance attributes win.
    engine.on_market_event = record_event  # type: ignore[method-assign]
    engine.on_book_changed = record_book  # type: ignore[method-assign]
    task = asyncio.create_task(app.run())
    await asyncio.sleep(secs)
    # One synchronous cut: the capture, the decisions and the fills as of the same instant.
    cut_ns = app.clock.now_ns()
    engine.on_market_event, engine.on_book_changed = on_event, on_book  # type: ignore[method-assign]
    decisions = [{"ts_ns": d.ts_ns, "market": d.market, "reason": d.reason,
                  "target_after": d.plan.get("target_after")}
                 for d in reversed(app.store.decisions(None, limit=10**6))]
    fills = [{"ts_ns": f.ts_event, "market": f.market, "side": f.side.value, "price": str(f.price),
              "size": str(f.size)} for f in app.store.fills()]
    app.stop.set()
    assert await task == 0
    assert batches, "the live path received no market events"
    source = Source("live-capture", dict(engine.specs), {}, {}, batches[0][0], cut_ns, batches)
    return source, decisions, fills


def _by_market_side(fills: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    """(market, side) -> (total size, volume-weighted price, number of fills)."""
    acc: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for f in fills:
        row = acc[(f["market"], f["side"])]
        size = Decimal(f["size"])
        row[0] += size
        row[1] += size * Decimal(f["price"])
        row[2] += 1
    return {k: (size, notional / size, n) for k, (size, notional, n) in acc.items()}


async def test_live_path_and_backtest_make_the_same_decisions_and_fills(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "state")
    source, live_decisions, live_fills = await _run_live(settings, LIVE_SECS)
    result = await Backtest(settings, source).run_async()

    bt_decisions = [e for e in result.timeline if e["kind"] == "decision"]
    # At least the start-up audit of each market, each with a 4-child TWAP (most of whose children
    # have filled by the cut: a child's IOC can land just after it).
    assert len(live_decisions) >= 2 and len(live_fills) >= 6, (
        f"too little happened live to compare: {len(live_decisions)} decisions, {len(live_fills)} fills")
    assert [(d["market"], d["reason"]) for d in bt_decisions] == [
        (d["market"], d["reason"]) for d in live_decisions]
    for live, bt in zip(live_decisions, bt_decisions, strict=True):
        assert abs(live["ts_ns"] - bt["ts_ns"]) <= DECISION_SLACK_NS, (live, bt)
        step = source.specs[live["market"]].step_size
        assert abs(Decimal(live["target_after"]) - Decimal(bt["target_after"])) <= step, (live, bt)

    live_totals, bt_totals = _by_market_side(live_fills), _by_market_side(result.fills)
    assert live_totals.keys() == bt_totals.keys()
    for key, (size, vwap, count) in live_totals.items():
        bt_size, bt_vwap, bt_count = bt_totals[key]
        assert bt_size == size, key
        assert abs(bt_vwap - vwap) / vwap * 10_000 <= VWAP_BPS, (key, vwap, bt_vwap)
        assert count / 2 <= bt_count <= count * 2, (key, count, bt_count)
