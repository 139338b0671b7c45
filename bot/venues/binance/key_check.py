"""Start-up check of a live Binance key: it must not be able to withdraw (unless allowed).

`GET /sapi/v1/account/apiRestrictions` says what the key may do. A key with withdrawals enabled
refuses the start (exit 2) unless `PERPBOT_ALLOW_WITHDRAW_KEY=yes`; a key without an IP
restriction starts with a warning. When the restrictions cannot be read (Binance's spot testnet
has no /sapi endpoints), mainnet refuses and other networks warn.
"""

from __future__ import annotations

from typing import Any

import structlog

from bot.errors import BotError, ConfigError
from bot.venues.binance.rest import BinanceRest

log = structlog.get_logger("binance_key")
_ALLOW = "set PERPBOT_ALLOW_WITHDRAW_KEY=yes to start anyway"


async def check_key(rest: BinanceRest, *, network: str, allow_withdraw: bool) -> dict[str, Any]:
    """Raise ConfigError for a key that can withdraw; returns what status shows about the key."""
    try:
        restrictions = await rest.api_restrictions()
    except BotError as exc:
        if network == "mainnet" and not allow_withdraw:
            reason = f"cannot read the key's restrictions ({exc}); {_ALLOW}"
            raise ConfigError("binance_api_key", reason) from None
        log.warning("binance_key_restrictions_unknown", error=str(exc))
        return {"withdrawals": None, "ip_restricted": None}
    if restrictions.enableWithdrawals:
        if not allow_withdraw:
            raise ConfigError("binance_api_key", "the API key can withdraw: create one with withdrawals "
                                                 f"disabled (and an IP whitelist), or {_ALLOW}")
        log.warning("binance_key_can_withdraw", allowed_by="PERPBOT_ALLOW_WITHDRAW_KEY")
    if not restrictions.ipRestrict:
        log.warning("binance_key_not_ip_restricted",
                    advice="restrict the key to this host's IP in the Binance API management page")
    return {"withdrawals": restrictions.enableWithdrawals, "ip_restricted": restrictions.ipRestrict}
