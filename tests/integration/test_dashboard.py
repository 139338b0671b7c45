"""The dashboard on the control API: auth and CSRF over HTTP, and the page in real headless Chromium.

The browser test drives `perpbot run` (default simulator) through the page: token exchange,
both markets with four flags each, charts with data points (overview, per market, risk mode),
the range selector, no table wider than its section at 1400x1000 and at a phone's 390x844, a
news flag showing up within seconds of `perpbot news set`, and the kill button (behind its
confirmation) halting the bot with no open orders left. Screenshots go to tests/artifacts/
(ignored by git; PERPBOT_ARTIFACTS overrides) and their paths are printed.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.clock import ManualClock
from support.daemon import Daemon
from support.wait import eventually

from bot.config import Settings
from bot.control.dashboard import (
    SECURITY_HEADERS,
    Dashboard,
    Sessions,
    StatusHistory,
    render_chart_sections,
    sample_from_status,
)
from bot.domain import FundingPayment
from bot.store.repo import Store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1400,1000")
ARTIFACTS = Path(os.environ.get("PERPBOT_ARTIFACTS") or Path(__file__).parents[1] / "artifacts" / "dashboard")
DESKTOP, PHONE = (1400, 1000), (390, 844)


def _endpoint(daemon: Daemon) -> tuple[str, str]:
    url = json.loads((daemon.state_dir / "daemon.json").read_text())["url"]
    return url, (daemon.state_dir / "control.token").read_text().strip()


def _csrf(page_html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page_html)
    assert match, "the page carries its CSRF token in a meta tag"
    return match.group(1)


def test_dashboard_auth_cookie_and_csrf(daemon_factory: Any) -> None:
    daemon = daemon_factory().start()
    url, token = _endpoint(daemon)
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=10) as anon:
        assert anon.get("/").status_code == 401
        assert anon.get("/v1/dashboard").status_code == 401
        assert anon.get("/static/dashboard.js").status_code == 401
        wrong = anon.get("/", params={"token": "not-the-token"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert anon.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
        anon.cookies.set("perpbot_session", token)
        assert anon.get("/v1/dashboard").status_code == 401, "the token is not a session id"
        anon.cookies.clear()

        history = anon.get("/v1/history", headers=bearer).json()
        assert history["columns"][:2] == ["ts_ns", "equity_usd"] and history["rows"]

        page = anon.get("/", headers=bearer)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "perpbot_session=" in page.headers["set-cookie"]

    with httpx.Client(base_url=url, timeout=10) as browser:
        exchange = browser.get("/", params={"token": token}, follow_redirects=False)
        assert exchange.status_code == 303 and exchange.headers["location"] == "/"
        cookie = exchange.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        session_id = browser.cookies["perpbot_session"]
        assert len(session_id) >= 32 and token not in cookie

        page = browser.get("/")
        assert page.status_code == 200 and 'data-market="BTC-USD"' in page.text
        csrf = _csrf(page.text)
        data = browser.get("/v1/dashboard").json()
        assert set(data["html"]) >= {"banner", "markets", "pnl", "funding", "hedge", "orders",
                                     "watchdog", "charts", "market_charts"}
        assert data["range"] == "24h"
        week = browser.get("/v1/dashboard", params={"range": "7d", "w": "320", "fw": "99999"}).json()
        assert week["range"] == "7d" and 'id="chart-equity"' in week["html"]["charts"]
        assert 'width="320"' in week["html"]["charts"], "charts are drawn at the width the page measured"
        assert 'width="2000"' in week["html"]["charts"], "widths are clamped"
        odd = browser.get("/v1/dashboard", params={"range": "1y", "w": "abc"}).json()
        assert odd["range"] == "24h" and 'width="560"' in odd["html"]["charts"]
        assert data["status"]["risk_mode"] == "NORMAL"
        assert browser.get("/static/dashboard.js").status_code == 200
        assert browser.get("/static/../api.py").status_code in (401, 404)

        # A session cookie is for the dashboard only: the rest of the API wants the bearer token.
        assert browser.get("/v1/status").status_code == 401
        assert browser.post("/v1/pause", headers={"X-CSRF-Token": csrf}).status_code == 401
        # Kill through the cookie needs the page's CSRF header, and a same-origin request.
        assert browser.post("/v1/kill", json={"reason": "csrf"}).status_code == 403
        assert browser.post("/v1/kill", json={"reason": "csrf"},
                            headers={"X-CSRF-Token": "guess"}).status_code == 403
        foreign = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        assert browser.post("/v1/kill", json={"reason": "csrf"}, headers=foreign).status_code == 403
        assert daemon.status()["risk_mode"] == "NORMAL"

        killed = browser.post("/v1/kill", json={"reason": "dashboard test"},
                              headers={"X-CSRF-Token": csrf, "Origin": url})
        assert killed.status_code == 200, killed.text
        assert killed.json()["kill_latched"] is True
    status = daemon.status()
    assert status["risk_mode"] == "HALTED" and status["kill_reason"] == "dashboard test"
    kill_requests = [e for e in daemon.log_events() if e.get("event") == "kill_requested"]
    assert kill_requests and kill_requests[-1]["via"] == "dashboard"
    assert token not in daemon.log()
    assert daemon.stop() == 0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*CHROME_ARGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _viewport(driver: Any, size: tuple[int, int]) -> None:
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def _screenshot(driver: Any, name: str, full_page: bool = False) -> Path:
    """The viewport (or the whole page) as a PNG in the artifacts directory (the system's temporary
    directory when the checkout is read-only); prints its path."""
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        path.touch()
    except OSError:
        path = Path(tempfile.gettempdir()) / "perpbot-artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        width, height = driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollHeight];")
        params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height,
                                                         "scale": 1})
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    return path


LAYOUT_PROBLEMS = """
const problems = [];
const page = document.documentElement;
if (page.scrollWidth > page.clientWidth + 1)
  problems.push(`page scrolls sideways: ${page.scrollWidth} > ${page.clientWidth}`);
for (const table of document.querySelectorAll('table')) {
  const section = table.closest('section');
  const box = section.getBoundingClientRect(), rect = table.getBoundingClientRect();
  const name = section.querySelector('h2') ? section.querySelector('h2').textContent : section.id;
  if (rect.right > box.right + 1 || rect.left < box.left - 1 || table.scrollWidth > section.clientWidth + 1)
    problems.push(`table in ${name} overflows: ${Math.round(rect.width)} px in ${Math.round(box.width)} px`);
  for (const cell of table.querySelectorAll('td, th'))
    if (cell.scrollWidth > cell.clientWidth + 1)
      problems.push(`cell '${cell.textContent.slice(0, 30)}' in ${name} is clipped`);
}
for (const svg of document.querySelectorAll('svg.chart')) {
  const box = svg.closest('section').getBoundingClientRect(), rect = svg.getBoundingClientRect();
  if (rect.right > box.right + 1) problems.push(`chart ${svg.id} overflows its section`);
}
return problems;
"""

CHART_POINTS = """
const out = {};
for (const svg of document.querySelectorAll('svg.chart'))
  out[svg.id] = {points: Number(svg.dataset.points),
                 paths: svg.querySelectorAll('path.line, circle.point').length,
                 width: Math.round(svg.getBoundingClientRect().width),
                 slot: svg.closest('.chart-slot').clientWidth};
return out;
"""


def _script_errors(driver: Any) -> list[str]:
    """Console errors other than the deliberate 401 (CSP violations and script errors land here)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "401" not in e["message"]]


def _check_layout(driver: Any, size: tuple[int, int]) -> dict[str, Any]:
    """At `size`: every chart drawn with data points, no table or chart wider than its section."""
    _viewport(driver, size)
    updates = int(driver.execute_script("return document.body.dataset.updates"))
    eventually(lambda: int(driver.execute_script("return document.body.dataset.updates")) > updates + 1,
               timeout_secs=10)  # re-rendered at the new widths
    charts = driver.execute_script(CHART_POINTS)
    per_market = (f"chart-{kind}-{m}" for kind in ("funding", "position") for m in ("BTC-USD", "ETH-USD"))
    expected = {"chart-equity", "chart-drawdown", "chart-pnl", "chart-exposure", "chart-risk", *per_market}
    assert expected <= set(charts), charts
    for chart_id in expected:
        assert charts[chart_id]["points"] >= 2, (chart_id, charts[chart_id])
        assert charts[chart_id]["width"] <= size[0]
        assert abs(charts[chart_id]["width"] - charts[chart_id]["slot"]) <= 2, f"{chart_id} fills its slot"
    for chart_id in expected - {"chart-risk"}:
        assert charts[chart_id]["paths"] >= 1, f"{chart_id} draws no line"
    assert driver.execute_script(LAYOUT_PROBLEMS) == []
    return charts


def test_dashboard_in_headless_chromium(daemon_factory: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    daemon = daemon_factory().start()
    url, token = _endpoint(daemon)
    by_css = By.CSS_SELECTOR

    def flags(market: str) -> dict[str, str]:
        # Read in one script: polling swaps the table, so element handles go stale quickly.
        return browser.execute_script(
            "const out = {};"
            "for (const td of document.querySelectorAll(`tr[data-market='${arguments[0]}'] td.flag`))"
            "  out[td.dataset.flag] = td.dataset.tripped;"
            "return out;", market)

    def attribute(selector: str, name: str) -> str | None:
        return browser.execute_script(
            "const el = document.querySelector(arguments[0]);"
            "return el ? el.getAttribute(arguments[1]) : null;", selector, name)

    # Without the token the page is refused and nothing of the bot is shown.
    browser.get(url + "/")
    assert "401 unauthorised" in browser.page_source
    assert not browser.find_elements(by_css, "tr[data-market]")

    browser.get(f"{url}/?token={token}")
    assert browser.current_url == url + "/", "the token is dropped from the address bar"
    cookie = browser.get_cookie("perpbot_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != token
    assert browser.execute_script("return document.cookie") == "", "HttpOnly: not readable by JS"

    markets = browser.execute_script(
        "return [...document.querySelectorAll('tr[data-market]')].map(tr => tr.dataset.market);")
    assert markets == ["BTC-USD", "ETH-USD"]
    for market in ("BTC-USD", "ETH-USD"):
        assert set(flags(market)) == {"funding", "liquidity", "volatility", "news"}
        assert flags(market)["news"] == "false"
    assert browser.find_elements(by_css, "#charts svg.chart")
    eventually(lambda: int(attribute("body", "data-updates") or 0) >= 2, timeout_secs=10)
    assert "live" in browser.find_element(by_css, "#conn").text

    # Charts with data at a desktop width and at a phone width; nothing wider than its section.
    desktop = _check_layout(browser, DESKTOP)
    assert desktop["chart-equity"]["width"] >= 500, "two charts a row at 1400 px"
    _screenshot(browser, "dashboard-1400x1000.png")
    _screenshot(browser, "dashboard-1400-full.png", full_page=True)
    # Decision markers: hover text carries the decision's reason and its tripped flags.
    eventually(lambda: browser.execute_script(
        "return document.querySelectorAll('#market_charts circle.decision').length") > 0, timeout_secs=10)
    hover = browser.execute_script(
        "return document.querySelector('#market_charts circle.decision title').textContent")
    assert re.search(r"\d\d:\d\d:\d\dZ · [^(]+ \((no flags tripped|[a-z, ]+)\)", hover), hover
    # The watchdog board: one chip per input, value in human units; a reason only when not OK.
    chips = browser.execute_script(
        "return [...document.querySelectorAll('#watchdog .chip')].map(c => [c.dataset.input, c.dataset.state,"
        " c.querySelector('.chip-value').textContent, !!c.querySelector('.chip-reason')]);")
    assert {c[0] for c in chips} >= {"block_height", "chain_head_age", "indexer_lag"}, chips
    assert all(not has_reason for _, state, _, has_reason in chips if state == "OK")
    head_age = next(c for c in chips if c[0] == "chain_head_age")
    assert head_age[2].endswith(" s") or head_age[2] == "no data", head_age
    # The range selector redraws the charts over the chosen span and is kept across reloads.
    for chosen in ("1h", "7d", "all", "24h"):
        browser.find_element(by_css, f"button.range[data-range='{chosen}']").click()
        eventually(lambda chosen=chosen: attribute("body", "data-range") == chosen, timeout_secs=2)
        assert attribute("button.range.active", "data-range") == chosen
    browser.find_element(by_css, "button.range[data-range='1h']").click()
    browser.refresh()
    eventually(lambda: attribute("body", "data-range") == "1h", timeout_secs=5)

    _check_layout(browser, PHONE)
    _screenshot(browser, "dashboard-390x844.png")
    _screenshot(browser, "dashboard-390-full.png", full_page=True)
    _viewport(browser, DESKTOP)

    # The news flag trips on the page within a few seconds of the CLI raising it.
    started = time.monotonic()
    result = daemon.cli("news", "set", "FOMC", "--ttl", "1h")
    assert result.returncode == 0, result.stderr
    eventually(lambda: all(flags(m)["news"] == "true" for m in ("BTC-USD", "ETH-USD")), timeout_secs=6)
    news_latency = time.monotonic() - started
    assert news_latency < 6
    eventually(lambda: "FOMC" in browser.execute_script("return document.getElementById('news').textContent"),
               timeout_secs=4)
    _screenshot(browser, "dashboard-news.png")

    # Opening the dialog and cancelling does nothing.
    dialog = browser.find_element(by_css, "#kill-dialog")
    assert not dialog.is_displayed()
    browser.find_element(by_css, "#kill-open").click()
    assert dialog.is_displayed()
    browser.find_element(by_css, "#kill-cancel").click()
    assert not dialog.is_displayed()
    assert daemon.status()["risk_mode"] == "NORMAL"

    # Kill, confirmed.
    browser.find_element(by_css, "#kill-open").click()
    reason = browser.find_element(by_css, "#kill-reason")
    reason.clear()
    reason.send_keys("browser test kill")
    browser.find_element(by_css, "#kill-confirm").click()
    result_box = browser.find_element(by_css, "#kill-result")
    eventually(result_box.is_displayed, timeout_secs=10)
    assert result_box.get_attribute("data-ok") == "true", result_box.text
    eventually(lambda: attribute("#banner .mode", "data-risk-mode") == "HALTED", timeout_secs=6)
    status = daemon.status()
    assert status["risk_mode"] == "HALTED" and status["kill_latched"] is True
    assert status["kill_reason"] == "browser test kill"
    assert sum(status["open_orders"].values()) == 0
    eventually(lambda: attribute("#orders table", "data-open-orders") == "0", timeout_secs=6)
    shot = _screenshot(browser, "dashboard-halted.png")
    assert _script_errors(browser) == []
    assert shot.stat().st_size > 10_000
    assert token not in daemon.log()
    assert daemon.stop() == 0


# ---- a week of history, drawn in Chromium (no daemon) ------------------------------------------

HOUR = 3600 * 1_000_000_000
NOW_NS = 1_780_000_000 * 1_000_000_000


def _week_status(t_ns: int) -> dict[str, Any]:
    """A plausible bot state at `t_ns`: carry opening and closing on BTC, a REDUCE_ONLY spell, a halt."""
    h = (t_ns - (NOW_NS - 10 * 24 * HOUR)) / HOUR
    block = int(h // 6)
    btc_rate = 0.00006 + 0.00005 * math.sin(h / 9)
    btc_target = 0.05 - (0.1 if block % 3 == 1 else 0.0)
    eth_rate = -0.00002 + 0.00003 * math.sin(h / 13 + 1)
    eth_target = -0.5 if block % 4 else -0.25
    lag = min(1.0, (h % 6) * 6)  # positions reach their target within ten minutes of a decision
    funding, fees, slippage = 0.05 * h, -0.02 * h, -0.004 * h
    equity = 10_000 + 120 * math.sin(h / 20) + 0.8 * h + 15 * math.sin(h * 1.7)
    mode = "REDUCE_ONLY" if 150 <= h < 153 else "HALTED" if 200 <= h < 200.5 else "NORMAL"

    def market(target: float, before: float, rate: float, price: float) -> dict[str, Any]:
        position = before + (target - before) * lag
        return {"position": f"{position:.4f}", "target": f"{target:.4f}", "oracle_price": f"{price:.2f}",
                "funding_rate_1h": f"{rate:.8f}", "flags": {}}

    return {"risk_mode": mode, "equity": f"{equity:.2f}",
            "pnl": {"price": f"{equity - 10_000 - funding - fees - slippage:.2f}",
                    "funding": f"{funding:.2f}",
                    "fees": f"{fees:.2f}", "slippage": f"{slippage:.2f}", "total": f"{equity - 10_000:.2f}"},
            "markets": {"BTC-USD": market(btc_target, 0.05 if block % 3 != 2 else -0.05, btc_rate, 65_000),
                        "ETH-USD": market(eth_target, -0.5 if block % 4 != 1 else -0.25, eth_rate, 3_000)},
            "watchdog": {"chain_head_age": {"state": "OK", "value": 0.7, "reason": None}}}


def _fill_week(store: Any, history: StatusHistory, clock: ManualClock) -> None:
    """Ten days of hourly funding and six-hourly decisions in the store; eight days sampled in memory."""
    start = NOW_NS - 10 * 24 * HOUR
    for hour in range(10 * 24):
        t = start + hour * HOUR
        for ticker, m in _week_status(t)["markets"].items():
            rate, size = Decimal(m["funding_rate_1h"]), Decimal(m["position"])
            store.record_funding("paper", FundingPayment(ticker, rate, size, Decimal(m["oracle_price"]),
                                                         -size * Decimal(m["oracle_price"]) * rate, t))
            if hour % 6 == 0:
                tripped = hour % 24 == 0
                flags = {"funding": {"tripped": tripped}, "news": {"tripped": tripped}}
                store.record_decision(t, ticker, "flags" if tripped else "audit", flags,
                                      {"target_after": m["target"], "summary": f"{ticker} -> {m['target']}"})
    t = NOW_NS - 8 * 24 * HOUR
    while t <= NOW_NS:
        clock.now = t
        history.record(_week_status(t))
        t += (60 if NOW_NS - t > 2 * HOUR else 5) * 1_000_000_000
    history.refresh_store(NOW_NS)


class _PageServer(ThreadingHTTPServer):
    """The dashboard's three routes over a plain HTTP server (auth is tested above, with the daemon)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        super().__init__(("127.0.0.1", 0), _PageHandler)


class _PageHandler(BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        dashboard = self.server.dashboard
        if url.path == "/":
            body, kind = dashboard.page("csrf").encode(), "text/html; charset=utf-8"
        elif url.path == "/v1/dashboard":
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body, kind = json.dumps(dashboard.payload(query)).encode(), "application/json"
        else:
            asset = dashboard.asset(url.path.removeprefix("/static/"))
            if asset is None:
                self.send_error(404)
                return
            body, kind = asset
        self.send_response(200)
        self.send_header("Content-Type", kind)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_week_of_history_in_chromium(browser: Any, tmp_path: Path) -> None:
    """Ranges over a week of samples and ten days of stored funding and decisions, at both sizes."""
    clock = ManualClock(1_780_000_000 * SEC)
    store = Store.open(tmp_path / "week.db")
    history = StatusHistory(lambda: _week_status(clock.now), clock, store=store, settings=Settings(),
                            store_refresh_secs=1e9)
    _fill_week(store, history, clock)
    server = _PageServer(Dashboard(lambda: _week_status(clock.now), clock, history))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        spans = {}
        for chosen in ("1h", "24h", "7d", "all"):
            browser.find_element("css selector", f"button.range[data-range='{chosen}']").click()
            eventually(lambda chosen=chosen: browser.execute_script(
                "return document.body.dataset.range") == chosen, timeout_secs=5)
            charts = _check_layout(browser, DESKTOP)
            spans[chosen] = charts
            _screenshot(browser, f"week-{chosen}-1400x1000.png")
        markers = browser.execute_script("return document.querySelectorAll('circle.decision').length")
        assert markers > 10, "every decision of the range is marked"
        hover = browser.execute_script("return document.querySelector('circle.decision title').textContent")
        assert re.search(r" · (flags|audit) \(", hover), hover
        # Hovering a chart reads back the time and each line's value under the pointer.
        from selenium.webdriver.common.action_chains import ActionChains

        equity = browser.find_element("css selector", "#chart-equity")
        ActionChains(browser).move_to_element_with_offset(equity, 100, 10).perform()
        tip = browser.find_element("css selector", "div.tip")
        eventually(tip.is_displayed, timeout_secs=3)
        readout = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s*equity 10,\d{3}\.\d\d"
        assert re.fullmatch(readout, tip.text.strip()), tip.text
        _screenshot(browser, "week-hover-1400x1000.png")
        ActionChains(browser).move_to_element_with_offset(equity, 0, -300).perform()
        eventually(lambda: not tip.is_displayed(), timeout_secs=3)
        realised = spans["all"]["chart-funding-BTC-USD"]["points"]
        assert realised > spans["7d"]["chart-funding-BTC-USD"]["points"], "all reaches back into the store"
        _screenshot(browser, "week-all-1400-full.png", full_page=True)
        for size in ((1280, 800), (1920, 1080)):  # the supported desktop range's two ends
            _check_layout(browser, size)
            _screenshot(browser, f"week-all-{size[0]}x{size[1]}.png")
        _check_layout(browser, PHONE)
        _screenshot(browser, "week-all-390x844.png")
        _screenshot(browser, "week-all-390-full.png", full_page=True)
        assert _script_errors(browser) == []
    finally:
        server.shutdown()
        store.close()


# ---- the renderer and the small services behind the page (no daemon) -------------------------

SEC = 1_000_000_000
HOSTILE = '<script>alert("x")</script>'


def _status(**extra: Any) -> dict[str, Any]:
    flag = {"tripped": False, "why": ""}
    market = {
        "position": "0.5", "target": "0.5", "oracle_price": "3000", "mid": "3000.5",
        "funding_rate_1h": "0.0001", "funding_ledger": {"realised": "1", "expected": "-2"},
        "pnl": {"total": "3"}, "flags": {"funding": flag, "liquidity": flag, "volatility": flag,
                                         "news": {"tripped": True, "why": "active", "items": [HOSTILE]}},
        "last_decision": {"ts_ns": 1, "reason": "flags", "summary": HOSTILE, "tripped": ["news"]},
        "spot": {"market": "ETH-USDT", "position": "-0.5", "target": "-0.5", "mid": "3000"},
        "net_delta": "0",
    }
    return {"risk_mode": "HALTED", "kill_latched": True, "kill_reason": HOSTILE, "equity": "10000",
            "funding": {"realised": "1", "expected": "-2", "horizon_hours": 8}, "open_orders": {"paper": 0},
            "news": [{"item": HOSTILE, "source": "operator", "remaining_secs": 60}],
            "markets": {"ETH-USD": market},
            "watchdog": {"chain_head_age": {"state": "DEGRADED", "value": 7, "reason": HOSTILE}}, **extra}


def test_every_value_on_the_page_is_escaped() -> None:
    clock = ManualClock(1_780_000_000 * SEC)
    dashboard = Dashboard(_status, clock, StatusHistory(_status, clock))
    page = dashboard.page(csrf='"><script>')
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert '<script src="/static/dashboard.js"></script>' in page
    assert page.count("<script") == 1
    sections = dashboard.payload()["html"]
    assert all("<script" not in html for html in sections.values())
    assert 'data-flag="news" data-tripped="true"' in sections["markets"]
    assert 'data-input="chain_head_age" data-state="DEGRADED"' in sections["watchdog"]
    assert "&lt;script&gt;alert" in sections["watchdog"], "the reason is shown, escaped"


def test_history_is_bounded_to_its_window_and_thinned_for_charts() -> None:
    clock = ManualClock(1_780_000_000 * SEC)
    history = StatusHistory(_status, clock, interval_secs=5, window_secs=3600)
    for _ in range(2000):  # ~2.8 h of samples every 5 s
        history.record(_status())
        clock.now += 5 * SEC
    assert len(history.samples) <= 3600 / 5 + 2
    assert clock.now - history.samples[0].ts_ns <= 3600 * SEC + 5 * SEC
    series = history.series(sample_from_status(_status(), clock.now), max_points=100)
    assert len(series) == 100 and series[-1].ts_ns == clock.now
    sample = series[-1]
    assert sample.gross_exposure_usd == 0.5 * 3000 + 0.5 * 3000  # perp at the oracle, spot at its mid
    assert sample.net_exposure_usd == 0
    assert render_chart_sections(series).count("<svg") == 5


def test_sessions_are_random_bounded_and_expire() -> None:
    now = [0.0]
    sessions = Sessions(ttl_secs=10, max_sessions=3, monotonic=lambda: now[0])
    made = [sessions.create() for _ in range(4)]
    assert len({s.id for s in made}) == 4 and all(s.id != s.csrf for s in made)
    assert sessions.get(made[0].id) is None, "the oldest is evicted beyond max_sessions"
    assert sessions.get(made[3].id) == made[3]
    assert sessions.get(None) is None and sessions.get("guess") is None
    now[0] = 11
    assert sessions.get(made[3].id) is None, "expired"
