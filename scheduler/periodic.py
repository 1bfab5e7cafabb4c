"""Work that must run once per interval however many processes run the bot.

Every replica has the same repeating jobs (the follow-up sweep, housekeeping), each on its own
timer. Before a run, a process claims it in ``periodic_run``: one conditional UPDATE moves the
row's ``started_at`` forward only if the last run is at least an interval old, so of the
processes that try within one interval exactly one succeeds, on SQLite (one writer at a time)
as on PostgreSQL (the second UPDATE waits for the first's row lock, then finds the row moved).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import PeriodicRun


async def claim(
    session: AsyncSession, *, name: str, every: timedelta, now: datetime, process: str
) -> bool:
    """Whether this process runs ``name`` now: True if its last run started ``every`` or more
    before ``now`` (or it never ran), and the row then says this process started it now.

    Commit before doing the work: the claim is what the others wait on, not the work.
    """
    moved = await session.execute(
        update(PeriodicRun)
        .where(PeriodicRun.name == name, PeriodicRun.started_at <= now - every)
        .values(started_at=now, process=process)
    )
    if moved.rowcount:  # type: ignore[attr-defined]
        return True
    # Not moved: run within the interval, or never run. Of several first runs at once, the
    # primary key lets one insert and the others' inserts do nothing.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = await session.execute(
        dialect.insert(PeriodicRun)
        .values(name=name, started_at=now, process=process)
        .on_conflict_do_nothing(index_elements=[PeriodicRun.name])
    )
    return bool(inserted.rowcount)  # type: ignore[attr-defined]
