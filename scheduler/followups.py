"""After a reminder is sent: the patient's answers, nudges, and the coordinator's alerts.

PROTOCOL.md: test reminders carry Done, Remind me tomorrow (24 h, at most 3 times) and
I have symptoms; the post-infusion warning carries I'm OK and I have symptoms. A test not
confirmed gets a nudge after 3 and after 7 days, and the coordinator an alert after 10.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import store
from scheduler.alerts import Alert, AlertKind, queue_alert
from scheduler.dispatcher import Outcome, Result
from scheduler.models import Acknowledgement, Patient, Reminder
from scheduler.protocol import KIND_ORDER, TEST_KINDS, Kind
from scheduler.statuses import PatientStatus, ReminderStatus

log = logging.getLogger(__name__)

MAX_SNOOZES: Final = 3
SNOOZE_FOR: Final = timedelta(hours=24)
# Days after the due date: nudge, nudge, coordinator alert.
FOLLOW_UP_DAYS: Final = (3, 7, 10)


class Action(StrEnum):
    DONE = "done"
    OK = "ok"
    SNOOZE = "snooze"
    SYMPTOMS = "symptoms"


class Answer(StrEnum):
    RECORDED = "recorded"
    ALREADY = "already"  # this button was already used
    NOT_YOURS = "not_yours"  # unknown reminder, or another patient's: refused
    SNOOZE_LIMIT = "snooze_limit"


@dataclass(frozen=True, slots=True)
class Acknowledged:
    answer: Answer
    patient: Patient | None = None
    reminder: Reminder | None = None
    snoozes: int = 0


async def acknowledge(
    session: AsyncSession,
    *,
    reminder_id: int,
    chat_id: int,
    action: Action,
    snoozes_seen: int,
    now: datetime,
) -> Acknowledged:
    """Record a button press on a reminder message, once.

    The press is checked against the chat that owns the reminder: callback data comes
    from the client. Done and I'm OK cover every reminder of the message (same patient,
    same instant); snoozing moves them all 24 hours on.
    """
    row = (
        await session.execute(
            select(Reminder, Patient)
            .join(Patient, Patient.id == Reminder.patient_id)
            .where(Reminder.id == reminder_id)
        )
    ).first()
    if row is None or row.Patient.chat_id != chat_id:
        return Acknowledged(Answer.NOT_YOURS)
    reminder, patient = row.Reminder, row.Patient
    bundle = list(
        await session.scalars(
            select(Reminder).where(
                Reminder.patient_id == patient.id,
                Reminder.due_at == reminder.due_at,
                Reminder.status.in_({ReminderStatus.SENT, ReminderStatus.ACKNOWLEDGED}),
            )
        )
    )
    ids = [r.id for r in bundle]
    snoozes = (await store.snooze_counts(session, reminder_ids=[reminder.id])).get(reminder.id, 0)
    answered = Acknowledged(Answer.RECORDED, patient, reminder, snoozes)

    if action in (Action.DONE, Action.OK):
        open_ = [r for r in bundle if r.status == ReminderStatus.SENT]
        if not open_:
            return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
        for r in open_:
            r.status = ReminderStatus.ACKNOWLEDGED
            session.add(Acknowledgement(reminder_id=r.id, action=action, at=now))
        await session.flush()
        await store.append_events(
            session, [r.id for r in open_], ReminderStatus.ACKNOWLEDGED, now, detail=action.value
        )
        return answered

    if action is Action.SYMPTOMS:
        reported = await session.scalar(
            select(func.count())
            .select_from(Acknowledgement)
            .where(
                Acknowledgement.reminder_id == reminder.id,
                Acknowledgement.action == Action.SYMPTOMS,
            )
        )
        if reported:
            return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
        session.add_all(Acknowledgement(reminder_id=i, action=action, at=now) for i in ids)
        return answered

    # Snooze: only from the message the patient is looking at, and at most three times.
    if (
        reminder.status != ReminderStatus.SENT
        or snoozes_seen != snoozes
        or Kind(reminder.kind) not in TEST_KINDS
    ):
        return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
    if snoozes >= MAX_SNOOZES:
        return Acknowledged(Answer.SNOOZE_LIMIT, patient, reminder, snoozes)
    waiting = [r for r in bundle if r.status == ReminderStatus.SENT]
    for r in waiting:
        r.status = ReminderStatus.PLANNED
        r.ready_at = now + SNOOZE_FOR
        session.add(Acknowledgement(reminder_id=r.id, action=action, at=now))
    await session.flush()
    await store.append_events(
        session,
        [r.id for r in waiting],
        ReminderStatus.PLANNED,
        now,
        detail=f"postponed 24 h ({snoozes + 1} of {MAX_SNOOZES})",
    )
    return Acknowledged(Answer.RECORDED, patient, reminder, snoozes + 1)


# --- the follow-up sweep ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nudge:
    """A second reminder about a test the patient has not confirmed."""

    reminder_id: int
    chat_id: int
    locale: str
    kinds: tuple[Kind, ...]  # every unconfirmed test of the message
    due_day: date
    days_overdue: int


class FollowUpSender(Protocol):
    async def nudge(self, nudge: Nudge) -> Outcome: ...


@dataclass
class SweepReport:
    nudged: int = 0
    alerted: int = 0
    failed: int = 0


def _stage(days_overdue: int) -> int:
    """How many follow-ups a test this overdue should have had (0 to 3)."""
    return sum(days_overdue >= days for days in FOLLOW_UP_DAYS)


async def _followed_up(
    session: AsyncSession,
    ids: list[int],
    stage: int,
    now: datetime,
    detail: str,
    message_id: int | None = None,
) -> None:
    """Record that the reminders ``ids`` had the follow-up of ``stage``."""
    await session.execute(update(Reminder).where(Reminder.id.in_(ids)).values(followups=stage))
    await store.append_events(
        session, ids, ReminderStatus.SENT, now, detail=detail, message_id=message_id
    )


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    sender: FollowUpSender,
    *,
    now: datetime,
    alert_chat_id: int | None = None,
) -> SweepReport:
    """Nudge patients about unconfirmed tests and alert coordinators about missed ones.

    Reminders of one message are followed up together. A nudge that could not be sent is
    tried again at the next sweep; an alert is queued for the dispatcher, which retries it.
    A long downtime does not make the patient get two nudges at once: the latest stage due
    is the one made.
    """
    report = SweepReport()
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Reminder, Patient)
                .join(Patient, Patient.id == Reminder.patient_id)
                .where(
                    Reminder.kind.in_([kind.value for kind in TEST_KINDS]),
                    Reminder.status == ReminderStatus.SENT,
                    Reminder.followups < len(FOLLOW_UP_DAYS),
                    Reminder.due_at <= now - timedelta(days=FOLLOW_UP_DAYS[0]),
                    Patient.status == PatientStatus.ACTIVE,
                )
                .order_by(Reminder.due_at, Reminder.id)
            )
        ).all()
    bundles: dict[tuple[int, datetime], list[tuple[Reminder, Patient]]] = {}
    for row in rows:
        bundles.setdefault((row.Patient.id, row.Reminder.due_at), []).append(
            (row.Reminder, row.Patient)
        )
    for items in bundles.values():
        items.sort(key=lambda pair: KIND_ORDER[Kind(pair[0].kind)])
        reminder, patient = items[0]
        today = now.astimezone(ZoneInfo(patient.timezone)).date()
        days = (today - reminder.local_date).days
        stage = _stage(days)
        if stage <= min(r.followups for r, _ in items):
            continue
        ids = [r.id for r, _ in items]
        if stage == len(FOLLOW_UP_DAYS):
            alert = Alert(
                AlertKind.MISSED_TEST,
                patient.id,
                patient.label,
                patient.coordinator_id,
                Kind(reminder.kind),
                reminder.local_date,
            )
            async with sessions.begin() as session:
                queue_alert(session, alert, alert_chat_id=alert_chat_id, now=now)
                await _followed_up(
                    session,
                    ids,
                    stage,
                    now,
                    f"coordinator alerted: not confirmed after {days} days",
                )
            report.alerted += 1
            continue
        assert patient.chat_id is not None
        outcome = await sender.nudge(
            Nudge(
                reminder.id,
                patient.chat_id,
                patient.locale,
                tuple(Kind(r.kind) for r, _ in items),
                reminder.local_date,
                days,
            )
        )
        detail = f"follow-up after {days} days"
        async with sessions.begin() as session:
            if outcome.result is Result.SENT:
                await _followed_up(session, ids, stage, now, detail, outcome.message_id)
                report.nudged += 1
            else:
                await store.append_events(
                    session,
                    ids,
                    ReminderStatus.SENT,
                    now,
                    code=outcome.error_code,
                    detail=f"{detail} not delivered: {outcome.description or ''}",
                )
                report.failed += 1
    return report
