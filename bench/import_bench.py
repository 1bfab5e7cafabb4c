"""Import generated patients through ``remindbot import`` and print its speed.

    python bench/import_bench.py [--patients 10000] [--db sqlite|postgresql|both] [--rounds 1]

The CSV goes through the command itself (``bot.cli.main``, in this process, so its CPU time
is measured), into a fresh SQLite file or a fresh PostgreSQL database, in one transaction.
Prints wall and CPU time (this process's: SQLite works in a thread of it, PostgreSQL in its
server) and rows per second beside the load average, then checks that every patient and
every reminder arrived. Then it enrols single patients into the imported database, one
transaction each as a coordinator's /enroll does, and prints how long one takes.
PostgreSQL: ``--postgres-url`` (default $REMINDBOT_TEST_POSTGRES_URL); the benchmark
creates and drops a database of its own there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bot.cli import main as remindbot
from scheduler import planner, store
from scheduler.db import create_engine, session_factory
from scheduler.models import Patient, Reminder

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def csv_text(count: int) -> str:
    lines = ["label,locale,timezone,send_time,cbp,courses,prophylaxis_days,allow_early_course"]
    for n in range(count):
        start = date(2026, 1, 5) + timedelta(days=n % 300)
        cbp = "yes" if n % 2 else "no"
        lines.append(f"B-{n:06d},en,Europe/Berlin,09:00,{cbp},{start:%Y-%m-%d},30,no")
    return "\n".join(lines) + "\n"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def command(args: list[str]) -> None:
    try:
        remindbot(args)
    except SystemExit as done:
        if done.code:
            raise SystemExit(f"remindbot {args[0]} failed with exit code {done.code}") from None


async def counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            patients = await connection.scalar(select(func.count()).select_from(Patient))
            reminders = await connection.scalar(select(func.count()).select_from(Reminder))
        return int(patients or 0), int(reminders or 0)
    finally:
        await engine.dispose()


async def postgres_database(admin_url: str, name: str, *, create: bool) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            statement = f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE "{name}"'
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


async def enrol_one_by_one(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` single enrolments took (a transaction each, committed)."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    profile = planner.Profile(
        courses=(planner.Course(date(2026, 3, 2), 5),),
        timezone=ZoneInfo("Europe/Berlin"),
        send_time=clock_time(9, 0),
        cbp=True,
    )
    took = []
    try:
        for _ in range(count):
            enrolment = store.Enrolment(f"S-{uuid.uuid4().hex[:12]}", "en", profile)
            started = time.perf_counter()
            async with sessions.begin() as session:
                await store.enroll(
                    session,
                    enrolments=[enrolment],
                    actor="bench",
                    now=datetime.now(UTC),
                    late_window=timedelta(hours=72),
                )
            took.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    return took


def measure(kind: str, url: str, patients: int, folder: Path) -> None:
    source = folder / f"{kind}.csv"
    source.write_text(csv_text(patients), encoding="utf-8")
    os.environ["DATABASE_URL"] = url
    command(["migrate"])
    command(["grant", "1001", "coordinator"])  # every patient's team needs a coordinator
    cpu, wall = cpu_seconds(), time.perf_counter()
    command(["import", str(source), "--output", str(folder / f"{kind}-invites.csv")])
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    stored, reminders = asyncio.run(counts(url))
    assert stored == patients, f"{stored} of {patients} patients stored"
    assert reminders > patients * 60, f"only {reminders} reminders"
    rows = stored + reminders
    print(
        f"{kind:10} {patients:,} patients, {reminders:,} reminders: wall {wall:.1f} s, "
        f"CPU {cpu:.1f} s, {rows / wall:,.0f} rows/s; load average {load_average()}"
    )
    cpu = cpu_seconds()
    single = asyncio.run(enrol_one_by_one(url, 20))
    cpu = cpu_seconds() - cpu
    print(
        f"{kind:10} one patient's enrolment into it: median {statistics.median(single) * 1e3:.1f}"
        f" ms, slowest {max(single) * 1e3:.1f} ms wall, CPU {cpu / len(single) * 1e3:.1f} ms"
        f" (of {len(single)}, target <= 50 ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=1, help="each into a fresh database")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    os.environ.setdefault("REMINDBOT_BOT_USERNAME", "bench_bot")
    print(f"load average {load_average()}")
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            if args.db in {"sqlite", "both"}:
                url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
                measure("sqlite", url, args.patients, folder)
            if args.db in {"postgresql", "both"}:
                name = f"remindbot_bench_{uuid.uuid4().hex[:8]}"
                asyncio.run(postgres_database(args.postgres_url, name, create=True))
                try:
                    url = make_url(args.postgres_url).set(database=name).render_as_string(False)
                    measure("postgresql", url, args.patients, folder)
                finally:
                    asyncio.run(postgres_database(args.postgres_url, name, create=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
