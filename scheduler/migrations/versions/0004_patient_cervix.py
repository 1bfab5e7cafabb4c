"""The patient's "has a cervix" flag, for the cervical screening line of the yearly reminder

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 03:20:00

Until now the screening line followed the "can become pregnant" flag; existing patients
keep what they had.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("cervix", sa.Boolean(), nullable=True))
    op.execute("UPDATE patient SET cervix = cbp")
    with op.batch_alter_table("patient") as batch:
        batch.alter_column("cervix", existing_type=sa.Boolean(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("cervix")
