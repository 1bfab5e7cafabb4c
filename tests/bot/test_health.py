"""/healthz and /metrics over real HTTP, with PostgreSQL behind a proxy the test can cut."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.web.server import WebServer
from scheduler.db import create_engine, migrate, session_factory
from scheduler.dispatcher import Delivery, Dispatcher, Outcome, Result
from tests.conftest import POSTGRES_URL, skip_or_fail
from tests.scheduler.test_dispatcher import FixedClock, RecordingSender, add_due

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the database; stop() cuts every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


class FailingSender(RecordingSender):
    async def send(self, delivery: Delivery) -> Outcome:
        return Outcome(Result.TRANSIENT, description="connection refused")


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[TcpProxy, str]]:
    if not POSTGRES_URL:
        skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    url = make_url(POSTGRES_URL)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield proxy, schema
    await proxy.stop()
    async with admin.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


def health_server(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, clock: FixedClock
) -> WebServer:
    """The web server without a Telegram application: no webhook, no console."""
    services = Services(sessions=sessions, clock=clock, dispatcher=dispatcher)
    return WebServer(services, tick_seconds=5, port=0, console=False)


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_health_fails_while_the_database_is_down_and_recovers(
    proxied: tuple[TcpProxy, str],
) -> None:
    proxy, schema = proxied
    assert POSTGRES_URL
    url = make_url(POSTGRES_URL).set(host="127.0.0.1", port=proxy.port)
    engine = create_engine(
        url.render_as_string(hide_password=False),
        connect_args={"server_settings": {"search_path": schema}},
    )
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        clock = FixedClock(NOW)
        dispatcher = Dispatcher(
            sessions=sessions,
            sender=RecordingSender(),
            clock=clock,
            late_window=timedelta(hours=72),
        )
        server = health_server(sessions, dispatcher, clock)
        await server.start()
        try:
            status, body = await get(server.port, "/healthz")
            assert status == 503
            assert '"dispatcher": "not started"' in body
            await dispatcher.tick()
            status, body = await get(server.port, "/healthz")
            assert (status, body.strip()) == (
                200,
                '{"status": "ok", "database": "ok", "dispatcher": "ok", "telegram": "ok", '
                '"alerts_without_recipient": 0}',
            )

            await proxy.stop()
            status, body = await get(server.port, "/healthz")
            assert status == 503
            assert '"database": "unreachable' in body
            assert '"alerts_without_recipient": null' in body  # not known
            # /metrics still answers, from memory: the last counts, and the database down.
            assert await server.metrics.refresh() is False
            status, body = await get(server.port, "/metrics")
            assert status == 200
            down = samples(body)
            assert down["remindbot_database_up", ()] == 0
            assert ("remindbot_reminders", (("status", "planned"),)) in down
            assert down["remindbot_metrics_age_seconds", ()] >= 0

            await proxy.start()
            assert (await get(server.port, "/healthz"))[0] == 200
            assert await server.metrics.refresh() is True
            assert (
                samples((await get(server.port, "/metrics"))[1])["remindbot_database_up", ()] == 1
            )

            clock.current = NOW + timedelta(minutes=2)  # no tick for 2 minutes
            status, body = await get(server.port, "/healthz")
            assert status == 503
            assert '"dispatcher": "last tick 120 s ago"' in body
        finally:
            await server.stop()
    finally:
        await engine.dispose()


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def test_metrics_parse_and_move_when_reminders_are_sent(sessions: object, db: object) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    assert isinstance(sessions, async_sessionmaker)
    typed: async_sessionmaker[AsyncSession] = sessions
    await add_due(typed, patients=3, per_patient=2)
    clock = FixedClock(NOW)
    dispatcher = Dispatcher(
        sessions=typed, sender=RecordingSender(), clock=clock, late_window=timedelta(hours=72)
    )
    server = health_server(typed, dispatcher, clock)
    await server.start()
    try:
        status, body = await get(server.port, "/metrics")
        assert status == 200
        before = samples(body)
        assert before["remindbot_reminders", (("status", "planned"),)] == 6
        assert before["remindbot_queue_lag_seconds", ()] == 120.0  # the oldest waits 2 min
        assert before["remindbot_patients", (("status", "active"),)] == 3
        assert ("remindbot_messages_total", (("result", "sent"),)) not in before

        await dispatcher.tick()
        # The database gauges are those of the last refresh, until the next one.
        stale = samples((await get(server.port, "/metrics"))[1])
        assert stale["remindbot_reminders", (("status", "planned"),)] == 6
        assert stale["remindbot_messages_total", (("result", "sent"),)] == 6  # not from it
        await server.metrics.refresh()
        after = samples((await get(server.port, "/metrics"))[1])
        assert after["remindbot_database_up", ()] == 1
        assert 0 <= after["remindbot_metrics_age_seconds", ()] < 5
        assert after["remindbot_reminders", (("status", "sent"),)] == 6
        assert after["remindbot_messages_total", (("result", "sent"),)] == 6
        assert after["remindbot_queue_lag_seconds", ()] == 0.0
        assert after["remindbot_dispatcher_ticks_total", ()] == 1
        assert "MS-" not in (await get(server.port, "/metrics"))[1]  # no labels of patients

        dispatcher.stats.alerts["sent"] += 2  # as send_alerts counts them
        alerts = samples((await get(server.port, "/metrics"))[1])
        assert alerts["remindbot_alerts_total", (("status", "sent"),)] == 2
        assert alerts["remindbot_alerts", (("status", "failed"),)] == 0

        dispatcher.sender = FailingSender()
        await add_due(typed, patients=1, per_patient=1, first=100)
        clock.current = NOW + timedelta(seconds=5)
        await dispatcher.tick()
        body = (await get(server.port, "/metrics"))[1]
        assert samples(body)["remindbot_telegram_errors_total", (("kind", "transient"),)] == 1
        status, health = await get(server.port, "/healthz")
        assert status == 503
        assert '"telegram": "unreachable at the last send"' in health
    finally:
        await server.stop()


async def test_an_alert_that_found_nobody_is_reported_not_failing(
    sessions: object, db: object
) -> None:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from scheduler import alerts, outbox
    from scheduler.models import Patient

    assert isinstance(sessions, async_sessionmaker)
    typed: async_sessionmaker[AsyncSession] = sessions
    await add_due(typed, patients=1, per_patient=0)  # a team without coordinators
    async with typed.begin() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        await outbox.queue_alert(session, alerts.withdrawn(patient), alert_chat_id=None, now=NOW)
    clock = FixedClock(NOW)
    dispatcher = Dispatcher(
        sessions=typed, sender=RecordingSender(), clock=clock, late_window=timedelta(hours=72)
    )
    await dispatcher.tick()
    server = health_server(typed, dispatcher, clock)
    await server.start()
    try:
        status, body = await get(server.port, "/healthz")
        assert status == 200
        assert '"alerts_without_recipient": 1' in body
        metrics = samples((await get(server.port, "/metrics"))[1])
        assert metrics["remindbot_alerts_without_recipient", ()] == 1
        assert metrics["remindbot_alerts", (("status", "failed"),)] == 1
    finally:
        await server.stop()
