"""One process of a deployment at a time: a PostgreSQL session-level advisory lock.

Some work may be done by one process only, whatever the number of replicas: polling Telegram,
which answers a second concurrent poll with 409 Conflict. The lock lives as long as the
session of a connection kept for it alone, so a process that stops in any way (SIGKILL, a
crash, a cut network) loses it with its connection, and another takes it at its next try.
The key comes from the schema and a name: deployments sharing one database, a schema each,
do not exclude one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

RETRY_EVERY: Final = 2.0  # seconds between tries while another process holds the lock
CHECK_EVERY: Final = 3.0  # seconds between checks that the lock's connection is alive
TIMEOUT: Final = 5.0  # seconds a statement on the lock's connection may take
# The holder finds a dead connection within CHECK_EVERY + TIMEOUT (8 s); PostgreSQL must not
# free the lock sooner, or a second holder would start while the first still works. Its TCP
# keepalives notice a vanished client after 10 s of silence and 3 probes 5 s apart (25 s); a
# process that stops closes its connection, and the lock is free at once.
_KEEPALIVES: Final = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}


def lock_key(schema: str, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of ``name`` in ``schema``."""
    digest = hashlib.blake2b(f"{schema}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """The lock ``name`` of the deployment in the engine's schema, held on a connection of
    its own; every failure to reach the database counts as not holding it.

    ``scope`` narrows the lock further (the bot's id: one poller per bot) without being
    logged; ``name`` is what the log lines call the lock.
    """

    def __init__(
        self, engine: AsyncEngine, *, name: str, scope: str = "", timeout: float = TIMEOUT
    ) -> None:
        self.engine = engine
        self.name = name
        self.scope = scope
        self.timeout = timeout
        self._connection: AsyncConnection | None = None
        self._key: int | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> bool:
        """Take the lock unless another session holds it; True if this process holds it."""
        if self._held:
            return True
        try:
            async with asyncio.timeout(self.timeout):
                connection, key = await self._connect()
                self._held = bool(
                    await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
                )
        except Exception as error:  # the database is away: the next try connects again
            log.warning("lock %s not taken: %s", self.name, type(error).__name__)
            await self._drop()
        return self._held

    async def check(self) -> bool:
        """Whether the lock is still held: its connection answers in time. If not, the
        connection is dropped, and with it the lock once PostgreSQL sees it gone."""
        if not self._held or self._connection is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await self._connection.execute(text("SELECT 1"))
        except Exception as error:
            log.warning("lock %s lost: its connection failed (%s)", self.name, type(error).__name__)
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        """Give the lock up and close its connection (a session ended holds no lock)."""
        if self._held and self._connection is not None and self._key is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await self._connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                    )
        await self._drop()

    async def _connect(self) -> tuple[AsyncConnection, int]:
        """The lock's connection and key; a new connection if there is none."""
        if self._connection is None or self._key is None:
            connection = await self.engine.connect()
            try:
                # No transaction left open for the life of the process.
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                for setting, value in _KEEPALIVES.items():
                    await connection.execute(text(f"SET {setting} = {int(value)}"))
                schema = await connection.scalar(text("SELECT current_schema()"))
            except BaseException:
                await _discard(connection)
                raise
            key = lock_key(str(schema or ""), f"{self.name}\0{self.scope}")
            self._connection, self._key = connection, key
        return self._connection, self._key

    async def _drop(self) -> None:
        """Forget the connection without waiting on it; it never goes back to the pool."""
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            await _discard(connection)


async def _discard(connection: AsyncConnection) -> None:
    """Close ``connection`` without returning it to the pool (a dead one is not waited on)."""
    with contextlib.suppress(Exception):
        await connection.invalidate()
    with contextlib.suppress(Exception):
        await connection.close()


async def hold(
    lock: AdvisoryLock,
    *,
    stop: asyncio.Event,
    on_gained: Callable[[], Awaitable[None]],
    on_lost: Callable[[], Awaitable[None]],
    retry_every: float = RETRY_EVERY,
    check_every: float = CHECK_EVERY,
) -> None:
    """Until ``stop`` is set, take ``lock`` whenever it is free and do the holder's work.

    ``on_gained`` starts the work once the lock is taken; ``on_lost`` stops it as soon as a
    check of the lock fails, and when stopping, always before the lock is given up, so that
    no other process starts it while this one still does it. ``on_lost`` may be called after
    ``on_gained`` failed.
    """
    waiting = False
    try:
        while not stop.is_set():
            if await lock.acquire():
                waiting = False
                try:
                    await on_gained()
                    while not await _stopped(stop, check_every) and await lock.check():
                        pass
                except Exception as error:
                    log.warning("lock %s: the work failed: %s", lock.name, type(error).__name__)
                finally:
                    await on_lost()
                    await lock.release()
            elif not waiting:
                waiting = True
                log.info("lock %s is held by another process; trying again", lock.name)
            await _stopped(stop, retry_every)
    finally:
        await lock.release()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set; whether it is."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
