"""Alerts to care coordinators: what a coordinator must know about a patient.

An alert is queued in the transaction that raised it (a reminder failed, a patient reported
symptoms, ...): one row per recipient, the patient's coordinator and, if configured, the
alert chat. The dispatcher sends queued alerts on every tick and retries failures with
backoff, so an alert is not lost when Telegram is briefly unreachable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import CoordinatorAlert
from scheduler.protocol import Kind
from scheduler.statuses import AlertStatus

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


def queue_alert(
    session: AsyncSession, alert: Alert, *, alert_chat_id: int | None, now: datetime
) -> int:
    """Queue ``alert`` for the patient's coordinator and the alert chat; the number of
    recipients (0, logged, when the patient has no coordinator and there is no alert chat)."""
    recipients = sorted(c for c in {alert.coordinator_id, alert_chat_id} if c is not None)
    if not recipients:
        log.warning("alert %s for patient %d has no recipient", alert.kind, alert.patient_id)
    session.add_all(
        CoordinatorAlert(
            kind=alert.kind.value,
            patient_id=alert.patient_id,
            chat_id=chat_id,
            reminder_kind=alert.reminder_kind.value if alert.reminder_kind else None,
            day=alert.day,
            about=alert.about,
            status=AlertStatus.QUEUED,
            ready_at=now,
            attempts=0,
            created_at=now,
        )
        for chat_id in recipients
    )
    return len(recipients)


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
