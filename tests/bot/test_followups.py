"""Answers to reminders and the follow-ups for unconfirmed tests, through the fake Bot API."""

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.app import follow_ups
from scheduler.followups import SweepReport
from scheduler.models import Acknowledgement, AuditEvent, Reminder
from tests.bot.conftest import Harness
from tests.fake_bot_api import FakeUser, Fault, SentMessage

ANNA = FakeUser(id=4242, first_name="Anna", language_code="en")
BEN = FakeUser(id=4343, first_name="Ben", language_code="en")
COORDINATOR = FakeUser(id=5151, first_name="Cora", language_code="en")
ALERT_GROUP = -1001234567890
LABS_DUE = datetime(2026, 2, 5, 8, tzinfo=UTC)  # 09:00 in Berlin


async def labs_message(harness: Harness, user: FakeUser = ANNA) -> SentMessage:
    """Anna consents a week before her course; the first monthly tests arrive."""
    harness.clock.current = datetime(2025, 12, 29, 7, tzinfo=UTC)
    await harness.consented(user, coordinator_id=COORDINATOR.id)
    harness.clock.current = LABS_DUE
    await harness.tick()
    return next(m for m in harness.api.messages(user.id) if "Monthly blood" in m.text)


async def labs_reminder(harness: Harness) -> Reminder:
    async with harness.sessions() as session:
        reminder = await session.scalar(
            select(Reminder).where(Reminder.kind == "labs_monthly", Reminder.occurrence == "m1")
        )
    assert reminder is not None
    return reminder


async def follow_up(harness: Harness) -> SweepReport:
    """What the follow-up job does at the harness clock's time, then the dispatcher's tick
    that sends the nudges it queued."""
    report = await follow_ups(harness.app.bot_data)
    await harness.tick()
    return report


async def test_done_once_then_already_recorded(harness: Harness) -> None:
    message = await labs_message(harness)
    done = message.button("Done").callback_data
    assert done is not None
    [thanks] = await harness.press(ANNA, message, "Done")
    assert thanks.text == "Thank you, your answer is recorded."
    assert message.buttons == []  # the buttons are gone
    assert (await labs_reminder(harness)).status == "acknowledged"
    # A second press (an old client, a double tap) changes nothing.
    seen = len(harness.api.messages(ANNA.id))
    press = await harness.api.press_button(ANNA, message, done, forge=True)
    await harness.api.wait_for_answer(press)
    again = await harness.api.wait_for_message(ANNA.id, count=seen + 1)
    assert again.text == "You have already answered this reminder. Thank you."
    async with harness.sessions() as session:
        acks = (await session.scalars(select(Acknowledgement.action))).all()
    assert acks == ["done"]


async def test_snooze_three_times_at_most(harness: Harness) -> None:
    message = await labs_message(harness)
    for round_ in range(1, 4):
        [snoozed] = await harness.press(ANNA, message, "Remind me tomorrow")
        assert snoozed.text == "OK, we will remind you again tomorrow."
        reminder = await labs_reminder(harness)
        # Still sent (it did arrive), queued to be sent again in 24 hours.
        assert (reminder.status, reminder.pending, reminder.ready_at) == (
            "sent",
            "again",
            harness.clock.now() + timedelta(hours=24),
        )
        harness.clock.advance(timedelta(hours=23, minutes=59))
        assert (await harness.tick()).claimed == 0
        harness.clock.advance(timedelta(minutes=1))
        assert (await harness.tick()).sent == 1
        message = harness.api.messages(ANNA.id)[-1]
        assert "Monthly blood" in message.text
        labels = [b.text for b in message.buttons]
        assert ("Remind me tomorrow" in labels) == (round_ < 3)
    [done] = await harness.press(ANNA, message, "Done")
    assert done.text == "Thank you, your answer is recorded."


async def test_snooze_from_an_old_message_is_refused(harness: Harness) -> None:
    message = await labs_message(harness)
    snooze = message.button("Remind me tomorrow").callback_data
    assert snooze is not None
    await harness.press(ANNA, message, "Remind me tomorrow")
    harness.clock.advance(timedelta(hours=24))
    await harness.tick()
    seen = len(harness.api.messages(ANNA.id))
    press = await harness.api.press_button(ANNA, message, snooze, forge=True)
    await harness.api.wait_for_answer(press)
    reply = await harness.api.wait_for_message(ANNA.id, count=seen + 1)
    assert reply.text == "You have already answered this reminder. Thank you."
    assert (await labs_reminder(harness)).status == "sent"


async def test_symptoms_alert_the_coordinator_at_once(harness: Harness) -> None:
    message = await labs_message(harness)
    [symptoms] = [b.callback_data for b in message.buttons if b.text == "I have symptoms"]
    [urgent, told] = await harness.press(ANNA, message, "I have symptoms", replies=2)
    assert urgent.text.startswith("If this is an emergency, call your local emergency number now.")
    assert told.text == "We have told your MS team that you reported symptoms."
    assert message.buttons == []  # recorded for the whole message: its buttons are gone
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert alert.text.startswith("Patient MS-001 reported symptoms")
    assert "Monthly blood and urine tests" in alert.text
    seen = len(harness.api.messages(ANNA.id))
    press = await harness.api.press_button(ANNA, message, symptoms, forge=True)  # a stale one
    await harness.api.wait_for_answer(press)
    again = await harness.api.wait_for_message(ANNA.id, count=seen + 1)
    assert again.text == "You have already answered this reminder. Thank you."
    assert len(harness.api.messages(COORDINATOR.id)) == 1


async def test_a_symptoms_alert_survives_telegram_failures(harness: Harness) -> None:
    message = await labs_message(harness)
    dispatcher = harness.app.bot_data.dispatcher
    assert dispatcher is not None
    dispatcher.alert_chat_id = ALERT_GROUP
    harness.api.inject("sendMessage", Fault.server_error(), chat_id=COORDINATOR.id, times=2)

    [urgent, told] = await harness.press(ANNA, message, "I have symptoms", replies=2)
    assert urgent.text.startswith("If this is an emergency, call your local emergency number now.")
    assert told.text == "We have told your MS team that you reported symptoms."  # the group
    group_alert = await harness.api.wait_for_message(ALERT_GROUP)  # at once
    assert group_alert.text.startswith("Patient MS-001 reported symptoms")
    failed = await harness.api.wait_for("sendMessage", chat_id=COORDINATOR.id)
    assert failed.outcome == "server_error"
    await harness.say(ANNA, "/next")  # the button's handler has finished
    assert harness.api.messages(COORDINATOR.id) == []

    harness.clock.advance(timedelta(seconds=30))
    assert (await harness.tick()).alerts == {"retrying": 1}
    harness.clock.advance(timedelta(seconds=60))
    assert (await harness.tick()).alerts == {"sent": 1}
    [alert] = harness.api.messages(COORDINATOR.id)
    assert alert.text == group_alert.text
    assert len(harness.api.calls_to("sendMessage", chat_id=COORDINATOR.id)) == 3
    assert (await harness.tick()).alerts == {}
    assert len(harness.api.messages(ALERT_GROUP)) == 1


async def test_symptoms_alert_waits_for_the_tick_when_sending_at_once_fails(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = await labs_message(harness)
    dispatcher = harness.app.bot_data.dispatcher
    assert dispatcher is not None

    async def database_gone(*, patient_id: int) -> Counter[str]:
        raise ConnectionResetError

    with monkeypatch.context() as patched, caplog.at_level(logging.WARNING):
        patched.setattr(dispatcher, "send_alerts", database_gone)
        [urgent, told] = await harness.press(ANNA, message, "I have symptoms", replies=2)
        await harness.say(ANNA, "/next")  # the button's handler has finished
    assert told.text == "Your MS team has not been told yet. Please call them yourself today."
    assert urgent.text.startswith("If this is an emergency")
    assert "went wrong" not in " ".join(m.text or "" for m in harness.api.messages(ANNA.id))
    assert "alerts left to the next dispatcher tick: ConnectionResetError" in caplog.messages
    assert harness.api.messages(COORDINATOR.id) == []

    assert (await harness.tick()).alerts == {"sent": 1}
    [alert] = harness.api.messages(COORDINATOR.id)
    assert alert.text.startswith("Patient MS-001 reported symptoms")


async def test_post_infusion_ok(harness: Harness) -> None:
    harness.clock.current = datetime(2025, 12, 29, 7, tzinfo=UTC)
    await harness.consented(ANNA, coordinator_id=COORDINATOR.id)
    harness.clock.current = datetime(2026, 1, 5, 17, tzinfo=UTC)
    await harness.tick()
    warning = harness.api.messages(ANNA.id)[-1]
    assert "After your infusion" in warning.text
    [ok] = await harness.press(ANNA, warning, "I'm OK")
    assert ok.text == "Thank you, your answer is recorded."
    async with harness.sessions() as session:
        status = await session.scalar(select(Reminder.status).where(Reminder.occurrence == "c1-d0"))
    assert status == "acknowledged"


async def test_someone_elses_reminder_is_refused_and_audited(harness: Harness) -> None:
    message = await labs_message(harness)
    harness.clock.current = datetime(2025, 12, 29, 7, tzinfo=UTC)
    await harness.consented(BEN, "MS-002")
    [own] = await harness.say(BEN, "/help")
    done = message.button("Done").callback_data
    assert done is not None
    press = await harness.api.press_button(BEN, own, done, forge=True)
    answer = await harness.api.wait_for_answer(press)
    assert answer["text"] == "This button is not available."
    assert (await labs_reminder(harness)).status == "sent"
    async with harness.sessions() as session:
        refused = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "callback.refused")
        )
    assert refused is not None
    assert refused.actor == f"user:{BEN.id}"


async def test_nudges_after_3_and_7_days_then_coordinator_alert(harness: Harness) -> None:
    await labs_message(harness)
    harness.clock.current = LABS_DUE + timedelta(days=2, hours=23)
    assert await follow_up(harness) == SweepReport()

    harness.clock.current = LABS_DUE + timedelta(days=3)
    assert (await follow_up(harness)).nudged == 1
    nudge = harness.api.messages(ANNA.id)[-1]
    assert nudge.text.startswith(
        "Your monthly blood and urine tests were due 3 days ago, on February 5, 2026."
    )
    assert [b.text for b in nudge.buttons] == ["Done", "I have symptoms"]
    assert await follow_up(harness) == SweepReport()  # once per stage

    harness.clock.current = LABS_DUE + timedelta(days=7)
    assert (await follow_up(harness)).nudged == 1
    assert "were due 7 days ago" in harness.api.messages(ANNA.id)[-1].text

    harness.clock.current = LABS_DUE + timedelta(days=10)
    assert (await follow_up(harness)).alerted == 1
    alerts = [m.text for m in harness.api.messages(COORDINATOR.id)]
    assert alerts[-1] == "Patient MS-001 has not confirmed the tests due on February 5, 2026."

    harness.clock.current = LABS_DUE + timedelta(days=30)
    assert (await follow_up(harness)).alerted == 0
    async with harness.sessions() as session:
        reminder = await session.scalar(
            select(Reminder).where(Reminder.occurrence == "m1", Reminder.kind == "labs_monthly")
        )
        assert reminder is not None
        assert reminder.followups == 3


async def test_done_stops_the_follow_ups(harness: Harness) -> None:
    message = await labs_message(harness)
    harness.clock.current = LABS_DUE + timedelta(days=3)
    assert (await follow_up(harness)).nudged == 1
    nudge = harness.api.messages(ANNA.id)[-1]
    [thanks] = await harness.press(ANNA, nudge, "Done")  # Done on the nudge counts too
    assert thanks.text == "Thank you, your answer is recorded."
    harness.clock.current = LABS_DUE + timedelta(days=10)
    assert await follow_up(harness) == SweepReport()
    assert message.text  # the original stays as it was
