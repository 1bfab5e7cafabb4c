"""The running dispatchers, by their heartbeats.

Each process that sends registers a row and beats every few seconds. One whose heartbeat is
older than ``DEAD_AFTER`` has stopped (killed, crashed, cut off): the others take back its
claims (``outbox.reclaim``) instead of waiting for the claims' leases to run out. The live
ones share the bot's rate limit (``Dispatcher.beat``): each sends ``rate / live``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import Process

BEAT_EVERY: Final = timedelta(seconds=5)
DEAD_AFTER: Final = timedelta(seconds=15)
# PostgreSQL advisory lock taken while a process registers (any number, the same for all).
_REGISTERING: Final = 0x72656D696E64


def this_process() -> str:
    """host:pid, for the operator reading the table."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


async def register(
    session: AsyncSession, *, now: datetime, name: str | None = None, postgres: bool = False
) -> int:
    """A new process row; returns its id.

    On PostgreSQL processes register one at a time (until the transaction ends), so that
    of two starting together the second counts the first in ``live``: each must learn that
    the other is there before either sends at a share that leaves no room for the other.
    """
    if postgres:
        await session.execute(select(func.pg_advisory_xact_lock(_REGISTERING)))
    process_id = await session.scalar(
        insert(Process)
        .values(name=name or this_process(), started_at=now, heartbeat_at=now)
        .returning(Process.id)
    )
    assert process_id is not None
    return int(process_id)


async def beat(session: AsyncSession, *, process_id: int, now: datetime) -> bool:
    """Say the process is alive; False if others have declared it dead meanwhile (its row
    is gone, its claims taken back): it must register again."""
    result = await session.execute(
        update(Process).where(Process.id == process_id).values(heartbeat_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def live(session: AsyncSession, *, now: datetime) -> int:
    """How many processes are alive (heartbeat within ``DEAD_AFTER``): those ``stopped``
    does not name."""
    count = await session.scalar(
        select(func.count()).select_from(Process).where(Process.heartbeat_at >= now - DEAD_AFTER)
    )
    return int(count or 0)


async def stopped(session: AsyncSession, *, now: datetime) -> list[int]:
    """Processes whose heartbeat is too old."""
    return list(
        await session.scalars(select(Process.id).where(Process.heartbeat_at < now - DEAD_AFTER))
    )


async def forget(session: AsyncSession, *, process_ids: Sequence[int]) -> None:
    """Remove processes: stopped ones once their claims are taken back, or one that stops
    cleanly."""
    if process_ids:
        await session.execute(delete(Process).where(Process.id.in_(process_ids)))
