"""Benchmark: WebSocket messages per second served by the simulated dYdX indexer on one core.

The server (and the publisher feeding it generated BookDelta events) runs in this process; the
`websockets` clients run in a child process, so the figure is the server's, not the clients'.
Each client subscribes to v4_orderbook for two markets; the publisher calls `publish` with small
batches of deltas as fast as the server keeps its queues short, for ~5 s.

    .venv/bin/python tests/bench/bench_indexer_ws.py [--clients 4] [--secs 5]

Prints `indexer_ws_messages_per_sec: N` (frames received by all clients per wall-clock second,
until the last one arrived) and, since the machine may be shared, the frames the server wrote
per second of its own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import random
import time
from decimal import Decimal
from multiprocessing.connection import Connection

from bot.domain import BookDelta, BookLevel
from bot.sim.exchange import SimExchange
from bot.sim.server.indexer import IndexerServer
from bot.venues.sim.feed import default_params

TICKERS = ("BTC-USD", "ETH-USD")
T0 = 1_765_209_600_000_000_000


def _client_process(url: str, clients: int, pipe: Connection) -> None:
    asyncio.run(_clients(url, clients, pipe))


async def _clients(url: str, clients: int, pipe: Connection) -> None:
    from websockets.asyncio.client import connect

    counts = [0] * clients
    last = [0.0]
    target = [0]  # set once the server says how many frames it sent
    done = asyncio.Event()

    async def one(i: int, ready: asyncio.Event) -> None:
        async with connect(url, max_queue=None, compression=None) as ws:
            await ws.recv()  # connected
            for ticker in TICKERS:
                await ws.send(f'{{"type":"subscribe","channel":"v4_orderbook","id":"{ticker}"}}')
                await ws.recv()  # subscribed
            ready.set()
            async for _message in ws:
                counts[i] += 1
                last[0] = time.monotonic()
                if target[0] and sum(counts) >= target[0]:
                    done.set()

    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(one(i, readies[i])) for i in range(clients)]
    for r in readies:
        await r.wait()
    pipe.send("ready")
    target[0] = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    if sum(counts) < target[0]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send((sum(counts), last[0]))


def _deltas(ex: SimExchange, rng: random.Random, n: int) -> list[BookDelta]:
    out = []
    for _ in range(n):
        ticker = rng.choice(TICKERS)
        bids, asks = ex.book(ticker)
        side = bids if rng.random() < 0.5 else asks
        price = side[rng.randrange(len(side))][0]
        level = (BookLevel(price, Decimal(rng.randint(1, 5000)) / 1000),)
        out.append(BookDelta(ticker, level, (), 0, 0) if side is bids else BookDelta(ticker, (), level, 0, 0))
    return out


async def bench(clients: int, secs: float) -> float:
    ex = SimExchange([default_params(t, 0.65) for t in TICKERS], 1, T0)
    ex.advance(T0 + 50_000_000)
    server = IndexerServer(ex, max_queue_frames=1_000_000)
    await server.start()
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_client_process, args=(server.ws_url, clients, child))
    proc.start()
    await asyncio.get_running_loop().run_in_executor(None, parent.recv)  # "ready"
    rng = random.Random(7)
    pool = _deltas(ex, rng, 4096)  # pre-generated: the publisher's own cost stays out of the figure
    sent_before = server.frames_sent
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable with the client process's clock
    cpu_start = time.process_time()
    i = 0
    while time.monotonic() - start < secs:
        if server.backlog_frames <= 2_000:  # keep queues short: measure throughput, not buffering
            server.publish(pool[i % 4000:i % 4000 + 8])
            i += 8
        await asyncio.sleep(0)  # let the writers run
    for _ in range(10_000):  # the tail: at most 10 s
        if not server.backlog_frames:
            break
        await asyncio.sleep(0.001)
    served_secs = time.monotonic() - start
    cpu_secs = time.process_time() - cpu_start
    sent = server.frames_sent - sent_before
    parent.send(sent)
    received, last_ns = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    proc.join()
    await server.stop()
    elapsed = max(last_ns - start, served_secs)  # until the clients had everything
    print(f"clients: {clients}  markets: {len(TICKERS)}  frames_sent: {sent}  frames_received: {received}  "
          f"server_secs: {served_secs:.2f}  until_received_secs: {elapsed:.2f}  "
          f"server_cpu_secs: {cpu_secs:.2f}")
    # CPU-normalised figure: robust when other processes share the machine's cores
    print(f"indexer_ws_messages_per_server_cpu_sec: {sent / cpu_secs:.0f}")
    return received / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--secs", type=float, default=5.0)
    args = parser.parse_args()
    rate = asyncio.run(bench(args.clients, args.secs))
    print(f"indexer_ws_messages_per_sec: {rate:.0f}")


if __name__ == "__main__":
    main()
