"""The daemon wired to notifications: a fake Telegram and a fake webhook on loopback get its events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from support.wait import eventually

BOT_TOKEN = "987654:daemon-telegram-secret-token"
HOOK_PATH = "/hook/daemon-webhook-secret-path"


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        channel = "telegram" if self.path == f"/bot{BOT_TOKEN}/sendMessage" else (
            "webhook" if self.path == HOOK_PATH else "unknown")
        self.received.append((channel, body))
        payload = b'{"ok": true}'
        self.send_response(200 if channel != "unknown" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoints() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_daemon_notifies_decisions_fills_and_kill(daemon_factory: Any, endpoints: Any) -> None:
    url, received = endpoints
    daemon = daemon_factory(
        PERPBOT_TELEGRAM_BOT_TOKEN=BOT_TOKEN, PERPBOT_NOTIFY__TELEGRAM_CHAT_ID="4242",
        PERPBOT_NOTIFY__TELEGRAM_API_URL=url, PERPBOT_NOTIFY_WEBHOOK_URL=url + HOOK_PATH,
        PERPBOT_NOTIFY__MIN_FILL_NOTIONAL_USD="100", PERPBOT_TELEMETRY__LOG_LEVEL="debug",
    ).start()

    def texts(channel: str) -> list[str]:
        return [body["text"] for ch, body in list(received) if ch == channel]

    # The start-up audit trades both markets: one decision message each, and fills above 100 USD.
    eventually(lambda: sum("traded" in t for t in texts("telegram")) >= 2, timeout_secs=15)
    eventually(lambda: any(" fill " in t for t in texts("webhook")), timeout_secs=15)
    assert daemon.cli("kill", "--reason", "notify test").returncode == 0
    eventually(lambda: all(any("KILL" in t for t in texts(ch)) for ch in ("telegram", "webhook")))
    eventually(lambda: any("-> HALTED" in t for t in texts("telegram")))
    status = daemon.cli("status", "--json")
    check = daemon.cli("config", "check")
    assert daemon.stop() == 0

    for channel in ("telegram", "webhook"):
        assert sum("KILL" in t and "notify test" in t for t in texts(channel)) == 1
        assert sum("-> HALTED" in t for t in texts(channel)) == 1
    assert all(body["chat_id"] == "4242" for ch, body in received if ch == "telegram")
    assert not [r for r in received if r[0] == "unknown"]
    for text in (daemon.log(), status.stdout, check.stdout, json.dumps(received)):
        assert BOT_TOKEN not in text and "daemon-webhook-secret-path" not in text
    sent = [e for e in daemon.log_events() if e.get("event") == "notify_sent"]
    assert {e["channel"] for e in sent} == {"telegram", "webhook"}
