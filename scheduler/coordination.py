"""What care coordinators read about their patients: counts, adherence, one patient's detail.

Data access only, like ``store``: keyword-only arguments, ``None`` for "not found", and the
caller's session (and transaction).

How a test reminder (``protocol.TEST_KINDS``) turned out, as the console shows it
(:func:`outcome`), follows the follow-up rules of PROTOCOL.md (``scheduler.followups``):
the patient has ``CONFIRM_WITHIN`` = 10 days from the due instant to press Done, after
which the coordinator is alerted that the tests were not confirmed.

- **on time**: Done pressed less than 10 days after the due instant (snoozes and nudges
  included: they are part of the programme);
- **late**: Done pressed 10 days or more after the due instant (after the alert);
- **unconfirmed**: sent, not (yet) confirmed, and the 10 days are not over;
- **missed**: not confirmed and the 10 days are over, or the reminder ended without
  reaching the patient (failed, expired) — the test was not confirmed in the programme's time;
- **upcoming**: not sent yet and the 10 days are not over (due later, or queued);
- none: cancelled or skipped (before enrolment, after a withdrawal, re-planned) without
  having been sent: it was never asked of the patient, and counts nowhere.

Adherence over a window (:class:`OnTime`, the patient list's "last 6 / 12 months") is the
share of tests on time among those due in the window that reached the patient and are
settled: confirmed, or past their 10 days. A test still in its 10 days does not count yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Float, case, cast, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from scheduler import store, teams
from scheduler.followups import FOLLOW_UP_DAYS
from scheduler.models import Acknowledgement, DeliveryEvent, Patient, Reminder, Team, UTCDateTime
from scheduler.outbox import Action
from scheduler.protocol import TEST_KINDS, add_months
from scheduler.statuses import UNSENT, PatientStatus, ReminderStatus

_SENT = (ReminderStatus.SENT.value, ReminderStatus.ACKNOWLEDGED.value)
_CHUNK = 2000
_TEST_KINDS = sorted(kind.value for kind in TEST_KINDS)

# The patient's time to press Done before the coordinator is alerted (PROTOCOL.md).
CONFIRM_WITHIN: Final = timedelta(days=FOLLOW_UP_DAYS[-1])
# Ended without reaching the patient: the test was not asked of them in time.
_UNDELIVERED: Final = frozenset({ReminderStatus.FAILED, ReminderStatus.EXPIRED})
_NOT_ASKED: Final = frozenset({ReminderStatus.CANCELLED, ReminderStatus.SKIPPED})
FLAGGED: Final = frozenset({PatientStatus.PAUSED, PatientStatus.UNREACHABLE})
# Patients whose planned reminders will go out: active ones, and invited ones once they accept.
_WILL_BE_SENT: Final = frozenset({PatientStatus.ACTIVE, PatientStatus.INVITED})


class Outcome(StrEnum):
    """How a test reminder turned out (see the module's docstring)."""

    ON_TIME = "on_time"
    LATE = "late"
    UNCONFIRMED = "unconfirmed"
    MISSED = "missed"
    UPCOMING = "upcoming"


def outcome(
    *, status: str, due_at: datetime, reached: bool, done_at: datetime | None, now: datetime
) -> Outcome | None:
    """How one test reminder turned out at ``now``; None when it was never asked of the
    patient (cancelled or skipped before being sent)."""
    deadline = due_at + CONFIRM_WITHIN
    if done_at is not None:
        return Outcome.ON_TIME if done_at < deadline else Outcome.LATE
    if not reached and status in _NOT_ASKED:
        return None
    if not reached and status in _UNDELIVERED:
        return Outcome.MISSED
    if now < deadline:
        return Outcome.UNCONFIRMED if reached else Outcome.UPCOMING
    return Outcome.MISSED


@dataclass(frozen=True, slots=True)
class Adherence:
    """Of the test reminders (``protocol.TEST_KINDS``) sent so far, how many the patient
    confirmed with Done."""

    sent: int = 0
    done: int = 0

    @property
    def ratio(self) -> float | None:
        """``done / sent``, or None while no test reminder has been sent."""
        return self.done / self.sent if self.sent else None


@dataclass(frozen=True, slots=True)
class LastAcknowledgement:
    at: datetime
    action: str
    kind: str


@dataclass(frozen=True, slots=True)
class PatientDetail:
    """A patient (courses loaded) with what a coordinator wants to see at a glance."""

    patient: Patient
    upcoming: list[Reminder]
    last_acknowledgement: LastAcknowledgement | None
    adherence: Adherence


async def count_patients(session: AsyncSession, *, scope: teams.Scope = teams.EVERY_TEAM) -> int:
    """How many patients ``store.list_patients`` lists for ``scope``."""
    query = select(func.count()).select_from(Patient)
    condition = scope.condition(Patient.team_id)
    if condition is not None:
        query = query.where(condition)
    return int(await session.scalar(query) or 0)


async def label_in_use(session: AsyncSession, *, label: str) -> bool:
    return (await session.scalar(select(Patient.id).where(Patient.label == label))) is not None


async def adherence(session: AsyncSession, *, patient_ids: Sequence[int]) -> dict[int, Adherence]:
    """Adherence of each patient: every id is in the result, with zeros if nothing was sent.

    A test reminder counts as sent once Telegram accepted it (a ``sent`` history entry, or
    a status that comes after it); as done once the patient pressed Done, snoozes or not.
    """
    result = {patient_id: Adherence() for patient_id in patient_ids}
    was_sent = or_(
        Reminder.status.in_(_SENT),
        exists().where(
            DeliveryEvent.reminder_id == Reminder.id,
            DeliveryEvent.status == ReminderStatus.SENT.value,
        ),
    )
    confirmed = exists().where(
        Acknowledgement.reminder_id == Reminder.id, Acknowledgement.action == Action.DONE.value
    )
    for start in range(0, len(patient_ids), _CHUNK):
        rows = await session.execute(
            select(Reminder.patient_id, func.count(), func.count(case((confirmed, 1))))
            .where(
                Reminder.patient_id.in_(patient_ids[start : start + _CHUNK]),
                Reminder.kind.in_([kind.value for kind in TEST_KINDS]),
                was_sent,
            )
            .group_by(Reminder.patient_id)
        )
        for patient_id, sent, done in rows.all():
            result[patient_id] = Adherence(sent=int(sent), done=int(done))
    return result


async def last_acknowledgement(
    session: AsyncSession, *, patient_id: int
) -> LastAcknowledgement | None:
    """The patient's latest button press on a reminder (Done, snooze, symptoms, I'm OK)."""
    row = (
        await session.execute(
            select(Acknowledgement.at, Acknowledgement.action, Reminder.kind)
            .join(Reminder, Reminder.id == Acknowledgement.reminder_id)
            .where(Reminder.patient_id == patient_id)
            .order_by(Acknowledgement.at.desc(), Acknowledgement.id.desc())
            .limit(1)
        )
    ).first()
    return LastAcknowledgement(*row) if row is not None else None


async def patient_detail(
    session: AsyncSession, *, label: str, upcoming: int = 5, scope: teams.Scope = teams.EVERY_TEAM
) -> PatientDetail | None:
    """The patient with ``label`` (if in ``scope``), their next ``upcoming`` reminders,
    latest acknowledgement and adherence."""
    patient = await store.patient_by_label(session, label=label, scope=scope)
    if patient is None:
        return None
    return PatientDetail(
        patient=patient,
        upcoming=await store.upcoming(session, patient_id=patient.id, limit=upcoming),
        last_acknowledgement=await last_acknowledgement(session, patient_id=patient.id),
        adherence=(await adherence(session, patient_ids=[patient.id]))[patient.id],
    )


# --- the console's patient list -------------------------------------------------------------


class _PlusDays(FunctionElement[datetime]):
    """``moment + days`` in SQL (PostgreSQL: an interval; SQLite: ``datetime()``, whose
    text compares with the stored ``YYYY-MM-DD HH:MM:SS.ffffff``)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "plus_days"


@compiles(_PlusDays)
def _plus_days_postgresql(element: _PlusDays, compiler: SQLCompiler, **kw: Any) -> str:
    moment, days = list(element.clauses)
    start, count = compiler.process(moment, **kw), compiler.process(days, **kw)
    return f"({start} + make_interval(days => {count}))"


@compiles(_PlusDays, "sqlite")
def _plus_days_sqlite(element: _PlusDays, compiler: SQLCompiler, **kw: Any) -> str:
    moment, days = list(element.clauses)
    shift = compiler.process(literal(f"+{int(days.value)} days"), **kw)
    return f"datetime({compiler.process(moment, **kw)}, {shift})"


def _deadline() -> ColumnElement[datetime]:
    return _PlusDays(Reminder.due_at, literal(CONFIRM_WITHIN.days))


@dataclass(frozen=True, slots=True)
class OnTime:
    """Of the settled tests due in a window that reached the patient (``counted``), how
    many were confirmed on time."""

    on_time: int = 0
    counted: int = 0

    @property
    def ratio(self) -> float | None:
        return self.on_time / self.counted if self.counted else None


class PatientSort(StrEnum):
    LABEL = "label"
    STATUS = "status"
    NEXT = "next"
    ADHERENCE = "adherence"


@dataclass(frozen=True, slots=True)
class PatientRow:
    """A patient as the console's list shows them."""

    patient_id: int
    label: str
    status: str
    team: str
    timezone: str
    # The next reminder still to be sent, due from now on (its due instant), if any; None
    # for a patient nothing is sent to (paused, unreachable, withdrawn).
    next_due: datetime | None
    last_6_months: OnTime
    last_12_months: OnTime

    @property
    def flagged(self) -> bool:
        """Paused or unreachable: no reminder reaches them."""
        return self.status in FLAGGED


def window_start(now: datetime, months: int) -> datetime:
    """``now`` minus calendar ``months`` (clamped like the plan's months), in UTC."""
    moment = now.astimezone(UTC)
    day = add_months(moment.date(), -months)
    return datetime.combine(day, moment.timetz())


def _on_time_columns(now: datetime, months: int) -> tuple[Any, Any]:
    """Correlated subqueries: tests of the patient on time, and counted, in the window;
    each a range of ix_reminder_patient_id_due_at, then the acknowledgements' index."""
    done = exists().where(
        Acknowledgement.reminder_id == Reminder.id, Acknowledgement.action == Action.DONE.value
    )
    on_time = exists().where(
        Acknowledgement.reminder_id == Reminder.id,
        Acknowledgement.action == Action.DONE.value,
        Acknowledgement.at < _deadline(),
    )
    settled = or_(done, Reminder.due_at <= now - CONFIRM_WITHIN)

    def count(*conditions: ColumnElement[bool]) -> Any:
        return (
            select(func.count())
            .where(
                Reminder.patient_id == Patient.id,
                Reminder.due_at >= window_start(now, months),
                Reminder.due_at < now,
                Reminder.kind.in_(_TEST_KINDS),
                Reminder.first_sent_at.is_not(None),
                *conditions,
            )
            .correlate(Patient)
            .scalar_subquery()
        )

    return count(on_time), count(settled)


async def console_patients(
    session: AsyncSession,
    *,
    now: datetime,
    scope: teams.Scope = teams.EVERY_TEAM,
    team_id: int | None = None,
    sort: PatientSort = PatientSort.LABEL,
    descending: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[PatientRow]:
    """The patients of ``scope`` (and of ``team_id``, which cannot widen it), with team,
    next reminder and adherence over the last 6 and 12 months; sorted by ``sort`` (ties
    by label), patients without a next reminder or without counted tests last."""
    # Only active patients are sent reminders; an invited one is once they accept.
    next_due = case(
        (
            Patient.status.in_(sorted(_WILL_BE_SENT)),
            select(func.min(Reminder.due_at))
            .where(
                Reminder.patient_id == Patient.id,
                Reminder.due_at >= now,
                Reminder.status.in_(sorted(UNSENT)),
                Reminder.first_sent_at.is_(None),
            )
            .correlate(Patient)
            .scalar_subquery(),
        ),
        else_=None,
    )
    on_time_6, counted_6 = _on_time_columns(now, 6)
    on_time_12, counted_12 = _on_time_columns(now, 12)
    query = select(
        Patient.id,
        Patient.label,
        Patient.status,
        Team.name,
        Patient.timezone,
        next_due,
        on_time_6,
        counted_6,
        on_time_12,
        counted_12,
    ).join(Team, Team.id == Patient.team_id)
    query = query.where(*_patient_conditions(scope, team_id))
    ordering: list[Any]
    if sort is PatientSort.STATUS:
        ordering = [Patient.status.desc() if descending else Patient.status]
    elif sort is PatientSort.NEXT:
        ordering = [(next_due.desc() if descending else next_due.asc()).nulls_last()]
    elif sort is PatientSort.ADHERENCE:
        ratios = [
            cast(on_time, Float) / func.nullif(counted, 0)
            for on_time, counted in ((on_time_6, counted_6), (on_time_12, counted_12))
        ]
        ordering = [(r.desc() if descending else r.asc()).nulls_last() for r in ratios]
    else:
        ordering = []
    label_order = Patient.label.desc() if descending and not ordering else Patient.label
    query = query.order_by(*ordering, label_order).offset(offset).limit(limit)
    return [
        PatientRow(
            patient_id=row[0],
            label=row[1],
            status=row[2],
            team=row[3],
            timezone=row[4],
            next_due=row[5],
            last_6_months=OnTime(int(row[6]), int(row[7])),
            last_12_months=OnTime(int(row[8]), int(row[9])),
        )
        for row in (await session.execute(query)).all()
    ]


def _patient_conditions(scope: teams.Scope, team_id: int | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    condition = scope.condition(Patient.team_id)
    if condition is not None:
        conditions.append(condition)
    if team_id is not None:
        conditions.append(Patient.team_id == team_id)
    return conditions


async def count_console_patients(
    session: AsyncSession, *, scope: teams.Scope = teams.EVERY_TEAM, team_id: int | None = None
) -> int:
    """How many patients ``console_patients`` lists with the same scope and team."""
    query = select(func.count()).select_from(Patient).where(*_patient_conditions(scope, team_id))
    return int(await session.scalar(query) or 0)
