"""The delivery log: every reminder with its status history, as staff read it.

Pure data access for ``/deliveries`` and ``remindbot deliveries``: the filters are
validated by the caller, and patients that asked to be forgotten are still listed, with
``label`` None, so that every reminder stays accounted for.

The log is ordered by due instant, newest first (ties: newest reminder first). A page
costs two queries whatever its size: one for the reminders, one for their events.

"Activity since" (``active_since``) is what staff look at by default: a reminder whose
status changed at or after that instant (a cancellation after ``/stop``, a failure, a
Done: ``Reminder.changed_at``, which the outbox sets with every status change and history
row), or that fell due between then and ``now``. That view is ordered by the latest
change, newest first, so this week's failures come before far-future cancellations. It
is two disjoint index ranges: ``ix_reminder_changed_at_id`` (or, with a status filter,
``ix_reminder_status_changed_at_id``) over the recent changes, of which a page reads at
most ``offset + limit`` in order, and ``ix_reminder_due_at_id`` over the reminders due
lately and not changed since (read whole: a week of due reminders); its cost follows the
recent activity, not the table. Each index holds what its read tests (the patient, for a
team's view; the status and the change and creation instants), so neither read fetches
table rows until the page's 50 are chosen. Reminders planned and untouched since are not activity:
a new plan shows only as its reminders fall due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import teams
from scheduler.models import DeliveryEvent, Patient, Reminder
from scheduler.statuses import ReminderStatus

# Keeps the IN lists of the event query well under the drivers' bound-parameter limits.
_CHUNK = 2000

Position = tuple[datetime, int]
"""Where an entry stands in the log: its due instant (its latest change in the activity
view) and reminder id (see ``after``)."""


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
    # When the status last changed; ``by_change``: listed in the activity view's order.
    changed_at: datetime | None = None
    by_change: bool = False

    @property
    def position(self) -> Position:
        """Pass it as ``after`` (with the same filters) to continue the log behind this
        entry."""
        if self.by_change and self.changed_at is not None:
            return (self.changed_at, self.reminder_id)
        return (self.due_at, self.reminder_id)


def _conditions(
    *,
    scope: teams.Scope,
    label: str | None,
    status: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
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
    return conditions


def _active(
    conditions: list[ColumnElement[bool]],
    since: datetime,
    now: datetime | None,
    status: str | None,
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    """The two disjoint parts of "activity since": a status change at or after ``since``;
    not changed since, but due between ``since`` and ``now`` (inclusive; no upper bound
    without ``now``). ``status``: the status filter among ``conditions``, if any.

    A reminder planned and never changed since (its ``changed_at`` still its creation) has
    had no status change: a new plan is not activity, as long as nothing happened to it."""
    touched: ColumnElement[bool]
    if status is None:
        # ix_reminder_changed_at_id's predicate (``models.ACTIVITY_PREDICATE``), with the
        # status as a literal: PostgreSQL then proves that the partial index applies,
        # which it cannot with a bound parameter.
        touched = or_(
            Reminder.status != literal_column(f"'{ReminderStatus.PLANNED.value}'"),
            Reminder.changed_at != Reminder.created_at,
        )
    elif status == ReminderStatus.PLANNED:
        touched = Reminder.changed_at != Reminder.created_at
    else:
        # Implied by the filter. Said anyway, it would make the read of the recent changes
        # of one status fetch each row for its creation instant, which the index lacks.
        touched = true()
    changed = [*conditions, Reminder.changed_at >= since, touched]
    due = [*conditions, Reminder.due_at >= since, or_(Reminder.changed_at < since, not_(touched))]
    if now is not None:
        due.append(Reminder.due_at <= now)
    return changed, due


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
    )
    if active_since is None:
        query = select(func.count()).select_from(Reminder).where(*conditions)
        return int(await session.scalar(query) or 0)
    # Two disjoint parts, each counted on its own index range.
    total = 0
    for part in _active(conditions, active_since, now, status):
        query = select(func.count()).select_from(Reminder).where(*part)
        total += int(await session.scalar(query) or 0)
    return total


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
    """Reminders with their full history, newest due first (with ``active_since``,
    newest status change first).

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
    )
    columns = (
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
        Reminder.changed_at,
    )
    query: Select[*tuple[Any, ...]]
    if active_since is not None:
        query = _by_change(
            columns,
            conditions,
            active_since,
            now,
            status,
            limit=limit,
            offset=offset,
            after=after,
        )
    else:
        if after is not None:
            due_at, reminder_id = after
            conditions.append(
                or_(
                    Reminder.due_at < due_at,
                    and_(Reminder.due_at == due_at, Reminder.id < reminder_id),
                )
            )
        query = (
            select(*columns)
            .join(Patient, Patient.id == Reminder.patient_id)
            .where(*conditions)
            .order_by(Reminder.due_at.desc(), Reminder.id.desc())
            .offset(offset)
            .limit(limit)
        )
    rows = (await session.execute(query)).all()
    histories = await _histories(session, [row.id for row in rows])
    by_change = active_since is not None
    return [_entry(row, histories.get(row.id, ()), by_change) for row in rows]


def _by_change(
    columns: Sequence[Any],
    conditions: list[ColumnElement[bool]],
    active_since: datetime,
    now: datetime | None,
    status: str | None,
    *,
    limit: int | None,
    offset: int,
    after: Position | None,
) -> Select[*tuple[Any, ...]]:
    """The activity view, newest change first: the first ``offset + limit`` recent changes
    (an index range read in order) and the recently due reminders not changed since (a
    range of the due index), then the page of those."""
    parts = []
    changed, due = _active(conditions, active_since, now, status)
    for part in (changed, due):
        if after is not None:
            # A row comparison: an index range bound on PostgreSQL, not a filter.
            part.append(tuple_(Reminder.changed_at, Reminder.id) < tuple_(*after))
    # The recent changes in order, as far as the page goes (a backward read of the index).
    ordered = (
        select(Reminder.id.label("id"), Reminder.changed_at.label("changed_at"))
        .where(*changed)
        .order_by(Reminder.changed_at.desc(), Reminder.id.desc())
        .limit(None if limit is None else offset + limit)
        .subquery()
    )
    # SQLite takes no ORDER BY/LIMIT inside a compound SELECT: a subquery.
    parts.append(select(ordered.c.id, ordered.c.changed_at))
    # Those due lately, not changed since: all of the due range, unordered, so that no
    # ordered read of another index (a status's, scanned to its end when few match)
    # stands in for that bounded range.
    parts.append(
        select(Reminder.id.label("id"), Reminder.changed_at.label("changed_at")).where(*due)
    )
    ids = union_all(*parts).subquery("active")
    return (
        select(*columns)
        .select_from(ids)
        .join(Reminder, Reminder.id == ids.c.id)
        .join(Patient, Patient.id == Reminder.patient_id)
        .order_by(ids.c.changed_at.desc(), ids.c.id.desc())
        .offset(offset)
        .limit(limit)
    )


def _entry(row: Any, history: Sequence[StatusChange], by_change: bool = False) -> DeliveryEntry:
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
        changed_at=row.changed_at,
        by_change=by_change,
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
