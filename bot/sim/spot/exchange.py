"""Simulated Binance-style spot exchange (pure, deterministic, no asyncio, no wall clock).

Each symbol's background liquidity and taker flow come from its own seeded `SimMarket` (started
at the same price as the perp of the same base asset; the two paths then diverge as independent
random walks). Account orders (keyed by API key) are matched with the paper fill model in
`bot.venues.paper.fills`:

* taker orders walk the model book (`fill_taker`); liquidity they take stays hidden from the
  public book in the symbol's `ConsumedLiquidity` until the model restates the level;
* resting orders queue at their price (`RestingOrder`, queue ahead = public size there) and fill
  from the model's taker prints (`on_trade`, `on_book_update`);
* when the model's opposite side moves through a resting order (the model's book is not aware of
  ours), that liquidity is matched against the resting order at the order's price as MAKER
  (walked with `fill_taker`, then re-priced), so the public book is never crossed.

Two account orders never trade with each other: a taker that would cross a resting account order
expires that order first (self-trade prevention EXPIRE_MAKER, applied to every account).

The public book is the model book minus consumed liquidity plus resting account orders. Every
change of it takes one update id per changed level, so `DepthUpdate` ranges `[U, u]` are
contiguous and `depth()` returns the book as of `last_update_id` (Binance's snapshot + diff rule).

Rejections raise `SpotError(code, msg)` with Binance's error codes; nothing here knows JSON field
names (`bot.sim.server.binance` renders records and events on the wire). Amounts are exact
Decimals on the symbol's tick/step grid; commissions are rounded to 8 decimals.

Records, events and errors: `bot.sim.spot.records`; matching: `bot.sim.spot.matching`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal

from bot.book import OrderBook
from bot.domain import (
    ZERO,
    BookLevel,
    Side,
)
from bot.sim.history import HistoryBar
from bot.sim.market import SimMarket
from bot.sim.spot.matching import Matching
from bot.sim.spot.records import (
    BASE62,
    INSUFFICIENT_BALANCE,
    AccountPosition,
    AccountState,
    Balance,
    BalanceUpdate,
    BookTickerUpdate,
    DepthUpdate,
    ExecutionReport,
    ExecutionType,
    NewOrder,
    OrderType,
    SpotConfig,
    SpotError,
    SpotEvent,
    SpotFill,
    SpotOrder,
    SpotOrderStatus,
    SpotSymbol,
    SpotTimeInForce,
    SymbolState,
    WalletTransfer,
    default_symbols,
    diff_levels,
    missing_param,
    not_required,
    rejected,
)
from bot.venues.paper.fills import (
    FeeSchedule,
)


class SpotExchange(Matching):
    """Symbols, accounts, orders and matching of the simulated spot venue."""

    def __init__(self, seed: int, start_ns: int, symbols: Sequence[SpotSymbol] | None = None,
                 config: SpotConfig | None = None) -> None:
        self.config = cfg = config or SpotConfig()
        self._seed = seed
        self._now_ns = self._market_ns = start_ns
        self._fees = FeeSchedule(cfg.maker_commission_rate, cfg.taker_commission_rate)
        self._symbols: dict[str, SymbolState] = {}
        self._accounts: dict[str, AccountState] = {}
        self._pending: list[SpotEvent] = []
        self._client_ids = 0
        for i, spec in enumerate(symbols if symbols is not None else default_symbols()):
            # a separate stream per symbol, independent of the perp markets' seeds
            market = SimMarket(spec.model, seed * 7919 + 104_729 + i, start_ns)
            st = SymbolState(spec, market, OrderBook(spec.symbol), last_update_id=cfg.first_update_id,
                         next_order_id=cfg.first_order_id, next_trade_id=cfg.first_trade_id)
            self._symbols[spec.symbol] = st
            self._apply_model(st, market.step(start_ns), start_ns, [])
            st.bids, st.asks = self._public_side(st, Side.BUY), self._public_side(st, Side.SELL)
            st.top = self._touch(st)

    # ---- reads --------------------------------------------------------------------------------

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def symbols(self) -> list[SpotSymbol]:
        return [st.spec for st in self._symbols.values()]

    def symbol(self, symbol: str) -> SpotSymbol:
        return self._sym(symbol).spec

    def depth(self, symbol: str, limit: int | None = None
              ) -> tuple[int, list[BookLevel], list[BookLevel]]:
        """Return (lastUpdateId, bids best first, asks best first) of the public book."""
        st = self._sym(symbol)
        bids = [BookLevel(p, st.bids[p]) for p in sorted(st.bids, reverse=True)]
        asks = [BookLevel(p, st.asks[p]) for p in sorted(st.asks)]
        if limit is not None:
            bids, asks = bids[:limit], asks[:limit]
        return st.last_update_id, bids, asks

    def book_ticker(self, symbol: str) -> tuple[int, BookLevel | None, BookLevel | None]:
        st = self._sym(symbol)
        return st.last_update_id, st.top[0], st.top[1]

    def klines(self, symbol: str, hours: int) -> list[HistoryBar]:
        """The symbol's past before the simulator started, hourly, oldest first (bot.sim.history)."""
        return self._sym(symbol).market.history(hours)

    def mid(self, symbol: str) -> Decimal | None:
        bid, ask = self._sym(symbol).top
        if bid is None or ask is None:
            return None
        return (bid.price + ask.price) / 2

    def has_account(self, api_key: str) -> bool:
        return api_key in self._accounts

    def create_account(self, api_key: str, balances: Mapping[str, Decimal] | None = None) -> None:
        """Create an account (default balances from the config); an existing one is kept."""
        if api_key in self._accounts:
            return
        acct = self._accounts[api_key] = AccountState(api_key, update_ns=self._now_ns)
        for asset, amount in (self.config.default_balances if balances is None else balances).items():
            acct.wallet(asset).free = Decimal(amount)

    def set_balance(self, api_key: str, asset: str, free: Decimal) -> None:
        """Set an asset's free balance (tests, scenarios); locked funds are untouched."""
        self._acct(api_key).wallet(asset).free = free

    def deposit(self, api_key: str, asset: str, amount: Decimal, now_ns: int | None = None) -> WalletTransfer:
        """Credit a deposit (a test, a scenario: the owner funds the account from outside)."""
        if not amount > 0:
            raise ValueError(f"a deposit is positive, not {amount}")
        return self._move(api_key, "DEPOSIT", asset, amount, ZERO, now_ns)

    def withdraw(self, api_key: str, asset: str, amount: Decimal, fee: Decimal = ZERO,
                 now_ns: int | None = None) -> WalletTransfer:
        """Debit a completed withdrawal of `amount` plus `fee` from the free balance (-2010 short)."""
        if not amount > 0 or fee < 0:
            raise ValueError(f"a withdrawal is positive with a fee >= 0, not {amount} and {fee}")
        if self._acct(api_key).wallet(asset).free < amount + fee:
            raise SpotError(-2010, INSUFFICIENT_BALANCE)
        return self._move(api_key, "WITHDRAWAL", asset, amount, fee, now_ns)

    def transfer(self, api_key: str, kind: str, asset: str, amount: Decimal,
                 now_ns: int | None = None) -> WalletTransfer:
        """A universal transfer between the owner's spot wallet and another of its wallets (not
        simulated): `kind` MAIN_<wallet> takes `amount` out of spot (-2010 short), <wallet>_MAIN
        puts it in. Its `transfer_id` is Binance's numeric tranId."""
        if not amount > 0 or not (kind.startswith("MAIN_") or kind.endswith("_MAIN")):
            raise ValueError(f"a transfer into or out of spot of a positive amount, not {kind} {amount}")
        if kind.startswith("MAIN_") and self._acct(api_key).wallet(asset).free < amount:
            raise SpotError(-2010, INSUFFICIENT_BALANCE)
        return self._move(api_key, kind, asset, amount, ZERO, now_ns)

    def wallet_transfers(self, api_key: str) -> list[WalletTransfer]:
        """The account's deposits, withdrawals and universal transfers, oldest first."""
        return list(self._acct(api_key).transfers)

    def _move(self, api_key: str, kind: str, asset: str, amount: Decimal, fee: Decimal,
              now_ns: int | None) -> WalletTransfer:
        acct = self._acct(api_key)
        now = self._clock(self._now_ns if now_ns is None else now_ns)
        is_in = kind == "DEPOSIT" or kind.endswith("_MAIN")
        delta = amount if is_in else -(amount + fee)
        wallet = acct.wallet(asset)
        wallet.free += delta
        acct.update_ns = now
        n = len(acct.transfers) + 1
        ref = hashlib.sha256(f"{self._seed}:{api_key}:{kind}:{n}".encode()).hexdigest()
        ident = ref[:32] if kind in ("DEPOSIT", "WITHDRAWAL") else str(10_000_000_000 + int(ref[:8], 16))
        transfer = WalletTransfer(kind, ident, asset, amount, fee, now, "0x" + ref)
        acct.transfers.append(transfer)
        self._pending.append(BalanceUpdate(api_key, asset, delta, now))
        self._pending.append(AccountPosition(api_key, (Balance(asset, wallet.free, wallet.locked),), now))
        return transfer

    def balances(self, api_key: str) -> list[Balance]:
        acct = self._acct(api_key)
        return [Balance(a, w.free, w.locked) for a, w in acct.wallets.items()]

    def account_update_ns(self, api_key: str) -> int:
        return self._acct(api_key).update_ns

    def get_order(self, api_key: str, symbol: str, order_id: int | None = None,
                  orig_client_order_id: str | None = None) -> SpotOrder:
        """Find an order by id (preferred) or client id; -2013 when unknown."""
        self._sym(symbol)
        order = self._find(self._acct(api_key), symbol, order_id, orig_client_order_id)
        if order is None:
            raise SpotError(-2013, "Order does not exist.")
        return order.snapshot()

    def my_trades(self, api_key: str, symbol: str, order_id: int | None = None, from_id: int | None = None,
                  limit: int = 500) -> list[SpotFill]:
        """The account's fills on a symbol, oldest first: of one order, or from a trade id on."""
        self._sym(symbol)
        rows = [f for f in self._acct(api_key).trades
                if f.symbol == symbol and (order_id is None or f.order_id == order_id)
                and (from_id is None or f.trade_id >= from_id)]
        return rows[:limit] if from_id is not None or order_id is not None else rows[-limit:]

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[SpotOrder]:
        if symbol is not None:
            self._sym(symbol)
        return [o.snapshot() for o in self._acct(api_key).orders.values()
                if o.status.is_open and (symbol is None or o.symbol == symbol)]

    # ---- time ---------------------------------------------------------------------------------

    def advance(self, now_ns: int) -> list[SpotEvent]:
        """Step every market to now, fill resting orders, and return all events since last call."""
        # Only market steps must be monotonic: an order action may carry a slightly later time
        # than the runner's next step (both read the same clock around an await).
        if now_ns < self._market_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._market_ns}")
        self._market_ns = now_ns
        self._now_ns = max(self._now_ns, now_ns)
        for st in self._symbols.values():
            touched: list[tuple[AccountState, str]] = []
            self._apply_model(st, st.market.step(now_ns), now_ns, touched)
            self._sweep(st, now_ns, touched)
            self._account_positions(touched, now_ns)
            self._refresh(st, now_ns)
        return self.drain_events()

    def drain_events(self) -> list[SpotEvent]:
        """Return and forget the events produced since the last drain (order actions included)."""
        out, self._pending = self._pending, []
        return out

    # ---- orders -------------------------------------------------------------------------------

    def place_order(self, api_key: str, req: NewOrder, now_ns: int) -> tuple[SpotOrder, list[SpotFill]]:
        """Validate, match and rest or expire an order; raise SpotError when Binance would refuse."""
        now = self._clock(now_ns)
        acct = self._acct(api_key)
        st = self._sym(req.symbol)
        spec = st.spec
        self._check_params(req)
        cid = req.new_client_order_id or self._new_client_id()
        existing = acct.by_client_id.get((spec.symbol, cid))
        if existing is not None and existing.status.is_open:
            raise rejected("Duplicate order sent.")
        self._check_filters(st, req)
        base, quote = acct.wallet(spec.base_asset), acct.wallet(spec.quote_asset)
        price = req.price or ZERO
        if req.type is OrderType.LIMIT_MAKER and self._would_cross(st, req.side, price):
            raise rejected("Order would immediately match and take.")

        if req.type is OrderType.MARKET:
            qty, limit = self._market_size(st, req)
            cost = self._walk_cost(st, req.side, qty, limit)
            if (req.side is Side.BUY and cost > quote.free) or (req.side is Side.SELL and qty > base.free):
                raise rejected(INSUFFICIENT_BALANCE)
        else:
            qty, limit = req.quantity or ZERO, price
            lock = qty * price if req.side is Side.BUY else qty
            wallet = quote if req.side is Side.BUY else base
            if lock > wallet.free:
                raise rejected(INSUFFICIENT_BALANCE)
            wallet.free -= lock
            wallet.locked += lock

        order = SpotOrder(
            api_key, spec.symbol, st.next_order_id, cid, req.side, req.type,
            req.time_in_force or SpotTimeInForce.GTC, price, qty, req.quote_order_qty or ZERO, now, now,
        )
        st.next_order_id += 1
        acct.orders[(spec.symbol, order.order_id)] = order
        acct.by_client_id[(spec.symbol, cid)] = order
        self._report(order, ExecutionType.NEW, now)
        touched: list[tuple[AccountState, str]] = [(acct, spec.base_asset), (acct, spec.quote_asset)]
        if req.type is not OrderType.LIMIT_MAKER:
            self._prevent_self_trade(st, order, limit, now, touched)

        fills: list[SpotFill] = []
        fok_short = (order.time_in_force is SpotTimeInForce.FOK
                     and self._available(st, req.side, qty, limit) < qty)
        if req.type is not OrderType.LIMIT_MAKER and not fok_short and qty > 0:
            for f in self._take(st, order, qty, limit, now):
                fills.append(self._apply_fill(st, order, f.price, f.size, is_maker=False, now=now))
        if order.status.is_open:
            if req.type is OrderType.MARKET or order.time_in_force is not SpotTimeInForce.GTC:
                self._close(order, SpotOrderStatus.EXPIRED, ExecutionType.EXPIRED, now)
            else:
                self._rest(st, order)
        self._account_positions(touched, now)
        self._refresh(st, now)
        return order.snapshot(), fills

    def cancel_order(self, api_key: str, symbol: str, now_ns: int, order_id: int | None = None,
                     orig_client_order_id: str | None = None,
                     new_client_order_id: str | None = None) -> tuple[SpotOrder, str]:
        """Cancel an open order; return it and the cancel's own client id (-2011 when not open)."""
        now = self._clock(now_ns)
        st = self._sym(symbol)
        acct = self._acct(api_key)
        order = self._find(acct, symbol, order_id, orig_client_order_id)
        if order is None or not order.status.is_open:
            raise SpotError(-2011, "Unknown order sent.")
        cancel_id = new_client_order_id or self._new_client_id()
        self._close(order, SpotOrderStatus.CANCELED, ExecutionType.CANCELED, now, cancel_id)
        self._account_positions([(acct, st.spec.base_asset), (acct, st.spec.quote_asset)], now)
        self._refresh(st, now)
        return order.snapshot(), cancel_id

    def cancel_open_orders(self, api_key: str, symbol: str, now_ns: int) -> list[tuple[SpotOrder, str]]:
        """Cancel every open order of the account on `symbol` (as cancel_order); -2011 if none."""
        now = self._clock(now_ns)
        st = self._sym(symbol)
        acct = self._acct(api_key)
        orders = [o for o in acct.orders.values() if o.symbol == symbol and o.status.is_open]
        if not orders:
            raise SpotError(-2011, "Unknown order sent.")
        cancel_ids = [self._new_client_id() for _ in orders]
        for order, cancel_id in zip(orders, cancel_ids, strict=True):
            self._close(order, SpotOrderStatus.CANCELED, ExecutionType.CANCELED, now, cancel_id)
        self._account_positions([(acct, st.spec.base_asset), (acct, st.spec.quote_asset)], now)
        self._refresh(st, now)
        return [(o.snapshot(), c) for o, c in zip(orders, cancel_ids, strict=True)]

    # ---- validation ---------------------------------------------------------------------------

    def _check_params(self, req: NewOrder) -> None:
        if req.type is OrderType.MARKET:
            if req.price is not None:
                raise not_required("price")
            if req.time_in_force is not None:
                raise not_required("timeInForce")
            if req.quantity is None and req.quote_order_qty is None:
                raise SpotError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, "
                                       "but both were empty/null!")
            if req.quantity is not None and req.quote_order_qty is not None:
                raise not_required("quoteOrderQty")
            return
        if req.quote_order_qty is not None:
            raise not_required("quoteOrderQty")
        if req.type is OrderType.LIMIT and req.time_in_force is None:
            raise missing_param("timeInForce")
        if req.type is OrderType.LIMIT_MAKER and req.time_in_force is not None:
            raise not_required("timeInForce")
        if req.price is None:
            raise missing_param("price")
        if req.quantity is None:
            raise missing_param("quantity")

    def _check_filters(self, st: SymbolState, req: NewOrder) -> None:
        spec = st.spec
        if req.price is not None and (req.price < spec.min_price or req.price > spec.max_price
                                      or (req.price - spec.min_price) % spec.tick_size):
            raise SpotError(-1013, "Filter failure: PRICE_FILTER")
        qty = req.quantity
        if qty is not None and (qty < spec.min_qty or qty > spec.max_qty
                                or (qty - spec.min_qty) % spec.step_size):
            raise SpotError(-1013, "Filter failure: LOT_SIZE")
        if req.quote_order_qty is not None:
            if req.quote_order_qty <= 0:
                raise SpotError(-1013, "Filter failure: NOTIONAL")
            notional = req.quote_order_qty
        elif req.type is OrderType.MARKET:
            notional = (self.mid(spec.symbol) or ZERO) * (qty or ZERO)  # Binance: avgPrice x qty
        else:
            notional = (req.price or ZERO) * (qty or ZERO)
        if notional < spec.min_notional:
            raise SpotError(-1013, "Filter failure: NOTIONAL")
        if req.type is not OrderType.MARKET and notional > spec.max_notional:
            raise SpotError(-1013, "Filter failure: NOTIONAL")

    def _would_cross(self, st: SymbolState, side: Side, price: Decimal) -> bool:
        bid, ask = st.top
        if side is Side.BUY:
            return ask is not None and price >= ask.price
        return bid is not None and price <= bid.price

    # ---- events -------------------------------------------------------------------------------

    def _report(self, order: SpotOrder, exec_type: ExecutionType, now: int, *,
                fill: SpotFill | None = None, client_order_id: str = "",
                orig_client_order_id: str = "") -> None:
        self._pending.append(ExecutionReport(
            order.api_key, order.snapshot(), exec_type, client_order_id or order.client_order_id,
            orig_client_order_id, fill, now))

    def _account_positions(self, touched: list[tuple[AccountState, str]], now: int) -> None:
        per_account: dict[str, list[str]] = {}
        for acct, asset in touched:
            assets = per_account.setdefault(acct.api_key, [])
            if asset not in assets:
                assets.append(asset)
        for api_key, assets in per_account.items():
            acct = self._accounts[api_key]
            balances = tuple(Balance(a, acct.wallet(a).free, acct.wallet(a).locked) for a in assets)
            self._pending.append(AccountPosition(api_key, balances, now))
        touched.clear()

    def _public_side(self, st: SymbolState, side: Side) -> dict[Decimal, Decimal]:
        """Model levels net of consumed liquidity, plus resting account orders; `side` BUY = bids."""
        taken = st.consumed.taken(side.opposite(), st.book)
        out: dict[Decimal, Decimal] = {}
        for lvl in st.book.levels(side, 1_000_000):
            size = lvl.size - taken.get(lvl.price, ZERO)
            if size > 0:
                out[lvl.price] = size
        for order in st.resting:
            if order.side is side:
                out[order.price] = out.get(order.price, ZERO) + order.orig_qty - order.executed_qty
        return out

    def _touch(self, st: SymbolState) -> tuple[BookLevel | None, BookLevel | None]:
        bid = max(st.bids, default=None)
        ask = min(st.asks, default=None)
        return (None if bid is None else BookLevel(bid, st.bids[bid]),
                None if ask is None else BookLevel(ask, st.asks[ask]))

    def _refresh(self, st: SymbolState, now: int) -> None:
        """Publish the public book's changes as one DepthUpdate (one update id per level)."""
        bids, asks = self._public_side(st, Side.BUY), self._public_side(st, Side.SELL)
        bid_changes = diff_levels(st.bids, bids, best_high=True)
        ask_changes = diff_levels(st.asks, asks, best_high=False)
        count = len(bid_changes) + len(ask_changes)
        if not count:
            return
        first = st.last_update_id + 1
        st.last_update_id += count
        st.bids, st.asks = bids, asks
        self._pending.append(DepthUpdate(st.spec.symbol, first, st.last_update_id, bid_changes,
                                         ask_changes, now))
        top = self._touch(st)
        if top != st.top:
            st.top = top
            self._pending.append(BookTickerUpdate(st.spec.symbol, st.last_update_id, top[0], top[1],
                                                  now))

    # ---- helpers ------------------------------------------------------------------------------

    def _sym(self, symbol: str) -> SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            raise SpotError(-1121, "Invalid symbol.")
        return st

    def _acct(self, api_key: str) -> AccountState:
        acct = self._accounts.get(api_key)
        if acct is None:
            raise SpotError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return acct

    def _find(self, acct: AccountState, symbol: str, order_id: int | None,
              orig_client_order_id: str | None) -> SpotOrder | None:
        if order_id is not None:  # orderId takes precedence, as on Binance
            return acct.orders.get((symbol, order_id))
        if orig_client_order_id:
            return acct.by_client_id.get((symbol, orig_client_order_id))
        raise SpotError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                               "but both were empty/null!")

    def _clock(self, now_ns: int) -> int:
        # A request may carry a time just before the last market step: keep event time monotonic.
        self._now_ns = max(self._now_ns, now_ns)
        return self._now_ns

    def _new_client_id(self) -> str:
        """A deterministic 22-character id in Binance's auto-generated style."""
        self._client_ids += 1
        n = int.from_bytes(hashlib.sha256(f"{self._seed}:{self._client_ids}".encode()).digest())
        chars = []
        for _ in range(22):
            n, r = divmod(n, 62)
            chars.append(BASE62[r])
        return "".join(chars)


