"""The real bot Application, polling the fake Bot API server, on a SQLite file."""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import build_application, prepare_database
from bot.context import RemindbotApp
from bot.settings import Settings, load_settings
from scheduler import store
from scheduler.db import create_engine, session_factory
from scheduler.dispatcher import TickReport
from scheduler.statuses import Role
from scheduler.validation import build_profile
from tests.conftest import team_with_coordinator
from tests.fake_bot_api import FakeBotApi, FakeUser, SentMessage

TOKEN = "123456:TEST-token_abc"
# Generous: a busy machine must not turn a slow answer of the local fake server into a
# TimedOut. A test of Telegram timeouts sets its own (parametrize "request_timeout").
REQUEST_TIMEOUT = 10.0
ADMIN = FakeUser(id=1001, first_name="Ada", language_code="en")
# The default team's coordinator: patients enrolled without one of their own alert them.
TEAM_COORDINATOR = FakeUser(id=1900, first_name="Tess", language_code="en")


@dataclass
class TestClock:
    """A clock the test moves by hand."""

    current: datetime = datetime(2025, 12, 29, 8, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class Harness:
    app: RemindbotApp
    api: FakeBotApi
    sessions: async_sessionmaker[AsyncSession]
    clock: TestClock
    settings: Settings
    users: dict[int, FakeUser] = field(default_factory=dict)

    async def say(self, user: FakeUser, text: str, *, replies: int = 1) -> list[SentMessage]:
        """Send ``text`` as ``user`` and wait for the bot's ``replies`` answers."""
        before = len(self.api.messages(user.id))
        await self.api.send_text(user, text)
        await self.api.wait_for_message(user.id, count=before + replies)
        return self.api.messages(user.id)[before:]

    async def press(
        self, user: FakeUser, message: SentMessage, text: str, *, replies: int = 1
    ) -> list[SentMessage]:
        """Press the button labelled ``text`` and wait for ``replies`` new messages."""
        before = len(self.api.messages(user.id))
        press = await self.api.press_button(user, message, text=text)
        await self.api.wait_for_answer(press)
        if replies:
            await self.api.wait_for_message(user.id, count=before + replies)
        return self.api.messages(user.id)[before:]

    async def enroll(
        self,
        label: str = "MS-001",
        *,
        locale: str = "en",
        courses: list[tuple[date, int | None]] | None = None,
        timezone: str = "Europe/Berlin",
        cbp: bool = False,
        coordinator_id: int | None = None,
    ) -> store.Enrolled:
        profile, _ = build_profile(
            courses=courses or [(date(2026, 1, 5), None)], timezone=timezone, cbp=cbp
        )
        # Only a coordinator enrols; without one of their own, the team's is told.
        await team_with_coordinator(self.sessions, coordinator_id or TEAM_COORDINATOR.id)
        async with self.sessions.begin() as session:
            [enrolled] = await store.enroll(
                session,
                enrolments=[store.Enrolment(label, locale, profile, coordinator_id)],
                actor="test",
                now=self.clock.now(),
                late_window=self.settings.late_window,
            )
        return enrolled

    async def tick(self) -> TickReport:
        """One dispatcher tick at the harness clock's time."""
        assert self.app.bot_data.dispatcher is not None
        return await self.app.bot_data.dispatcher.tick()

    async def grant(self, user: FakeUser, role: Role) -> None:
        async with self.sessions.begin() as session:
            await store.grant(
                session, user_id=user.id, role=role, actor="test", now=self.clock.now()
            )

    async def consented(self, user: FakeUser, label: str = "MS-001", **kwargs: object) -> None:
        """Enrol ``label`` and go through invite and consent as ``user``."""
        enrolled = await self.enroll(label, **kwargs)  # type: ignore[arg-type]
        [consent] = await self.say(user, f"/start {enrolled.invite_token}")
        await self.press(user, consent, "I agree")


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
async def bot_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    yield engine
    await engine.dispose()


@pytest.fixture
def bot_settings(fake_bot_api: FakeBotApi, tmp_path: Path) -> Settings:
    return load_settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=fake_bot_api.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        REMINDBOT_ADMIN_IDS=str(ADMIN.id),
    )


@pytest.fixture
def request_timeout() -> float:
    """Seconds the bot waits for each Bot API answer."""
    return REQUEST_TIMEOUT


@pytest.fixture
async def harness(
    fake_bot_api: FakeBotApi,
    bot_settings: Settings,
    bot_engine: AsyncEngine,
    clock: TestClock,
    request_timeout: float,
) -> AsyncIterator[Harness]:
    """The bot running with long polling against the fake server."""
    await prepare_database(bot_engine, bot_settings, clock)
    app = build_application(
        settings=bot_settings, engine=bot_engine, clock=clock, timeout=request_timeout
    )
    assert app.job_queue is not None
    # Tests run the dispatcher themselves (harness.tick), at the times they choose: its jobs
    # are off before the start, which would run the first tick at once; so are the menus
    # (tests/bot/test_menus.py publishes them) and the housekeeping (run at the test clock's
    # times by the tests of what it does).
    for name in ("dispatcher", "follow-ups", "menus", "housekeeping"):
        for job in app.job_queue.get_jobs_by_name(name):
            job.enabled = False
    async with app:
        await app.start()
        try:
            assert app.updater is not None
            await app.updater.start_polling(timeout=dtm.timedelta(seconds=1), poll_interval=0)
            yield _running(app, fake_bot_api, bot_engine, clock, bot_settings)
        finally:
            # Whatever failed above, the application stops: a running one would make the
            # next test's start fail ("This Application is still running!").
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            await app.stop()


def _running(
    app: RemindbotApp,
    api: FakeBotApi,
    engine: AsyncEngine,
    clock: TestClock,
    settings: Settings,
) -> Harness:
    """The harness of a started application."""
    assert app.bot_data.dispatcher is not None
    app.bot_data.dispatcher.limiter = None  # tests of the limits set their own
    return Harness(app, api, session_factory(engine), clock, settings)
