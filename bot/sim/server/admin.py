"""The simulator's admin endpoint: list and trigger scenarios at run time (loopback HTTP)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.errors import ConfigError
from bot.sim.scenarios import SCENARIOS, ScenarioScheduler, parse_spec


class AdminServer:
    """`GET /scenarios`, `POST /scenario {"name", "duration_s", ...params}`, `GET /state`."""

    def __init__(self, scheduler: ScenarioScheduler, clock_ns: Callable[[], int],
                 state: Callable[[], dict[str, Any]], *, host: str = "127.0.0.1", port: int = 0):
        self._scheduler = scheduler
        self._clock_ns = clock_ns
        self._state = state
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024)
        app.add_routes([
            web.get("/scenarios", self._list),
            web.post("/scenario", self._trigger),
            web.get("/state", self._get_state),
        ])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({
            "scenarios": {name: s.description for name, s in sorted(SCENARIOS.items())},
            "active": self._scheduler.active(),
        })

    async def _trigger(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "body is not JSON"}, status=400)
        try:
            spec = parse_spec(body)
        except ConfigError as exc:
            return web.json_response({"error": f"{exc.key}: {exc.reason}"}, status=400)
        self._scheduler.trigger(spec, self._clock_ns())
        return web.json_response({"started": spec.name, "duration_s": spec.duration_s,
                                  "active": self._scheduler.active()})

    async def _get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())
