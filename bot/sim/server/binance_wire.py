"""Binance spot wire: constants, request weights, JSON rendering of records, request parsing (pure)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.clock import NS_PER_MS, NS_PER_SEC
from bot.domain import BookLevel, Side
from bot.sim.spot.records import (
    ExecutionReport,
    SpotError,
    SpotFill,
    SpotOrder,
    WalletTransfer,
)

MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
LISTEN_KEY_TTL_NS = 3600 * NS_PER_SEC
API_KEY_HEADER = "X-MBX-APIKEY"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Request weights of the REST API (Binance spot, 2023-08 revision); depth scales with `limit`.
WEIGHTS: dict[tuple[str, str], int | Callable[[Mapping[str, str]], int]] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/depth"): lambda p: depth_weight(p.get("limit", "100")),
    ("GET", "/api/v3/ticker/bookTicker"): lambda p: 2 if "symbol" in p else 4,
    ("GET", "/api/v3/klines"): 2,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): lambda p: 6 if "symbol" in p else 80,
    ("GET", "/api/v3/myTrades"): lambda p: 5 if "orderId" in p else 20,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
    ("GET", "/sapi/v1/account/apiRestrictions"): 1,
    ("GET", "/sapi/v1/capital/deposit/hisrec"): 1,
    ("GET", "/sapi/v1/capital/withdraw/history"): 1,  # and 18000 of the UID's budget (not simulated)
    ("GET", "/sapi/v1/asset/transfer"): 1,
}
HISTORY_MAX_MS = 90 * 24 * 3600 * 1000  # the wallet histories' longest window (and their default)
TRANSFER_DEFAULT_MS = 7 * 24 * 3600 * 1000  # the universal transfer history without times
TRANSFER_KEPT_MS = 183 * 24 * 3600 * 1000  # it lists the last 6 months only
# The wallets of POST /sapi/v1/asset/transfer's types (FROM_TO); only those with MAIN (spot) move
# the simulated account, the others are valid types with nothing to list.
TRANSFER_TYPES = frozenset(
    f"{a}_{b}" for a, b in [
        ("MAIN", "UMFUTURE"), ("MAIN", "CMFUTURE"), ("MAIN", "MARGIN"), ("UMFUTURE", "MARGIN"),
        ("CMFUTURE", "MARGIN"), ("MARGIN", "UMFUTURE"), ("MARGIN", "CMFUTURE"), ("MAIN", "FUNDING"),
        ("FUNDING", "UMFUTURE"), ("FUNDING", "MARGIN"), ("FUNDING", "CMFUTURE"), ("MAIN", "OPTION"),
        ("UMFUTURE", "OPTION"), ("MARGIN", "OPTION"), ("FUNDING", "OPTION"), ("MAIN", "PORTFOLIO_MARGIN"),
        ("MAIN", "ISOLATED_MARGIN")]
    for a, b in [(a, b), (b, a)]) | {"ISOLATEDMARGIN_MARGIN", "MARGIN_ISOLATEDMARGIN",
                                     "ISOLATEDMARGIN_ISOLATEDMARGIN"}
DEFAULT_API_RESTRICTIONS = {"ipRestrict": False, "enableReading": True, "enableWithdrawals": False,
                            "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
                            "permitsUniversalTransfer": False, "enableVanillaOptions": False,
                            "enableSpotAndMarginTrading": True}
PUBLIC, API_KEY, SIGNED = "NONE", "USER_STREAM", "SIGNED"

DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
INT_RE = re.compile(r"^[0-9]{1,20}$")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
API_KEY_RE = re.compile(r"^[A-Za-z0-9]{64}$")
OTHER_ORDER_TYPES = {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
FAULT_BODIES = {
    429: (-1003, "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
                 "Please use WebSocket Streams for live updates to avoid polling the API."),
    418: (-1003, "Way too much request weight used; IP banned until {until}. "
                 "Please use WebSocket Streams for live updates to avoid bans."),
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
}


def depth_weight(limit: str) -> int:
    n = int(limit) if INT_RE.match(limit) else 100
    return 5 if n <= 100 else 25 if n <= 500 else 50 if n <= 1000 else 250


def fmt8(value: Decimal) -> str:
    """Binance renders amounts with 8 decimals."""
    return f"{value:.8f}"


def to_ms(ns: int) -> int:
    return ns // NS_PER_MS


def levels_json(levels: tuple[BookLevel, ...] | list[BookLevel]) -> list[list[str]]:
    return [[fmt8(lvl.price), fmt8(lvl.size)] for lvl in levels]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(slots=True)
class Req:
    params: dict[str, str]
    now_ns: int
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Conn:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    queue: asyncio.Queue[str | None]
    last_pong: float
    opened: float
    close_code: int = 1000
    close_reason: str = ""


# ---- wire rendering ---------------------------------------------------------------------------


def order_fields(o: SpotOrder) -> dict[str, Any]:
    return {"price": fmt8(o.price), "origQty": fmt8(o.orig_qty), "executedQty": fmt8(o.executed_qty),
            "cummulativeQuoteQty": fmt8(o.cumm_quote_qty), "status": str(o.status),
            "timeInForce": str(o.time_in_force), "type": str(o.type), "side": str(o.side)}


def fill_json(f: SpotFill) -> dict[str, Any]:
    return {"price": fmt8(f.price), "qty": fmt8(f.qty), "commission": fmt8(f.commission),
            "commissionAsset": f.commission_asset, "tradeId": f.trade_id}


def trade_json(f: SpotFill) -> dict[str, Any]:
    """One row of GET /api/v3/myTrades."""
    return {"symbol": f.symbol, "id": f.trade_id, "orderId": f.order_id, "orderListId": -1,
            "price": fmt8(f.price), "qty": fmt8(f.qty), "quoteQty": fmt8(f.quote_qty),
            "commission": fmt8(f.commission), "commissionAsset": f.commission_asset, "time": to_ms(f.ts_ns),
            "isBuyer": f.side is Side.BUY, "isMaker": f.is_maker, "isBestMatch": True}


def query_json(o: SpotOrder) -> dict[str, Any]:
    return {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": o.client_order_id} | order_fields(o) | {
        "stopPrice": fmt8(Decimal(0)), "icebergQty": fmt8(Decimal(0)), "time": to_ms(o.time_ns),
        "updateTime": to_ms(o.update_ns), "isWorking": o.is_working, "workingTime": to_ms(o.time_ns),
        "origQuoteOrderQty": fmt8(o.orig_quote_order_qty), "selfTradePreventionMode": "EXPIRE_MAKER"}


def cancel_json(o: SpotOrder, cancel_client_id: str, now_ns: int) -> dict[str, Any]:
    return {"symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id,
            "orderListId": -1, "clientOrderId": cancel_client_id, "transactTime": to_ms(now_ns)
            } | order_fields(o) | {"selfTradePreventionMode": "EXPIRE_MAKER"}


def execution_report(ev: ExecutionReport) -> dict[str, Any]:
    o, f = ev.order, ev.fill
    return {
        "e": "executionReport", "E": to_ms(ev.ts_ns), "s": o.symbol, "c": ev.client_order_id,
        "S": str(o.side), "o": str(o.type), "f": str(o.time_in_force), "q": fmt8(o.orig_qty),
        "p": fmt8(o.price), "P": fmt8(Decimal(0)), "F": fmt8(Decimal(0)), "g": -1,
        "C": ev.orig_client_order_id, "x": str(ev.execution_type), "X": str(o.status), "r": "NONE",
        "i": o.order_id, "l": fmt8(f.qty if f else Decimal(0)), "z": fmt8(o.executed_qty),
        "L": fmt8(f.price if f else Decimal(0)), "n": fmt8(f.commission) if f else "0",
        "N": f.commission_asset if f else None, "T": to_ms(ev.ts_ns), "t": f.trade_id if f else -1,
        "I": 0, "w": o.is_working, "m": bool(f and f.is_maker), "M": False, "O": to_ms(o.time_ns),
        "Z": fmt8(o.cumm_quote_qty), "Y": fmt8(f.quote_qty if f else Decimal(0)),
        "Q": fmt8(o.orig_quote_order_qty), "W": to_ms(o.time_ns), "V": "EXPIRE_MAKER",
    }


# ---- request parsing --------------------------------------------------------------------------


def parse_params(query: str, body: str) -> dict[str, str]:
    """Merge query string and form body; a parameter in both: the query string wins (Binance)."""
    merged: dict[str, str] = {}
    for part in (body, query):
        seen: set[str] = set()
        for name, value in parse_qsl(part, keep_blank_values=True):
            if name in seen:
                raise SpotError(-1101, "Duplicate values for a parameter detected.")
            seen.add(name)
            merged[name] = value
    return merged


def without_signature(part: str) -> str:
    return "&".join(p for p in part.split("&") if p and not p.startswith("signature="))


def param_str(params: Mapping[str, str], name: str, *, required: bool = False) -> str:
    value = params.get(name, "")
    if required and not value:
        raise SpotError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def param_int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    value = param_str(params, name, required=required)
    if not value:
        return None
    if not INT_RE.match(value):
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^[0-9]{1,20}$'.")
    return int(value)


def param_dec(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not DECIMAL_RE.match(value):
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise SpotError(-1100, f"Illegal characters found in parameter '{name}'.") from exc
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        raise SpotError(-1111, "Precision is over the maximum defined for this asset.")
    return amount


def utc_text(ns: int) -> str:
    """The withdrawal history's times: "YYYY-MM-DD HH:MM:SS" UTC."""
    return datetime.fromtimestamp(ns // NS_PER_SEC, UTC).strftime("%Y-%m-%d %H:%M:%S")


def deposit_json(t: WalletTransfer) -> dict[str, Any]:
    """A credited deposit as GET /sapi/v1/capital/deposit/hisrec lists it (status 1: success)."""
    ms = t.ts_ns // NS_PER_MS
    return {"id": t.transfer_id, "amount": fmt8(t.amount), "coin": t.asset, "network": t.asset,
            "status": 1, "address": "sim-deposit-address", "addressTag": "", "txId": t.tx_id,
            "insertTime": ms, "completeTime": ms, "transferType": 0, "confirmTimes": "1/1",
            "unlockConfirm": 0, "walletType": 0, "travelRuleStatus": 0}


def withdraw_json(t: WalletTransfer) -> dict[str, Any]:
    """A completed withdrawal as GET /sapi/v1/capital/withdraw/history lists it (status 6): the
    balance gave `amount` + `transactionFee`."""
    when = utc_text(t.ts_ns)
    return {"id": t.transfer_id, "amount": fmt8(t.amount), "transactionFee": fmt8(t.fee), "coin": t.asset,
            "status": 6, "address": "sim-withdrawal-address", "txId": t.tx_id, "applyTime": when,
            "network": t.asset, "transferType": 0, "info": "", "confirmNo": 1, "walletType": 0,
            "txKey": "", "completeTime": when}


def transfer_json(t: WalletTransfer) -> dict[str, Any]:
    """A confirmed universal transfer as GET /sapi/v1/asset/transfer lists it (tranId a number)."""
    return {"asset": t.asset, "amount": format(t.amount.normalize(), "f"), "type": t.kind,
            "status": "CONFIRMED", "tranId": int(t.transfer_id), "timestamp": t.ts_ns // NS_PER_MS}
