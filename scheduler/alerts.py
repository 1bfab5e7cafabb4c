"""Alerts to care coordinators: which event raises which alert, and who gets it.

PROTOCOL.md and README: the coordinator is told when a patient reports symptoms, has not
confirmed tests 10 days after they were due, blocked the bot, could not be sent a reminder,
is due for the next course, or stopped the reminders. An alert goes to the patient's
coordinator and, if configured, the alert chat; ``outbox.queue_alert`` stores one row per
recipient in the transaction of the event, and the dispatcher sends and retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

from scheduler.protocol import Kind
from scheduler.sending import Part, Result

if TYPE_CHECKING:
    from scheduler.models import CoordinatorAlert, Patient

log = logging.getLogger(__name__)


class AlertKind(StrEnum):
    SYMPTOMS = "symptoms"
    MISSED_TEST = "missed_test"
    UNREACHABLE = "unreachable"
    DELIVERY_FAILED = "delivery_failed"
    COURSE_DUE = "course_due"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a coordinator must know about a patient."""

    kind: AlertKind
    patient_id: int
    label: str | None
    coordinator_id: int | None
    reminder_kind: Kind | None = None
    day: date | None = None
    about: date | None = None


def recipients(alert: Alert, *, alert_chat_id: int | None) -> list[int]:
    """The chats ``alert`` goes to: the patient's coordinator and the alert chat."""
    chats = sorted(c for c in {alert.coordinator_id, alert_chat_id} if c is not None)
    if not chats:
        log.warning("alert %s for patient %d has no recipient", alert.kind, alert.patient_id)
    return chats


def symptoms(patient: Patient, kind: Kind, day: date) -> Alert:
    """The patient pressed "I have symptoms" under the reminder of ``kind`` due on ``day``."""
    return Alert(AlertKind.SYMPTOMS, patient.id, patient.label, patient.coordinator_id, kind, day)


def tests_not_confirmed(patient: Patient, kind: Kind, day: date) -> Alert:
    """The tests due on ``day`` were not confirmed after the last follow-up."""
    return Alert(
        AlertKind.MISSED_TEST, patient.id, patient.label, patient.coordinator_id, kind, day
    )


def withdrawn(patient: Patient) -> Alert:
    """The patient stopped the reminders (withdrew consent)."""
    return Alert(AlertKind.WITHDRAWN, patient.id, patient.label, patient.coordinator_id)


def after_send(patient: Patient, parts: Sequence[Part], result: Result | None) -> Alert | None:
    """What a coordinator must hear after a message to the patient: it was sent and named
    the next course (course due); it could never be delivered (blocked: the patient is
    unreachable; any other failure: the reminder did not arrive); else nothing.

    ``result`` is None for a message that was sent.
    """
    first = parts[0]
    if result is None:
        due = next((part for part in parts if part.kind is Kind.COURSE_DUE), None)
        if due is None:
            return None
        return Alert(
            AlertKind.COURSE_DUE,
            patient.id,
            patient.label,
            patient.coordinator_id,
            due.kind,
            due.local_date,
            due.about,
        )
    kind = AlertKind.UNREACHABLE if result is Result.BLOCKED else AlertKind.DELIVERY_FAILED
    return Alert(
        kind,
        patient.id,
        patient.label,
        patient.coordinator_id,
        first.kind,
        first.local_date,
        first.about,
    )


def alert_of(row: CoordinatorAlert, label: str | None, coordinator_id: int | None) -> Alert:
    """The alert a queued row stands for, with the patient's label as it is now."""
    return Alert(
        AlertKind(row.kind),
        row.patient_id,
        label,
        coordinator_id,
        Kind(row.reminder_kind) if row.reminder_kind else None,
        row.day,
        row.about,
    )
