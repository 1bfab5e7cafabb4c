"""Kill a real ``remindbot run`` with SIGKILL in the middle of sending, again and again.

    python bench/crash_bench.py [--db sqlite|postgresql|both] [--reminders 6000] [--crashes 5]

Each patient (its own chat) has one reminder, all due at the start. ``remindbot run`` sends
them at the default 30 per second to the fake Bot API (in this process: Telegram is not the
bot's). After every ``reminders / (crashes + 1)`` sends, give or take a fixed random offset
(or a second later, if the stranded reminders of the crash before took longer to go out),
the bot gets SIGKILL and a new one is started at once. At the end every chat must have its
reminder (lost: 0). Prints the duplicates per crash (target: at most the sends in flight,
5 at 30/s), whether each duplicate is marked in its history ("resent: claim abandoned"),
and the longest wait of a reminder stranded by a crash, from the restart until it was sent
(target ≤ 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ["PTB_TIMEDELTA"] = "1"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.dispatch_bench import FIRST_CHAT, TOKEN, add_due  # noqa: E402
from scheduler import outbox  # noqa: E402
from scheduler.db import create_engine, migrate, session_factory  # noqa: E402
from scheduler.models import DeliveryEvent, Patient, Reminder  # noqa: E402
from tests.fake_bot_api import FakeBotApi  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def sends_per_chat(server: FakeBotApi) -> Counter[int]:
    return Counter(
        int(call.chat_id)
        for call in server.calls_to("sendMessage")
        if call.status == 200 and call.chat_id is not None
    )


async def start(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )


async def wait_until(condition: object, limit: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the bot")
        await asyncio.sleep(0.05)


async def run(kind: str, reminders: int, crashes: int, postgres_url: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="crash_bench_") as folder:
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(folder) / 'remindbot.db'}"
            name = None
        else:
            name = f"remindbot_crash_{uuid.uuid4().hex[:8]}"
            admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            await admin.dispose()
            url = make_url(postgres_url).set(database=name).render_as_string(False)
        engine = create_engine(url)
        try:
            return await crash_run(kind, engine, url, reminders, crashes)
        finally:
            await engine.dispose()
            if name is not None:
                admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
                async with admin.connect() as connection:
                    await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                await admin.dispose()


async def crash_run(kind: str, engine: object, url: str, reminders: int, crashes: int) -> bool:
    from sqlalchemy.ext.asyncio import AsyncEngine

    assert isinstance(engine, AsyncEngine)
    await migrate(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    await add_due(sessions, [[now - timedelta(minutes=1)]] * reminders, created_at=now)
    async with FakeBotApi() as server:
        server.max_long_poll = 1.0
        env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.base_url,
            "DATABASE_URL": url,
            "REMINDBOT_TICK_SECONDS": "1",
            "REMINDBOT_HTTP_PORT": "0",
            "REMINDBOT_LOG_LEVEL": "WARNING",
        }
        step = reminders // (crashes + 1)
        waits: list[float] = []
        bot = await start(env)
        for crash in range(crashes):
            # Every ``step`` sends, or, when waiting for the stranded ones took that long,
            # a second's worth of sends later: not at the very moment a stranded reminder
            # went out again, which would count one in-flight send twice over.
            # Not a multiple of the batch size: a kill between two batches strands nothing.
            jitter = random.Random(crash).randrange(step // 2)
            target = max((crash + 1) * step + jitter, len(sends_per_chat(server)) + 30)
            if target > reminders - 30:
                raise SystemExit(
                    f"{reminders} reminders are too few for {crashes} crashes: each one "
                    "takes some 20 s of sends (30/s) before its stranded reminders go out"
                )
            await wait_until(lambda t=target: len(sends_per_chat(server)) >= t, 300)
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
            async with sessions() as session:
                stranded = set(
                    await session.scalars(
                        select(Patient.chat_id)
                        .join(Reminder, Reminder.patient_id == Patient.id)
                        .where(Reminder.status == "sending")
                    )
                )
            before = sends_per_chat(server)
            bot = await start(env)
            restarted = time.monotonic()
            await wait_until(
                lambda b=before, s=stranded: all(
                    sends_per_chat(server)[c] > b[c] for c in s if c is not None
                ),
                120,
            )
            waits.append(time.monotonic() - restarted if stranded else 0.0)
            print(
                f"  crash {crash + 1}: {len(stranded)} stranded, "
                f"sent again {waits[-1]:.1f} s after the restart"
            )
        await wait_until(lambda: len(sends_per_chat(server)) >= reminders, 600)
        bot.send_signal(signal.SIGTERM)
        await asyncio.wait_for(bot.wait(), 60)
        per_chat = sends_per_chat(server)
    expected = {FIRST_CHAT + n for n in range(reminders)}
    lost = len(expected - set(per_chat))
    twice = {chat for chat, count in per_chat.items() if count > 1}
    duplicates = sum(per_chat[chat] - 1 for chat in twice)
    async with sessions() as session:
        marked = set(
            await session.scalars(
                select(Patient.chat_id)
                .join(Reminder, Reminder.patient_id == Patient.id)
                .join(DeliveryEvent, DeliveryEvent.reminder_id == Reminder.id)
                .where(DeliveryEvent.detail.in_([outbox.ABANDONED]))
            )
        )
    print(
        f"{kind:10} {reminders:,} reminders, {crashes} kills: lost {lost}, duplicates {duplicates} "
        f"({duplicates / crashes:.1f} per crash, target ≤ 5), marked in their history "
        f"{len(twice & marked)} of {len(twice)}, longest stranded wait {max(waits):.1f} s "
        "(target ≤ 30 s)"
    )
    return lost == 0 and duplicates / crashes <= 5 and max(waits) <= 30 and twice <= marked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--reminders", type=int, default=6000)
    parser.add_argument("--crashes", type=int, default=5)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ok = [asyncio.run(run(kind, args.reminders, args.crashes, args.postgres_url)) for kind in kinds]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
