"""Market events <-> JSON-ready dicts (recordings); Decimals travel as strings, time as int ns.

One line per event: `{"v": "perp"|"spot", "k": kind, "t": ts_recv, ...}` with kinds
`book` (snapshot), `delta`, `trade`, `oracle`, `height`, `status` (market status), `params`
(tick, step, margin fractions, market type). Levels are `[[price, size], ...]`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.domain import (
    BlockHeight,
    BookDelta,
    BookLevel,
    BookSnapshot,
    MarketEvent,
    MarketParams,
    MarketStatus,
    MarketStatusKind,
    OracleUpdate,
    Side,
    Trade,
)


def _levels(levels: tuple[BookLevel, ...]) -> list[list[str]]:
    return [[str(lv.price), str(lv.size)] for lv in levels]


def _parse_levels(raw: Any) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(Decimal(p), Decimal(s)) for p, s in raw)


def encode_event(event: MarketEvent, venue: str) -> dict[str, Any]:
    """One market event as a JSON-ready dict tagged with the venue leg ("perp" or "spot")."""
    if isinstance(event, BookSnapshot | BookDelta):
        kind = "book" if isinstance(event, BookSnapshot) else "delta"
        return {"v": venue, "k": kind, "t": event.ts_recv, "e": event.ts_event, "m": event.market,
                "b": _levels(event.bids), "a": _levels(event.asks)}
    if isinstance(event, Trade):
        return {"v": venue, "k": "trade", "t": event.ts_recv, "e": event.ts_event, "m": event.market,
                "p": str(event.price), "s": str(event.size), "side": event.aggressor.value}
    if isinstance(event, OracleUpdate):
        return {"v": venue, "k": "oracle", "t": event.ts_recv, "e": event.ts_event, "m": event.market,
                "p": str(event.oracle_price), "f": str(event.next_funding_rate)}
    if isinstance(event, BlockHeight):
        return {"v": venue, "k": "height", "t": event.ts_recv, "e": event.ts_event, "h": event.height}
    if isinstance(event, MarketStatus):
        return {"v": venue, "k": "status", "t": event.ts_recv, "e": event.ts_event, "m": event.market,
                "st": event.status.value}
    if isinstance(event, MarketParams):
        return {"v": venue, "k": "params", "t": event.ts_recv, "e": event.ts_event, "m": event.market,
                **{key: None if value is None else str(value) for key, value in _params(event).items()}}
    raise TypeError(f"not a market event: {type(event).__name__}")


def _params(event: MarketParams) -> dict[str, object]:
    return {"tick": event.tick_size, "step": event.step_size, "imf": event.initial_margin_fraction,
            "mmf": event.maintenance_margin_fraction, "type": event.market_type}


def decode_event(data: dict[str, Any]) -> tuple[str, MarketEvent]:
    """Return (venue leg, event) from a dict made by `encode_event`; raises ValueError if malformed."""
    try:
        kind, t, e = data["k"], int(data["t"]), int(data.get("e", data["t"]))
        venue = str(data.get("v", "perp"))
        if kind == "book":
            return venue, BookSnapshot(data["m"], _parse_levels(data["b"]), _parse_levels(data["a"]), e, t)
        if kind == "delta":
            return venue, BookDelta(data["m"], _parse_levels(data["b"]), _parse_levels(data["a"]), e, t)
        if kind == "trade":
            return venue, Trade(data["m"], Decimal(data["p"]), Decimal(data["s"]), Side(data["side"]), e, t)
        if kind == "oracle":
            return venue, OracleUpdate(data["m"], Decimal(data["p"]), Decimal(data["f"]), e, t)
        if kind == "height":
            return venue, BlockHeight(int(data["h"]), e, t)
        if kind == "status":
            return venue, MarketStatus(data["m"], MarketStatusKind(data["st"]), e, t)
        if kind == "params":
            def dec(key: str) -> Decimal | None:
                return None if data.get(key) is None else Decimal(data[key])

            return venue, MarketParams(data["m"], dec("tick"), dec("step"), dec("imf"), dec("mmf"),
                                       data.get("type"), e, t)
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise ValueError(f"malformed event: {exc!r}") from None
    raise ValueError(f"unknown event kind {kind!r}")
