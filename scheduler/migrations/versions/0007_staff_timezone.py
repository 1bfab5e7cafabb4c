"""Staff members' time zones

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:10:00

Coordinators and staff read times in their own zone, set with /timezone; NULL until then
(the bot's REMINDBOT_DEFAULT_TIMEZONE).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("timezone")
