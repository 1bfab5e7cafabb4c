"""The console's pages through aiohttp's test client, against the real application on both
databases: each page for each role, team scoping, the filters, the CSV, the month strip."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.cli import cli, common
from bot.cli.deliveries import Filters, collect, write_csv
from bot.context import Services
from bot.settings import load_settings
from bot.web import console
from scheduler import teams, web_access
from scheduler.deliveries import count_deliveries
from scheduler.models import AlertEvent, AuditEvent, CoordinatorAlert
from tests.scheduler.test_console import (
    ADMIN,
    COORDINATOR,
    NORTH_COORDINATOR,
    NOW,
    STAFF,
    Clinic,
    build_clinic,
)

Sessions = async_sessionmaker[AsyncSession]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ROW_LABEL = re.compile(r'<th scope="row"><a href="/patients/[^"]+">([^<]+)</a></th>')
_CELL = re.compile(r'<g data-outcome="([a-z_]+)">')


class FixedClock:
    def now(self) -> datetime:
        return NOW


@dataclass
class Browser:
    """The test client with the session cookie kept by hand."""

    client: TestClient[web.Request, web.Application]
    sessions: Sessions
    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, path: str) -> ClientResponse:
        return await self.client.get(path, allow_redirects=False, headers=self._headers())

    async def post(self, path: str, data: dict[str, str]) -> ClientResponse:
        return await self.client.post(
            path, data=data, allow_redirects=False, headers=self._headers()
        )

    async def page(self, path: str, status: int = 200) -> str:
        response = await self.get(path)
        text = await response.text()
        assert response.status == status, text
        return text

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    async def sign_in(self, user_id: int) -> None:
        async with self.sessions.begin() as session:
            token = await web_access.issue_login(session, user_id=user_id, now=NOW)
        self.cookies.clear()
        response = await self.get(f"/login?token={token}")
        assert response.status == 303, await response.text()
        jar: SimpleCookie = SimpleCookie()
        for header in response.headers.getall("Set-Cookie", []):
            jar.load(header)
        self.cookies.update({name: morsel.value for name, morsel in jar.items()})


@pytest.fixture
async def clinic(sessions: Sessions) -> Clinic:
    return await build_clinic(sessions)


@pytest.fixture
async def browser(sessions: Sessions, clinic: Clinic) -> AsyncIterator[Browser]:
    settings = load_settings(
        REMINDBOT_PUBLIC_URL="http://127.0.0.1:8080",
        REMINDBOT_DEFAULT_TIMEZONE="Europe/Berlin",
        REMINDBOT_DEFAULT_LOCALE="en",
    )
    app = web.Application()
    console.install(app, Services(settings=settings, sessions=sessions, clock=FixedClock()))
    async with TestClient(TestServer(app)) as client:
        yield Browser(client, sessions)


def labels(html: str) -> list[str]:
    return _ROW_LABEL.findall(html)


async def audits(sessions: Sessions, action: str) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        events = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return [(event.actor, event.target) for event in events]


@pytest.mark.parametrize(
    ("user", "seen"),
    [
        (STAFF, {"MS-001", "MS-003"}),
        (COORDINATOR, {"MS-001", "MS-003"}),
        (ADMIN, {"MS-001", "MS-002", "MS-003"}),
    ],
)
async def test_every_page_for_each_role(browser: Browser, user: int, seen: set[str]) -> None:
    await browser.sign_in(user)
    log = await browser.page("/deliveries?days=0")
    assert set(labels(log)) == seen
    patients = await browser.page("/patients")
    assert labels(patients) == sorted(seen)
    alerts = await browser.page("/alerts")
    assert {"MS-001"} <= set(re.findall(r'<a href="/patients/[^"]+">([^<]+)</a>', alerts)) <= seen
    page = await browser.page("/patients/MS-001")
    assert "<h1>Patient MS-001</h1>" in page
    assert await browser.page("/patients/MS-002", 200 if user == ADMIN else 404)
    for action in ("web.deliveries", "web.patients", "web.alerts", "web.patient"):
        assert {actor for actor, _ in await audits(browser.sessions, action)} == {f"user:{user}"}


async def test_a_team_sees_its_own_patients_and_filters_cannot_widen_that(
    browser: Browser, clinic: Clinic
) -> None:
    await browser.sign_in(NORTH_COORDINATOR)
    assert set(labels(await browser.page("/deliveries?days=0"))) == {"MS-002"}
    not_found = await browser.page("/patients/MS-001", 404)
    assert "Not found" in not_found
    assert "Patient MS-001" not in not_found
    assert "January 6, 2025" not in not_found

    await browser.sign_in(COORDINATOR)
    await browser.page("/patients/MS-002", 404)
    for path in (
        "/deliveries?team=north",
        "/patients?team=north",
        "/alerts?team=north",
        "/deliveries.csv?team=north",
    ):
        refused = await browser.page(path, 400)
        assert "There is no team north." in refused
        assert "MS-002" not in refused
    nothing = await browser.page("/deliveries?days=0&patient=MS-002")
    assert labels(nothing) == []
    assert "No reminders match these filters." in nothing
    own = await browser.page(f"/deliveries?days=0&team={teams.DEFAULT_TEAM}")
    assert set(labels(own)) == {"MS-001", "MS-003"}


async def test_delivery_log_filters_default_to_the_last_weeks_activity(
    browser: Browser, sessions: Sessions, clinic: Clinic
) -> None:
    await browser.sign_in(ADMIN)
    recent = await browser.page("/deliveries")
    async with sessions() as session:
        expected = await count_deliveries(session, active_since=NOW - timedelta(days=7), now=NOW)
    assert expected == 3  # the August labs of each patient
    assert f"Reminders 1–{expected} of {expected}, latest status change first" in recent
    assert 'name="days" type="number" min="0" inputmode="numeric" value="7"' in recent

    failed = await browser.page("/deliveries?days=0&status=failed")
    assert labels(failed) == ["MS-001"]
    assert "Reminders 1–1 of 1, newest due first" in failed
    assert "Reminders 1–1 of 1" in failed
    thyroid = await browser.page(
        "/deliveries?days=0&kind=thyroid_quarterly&patient=MS-001&from=2025-04-01&to=2025-07-31"
    )
    assert "Reminders 1–2 of 2" in thyroid
    everything = await browser.page("/deliveries?days=0")
    shown = re.search(r"Reminders 1–50 of (\d+)", everything)
    assert shown is not None
    total = int(shown.group(1))
    assert total > 100
    assert 'href="/deliveries?days=0&amp;page=2" rel="next"' in everything
    second = await browser.page("/deliveries?days=0&page=2")
    assert f"Reminders 51–100 of {total}" in second
    # Dates in the viewer's zone (Berlin): the August labs, due 09:00 local.
    assert "August 6, 2025, 9:00" in recent


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("days=abc", "days must be a whole number from 0 to 3660."),
        ("days=-1", "days must be a whole number from 0 to 3660."),
        ("page=0", "page must be a whole number from 1 to 1000000."),
        ("status=lost", "lost is not a value of status."),
        ("kind=pills", "pills is not a value of kind."),
        ("from=2025-13-01", "2025-13-01"),
    ],
)
async def test_bad_filters_give_the_page_with_a_message(
    browser: Browser, query: str, message: str
) -> None:
    await browser.sign_in(STAFF)
    for path in ("/deliveries", "/deliveries.csv"):
        html = await browser.page(f"{path}?{query}", 400)
        assert message in html
        assert 'role="alert"' in html
        assert labels(html) == []
    for path, bad in (
        ("/patients", "sort=age"),
        ("/patients", "order=up"),
        ("/alerts", "status=lost"),
    ):
        html = await browser.page(f"{path}?{bad}", 400)
        assert 'role="alert"' in html


async def test_csv_download_is_what_the_command_line_writes(
    browser: Browser,
    sessions: Sessions,
    db: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await browser.sign_in(ADMIN)
    response = await browser.get("/deliveries.csv?days=0&kind=labs_monthly&page=3")
    assert response.status == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="deliveries.csv"'
    assert response.content_type == "text/csv"
    body = await response.read()

    filters = Filters(kind="labs_monthly", now=NOW)
    entries, _total = await collect(sessions, scope=teams.EVERY_TEAM, filters=filters)
    written = io.StringIO()
    write_csv(entries, written)
    assert body == written.getvalue().encode("utf-8")
    assert body.count(b"\r\n") > 100  # every labs reminder of the three patients
    assert await audits(sessions, "web.deliveries.csv") == [(f"user:{ADMIN}", "team:*")]

    if db.url.get_backend_name() == "sqlite":
        monkeypatch.setattr(common, "now", lambda: NOW)
        # The command runs its own event loop, so in a thread of its own.
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["deliveries", "--format", "csv", "--kind", "labs_monthly", "--active-days", "0"],
            env={"DATABASE_URL": str(db.url)},
        )
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == body

    # A coordinator's download holds their team's patients only.
    await browser.sign_in(COORDINATOR)
    mine = await (await browser.get("/deliveries.csv?days=0")).text()
    assert ",MS-001," in mine
    assert ",MS-002," not in mine


async def test_patient_page_draws_the_month_strip(browser: Browser, clinic: Clinic) -> None:
    await browser.sign_in(COORDINATOR)
    html = await browser.page("/patients/MS-001")
    cells = _CELL.findall(html)
    assert len(cells) == 49  # months 0 to 48 after the last infusion
    assert cells[:9] == [
        "none",
        "on_time",
        "late",
        "missed",
        "missed",
        "none",
        "on_time",
        "unconfirmed",
        "upcoming",
    ]
    assert '<svg role="img" aria-labelledby="strip-title strip-desc"' in html
    assert '<title id="strip-title">Monitoring programme, month by month</title>' in html
    assert "<title>Month 3 (from April 6, 2025): missed</title>" in html
    # Not colour only: every cell carries a symbol, the legend shows each one once, on its
    # swatch, beside its name (no list bullets: the legend's list has none in the CSS).
    legend = html[html.index('<ul class="legend">') : html.index("</ul>", html.index("legend"))]
    for symbol, name in (("✗", "missed"), ("✓", "confirmed on time"), ("○", "upcoming")):
        assert f"{symbol}</text></svg> {name}</li>" in legend
        assert legend.count(symbol) == 1
    # The strip scales with the page; its row labels end before the cells, months left to
    # right.
    assert 'viewBox="0 0 492 160"' in html
    assert '<text x="102" y="18" text-anchor="end" direction="ltr"' in html
    assert ">Months \u20660–11\u2069</text>" in html
    assert "2 of 5 (40%)" in html  # on time over the last 6 months
    assert "3 of 6 (50%)" in html
    assert "Tests not confirmed" in html  # the alerts, with their history
    assert "Reminder not delivered" in html
    assert "January 6, 2025" in html  # course 1
    # The protocol's end of monitoring, 48 months after the last infusion (course 1's fifth
    # day), not the end of the strip's last month.
    until = re.search(r"<dt>Monitoring until</dt>\s*<dd>([^<]+)</dd>", html)
    assert until is not None
    assert until.group(1).strip() == "January 10, 2029"
    assert await audits(browser.sessions, "web.patient") == [
        (f"user:{COORDINATOR}", f"patient:{clinic.anna}")
    ]


async def test_patients_sort_and_flag(browser: Browser) -> None:
    await browser.sign_in(ADMIN)
    assert labels(await browser.page("/patients?sort=adherence&order=desc")) == [
        "MS-003",
        "MS-001",
        "MS-002",
    ]
    assert labels(await browser.page("/patients?sort=label&order=desc")) == [
        "MS-003",
        "MS-002",
        "MS-001",
    ]
    html = await browser.page("/patients?sort=status")
    assert labels(html) == ["MS-001", "MS-002", "MS-003"]
    assert '<span aria-hidden="true">⚠ </span>paused' in html
    # The sorted column says so to screen readers, and shows its direction to the eye.
    assert re.search(
        r'<th scope="col" aria-sort="ascending"><a href="[^"]*">Status</a> '
        r'<span class="sort-mark" aria-hidden="true">▲</span></th>',
        html,
    )
    assert html.count("sort-mark") == 1
    descending = await browser.page("/patients?sort=next&order=desc")
    assert re.search(r'aria-sort="descending"><a href="[^"]*">Next reminder</a> <span', descending)
    assert '<span class="sort-mark" aria-hidden="true">▼</span>' in descending


async def test_paused_patients_have_no_next_reminder(browser: Browser) -> None:
    await browser.sign_in(ADMIN)
    html = await browser.page("/patients")
    rows = re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", html, re.S)
    cells = {
        label: re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        for row in rows
        for label in labels(row)
    }
    assert cells["MS-003"][2] == "—"  # paused: nothing will be sent
    assert cells["MS-001"][2] != "—"
    assert cells["MS-002"][2] != "—"


async def test_alerts_page_lists_every_alert_with_its_history(browser: Browser) -> None:
    await browser.sign_in(ADMIN)
    html = await browser.page("/alerts")
    assert "Alerts 1–3 of 3, newest first" in html
    assert html.index("Symptoms reported") < html.index("Tests not confirmed")
    failed = await browser.page("/alerts?status=failed")
    assert "Alerts 1–1 of 1" in failed
    assert "Reminder not delivered" in failed


async def test_alert_history_names_kinds_and_nobody(browser: Browser, clinic: Clinic) -> None:
    async with browser.sessions.begin() as session:
        # As outbox.queue_alert records them: the queued event names the alert's kind; an
        # alert that found nobody is a failed row without a chat.
        event = await session.scalar(
            select(AlertEvent).where(
                AlertEvent.alert_id == clinic.alerts["anna_missed"], AlertEvent.status == "queued"
            )
        )
        assert event is not None
        event.detail = "missed_test"
        nobody = CoordinatorAlert(
            kind="delivery_failed",
            patient_id=clinic.ben,
            chat_id=None,
            route="team",
            status="failed",
            attempts=0,
            created_at=NOW,
            detail="nobody to tell",
        )
        session.add(nobody)
        await session.flush()
        session.add(
            AlertEvent(alert_id=nobody.id, status="failed", at=NOW, detail="nobody to tell")
        )
    await browser.sign_in(ADMIN)
    html = await browser.page("/alerts")
    assert 'muted">missed_test<' not in html
    assert '<span class="ltr muted">Tests not confirmed</span>' in html
    assert '<span class="ltr muted">nobody to tell</span>' in html  # other details as they are
    rows = re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", html, re.S)
    routes = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[4] for row in rows]
    assert routes == ["—", "own coordinator", "own coordinator", "own coordinator"]


async def test_a_page_in_arabic_is_right_to_left(browser: Browser) -> None:
    await browser.sign_in(STAFF)
    html = await browser.page("/patients")
    csrf = _CSRF.search(html)
    assert csrf is not None
    moved = await browser.post(
        "/preferences", {"csrf": csrf.group(1), "locale": "ar", "next": "/patients/MS-001"}
    )
    assert moved.status == 303
    page = await browser.page("/patients/MS-001")
    assert '<html lang="ar" dir="rtl">' in page
    assert len(_CELL.findall(page)) == 49
