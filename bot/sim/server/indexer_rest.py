"""The indexer's comlink REST handlers (GET /v4/...), their query parsing and the HTTP fault switch."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.sim.faults import countdown
from bot.sim.part import Part
from bot.sim.perp.records import ChainError
from bot.sim.server import indexer_wire as wire

MAX_SUBACCOUNT_NUMBER = 128_000
LOOKUP_ERRORS = (ChainError, LookupError, ValueError)  # unknown account or market


class RestHandlers(Part):
    """REST routes of IndexerServer (a part of it: it reads the exchange and the server's state)."""

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v4/ws":
            faults = self._exchange.scenario
            fault = faults.http_error
            if fault is not None:
                faults.http_error = countdown(fault)
                if fault.count >= 1:
                    return _http_fault(fault.status, fault.retry_after_secs)
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _json(wire.error_body(exc.msg, **exc.fields), status=exc.status)

    async def _height(self, request: web.Request) -> web.Response:
        height = self._indexer_height()
        return _json(wire.height_json(height, self._height_time(height)))

    async def _time(self, request: web.Request) -> web.Response:
        return _json(wire.time_json(self._clock_ns()))

    async def _markets(self, request: web.Request) -> web.Response:
        markets = self._exchange.markets()
        ticker = request.query.get("ticker") or request.query.get("market")
        if ticker:
            return _json(wire.markets_json([markets[ticker]] if ticker in markets else []))
        limit = _limit(request, 1000)
        return _json(wire.markets_json(list(markets.values())[:limit]))

    async def _orderbook(self, request: web.Request) -> web.Response:
        bids, asks = self._exchange.book(self._ticker(request))
        return _json(wire.orderbook_json(bids, asks))

    async def _trades(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        limit = _limit(request, 100)
        before_h = _opt_int(request, "createdBeforeOrAtHeight", 0)
        before_ns = _iso(request, "createdBeforeOrAt")
        paged = before_h is not None or before_ns is not None
        rows = self._exchange.trades(ticker, limit=1000 if paged else limit)
        rows = [r for r in rows if (before_h is None or r[2] <= before_h)
                and (before_ns is None or r[1].ts_event <= before_ns)][:limit]
        return _json({"trades": [wire.trade_json(tid, t, h) for tid, t, h in rows]})

    async def _candles(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        resolution = request.query.get("resolution", "")
        if resolution not in wire.CANDLE_RESOLUTIONS_SECS:
            raise _BadRequest("resolution must be a valid Candle Resolution, one of "
                              + ", ".join(wire.CANDLE_RESOLUTIONS_SECS), param="resolution",
                              location="query", value=resolution)
        limit = _limit(request, 1000)
        from_ns, to_ns = _iso(request, "fromISO"), _iso(request, "toISO")
        rows = [r for r in self._exchange.trades(ticker, limit=10_000)
                if (from_ns is None or r[1].ts_event >= from_ns)
                and (to_ns is None or r[1].ts_event <= to_ns)]
        candles = self._candles_for(ticker, resolution, rows)[:limit]
        if resolution == "1HOUR" and len(candles) < limit:  # the market's past, before the start
            oldest = candles[-1]["startedAt"] if candles else None
            past = [wire.history_candle_json(ticker, b) for b in reversed(self._exchange.history(ticker, 720))
                    if (from_ns is None or b.ts_ns >= from_ns) and (to_ns is None or b.ts_ns <= to_ns)]
            candles += [c for c in past if oldest is None or c["startedAt"] < oldest][:limit - len(candles)]
        return _json({"candles": candles})

    async def _historical_funding(self, request: web.Request) -> web.Response:
        ticker = self._ticker(request)
        limit = _limit(request, 100)
        before_h = _opt_int(request, "effectiveBeforeOrAtHeight", 0)
        before_ns = _iso(request, "effectiveBeforeOrAt")
        paged = before_h is not None or before_ns is not None
        rows = self._exchange.historical_funding(ticker, limit=100_000 if paged else limit)
        rows += self._exchange.past_funding(ticker, 720)  # the market's past, before the start
        rows = [p for p in rows if (before_h is None or p.height <= before_h)
                and (before_ns is None or p.ts_ns <= before_ns)][:limit]
        return _json({"historicalFunding": [wire.historical_funding_json(p) for p in rows]})

    async def _address(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        subs = []
        for number in sorted({0, *self._accounts.get(address, set())}):
            with contextlib.suppress(*LOOKUP_ERRORS):
                subs.append(self._subaccount_json(self._exchange.subaccount(address, number)))
        if not subs:
            return _json(wire.error_body(f"No subaccounts found for address {address}"), status=404)
        return _json({"subaccounts": subs, "totalTradingRewards": "0"})

    async def _subaccount(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        number = _parse_number(request.match_info["number"], "subaccountNumber", "params")
        return _json({"subaccount": self._subaccount_json(self._lookup(address, number))})

    async def _orders(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        statuses = _multi(request, "status")
        ticker = request.query.get("ticker")
        side = request.query.get("side")
        limit = _limit(request, 1000)
        gtb_max = _opt_int(request, "goodTilBlockBeforeOrAt", 0)
        gtb_min = _opt_int(request, "goodTilBlockAfter", 0)
        rows = []
        for order in self._exchange.orders(owner, number):
            gtb = order.request.good_til_block
            if ((statuses and order.status.value not in statuses) or (ticker and order.ticker != ticker)
                    or (side and order.request.side.value != side)
                    or (gtb_max is not None and (gtb is None or gtb > gtb_max))
                    or (gtb_min is not None and (gtb is None or gtb <= gtb_min))):
                continue
            rows.append(order)
        rows.sort(key=lambda o: (o.updated_at_height, o.updated_ns), reverse=True)
        return _json([wire.order_json(o) for o in rows[:limit]])

    async def _order(self, request: web.Request) -> web.Response:
        uid = request.match_info["order_id"]
        for owner, numbers in list(self._accounts.items()):
            for number in numbers:
                with contextlib.suppress(*LOOKUP_ERRORS):
                    for order in self._exchange.orders(owner, number):
                        if order.uid == uid:
                            return _json(wire.order_json(order))
        return _json(wire.error_body(f"Unable to find order with id: {uid}"), status=404)

    async def _fills(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        market = request.query.get("market") or request.query.get("ticker")
        limit = _limit(request, 1000)
        before_h = _opt_int(request, "createdBeforeOrAtHeight", 0)
        before_ns = _iso(request, "createdBeforeOrAt")
        rows = [f for f in self._exchange.fills(owner, number, limit=100_000)
                if (not market or f.ticker == market) and (before_h is None or f.height <= before_h)
                and (before_ns is None or f.ts_ns <= before_ns)]
        body: dict[str, Any] = {}
        page = _opt_int(request, "page", 1)
        start = (page - 1) * limit if page else 0
        body["fills"] = [wire.fill_json(f, False) for f in rows[start:start + limit]]
        if page:
            body.update(pageSize=limit, totalResults=len(rows), offset=start)
        return _json(body)

    async def _positions(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        statuses = _multi(request, "status")
        limit = _limit(request, 1000)
        markets = self._exchange.markets()
        rows = [p for p in self._exchange.positions(owner, number, open_only=False)
                if not statuses or p.status in statuses]
        ts = self._height_time(self._exchange.height)
        return _json({"positions": [
            wire.position_json(p, oracle_price=oracle_of(markets, p.ticker),
                               created_ns=self._height_ns.get(p.height, ts))
            for p in rows[:limit]
        ]})

    async def _asset_positions(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        self._lookup(owner, number)
        usdc = self._exchange.asset_usdc(owner, number)
        rows = [wire.asset_position_json(number, usdc)] if usdc else []
        return _json({"positions": rows})

    async def _transfers(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        limit = _limit(request, 1000)
        rows = sorted(self._exchange.transfers(owner, number), key=lambda t: (t.height, t.ts_ns),
                      reverse=True)
        return _json({"transfers": [wire.transfer_json(t) for t in rows[:limit]]})

    async def _funding_payments(self, request: web.Request) -> web.Response:
        owner, number = self._account_params(request)
        ticker = request.query.get("ticker")
        limit = _limit(request, 1000)
        page = _opt_int(request, "page", 1) or 1
        after_ns = _iso(request, "afterOrAt")
        markets = self._exchange.markets()
        rows = sorted((f for f in self._exchange.funding_payments(owner, number)
                       if (not ticker or f.ticker == ticker) and (after_ns is None or f.ts_ns >= after_ns)),
                      key=lambda f: f.ts_ns, reverse=True)
        start = (page - 1) * limit
        items = [wire.funding_payment_json(f, markets[f.ticker].clob_pair_id if f.ticker in markets else 0)
                 for f in rows[start:start + limit]]
        return _json({"fundingPayments": items, "pageSize": limit, "totalResults": len(rows),
                      "offset": start})

    # ---- helpers -------------------------------------------------------------------------------

    def _ticker(self, request: web.Request) -> str:
        ticker = request.match_info["ticker"]
        if ticker not in self._exchange.markets():
            raise _BadRequest("ticker must be a valid ticker (BTC-USD, etc)", param="ticker",
                              location="params", value=ticker)
        return ticker

    def _account_params(self, request: web.Request) -> tuple[str, int]:
        owner = request.query.get("address")
        if not owner:
            raise _BadRequest("address must be a valid dydx address", param="address", location="query")
        raw = request.query.get("subaccountNumber")
        if raw is None:
            raise _BadRequest("subaccountNumber must be a non-negative integer less than 128001",
                              param="subaccountNumber", location="query")
        number = _parse_number(raw, "subaccountNumber", "query")
        self._lookup(owner, number)
        return owner, number

    def _lookup(self, owner: str, number: int) -> Any:
        try:
            sub = self._exchange.subaccount(owner, number)
        except LOOKUP_ERRORS:
            raise _BadRequest(f"No subaccount found with address {owner} and subaccountNumber {number}",
                              status=404) from None
        self._accounts.setdefault(owner, set()).add(number)
        return sub

    def _subaccount_json(self, sub: Any) -> dict[str, Any]:
        markets = self._exchange.markets()
        return wire.subaccount_json(sub, oracle_prices={t: m.oracle_price for t, m in markets.items()},
                                    latest_height=self._indexer_height(),
                                    ts_ns=self._height_ns.get(sub.height, self._exchange.block_time_ns),
                                    usdc_asset=self._exchange.asset_usdc(sub.owner, sub.subaccount_number))

    def _candles_for(self, ticker: str, resolution: str, rows: list[Any]) -> list[dict[str, Any]]:
        market = self._exchange.markets()[ticker]
        bids, asks = self._exchange.book(ticker)
        mid = (bids[0][0] + asks[0][0]) / 2 if bids and asks else None
        return wire.build_candles(ticker, resolution, rows, starting_open_interest=market.open_interest,
                                  mid=mid)

    def _indexer_height(self) -> int:
        return max(0, self._exchange.height - self._exchange.scenario.indexer_lag_blocks)

    def _height_time(self, height: int) -> int:
        return self._height_ns.get(height) or self._exchange.block_time_ns

    def _remember_height(self, height: int, ts_ns: int) -> None:
        if height not in self._height_ns:
            self._height_ns[height] = ts_ns
            self._heights.append(height)
            if len(self._heights) > 10_000:
                self._height_ns.pop(self._heights.popleft(), None)

    def _tick(self, ticker: str) -> Decimal:
        tick = self._ticks.get(ticker)
        if tick is None:
            tick = self._ticks[ticker] = self._exchange.markets()[ticker].tick_size
        return tick


class _BadRequest(Exception):
    def __init__(self, msg: str, *, status: int = 400, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.fields = fields


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(obj), status=status, content_type="application/json")


def _http_fault(status: int, retry_after_secs: object) -> web.Response:
    headers = {}
    if status == 429:
        secs = float(retry_after_secs) if isinstance(retry_after_secs, int | float | str) else 1.0
        headers["Retry-After"] = str(max(0, round(secs)))
        body = wire.error_body("Too many requests, please try again later.")
    else:
        body = wire.error_body("Internal Server Error" if status == 500 else "Service Unavailable")
    return web.Response(body=wire.encode(body), status=status, headers=headers,
                        content_type="application/json")


def _limit(request: web.Request, default: int) -> int:
    """The `limit` query parameter: 1..1000 (comlink's API_LIMIT_V4)."""
    value = _opt_int(request, "limit", 1, 1000)
    return default if value is None else value


def _opt_int(request: web.Request, name: str, lo: int, hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if value < lo or (hi is not None and value > hi):
        bound = f" and at most {hi}" if hi is not None else ""
        raise _BadRequest(f"{name} must be an integer at least {lo}{bound}", param=name,
                          location="query", value=raw)
    return value


def _iso(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return wire.parse_iso_ns(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a valid ISO 8601 date", param=name, location="query",
                          value=raw) from None


def _multi(request: web.Request, name: str) -> set[str]:
    return {part for value in request.query.getall(name, []) for part in value.split(",") if part}


def _parse_number(raw: str, name: str, location: str) -> int:
    if not raw.isdigit() or int(raw) >= MAX_SUBACCOUNT_NUMBER:
        raise _BadRequest(f"{name} must be a non-negative integer less than 128001", param=name,
                          location=location, value=raw)
    return int(raw)


def oracle_of(markets: dict[str, Any], ticker: str) -> Decimal | None:
    market = markets.get(ticker)
    return market.oracle_price if market is not None else None
