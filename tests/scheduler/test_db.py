"""Migrations, model/migration drift, and the query plans the dispatcher relies on."""

import os
import stat
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.db import create_engine, is_migrated, is_sqlite, migrate
from scheduler.models import Base, Patient, Reminder
from scheduler.outbox import due_reminders

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TABLES = {
    "team",
    "team_member",
    "erased_count",
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


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


async def test_a_new_sqlite_file_and_its_log_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    """It holds every patient's data: 0600 whatever the umask (SQLite gives the -wal and
    -shm files the mode of the database file)."""
    path = tmp_path / "new.db"
    old = os.umask(0o022)
    try:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        modes = _modes(tmp_path)
        await engine.dispose()
    finally:
        os.umask(old)
    assert modes["new.db"] == 0o600
    assert modes.get("new.db-wal", 0o600) == 0o600
    assert set(modes.values()) == {0o600}, modes


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
                        "team_id": 1,
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


async def test_the_care_teams_migration_keeps_a_one_team_clinic_working(
    engine: AsyncEngine,
) -> None:
    """Migration 0006: everyone into the team "default"; a patient erased under the old rule
    (label and chat gone, history kept) becomes counts."""
    await migrate(engine, revision="0005")
    async with engine.begin() as connection:
        for user, role in ((11, "coordinator"), (12, "staff"), (13, "admin")):
            await connection.execute(
                text(
                    "INSERT INTO staff_user (telegram_user_id, role, granted_at, granted_by) "
                    "VALUES (:user, :role, :now, 'test')"
                ),
                {"user": user, "role": role, "now": NOW},
            )
        for label, forgotten in (("P-kept", None), (None, NOW)):
            await connection.execute(
                text(
                    "INSERT INTO patient (label, locale, timezone, send_time, cbp, cervix, "
                    "prophylaxis_days, status, plan_version, created_at, forgotten_at) VALUES "
                    "(:label, 'en', 'UTC', '09:00:00', false, false, 30, 'withdrawn', 1, :now, "
                    ":forgotten)"
                ),
                {"label": label, "now": NOW, "forgotten": forgotten},
            )
        gone = (
            await connection.execute(text("SELECT id FROM patient WHERE label IS NULL"))
        ).scalar_one()
        for n, status in enumerate(("sent", "sent", "cancelled")):
            await connection.execute(
                text(
                    "INSERT INTO reminder (patient_id, kind, occurrence, local_date, due_at, "
                    "status, plan_version, attempts, followups, claim, created_at) VALUES "
                    "(:patient, 'labs_monthly', :occurrence, '2026-02-05', :now, :status, 1, 0, "
                    "0, 0, :now)"
                ),
                {"patient": gone, "occurrence": f"m{n}", "status": status, "now": NOW},
            )
        reminder = (await connection.execute(text("SELECT min(id) FROM reminder"))).scalar_one()
        await connection.execute(
            text(
                "INSERT INTO delivery_event (reminder_id, status, at, repeats) "
                "VALUES (:reminder, 'sent', :now, 1)"
            ),
            {"reminder": reminder, "now": NOW},
        )
    await migrate(engine)
    async with engine.connect() as connection:
        members = (await connection.execute(text("SELECT user_id FROM team_member"))).all()
        patients = (await connection.execute(text("SELECT label, team_id FROM patient"))).all()
        counts = (
            await connection.execute(
                text("SELECT kind, status, reminders FROM erased_count ORDER BY kind, status")
            )
        ).all()
        left = (await connection.execute(text("SELECT count(*) FROM reminder"))).scalar_one()
        events = (await connection.execute(text("SELECT count(*) FROM delivery_event"))).scalar()
    assert sorted(user for (user,) in members) == [11, 12]  # admins are in every team anyway
    assert [tuple(row) for row in patients] == [("P-kept", 1)]
    assert [tuple(row) for row in counts] == [
        ("labs_monthly", "cancelled", 1),
        ("labs_monthly", "sent", 2),
        ("patient", "erased", 1),
    ]
    assert (left, events) == (0, 0)
