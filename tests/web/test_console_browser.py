"""The staff console as staff use it: Debian's Chromium on the real web server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from scheduler.web_access import LOGIN_TTL
from tests.web.conftest import PHONE, Console

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def visit(page: Page, url: str) -> int:
    """Open ``url``; the HTTP status of the page (after redirects)."""
    response = await page.goto(url)
    assert response is not None
    return response.status


async def heading(page: Page) -> str:
    return (await page.locator("h1").first.inner_text()).strip()


# --- sign-in ---------------------------------------------------------------------------


async def test_a_link_from_web_signs_in_with_a_strict_http_only_cookie(
    console: Console, page: Page
) -> None:
    await console.sign_in(page, "staff")
    assert page.url == console.url("/deliveries")
    [cookie] = await page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # REMINDBOT_PUBLIC_URL is not https here
    assert await page.get_by_role("button", name="Sign out").is_visible()


async def test_a_link_works_once(console: Console, page: Page, browser: Browser) -> None:
    link = await console.login_link("coordinator")
    assert await visit(page, link) == 200
    other = await browser.new_context()
    try:
        again = await other.new_page()
        assert await visit(again, link) == 403
        assert await heading(again) == "This sign-in link does not work"
        assert "/web" in await again.locator("main").inner_text()
        assert await other.cookies() == []
    finally:
        await other.close()


async def test_an_expired_link_is_refused(console: Console, page: Page) -> None:
    issued = datetime.now(UTC) - LOGIN_TTL - timedelta(seconds=5)
    assert await visit(page, await console.login_link("admin", issued=issued)) == 403
    assert await heading(page) == "This sign-in link does not work"
    assert await page.context.cookies() == []


async def test_a_mangled_link_is_refused(console: Console, page: Page) -> None:
    link = await console.login_link("admin")
    assert await visit(page, link[:-3]) == 403


async def test_pages_ask_to_sign_in_without_a_session(console: Console, page: Page) -> None:
    for path in ("/deliveries", "/patients", "/alerts"):
        assert await visit(page, console.url(path)) == 401, path
        assert await heading(page) == "Please sign in"


async def test_sign_out_ends_the_session(console: Console, page: Page) -> None:
    await console.sign_in(page, "staff")
    await page.get_by_role("button", name="Sign out").click()
    assert await heading(page) == "You are signed out"
    assert await page.context.cookies() == []
    assert await visit(page, console.url("/deliveries")) == 401


# --- every page, for each role -----------------------------------------------------------------

NORTH = ["MS-101", "MS-102", "MS-103", "MS-104", "MS-105", "MS-106"]
SOUTH = ["MS-201", "MS-202"]
PAGES = [
    ("/deliveries", "Delivery log"),
    ("/patients", "Patients"),
    ("/patients/MS-101", "Patient MS-101"),
    ("/alerts", "Alerts"),
]


async def cells(page: Page, table: str = "main table") -> list[list[str]]:
    """The text of each body row's cells of the first ``table``."""
    found: list[list[str]] = await page.locator(table).first.evaluate(
        "t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return found


async def options(page: Page, select: str) -> list[str]:
    found: list[str] = await page.locator(select).evaluate("s => [...s.options].map(o => o.value)")
    return found


@pytest.mark.parametrize("who", ["staff", "coordinator", "admin"])
async def test_every_page_opens_for_each_role(console: Console, page: Page, who: str) -> None:
    await console.sign_in(page, who)
    for path, title in PAGES:
        assert await visit(page, console.url(path)) == 200, (path, await page.content())
        assert await heading(page) == title
        assert (
            await page.title() == f"{title if path != '/patients/MS-101' else 'MS-101'} · remindbot"
        )
        current = page.locator('nav a[aria-current="page"]')
        assert await current.count() == 1
        assert path.startswith(await current.get_attribute("href") or "?")
    await page.goto(console.url("/patients"))
    labels = [row[0] for row in await cells(page)]
    if who == "admin":
        assert sorted(labels) == NORTH + SOUTH
        assert await options(page, "#f-team") == ["", "north", "south"]
    else:
        assert sorted(labels) == NORTH
        assert await options(page, "#f-team") == ["", "north"]


async def test_the_patient_page_shows_courses_strip_plan_and_alerts(
    console: Console, page: Page
) -> None:
    await console.sign_in(page, "coordinator")
    await page.goto(console.url("/patients/MS-101"))
    courses = await cells(page, "table:has(#courses-caption)")
    assert [row[0] for row in courses] == ["1", "2"]
    strip = page.locator("figure.strip svg[role=img]")
    assert await strip.get_attribute("aria-labelledby") == "strip-title strip-desc"
    outcomes = await page.locator("figure.strip g[data-outcome]").evaluate_all(
        "gs => gs.map(g => g.dataset.outcome)"
    )
    # Course 1 to 48 months after course 2's last infusion: tests confirmed on time, some
    # late, the month of the symptoms report missed, the rest to come.
    assert len(outcomes) > 48
    assert {"on_time", "late", "missed", "upcoming"} <= set(outcomes)
    assert outcomes[-1] == "upcoming"
    upcoming = await cells(page, "table:has(#upcoming-caption)")
    past = await cells(page, "table:has(#past-caption)")
    assert upcoming
    assert past
    assert {row[2] for row in upcoming} == {"planned"}
    assert {"acknowledged", "sent"} <= {row[2] for row in past}
    alerts = await cells(page, "table:has(#patient-alerts-caption)")
    # The symptoms reported, and the tests confirmed late (after the coordinator was told).
    assert {row[1] for row in alerts} == {"Symptoms reported", "Tests not confirmed"}


# --- care teams -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "label"),
    [("coordinator", "MS-201"), ("staff", "MS-202"), ("south_coordinator", "MS-101")],
)
async def test_another_teams_patient_is_not_found(
    console: Console, page: Page, who: str, label: str
) -> None:
    await console.sign_in(page, who)
    assert await visit(page, console.url(f"/patients/{label}")) == 404
    assert await heading(page) == "Not found"
    assert label not in await page.locator("main").inner_text()
    assert await visit(page, console.url(f"/deliveries?patient={label}&days=0")) == 200
    assert await cells(page) == []


async def test_a_team_one_is_not_in_cannot_be_chosen(console: Console, page: Page) -> None:
    await console.sign_in(page, "coordinator")
    assert await visit(page, console.url("/deliveries?team=south")) == 400
    assert await page.get_by_role("alert").is_visible()
    assert await page.locator("main table").count() == 0


async def test_an_unknown_patient_is_not_found(console: Console, page: Page) -> None:
    await console.sign_in(page, "admin")
    assert await visit(page, console.url("/patients/MS-999")) == 404


# --- the delivery log ------------------------------------------------------------------------


async def show(page: Page) -> None:
    """Submit the filter form and wait for the page it opens."""
    async with page.expect_navigation():
        await page.get_by_role("button", name="Show").click()


async def test_the_default_log_shows_the_last_weeks_activity(console: Console, page: Page) -> None:
    await console.sign_in(page, "admin")
    assert await page.locator("#f-days").input_value() == "7"
    statuses = {row[3] for row in await cells(page)}
    # MS-104 withdrew two days ago: their cancelled reminders, due months ahead, show.
    assert "cancelled" in statuses
    caption = await page.locator("#log-caption").inner_text()
    assert caption.startswith("Reminders 1–50 of ")


async def test_the_log_filters_by_status_team_and_patient(console: Console, page: Page) -> None:
    await console.sign_in(page, "admin")
    await page.select_option("#f-status", "failed")
    await show(page)
    assert "status=failed" in page.url
    rows = await cells(page)
    assert sorted(row[1] for row in rows) == ["MS-103", "MS-202"]
    assert {row[3] for row in rows} == {"failed"}
    assert "Forbidden: bot was blocked by the user" in rows[[r[1] for r in rows].index("MS-103")][4]
    # The form keeps its values: narrow further to one team.
    assert await page.locator("#f-status").input_value() == "failed"
    await page.select_option("#f-team", "south")
    await show(page)
    assert [row[1] for row in await cells(page)] == ["MS-202"]

    await page.goto(console.url("/deliveries"))
    await page.fill("#f-patient", "MS-201")
    await page.select_option("#f-kind", "labs_monthly")
    await page.fill("#f-days", "0")
    await show(page)
    rows = await cells(page)
    assert len(rows) > 20
    assert {row[1] for row in rows} == {"MS-201"}
    assert {row[2] for row in rows} == {"Monthly tests"}
    assert {"planned", "acknowledged"} <= {row[3] for row in rows}


async def test_the_log_pages_through_every_reminder(console: Console, page: Page) -> None:
    await console.sign_in(page, "admin")
    await page.goto(console.url("/deliveries?days=0"))
    assert (await page.locator("#log-caption").inner_text()).startswith("Reminders 1–50 of ")
    first = await cells(page)
    await page.get_by_role("link", name="Next page").click()
    await page.wait_for_url("**page=2**")
    assert (await page.locator("#log-caption").inner_text()).startswith("Reminders 51–100 of ")
    assert await cells(page) != first
    assert await page.get_by_role("link", name="Previous page").is_visible()


async def test_a_bad_filter_says_what_is_wrong(console: Console, page: Page) -> None:
    await console.sign_in(page, "staff")
    assert await visit(page, console.url("/deliveries?days=-3")) == 400
    assert "days" in await page.get_by_role("alert").inner_text()


async def cli_csv(console: Console, *arguments: str) -> bytes:
    """``remindbot deliveries --format csv`` on the console's database."""
    import asyncio
    import os
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "deliveries",
        "--format",
        "csv",
        *arguments,
        env={**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{console.database}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


@pytest.mark.parametrize(
    ("form", "arguments"),
    [
        ({"#f-status": "failed"}, ["--status", "failed"]),
        ({"#f-team": "north"}, ["--team", "north"]),
        ({"#f-patient": "MS-102", "#f-days": "0"}, ["--patient", "MS-102", "--active-days", "0"]),
    ],
)
async def test_the_csv_download_is_the_command_lines_csv(
    console: Console, page: Page, form: dict[str, str], arguments: list[str]
) -> None:
    await console.sign_in(page, "admin")
    for field, value in form.items():
        if field.startswith("#f-patient") or field.startswith("#f-days"):
            await page.fill(field, value)
        else:
            await page.select_option(field, value)
    await show(page)
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Download these reminders as CSV").click()
    download = await downloading.value
    assert download.suggested_filename == "deliveries.csv"
    path = await download.path()
    assert path is not None
    web = path.read_bytes()
    assert web == await cli_csv(console, *arguments)
    assert web.count(b"\n") > 2


async def test_exports_and_pages_with_personal_data_are_audited(
    console: Console, page: Page
) -> None:
    from sqlalchemy import select

    from scheduler.models import AuditEvent

    await console.sign_in(page, "coordinator")
    await page.goto(console.url("/patients/MS-102"))
    async with page.expect_download():
        await page.goto(console.url("/deliveries"))
        await page.get_by_role("link", name="Download these reminders as CSV").click()
    assert console.services.sessions is not None
    async with console.services.sessions() as session:
        rows = (
            await session.execute(
                select(AuditEvent.actor, AuditEvent.action, AuditEvent.target)
                .where(AuditEvent.action.like("web.%"))
                .order_by(AuditEvent.id)
            )
        ).all()
    actor = f"user:{console.clinic.staff['coordinator'].user_id}"
    patient = f"patient:{console.clinic.patients['MS-102']}"
    assert (actor, "web.signin", None) in rows
    assert (actor, "web.patient", patient) in rows
    assert [r.action for r in rows if r.actor == actor][-1] == "web.deliveries.csv"


# --- languages, keyboard, phones --------------------------------------------------------------


async def choose_language(page: Page, code: str) -> None:
    await page.select_option("#pref-locale", code)
    async with page.expect_navigation():
        await page.locator("aside.preferences button[type=submit]").click()


async def test_arabic_pages_are_right_to_left(console: Console, page: Page) -> None:
    await console.sign_in(page, "south_coordinator")
    await choose_language(page, "ar")
    html = page.locator("html")
    assert await html.get_attribute("dir") == "rtl"
    assert await html.get_attribute("lang") == "ar"
    assert await page.locator("#pref-locale").input_value() == "ar"
    for path in ("/patients", "/patients/MS-201", "/alerts"):
        await page.goto(console.url(path))
        assert await html.get_attribute("dir") == "rtl", path
    # The console's language belongs to this session; English again after choosing it.
    await choose_language(page, "en")
    assert await html.get_attribute("dir") == "ltr"


async def test_keyboard_focus_is_visible_on_links(console: Console, page: Page) -> None:
    await console.sign_in(page, "staff")
    await page.keyboard.press("Tab")
    focused = await page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    seen = []
    for _ in range(6):
        style = await page.evaluate(
            """() => {
                const e = document.activeElement, s = getComputedStyle(e);
                const r = e.getBoundingClientRect();
                return {tag: e.tagName, text: e.textContent.trim(), outline: s.outlineStyle,
                        width: parseFloat(s.outlineWidth), shadow: s.boxShadow,
                        visible: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0};
            }"""
        )
        if style["tag"] == "A":
            assert style["visible"], style
            assert (style["outline"] != "none" and style["width"] >= 2) or style[
                "shadow"
            ] != "none", style
            seen.append(style["text"])
        await page.keyboard.press("Tab")
    assert {"Delivery log", "Patients", "Alerts"} <= set(seen)


@pytest.mark.parametrize("path", [path for path, _ in PAGES])
async def test_pages_fit_a_phone_without_sideways_scrolling(
    console: Console, browser: Browser, path: str
) -> None:
    phone = await browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    try:
        page = await phone.new_page()
        await console.sign_in(page, "admin")
        await page.goto(console.url(path))
        overflow = await page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert overflow[0] <= overflow[1], f"{path}: page {overflow[0]} px wide at {overflow[1]} px"
    finally:
        await phone.close()


_STRIP_BOXES = """() => {
    const svg = document.querySelector("figure.strip svg[role=img]");
    const box = svg.getBoundingClientRect();
    const first = svg.querySelector("g[data-outcome] rect").getBoundingClientRect();
    const labels = [...svg.querySelectorAll(":scope > text")].map(t => {
        const r = t.getBoundingClientRect();
        return {left: r.left, right: r.right, text: t.textContent};
    });
    return {left: box.left, right: box.right, width: box.width, first: first.left,
            viewport: window.innerWidth, labels};
}"""


def _check_strip(strip: dict[str, Any], where: str) -> None:
    assert strip["left"] >= 0, (where, strip)
    assert strip["right"] <= strip["viewport"], (where, strip)
    assert strip["labels"], where
    for label in strip["labels"]:
        # Inside the view box, and clear of the first column of cells.
        assert strip["left"] <= label["left"] < label["right"] < strip["first"], (where, label)


async def test_the_month_strip_fits_a_phone(console: Console, browser: Browser) -> None:
    phone = await browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    try:
        page = await phone.new_page()
        await console.sign_in(page, "coordinator")
        await page.goto(console.url("/patients/MS-101"))
        strip = await page.evaluate(_STRIP_BOXES)
        _check_strip(strip, "phone")
        assert strip["width"] <= PHONE["width"]
        # Most of the phone's width: the strip scales down, not off the side.
        assert strip["width"] >= PHONE["width"] * 0.8
    finally:
        await phone.close()


async def test_the_month_strip_labels_stay_in_view_right_to_left(
    console: Console, page: Page
) -> None:
    await console.sign_in(page, "south_coordinator")
    await choose_language(page, "ar")
    await page.goto(console.url("/patients/MS-201"))
    strip = await page.evaluate(_STRIP_BOXES)
    _check_strip(strip, "ar")
    # The range reads left to right, isolated from the Arabic around it.
    assert "\u20660–11\u2069" in strip["labels"][0]["text"]
    # The patient's zone sits with its term, not at the far side of the line.
    zone = await page.evaluate(
        """() => {
            const dd = [...document.querySelectorAll("dl.summary dd")].find(
                d => d.textContent.includes("Asia/Riyadh"));
            const dt = dd.previousElementSibling.getBoundingClientRect();
            const value = dd.querySelector("span").getBoundingClientRect();
            return {gap: dt.left - value.right};
        }"""
    )
    assert 0 <= zone["gap"] <= 48, zone
    await choose_language(page, "en")


async def test_long_histories_fold_into_their_latest_change(console: Console, page: Page) -> None:
    await console.sign_in(page, "coordinator")
    await page.goto(console.url("/patients/MS-101"))
    folded = page.locator("table:has(#past-caption) details.history").first
    assert await folded.count() == 1
    assert await folded.get_attribute("open") is None
    assert not await folded.locator("ol").is_visible()
    await folded.locator("summary").click()
    assert await folded.locator("ol li").count() >= 2
    # Cells start level: a history's first line with the row's other cells.
    tops = await page.locator("table:has(#past-caption) tbody tr").first.evaluate(
        "tr => [...tr.children].map(c => c.firstElementChild ?"
        " c.firstElementChild.getBoundingClientRect().top : c.getBoundingClientRect().top)"
    )
    assert max(tops) - min(tops) <= 8, tops
