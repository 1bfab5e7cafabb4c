"""scheduler.bulk writes rows exactly as SQLAlchemy does: the same stored values (on
SQLite, the same text for dates and times), so that every read finds them."""

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import bulk, store
from scheduler.models import AuditEvent, Course, DeliveryEvent, Invite, Reminder
from scheduler.validation import build_profile
from tests.conftest import team_with_coordinator

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
# Not UTC: what is stored is UTC either way.
ELSEWHERE = datetime(2026, 3, 5, 9, 0, tzinfo=timezone(timedelta(hours=2)))


async def stored(session: AsyncSession, table: Table, ids: list[int]) -> list[tuple[Any, ...]]:
    """The rows as the database holds them (no type processing), without their ids."""
    rows = await session.execute(
        text(f"SELECT * FROM {table.name} WHERE id IN ({', '.join(map(str, ids))}) ORDER BY id")
    )
    return [tuple(value for key, value in row._mapping.items() if key != "id") for row in rows]


async def test_rows_are_stored_as_sqlalchemy_stores_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await team_with_coordinator(sessions)
    async with sessions.begin() as session:
        profile, _ = build_profile(courses=[(date(2026, 1, 5), None)], timezone="Europe/Berlin")
        [enrolled] = await store.enroll(
            session,
            enrolments=[store.Enrolment("BULK-1", "en", profile)],
            actor="test",
            now=NOW,
            late_window=timedelta(hours=72),
        )
        patient_id = enrolled.patient_id
        reminder = {
            "patient_id": patient_id,
            "kind": "labs_monthly",
            "occurrence": "x1",
            "local_date": date(2026, 3, 5),
            "due_at": ELSEWHERE,
            "about": date(2026, 4, 1),
            "course": 1,
            "status": "planned",
            "plan_version": 1,
            "ready_at": None,
            "attempts": 0,
            "created_at": NOW,
            "changed_at": NOW,
        }
        tables: list[tuple[Any, dict[str, Any], dict[str, Any]]] = [
            (Reminder, reminder, {**reminder, "occurrence": "x2"}),
            (Course, {"patient_id": patient_id, "number": 7, "start": date(2026, 1, 5), "days": 5},
             {"patient_id": patient_id, "number": 8, "start": date(2026, 1, 5), "days": 5}),
            (AuditEvent, {"at": ELSEWHERE, "actor": "a", "action": "b", "target": "c"},
             {"at": ELSEWHERE, "actor": "a", "action": "b", "target": "c"}),
            (Invite, {"patient_id": patient_id, "token_hash": "1" * 64, "created_at": NOW,
                      "expires_at": ELSEWHERE},
             {"patient_id": patient_id, "token_hash": "2" * 64, "created_at": NOW,
              "expires_at": ELSEWHERE}),
        ]  # fmt: skip
        for model, by_core, by_bulk in tables:
            table = cast(Table, model.__table__)
            core_id = await session.scalar(insert(table).values(by_core).returning(table.c.id))
            [bulk_id] = await bulk.new_ids(session, table, 1)
            columns = ("id", *by_bulk)
            await bulk.insert_rows(session, table, columns, [(bulk_id, *by_bulk.values())])
            assert core_id is not None
            core_row, bulk_row = await stored(session, table, [core_id, bulk_id])
            differs = {k for k in by_core if by_core[k] != by_bulk[k]}
            names = [c.name for c in table.columns if c.name != "id"]
            same = [n for n in names if n not in differs]
            assert [core_row[names.index(n)] for n in same] == [
                bulk_row[names.index(n)] for n in same
            ], model.__name__
        # And read back through the ORM: aware, in UTC.
        [due] = await session.scalars(select(Reminder.due_at).where(Reminder.occurrence == "x2"))
        assert due == ELSEWHERE
        assert due.tzinfo is not None
        history = cast(Table, DeliveryEvent.__table__)
        [event_id] = await bulk.new_ids(session, history, 1)
        assert event_id > 0
