"""The store's meta table (key -> text) as the modules that keep a small record there see it:
the live peak (bot.peak), the per-market strategy state (bot.strategy_state) and the Binance
transfer catch-up's cursor (bot.venues.binance.catch_up)."""

from __future__ import annotations

from typing import Protocol


class MetaStore(Protocol):
    """One value per key; `bot.store.Store` is one (tests may pass a dict-backed one)."""

    def meta_get(self, key: str) -> str | None: ...

    def meta_set(self, key: str, value: str) -> None: ...
