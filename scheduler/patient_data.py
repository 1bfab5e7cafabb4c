"""A patient's personal data: what they may see about themselves (``export``), its
erasure (``erase``), and the chat link of a withdrawn enrolment.

Functions take keyword-only arguments and work inside the caller's transaction, like
``scheduler.store``; lookups return ``None`` for "not found". Exports are plain data
(str, int, bool, None, lists and dicts) ready for ``json.dumps``: instants as ISO 8601 in
UTC, local dates as ISO dates. Invite token hashes are never exported.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import dialogues, outbox
from scheduler.models import (
    Acknowledgement,
    AuditEvent,
    Consent,
    Course,
    DeliveryEvent,
    ErasedCount,
    Invite,
    Patient,
    Reminder,
)
from scheduler.statuses import UNSENT, PatientStatus
from scheduler.store import audit, lock_patient, withdraw

JSON = dict[str, Any]


def _instant(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _day(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


async def unsent_reminders(session: AsyncSession, *, patient_id: int) -> list[Reminder]:
    """Every reminder of the patient that may still be sent, soonest first."""
    rows = await session.scalars(
        select(Reminder)
        .where(Reminder.patient_id == patient_id, Reminder.status.in_(UNSENT))
        .order_by(Reminder.due_at, Reminder.id)
    )
    return list(rows)


async def export(session: AsyncSession, *, patient_id: int) -> JSON | None:
    """Everything stored about the patient: preferences, courses, consents, invites (without
    their token hashes), reminders with their status history and answers, and the audit
    trail (when and what, not which staff member)."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return None
    courses = await session.scalars(
        select(Course).where(Course.patient_id == patient_id).order_by(Course.number)
    )
    consents = await session.scalars(
        select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.accepted_at)
    )
    invites = await session.scalars(
        select(Invite).where(Invite.patient_id == patient_id).order_by(Invite.created_at)
    )
    reminders = list(
        await session.scalars(
            select(Reminder)
            .where(Reminder.patient_id == patient_id)
            .order_by(Reminder.due_at, Reminder.id)
        )
    )
    events: defaultdict[int, list[JSON]] = defaultdict(list)
    for event in await session.scalars(
        select(DeliveryEvent)
        .join(Reminder, Reminder.id == DeliveryEvent.reminder_id)
        .where(Reminder.patient_id == patient_id)
        .order_by(DeliveryEvent.at, DeliveryEvent.id)
    ):
        events[event.reminder_id].append(
            {
                "status": event.status,
                "at": _instant(event.at),
                "telegram_message_id": event.telegram_message_id,
                "error_code": event.error_code,
                "detail": event.detail,
            }
        )
    answers: defaultdict[int, list[JSON]] = defaultdict(list)
    for answer in await session.scalars(
        select(Acknowledgement)
        .join(Reminder, Reminder.id == Acknowledgement.reminder_id)
        .where(Reminder.patient_id == patient_id)
        .order_by(Acknowledgement.at, Acknowledgement.id)
    ):
        answers[answer.reminder_id].append({"action": answer.action, "at": _instant(answer.at)})
    trail = await session.execute(
        select(AuditEvent.at, AuditEvent.action)
        .where(AuditEvent.target == f"patient:{patient_id}")
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    return {
        "label": patient.label,
        "status": patient.status,
        "locale": patient.locale,
        "timezone": patient.timezone,
        "send_time": patient.send_time.strftime("%H:%M"),
        "can_become_pregnant": patient.cbp,
        "has_cervix": patient.cervix,
        "prophylaxis_days": patient.prophylaxis_days,
        "telegram_chat_id": patient.chat_id,
        "enrolled_at": _instant(patient.created_at),
        "courses": [
            {"number": course.number, "start": _day(course.start), "days": course.days}
            for course in courses
        ],
        "consents": [
            {
                "version": consent.version,
                "locale": consent.locale,
                "text_sha256": consent.text_hash,
                "accepted_at": _instant(consent.accepted_at),
                "withdrawn_at": _instant(consent.withdrawn_at),
            }
            for consent in consents
        ],
        "invites": [
            {
                "created_at": _instant(invite.created_at),
                "expires_at": _instant(invite.expires_at),
                "used_at": _instant(invite.used_at),
                "revoked_at": _instant(invite.revoked_at),
            }
            for invite in invites
        ],
        "reminders": [
            {
                "kind": reminder.kind,
                "occurrence": reminder.occurrence,
                "local_date": _day(reminder.local_date),
                "due": _instant(reminder.due_at),
                "about": _day(reminder.about),
                "course": reminder.course,
                "status": reminder.status,
                "events": events.get(reminder.id, []),
                "answers": answers.get(reminder.id, []),
            }
            for reminder in reminders
        ],
        "audit": [{"at": _instant(at), "action": action} for at, action in trail.all()],
    }


async def release_chat(
    session: AsyncSession, *, patient_id: int, actor: str, now: datetime
) -> Patient | None:
    """Unlink a withdrawn enrolment from its Telegram chat, so that the chat can consent to
    a new enrolment (chat ids are unique). Any other patient is returned unchanged."""
    patient = await session.get(Patient, patient_id, with_for_update=True)
    if patient is None or patient.status != PatientStatus.WITHDRAWN or patient.chat_id is None:
        return patient
    patient.chat_id = None
    await session.flush()
    audit(
        session,
        actor=actor,
        action="patient.release_chat",
        target=f"patient:{patient_id}",
        now=now,
    )
    return patient


# The Telegram id of an erased patient, wherever an audit row named it.
ERASED_ACTOR = "user:erased"
# The count of erasures in ``erased_count``, beside the reminder counts.
ERASURES = ("patient", "erased")


@dataclass(frozen=True, slots=True)
class Erased:
    """What the caller may still need once the data is gone: to answer the patient and to
    tell the care team which label to remove from the clinic's own records."""

    label: str
    locale: str
    team_id: int
    coordinator_id: int | None


async def erase(
    session: AsyncSession, *, patient_id: int, actor: str, now: datetime
) -> Erased | None:
    """Withdraw and erase the patient: every row about them is deleted (preferences,
    courses, consents, invites, reminders with their history and answers, alerts, the
    conversations about them or in their chat), and
    their Telegram id is removed from the audit trail. What stays: how many reminders of
    each kind ended in each status, summed over every erased patient (``ErasedCount``), and
    the audit rows of who enrolled and who erased "patient:<number>", a number that now
    points to nothing."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None:
        return None
    erased = Erased(patient.label, patient.locale, patient.team_id, patient.coordinator_id)
    chat_id = patient.chat_id
    await withdraw(session, patient_id=patient_id, actor=actor, now=now)
    counts = await outbox.erase(session, patient_id=patient_id)
    await _add_counts(session, [(*key, n) for key, n in counts.items()] + [(*ERASURES, 1)])
    for table in (Consent, Invite, Course):
        await session.execute(delete(table).where(table.patient_id == patient_id))
    await dialogues.forget(session, patient_ids=[patient_id], chat_id=chat_id)
    await session.execute(delete(Patient).where(Patient.id == patient_id))
    session.expunge(patient)
    if chat_id is not None:
        telegram = f"user:{chat_id}"
        await session.execute(
            update(AuditEvent).where(AuditEvent.actor == telegram).values(actor=ERASED_ACTOR)
        )
        await session.execute(
            update(AuditEvent).where(AuditEvent.target == telegram).values(target=ERASED_ACTOR)
        )
    if actor == f"user:{chat_id}":
        actor = ERASED_ACTOR
    audit(session, actor=actor, action="patient.erase", target=f"patient:{patient_id}", now=now)
    return erased


async def _add_counts(session: AsyncSession, counts: list[tuple[str, str, int]]) -> None:
    """Add to the anonymous counts, one upsert per (kind, status): erasures in two
    transactions at once both count."""
    if not counts:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ErasedCount).values(
        [{"kind": kind, "status": status, "reminders": n} for kind, status, n in counts]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ErasedCount.kind, ErasedCount.status],
            set_={"reminders": ErasedCount.reminders + statement.excluded.reminders},
        )
    )


async def erased_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """The anonymous counts left by erasures: (kind, status) -> reminders, and
    ``ERASURES`` -> how many patients were erased."""
    rows = await session.execute(
        select(ErasedCount.kind, ErasedCount.status, ErasedCount.reminders)
    )
    return {(kind, status): n for kind, status, n in rows.all()}
