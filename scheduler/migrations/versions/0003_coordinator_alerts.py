"""Coordinator alerts as a queue; an index for the delivery log in date order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("reminder_kind", sa.String(length=32), nullable=True),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("about", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_alert_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
    )
    op.create_index("ix_alert_ready_at", "alert", ["ready_at"], unique=False)
    op.create_index(op.f("ix_alert_patient_id"), "alert", ["patient_id"], unique=False)
    op.create_index("ix_reminder_due_at_id", "reminder", ["due_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reminder_due_at_id", table_name="reminder")
    op.drop_index(op.f("ix_alert_patient_id"), table_name="alert")
    op.drop_index("ix_alert_ready_at", table_name="alert")
    op.drop_table("alert")
