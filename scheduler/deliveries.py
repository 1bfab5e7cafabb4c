"""The delivery log: every reminder with its status history, as staff read it.

Pure data access for ``/deliveries`` and ``remindbot deliveries``: the filters are
validated by the caller, and patients that asked to be forgotten are still listed, with
``label`` None, so that every reminder stays accounted for.

The log is ordered by due instant, newest first (ties: newest reminder first). A page
costs two queries whatever its size: one for the reminders, one for their events.

"Activity since" (``active_since``) is what staff look at by default: a reminder whose
status changed at or after that instant (a cancellation after ``/stop``, a failure, a
Done), or that fell due between then and ``now``. It is the union of two index range
scans, ``ix_delivery_event_at`` over the recent events and ``ix_reminder_due_at_id`` over
the recently due reminders, so its cost follows the recent activity, not the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, and_, func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import teams
from scheduler.models import DeliveryEvent, Patient, Reminder

# Keeps the IN lists of the event query well under the drivers' bound-parameter limits.
_CHUNK = 2000

Position = tuple[datetime, int]
"""Where an entry stands in the log: its due instant and reminder id (see ``after``)."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of a reminder's history (a DeliveryEvent)."""

    status: str
    at: datetime
    telegram_message_id: int | None
    error_code: int | None
    # A reason or Telegram's error description, never message text or personal data.
    detail: str | None


@dataclass(frozen=True, slots=True)
class DeliveryEntry:
    """A reminder as the delivery log shows it."""

    reminder_id: int
    patient_id: int
    label: str
    kind: str
    occurrence: str
    due_at: datetime
    # The patient's time zone, to show ``due_at`` and the history in local time.
    timezone: str
    status: str
    attempts: int
    # Oldest first.
    history: tuple[StatusChange, ...]
    # The due date in the patient's zone, and when Telegram first accepted it (if ever).
    local_date: date | None = None
    first_sent_at: datetime | None = None

    @property
    def position(self) -> Position:
        """Pass it as ``after`` to continue the log behind this entry."""
        return (self.due_at, self.reminder_id)


def _conditions(
    *,
    scope: teams.Scope,
    label: str | None,
    status: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    active_since: datetime | None = None,
    now: datetime | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scope.team_ids is not None:
        team = select(Patient.id).where(Patient.team_id.in_(sorted(scope.team_ids)))
        conditions.append(Reminder.patient_id.in_(team))
    if label is not None:
        # The label's unique index finds the patient, then ix_reminder_patient_id_due_at
        # serves the filter and the order. An unknown label matches nothing.
        patient_id = select(Patient.id).where(Patient.label == label).scalar_subquery()
        conditions.append(Reminder.patient_id == patient_id)
    if status is not None:
        conditions.append(Reminder.status == status)
    if kind is not None:
        conditions.append(Reminder.kind == kind)
    if since is not None:
        conditions.append(Reminder.due_at >= since)
    if until is not None:
        conditions.append(Reminder.due_at < until)
    if active_since is not None:
        conditions.append(Reminder.id.in_(_active(active_since, now)))
    return conditions


def _active(since: datetime, now: datetime | None) -> CompoundSelect[tuple[int]]:
    """The ids of reminders with a status change at or after ``since``, or due between
    ``since`` and ``now`` (inclusive; no upper bound without ``now``)."""
    changed = select(DeliveryEvent.reminder_id).where(DeliveryEvent.at >= since)
    due = select(Reminder.id).where(Reminder.due_at >= since)
    if now is not None:
        due = due.where(Reminder.due_at <= now)
    return union(changed, due)


async def count_deliveries(
    session: AsyncSession,
    *,
    scope: teams.Scope = teams.EVERY_TEAM,
    label: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    active_since: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """How many reminders ``delivery_log`` lists with the same filters (for paging)."""
    conditions = _conditions(
        scope=scope,
        label=label,
        status=status,
        kind=kind,
        since=since,
        until=until,
        active_since=active_since,
        now=now,
    )
    query = select(func.count()).select_from(Reminder).where(*conditions)
    return int(await session.scalar(query) or 0)


async def delivery_log(
    session: AsyncSession,
    *,
    scope: teams.Scope = teams.EVERY_TEAM,
    label: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    active_since: datetime | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
    after: Position | None = None,
) -> list[DeliveryEntry]:
    """Reminders with their full history, newest due first.

    Filters: the teams of ``scope``, the patient's ``label``, the current ``status``, the
    ``kind``, the due instant with ``since <= due_at < until`` (aware datetimes), and
    activity: with ``active_since``, only reminders whose status changed at or after it or
    that fell due between it and ``now`` (see the module's docstring).
    ``limit``/``offset`` page through the log; for long exports,
    ``after=<last entry>.position`` continues behind an entry without counting the rows
    before it, so each batch can use a short session.
    """
    conditions = _conditions(
        scope=scope,
        label=label,
        status=status,
        kind=kind,
        since=since,
        until=until,
        active_since=active_since,
        now=now,
    )
    if after is not None:
        due_at, reminder_id = after
        conditions.append(
            or_(
                Reminder.due_at < due_at,
                and_(Reminder.due_at == due_at, Reminder.id < reminder_id),
            )
        )
    query = (
        select(
            Reminder.id,
            Reminder.patient_id,
            Patient.label,
            Reminder.kind,
            Reminder.occurrence,
            Reminder.due_at,
            Patient.timezone,
            Reminder.status,
            Reminder.attempts,
            Reminder.local_date,
            Reminder.first_sent_at,
        )
        .join(Patient, Patient.id == Reminder.patient_id)
        .where(*conditions)
        .order_by(Reminder.due_at.desc(), Reminder.id.desc())
        .offset(offset)
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    histories = await _histories(session, [row.id for row in rows])
    return [_entry(row, histories.get(row.id, ())) for row in rows]


def _entry(row: Any, history: Sequence[StatusChange]) -> DeliveryEntry:
    return DeliveryEntry(
        reminder_id=row.id,
        patient_id=row.patient_id,
        label=row.label,
        kind=row.kind,
        occurrence=row.occurrence,
        due_at=row.due_at,
        timezone=row.timezone,
        status=row.status,
        attempts=row.attempts,
        history=tuple(history),
        local_date=row.local_date,
        first_sent_at=row.first_sent_at,
    )


async def _histories(
    session: AsyncSession, reminder_ids: Sequence[int]
) -> dict[int, list[StatusChange]]:
    """The events of the reminders, oldest first: range scans of ix_delivery_event_reminder_id."""
    histories: dict[int, list[StatusChange]] = {}
    for start in range(0, len(reminder_ids), _CHUNK):
        query = (
            select(
                DeliveryEvent.reminder_id,
                DeliveryEvent.status,
                DeliveryEvent.at,
                DeliveryEvent.telegram_message_id,
                DeliveryEvent.error_code,
                DeliveryEvent.detail,
            )
            .where(DeliveryEvent.reminder_id.in_(reminder_ids[start : start + _CHUNK]))
            .order_by(DeliveryEvent.reminder_id, DeliveryEvent.at, DeliveryEvent.id)
        )
        rows = (await session.execute(query)).all()
        for reminder_id, status, at, message_id, code, detail in rows:
            change = StatusChange(status, at, message_id, code, detail)
            histories.setdefault(reminder_id, []).append(change)
    return histories
