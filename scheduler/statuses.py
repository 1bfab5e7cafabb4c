"""The states of patients, reminders and alerts, and the staff roles.

Plain enums, apart from the tables in ``scheduler.models``, so that code which only names a
status (the command line's options, say) does not load SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class PatientStatus(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"
    WITHDRAWN = "withdrawn"


class ReminderStatus(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SKIPPED = "skipped"


# Not yet handed to Telegram: re-planning may still move or cancel these.
UNSENT = frozenset({ReminderStatus.PLANNED, ReminderStatus.RETRYING})


class AlertStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    STAFF = "staff"
