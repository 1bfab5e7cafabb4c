"""Care teams, alert routes and languages, erasure that leaves only counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00

Every existing patient, coordinator and staff member goes into one team, "default", so a
one-team clinic works as before. Patients erased before this revision kept an anonymous
delivery history; it becomes counts (``erased_count``) and their rows are deleted, as for
every erasure from now on.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_TEAM = "default"
_FORGOTTEN = "SELECT id FROM patient WHERE forgotten_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team")),
        sa.UniqueConstraint("name", name=op.f("uq_team_name")),
    )
    op.create_table(
        "team_member",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_team_member_team_id_team"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["staff_user.telegram_user_id"],
            name=op.f("fk_team_member_user_id_staff_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_member")),
    )
    op.create_index(op.f("ix_team_member_user_id"), "team_member", ["user_id"], unique=False)
    op.create_table(
        "erased_count",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "status", name=op.f("pk_erased_count")),
    )
    team = sa.table("team", sa.column("id", sa.Integer), sa.column("name"), sa.column("created_at"))
    op.bulk_insert(team, [{"id": 1, "name": DEFAULT_TEAM, "created_at": datetime.now(UTC)}])
    op.execute(
        "INSERT INTO team_member (team_id, user_id) SELECT 1, telegram_user_id FROM staff_user "
        "WHERE role IN ('coordinator', 'staff')"
    )
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=16), nullable=True))

    # Patients erased under the old rule: their history becomes counts, then goes.
    op.execute(
        "INSERT INTO erased_count (kind, status, reminders) SELECT kind, status, count(*) "
        f"FROM reminder WHERE patient_id IN ({_FORGOTTEN}) GROUP BY kind, status"
    )
    op.execute(
        "INSERT INTO erased_count (kind, status, reminders) SELECT 'patient', 'erased', "
        "count(*) FROM patient WHERE forgotten_at IS NOT NULL"
    )
    op.execute("DELETE FROM erased_count WHERE reminders = 0")
    for table, key in (
        ("delivery_event", "reminder_id IN (SELECT id FROM reminder WHERE patient_id IN"),
        ("acknowledgement", "reminder_id IN (SELECT id FROM reminder WHERE patient_id IN"),
        ("alert_event", "alert_id IN (SELECT id FROM alert WHERE patient_id IN"),
    ):
        op.execute(f"DELETE FROM {table} WHERE {key} ({_FORGOTTEN}))")
    for table in ("reminder", "alert", "consent", "invite", "course"):
        op.execute(f"DELETE FROM {table} WHERE patient_id IN ({_FORGOTTEN})")
    op.execute("DELETE FROM patient WHERE forgotten_at IS NOT NULL")

    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
    op.execute("UPDATE patient SET team_id = 1")
    with op.batch_alter_table("patient") as batch:
        batch.alter_column("team_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f("fk_patient_team_id_team"), "team", ["team_id"], ["id"])
        batch.create_index(op.f("ix_patient_team_id"), ["team_id"], unique=False)
        batch.drop_column("forgotten_at")
        batch.alter_column("label", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("alert") as batch:
        batch.alter_column("chat_id", existing_type=sa.BigInteger(), nullable=True)
        batch.add_column(
            sa.Column("route", sa.String(length=16), server_default="team", nullable=False)
        )
    if op.get_bind().dialect.name == "postgresql":
        # The default team was inserted with its id; the next team takes the next one.
        op.execute("SELECT setval(pg_get_serial_sequence('team', 'id'), 1)")


def downgrade() -> None:
    op.execute("DELETE FROM alert WHERE chat_id IS NULL")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("route")
        batch.alter_column("chat_id", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("label", existing_type=sa.String(length=64), nullable=True)
        batch.drop_index(op.f("ix_patient_team_id"))
        batch.drop_constraint(op.f("fk_patient_team_id_team"), type_="foreignkey")
        batch.drop_column("team_id")
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("locale")
    op.drop_table("erased_count")
    op.drop_index(op.f("ix_team_member_user_id"), table_name="team_member")
    op.drop_table("team_member")
    op.drop_table("team")
