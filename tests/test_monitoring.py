"""deploy/prometheus-rules.yaml and deploy/grafana-dashboard.json: valid, tested, and about
metrics the web server really exports.

``promtool`` (Debian package ``prometheus``) checks and unit-tests the rules; without it
those tests skip, unless REMINDBOT_TEST_REQUIRE_PROMTOOL=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.web.server import WebServer
from scheduler.dispatcher import Dispatcher
from tests.scheduler.test_dispatcher import FixedClock, RecordingSender

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus-rules.yaml"
RULE_TESTS = DEPLOY / "prometheus-rules.test.yaml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
REQUIRE_PROMTOOL = os.environ.get("REMINDBOT_TEST_REQUIRE_PROMTOOL") == "1"
# Series Prometheus makes itself, per scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian/Ubuntu: apt-get install prometheus)"
        if REQUIRE_PROMTOOL:
            pytest.fail(f"{reason}, and REMINDBOT_TEST_REQUIRE_PROMTOOL=1")
        pytest.skip(reason)
    return found


def test_the_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_unit_test() -> None:
    yaml = pytest.importorskip("yaml")
    rules = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert rules == tested
    assert {
        "RemindbotDown",
        "RemindbotDatabaseDown",
        "RemindbotQueueLagHigh",
        "RemindbotSendsFailing",
        "RemindbotAlertsWithoutRecipient",
        "RemindbotDispatcherNotTicking",
    } <= rules


# --- the metric names in the rules and the dashboard ------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPS = re.compile(
    r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: its names that are not functions,
    keywords, label names or Grafana variables."""
    bare = _GROUPS.sub(" ", _STRINGS.sub(" ", expr.replace("$__rate_interval", "5m")))
    names = set()
    for match in _NAME.finditer(bare):
        start, end = match.span()
        if start and (bare[start - 1] == "$" or bare[start - 1].isdigit()):
            continue
        if bare[end:].lstrip().startswith("(") or match[0].lower() in _KEYWORDS:
            continue
        names.add(match[0])
    return names


def test_metric_names_are_found_in_expressions() -> None:
    quantile = 'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job="$job"}[5m])))'
    assert metric_names(quantile) == {"a_bucket"}
    assert metric_names("rate(c_total[$__rate_interval])") == {"c_total"}
    assert metric_names("time() - b{x='y'} > 180 and up == 0") == {"b", "up"}


def dashboard_exprs() -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    document = json.loads(DASHBOARD.read_text())
    for panel in panels(document["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]


def rule_exprs() -> Iterator[str]:
    yaml = pytest.importorskip("yaml")
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


@pytest.fixture
async def exported(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    """Every series name a running server's /metrics exports, histogram parts included."""
    clock = FixedClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    dispatcher = Dispatcher(
        sessions=sessions, sender=RecordingSender(), clock=clock, late_window=timedelta(hours=72)
    )
    services = Services(sessions=sessions, clock=clock, dispatcher=dispatcher)
    server = WebServer(services, port=0, console=False)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{server.port}/metrics") as response,
        ):
            assert response.status == 200
            body = await response.text()
    finally:
        await server.stop()
    names = set()
    for family in text_string_to_metric_families(body):
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["title"] == "remindbot"
    assert document["uid"]
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in document["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    for panel in document["panels"]:
        assert panel["title"], panel
        assert panel["targets"], panel
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


async def test_the_dashboard_reads_only_exported_metrics(exported: set[str]) -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert used - exported - SCRAPE_SERIES == set()
    # What the dashboard is for.
    assert {
        "remindbot_messages_total",
        "remindbot_queue_lag_seconds",
        "remindbot_reminder_latency_seconds_bucket",
        "remindbot_telegram_request_duration_seconds_bucket",
        "remindbot_alerts_without_recipient",
        "remindbot_dispatcher_last_tick_timestamp_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= used


async def test_the_rules_read_only_exported_metrics(exported: set[str]) -> None:
    used = set().union(*(metric_names(expr) for expr in rule_exprs()))
    assert used - exported - SCRAPE_SERIES == set()
    assert "up" in used  # a process down: the scrape fails
    # The database down: /metrics still answers, from memory, and says so.
    assert {"remindbot_database_up", "remindbot_metrics_age_seconds"} <= exported
    assert "remindbot_database_up" in used
