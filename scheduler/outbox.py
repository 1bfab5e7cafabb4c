"""The outbox: every change of a reminder's or a coordinator alert's status, each with its
history row. Nothing else writes ``Reminder.status``, ``CoordinatorAlert.status``,
``DeliveryEvent`` or ``AlertEvent``.

A reminder moves through these statuses (DESIGN.md, README "What the delivery statuses
mean")::

    planned ─claim─▶ sending ─mark_sent─▶ sent ─acknowledge─▶ acknowledged
       │  ▲            │  │ └─retry─▶ retrying ─claim─▶ sending …
       │  └─release────┘  └─fail─▶ failed
       ├─cancel─▶ cancelled (withdrawal, re-plan)     skipped (past at enrolment)
       └─claim, too late─▶ expired

A sent reminder is queued again, still ``sent``, when the patient postpones it ("again")
or when its tests are not confirmed ("nudge", see ``Reminder.pending``); such a send that
fails leaves the reminder ``sent``: the reminder itself did arrive.

The queue is ``Reminder.ready_at``: the dispatcher takes what is due, oldest first. A claim
is named by the reminder's ``claim`` counter and the process that holds it
(``claimed_by``): only its holder can finish it, and a process that stops beating
(``scheduler.processes``) has its claims taken back, with "resent: claim abandoned" in the
history, so staff can see the message may have arrived twice.

Every status change (and every history row) of a reminder sets its ``changed_at`` to the
change's instant; a new reminder starts with its ``created_at``. The delivery log's
"activity since" reads it (``scheduler.deliveries``).

Coordinator alerts have the same shape (queued → sending → sent / retrying / failed) in
their own table and history.

Each function takes the caller's session and changes nothing outside its transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from scheduler import alerts as raised
from scheduler import bulk, teams
from scheduler.alerts import Alert, Route
from scheduler.models import (
    Acknowledgement,
    AlertEvent,
    CoordinatorAlert,
    DeliveryEvent,
    Patient,
    Reminder,
    StaffUser,
    UTCDateTime,
)
from scheduler.planner import PlanItem
from scheduler.policies import is_too_late
from scheduler.protocol import KIND_ORDER, TEST_KINDS, Kind
from scheduler.sending import Purpose
from scheduler.statuses import UNSENT, AlertStatus, PatientStatus, ReminderStatus

PLANNED, SENDING, SENT, RETRYING = (
    ReminderStatus.PLANNED,
    ReminderStatus.SENDING,
    ReminderStatus.SENT,
    ReminderStatus.RETRYING,
)
ACKNOWLEDGED, FAILED, CANCELLED, EXPIRED, SKIPPED = (
    ReminderStatus.ACKNOWLEDGED,
    ReminderStatus.FAILED,
    ReminderStatus.CANCELLED,
    ReminderStatus.EXPIRED,
    ReminderStatus.SKIPPED,
)
log = logging.getLogger(__name__)
_EVENTS = cast(Table, DeliveryEvent.__table__)
_REMINDERS = cast(Table, Reminder.__table__)
_CHUNK = 2000

MAX_SNOOZES: Final = 3
SNOOZE_FOR: Final = timedelta(hours=24)

SKIPPED_BEFORE_ENROLMENT = "before enrolment"
CANCELLED_WITHDRAWN = "consent withdrawn"
CANCELLED_REPLANNED = "no longer in the plan"
ABANDONED = "resent: claim abandoned by a stopped process; the message may have arrived"


# --- the one place a status changes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Queue:
    """A table of messages to send and the table of its history."""

    rows: type[Reminder] | type[CoordinatorAlert]
    events: type[DeliveryEvent] | type[AlertEvent]
    key: InstrumentedAttribute[int]  # the history row's reference to its message


_REMINDER_ROWS = _Queue(Reminder, DeliveryEvent, DeliveryEvent.reminder_id)
_ALERT_ROWS = _Queue(CoordinatorAlert, AlertEvent, AlertEvent.alert_id)


async def _history(
    session: AsyncSession,
    queue: _Queue,
    ids: Sequence[int],
    status: str,
    now: datetime,
    *,
    detail: str | None = None,
    code: int | None = None,
    message_id: int | None = None,
    repeatable: bool = False,
    message_ids: Mapping[int, int | None] | None = None,
) -> None:
    """Append one history row per message (with Telegram's ``message_id``, or each its own
    from ``message_ids``); with ``repeatable``, a row identical to the message's latest (the
    same retry, again) is counted instead of added."""
    if not ids:
        return
    events = queue.events
    detail = detail[:255] if detail else None
    fresh = list(ids)
    if repeatable:
        latest = select(func.max(events.id)).where(queue.key.in_(ids)).group_by(queue.key)
        counted = set(
            await session.scalars(
                update(events)
                .where(
                    events.id.in_(latest.scalar_subquery()),
                    events.status == status,
                    events.error_code.is_not_distinct_from(code),
                    events.detail.is_not_distinct_from(detail),
                )
                .values(repeats=events.repeats + 1, last_at=now)
                .returning(queue.key)
            )
        )
        fresh = [i for i in ids if i not in counted]
    if fresh:
        await session.execute(
            insert(events),
            [
                {
                    queue.key.key: message,
                    "status": status,
                    "at": now,
                    "detail": detail,
                    "error_code": code,
                    "telegram_message_id": message_ids.get(message) if message_ids else message_id,
                }
                for message in fresh
            ],
        )


async def _change(
    session: AsyncSession,
    queue: _Queue,
    where: ColumnElement[bool],
    to: str,
    now: datetime,
    *,
    values: dict[str, Any] | None = None,
    detail: str | None = None,
    code: int | None = None,
    message_id: int | None = None,
    repeatable: bool = False,
    message_ids: Mapping[int, int | None] | None = None,
) -> list[int]:
    """Set the status of the rows ``where`` selects to ``to`` (and ``values``), with their
    history rows; returns the ids that changed."""
    rows = queue.rows
    values = dict(values or {})
    if rows is Reminder:
        values.setdefault("changed_at", now)  # the delivery log's "activity since"
    changed = list(
        await session.scalars(
            update(rows).where(where).values(status=to, **values).returning(rows.id)
        )
    )
    await _history(
        session,
        queue,
        changed,
        to,
        now,
        detail=detail,
        code=code,
        message_id=message_id,
        repeatable=repeatable,
        message_ids=message_ids,
    )
    return changed


async def _move(
    session: AsyncSession,
    where: ColumnElement[bool],
    to: ReminderStatus,
    now: datetime,
    **kwargs: Any,
) -> list[int]:
    """Change reminders' status (see ``_change``)."""
    return await _change(session, _REMINDER_ROWS, where, to, now, **kwargs)


async def _move_alerts(
    session: AsyncSession, where: ColumnElement[bool], to: AlertStatus, now: datetime, **kwargs: Any
) -> list[int]:
    """Change coordinator alerts' status (see ``_change``)."""
    return await _change(session, _ALERT_ROWS, where, to, now, **kwargs)


# --- plans ---------------------------------------------------------------------------------


# The columns of a new reminder row, in the order ``add_plans`` gives them.
_NEW_REMINDER = (
    "id",
    "patient_id",
    "kind",
    "occurrence",
    "local_date",
    "due_at",
    "about",
    "course",
    "status",
    "plan_version",
    "ready_at",
    "attempts",
    "created_at",
    "changed_at",
)
_NEW_HISTORY = ("reminder_id", "status", "at", "detail")


async def add_plans(
    session: AsyncSession,
    plans: Sequence[tuple[int, Sequence[PlanItem], set[tuple[Kind, str]]]],
    *,
    version: int,
    now: datetime,
    queued: bool = False,
) -> None:
    """New reminder rows for plan items, of one patient or of many at once (an import
    writes millions of reminders): ``plans`` holds (patient id, plan items, keys of the
    skipped ones: already past when planned). Planned, or skipped with their history row;
    with ``queued`` (the patient is active), the planned ones are in the queue at their due
    time. Written by ``bulk.insert_rows`` (COPY on PostgreSQL), with ids taken beforehand
    (``bulk.new_ids``) so that the history rows need no query to find their reminders."""
    ids = iter(await bulk.new_ids(session, _REMINDERS, sum(len(p[1]) for p in plans)))
    reminders: list[tuple[Any, ...]] = []
    history: list[tuple[Any, ...]] = []
    for patient_id, items, skipped in plans:
        for kind, occurrence, day, due, course, about in items:
            reminder_id = next(ids)
            status, ready_at = PLANNED.value, due if queued else None
            if (kind, occurrence) in skipped:
                status, ready_at = SKIPPED.value, None
                history.append((reminder_id, status, now, SKIPPED_BEFORE_ENROLMENT))
            row = (reminder_id, patient_id, kind.value, occurrence, day, due, about, course)
            reminders.append((*row, status, version, ready_at, 0, now, now))
    await bulk.insert_rows(session, _REMINDERS, _NEW_REMINDER, reminders)
    await bulk.insert_rows(session, _EVENTS, _NEW_HISTORY, history)


def replannable(reminder: Reminder) -> bool:
    """Whether re-planning may move or cancel ``reminder``: never sent, not being sent."""
    return reminder.status in UNSENT and reminder.first_sent_at is None


async def cancel(
    session: AsyncSession, *, ids: Sequence[int], now: datetime, reason: str
) -> list[int]:
    """Cancel reminders that were not sent (and are not being sent): dropped by a
    re-plan. Returns those cancelled."""
    if not ids:
        return []
    return await _move(
        session,
        and_(Reminder.id.in_(ids), Reminder.status.in_(UNSENT), Reminder.first_sent_at.is_(None)),
        CANCELLED,
        now,
        values={"ready_at": None, "pending": None},
        detail=reason,
    )


async def withdraw(session: AsyncSession, *, patient_id: int, now: datetime) -> list[int]:
    """Consent withdrawn: cancel every reminder still to go, including those being sent
    right now (their sender finds them no longer its own), and drop queued follow-ups."""
    cancelled = await _move(
        session,
        and_(
            Reminder.patient_id == patient_id,
            Reminder.status.in_({*UNSENT, SENDING}),
            Reminder.first_sent_at.is_(None),
        ),
        CANCELLED,
        now,
        values={"ready_at": None, "pending": None},
        detail=CANCELLED_WITHDRAWN,
    )
    await _drop_resends(session, patient_id=patient_id, now=now, reason=CANCELLED_WITHDRAWN)
    return cancelled


async def _drop_resends(
    session: AsyncSession, *, patient_id: int, now: datetime, reason: str
) -> None:
    """A postponed reminder or a follow-up still queued (or being sent) is not sent: the
    reminder stays as it was, sent."""
    await _move(
        session,
        and_(
            Reminder.patient_id == patient_id,
            Reminder.pending.is_not(None),
            Reminder.status.in_({SENT, SENDING, RETRYING}),
        ),
        SENT,
        now,
        values={"ready_at": None, "pending": None, "claimed_by": None},
        detail=f"not sent again: {reason}",
    )


async def erase(session: AsyncSession, *, patient_id: int) -> dict[tuple[str, str], int]:
    """Delete the patient's reminders and alerts with their history and answers (their
    erasure, ``patient_data.erase``); returns how many reminders of each (kind, status)
    there were."""
    counts = (
        await session.execute(
            select(Reminder.kind, Reminder.status, func.count())
            .where(Reminder.patient_id == patient_id)
            .group_by(Reminder.kind, Reminder.status)
        )
    ).all()
    reminders = select(Reminder.id).where(Reminder.patient_id == patient_id)
    alerts = select(CoordinatorAlert.id).where(CoordinatorAlert.patient_id == patient_id)
    await session.execute(delete(DeliveryEvent).where(DeliveryEvent.reminder_id.in_(reminders)))
    await session.execute(delete(Acknowledgement).where(Acknowledgement.reminder_id.in_(reminders)))
    await session.execute(delete(AlertEvent).where(AlertEvent.alert_id.in_(alerts)))
    await session.execute(delete(Reminder).where(Reminder.patient_id == patient_id))
    await session.execute(delete(CoordinatorAlert).where(CoordinatorAlert.patient_id == patient_id))
    return {(kind, status): int(n) for kind, status, n in counts}


async def queue(session: AsyncSession, *, patient_id: int) -> None:
    """The patient is active (consent, resume): their unsent reminders wait for their time;
    those missed meanwhile go out if still inside the late window."""
    await session.execute(
        update(Reminder)
        .where(
            Reminder.patient_id == patient_id,
            Reminder.status.in_(UNSENT),
            Reminder.pending.is_(None),
        )
        .values(ready_at=Reminder.due_at)
    )


async def unqueue(session: AsyncSession, *, patient_id: int, now: datetime, reason: str) -> None:
    """The patient is paused or unreachable: nothing of theirs is taken from the queue."""
    await session.execute(
        update(Reminder)
        .where(Reminder.patient_id == patient_id, Reminder.status.in_(UNSENT))
        .values(ready_at=None)
    )
    await _drop_resends(session, patient_id=patient_id, now=now, reason=reason)


# --- the dispatcher's claims -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A reminder taken from the queue for sending, under claim ``claim``."""

    id: int
    claim: int
    attempts: int  # of the current send, this one included
    patient_id: int
    kind: Kind
    about: date | None
    local_date: date
    due_at: datetime
    intended: datetime  # when it was meant to go out: due, snooze, follow-up or retry time
    purpose: Purpose
    followups: int
    until: datetime  # the end of the claim's lease: the reminder's ready_at while it lasts


def _claims(items: Iterable[Claimed]) -> ColumnElement[bool]:
    """The reminders of these claims that are still in them."""
    pairs = [(item.id, item.claim) for item in items]
    # The plain IN lets SQLite use the primary key; a row-value IN alone scans the table.
    return and_(
        Reminder.id.in_([reminder_id for reminder_id, _ in pairs]),
        tuple_(Reminder.id, Reminder.claim).in_(pairs),
        Reminder.status == SENDING,
    )


@dataclass
class ClaimReport:
    claimed: list[Claimed]
    expired: int = 0


def held_elsewhere(*, now: datetime, lease: timedelta, process_id: int) -> Select[int]:
    """The patients with reminders claimed by another process, whose lease has not run
    out: they are being sent, and the patient's next message is that process's to send (a
    claim that ran out is due again, for anyone to take).

    A claim's lease ends at most ``lease`` from now; up to twice that is looked at (another
    process with a longer lease, a clock a little ahead): a short range of
    ``ix_reminder_ready_at``, however many reminders the patients have.
    """
    return select(Reminder.patient_id).where(
        Reminder.ready_at > now,
        Reminder.ready_at <= now + 2 * lease,
        Reminder.status == SENDING,
        Reminder.claimed_by != process_id,
    )


def due_reminders(
    *, now: datetime, limit: int, skip_patients: Select[int] | None = None
) -> Select[int, int, datetime | None]:
    """Queued reminders whose time has come, oldest first and, at one instant, first queued
    first (so a reminder taken back from a stopped process goes before those queued after
    it): a range scan of ``ix_reminder_ready_at`` (ready_at, id); none of ``skip_patients``
    (read once, not per row). PostgreSQL callers lock the rows, and the patients' (see
    ``claim_due``)."""
    query = (
        select(Reminder.id, Reminder.patient_id, Reminder.ready_at)
        .where(Reminder.ready_at <= now)
        .order_by(Reminder.ready_at, Reminder.id)
        .limit(limit)
    )
    if skip_patients is not None:
        query = query.where(Reminder.patient_id.not_in(skip_patients.scalar_subquery()))
    return query


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    process_id: int,
    lease: timedelta,
    late_window: timedelta,
    postgres: bool,
) -> ClaimReport:
    """Take up to ``limit`` due reminders for ``process_id``, and every other due reminder
    of their patients (a batch boundary never splits a message, and a patient's backlog is
    sent by one process, within that process's one-per-second limit for the chat); expire
    those too late to send.

    A patient is claimed by one process at a time. On SQLite the claim holds the write
    lock. On PostgreSQL it locks the reminders and their patients (``FOR NO KEY UPDATE ...
    SKIP LOCKED``: another claim under way skips them, and inserts of reminders are not
    held up); a claim committed since this statement began is seen by a second look at the
    patients once they are locked.
    """
    held = held_elsewhere(now=now, lease=lease, process_id=process_id)
    due = due_reminders(now=now, limit=limit, skip_patients=held)
    if postgres:
        due = due.join(Patient, Patient.id == Reminder.patient_id).with_for_update(
            of=[Reminder, Patient], skip_locked=True, key_share=True
        )
    first = (await session.execute(due)).all()
    full = len(first) >= limit  # else this batch took every due row already
    if postgres and first:
        # Locked now: a claim of these patients committed meanwhile is visible to this
        # statement (READ COMMITTED), and none can begin until this transaction ends.
        patients = {row.patient_id for row in first}
        taken = set(await session.scalars(held.where(Reminder.patient_id.in_(patients))))
        first = [row for row in first if row.patient_id not in taken]
    if not first:
        return ClaimReport([])
    ids = [row.id for row in first]
    if full:
        siblings = select(Reminder.id).where(
            Reminder.patient_id.in_({row.patient_id for row in first}),
            Reminder.ready_at <= now,
            Reminder.id.not_in(ids),
        )
        if postgres:
            siblings = siblings.with_for_update(skip_locked=True, key_share=True)
        ids += list(await session.scalars(siblings))
    # Columns, not ORM objects: nothing for the updates below to keep in step in the session.
    rows = (
        await session.execute(
            select(
                Reminder.id,
                Reminder.claim,
                Reminder.attempts,
                Reminder.patient_id,
                Reminder.kind,
                Reminder.about,
                Reminder.local_date,
                Reminder.due_at,
                Reminder.ready_at,
                Reminder.pending,
                Reminder.followups,
                Reminder.status,
            ).where(Reminder.id.in_(ids))
        )
    ).all()
    report = ClaimReport([])
    late = [r for r in rows if is_too_late(r.ready_at or now, now=now, late_window=late_window)]
    hours = int(late_window.total_seconds() // 3600)
    too_late = f"more than {hours} h late, not sent"
    if late:
        expired = await _move(
            session,
            Reminder.id.in_([r.id for r in late if r.pending is None]),
            EXPIRED,
            now,
            values={"ready_at": None, "claimed_by": None},
            detail=too_late,
        )
        await _move(
            session,
            Reminder.id.in_([r.id for r in late if r.pending is not None]),
            SENT,
            now,
            values={"ready_at": None, "pending": None, "claimed_by": None},
            detail=f"not sent again: {too_late}",
        )
        report.expired = len(expired)
    gone = {r.id for r in late}
    fresh = [r for r in rows if r.id not in gone]
    until = now + lease
    report.claimed = [
        Claimed(
            r.id,
            r.claim + 1,
            r.attempts + 1,
            r.patient_id,
            Kind(r.kind),
            r.about,
            r.local_date,
            r.due_at,
            r.ready_at or now,
            Purpose(r.pending or Purpose.REMIND),
            r.followups,
            until,
        )
        for r in fresh
    ]
    abandoned = [r.id for r in fresh if r.status == SENDING]  # a lease that ran out
    await _history(session, _REMINDER_ROWS, abandoned, RETRYING, now, detail=ABANDONED)
    await session.execute(
        update(Reminder)
        .where(Reminder.id.in_([r.id for r in fresh]))
        .values(
            status=SENDING,
            changed_at=now,
            ready_at=until,
            attempts=Reminder.attempts + 1,
            claim=Reminder.claim + 1,
            claimed_by=process_id,
        )
    )
    return report


async def still_ours(session: AsyncSession, claims: Sequence[Claimed]) -> set[int]:
    """Of these claims, the reminders still claimed by them and whose patient is active
    with a chat: what may be sent right now.

    A claimed reminder's ``ready_at`` is its lease's end, the same for a batch of claims:
    the statement reads that range of ``ix_reminder_ready_at``, with no parameter per claim
    (it is the same statement for any number of claims, prepared once)."""
    if not claims:
        return set()
    wanted = {(claim.id, claim.claim) for claim in claims}
    rows = await session.execute(
        select(Reminder.id, Reminder.claim)
        .join(Patient, Patient.id == Reminder.patient_id)
        .where(
            Reminder.ready_at >= min(claim.until for claim in claims),
            Reminder.ready_at <= max(claim.until for claim in claims),
            Reminder.status == SENDING,
            Patient.status == PatientStatus.ACTIVE,
            Patient.chat_id.is_not(None),
        )
    )
    return {reminder_id for reminder_id, claim in rows if (reminder_id, claim) in wanted}


def _resend(purpose: Purpose) -> bool:
    return purpose is not Purpose.REMIND


async def mark_sent(
    session: AsyncSession,
    messages: Sequence[tuple[Sequence[Claimed], int | None]],
    *,
    now: datetime,
) -> list[int]:
    """Telegram accepted these messages: (their claims, Telegram's message id). Returns the
    reminders still ours. All in a few statements, however many messages there are."""
    message_of = {claim.id: message_id for claims, message_id in messages for claim in claims}
    claims = [claim for group, _ in messages for claim in group]
    values = {"ready_at": None, "claimed_by": None, "pending": None}
    first = [c for c in claims if not _resend(c.purpose)]
    sent = (
        await _move(
            session,
            _claims(first),
            SENT,
            now,
            values={**values, "first_sent_at": func.coalesce(Reminder.first_sent_at, now)},
            message_ids=message_of,
        )
        if first
        else []
    )
    again: dict[str, list[Claimed]] = {}
    for claim in claims:
        if _resend(claim.purpose):
            detail = (
                f"follow-up after {(now.date() - claim.local_date).days} days sent"
                if claim.purpose is Purpose.NUDGE
                else "sent again, as the patient asked"
            )
            again.setdefault(detail, []).append(claim)
    for detail, group in again.items():
        sent += await _move(
            session, _claims(group), SENT, now, values=values, detail=detail, message_ids=message_of
        )
    return sent


async def retry(
    session: AsyncSession,
    claims: Sequence[Claimed],
    *,
    at: datetime,
    now: datetime,
    detail: str | None,
    code: int | None,
) -> list[int]:
    """Not sent this time: try again at ``at`` (the retry counts toward the budget), if the
    patient is still active: another message of theirs may have found them gone meanwhile
    (``unqueue``), and ``queue`` takes it up again when they come back."""
    return await _move(
        session,
        _claims(claims),
        RETRYING,
        now,
        values={"ready_at": _while_active(literal(at, UTCDateTime())), "claimed_by": None},
        detail=detail,
        code=code,
        repeatable=True,
    )


async def fail(
    session: AsyncSession,
    claims: Sequence[Claimed],
    *,
    now: datetime,
    detail: str | None,
    code: int | None,
) -> list[int]:
    """Not sent, and not to be tried again. A reminder that was sent before (a postponed
    one, a follow-up) stays sent."""
    first = [c for c in claims if not _resend(c.purpose)]
    again = [c for c in claims if _resend(c.purpose)]
    values = {"ready_at": None, "claimed_by": None, "pending": None}
    failed = await _move(
        session, _claims(first), FAILED, now, values=values, detail=detail, code=code
    )
    if again:
        await _move(
            session,
            _claims(again),
            SENT,
            now,
            values=values,
            detail=f"not sent again: {detail}",
            code=code,
        )
    return failed


def _while_active(ready_at: ColumnElement[datetime]) -> ColumnElement[datetime | None]:
    """``ready_at`` for a reminder going back to the queue, or NULL if its patient is no
    longer active (paused, unreachable, withdrawn while it was claimed): out of the queue,
    as ``unqueue`` left the patient's other reminders."""
    active = exists().where(
        Patient.id == Reminder.patient_id, Patient.status == PatientStatus.ACTIVE
    )
    return case((active, ready_at), else_=null())


async def release(session: AsyncSession, claims: Sequence[Claimed], *, now: datetime) -> int:
    """Claimed but not sent (the process stops): back to the queue, no attempt used."""
    if not claims:
        return 0
    # Back where it was in the queue: its intended time, not behind a backlog.
    values = {
        "ready_at": _while_active(
            case(
                {claim.id: literal(claim.intended, UTCDateTime()) for claim in claims},
                value=Reminder.id,
                else_=literal(now, UTCDateTime()),
            )
        ),
        "attempts": Reminder.attempts - 1,
        "claimed_by": None,
    }
    released = 0
    for purpose_again, status in ((False, None), (True, SENT)):
        group = [c for c in claims if _resend(c.purpose) == purpose_again]
        if not group:
            continue
        if status is None:
            # Back to what it was: planned before its first try, retrying after one.
            first_try = [c for c in group if c.attempts <= 1]
            later = [c for c in group if c.attempts > 1]
            released += len(
                await _move(
                    session,
                    _claims(first_try),
                    PLANNED,
                    now,
                    values=values,
                    detail="released before sending",
                )
            )
            released += len(
                await _move(
                    session,
                    _claims(later),
                    RETRYING,
                    now,
                    values=values,
                    detail="released before sending",
                    repeatable=True,
                )
            )
        else:
            released += len(
                await _move(
                    session,
                    _claims(group),
                    SENT,
                    now,
                    values=values,
                    detail="released before sending",
                )
            )
    return released


async def set_aside(session: AsyncSession, claims: Sequence[Claimed], *, now: datetime) -> None:
    """Claimed, but the patient is no longer active (paused, unreachable): out of the queue
    until they are (``queue``); a follow-up is dropped."""
    first = [c for c in claims if not _resend(c.purpose)]
    again = [c for c in claims if _resend(c.purpose)]
    values = {"ready_at": None, "claimed_by": None, "attempts": Reminder.attempts - 1}
    await _move(
        session,
        _claims(first),
        PLANNED,
        now,
        values=values,
        detail="not sent: the patient is not active",
    )
    await _move(
        session,
        _claims(again),
        SENT,
        now,
        values={**values, "pending": None},
        detail="not sent again: the patient is not active",
    )


async def reclaim(session: AsyncSession, *, process_ids: Sequence[int], now: datetime) -> int:
    """Take back what stopped processes held: it goes out again at once, marked in its
    history as possibly sent twice."""
    if not process_ids:
        return 0
    held = and_(Reminder.claimed_by.in_(process_ids), Reminder.status == SENDING)
    # Back where it was in the queue (when due, if that is past), not behind a backlog;
    # a postponed reminder or a follow-up at once.
    first = await _move(
        session,
        and_(held, Reminder.pending.is_(None)),
        RETRYING,
        now,
        values={"ready_at": _while_active(_not_after(now)), "claimed_by": None},
        detail=ABANDONED,
    )
    again = await _move(
        session,
        and_(held, Reminder.pending.is_not(None)),
        RETRYING,
        now,
        values={"ready_at": _while_active(literal(now, UTCDateTime())), "claimed_by": None},
        detail=ABANDONED,
    )
    return len(first) + len(again)


def _not_after(now: datetime) -> ColumnElement[datetime]:
    """The reminder's due instant, or ``now`` if it is not due yet."""
    return case((Reminder.due_at < now, Reminder.due_at), else_=literal(now, UTCDateTime()))


# --- the patient's answers ---------------------------------------------------------------------


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
    # For "I have symptoms": how many people the alert was queued for (0: nobody to tell).
    alerted: int = 0


async def snooze_counts(session: AsyncSession, *, reminder_ids: Sequence[int]) -> dict[int, int]:
    """How often each reminder was postponed."""
    if not reminder_ids:
        return {}
    rows = await session.execute(
        select(Acknowledgement.reminder_id, func.count())
        .where(
            Acknowledgement.reminder_id.in_(reminder_ids),
            Acknowledgement.action == Action.SNOOZE,
        )
        .group_by(Acknowledgement.reminder_id)
    )
    return {reminder_id: count for reminder_id, count in rows.all()}


async def acknowledge(
    session: AsyncSession,
    *,
    reminder_id: int,
    chat_id: int,
    action: Action,
    snoozes_seen: int,
    now: datetime,
    alert_chat_id: int | None,
) -> Acknowledged:
    """Record a button press on a reminder message, once (PROTOCOL.md "Buttons on bundled
    messages").

    The press names any one reminder of the message; the message is the patient's
    reminders of that instant. It is checked against the chat that owns them: callback
    data comes from the client. Done acknowledges every test of the message, I'm OK the
    post-infusion warning; Remind me tomorrow postpones every unconfirmed test 24 hours (at
    most 3 times); I have symptoms is recorded on the message and alerts the care team.
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
    bundle = sorted(
        await session.scalars(
            select(Reminder).where(
                Reminder.patient_id == patient.id,
                Reminder.due_at == reminder.due_at,
                Reminder.first_sent_at.is_not(None),
            )
        ),
        key=lambda r: KIND_ORDER[Kind(r.kind)],
    )
    tests = [r for r in bundle if Kind(r.kind) in TEST_KINDS]
    snoozes = max(
        (await snooze_counts(session, reminder_ids=[r.id for r in tests])).values(), default=0
    )
    answered = Acknowledged(Answer.RECORDED, patient, reminder, snoozes)

    if action in (Action.DONE, Action.OK):
        kinds = TEST_KINDS if action is Action.DONE else {Kind.POST_INFUSION_WARNING}
        open_ = [
            r for r in bundle if Kind(r.kind) in kinds and r.status in {SENT, SENDING, RETRYING}
        ]
        if not open_:
            return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
        session.add_all(Acknowledgement(reminder_id=r.id, action=action, at=now) for r in open_)
        await _move(
            session,
            Reminder.id.in_([r.id for r in open_]),
            ACKNOWLEDGED,
            now,
            values={"ready_at": None, "pending": None, "claimed_by": None},
            detail=action.value,
        )
        return answered

    if action is Action.SYMPTOMS:
        reported = await session.scalar(
            select(func.count())
            .select_from(Acknowledgement)
            .where(
                Acknowledgement.reminder_id.in_([r.id for r in bundle]),
                Acknowledgement.action == Action.SYMPTOMS,
            )
        )
        if reported:
            return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
        session.add_all(Acknowledgement(reminder_id=r.id, action=action, at=now) for r in bundle)
        first = tests[0] if tests else reminder
        alerted = await queue_alert(
            session,
            raised.symptoms(patient, Kind(first.kind), first.local_date),
            alert_chat_id=alert_chat_id,
            now=now,
        )
        return Acknowledged(Answer.RECORDED, patient, reminder, snoozes, len(alerted))

    # Snooze: only from the message the patient is looking at, and at most three times.
    waiting = [r for r in tests if r.status == SENT and r.pending is None]
    if not waiting or snoozes_seen != snoozes:
        return Acknowledged(Answer.ALREADY, patient, reminder, snoozes)
    if snoozes >= MAX_SNOOZES:
        return Acknowledged(Answer.SNOOZE_LIMIT, patient, reminder, snoozes)
    session.add_all(Acknowledgement(reminder_id=r.id, action=action, at=now) for r in waiting)
    until = now + SNOOZE_FOR
    await _move(
        session,
        Reminder.id.in_([r.id for r in waiting]),
        SENT,
        now,
        values={"ready_at": until, "pending": Purpose.AGAIN.value, "attempts": 0},
        detail=f"postponed 24 h ({snoozes + 1} of {MAX_SNOOZES})",
    )
    return Acknowledged(Answer.RECORDED, patient, reminder, snoozes + 1)


async def follow_up(
    session: AsyncSession,
    *,
    bundle: Sequence[Reminder],
    patient: Patient,
    stage: int,
    days: int,
    now: datetime,
    alert_chat_id: int | None,
    last_stage: int,
) -> None:
    """The unconfirmed tests of one message: queue the nudge of ``stage`` (sent by the
    dispatcher like any message), or at ``last_stage`` alert the coordinator."""
    ids = [r.id for r in bundle]
    if stage < last_stage:
        await session.execute(
            update(Reminder)
            .where(Reminder.id.in_(ids))
            .values(
                followups=stage,
                ready_at=now,
                pending=Purpose.NUDGE.value,
                attempts=0,
                changed_at=now,  # a history row: activity in the delivery log
            )
        )
        await _history(
            session, _REMINDER_ROWS, ids, SENT, now, detail=f"follow-up after {days} days queued"
        )
        return
    first = min(bundle, key=lambda r: KIND_ORDER[Kind(r.kind)])
    await queue_alert(
        session,
        raised.tests_not_confirmed(patient, Kind(first.kind), first.local_date),
        alert_chat_id=alert_chat_id,
        now=now,
    )
    await session.execute(
        update(Reminder).where(Reminder.id.in_(ids)).values(followups=stage, changed_at=now)
    )
    await _history(
        session,
        _REMINDER_ROWS,
        ids,
        SENT,
        now,
        detail=f"coordinator alerted: not confirmed after {days} days",
    )


# --- coordinator alerts ----------------------------------------------------------------------


NO_RECIPIENT = "nobody to tell: the team has no coordinator and no alert chat is set"


async def queue_alert(
    session: AsyncSession, alert: Alert, *, alert_chat_id: int | None, now: datetime
) -> list[int]:
    """Queue ``alert`` for each of its recipients (``alerts.recipients``); returns the ids of
    the queued rows. With nobody to tell, a failed row without a chat records it."""
    own = await teams.own_coordinator(
        session, team_id=alert.team_id, coordinator_id=alert.coordinator_id
    )
    team = [] if own is not None else await teams.coordinators(session, team_id=alert.team_id)
    chats = raised.recipients(own=own, team=team, alert_chat_id=alert_chat_id)
    return await _queue_alert_rows(session, alert, chats, now=now)


async def _queue_alert_rows(
    session: AsyncSession, alert: Alert, chats: Sequence[tuple[int, Route]], *, now: datetime
) -> list[int]:
    base = {
        "kind": alert.kind.value,
        "patient_id": alert.patient_id,
        "reminder_kind": alert.reminder_kind.value if alert.reminder_kind else None,
        "day": alert.day,
        "about": alert.about,
        "attempts": 0,
        "created_at": now,
    }
    if not chats:
        log.error("alert %s for patient %d: %s", alert.kind, alert.patient_id, NO_RECIPIENT)
        nobody = await session.scalar(
            insert(CoordinatorAlert)
            .values(
                **base,
                chat_id=None,
                route=Route.TEAM,
                status=AlertStatus.FAILED,
                detail=NO_RECIPIENT,
            )
            .returning(CoordinatorAlert.id)
        )
        assert nobody is not None
        await _history(session, _ALERT_ROWS, [nobody], AlertStatus.FAILED, now, detail=NO_RECIPIENT)
        return []
    ids = list(
        await session.scalars(
            insert(CoordinatorAlert)
            .values(
                [
                    {
                        **base,
                        "chat_id": chat_id,
                        "route": route.value,
                        "status": AlertStatus.QUEUED,
                        "ready_at": now,
                    }
                    for chat_id, route in chats
                ]
            )
            .returning(CoordinatorAlert.id)
        )
    )
    await _history(session, _ALERT_ROWS, ids, AlertStatus.QUEUED, now, detail=alert.kind.value)
    return ids


async def _fall_back(
    session: AsyncSession,
    failed: Sequence[tuple[Alert, int]],
    *,
    alert_chat_id: int | None,
    now: datetime,
) -> None:
    """The alerts to patients' own coordinators that could not be delivered (with the chat
    that failed) go to the other coordinators of the team; with none and no alert chat
    that got a copy, the alert is recorded as having found nobody."""
    for alert, chat_id in failed:
        team = await teams.coordinators(session, team_id=alert.team_id)
        chats = raised.fallback(failed=chat_id, team=team)
        if chats or alert_chat_id is None:
            await _queue_alert_rows(session, alert, chats, now=now)


async def alert_reached(
    session: AsyncSession, *, patient_id: int, kind: raised.AlertKind, since: datetime
) -> bool:
    """Whether an alert of ``kind`` about the patient, raised at ``since`` or later, has
    reached someone: what the patient may be told ("we have told your team")."""
    sent = await session.scalar(
        select(func.count())
        .select_from(CoordinatorAlert)
        .where(
            CoordinatorAlert.patient_id == patient_id,
            CoordinatorAlert.kind == kind.value,
            CoordinatorAlert.created_at >= since,
            CoordinatorAlert.status == AlertStatus.SENT,
        )
    )
    return bool(sent)


async def unrouted_alerts(session: AsyncSession) -> int:
    """How many alerts found nobody to tell (``doctor`` and ``/healthz`` report them)."""
    count = await session.scalar(
        select(func.count()).select_from(CoordinatorAlert).where(CoordinatorAlert.chat_id.is_(None))
    )
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    id: int
    attempts: int
    chat_id: int
    alert: Alert
    route: Route = Route.TEAM
    # The recipient's language (``StaffUser.locale``); None: the bot's default.
    locale: str | None = None


def _alert_claims(claims: Iterable[ClaimedAlert]) -> ColumnElement[bool]:
    return or_(
        *(
            and_(CoordinatorAlert.id == claim.id, CoordinatorAlert.attempts == claim.attempts)
            for claim in claims
        )
    ) & (CoordinatorAlert.status == AlertStatus.SENDING)


async def claim_alerts(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    process_id: int,
    lease: timedelta,
    max_attempts: int,
    postgres: bool,
    alert_chat_id: int | None = None,
    patient_id: int | None = None,
) -> tuple[list[ClaimedAlert], list[tuple[str, int]]]:
    """Take up to ``limit`` due alerts (only ``patient_id``'s if given); returns them, and
    (kind, patient id) of those given up because no attempt of theirs ever came back."""
    due = (
        select(CoordinatorAlert, Patient, StaffUser.locale)
        .join(Patient, Patient.id == CoordinatorAlert.patient_id)
        .outerjoin(StaffUser, StaffUser.telegram_user_id == CoordinatorAlert.chat_id)
        .where(CoordinatorAlert.ready_at <= now)
        .order_by(CoordinatorAlert.ready_at, CoordinatorAlert.id)
        .limit(limit)
    )
    if patient_id is not None:
        due = due.where(CoordinatorAlert.patient_id == patient_id)
    if postgres:
        due = due.with_for_update(skip_locked=True, of=CoordinatorAlert)
    rows = [(row, patient, locale) for row, patient, locale in (await session.execute(due)).all()]
    exhausted = [(row, patient) for row, patient, _ in rows if row.attempts >= max_attempts]
    await _move_alerts(
        session,
        CoordinatorAlert.id.in_([row.id for row, _ in exhausted]),
        AlertStatus.FAILED,
        now,
        values={"ready_at": None, "claimed_by": None},
        detail="gave up: no outcome was recorded for the last attempts",
    )
    await _fall_back(
        session,
        [(raised.alert_of(row, patient), row.chat_id) for row, patient in exhausted
         if row.route == Route.OWN and row.chat_id is not None],
        alert_chat_id=alert_chat_id,
        now=now,
    )  # fmt: skip
    given_up = {row.id for row, _ in exhausted}
    taken = [(row, patient, locale) for row, patient, locale in rows if row.id not in given_up]
    # What the claims are, taken before the update changes the loaded rows.
    claimed = []
    for row, patient, locale in taken:
        assert row.chat_id is not None  # only alerts with a recipient are ever queued
        alert = raised.alert_of(row, patient)
        claimed.append(
            ClaimedAlert(row.id, row.attempts + 1, row.chat_id, alert, Route(row.route), locale)
        )
    await _history(
        session,
        _ALERT_ROWS,
        [row.id for row, _, _ in taken if row.status == AlertStatus.SENDING],
        AlertStatus.RETRYING,
        now,
        detail=ABANDONED,
    )
    if taken:
        await session.execute(
            update(CoordinatorAlert)
            .where(CoordinatorAlert.id.in_([row.id for row, _, _ in taken]))
            .values(
                status=AlertStatus.SENDING,
                ready_at=now + lease,
                attempts=CoordinatorAlert.attempts + 1,
                claimed_by=process_id,
            )
        )
    return claimed, [(row.kind, row.patient_id) for row, _ in exhausted]


async def renew_alert(
    session: AsyncSession, claim: ClaimedAlert, *, now: datetime, lease: timedelta
) -> bool:
    """Right before sending: still ours? Then the lease starts again."""
    renewed = await session.execute(
        update(CoordinatorAlert).where(_alert_claims([claim])).values(ready_at=now + lease)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


async def alert_sent(
    session: AsyncSession, claim: ClaimedAlert, *, message_id: int | None, now: datetime
) -> bool:
    return bool(
        await _move_alerts(
            session,
            _alert_claims([claim]),
            AlertStatus.SENT,
            now,
            values={
                "ready_at": None,
                "sent_at": now,
                "claimed_by": None,
                "telegram_message_id": message_id,
                "error_code": None,
                "detail": None,
            },
            message_id=message_id,
        )
    )


async def retry_alert(
    session: AsyncSession,
    claim: ClaimedAlert,
    *,
    at: datetime,
    now: datetime,
    detail: str | None,
    code: int | None,
) -> bool:
    return bool(
        await _move_alerts(
            session,
            _alert_claims([claim]),
            AlertStatus.RETRYING,
            now,
            values={"ready_at": at, "claimed_by": None, "error_code": code, "detail": detail},
            detail=detail,
            code=code,
            repeatable=True,
        )
    )


async def fail_alert(
    session: AsyncSession,
    claim: ClaimedAlert,
    *,
    now: datetime,
    detail: str | None,
    code: int | None,
    alert_chat_id: int | None = None,
) -> bool:
    """The alert could not be delivered; one to the patient's own coordinator goes to the
    rest of the team instead."""
    failed = bool(
        await _move_alerts(
            session,
            _alert_claims([claim]),
            AlertStatus.FAILED,
            now,
            values={"ready_at": None, "claimed_by": None, "error_code": code, "detail": detail},
            detail=detail,
            code=code,
        )
    )
    if failed and claim.route is Route.OWN:
        await _fall_back(
            session, [(claim.alert, claim.chat_id)], alert_chat_id=alert_chat_id, now=now
        )
    return failed


async def release_alerts(
    session: AsyncSession, claims: Sequence[ClaimedAlert], *, now: datetime
) -> None:
    """Claimed, not sent (the process stops): back to the queue, no attempt used."""
    if claims:
        await _move_alerts(
            session,
            _alert_claims(claims),
            AlertStatus.RETRYING,
            now,
            values={
                "ready_at": now,
                "attempts": CoordinatorAlert.attempts - 1,
                "claimed_by": None,
                "detail": "released before sending",
            },
            detail="released before sending",
            repeatable=True,
        )


async def reclaim_alerts(
    session: AsyncSession, *, process_ids: Sequence[int], now: datetime
) -> int:
    """As ``reclaim``, for alerts."""
    if not process_ids:
        return 0
    return len(
        await _move_alerts(
            session,
            and_(
                CoordinatorAlert.claimed_by.in_(process_ids),
                CoordinatorAlert.status == AlertStatus.SENDING,
            ),
            AlertStatus.RETRYING,
            now,
            values={"ready_at": now, "claimed_by": None},
            detail=ABANDONED,
        )
    )
