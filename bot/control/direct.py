"""`perpbot kill --direct`: the kill switch without the daemon (stopped, crashed or hung).

It does what `Controller.kill` does, straight against the venues with the configured credentials:

1. latch HALTED in the store first: the latch holds whatever happens next, a restarted daemon
   starts HALTED, and a hung daemon's watchdog picks it up on its next sample;
2. cancel every open order of the bot on both venues at once: live dYdX orders (client ids
   known to the store; every open order of the subaccount with `all_orders`) in MsgBatchCancel
   messages for short-term orders and one cancel each for stateful ones, and the bot's Binance
   spot orders ("pb-<id>" known to the store; every open order on the hedged symbols with
   `all_orders`) cancelled concurrently; then wait until neither venue lists them. Paper orders
   only ever lived in the daemon, so they are marked cancelled in the store;
3. with `flatten`, close every position with IOC orders priced at the touch plus the slippage
   cap (recorded in the store before they are sent, so client ids are never reused): reduce-only
   on dYdX; on Binance the spot hedge as the store's fills book it (the account's other
   inventory is not the bot's), after the cancel step booked the final state and fills of the
   bot's orders the store still holds open (the daemon died before its stream reported them);
   the flatten's fills are booked from the venue's trades, under the ids the user stream gives;
4. return a report: {cancelled, filled, remaining_open_orders, positions, errors, elapsed_secs,
   venues: {name: the same per venue}}.

With `--network sim` and the default embedded simulator, the venue died with the daemon (or is
reachable only through it, when it hangs): point the `[dydx]` endpoints at a running
`perpbot sim` to kill there. Store order rows of the live dYdX venue are left to the daemon's
start-up reconciliation (the venue is the truth); the spot venue's reports go to the store,
since the hedge's size is what the store's fills book.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import structlog
from pydantic import SecretStr

from bot.clock import SYSTEM_CLOCK, monotonic_secs
from bot.config import Settings
from bot.domain import (
    ZERO,
    AccountEvent,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import BotError, ConfigError
from bot.execution.orders import cancel_all
from bot.execution.prices import bounded_price
from bot.state_dir import prepare_state_dir
from bot.store import Store
from bot.telemetry import Redactor, configure_logging
from bot.venues.registry import kill_signer_missing, open_spot_for_kill, perp_for_kill, spot_for_kill

log = structlog.get_logger("kill_direct")
CONFIRM_TIMEOUT_SECS = 10.0
CONFIRM_POLL_SECS = 0.1
FLATTEN_SETTLE_SECS = 5.0
PAPER_VENUES = ("paper", "paper_spot")


async def kill_direct(settings: Settings, *, reason: str, flatten: bool, all_orders: bool) -> dict[str, Any]:
    """Latch HALTED in the store, cancel the bot's open orders on the venue, optionally flatten."""
    # stdout carries the report; the audit log lines go to stderr, secrets redacted.
    configure_logging(settings.telemetry.log_level, settings.telemetry.log_format,
                      Redactor(settings.secret_values()), stream=sys.stderr)
    clock = SYSTEM_CLOCK  # a one-shot CLI command: the system clock
    started = monotonic_secs(clock)
    live = settings.trading == "live"
    embedded_sim = settings.network == "sim" and not settings.dydx.indexer_rest
    if live and not embedded_sim and kill_signer_missing(settings):
        raise ConfigError("dydx_trading_mnemonic", "a direct kill on a live venue needs "
                          "PERPBOT_DYDX_TRADING_MNEMONIC (or PERPBOT_DYDX_MNEMONIC)")
    prepare_state_dir(settings.state_dir)
    store = Store.open(settings.db_path)
    try:
        now = clock.now_ns()
        store.latch_kill(reason, now)
        store.set_risk_mode(RiskMode.HALTED, f"kill --direct: {reason}", now)
        log.warning("kill_latched", reason=reason, direct=True, flatten=flatten, all_orders=all_orders)
        if not live:
            report = _kill_paper(store, clock.now_ns(), flatten)
        elif embedded_sim:
            report = _embedded_sim_gone(store)
        else:
            report = await _kill_live(settings, store, flatten=flatten, all_orders=all_orders)
    finally:
        store.close()
    log.warning("kill_done", direct=True, cancelled=len(report["cancelled"]),
                remaining=len(report["remaining_open_orders"]), errors=len(report["errors"]))
    return {"kill_latched": True, "reason": reason, "direct": True, **report,
            "elapsed_secs": round(monotonic_secs(clock) - started, 3)}


def _kill_paper(store: Store, now_ns: int, flatten: bool) -> dict[str, Any]:
    """Paper orders lived only in the daemon's memory: with it gone, they are gone."""
    cancelled = []
    for order in store.open_orders():
        if order.venue in PAPER_VENUES:
            store.update_order(order.client_id, OrderStatus.CANCELLED, order.filled_size, now_ns,
                               "kill --direct: the paper venue lives in the daemon")
            cancelled.append(order.client_id)
    errors = []
    if flatten:
        errors.append("paper positions close only through the running daemon (perpbot kill --flatten)")
    return {"cancelled": cancelled, "filled": {}, "flatten_orders": [],
            "remaining_open_orders": [o.client_id for o in store.open_orders()],
            "positions": _store_positions(store), "errors": errors}


def _embedded_sim_gone(store: Store) -> dict[str, Any]:
    remaining = [o.client_id for o in store.open_orders()]
    errors = []
    if remaining:
        errors.append("the embedded simulator is reachable only through the daemon; "
                      "set the [dydx] endpoints to a running `perpbot sim` to kill there")
    return {"cancelled": [], "filled": {}, "flatten_orders": [], "remaining_open_orders": remaining,
            "positions": _store_positions(store), "errors": errors}


async def _cancel_ours(venue: Any, store: Store, all_orders: bool,
                       errors: list[str]) -> tuple[list[int], list[int]]:
    """Cancel the bot's open orders on one venue (every open order with `all_orders`) and wait
    until the venue no longer lists them; return (cancelled, still open)."""
    report = await cancel_all(venue, store, all_open=all_orders)
    errors += report.errors
    remaining = await _confirm_cancelled(venue, None if all_orders else report.ours, errors)
    return report.cancelled, remaining


def _store_positions(store: Store) -> dict[str, str]:
    sizes: dict[str, Decimal] = {}
    for fill in store.fills():
        sizes[fill.market] = sizes.get(fill.market, Decimal(0)) + fill.side.sign * fill.size
    return {market: str(size) for market, size in sorted(sizes.items()) if size}


async def _kill_live(settings: Settings, store: Store, *, flatten: bool, all_orders: bool) -> dict[str, Any]:
    """Both venues at once; the report merges them and keeps each under `venues`."""
    jobs = {"dydx": _kill_dydx(settings, store, flatten=flatten, all_orders=all_orders)}
    binance, keys = spot_for_kill(settings)
    if binance is not None:
        jobs["binance"] = kill_spot(settings, binance, keys, store, flatten=flatten,
                                        all_orders=all_orders)
    results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    merged: dict[str, Any] = {"cancelled": [], "filled": {}, "flatten_orders": [],
                              "remaining_open_orders": [], "positions": {}, "errors": [], "venues": results}
    for name, report in results.items():
        for key in ("cancelled", "flatten_orders", "remaining_open_orders"):
            merged[key] += report[key]
        merged["filled"].update(report["filled"])
        merged["positions"].update(report["positions"])
        merged["errors"] += [f"{name}: {e}" for e in report["errors"]]
    return merged


async def kill_spot(settings: Settings, binance: Any, keys: tuple[SecretStr, SecretStr] | None,
                    store: Store, *, flatten: bool, all_orders: bool) -> dict[str, Any]:
    """The spot hedge venue's part of a direct kill (its report has the same keys as the whole)."""
    empty: dict[str, Any] = {"cancelled": [], "filled": {}, "flatten_orders": [],
                             "remaining_open_orders": [o.client_id for o in store.open_orders("binance")],
                             "positions": {}, "errors": []}
    if keys is None:
        return {**empty, "errors": ["no PERPBOT_BINANCE_API_KEY / _SECRET: the spot leg was not touched"]}
    venue = await open_spot_for_kill(binance, keys)
    venue.set_account_sink(_store_sink(store, venue.name))
    errors: list[str] = []
    try:
        try:
            await venue.load_markets()
        except BotError as exc:
            return {**empty, "errors": [f"markets: {exc}"]}
        cancelled, remaining = await _cancel_ours(venue, store, all_orders, errors)
        filled: dict[str, str] = {}
        sent: list[int] = []
        if flatten:
            filled, sent = await _flatten_spot(settings, store, venue, errors)
        # Less than a lot step (a buy's commission dust, its fills booked net) no order can sell.
        specs = venue.spot_specs
        positions = {m: s for m, s in _store_positions(store).items()
                     if m in specs and abs(Decimal(s)) >= specs[m].step_size}
    finally:
        await venue.close()
    return {"cancelled": cancelled, "filled": filled, "flatten_orders": sent,
            "remaining_open_orders": remaining, "positions": positions, "errors": errors}


def _store_sink(store: Store, venue: str) -> Callable[[AccountEvent], None]:
    """What the venue reports while the kill works (a cancel's answer, the final state and fills
    of an order the store holds open that the venue no longer lists) goes to the store: the
    daemon that placed those orders died before its stream reported them, and the hedge the
    flatten sells is what the store's fills book."""

    def sink(event: AccountEvent) -> None:
        if isinstance(event, Fill):
            store.record_fill(venue, event)
        elif isinstance(event, OrderUpdate):
            store.update_order(event.client_id, event.status, event.filled_size, SYSTEM_CLOCK.now_ns(),
                               "kill --direct")

    return sink


async def _flatten_spot(settings: Settings, store: Store, venue: Any,
                        errors: list[str]) -> tuple[dict[str, str], list[int]]:
    """Close the spot hedge the store's fills book, one IOC per market; record what filled."""
    filled: dict[str, str] = {}
    sent: list[int] = []
    try:
        held = await venue.positions()  # base balances: a sell can never exceed them
    except BotError as exc:
        errors.append(f"flatten: balances: {exc}")
        return filled, sent
    for market, text in _store_positions(store).items():
        size = Decimal(text)
        spec = venue.spot_specs.get(market)
        if spec is None:
            continue
        side = Side.SELL if size > 0 else Side.BUY
        if side is Side.SELL:
            # The fills book a buy net of a commission taken in the base asset, so the store and
            # the account agree; a store from before that (or coins moved out) books more. Sell
            # what is there, down to the lot step (a net size need not be on it).
            balance = held.get(market, ZERO)
            if balance < size:  # the store books more than the account holds: the venue is the truth
                log.warning("flatten_store_exceeds_balance", market=market, store=str(size),
                            venue=str(balance))
            size = (min(size, balance) // spec.step_size) * spec.step_size
            if size < spec.min_qty:
                errors.append(f"flatten {market}: only {balance} held")
                continue
        try:
            bid, ask = await venue.touch(market)
            touch = bid if side is Side.SELL else ask
            if touch is None:
                errors.append(f"flatten {market}: empty book")
                continue
            price = bounded_price(side, touch, settings.execution.slippage_cap_bps, spec.tick_size)
            order = OrderRequest(store.next_client_id(), market, side, abs(size), price, TimeInForce.IOC)
            store.record_order("binance", order, SYSTEM_CLOCK.now_ns())  # persisted before it is sent
            await venue.place(order)
            sent.append(order.client_id)
            # No user stream here: the fills are booked from the venue's trades, under the ids the
            # stream gives them (a hung daemon's stream may book the same trades: no double count),
            # so a restarted daemon sees the hedge closed.
            found = await venue.executed_fills(order.client_id)
        except BotError as exc:
            errors.append(f"flatten {market}: {exc}")
            continue
        if found is None:
            errors.append(f"flatten {market}: order {order.client_id} not found after placing")
            continue
        executed, fills = found
        for fill in fills:
            store.record_fill("binance", fill)
        booked = sum((f.gross_size for f in fills), ZERO)  # net of a base commission withheld
        if booked != executed:
            errors.append(f"flatten {market}: order {order.client_id} executed {executed}, "
                          f"its trades add up to {booked}")
        if executed:
            filled[market] = str(executed)
        status = OrderStatus.FILLED if executed >= order.size else OrderStatus.CANCELLED
        store.update_order(order.client_id, status, executed, SYSTEM_CLOCK.now_ns(), "kill --direct flatten")
    return filled, sent


async def _kill_dydx(settings: Settings, store: Store, *, flatten: bool, all_orders: bool) -> dict[str, Any]:
    venue = perp_for_kill(settings)  # the trading key when one is configured
    errors: list[str] = []
    try:
        cancelled, remaining = await _cancel_ours(venue, store, all_orders, errors)
        filled: dict[str, str] = {}
        flatten_orders: list[int] = []
        if flatten:
            filled, flatten_orders = await _flatten(settings, store, venue, errors)
        try:
            positions = {m: str(s) for m, s in sorted((await venue.positions()).items()) if s}
        except BotError as exc:
            errors.append(f"positions: {exc}")
            positions = _store_positions(store)
    finally:
        await venue.close()
    return {"cancelled": cancelled, "filled": filled, "flatten_orders": flatten_orders,
            "remaining_open_orders": remaining, "positions": positions, "errors": errors}


async def _confirm_cancelled(venue: Any, ours: set[int] | None, errors: list[str]) -> list[int]:
    """Poll the venue until none of the targeted orders is open (None: none at all), or time out."""
    deadline = monotonic_secs(SYSTEM_CLOCK) + CONFIRM_TIMEOUT_SECS
    remaining: list[int] = []
    while True:
        try:
            open_ids = await venue.open_orders()
        except BotError as exc:
            errors.append(f"confirm: {exc}")
            return sorted(ours) if ours is not None else []
        remaining = sorted(cid for cid in open_ids if ours is None or cid in ours)
        if not remaining or monotonic_secs(SYSTEM_CLOCK) > deadline:
            return remaining
        await asyncio.sleep(CONFIRM_POLL_SECS)


async def _flatten(
    settings: Settings, store: Store, venue: Any, errors: list[str]
) -> tuple[dict[str, str], list[int]]:
    """Reduce-only IOC per position at the touch plus the slippage cap; report what filled."""
    try:
        specs = await venue.load_markets()
        before: dict[str, Decimal] = await venue.positions()
    except BotError as exc:
        errors.append(f"flatten: {exc}")
        return {}, []
    sent: list[int] = []
    for market, size in sorted(before.items()):
        spec = specs.get(market)
        if not size or spec is None:
            if size:
                errors.append(f"flatten {market}: not a configured market")
            continue
        side = Side.SELL if size > 0 else Side.BUY
        try:
            bid, ask = await venue.touch(market)
            touch = bid if side is Side.SELL else ask
            if touch is None:
                errors.append(f"flatten {market}: empty book")
                continue
            price = bounded_price(side, touch, settings.execution.slippage_cap_bps, spec.tick_size)
            order = OrderRequest(store.next_client_id(), market, side, abs(size), price, TimeInForce.IOC,
                                 reduce_only=True)
            store.record_order("dydx", order, SYSTEM_CLOCK.now_ns())  # persisted before it is sent
            await venue.place(order)
        except BotError as exc:
            errors.append(f"flatten {market}: {exc}")
            continue
        sent.append(order.client_id)
    after = before
    deadline = monotonic_secs(SYSTEM_CLOCK) + FLATTEN_SETTLE_SECS
    while sent and monotonic_secs(SYSTEM_CLOCK) < deadline:
        await asyncio.sleep(CONFIRM_POLL_SECS)
        try:
            after = await venue.positions()
        except BotError:
            continue
        if all(not after.get(m) for m in before if m in specs):
            break
    filled = {m: str(abs(before[m] - after.get(m, Decimal(0)))) for m in before
              if before[m] != after.get(m, Decimal(0))}
    return filled, sent
