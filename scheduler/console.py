"""What the web console reads: one patient's page, the month strip, the coordinator alerts.

Data access like ``store`` (keyword-only arguments, ``None`` for "not found", the caller's
session), scoped by ``teams.Scope``: a patient of another team is not found. The
patient list and the outcome of a test (on time, late, ...) are in ``coordination``; the
delivery log in ``deliveries``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import deliveries, store, teams
from scheduler.coordination import OnTime, Outcome, outcome, window_start
from scheduler.deliveries import DeliveryEntry, StatusChange
from scheduler.models import Acknowledgement, AlertEvent, CoordinatorAlert, Patient, Team
from scheduler.outbox import Action
from scheduler.planner import Course
from scheduler.protocol import MONITORING_MONTHS, TEST_KINDS, add_months

_CHUNK = 2000
# A month with tests of several outcomes shows the one that needs attention most.
_WORST_FIRST: Final = (
    Outcome.MISSED,
    Outcome.LATE,
    Outcome.UNCONFIRMED,
    Outcome.UPCOMING,
    Outcome.ON_TIME,
)
_SETTLED: Final = frozenset({Outcome.ON_TIME, Outcome.LATE, Outcome.MISSED})


@dataclass(frozen=True, slots=True)
class ReminderOutcome:
    """A test reminder of the plan and how it turned out (``coordination.outcome``)."""

    reminder_id: int
    kind: str
    local_date: date
    due_at: datetime
    reached: bool
    outcome: Outcome | None


@dataclass(frozen=True, slots=True)
class MonthCell:
    """Month ``number`` of the monitoring programme: from ``start`` (course 1's first day
    plus ``number`` calendar months) to the day before the next month's start."""

    number: int
    start: date
    end: date
    # The month's tests' outcome, worst first; None: no test asked of the patient.
    outcome: Outcome | None


def month_strip(courses: Sequence[Course], results: Iterable[ReminderOutcome]) -> list[MonthCell]:
    """One cell per month from course 1 (month 0) to the month holding the end of
    monitoring (48 months after the last infusion); pure."""
    if not courses:
        return []
    anchor = courses[0].start
    last = add_months(courses[-1].end, MONITORING_MONTHS)
    months = 0
    while add_months(anchor, months + 1) <= last:
        months += 1
    found: dict[int, set[Outcome]] = {}
    for result in results:
        if result.outcome is not None:
            found.setdefault(_month_of(anchor, result.local_date), set()).add(result.outcome)
    cells = []
    for number in range(months + 1):
        outcomes = found.get(number, set())
        worst = next((o for o in _WORST_FIRST if o in outcomes), None)
        start, following = add_months(anchor, number), add_months(anchor, number + 1)
        cells.append(MonthCell(number, start, date.fromordinal(following.toordinal() - 1), worst))
    return cells


def _month_of(anchor: date, day: date) -> int:
    """The month of the programme ``day`` falls in (0: course 1's month)."""
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    return months - 1 if add_months(anchor, months) > day else months


def on_time_share(results: Iterable[ReminderOutcome], *, now: datetime, months: int) -> OnTime:
    """Adherence over the last ``months``, as ``coordination.console_patients`` counts it:
    settled tests due in the window that reached the patient, and those on time."""
    since = window_start(now, months)
    counted = [
        r for r in results if since <= r.due_at < now and r.reached and r.outcome in _SETTLED
    ]
    return OnTime(sum(r.outcome is Outcome.ON_TIME for r in counted), len(counted))


# --- alerts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """A coordinator alert (one recipient's row) with its status history."""

    alert_id: int
    patient_id: int
    label: str
    team: str
    kind: str
    # Who the recipient is to the patient (``alerts.Route``): never their chat id here;
    # None when the alert found nobody to tell (no chat).
    route: str | None
    reminder_kind: str | None
    day: date | None
    about: date | None
    status: str
    created_at: datetime
    sent_at: datetime | None
    # Oldest first.
    history: tuple[StatusChange, ...]


def _alert_conditions(
    scope: teams.Scope, patient_id: int | None, status: str | None, kind: str | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scope.team_ids is not None:
        team = select(Patient.id).where(Patient.team_id.in_(sorted(scope.team_ids)))
        conditions.append(CoordinatorAlert.patient_id.in_(team))
    if patient_id is not None:
        conditions.append(CoordinatorAlert.patient_id == patient_id)
    if status is not None:
        conditions.append(CoordinatorAlert.status == status)
    if kind is not None:
        conditions.append(CoordinatorAlert.kind == kind)
    return conditions


async def count_alerts(
    session: AsyncSession,
    *,
    scope: teams.Scope = teams.EVERY_TEAM,
    patient_id: int | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> int:
    """How many alerts ``alert_log`` lists with the same filters."""
    query = (
        select(func.count())
        .select_from(CoordinatorAlert)
        .where(*_alert_conditions(scope, patient_id, status, kind))
    )
    return int(await session.scalar(query) or 0)


async def alert_log(
    session: AsyncSession,
    *,
    scope: teams.Scope = teams.EVERY_TEAM,
    patient_id: int | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[AlertEntry]:
    """Coordinator alerts of ``scope``'s patients, newest first, each with its history."""
    query = (
        select(
            CoordinatorAlert.id,
            CoordinatorAlert.patient_id,
            Patient.label,
            Team.name,
            CoordinatorAlert.kind,
            CoordinatorAlert.route,
            CoordinatorAlert.reminder_kind,
            CoordinatorAlert.day,
            CoordinatorAlert.about,
            CoordinatorAlert.status,
            CoordinatorAlert.created_at,
            CoordinatorAlert.sent_at,
            CoordinatorAlert.chat_id.is_not(None),
        )
        .join(Patient, Patient.id == CoordinatorAlert.patient_id)
        .join(Team, Team.id == Patient.team_id)
        .where(*_alert_conditions(scope, patient_id, status, kind))
        .order_by(CoordinatorAlert.created_at.desc(), CoordinatorAlert.id.desc())
        .offset(offset)
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    histories = await _alert_histories(session, [row[0] for row in rows])
    return [_alert_entry(row, histories.get(row[0], ())) for row in rows]


def _alert_entry(row: Any, history: Sequence[StatusChange]) -> AlertEntry:
    alert_id, patient_id, label, team, kind, route, reminder_kind, day, about, status = row[:10]
    return AlertEntry(
        alert_id=alert_id,
        patient_id=patient_id,
        label=label,
        team=team,
        kind=kind,
        route=route if row[12] else None,
        reminder_kind=reminder_kind,
        day=day,
        about=about,
        status=status,
        created_at=row[10],
        sent_at=row[11],
        history=tuple(history),
    )


async def _alert_histories(
    session: AsyncSession, alert_ids: Sequence[int]
) -> dict[int, list[StatusChange]]:
    histories: dict[int, list[StatusChange]] = {}
    for start in range(0, len(alert_ids), _CHUNK):
        rows = await session.execute(
            select(
                AlertEvent.alert_id,
                AlertEvent.status,
                AlertEvent.at,
                AlertEvent.telegram_message_id,
                AlertEvent.error_code,
                AlertEvent.detail,
            )
            .where(AlertEvent.alert_id.in_(alert_ids[start : start + _CHUNK]))
            .order_by(AlertEvent.alert_id, AlertEvent.at, AlertEvent.id)
        )
        for alert_id, status, at, message_id, code, detail in rows.all():
            histories.setdefault(alert_id, []).append(
                StatusChange(status, at, message_id, code, detail)
            )
    return histories


# --- one patient -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientPage:
    """Everything the console's page of one patient shows."""

    patient: Patient  # courses loaded
    team: str
    # Due by now, newest first; and still to come, soonest first. Each with its history.
    past: list[DeliveryEntry]
    upcoming: list[DeliveryEntry]
    # By reminder id, for the test reminders that were asked of the patient.
    outcomes: dict[int, Outcome]
    strip: list[MonthCell]
    last_6_months: OnTime
    last_12_months: OnTime
    alerts: list[AlertEntry]


async def outcomes_of(
    session: AsyncSession, *, entries: Sequence[DeliveryEntry], now: datetime
) -> list[ReminderOutcome]:
    """The outcome of each test reminder among ``entries`` (one query for the Done times)."""
    tests = [e for e in entries if e.kind in {kind.value for kind in TEST_KINDS}]
    done: dict[int, datetime] = {}
    ids = [e.reminder_id for e in tests]
    for start in range(0, len(ids), _CHUNK):
        rows = await session.execute(
            select(Acknowledgement.reminder_id, func.min(Acknowledgement.at))
            .where(
                Acknowledgement.reminder_id.in_(ids[start : start + _CHUNK]),
                Acknowledgement.action == Action.DONE.value,
            )
            .group_by(Acknowledgement.reminder_id)
        )
        done.update({reminder_id: at for reminder_id, at in rows.all()})
    results = []
    for entry in tests:
        was_reached = entry.first_sent_at is not None
        results.append(
            ReminderOutcome(
                reminder_id=entry.reminder_id,
                kind=entry.kind,
                local_date=entry.local_date or entry.due_at.date(),
                due_at=entry.due_at,
                reached=was_reached,
                outcome=outcome(
                    status=entry.status,
                    due_at=entry.due_at,
                    reached=was_reached,
                    done_at=done.get(entry.reminder_id),
                    now=now,
                ),
            )
        )
    return results


async def patient_page(
    session: AsyncSession, *, label: str, now: datetime, scope: teams.Scope = teams.EVERY_TEAM
) -> PatientPage | None:
    """The patient with ``label`` if their team is in ``scope``: courses, the whole plan
    with each reminder's history, the outcomes of the tests, the month strip, adherence
    and the alerts about them."""
    patient = await store.patient_by_label(session, label=label, scope=scope)
    if patient is None:
        return None
    team = await session.scalar(select(Team.name).where(Team.id == patient.team_id))
    plan = await deliveries.delivery_log(session, scope=scope, label=label)
    results = await outcomes_of(session, entries=plan, now=now)
    courses = [Course(course.start, course.days) for course in patient.courses]
    return PatientPage(
        patient=patient,
        team=str(team),
        past=[entry for entry in plan if entry.due_at <= now],
        upcoming=sorted((entry for entry in plan if entry.due_at > now), key=lambda e: e.position),
        outcomes={r.reminder_id: r.outcome for r in results if r.outcome is not None},
        strip=month_strip(courses, results),
        last_6_months=on_time_share(results, now=now, months=6),
        last_12_months=on_time_share(results, now=now, months=12),
        alerts=await alert_log(session, scope=scope, patient_id=patient.id),
    )


__all__ = [
    "AlertEntry",
    "MonthCell",
    "PatientPage",
    "ReminderOutcome",
    "alert_log",
    "count_alerts",
    "month_strip",
    "on_time_share",
    "outcomes_of",
    "patient_page",
]
