"""Operator notifications: Telegram and Slack/Discord-style webhooks fed by the EventBus."""

from bot.notify.service import Notifier, build_notifier

__all__ = ["Notifier", "build_notifier"]
