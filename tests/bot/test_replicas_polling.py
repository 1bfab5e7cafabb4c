"""Several replicas on one PostgreSQL: one polls at a time, another takes over when it dies,
and the periodic jobs run once per interval among them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import app as bot_app
from bot.app import build_application
from bot.context import BotContext, Services
from bot.settings import Settings
from scheduler import leadership
from scheduler.db import create_engine, migrate
from scheduler.followups import SweepReport
from tests.bot import conftest as bot_conftest
from tests.bot.test_health import TcpProxy
from tests.bot.test_run import STRANGER, bot_env, remindbot_run
from tests.conftest import POSTGRES_URL, EngineFactory, skip_or_fail
from tests.fake_bot_api import ApiCall, FakeBotApi

log = logging.getLogger(__name__)
TAKEOVER_LIMIT = 15.0  # seconds from the poller's death to the next poll by another replica
_PEER_PORT: ContextVar[int | None] = ContextVar("peer_port", default=None)

# --- a PostgreSQL schema for real processes ------------------------------------------------

Schemas = Callable[[], Awaitable[str]]


@pytest.fixture
async def new_schema() -> AsyncIterator[Schemas]:
    """Makes migrated PostgreSQL schemas, each with a URL that `remindbot run` can be given.

    asyncpg takes no search_path from a URL, so each schema has a role of its name: the
    default search_path ("$user", public) finds the schema first for that role.
    """
    if not POSTGRES_URL:
        skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    async def make() -> str:
        assert POSTGRES_URL
        name = f"replicas_{uuid.uuid4().hex[:12]}"
        try:
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
                made.append(name)
                await connection.execute(text(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"'))
        except OSError as error:
            skip_or_fail(f"PostgreSQL at REMINDBOT_TEST_POSTGRES_URL is unreachable: {error}")
        url = make_url(POSTGRES_URL).set(username=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        try:
            assert await _scalar(engine, "SELECT current_schema()") == name
            await migrate(engine)
        finally:
            await engine.dispose()
        return url

    yield make
    async with admin.connect() as connection:
        for name in made:
            await connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
                {"n": name},
            )
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            await connection.execute(text(f'DROP ROLE "{name}"'))
    await admin.dispose()


async def _scalar(engine: AsyncEngine, query: str) -> object:
    async with engine.connect() as connection:
        return await connection.scalar(text(query))


# --- the fake Bot API, knowing which process polls -----------------------------------------


class PollersApi(FakeBotApi):
    """The fake server, noting which of ``pids`` sent each getUpdates (by the client's port)."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: set[int] = set()
        self.poller_of: dict[int, int | None] = {}  # call seq -> pid

    async def _handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        token = _PEER_PORT.set(int(peer[1]) if peer else None)
        try:
            return await super()._handle(request)
        finally:
            _PEER_PORT.reset(token)

    async def _answer(self, call: ApiCall) -> dict[str, object]:
        port = _PEER_PORT.get()
        if call.method == "getUpdates" and port is not None:
            self.poller_of[call.seq] = _socket_owner(port, self.pids)
        return await super()._answer(call)

    def polls(self, after: int = 0) -> list[ApiCall]:
        return [call for call in self.calls_to("getUpdates") if call.seq >= after]


def _socket_owner(port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` has the TCP socket whose local port is ``port`` (Linux's /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rpartition(":")[2], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(descriptor) in inodes:
                        return pid
    return None


@pytest.fixture
async def api() -> AsyncIterator[PollersApi]:
    if not os.path.exists("/proc/net/tcp"):  # noqa: ASYNC240
        pytest.skip("telling processes apart by their sockets needs Linux's /proc")
    async with PollersApi() as server:
        yield server
    assert not server.internal_errors


@dataclass
class Replica:
    """A `remindbot run` child process and its log lines as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def logged(self, words: str) -> bool:
        return any(words in line for line in self.lines)


async def _read_log(replica: Replica) -> None:
    """Keep the child's stderr drained (a full pipe would stop it) and its lines kept."""
    assert replica.process.stderr is not None
    while line := await replica.process.stderr.readline():
        replica.lines.append(line.decode(errors="replace"))


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll a condition on the children's logs, which have no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        await asyncio.sleep(0.05)


# --- two real replicas ---------------------------------------------------------------------


async def test_one_replica_polls_and_another_takes_over_when_it_is_killed(
    api: PollersApi, new_schema: Schemas, tmp_path: Path
) -> None:
    url = await new_schema()
    api.max_long_poll = 1.0  # many polls, to see who makes them
    env = bot_env(
        api,
        tmp_path / "unused.db",
        DATABASE_URL=url,
        REMINDBOT_HTTP_PORT="0",
        REMINDBOT_TICK_SECONDS="1",
        REMINDBOT_LOG_LEVEL="INFO",
    )
    async with remindbot_run(env) as first, remindbot_run(env) as second:
        replicas = {p.pid: Replica(p) for p in (first, second)}
        api.pids = set(replicas)
        readers = [asyncio.create_task(_read_log(r)) for r in replicas.values()]
        try:
            # One polls; the other found the lock taken and dispatches only.
            await _until(
                lambda: (
                    sum(r.logged("polls Telegram for updates now") for r in replicas.values()) == 1
                    and any(r.logged("held by another process") for r in replicas.values())
                ),
                timeout=30,
                what="the election",
            )
            [poller] = [r for r in replicas.values() if r.logged("polls Telegram")]
            [standby] = [r for r in replicas.values() if r is not poller]
            await api.wait_until(lambda: len(api.polls()) >= 3, timeout=10)

            await api.send_text(STRANGER, "/help")
            answer = await api.wait_for_message(STRANGER.id, timeout=15)
            assert "ask your care team" in (answer.text or "")
            mark = api.mark()
            await api.wait_until(lambda: len(api.polls(after=mark)) >= 2, timeout=10)
            assert len(api.messages(STRANGER.id)) == 1  # answered once
            assert {api.poller_of[c.seq] for c in api.polls()} == {poller.pid}

            killed_at_call = api.mark()
            poller.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await poller.process.wait()
            await api.send_text(STRANGER, "/help")
            await api.wait_for_message(STRANGER.id, count=2, timeout=TAKEOVER_LIMIT + 5)
            answered = time.monotonic() - killed

            after = [c for c in api.polls(after=killed_at_call) if c.time >= killed]
            assert after, "nobody polls after the kill"
            takeover = after[0].time - killed
            log.info("takeover: next poll %.2f s, answer %.2f s after SIGKILL", takeover, answered)
            assert takeover <= TAKEOVER_LIMIT
            assert answered <= TAKEOVER_LIMIT
            assert {api.poller_of[c.seq] for c in after} == {standby.pid}
            assert standby.logged("polls Telegram for updates now")
            assert len(api.messages(STRANGER.id)) == 2  # the second message answered once

            standby.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(standby.process.wait(), timeout=30)
            assert standby.process.returncode == 0
            assert standby.logged("no longer polls Telegram for updates")
        finally:
            for reader in readers:
                reader.cancel()
    _assert_one_poll_at_a_time(api.polls())


def _assert_one_poll_at_a_time(polls: list[ApiCall]) -> None:
    """No 409 (Telegram ends a poll with it when another starts), and none overlapping."""
    assert polls
    assert [c.status for c in polls if c.status not in (200, None)] == []
    assert all(c.outcome in ("ok", "cancelled") for c in polls[:-1])
    for earlier, later in itertools.pairwise(polls):
        assert earlier.finished is not None
        assert earlier.finished <= later.time, f"polls {earlier.seq} and {later.seq} overlap"


# --- the lock ------------------------------------------------------------------------------


async def test_the_poller_lock_is_one_per_deployment(new_schema: Schemas) -> None:
    urls = [await new_schema(), await new_schema()]
    engines = [create_engine(url) for url in (urls[0], urls[0], urls[1])]
    locks = [leadership.AdvisoryLock(engine, name="poller", scope="bot 1") for engine in engines]
    locks.append(leadership.AdvisoryLock(engines[1], name="poller", scope="bot 2"))
    try:
        assert await locks[0].acquire()
        assert not await locks[1].acquire()  # the same deployment's other replica
        assert await locks[2].acquire()  # another deployment, in another schema
        assert await locks[3].acquire()  # another bot
        assert await locks[0].check()
        await locks[0].release()
        assert await locks[1].acquire()
    finally:
        for lock in locks:
            await lock.release()
        for engine in engines:
            await engine.dispose()


async def test_a_lost_lock_connection_stops_the_work_at_once(new_schema: Schemas) -> None:
    """The database connection is cut: the holder stops within a check, and another
    process takes the lock."""
    url = make_url(await new_schema())
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    cut = create_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    direct = create_engine(url.render_as_string(hide_password=False))
    holder = leadership.AdvisoryLock(cut, name="poller", scope="bot 1", timeout=1.0)
    other = leadership.AdvisoryLock(direct, name="poller", scope="bot 1")
    events: list[tuple[str, float]] = []
    stop = asyncio.Event()

    async def gained() -> None:
        events.append(("gained", time.monotonic()))

    async def lost() -> None:
        events.append(("lost", time.monotonic()))

    task = asyncio.create_task(
        leadership.hold(
            holder, stop=stop, on_gained=gained, on_lost=lost, retry_every=0.2, check_every=0.2
        )
    )
    try:
        await _until(lambda: bool(events), timeout=10, what="taking the lock")
        assert not await other.acquire()
        await proxy.stop()
        cut_at = time.monotonic()
        await _until(lambda: len(events) == 2, timeout=5, what="stopping the work")
        assert events[1][0] == "lost"
        assert events[1][1] - cut_at < 0.2 + 1.0 + 0.5  # a check, its timeout, some slack
        await _until(lambda: holder.held is False, timeout=5, what="dropping the lock")
        assert await other.acquire()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert [name for name, _ in events] == ["gained", "lost"]  # no second holder
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)
        await other.release()
        await proxy.stop()
        await cut.dispose()
        await direct.dispose()


def test_lock_keys_differ_by_schema_and_name_and_fit_a_bigint() -> None:
    keys = {
        leadership.lock_key(schema, name)
        for schema in ("public", "clinic_a", "clinic_b")
        for name in ("poller:1", "poller:2")
    }
    assert len(keys) == 6
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert leadership.lock_key("public", "poller:1") == leadership.lock_key("public", "poller:1")


# --- periodic jobs among replicas ----------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "interval"),
    [(bot_app.housekeeping, bot_app.HOUSEKEEPING_INTERVAL), (bot_app.follow_up, 600)],
)
async def test_periodic_jobs_run_once_per_interval_among_replicas(
    job: Callable[[BotContext], Awaitable[None]],
    interval: int,
    db: AsyncEngine,
    open_engine: EngineFactory,
    bot_settings: Settings,
    clock: bot_conftest.TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas whose timers fire half an interval apart: the job runs at one's times,
    and at the other's once the first has stopped."""
    runs: list[tuple[str, timedelta]] = []
    start = clock.current

    def note(services: Services) -> None:
        assert services.settings is not None
        runs.append((services.settings.bot_username or "", clock.current - start))

    async def step(context: BotContext) -> None:
        note(context.bot_data)

    async def sweep(services: Services) -> SweepReport:
        note(services)
        return SweepReport()

    monkeypatch.setattr(bot_app, "HOUSEKEEPING", [step])
    monkeypatch.setattr(bot_app, "follow_ups", sweep)
    replicas = {}
    for name, engine in (("replica_a", db), ("replica_b", open_engine())):
        settings = bot_settings.model_copy(update={"bot_username": name})
        app = build_application(settings=settings, engine=engine, clock=clock)
        replicas[name] = BotContext(app)
    every = timedelta(seconds=interval)
    timers = [(every * n, "replica_a") for n in range(10)]  # replica_a stops after 10 runs
    timers += [(every * n + every / 2, "replica_b") for n in range(13)]
    for at, name in sorted(timers):
        clock.current = start + at
        await job(replicas[name])
    assert runs == [("replica_a", every * n) for n in range(10)] + [
        ("replica_b", every * n + every / 2) for n in (10, 11, 12)
    ]


async def test_a_failing_housekeeping_step_does_not_stop_the_next(
    db: AsyncEngine,
    bot_settings: Settings,
    clock: bot_conftest.TestClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []

    async def broken(context: BotContext) -> None:
        raise ConnectionResetError

    async def working(context: BotContext) -> None:
        done.append("working")

    monkeypatch.setattr(bot_app, "HOUSEKEEPING", [broken, working])
    context = BotContext(build_application(settings=bot_settings, engine=db, clock=clock))
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        await bot_app.housekeeping(context)
    assert done == ["working"]
    assert "housekeeping: broken failed: ConnectionResetError" in caplog.text
