"""Binance spot REST rate limits and retry policy, as data (2023-08 weight revision).

Binance counts request weight per IP in fixed one-minute windows of the server clock and
reports the running total in `X-MBX-USED-WEIGHT-1M` on every response. Going over the limit
answers 429 (-1003) with `Retry-After`; repeating that earns a 418 ban of 2 minutes to 3 days.
We stay under a self-imposed budget below the hard limit: reads stop at the budget, while
order entry and cancels may use the headroom up to the hard limit (a hedge must still go out
when a burst of book resyncs has used the read budget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

REQUEST_WEIGHT_LIMIT_1M = 6000  # the venue's REQUEST_WEIGHT per minute (exchangeInfo rateLimits)
DEFAULT_WEIGHT_BUDGET_1M = 4800  # ours: 80% of the limit for reads
ORDERS_PER_10S = 100  # ORDERS per 10 s per account (-1015 beyond)
WEIGHT_WINDOW_MS = 60_000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
ORDER_COUNT_HEADER = "X-MBX-ORDER-COUNT-10S"

# Retry policy for reads (orders are never retried blindly).
READ_MAX_ATTEMPTS = 4
READ_MAX_DELAY_SECS = 20.0
READ_BACKOFF_INITIAL_SECS = 0.2
READ_BACKOFF_MAX_SECS = 5.0
# A RateLimited read is retried in place only when the venue asks for at most this long;
# longer waits (bans) go back to the caller at once.
MAX_RATE_LIMIT_WAIT_SECS = 10.0


def depth_weight(limit: int) -> int:
    """Weight of GET /api/v3/depth for a given `limit`."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


Weight = int | Callable[[Mapping[str, str]], int]

WEIGHTS: dict[tuple[str, str], Weight] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/depth"): lambda p: depth_weight(int(p.get("limit", "100"))),
    ("GET", "/api/v3/ticker/bookTicker"): lambda p: 2 if "symbol" in p else 4,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): lambda p: 6 if "symbol" in p else 80,
    ("GET", "/api/v3/myTrades"): lambda p: 5 if "orderId" in p else 20,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
    # Wallet (SAPI) reads weigh 1 on the IP; the withdrawal history also weighs 18000 of the
    # account's UID budget (180000 a minute): read at start and after a user stream reconnect only,
    # one request per 90-day window (bot.venues.binance.catch_up).
    ("GET", "/sapi/v1/capital/deposit/hisrec"): 1,
    ("GET", "/sapi/v1/capital/withdraw/history"): 1,
    ("GET", "/sapi/v1/asset/transfer"): 1,  # the universal transfer history: one type per request
}

# Calls that may use the headroom between our budget and the venue's limit.
ORDER_ENTRY: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/api/v3/order"), ("DELETE", "/api/v3/order"), ("DELETE", "/api/v3/openOrders"),
})


def request_weight(method: str, path: str, params: Mapping[str, str]) -> int:
    """Weight the venue will charge for this call (1 for a call we do not know)."""
    weight = WEIGHTS.get((method, path), 1)
    return weight(params) if callable(weight) else weight
