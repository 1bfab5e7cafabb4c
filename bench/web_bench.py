"""Web console and /metrics latency at a large clinic's size, on PostgreSQL.

    python bench/web_bench.py [--patients 100000] [--requests 200] [--keep]
                              [--only TEXT] [--profile FILE] [--postgres-url URL]

Fills a database of its own (``remindbot_web_bench``) with ``--patients`` patients in 20
care teams and their materialised plans (about 100 reminders each: ~10M for 100,000), with
the history a few years of sending leaves: delivery events, acknowledgements, failures,
withdrawals with their cancellations, alerts. Rows go in with COPY (asyncpg's
``copy_records_to_table``), the secondary indexes and foreign keys dropped around the load
and built again after, then ANALYZE. ``--keep`` keeps the database for the next run (the
load takes minutes) and reuses one of the same size.

Then it starts the bot's web server (``bot.web.server.WebServer``: the console, /metrics)
in a process of its own, signs in as an admin and as a team's coordinator with one-time
links, and times N sequential requests of each page after a warm-up: the delivery log
(default view: activity in the last 7 days; filtered by team and status), the patient
page of a patient with a full plan, the patient list, /metrics. Prints p50/p99/max
against the targets (p99: 150 ms for a filtered log, 300 ms for a patient page, 200 ms
for /metrics), the server's CPU time per request, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from scheduler.db import create_engine, migrate, session_factory  # noqa: E402
from scheduler.planner import plan  # noqa: E402
from scheduler.protocol import TEST_KINDS  # noqa: E402
from scheduler.validation import build_profile  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DATABASE = "remindbot_web_bench"
TEAMS = 20
ADMIN = 1001
COORDINATORS = 2000  # team n's coordinator is COORDINATORS + n
TIMEZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "Asia/Riyadh")
LOCALES = ("en", "de", "fr", "ar", "es")
TARGETS_MS = {"log": 150.0, "patient": 300.0, "metrics": 200.0}
# Tables COPY fills; their secondary indexes and foreign keys are rebuilt after the load.
LOADED = (
    "patient",
    "course",
    "reminder",
    "delivery_event",
    "acknowledgement",
    "alert",
    "alert_event",
)


# --- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Patient:
    id: int
    template: int
    status: str
    enrolled: datetime
    # When a withdrawn, paused or unreachable patient stopped getting reminders.
    stopped: datetime | None


class Clinic:
    """Patients and the plans they share: the real planner's output for each distinct
    (start week, zone, CBP, second course), kept once and joined to its patients by the
    database. Deterministic for a seed and ``now``."""

    def __init__(self, *, now: datetime, seed: int = 17) -> None:
        self.now = now
        self.random = random.Random(seed)
        self.templates: dict[tuple[date, str, bool, bool], int] = {}
        self.items: list[tuple[Any, ...]] = []
        self.courses: list[tuple[Any, ...]] = []
        # Starts on Mondays over the last five years and the next two months.
        first = (now - timedelta(days=5 * 365)).date()
        first -= timedelta(days=first.weekday())
        self.starts = [first + timedelta(weeks=n) for n in range(5 * 52 + 9)]

    def template(self, start: date, zone: str, cbp: bool, second: bool) -> int:
        key = (start, zone, cbp, second)
        number = self.templates.get(key)
        if number is None:
            number = self.templates[key] = len(self.templates) + 1
            courses: list[tuple[date, int | None]] = [(start, None)]
            if second:
                courses.append((start + timedelta(days=365), 3))
            profile, _ = build_profile(courses=courses, timezone=zone, cbp=cbp)
            for seq, item in enumerate(plan(profile)):
                self.items.append(
                    (
                        number,
                        seq,
                        item.kind.value,
                        item.occurrence,
                        item.day,
                        item.due.astimezone(UTC),
                        item.about,
                        item.course,
                        item.kind in TEST_KINDS,
                    )
                )
        return number

    def patients(self, count: int) -> list[tuple[Any, ...]]:
        """The patient rows, numbered in the order they were enrolled (as ids are); fills
        ``courses``; the bench columns (template, stopped) at the end."""
        rnd, now = self.random, self.now
        drawn = sorted(rnd.choice(self.starts) for _ in range(count))
        rows = []
        for patient_id, start in enumerate(drawn, start=1):
            team = rnd.randrange(TEAMS) + 1
            zone = rnd.choice(TIMEZONES)
            cbp = rnd.random() < 0.35
            second = start + timedelta(days=365) < now.date() and rnd.random() < 0.35
            number = self.template(start, zone, cbp, second)
            enrolled = datetime.combine(start - timedelta(days=7), clock_time(8), tzinfo=UTC)
            roll = rnd.random()
            if enrolled > now - timedelta(hours=1) or roll < 0.03:
                status = "invited"
            elif roll < 0.08:
                status = "withdrawn"
            elif roll < 0.12:
                status = "paused"
            elif roll < 0.15:
                status = "unreachable"
            else:
                status = "active"
            stopped: datetime | None = None
            if status in ("withdrawn", "paused", "unreachable"):
                span = (now - enrolled).total_seconds() - 3600
                # One in ten of them stopped in the last week: the default log's activity.
                back = rnd.uniform(0, 7 * 86400) if rnd.random() < 0.1 else rnd.uniform(0, span)
                stopped = now - timedelta(seconds=min(back, span))
            rows.append(
                (
                    patient_id,
                    f"P{patient_id:06d}",
                    rnd.choice(LOCALES),
                    zone,
                    clock_time(9),
                    cbp,
                    cbp,
                    30,
                    status,
                    None if status == "invited" else 10_000_000 + patient_id,
                    COORDINATORS + team,
                    team,
                    1,
                    enrolled,
                    number,
                    stopped,
                )
            )
            self.courses.append((patient_id, 1, start, 5))
            if second:
                self.courses.append((patient_id, 2, start + timedelta(days=365), 3))
        return rows


PATIENT_COLUMNS = (
    "id", "label", "locale", "timezone", "send_time", "cbp", "cervix", "prophylaxis_days",
    "status", "chat_id", "coordinator_id", "team_id", "plan_version", "created_at",
)  # fmt: skip

# The rest is made by the database from the patients and their plans: a reminder's fate
# from a hash of (patient, item) (2% failed, 1% expired, 75% of tests acknowledged, the
# other tests followed up and alerted), and the history each fate leaves. Rows go in the
# order a running bot writes them: reminders at enrolment, events in time order.
REMINDERS = """
INSERT INTO reminder (patient_id, kind, occurrence, local_date, due_at, about, course, status,
                      plan_version, ready_at, attempts, followups, created_at, claim,
                      first_sent_at, changed_at)
SELECT p.id, t.kind, t.occurrence, t.local_date, t.due_at, t.about, t.course, f.status, 1,
       CASE WHEN f.status = 'planned' AND p.status = 'active' THEN t.due_at END,
       f.attempts, CASE WHEN f.status = 'sent' AND t.test THEN 3 ELSE 0 END, p.created_at,
       f.attempts,
       CASE WHEN f.status IN ('sent', 'acknowledged') THEN t.due_at + interval '1 second' END,
       p.created_at
FROM bench_patient b
JOIN patient p ON p.id = b.id
JOIN bench_item t ON t.template = b.template
CROSS JOIN LATERAL (SELECT mod(p.id * 7919 + t.seq * 104729, 1000) AS roll) h
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN p.status = 'invited' THEN 'planned'
        WHEN b.stopped IS NOT NULL AND t.due_at >= b.stopped
            THEN CASE WHEN p.status = 'withdrawn' THEN 'cancelled' ELSE 'planned' END
        WHEN t.due_at >= $1 THEN 'planned'
        WHEN h.roll < 20 THEN 'failed'
        WHEN h.roll < 30 THEN 'expired'
        WHEN t.test AND h.roll < 780 THEN 'acknowledged'
        ELSE 'sent'
    END AS status
) s
CROSS JOIN LATERAL (
    SELECT s.status,
           CASE s.status WHEN 'failed' THEN 2 WHEN 'planned' THEN 0 WHEN 'cancelled' THEN 0
                         ELSE 1 END AS attempts
) f
ORDER BY p.id, t.seq
"""

# (status of the reminder, whether it is a test) -> its history; "ack" adds 1 to 96 hours.
PATTERNS = [
    ("sent", False, 1, "sending", "0", None, None, False),
    ("sent", False, 2, "sent", "1 second", None, None, True),
    ("sent", True, 1, "sending", "0", None, None, False),
    ("sent", True, 2, "sent", "1 second", None, None, True),
    ("sent", True, 3, "sent", "3 days", None, "follow-up after 3 days sent", False),
    ("sent", True, 4, "sent", "7 days", None, "follow-up after 7 days sent", False),
    ("sent", True, 5, "sent", "10 days", None,
     "coordinator alerted: not confirmed after 10 days", False),
    ("acknowledged", True, 1, "sending", "0", None, None, False),
    ("acknowledged", True, 2, "sent", "1 second", None, None, True),
    ("acknowledged", True, 3, "acknowledged", "ack", None, "done", False),
    ("expired", False, 1, "expired", "73 hours", None, "more than 72 h late, not sent", False),
    ("expired", True, 1, "expired", "73 hours", None, "more than 72 h late, not sent", False),
    ("failed", False, 1, "sending", "0", None, None, False),
    ("failed", False, 2, "retrying", "0", 502, "Bad Gateway", False),
    ("failed", False, 3, "sending", "1 minute", None, None, False),
    ("failed", False, 4, "failed", "1 minute", 400, "Bad Request: chat not found", False),
    ("failed", True, 1, "sending", "0", None, None, False),
    ("failed", True, 2, "retrying", "0", 502, "Bad Gateway", False),
    ("failed", True, 3, "sending", "1 minute", None, None, False),
    ("failed", True, 4, "failed", "1 minute", 400, "Bad Request: chat not found", False),
]  # fmt: skip

EVENTS = """
INSERT INTO delivery_event (reminder_id, status, at, telegram_message_id, error_code, detail,
                            repeats)
SELECT reminder_id, status, at, message_id, error_code, detail, 1 FROM (
    SELECT r.id AS reminder_id, e.event AS status,
           r.due_at + CASE e.after WHEN 'ack' THEN (1 + r.id % 96) * interval '1 hour'
                                   ELSE e.after::interval END AS at,
           CASE WHEN e.message THEN r.id END AS message_id, e.error_code, e.detail
    FROM reminder r
    JOIN bench_pattern e
      ON e.state = r.status AND e.test = (r.kind IN ('labs_monthly', 'thyroid_quarterly'))
    UNION ALL
    SELECT r.id, 'cancelled', b.stopped, NULL, NULL, 'consent withdrawn'
    FROM reminder r JOIN bench_patient b ON b.id = r.patient_id
    WHERE r.status = 'cancelled'
) history
ORDER BY at, reminder_id
"""

AFTER_EVENTS = [
    # As the outbox keeps it: the reminder's latest history row (else its creation).
    """UPDATE reminder AS r SET changed_at = latest.at
       FROM (SELECT reminder_id, max(at) AS at FROM delivery_event GROUP BY reminder_id)
           AS latest
       WHERE r.id = latest.reminder_id""",
    """INSERT INTO acknowledgement (reminder_id, action, at)
       SELECT reminder_id, 'done', at FROM delivery_event WHERE status = 'acknowledged'
       ORDER BY id""",
    # One in five unconfirmed tests raised its alert (the rest shared a message with one),
    # and a third of the failed sends.
    """INSERT INTO alert (kind, patient_id, chat_id, route, reminder_kind, day, status,
                          attempts, created_at, sent_at, telegram_message_id)
       SELECT CASE r.status WHEN 'failed' THEN 'delivery_failed' ELSE 'missed_test' END,
              r.patient_id, p.coordinator_id, 'own', r.kind, r.local_date, 'sent', 1,
              r.due_at + interval '10 days', r.due_at + interval '10 days 2 seconds', r.id
       FROM reminder r JOIN patient p ON p.id = r.patient_id
       WHERE (r.status = 'sent' AND r.followups = 3 AND r.id % 5 = 0)
          OR (r.status = 'failed' AND r.id % 3 = 0)
       ORDER BY r.due_at""",
    """INSERT INTO alert_event (alert_id, status, at, telegram_message_id, repeats)
       SELECT a.id, e.status, a.created_at + e.after::interval,
              CASE WHEN e.status = 'sent' THEN a.telegram_message_id END, 1
       FROM alert a
       CROSS JOIN (VALUES ('queued', '0'), ('sending', '2 seconds'), ('sent', '2 seconds'))
           AS e(status, after)
       ORDER BY a.id, e.after""",
]


# --- the load ---------------------------------------------------------------------------------
def dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def bench_url(postgres_url: str) -> str:
    return make_url(postgres_url).set(database=DATABASE).render_as_string(hide_password=False)


async def existing_size(postgres_url: str) -> int | None:
    """The patients of a complete bench database from an earlier run; None if there is none."""
    try:
        connection = await asyncpg.connect(dsn(bench_url(postgres_url)))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        return await connection.fetchval(  # type: ignore[no-any-return]
            "SELECT patients FROM web_bench_info"
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()


async def recreate(postgres_url: str) -> None:
    admin = await asyncpg.connect(dsn(postgres_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()


async def drop_secondary(connection: asyncpg.Connection) -> list[str]:
    """Drop the loaded tables' foreign keys, unique constraints and secondary indexes;
    returns the statements that make them again, in order."""
    constraints = await connection.fetch(
        """SELECT conrelid::regclass::text AS tab, conname, contype,
                  pg_get_constraintdef(oid) AS def
           FROM pg_constraint
           WHERE conrelid::regclass::text = ANY($1::text[]) AND contype IN ('u', 'f')""",
        list(LOADED),
    )
    indexes = await connection.fetch(
        """SELECT indexname, indexdef FROM pg_indexes
           WHERE schemaname = 'public' AND tablename = ANY($1::text[])
             AND indexname NOT IN (SELECT conname FROM pg_constraint)""",
        list(LOADED),
    )
    for row in sorted(constraints, key=lambda r: r["contype"] != "f"):
        await connection.execute(f'ALTER TABLE "{row["tab"]}" DROP CONSTRAINT "{row["conname"]}"')
    for row in indexes:
        await connection.execute(f'DROP INDEX "{row["indexname"]}"')
    again = [row["indexdef"] for row in indexes]
    again += [
        f'ALTER TABLE "{row["tab"]}" ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
        for row in sorted(constraints, key=lambda r: r["contype"] == "f")
    ]
    return again


async def staff(connection: asyncpg.Connection, now: datetime) -> None:
    await connection.execute("UPDATE team SET name = 'team-01' WHERE id = 1")
    await connection.executemany(
        "INSERT INTO team (id, name, created_at) VALUES ($1, $2, $3)",
        [(n, f"team-{n:02d}", now) for n in range(2, TEAMS + 1)],
    )
    await connection.execute("SELECT setval(pg_get_serial_sequence('team', 'id'), $1)", TEAMS)
    users = [(ADMIN, "admin")] + [(COORDINATORS + n, "coordinator") for n in range(1, TEAMS + 1)]
    await connection.executemany(
        "INSERT INTO staff_user (telegram_user_id, role, granted_at, granted_by) "
        "VALUES ($1, $2, $3, 'bench')",
        [(user, role, now) for user, role in users],
    )
    await connection.executemany(
        "INSERT INTO team_member (team_id, user_id) VALUES ($1, $2)",
        [(n, COORDINATORS + n) for n in range(1, TEAMS + 1)],
    )


async def load(postgres_url: str, *, patients: int, now: datetime) -> None:
    await recreate(postgres_url)
    url = bench_url(postgres_url)
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(dsn(url))
    try:
        for setting in (
            "synchronous_commit = off",
            "maintenance_work_mem = '1GB'",
            "work_mem = '512MB'",
        ):
            await connection.execute(f"SET {setting}")
        await staff(connection, now)
        rebuild = await drop_secondary(connection)
        started = time.monotonic()

        def step(what: str) -> None:
            print(f"  {what} ({time.monotonic() - started:.0f} s)", flush=True)

        clinic = Clinic(now=now)
        rows = clinic.patients(patients)
        step(f"{len(rows):,} patients, {len(clinic.templates):,} distinct plans made")
        await connection.execute(
            """CREATE TABLE bench_patient (id integer PRIMARY KEY, template integer,
                                           stopped timestamptz);
               CREATE TABLE bench_item (template integer, seq integer, kind text,
                   occurrence text, local_date date, due_at timestamptz, about date,
                   course integer, test boolean);
               CREATE TABLE bench_pattern (state text, test boolean, seq integer,
                   event text, after text, error_code integer, detail text, message boolean)"""
        )
        await connection.copy_records_to_table(
            "patient", records=[row[:-2] for row in rows], columns=PATIENT_COLUMNS
        )
        await connection.copy_records_to_table(
            "bench_patient", records=[(row[0], row[-2], row[-1]) for row in rows]
        )
        await connection.copy_records_to_table(
            "course", records=clinic.courses, columns=("patient_id", "number", "start", "days")
        )
        await connection.copy_records_to_table("bench_item", records=clinic.items)
        await connection.copy_records_to_table("bench_pattern", records=PATTERNS)
        await connection.execute("CREATE INDEX ON bench_item (template, seq); ANALYZE")
        step("patients, courses and plans copied")
        await connection.execute(REMINDERS, now)
        step(f"{await connection.fetchval('SELECT count(*) FROM reminder'):,} reminders")
        await connection.execute(EVENTS)
        step(f"{await connection.fetchval('SELECT count(*) FROM delivery_event'):,} events")
        for statement in AFTER_EVENTS:
            await connection.execute(statement)
        step("acknowledgements and alerts")
        for table in ("patient", "reminder", "alert"):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        await connection.execute("DROP TABLE bench_patient, bench_item, bench_pattern")
        for statement in rebuild:
            await connection.execute(statement)
        step("indexes and constraints built again")
        await connection.execute("VACUUM ANALYZE")
        await connection.execute("CREATE TABLE web_bench_info (patients integer, at timestamptz)")
        await connection.execute("INSERT INTO web_bench_info VALUES ($1, $2)", patients, now)
        step("VACUUM ANALYZE")
    finally:
        await connection.close()


# --- the server, in a process of its own ------------------------------------------------------


class _NoSender:
    """The server's dispatcher never ticks here: nothing is sent."""

    def pages(self, delivery: Any) -> list[Any]:
        return [delivery]

    async def send(self, delivery: Any) -> Any:
        raise AssertionError("the bench sends nothing")

    async def alert(self, alert: Any, chat_id: int, locale: str | None = None) -> Any:
        raise AssertionError("the bench sends nothing")


async def serve(url: str, profile: str | None = None) -> None:
    """The bot's web server on a free port of 127.0.0.1; prints the port, runs until
    stdin closes. ``profile``: cProfile the requests, write the statistics there."""
    from bot.context import Services
    from bot.settings import load_settings
    from bot.web.server import WebServer
    from scheduler.clock import SystemClock
    from scheduler.dispatcher import Dispatcher

    settings = load_settings(DATABASE_URL=url, REMINDBOT_DEFAULT_TIMEZONE="Europe/Berlin")
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = SystemClock()
    dispatcher = Dispatcher(
        sessions=sessions,
        sender=_NoSender(),
        clock=clock,
        late_window=settings.late_window,
        postgres=True,
    )
    services = Services(settings=settings, sessions=sessions, clock=clock, dispatcher=dispatcher)
    server = WebServer(services, host="127.0.0.1", port=0)
    await server.start()
    print(f"PORT {server.port}", flush=True)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await server.stop()
    await engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the measurements -------------------------------------------------------------------------


async def sign_in(client: aiohttp.ClientSession, base: str, url: str, user_id: int) -> str:
    """A session cookie for ``user_id``, through a one-time link as from ``/web``."""
    from scheduler import web_access

    engine = create_engine(url)
    try:
        async with session_factory(engine).begin() as session:
            token = await web_access.issue_login(session, user_id=user_id, now=datetime.now(UTC))
    finally:
        await engine.dispose()
    async with client.get(f"{base}/login?token={token}", allow_redirects=False) as response:
        if response.status not in (302, 303):
            raise SystemExit(f"sign-in failed: {response.status} {await response.text()}")
        cookie = response.cookies.get("remindbot_session")
        if cookie is None:
            raise SystemExit("sign-in set no session cookie")
        return cookie.value


@dataclass
class Figures:
    name: str
    target: float | None
    latencies: list[float]
    cpu: float

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p50 = statistics.median(ms)
        p99 = ms[max(0, math.ceil(0.99 * len(ms)) - 1)]
        verdict = ""
        if self.target is not None:
            verdict = (
                f"  target p99 ≤ {self.target:.0f} ms: {'ok' if p99 <= self.target else 'MISSED'}"
            )
        return (
            f"{self.name:<46} n={len(ms):<4} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {ms[-1]:7.1f} ms  server CPU {self.cpu / len(ms) * 1000:6.1f} ms/req{verdict}"
        )


async def timed(
    name: str,
    target: float | None,
    fetch: Callable[[], Awaitable[int]],
    *,
    requests: int,
    pid: int,
    budget: float,
) -> Figures:
    """``requests`` sequential requests after a warm-up, or as many as fit in ``budget``
    seconds (a page of seconds would otherwise hold the run for an hour)."""
    warm = time.monotonic()
    for _ in range(max(5, requests // 20)):
        await fetch()
        if time.monotonic() - warm > budget / 6:
            break
    before = cpu_seconds(pid)
    started_all = time.monotonic()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await fetch()
        latencies.append(time.perf_counter() - started)
        if time.monotonic() - started_all > budget:
            break
    return Figures(name, target, latencies, cpu_seconds(pid) - before)


def getter(
    client: aiohttp.ClientSession, url: str, cookie: str | None, expect: str | None = None
) -> Callable[[], Awaitable[int]]:
    headers = {"Cookie": f"remindbot_session={cookie}"} if cookie else {}

    async def fetch() -> int:
        async with client.get(url, headers=headers, allow_redirects=False) as response:
            body = await response.read()
            if response.status != 200:
                raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
            if expect is not None and expect.encode() not in body:
                raise SystemExit(f"GET {url}: {expect!r} not in the page")
            return len(body)

    return fetch


async def choose(url: str) -> dict[str, Any]:
    """A patient with a full plan (two courses, active, half-way), a failed-heavy team."""
    connection = await asyncpg.connect(dsn(url))
    try:
        patient = await connection.fetchrow(
            """SELECT p.id, p.label, count(r.id) AS reminders FROM patient p
               JOIN course c ON c.patient_id = p.id AND c.number = 2
               JOIN reminder r ON r.patient_id = p.id
               WHERE p.status = 'active' AND p.id < 5000
               GROUP BY p.id, p.label ORDER BY count(r.id) DESC, p.id LIMIT 1"""
        )
        events = await connection.fetchval("SELECT count(*) FROM delivery_event")
        reminders = await connection.fetchval("SELECT count(*) FROM reminder")
        patients = await connection.fetchval("SELECT count(*) FROM patient")
    finally:
        await connection.close()
    assert patient is not None
    return {
        "patient_id": patient["id"],
        "label": patient["label"],
        "plan": patient["reminders"],
        "events": events,
        "reminders": reminders,
        "patients": patients,
    }


def log_url(base: str, **query: str) -> str:
    return f"{base}/deliveries" + (f"?{urlencode(query)}" if query else "")


async def measure(
    url: str, *, requests: int, budget: float, only: str | None, profile: str | None
) -> None:
    facts = await choose(url)
    print(
        f"database: {facts['patients']:,} patients, {facts['reminders']:,} reminders, "
        f"{facts['events']:,} delivery events; patient {facts['label']} has "
        f"{facts['plan']} reminders"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        url,
        *(["--profile", profile] if profile else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
    if not line.startswith("PORT "):
        raise SystemExit(f"the server did not start: {line!r}")
    base = f"http://127.0.0.1:{int(line.split()[1])}"
    figures: list[Figures] = []
    try:
        async with aiohttp.ClientSession() as client:
            admin = await sign_in(client, base, url, ADMIN)
            coordinator = await sign_in(client, base, url, COORDINATORS + 3)
            pages: Sequence[tuple[str, float | None, str, str | None]] = [
                ("delivery log, default (admin, 7 days)", None, log_url(base), admin),
                (
                    "delivery log, default (one team's coordinator)",
                    TARGETS_MS["log"],
                    log_url(base),
                    coordinator,
                ),
                (
                    "delivery log, team + status=failed (admin)",
                    TARGETS_MS["log"],
                    log_url(base, team="team-03", status="failed"),
                    admin,
                ),
                (
                    "delivery log, status=acknowledged (coord.)",
                    TARGETS_MS["log"],
                    log_url(base, status="acknowledged"),
                    coordinator,
                ),
                (
                    "delivery log, one patient (admin)",
                    TARGETS_MS["log"],
                    log_url(base, patient=facts["label"]),
                    admin,
                ),
                (
                    f"patient page ({facts['plan']} reminders)",
                    TARGETS_MS["patient"],
                    f"{base}/patients/{facts['label']}",
                    admin,
                ),
                ("patient list (admin)", None, f"{base}/patients", admin),
                ("alerts (admin)", None, f"{base}/alerts", admin),
                ("/metrics", TARGETS_MS["metrics"], f"{base}/metrics", None),
            ]
            for name, target, page, cookie in pages:
                if only is not None and only not in name:
                    continue
                figures.append(
                    await timed(
                        name,
                        target,
                        getter(client, page, cookie),
                        requests=requests,
                        pid=process.pid,
                        budget=budget,
                    )
                )
                print(figures[-1].line(), flush=True)
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.terminate()
            await process.wait()


async def run(args: argparse.Namespace) -> None:
    size = await existing_size(args.postgres_url) if args.keep else None
    url = bench_url(args.postgres_url)
    if size != args.patients:
        print(f"loading {args.patients:,} patients into {DATABASE}...", flush=True)
        await load(args.postgres_url, patients=args.patients, now=datetime.now(UTC))
    else:
        print(f"reusing {DATABASE} ({size:,} patients)")
        engine = create_engine(url)
        try:
            await migrate(engine)  # a migration added since: an index, say
        finally:
            await engine.dispose()
    try:
        await measure(
            url,
            requests=args.requests,
            budget=args.budget,
            only=args.only,
            profile=args.profile,
        )
    finally:
        if not args.keep:
            admin = await asyncpg.connect(dsn(args.postgres_url))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per page, after a warm-up")
    parser.add_argument(
        "--budget", type=float, default=90.0, help="at most this many seconds per page"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database, and reuse one of this size"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--only", metavar="TEXT", help="only the pages whose name has TEXT")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the server's requests, write FILE"
    )
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.profile))
        return 0
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    asyncio.run(run(args))
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
