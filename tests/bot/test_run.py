"""``remindbot run`` as a real process: polling, webhook, and stopping on SIGTERM."""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, update

from scheduler import store
from scheduler.db import create_engine, migrate, session_factory
from scheduler.models import DeliveryEvent, Reminder
from scheduler.validation import build_profile
from tests.bot.conftest import TOKEN
from tests.conftest import team_with_coordinator
from tests.fake_bot_api import FakeBotApi, FakeUser

STRANGER = FakeUser(id=9090, first_name="Sam", language_code="en")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def remindbot_run(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``remindbot run`` in a child process; killed if the test did not stop it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**os.environ, "PTB_TIMEDELTA": "1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def bot_env(api: FakeBotApi, database: Path, **extra: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "REMINDBOT_HTTP_PORT": "0",  # any free port: tests run side by side
        **extra,
    }


async def test_run_without_token_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", "TELEGRAM_BOT_TOKEN": ""}
    environment = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**environment, **{k: v for k, v in env.items() if v}},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1
    assert "TELEGRAM_BOT_TOKEN is not set" in lines[0]
    assert "@BotFather" in lines[0]


async def test_polling_answers_and_sigterm_finishes_cleanly(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    now = datetime.now(UTC)
    await _patients_with_due_reminders(database, count=30, now=now)
    env = bot_env(fake_bot_api, database, REMINDBOT_TICK_SECONDS="0.5", REMINDBOT_RATE_LIMIT="5")
    fake_bot_api.max_long_poll = 0.5  # SIGTERM waits for the poll in flight
    async with remindbot_run(env) as process:
        reply_to = len(fake_bot_api.messages(STRANGER.id))
        await fake_bot_api.wait_for("getUpdates", timeout=20, done=False)
        await fake_bot_api.send_text(STRANGER, "/help")
        answer = await fake_bot_api.wait_for_message(STRANGER.id, count=reply_to + 1, timeout=10)
        assert "ask your care team" in (answer.text or "")
        # A batch of 30 at 5 per second is in flight: stop the process in the middle.
        await fake_bot_api.wait_until(
            lambda: len(fake_bot_api.calls_to("sendMessage")) >= 4, timeout=15
        )
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0
        assert process.stderr is not None
        log = await process.stderr.read()
    # Ticks fired while the batch was being sent; they returned at once, without a warning.
    assert b"maximum number of running instances" not in log

    sent_to_patients = [
        call for call in fake_bot_api.calls_to("sendMessage") if call.chat_id != STRANGER.id
    ]
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with session_factory(engine)() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(Reminder.status, func.count())
                        .where(Reminder.ready_at.is_not(None) | (Reminder.status != "planned"))
                        .group_by(Reminder.status)
                    )
                ).all()
            )
            released = await session.scalar(
                select(func.count())
                .select_from(DeliveryEvent)
                .where(DeliveryEvent.detail == "released before sending")
            )
    finally:
        await engine.dispose()
    assert "sending" not in statuses  # nothing left claimed
    assert statuses.get("sent", 0) == len(sent_to_patients)  # every send was recorded
    assert 0 < len(sent_to_patients) < 30
    # Released as they were, planned and queued: none of them was tried.
    assert statuses.get("planned", 0) == released == 30 - len(sent_to_patients)


async def test_a_backlog_goes_out_without_waiting_for_the_next_tick(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """More than two batches due at once (a clinic's 9:00, a restart after an outage): one
    tick sends them all, not one batch of 200 per tick interval."""
    database = tmp_path / "bot.db"
    await _patients_with_due_reminders(database, count=450, now=datetime.now(UTC))
    env = bot_env(fake_bot_api, database, REMINDBOT_TICK_SECONDS="300", REMINDBOT_RATE_LIMIT="0")
    async with remindbot_run(env) as process:
        await fake_bot_api.wait_until(
            lambda: len(fake_bot_api.calls_to("sendMessage")) >= 450, timeout=60
        )
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0
    chats = {call.chat_id for call in fake_bot_api.calls_to("sendMessage")}
    assert len(chats) == 450


async def test_webhook_mode_checks_the_secret(fake_bot_api: FakeBotApi, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    env = bot_env(
        fake_bot_api,
        tmp_path / "bot.db",
        REMINDBOT_WEBHOOK_URL=url,
        REMINDBOT_WEBHOOK_SECRET="s3cret-token",
        REMINDBOT_HTTP_LISTEN="127.0.0.1",
        REMINDBOT_HTTP_PORT=str(port),
    )
    async with remindbot_run(env) as process:
        call = await fake_bot_api.wait_for("setWebhook", timeout=20)
        assert call.params["url"] == url
        assert call.params["secret_token"] == "s3cret-token"
        await fake_bot_api.send_text(STRANGER, "/help")  # delivered by POST to the webhook
        answer = await fake_bot_api.wait_for_message(STRANGER.id, timeout=10)
        assert "ask your care team" in (answer.text or "")
        assert not fake_bot_api.calls_to("getUpdates")

        async with aiohttp.ClientSession() as client:
            forged = {
                "update_id": 999,
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": 1, "type": "private"},
                    "text": "/help",
                },
            }
            for secret in ("wrong", None):
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                async with client.post(url, json=forged, headers=headers) as response:
                    assert response.status == 403
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0


async def _patients_with_due_reminders(database: Path, *, count: int, now: datetime) -> None:
    """``count`` consented patients, each with one reminder due a minute ago."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        profile, _ = build_profile(courses=[(date(2027, 6, 7), None)], timezone="UTC")
        await team_with_coordinator(sessions)
        async with sessions.begin() as session:
            enrolled = await store.enroll(
                session,
                enrolments=[store.Enrolment(f"P-{n}", "en", profile) for n in range(count)],
                actor="test",
                now=now,
                late_window=timedelta(hours=72),
            )
            for n, patient in enumerate(enrolled):
                invite = await store.find_invite(session, token=patient.invite_token, now=now)
                assert invite is not None
                await store.accept_consent(
                    session,
                    invite=invite,
                    chat_id=20_000 + n,
                    version=1,
                    text="consent",
                    locale="en",
                    now=now,
                )
            due = now - timedelta(minutes=1)
            await session.execute(update(Reminder).values(ready_at=None))
            first = select(func.min(Reminder.id)).group_by(Reminder.patient_id).scalar_subquery()
            await session.execute(
                update(Reminder).where(Reminder.id.in_(first)).values(ready_at=due, due_at=due)
            )
    finally:
        await engine.dispose()
