"""Typed settings: defaults < TOML file < `.env` < `PERPBOT_*` environment variables.

Secrets (control token, dYdX mnemonic, Binance keys) are read from the environment (or `.env`)
only; a secret in the TOML file is a config error, so it can never end up in a repo.
Nested keys map to env vars with `__`: `[control] port` is `PERPBOT_CONTROL__PORT`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from bot.errors import ConfigError
from bot.events import KINDS as EVENT_KINDS
from bot.strategy.targets import TargetSpec, parse_target
from bot.venues.sections import BinanceSettings, DydxSettings

PosDecimal = Annotated[Decimal, Field(gt=0)]
NonNegDecimal = Annotated[Decimal, Field(ge=0)]
Fraction = Annotated[Decimal, Field(gt=0, le=1)]

SECRET_FIELDS = ("control_token", "dydx_mnemonic", "dydx_trading_mnemonic", "binance_api_key",
                 "binance_api_secret", "telegram_bot_token", "notify_webhook_url")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ControlSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    request_timeout_secs: PositiveFloat = 5.0


class TelemetrySettings(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    status_interval_secs: PositiveFloat = 5.0


class SimSettings(_Section):
    # in_process: the market model feeds the engine directly (fast; paper spot leg for carry).
    # protocol: the simulator's dYdX servers run embedded and the real dYdX adapter trades them
    # (or a running `perpbot sim`, when [dydx] endpoints are set).
    mode: Literal["in_process", "protocol"] = "in_process"
    seed: int = 42
    step_interval_secs: PositiveFloat = 0.1
    block_interval_secs: PositiveFloat = 0.65
    # dYdX settles funding hourly; tests shorten this to see accruals in seconds.
    funding_interval_secs: PositiveFloat = 3600.0
    # The simulator's dYdX test subaccount: its USDC deposit and its fee tier (embedded or `perpbot sim`).
    account_equity_usd: PosDecimal = Decimal(10_000)
    maker_fee_rate: Decimal = Decimal("0.0001")
    taker_fee_rate: Decimal = Decimal("0.0005")


class PaperSettings(_Section):
    initial_equity_usd: PosDecimal = Decimal(10_000)
    maker_fee_rate: Decimal = Decimal("0.0001")
    taker_fee_rate: Decimal = Decimal("0.0005")


class RuleSettings(_Section):
    min_flags: int = Field(default=2, ge=1, le=4)
    audit_interval_secs: PositiveFloat = 3600.0
    audit_on_start: bool = True
    debounce_secs: NonNegDecimal = Decimal(1)
    # The no-trade band (bot.strategy.band): an audit trades only when the gap to target beats
    # 2 x cost x equity / (band_risk_aversion x vol^2 over band_horizon_hours), capped at
    # drift_tolerance of the target; a flag decision (>= min_flags) trades whatever the band says.
    drift_tolerance: Fraction = Decimal("0.25")
    band_risk_aversion: NonNegDecimal = Decimal(4)
    band_horizon_hours: PositiveFloat = 24.0
    funding_harvest_rate_1h: PosDecimal = Decimal("0.0001")
    funding_budget_usd: PosDecimal = Decimal(50)
    funding_horizon_hours: PositiveInt = 8
    liquidity_depth_bps: PosDecimal = Decimal(25)
    liquidity_min_depth_multiple: PosDecimal = Decimal(3)
    liquidity_max_spread_bps: PosDecimal = Decimal(15)
    liquidity_depth_drop: Fraction = Decimal("0.5")
    # Depth near mid is sampled once a second; its rolling median over this window is the
    # baseline the depth-drop leg compares against (long enough to outlast a liquidity drought).
    liquidity_median_window_secs: PositiveInt = 1800
    vol_max_annual: PosDecimal = Decimal("1.2")
    vol_regime_ratio: PosDecimal = Decimal(2)
    news_ttl_default_secs: PositiveFloat = 7200.0
    # Evaluations per market are throttled to one per this interval (events in between only
    # update the estimators). Flags move on hourly funding, 1 s oracle samples and depth: once a
    # second is plenty.
    eval_interval_secs: PositiveFloat = 1.0


class CarrySettings(_Section):
    """Funding-capture sleeve: perp leg against a spot hedge when net carry pays."""

    enabled: bool = True
    # Perp ticker -> spot ticker on the hedge venue (in sim/paper: an in-process spot book).
    spot_markets: dict[str, str] = Field(
        default_factory=lambda: {"BTC-USD": "BTC-USDT", "ETH-USD": "ETH-USDT"}
    )
    # Expected holding period: how long a carry opened by this rule stays open on history
    # (tools/calibrate.py measures it, capped at six weeks: the cap on every venue but early dYdX);
    # both lines amortise the round trip over it. The defaults here are the calibrated values.
    horizon_hours: PositiveInt = 1008
    # The funding trends the sleeve reads: bias-corrected EWMAs of settled hourly rates; a closed
    # carry opens on the entry trend, an open one closes on the (slower) exit trend, and each
    # changes state only when the other agrees (bot.strategy.sleeves).
    signal_half_life_hours: PositiveFloat = 168.0
    entry_half_life_hours: PositiveFloat = 72.0
    # > 0 (the default): the entry trend is instead the median of the last this many settled
    # hourly rates, the funding level without its spikes (bot.strategy.carry.FundingMedian).
    entry_median_hours: int = Field(default=336, ge=0)
    entry_threshold_bps: NonNegDecimal = Decimal(0)  # net of round-trip costs, over horizon_hours
    # Exit when staying (the trend's carry over horizon_hours) is worth this much less than leaving
    # and coming back (a round trip on both legs): a margin, <= 0 (bot.strategy.sleeves).
    exit_threshold_bps: Decimal = Decimal(-40)
    exit_confirm_hours: PositiveInt = 48  # adverse settled hours in a row before the carry closes
    min_persistence_hours: int = Field(default=0, ge=0)
    expected_slippage_bps: NonNegDecimal = Decimal(3)  # per leg, per trade
    spot_maker_fee_rate: Decimal = Decimal("0.001")
    spot_taker_fee_rate: Decimal = Decimal("0.001")
    # A short spot hedge (for negative funding) needs a borrow; off by default.
    allow_spot_short: bool = False
    borrow_rate_annual: NonNegDecimal = Decimal("0.10")
    max_leverage: PosDecimal = Decimal(1)


class StrategySettings(_Section):
    # Directional targets per market: base units ("0.05"), leverage of equity ("0.5x", "-0.25x")
    # or USD notional ("$5000", "-$2000"). None by default: presets in examples/ set them.
    targets: dict[str, TargetSpec] = Field(default_factory=dict)
    target_vol_annual: PosDecimal = Decimal("0.3")
    # Sizing volatility: EWMA of hourly returns with this half-life, seeded from venue candles at
    # start; used once it has `vol_min_hours` returns (the short 1 s windows feed only the flag).
    vol_half_life_days: PositiveFloat = 7.0
    vol_min_hours: int = Field(default=24, ge=1)
    # The thesis is held at thesis_max_scale x min(1, baseline vol / sizing vol), never above
    # target_vol_annual / sizing vol (bot.strategy.volscale); the baseline is the sizing vol's
    # estimator with this longer half-life (0: no baseline, absolute targeting only).
    vol_baseline_half_life_days: float = Field(default=0.0, ge=0)
    thesis_max_scale: Fraction = Decimal(1)
    # The thesis is trimmed while price is stretched from its trend (an EWMA of hourly closes
    # with this half-life; 0: off) in its direction: kept whole up to stretch_start, linearly
    # down to stretch_floor of its scale at stretch_full (bot.strategy.volscale).
    stretch_half_life_days: float = Field(default=0.0, ge=0)
    stretch_start: NonNegDecimal = Decimal("0.1")
    stretch_full: PosDecimal = Decimal("0.2")
    stretch_floor: Fraction = Decimal("0.5")
    # The thesis's share (after every cut) may fall at once but rises only while price is at or
    # beyond that trend in its direction: no re-risking into a fall (bot.strategy.volscale).
    rerisk_on_trend: bool = False
    history_hours: int = Field(default=720, ge=0)  # venue history read at start to seed estimators
    # The directional thesis is cut by adverse_funding_cap_factor while the funding trend makes it
    # pay more than this (annualised), and by flag_risk_factor while >= min_flags flags agree.
    adverse_funding_rate_annual: NonNegDecimal = Decimal("0.3")
    flag_risk_factor: Fraction = Decimal(1)
    max_leverage: PosDecimal = Decimal(3)
    max_notional_usd: PosDecimal = Decimal(25_000)
    adverse_funding_cap_factor: Fraction = Decimal("0.5")
    drawdown_stop: Fraction = Decimal("0.2")
    # An adverse move of at least this fraction of price must not reach maintenance margin.
    min_liquidation_distance: Fraction = Decimal("0.2")
    # Risk budget per sleeve, as shares of equity per market (their sum is at most 1).
    directional_budget: Annotated[Decimal, Field(ge=0, le=1)] = Decimal(0)
    carry_budget: Annotated[Decimal, Field(ge=0, le=1)] = Decimal(1)
    vol_provision_budget: Annotated[Decimal, Field(ge=0, le=1)] = Decimal(0)
    carry: CarrySettings = CarrySettings()

    @field_validator("targets", mode="before")
    @classmethod
    def _parse_targets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        parsed = {}
        for market, text in value.items():
            try:
                parsed[market] = text if isinstance(text, TargetSpec) else parse_target(text)
            except (ValueError, TypeError) as exc:
                raise FieldValueError(str(market), str(exc)) from None
        return parsed

    @model_validator(mode="after")
    def _budgets_fit(self) -> StrategySettings:
        if self.directional_budget + self.carry_budget + self.vol_provision_budget > 1:
            raise ValueError("directional_budget + carry_budget + vol_provision_budget exceeds 1")
        if self.stretch_full <= self.stretch_start:
            raise ValueError("stretch_full must be above stretch_start")
        return self


class ExecutionSettings(_Section):
    twap_duration_secs: PositiveFloat = 60.0
    twap_slices: PositiveInt = 6
    max_depth_share: Fraction = Decimal("0.25")
    slippage_cap_bps: PosDecimal = Decimal(10)
    min_notional_usd: PosDecimal = Decimal(10)
    # Passive children: post-only at the touch when funding favours the parent's direction.
    passive_when_funding_favours: bool = True
    repeg_ticks: PositiveInt = 2  # re-peg (cancel + new) when the touch moved more than this
    max_chase_bps: PosDecimal = Decimal(20)  # never rest further than this from arrival price
    passive_timeout_secs: PositiveFloat = 5.0  # then wait (low urgency) or cross as IOC (high)
    urgency: Literal["low", "high"] = "high"
    max_orders_per_sec: PosDecimal = Decimal(10)  # per venue: places and cancels from tick()
    # Spot hedge of a hedged sleeve (carry), driven by the perp leg's fills (bot.execution.hedge).
    hedge_lag_secs: PositiveFloat = 10.0  # each perp fill is matched on spot within this
    # The perp leg sends no new child while the unhedged delta is above this (USD at mark).
    hedge_max_mismatch_usd: PosDecimal = Decimal(1000)
    # Unhedged notional x time (USD*s) before the leg is given up (one-leg unwind, see hedge.py).
    hedge_leg_risk_budget_usd_secs: PosDecimal = Decimal(20_000)
    hedge_max_rejects: PositiveInt = 3  # consecutive spot hedge rejects that give the leg up too
    hedge_cooldown_secs: PositiveFloat = 1800.0  # the carry sleeve stays closed after an unwind


class FeedSettings(_Section):
    """One RSS/Atom feed: a keyword in a new entry raises the news flag for `window_secs`."""

    url: str
    keywords: tuple[str, ...]
    window_secs: PositiveFloat = 3600.0
    markets: tuple[str, ...] = ()  # empty: every market


class NewsSettings(_Section):
    # ICS (.ics) or TOML ([[events]] name, start, optional end) calendar of scheduled events.
    calendar_path: Path | None = None
    calendar_before_secs: NonNegDecimal = Decimal(1800)
    calendar_after_secs: NonNegDecimal = Decimal(3600)
    feeds: tuple[FeedSettings, ...] = ()
    poll_interval_secs: PositiveFloat = 300.0
    request_timeout_secs: PositiveFloat = 10.0
    max_attempts: PositiveInt = 3


class NotifySettings(_Section):
    """Operator notifications (Telegram, Slack/Discord-style webhook); the secrets come from env."""

    telegram_chat_id: str | None = None
    # Tests point this at a local fake; the bot token goes into the path, never into logs.
    telegram_api_url: str = "https://api.telegram.org"
    kinds: tuple[str, ...] = EVENT_KINDS
    # Fills below this notional are not worth a message (TWAP children are small).
    min_fill_notional_usd: NonNegDecimal = Decimal(1000)
    # The same kind+key within this window is sent once.
    dedupe_window_secs: NonNegDecimal = Decimal(300)
    # Token bucket per channel: sustained rate and burst; beyond the queue, new messages drop.
    max_messages_per_min: PositiveInt = 20
    burst: PositiveInt = 5
    queue_size: PositiveInt = 200
    request_timeout_secs: PositiveFloat = 5.0
    max_attempts: PositiveInt = 4
    max_retry_secs: PositiveFloat = 60.0
    retry_initial_secs: PositiveFloat = 1.0
    # "HH:MM" in UTC for the daily PnL summary; "off" (or "") disables it.
    daily_summary_utc: str | None = "00:00"

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(f"unknown event kind {unknown[0]!r}; known: {', '.join(EVENT_KINDS)}")
        return value

    @field_validator("daily_summary_utc")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "off", "none"):
            return None
        hours, sep, minutes = value.partition(":")
        if not (sep and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("expected HH:MM (UTC)")
        return f"{int(hours):02d}:{int(minutes):02d}"


class WatchdogSettings(_Section):
    """Chain, indexer, feed and bridge health -> risk mode (DESIGN.md §3 "Watchdog and risk modes").

    Each input is OK, DEGRADED (-> REDUCE_ONLY) or CRITICAL (-> HALTED); the worst input wins.
    Degradation is immediate; recovery needs the condition clear for `hold_off_secs`.
    """

    enabled: bool = True
    sample_interval_secs: PositiveFloat = 1.0
    # Withdrawal gating and capacity change slowly; polled every this many seconds.
    bridge_poll_secs: PositiveFloat = 2.0
    probe_timeout_secs: PositiveFloat = 2.0
    hold_off_secs: Annotated[float, Field(ge=0)] = 60.0
    # Read-only node queries (head height, gating, capacity) also in paper trading.
    node_queries: bool = True
    # Chain head: seconds without a new block (DYDX_V4.md §5.5: alert at 10 s).
    head_stall_degraded_secs: PositiveFloat = 5.0
    head_stall_critical_secs: PositiveFloat = 15.0
    # Mean block interval over the window (blocks are ~0.65 s; alert near 3x).
    block_interval_degraded_secs: PositiveFloat = 2.0
    block_interval_window_secs: PositiveFloat = 10.0
    # Node head minus indexer /v4/height, in blocks (normally 0-2).
    indexer_lag_degraded_blocks: PositiveInt = 10
    indexer_lag_critical_blocks: PositiveInt = 300
    # Market-data silence per subscription of these channels.
    feed_channels: tuple[str, ...] = ("v4_orderbook", "v4_block_height")
    feed_stale_degraded_secs: PositiveFloat = 15.0
    feed_stale_critical_secs: PositiveFloat = 60.0
    # Failed share of the watchdog's own REST/gRPC probes over the window.
    error_window_secs: PositiveFloat = 30.0
    error_min_samples: PositiveInt = 5
    error_rate_degraded: Annotated[float, Field(gt=0, le=1)] = 0.25
    error_rate_critical: Annotated[float, Field(gt=0, le=1)] = 0.9
    # Exits frozen on chain (x/subaccounts gating): what the bot does about it.
    withdrawal_gating_action: Literal["ignore", "reduce_only", "halt"] = "reduce_only"
    # USDC withdrawal capacity (x/ratelimit, smallest limiter) below this -> DEGRADED; 0: off.
    min_withdrawal_capacity_usd: NonNegDecimal = Decimal(0)
    # Live: the venues' accounts (equity, margin, fees) are re-read every this many seconds and
    # soon after each fill; an account not read for the stale thresholds degrades / halts.
    account_poll_secs: PositiveFloat = 10.0
    account_stale_degraded_secs: PositiveFloat = 60.0
    account_stale_critical_secs: PositiveFloat = 300.0
    # HALTED: cancel every open order (retried while any is left); flatten only when set.
    halt_flatten: bool = False
    halt_cancel_retry_secs: PositiveFloat = 5.0

    @model_validator(mode="after")
    def _degraded_below_critical(self) -> WatchdogSettings:
        pairs = (("head_stall", self.head_stall_degraded_secs, self.head_stall_critical_secs),
                 ("indexer_lag", self.indexer_lag_degraded_blocks, self.indexer_lag_critical_blocks),
                 ("feed_stale", self.feed_stale_degraded_secs, self.feed_stale_critical_secs),
                 ("error_rate", self.error_rate_degraded, self.error_rate_critical),
                 ("account_stale", self.account_stale_degraded_secs, self.account_stale_critical_secs))
        for name, degraded, critical in pairs:
            if degraded > critical:
                raise FieldValueError(f"{name}_degraded",
                                      f"{name}: the degraded threshold is above the critical one")
        return self


class StoreSettings(_Section):
    path: Path | None = None  # default: <state_dir>/perpbot.sqlite


class Settings(BaseSettings):
    """Everything the daemon and the CLI need, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="PERPBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `KEY=` (as in .env.example) means unset, never an empty value
        extra="forbid",
        frozen=True,
    )

    network: Literal["sim", "testnet", "mainnet"] = "sim"
    trading: Literal["paper", "live"] = "paper"
    markets: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    state_dir: Path = Path("state")
    shutdown_budget_secs: PositiveFloat = 10.0
    start_retry_secs: PositiveFloat = 60.0  # transient venue errors at start are retried this long
    live_confirm: str = ""
    # A trade-only dYdX key (`perpbot keys grant`): the account it trades for and its authenticator.
    dydx_address: str | None = None
    dydx_authenticator_id: int | None = Field(default=None, ge=0)
    allow_owner_key: str = ""  # "yes": live on mainnet with the owner mnemonic
    allow_withdraw_key: str = ""  # "yes": live with a Binance key that can withdraw

    control: ControlSettings = ControlSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    sim: SimSettings = SimSettings()
    paper: PaperSettings = PaperSettings()
    rules: RuleSettings = RuleSettings()
    strategy: StrategySettings = StrategySettings()
    execution: ExecutionSettings = ExecutionSettings()
    news: NewsSettings = NewsSettings()
    store: StoreSettings = StoreSettings()
    dydx: DydxSettings = DydxSettings()
    binance: BinanceSettings = BinanceSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    notify: NotifySettings = NotifySettings()

    control_token: SecretStr | None = None
    dydx_mnemonic: SecretStr | None = None
    dydx_trading_mnemonic: SecretStr | None = None
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    notify_webhook_url: SecretStr | None = None

    @field_validator("markets")
    @classmethod
    def _markets_look_like_tickers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one market is required")
        for ticker in value:
            if "-" not in ticker or ticker != ticker.upper():
                raise ValueError(f"{ticker!r} is not a ticker like 'BTC-USD'")
        if len(set(value)) != len(value):
            raise ValueError("markets are listed twice")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; put it below the environment.
        return (env_settings, dotenv_settings, init_settings)

    @property
    def db_path(self) -> Path:
        return self.store.path or self.state_dir / "perpbot.sqlite"

    def hedged_spot_markets(self) -> list[str]:
        """The spot markets the carry sleeve hedges on, for the configured perp markets."""
        carry = self.strategy.carry
        if not carry.enabled:
            return []
        return [carry.spot_markets[t] for t in self.markets if t in carry.spot_markets]

    @property
    def token_path(self) -> Path:
        return self.state_dir / "control.token"

    @property
    def news_state_path(self) -> Path:
        return self.state_dir / "news.json"

    def secret_values(self) -> list[str]:
        """Return every configured secret in clear, for the log redactor."""
        values = []
        for name in SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values

    def redacted(self) -> dict[str, Any]:
        """Return the effective config as JSON-ready data with secrets masked."""
        data = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            data[name] = "**********" if getattr(self, name) is not None else None
        return data


def load(
    path: Path | None = None, env_file: Path | None = Path(".env"), **overrides: Any
) -> Settings:
    """Build Settings from a TOML file, `.env` and the environment, or raise ConfigError(key)."""
    file_data = _read_toml(path) if path is not None else {}
    file_data.pop("optimize", None)  # `perpbot optimize`'s search space (bot/research/space.py)
    for name in SECRET_FIELDS:
        if name in file_data:
            raise ConfigError(name, f"secrets come from the environment only (PERPBOT_{name.upper()})")
    file_data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings(_env_file=env_file, **file_data)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _first_error(exc) from None
    except SettingsError as exc:  # a list/dict setting whose environment value is not JSON
        raise ConfigError(_non_json_env_key(str(exc)), "not valid JSON in the environment "
                          "(list and table settings are JSON)") from None
    _check_combinations(settings)
    return settings


def _non_json_env_key(message: str) -> str:
    """The dotted key of the PERPBOT_* variable that pydantic-settings could not parse as JSON."""
    match = re.search(r'field "([^"]+)"', message)
    field = match.group(1) if match else ""
    prefix = f"PERPBOT_{field}".upper()
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if field and (upper == prefix or upper.startswith(prefix + "__")):
            try:
                json.loads(value)
            except ValueError:
                return upper.removeprefix("PERPBOT_").lower().replace("__", ".")
    return field or "config"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"invalid TOML in {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None


class FieldValueError(ValueError):
    """A model validator's error about one field of the model: the key names that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _first_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "config"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldValueError):
        key = f"{key}.{cause.field}" if key != "config" else cause.field
    reason = error["msg"]
    if error["type"] == "extra_forbidden":
        reason = "unknown key"
    elif "input" in error and key.split(".")[0] not in SECRET_FIELDS:
        reason = f"{reason} (got {error['input']!r})"
    return ConfigError(key, reason)


def _check_combinations(settings: Settings) -> None:
    if settings.trading == "live" and settings.network == "mainnet" and settings.live_confirm != "yes":
        raise ConfigError("trading", "live trading on mainnet needs PERPBOT_LIVE_CONFIRM=yes")
    no_key = settings.dydx_mnemonic is None and settings.dydx_trading_mnemonic is None
    if settings.trading == "live" and no_key and settings.network != "sim":
        # On the simulator the embedded test account signs unless a mnemonic is given.
        raise ConfigError("dydx_trading_mnemonic",
                          "live trading needs PERPBOT_DYDX_TRADING_MNEMONIC (or PERPBOT_DYDX_MNEMONIC)")
    if settings.trading == "live" and settings.network == "sim" and settings.sim.mode != "protocol":
        raise ConfigError("sim.mode", "live trading on the simulator needs sim.mode = 'protocol'")
    if settings.control.host not in LOOPBACK_HOSTS and settings.control_token is None:
        raise ConfigError(
            "control.host", "a non-loopback control address needs PERPBOT_CONTROL_TOKEN"
        )
    unknown = set(settings.strategy.targets) - set(settings.markets)
    if unknown:
        key = f"strategy.targets.{sorted(unknown)[0]}"
        raise ConfigError(key, "target for a market that is not in `markets`")
