"""Conversations and once-per-interval work in the database

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:20:00

``dialogue``: where each user is in a conversation of several steps, so that another
replica, or the same one after a restart, goes on from there. ``periodic_run``: which
process last started each piece of work that must run once per interval.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dialogue",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_dialogue_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", "user_id", "name", name=op.f("pk_dialogue")),
    )
    op.create_index(op.f("ix_dialogue_patient_id"), "dialogue", ["patient_id"])
    op.create_index(op.f("ix_dialogue_expires_at"), "dialogue", ["expires_at"])
    op.create_table(
        "periodic_run",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("process", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_run")),
    )


def downgrade() -> None:
    op.drop_table("periodic_run")
    op.drop_index(op.f("ix_dialogue_expires_at"), table_name="dialogue")
    op.drop_index(op.f("ix_dialogue_patient_id"), table_name="dialogue")
    op.drop_table("dialogue")
