"""Benchmark: the dYdX order book hot path against orjson.loads of the same frames (the floor).

A seeded generator writes frames shaped like the real `v4_orderbook` channel on one connection:
per market (BTC-USD tick 1, ETH-USD tick 0.1) one `subscribed` snapshot of 100x100 levels, then
`channel_data` updates of 1-3 levels and `channel_batch_data` frames of 2-8 entries, with the
real envelope (type, connection_id, message_id, id, channel, version, contents), message ids
rising by one, prices near the touch so the best price moves (on about a quarter of the
frames), sizes on the step grid, and "0" deletes (about a fifth of the levels, often of the
best level) all along: each side keeps about 90-160 levels. The stream never crosses.

Rows, each timed per frame with `time.perf_counter_ns` (timer cost is in every row alike):
- floor: `orjson.loads(raw)`;
- core: `time.time_ns()` + `FeedParser.parse_book` + `apply_book_frame` into the shared
  OrderBook + `best_bid()` + `best_ask()` (what the issue's target is about);
- feed: `IndexerFeed.handle_frame` (the same, plus subscription timestamps, the message-id
  check and the `on_book_changed` callback) + `best_bid()` + `best_ask()`;
- feed+events: `handle_frame` in its default mode, which also builds the BookDelta/BookSnapshot
  events for the sink (consumers that keep their own book);
- naive: orjson.loads + a dict-of-Decimal book per side + max()/min() scans for the touch.
Every implementation keeps its own books; after every frame each one's best bid and ask (price
and size) must equal the naive book's: the script asserts it on every frame. The rows run
interleaved chunk by chunk, alternating which goes first, so machine load hits them alike.

Then "market event to order intent" on a sample of frames: from the raw frame entering
`IndexerFeed.handle_frame` to an `OrderRequest` entering a stub `ExecutionVenue.place`, through
mid/spread/depth from the book, `evaluate_flags`, `evaluate_gate`, `plan_twap` and `size_child`
(the first TWAP slice against the book's top 20 levels). Not included: the engine's event
counters and eval-interval gating, estimator updates, the decision and order writes to the
store, logging, and the TWAP tick cadence (the engine sends due children every 100 ms), which
in the daemon dominate this figure.

    .venv/bin/python tests/bench/bench_book.py [--frames 200000] [--seed 7] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time
import uuid
from bisect import bisect_left, insort
from collections.abc import Callable
from decimal import Decimal

import orjson

from bot.book import DEFAULT_CACHE, OrderBook
from bot.config import Settings
from bot.domain import BookLevel, MarketSpec, OrderRequest, TimeInForce
from bot.execution.twap import plan_twap, size_child
from bot.rules.flags import FlagInputs, evaluate_flags
from bot.rules.gate import GateState, evaluate_gate
from bot.telemetry import Metrics
from bot.venues.dydx.indexer_ws import IndexerFeed, default_subscriptions
from bot.venues.dydx.parse import FeedParser, apply_book_frame

MARKETS = {  # ticker: (tick, step, starting mid in ticks)
    "BTC-USD": (Decimal("1"), Decimal("0.0001"), 65_000),
    "ETH-USD": (Decimal("0.1"), Decimal("0.001"), 34_000),
}
CHUNK = 1000
T0_NS = 1_765_209_600_000_000_000


# ---- the generated stream ------------------------------------------------------------------------


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class _GenBook:
    """The generator's own book of one market, in integer ticks, never crossed."""

    def __init__(self, ticker: str, rng: random.Random) -> None:
        self.ticker = ticker
        self.tick, self.step, mid = MARKETS[ticker]
        self.rng = rng
        self.bids: dict[int, str] = {}
        self.asks: dict[int, str] = {}
        self.bid_ticks: list[int] = []  # ascending
        self.ask_ticks: list[int] = []
        self._price_text: dict[int, str] = {}
        for i in range(100):
            self._set(True, mid - 1 - i, self.size())
            self._set(False, mid + 1 + i, self.size())

    def price(self, ticks: int) -> str:
        text = self._price_text.get(ticks)
        if text is None:
            text = self._price_text[ticks] = _fmt(ticks * self.tick)
        return text

    def size(self) -> str:
        rng = self.rng
        if rng.random() < 0.6:  # round lots, as market makers quote them
            units = rng.choice((1, 2, 5, 10, 20, 25, 50, 100)) * rng.choice((10, 100, 1000))
        else:  # aggregated levels: any multiple of the step
            units = rng.randint(1, 200_000)
        return _fmt(units * self.step)

    def _set(self, is_bid: bool, ticks: int, size: str) -> None:
        book, order = (self.bids, self.bid_ticks) if is_bid else (self.asks, self.ask_ticks)
        if size == "0":
            if book.pop(ticks, None) is not None:
                del order[bisect_left(order, ticks)]
            return
        if ticks not in book:
            insort(order, ticks)
        book[ticks] = size

    def change(self) -> tuple[bool, str, str]:
        """One level change near the touch: (is_bid, price, size)."""
        rng = self.rng
        is_bid = rng.random() < 0.5
        order = self.bid_ticks if is_bid else self.ask_ticks
        best_bid, best_ask = self.bid_ticks[-1], self.ask_ticks[0]
        r = rng.random()
        if len(order) > 160 and r < 0.3:  # trim the far end
            ticks, size = (order[0] if is_bid else order[-1]), "0"
        elif r < 0.45:  # resize one of the top 10 levels
            k = min(rng.randint(0, 9), len(order) - 1)
            ticks, size = (order[-1 - k] if is_bid else order[k]), self.size()
        elif r < 0.7:  # a level near the touch, possibly a new best
            if is_bid:
                ticks = rng.randint(best_bid - 6, best_ask - 1)
            else:
                ticks = rng.randint(best_bid + 1, best_ask + 6)
            size = self.size()
        elif r < 0.9 and len(order) >= 90:  # delete one of the top 5 levels, often the best
            k = min(int(rng.random() ** 2 * 5), len(order) - 1)
            ticks, size = (order[-1 - k] if is_bid else order[k]), "0"
        elif r < 0.9:  # a thin side refills behind the touch
            ticks = (best_bid - rng.randint(1, 120)) if is_bid else (best_ask + rng.randint(1, 120))
            size = self.size()
        else:  # a deep level, or a delete of a price that may not be there
            ticks = (best_bid - rng.randint(10, 120)) if is_bid else (best_ask + rng.randint(10, 120))
            size = self.size() if rng.random() < 0.5 else "0"
        if len(order) <= 20:
            size = self.size()  # keep both sides deep enough
        self._set(is_bid, ticks, size)
        return is_bid, self.price(ticks), size


def _contents(gen: _GenBook, n_levels: int) -> dict[str, list[list[str]]]:
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    for _ in range(n_levels):
        is_bid, price, size = gen.change()
        (bids if is_bid else asks).append([price, size])
    out: dict[str, list[list[str]]] = {}
    if bids:
        out["bids"] = bids
    if asks:
        out["asks"] = asks
    return out


def generate(n_frames: int, seed: int, *, single: bool = False) -> list[bytes]:
    """Two snapshots, then `n_frames` updates: about 75% channel_data, 25% channel_batch_data.

    `single`: only one-level `channel_data` updates (the shape of the issue's first measurement).
    """
    rng = random.Random(seed)
    connection_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    gens = {t: _GenBook(t, rng) for t in MARKETS}
    frames: list[bytes] = []
    message_id = 1
    for ticker, gen in gens.items():
        snap = {
            "bids": [{"price": gen.price(t), "size": gen.bids[t]} for t in reversed(gen.bid_ticks)],
            "asks": [{"price": gen.price(t), "size": gen.asks[t]} for t in gen.ask_ticks],
        }
        frames.append(orjson.dumps({"type": "subscribed", "connection_id": connection_id,
                                    "message_id": message_id, "channel": "v4_orderbook",
                                    "id": ticker, "contents": snap}))
        message_id += 1
    tickers = list(gens)
    for _ in range(n_frames):
        gen = gens[tickers[0] if rng.random() < 0.6 else tickers[1]]
        if single:
            kind, contents = "channel_data", _contents(gen, 1)
        elif rng.random() < 0.75:
            kind, contents = "channel_data", _contents(gen, rng.choice((1, 1, 1, 2, 2, 3)))
        else:
            kind = "channel_batch_data"
            contents = [_contents(gen, rng.choice((1, 1, 2))) for _ in range(rng.randint(2, 8))]
        frames.append(orjson.dumps({"type": kind, "connection_id": connection_id,
                                    "message_id": message_id, "id": gen.ticker,
                                    "channel": "v4_orderbook", "version": "1.0.0",
                                    "contents": contents}))
        message_id += 1
    return frames


# ---- the implementations -------------------------------------------------------------------------


class NaiveBook:
    """The reference: dict-of-Decimal per side, touch by scanning."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, msg: dict) -> None:  # type: ignore[type-arg]
        contents = msg["contents"]
        if msg["type"] == "subscribed":
            self.bids = {Decimal(lv["price"]): Decimal(lv["size"]) for lv in contents["bids"]}
            self.asks = {Decimal(lv["price"]): Decimal(lv["size"]) for lv in contents["asks"]}
            return
        for entry in contents if msg["type"] == "channel_batch_data" else (contents,):
            for side, book in (("bids", self.bids), ("asks", self.asks)):
                for price, size in entry.get(side, ()):
                    p, s = Decimal(price), Decimal(size)
                    if s:
                        book[p] = s
                    else:
                        book.pop(p, None)

    def touch(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        bid, ask = max(self.bids), min(self.asks)
        return bid, self.bids[bid], ask, self.asks[ask]


Touch = tuple[BookLevel | None, BookLevel | None]


def _runner_core(books: dict[str, OrderBook]) -> Callable[[list[bytes], list[int], list[Touch]], None]:
    parse_book = FeedParser.parse_book
    perf, now = time.perf_counter_ns, time.time_ns

    def run(chunk: list[bytes], times: list[int], touches: list[Touch]) -> None:
        for i, raw in enumerate(chunk):
            t0 = perf()
            frame = parse_book(raw)
            book = books[frame.id]  # type: ignore[union-attr]
            ok = apply_book_frame(frame, book, now())  # type: ignore[arg-type]
            bid, ask = book.best_bid(), book.best_ask()
            times[i] = perf() - t0
            assert ok, "the generated stream never crosses"
            touches[i] = (bid, ask)

    return run


def _new_feed(books: dict[str, OrderBook], *, events: bool) -> tuple[IndexerFeed, list[str]]:
    changed = [""]

    def on_book_changed(market: str, ts_recv: int) -> None:
        changed[0] = market

    sink_events: list[object] = []

    def sink(event: object) -> None:
        changed[0] = event.market  # type: ignore[attr-defined]
        if len(sink_events) < 4:
            sink_events.append(event)

    feed = IndexerFeed("ws://127.0.0.1:9/unused", default_subscriptions(list(MARKETS)), books,
                       sink, Metrics(), on_book_changed=None if events else on_book_changed)  # type: ignore[arg-type]
    return feed, changed


def _runner_feed(books: dict[str, OrderBook], *, events: bool
                 ) -> Callable[[list[bytes], list[int], list[Touch]], None]:
    feed, changed = _new_feed(books, events=events)
    handle = feed.handle_frame
    perf, now = time.perf_counter_ns, time.time_ns

    def run(chunk: list[bytes], times: list[int], touches: list[Touch]) -> None:
        for i, raw in enumerate(chunk):
            t0 = perf()
            resync = handle(raw, now())
            book = books[changed[0]]
            bid, ask = book.best_bid(), book.best_ask()
            times[i] = perf() - t0
            assert resync is None, f"unexpected resync {resync}"
            touches[i] = (bid, ask)

    return run


def _runner_floor() -> Callable[[list[bytes], list[int], list[Touch]], None]:
    perf, loads = time.perf_counter_ns, orjson.loads

    def run(chunk: list[bytes], times: list[int], touches: list[Touch]) -> None:
        for i, raw in enumerate(chunk):
            t0 = perf()
            loads(raw)
            times[i] = perf() - t0

    return run


def _runner_naive(books: dict[str, NaiveBook], reference: list[tuple[Decimal, ...]]
                  ) -> Callable[[list[bytes], list[int], list[Touch]], None]:
    perf, loads = time.perf_counter_ns, orjson.loads

    def run(chunk: list[bytes], times: list[int], touches: list[Touch]) -> None:
        reference.clear()
        for i, raw in enumerate(chunk):
            t0 = perf()
            msg = loads(raw)
            book = books[msg["id"]]
            book.apply(msg)
            touch = book.touch()
            times[i] = perf() - t0
            reference.append(touch)

    return run


# ---- the run -------------------------------------------------------------------------------------


def _stats(times: list[int]) -> tuple[float, int, int]:
    ordered = sorted(times)
    return sum(ordered) / len(ordered), ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def run_book(frames: list[bytes]) -> dict[str, list[int]]:
    """Time every row over every frame, chunk by chunk; assert each touch against the naive book."""
    reference: list[tuple[Decimal, ...]] = []
    rows: dict[str, Callable[[list[bytes], list[int], list[Touch]], None]] = {
        "floor  orjson.loads": _runner_floor(),
        "core   parse+apply+bbo": _runner_core({t: OrderBook(t) for t in MARKETS}),
        "feed   handle_frame+bbo": _runner_feed({t: OrderBook(t) for t in MARKETS}, events=False),
        "feed   +BookDelta events": _runner_feed({t: OrderBook(t) for t in MARKETS}, events=True),
    }
    naive = _runner_naive({t: NaiveBook() for t in MARKETS}, reference)
    times = {name: [0] * len(frames) for name in [*rows, "naive  dict+max/min"]}
    touches: dict[str, list[Touch]] = {name: [(None, None)] * CHUNK for name in rows}
    chunk_times = [0] * CHUNK
    names = list(rows)
    for n, start in enumerate(range(0, len(frames), CHUNK)):
        chunk = frames[start:start + CHUNK]
        naive(chunk, chunk_times, [])
        times["naive  dict+max/min"][start:start + len(chunk)] = chunk_times[:len(chunk)]
        for name in names if n % 2 == 0 else reversed(names):
            rows[name](chunk, chunk_times, touches[name])
            times[name][start:start + len(chunk)] = chunk_times[:len(chunk)]
        for name in names[1:]:
            for i, (bid, ask) in enumerate(touches[name][:len(chunk)]):
                bid_px, bid_sz, ask_px, ask_sz = reference[i]
                assert bid is not None and ask is not None, (name, start + i)
                assert (bid.price, bid.size, ask.price, ask.size) == (bid_px, bid_sz, ask_px, ask_sz), (
                    f"{name}: frame {start + i}: ours {bid}/{ask}, naive {reference[i]}")
    return times


class StubVenue:
    """An ExecutionVenue that only notes when an order reached it."""

    name = "stub"

    def __init__(self) -> None:
        self.arrived_ns = 0
        self.orders = 0

    def set_account_sink(self, sink: object) -> None:
        pass

    async def place(self, order: OrderRequest) -> None:
        self.arrived_ns = time.perf_counter_ns()
        self.orders += 1

    async def cancel(self, client_id: int) -> None:
        pass

    async def open_orders(self) -> list[int]:
        return []

    async def positions(self) -> dict[str, Decimal]:
        return {}


def run_intent(frames: list[bytes], every: int) -> tuple[list[int], int]:
    """Frame -> book -> flags/gate -> plan_twap -> size_child -> OrderRequest at a stub venue."""
    settings = Settings()
    rules, execution = settings.rules, settings.execution
    specs = {t: MarketSpec(t, tick, step, step) for t, (tick, step, _) in MARKETS.items()}
    books = {t: OrderBook(t) for t in MARKETS}
    feed, changed = _new_feed(books, events=False)
    venue = StubVenue()
    gates = {t: GateState() for t in MARKETS}
    flags_prev: dict[str, object] = {}
    latencies: list[int] = []
    acted = 0
    perf = time.perf_counter_ns
    for i, raw in enumerate(frames):
        t0 = perf()
        ts = T0_NS + i * 50_000_000  # 50 ms apart: past the eval interval and the debounce
        assert feed.handle_frame(raw, ts) is None
        if i < 2 or i % every:
            continue
        market = changed[0]
        book, spec = books[market], specs[market]
        mid = book.mid()
        assert mid is not None
        target = Decimal(2) if i % (2 * every) else Decimal(-2)  # alternate: buy, then sell
        inputs = FlagInputs(
            market=market, position_size=Decimal(0), mark_price=mid, funding_rate_1h=Decimal("0.0001"),
            intended_size=abs(target) / execution.twap_slices,
            depth_size=book.depth_within_bps(rules.liquidity_depth_bps), depth_median=Decimal(50),
            spread_bps=book.spread_bps(), vol_short=0.5, vol_long=0.4, target_size=target,
        )
        flags = evaluate_flags(inputs, rules, flags_prev.get(market))  # type: ignore[arg-type]
        flags_prev[market] = flags
        gate = evaluate_gate(flags, gates[market], ts, min_flags=rules.min_flags,
                             debounce_secs=rules.debounce_secs,
                             audit_interval_secs=rules.audit_interval_secs, drifted=True)
        gates[market] = gate.state
        acted += gate.act
        # Measured as if the gate acted every time (it acts on drift or on an audit).
        plan = plan_twap(spec, Decimal(0), target, execution, ts, i)
        assert plan is not None
        child = size_child(plan.side, plan.slice_sizes[0], book.levels(plan.side.opposite(), 20), spec,
                           execution)
        if child is None:
            continue
        order = OrderRequest(i, market, child.side, child.size, child.limit_price, TimeInForce.IOC)
        coro = venue.place(order)
        try:
            coro.send(None)  # the stub never suspends: run it to completion without a loop
        except StopIteration:
            pass
        latencies.append(venue.arrived_ns - t0)
    return latencies, acted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--single", action="store_true", help="one-level channel_data frames only")
    parser.add_argument("--intent-every", type=int, default=10, help="sample every Nth frame")
    parser.add_argument("--profile", action="store_true", help="profile the core row instead")
    args = parser.parse_args()

    t_gen = time.perf_counter()
    frames = generate(args.frames, args.seed, single=args.single)
    levels = sum(raw.count(b'"],["') + raw.count(b'[["') for raw in frames[2:])
    deletes = sum(raw.count(b'","0"]') for raw in frames[2:])
    batches = sum(raw.startswith(b'{"type":"channel_batch_data"') for raw in frames)
    print(f"frames: {len(frames)} (2 snapshots of 100x100, {batches} batched), "
          f"{levels / (len(frames) - 2):.2f} levels/update frame ({deletes / levels:.0%} deletes), "
          f"{sum(map(len, frames)) / len(frames):.0f} B/frame mean, seed {args.seed}, "
          f"generated in {time.perf_counter() - t_gen:.1f} s")

    if args.profile:
        books = {t: OrderBook(t) for t in MARKETS}
        run = _runner_core(books)
        times, touches = [0] * len(frames), [(None, None)] * len(frames)
        cProfile.runctx("run(frames, times, touches)", globals(), locals(), "/tmp/bench_book.prof")
        pstats.Stats("/tmp/bench_book.prof").sort_stats("tottime").print_stats(12)
        return

    gc.collect()
    gc.freeze()  # the frames and the setup are long-lived: keep them out of every collection
    t_run = time.perf_counter()
    times = run_book(frames)
    elapsed = time.perf_counter() - t_run
    floor_mean, floor_p50, floor_p99 = _stats(times["floor  orjson.loads"])
    print(f"every frame's best bid/ask (price and size) equal to the naive book's: yes "
          f"({len(frames)} frames x {len(times) - 2} implementations, {elapsed:.1f} s)")
    print(f"level cache: {len(DEFAULT_CACHE)} strings held (bound {DEFAULT_CACHE.max_size} per kind)")
    print()
    print(f"{'per frame':26s} {'mean ns':>9s} {'p50 ns':>8s} {'p99 ns':>8s} {'mean/floor':>11s} "
          f"{'p99/floor p99':>14s}")
    for name, row in times.items():
        mean, p50, p99 = _stats(row)
        print(f"{name:26s} {mean:9.0f} {p50:8d} {p99:8d} {mean / floor_mean:10.2f}x "
              f"{p99 / floor_p99:13.2f}x")
    verdicts = []
    for name in ("core   parse+apply+bbo", "feed   handle_frame+bbo"):
        mean, _, p99 = _stats(times[name])
        met = mean <= 1.3 * floor_mean and p99 <= 2.5 * floor_p99
        verdicts.append(f"{name.split()[0]} {'met' if met else 'NOT met'}")
    print(f"target mean <= 1.3x and p99 <= 2.5x the floor: {', '.join(verdicts)}")
    feed_mean, _, feed_p99 = _stats(times["feed   handle_frame+bbo"])
    naive_mean, _, _ = _stats(times["naive  dict+max/min"])
    print(f"book_feed_frames_per_sec: {1e9 / feed_mean:.0f}")
    print(f"book_floor_frames_per_sec: {1e9 / floor_mean:.0f}")
    print(f"book_naive_frames_per_sec: {1e9 / naive_mean:.0f}")
    print(f"book_feed_mean_over_floor: {feed_mean / floor_mean:.2f}")
    print(f"book_feed_p99_over_floor_p99: {feed_p99 / floor_p99:.2f}")

    latencies, acted = run_intent(frames, args.intent_every)
    ordered = sorted(latencies)
    print()
    print(f"market event -> order intent at a stub venue ({len(ordered)} samples, 1 in {args.intent_every} "
          f"frames; gate would have acted on {acted}):")
    p50, p99 = ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000
    print(f"  p50 {p50:.1f} us   p99 {p99:.1f} us   (handle_frame + mid/spread/depth + evaluate_flags"
          f" + evaluate_gate + plan_twap + size_child + OrderRequest + place; no engine gating, store,"
          f" logging or TWAP tick)")
    print(f"intent_latency_p50_us: {p50:.1f}")
    print(f"intent_latency_p99_us: {p99:.1f}")

if __name__ == "__main__":
    main()
