"""Alerts to care coordinators: which event raises which alert, and who gets it.

PROTOCOL.md and README: the coordinator is told when a patient reports symptoms, has not
confirmed tests 10 days after they were due, blocked the bot, could not be sent a reminder,
is due for the next course, or stopped the reminders. An alert goes to the patient's own
coordinator (the one who enrolled them, while still a coordinator of their team) or, when
there is none, to every coordinator of the patient's team; and, if configured, to the alert
chat. When the alert to the patient's own coordinator fails for good, the team's other
coordinators are told instead. ``outbox.queue_alert`` stores one row per recipient in the
transaction of the event, and the dispatcher sends and retries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

from scheduler.protocol import Kind
from scheduler.sending import Part, Result

if TYPE_CHECKING:
    from scheduler.models import CoordinatorAlert, Patient


class Route(StrEnum):
    """Who a recipient is to the patient."""

    OWN = "own"  # the patient's own coordinator
    TEAM = "team"  # a coordinator of the patient's team
    CHAT = "chat"  # the clinic's alert chat (a copy)


class AlertKind(StrEnum):
    SYMPTOMS = "symptoms"
    MISSED_TEST = "missed_test"
    UNREACHABLE = "unreachable"
    DELIVERY_FAILED = "delivery_failed"
    COURSE_DUE = "course_due"
    WITHDRAWN = "withdrawn"
    # Sent at once, not queued: it names a label the database no longer holds.
    ERASED = "erased"


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a coordinator must know about a patient."""

    kind: AlertKind
    patient_id: int
    label: str
    coordinator_id: int | None
    team_id: int
    reminder_kind: Kind | None = None
    day: date | None = None
    about: date | None = None


def recipients(
    *, own: int | None, team: Sequence[int], alert_chat_id: int | None
) -> list[tuple[int, Route]]:
    """Who an alert goes to: the patient's ``own`` coordinator if they have one, else every
    coordinator of the ``team``; and the alert chat. Empty: nobody can be told."""
    chats = [(own, Route.OWN)] if own is not None else [(c, Route.TEAM) for c in team]
    if alert_chat_id is not None and all(chat != alert_chat_id for chat, _ in chats):
        chats.append((alert_chat_id, Route.CHAT))
    return chats


def fallback(*, failed: int, team: Sequence[int]) -> list[tuple[int, Route]]:
    """Who is told when the alert to the patient's own coordinator (``failed``) could not be
    delivered: the team's other coordinators."""
    return [(chat, Route.TEAM) for chat in team if chat != failed]


def about(
    patient: Patient,
    kind: AlertKind,
    reminder_kind: Kind | None = None,
    day: date | None = None,
    on: date | None = None,
) -> Alert:
    """An alert of ``kind`` about ``patient`` (their label, coordinator and team now)."""
    return Alert(
        kind, patient.id, patient.label, patient.coordinator_id, patient.team_id,
        reminder_kind, day, on,
    )  # fmt: skip


def symptoms(patient: Patient, kind: Kind, day: date) -> Alert:
    """The patient pressed "I have symptoms" under the reminder of ``kind`` due on ``day``."""
    return about(patient, AlertKind.SYMPTOMS, kind, day)


def tests_not_confirmed(patient: Patient, kind: Kind, day: date) -> Alert:
    """The tests due on ``day`` were not confirmed after the last follow-up."""
    return about(patient, AlertKind.MISSED_TEST, kind, day)


def withdrawn(patient: Patient) -> Alert:
    """The patient stopped the reminders (withdrew consent)."""
    return about(patient, AlertKind.WITHDRAWN)


def after_send(patient: Patient, parts: Sequence[Part], result: Result | None) -> Alert | None:
    """What a coordinator must hear after a message to the patient: it was sent and named
    the next course (course due); it could never be delivered (blocked: the patient is
    unreachable; any other failure: the reminder did not arrive); else nothing.

    ``result`` is None for a message that was sent.
    """
    if result is None:
        due = next((part for part in parts if part.kind is Kind.COURSE_DUE), None)
        if due is None:
            return None
        return about(patient, AlertKind.COURSE_DUE, due.kind, due.local_date, due.about)
    first = parts[0]
    kind = AlertKind.UNREACHABLE if result is Result.BLOCKED else AlertKind.DELIVERY_FAILED
    return about(patient, kind, first.kind, first.local_date, first.about)


def alert_of(row: CoordinatorAlert, patient: Patient) -> Alert:
    """The alert a queued row stands for, with the patient's label as it is now."""
    return Alert(
        AlertKind(row.kind),
        row.patient_id,
        patient.label,
        patient.coordinator_id,
        patient.team_id,
        Kind(row.reminder_kind) if row.reminder_kind else None,
        row.day,
        row.about,
    )
