"""``/healthz`` and ``/metrics`` on a small local HTTP port, in polling and webhook mode.

A plain asyncio server: two read-only GET endpoints need no web framework. Metrics are in
the Prometheus text format and carry no personal data (statuses and kinds only).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import outbox
from scheduler.clock import Clock
from scheduler.db import reading
from scheduler.dispatcher import Dispatcher
from scheduler.models import CoordinatorAlert, Patient, Reminder
from scheduler.statuses import AlertStatus, PatientStatus, ReminderStatus

log = logging.getLogger(__name__)

DATABASE_TIMEOUT: Final = 3.0
_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


@dataclass
class HealthServer:
    sessions: async_sessionmaker[AsyncSession]
    dispatcher: Dispatcher
    clock: Clock
    tick_seconds: float
    host: str = "127.0.0.1"
    port: int = 8080
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health and metrics on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Database reachable, dispatcher ticked recently, Telegram reachable when last seen."""
        now = self.clock.now()
        unrouted: int | None = None
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT), reading(self.sessions) as session:
                await session.execute(text("SELECT 1"))
                unrouted = await outbox.unrouted_alerts(session)
            database = "ok"
        except Exception as error:  # any failure means: not healthy
            database = f"unreachable ({type(error).__name__})"
        stats = self.dispatcher.stats
        stale = timedelta(seconds=max(3 * self.tick_seconds, 60))
        if stats.last_tick_at is None:
            dispatcher = "not started"
        elif now - stats.last_tick_at > stale:
            dispatcher = f"last tick {int((now - stats.last_tick_at).total_seconds())} s ago"
        else:
            dispatcher = "ok"
        telegram = "ok" if stats.telegram_reachable else "unreachable at the last send"
        checks = {"database": database, "dispatcher": dispatcher, "telegram": telegram}
        healthy = all(value == "ok" for value in checks.values())
        # Reported, not failing the check: a restart would not find anyone to tell either.
        return healthy, {
            "status": "ok" if healthy else "failing",
            **checks,
            "alerts_without_recipient": unrouted,
        }

    async def metrics(self) -> str:
        """The Prometheus exposition: counts from the database, counters from this process."""
        now = self.clock.now()
        async with asyncio.timeout(DATABASE_TIMEOUT), reading(self.sessions) as session:
            reminders = dict(
                (
                    await session.execute(
                        select(Reminder.status, func.count()).group_by(Reminder.status)
                    )
                ).all()
            )
            patients = dict(
                (
                    await session.execute(
                        select(Patient.status, func.count()).group_by(Patient.status)
                    )
                ).all()
            )
            alerts = dict(
                (
                    await session.execute(
                        select(CoordinatorAlert.status, func.count()).group_by(
                            CoordinatorAlert.status
                        )
                    )
                ).all()
            )
            oldest = await session.scalar(
                select(func.min(Reminder.ready_at)).where(Reminder.ready_at <= now)
            )
            unrouted = await outbox.unrouted_alerts(session)
        stats = self.dispatcher.stats
        lines = [
            "# HELP remindbot_reminders Reminders by current status.",
            "# TYPE remindbot_reminders gauge",
            *(
                f'remindbot_reminders{{status="{status}"}} {reminders.get(status, 0)}'
                for status in ReminderStatus
            ),
            "# HELP remindbot_patients Patients by status.",
            "# TYPE remindbot_patients gauge",
            *(
                f'remindbot_patients{{status="{status}"}} {patients.get(status, 0)}'
                for status in PatientStatus
            ),
            "# HELP remindbot_alerts Coordinator alerts by current status (failed: never "
            "delivered).",
            "# TYPE remindbot_alerts gauge",
            *(
                f'remindbot_alerts{{status="{status}"}} {alerts.get(status, 0)}'
                for status in AlertStatus
            ),
            "# HELP remindbot_alerts_without_recipient Alerts that found nobody to tell (a team "
            "without coordinators and no alert chat).",
            "# TYPE remindbot_alerts_without_recipient gauge",
            f"remindbot_alerts_without_recipient {unrouted}",
            "# HELP remindbot_queue_lag_seconds Age of the oldest reminder waiting to be sent.",
            "# TYPE remindbot_queue_lag_seconds gauge",
            f"remindbot_queue_lag_seconds {_lag(oldest, now):.3f}",
            "# HELP remindbot_messages_total Telegram send attempts by result (rate() = sends/s).",
            "# TYPE remindbot_messages_total counter",
            *(
                f'remindbot_messages_total{{result="{result}"}} {count}'
                for result, count in sorted(stats.messages.items())
            ),
            "# HELP remindbot_alerts_total Coordinator alert sends by the status they reached.",
            "# TYPE remindbot_alerts_total counter",
            *(
                f'remindbot_alerts_total{{status="{status}"}} {count}'
                for status, count in sorted(stats.alerts.items())
            ),
            "# HELP remindbot_telegram_errors_total Telegram errors by kind.",
            "# TYPE remindbot_telegram_errors_total counter",
            *(
                f'remindbot_telegram_errors_total{{kind="{result}"}} {count}'
                for result, count in sorted(stats.messages.items())
                if result != "sent"
            ),
            "# HELP remindbot_dispatcher_ticks_total Dispatcher ticks since start.",
            "# TYPE remindbot_dispatcher_ticks_total counter",
            f"remindbot_dispatcher_ticks_total {stats.ticks}",
            "# HELP remindbot_dispatcher_last_tick_timestamp_seconds When it last ticked.",
            "# TYPE remindbot_dispatcher_last_tick_timestamp_seconds gauge",
            "remindbot_dispatcher_last_tick_timestamp_seconds "
            f"{stats.last_tick_at.timestamp() if stats.last_tick_at else 0:.3f}",
        ]
        return "\n".join(lines) + "\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            # The headers are read and ignored: nothing in them changes the answer.
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method != "GET":
                status, body, kind = 405, "only GET\n", "text/plain"
            elif path == "/healthz":
                healthy, report = await self.health()
                status, body, kind = (
                    (200 if healthy else 503),
                    json.dumps(report) + "\n",
                    "application/json",
                )
            elif path == "/metrics":
                try:
                    status, body = 200, await self.metrics()
                except Exception as error:  # the database is down: say so, not a stack trace
                    status, body = 503, f"# metrics unavailable: {type(error).__name__}\n"
                kind = "text/plain; version=0.0.4"
            else:
                status, body, kind = 404, "not found\n", "text/plain"
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _lag(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
