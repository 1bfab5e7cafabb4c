"""Claims of due reminders by several processes: a patient is claimed by one at a time."""

import asyncio
import itertools
import random
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import outbox, store
from scheduler.db import is_sqlite, session_factory
from scheduler.models import Reminder
from scheduler.outbox import Claimed
from scheduler.protocol import Kind
from tests.conftest import EngineFactory
from tests.scheduler.test_dispatcher import NOW, WINDOW, add_due

LEASE = timedelta(minutes=5)


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    process_id: int,
    *,
    limit: int,
    now: datetime = NOW,
    postgres: bool,
) -> list[Claimed]:
    async with sessions.begin() as session:
        report = await outbox.claim_due(
            session,
            now=now,
            limit=limit,
            process_id=process_id,
            lease=LEASE,
            late_window=WINDOW,
            postgres=postgres,
        )
    return report.claimed


async def sent(sessions: async_sessionmaker[AsyncSession], claims: list[Claimed]) -> None:
    async with sessions.begin() as session:
        await outbox.mark_sent(session, [([c], None) for c in claims], now=NOW)


async def holders(sessions: async_sessionmaker[AsyncSession]) -> dict[int, set[int | None]]:
    """Each patient's processes holding claims on their reminders."""
    async with sessions() as session:
        rows = await session.execute(
            select(Reminder.patient_id, Reminder.claimed_by).where(Reminder.status == "sending")
        )
        held: dict[int, set[int | None]] = {}
        for patient_id, process_id in rows:
            held.setdefault(patient_id, set()).add(process_id)
    return held


async def test_a_claim_takes_the_whole_due_backlog_of_its_patients(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    await add_due(sessions, patients=5, per_patient=4)  # each at 4 instants, a minute apart
    postgres = not is_sqlite(db)
    claimed = await claim(sessions, 1, limit=3, postgres=postgres)
    patients = Counter(c.patient_id for c in claimed)
    # The 3 oldest rows are 3 patients' oldest reminders: all 4 of each are taken.
    assert sorted(patients.values()) == [4, 4, 4]
    rest = await claim(sessions, 2, limit=10, postgres=postgres)
    assert Counter(c.patient_id for c in rest) == {p: 4 for p in {c.patient_id for c in rest}}
    assert not {c.patient_id for c in rest} & patients.keys()
    assert len(rest) == 8


async def test_a_patient_another_process_is_sending_to_waits_for_it(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    """A reminder that falls due while another process holds the patient's claims is that
    process's to send: two processes would send to one chat within a second."""
    postgres = not is_sqlite(db)
    await add_due(sessions, patients=2, per_patient=1)
    first = await claim(sessions, 1, limit=1, postgres=postgres)
    [held] = {c.patient_id for c in first}
    later = NOW + timedelta(seconds=30)
    async with sessions.begin() as session:  # the patient's next reminder falls due
        await session.execute(
            insert(Reminder).values(
                patient_id=held,
                kind=Kind.THYROID_QUARTERLY,
                occurrence="q1",
                local_date=later.date(),
                due_at=later,
                status="planned",
                plan_version=1,
                ready_at=later,
                attempts=0,
                created_at=NOW,
            )
        )
    then = later + timedelta(seconds=1)
    other = await claim(sessions, 2, limit=10, now=then, postgres=postgres)
    assert held not in {c.patient_id for c in other}
    assert len(other) == 1  # the other patient's
    mine = await claim(sessions, 1, limit=10, now=then, postgres=postgres)
    assert [(c.patient_id, c.kind) for c in mine] == [(held, Kind.THYROID_QUARTERLY)]
    # Claims whose lease ran out are anyone's: the process may have stopped.
    expired = then + LEASE + timedelta(seconds=1)
    taken = await claim(sessions, 2, limit=10, now=expired, postgres=postgres)
    assert {c.id for c in taken if c.patient_id == held} == {c.id for c in first + mine}


async def test_processes_taking_turns_never_hold_one_patient_together(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    """Time goes on while processes claim and send: a patient's reminders fall due one after
    the other, some while another process holds the patient's earlier ones."""
    postgres = not is_sqlite(db)
    await add_due(sessions, patients=40, per_patient=5)  # due 5, 4, ... 1 minutes before NOW
    pick = random.Random(7)
    held: dict[int, list[Claimed]] = {1: [], 2: [], 3: []}
    now = NOW - timedelta(minutes=5)
    for _ in range(60):
        now += timedelta(seconds=4)
        process = pick.choice(list(held))
        if held[process] and pick.random() < 0.4:  # sends part of what it holds
            done = held[process][: pick.randint(1, len(held[process]))]
            await sent(sessions, done)
            held[process] = held[process][len(done) :]
        else:
            limit = pick.randint(1, 8)
            held[process] += await claim(sessions, process, limit=limit, now=now, postgres=postgres)
        assert all(len(by) == 1 for by in (await holders(sessions)).values())
    for claims in held.values():
        await sent(sessions, claims)
    for process in held:  # whatever is left goes out too
        while claimed := await claim(sessions, process, limit=50, postgres=postgres):
            await sent(sessions, claimed)
    async with sessions() as session:
        statuses = Counter((await session.scalars(select(Reminder.status))).all())
    assert statuses == {"sent": 200}


async def test_processes_claiming_at_once_never_hold_one_patient_together(
    sessions: async_sessionmaker[AsyncSession], open_engine: EngineFactory
) -> None:
    """Several processes claim and send side by side, each on its own connections (on
    PostgreSQL at the same time, on SQLite in turns), while time goes on; after each claim
    the database shows each patient's claims held by one process."""
    await add_due(sessions, patients=150, per_patient=4)
    engines = [open_engine() for _ in range(3)]
    postgres = not is_sqlite(engines[0])
    shared: list[int] = []
    claimed_by: Counter[int] = Counter()
    claims_made = itertools.count()

    def now() -> datetime:
        """Later at every claim: the patients' reminders fall due one after the other."""
        return min(NOW, NOW - timedelta(minutes=4) + timedelta(seconds=5 * next(claims_made)))

    async def work(process: int, engine: AsyncEngine) -> None:
        own = session_factory(engine)
        pick = random.Random(process)
        idle = 0
        while idle < 3:
            at = now()
            claims = await claim(own, process, limit=pick.randint(3, 12), now=at, postgres=postgres)
            if not claims:  # all due is held by the others, or nothing is left
                idle += at >= NOW
                await asyncio.sleep(0.002)
                continue
            idle = 0
            claimed_by[process] += len(claims)
            shared.extend(p for p, by in (await holders(own)).items() if len(by) > 1)
            await asyncio.sleep(0.002)  # "sending", while the others claim
            await sent(own, claims)

    await asyncio.gather(*(work(n + 1, engine) for n, engine in enumerate(engines)))
    assert shared == []
    while rest := await claim(sessions, 9, limit=600, postgres=postgres):  # any left over
        claimed_by[9] += len(rest)
        await sent(sessions, rest)
    assert sum(claimed_by.values()) == 600  # each reminder claimed once
    if postgres:
        assert len(claimed_by.keys() - {9}) == 3  # side by side, not one after the other


async def test_a_claim_under_way_keeps_its_patients_from_another(
    db: AsyncEngine, open_engine: EngineFactory
) -> None:
    """PostgreSQL: while one claim's transaction is open, another skips its patients (their
    rows are locked), even reminders of them the first claim did not lock; once the first
    commits, the second look finds them held (``outbox.held_elsewhere``)."""
    if is_sqlite(db):
        pytest.skip("SQLite has one writer at a time: claims cannot overlap")
    sessions = session_factory(db)
    await add_due(sessions, patients=4, per_patient=2)
    other = session_factory(open_engine())
    async with sessions.begin() as session:
        first = await outbox.claim_due(
            session,
            now=NOW - timedelta(seconds=90),  # only each patient's older reminder is due
            limit=2,
            process_id=1,
            lease=LEASE,
            late_window=WINDOW,
            postgres=True,
        )
        mine = {c.patient_id for c in first.claimed}
        assert len(mine) == 2
        meanwhile = await claim(other, 2, limit=10, postgres=True)
        assert len(meanwhile) == 4
        assert not {c.patient_id for c in meanwhile} & mine
    after = await claim(other, 2, limit=10, postgres=True)
    assert after == []  # the first process's patients' newer reminders wait for it
    assert {c.patient_id for c in await claim(sessions, 1, limit=10, postgres=True)} == mine


async def test_a_claim_going_back_to_the_queue_stays_out_of_it_once_the_patient_left(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    """One message of a patient finds them gone (blocked: unreachable) while others of
    theirs are in flight: those, retried, released or taken back, stay out of the queue
    until the patient is back."""
    await add_due(sessions, patients=1, per_patient=3)
    postgres = not is_sqlite(db)
    first, second, third = await claim(sessions, 1, limit=3, postgres=postgres)
    async with sessions.begin() as session:
        patient_id = first.patient_id
        assert await store.mark_unreachable(session, patient_id=patient_id, now=NOW)
        await outbox.retry(
            session, [first], at=NOW + timedelta(minutes=1), now=NOW, detail="5xx", code=500
        )
        await outbox.release(session, [second], now=NOW)
        await session.execute(update(Reminder).where(Reminder.id == third.id).values(claimed_by=1))
        await outbox.reclaim(session, process_ids=[1], now=NOW)
    async with sessions() as session:
        rows = (await session.execute(select(Reminder.status, Reminder.ready_at))).all()
    assert {status for status, _ in rows} <= {"retrying", "planned"}
    assert [ready_at for _, ready_at in rows] == [None, None, None]
    # Back: every one of them waits for its time again.
    async with sessions.begin() as session:
        await store.resume(session, patient_id=patient_id, actor="test", now=NOW)
    async with sessions() as session:
        assert None not in set(await session.scalars(select(Reminder.ready_at)))
