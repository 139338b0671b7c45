"""The one token bucket: bounds, exact refill at rational rates, and the forced-take debt."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from bot.clock import NS_PER_SEC
from bot.ratelimit import TokenBucket

rates = st.fractions(min_value=Fraction(1, 600), max_value=100, max_denominator=1000)
bursts = st.integers(min_value=1, max_value=50)
# (gap in ns since the previous step, 0 take / 1 forced take / 2 look only)
steps = st.lists(st.tuples(st.integers(0, 10 * NS_PER_SEC), st.integers(0, 2)), max_size=60)


def test_twenty_a_minute_gives_exactly_one_token_every_three_seconds() -> None:
    bucket = TokenBucket.full(Fraction(20, 60), 0, burst=1)
    bucket, ok = bucket.take(0)
    assert ok
    bucket, ok = bucket.take(3 * NS_PER_SEC - 1)  # one ns short: not yet
    assert not ok and bucket.wait_secs() == Fraction(1, NS_PER_SEC)
    bucket, ok = bucket.take(3 * NS_PER_SEC)
    assert ok and bucket.tokens == 0
    for k in range(2, 200):  # and on every later 3 s boundary, with nothing left over
        bucket, ok = bucket.take(3 * k * NS_PER_SEC)
        assert ok and bucket.tokens == 0


def test_decimal_rate_and_default_burst_keep_the_order_limits() -> None:
    bucket = TokenBucket.full(Decimal("2.5"), 0)
    assert bucket.capacity == Fraction(5, 2) and bucket.tokens == Fraction(5, 2)
    assert TokenBucket.full(Decimal("0.2"), 0).capacity == 1  # at least one token
    bucket, _ = bucket.take(0, n=2)
    bucket, ok = bucket.take(NS_PER_SEC // 5)  # 0.5 + 2.5 * 0.2 = exactly 1
    assert ok and bucket.tokens == 0


def test_a_forced_take_leaves_a_debt_capped_at_the_capacity() -> None:
    bucket = TokenBucket.full(1, 0, burst=2)
    for _ in range(10):
        bucket = bucket.force_take(0)
    assert bucket.tokens == -2 and bucket.wait_secs() == 3
    assert bucket.refilled(-5).tokens == -2, "time running backwards gains nothing"


@given(rates, bursts, steps)
def test_tokens_stay_within_bounds_and_takes_never_overdraw(rate: Fraction, burst: int,
                                                           plan: list[tuple[int, int]]) -> None:
    bucket, now = TokenBucket.full(rate, 0, burst=burst), 0
    forced = False
    for gap, action in plan:
        now += gap
        before = bucket.refilled(now).tokens
        if action == 0:
            bucket, ok = bucket.take(now)
            assert ok == (before >= 1)
            assert bucket.tokens == (before - 1 if ok else before)
        elif action == 1:
            bucket, forced = bucket.force_take(now), True
        else:
            bucket = bucket.refilled(now)
        assert bucket.tokens <= bucket.capacity
        assert bucket.tokens >= (-bucket.capacity if forced else 0)
        if bucket.tokens < 1:
            assert bucket.refilled(now + int(bucket.wait_secs() * NS_PER_SEC) + 1).tokens >= 1


@given(rates, bursts, st.lists(st.integers(0, 10 * NS_PER_SEC), min_size=1, max_size=30))
def test_refill_is_exact_however_time_is_split(rate: Fraction, burst: int, gaps: list[int]) -> None:
    empty = TokenBucket(Fraction(burst), rate, Fraction(0), 0)
    stepped = empty
    for t in range(len(gaps)):
        stepped = stepped.refilled(sum(gaps[: t + 1]))
    assert stepped == empty.refilled(sum(gaps))
    assert stepped.tokens == min(Fraction(burst), rate * sum(gaps) / NS_PER_SEC)


@given(st.integers(1, 600), st.integers(1, 1000))
def test_whole_tokens_arrive_exactly_on_rational_boundaries(per_min: int, k: int) -> None:
    rate = Fraction(per_min, 60)
    boundary_ns = k * 60 * NS_PER_SEC // per_min  # when the k-th token is due (floored to a ns)
    empty = TokenBucket(Fraction(k), rate, Fraction(0), 0)
    exact = (k * 60 * NS_PER_SEC) % per_min == 0
    assert (empty.refilled(boundary_ns).tokens == k) == exact
    assert empty.refilled(boundary_ns + (0 if exact else 1)).tokens == k
