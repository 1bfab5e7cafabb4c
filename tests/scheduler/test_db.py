"""Migrations, model/migration drift, and the query plans the dispatcher relies on."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.db import is_migrated, is_sqlite, migrate
from scheduler.models import Base, Patient, Reminder
from scheduler.outbox import due_reminders

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TABLES = {
    "patient",
    "course",
    "consent",
    "invite",
    "reminder",
    "delivery_event",
    "acknowledgement",
    "staff_user",
    "audit_event",
}


async def test_migrate_from_empty_to_head_twice(engine: AsyncEngine) -> None:
    assert not await is_migrated(engine)
    await migrate(engine)
    assert await is_migrated(engine)
    await migrate(engine)  # safe to repeat
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables >= TABLES | {"alembic_version"}


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(db: AsyncEngine) -> None:
    async with db.connect() as connection:
        assert await connection.run_sync(_drift) == []


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: AsyncEngine) -> None:
    if not is_sqlite(db):
        return
    async with db.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def _fill_queue(db: AsyncEngine, reminders: int) -> None:
    async with db.begin() as connection:
        patient_id = (
            await connection.execute(
                insert(Patient).returning(Patient.id),
                [
                    {
                        "label": "P-1",
                        "locale": "en",
                        "timezone": "UTC",
                        "send_time": time(9),
                        "cbp": False,
                        "cervix": False,
                        "prophylaxis_days": 30,
                        "status": "active",
                        "plan_version": 1,
                        "created_at": NOW,
                    }
                ],
            )
        ).scalar_one()
        start = datetime(2026, 1, 1, 9, tzinfo=UTC)
        rows = [
            {
                "patient_id": patient_id,
                "kind": "labs_monthly",
                "occurrence": f"m{n}",
                "local_date": date(2026, 1, 1),
                "due_at": start + timedelta(hours=n),
                "status": "sent" if n % 10 else "planned",
                "plan_version": 1,
                # Most rows are finished and out of the queue, as in a live database.
                "ready_at": None if n % 10 else start + timedelta(hours=n),
                "attempts": 0,
                "created_at": NOW,
            }
            for n in range(reminders)
        ]
        await connection.execute(insert(Reminder), rows)
        if not is_sqlite(db):
            await connection.execute(text("ANALYZE reminder"))


async def test_due_query_is_an_index_range_scan(db: AsyncEngine) -> None:
    await _fill_queue(db, 20_000)
    query = due_reminders(now=NOW, limit=100)
    async with db.connect() as connection:
        if is_sqlite(db):
            compiled = query.compile(db.sync_engine, compile_kwargs={"literal_binds": True})
            plan = (await connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))).all()
            details = " ".join(row[-1] for row in plan)
            assert details.startswith("SEARCH reminder USING"), details
            assert "INDEX ix_reminder_ready_at (ready_at<?)" in details, details
            assert "TEMP B-TREE" not in details, details  # no sort: the index order
            assert "SCAN reminder" not in details
        else:
            locked = query.with_for_update(skip_locked=True)
            compiled = locked.compile(db.sync_engine, compile_kwargs={"literal_binds": True})
            plan = (await connection.execute(text(f"EXPLAIN {compiled}"))).scalars().all()
            details = "\n".join(str(line) for line in plan)
            assert "Index Scan using ix_reminder_ready_at on reminder" in details, details
            assert "Seq Scan" not in details
            assert "Sort" not in details, details  # the index order, ties by id included
        assert len((await connection.execute(query)).all()) == 100


async def test_the_cervix_flag_starts_as_the_cbp_answer(engine: AsyncEngine) -> None:
    """Migration 0004: existing patients keep the screening line they had (it followed CBP)."""
    await migrate(engine, revision="0003")
    async with engine.begin() as connection:
        for label, cbp in (("P-cbp", True), ("P-not", False)):
            await connection.execute(
                text(
                    "INSERT INTO patient (label, locale, timezone, send_time, cbp, "
                    "prophylaxis_days, status, plan_version, created_at) VALUES "
                    "(:label, 'en', 'UTC', '09:00:00', :cbp, 30, 'active', 1, :now)"
                ),
                {"label": label, "cbp": cbp, "now": NOW},
            )
    await migrate(engine)
    async with engine.connect() as connection:
        flags: dict[str, object] = dict(
            (await connection.execute(text("SELECT label, cervix FROM patient"))).all()
        )
    assert {label: bool(value) for label, value in flags.items()} == {"P-cbp": True, "P-not": False}
