"""The console's read functions: test outcomes, the month strip, adherence, patients, alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import console, coordination, store, teams
from scheduler.console import MonthCell, ReminderOutcome, month_strip
from scheduler.coordination import Outcome, PatientSort, outcome
from scheduler.models import Acknowledgement, AlertEvent, CoordinatorAlert, Patient, Reminder
from scheduler.planner import Course
from scheduler.statuses import PatientStatus, ReminderStatus, Role
from scheduler.validation import build_profile
from tests.conftest import team_with_coordinator

Sessions = async_sessionmaker[AsyncSession]
S = ReminderStatus
DUE = datetime(2025, 2, 6, 8, tzinfo=UTC)
# Course 1 on 2025-01-06 in Berlin at 09:00: labs m<n> on the 6th of each month at 08:00 or
# 07:00 UTC, thyroid on m3, m6, ...
ENROLLED = datetime(2025, 1, 1, 8, tzinfo=UTC)
NOW = datetime(2025, 8, 12, 12, tzinfo=UTC)
ADMIN, COORDINATOR, NORTH_COORDINATOR, STAFF = 1, 900, 901, 910


@pytest.mark.parametrize(
    ("status", "reached", "done_after", "now_after", "expected"),
    [
        (S.ACKNOWLEDGED, True, timedelta(hours=1), timedelta(days=30), Outcome.ON_TIME),
        (
            S.ACKNOWLEDGED,
            True,
            timedelta(days=10) - timedelta(seconds=1),
            timedelta(days=30),
            Outcome.ON_TIME,
        ),
        (S.ACKNOWLEDGED, True, timedelta(days=10), timedelta(days=30), Outcome.LATE),
        (S.SENT, True, None, timedelta(days=9, hours=23), Outcome.UNCONFIRMED),
        (S.SENT, True, None, timedelta(days=10), Outcome.MISSED),
        (S.FAILED, False, None, timedelta(hours=1), Outcome.MISSED),
        (S.EXPIRED, False, None, timedelta(hours=1), Outcome.MISSED),
        (S.PLANNED, False, None, -timedelta(days=20), Outcome.UPCOMING),
        (S.RETRYING, False, None, timedelta(hours=1), Outcome.UPCOMING),
        # Never sent, not sent in its 10 days (a paused patient): missed.
        (S.PLANNED, False, None, timedelta(days=11), Outcome.MISSED),
        (S.CANCELLED, False, None, timedelta(days=30), None),
        (S.SKIPPED, False, None, timedelta(days=30), None),
    ],
)
def test_outcome_of_a_test(
    status: ReminderStatus,
    reached: bool,
    done_after: timedelta | None,
    now_after: timedelta,
    expected: Outcome | None,
) -> None:
    done_at = DUE + done_after if done_after is not None else None
    assert (
        outcome(status=status, due_at=DUE, reached=reached, done_at=done_at, now=DUE + now_after)
        == expected
    )


def result(day: date, verdict: Outcome | None, *, reached: bool = True) -> ReminderOutcome:
    due = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    return ReminderOutcome(0, "labs_monthly", day, due, reached, verdict)


def test_strip_of_the_worked_example_runs_to_48_months_after_the_last_infusion() -> None:
    courses = [Course(date(2026, 1, 5), 5), Course(date(2027, 1, 4), 3)]
    strip = month_strip(
        courses,
        [
            result(date(2026, 2, 5), Outcome.ON_TIME),
            # Labs and thyroid of one month: the one that needs attention shows.
            result(date(2026, 4, 5), Outcome.ON_TIME),
            result(date(2026, 4, 5), Outcome.LATE),
            result(date(2026, 5, 5), Outcome.MISSED),
            result(date(2026, 5, 5), Outcome.UNCONFIRMED),
            result(date(2026, 6, 5), Outcome.UNCONFIRMED),
            result(date(2026, 7, 5), Outcome.UPCOMING),
            result(date(2026, 8, 5), None),
        ],
    )
    # L + 48 months = 2031-01-06: months 0 (course 1) to 60 (the last labs, 2031-01-05).
    assert len(strip) == 61
    assert strip[0] == MonthCell(0, date(2026, 1, 5), date(2026, 2, 4), None)
    assert strip[-1] == MonthCell(60, date(2031, 1, 5), date(2031, 2, 4), None)
    assert [cell.outcome for cell in strip[1:8]] == [
        Outcome.ON_TIME,
        None,
        Outcome.LATE,
        Outcome.MISSED,
        Outcome.UNCONFIRMED,
        Outcome.UPCOMING,
        None,
    ]
    assert month_strip([], []) == []


def test_strip_months_follow_the_plans_clamped_calendar_months() -> None:
    strip = month_strip(
        [Course(date(2026, 1, 31), 5)],
        [result(date(2026, 2, 28), Outcome.ON_TIME), result(date(2026, 3, 30), Outcome.LATE)],
    )
    # Jan 31 + 1 month = Feb 28; + 2 months = Mar 31, so Mar 30 is still month 1.
    assert strip[1] == MonthCell(1, date(2026, 2, 28), date(2026, 3, 30), Outcome.LATE)
    assert strip[2].start == date(2026, 3, 31)


# --- on a database ---------------------------------------------------------------------------


@dataclass
class Clinic:
    default: int
    north: int
    anna: int  # MS-001, default team: the known plan below
    ben: int  # MS-002, north team: nothing sent yet
    cleo: int  # MS-003, default team, paused: one test on time
    alerts: dict[str, int]


async def enrol(session: AsyncSession, label: str, team: str, start: date) -> int:
    profile, _ = build_profile(courses=[(start, None)], timezone="Europe/Berlin", send_time="09:00")
    [enrolled] = await store.enroll(
        session,
        enrolments=[store.Enrolment(label, "en", profile, team_name=team)],
        actor="test",
        now=ENROLLED,
        late_window=timedelta(hours=72),
    )
    await session.execute(
        update(Patient)
        .where(Patient.id == enrolled.patient_id)
        .values(status=PatientStatus.ACTIVE, chat_id=hash(label) % 10**9)
    )
    return enrolled.patient_id


async def settle(
    session: AsyncSession,
    patient_id: int,
    kind: str,
    occurrence: str,
    status: ReminderStatus,
    *,
    sent: bool = True,
    done_days: float | None = None,
) -> int:
    """Give a planned reminder an ending: sent (when it fell due), Done after some days."""
    reminder = await session.scalar(
        select(Reminder).where(
            Reminder.patient_id == patient_id,
            Reminder.kind == kind,
            Reminder.occurrence == occurrence,
        )
    )
    assert reminder is not None
    reminder.status = status
    reminder.first_sent_at = reminder.due_at if sent else None
    if done_days is not None:
        at = reminder.due_at + timedelta(days=done_days)
        session.add(Acknowledgement(reminder_id=reminder.id, action="done", at=at))
    await session.flush()
    return reminder.id


async def add_alert(
    session: AsyncSession, patient_id: int, kind: str, created: datetime, events: list[str]
) -> int:
    alert = CoordinatorAlert(
        kind=kind,
        patient_id=patient_id,
        chat_id=COORDINATOR,
        route="own",
        status=events[-1],
        attempts=1,
        created_at=created,
        reminder_kind="labs_monthly",
        day=created.date(),
    )
    session.add(alert)
    await session.flush()
    for minutes, status in enumerate(events):
        session.add(
            AlertEvent(alert_id=alert.id, status=status, at=created + timedelta(minutes=minutes))
        )
    await session.flush()
    return alert.id


async def build_clinic(sessions: Sessions) -> Clinic:
    """Two teams with a coordinator each, a staff member of the default team, an admin,
    and three patients whose tests went differently."""
    default = await team_with_coordinator(sessions)
    async with sessions.begin() as session:
        north = await teams.create(session, name="north", actor="test", now=ENROLLED)
        for user, role in (
            (NORTH_COORDINATOR, Role.COORDINATOR),
            (STAFF, Role.STAFF),
            (ADMIN, Role.ADMIN),
        ):
            await store.grant(session, user_id=user, role=role, actor="test", now=ENROLLED)
        await teams.assign(
            session, team=north, user_id=NORTH_COORDINATOR, actor="test", now=ENROLLED
        )
        team = await teams.by_name(session, name=teams.DEFAULT_TEAM)
        await teams.assign(session, team=team, user_id=STAFF, actor="test", now=ENROLLED)
        anna = await enrol(session, "MS-001", teams.DEFAULT_TEAM, date(2025, 1, 6))
        ben = await enrol(session, "MS-002", "north", date(2025, 1, 6))
        cleo = await enrol(session, "MS-003", teams.DEFAULT_TEAM, date(2025, 1, 6))
        labs, thyroid = "labs_monthly", "thyroid_quarterly"
        await settle(session, anna, labs, "m1", S.ACKNOWLEDGED, done_days=2)  # on time
        await settle(session, anna, labs, "m2", S.ACKNOWLEDGED, done_days=12)  # late
        await settle(session, anna, labs, "m3", S.SENT)  # missed
        await settle(session, anna, thyroid, "m3", S.SENT)  # missed
        await settle(session, anna, labs, "m4", S.FAILED, sent=False)  # missed, not counted
        await settle(session, anna, labs, "m5", S.CANCELLED, sent=False)  # not asked
        await settle(session, anna, labs, "m6", S.ACKNOWLEDGED, done_days=1)  # on time
        await settle(session, anna, thyroid, "m6", S.ACKNOWLEDGED, done_days=1)  # on time
        await settle(session, anna, labs, "m7", S.SENT)  # unconfirmed: due 6 days ago
        await settle(session, cleo, labs, "m7", S.ACKNOWLEDGED, done_days=0.5)
        for month in range(1, 7):
            await settle(session, cleo, labs, f"m{month}", S.CANCELLED, sent=False)
        await session.execute(
            update(Patient).where(Patient.id == cleo).values(status=PatientStatus.PAUSED)
        )
        alerts = {
            "anna_missed": await add_alert(
                session,
                anna,
                "missed_test",
                datetime(2025, 4, 16, 8, tzinfo=UTC),
                ["queued", "sending", "sent"],
            ),
            "anna_failed": await add_alert(
                session,
                anna,
                "delivery_failed",
                datetime(2025, 5, 6, 8, tzinfo=UTC),
                ["queued", "failed"],
            ),
            "ben_symptoms": await add_alert(
                session, ben, "symptoms", datetime(2025, 6, 1, 8, tzinfo=UTC), ["queued"]
            ),
        }
    return Clinic(default, north.id, anna, ben, cleo, alerts)


def scope(*team_ids: int) -> teams.Scope:
    return teams.Scope(frozenset(team_ids))


async def test_patient_page_plan_outcomes_strip_and_adherence(sessions: Sessions) -> None:
    clinic = await build_clinic(sessions)
    async with sessions() as session:
        page = await console.patient_page(session, label="MS-001", now=NOW)
    assert page is not None
    assert (page.patient.label, page.team) == ("MS-001", teams.DEFAULT_TEAM)
    assert [(c.number, c.start) for c in page.patient.courses] == [(1, date(2025, 1, 6))]
    assert page.past
    assert page.upcoming
    assert all(e.due_at <= NOW for e in page.past)
    assert [e.due_at for e in page.past] == sorted((e.due_at for e in page.past), reverse=True)
    assert [e.due_at for e in page.upcoming] == sorted(e.due_at for e in page.upcoming)
    assert page.upcoming[0].due_at > NOW
    # L = 2025-01-10, L + 48 months = 2029-01-10: months 0 to 48.
    assert len(page.strip) == 49
    assert [cell.outcome for cell in page.strip[:9]] == [
        None,
        Outcome.ON_TIME,
        Outcome.LATE,
        Outcome.MISSED,
        Outcome.MISSED,  # failed: never reached the patient
        None,  # cancelled
        Outcome.ON_TIME,
        Outcome.UNCONFIRMED,
        Outcome.UPCOMING,
    ]
    assert page.strip[-1].outcome is Outcome.UPCOMING
    # Since 2025-02-12: m2 late, m3 labs and thyroid missed, m6 labs and thyroid on time.
    assert page.last_6_months == coordination.OnTime(on_time=2, counted=5)
    assert page.last_12_months == coordination.OnTime(on_time=3, counted=6)
    assert page.last_12_months.ratio == 0.5
    assert [a.kind for a in page.alerts] == ["delivery_failed", "missed_test"]
    assert [c.status for c in page.alerts[1].history] == ["queued", "sending", "sent"]
    assert page.alerts[1].alert_id == clinic.alerts["anna_missed"]
    by_id = {entry.reminder_id: entry for entry in [*page.past, *page.upcoming]}
    assert {by_id[i].kind for i in page.outcomes} <= {"labs_monthly", "thyroid_quarterly"}


async def test_a_patient_of_another_team_is_not_found(sessions: Sessions) -> None:
    clinic = await build_clinic(sessions)
    async with sessions() as session:
        assert (
            await console.patient_page(
                session, label="MS-002", now=NOW, scope=scope(clinic.default)
            )
            is None
        )
        assert await console.patient_page(session, label="MS-404", now=NOW) is None
        theirs = await console.patient_page(
            session, label="MS-002", now=NOW, scope=scope(clinic.north)
        )
    assert theirs is not None
    assert [a.kind for a in theirs.alerts] == ["symptoms"]


async def test_patient_list_agrees_with_the_patient_page(sessions: Sessions) -> None:
    clinic = await build_clinic(sessions)
    async with sessions() as session:
        rows = await coordination.console_patients(session, now=NOW)
        page = await console.patient_page(session, label="MS-001", now=NOW)
        mine = await coordination.console_patients(session, now=NOW, scope=scope(clinic.default))
        assert await coordination.count_console_patients(session, scope=scope(clinic.default)) == 2
        # A team filter narrows the scope, never widens it.
        widened = await coordination.console_patients(
            session, now=NOW, scope=scope(clinic.default), team_id=clinic.north
        )
        assert (
            await coordination.count_console_patients(
                session, scope=scope(clinic.default), team_id=clinic.north
            )
            == 0
        )
    assert page is not None
    assert [row.label for row in rows] == ["MS-001", "MS-002", "MS-003"]
    anna, ben, cleo = rows
    assert (anna.last_6_months, anna.last_12_months) == (page.last_6_months, page.last_12_months)
    assert (anna.team, ben.team) == (teams.DEFAULT_TEAM, "north")
    assert ben.last_12_months == coordination.OnTime(0, 0)
    assert ben.last_12_months.ratio is None
    assert cleo.last_6_months == coordination.OnTime(1, 1)
    assert not anna.flagged
    assert cleo.flagged
    assert anna.next_due == page.upcoming[0].due_at
    assert ben.next_due is not None
    # Paused: nothing will be sent, though reminders are still planned.
    assert cleo.next_due is None
    assert [row.label for row in mine] == ["MS-001", "MS-003"]
    assert widened == []


async def test_patient_list_sorts(sessions: Sessions) -> None:
    await build_clinic(sessions)

    async def labels(sort: PatientSort, descending: bool = False) -> list[str]:
        async with sessions() as session:
            rows = await coordination.console_patients(
                session, now=NOW, sort=sort, descending=descending
            )
        return [row.label for row in rows]

    assert await labels(PatientSort.LABEL, descending=True) == ["MS-003", "MS-002", "MS-001"]
    # active < paused; ties by label.
    assert await labels(PatientSort.STATUS) == ["MS-001", "MS-002", "MS-003"]
    assert await labels(PatientSort.STATUS, descending=True) == ["MS-003", "MS-001", "MS-002"]
    # Anna 2 of 5 over 6 months, Cleo 1 of 1; Ben none (last either way).
    assert await labels(PatientSort.ADHERENCE) == ["MS-001", "MS-003", "MS-002"]
    assert await labels(PatientSort.ADHERENCE, descending=True) == ["MS-003", "MS-001", "MS-002"]
    assert await labels(PatientSort.NEXT) == ["MS-001", "MS-002", "MS-003"]


async def test_alert_log_is_scoped_newest_first_with_history(sessions: Sessions) -> None:
    clinic = await build_clinic(sessions)
    async with sessions() as session:
        every = await console.alert_log(session)
        mine = await console.alert_log(session, scope=scope(clinic.default))
        failed = await console.alert_log(session, status="failed")
        paged = await console.alert_log(session, limit=1, offset=1)
        assert await console.count_alerts(session) == 3
        assert await console.count_alerts(session, scope=scope(clinic.north)) == 1
        assert (
            await console.count_alerts(session, scope=scope(clinic.north), patient_id=clinic.anna)
            == 0
        )
        assert await console.count_alerts(session, kind="symptoms") == 1
    assert [a.alert_id for a in every] == [
        clinic.alerts["ben_symptoms"],
        clinic.alerts["anna_failed"],
        clinic.alerts["anna_missed"],
    ]
    assert (every[0].label, every[0].team, every[0].route) == ("MS-002", "north", "own")
    assert [a.label for a in mine] == ["MS-001", "MS-001"]
    assert [c.status for c in failed[0].history] == ["queued", "failed"]
    assert [a.alert_id for a in paged] == [clinic.alerts["anna_failed"]]


async def test_an_alert_that_found_nobody_has_no_route(sessions: Sessions) -> None:
    clinic = await build_clinic(sessions)
    async with sessions.begin() as session:
        session.add(
            CoordinatorAlert(
                kind="delivery_failed",
                patient_id=clinic.ben,
                chat_id=None,
                route="team",  # the column's default: no recipient was ever chosen
                status="failed",
                attempts=0,
                created_at=NOW,
            )
        )
    async with sessions() as session:
        nobody, *others = await console.alert_log(session, scope=scope(clinic.north))
    assert (nobody.kind, nobody.route) == ("delivery_failed", None)
    assert [a.route for a in others] == ["own"]
