"""The Binance spot hedge leg from settings: on the embedded simulator's Binance server (with its
test keys), on the `[binance]` endpoints, or none (an external simulator without them)."""

from __future__ import annotations

import structlog
from pydantic import SecretStr

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.errors import ConfigError
from bot.telemetry import Metrics
from bot.venues.binance.account_state import BinanceAccount
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.key_check import check_key
from bot.venues.leg import Leg
from bot.venues.paper.factory import spot_paper
from bot.venues.start_retry import retry_start

log = structlog.get_logger("setup")
Keys = tuple[SecretStr, SecretStr]


async def open_binance(settings: Settings, perp: Leg, metrics: Metrics, clock: Clock) -> Leg | None:
    """The Binance adapter for the hedged spot markets; paper trading fills on its books."""
    spot_markets = settings.hedged_spot_markets()
    binance, keys = _endpoints(settings, perp)
    if binance is None:
        log.warning("hedge_venue_not_configured", reason="network sim with an external simulator: "
                    "set [binance] rest_url/ws_url to its binance_rest/binance_ws for a spot leg")
        return None
    unknown = [m for m in spot_markets if m not in binance.symbols]
    if unknown:
        raise ConfigError(f"binance.symbols.{unknown[0]}", "a hedged spot market has no Binance symbol")
    binance = binance.model_copy(update={"symbols": {m: binance.symbols[m] for m in spot_markets}})
    live = settings.trading == "live"
    if live and keys is None:
        raise ConfigError("binance_api_key", "live trading needs PERPBOT_BINANCE_API_KEY and _SECRET")
    venue = build_venue(binance, metrics, api_key=keys[0] if live and keys else None,
                        api_secret=keys[1] if live and keys else None, clock=clock)
    key_status = None
    try:
        if live:
            key_status = await retry_start("binance key", lambda: check_key(
                venue.rest, network=settings.network, allow_withdraw=settings.allow_withdraw_key == "yes"),
                settings.start_retry_secs)
        specs = await retry_start("binance markets", venue.load_markets, settings.start_retry_secs)
    except BaseException:
        await venue.close()
        raise
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    paper = None if live else spot_paper(settings, books, clock)
    status = {"venue": venue.name if live else "paper_spot", "market_data": "binance",
              "rest_url": binance.rest_url, **({"key": key_status} if key_status else {})}
    return Leg(venue, venue if live else paper, specs, books, paper,  # type: ignore[arg-type]
               status=status, closers=[venue.close], venue=venue)


def account_source(leg: Leg) -> BinanceAccount | None:
    """The spot account's balances and fees as Binance reports them (live trading only)."""
    venue = leg.execution
    return BinanceAccount(venue) if isinstance(venue, BinanceVenue) else None


def _endpoints(settings: Settings, perp: Leg) -> tuple[BinanceSettings | None, Keys | None]:
    """Binance settings with the endpoints to use, and the keys for live trading (None: none)."""
    binance = settings.binance
    keys = None
    if settings.binance_api_key is not None and settings.binance_api_secret is not None:
        keys = (settings.binance_api_key, settings.binance_api_secret)
    sim = perp.status.get("sim") or {}
    if sim.get("mode") == "embedded":
        binance = binance.model_copy(update={"rest_url": sim["binance_rest"], "ws_url": sim["binance_ws"],
                                             "min_session_secs": 0.5})
        test_keys = perp.sim_accounts.get("binance") or {}
        if keys is None and test_keys:
            keys = (SecretStr(test_keys["api_key"]), SecretStr(test_keys["api_secret"]))
        return binance, keys
    if settings.network == "sim" and binance.rest_url == BinanceSettings().rest_url:
        return None, keys  # an external simulator without its Binance endpoints: never the real venue
    return binance, keys

