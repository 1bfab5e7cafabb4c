"""The web console in a real browser: Debian's Chromium driven by Playwright, against the
bot's real web server on 127.0.0.1 and a seeded SQLite file.

Nothing is downloaded: Playwright launches the Chromium at REMINDBOT_TEST_CHROMIUM
(default /usr/bin/chromium, ``apt-get install chromium``). Without one the tests skip;
with REMINDBOT_TEST_REQUIRE_BROWSER=1 (set by .ci/run) they fail instead.

The browser is started once per module and the clinic seeded once per run (a template file
copied for each test): the tests of a module share the module's event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from bot.context import Services
from bot.settings import Settings, load_settings
from bot.web.server import WebServer
from scheduler import web_access
from scheduler.clock import SystemClock
from scheduler.db import create_engine, session_factory
from scheduler.dispatcher import Dispatcher
from tests.web.seed import LATE_WINDOW, Clinic, NoSender, Person, seed

CHROMIUM = Path(os.environ.get("REMINDBOT_TEST_CHROMIUM", "/usr/bin/chromium"))
# CI sets this so that a missing browser fails the run instead of skipping these tests.
REQUIRE_BROWSER = os.environ.get("REMINDBOT_TEST_REQUIRE_BROWSER") == "1"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
TIMEOUT_MS = 15_000  # a busy CI machine renders slowly; nothing here should take long


def _have_chromium() -> bool:
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


def skip_or_fail(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (REMINDBOT_TEST_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _chromium() -> None:
    """Skip (or fail) before seeding anything when there is no browser to drive."""
    if not _have_chromium():
        skip_or_fail(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set REMINDBOT_TEST_CHROMIUM)"
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium (Playwright runs it without its sandbox, as root can)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def clinic_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Clinic]:
    """The seeded clinic (tests/web/seed.py), once per run: a SQLite file to copy."""
    path = tmp_path_factory.mktemp("clinic") / "clinic.db"

    async def fill() -> Clinic:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            return await seed(engine, now=datetime.now(UTC) - timedelta(minutes=1))
        finally:
            await engine.dispose()

    return path, asyncio.run(fill())


@dataclass
class Console:
    """The running console: its address, its database, and sign-in links for the staff."""

    base_url: str
    clinic: Clinic
    services: Services
    database: Path

    @property
    def settings(self) -> Settings:
        assert self.services.settings is not None
        return self.services.settings

    def url(self, path: str) -> str:
        return self.base_url + path

    async def login_link(self, who: str | Person, *, issued: datetime | None = None) -> str:
        """A one-time link from ``/web`` for a seeded staff member (``seed.STAFF``)."""
        person = self.clinic.staff[who] if isinstance(who, str) else who
        assert self.services.sessions is not None
        async with self.services.sessions.begin() as session:
            token = await web_access.issue_login(
                session, user_id=person.user_id, now=issued or datetime.now(UTC)
            )
        return self.url(f"/login?token={token}")

    async def sign_in(self, page: Page, who: str | Person) -> None:
        """Open a fresh link in ``page``: the console's home page follows."""
        response = await page.goto(await self.login_link(who))
        assert response is not None
        assert response.ok, await page.content()


@pytest_asyncio.fixture(loop_scope="module")
async def console(clinic_template: tuple[Path, Clinic], tmp_path: Path) -> AsyncIterator[Console]:
    """The bot's web server (bot.web.server) on 127.0.0.1, a free port, over a copy of
    the seeded clinic."""
    template, clinic = clinic_template
    database = tmp_path / "console.db"
    shutil.copyfile(template, database)
    url = f"sqlite+aiosqlite:///{database}"
    settings = load_settings(
        DATABASE_URL=url, REMINDBOT_DEFAULT_TIMEZONE="Europe/Berlin", REMINDBOT_DEFAULT_LOCALE="en"
    )
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = SystemClock()
    dispatcher = Dispatcher(
        sessions=sessions, sender=NoSender(), clock=clock, late_window=LATE_WINDOW
    )
    services = Services(settings=settings, sessions=sessions, clock=clock, dispatcher=dispatcher)
    server = WebServer(services, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield Console(f"http://127.0.0.1:{server.port}", clinic, services, database)
    finally:
        await server.stop()
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) at a desktop size, in English."""
    created = await browser.new_context(
        viewport=DESKTOP, locale="en-US", accept_downloads=True, timezone_id="Europe/Berlin"
    )
    created.set_default_timeout(TIMEOUT_MS)
    try:
        yield created
    finally:
        await created.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
