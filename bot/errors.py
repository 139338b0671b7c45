"""The error taxonomy, grouped by what the caller must do.

    BotError
    ├── ConfigError(key, reason)          -> exit 2, one line naming the key
    ├── VenueError(venue, op)
    │   ├── TransientVenueError           -> retry with backoff (network, timeout, 5xx)
    │   │   └── RateLimited(retry_after_secs)
    │   ├── OrderRejected(reason)         -> no retry; the planner re-plans
    │   │   ├── InsufficientMargin
    │   │   └── PostOnlyWouldCross
    │   └── OrderStateUnknown             -> never resubmit blindly; reconcile by client id
    ├── FeedError
    │   ├── SequenceGap / CrossedBook     -> resync from snapshot
    │   └── MalformedMessage              -> count, log, resync; never crash
    ├── DaemonUnreachable                 -> CLI exit 3
    └── InvariantViolation                -> set the kill latch, HALTED
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """A configuration value is missing or invalid; names the offending key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class VenueError(BotError):
    """A venue operation failed."""

    def __init__(self, venue: str, op: str, detail: str = "") -> None:
        super().__init__(f"{venue} {op}: {detail}" if detail else f"{venue} {op}")
        self.venue = venue
        self.op = op
        self.detail = detail


class TransientVenueError(VenueError):
    """Network trouble, a timeout or a 5xx: retry with backoff."""


class RateLimited(TransientVenueError):
    """The venue asked us to slow down."""

    def __init__(self, venue: str, op: str, retry_after_secs: float) -> None:
        super().__init__(venue, op, f"rate limited, retry after {retry_after_secs}s")
        self.retry_after_secs = retry_after_secs


class OrderRejected(VenueError):
    """The venue refused the order; retrying the same order will not help."""


class InsufficientMargin(OrderRejected):
    """Not enough free collateral for the order."""


class PostOnlyWouldCross(OrderRejected):
    """A post-only order would have taken liquidity."""


class OrderStateUnknown(VenueError):
    """We do not know whether the venue accepted the order: reconcile before anything else."""


class FeedError(BotError):
    """Market data can no longer be trusted until resynced."""


class SequenceGap(FeedError):
    """A message id is missing from the stream."""


class CrossedBook(FeedError):
    """Best bid is at or above best ask."""


class MalformedMessage(FeedError):
    """A venue message did not parse."""


class DaemonUnreachable(BotError):
    """The control API did not answer."""


class InvariantViolation(BotError):
    """Something that must never happen did: latch the kill switch."""
