"""The token bucket: one rate limit as data (pure), shared by order pacing and notifications.

Arithmetic is exact (`Fraction`) so a rate such as 20 a minute (1/3 token a second) refills
exactly one token after exactly 3 s; binary floats and 28-digit Decimals both fall short of 1
there. Time comes in as integer ns from the caller's clock; the bucket never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from bot.clock import NS_PER_SEC

Rate = Fraction | Decimal | int


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `rate_per_sec`; `tokens` may go below zero only by a forced
    take (a debt, bounded by `-capacity`) that later takes wait for. Immutable."""

    capacity: Fraction
    rate_per_sec: Fraction
    tokens: Fraction
    updated_ns: int

    @classmethod
    def full(cls, rate_per_sec: Rate, now_ns: int, burst: Rate | None = None) -> TokenBucket:
        """A bucket that starts full; the burst defaults to one second's worth (at least 1)."""
        rate = Fraction(rate_per_sec)
        capacity = max(Fraction(1), Fraction(burst) if burst is not None else rate)
        return cls(capacity, rate, capacity, now_ns)

    def refilled(self, now_ns: int) -> TokenBucket:
        """The bucket at `now_ns` (time never runs backwards here)."""
        if now_ns <= self.updated_ns:
            return self
        gained = self.rate_per_sec * (now_ns - self.updated_ns) / NS_PER_SEC
        return TokenBucket(self.capacity, self.rate_per_sec, min(self.capacity, self.tokens + gained), now_ns)

    def take(self, now_ns: int, n: int = 1) -> tuple[TokenBucket, bool]:
        """Take `n` tokens if available: (new bucket, True); else (refilled bucket, False)."""
        bucket = self.refilled(now_ns)
        if bucket.tokens < n:
            return bucket, False
        return bucket._with_tokens(bucket.tokens - n), True

    def force_take(self, now_ns: int, n: int = 1) -> TokenBucket:
        """Take `n` tokens even if they are not there; the debt is capped at `capacity`."""
        bucket = self.refilled(now_ns)
        return bucket._with_tokens(max(bucket.tokens - n, -self.capacity))

    def wait_secs(self, n: int = 1) -> Fraction:
        """Seconds from `updated_ns` until `n` tokens are there (0 if they are now)."""
        return max(Fraction(0), (n - self.tokens) / self.rate_per_sec)

    def _with_tokens(self, tokens: Fraction) -> TokenBucket:
        return TokenBucket(self.capacity, self.rate_per_sec, tokens, self.updated_ns)
