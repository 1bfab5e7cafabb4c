"""The dispatcher on both databases, with an in-memory Sender (no Telegram involved)."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import outbox
from scheduler.alerts import Alert
from scheduler.db import is_sqlite, session_factory
from scheduler.dispatcher import JOIN_WAIT, Delivery, Dispatcher, Outcome, RateLimiter
from scheduler.models import DeliveryEvent, Patient, Reminder
from scheduler.processes import BEAT_EVERY, DEAD_AFTER
from tests.conftest import EngineFactory

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = timedelta(hours=72)


@dataclass
class FixedClock:
    current: datetime = NOW

    def now(self) -> datetime:
        return self.current


@dataclass
class RecordingSender:
    """Accepts every message and remembers it."""

    sent: list[Delivery] = field(default_factory=list)
    alerts: list[tuple[Alert, int]] = field(default_factory=list)

    def pages(self, delivery: Delivery) -> list[Delivery]:
        return [delivery]

    async def send(self, delivery: Delivery) -> Outcome:
        self.sent.append(delivery)
        await asyncio.sleep(0)  # let other dispatchers run, as a real request would
        return Outcome.sent(len(self.sent))

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        self.alerts.append((alert, chat_id))
        return Outcome.sent(len(self.alerts))


async def add_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    patients: int,
    per_patient: int,
    bundle: int = 1,
    first: int = 0,
) -> None:
    """``patients`` active patients, each with ``per_patient`` queued reminders due before
    NOW, ``bundle`` of them at each instant."""
    async with sessions.begin() as session:
        await session.execute(
            insert(Patient),
            [
                {
                    "label": f"P{first + n}",
                    "locale": "en",
                    "timezone": "UTC",
                    "send_time": time(9),
                    "cbp": False,
                    "cervix": False,
                    "prophylaxis_days": 30,
                    "status": "active",
                    "chat_id": 10_000 + first + n,
                    "team_id": 1,
                    "plan_version": 1,
                    "created_at": NOW,
                }
                for n in range(patients)
            ],
        )
        ids = list(
            await session.scalars(
                select(Patient.id).where(Patient.chat_id >= 10_000 + first).order_by(Patient.id)
            )
        )
        rows = []
        for pid in ids:
            for n in range(per_patient):
                due = NOW - timedelta(minutes=1 + n // bundle)
                rows.append(
                    {
                        "patient_id": pid,
                        "kind": "labs_monthly",
                        "occurrence": f"m{n}",
                        "local_date": date(2026, 3, 1),
                        "due_at": due,
                        "status": "planned",
                        "plan_version": 1,
                        "ready_at": due,
                        "attempts": 0,
                        "created_at": NOW,
                    }
                )
        for start in range(0, len(rows), 1000):
            await session.execute(insert(Reminder), rows[start : start + 1000])


def dispatcher(
    sessions: async_sessionmaker[AsyncSession],
    sender: RecordingSender,
    *,
    postgres: bool,
    batch_size: int = 200,
) -> Dispatcher:
    return Dispatcher(
        sessions=sessions,
        sender=sender,
        clock=FixedClock(),
        late_window=WINDOW,
        postgres=postgres,
        batch_size=batch_size,
    )


async def test_three_dispatchers_send_every_item_exactly_once(
    sessions: async_sessionmaker[AsyncSession], open_engine: EngineFactory
) -> None:
    await add_due(sessions, patients=1000, per_patient=5)  # 5,000 reminders
    engines = [open_engine() for _ in range(3)]
    postgres = not is_sqlite(engines[0])
    senders = [RecordingSender() for _ in engines]
    dispatchers = [
        dispatcher(session_factory(engine), sender, postgres=postgres)
        for engine, sender in zip(engines, senders, strict=True)
    ]

    async def drain(d: Dispatcher) -> None:
        while (await d.tick()).claimed:
            pass

    await asyncio.gather(*(drain(d) for d in dispatchers))
    sent = [part.reminder_id for s in senders for d in s.sent for part in d.parts]
    assert len(sent) == 5000
    assert len(set(sent)) == 5000
    if postgres:  # SKIP LOCKED lets them work side by side; SQLite takes turns
        assert all(s.sent for s in senders)
    async with sessions() as session:
        statuses = Counter((await session.scalars(select(Reminder.status))).all())
        assert statuses == {"sent": 5000}
        events = Counter((await session.scalars(select(DeliveryEvent.status))).all())
        assert events == {"sent": 5000}  # the outcome of each send; sending is a status only


async def test_batch_boundary_never_splits_a_message(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    await add_due(sessions, patients=3, per_patient=6, bundle=3)  # 6 messages of 3 items
    sender = RecordingSender()
    d = dispatcher(sessions, sender, postgres=not is_sqlite(db), batch_size=4)  # type: ignore[arg-type]
    while (await d.tick()).claimed:
        pass
    assert len(sender.sent) == 6
    assert all(len(delivery.parts) == 3 for delivery in sender.sent)


async def test_items_too_late_expire_instead_of_being_sent(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    await add_due(sessions, patients=1, per_patient=1)
    sender = RecordingSender()
    d = dispatcher(sessions, sender, postgres=not is_sqlite(db))  # type: ignore[arg-type]
    d.clock = FixedClock(NOW + WINDOW + timedelta(minutes=5))
    report = await d.tick()
    assert (report.expired, report.claimed, sender.sent) == (1, 0, [])
    async with sessions() as session:
        assert await session.scalar(select(Reminder.status)) == "expired"
        assert await session.scalar(select(func.count()).select_from(DeliveryEvent)) == 1


async def test_stop_releases_the_rest_of_the_batch(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    await add_due(sessions, patients=100, per_patient=1)
    d = dispatcher(sessions, RecordingSender(), postgres=not is_sqlite(db))  # type: ignore[arg-type]
    d.concurrency = 10

    class StopAfterFirst(RecordingSender):
        async def send(self, delivery: Delivery) -> Outcome:
            d.stop()
            return await super().send(delivery)

    sender = StopAfterFirst()
    d.sender = sender
    report = await d.tick()
    assert report.sent == 10  # the chunk in flight finished
    assert report.released == 90
    async with sessions() as session:
        statuses = Counter((await session.scalars(select(Reminder.status))).all())
    assert statuses == {"sent": 10, "planned": 90}  # as they were: none was tried
    assert (await d.tick()).claimed == 0  # a stopped dispatcher claims nothing


class FakeTime:
    """Monotonic time that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_rate_limiter_spaces_sends_overall_and_per_chat() -> None:
    clock = FakeTime()
    limiter = RateLimiter(
        per_second=30,
        chat_interval=1.0,
        margin=1.0,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    for chat in range(60):
        await limiter.acquire(chat)
    assert clock.now == pytest.approx(59 / 30)  # one every 1/30 s
    await limiter.acquire(7)  # chat 7's second has passed: only the overall spacing
    assert clock.now == pytest.approx(2.0)
    await limiter.acquire(7)  # again at once: a full second after the previous one
    assert clock.now == pytest.approx(3.0)
    # The second spent waiting for chat 7 is made up for (CATCH_UP): chat 9 at once.
    await asyncio.gather(limiter.acquire(9), limiter.acquire(9), limiter.acquire(9))
    assert clock.now == pytest.approx(3 + 2)  # one chat: a second apart


async def test_rate_limiter_margin_keeps_below_the_limit() -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, monotonic=clock.monotonic, sleep=clock.sleep)
    for chat in range(301):
        await limiter.acquire(chat)
    rate = 300 / clock.now
    assert 0.95 * 30 <= rate < 30


async def test_rate_limiter_keeps_a_late_send_from_crowding_the_next_second() -> None:
    """A send held up past its slot (a pause of the process) would make 31 sends within one
    second together with those that follow on time: ``hold`` waits instead."""
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    slots = [n / 30 for n in range(90)]
    # Send 0 is held up until 0.5 s; the others reach ``hold`` at their slots.
    arrivals = sorted([(0.5, 0)] + [(slot, n) for n, slot in enumerate(slots) if n])
    started = []
    for arrival, n in arrivals:
        clock.now = max(clock.now, arrival)
        await limiter.hold(slots[n], 0.0)
        started.append(clock.now)
    busiest = max(sum(1 for t in started if s <= t < s + 1) for s in started)
    assert busiest == 30
    assert started[-1] < slots[-1] + 0.1  # a short delay, not a stall


async def test_a_send_counts_against_the_window_until_its_answer() -> None:
    """A request slow to go out or to be answered may reach Telegram at any moment before
    its answer: it counts until a second after that, so no second at Telegram holds more
    than the rate, however late the requests went out."""
    clock = FakeTime()
    limiter = RateLimiter(
        per_second=2, chat_interval=None, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep
    )
    for _ in range(2):
        async with limiter.sending(clock.now, 0.0):
            clock.now += 0.75  # answered 0.75 s after it started
    async with limiter.sending(clock.now, 0.0):
        pass
    assert clock.now == pytest.approx(0.75 + 1.0)  # a second after the first answer


async def test_a_chat_waits_a_second_after_its_previous_message_was_answered() -> None:
    clock = FakeTime()
    limiter = RateLimiter(
        per_second=None, chat_interval=1.0, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep
    )
    async with limiter.sending(await limiter.acquire(7), 0.0, 7):
        clock.now += 0.5  # the request took half a second
    await limiter.acquire(7)
    assert clock.now == pytest.approx(0.5 + 1.0)


async def test_rate_limiter_spaces_group_messages_and_fractional_rates() -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    await limiter.acquire(-100)
    await limiter.acquire(-100)  # a group: about 20 a minute
    assert clock.now == pytest.approx(3.0)

    slow = RateLimiter(per_second=0.5, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    start = clock.now
    await slow.hold(start, 0.0)
    await slow.hold(start, 0.0)  # a send held up past its slot still keeps 2 s away
    assert clock.now == pytest.approx(start + 2.0)


async def test_a_429_holds_its_chat_and_a_flood_holds_the_bot_for_retry_after_only() -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    assert limiter.throttled(7, 5.0) is False  # one chat refused: only it waits
    await limiter.acquire(8)
    assert clock.now == pytest.approx(0.0)
    await limiter.acquire(7)
    assert clock.now == pytest.approx(5.0)

    assert limiter.throttled(1, 10.0) is False
    assert limiter.throttled(2, 10.0) is False
    assert limiter.throttled(3, 10.0) is True  # three chats at once: Telegram's flood wait
    start = clock.now
    await limiter.acquire(99)  # everybody waits: a chat never throttled, an alert's group
    assert clock.now == pytest.approx(start + 10.0)
    await limiter.acquire(98)
    assert clock.now == pytest.approx(start + 10.0 + 1 / 30)  # and no longer than that


async def test_a_reclaimed_claim_goes_before_reminders_queued_after_it(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    """A crash must not send its stranded reminders to the back of a backlog due at the
    same instant (on PostgreSQL, ties of the due time once came out in any order)."""
    await add_due(sessions, patients=300, per_patient=1)  # all due at one instant
    postgres = not is_sqlite(db)  # type: ignore[arg-type]

    async def claim(process_id: int) -> list[int]:
        async with sessions.begin() as session:
            report = await outbox.claim_due(
                session,
                now=NOW,
                limit=20,
                process_id=process_id,
                lease=timedelta(minutes=5),
                late_window=WINDOW,
                postgres=postgres,
            )
        return [claimed.id for claimed in report.claimed]

    first = await claim(1)
    async with sessions.begin() as session:
        assert await outbox.reclaim(session, process_ids=[1], now=NOW + timedelta(seconds=20)) == 20
    assert await claim(2) == first  # the same reminders, before the 280 others
    async with sessions() as session:
        queue = list(
            await session.scalars(
                select(Reminder.id).where(Reminder.status == "planned").order_by(Reminder.id)
            )
        )
    assert await claim(3) == queue[:20]  # then the rest, first queued first


async def test_drain_sends_a_backlog_batch_after_batch_and_runs_once_at_a_time(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    await add_due(sessions, patients=45, per_patient=1)
    sender = RecordingSender()
    d = dispatcher(sessions, sender, postgres=not is_sqlite(db), batch_size=20)  # type: ignore[arg-type]
    claimed = []
    async for report in d.drain():
        claimed.append(report.claimed)
        # The job fired again meanwhile: that one does nothing.
        assert [r async for r in d.drain()] == []
    assert claimed == [20, 20, 5]  # stops at the first batch that is not full
    assert len(sender.sent) == 45
    assert [r.claimed async for r in d.drain()] == [0]  # the next tick job runs again


async def test_replicas_share_the_rate_and_windows_add_up_to_it() -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, monotonic=clock.monotonic, sleep=clock.sleep)
    limiter.set_share(3)
    assert (limiter.per_second, limiter.share) == (30, 10)
    for chat in range(301):
        await limiter.acquire(chat)
    assert 0.9 * 10 <= 300 / clock.now < 10  # a wider margin than alone
    limiter.set_share(1)  # the others stopped: the whole rate again
    start = clock.now
    for chat in range(1000, 1301):
        await limiter.acquire(chat)
    assert 0.95 * 30 <= 300 / (clock.now - start) < 30

    # Four replicas: 7.5/s each. Sends held up and then let go together start at most 7
    # within any second, so that four such replicas never exceed 30.
    quarter = RateLimiter(per_second=30, monotonic=clock.monotonic, sleep=clock.sleep)
    quarter.set_share(4)
    started = []
    for _ in range(40):
        await quarter.hold(clock.now, 0.0)
        started.append(clock.now)
    assert max(sum(1 for t in started if s <= t < s + 1) for s in started) == 7


async def test_a_paused_limiter_starts_no_send_until_the_pause_ends() -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second=30, margin=1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    slot = await limiter.acquire(1)  # taken before the pause
    limiter.pause(6.0)
    await limiter.hold(slot, 0.0)
    assert clock.now == pytest.approx(6.0)
    await limiter.acquire(2)
    await limiter.acquire(3)  # then one every 1/30 s again
    assert clock.now == pytest.approx(6.0 + 1 / 30)


async def test_beats_share_the_rate_among_the_live_processes(
    sessions: async_sessionmaker[AsyncSession], db: object
) -> None:
    postgres = not is_sqlite(db)  # type: ignore[arg-type]
    clock = FixedClock()
    times = [FakeTime() for _ in range(3)]
    limiters = [RateLimiter(per_second=30, monotonic=t.monotonic, sleep=t.sleep) for t in times]
    replicas = []
    for limiter in limiters:
        replica = dispatcher(sessions, RecordingSender(), postgres=postgres)
        replica.clock = clock
        replica.limiter = limiter
        replicas.append(replica)
    first, second, third = replicas
    await first.beat()
    assert limiters[0].share == 30  # alone: the whole rate
    await limiters[0].acquire(1)
    assert times[0].now == 0.0  # and at once
    await second.beat()
    assert limiters[1].share == 15
    # It joined one that still sends 30/s: nothing until that one has beaten again.
    await limiters[1].acquire(1)
    assert times[1].now == pytest.approx(JOIN_WAIT)
    await first.beat()
    assert limiters[0].share == 15
    await third.beat()
    await first.beat()
    assert [limiter.share for limiter in limiters] == [10, 15, 10]  # the second beats later
    await second.beat()
    assert limiters[1].share == 10
    assert (first._batch(), third._batch()) == (67, 67)  # a third of 200 each
    # The third stops beating (killed): once it is found stopped, its share is the others'.
    while clock.current <= NOW + DEAD_AFTER:
        clock.current += BEAT_EVERY
        assert limiters[0].share == 10  # until then it may be alive, only slow
        await first.beat()
        await second.beat()
    assert [limiters[0].share, limiters[1].share] == [15, 15]
    # It comes back: found stopped, it registers again, and waits for the others again.
    await third.beat()
    assert limiters[2].share == 10
    start = times[2].now
    await limiters[2].acquire(5)
    assert times[2].now == pytest.approx(start + JOIN_WAIT)
    # A process that signs off leaves its share at the others' next beat.
    await third.close()
    await first.beat()
    assert limiters[0].share == 15


async def test_a_tick_ends_with_no_still_ours_check_holding_a_connection(
    sessions: async_sessionmaker[AsyncSession], db: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check begun in the background (half-way through ``recheck_after``) that is still
    reading when the last send is done is waited for: its connection is back in the pool
    when the tick returns, before anyone disposes of the engine."""
    await add_due(sessions, patients=3, per_patient=1)
    slow_checks = 0
    still_ours = outbox.still_ours

    async def slow(session: AsyncSession, claims: list[outbox.Claimed]) -> set[int]:
        nonlocal slow_checks
        slow_checks += 1
        if slow_checks > 1:  # the background one
            await asyncio.sleep(0.3)
        return await still_ours(session, claims)

    class SlowSender(RecordingSender):
        async def send(self, delivery: Delivery) -> Outcome:
            await asyncio.sleep(0.04)
            return await super().send(delivery)

    monkeypatch.setattr(outbox, "still_ours", slow)
    sender = SlowSender()
    d = dispatcher(sessions, sender, postgres=not is_sqlite(db))  # type: ignore[arg-type]
    d.concurrency, d.recheck_after = 1, 0.05
    report = await d.tick()
    assert (report.sent, slow_checks) == (3, 2)
    assert db.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
