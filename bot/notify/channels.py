"""Notification channels: Telegram Bot API `sendMessage` and a Slack/Discord-style webhook.

Errors, by what the sender must do:

    DeliveryError(channel, detail)        -> drop the message, log it (4xx: bad chat id, bad URL)
    └── TransientDeliveryError            -> retry with bounded backoff (network, timeout, 5xx)
        └── DeliveryRateLimited(secs)     -> retry after what the endpoint asked (429)

The bot token sits in Telegram's URL path and a webhook URL is a secret as a whole, so nothing
here ever puts a URL, a request or an httpx exception text into an error: only the channel
name, the exception type and the status code.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import SecretStr

from bot.errors import BotError


class DeliveryError(BotError):
    """The endpoint refused the message; retrying the same message will not help."""

    def __init__(self, channel: str, detail: str) -> None:
        super().__init__(f"{channel}: {detail}")
        self.channel = channel
        self.detail = detail


class TransientDeliveryError(DeliveryError):
    """Network trouble, a timeout or a 5xx: retry with backoff."""


class DeliveryRateLimited(TransientDeliveryError):
    """The endpoint asked us to slow down (HTTP 429)."""

    def __init__(self, channel: str, retry_after_secs: float) -> None:
        super().__init__(channel, f"rate limited, retry after {retry_after_secs}s")
        self.retry_after_secs = retry_after_secs


class Channel(Protocol):
    name: str

    async def send(self, client: httpx.AsyncClient, text: str) -> None: ...


class TelegramChannel:
    """Telegram Bot API: POST {api_url}/bot<token>/sendMessage {chat_id, text}."""

    name = "telegram"

    def __init__(self, api_url: str, bot_token: SecretStr, chat_id: str) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = bot_token
        self._chat_id = chat_id

    async def send(self, client: httpx.AsyncClient, text: str) -> None:
        url = f"{self._api_url}/bot{self._token.get_secret_value()}/sendMessage"
        body = {"chat_id": self._chat_id, "text": text, "disable_web_page_preview": True}
        await _post(client, self.name, url, body)


class WebhookChannel:
    """An incoming webhook: Slack reads `text`, Discord reads `content`; both get the same text."""

    name = "webhook"

    def __init__(self, url: SecretStr) -> None:
        self._url = url

    async def send(self, client: httpx.AsyncClient, text: str) -> None:
        await _post(client, self.name, self._url.get_secret_value(), {"text": text, "content": text})


async def _post(client: httpx.AsyncClient, channel: str, url: str, body: dict[str, object]) -> None:
    try:
        response = await client.post(url, json=body)
    except httpx.TransportError as exc:
        # `from None`: the exception's request (and a traceback's locals) carry the secret URL.
        raise TransientDeliveryError(channel, type(exc).__name__) from None
    classify_response(channel, response.status_code, response.headers.get("Retry-After"),
                      _telegram_retry_after(response))


def classify_response(channel: str, status: int, retry_after: str | None = None,
                      body_retry_after: float | None = None) -> None:
    """Map an HTTP status to our errors; return quietly on 2xx.

    | status        | error                  | sender does            |
    |---------------|------------------------|------------------------|
    | 2xx           | -                      | done                   |
    | 429           | DeliveryRateLimited    | wait Retry-After, retry |
    | 408, 5xx      | TransientDeliveryError | backoff, retry         |
    | other 3xx/4xx | DeliveryError          | drop, log              |
    """
    if 200 <= status < 300:
        return
    if status == 429:
        secs = body_retry_after
        if secs is None:
            try:
                secs = float(retry_after) if retry_after is not None else 1.0
            except ValueError:
                secs = 1.0
        raise DeliveryRateLimited(channel, max(0.0, secs))
    if status == 408 or status >= 500:
        raise TransientDeliveryError(channel, f"HTTP {status}")
    raise DeliveryError(channel, f"HTTP {status}")


def _telegram_retry_after(response: httpx.Response) -> float | None:
    """Telegram puts retry_after in the JSON body's `parameters` on 429."""
    if response.status_code != 429:
        return None
    try:
        value = response.json().get("parameters", {}).get("retry_after")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
