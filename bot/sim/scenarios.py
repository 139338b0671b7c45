"""Named fault scenarios for the simulator and a scheduler that starts and ends them (pure).

A scenario flips switches in `ScenarioState` (read by the exchange core and the protocol
front-ends) for `duration_s`, then restores them. One-shot scenarios (a WS drop, a gapped
book message) fire once and have no duration. Scenario files (JSON or TOML) look like:

    [[scenarios]]
    name = "chain_halt"
    at_s = 30          # seconds after the simulator starts
    duration_s = 60

Scenarios are also triggered at run time: `POST {admin}/scenario {"name": ..., "duration_s": N}`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bot.clock import NS_PER_SEC
from bot.errors import ConfigError
from bot.sim.faults import (
    BACKTEST_FAULTS,
    SIM_FAULTS,
    AccountFault,
    BadFrame,
    BookFault,
    Fault,
    FrontRun,
    HttpError,
    MarginChange,
    OrderReject,
    PriceGap,
    ScenarioState,
    WsDrop,
    parse_fault,
)

INJECTED_FRAMES = tuple(BadFrame)  # the "ws_bad_frame" kinds


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    name: Fault
    at_s: float = 0.0
    duration_s: float = 60.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scenario:
    description: str
    start: Callable[[ScenarioState, dict[str, Any]], None]
    end: Callable[[ScenarioState, dict[str, Any]], None] | None  # None: one-shot


_SWITCHES = frozenset(f.name for f in fields(ScenarioState))


def _switch(attr: str, value: Callable[[dict[str, Any]], Any], reset: Any = None,
            one_shot: bool = False) -> Scenario:
    """Set the ScenarioState field `attr` to `value(params)`; put `reset` back at the end."""
    if attr not in _SWITCHES:
        raise AttributeError(f"ScenarioState has no switch {attr!r}")

    def start(state: ScenarioState, params: dict[str, Any]) -> None:
        setattr(state, attr, value(params))

    def end(state: ScenarioState, params: dict[str, Any]) -> None:
        setattr(state, attr, reset)

    return Scenario(f"sets {attr}", start, None if one_shot else end)


def _http_error(status: int) -> Callable[[dict[str, Any]], HttpError]:
    def build(params: dict[str, Any]) -> HttpError:
        return HttpError(int(params.get("status", status)), int(params.get("count", 5)),
                         float(params.get("retry_after_secs", 1)))

    return build


def _bad_frame(params: dict[str, Any]) -> BadFrame:
    value = str(params.get("kind", BadFrame.GARBAGE))
    if value not in INJECTED_FRAMES:
        raise ValueError(f"kind must be one of {[str(k) for k in INJECTED_FRAMES]}")
    return BadFrame(value)


def _reject(params: dict[str, Any]) -> OrderReject:
    return OrderReject(str(params.get("codespace", "clob")), int(params.get("code", 3007)),
                       int(params.get("count", 3)),
                       str(params.get("log", "Order is undercollateralized (simulated fault)")))


def _key_flags(params: dict[str, Any]) -> dict[str, bool]:
    """What GET /sapi/v1/account/apiRestrictions answers from now on (flags not given keep theirs)."""
    flags = {}
    for key, value in params.items():
        if key not in ("enableWithdrawals", "ipRestrict", "enableSpotAndMarginTrading", "enableReading"):
            raise ValueError(f"unknown key restriction {key!r}")
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        flags[key] = value
    return flags


BINANCE_WALLETS = ("FUNDING", "UMFUTURE", "CMFUTURE", "MARGIN", "ISOLATED_MARGIN", "OPTION",
                   "PORTFOLIO_MARGIN")


def _binance_transfer(params: dict[str, Any]) -> tuple[str, Decimal, Decimal, str | None]:
    """The owner deposits (`amount` > 0) or withdraws (< 0, plus `fee`) `asset` on the Binance
    account; with `wallet` (FUNDING, UMFUTURE, ...) it moves it from that wallet into spot (> 0) or
    out of spot into it (< 0) instead: a universal transfer (no fee)."""
    asset, amount = params.get("asset", "USDT"), _decimal(params, "amount", "0")
    fee, wallet = _decimal(params, "fee", "0"), params.get("wallet")
    if (not isinstance(asset, str) or not asset.isalnum() or not amount.is_finite() or not amount
            or not fee.is_finite() or fee < 0):
        raise ValueError("need an asset name, a non-zero amount (< 0 withdraws) and a fee >= 0")
    if wallet is not None and (wallet not in BINANCE_WALLETS or fee):
        raise ValueError(f"wallet must be one of {', '.join(BINANCE_WALLETS)} (and no fee)")
    return asset, amount, fee, wallet


def _market_status(status: str) -> Scenario:
    """The market given by `market` (default BTC-USD) has `status` for the scenario's duration."""
    def start(state: ScenarioState, params: dict[str, Any]) -> None:
        market = params.get("market", "BTC-USD")
        if not isinstance(market, str) or "-" not in market:
            raise ValueError("market must be a ticker like 'BTC-USD'")
        state.market_status[status] = market

    def end(state: ScenarioState, params: dict[str, Any]) -> None:
        state.market_status.pop(status, None)

    return Scenario(f"sets the market's status to {status}", start, end)


def _margin(params: dict[str, Any]) -> MarginChange:
    imf, mmf = _decimal(params, "imf", "0.1"), _decimal(params, "mmf", "0.05")
    if not 0 < mmf <= imf <= 1:
        raise ValueError("need 0 < mmf <= imf <= 1")
    return MarginChange(str(params.get("market", "BTC-USD")), imf, mmf)


def _price_gap(params: dict[str, Any]) -> PriceGap:
    market = params.get("market", "BTC-USD")
    return PriceGap(market if isinstance(market, str) else "", float(params.get("pct", -5)))


def _front_run(params: dict[str, Any]) -> FrontRun:
    return FrontRun(_decimal(params, "leave", "0.5"), int(params.get("count", 1)))


def _decimal(params: dict[str, Any], key: str, default: str) -> Decimal:
    try:
        return Decimal(str(params.get(key, default)))
    except InvalidOperation:
        raise ValueError(f"{key} must be a number") from None


SCENARIOS: dict[Fault, Scenario] = {
    Fault.CHAIN_HALT: _switch("chain_halted", lambda p: True, False),
    Fault.INDEXER_LAG: _switch("indexer_lag_blocks", lambda p: int(p.get("blocks", 30)), 0),
    Fault.WITHDRAWAL_GATING: _switch("withdrawals_gated", lambda p: True, False),
    Fault.LIQUIDITY_DROUGHT: _switch("liquidity_factor", lambda p: float(p.get("factor", 0.2)), 1.0),
    Fault.FUNDING_SPIKE: _switch("funding_spike_1h", lambda p: _decimal(p, "rate_1h", "0.001"), None),
    Fault.WS_DROP: _switch("ws_drop", lambda p: WsDrop.CLOSE, one_shot=True),
    Fault.WS_STALL: _switch("ws_stall", lambda p: True, False),
    Fault.BOOK_GAP: _switch("book_fault", lambda p: BookFault.GAP, one_shot=True),
    Fault.BOOK_CROSSED: _switch("book_fault", lambda p: BookFault.CROSSED, one_shot=True),
    Fault.HTTP_429: _switch("http_error", _http_error(429), one_shot=True),
    Fault.HTTP_5XX: _switch("http_error", _http_error(503), one_shot=True),
    Fault.GRPC_UNAVAILABLE: _switch("grpc_unavailable", lambda p: True, False),
    Fault.PRICE_GAP: _switch("price_gap", _price_gap, one_shot=True),
    Fault.BINANCE_HTTP_ERROR: _switch("binance_http_error", _http_error(503), one_shot=True),
    Fault.BINANCE_KEY_RESTRICTIONS: _switch("binance_api_restrictions", _key_flags, one_shot=True),
    Fault.BINANCE_TRANSFER: _switch("binance_transfer", _binance_transfer, one_shot=True),
    Fault.WS_BAD_FRAME: _switch("ws_inject", _bad_frame, one_shot=True),
    Fault.ACCOUNT_DUPLICATE: _switch("account_fault", lambda p: AccountFault.DUPLICATE),
    Fault.ACCOUNT_REORDER: _switch("account_fault", lambda p: AccountFault.REORDER),
    Fault.ORDER_REJECT: _switch("reject_orders", _reject, one_shot=True),
    Fault.MARKET_CANCEL_ONLY: _market_status("CANCEL_ONLY"),
    Fault.MARKET_POST_ONLY: _market_status("POST_ONLY"),
    Fault.MARKET_FINAL_SETTLEMENT: _market_status("FINAL_SETTLEMENT"),
    Fault.MARKET_PAUSED: _market_status("PAUSED"),
    Fault.MARGIN_CHANGE: _switch("margin_fractions", _margin),
    Fault.FRONT_RUN: _switch("front_run", _front_run, one_shot=True),
}
assert set(SCENARIOS) == set(SIM_FAULTS)


def parse_spec(data: Any, where: str = "scenario") -> ScenarioSpec:
    """Validate one scenario entry; raise ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(where, "must be an object")
    name = parse_fault(data.get("name"), SIM_FAULTS)
    if name is None:
        hint = " (a backtest step kind)" if parse_fault(data.get("name"), BACKTEST_FAULTS) else ""
        raise ConfigError(f"{where}.name", f"unknown scenario {data.get('name')!r}{hint}; "
                          f"known: {sorted(str(f) for f in SCENARIOS)}")
    params = {k: v for k, v in data.items() if k not in ("name", "at_s", "duration_s")}
    try:
        at_s = float(data.get("at_s", 0))
        duration_s = float(data.get("duration_s", 60))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.duration_s", "at_s and duration_s must be numbers") from None
    if at_s < 0 or duration_s <= 0:
        raise ConfigError(f"{where}.duration_s", "at_s must be >= 0 and duration_s > 0")
    try:
        SCENARIOS[name].start(ScenarioState(), params)  # validate params on a scratch state
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.params", str(exc)) from None
    return ScenarioSpec(name, at_s, duration_s, params)


def load_scenario_file(path: Path) -> list[ScenarioSpec]:
    """Read a JSON or TOML scenario file."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError("scenario", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError("scenario", f"{path} does not parse: {exc}") from None
    entries = data.get("scenarios") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError("scenario.scenarios", "expected a list of scenarios")
    return [parse_spec(entry, f"scenarios[{i}]") for i, entry in enumerate(entries)]


@dataclass(slots=True)
class _Running:
    spec: ScenarioSpec
    end_ns: int


class ScenarioScheduler:
    """Start scheduled or triggered scenarios on time and end them after their duration."""

    def __init__(self, state: ScenarioState, start_ns: int) -> None:
        self.state = state
        self._start_ns = start_ns
        self._pending: list[ScenarioSpec] = []
        self._running: list[_Running] = []
        self.log: list[tuple[int, str, Fault]] = []  # (ns, "start"|"end", name)

    def schedule(self, specs: list[ScenarioSpec]) -> None:
        self._pending.extend(specs)
        self._pending.sort(key=lambda s: s.at_s)

    def trigger(self, spec: ScenarioSpec, now_ns: int) -> None:
        """Start a scenario now (the admin endpoint)."""
        self._start(spec, now_ns)

    def active(self) -> list[str]:
        return [str(r.spec.name) for r in self._running]

    def tick(self, now_ns: int) -> None:
        """Start due scenarios and end expired ones."""
        elapsed_ns = now_ns - self._start_ns
        while self._pending and self._pending[0].at_s * NS_PER_SEC <= elapsed_ns:
            self._start(self._pending.pop(0), now_ns)
        for running in [r for r in self._running if r.end_ns <= now_ns]:
            self._running.remove(running)
            end = SCENARIOS[running.spec.name].end
            if end is not None:
                end(self.state, running.spec.params)
            self.log.append((now_ns, "end", running.spec.name))

    def _start(self, spec: ScenarioSpec, now_ns: int) -> None:
        scenario = SCENARIOS[spec.name]
        scenario.start(self.state, spec.params)
        self.log.append((now_ns, "start", spec.name))
        if scenario.end is not None:
            self._running.append(_Running(spec, now_ns + int(spec.duration_s * NS_PER_SEC)))
