"""The simulated exchange: markets + a matching engine with the dYdX v4 chain's order rules.

Pure and deterministic (no asyncio, no sockets, no wall clock): time is passed in as integer ns,
randomness comes from the seed. The protocol servers in `bot.sim.server` translate wire
messages into these calls and these records into wire messages; nothing here knows JSON or
protobuf field names.

Model: each market's background liquidity and taker flow come from `SimMarket`. Account orders
(ours) rest on top of that level book with queue position (a new order at a price queues behind
the size already there), are matched by price-time priority, and fill against the market's
taker flow. An account taker order walks the level book and really consumes that liquidity.

Units: prices and sizes are Decimal on the market's tick/step grid; chain integers (quantums,
subticks) are converted by the node front-end using `MarketInfo`.

THIS FILE IS THE CONTRACT between the exchange core and its front-ends (indexer REST/WS, node
gRPC, admin). Change a signature only together with every caller.

Events: `advance` returns everything that happened since the previous call, in order: what
`place_order` / `cancel_order` / `batch_cancel` / `create_account` produced in between (also
available at once through `drain()`), then per block and per model step the markets' book
events (the AGGREGATED book: model levels + account orders, so a client applying them equals
`book()`), trades (each followed by the delta of the level it consumed), oracle updates and
one BlockHeight per block, and finally one AccountUpdate per subaccount that changed.

Accounting: `usdc_balance` is cash (deposits - withdrawals + realised PnL - fees + funding);
equity = cash + unrealised PnL at the oracle. dYdX's own USDC asset position is cash minus the
cost of open positions: `asset_usdc()`. Liquidation closes every position at the oracle price
(status LIQUIDATED, a fill with an empty order uid and no fee) when equity < maintenance margin.

Records and chain errors: `bot.sim.perp.records`; matching: `bot.sim.perp.matching`; blocks,
funding, margin and bookkeeping: `bot.sim.perp.blocks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from bot.clock import NS_PER_HOUR
from bot.domain import (
    ZERO,
    Side,
    Trade,
)
from bot.sim.faults import ScenarioState
from bot.sim.history import HistoryBar
from bot.sim.market import SimMarket, SimMarketParams
from bot.sim.perp.blocks import Blocks
from bot.sim.perp.matching import Matching
from bot.sim.perp.records import (
    CODESPACE_SDK,
    DEFAULT_MARGIN,
    ERR_CANCEL_ALREADY_EXISTS,
    ERR_INVALID_BATCH_CANCEL,
    ERR_INVALID_ORDER_FLAG,
    ERR_INVALID_ORDER_GOOD_TIL_BLOCK,
    ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
    ERR_POST_ONLY_WOULD_CROSS_MAKER_ORDER,
    ERR_STATEFUL_ORDER_ALREADY_EXISTS,
    ERR_STATEFUL_ORDER_DOES_NOT_EXIST,
    MARGIN_FRACTIONS,
    MAX_BATCH_CANCEL,
    ORDER_FLAGS_CONDITIONAL,
    ORDER_FLAGS_LONG_TERM,
    ORDER_FLAGS_SHORT_TERM,
    REMOVAL_IOC_WOULD_REST,
    REMOVAL_REDUCE_ONLY,
    REMOVAL_REPLACED,
    REMOVAL_USER_CANCELED,
    SDK_ERR_INSUFFICIENT_FUNDS,
    SDK_ERR_WRONG_SEQUENCE,
    TIMESTAMP_NONCE_MIN,
    TIMESTAMP_NONCE_WINDOW_MS,
    ChainError,
    ExchangeConfig,
    ExchangeEvent,
    FillRecord,
    FundingRecord,
    HistoricalFunding,
    MarketChange,
    MarketInfo,
    OrderId,
    OrderRecord,
    OrderRequest,
    OrderState,
    PositionRecord,
    SubaccountInfo,
    TimeInForce,
    TransferRecord,
    chain_params,
    clob,
    order_uid,
)
from bot.sim.perp.state import (
    AccountState,
    BookOrder,
    Changes,
    LevelView,
    MarketState,
)
from bot.sim.perp.validation import Validation
from bot.venues.paper.fills import (
    FeeSchedule,
)


class SimExchange(Validation, Matching, Blocks):
    """Markets, accounts, order matching, funding and margin for the simulator."""

    def __init__(self, markets: Sequence[object], seed: int, start_ns: int,
                 config: ExchangeConfig | None = None) -> None:
        """`markets` is a list of bot.sim.market.SimMarketParams; clob pair ids follow the order."""
        self.config = config or ExchangeConfig()
        self._fees = FeeSchedule(self.config.maker_fee_rate, self.config.taker_fee_rate)
        self._scenario = ScenarioState()
        self._applied_liquidity = 1.0
        self._applied_spike: Decimal | None = None
        self._scenario_status: dict[str, str] = {}  # ticker -> status a scenario imposes
        self._scenario_margin: tuple[str, Decimal, Decimal] | None = None
        self._markets: list[MarketState] = []
        self._by_ticker: dict[str, MarketState] = {}
        for i, params in enumerate(markets):
            if not isinstance(params, SimMarketParams):
                raise TypeError(f"markets[{i}] is not a SimMarketParams")
            if params.ticker in self._by_ticker:
                raise ValueError(f"duplicate market {params.ticker}")
            imf, mmf = MARGIN_FRACTIONS.get(params.ticker, DEFAULT_MARGIN)
            market = MarketState(params.ticker, i, SimMarket(params, seed + i, start_ns),
                             params.tick_size, params.step_size,
                             chain_params(params.tick_size, params.step_size), imf, mmf)
            market.book = {Side.BUY: {}, Side.SELL: {}}
            market.view = LevelView(market)
            market.sim.set_hooks(taker=self._taker_hook(market), pre_emit=self._uncross_hook(market),
                                 emit_heights=False, taker_needs_overlay=True)
            self._markets.append(market)
            self._by_ticker[params.ticker] = market
        first = markets[0] if markets else None
        self._height = first.initial_height if isinstance(first, SimMarketParams) else 1
        self._block_time_ns = start_ns
        self._next_block_ns = start_ns + self.config.block_interval_ns
        self._now_ns = start_ns
        self._funding_epoch = start_ns // self.config.funding_interval_ns
        self._trade_index = 0  # per block, for trade ids
        self._fill_seq = 0
        self._transfer_seq = 0
        self._accounts: dict[str, AccountState] = {}
        self._short_cancels: dict[OrderId, int] = {}  # short-term cancel -> its good_til_block
        self._short_expiry: dict[int, list[BookOrder]] = {}  # good_til_block -> orders
        self._stateful_open: dict[str, BookOrder] = {}  # uid -> open long-term order
        self._open: dict[OrderId, BookOrder] = {}
        self._events: list[ExchangeEvent] = []
        self._changes: dict[tuple[str, int], Changes] = {}

    # ---- time --------------------------------------------------------------------------------
    def advance(self, now_ns: int) -> list[ExchangeEvent]:
        """Advance markets and blocks to now; expire orders, match flow, settle funding, liquidate."""
        if now_ns < self._now_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._now_ns}")
        self._now_ns = now_ns
        self._apply_scenario()
        interval = self.config.block_interval_ns
        if self._scenario.chain_halted:
            # The whole chain stops: no blocks, no matching, no oracle. Markets gap on resume.
            self._next_block_ns = max(self._next_block_ns, now_ns + interval)
        else:
            while self._next_block_ns <= now_ns:
                block_ns = self._next_block_ns
                self._step_markets(block_ns)
                self._produce_block(block_ns)
                self._next_block_ns += interval
            self._step_markets(now_ns)
        self._flush_changes()
        return self.drain()

    def drain(self) -> list[ExchangeEvent]:
        """Return and clear the events produced since the last call (advance calls this)."""
        events, self._events = self._events, []
        return events

    @property
    def height(self) -> int:
        return self._height

    @property
    def block_time_ns(self) -> int:
        """Time of the latest block."""
        return self._block_time_ns

    @property
    def scenario(self) -> ScenarioState:
        return self._scenario

    # ---- markets -----------------------------------------------------------------------------
    def markets(self) -> dict[str, MarketInfo]:
        return {m.ticker: self._market_info(m) for m in self._markets}

    def market_by_clob_pair(self, clob_pair_id: int) -> MarketInfo:
        """Raise ChainError('clob', 8 ErrInvalidClob, ...) for an unknown clob pair."""
        return self._market_info(self._market(clob_pair_id))

    def set_market_status(self, ticker: str, status: str) -> None:
        """Set a market's ClobPair status (ACTIVE, POST_ONLY, CANCEL_ONLY, PAUSED, ...).

        Leaving FINAL_SETTLEMENT settles every position left in the market at the oracle price
        (the chain closes them; the model then lets the market trade again, for repeatable tests).
        """
        m = self._by_ticker[ticker]
        if m.status == status:
            return
        if m.status == "FINAL_SETTLEMENT":
            self._final_settle(m, self._now_ns)
        m.status = status
        self._events.append(MarketChange(ticker))

    def set_margin_fractions(self, ticker: str, imf: Decimal, mmf: Decimal) -> None:
        """Change a market's initial and maintenance margin fractions (governance)."""
        m = self._by_ticker[ticker]
        if (m.imf, m.mmf) != (imf, mmf):
            m.imf, m.mmf = imf, mmf
            self._events.append(MarketChange(ticker))

    def sim_market(self, ticker: str) -> SimMarket:
        """Return the market model behind `ticker` (tests, scenarios)."""
        return self._by_ticker[ticker].sim

    def book(self, ticker: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Aggregated (bids, asks), best first, account orders included."""
        sim = self._by_ticker[ticker].sim
        bids, asks = sim.shown(Side.BUY), sim.shown(Side.SELL)
        price, size = sim.price_of, sim.size_of
        return ([(price(t), size(bids[t])) for t in sorted(bids, reverse=True)],
                [(price(t), size(asks[t])) for t in sorted(asks)])

    def trades(self, ticker: str, limit: int = 100) -> list[tuple[str, Trade, int]]:
        """Newest first: (trade id, trade, height)."""
        trades = self._by_ticker[ticker].trades
        return [(f"{height:08X}{0:08X}{index:08X}", trade, height)
                for index, trade, height in (trades[-1 - k] for k in range(min(limit, len(trades))))]

    def historical_funding(self, ticker: str, limit: int = 100) -> list[HistoricalFunding]:
        """Newest first: the settlements since the simulator started."""
        funding = self._by_ticker[ticker].funding
        return [funding[-1 - k] for k in range(min(limit, len(funding)))]

    def past_funding(self, ticker: str, hours: int) -> list[HistoricalFunding]:
        """Newest first: the hourly settlements of the market's past (bot.sim.history)."""
        market = self._by_ticker[ticker]
        blocks_per_hour = max(1, NS_PER_HOUR // market.sim.params.block_interval_ns)
        first = market.sim.params.initial_height
        return [HistoricalFunding(ticker, bar.funding_rate_1h, bar.close, max(1, first - k * blocks_per_hour),
                                  bar.ts_ns + NS_PER_HOUR)
                for k, bar in enumerate(reversed(self.history(ticker, hours)))]

    def history(self, ticker: str, hours: int) -> list[HistoryBar]:
        """The hourly bars (oldest first) of a market's past before the simulator started."""
        return self._by_ticker[ticker].sim.history(hours)

    # ---- accounts ----------------------------------------------------------------------------
    def create_account(self, owner: str, usdc: Decimal, subaccount_number: int = 0) -> int:
        """Create (or top up) an account; returns its account number."""
        account = self._accounts.get(owner)
        if account is None:
            account = self._accounts[owner] = AccountState(len(self._accounts) + 1)
        sub = self._sub(owner, subaccount_number, create=True)
        if usdc:
            self._transfer(sub, "DEPOSIT", usdc)
        self._flush_changes()
        return account.number

    def deposit(self, owner: str, amount: Decimal, subaccount_number: int = 0) -> None:
        """Credit USDC to a subaccount (MsgDepositToSubaccount)."""
        self._check_running()
        if amount <= 0:
            raise ChainError(CODESPACE_SDK, SDK_ERR_INSUFFICIENT_FUNDS, "amount must be positive")
        self._transfer(self._sub(owner, subaccount_number), "DEPOSIT", amount)
        self._flush_changes()

    def withdraw(self, owner: str, amount: Decimal, subaccount_number: int = 0) -> None:
        """Debit USDC from a subaccount (MsgWithdrawFromSubaccount); gated and collateral-checked."""
        self._check_running()
        sub = self._sub(owner, subaccount_number)
        if self._scenario.withdrawals_gated:
            raise ChainError("subaccounts", 7,
                             "WithdrawalsAndTransfersBlocked: failed to apply subaccount updates")
        if amount <= 0 or amount > self._free_collateral(sub):
            raise ChainError(CODESPACE_SDK, SDK_ERR_INSUFFICIENT_FUNDS,
                             f"insufficient free collateral for withdrawal of {amount}")
        self._transfer(sub, "WITHDRAWAL", -amount)
        self._flush_changes()

    def account(self, owner: str) -> tuple[int, int]:
        """(account_number, sequence); ChainError for an unknown address."""
        account = self._account(owner)
        return account.number, account.sequence

    def check_sequence(self, owner: str, sequence: int, is_stateful: bool) -> None:
        """Stateful txs need sequence == account sequence and bump it; short-term ones skip both.

        A sequence >= 2^40 is a timestamp nonce (unix ms): it must be within 30 s of the block
        time and unused, and it leaves the account sequence alone.
        """
        account = self._account(owner)
        if not is_stateful:
            return
        if sequence >= TIMESTAMP_NONCE_MIN:
            block_ms = self._block_time_ns // 1_000_000
            if abs(sequence - block_ms) > TIMESTAMP_NONCE_WINDOW_MS or sequence in account.nonces:
                raise ChainError(CODESPACE_SDK, SDK_ERR_WRONG_SEQUENCE,
                                 f"timestamp nonce {sequence} is outside the window or already used")
            account.nonces.append(sequence)
            return
        if sequence != account.sequence:
            raise ChainError(CODESPACE_SDK, SDK_ERR_WRONG_SEQUENCE,
                             f"account sequence mismatch, expected {account.sequence}, got {sequence}: "
                             "incorrect account sequence")
        account.sequence += 1

    def subaccount(self, owner: str, number: int = 0) -> SubaccountInfo:
        sub = self._sub(owner, number)
        equity = self._equity(sub)
        return SubaccountInfo(owner, number, sub.usdc, equity, equity - self._initial_margin(sub),
                              tuple(self._position_record(sub, t) for t in sub.positions), self._height)

    def asset_usdc(self, owner: str, number: int = 0) -> Decimal:
        """Return the USDC asset position as dYdX reports it: cash minus the cost of open positions."""
        sub = self._sub(owner, number)
        return sub.usdc - sum((p.pos.size * p.pos.avg_entry for p in sub.positions.values()), ZERO)

    def orders(self, owner: str, number: int = 0, open_only: bool = False) -> list[OrderRecord]:
        sub = self._sub(owner, number)
        return [o.record.copy() for o in sub.orders.values() if not open_only or o.is_open]

    def fills(self, owner: str, number: int = 0, limit: int = 100) -> list[FillRecord]:
        """Newest first."""
        fills = self._sub(owner, number).fills
        return [fills[-1 - k] for k in range(min(limit, len(fills)))]

    def positions(self, owner: str, number: int = 0, open_only: bool = True) -> list[PositionRecord]:
        sub = self._sub(owner, number)
        current = [self._position_record(sub, t) for t in sub.positions]
        return current if open_only else [*sub.history, *current]

    def funding_payments(self, owner: str, number: int = 0) -> list[FundingRecord]:
        return list(self._sub(owner, number).funding)

    def transfers(self, owner: str, number: int = 0) -> list[TransferRecord]:
        return list(self._sub(owner, number).transfers)

    # ---- orders (the node front-end calls these after decoding and verifying a tx) -------------
    def place_order(self, request: OrderRequest, now_ns: int) -> None:
        """Validate against chain rules and match or rest; raise ChainError on rejection."""
        self._check_running()
        oid = request.order_id
        market, price_ticks, size_steps = self._validate_basic(request)
        sub = self._sub(oid.owner, oid.subaccount_number)
        self._validate_state(request, market)
        existing = self._open.get(oid)
        uid = order_uid(oid)
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            self._validate_short_term_id(request, existing, sub.orders.get(uid))
        elif existing is not None:
            raise clob(ERR_STATEFUL_ORDER_ALREADY_EXISTS,
                        "Existing stateful order has higher-or-equal priority than the new one")
        if request.time_in_force is TimeInForce.POST_ONLY and self._would_cross(
                market, request.side, price_ticks):
            raise clob(ERR_POST_ONLY_WOULD_CROSS_MAKER_ORDER,
                        "Post-only order would cross one or more maker orders")
        if not request.reduce_only:
            self._check_margin(sub, market, request.side, size_steps, price_ticks)
        ts = max(now_ns, self._now_ns)
        if existing is not None:  # a valid short-term replacement: the old one leaves the book
            self._remove(existing, OrderState.CANCELED, REMOVAL_REPLACED, ts)
        status = (OrderState.BEST_EFFORT_OPENED if oid.order_flags == ORDER_FLAGS_SHORT_TERM
                  else OrderState.OPEN)
        record = OrderRecord(uid, request, market.ticker, status, ZERO, self._height,
                             self._height, ts)
        order = BookOrder(record, market, sub, price_ticks, size_steps)
        sub.orders.pop(record.uid, None)  # a re-used id moves to the end (newest)
        sub.orders[record.uid] = order
        self._touch(order)
        if request.reduce_only:
            limit = self._reduce_only_limit(sub, market, request.side)
            if limit <= 0:
                self._finish(order, OrderState.CANCELED, REMOVAL_REDUCE_ONLY, ts)
                self._after_call(ts)
                return
            order.size_steps = min(order.size_steps, limit)
        self._match(order, ts)
        if order.remaining_steps > 0 and order.is_open:
            if request.time_in_force is TimeInForce.IOC:
                self._finish(order, OrderState.CANCELED, REMOVAL_IOC_WOULD_REST, ts)
            else:
                self._rest(order)
        self._after_call(ts)

    def cancel_order(self, order_id: OrderId, now_ns: int, good_til_block: int | None = None,
                     good_til_block_time: int | None = None) -> None:
        self._check_running()
        self._market(order_id.clob_pair_id)
        self._sub(order_id.owner, order_id.subaccount_number)
        ts = max(now_ns, self._now_ns)
        order = self._open.get(order_id)
        if order_id.order_flags == ORDER_FLAGS_SHORT_TERM:
            if not good_til_block:
                raise clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "cancel goodTilBlock cannot be 0")
            self._check_good_til_block(good_til_block)
            previous = self._short_cancels.get(order_id)
            if previous is not None and previous >= good_til_block:
                raise clob(ERR_CANCEL_ALREADY_EXISTS, "A cancel already exists in the memclob for this "
                            "order with a greater than or equal GoodTilBlock")
            self._short_cancels[order_id] = good_til_block
        elif order_id.order_flags in (ORDER_FLAGS_LONG_TERM, ORDER_FLAGS_CONDITIONAL):
            if not good_til_block_time:
                raise clob(ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
                            "cancellation goodTilBlockTime cannot be 0")
            self._check_good_til_block_time(good_til_block_time)
            if order is None:
                raise clob(ERR_STATEFUL_ORDER_DOES_NOT_EXIST, f"Stateful order does not exist: {order_id}")
        else:
            raise clob(ERR_INVALID_ORDER_FLAG, f"invalid order flag {order_id.order_flags}")
        if order is not None:
            self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        self._after_call(ts)

    def batch_cancel(self, owner: str, subaccount_number: int,
                     batches: list[tuple[int, list[int]]], good_til_block: int, now_ns: int) -> None:
        """Cancel short-term orders by (clob_pair_id, client ids); at most 100 in total."""
        self._check_running()
        total = sum(len(ids) for _, ids in batches)
        if total == 0 or total > MAX_BATCH_CANCEL:
            raise clob(ERR_INVALID_BATCH_CANCEL,
                        f"Batch cancel cannot have zero orders or more than {MAX_BATCH_CANCEL} orders "
                        f"specified. Got {total}")
        if not good_til_block:
            raise clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "batch cancel goodTilBlock cannot be 0")
        self._check_good_til_block(good_til_block)
        for clob_pair_id, _ in batches:
            self._market(clob_pair_id)
        self._sub(owner, subaccount_number)
        ts = max(now_ns, self._now_ns)
        for clob_pair_id, client_ids in batches:
            for client_id in client_ids:
                oid = OrderId(owner, subaccount_number, client_id, ORDER_FLAGS_SHORT_TERM, clob_pair_id)
                if self._short_cancels.get(oid, -1) < good_til_block:
                    self._short_cancels[oid] = good_til_block
                order = self._open.get(oid)
                if order is not None:
                    self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        self._after_call(ts)
