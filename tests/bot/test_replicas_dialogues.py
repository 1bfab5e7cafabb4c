"""Conversations kept in the database, with real ``remindbot run`` processes: a restart in the
middle of one, and two webhook replicas taking turns at one conversation."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from scheduler import store
from scheduler.db import create_engine, migrate, session_factory
from scheduler.models import Dialogue, Patient
from scheduler.statuses import PatientStatus
from scheduler.validation import build_profile
from tests.bot.test_run import bot_env, free_port, remindbot_run
from tests.conftest import COORDINATOR_ID, POSTGRES_URL, skip_or_fail, team_with_coordinator
from tests.fake_bot_api import FakeBotApi, FakeUser, SentMessage

PATIENT = FakeUser(id=7001, first_name="Pat", language_code="en")
COORDINATOR = FakeUser(id=COORDINATOR_ID, first_name="Cora", language_code="en")
START_TIMEOUT = 30.0


async def _prepare(url: str) -> str:
    """A migrated database with a coordinator and one invited patient; the invite token."""
    engine = create_engine(url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        await team_with_coordinator(sessions)
        profile, _ = build_profile(courses=[(date(2027, 6, 7), None)], timezone="UTC")
        async with sessions.begin() as session:
            [enrolled] = await store.enroll(
                session,
                enrolments=[store.Enrolment("MS-001", "en", profile)],
                actor="test",
                now=datetime.now(UTC),
                late_window=timedelta(hours=72),
            )
        return enrolled.invite_token
    finally:
        await engine.dispose()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, as a deploy stops the bot; it must end cleanly."""
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == 0


async def _say(api: FakeBotApi, user: FakeUser, words: str) -> SentMessage:
    before = len(api.messages(user.id))
    await api.send_text(user, words)
    return await api.wait_for_message(user.id, count=before + 1, timeout=START_TIMEOUT)


async def _press(api: FakeBotApi, user: FakeUser, message: SentMessage, label: str) -> SentMessage:
    before = len(api.messages(user.id))
    await api.press_button(user, message, text=label)
    return await api.wait_for_message(user.id, count=before + 1, timeout=START_TIMEOUT)


async def _rows(url: str) -> tuple[list[Patient], int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            patients = list(await session.scalars(select(Patient).order_by(Patient.id)))
            dialogues = len(list(await session.scalars(select(Dialogue))))
        return patients, dialogues
    finally:
        await engine.dispose()


async def test_consent_goes_on_after_a_restart(fake_bot_api: FakeBotApi, tmp_path: Path) -> None:
    """The patient opens the invite, the bot is redeployed while they read the consent text,
    and "I agree" still works."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    token = await _prepare(url)
    env = bot_env(fake_bot_api, tmp_path / "bot.db", REMINDBOT_TICK_SECONDS="300")
    async with remindbot_run(env) as process:
        consent = await _say(fake_bot_api, PATIENT, f"/start {token}")
        assert [b.text for b in consent.buttons] == ["I agree", "I do not agree"]
        await _stop(process)
    async with remindbot_run(env) as process:
        thanks = await _press(fake_bot_api, PATIENT, consent, "I agree")
        assert (thanks.text or "").startswith("Thank you. Your reminders start now.")
        await _stop(process)
    [patient], dialogues = await _rows(url)
    assert (patient.status, patient.chat_id) == (PatientStatus.ACTIVE, PATIENT.id)
    assert dialogues == 0  # the consent step ended with the consent


async def test_an_enrolment_goes_on_after_a_restart(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    await _prepare(url)
    env = bot_env(fake_bot_api, tmp_path / "bot.db", REMINDBOT_TICK_SECONDS="300")
    async with remindbot_run(env) as process:
        await _say(fake_bot_api, COORDINATOR, "/enroll")
        language = await _say(fake_bot_api, COORDINATOR, "MS-002")
        assert "English" in [b.text for b in language.buttons]
        await _stop(process)
    async with remindbot_run(env) as process:
        # The button of the question asked before the restart is the answer to it.
        zone = await _press(fake_bot_api, COORDINATOR, language, "English")
        assert "Which time zone" in (zone.text or "")
        send_time = await _say(fake_bot_api, COORDINATOR, "Europe/Vienna")
        assert "At what local time" in (send_time.text or "")
        await _stop(process)
    patients, dialogues = await _rows(url)
    assert [p.label for p in patients] == ["MS-001"]  # nothing stored before the confirmation
    assert dialogues == 1


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for processes of their own, dropped afterwards."""
    if not POSTGRES_URL:
        skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    name = f"remindbot_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


class RoundRobin:
    """A load balancer in front of the replicas' webhooks: each update to the next one."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.served: Counter[int] = Counter()
        self.turn = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RoundRobin:
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._client = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        assert self._client is not None
        await self._client.close()
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-telegram")}
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
        async with self._client.post(
            f"http://127.0.0.1:{port}/telegram", data=await request.read(), headers=headers
        ) as answer:
            body = await answer.read()
            if answer.status == 200:
                self.served[port] += 1
            return web.Response(status=answer.status, body=body)


async def test_two_webhook_replicas_take_turns_at_one_enrolment(
    fake_bot_api: FakeBotApi, postgres_url: str
) -> None:
    """Every update of one enrolment goes to the other replica than the one before: the
    enrolment completes, as if one process had taken them all."""
    await _prepare(postgres_url)
    ports = [free_port(), free_port()]
    async with RoundRobin(ports) as balancer:
        url = f"http://127.0.0.1:{balancer.port}/telegram"

        def env(port: int) -> dict[str, str]:
            return {
                **bot_env(fake_bot_api, Path("unused.db")),
                "DATABASE_URL": postgres_url,
                "REMINDBOT_TICK_SECONDS": "300",
                "REMINDBOT_WEBHOOK_URL": url,
                "REMINDBOT_WEBHOOK_SECRET": "s3cret-token",
                "REMINDBOT_HTTP_LISTEN": "127.0.0.1",
                "REMINDBOT_HTTP_PORT": str(port),
            }

        async with remindbot_run(env(ports[0])) as first, remindbot_run(env(ports[1])) as second:
            # Both replicas are up once each has set the webhook (to the balancer).
            await fake_bot_api.wait_until(
                lambda: len(fake_bot_api.calls_to("setWebhook")) >= 2, timeout=START_TIMEOUT
            )
            await _both_answer(fake_bot_api, balancer)
            balancer.served.clear()

            await _say(fake_bot_api, COORDINATOR, "/enroll")
            await _say(fake_bot_api, COORDINATOR, "MS-003")
            for answer in ["en", "Europe/Vienna", "09:00", "no", "yes", "2026-01-05", "5"]:
                last = await _say(fake_bot_api, COORDINATOR, answer)
            summary = await _press(fake_bot_api, COORDINATOR, last, "Skip")
            assert "Confirm" in [b.text for b in summary.buttons]
            await _press(fake_bot_api, COORDINATOR, summary, "Confirm")
            # The invite link follows the confirmation as its own message (with the QR code).
            await fake_bot_api.wait_until(
                lambda: any(
                    "is enrolled" in (m.text or m.caption or "")
                    for m in fake_bot_api.messages(COORDINATOR.id)
                ),
                timeout=START_TIMEOUT,
            )
            await _stop(first)
            await _stop(second)
    # Each replica took half of the 11 updates.
    assert sorted(balancer.served.values()) == [5, 6]
    patients, dialogues = await _rows(postgres_url)
    assert [p.label for p in patients] == ["MS-001", "MS-003"]
    enrolled = patients[1]
    assert (enrolled.locale, enrolled.timezone, enrolled.cbp, enrolled.cervix) == (
        "en",
        "Europe/Vienna",
        False,
        True,
    )
    assert dialogues == 0


async def _both_answer(api: FakeBotApi, balancer: RoundRobin) -> None:
    """Wait until the balancer has reached both replicas with an answered /help."""
    stranger = FakeUser(id=7999, first_name="Sam", language_code="en")
    while len(balancer.served) < len(balancer.ports):
        await _say(api, stranger, "/help")
