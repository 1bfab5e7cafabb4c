"""The follow-up sweep's cost at 1,000 and 100,000 patients: it should not grow with them.

    python bench/sweep_bench.py [--small 1000] [--large 100000] [--db postgresql|sqlite|both]

Each patient gets 110 reminders (about 11 million rows at 100,000 patients), as after years
of monitoring: past tests confirmed or already followed up, future ones planned. The same
20 patients have one test each waiting for its first nudge, at every size. Prints the
sweep's wall time (median of 5 runs; the 20 candidates are reset between runs), the ratio
large/small (target ≤ 1.5), and on PostgreSQL the plan of the sweep's query (an index
scan of ``ix_reminder_followup``). Generating the large table takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.db import create_engine, migrate, session_factory
from scheduler.followups import sweep
from scheduler.models import Reminder, follow_up_predicate

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
CANDIDATES = 20
PER_PATIENT = 110

# Patient n's reminder k: month k from 2026-01-05; k <= 53 are in the past (before NOW).
PATIENTS_SQL = """
INSERT INTO patient (label, locale, timezone, send_time, cbp, cervix, prophylaxis_days,
                     status, chat_id, coordinator_id, team_id, plan_version, created_at)
SELECT 'S-' || g, 'en', 'Europe/Berlin', '09:00:00', false, false, 30, 'active', 100000 + g, 900, 1,
       1, '2025-12-01 00:00:00+00'
FROM {series}
"""
REMINDERS_SQL = """
INSERT INTO reminder (patient_id, kind, occurrence, local_date, due_at, status, plan_version,
                      attempts, followups, claim, created_at, first_sent_at, ready_at)
SELECT p.id,
       CASE WHEN k % 3 = 0 THEN 'thyroid_quarterly' ELSE 'labs_monthly' END,
       'm' || k,
       {day},
       {due},
       CASE WHEN k > 53 THEN 'planned'
            WHEN k % 2 = 0 THEN 'acknowledged' ELSE 'sent' END,
       1, 0,
       CASE WHEN k > 53 THEN 0 ELSE 3 END,
       0,
       '2025-12-01 00:00:00+00',
       CASE WHEN k > 53 THEN NULL ELSE {due} END,
       CASE WHEN k > 53 THEN {due} ELSE NULL END
FROM patient p CROSS JOIN {reminders}
"""


def series(db: str, count: int, name: str) -> str:
    if db == "postgresql":
        return f"generate_series(1, {count}) AS {name}({name[0]})"
    return (
        f"(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {count}) "
        f"SELECT x AS {name[0]} FROM s) AS {name}"
    )


def dates(db: str) -> tuple[str, str]:
    if db == "postgresql":
        return (
            "(DATE '2026-01-05' + make_interval(months => k::int))::date",
            "(TIMESTAMPTZ '2026-01-05 08:00:00+00' + make_interval(months => k::int))",
        )
    return (
        "date('2026-01-05', '+' || k || ' months')",
        "datetime('2026-01-05 08:00:00', '+' || k || ' months')",
    )


async def fill(engine: AsyncEngine, db: str, patients: int) -> None:
    day, due = dates(db)
    async with engine.begin() as connection:
        await connection.execute(text(PATIENTS_SQL.format(series=series(db, patients, "g"))))
        await connection.execute(
            text(REMINDERS_SQL.format(day=day, due=due, reminders=series(db, PER_PATIENT, "ks")))
        )
        if db == "postgresql":
            await connection.execute(text("ANALYZE reminder"))
            await connection.execute(text("ANALYZE patient"))


async def candidates(engine: AsyncEngine) -> list[int]:
    """The first CANDIDATES patients' test of 2030-05 is sent, unconfirmed, 27 days old."""
    async with engine.begin() as connection:
        ids = list(
            (
                await connection.execute(
                    select(Reminder.id).where(
                        Reminder.occurrence == "m52", Reminder.patient_id <= CANDIDATES
                    )
                )
            ).scalars()
        )
    return ids


async def reset(engine: AsyncEngine, ids: list[int]) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Reminder)
            .where(Reminder.id.in_(ids))
            .values(status="sent", followups=0, pending=None, ready_at=None, attempts=0)
        )


async def measure(engine: AsyncEngine, db: str, patients: int) -> float:
    await fill(engine, db, patients)
    ids = await candidates(engine)
    assert len(ids) == CANDIDATES, ids
    sessions = session_factory(engine)
    times = []
    for _ in range(5):
        await reset(engine, ids)
        started = time.perf_counter()
        report = await sweep(sessions, now=NOW)
        times.append(time.perf_counter() - started)
        assert report.alerted == CANDIDATES, report  # 27 days late: the coordinator's alert
    median = statistics.median(times)
    async with engine.connect() as connection:
        rows = await connection.scalar(text("SELECT count(*) FROM reminder"))
        print(
            f"{db:10} {patients:>7,} patients, {rows:>11,} reminders: sweep {median * 1000:7.1f} ms"
        )
        if db == "postgresql":
            plan = await connection.execute(
                text(
                    "EXPLAIN SELECT reminder.id FROM reminder JOIN patient "
                    "ON patient.id = reminder.patient_id WHERE "
                    f"{follow_up_predicate('reminder')} AND reminder.due_at <= :cut "
                    "AND patient.status = 'active'"
                ),
                {"cut": NOW},
            )
            lines = [row[0] for row in plan.all()]
            print("           " + "\n           ".join(lines))
            assert any("ix_reminder_followup" in line for line in lines), "no index scan"
    return median


async def run(db: str, small: int, large: int, postgres_url: str) -> bool:
    figures = []
    for patients in (small, large):
        if db == "postgresql":
            name = f"remindbot_sweep_{uuid.uuid4().hex[:8]}"
            admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            from sqlalchemy.engine import make_url

            url = make_url(postgres_url).set(database=name).render_as_string(False)
            engine = create_engine(url)
            try:
                await migrate(engine)
                figures.append(await measure(engine, db, patients))
            finally:
                await engine.dispose()
                async with admin.connect() as connection:
                    await connection.execute(text(f'DROP DATABASE "{name}"'))
                await admin.dispose()
        else:
            with tempfile.TemporaryDirectory() as folder:
                engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'sweep.db'}")
                try:
                    await migrate(engine)
                    figures.append(await measure(engine, db, patients))
                finally:
                    await engine.dispose()
    ratio = figures[1] / figures[0]
    print(f"{db:10} ratio {large:,} / {small:,} patients: {ratio:.2f} (target ≤ 1.5)")
    return ratio <= 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ok = all(asyncio.run(run(db, args.small, args.large, args.postgres_url)) for db in kinds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
