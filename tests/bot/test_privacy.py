"""Erasure at any time, and alerts that always reach someone, through Telegram.

Each erasure path (the patient's /forget, also after /stop; a coordinator's /forget LABEL;
``remindbot forget``) is followed by a dump of every table that must name nothing of the
patient: label, chat id, user id, username, first name. The scheduler tests run the same
erasure on PostgreSQL (tests/scheduler/test_teams.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.cli import main
from scheduler import patient_data, store
from scheduler.models import Patient
from scheduler.statuses import Role
from tests.bot.conftest import TEAM_COORDINATOR, Harness
from tests.conftest import dump
from tests.fake_bot_api import FakeUser, Fault, SentMessage

LABEL = "QX-4711"
PAT = FakeUser(id=5557001, first_name="Philippa", username="philippa_ms", language_code="en")
COORDINATOR = FakeUser(id=3003, first_name="Cora", language_code="de")
CORA = FakeUser(id=3004, first_name="Cora", language_code="en")
NEUTRAL = "Please ask your care team for an invite."


def text(message: SentMessage) -> str:
    return message.content or ""


async def enrolled_and_busy(harness: Harness, *, coordinator: int | None = None) -> int:
    """The patient consented, answered a reminder, tried a staff command; their id."""
    harness.api.add_user(COORDINATOR)
    if coordinator is not None:
        await harness.grant(COORDINATOR, Role.COORDINATOR)
    await harness.consented(PAT, LABEL, coordinator_id=coordinator)
    [refused] = await harness.say(PAT, "/deliveries")  # audited with the user's id
    assert text(refused) == "This command is not available."
    harness.clock.advance(timedelta(days=8))
    await harness.tick()
    async with harness.sessions() as session:
        patient = await store.patient_by_label(session, label=LABEL)
    assert patient is not None
    return patient.id


async def assert_nothing_left(harness: Harness) -> None:
    everything = await dump(harness.sessions.kw["bind"])
    for value in (LABEL, str(PAT.id), PAT.first_name, str(PAT.username)):
        assert value not in everything, value


async def test_the_patients_forget_erases_everything_personal(harness: Harness) -> None:
    await enrolled_and_busy(harness, coordinator=COORDINATOR.id)
    assert LABEL in await dump(harness.sessions.kw["bind"])
    await harness.say(COORDINATOR, "/patients")  # the bot learns the coordinator's language
    [ask] = await harness.say(PAT, "/forget")
    assert "Only anonymous counts of delivered reminders remain." in text(ask)
    [erased] = await harness.press(PAT, ask, "Yes, erase")
    assert "We have told your care team." in text(erased)
    # The coordinator is told in their own Telegram language, learnt from their commands.
    alert = await harness.api.wait_for_message(COORDINATOR.id, count=2)
    assert text(alert).startswith(f"Patient {LABEL} hat die Einwilligung widerrufen")
    await assert_nothing_left(harness)
    async with harness.sessions() as session:
        counts = await patient_data.erased_counts(session)
    assert counts[patient_data.ERASURES] == 1
    [answer] = await harness.say(PAT, "/mydata")
    assert NEUTRAL in text(answer)


async def test_forget_and_mydata_also_after_stop(harness: Harness) -> None:
    await enrolled_and_busy(harness)
    [ask] = await harness.say(PAT, "/stop")
    await harness.press(PAT, ask, "Yes, stop")
    [summary, document] = await harness.say(PAT, "/mydata", replies=2)
    assert f"Label from your clinic: {LABEL}" in text(summary)
    assert document.method == "sendDocument"
    [ask] = await harness.say(PAT, "/forget")
    assert text(ask).startswith("Erase your data?")
    [erased] = await harness.press(PAT, ask, "Yes, erase")
    assert text(erased).startswith("Your data has been erased")
    # No coordinator of their own: the team's coordinator is told.
    alert = await harness.api.wait_for_message(TEAM_COORDINATOR.id, count=2)
    assert text(alert).startswith(f"Patient {LABEL} withdrew consent and asked")
    await assert_nothing_left(harness)


async def test_a_coordinator_erases_a_patient_of_their_team(harness: Harness) -> None:
    await enrolled_and_busy(harness)
    await harness.grant(CORA, Role.COORDINATOR)  # in the clinic's only team
    [ask] = await harness.say(CORA, f"/forget {LABEL}")
    assert text(ask).startswith(f"Erase everything stored about {LABEL}?")
    [kept] = await harness.press(CORA, ask, "Cancel")
    assert text(kept) == "Nothing was erased."
    assert LABEL in await dump(harness.sessions.kw["bind"])
    [ask] = await harness.say(CORA, f"/forget {LABEL}")
    [done] = await harness.press(CORA, ask, f"Erase {LABEL}")
    assert text(done).startswith(f"{LABEL} is erased")
    await assert_nothing_left(harness)
    harness.clock.advance(timedelta(days=40))
    sent = len(harness.api.messages(PAT.id))
    await harness.tick()
    assert len(harness.api.messages(PAT.id)) == sent  # nothing more is sent
    [answer] = await harness.say(PAT, "/next")
    assert NEUTRAL in text(answer)


def remindbot(*args: str) -> int | str | None:
    """``remindbot ARGS`` as the operator runs it (in a thread: it runs its own event loop)."""
    try:
        main(list(args))
    except SystemExit as exited:
        return exited.code
    return None


async def test_the_operator_erases_with_the_command_line(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await enrolled_and_busy(harness)
    monkeypatch.setenv("DATABASE_URL", harness.settings.database_url)
    monkeypatch.setattr("sys.stdin", _Input("n\n"))
    assert await asyncio.to_thread(remindbot, "forget", LABEL) == 2  # not confirmed
    assert LABEL in await dump(harness.sessions.kw["bind"])
    assert await asyncio.to_thread(remindbot, "forget", LABEL, "--yes") == 0
    assert f"Erased {LABEL}" in capsys.readouterr().out
    await assert_nothing_left(harness)
    assert await asyncio.to_thread(remindbot, "forget", LABEL, "--yes") == 2
    assert f"No patient has the label {LABEL}." in capsys.readouterr().err


async def test_symptoms_say_the_team_was_told_only_once_someone_was(harness: Harness) -> None:
    await harness.consented(PAT, LABEL)
    harness.clock.advance(timedelta(days=8))
    await harness.tick()
    [reminder] = [m for m in harness.api.messages(PAT.id) if "I have symptoms" in str(m.buttons)]
    harness.api.inject("sendMessage", Fault.server_error(), chat_id=TEAM_COORDINATOR.id)
    [urgent, answer] = await harness.press(PAT, reminder, "I have symptoms", replies=2)
    assert "call your local emergency number now" in text(urgent)
    assert text(answer) == "Your MS team has not been told yet. Please call them yourself today."
    harness.api.clear_faults()
    harness.clock.advance(timedelta(minutes=1))  # the alert's retry
    await harness.tick()
    assert "reported symptoms" in text(await harness.api.wait_for_message(TEAM_COORDINATOR.id))


async def test_a_patient_with_no_coordinator_of_their_own_reaches_the_team(
    harness: Harness,
) -> None:
    await harness.consented(PAT, LABEL)
    harness.clock.advance(timedelta(days=8))
    await harness.tick()
    [reminder] = [m for m in harness.api.messages(PAT.id) if "I have symptoms" in str(m.buttons)]
    [_urgent, answer] = await harness.press(PAT, reminder, "I have symptoms", replies=2)
    assert text(answer) == "We have told your MS team that you reported symptoms."
    alert = await harness.api.wait_for_message(TEAM_COORDINATOR.id)
    assert text(alert).startswith(f"Patient {LABEL} reported symptoms")
    async with harness.sessions() as session:
        patient = await session.scalar(select(Patient).where(Patient.label == LABEL))
    assert patient is not None
    assert patient.coordinator_id is None


class _Input:
    """A stand-in for stdin that click's prompt reads from."""

    def __init__(self, data: str) -> None:
        self.lines = data.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False
