"""Perp blocks: order expiry, funding settlement, liquidation, margin and per-account change sets."""

from __future__ import annotations

from decimal import Decimal

from bot.clock import NS_PER_SEC
from bot.domain import (
    ZERO,
    Fill,
    Liquidity,
    Side,
    Trade,
)
from bot.sim.event_drafts import block_height
from bot.sim.part import Part
from bot.sim.perp.records import (
    CODESPACE_SDK,
    DEFAULT_MARGIN,
    MARGIN_FRACTIONS,
    REMOVAL_EXPIRED,
    REMOVAL_USER_CANCELED,
    SDK_ERR_UNKNOWN_ADDRESS,
    AccountUpdate,
    ChainError,
    FillRecord,
    FundingRecord,
    HistoricalFunding,
    MarketInfo,
    OrderId,
    OrderState,
    PositionRecord,
    TransferRecord,
    uuid5,
)
from bot.sim.perp.state import (
    AccountState,
    BookOrder,
    Changes,
    MarketState,
    SubaccountState,
)
from bot.venues.paper.fills import (
    funding_payment,
)


class Blocks(Part):
    """Blocks, funding, margin and bookkeeping of SimExchange (a part of it: reads and writes its state)."""

    _trade_index: int
    _funding_epoch: int
    _short_cancels: dict[OrderId, int]
    _applied_liquidity: float
    _applied_spike: Decimal | None
    _scenario_status: dict[str, str]
    _scenario_margin: tuple[str, Decimal, Decimal] | None
    _changes: dict[tuple[str, int], Changes]

    # ---- blocks ------------------------------------------------------------------------------
    def _step_markets(self, now_ns: int) -> None:
        for m in self._markets:
            sim = m.sim
            if now_ns == sim.now_ns and sim.is_started:
                continue
            events = sim.step(now_ns)
            trades = [event for event in events if event.__class__ is Trade]
            if trades:  # their ids: (height, index in the block); the model's volume (the hooks' is in)
                index, height, record = self._trade_index, self._height, m.trades.append
                for trade in trades:
                    index += 1
                    record((index, trade, height))
                self._trade_index = index
                m.add_volume(now_ns, sim.drain_traded_units())
            self._events += events

    def _record_trade(self, m: MarketState, trade: Trade, ticks: int, steps: int) -> None:
        """Give an exchange-made trade its id; count its volume (model trades: _step_markets)."""
        self._trade_index += 1
        m.trades.append((self._trade_index, trade, self._height))
        m.add_volume(trade.ts_event, ticks * steps)

    def _produce_block(self, block_ns: int) -> None:
        self._height += 1
        self._block_time_ns = block_ns
        self._trade_index = 0
        height = self._height
        self._events.append(block_height(height, block_ns))
        # short-term orders whose good_til_block < height
        for gtb in [g for g in self._short_expiry if g < height]:
            for order in self._short_expiry.pop(gtb):
                if order.is_open and order.record.request.good_til_block == gtb:
                    self._remove(order, OrderState.CANCELED, REMOVAL_EXPIRED, block_ns)
        if self._short_cancels:
            self._short_cancels = {k: v for k, v in self._short_cancels.items() if v >= height}
        block_secs = block_ns // NS_PER_SEC
        for order in [o for o in self._stateful_open.values()
                      if (o.record.request.good_til_block_time or 0) <= block_secs]:
            self._remove(order, OrderState.CANCELED, REMOVAL_EXPIRED, block_ns)
        epoch = block_ns // self.config.funding_interval_ns
        if epoch > self._funding_epoch:
            self._funding_epoch = epoch
            self._settle_funding(epoch * self.config.funding_interval_ns, block_ns)
        self._liquidate(block_ns)
        for m in self._markets:
            self._events.extend(m.sim.flush(block_ns))

    def _funding_rate(self, m: MarketState, boundary_ns: int) -> Decimal:
        spike = self._scenario.funding_spike_1h
        if spike is not None:
            return spike
        settled = m.sim.last_funding_settlement()
        if settled is not None and settled[0] == boundary_ns:
            return settled[1]
        return m.sim.funding_rate_1h()

    def _settle_funding(self, boundary_ns: int, block_ns: int) -> None:
        for m in self._markets:
            rate = self._funding_rate(m, boundary_ns)
            oracle = m.sim.oracle_price()
            m.funding.append(HistoricalFunding(m.ticker, rate, oracle, self._height, block_ns))
            for sub in self._subaccounts():
                holder = sub.positions.get(m.ticker)
                if holder is None:
                    continue
                payment = funding_payment(m.ticker, holder.pos.size, oracle, rate, block_ns)
                sub.usdc += payment.amount
                holder.net_funding += payment.amount
                holder.pos.funding_pnl += payment.amount
                record = FundingRecord(sub.owner, sub.number, m.ticker, rate, oracle, holder.pos.size,
                                       payment.amount, self._height, block_ns)
                sub.funding.append(record)
                changes = self._changes_for(sub)
                changes.funding.append(record)
                changes.positions[m.ticker] = None

    def _liquidate(self, block_ns: int) -> None:
        for sub in self._subaccounts():
            if not sub.positions:
                continue
            if self._equity(sub) >= self._maintenance_margin(sub):
                continue
            for ticker in list(sub.positions):
                self._close_at_oracle(sub, ticker, block_ns, "LIQUIDATED")

    def _close_at_oracle(self, sub: SubaccountState, ticker: str, ts: int, status: str) -> None:
        """Close a position at the oracle price: a fill with no order and no fee."""
        pos = sub.positions[ticker].pos
        oracle = self._by_ticker[ticker].sim.oracle_price()
        side = Side.SELL if pos.size > 0 else Side.BUY
        self._fill_seq += 1
        fill = FillRecord(uuid5(f"fill-{self._fill_seq}"), "", sub.owner, sub.number, ticker, side, "TAKER",
                          oracle, abs(pos.size), ZERO, 0, self._height, ts)
        realised_before = pos.realised_pnl
        pos.apply_fill(Fill(fill.fill_id, 0, ticker, side, oracle, fill.size, ZERO, Liquidity.TAKER, ts))
        sub.usdc += pos.realised_pnl - realised_before
        sub.fills.append(fill)
        self._changes_for(sub).fills.append(fill)
        self._close_position(sub, ticker, status)

    def _final_settle(self, m: MarketState, ts: int) -> None:
        """Close every position in `m` at the oracle (no fee) and cancel its open orders."""
        for order in [o for o in self._open.values() if o.record.ticker == m.ticker and o.is_open]:
            self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        for sub in self._subaccounts():
            if m.ticker in sub.positions:
                self._close_at_oracle(sub, m.ticker, ts, "CLOSED")
        self._flush_changes()

    # ---- margin ------------------------------------------------------------------------------
    def _equity(self, sub: SubaccountState) -> Decimal:
        equity = sub.usdc
        for ticker, holder in sub.positions.items():
            pos = holder.pos
            equity += pos.size * (self._by_ticker[ticker].sim.oracle_price() - pos.avg_entry)
        return equity

    def _initial_margin(self, sub: SubaccountState) -> Decimal:
        total = ZERO
        for ticker, holder in sub.positions.items():
            m = self._by_ticker[ticker]
            total += abs(holder.pos.size) * m.sim.oracle_price() * m.imf
        return total

    def _maintenance_margin(self, sub: SubaccountState) -> Decimal:
        total = ZERO
        for ticker, holder in sub.positions.items():
            m = self._by_ticker[ticker]
            total += abs(holder.pos.size) * m.sim.oracle_price() * m.mmf
        return total

    def _free_collateral(self, sub: SubaccountState) -> Decimal:
        return self._equity(sub) - self._initial_margin(sub)

    # ---- bookkeeping -------------------------------------------------------------------------
    def _account(self, owner: str) -> AccountState:
        account = self._accounts.get(owner)
        if account is None:
            raise ChainError(CODESPACE_SDK, SDK_ERR_UNKNOWN_ADDRESS, f"account {owner} not found")
        return account

    def _sub(self, owner: str, number: int, create: bool = False) -> SubaccountState:
        account = self._accounts.get(owner)
        if account is None:
            if not create:
                raise ChainError(CODESPACE_SDK, SDK_ERR_UNKNOWN_ADDRESS, f"account {owner} not found")
            account = self._accounts[owner] = AccountState(len(self._accounts) + 1)
        sub = account.subaccounts.get(number)
        if sub is None:
            sub = account.subaccounts[number] = SubaccountState(owner, number)
        return sub

    def _subaccounts(self) -> list[SubaccountState]:
        return [s for a in self._accounts.values() for s in a.subaccounts.values()]

    def _transfer(self, sub: SubaccountState, kind: str, amount: Decimal) -> None:
        self._transfer_seq += 1
        record = TransferRecord(uuid5(f"transfer-{self._transfer_seq}"), sub.owner,
                                sub.number, kind, abs(amount), self._height, self._event_ts())
        sub.usdc += amount
        sub.transfers.append(record)
        self._changes_for(sub).transfers.append(record)

    def _position_record(self, sub: SubaccountState, ticker: str) -> PositionRecord:
        holder = sub.positions[ticker]
        pos = holder.pos
        return PositionRecord(sub.owner, sub.number, ticker, pos.size, pos.avg_entry, pos.realised_pnl,
                              holder.net_funding, holder.status, self._height)

    def _market_info(self, m: MarketState) -> MarketInfo:
        ar, qce, sbq, spt = m.chain
        open_interest = sum((h.pos.size for s in self._subaccounts() for t, h in s.positions.items()
                             if t == m.ticker and h.pos.size > 0), ZERO)
        rate = self._scenario.funding_spike_1h
        return MarketInfo(m.ticker, m.clob_pair_id, m.status, m.sim.oracle_price(),
                          rate if rate is not None else m.sim.funding_rate_1h(), m.imf, m.mmf, ar, qce,
                          sbq, spt, m.tick, m.step, open_interest, m.volume_24h())

    def _apply_scenario(self) -> None:
        s = self._scenario
        if s.liquidity_factor != self._applied_liquidity:
            self._applied_liquidity = s.liquidity_factor
            for m in self._markets:
                m.sim.set_depth_factor(s.liquidity_factor)
        if s.funding_spike_1h != self._applied_spike:
            self._applied_spike = s.funding_spike_1h
            for m in self._markets:
                m.sim.set_funding_override(s.funding_spike_1h)
        wanted = {market: status for status, market in s.market_status.items()}
        for ticker in sorted(set(self._scenario_status) | set(wanted)):
            if ticker in self._by_ticker and wanted.get(ticker) != self._scenario_status.get(ticker):
                self.set_market_status(ticker, wanted.get(ticker, "ACTIVE"))
        self._scenario_status = {t: v for t, v in wanted.items() if t in self._by_ticker}
        margin = s.margin_fractions
        margin_key = ((margin.market, margin.imf, margin.mmf)
                      if margin is not None and margin.market in self._by_ticker else None)
        if margin_key != self._scenario_margin:
            if self._scenario_margin is not None:
                ticker = self._scenario_margin[0]
                self.set_margin_fractions(ticker, *MARGIN_FRACTIONS.get(ticker, DEFAULT_MARGIN))
            if margin_key is not None:
                self.set_margin_fractions(*margin_key)
            self._scenario_margin = margin_key
        gap, s.price_gap = s.price_gap, None
        if gap is not None and gap.market in self._by_ticker:
            self._by_ticker[gap.market].sim.shift_price(gap.pct)

    def _event_ts(self) -> int:
        return self._now_ns

    def _touch(self, order: BookOrder) -> None:
        self._changes_for(order.sub).orders[order.record.uid] = order

    def _changes_for(self, sub: SubaccountState) -> Changes:
        key = (sub.owner, sub.number)
        changes = self._changes.get(key)
        if changes is None:
            changes = self._changes[key] = Changes()
        return changes

    def _after_call(self, ts: int) -> None:
        for m in self._markets:
            self._events.extend(m.sim.flush(ts))
        self._flush_changes()

    def _flush_changes(self) -> None:
        if not self._changes:
            return
        for (owner, number), ch in self._changes.items():
            sub = self._sub(owner, number)
            positions = []
            for ticker in ch.positions:
                if ticker in sub.positions:
                    positions.append(self._position_record(sub, ticker))
                else:
                    closed = [p for p in sub.history if p.ticker == ticker]
                    if closed:
                        positions.append(closed[-1])
            self._events.append(AccountUpdate(
                owner, number, tuple(o.record.copy() for o in ch.orders.values()), tuple(ch.fills),
                tuple(positions), tuple(ch.transfers), tuple(ch.funding), self._height))
        self._changes = {}
