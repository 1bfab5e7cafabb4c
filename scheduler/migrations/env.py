"""Alembic environment: runs on a connection handed in by ``scheduler.db``."""

from alembic import context
from sqlalchemy import Connection

from scheduler.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations with `remindbot migrate`.")
run(connection)
