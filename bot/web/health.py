"""``/healthz``: whether this process does its work, for load balancers and healthchecks."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.web.metrics import DATABASE_TIMEOUT
from scheduler import outbox
from scheduler.clock import Clock
from scheduler.db import reading
from scheduler.dispatcher import Dispatcher


async def check(
    *,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    clock: Clock,
    tick_seconds: float,
) -> tuple[bool, dict[str, object]]:
    """Database reachable, dispatcher ticked recently, Telegram reachable when last seen."""
    now = clock.now()
    unrouted: int | None = None
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), reading(sessions) as session:
            await session.execute(text("SELECT 1"))
            unrouted = await outbox.unrouted_alerts(session)
        database = "ok"
    except Exception as error:  # any failure means: not healthy
        database = f"unreachable ({type(error).__name__})"
    stats = dispatcher.stats
    stale = timedelta(seconds=max(3 * tick_seconds, 60))
    if stats.last_tick_at is None:
        state = "not started"
    elif now - stats.last_tick_at > stale:
        state = f"last tick {int((now - stats.last_tick_at).total_seconds())} s ago"
    else:
        state = "ok"
    telegram = "ok" if stats.telegram_reachable else "unreachable at the last send"
    checks = {"database": database, "dispatcher": state, "telegram": telegram}
    healthy = all(value == "ok" for value in checks.values())
    # Reported, not failing the check: a restart would not find anyone to tell either.
    return healthy, {
        "status": "ok" if healthy else "failing",
        **checks,
        "alerts_without_recipient": unrouted,
    }
