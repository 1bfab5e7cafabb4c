"""The dispatcher: the loop that sends what the outbox holds.

    claim → group → limit → send → decide → apply

A ``tick`` claims a batch of due reminders (``outbox.claim_due``: PostgreSQL ``FOR UPDATE
SKIP LOCKED``, so several processes never take the same row; SQLite: one writer at a time),
groups them into messages (a patient's reminders of one instant, in pages a phone can show),
sends a few at a time within Telegram's limits (``ratelimit``), asks ``policies.decide``
what each outcome means and has the outbox record it as soon as the send returns. Then it
sends the coordinator alerts that are due, the same way.

At most ``concurrency`` sends are in flight (a handful at Telegram's 30 per second): a
crash can duplicate those, never lose a reminder; the process's heartbeat
(``scheduler.processes``) lets the others take its claims back within seconds, and tells
each how many share the bot's rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import alerts, outbox, processes, store
from scheduler.clock import Clock
from scheduler.db import is_database_error, reading
from scheduler.models import Patient
from scheduler.outbox import Claimed, ClaimedAlert
from scheduler.policies import ALERT_BUDGET, REMINDER_BUDGET, RetryBudget, Verdict, decide
from scheduler.protocol import KIND_ORDER
from scheduler.ratelimit import RateLimiter
from scheduler.sending import Delivery, Outcome, Part, Purpose, Result, Sender

log = logging.getLogger(__name__)

# Sends go out this long after their rate-limit slot, whatever the pre-send check took.
CHECK_ALLOWANCE: Final = 0.03
# How long a send usually takes, for the number of sends kept in flight at a given rate.
EXPECTED_LATENCY: Final = 0.15
# Outcomes that could not be recorded (the database went away) are tried this often more.
RECORD_TRIES: Final = 4
# A process that joins running ones sends nothing for this long: until each of them has
# beaten (every BEAT_EVERY) and taken its smaller share, the whole rate is theirs.
JOIN_WAIT: Final = processes.BEAT_EVERY.total_seconds() + 1.0

__all__ = [
    "Delivery",
    "Dispatcher",
    "Outcome",
    "Part",
    "RateLimiter",
    "Result",
    "Sender",
    "TickReport",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One Telegram message and the claims it carries."""

    delivery: Delivery
    claims: tuple[Claimed, ...]
    patient: Patient


class _Skip:
    """Why a claimed message was not sent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


RELEASED = _Skip("released")  # the process is stopping: back to the queue
NOT_OURS = _Skip("not ours")  # withdrawn, paused or taken over meanwhile


@dataclass
class TickReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    expired: int = 0
    released: int = 0
    reclaimed: int = 0
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
        answered = report.by_result.keys() - {Result.TRANSIENT, Result.TIMED_OUT}
        if answered:
            self.telegram_ok_at = now  # Telegram answered, even if with an error
        if report.by_result.keys() & {Result.TRANSIENT, Result.TIMED_OUT}:
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
    # Sends in flight at once; None: enough for the limiter's rate (a handful at 30/s).
    concurrency: int | None = None
    lease: timedelta = timedelta(minutes=5)
    budget: RetryBudget = REMINDER_BUDGET
    limiter: RateLimiter | None = None
    # Alerts go to the patient's coordinator and, if set, this chat (REMINDBOT_ALERT_CHAT_ID).
    alert_chat_id: int | None = None
    alert_batch_size: int = 20
    alert_budget: RetryBudget = ALERT_BUDGET
    # Tells whether the host application is still running; when it stops (SIGTERM), the
    # messages in flight finish and the rest is released.
    running: Callable[[], bool] = lambda: True
    stats: Stats = field(default_factory=Stats)
    # Told, for each reminder Telegram accepted, the seconds since it was meant to go out
    # (its ``intended`` time: due, snooze or retry time), for a latency histogram.
    on_sent: Callable[[float], None] | None = None
    # Outcomes are written together within this many seconds (a busy dispatcher then writes
    # a few statements for dozens of messages); a crash can lose at most these.
    record_window: float = 0.02
    # A pre-send check answers for this long (at 30 messages per second, every 6th send).
    recheck_after: float = 0.2
    process_id: int | None = None
    _stopping: bool = False
    _asked: int = 0  # claims the latest tick asked for (see _batch)
    _checking: asyncio.Future[None] | None = None
    _draining: bool = False
    # The claims of the tick under way, and the latest answer about them (see _still_ours).
    _tick: Sequence[Claimed] = ()
    _ours: set[int] = field(default_factory=set)
    _ours_at: float | None = None

    # --- the process --------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the messages being sent, release the rest of the batch, claim no more."""
        self._stopping = True

    def _holding(self) -> bool:
        return self._stopping or not self.running()

    def in_flight(self) -> int:
        """How many sends may be under way at once."""
        if self.concurrency is not None:
            return self.concurrency
        # The bot's rate, not this process's share of it: the share changes between ticks,
        # and sends beyond it only wait for their slot in the limiter.
        rate = self.limiter.per_second if self.limiter else None
        if not rate:
            return 64
        return max(2, min(64, math.ceil(rate * EXPECTED_LATENCY)))

    async def beat(self) -> int:
        """Say this process is alive, take back the claims of those that stopped, and take
        this process's share of the rate limit; returns how many reminders and alerts were
        taken back."""
        now = self.clock.now()
        joined = False
        async with self.sessions.begin() as session:
            if self.process_id is None or not await processes.beat(
                session, process_id=self.process_id, now=now
            ):
                self.process_id = await processes.register(session, now=now, postgres=self.postgres)
                joined = True
            dead = await processes.stopped(session, now=now)
            taken = await outbox.reclaim(session, process_ids=dead, now=now)
            taken += await outbox.reclaim_alerts(session, process_ids=dead, now=now)
            await processes.forget(session, process_ids=dead)
            live = await processes.live(session, now=now)
        if taken:
            log.warning("took back %d claims of %d stopped processes", taken, len(dead))
        self._share(live, joined=joined)
        return taken

    def _share(self, live: int, *, joined: bool) -> None:
        """Send ``rate / live``: the replicas together keep the bot's rate. One that has
        just joined others waits ``JOIN_WAIT`` first, while they still send their former,
        bigger shares; a replica that stops leaves its share to the others once it is
        found stopped (``processes.DEAD_AFTER``) or signs off, at their next beat."""
        limiter = self.limiter
        if limiter is None or not limiter.per_second:
            return
        if live != limiter.processes:
            limiter.set_share(live)
            log.info("%d processes share the rate: sending %.3g per second", live, limiter.share)
        if joined and live > 1:
            limiter.pause(JOIN_WAIT)

    def _batch(self) -> int:
        """Claims per tick: a share of ``batch_size`` as big as this process's share of the
        rate, so that a batch takes as long to send however many replicas share the rate
        (one stopping strands fewer reminders, and at the end of a backlog none is left
        sending alone)."""
        processes = self.limiter.processes if self.limiter and self.limiter.per_second else 1
        return max(1, math.ceil(self.batch_size / processes))

    async def close(self) -> None:
        """The process stops cleanly: its row goes (it holds no claims any more)."""
        if self.process_id is not None:
            async with self.sessions.begin() as session:
                await processes.forget(session, process_ids=[self.process_id])
            self.process_id = None

    # --- one tick -----------------------------------------------------------------------

    async def drain(self) -> AsyncIterator[TickReport]:
        """Ticks while each one finds a full batch: a backlog goes out batch after batch at
        the rate limit, not one batch per tick interval. Yields nothing when a drain is
        already under way (the tick job fired again meanwhile)."""
        if self._draining:
            return
        self._draining = True
        try:
            while True:
                report = await self.tick()
                yield report
                if self._holding() or report.claimed + report.expired < self._asked:
                    return
        finally:
            self._draining = False

    async def tick(self) -> TickReport:
        """Claim what is due (one batch) and send it; then the coordinator alerts."""
        report = TickReport()
        try:
            if not self._holding():
                report.reclaimed = await self.beat()
                await self._dispatch(self.clock.now(), report)
                report.alerts = await self.send_alerts()
        finally:
            self.stats.add(report, self.clock.now())
        return report

    async def _dispatch(self, now: datetime, report: TickReport) -> None:
        assert self.process_id is not None
        self._asked = self._batch()
        async with self.sessions.begin() as session:
            claimed = await outbox.claim_due(
                session,
                now=now,
                limit=self._asked,
                process_id=self.process_id,
                lease=self.lease,
                late_window=self.late_window,
                postgres=self.postgres,
            )
        report.claimed, report.expired = len(claimed.claimed), claimed.expired
        if not claimed.claimed:
            return
        messages = await self._messages(claimed.claimed, now)
        report.deliveries = len(messages)
        self._tick, self._ours_at = claimed.claimed, None
        recorder = _Recorder(self, report)
        gate = asyncio.Semaphore(self.in_flight())
        started: set[int] = set()

        async def one(n: int, message: Message) -> None:
            async with gate:
                started.add(n)
                outcome = RELEASED if self._holding() else await self._send(message)
            await recorder.record(message, outcome)

        tasks = [asyncio.ensure_future(one(n, m)) for n, m in enumerate(messages)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One send failed unexpectedly: stop the others. What never started goes back
            # to the queue; what was under way stays claimed (it may have been sent) and is
            # taken back by the lease, or by the heartbeat if this process dies.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for n, message in enumerate(messages):
                if n not in started:
                    recorder.queue(message, RELEASED)
            raise
        finally:
            await recorder.flush()
            self._tick, self._ours_at = (), None
            await self._check_done()

    async def _check_done(self) -> None:
        """Wait for a still-ours check begun in the background to end: its connection goes
        back to the pool before the tick ends (the engine may be disposed of next). What
        it says, or how it fails, no longer matters."""
        checking, self._checking = self._checking, None
        if checking is not None:
            await asyncio.wait([checking])

    async def _messages(self, claimed: Sequence[Claimed], now: datetime) -> list[Message]:
        """The claims as Telegram messages: one per patient and instant (and purpose), in
        kind order, in pages the sender can show on a phone; the earliest first."""
        groups: dict[tuple[int, datetime, Purpose], list[Claimed]] = defaultdict(list)
        for item in claimed:
            groups[item.patient_id, item.intended, item.purpose].append(item)
        async with reading(self.sessions) as session:
            patients = {
                p.id: p
                for p in await session.scalars(
                    select(Patient).where(Patient.id.in_({c.patient_id for c in claimed}))
                )
            }
            snoozes = await outbox.snooze_counts(session, reminder_ids=[c.id for c in claimed])
        messages = []
        for (patient_id, _, purpose), items in sorted(groups.items(), key=lambda kv: kv[0][1]):
            items.sort(key=lambda item: KIND_ORDER[item.kind])
            patient = patients[patient_id]
            today = now.astimezone(ZoneInfo(patient.timezone)).date()
            whole = Delivery(
                patient_id=patient_id,
                chat_id=patient.chat_id or 0,
                locale=patient.locale,
                cervix=patient.cervix,
                due_at=items[0].due_at,
                parts=tuple(Part(i.id, i.kind, i.about, i.local_date) for i in items),
                snoozes=max(snoozes.get(i.id, 0) for i in items),
                purpose=purpose,
                days_overdue=(today - items[0].local_date).days,
            )
            by_id = {item.id: item for item in items}
            for page in self.sender.pages(whole):
                claims = tuple(by_id[part.reminder_id] for part in page.parts)
                messages.append(Message(page, claims, patient))
        return messages

    async def _send(self, message: Message) -> Outcome | _Skip:
        delivery = message.delivery
        slot = await self.limiter.acquire(delivery.chat_id) if self.limiter else None
        if self._holding():
            return RELEASED
        try:
            ours = await self._still_ours(message.claims)
        except Exception as error:
            if not is_database_error(error):
                raise
            # Not sent, and not known to be ours: back to the queue, once the database
            # answers again (until then the claim's lease keeps it safe).
            log.warning(
                "the database could not be reached before a send (%s)", type(error).__name__
            )
            return RELEASED
        if {claim.id for claim in message.claims} - ours:
            return NOT_OURS
        sending = (
            self.limiter.sending(slot, CHECK_ALLOWANCE, delivery.chat_id)
            if self.limiter is not None and slot is not None
            else contextlib.nullcontext()
        )
        async with sending:
            outcome = await self.sender.send(delivery)
        if outcome.result is Result.SENT and self.on_sent is not None:
            accepted = self.clock.now()
            for claim in message.claims:
                self.on_sent((accepted - claim.intended).total_seconds())
        self._throttled(delivery.chat_id, outcome)
        return outcome

    def _throttled(self, chat_id: int, outcome: Outcome) -> None:
        if outcome.result is Result.RATE_LIMITED and self.limiter is not None:
            wait = outcome.retry_after or self.budget.first_backoff
            if self.limiter.throttled(chat_id, wait.total_seconds()):
                log.warning("Telegram's flood wait: every send waits %d s", wait.total_seconds())

    async def _still_ours(self, claims: Sequence[Claimed]) -> set[int]:
        """Right before sending: which of ``claims`` are still ours, their patient active.

        A check reads every claim of the tick at once, and its answer serves for
        ``recheck_after`` seconds from when it began: a withdrawal committed since is seen
        by the next check (and, whatever the timing, the outcome of a send for a withdrawn
        reminder changes nothing). The next check begins half-way through, while sends go
        on, so that a send waits for one only when the database is slow to answer.
        """
        while True:
            age = math.inf if self._ours_at is None else time.monotonic() - self._ours_at
            if age >= self.recheck_after / 2 and (self._checking is None or self._checking.done()):
                self._checking = asyncio.ensure_future(self._check())
                self._checking.add_done_callback(_seen)
            if age < self.recheck_after:
                return {c.id for c in claims} & self._ours
            assert self._checking is not None
            # Shielded: a send being stopped must not cancel the others' check.
            await asyncio.shield(self._checking)
            if self._ours_at is not None:
                # An answer about this tick's claims, however long it took to come. (A
                # check still under way from the previous tick answers nothing about them:
                # then the loop starts one that does.)
                return {c.id for c in claims} & self._ours

    async def _check(self) -> None:
        tick, checked = self._tick, time.monotonic()
        async with reading(self.sessions) as session:
            ours = await outbox.still_ours(session, tick)
        if self._tick is tick:  # not an answer about the next tick's claims
            self._ours, self._ours_at = ours, checked

    async def _apply(
        self,
        session: AsyncSession,
        message: Message,
        outcome: Outcome | _Skip,
        now: datetime,
        report: TickReport,
    ) -> list[alerts.Alert]:
        """Record one message's outcome; returns the alerts it raises."""
        claims = message.claims
        if outcome is RELEASED:
            report.released += await outbox.release(session, claims, now=now)
            return []
        if outcome is NOT_OURS:
            await outbox.set_aside(session, claims, now=now)
            return []
        assert isinstance(outcome, Outcome)
        report.by_result[outcome.result] = report.by_result.get(outcome.result, 0) + 1
        attempts = max(claim.attempts for claim in claims)
        decision = decide(outcome, attempts=attempts, now=now, budget=self.budget)
        parts = message.delivery.parts
        if decision.verdict is Verdict.SENT:  # recorded with the others (see _Recorder)
            return []
        if decision.verdict is Verdict.RETRY:
            assert decision.retry_at is not None
            retrying = await outbox.retry(
                session,
                claims,
                at=decision.retry_at,
                now=now,
                detail=decision.detail,
                code=outcome.error_code,
            )
            report.retrying += len(retrying)
            return []
        failed = await outbox.fail(
            session, claims, now=now, detail=decision.detail, code=outcome.error_code
        )
        report.failed += len(failed)
        if outcome.result is Result.BLOCKED:
            # However many of their messages bounce, the coordinator hears it once.
            if not await store.mark_unreachable(session, patient_id=message.patient.id, now=now):
                return []
        elif not failed:
            return []  # a follow-up that did not arrive: the reminder itself did
        raised = alerts.after_send(message.patient, parts, outcome.result)
        return [raised] if raised else []

    # --- coordinator alerts ---------------------------------------------------------------

    async def send_alerts(self, *, patient_id: int | None = None) -> Counter[str]:
        """Send the coordinator alerts that are due: queued, to be retried, or left by a
        stopped process; only ``patient_id``'s if given. Returns how many reached each
        status."""
        done: Counter[str] = Counter()
        if self._holding():
            return done
        if self.process_id is None:
            await self.beat()
        assert self.process_id is not None
        now = self.clock.now()
        async with self.sessions.begin() as session:
            claimed, exhausted = await outbox.claim_alerts(
                session,
                now=now,
                limit=self.alert_batch_size,
                process_id=self.process_id,
                lease=self.lease,
                max_attempts=self.alert_budget.max_attempts,
                postgres=self.postgres,
                alert_chat_id=self.alert_chat_id,
                patient_id=patient_id,
            )
        for kind, given_up in exhausted:
            done["failed"] += 1
            log.error("alert %s for patient %d given up", kind, given_up)
        for n, claim in enumerate(claimed):
            if self._holding():
                async with self.sessions.begin() as session:
                    await outbox.release_alerts(session, claimed[n:], now=self.clock.now())
                break
            if self.limiter is not None:
                await self.limiter.hold(await self.limiter.acquire(claim.chat_id), 0.0)
            async with self.sessions.begin() as session:
                if not await outbox.renew_alert(
                    session, claim, now=self.clock.now(), lease=self.lease
                ):
                    continue  # held up past the lease: another process has taken it
            outcome = await self.sender.alert(claim.alert, claim.chat_id, claim.locale)
            self._throttled(claim.chat_id, outcome)
            done[await self._record_alert(claim, outcome)] += 1
        self.stats.alerts.update(done)
        return done

    async def _record_alert(self, claim: ClaimedAlert, outcome: Outcome) -> str:
        now = self.clock.now()
        decision = decide(outcome, attempts=claim.attempts, now=now, budget=self.alert_budget)
        async with self.sessions.begin() as session:
            if decision.verdict is Verdict.SENT:
                await outbox.alert_sent(session, claim, message_id=outcome.message_id, now=now)
                return "sent"
            if decision.verdict is Verdict.RETRY:
                assert decision.retry_at is not None
                await outbox.retry_alert(
                    session,
                    claim,
                    at=decision.retry_at,
                    now=now,
                    detail=decision.detail,
                    code=outcome.error_code,
                )
                return "retrying"
            await outbox.fail_alert(
                session,
                claim,
                now=now,
                detail=decision.detail,
                code=outcome.error_code,
                alert_chat_id=self.alert_chat_id,
            )
        log.error(
            "alert %s for patient %d could not be delivered to a recipient after %d attempts: %s",
            claim.alert.kind,
            claim.alert.patient_id,
            claim.attempts,
            outcome.error_code or outcome.description,
        )
        return "failed"


def _seen(check: asyncio.Future[None]) -> None:
    """A check's failure is the concern of the sends that wait for it, if any: not one
    for asyncio to report."""
    if not check.cancelled():
        check.exception()


class _Recorder:
    """Records outcomes as they come: one transaction for those that arrived within
    ``RECORD_WINDOW`` (and while the previous write went on), so a crash loses at most what
    was in flight, and a busy dispatcher writes a few statements for many messages."""

    def __init__(self, dispatcher: Dispatcher, report: TickReport) -> None:
        self.dispatcher = dispatcher
        self.report = report
        self._queued: list[tuple[Message, Outcome | _Skip]] = []
        # Outcomes are written in the order they were queued: the n-th queued (from 0) is
        # written once more than n are.
        self._queued_count = 0
        self._written_count = 0
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        self._failed = False

    def queue(self, message: Message, outcome: Outcome | _Skip) -> None:
        """To be written with the next write (``flush``)."""
        self._queued.append((message, outcome))
        self._queued_count += 1

    async def record(self, message: Message, outcome: Outcome | _Skip) -> None:
        """Queue an outcome and wait until it is written (or the writes failed: ``flush``
        tries again)."""
        place = self._queued_count
        self.queue(message, outcome)
        while self._written_count <= place and not self._failed:
            if self._writing is None or self._writing.done():
                self._writing = asyncio.ensure_future(self._write_soon())
            # Shielded: a write cancelled half-way (the batch is being stopped) could leave
            # its connection inside a transaction; this one finishes whatever happens.
            await asyncio.shield(self._writing)

    async def _write_soon(self) -> None:
        await asyncio.sleep(self.dispatcher.record_window)
        try:
            while self._queued:
                await self._write()
        except Exception as error:  # the database: flush() tries again
            self._failed = True
            log.warning("outcomes not recorded yet: %s", type(error).__name__)

    async def flush(self) -> None:
        """Write what is left; after ``RECORD_TRIES`` failed tries, leave it to the
        claims' lease (the reminders stay claimed and are sent again, never lost)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
        for attempt in range(RECORD_TRIES):
            if not self._queued:
                return
            try:
                await self._write()
            except Exception as error:
                log.warning("outcomes not recorded (try %d): %s", attempt + 1, type(error).__name__)
                await asyncio.sleep(0.25 * 2**attempt)
        if self._queued:
            log.error("%d outcomes could not be recorded: left to the lease", len(self._queued))

    @staticmethod
    async def _sent(
        session: AsyncSession,
        sent: Sequence[tuple[Message, Outcome | _Skip]],
        now: datetime,
        counted: TickReport,
    ) -> list[alerts.Alert]:
        """The common case, whatever the number of messages: a few statements."""
        if not sent:
            return []
        done = set(
            await outbox.mark_sent(
                session,
                [
                    (message.claims, outcome.message_id)
                    for message, outcome in sent
                    if isinstance(outcome, Outcome)
                ],
                now=now,
            )
        )
        counted.sent += len(done)
        raised = []
        for message, _ in sent:
            delivered = [part for part in message.delivery.parts if part.reminder_id in done]
            alert = alerts.after_send(message.patient, delivered, None) if delivered else None
            if alert is not None:
                raised.append(alert)
        return raised

    async def _write(self) -> None:
        async with self._lock:
            if not self._queued:
                return  # written by the task before
            batch, self._queued = self._queued, []
            dispatcher = self.dispatcher
            now = dispatcher.clock.now()
            counted = TickReport()  # into the report once the transaction is committed
            sent = [
                (message, outcome)
                for message, outcome in batch
                if isinstance(outcome, Outcome) and outcome.result is Result.SENT
            ]
            try:
                async with dispatcher.sessions.begin() as session:
                    raised = await self._sent(session, sent, now, counted)
                    for message, outcome in batch:
                        raised += await dispatcher._apply(session, message, outcome, now, counted)
                    for alert in raised:
                        await outbox.queue_alert(
                            session, alert, alert_chat_id=dispatcher.alert_chat_id, now=now
                        )
            except BaseException:
                self._queued[:0] = batch
                raise
            self._written_count += len(batch)
            report = self.report
            for name in ("sent", "retrying", "failed", "released"):
                setattr(report, name, getattr(report, name) + getattr(counted, name))
            for result, count in counted.by_result.items():
                report.by_result[result] = report.by_result.get(result, 0) + count
