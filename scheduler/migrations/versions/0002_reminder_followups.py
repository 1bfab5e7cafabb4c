"""Reminder follow-ups: nudges and the coordinator alert for unconfirmed tests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reminder") as batch:
        batch.add_column(sa.Column("followups", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("reminder") as batch:
        batch.drop_column("followups")
