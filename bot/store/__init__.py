"""Durable state: orders, fills, funding, decisions and safety flags in SQLite."""

from bot.store.repo import DecisionRecord, KillLatch, Store, StoredOrder

__all__ = ["DecisionRecord", "KillLatch", "Store", "StoredOrder"]
