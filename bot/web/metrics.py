"""``/metrics``: the Prometheus exposition, through prometheus-client.

Each server has a registry of its own (several servers can live in one process, as in the
tests): the process and Python series, the dispatcher's counters since the start, two
histograms (due→sent latency of reminders, Telegram request durations), and gauges read
from the database. No series carries personal data: statuses, kinds and Bot API method
names only.

The database gauges are read by the web server in the background (``Metrics.run``: at the
start, then every ``REFRESH_SECONDS``) and served from memory: a scrape never waits on the
database, whose counts over a large clinic take seconds. ``remindbot_metrics_age_seconds``
says how old they are, and ``remindbot_database_up`` whether the last read succeeded
(while it fails, the last counts read are served, with ``remindbot_database_up 0``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import prometheus_client
from prometheus_client import (
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from scheduler import outbox
from scheduler.clock import Clock
from scheduler.db import reading
from scheduler.dispatcher import Dispatcher
from scheduler.models import CoordinatorAlert, Patient, Reminder
from scheduler.statuses import AlertStatus, PatientStatus, ReminderStatus

# The ``_created`` series of every counter and histogram: a timestamp per series that no
# dashboard of ours reads, doubling the exposition.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)

DATABASE_TIMEOUT: Final = 3.0  # seconds /healthz waits for the database
# Seconds a read of the gauges may take: it runs in the background, so a count over
# millions of reminders may take its time; a database that does not answer is down.
REFRESH_TIMEOUT: Final = 20.0
REFRESH_SECONDS: Final = 30.0  # how often the database gauges are read
CONTENT_TYPE: Final = prometheus_client.CONTENT_TYPE_LATEST
# From "on time" to the end of the late window (72 hours by default).
LATENCY_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
REQUEST_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_METHOD_LENGTH: Final = 40


@dataclass(frozen=True)
class DatabaseCounts:
    """What a scrape read from the database."""

    reminders: dict[str, int]
    patients: dict[str, int]
    alerts: dict[str, int]
    unrouted: int
    queue_lag: float


async def read_counts(sessions: async_sessionmaker[AsyncSession], now: datetime) -> DatabaseCounts:
    """Counts by status and the age of the oldest reminder waiting; raises when the
    database does not answer within ``REFRESH_TIMEOUT``."""
    async with asyncio.timeout(REFRESH_TIMEOUT), reading(sessions) as session:

        async def by_status(column: InstrumentedAttribute[str]) -> dict[str, int]:
            rows = await session.execute(select(column, func.count()).group_by(column))
            return {str(status): count for status, count in rows.all()}

        reminders = await by_status(Reminder.status)
        patients = await by_status(Patient.status)
        alerts = await by_status(CoordinatorAlert.status)
        oldest = await session.scalar(
            select(func.min(Reminder.ready_at)).where(Reminder.ready_at <= now)
        )
        unrouted = await outbox.unrouted_alerts(session)
    lag = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    return DatabaseCounts(reminders, patients, alerts, unrouted, lag)


class DatabaseCollector(Collector):
    """The gauges from the database, as last read by ``Metrics.refresh``; whether that
    read succeeded, and the age of the counts (monotonic seconds)."""

    def __init__(self) -> None:
        self.counts: DatabaseCounts | None = None
        self.read_at: float | None = None  # time.monotonic() of the counts
        self.up: bool | None = None  # None: not read yet

    def collect(self) -> Iterable[Metric]:
        families = [] if self.counts is None else list(self._families(self.counts))
        if self.up is not None:
            families.append(
                GaugeMetricFamily(
                    "remindbot_database_up",
                    "1 when the last read of the database gauges succeeded, else 0.",
                    value=1 if self.up else 0,
                )
            )
        if self.read_at is not None:
            families.append(
                GaugeMetricFamily(
                    "remindbot_metrics_age_seconds",
                    "Seconds since the database gauges were read.",
                    value=round(time.monotonic() - self.read_at, 3),
                )
            )
        return families

    @staticmethod
    def _families(counts: DatabaseCounts) -> Iterator[Metric]:
        labelled = (
            (
                "remindbot_reminders",
                "Reminders by current status.",
                ReminderStatus,
                counts.reminders,
            ),
            ("remindbot_patients", "Patients by status.", PatientStatus, counts.patients),
            (
                "remindbot_alerts",
                "Coordinator alerts by current status (failed: never delivered).",
                AlertStatus,
                counts.alerts,
            ),
        )
        for name, documentation, statuses, values in labelled:
            family = GaugeMetricFamily(name, documentation, labels=["status"])
            for status in statuses:
                family.add_metric([str(status)], values.get(str(status), 0))
            yield family
        yield GaugeMetricFamily(
            "remindbot_alerts_without_recipient",
            "Alerts that found nobody to tell (a team without coordinators and no alert chat).",
            value=counts.unrouted,
        )
        yield GaugeMetricFamily(
            "remindbot_queue_lag_seconds",
            "Age of the oldest reminder waiting to be sent.",
            value=round(counts.queue_lag, 3),
        )


class DispatcherCollector(Collector):
    """The dispatcher's counters since the process started (``Dispatcher.stats``)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Iterable[Metric]:
        stats = self.dispatcher.stats
        messages = CounterMetricFamily(
            "remindbot_messages",
            "Telegram send attempts by result (rate() = sends/s).",
            labels=["result"],
        )
        for result, count in sorted(stats.messages.items()):
            messages.add_metric([str(result)], count)
        alerts = CounterMetricFamily(
            "remindbot_alerts",
            "Coordinator alert sends by the status they reached.",
            labels=["status"],
        )
        for status, count in sorted(stats.alerts.items()):
            alerts.add_metric([status], count)
        errors = CounterMetricFamily(
            "remindbot_telegram_errors", "Telegram errors by kind.", labels=["kind"]
        )
        for result, count in sorted(stats.messages.items()):
            if result != "sent":
                errors.add_metric([str(result)], count)
        ticks = CounterMetricFamily(
            "remindbot_dispatcher_ticks", "Dispatcher ticks since start.", value=stats.ticks
        )
        last = stats.last_tick_at
        last_tick = GaugeMetricFamily(
            "remindbot_dispatcher_last_tick_timestamp_seconds",
            "When it last ticked.",
            value=round(last.timestamp(), 3) if last else 0,
        )
        return [messages, alerts, errors, ticks, last_tick]


class Metrics:
    """One server's registry and the hooks that feed it."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        # Not described at registration: the gauge remindbot_alerts and the counter
        # remindbot_alerts_total (two names in the exposition, as before prometheus-client)
        # would count as one name registered twice.
        self.registry = CollectorRegistry()
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        self.database = DatabaseCollector()
        self.registry.register(self.database)
        self.registry.register(DispatcherCollector(dispatcher))
        self.reminder_latency = Histogram(
            "remindbot_reminder_latency_seconds",
            "Seconds from when a reminder was meant to go out (due, snoozed or retried) to "
            "Telegram accepting it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.telegram_duration = Histogram(
            "remindbot_telegram_request_duration_seconds",
            "Duration of Bot API requests (getUpdates apart), answered or not, by method.",
            labelnames=["method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def reminder_sent(self, seconds: float) -> None:
        """A reminder went out ``seconds`` after its time (``Dispatcher.on_sent``)."""
        self.reminder_latency.observe(max(seconds, 0.0))

    def telegram_request(self, method: str, seconds: float) -> None:
        """A Bot API request took ``seconds`` (``AiohttpRequest.observe``)."""
        # Bot API methods are letters; anything else (a file download) is not a method.
        if not (method.isalpha() and len(method) <= _METHOD_LENGTH):
            method = "other"
        self.telegram_duration.labels(method).observe(seconds)

    async def refresh(self) -> bool:
        """Read the database gauges; on failure keep the last ones and mark the database
        down. Returns whether the read succeeded."""
        try:
            counts = await read_counts(self.sessions, self.clock.now())
        except Exception as error:  # the database is down or too slow: say so, go on
            if self.database.up is not False:
                log.warning("metrics: the database gauges cannot be read: %s", type(error).__name__)
            self.database.up = False
            return False
        self.database.counts = counts
        self.database.read_at = time.monotonic()
        self.database.up = True
        return True

    async def run(self, interval: float = REFRESH_SECONDS) -> None:
        """Refresh the database gauges every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    def scrape(self) -> bytes:
        """The exposition, from memory: never waits on the database."""
        return prometheus_client.generate_latest(self.registry)
