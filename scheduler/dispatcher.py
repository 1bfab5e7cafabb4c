"""The dispatcher: claims due reminders from the outbox, hands them to a Sender, and
records what happened, so that every reminder is sent or visibly not sent.

One ``tick`` claims a batch in one short transaction (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, so several processes never take the same row; SQLite: one writer at a time),
marks it ``sending`` with a lease, sends outside any transaction and records each outcome.
A claim is identified by the reminder's ``attempts`` counter: a process whose lease ran
out and whose rows were claimed again by another process can no longer change them.
A crash after Telegram accepted a message but before ``sent`` was recorded leaves the
lease to expire and the reminder is sent again: at most one duplicate, never a loss.

Coordinator alerts (scheduler.alerts) are queued the same way, claimed with a lease and
sent at the end of each tick, with their own, longer run of retries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import store
from scheduler.alerts import Alert, AlertKind, alert_of, queue_alert
from scheduler.clock import Clock
from scheduler.db import reading
from scheduler.models import CoordinatorAlert, DeliveryEvent, Patient, Reminder
from scheduler.policies import is_too_late
from scheduler.protocol import Kind
from scheduler.statuses import AlertStatus, PatientStatus, ReminderStatus

log = logging.getLogger(__name__)

SENDING, SENT, RETRYING, FAILED, EXPIRED, PLANNED = (
    ReminderStatus.SENDING,
    ReminderStatus.SENT,
    ReminderStatus.RETRYING,
    ReminderStatus.FAILED,
    ReminderStatus.EXPIRED,
    ReminderStatus.PLANNED,
)


# --- what the dispatcher hands to the Telegram side, and what it gets back -----------------


@dataclass(frozen=True, slots=True)
class Part:
    """One reminder inside a message."""

    reminder_id: int
    kind: Kind
    about: date | None
    local_date: date


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Telegram message: a patient's reminders due at the same instant."""

    patient_id: int
    chat_id: int
    locale: str
    cervix: bool  # the yearly reminder adds the cervical screening line
    due_at: datetime
    parts: tuple[Part, ...]
    snoozes: int = 0  # how often the patient has already postponed these reminders


class Result(StrEnum):
    SENT = "sent"
    RATE_LIMITED = "rate_limited"  # 429: wait retry_after, then try again
    TRANSIENT = "transient"  # network error, timeout, 5xx: back off and retry
    BLOCKED = "blocked"  # 403: the patient blocked the bot or deleted the account
    REJECTED = "rejected"  # any other 4xx: permanent


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    message_id: int | None = None
    error_code: int | None = None
    description: str | None = None
    retry_after: timedelta | None = None

    @classmethod
    def sent(cls, message_id: int) -> Outcome:
        return cls(Result.SENT, message_id=message_id)


# Sends go out this long after their rate-limit slot, whatever the pre-send check took.
CHECK_ALLOWANCE = 0.03

# Not sent because the dispatcher is stopping: back to the queue, not counted as an attempt.
_RELEASED = Outcome(Result.RATE_LIMITED, description="released before sending")


class Sender(Protocol):
    """The Telegram side, as the dispatcher sees it."""

    async def send(self, delivery: Delivery) -> Outcome:
        """Send one reminder message; never raises for Telegram errors."""
        ...

    async def alert(self, alert: Alert, chat_id: int) -> Outcome:
        """Send one coordinator alert to one recipient; never raises for Telegram errors."""
        ...


# --- rate limits -------------------------------------------------------------------------------


class RateLimiter:
    """Spaces sends: at most ``per_second`` overall, one per ``chat_interval`` per private
    chat and one per ``group_interval`` per group.

    Telegram allows about 30 messages per second overall, one per second in a private chat
    and 20 a minute in a group; PTB's AIORateLimiter does not enforce the second for private
    chats.
    """

    def __init__(
        self,
        *,
        per_second: float | None,
        chat_interval: float | None = 1.0,
        group_interval: float | None = 3.0,
        margin: float = 0.97,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._spacing = 1 / (per_second * margin) if per_second else 0.0
        self._chat_spacing = chat_interval / margin if chat_interval else 0.0
        # Groups (negative chat ids: the alert chat) get about 20 messages a minute.
        self._group_spacing = group_interval / margin if group_interval else 0.0
        # At most ``_window_limit`` sends start within ``_window`` seconds (see ``hold``);
        # each entry is when a send leaves that window.
        self._window_limit = max(1, math.floor(per_second)) if per_second else 0
        self._window = self._window_limit / (per_second * margin) if per_second else 0.0
        self._started: deque[float] = deque()
        self._monotonic = monotonic
        self._sleep = sleep
        self._next_slot = 0.0
        self._chat_free: dict[int, float] = {}
        self._chat_locks: dict[int, asyncio.Lock] = {}

    async def acquire(self, chat_id: int) -> float:
        """Wait until a message to ``chat_id`` may go out, and take that slot (returned, in
        monotonic seconds)."""
        lock = self._chat_locks.get(chat_id)
        if lock is None:
            lock = self._chat_locks[chat_id] = asyncio.Lock()
        async with lock:  # messages to one chat take turns
            now = self._monotonic()
            ready = self._chat_free.get(chat_id, 0.0)
            if ready > now:
                await self._sleep(ready - now)
                now = self._monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._spacing
            if slot > now:
                await self._sleep(slot - now)
            spacing = self._group_spacing if chat_id < 0 else self._chat_spacing
            if spacing:
                self._chat_free[chat_id] = slot + spacing
        if len(self._chat_locks) > 10_000:
            self._forget_idle_chats(now)
        return slot

    async def hold(self, slot: float, delay: float) -> None:
        """Call right before sending. Waits until ``delay`` after ``slot``, so that work done
        between taking a slot and sending (a database check) does not bunch sends together
        when its duration varies; then, should a send still have been held up (a pause of
        the process) so that it would follow the next ones too closely, until fewer than
        ``per_second`` sends (rounded down, at least one) started within the time they
        take at ``per_second * margin``."""
        wait = slot + delay - self._monotonic()
        if wait > 0:
            await self._sleep(wait)
        if not self._window_limit:
            return
        while True:
            now = self._monotonic()
            while self._started and self._started[0] <= now:
                self._started.popleft()
            if len(self._started) < self._window_limit:
                self._started.append(now + self._window)
                return
            await self._sleep(max(self._started[0] - now, 0.001))

    def _forget_idle_chats(self, now: float) -> None:
        self._chat_free = {c: t for c, t in self._chat_free.items() if t > now}
        self._chat_locks = {
            c: lock for c, lock in self._chat_locks.items() if lock.locked() or c in self._chat_free
        }


# --- the dispatcher ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    attempts: int
    patient_id: int
    kind: Kind
    about: date | None
    local_date: date
    due_at: datetime
    intended: datetime  # when it was meant to go out: due, snooze or retry time


@dataclass
class TickReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    expired: int = 0
    released: int = 0
    deliveries: int = 0
    by_result: dict[str, int] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)  # coordinator alerts, by status


@dataclass
class Stats:
    """What the dispatcher did since the process started: for health checks and metrics."""

    ticks: int = 0
    last_tick_at: datetime | None = None
    reminders: Counter[str] = field(default_factory=Counter)  # by status reached
    messages: Counter[str] = field(default_factory=Counter)  # by Telegram result
    alerts: Counter[str] = field(default_factory=Counter)  # by status reached
    telegram_ok_at: datetime | None = None
    telegram_failed_at: datetime | None = None

    def add(self, report: TickReport, now: datetime) -> None:
        self.ticks += 1
        self.last_tick_at = now
        for status in ("sent", "retrying", "failed", "expired", "released"):
            self.reminders[status] += getattr(report, status)
        self.messages.update(report.by_result)
        if report.by_result.keys() - {Result.TRANSIENT}:
            self.telegram_ok_at = now  # Telegram answered, even if with an error
        if Result.TRANSIENT in report.by_result:
            self.telegram_failed_at = now

    @property
    def telegram_reachable(self) -> bool:
        """False if the latest exchange with Telegram failed (None seen yet: True)."""
        if self.telegram_failed_at is None:
            return True
        return self.telegram_ok_at is not None and self.telegram_ok_at >= self.telegram_failed_at


@dataclass
class Dispatcher:
    sessions: async_sessionmaker[AsyncSession]
    sender: Sender
    clock: Clock
    late_window: timedelta
    postgres: bool = False
    batch_size: int = 200
    # Messages in flight at once; their outcomes are recorded together. 64 rather than 32
    # halves the recording and pre-send checks per message: +20 % reminders/s on PostgreSQL.
    concurrency: int = 64
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 5
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=1)
    limiter: RateLimiter | None = None
    # Alerts go to the patient's coordinator and, if set, this chat (REMINDBOT_ALERT_CHAT_ID).
    alert_chat_id: int | None = None
    alert_batch_size: int = 20
    # Backoff as for reminders, capped at an hour: about 5 hours of tries for an alert.
    alert_attempts: int = 12
    paused_until: datetime | None = None
    # Tells whether the host application is still running; when it stops (SIGTERM), the
    # batch in flight finishes and the rest is released.
    running: Callable[[], bool] = lambda: True
    stats: Stats = field(default_factory=Stats)
    _stopping: bool = False
    _waiting: list[tuple[Sequence[_Claimed], asyncio.Future[bool]]] = field(default_factory=list)
    _checking: bool = False

    def stop(self) -> None:
        """Finish the message being sent, release the rest of the batch, claim no more."""
        self._stopping = True

    def backoff(self, attempts: int) -> timedelta:
        delay: timedelta = self.first_backoff * 2 ** max(attempts - 1, 0)
        return min(delay, self.max_backoff)

    async def tick(self) -> TickReport:
        """Claim what is due and send it."""
        report = TickReport()
        now = self.clock.now()
        try:
            if not self._stopping and not (self.paused_until and now < self.paused_until):
                await self._dispatch(now, report)
                # Alerts raised by this batch, and any still to be retried.
                report.alerts = await self.send_alerts()
        finally:
            self.stats.add(report, self.clock.now())
        return report

    async def _dispatch(self, now: datetime, report: TickReport) -> None:
        claimed = await self._claim(now, report)
        if not claimed:
            return
        deliveries = await self._deliveries(claimed)
        report.deliveries = len(deliveries)
        for start in range(0, len(deliveries), self.concurrency):
            chunk = deliveries[start : start + self.concurrency]
            if self._holding():
                await self._release(deliveries[start:], report)
                break
            outcomes = await asyncio.gather(*(self._send(d, items) for d, items in chunk))
            await self._record(list(zip(chunk, outcomes, strict=True)), report)

    def _paused(self) -> bool:
        return self.paused_until is not None and self.clock.now() < self.paused_until

    def _holding(self) -> bool:
        """Nothing more may be sent now: stopping, or paused by a 429."""
        return self._stopping or not self.running() or self._paused()

    async def _claim(self, now: datetime, report: TickReport) -> list[_Claimed]:
        async with self.sessions.begin() as session:
            due = store.due_reminders(now=now, limit=self.batch_size).add_columns(
                Reminder.patient_id, Reminder.ready_at
            )
            if self.postgres:
                due = due.with_for_update(skip_locked=True)
            first = (await session.execute(due)).all()
            if not first:
                return []
            # Reminders bundled with a claimed one (same patient, same instant) come along,
            # so a batch boundary never splits a message.
            groups = {(patient_id, ready_at) for _, patient_id, ready_at in first}
            taken = [row[0] for row in first]
            ids = list(taken)
            if len(first) >= self.batch_size:  # a smaller batch took every due row already
                siblings = select(Reminder.id).where(
                    Reminder.patient_id.in_({patient_id for patient_id, _ in groups}),
                    Reminder.ready_at <= now,
                    tuple_(Reminder.patient_id, Reminder.ready_at).in_(list(groups)),
                    Reminder.id.not_in(taken),
                )
                if self.postgres:
                    siblings = siblings.with_for_update(skip_locked=True)
                ids += list(await session.scalars(siblings))
            rows = (
                await session.execute(
                    select(
                        Reminder.id,
                        Reminder.attempts,
                        Reminder.patient_id,
                        Reminder.kind,
                        Reminder.about,
                        Reminder.local_date,
                        Reminder.due_at,
                        Reminder.ready_at,
                        Reminder.status,
                    ).where(Reminder.id.in_(ids))
                )
            ).all()
            late = [
                row
                for row in rows
                if is_too_late(row.ready_at, now=now, late_window=self.late_window)
            ]
            fresh = [row for row in rows if row not in late]
            if late:
                await session.execute(
                    update(Reminder)
                    .where(Reminder.id.in_([row.id for row in late]))
                    .values(status=EXPIRED, ready_at=None)
                )
                hours = int(self.late_window.total_seconds() // 3600)
                await store.append_events(
                    session,
                    [row.id for row in late],
                    EXPIRED,
                    now,
                    detail=f"more than {hours} h late, not sent",
                )
                report.expired += len(late)
            if fresh:
                await session.execute(
                    update(Reminder)
                    .where(Reminder.id.in_([row.id for row in fresh]))
                    .values(
                        status=SENDING, ready_at=now + self.lease, attempts=Reminder.attempts + 1
                    )
                )
                relaunched = [row.id for row in fresh if row.status == SENDING]
                await store.append_events(
                    session, [r.id for r in fresh if r.status != SENDING], SENDING, now
                )
                await store.append_events(
                    session, relaunched, SENDING, now, detail="lease expired, sending again"
                )
        report.claimed = len(fresh)
        return [
            _Claimed(
                row.id,
                row.attempts + 1,
                row.patient_id,
                Kind(row.kind),
                row.about,
                row.local_date,
                row.due_at,
                row.ready_at,
            )
            for row in fresh
        ]

    async def _deliveries(
        self, claimed: Sequence[_Claimed]
    ) -> list[tuple[Delivery, list[_Claimed]]]:
        by_message: dict[tuple[int, datetime], list[_Claimed]] = defaultdict(list)
        for item in claimed:
            by_message[item.patient_id, item.intended].append(item)
        async with reading(self.sessions) as session:
            patients = {
                p.id: p
                for p in await session.scalars(
                    select(Patient).where(Patient.id.in_({c.patient_id for c in claimed}))
                )
            }
            snoozes = await store.snooze_counts(session, reminder_ids=[c.id for c in claimed])
        deliveries = []
        for (patient_id, _), items in sorted(by_message.items(), key=lambda kv: kv[0][1]):
            patient = patients[patient_id]
            delivery = Delivery(
                patient_id=patient_id,
                chat_id=patient.chat_id or 0,
                locale=patient.locale,
                cervix=patient.cervix,
                due_at=items[0].due_at,
                parts=tuple(Part(i.id, i.kind, i.about, i.local_date) for i in items),
                snoozes=max(snoozes.get(i.id, 0) for i in items),
            )
            deliveries.append((delivery, items))
        return deliveries

    async def _still_ours(self, items: Sequence[_Claimed]) -> bool:
        """Right before sending: still claimed by us, and the patient still active?

        Each check is a fresh read, so it sees every withdrawal committed before it.
        Checks asked for while one is running are answered together by the next query:
        one query per message when messages are spaced out, few when they are not.
        """
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, answer))
        if not self._checking:
            self._checking = True
            try:
                while self._waiting:
                    batch, self._waiting = self._waiting, []
                    try:
                        ours = await self._claims_still_ours(
                            [(i.id, i.attempts) for group, _ in batch for i in group]
                        )
                    except Exception as error:
                        for _, pending in batch:
                            pending.set_exception(error)
                        raise
                    for group, pending in batch:
                        pending.set_result(all((i.id, i.attempts) in ours for i in group))
            finally:
                self._checking = False
        return await answer

    async def _claims_still_ours(self, claims: list[tuple[int, int]]) -> set[tuple[int, int]]:
        async with reading(self.sessions) as session:
            rows = await session.execute(
                select(Reminder.id, Reminder.attempts)
                .join(Patient, Patient.id == Reminder.patient_id)
                .where(
                    # The plain IN lets SQLite use the primary key; a row-value IN alone
                    # makes it scan the table.
                    Reminder.id.in_([reminder_id for reminder_id, _ in claims]),
                    tuple_(Reminder.id, Reminder.attempts).in_(claims),
                    Reminder.status == SENDING,
                    Patient.status == PatientStatus.ACTIVE,
                    Patient.chat_id.is_not(None),
                )
            )
            return {(reminder_id, attempts) for reminder_id, attempts in rows.all()}

    async def _send(self, delivery: Delivery, items: Sequence[_Claimed]) -> Outcome | None:
        """Send one message. None: not sent, because the patient withdrew or was paused
        meanwhile, or another process took the reminders over."""
        slot = await self.limiter.acquire(delivery.chat_id) if self.limiter else None
        if self._stopping or not self.running():
            return _RELEASED
        if self._paused():
            return Outcome(Result.RATE_LIMITED)
        if not await self._still_ours(items):
            return None
        if self.limiter is not None and slot is not None:
            await self.limiter.hold(slot, CHECK_ALLOWANCE)
        return await self.sender.send(delivery)

    async def _release(
        self, rest: Sequence[tuple[Delivery, list[_Claimed]]], report: TickReport
    ) -> None:
        """Give claimed but unsent reminders back to the queue (shutdown, or a 429)."""
        ids = [(i.id, i.attempts) for _, items in rest for i in items]
        if not ids:
            return
        when = self.paused_until or self.clock.now()
        async with self.sessions.begin() as session:
            await session.execute(
                update(Reminder)
                .where(
                    or_(*(and_(Reminder.id == i, Reminder.attempts == a) for i, a in ids)),
                    Reminder.status == SENDING,
                )
                .values(status=RETRYING, ready_at=when, attempts=Reminder.attempts - 1)
            )
            await store.append_events(
                session,
                [i for i, _ in ids],
                RETRYING,
                self.clock.now(),
                detail="released before sending",
            )
        report.released += len(ids)

    async def _record(
        self,
        results: list[tuple[tuple[Delivery, list[_Claimed]], Outcome | None]],
        report: TickReport,
    ) -> None:
        now = self.clock.now()
        alerts: list[Alert] = []  # queued with the outcomes that raised them
        sent = [
            (delivery, items, outcome)
            for (delivery, items), outcome in results
            if outcome is not None and outcome.result is Result.SENT
        ]
        async with self.sessions.begin() as session:
            # The common case in two statements, however many messages went out.
            if sent:
                claims = [(i.id, i.attempts) for _, items, _ in sent for i in items]
                # Still ours (the events say what was sent either way; a lease that ran
                # out means another process may have sent it too).
                ours = set(
                    await session.scalars(
                        update(Reminder)
                        .where(
                            Reminder.id.in_([reminder_id for reminder_id, _ in claims]),
                            tuple_(Reminder.id, Reminder.attempts).in_(claims),
                            Reminder.status == SENDING,
                        )
                        .values(status=SENT, ready_at=None)
                        .returning(Reminder.id)
                    )
                )
                await session.execute(
                    insert(DeliveryEvent),
                    [
                        {
                            "reminder_id": i.id,
                            "status": SENT,
                            "at": now,
                            "telegram_message_id": outcome.message_id,
                        }
                        for _, items, outcome in sent
                        for i in items
                    ],
                )
                report.sent += len(claims)
                report.by_result[Result.SENT] = report.by_result.get(Result.SENT, 0) + len(sent)
                for delivery, items, _ in sent:
                    if any(i.kind is Kind.COURSE_DUE and i.id in ours for i in items):
                        alerts.append(await _alert(session, AlertKind.COURSE_DUE, delivery, items))
            for (delivery, items), outcome in results:
                if outcome is None or outcome.result is not Result.SENT:
                    await self._record_one(session, delivery, items, outcome, now, report, alerts)
            for alert in alerts:
                queue_alert(session, alert, alert_chat_id=self.alert_chat_id, now=now)

    async def _record_one(
        self,
        session: AsyncSession,
        delivery: Delivery,
        items: list[_Claimed],
        outcome: Outcome | None,
        now: datetime,
        report: TickReport,
        alerts: list[Alert],
    ) -> None:
        ids = [i.id for i in items]
        ours = or_(*(and_(Reminder.id == i.id, Reminder.attempts == i.attempts) for i in items))
        if outcome is None:
            # Withdrawn (already cancelled), re-claimed by another process (not ours any
            # more) or paused: only the last still needs to leave the queue.
            paused = await session.scalars(
                update(Reminder)
                .where(ours, Reminder.status == SENDING)
                .values(status=PLANNED, ready_at=None, attempts=Reminder.attempts - 1)
                .returning(Reminder.id)
            )
            await store.append_events(
                session, list(paused), PLANNED, now, detail="not sent: the patient is not active"
            )
            return
        report.by_result[outcome.result] = report.by_result.get(outcome.result, 0) + 1
        if outcome.result is Result.RATE_LIMITED:
            # A 429, a send held back by one, or a release at shutdown: not an attempt.
            if outcome.retry_after is not None:
                self.paused_until = max(self.paused_until or now, now + outcome.retry_after)
            ready = self.paused_until if self.paused_until and self.paused_until > now else now
            await session.execute(
                update(Reminder)
                .where(ours, Reminder.status == SENDING)
                .values(status=RETRYING, ready_at=ready, attempts=Reminder.attempts - 1)
            )
            await store.append_events(
                session,
                ids,
                RETRYING,
                now,
                code=outcome.error_code,
                detail=outcome.description or "paused for Telegram's rate limit",
            )
            if outcome is _RELEASED:
                report.released += len(ids)
            else:
                report.retrying += len(ids)
            return
        attempts = max(i.attempts for i in items)
        if outcome.result is Result.TRANSIENT and attempts < self.max_attempts:
            await session.execute(
                update(Reminder)
                .where(ours, Reminder.status == SENDING)
                .values(status=RETRYING, ready_at=now + self.backoff(attempts))
            )
            await store.append_events(
                session, ids, RETRYING, now, code=outcome.error_code, detail=outcome.description
            )
            report.retrying += len(ids)
            return
        detail = outcome.description or ""
        if outcome.result is Result.TRANSIENT:
            detail = f"gave up after {attempts} attempts: {detail}"
        failed = list(
            await session.scalars(
                update(Reminder)
                .where(ours, Reminder.status == SENDING)
                .values(status=FAILED, ready_at=None)
                .returning(Reminder.id)
            )
        )
        if not failed:
            return  # the lease ran out: the process that holds it now decides
        await store.append_events(
            session, failed, FAILED, now, code=outcome.error_code, detail=detail
        )
        report.failed += len(failed)
        if outcome.result is Result.BLOCKED:
            await store.pause(
                session,
                patient_id=delivery.patient_id,
                actor="dispatcher",
                now=now,
                status=PatientStatus.UNREACHABLE,
            )
            if not any(
                a.kind is AlertKind.UNREACHABLE and a.patient_id == delivery.patient_id
                for a in alerts
            ):  # two messages of one batch to the same blocked patient: one alert
                alerts.append(await _alert(session, AlertKind.UNREACHABLE, delivery, items))
        else:
            alerts.append(await _alert(session, AlertKind.DELIVERY_FAILED, delivery, items))

    # --- coordinator alerts ----------------------------------------------------------------

    async def send_alerts(self, *, patient_id: int | None = None) -> Counter[str]:
        """Send the coordinator alerts that are due: queued, to be retried, or left by a
        process whose lease ran out; only ``patient_id``'s if given. Returns how many reached
        each status."""
        done: Counter[str] = Counter()
        if self._holding():
            return done
        claimed = await self._claim_alerts(self.clock.now(), patient_id, done)
        for n, (row, alert) in enumerate(claimed):
            if self._holding():
                await self._release_alerts([r for r, _ in claimed[n:]])
                break
            if self.limiter is not None:
                await self.limiter.hold(await self.limiter.acquire(row.chat_id), 0.0)
            if not await self._alert_still_ours(row):
                continue  # held up past the lease: another process has taken it
            outcome = await self.sender.alert(alert, row.chat_id)
            done[await self._record_alert(row, alert, outcome)] += 1
        self.stats.alerts.update(done)
        return done

    async def _claim_alerts(
        self, now: datetime, patient_id: int | None, done: Counter[str]
    ) -> list[tuple[CoordinatorAlert, Alert]]:
        async with self.sessions.begin() as session:
            due = (
                select(CoordinatorAlert, Patient.label, Patient.coordinator_id)
                .join(Patient, Patient.id == CoordinatorAlert.patient_id)
                .where(CoordinatorAlert.ready_at <= now)
                .order_by(CoordinatorAlert.ready_at, CoordinatorAlert.id)
                .limit(self.alert_batch_size)
            )
            if patient_id is not None:
                due = due.where(CoordinatorAlert.patient_id == patient_id)
            if self.postgres:
                due = due.with_for_update(skip_locked=True, of=CoordinatorAlert)
            claimed = []
            for row, label, coordinator_id in (await session.execute(due)).all():
                if row.attempts >= self.alert_attempts:
                    # Every try ended without an outcome (the process died while sending).
                    row.status, row.ready_at = AlertStatus.FAILED, None
                    row.detail = "gave up: no outcome was recorded for the last attempts"
                    log.error("alert %s for patient %d given up", row.kind, row.patient_id)
                    done[AlertStatus.FAILED] += 1
                    continue
                row.status = AlertStatus.SENDING
                row.ready_at = now + self.lease
                row.attempts += 1
                claimed.append((row, alert_of(row, label, coordinator_id)))
        return claimed

    def _alert_claim(self, row: CoordinatorAlert) -> ColumnElement[bool]:
        return and_(
            CoordinatorAlert.id == row.id,
            CoordinatorAlert.attempts == row.attempts,
            CoordinatorAlert.status == AlertStatus.SENDING,
        )

    async def _alert_still_ours(self, row: CoordinatorAlert) -> bool:
        """Right before sending: renew the lease, if the claim is still ours."""
        async with self.sessions.begin() as session:
            renewed = await session.execute(
                update(CoordinatorAlert)
                .where(self._alert_claim(row))
                .values(ready_at=self.clock.now() + self.lease)
            )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]

    async def _release_alerts(self, rows: Sequence[CoordinatorAlert]) -> None:
        """Claimed, not sent (stopping, or paused by a 429): back to the queue, no attempt."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(CoordinatorAlert)
                .where(or_(*(self._alert_claim(row) for row in rows)))
                .values(
                    status=AlertStatus.RETRYING,
                    ready_at=max(self.paused_until or self.clock.now(), self.clock.now()),
                    attempts=CoordinatorAlert.attempts - 1,
                    detail="released before sending",
                )
            )

    async def _record_alert(self, row: CoordinatorAlert, alert: Alert, outcome: Outcome) -> str:
        now = self.clock.now()
        values: dict[str, Any]
        if outcome.result is Result.SENT:
            values = {"status": AlertStatus.SENT, "ready_at": None, "sent_at": now}
        elif outcome.result is Result.RATE_LIMITED:
            # Only this alert waits: a 429 for a busy group chat (Telegram allows about 20
            # messages a minute there) must not hold up the patients' reminders.
            values = {
                "status": AlertStatus.RETRYING,
                "ready_at": now + (outcome.retry_after or self.first_backoff),
                "attempts": row.attempts - 1,
            }
        elif outcome.result is Result.TRANSIENT and row.attempts < self.alert_attempts:
            values = {"status": AlertStatus.RETRYING, "ready_at": now + self.backoff(row.attempts)}
        else:
            values = {"status": AlertStatus.FAILED, "ready_at": None}
            log.error(
                "alert %s for patient %d could not be delivered to a recipient after %d "
                "attempts: %s",
                alert.kind,
                alert.patient_id,
                row.attempts,
                outcome.error_code or outcome.description,
            )
        values |= {
            "telegram_message_id": outcome.message_id,
            "error_code": outcome.error_code,
            "detail": (outcome.description or "")[:255] or None,
        }
        async with self.sessions.begin() as session:
            await session.execute(
                update(CoordinatorAlert).where(self._alert_claim(row)).values(**values)
            )
        return str(values["status"])


async def _alert(
    session: AsyncSession, kind: AlertKind, delivery: Delivery, items: list[_Claimed]
) -> Alert:
    patient = await session.get(Patient, delivery.patient_id)
    assert patient is not None
    first = items[0]
    return Alert(
        kind,
        patient.id,
        patient.label,
        patient.coordinator_id,
        first.kind,
        first.local_date,
        first.about,
    )
