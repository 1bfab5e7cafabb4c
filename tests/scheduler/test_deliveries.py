"""The delivery log queries against a real SQLite file and a real PostgreSQL schema."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import deliveries, patient_data, store, teams
from scheduler.db import create_engine, migrate, session_factory
from scheduler.deliveries import DeliveryEntry, StatusChange, count_deliveries, delivery_log
from scheduler.models import DeliveryEvent, Patient, Reminder
from scheduler.statuses import PatientStatus, ReminderStatus
from scheduler.validation import build_profile
from tests.conftest import team_with_coordinator

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
PLANNED_AT = datetime(2026, 1, 2, 12, tzinfo=UTC)
S = ReminderStatus


def at(day: int, hour: int = 8, month: int = 2) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def add_patient(session: AsyncSession, label: str, timezone: str, *, team_id: int = 1) -> int:
    patient = Patient(
        label=label,
        team_id=team_id,
        locale="en",
        timezone=timezone,
        send_time=time(9),
        cbp=False,
        cervix=False,
        prophylaxis_days=30,
        status=PatientStatus.ACTIVE,
        created_at=NOW,
    )
    session.add(patient)
    await session.flush()
    return patient.id


async def add_reminder(
    session: AsyncSession,
    patient_id: int,
    kind: str,
    due: datetime,
    status: ReminderStatus = S.PLANNED,
    *,
    events: list[dict[str, Any]] | None = None,
    attempts: int = 0,
    created_at: datetime = PLANNED_AT,
) -> int:
    reminder = Reminder(
        patient_id=patient_id,
        kind=kind,
        occurrence=due.date().isoformat(),
        local_date=due.date(),
        due_at=due,
        status=status,
        plan_version=1,
        attempts=attempts,
        created_at=created_at,
        # As the outbox keeps it: the latest history row, else the creation.
        changed_at=max((e["at"] for e in events or []), default=created_at),
    )
    session.add(reminder)
    await session.flush()
    for values in events or []:
        session.add(DeliveryEvent(reminder_id=reminder.id, **values))
    await session.flush()
    return reminder.id


async def fill(sessions: Sessions) -> dict[str, int]:
    """Two patients of the default team and one of another; names are what each reminder
    is in the tests."""
    ids: dict[str, int] = {}
    async with sessions.begin() as session:
        north = await teams.create(session, name="north", actor="test", now=NOW)
        anna = await add_patient(session, "MS-001", "Europe/Berlin")
        ben = await add_patient(session, "MS-002", "America/New_York")
        gone = await add_patient(session, "MS-003", "Asia/Tokyo", team_id=north.id)
        ids["anna_labs_feb"] = await add_reminder(
            session,
            anna,
            "labs_monthly",
            at(5),
            S.ACKNOWLEDGED,
            attempts=1,
            events=[
                # Inserted out of order: the history is ordered by time.
                {"status": S.ACKNOWLEDGED, "at": at(5, 10)},
                {"status": S.SENDING, "at": at(5, 8)},
                {"status": S.SENT, "at": at(5, 8), "telegram_message_id": 77},
            ],
        )
        ids["anna_thyroid_feb"] = await add_reminder(
            session,
            anna,
            "thyroid_quarterly",
            at(5),
            S.FAILED,
            attempts=2,
            events=[
                {"status": S.SENDING, "at": at(5, 8)},
                {
                    "status": S.RETRYING,
                    "at": at(5, 8),
                    "error_code": 502,
                    "detail": "Bad Gateway",
                },
                {"status": S.SENDING, "at": at(5, 9)},
                {
                    "status": S.FAILED,
                    "at": at(5, 9),
                    "error_code": 400,
                    "detail": "Bad Request: chat not found",
                },
            ],
        )
        ids["anna_labs_mar"] = await add_reminder(session, anna, "labs_monthly", at(5, month=3))
        ids["ben_labs_feb"] = await add_reminder(
            session,
            ben,
            "labs_monthly",
            at(10, 14),
            S.SENT,
            attempts=1,
            events=[
                {"status": S.SENDING, "at": at(10, 14)},
                {"status": S.SENT, "at": at(10, 14), "telegram_message_id": 5},
            ],
        )
        ids["gone_labs_jan"] = await add_reminder(
            session,
            gone,
            "labs_monthly",
            at(20, month=1),
            S.CANCELLED,
            events=[{"status": S.CANCELLED, "at": at(1), "detail": "consent withdrawn"}],
        )
    return ids


def names(entries: list[DeliveryEntry], ids: dict[str, int]) -> list[str]:
    by_id = {reminder_id: name for name, reminder_id in ids.items()}
    return [by_id[entry.reminder_id] for entry in entries]


async def test_newest_due_first_with_full_history_oldest_first(sessions: Sessions) -> None:
    ids = await fill(sessions)
    async with sessions() as session:
        log = await delivery_log(session)
        assert await count_deliveries(session) == 5
    # Same due instant: the newer reminder first.
    assert names(log, ids) == [
        "anna_labs_mar",
        "ben_labs_feb",
        "anna_thyroid_feb",
        "anna_labs_feb",
        "gone_labs_jan",
    ]
    planned, ben, failed, acknowledged, gone = log
    assert (gone.label, gone.timezone) == ("MS-003", "Asia/Tokyo")
    assert planned.history == ()
    assert (planned.status, planned.attempts) == (S.PLANNED, 0)
    assert (ben.label, ben.timezone, ben.kind, ben.occurrence) == (
        "MS-002",
        "America/New_York",
        "labs_monthly",
        "2026-02-10",
    )
    assert ben.due_at == at(10, 14)
    assert ben.due_at.tzinfo is not None
    assert ben.position == (at(10, 14), ids["ben_labs_feb"])
    assert [change.status for change in acknowledged.history] == [
        S.SENDING,
        S.SENT,
        S.ACKNOWLEDGED,
    ]
    assert acknowledged.history[1] == StatusChange(S.SENT, at(5, 8), 77, None, None)
    assert [(c.status, c.error_code, c.detail) for c in failed.history] == [
        (S.SENDING, None, None),
        (S.RETRYING, 502, "Bad Gateway"),
        (S.SENDING, None, None),
        (S.FAILED, 400, "Bad Request: chat not found"),
    ]
    assert (failed.status, failed.attempts) == (S.FAILED, 2)
    assert failed.history[0].at.tzinfo is not None


async def test_filters(sessions: Sessions) -> None:
    ids = await fill(sessions)

    async def check(expected: list[str], **filters: Any) -> None:
        async with sessions() as session:
            assert names(await delivery_log(session, **filters), ids) == expected
            assert await count_deliveries(session, **filters) == len(expected)

    await check(["anna_labs_mar", "anna_thyroid_feb", "anna_labs_feb"], label="MS-001")
    await check(["ben_labs_feb"], label="MS-002")
    await check(["anna_thyroid_feb"], status=S.FAILED)
    await check(["anna_thyroid_feb"], status="failed")
    await check(["anna_labs_mar", "anna_labs_feb"], label="MS-001", kind="labs_monthly")
    await check(["anna_thyroid_feb"], kind="thyroid_quarterly")
    # since is inclusive, until exclusive.
    await check(["anna_thyroid_feb", "anna_labs_feb"], since=at(5), until=at(10, 14))
    await check(
        ["ben_labs_feb", "anna_thyroid_feb", "anna_labs_feb"], since=at(5), until=at(10, 15)
    )
    await check(["anna_labs_mar", "ben_labs_feb"], since=at(5, 9))
    await check(["gone_labs_jan"], until=at(5))
    await check(["anna_labs_mar"], label="MS-001", status=S.PLANNED, since=at(1, month=3))
    # Unknown labels, statuses nobody has, and an empty window list nothing.
    await check([], label="MS-404")
    await check([], label="")
    await check([], status=S.EXPIRED)
    await check([], since=at(6), until=at(6))


async def test_a_team_sees_only_its_patients(sessions: Sessions) -> None:
    ids = await fill(sessions)
    async with sessions() as session:
        north = await teams.by_name(session, name="north")
        default = await teams.by_name(session, name=teams.DEFAULT_TEAM)
        mine = teams.Scope(frozenset({default.id}))
        assert await count_deliveries(session, scope=mine) == 4
        assert "gone_labs_jan" not in names(await delivery_log(session, scope=mine), ids)
        theirs = teams.Scope(frozenset({north.id}))
        assert names(await delivery_log(session, scope=theirs), ids) == ["gone_labs_jan"]
        assert await count_deliveries(session, scope=theirs, label="MS-001") == 0
        assert await count_deliveries(session, scope=teams.Scope(frozenset())) == 0


async def test_erased_patients_leave_the_log_and_only_counts_remain(sessions: Sessions) -> None:
    profile, _ = build_profile(
        courses=[(date(2026, 1, 5), None)], timezone="Europe/Berlin", send_time="09:00"
    )
    enrolled_at = datetime(2025, 12, 29, 8, tzinfo=UTC)
    await team_with_coordinator(sessions)
    async with sessions.begin() as session:
        [enrolled] = await store.enroll(
            session,
            enrolments=[store.Enrolment("MS-009", "de", profile)],
            actor="test",
            now=enrolled_at,
            late_window=timedelta(hours=72),
        )
        before = await count_deliveries(session, label="MS-009")
        await patient_data.erase(session, patient_id=enrolled.patient_id, actor="test", now=NOW)
    assert before > 0
    async with sessions() as session:
        assert await count_deliveries(session) == 0
        counts = await patient_data.erased_counts(session)
    assert counts.pop(patient_data.ERASURES) == 1
    assert sum(counts.values()) == before
    assert {status for _kind, status in counts} <= {S.CANCELLED, S.SKIPPED}
    assert counts[("labs_monthly", S.CANCELLED)] > 40


async def test_paging_by_offset_and_by_position(sessions: Sessions) -> None:
    ids = await fill(sessions)
    async with sessions() as session:
        everything = await delivery_log(session)
        by_offset = [
            await delivery_log(session, limit=2, offset=offset) for offset in range(0, 6, 2)
        ]
        assert await delivery_log(session, limit=2, offset=10) == []
        by_position = [await delivery_log(session, limit=2)]
        while by_position[-1]:
            after = by_position[-1][-1].position
            by_position.append(await delivery_log(session, limit=2, after=after))
        label_page = await delivery_log(session, label="MS-001", limit=1, offset=1)
    assert [len(page) for page in by_offset] == [2, 2, 1]
    assert [entry for page in by_offset for entry in page] == everything
    assert [entry for page in by_position for entry in page] == everything
    assert names(label_page, ids) == ["anna_thyroid_feb"]


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on ``engine`` inside the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        seen.append((args[2], args[3]))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_two_queries_per_page_whatever_its_size(
    sessions: Sessions, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sessions.begin() as session:
        patient = await add_patient(session, "MS-100", "Europe/Berlin")
        for day in range(1, 29):
            await add_reminder(
                session,
                patient,
                "labs_monthly",
                at(day),
                S.SENT,
                events=[{"status": S.SENT, "at": at(day, 9)}],
            )
    async with sessions() as session:
        await session.execute(select(1))  # the transaction's BEGIN is not a query of the log
        with statements(db) as seen:
            page = await delivery_log(session, limit=20)
    assert len(seen) == 2
    assert len(page) == 20
    assert all(len(entry.history) == 1 for entry in page)

    # Long exports read the events in chunks, within the drivers' parameter limits.
    monkeypatch.setattr(deliveries, "_CHUNK", 8)
    async with sessions() as session:
        await session.execute(select(1))
        with statements(db) as seen:
            everything = await delivery_log(session)
    assert len(seen) == 1 + 4
    assert len(everything) == 28
    assert [entry.history[0].at for entry in everything] == [at(day, 9) for day in range(28, 0, -1)]


async def test_label_filter_uses_the_patient_due_index(tmp_path: Path) -> None:
    """Checked on SQLite, whose query plans do not depend on table statistics."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    try:
        await migrate(engine)
        async with session_factory(engine)() as session:
            await session.execute(select(1))
            with statements(engine) as seen:
                await delivery_log(session, label="MS-001", limit=5)
            [(sql, parameters)] = seen  # no reminders, so no event query
            connection = await session.connection()
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
            details = " | ".join(str(row[-1]) for row in plan)
    finally:
        await engine.dispose()
    assert "ix_reminder_patient_id_due_at (patient_id=?)" in details
    assert "TEMP B-TREE" not in details.upper()


async def test_activity_shows_what_changed_or_fell_due_lately(sessions: Sessions) -> None:
    ids = await fill(sessions)

    async def check(expected: list[str], **filters: Any) -> None:
        async with sessions() as session:
            assert names(await delivery_log(session, **filters), ids) == expected
            assert await count_deliveries(session, **filters) == len(expected)

    # A status change at or after the instant (the thyroid's failure at 09:00, the labs'
    # Done at 10:00), or due between it and now (ben); not a reminder still to come.
    # Newest change first.
    await check(
        ["ben_labs_feb", "anna_labs_feb", "anna_thyroid_feb"], active_since=at(5, 9), now=NOW
    )
    # The cancellation of a January reminder on 1 February is activity of that day.
    await check(
        ["ben_labs_feb", "anna_labs_feb", "anna_thyroid_feb", "gone_labs_jan"],
        active_since=at(1),
        now=NOW,
    )
    # Planned on 2 January and untouched since: a new plan is not activity until due.
    await check(
        ["ben_labs_feb", "anna_labs_feb", "anna_thyroid_feb", "gone_labs_jan"],
        active_since=PLANNED_AT - timedelta(days=1),
        now=NOW,
    )
    await check(["ben_labs_feb"], active_since=at(6), now=NOW)
    await check([], active_since=at(11), now=NOW)
    # Without now, anything due from then on counts.
    await check(["anna_labs_mar"], active_since=at(11))
    # Together with the other filters.
    await check(["anna_thyroid_feb"], active_since=at(1), now=NOW, status=S.FAILED)
    await check(["anna_labs_feb", "anna_thyroid_feb"], active_since=at(1), now=NOW, label="MS-001")
    await check(["anna_labs_feb"], active_since=at(5, 10), now=NOW, since=at(5), until=at(5, 9))
    async with sessions() as session:
        north = await teams.by_name(session, name="north")
        theirs = teams.Scope(frozenset({north.id}))
        log = await delivery_log(session, scope=theirs, active_since=at(1), now=NOW)
    assert names(log, ids) == ["gone_labs_jan"]


async def test_activity_with_a_status_filter_is_the_activity_of_that_status(
    sessions: Sessions,
) -> None:
    """The status filter narrows the activity view and changes nothing else, for every
    status: planned ones count once something happened to them (here: taken back to the
    plan after a pause), not when they are untouched since their plan was made."""
    ids = await fill(sessions)
    async with sessions.begin() as session:
        back = await add_patient(session, "MS-004", "Europe/Berlin")
        ids["replanned"] = await add_reminder(
            session,
            back,
            "labs_monthly",
            at(20, month=3),
            events=[{"status": S.PLANNED, "at": at(3)}],
        )
        # A plan made within the window, nothing happened to it yet.
        ids["new_plan"] = await add_reminder(
            session, back, "thyroid_quarterly", at(20, month=4), created_at=at(3)
        )
    filters: dict[str, Any] = {"active_since": at(1), "now": NOW}
    async with sessions() as session:
        everything = await delivery_log(session, **filters)
        assert "replanned" in names(everything, ids)
        assert "new_plan" not in names(everything, ids)
        for status in S:
            expected = [entry for entry in everything if entry.status == status]
            assert await delivery_log(session, status=status, **filters) == expected, status
            assert await count_deliveries(session, status=status, **filters) == len(expected)


async def test_activity_lists_newest_change_first_and_pages_in_that_order(
    sessions: Sessions,
) -> None:
    ids = await fill(sessions)
    async with sessions.begin() as session:
        # Due long ago, failed just now: before everything changed earlier.
        late = await add_patient(session, "MS-004", "Europe/Berlin")
        ids["late_failure"] = await add_reminder(
            session, late, "labs_monthly", at(2), S.FAILED, events=[{"status": S.FAILED, "at": NOW}]
        )
        # Due in the window, changed before it: after every recent change.
        ids["due_quietly"] = await add_reminder(session, late, "thyroid_quarterly", at(20))
    expected = [
        "late_failure",
        "ben_labs_feb",
        "anna_labs_feb",
        "anna_thyroid_feb",
        "gone_labs_jan",
        "due_quietly",
    ]
    filters: dict[str, Any] = {"active_since": at(1), "now": NOW}
    async with sessions() as session:
        everything = await delivery_log(session, **filters)
        assert await count_deliveries(session, **filters) == len(expected)
        by_offset = [
            await delivery_log(session, limit=2, offset=offset, **filters)
            for offset in range(0, 6, 2)
        ]
        by_position = [await delivery_log(session, limit=2, **filters)]
        while by_position[-1]:
            after = by_position[-1][-1].position
            by_position.append(await delivery_log(session, limit=2, after=after, **filters))
    assert names(everything, ids) == expected
    assert [entry for page in by_offset for entry in page] == everything
    assert [entry for page in by_position for entry in page] == everything
    assert everything[0].position == (NOW, ids["late_failure"])


async def test_activity_filter_reads_two_index_ranges(tmp_path: Path) -> None:
    """Recent changes by ix_reminder_changed_at_id, recently due reminders by
    ix_reminder_due_at_id: never a scan of the table, nor a read of the history."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    try:
        await migrate(engine)
        async with session_factory(engine)() as session:
            await session.execute(select(1))
            with statements(engine) as seen:
                await delivery_log(session, active_since=at(1), now=NOW, limit=50)
            [(sql, parameters)] = seen
            connection = await session.connection()
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
            details = " | ".join(str(row[-1]) for row in plan)
    finally:
        await engine.dispose()
    assert "ix_reminder_changed_at_id (changed_at>?)" in details
    assert "ix_reminder_due_at_id (due_at>? AND due_at<?)" in details
    assert "SCAN reminder" not in details
    assert "delivery_event" not in details
