"""HTTP control API over the control core: loopback by default, bearer token on every route
except `/healthz` and, on a loopback bind only, `/metrics` (it shows positions, PnL and orders:
on any other address Prometheus scrapes it with the token, `authorization: {credentials: ...}`).

The dashboard (`/`, `/v1/dashboard`, `/static/*`) also accepts a session cookie, obtained by
presenting the token once (`/?token=...` redirects to `/`, as Jupyter does, or a bearer header on
`/`). A cookie session may read the dashboard routes and call `/v1/kill`, and only with the
session's CSRF token in the `X-CSRF-Token` header; every other route needs the bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.clock import Clock, SystemClock
from bot.config import LOOPBACK_HOSTS
from bot.control.commands import Controller
from bot.control.dashboard import (
    CSRF_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    Dashboard,
    Session,
    Sessions,
    StatusHistory,
)
from bot.state_dir import check_private_file
from bot.telemetry import Metrics

log = structlog.get_logger("control_api")
MAX_BODY_BYTES = 16 * 1024
PUBLIC_PATHS = ("/healthz", "/metrics")  # /metrics only on a loopback bind (positions, PnL, orders)
# Routes a dashboard session cookie may use; writes among them also need the CSRF header.
COOKIE_PATHS = ("/", "/v1/dashboard", "/v1/kill", "/static/dashboard.js", "/static/dashboard.css")


def ensure_token(env_token: str | None, token_path: Path) -> str:
    """Use the configured token, else the one stored for this state dir, else make one (0600)."""
    if env_token:
        return env_token
    try:
        stored = token_path.read_text().strip()
        if stored:
            check_private_file(token_path, "control_token")
            return stored
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    token_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class ControlServer:
    """Serves the control API until cancelled."""

    name = "control_api"

    def __init__(self, controller: Controller, metrics: Metrics, token: str, host: str,
                 port: int, endpoint_file: Path | None = None, history: StatusHistory | None = None,
                 clock: Clock | None = None) -> None:
        self._controller = controller
        self._dashboard = Dashboard(controller.status, clock or SystemClock(), history)
        self._history = history
        self._sessions = Sessions()
        self._metrics = metrics
        self._token = token.encode()
        self._host = host
        self._public = PUBLIC_PATHS if host in LOOPBACK_HOSTS else ("/healthz",)
        self._port = port
        self._endpoint_file = endpoint_file
        self.url: str | None = None
        self.ready = asyncio.Event()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=MAX_BODY_BYTES)
        app.add_routes([
            web.get("/", self._dashboard_page),
            web.get("/v1/dashboard", self._dashboard_data),
            web.get("/v1/history", self._history_data),
            web.get("/static/{name}", self._static),
            web.get("/healthz", self._healthz),
            web.get("/metrics", self._metrics_page),
            web.get("/v1/status", self._status),
            web.post("/v1/kill", self._kill),
            web.post("/v1/pause", self._pause),
            web.post("/v1/resume", self._resume),
            web.post("/v1/news", self._news_set),
            web.delete("/v1/news", self._news_clear),
            web.post("/v1/target", self._target),
            web.post("/v1/peak/reset", self._reset_peak),
        ])
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in self._public:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and self._is_token(given.strip()):
            return await handler(request)
        if request.path == "/" and "token" in request.query:
            return self._exchange_token(request)
        session = self._sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None and request.path in COOKIE_PATHS:
            if request.method not in ("GET", "HEAD") and not _csrf_ok(request, session):
                log.warning("control_csrf_refused", path=request.path, remote=request.remote)
                return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
            request["session"] = session
            return await handler(request)
        return _unauthorised(request)

    def _is_token(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self._token)

    def _exchange_token(self, request: web.Request) -> web.StreamResponse:
        """`/?token=...`: trade the token once for a session cookie, and drop it from the URL."""
        if not self._is_token(request.query.get("token", "")):
            return _unauthorised(request)
        response = web.HTTPSeeOther("/", headers=SECURITY_HEADERS)
        self._start_session(response)
        log.info("dashboard_session_started", remote=request.remote)
        return response

    def _start_session(self, response: web.StreamResponse) -> Session:
        session = self._sessions.create()
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="Strict", path="/",
                            max_age=int(self._sessions.ttl_secs))
        return session

    async def _dashboard_page(self, request: web.Request) -> web.Response:
        session: Session | None = request.get("session")
        response = web.Response(content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)
        if session is None:  # came with the bearer header: the page's polling needs a cookie
            session = self._start_session(response)
        response.text = self._dashboard.page(session.csrf)
        return response

    async def _dashboard_data(self, request: web.Request) -> web.Response:
        return web.json_response(self._dashboard.payload(request.query),
                                 headers={"Cache-Control": "no-store"})

    async def _history_data(self, request: web.Request) -> web.Response:
        if self._history is None:
            raise web.HTTPNotFound()
        return web.json_response(self._history.as_json())

    async def _static(self, request: web.Request) -> web.Response:
        asset = self._dashboard.asset(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        body, content_type = asset
        return web.Response(body=body, content_type=content_type, headers=SECURITY_HEADERS)

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self._controller.status()
        return web.json_response({"ok": True, "risk_mode": status["risk_mode"]})

    async def _metrics_page(self, request: web.Request) -> web.Response:
        self._controller.refresh_gauges(self._metrics)
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self._controller.status())

    async def _kill(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        reason = body.get("reason", "operator")
        flatten = body.get("flatten", False)
        all_orders = body.get("all", False)
        if not isinstance(reason, str) or not isinstance(flatten, bool) or not isinstance(all_orders, bool):
            raise _bad_request("reason must be a string, flatten and all booleans")
        log.warning("kill_requested", via="dashboard" if "session" in request else "api",
                    remote=request.remote)
        return web.json_response(await self._controller.kill(reason[:200], flatten, all_orders=all_orders))

    async def _pause(self, request: web.Request) -> web.Response:
        return web.json_response(self._controller.pause())

    async def _resume(self, request: web.Request) -> web.Response:
        return web.json_response(await self._controller.resume())

    async def _news_set(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        item, ttl = body.get("item"), body.get("ttl_secs")
        if not isinstance(item, str) or not item or not isinstance(ttl, int | float) or ttl <= 0:
            raise _bad_request("item must be a non-empty string and ttl_secs a positive number")
        try:
            return web.json_response(self._controller.news_set(item[:100], float(ttl)))
        except (ValueError, OverflowError) as exc:  # OverflowError: an int too large for a float
            raise _bad_request(str(exc)) from None

    async def _news_clear(self, request: web.Request) -> web.Response:
        item = request.query.get("item")
        return web.json_response(self._controller.news_clear(item))

    async def _target(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        market, size = body.get("market"), body.get("size")
        if not isinstance(market, str) or not isinstance(size, str):
            raise _bad_request("market and size must be strings")
        try:
            return web.json_response(self._controller.set_target(market, size))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None

    async def _reset_peak(self, request: web.Request) -> web.Response:
        if (await _json_body(request)).get("confirm") is not True:
            raise _bad_request("resetting the drawdown peak needs {\"confirm\": true}")
        try:
            return web.json_response(self._controller.reset_peak())
        except ValueError as exc:
            raise _bad_request(str(exc)) from None

    async def run(self) -> None:
        """Serve until cancelled; write the bound URL to the endpoint file for the CLI."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            sockets = site._server.sockets if site._server else []  # type: ignore[attr-defined]
            port = sockets[0].getsockname()[1] if sockets else self._port
            host = f"[{self._host}]" if ":" in self._host else self._host
            self.url = f"http://{host}:{port}"
            if self._endpoint_file is not None:
                # Write then rename, so the CLI never reads a half-written file.
                partial = self._endpoint_file.with_suffix(".tmp")
                partial.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
                partial.replace(self._endpoint_file)
            log.info("control_api_listening", url=self.url)
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise _bad_request("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object")
    return body


def _unauthorised(request: web.Request) -> web.Response:
    log.warning("control_unauthorised", path=request.path, remote=request.remote)
    if request.path == "/":  # a person with a browser: say how to get in
        return web.Response(status=401, content_type="text/plain", headers=SECURITY_HEADERS,
                            text="401 unauthorised: open /?token=<control token> once "
                                 "(PERPBOT_CONTROL_TOKEN, or <state_dir>/control.token)\n")
    return web.json_response({"error": "unauthorised"}, status=401)


def _csrf_ok(request: web.Request, session: Session) -> bool:
    """The page's header must carry the session's CSRF token; a foreign Origin is refused too."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return False
    given = request.headers.get(CSRF_HEADER, "")
    return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}), content_type="application/json")
