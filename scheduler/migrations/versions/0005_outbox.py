"""One outbox: claims named by process and counter, follow-ups and snoozes in the queue,
repeated history rows counted, alert history, running processes, the follow-up index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOLLOW_UP_PREDICATE = (
    "status = 'sent' AND followups < 3 AND pending IS NULL "
    "AND kind IN ('labs_monthly', 'thyroid_quarterly')"
)


def upgrade() -> None:
    with op.batch_alter_table("reminder") as batch:
        batch.add_column(sa.Column("pending", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("claim", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=True))
    # What was sent before keeps its first send time: the earliest "sent" in its history.
    op.execute(
        "UPDATE reminder SET first_sent_at = (SELECT min(at) FROM delivery_event "
        "WHERE delivery_event.reminder_id = reminder.id AND delivery_event.status = 'sent') "
        "WHERE status IN ('sent', 'acknowledged', 'sending', 'retrying', 'planned')"
    )
    # The queue in (due, id) order: ties go first queued, first sent on PostgreSQL too.
    op.drop_index("ix_reminder_ready_at", table_name="reminder")
    op.create_index("ix_reminder_ready_at", "reminder", ["ready_at", "id"], unique=False)
    op.create_index(
        "ix_reminder_followup",
        "reminder",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text(FOLLOW_UP_PREDICATE),
        sqlite_where=sa.text(FOLLOW_UP_PREDICATE),
    )
    with op.batch_alter_table("delivery_event") as batch:
        batch.add_column(sa.Column("repeats", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
    op.create_table(
        "alert_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("repeats", sa.Integer(), server_default="1", nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert.id"],
            name=op.f("fk_alert_event_alert_id_alert"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_event")),
    )
    op.create_index(op.f("ix_alert_event_alert_id"), "alert_event", ["alert_id"], unique=False)
    op.create_table(
        "process",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_process")),
    )
    op.create_index(op.f("ix_process_heartbeat_at"), "process", ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_process_heartbeat_at"), table_name="process")
    op.drop_table("process")
    op.drop_index(op.f("ix_alert_event_alert_id"), table_name="alert_event")
    op.drop_table("alert_event")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("delivery_event") as batch:
        batch.drop_column("last_at")
        batch.drop_column("repeats")
    op.drop_index("ix_reminder_followup", table_name="reminder")
    op.drop_index("ix_reminder_ready_at", table_name="reminder")
    op.create_index("ix_reminder_ready_at", "reminder", ["ready_at"], unique=False)
    with op.batch_alter_table("reminder") as batch:
        batch.drop_column("first_sent_at")
        batch.drop_column("claimed_by")
        batch.drop_column("claim")
        batch.drop_column("pending")
