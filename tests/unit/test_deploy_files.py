"""The deploy/ examples stay in step with the code: every metric the dashboard charts exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.telemetry import Metrics

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\b(perpbot_[a-z_]+)")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in SUFFIXES)
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/perpbot.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "the dashboard charts something"
    assert used <= _exported_names(), f"unknown metrics: {sorted(used - _exported_names())}"


def test_prometheus_scrapes_the_daemons_metrics_path() -> None:
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert "metrics_path: /metrics" in config or "metrics_path" not in config
