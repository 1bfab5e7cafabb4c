"""What care coordinators read about their patients: counts, adherence, one patient's detail.

Data access only, like ``store``: keyword-only arguments, ``None`` for "not found", and the
caller's session (and transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import store, teams
from scheduler.models import Acknowledgement, DeliveryEvent, Patient, Reminder
from scheduler.outbox import Action
from scheduler.protocol import TEST_KINDS
from scheduler.statuses import ReminderStatus

_SENT = (ReminderStatus.SENT.value, ReminderStatus.ACKNOWLEDGED.value)
_CHUNK = 2000


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
