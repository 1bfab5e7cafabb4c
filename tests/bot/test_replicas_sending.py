"""Three ``remindbot run`` replicas on one PostgreSQL and one bot token, against a fake Bot
API that answers 429 beyond 30 messages per second and 1 per second per chat."""

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler import outbox
from scheduler.db import create_engine, migrate, session_factory
from scheduler.models import DeliveryEvent, Patient, Reminder
from scheduler.processes import BEAT_EVERY, DEAD_AFTER
from tests.bot.test_run import free_port
from tests.conftest import POSTGRES_URL, skip_or_fail
from tests.fake_bot_api import ApiCall, FakeBotApi

REMINDERS = 850
FIRST_CHAT = 40_000
KILL_AFTER = 250  # sends, once every replica sends
# The bots' rate, below the server's 30 per second: unshared, three replicas would send 60
# per second and be refused at once, while a busy test machine's delays (sends bunched on
# their way to the server) cannot turn a shared 20 into 30. bench/replicas_bench.py measures
# the replicas at the server's own limit.
RATE = 20


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A fresh PostgreSQL database (the replicas are other processes: a schema of the test
    database would not be theirs), migrated, with REMINDERS due reminders, one per chat."""
    if not POSTGRES_URL:
        skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    name = f"remindbot_replicas_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OSError as error:
        skip_or_fail(f"PostgreSQL at REMINDBOT_TEST_POSTGRES_URL is unreachable: {error}")
    finally:
        await admin.dispose()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    engine = create_engine(url)
    try:
        await migrate(engine)
        await _due(engine)
        yield url, engine
    finally:
        await engine.dispose()
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


async def _due(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    due = now - timedelta(minutes=1)
    async with session_factory(engine).begin() as session:
        await session.execute(
            insert(Patient),
            [
                {
                    "label": f"P-{n}",
                    "locale": "en",
                    "timezone": "UTC",
                    "send_time": clock_time(9),
                    "cbp": False,
                    "cervix": False,
                    "prophylaxis_days": 30,
                    "status": "active",
                    "chat_id": FIRST_CHAT + n,
                    "team_id": 1,
                    "plan_version": 1,
                    "created_at": now,
                }
                for n in range(REMINDERS)
            ],
        )
        await session.execute(
            insert(Reminder),
            [
                {
                    "patient_id": patient_id,
                    "kind": "labs_monthly",
                    "occurrence": "m0",
                    "local_date": date(2026, 1, 1),
                    "due_at": due,
                    "status": "planned",
                    "plan_version": 1,
                    "ready_at": due,
                    "attempts": 0,
                    "created_at": now,
                }
                for patient_id in await session.scalars(select(Patient.id))
            ],
        )


async def replica(api: FakeBotApi, url: str, n: int, log: Path) -> asyncio.subprocess.Process:
    """``remindbot run`` in webhook mode (only one process may poll a token), with a token
    of its own: the fake server limits all of them together and tells them apart by it."""
    port = free_port()
    env = {
        "PTB_TIMEDELTA": "1",
        "TELEGRAM_BOT_TOKEN": f"123456:replica-{n}",
        "TELEGRAM_API_BASE_URL": api.base_url,
        "DATABASE_URL": url,
        "REMINDBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
        "REMINDBOT_WEBHOOK_SECRET": "replicas-secret",
        "REMINDBOT_HTTP_LISTEN": "127.0.0.1",
        "REMINDBOT_HTTP_PORT": str(port),
        "REMINDBOT_TICK_SECONDS": "1",
        "REMINDBOT_RATE_LIMIT": str(RATE),
        "REMINDBOT_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as errors:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=errors,
        )


def accepted(api: FakeBotApi) -> list[ApiCall]:
    return [c for c in api.calls_to("sendMessage") if c.status == 200]


async def wait_until(condition: object, seconds: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.25)  # the fake server shares this loop: a light poll


def per_second(times: list[float], start: float, end: float) -> float:
    return sum(1 for t in times if start <= t < end) / (end - start)


async def test_replicas_keep_the_bots_limits_and_take_over_a_killed_ones_share(
    database: tuple[str, AsyncEngine], tmp_path: Path
) -> None:
    url, engine = database
    async with FakeBotApi() as api:
        api.enable_rate_limit(global_per_second=30, per_chat_per_second=1)
        bots = [await replica(api, url, n, tmp_path / f"replica-{n}.log") for n in range(3)]
        try:
            await wait_until(
                lambda: (
                    api.rate_limit.accepted >= KILL_AFTER
                    and len({c.token for c in accepted(api)}) == 3
                ),
                60,
            )
            bots[0].send_signal(signal.SIGKILL)
            await bots[0].wait()
            killed_at = time.monotonic()
            await wait_until(
                lambda: (
                    api.rate_limit.accepted >= REMINDERS
                    and len({c.chat_id for c in accepted(api)}) == REMINDERS
                ),
                90,
            )
        finally:
            for bot in bots[1:]:
                if bot.returncode is None:
                    bot.send_signal(signal.SIGTERM)
            for bot in bots:
                await asyncio.wait_for(bot.wait(), 30)
        sends = accepted(api)
        refused = [c for c in api.calls_to("sendMessage") if c.status == 429]
    assert [bot.returncode for bot in bots] == [-signal.SIGKILL, 0, 0]

    assert refused == []
    per_chat = Counter(c.chat_id for c in sends)
    assert set(per_chat) == {FIRST_CHAT + n for n in range(REMINDERS)}  # none lost
    async with session_factory(engine)() as session:
        abandoned = set(
            await session.scalars(
                select(Patient.chat_id)
                .join(Reminder, Reminder.patient_id == Patient.id)
                .join(DeliveryEvent, DeliveryEvent.reminder_id == Reminder.id)
                .where(DeliveryEvent.detail == outbox.ABANDONED)
            )
        )
        statuses = Counter((await session.scalars(select(Reminder.status))).all())
    assert statuses == {"sent": REMINDERS}
    # Only a send in flight when the replica was killed may have gone out twice.
    twice = {chat for chat, count in per_chat.items() if count > 1}
    assert twice <= abandoned
    assert len(twice) <= 5

    # The survivors send two shares until the killed one is found stopped, then all three.
    theirs = sorted(c.time for c in sends if c.token != "123456:replica-0")
    taken_back = killed_at + (DEAD_AFTER + BEAT_EVERY).total_seconds() + 2
    meanwhile = per_second(theirs, killed_at + 2, killed_at + 12)
    after = per_second(theirs, taken_back, taken_back + 4)
    assert meanwhile < RATE * 2 / 3 + 1
    assert after > 1.25 * meanwhile
