"""Many new rows of one table at database speed, inside the caller's transaction.

SQLAlchemy's executemany processes every value of every row in Python, which costs more
than the database's own work for an import of a million reminders. Here PostgreSQL gets
the rows by COPY (asyncpg's binary ``copy_records_to_table``, which encodes the values
itself); SQLite by the driver's executemany, each distinct value converted once, by the
column type's own bind processor, so the stored text is exactly what SQLAlchemy writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def insert_rows(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    values: Sequence[tuple[Any, ...]],
) -> None:
    """Insert ``values`` (tuples in the order of ``columns``) into ``table``.

    Columns left out get their server default (not a Python-side ``default=``). Values
    must be hashable (no JSON columns). Nothing is returned; database errors come from
    the driver as they are (asyncpg's own on PostgreSQL, not SQLAlchemy's).
    """
    if not values:
        return
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await _copy(connection, table, columns, values)
    else:
        await _executemany(connection, table, columns, values)


async def _copy(
    connection: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    values: Sequence[tuple[Any, ...]],
) -> None:
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter begins the transaction with the first statement:
        # begin it, so that the COPY is part of the caller's transaction.
        await connection.exec_driver_sql("SELECT 1")
    await driver.copy_records_to_table(
        table.name, records=values, columns=columns, schema_name=table.schema
    )


async def _executemany(
    connection: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    values: Sequence[tuple[Any, ...]],
) -> None:
    """SQLite (qmark parameters): each column's distinct values converted once."""
    dialect = connection.dialect
    processors = [_bind_processor(table, column, dialect) for column in columns]
    if any(processors):
        by_column: list[Sequence[Any]] = list(zip(*values, strict=True))
        for index, process in enumerate(processors):
            if process is not None:
                converted = {value: process(value) for value in set(by_column[index])}
                by_column[index] = list(map(converted.__getitem__, by_column[index]))
        values = list(zip(*by_column, strict=True))  # rows again
    quote = dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(column) for column in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    await connection.exec_driver_sql(statement, values)


def _bind_processor(table: Table, column: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy does to a value of ``column`` before the driver gets it, if anything
    (SQLite: dates and times to text, UTC first for ``UTCDateTime``)."""
    # The dialect's own implementation of the type (SQLite's DATETIME, which formats the
    # text), as SQLAlchemy itself uses: the generic type has no processor of its own.
    process: Callable[[Any], Any] | None = (
        table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    )
    return process


async def new_ids(session: AsyncSession, table: Table, count: int) -> list[int]:
    """``count`` ids for new rows of ``table`` (its integer primary key ``id``), ascending,
    as the database would give them: from the column's sequence on PostgreSQL; on SQLite
    after the largest id (its own rule without AUTOINCREMENT; the transaction holds the
    write lock, so no other writer takes them meanwhile)."""
    if count == 0:
        return []
    connection = await session.connection()
    name = connection.dialect.identifier_preparer.format_table(table)
    if connection.dialect.name == "postgresql":
        taken = await connection.scalar(
            text(
                "SELECT array_agg(nextval(pg_get_serial_sequence(:table, 'id'))) "
                "FROM generate_series(1, :count)"
            ),
            {"table": name, "count": count},
        )
        return sorted(taken)
    largest = await connection.scalar(text(f"SELECT max(id) FROM {name}"))
    first = int(largest or 0) + 1
    return list(range(first, first + count))


@asynccontextmanager
async def page_cache(session: AsyncSession, *, mebibytes: int) -> AsyncIterator[None]:
    """On SQLite, a page cache of ``mebibytes`` for the session's connection while the
    block runs, then the earlier size again. SQLite's default, 2 MiB, has an import read
    the same index pages again and again; pages are only taken as they are needed."""
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    before = int(await connection.scalar(text("PRAGMA cache_size")) or 0)
    await connection.exec_driver_sql(f"PRAGMA cache_size = {-mebibytes * 1024}")  # in KiB
    try:
        yield
    finally:
        await connection.exec_driver_sql(f"PRAGMA cache_size = {before}")
