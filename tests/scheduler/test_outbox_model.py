"""A model-based test of the outbox: random sequences of what happens to a running bot,
with the properties of DESIGN.md's status machine checked after every step.

Steps: time passes; the dispatcher sends, with any of Telegram's answers (sent, a 429 for a
chat or a flood, a 5xx, a timeout after Telegram delivered, 403, 400); a process crashes in
the middle of sending and another takes over; patients press buttons, withdraw, are
re-planned (a new course, another time zone or send time) or erased. After every step:

- each reminder is in exactly one known status, and queued exactly when it should be;
- history is append-only and its latest row is the reminder's status;
- every status change (and every history row) moves the reminder's ``changed_at``;
- a re-plan never moves a reminder once sent (so never sends it again);
- nothing due is dropped: an active patient's unsent reminders are all queued;
- a reminder reaches Telegram twice only with a recorded reason (a claim abandoned by a
  crashed process, or a timeout after which it may have arrived);
- a withdrawn or erased patient gets nothing.

Runs on a real SQLite file, and on PostgreSQL when REMINDBOT_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler import outbox, patient_data, store
from scheduler.alerts import Alert
from scheduler.db import create_engine, migrate, session_factory
from scheduler.dispatcher import Dispatcher
from scheduler.errors import ValidationError
from scheduler.models import Base, DeliveryEvent, Patient, Reminder
from scheduler.outbox import Action
from scheduler.sending import Delivery, Outcome, Purpose, Result
from scheduler.statuses import PatientStatus, ReminderStatus
from scheduler.validation import build_profile
from tests.conftest import skip_or_fail, team_with_coordinator

START = datetime(2025, 12, 29, 8, tzinfo=UTC)
WINDOW = timedelta(hours=72)
CHATS = (7001, 7002)
POSTGRES_URL = os.environ.get("REMINDBOT_TEST_POSTGRES_URL")
MAY_HAVE_ARRIVED = ("may have arrived", outbox.ABANDONED)
QUEUED_WHEN_ACTIVE = {ReminderStatus.PLANNED, ReminderStatus.RETRYING}

ANSWERS = {
    "sent": Outcome.sent(1),
    "429 chat": Outcome(Result.RATE_LIMITED, error_code=429, retry_after=timedelta(seconds=7)),
    "429 flood": Outcome(Result.RATE_LIMITED, error_code=429, retry_after=timedelta(minutes=2)),
    "5xx": Outcome(Result.TRANSIENT, error_code=502, description="Bad Gateway"),
    "timeout after delivery": Outcome(Result.TIMED_OUT, description="no answer in time"),
    "403": Outcome(Result.BLOCKED, error_code=403, description="bot was blocked"),
    "400": Outcome(Result.REJECTED, error_code=400, description="chat not found"),
}
DELIVERED = {"sent", "timeout after delivery"}


class Crash(Exception):
    """The process is killed in the middle of a send."""


@dataclass
class Telegram:
    """Answers with the scripted outcomes, in turn (then "sent"), and remembers what it
    delivered; with ``crash_after``, the process dies at that send (after Telegram took it)."""

    script: list[str] = field(default_factory=list)
    crash_after: int | None = None
    # (chat, purpose, reminder ids, step of the machine)
    delivered: list[tuple[int, Purpose, tuple[int, ...], int]] = field(default_factory=list)
    step: int = 0

    def pages(self, delivery: Delivery) -> list[Delivery]:
        return [delivery]

    async def send(self, delivery: Delivery) -> Outcome:
        answer = self.script.pop(0) if self.script else "sent"
        ids = tuple(part.reminder_id for part in delivery.parts)
        if self.crash_after is not None:
            if self.crash_after == 0:
                self.delivered.append((delivery.chat_id, delivery.purpose, ids, self.step))
                raise Crash
            self.crash_after -= 1
        if answer in DELIVERED:
            self.delivered.append((delivery.chat_id, delivery.purpose, ids, self.step))
        await asyncio.sleep(0)
        return ANSWERS[answer]

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        return Outcome.sent(1)


@dataclass
class Clock:
    current: datetime = START

    def now(self) -> datetime:
        return self.current


_TEMPLATE: Path | None = None


def _sqlite_template() -> Path:
    """A migrated SQLite file, copied for each run (migrating each time is slow)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="remindbot-model-"))
        path = folder / "template.db"

        async def make() -> None:
            engine = create_engine(f"sqlite+aiosqlite:///{path}")
            await migrate(engine)
            await engine.dispose()

        asyncio.run(make())
        _TEMPLATE = path
    return _TEMPLATE


class OutboxMachine(RuleBasedStateMachine):
    database: ClassVar[str] = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="remindbot-model-"))
        self.schema: str | None = None
        self.engine = self._sqlite() if self.database == "sqlite" else self.run(self._postgres())
        self.sessions = session_factory(self.engine)
        self.clock = Clock()
        self.telegram = Telegram()
        self.dispatcher = self._dispatcher()
        self.patients: list[int] = []
        self.gone_at: dict[int, int] = {}  # chat -> the step in which it withdrew or was erased
        self.history: dict[int, tuple[str, int]] = {}  # event id -> (status, repeats)
        # The reminders of erased patients: they, and their history, are gone.
        self.erased: set[int] = set()
        self.fixed: dict[int, tuple[datetime, date]] = {}  # once sent: due, local date
        # Each reminder's status and changed_at at the last check, and that check's instant.
        self.seen: dict[int, tuple[str, datetime]] = {}
        self.checked_at = START

    def next_step(self) -> int:
        """The step that begins now: sends from here on are after what came before."""
        self.telegram.step += 1
        return self.telegram.step

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _sqlite(self) -> AsyncEngine:
        path = self.folder / "remindbot.db"
        shutil.copy(_sqlite_template(), path)
        return create_engine(f"sqlite+aiosqlite:///{path}")

    async def _postgres(self) -> AsyncEngine:
        assert POSTGRES_URL
        self.schema = f"model_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_URL)
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        await admin.dispose()
        engine = create_engine(
            POSTGRES_URL, connect_args={"server_settings": {"search_path": self.schema}}
        )
        # The tables as the models say (test_db checks that they are the migrations'):
        # much faster than migrating a schema per example.
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        return engine

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(
            sessions=self.sessions,
            sender=self.telegram,
            clock=self.clock,
            late_window=WINDOW,
            postgres=self.database != "sqlite",
            concurrency=1,
        )

    def teardown(self) -> None:
        async def close() -> None:
            await self.engine.dispose()
            if self.schema and POSTGRES_URL:
                admin = create_engine(POSTGRES_URL)
                async with admin.begin() as connection:
                    await connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
                await admin.dispose()

        self.run(close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- steps ----------------------------------------------------------------------------

    @initialize()
    def enrol_two_patients(self) -> None:
        async def enrol() -> None:
            await team_with_coordinator(self.sessions)
            async with self.sessions.begin() as session:
                for n, chat in enumerate(CHATS):
                    profile, _ = build_profile(
                        courses=[(date(2026, 1, 5 + 2 * n), None)],
                        timezone="Europe/Berlin",
                        cbp=n == 0,
                    )
                    [enrolled] = await store.enroll(
                        session,
                        enrolments=[store.Enrolment(f"M-{n}", "en", profile, 900)],
                        actor="test",
                        now=START,
                        late_window=WINDOW,
                    )
                    invite = await store.find_invite(
                        session, token=enrolled.invite_token, now=START
                    )
                    assert invite is not None
                    await store.accept_consent(
                        session,
                        invite=invite,
                        chat_id=chat,
                        version=2,
                        text="consent",
                        locale="en",
                        now=START,
                    )
                    self.patients.append(enrolled.patient_id)

        self.run(enrol())

    @rule(hours=st.integers(1, 80))
    def time_passes(self, hours: int) -> None:
        self.clock.current += timedelta(hours=hours)

    @rule(answers=st.lists(st.sampled_from(sorted(ANSWERS)), max_size=6))
    def dispatch(self, answers: list[str]) -> None:
        self.telegram.script = list(answers)
        self.run(self.dispatcher.tick())
        self.telegram.script = []

    @rule(after=st.integers(0, 3))
    def crash_and_take_over(self, after: int) -> None:
        """kill -9 in the middle of a batch; a new process starts and, once the old one's
        heartbeat is stale, takes its claims back."""
        self.telegram.crash_after = after
        try:
            self.run(self.dispatcher.tick())
        except Crash:
            pass
        finally:
            self.telegram.crash_after = None
        self.dispatcher = self._dispatcher()
        self.clock.current += timedelta(seconds=20)
        self.run(self.dispatcher.tick())

    @rule(patient=st.integers(0, 1), action=st.sampled_from(list(Action)))
    def press(self, patient: int, action: Action) -> None:
        async def press() -> None:
            async with self.sessions.begin() as session:
                reminder = await session.scalar(
                    select(Reminder)
                    .where(
                        Reminder.patient_id == self.patients[patient],
                        Reminder.first_sent_at.is_not(None),
                    )
                    .order_by(Reminder.first_sent_at.desc(), Reminder.id.desc())
                    .limit(1)
                )
                if reminder is None:
                    return
                counts = await outbox.snooze_counts(session, reminder_ids=[reminder.id])
                await outbox.acknowledge(
                    session,
                    reminder_id=reminder.id,
                    chat_id=CHATS[patient],
                    action=action,
                    snoozes_seen=counts.get(reminder.id, 0),
                    now=self.clock.now(),
                    alert_chat_id=None,
                )

        self.run(press())

    @rule(patient=st.integers(0, 1))
    def withdraw(self, patient: int) -> None:
        async def withdraw() -> None:
            async with self.sessions.begin() as session:
                await store.withdraw(
                    session, patient_id=self.patients[patient], actor="test", now=self.clock.now()
                )

        self.run(withdraw())
        self.gone_at.setdefault(CHATS[patient], self.next_step())

    @rule(patient=st.integers(0, 1))
    def erase(self, patient: int) -> None:
        async def erase() -> set[int]:
            async with self.sessions.begin() as session:
                patient_id = self.patients[patient]
                ids = set(
                    await session.scalars(
                        select(Reminder.id).where(Reminder.patient_id == patient_id)
                    )
                )
                events = set(
                    await session.scalars(
                        select(DeliveryEvent.id).where(DeliveryEvent.reminder_id.in_(ids))
                    )
                )
                await patient_data.erase(
                    session, patient_id=patient_id, actor="test", now=self.clock.now()
                )
                for event_id in events:
                    self.history.pop(event_id, None)
                return ids

        self.erased |= self.run(erase())
        self.gone_at.setdefault(CHATS[patient], self.next_step())

    @rule(patient=st.integers(0, 1), change=st.sampled_from(["course", "zone", "time"]))
    def replan(self, patient: int, change: str) -> None:
        async def replan() -> None:
            async with self.sessions.begin() as session:
                found = await session.get(Patient, self.patients[patient])
                if found is None or found.status == PatientStatus.WITHDRAWN:
                    return  # erased, or withdrawn
                kwargs: dict[str, Any] = {
                    "patient_id": found.id,
                    "actor": "test",
                    "now": self.clock.now(),
                    "late_window": WINDOW,
                }
                if change == "course":
                    await store.add_course(
                        session,
                        start=self.clock.now().date() + timedelta(days=10),
                        days=3,
                        allow_early=True,
                        **kwargs,
                    )
                elif change == "zone":
                    zone = "Asia/Tokyo" if found.timezone != "Asia/Tokyo" else "Europe/Berlin"
                    await store.update_preferences(session, timezone=ZoneInfo(zone), **kwargs)
                else:
                    hour = 8 if found.send_time.hour != 8 else 19
                    await store.update_preferences(session, send_time=time(hour, 30), **kwargs)

        # A course before the previous one ends is refused, and changes nothing.
        with contextlib.suppress(ValidationError):
            self.run(replan())

    # --- what must always hold ----------------------------------------------------------

    def rows(self) -> tuple[list[Reminder], list[DeliveryEvent], dict[int, str]]:
        async def read() -> tuple[list[Reminder], list[DeliveryEvent], dict[int, str]]:
            async with self.sessions() as session:
                reminders = list(await session.scalars(select(Reminder)))
                events = list(
                    await session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id))
                )
                rows = (await session.execute(select(Patient.id, Patient.status))).all()
                statuses = {patient_id: status for patient_id, status in rows}
                return reminders, events, statuses

        result: tuple[list[Reminder], list[DeliveryEvent], dict[int, str]] = self.run(read())
        return result

    @invariant()
    def the_status_machine_holds(self) -> None:
        if not self.patients:
            return
        reminders, events, patients = self.rows()
        latest: dict[int, DeliveryEvent] = {}
        for event in events:
            latest[event.reminder_id] = event
            # Append-only: a row once written keeps its status; only its count grows.
            before = self.history.get(event.id)
            assert before is None or (before[0] == event.status and before[1] <= event.repeats)
            self.history[event.id] = (event.status, event.repeats)
        assert set(self.history) == {event.id for event in events}, "a history row vanished"
        for r in reminders:
            status = ReminderStatus(r.status)  # one known status
            last = latest.get(r.id)
            if status is ReminderStatus.SENDING:
                assert r.ready_at is not None, r.id
                assert r.claimed_by is not None, r.id
            elif last is None:
                assert status is ReminderStatus.PLANNED, (r.id, status)
            else:
                assert last.status == status, (r.id, status, last.status, last.detail)
            if r.pending is not None:
                assert status in {
                    ReminderStatus.SENT,
                    ReminderStatus.SENDING,
                    ReminderStatus.RETRYING,
                }
                assert r.first_sent_at is not None
            # Once sent, a re-plan never moves it (and so never sends it again).
            if r.first_sent_at is not None:
                fixed = self.fixed.setdefault(r.id, (r.due_at, r.local_date))
                assert (r.due_at, r.local_date) == fixed, r.id
            # Nothing due is dropped: an active patient's unsent reminders wait in the queue.
            if patients[r.patient_id] == PatientStatus.ACTIVE and status in QUEUED_WHEN_ACTIVE:
                assert r.ready_at is not None, (r.id, status)
            # A paused, unreachable or withdrawn patient's reminders are out of the queue.
            if patients[r.patient_id] != PatientStatus.ACTIVE and status != ReminderStatus.SENDING:
                assert r.ready_at is None, (r.id, status, patients[r.patient_id])

    @invariant()
    def every_status_change_moves_changed_at(self) -> None:
        if not self.patients:
            return
        reminders, events, _ = self.rows()
        latest: dict[int, datetime] = {}
        for event in events:
            latest[event.reminder_id] = max(event.at, latest.get(event.reminder_id, event.at))
        now = self.clock.now()
        for r in reminders:
            assert r.created_at <= r.changed_at <= now, (r.id, r.changed_at)
            # Every history row is activity: the delivery log finds it by changed_at.
            assert latest.get(r.id, r.created_at) <= r.changed_at, (r.id, r.changed_at)
            before = self.seen.get(r.id)
            if before is not None and before[0] != r.status:
                # Changed during this step: at one of its instants, not before.
                assert r.changed_at >= self.checked_at, (r.id, before, r.status, r.changed_at)
                assert r.changed_at >= before[1], (r.id, before, r.changed_at)
            self.seen[r.id] = (r.status, r.changed_at)
        self.checked_at = now

    @invariant()
    def telegram_gets_each_reminder_once_unless_the_history_says_why(self) -> None:
        if not self.patients:
            return
        sends = Counter(
            reminder_id
            for _chat, purpose, ids, _at in self.telegram.delivered
            if purpose is Purpose.REMIND
            for reminder_id in ids
        )
        # (Those of an erased patient were checked after every step while they existed.)
        twice = [r for r, count in sends.items() if count > 1 and r not in self.erased]
        if not twice:
            return
        _, events, _ = self.rows()
        reasons = {
            event.reminder_id
            for event in events
            if any(marker in (event.detail or "") for marker in MAY_HAVE_ARRIVED)
        }
        assert set(twice) <= reasons, twice

    @invariant()
    def a_patient_who_left_gets_nothing(self) -> None:
        for chat, _purpose, _ids, step in self.telegram.delivered:
            gone = self.gone_at.get(chat)
            assert gone is None or step < gone, (chat, step, gone)


OutboxMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
TestOutboxOnSQLite = OutboxMachine.TestCase


class PostgresOutboxMachine(OutboxMachine):
    database = "postgresql"


PostgresOutboxMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=20, deadline=None
)


class TestOutboxOnPostgreSQL(PostgresOutboxMachine.TestCase):  # type: ignore[misc,valid-type]
    def setUp(self) -> None:
        if not POSTGRES_URL:
            skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
