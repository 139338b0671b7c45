"""Walk-forward folds: K train/test window pairs over a data span (pure).

The span is cut into K + 1 equal segments on bar boundaries. Fold i tests on segment i + 1 and
trains on segment i (`rolling`) or on segments 0..i (`anchored`). The test windows are
contiguous and together cover everything after the first segment, so their results concatenate
into one out-of-sample record; no test bar is ever seen by its own fold's training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.clock import NS_PER_SEC


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int  # exclusive

    def describe(self) -> dict[str, str]:
        return {"start": iso(self.start_ns), "end": iso(self.end_ns)}


@dataclass(frozen=True)
class Fold:
    index: int
    train: Window
    test: Window


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS_PER_SEC, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def walk_forward(start_ns: int, end_ns: int, folds: int, bar_ns: int, walk: str = "rolling",
                 min_bars: int = 2) -> list[Fold]:
    """K folds over [start, end); ValueError when a segment would hold fewer than `min_bars` bars."""
    if folds < 1:
        raise ValueError("need at least one fold")
    if walk not in ("rolling", "anchored"):
        raise ValueError(f"unknown walk {walk!r}")
    bars = (end_ns - start_ns) // bar_ns
    per = bars // (folds + 1)
    if per < min_bars:
        raise ValueError(f"{bars} bars make {folds + 1} segments of {per} bars; "
                         f"need at least {min_bars} each")
    edges = [start_ns + k * per * bar_ns for k in range(folds + 1)] + [start_ns + bars * bar_ns]
    out = []
    for i in range(folds):
        train_start = edges[0] if walk == "anchored" else edges[i]
        out.append(Fold(i, Window(train_start, edges[i + 1]), Window(edges[i + 1], edges[i + 2])))
    return out
