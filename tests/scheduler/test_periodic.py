"""Work that runs once per interval among processes: ``periodic.claim``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import periodic
from scheduler.db import is_sqlite, session_factory
from scheduler.models import PeriodicRun
from tests.conftest import EngineFactory

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVERY = timedelta(minutes=10)


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    at: datetime,
    *,
    name: str = "follow-ups",
    process: str = "host:1",
) -> bool:
    async with sessions.begin() as session:
        return await periodic.claim(session, name=name, every=EVERY, now=at, process=process)


async def test_a_job_runs_once_per_interval(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await claim(sessions, NOW)  # never ran: runs
    assert not await claim(sessions, NOW + EVERY - timedelta(seconds=1))
    assert await claim(sessions, NOW + EVERY, process="host:2")
    assert not await claim(sessions, NOW + EVERY)
    async with sessions() as session:
        row = await session.get(PeriodicRun, "follow-ups")
    assert row is not None
    assert (row.started_at, row.process) == (NOW + EVERY, "host:2")


async def test_each_job_has_its_own_interval(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await claim(sessions, NOW, name="follow-ups")
    assert await claim(sessions, NOW, name="housekeeping")
    assert not await claim(sessions, NOW, name="follow-ups")
    async with sessions() as session:
        names = set(await session.scalars(select(PeriodicRun.name)))
    assert names == {"follow-ups", "housekeeping"}


async def test_a_clock_gone_back_does_not_run_the_job_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Another replica's clock a little behind, or this one's set back: the last start stays."""
    assert await claim(sessions, NOW)
    assert not await claim(sessions, NOW - timedelta(seconds=30))
    async with sessions() as session:
        assert await session.scalar(select(PeriodicRun.started_at)) == NOW


async def test_of_concurrent_claimers_one_wins_per_interval(
    db: AsyncEngine, open_engine: EngineFactory
) -> None:
    """Processes claiming at once, the row missing (racing inserts) and then there (racing
    updates): exactly one wins each interval, none in between."""
    factories = [session_factory(open_engine()) for _ in range(4)]
    # On PostgreSQL every claimer opens its transaction first and all claim at once; SQLite
    # has one writer at a time from BEGIN on, so there they just start together.
    together = not is_sqlite(db)

    async def one(
        sessions: async_sessionmaker[AsyncSession], at: datetime, start: asyncio.Barrier, n: int
    ) -> bool:
        async with sessions.begin() as session:
            if together:
                await session.connection()
                await start.wait()
            return await periodic.claim(
                session, name="housekeeping", every=EVERY, now=at, process=f"host:{n}"
            )

    async def race(at: datetime) -> list[bool]:
        claimers = factories * 2  # two per engine
        start = asyncio.Barrier(len(claimers))
        return await asyncio.gather(
            *(one(sessions, at, start, n) for n, sessions in enumerate(claimers))
        )

    assert sum(await race(NOW)) == 1
    assert sum(await race(NOW + EVERY / 2)) == 0
    assert sum(await race(NOW + EVERY)) == 1
    assert sum(await race(NOW + EVERY + timedelta(seconds=1))) == 0
