"""When a reminder's status last changed, for the delivery log's activity view

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00

``reminder.changed_at``: set by the outbox with every status change. Existing reminders
take the instant of their latest history row, or their creation when they have none.
Indexes: ``(changed_at, id, patient_id)`` serves "activity since", newest change first
(partial: without planned reminders untouched since their creation; the patient for the
teams' views);
``(status, changed_at, id)`` the same with a status filter; ``alert (created_at, id)`` the
alerts list, newest first.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("reminder") as batch:
        batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    if postgresql:
        # One pass over the history (a hash aggregate), one write per reminder with history,
        # then the few without any (planned, never sent).
        op.execute("SET LOCAL work_mem = '256MB'")
        op.execute("SET LOCAL maintenance_work_mem = '512MB'")
        op.execute(
            """UPDATE reminder AS r SET changed_at = latest.at
               FROM (SELECT reminder_id, max(at) AS at FROM delivery_event
                     GROUP BY reminder_id) AS latest
               WHERE r.id = latest.reminder_id"""
        )
        op.execute("UPDATE reminder SET changed_at = created_at WHERE changed_at IS NULL")
    else:
        op.execute(
            """UPDATE reminder SET changed_at = coalesce(
                   (SELECT max(at) FROM delivery_event
                    WHERE delivery_event.reminder_id = reminder.id),
                   created_at)"""
        )
    with op.batch_alter_table("reminder") as batch:
        batch.alter_column("changed_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    # Partial: not the reminders of new plans that nothing happened to yet.
    activity = sa.text("status != 'planned' OR changed_at != created_at")
    op.create_index(
        "ix_reminder_changed_at_id",
        "reminder",
        ["changed_at", "id", "patient_id"],
        postgresql_where=activity,
        sqlite_where=activity,
    )
    op.create_index("ix_reminder_status_changed_at_id", "reminder", ["status", "changed_at", "id"])
    op.create_index("ix_alert_created_at_id", "alert", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_created_at_id", table_name="alert")
    op.drop_index("ix_reminder_status_changed_at_id", table_name="reminder")
    op.drop_index("ix_reminder_changed_at_id", table_name="reminder")
    with op.batch_alter_table("reminder") as batch:
        batch.drop_column("changed_at")
