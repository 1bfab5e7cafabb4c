"""Coordinator alerts: queued with what raised them, sent and retried by the dispatcher,
on both databases, with in-memory senders."""

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import outbox
from scheduler.alerts import Alert, AlertKind
from scheduler.db import is_sqlite, session_factory
from scheduler.dispatcher import Delivery, Dispatcher, Outcome, Result
from scheduler.models import AlertEvent, CoordinatorAlert, Patient
from scheduler.outbox import queue_alert
from scheduler.policies import RetryBudget
from scheduler.protocol import Kind
from tests.conftest import EngineFactory, team_with_coordinator
from tests.scheduler.test_dispatcher import NOW, WINDOW, FixedClock, RecordingSender, add_due

COORDINATOR = 5151
ALERT_CHAT = -100200300


@dataclass
class ScriptedSender(RecordingSender):
    """Answers alerts with the given outcomes, in turn (the last one from then on)."""

    outcomes: list[Outcome] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        self.tries.append(chat_id)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome.result is Result.SENT:
            self.alerts.append((alert, chat_id))
        return outcome


def make_dispatcher(
    sessions: async_sessionmaker[AsyncSession],
    sender: RecordingSender,
    *,
    postgres: bool = False,
    clock: FixedClock | None = None,
) -> Dispatcher:
    return Dispatcher(
        sessions=sessions,
        sender=sender,
        clock=clock or FixedClock(),
        late_window=WINDOW,
        postgres=postgres,
        alert_chat_id=ALERT_CHAT,
    )


async def raise_alerts(
    sessions: async_sessionmaker[AsyncSession], count: int, *, alert_chat_id: int | None = None
) -> list[int]:
    """``count`` patients of COORDINATOR, each with a symptoms alert queued."""
    await add_due(sessions, patients=count, per_patient=0)
    await team_with_coordinator(sessions, COORDINATOR)
    async with sessions.begin() as session:
        patients = (await session.scalars(select(Patient).order_by(Patient.id))).all()
        for patient in patients:
            patient.coordinator_id = COORDINATOR
            await queue_alert(
                session,
                Alert(
                    AlertKind.SYMPTOMS,
                    patient.id,
                    patient.label,
                    COORDINATOR,
                    patient.team_id,
                    Kind.LABS_MONTHLY,
                    date(2026, 3, 1),
                ),
                alert_chat_id=alert_chat_id,
                now=NOW,
            )
    return [p.id for p in patients]


async def alert_rows(sessions: async_sessionmaker[AsyncSession]) -> list[CoordinatorAlert]:
    async with sessions() as session:
        return list(await session.scalars(select(CoordinatorAlert).order_by(CoordinatorAlert.id)))


async def test_each_recipient_gets_its_own_alert_with_the_label_of_sending_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    [patient_id] = await raise_alerts(sessions, 1, alert_chat_id=ALERT_CHAT)
    async with sessions.begin() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        patient.label = "MS-RENAMED"
    sender = RecordingSender()

    done = await make_dispatcher(sessions, sender).send_alerts()

    assert done == {"sent": 2}
    assert sorted(chat for _, chat in sender.alerts) == [ALERT_CHAT, COORDINATOR]
    assert {alert.label for alert, _ in sender.alerts} == {"MS-RENAMED"}
    assert {(a.kind, a.reminder_kind, a.day) for a, _ in sender.alerts} == {
        (AlertKind.SYMPTOMS, Kind.LABS_MONTHLY, date(2026, 3, 1))
    }
    rows = await alert_rows(sessions)
    assert [(r.status, r.attempts, r.ready_at, r.sent_at) for r in rows] == [
        ("sent", 1, None, NOW)
    ] * 2
    assert await make_dispatcher(sessions, sender).send_alerts() == {}  # nothing twice


async def test_an_alert_without_recipient_is_logged_and_recorded(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """A team that lost every coordinator, no alert chat: nobody to tell. The alert is kept
    as failed, without a chat, for doctor and /healthz, and logged as an error."""
    await add_due(sessions, patients=1, per_patient=0)
    async with sessions.begin() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        with caplog.at_level(logging.WARNING, logger="scheduler.outbox"):
            queued = await queue_alert(
                session,
                Alert(AlertKind.WITHDRAWN, patient.id, patient.label, None, patient.team_id),
                alert_chat_id=None,
                now=NOW,
            )
        assert await outbox.unrouted_alerts(session) == 1
    assert queued == []
    [row] = await alert_rows(sessions)
    assert (row.chat_id, row.status, row.ready_at) == (None, "failed", None)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", f"alert withdrawn for patient {patient.id}: {outbox.NO_RECIPIENT}")
    ]


async def test_failures_are_retried_with_backoff_until_delivered(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await raise_alerts(sessions, 1)
    clock = FixedClock()
    down = Outcome(Result.TRANSIENT, description="timed out")
    sender = ScriptedSender(outcomes=[down, down, Outcome.sent(77)])
    d = make_dispatcher(sessions, sender, clock=clock)
    d.alert_chat_id = None

    assert await d.send_alerts() == {"retrying": 1}
    [row] = await alert_rows(sessions)
    assert (row.status, row.attempts, row.ready_at) == ("retrying", 1, NOW + timedelta(seconds=30))
    assert row.detail == "timed out"

    clock.current = NOW + timedelta(seconds=29)
    assert await d.send_alerts() == {}  # not before its time
    clock.current = NOW + timedelta(seconds=30)
    assert await d.send_alerts() == {"retrying": 1}
    [row] = await alert_rows(sessions)
    assert row.ready_at == clock.current + timedelta(seconds=60)

    clock.current += timedelta(seconds=60)
    assert await d.send_alerts() == {"sent": 1}
    [row] = await alert_rows(sessions)
    assert (row.status, row.attempts, row.telegram_message_id) == ("sent", 3, 77)
    assert row.detail is None
    assert sender.tries == [COORDINATOR] * 3
    assert d.stats.alerts == Counter({"retrying": 2, "sent": 1})


async def test_attempts_are_bounded_and_a_blocked_recipient_fails_at_once(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    [patient_id] = await raise_alerts(sessions, 1, alert_chat_id=ALERT_CHAT)
    clock = FixedClock()

    class Sender(RecordingSender):
        async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
            if chat_id == COORDINATOR:
                return Outcome(Result.BLOCKED, error_code=403, description="bot was blocked")
            return Outcome(Result.TRANSIENT, error_code=502, description="Bad Gateway")

    d = make_dispatcher(sessions, Sender(), clock=clock)
    d.alert_budget = RetryBudget(max_attempts=3)
    with caplog.at_level(logging.ERROR, logger="scheduler.dispatcher"):
        for _ in range(5):
            await d.send_alerts()
            clock.current += timedelta(hours=1)
    by_chat = {row.chat_id: row for row in await alert_rows(sessions)}
    assert (by_chat[COORDINATOR].status, by_chat[COORDINATOR].attempts) == ("failed", 1)
    assert (by_chat[ALERT_CHAT].status, by_chat[ALERT_CHAT].attempts) == ("failed", 3)
    assert by_chat[ALERT_CHAT].error_code == 502
    assert all(row.ready_at is None for row in by_chat.values())
    assert [r.getMessage() for r in caplog.records] == [
        f"alert symptoms for patient {patient_id} could not be delivered to a recipient "
        f"after {n} attempts: {code}"
        for n, code in ((1, 403), (3, 502))
    ]
    assert "P0" not in caplog.text  # no label in the logs


async def test_a_429_delays_only_that_alert_and_counts_as_an_attempt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await raise_alerts(sessions, 2)
    clock = FixedClock()
    limited = Outcome(Result.RATE_LIMITED, error_code=429, retry_after=timedelta(seconds=12))
    sender = ScriptedSender(outcomes=[limited, Outcome.sent(1)])
    d = make_dispatcher(sessions, sender, clock=clock)

    # A busy group chat answers 429 for itself: the reminders must not wait for it.
    assert await d.send_alerts() == {"retrying": 1, "sent": 1}
    rows = await alert_rows(sessions)
    assert [(r.status, r.attempts) for r in rows] == [("retrying", 1), ("sent", 1)]
    assert rows[0].ready_at == NOW + timedelta(seconds=12)

    clock.current = NOW + timedelta(seconds=11)
    assert await d.send_alerts() == {}
    clock.current = NOW + timedelta(seconds=12)
    assert await d.send_alerts() == {"sent": 1}
    assert [(r.status, r.attempts) for r in await alert_rows(sessions)] == [
        ("sent", 2),
        ("sent", 1),
    ]


async def test_stopping_releases_the_claimed_alerts_not_sent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await raise_alerts(sessions, 3)
    d = make_dispatcher(sessions, RecordingSender())

    class StopAfterFirst(RecordingSender):
        async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
            d.stop()
            return await super().alert(alert, chat_id)

    d.sender = StopAfterFirst()
    assert await d.send_alerts() == {"sent": 1}
    rows = await alert_rows(sessions)
    assert [(r.status, r.attempts, r.ready_at) for r in rows] == [
        ("sent", 1, None),
        ("retrying", 0, NOW),
        ("retrying", 0, NOW),
    ]
    assert rows[1].detail == "released before sending"


async def test_an_alert_taken_over_after_its_lease_is_not_sent_by_the_first_process(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await raise_alerts(sessions, 3)
    clock = FixedClock()
    other = RecordingSender()
    second = make_dispatcher(sessions, other, clock=clock)

    class Stuck(RecordingSender):
        async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
            if not self.alerts:  # the first send hangs past the lease...
                clock.current = NOW + timedelta(minutes=6)
                await second.send_alerts()  # ...and another process takes everything over
            return await super().alert(alert, chat_id)

    first = Stuck()
    await make_dispatcher(sessions, first, clock=clock).send_alerts()
    assert len(first.alerts) == 1  # only the one already on its way
    assert sorted(a.patient_id for a, _ in other.alerts) == [1, 2, 3]
    assert {r.status for r in await alert_rows(sessions)} == {"sent"}


async def test_an_alert_whose_sends_never_end_is_given_up(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    [patient_id] = await raise_alerts(sessions, 1)
    async with sessions.begin() as session:
        row = await session.scalar(select(CoordinatorAlert))
        assert row is not None
        row.status, row.attempts = "sending", 12  # the process died in each attempt
    sender = RecordingSender()
    with caplog.at_level(logging.ERROR, logger="scheduler.dispatcher"):
        assert await make_dispatcher(sessions, sender).send_alerts() == {"failed": 1}
    assert sender.alerts == []
    [row] = await alert_rows(sessions)
    assert (row.status, row.ready_at) == ("failed", None)
    assert caplog.messages == [f"alert symptoms for patient {patient_id} given up"]


async def test_an_alert_claimed_by_a_crashed_process_is_taken_back_within_seconds(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await raise_alerts(sessions, 1)
    clock = FixedClock()

    class Crash(Exception):
        pass

    class Crashing(RecordingSender):
        async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
            raise Crash

    with pytest.raises(Crash):
        await make_dispatcher(sessions, Crashing(), clock=clock).send_alerts()
    sender = RecordingSender()
    d = make_dispatcher(sessions, sender, clock=clock)
    clock.current = NOW + timedelta(seconds=14)  # its heartbeat is still fresh
    assert (await d.tick()).alerts == {}
    clock.current = NOW + timedelta(seconds=16)  # no beat for 15 s: it stopped
    assert (await d.tick()).alerts == {"sent": 1}
    [row] = await alert_rows(sessions)
    assert (row.status, row.attempts) == ("sent", 2)
    async with sessions() as session:
        history = (
            await session.execute(
                select(AlertEvent.status, AlertEvent.detail).order_by(AlertEvent.id)
            )
        ).all()
    assert [status for status, _ in history] == ["queued", "retrying", "sent"]
    assert "claim abandoned" in str(history[1][1])


async def test_two_dispatchers_send_each_alert_once(
    sessions: async_sessionmaker[AsyncSession], open_engine: EngineFactory
) -> None:
    await raise_alerts(sessions, 60, alert_chat_id=ALERT_CHAT)
    engines = [open_engine() for _ in range(2)]
    postgres = not is_sqlite(engines[0])
    senders = [RecordingSender() for _ in engines]
    dispatchers = [
        make_dispatcher(session_factory(engine), sender, postgres=postgres)
        for engine, sender in zip(engines, senders, strict=True)
    ]

    async def drain(d: Dispatcher) -> None:
        while await d.send_alerts():
            pass

    await asyncio.gather(*(drain(d) for d in dispatchers))
    sent = Counter((alert.patient_id, chat) for s in senders for alert, chat in s.alerts)
    assert len(sent) == 120
    assert set(sent.values()) == {1}
    assert {r.status for r in await alert_rows(sessions)} == {"sent"}


async def test_a_reminder_that_fails_queues_its_alert_with_the_outcome(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_due(sessions, patients=1, per_patient=1)
    await team_with_coordinator(sessions, COORDINATOR)
    async with sessions.begin() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        patient.coordinator_id = COORDINATOR

    class Rejecting(RecordingSender):
        async def send(self, delivery: Delivery) -> Outcome:
            return Outcome(Result.REJECTED, error_code=400, description="chat not found")

    sender = Rejecting()
    report = await make_dispatcher(sessions, sender).tick()
    assert report.failed == 1
    assert report.alerts == {"sent": 2}  # sent in the same tick
    assert sorted((a.kind, chat) for a, chat in sender.alerts) == [
        (AlertKind.DELIVERY_FAILED, ALERT_CHAT),
        (AlertKind.DELIVERY_FAILED, COORDINATOR),
    ]


async def test_one_unreachable_alert_however_many_messages_bounced(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_due(sessions, patients=1, per_patient=2)  # two messages, minutes apart
    await team_with_coordinator(sessions, COORDINATOR)
    async with sessions.begin() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        patient.coordinator_id = COORDINATOR

    class Blocked(RecordingSender):
        async def send(self, delivery: Delivery) -> Outcome:
            return Outcome(Result.BLOCKED, error_code=403, description="bot was blocked")

    sender = Blocked()
    report = await make_dispatcher(sessions, sender).tick()
    # The second either bounced too, or found the patient unreachable and was set aside.
    assert report.deliveries == 2
    assert report.failed in {1, 2}
    assert sorted((a.kind, chat) for a, chat in sender.alerts) == [
        (AlertKind.UNREACHABLE, ALERT_CHAT),
        (AlertKind.UNREACHABLE, COORDINATOR),
    ]
