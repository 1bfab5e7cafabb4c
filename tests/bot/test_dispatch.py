"""Reminders from the outbox to the patient's chat, through the fake Bot API server.

The clock is the harness's: the test moves it and runs the dispatcher tick itself.
"""

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.texts import KIND_TITLES
from scheduler import outbox, store
from scheduler.alerts import Alert
from scheduler.dispatcher import Delivery, Dispatcher, Outcome, RateLimiter
from scheduler.models import DeliveryEvent, Patient, Reminder
from scheduler.planner import plan
from scheduler.statuses import PatientStatus
from scheduler.validation import build_profile
from tests.bot.conftest import Harness
from tests.fake_bot_api import FakeUser, Fault

ANNA = FakeUser(id=4242, first_name="Anna", language_code="en")
COORDINATOR = FakeUser(id=5151, first_name="Cora", language_code="en")
BEN = FakeUser(id=4343, first_name="Ben", language_code="en")
START = datetime(2025, 12, 29, 7, tzinfo=UTC)  # an hour before the first reminder


async def history(harness: Harness, kind: str, occurrence: str) -> list[tuple[object, ...]]:
    """(status, error code, detail) of each history row; a row counted n times is there n
    times."""
    async with harness.sessions() as session:
        reminder = await session.scalar(
            select(Reminder).where(Reminder.kind == kind, Reminder.occurrence == occurrence)
        )
        assert reminder is not None
        rows = await session.execute(
            select(
                DeliveryEvent.status,
                DeliveryEvent.error_code,
                DeliveryEvent.detail,
                DeliveryEvent.repeats,
            )
            .where(DeliveryEvent.reminder_id == reminder.id)
            .order_by(DeliveryEvent.id)
        )
        return [(status, code, detail) for status, code, detail, n in rows.all() for _ in range(n)]


def sends(harness: Harness, chat_id: int) -> int:
    return len(harness.api.calls_to("sendMessage", chat_id=chat_id))


async def consent_anna(harness: Harness, *, cbp: bool = False) -> None:
    harness.clock.current = START
    await harness.consented(ANNA, cbp=cbp, coordinator_id=COORDINATOR.id)


async def test_each_kind_arrives_at_its_local_instant_bundled(harness: Harness) -> None:
    await consent_anna(harness, cbp=True)
    profile, _ = build_profile(
        courses=[(date(2026, 1, 5), None)], timezone="Europe/Berlin", cbp=True
    )
    by_instant: dict[datetime, list[str]] = defaultdict(list)
    for item in plan(profile):
        if START < item.due < datetime(2026, 5, 10, tzinfo=UTC):
            by_instant[item.due].append(KIND_TITLES[item.kind])
    assert len(by_instant) == 20
    seen = len(harness.api.messages(ANNA.id))
    for due, titles in sorted(by_instant.items()):
        harness.clock.current = due - timedelta(minutes=1)
        await harness.tick()
        assert len(harness.api.messages(ANNA.id)) == seen, f"sent early for {due}"
        harness.clock.current = due
        report = await harness.tick()
        assert report.deliveries == 1, due
        messages = harness.api.messages(ANNA.id)
        assert len(messages) == seen + 1, due
        text = messages[-1].text
        for title in titles:
            assert title in text, (due, title)
        assert text.count("This is an automated reminder.") == 1
        seen += 1

    april = harness.api.messages(ANNA.id)
    tests = next(m for m in april if "Thyroid blood test" in m.text)
    assert "Monthly blood and urine tests" in tests.text
    assert "Contraception" in tests.text
    assert [b.text for b in tests.buttons] == ["Done", "Remind me tomorrow", "I have symptoms"]
    warning = next(m for m in april if "After your infusion" in m.text)
    assert [b.text for b in warning.buttons] == ["I'm OK", "I have symptoms"]
    # Titles in bold: sent as HTML, shown as the plain text above.
    assert tests.parse_mode == "HTML"
    assert tests.raw_text is not None
    assert "<b>Thyroid blood test</b>" in tests.raw_text


async def test_a_429_delays_only_that_chat(harness: Harness) -> None:
    await consent_anna(harness)
    await harness.consented(BEN, "MS-002", coordinator_id=COORDINATOR.id)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.retry_after(5), chat_id=ANNA.id, times=1)
    before = sends(harness, ANNA.id)
    report = await harness.tick()
    assert (report.retrying, report.sent) == (1, 1)  # Ben's went out meanwhile
    assert sends(harness, ANNA.id) == before + 1  # the refused attempt

    harness.clock.advance(timedelta(seconds=4))
    await harness.tick()
    assert sends(harness, ANNA.id) == before + 1  # nothing before retry_after

    harness.clock.advance(timedelta(seconds=1))
    report = await harness.tick()
    assert report.sent == 1
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("retrying", 429, "Flood control exceeded. Retry in 0:00:05"),
        ("sent", None, None),
    ]


async def test_a_chat_that_keeps_answering_429_uses_its_budget_in_one_counted_row(
    harness: Harness,
) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.retry_after(5), chat_id=ANNA.id)
    for _ in range(10):
        await harness.tick()
        harness.clock.advance(timedelta(hours=1))
    events = await history(harness, "course_upcoming", "c1-7d")
    retry = ("retrying", 429, "Flood control exceeded. Retry in 0:00:05")
    assert events[:-1] == [retry] * 7  # seven tries, one row counting them
    assert events[-1][:2] == ("failed", 429)
    assert str(events[-1][2]).startswith("gave up after 8 attempts")
    async with harness.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(DeliveryEvent))
    assert rows == 2


async def test_server_errors_back_off_then_succeed(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.server_error(), chat_id=ANNA.id, times=2)
    assert (await harness.tick()).retrying == 1
    harness.clock.advance(timedelta(seconds=29))
    assert (await harness.tick()).claimed == 0  # backing off for 30 s
    harness.clock.advance(timedelta(seconds=1))
    assert (await harness.tick()).retrying == 1
    harness.clock.advance(timedelta(seconds=60))  # then 60 s
    assert (await harness.tick()).sent == 1
    events = await history(harness, "course_upcoming", "c1-7d")
    assert [e[0] for e in events] == ["retrying", "retrying", "sent"]
    assert events[0][2] == "Internal Server Error"


async def test_attempts_are_bounded(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.server_error(), chat_id=ANNA.id)
    for _ in range(8):
        await harness.tick()
        harness.clock.advance(timedelta(hours=1))
    events = await history(harness, "course_upcoming", "c1-7d")
    assert [e[0] for e in events] == ["retrying"] * 7 + ["failed"]
    assert str(events[-1][2]).startswith("gave up after 8 attempts")
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert "could not be delivered" in alert.text


@pytest.mark.parametrize("request_timeout", [1.0])
async def test_a_timeout_is_retried_after_telegram_would_have_answered(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.slow(1.5), chat_id=ANNA.id, times=1)
    assert (await harness.tick()).retrying == 1
    harness.clock.advance(timedelta(seconds=30))
    assert (await harness.tick()).claimed == 0  # not while the first may still arrive
    harness.clock.advance(timedelta(seconds=90))
    assert (await harness.tick()).sent == 1
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("retrying", None, "timed out, the message may have arrived: no answer in time"),
        ("sent", None, None),
    ]
    # Telegram had accepted the first, slow request: the one duplicate the design allows,
    # and the history says it may have happened.
    assert len(harness.api.messages(ANNA.id)) - 2 == 2


async def test_blocked_patient_becomes_unreachable_until_start(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.blocked(), chat_id=ANNA.id, times=1)
    assert (await harness.tick()).failed == 1
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("failed", 403, "Forbidden: bot was blocked by the user"),
    ]
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert "Patient MS-001 cannot be reached" in alert.text
    async with harness.sessions() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        assert patient.status == PatientStatus.UNREACHABLE
        queued = await session.scalars(select(Reminder).where(Reminder.ready_at.is_not(None)))
        assert list(queued) == []
    harness.clock.current = datetime(2026, 1, 4, 8, tzinfo=UTC)
    assert (await harness.tick()).claimed == 0

    [back] = await harness.say(ANNA, "/start")
    assert back.text == "Welcome back. Your reminders start again."
    assert (await harness.tick()).sent == 1  # the day-before reminder, due now


async def test_chat_not_found_fails_and_alerts(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.chat_not_found(), chat_id=ANNA.id, times=1)
    assert (await harness.tick()).failed == 1
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("failed", 400, "Chat not found"),
    ]
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert "could not be delivered" in alert.text
    assert "/deliveries MS-001" in alert.text


class Crash(Exception):
    """The process dies between claiming a reminder and sending it."""


class CrashingSender:
    def pages(self, delivery: Delivery) -> list[Delivery]:
        return [delivery]

    async def send(self, delivery: Delivery) -> Outcome:
        raise Crash

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        raise AssertionError("no alert expected")


async def test_a_crashed_process_claim_is_sent_once_within_seconds(harness: Harness) -> None:
    await consent_anna(harness)
    harness.clock.current = datetime(2025, 12, 29, 8, tzinfo=UTC)
    crashed = harness.app.bot_data.dispatcher
    assert crashed is not None
    sender = crashed.sender
    survivor = Dispatcher(  # another process on the same database
        sessions=crashed.sessions,
        sender=sender,
        clock=crashed.clock,
        late_window=crashed.late_window,
    )
    crashed.sender = CrashingSender()
    with pytest.raises(Crash):
        await crashed.tick()
    before = sends(harness, ANNA.id)

    harness.clock.advance(timedelta(seconds=10))
    assert (await survivor.tick()).claimed == 0  # its heartbeat is 10 s old: alive
    harness.clock.advance(timedelta(seconds=6))
    report = await survivor.tick()
    assert (report.reclaimed, report.sent) == (1, 1)
    harness.clock.advance(timedelta(minutes=10))
    assert (await survivor.tick()).claimed == 0
    assert sends(harness, ANNA.id) == before + 1
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("retrying", None, outbox.ABANDONED),
        ("sent", None, None),
    ]
    crashed.sender = sender


async def test_restart_after_two_days_sends_recent_and_expires_old(harness: Harness) -> None:
    await consent_anna(harness)
    # Down from 2025-12-29 07:00 until 2026-01-06 09:00 UTC.
    harness.clock.current = datetime(2026, 1, 6, 9, tzinfo=UTC)
    report = await harness.tick()
    assert report.expired == 1  # the 7-days-before reminder, 8 days late
    assert await history(harness, "course_upcoming", "c1-7d") == [
        ("expired", None, "more than 72 h late, not sent"),
    ]
    # Within 72 hours: the day-before reminder, the first prophylaxis, the first warning.
    assert report.sent == 3
    texts = [m.text for m in harness.api.messages(ANNA.id)[-3:]]
    assert sum("After your infusion" in t for t in texts) == 1
    assert sum("Treatment course coming up" in t for t in texts) == 1
    assert (await harness.tick()).claimed == 0
    harness.clock.advance(timedelta(hours=1))
    assert (await harness.tick()).claimed == 0


async def test_withdrawal_while_a_batch_is_in_flight(harness: Harness) -> None:
    await consent_anna(harness)
    dispatcher = harness.app.bot_data.dispatcher
    assert dispatcher is not None
    # Three overdue messages for Anna in one batch, 0.6 s apart (her per-chat limit): time
    # for the withdrawal to commit (SQLite may make it wait ~0.2 s for the write lock that
    # the first message's outcome holds) before the second one's check.
    dispatcher.limiter = RateLimiter(per_second=None, chat_interval=0.6, margin=1.0)
    harness.clock.current = datetime(2026, 1, 5, 17, 30, tzinfo=UTC)
    harness.api.inject("sendMessage", Fault.slow(0.05), chat_id=ANNA.id, times=1)
    before = sends(harness, ANNA.id)

    async def withdraw_after_first_send() -> None:
        await harness.api.wait_for("sendMessage", chat_id=ANNA.id, after=mark, done=False)
        async with harness.sessions.begin() as session:
            patient = await store.patient_by_chat(session, chat_id=ANNA.id)
            assert patient is not None
            await store.withdraw(
                session, patient_id=patient.id, actor="patient", now=harness.clock.now()
            )

    mark = harness.api.mark()
    report, _ = await asyncio.gather(harness.tick(), withdraw_after_first_send())
    assert report.deliveries == 3
    assert sends(harness, ANNA.id) == before + 1  # nothing after the withdrawal committed
    async with harness.sessions() as session:
        statuses = {r.status for r in await session.scalars(select(Reminder))}
    assert "sending" not in statuses
    assert "planned" not in statuses


async def test_course_due_reaches_patient_and_coordinator(harness: Harness) -> None:
    await consent_anna(harness)  # one course only: course 2 is due a year later
    harness.clock.current = datetime(2026, 12, 6, 8, tzinfo=UTC)  # 09:00 in Berlin
    await harness.tick()
    assert "Next treatment course due" in harness.api.messages(ANNA.id)[-1].text
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert alert.text == (
        "Patient MS-001: the next treatment course is due around January 5, 2027."
    )


async def test_a_bundle_whose_first_part_is_not_a_test_carries_and_honours_the_test_buttons(
    harness: Harness,
) -> None:
    """Courses on 2026-01-05 and 2027-01-05: at 09:00 on 2027-01-05 one message holds the
    anti-herpes reminder, the monthly tests, the thyroid test and the yearly screening."""
    harness.clock.current = START
    await harness.consented(
        ANNA,
        coordinator_id=COORDINATOR.id,
        courses=[(date(2026, 1, 5), None), (date(2027, 1, 5), 3)],
    )
    harness.clock.current = datetime(2027, 1, 5, 8, tzinfo=UTC)
    await harness.tick()
    [bundle] = [m for m in harness.api.messages(ANNA.id) if "Thyroid blood test" in (m.text or "")]
    text = bundle.text or ""
    titles = [
        "Anti-herpes medicine",
        "Monthly blood and urine tests",
        "Thyroid blood test",
        "Yearly screening",
    ]
    assert [text.index(title) for title in titles] == sorted(text.index(title) for title in titles)
    assert [b.text for b in bundle.buttons] == ["Done", "Remind me tomorrow", "I have symptoms"]

    [snoozed] = await harness.press(ANNA, bundle, "Remind me tomorrow")
    assert snoozed.text == "OK, we will remind you again tomorrow."
    harness.clock.advance(timedelta(hours=24))
    await harness.tick()
    # Both tests come again, together (the evening's post-infusion warning went meanwhile).
    later = harness.api.messages(ANNA.id)[harness.api.messages(ANNA.id).index(bundle) + 1 :]
    [again] = [m for m in later if "Monthly" in (m.text or "")]
    assert "Monthly blood and urine tests" in (again.text or "")
    assert "Thyroid blood test" in (again.text or "")
    assert "Anti-herpes" not in (again.text or "")  # what arrived is not sent twice
    [thanks] = await harness.press(ANNA, again, "Done")
    assert thanks.text == "Thank you, your answer is recorded."
    async with harness.sessions() as session:
        states = dict(
            (
                await session.execute(
                    select(Reminder.kind, Reminder.status).where(
                        Reminder.local_date == date(2027, 1, 5),
                        Reminder.due_at == datetime(2027, 1, 5, 8, tzinfo=UTC),
                    )
                )
            ).all()
        )
    assert states == {
        "antiviral_prophylaxis": "sent",
        "labs_monthly": "acknowledged",
        "thyroid_quarterly": "acknowledged",
        "annual_screening": "sent",
    }


async def test_a_warning_bundled_with_tests_offers_i_am_ok_too(harness: Harness) -> None:
    harness.clock.current = START
    await harness.consented(ANNA, coordinator_id=COORDINATOR.id)
    # The monthly tests due at 18:00 on the evening of an infusion day (as with a send time
    # of 18:00), here the third of course 1, when nothing else is due: made so directly.
    async with harness.sessions.begin() as session:
        warning = await session.scalar(
            select(Reminder).where(
                Reminder.kind == "post_infusion_warning", Reminder.occurrence == "c1-d2"
            )
        )
        labs = await session.scalar(
            select(Reminder).where(Reminder.kind == "labs_monthly", Reminder.occurrence == "m1")
        )
        assert warning is not None
        assert labs is not None
        labs.due_at, labs.ready_at = warning.due_at, warning.ready_at
    harness.clock.current = warning.due_at
    await harness.tick()
    message = harness.api.messages(ANNA.id)[-1]
    assert "After your infusion" in (message.text or "")
    assert [b.text for b in message.buttons] == [
        "Done",
        "Remind me tomorrow",
        "I'm OK",
        "I have symptoms",
    ]
    [thanks] = await harness.press(ANNA, message, "I'm OK")
    assert thanks.text == "Thank you, your answer is recorded."
    async with harness.sessions() as session:
        statuses = {
            r.kind: r.status
            for r in await session.scalars(
                select(Reminder).where(Reminder.id.in_([warning.id, labs.id]))
            )
        }
    assert statuses == {"post_infusion_warning": "acknowledged", "labs_monthly": "sent"}
