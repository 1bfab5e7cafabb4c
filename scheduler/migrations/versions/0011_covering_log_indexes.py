"""Covering indexes for the delivery log's activity view

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11 10:00:00

"Activity in the last N days" reads two index ranges (``scheduler.deliveries``): the
recent status changes, and the reminders due lately and not changed since. Both indexes
now carry what those reads test (the patient for a team's view; the status and the
change and creation instants for "not changed since"), so neither fetches a row from the
table for each reminder in its range: at 10 million reminders that fetch was most of a
page's time.

``ix_reminder_due_at_id``: ``(due_at, id, patient_id, status, changed_at, created_at)``
(was ``(due_at, id)``); ``ix_reminder_status_changed_at_id``: ``(status, changed_at, id,
patient_id)`` (was without the patient); ``ix_patient_team_id``: ``(team_id, id)``, a
team's patients without reading their rows (was ``(team_id)``). And ``ix_reminder_ready_at``
(the queue) holds only the reminders queued or claimed (``ready_at IS NOT NULL``), not the
planned and finished ones, most of the table: smaller, and cheaper to keep up to date
when plans are written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = "ready_at IS NOT NULL"
TEAM = ("ix_patient_team_id", "patient", ["team_id"], ["id"])
DUE = (
    "ix_reminder_due_at_id",
    "reminder",
    ["due_at", "id"],
    ["patient_id", "status", "changed_at", "created_at"],
)
STATUS = (
    "ix_reminder_status_changed_at_id",
    "reminder",
    ["status", "changed_at", "id"],
    ["patient_id"],
)


def _rebuild(name: str, table: str, columns: list[str]) -> None:
    op.drop_index(name, table_name=table)
    op.create_index(name, table, columns)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for name, table, key, covered in (TEAM, DUE, STATUS):
        _rebuild(name, table, [*key, *covered])
    op.drop_index("ix_reminder_ready_at", table_name="reminder")
    queued = sa.text(QUEUED)
    op.create_index(
        "ix_reminder_ready_at",
        "reminder",
        ["ready_at", "id"],
        postgresql_where=queued,
        sqlite_where=queued,
    )


def downgrade() -> None:
    _rebuild("ix_reminder_ready_at", "reminder", ["ready_at", "id"])
    for name, table, key, _covered in (TEAM, DUE, STATUS):
        _rebuild(name, table, key)
