"""Several ``remindbot run`` replicas on one PostgreSQL and one bot token, one killed midway.

    python bench/replicas_bench.py [--reminders 3000] [--replicas 3] [--no-kill]
                                   [--tick SECONDS] [--postgres-url URL]

Each patient (its own chat) has one reminder, all due at the start, in a fresh PostgreSQL
database (dropped at the end). The fake Bot API runs in this process and enforces Telegram's
30 messages per second overall and 1 per second per chat with 429s; the replicas are
``remindbot run`` child processes in webhook mode (each on its own port, so that none polls),
with the default rate limit (30 per second, the bot's: each replica takes its share). Each
replica has a token of its own, which the fake server does not tell apart for its limits:
the sends are attributed to a replica by it. With ``--kill`` (the default) the first replica
gets SIGKILL once a third of the reminders went out.

Prints the sends, the 429s, the chats sent to twice (and how many of them were in flight at
the kill, marked "resent: claim abandoned" in their history), the chats lost, the aggregate
rate from the first send to the last and over the best 30 s, as a fraction of 30/s, each
replica's rate before and after the kill, how long the survivors took to take back the
killed replica's share, CPU and wall time, and the load average. Targets: no 429, ≥ 90 %
of 30/s, no chat sent to twice but for the sends in flight at the kill, none lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

os.environ["PTB_TIMEDELTA"] = "1"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from scheduler import outbox  # noqa: E402
from scheduler.db import create_engine, migrate, session_factory  # noqa: E402
from scheduler.models import DeliveryEvent, Patient, Reminder  # noqa: E402
from scheduler.processes import DEAD_AFTER  # noqa: E402
from tests.fake_bot_api import ApiCall, FakeBotApi  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LIMIT = 30.0
FIRST_CHAT = 3_000_000
SECRET = "replicas-bench-secret"


def token(replica: int) -> str:
    return f"123456:replica-{replica}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def add_due(engine: AsyncEngine, count: int, *, now: datetime) -> None:
    """``count`` active patients of the default team, each with one reminder due a minute
    ago (chat ids from FIRST_CHAT on)."""
    due = now - timedelta(minutes=1)
    async with session_factory(engine).begin() as session:
        await session.execute(
            insert(Patient),
            [
                {
                    "label": f"R{n}",
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
                for n in range(count)
            ],
        )
        ids = list(await session.scalars(select(Patient.id)))
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
                for patient_id in ids
            ],
        )


async def start_replica(
    server: FakeBotApi, url: str, replica: int, tick: float
) -> asyncio.subprocess.Process:
    port = free_port()
    env = {
        "TELEGRAM_BOT_TOKEN": token(replica),
        "TELEGRAM_API_BASE_URL": server.base_url,
        "DATABASE_URL": url,
        "REMINDBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
        "REMINDBOT_WEBHOOK_SECRET": SECRET,
        "REMINDBOT_HTTP_LISTEN": "127.0.0.1",
        "REMINDBOT_HTTP_PORT": str(port),
        "REMINDBOT_TICK_SECONDS": str(tick),
        "REMINDBOT_LOG_LEVEL": "WARNING",
    }
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


def accepted(server: FakeBotApi) -> list[ApiCall]:
    return [c for c in server.calls_to("sendMessage") if c.status == 200 and c.chat_id is not None]


async def wait_until(condition: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)  # the fake server shares this process: a light poll


def best_window(times: Sequence[float], seconds: float) -> float:
    """The most sends within ``seconds``, per second."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best / seconds


def taken_back_at(times: Sequence[float], after: float, per_second: float) -> float | None:
    """The first moment after ``after`` by which the sends of the last two seconds reach
    ``per_second``."""
    start = 0
    for end, at in enumerate(times):
        while times[start] <= at - 2.0:
            start += 1
        if at > after + 2.0 and (end - start + 1) / 2.0 >= per_second:
            return at
    return None


def rate(times: Sequence[float], start: float, end: float) -> float:
    return sum(1 for t in times if start <= t < end) / (end - start) if end > start else 0.0


async def run(args: argparse.Namespace) -> bool:
    name = f"remindbot_replicas_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = make_url(args.postgres_url).set(database=name).render_as_string(False)
    engine = create_engine(url)
    try:
        await migrate(engine)
        await add_due(engine, args.reminders, now=datetime.now(UTC))
        return await measure(args, engine, url)
    finally:
        await engine.dispose()
        admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


async def measure(args: argparse.Namespace, engine: AsyncEngine, url: str) -> bool:
    reminders, replicas = args.reminders, args.replicas
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    async with FakeBotApi() as server:
        server.enable_rate_limit(global_per_second=int(LIMIT), per_chat_per_second=1)
        started = time.monotonic()
        bots = list(
            await asyncio.gather(
                *(start_replica(server, url, n, args.tick) for n in range(replicas))
            )
        )
        killed_at: float | None = None
        try:
            if args.kill:
                await wait_until(lambda: server.rate_limit.accepted >= reminders // 3, 300, "sends")
                bots[0].send_signal(signal.SIGKILL)
                await bots[0].wait()
                killed_at = time.monotonic()
            await wait_until(
                lambda: (
                    server.rate_limit.accepted >= reminders
                    and len({c.chat_id for c in accepted(server)}) >= reminders
                ),
                reminders / 10 + 120,
                "every chat",
            )
            await asyncio.sleep(2.0)  # any late second send
        finally:
            for bot in bots:
                if bot.returncode is None:
                    bot.send_signal(signal.SIGTERM)
            for bot in bots:
                try:
                    await asyncio.wait_for(bot.wait(), 30)
                except TimeoutError:
                    bot.kill()
                    await bot.wait()
        wall = time.monotonic() - started
        sends = accepted(server)
        refused = [c for c in server.calls_to("sendMessage") if c.status == 429]
        limited = len(refused)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_after = resource.getrusage(resource.RUSAGE_SELF)

    per_chat = Counter(int(c.chat_id) for c in sends if c.chat_id is not None)
    lost = reminders - len({chat for chat in per_chat if chat - FIRST_CHAT in range(reminders)})
    twice = {chat for chat, count in per_chat.items() if count > 1}
    async with session_factory(engine)() as session:
        marked = set(
            await session.scalars(
                select(Patient.chat_id)
                .join(Reminder, Reminder.patient_id == Patient.id)
                .join(DeliveryEvent, DeliveryEvent.reminder_id == Reminder.id)
                .where(DeliveryEvent.detail == outbox.ABANDONED)
            )
        )
    times = sorted(c.time for c in sends)
    span = times[-1] - times[0]
    aggregate = (len(times) - 1) / span / LIMIT
    best = best_window(times, 30.0) / LIMIT
    by_replica = {n: sorted(c.time for c in sends if c.token == token(n)) for n in range(replicas)}
    # Steady: from the moment every replica has sent (the joiners wait a beat first).
    steady = max(t[0] for t in by_replica.values() if t)

    print(
        f"{reminders:,} reminders, {replicas} replicas{', one killed' if killed_at else ''}: "
        f"{len(sends):,} sends, {limited} × 429, lost {lost}, chats sent to twice "
        f"{len(twice)} (in flight at the kill, marked abandoned: {len(twice & marked)})"
    )
    print(
        f"aggregate {aggregate * LIMIT:.1f}/s = {aggregate:.0%} of {LIMIT:.0f}/s from the first "
        f"send to the last ({span:.1f} s); best 30 s {best * LIMIT:.1f}/s = {best:.0%}"
    )
    first = times[0]
    print(
        f"every replica sending {steady - first:.1f} s after the first send"
        + (f", the kill at {killed_at - first:.1f} s" if killed_at else "")
    )
    if refused:
        print(
            "429s at (s after the first send): "
            + ", ".join(f"{c.time - first:.1f} (replica {c.token[-1]})" for c in refused[:20])
        )
        for c in refused[:5]:
            recent = [s for s in sends if c.time - 1.0 < s.time <= c.time]
            print(
                f"  in the second before {c.time - first:.2f}: {len(recent)} accepted, by replica "
                f"{dict(sorted(Counter(s.token[-1] for s in recent).items()))}"
            )
    survivors = [n for n in range(replicas) if not (killed_at and n == 0)]
    if killed_at is not None:
        theirs = sorted(t for n in survivors for t in by_replica[n])
        back = taken_back_at(theirs, killed_at, 0.85 * LIMIT)
        end = times[-1]
        before = ", ".join(f"{rate(by_replica[n], steady, killed_at):.1f}" for n in range(replicas))
        meanwhile = ", ".join(
            f"{rate(by_replica[n], killed_at, back or end):.1f}" for n in survivors
        )
        after = (
            ", ".join(f"{rate(by_replica[n], back, end):.1f}" for n in survivors) if back else "-"
        )
        print(f"per replica, /s: before the kill {before}")
        print(f"  after it, until the share was taken back: {meanwhile}; then: {after}")
        print(
            "killed replica's share taken back "
            + (f"{back - killed_at:.1f} s after the kill" if back else "never")
            + f" (DEAD_AFTER {DEAD_AFTER.total_seconds():.0f} s, then the next beat)"
        )
    else:
        steady_rates = ", ".join(
            f"{rate(by_replica[n], steady, times[-1]):.1f}" for n in range(replicas)
        )
        print(f"per replica, /s: {steady_rates}")
    children = (cpu_after.ru_utime + cpu_after.ru_stime) - (
        cpu_before.ru_utime + cpu_before.ru_stime
    )
    own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    print(
        f"CPU: replicas {children:.1f} s together, fake Bot API and bench {own:.1f} s; "
        f"wall {wall:.1f} s from the replicas' start"
    )
    return limited == 0 and lost == 0 and twice <= marked and best >= 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kill", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tick", type=float, default=1.0, help="REMINDBOT_TICK_SECONDS")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    if args.kill and args.replicas < 2:
        parser.error("--kill needs at least 2 replicas")
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    ok = asyncio.run(run(args))
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
