"""The indexer's fan-out: exchange events to channel messages, fault switches, per-connection queues."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from bot.domain import BlockHeight, BookDelta, BookLevel, BookSnapshot, OracleUpdate, Trade
from bot.sim.faults import AccountFault, BadFrame, BookFault, WsDrop
from bot.sim.part import Part
from bot.sim.perp.records import AccountUpdate, ExchangeEvent, MarketChange
from bot.sim.server import indexer_wire as wire
from bot.sim.server.indexer_rest import LOOKUP_ERRORS, oracle_of
from bot.sim.server.indexer_ws import HEIGHT_ID, OVERSIZED_BYTES, Conn, Key


class Publisher(Part):
    """Publishing side of IndexerServer (a part of it: it reads and writes the server's state)."""

    _last_ws_height: int

    def publish(self, events: list[ExchangeEvent]) -> None:
        """Fan exchange events out to WebSocket subscribers; synchronous and non-blocking."""
        faults = self._exchange.scenario
        for ev in events:  # REST-side bookkeeping, subscribers or not
            if type(ev) is BlockHeight:
                self._remember_height(ev.height, ev.ts_event)
            elif type(ev) is AccountUpdate:
                self._accounts.setdefault(ev.owner, set()).add(ev.subaccount_number)
        drop, faults.ws_drop = faults.ws_drop, None
        if drop is not None:
            for conn in list(self._conns):
                self._close(conn, 1012, abort=drop is WsDrop.ABORT)
        if not self._conns:
            self._shown.clear()
            return
        inject, faults.ws_inject = faults.ws_inject, None
        if inject is not None:
            for conn in list(self._conns):
                self._push(conn, self._bad_frame(conn, inject))
        messages = self._translate(events)
        if faults.ws_stall:
            return
        account_fault = faults.account_fault
        if account_fault or self._held:
            messages = self._fault_accounts(messages, account_fault)
        batches: dict[Key, list[Any]] = {}
        for key, contents in messages:
            direct = self._direct.get(key)
            batched = self._batched.get(key)
            if not direct and not batched:
                continue
            if key[0] == "v4_orderbook" and faults.book_fault is not None:
                book_fault, faults.book_fault = faults.book_fault, None
                contents = self._apply_book_fault(key, contents, book_fault)
            if direct:
                body = wire.channel_body(key[0], _wire_id(key), contents)
                for conn in direct:
                    self._push(conn, wire.splice_frame(conn.data_prefix, conn.next_id(), body))
            if batched:
                batches.setdefault(key, []).append(contents)
        for key, items in batches.items():
            body = wire.channel_body(key[0], _wire_id(key), items)
            for conn in self._batched[key]:
                self._push(conn, wire.splice_frame(conn.batch_prefix, conn.next_id(), body))

    def _translate(self, events: list[ExchangeEvent]) -> list[tuple[Key, Any]]:
        """Turn events into (key, contents) in order, only for channel ids someone listens to."""
        subs = self._direct.keys() | self._batched.keys()
        out: list[tuple[Key, Any]] = []
        trades: dict[str, list[Trade]] = {}
        oracles: list[OracleUpdate] = []
        heights: list[BlockHeight] = []
        for ev in events:
            if isinstance(ev, BookDelta):
                shown = self._shown.get(ev.market)
                if shown is not None:
                    _apply_levels(shown[0], ev.bids)
                    _apply_levels(shown[1], ev.asks)
                    contents = wire.orderbook_update_contents(ev.bids, ev.asks)
                    out.append((("v4_orderbook", ev.market), contents))
            elif isinstance(ev, BookSnapshot):
                diff = self._snapshot_diff(ev)
                if diff:
                    out.append((("v4_orderbook", ev.market), diff))
            elif isinstance(ev, Trade):
                trades.setdefault(ev.market, []).append(ev)
            elif isinstance(ev, OracleUpdate):
                oracles.append(ev)
            elif isinstance(ev, BlockHeight):
                heights.append(ev)
            elif isinstance(ev, AccountUpdate):
                key = ("v4_subaccounts", f"{ev.owner}/{ev.subaccount_number}")
                if key in subs:
                    out.extend((key, c) for c in self._account_contents(ev))
            elif isinstance(ev, MarketChange) and ("v4_markets", "") in subs:
                # Status or parameters changed: the whole market object, as the indexer sends on a listing.
                market = self._exchange.markets()[ev.ticker]
                out.append((("v4_markets", ""), {"trading": {ev.ticker: wire.market_json(market)}}))
        for ticker, rows in trades.items():
            if ("v4_trades", ticker) in subs:
                out.append((("v4_trades", ticker), {"trades": self._trade_rows(ticker, rows)}))
            for key in subs:
                if key[0] == "v4_candles" and key[1].startswith(ticker + "/"):
                    candle = self._current_candle(ticker, key[1].split("/", 1)[1])
                    if candle is not None:
                        out.append((key, candle))
        if oracles and ("v4_markets", "") in subs:
            out.extend(self._market_contents(oracles))
        if heights and ("v4_block_height", HEIGHT_ID) in subs:
            lag = self._exchange.scenario.indexer_lag_blocks
            reported = heights[-1].height - lag
            if reported > self._last_ws_height:
                self._last_ws_height = reported
                ts = self._height_ns.get(reported, heights[-1].ts_event)
                out.append((("v4_block_height", HEIGHT_ID), wire.height_json(reported, ts, update=True)))
        return out

    def _snapshot_diff(self, snap: BookSnapshot) -> dict[str, Any] | None:
        shown = self._shown.get(snap.market)
        if shown is None:
            return None
        new_bids = {lvl.price: lvl.size for lvl in snap.bids if lvl.size > 0}
        new_asks = {lvl.price: lvl.size for lvl in snap.asks if lvl.size > 0}
        bids = _level_diff(shown[0], new_bids)
        asks = _level_diff(shown[1], new_asks)
        self._shown[snap.market] = (new_bids, new_asks)
        return wire.orderbook_update_contents(bids, asks) if bids or asks else None

    def _trade_rows(self, ticker: str, rows: list[Trade]) -> list[dict[str, Any]]:
        """Trades newest first with the exchange's trade ids (matched by identity, then equality)."""
        known = self._exchange.trades(ticker, limit=len(rows) + 16)
        by_obj = {id(t): tid for tid, t, _h in known}
        by_val = {t: tid for tid, t, _h in known}
        height = self._exchange.height
        out = []
        for i, trade in enumerate(reversed(rows)):
            tid = by_obj.get(id(trade)) or by_val.get(trade) or wire.trade_id(height, 0, 1_000_000 + i)
            out.append(wire.trade_json(tid, trade, height, ws=True))
        return out

    def _current_candle(self, ticker: str, resolution: str) -> dict[str, Any] | None:
        width_ns = wire.CANDLE_RESOLUTIONS_SECS[resolution] * 1_000_000_000
        recent = self._exchange.trades(ticker, limit=1000)
        if not recent:
            return None
        bucket = recent[0][1].ts_event // width_ns
        rows = [r for r in recent if r[1].ts_event // width_ns == bucket]
        candles = self._candles_for(ticker, resolution, rows)
        return candles[0] if candles else None

    def _market_contents(self, oracles: list[OracleUpdate]) -> list[tuple[Key, Any]]:
        markets = self._exchange.markets()
        height = self._exchange.height
        latest: dict[str, OracleUpdate] = {o.market: o for o in oracles}
        prices = [(markets[t], o.oracle_price, height, o.ts_event) for t, o in latest.items() if t in markets]
        rates = [(markets[t], o.next_funding_rate) for t, o in latest.items() if t in markets]
        key = ("v4_markets", "")
        return [(key, wire.oracle_prices_contents(prices)), (key, wire.trading_contents(rates))]

    def _account_contents(self, update: AccountUpdate) -> list[dict[str, Any]]:
        markets = self._exchange.markets()
        contents: dict[str, Any] = {}
        if update.orders:
            contents["orders"] = [wire.order_json(o, ws=True) for o in update.orders]
        if update.fills:
            contents["fills"] = [
                wire.fill_json(f, True, markets[f.ticker].clob_pair_id if f.ticker in markets else None)
                for f in update.fills
            ]
        if update.positions:
            contents["perpetualPositions"] = [
                wire.position_json(p, oracle_price=oracle_of(markets, p.ticker), created_ns=_ts(update))
                for p in update.positions
            ]
        if update.fills or update.transfers or update.funding:
            with contextlib.suppress(*LOOKUP_ERRORS):
                usdc = self._exchange.asset_usdc(update.owner, update.subaccount_number)
                asset = wire.asset_position_json(update.subaccount_number, usdc)
                contents["assetPositions"] = [{"address": update.owner, **asset}]
        transfers = [wire.transfer_json(t, ws=True) for t in update.transfers]
        if transfers:
            contents["transfers"] = transfers[0]  # a single object on the wire, not a list
        if not contents:
            return []
        height = str(update.height)
        contents["blockHeight"] = height
        # further transfers of the same block go out as their own messages
        return [contents] + [{"transfers": t, "blockHeight": height} for t in transfers[1:]]

    def _apply_book_fault(self, key: Key, contents: dict[str, Any], fault: BookFault) -> dict[str, Any]:
        subscribers = self._direct.get(key, set()) | self._batched.get(key, set())
        if fault is BookFault.GAP:
            for conn in subscribers:
                conn.message_id += 1  # this update arrives with a skipped message_id
            return contents
        if fault is BookFault.CROSSED:
            shown = self._shown.get(key[1])
            if shown and shown[1]:
                tick = self._tick(key[1])
                price = min(shown[1]) + tick
                faulted = dict(contents)
                faulted["bids"] = [*contents.get("bids", []), [wire.dec(price), "1"]]
                return faulted
        return contents

    def _bad_frame(self, conn: Conn, kind: BadFrame) -> bytes:
        if kind is BadFrame.OVERSIZED:
            return b'{"type":"channel_data","pad":"' + b"x" * OVERSIZED_BYTES + b'"}'
        if kind is BadFrame.WRONG_TYPE and conn.subs:
            key = sorted(conn.subs)[-1]  # v4_subaccounts when subscribed, else v4_trades / orderbook
            contents = ({"fills": [{"id": 7, "side": 1, "size": 0.5, "price": None}]}
                        if key[0] == "v4_subaccounts" else {"bids": [[1, {"x": 2}]], "trades": 3})
            return wire.splice_frame(conn.data_prefix, conn.next_id(),
                                     wire.channel_body(key[0], _wire_id(key), contents))
        return b'{"type": "channel_data", "connection_id": "' + conn.connection_id.encode() + b'", "mes'

    def _fault_accounts(self, messages: list[tuple[Key, Any]],
                        fault: AccountFault | None) -> list[tuple[Key, Any]]:
        out: list[tuple[Key, Any]] = []
        for key, contents in messages:
            if key[0] != "v4_subaccounts":
                out.append((key, contents))
            elif fault is AccountFault.DUPLICATE:
                out += [(key, contents), (key, contents)]
            elif fault is AccountFault.REORDER:
                held = self._held.pop(key, None)
                if held is None:
                    self._held[key] = contents
                else:
                    out += [(key, contents), (key, held)]
            else:
                out.append((key, contents))
        if fault is not AccountFault.REORDER:
            out += list(self._held.items())
            self._held.clear()
        return out

    def _push(self, conn: Conn, frame: bytes) -> None:
        if conn.close_code is not None:
            return
        if len(conn.queue) >= self._max_queue:
            self._close(conn, 4000, abort=True)  # slow consumer: terminate, as socks does
            return
        conn.queue.append(frame)
        conn.wake.set()

    def _close(self, conn: Conn, code: int, *, abort: bool = False) -> None:
        if conn.close_code is not None:
            return
        conn.close_code = code
        conn.queue.clear()
        if abort and conn.transport is not None:
            conn.transport.abort()
        conn.wake.set()


def _wire_id(key: Key) -> str | None:
    return None if key[0] == "v4_markets" else key[1]


def _ts(update: AccountUpdate) -> int:
    for group in (update.fills, update.transfers, update.funding):
        if group:
            return group[0].ts_ns
    return max((o.updated_ns for o in update.orders), default=0)


def _apply_levels(book: dict[Decimal, Decimal], levels: tuple[BookLevel, ...]) -> None:
    for lvl in levels:
        if lvl.size > 0:
            book[lvl.price] = lvl.size
        else:
            book.pop(lvl.price, None)


def _level_diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[tuple[Decimal, Decimal]]:
    out = [(p, s) for p, s in new.items() if old.get(p) != s]
    out.extend((p, Decimal(0)) for p in old if p not in new)
    return out
