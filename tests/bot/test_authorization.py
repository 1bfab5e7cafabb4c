"""The authorization matrix: every command for a stranger, a patient, staff, a care
coordinator and an admin.

``MATRIX`` states, for each command the running bot answers, what each of the five people
gets. The commands come from the application itself (``test_the_matrix_covers_every_command``),
so a new command without a row fails. The outcomes:

- DENIED: exactly "This command is not available.", one ``access.denied`` audit event with
  the user as actor, nothing else stored, nothing sent anywhere else; with a label argument,
  the same answer and audit event whether or not a patient has that label.
- CARE_TEAM: the patient-only answer for someone who is not a patient ("... ask your care
  team ..."), nothing stored at all.
- ALLOWED: the command's own first reply (a distinguishing fragment of it).

Each row starts from one world (see ``world``); before each actor's turn the database is put
back as it was, so that every actor finds the same state whatever the one before was allowed
to change. Every attempt is followed by a probe (``/start``): the bot handles one update at a
time, so the probe's reply right after the expected replies shows there were no more. A
command that would start a conversation is followed, when refused, by a plain text that must
not be taken as an answer (it gets the answer any text gets); when allowed, by ``/cancel``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

import pytest
from sqlalchemy import select
from telegram.ext import BaseHandler, CommandHandler, ConversationHandler

from scheduler import store, teams
from scheduler.models import Base
from scheduler.statuses import Role
from tests.bot.conftest import ADMIN, Harness
from tests.fake_bot_api import FakeUser, SentMessage, WaitTimeout

STRANGER = FakeUser(id=6001, first_name="Sid", language_code="en")
PATIENT = FakeUser(id=5001, first_name="Pat", language_code="en")
STAFF = FakeUser(id=2001, first_name="Sam", language_code="en")
COORDINATOR = FakeUser(id=3001, first_name="Cora", language_code="en")
# Somebody an admin gives or takes a role in /grant and /revoke.
OTHER_USER_ID = 777


class Actor(Enum):
    STRANGER = "stranger"
    PATIENT = "patient"
    STAFF = "staff"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


USERS = {
    Actor.STRANGER: STRANGER,
    Actor.PATIENT: PATIENT,
    Actor.STAFF: STAFF,
    Actor.COORDINATOR: COORDINATOR,
    Actor.ADMIN: ADMIN,
}

NOT_AVAILABLE = "This command is not available."
ASK_CARE_TEAM = "ask your care team"
# A command whose reply is known for everyone and which stores nothing.
PROBE = "/start not-an-invite"
PROBE_REPLY = "This link is not valid or has expired. Please ask your care team for a new invite."
PATIENT_PROBE_REPLY = "You are already signed up. Send /help to see what you can do."
# Sent after a refused conversation command: it must not be taken as an answer.
ANSWER = "08:30"
LABEL = re.compile(r"\bMS-\d{3}\b")
UNKNOWN_LABEL = "MS-404"


class Outcome(Enum):
    DENIED = "denied"
    CARE_TEAM = "care team"
    ALLOWED = "allowed"


@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    # ALLOWED: a fragment of the first reply, and one it must not contain.
    fragment: str = ""
    absent: str | None = None
    # A conversation command answered without a conversation: what ``ends_with`` gets then.
    ended: str | None = None


DENIED = Expect(Outcome.DENIED)
CARE_TEAM = Expect(Outcome.CARE_TEAM)


def allowed(fragment: str, *, absent: str | None = None, ended: str | None = None) -> Expect:
    return Expect(Outcome.ALLOWED, fragment, absent, ended)


Prepare = Callable[[Harness], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    """One command: what to send, and what each actor gets."""

    command: str
    expect: dict[Actor, Expect]
    # How many messages an allowed answer consists of.
    replies: int = 1
    # For a command that starts a conversation: what ends it, and a fragment of that reply.
    ends_with: tuple[str, str] | None = None
    # Brings the world to where the allowed command has something to do.
    prepare: Prepare | None = None

    @property
    def name(self) -> str:
        return self.command.split()[0].removeprefix("/")

    @property
    def key(self) -> str:
        """The row's id: the command, and whether it takes an argument ("forget LABEL")."""
        return self.name + ("-label" if LABEL.search(self.command) else "")


def row(
    command: str,
    stranger: Expect,
    patient: Expect,
    staff: Expect,
    coordinator: Expect,
    admin: Expect,
    *,
    replies: int = 1,
    ends_with: tuple[str, str] | None = None,
    prepare: Prepare | None = None,
) -> Row:
    expect = {
        Actor.STRANGER: stranger,
        Actor.PATIENT: patient,
        Actor.STAFF: staff,
        Actor.COORDINATOR: coordinator,
        Actor.ADMIN: admin,
    }
    return Row(command, expect, replies, ends_with, prepare)


async def pause_ms001(harness: Harness) -> None:
    """MS-001 (the patient's enrolment) paused, so that /resume has something to do."""
    async with harness.sessions.begin() as session:
        found = await store.patient_by_label(session, label="MS-001")
        assert found is not None
        await store.pause(session, patient_id=found.id, actor="test", now=harness.clock.now())


async def grant_other_user(harness: Harness) -> None:
    """OTHER_USER_ID is staff, so that /revoke has something to do."""
    async with harness.sessions.begin() as session:
        await store.grant(
            session, user_id=OTHER_USER_ID, role=Role.STAFF, actor="test", now=harness.clock.now()
        )


CANCEL_PREFERENCE = ("/cancel", "OK, nothing has changed.")
NOTHING_TO_CANCEL = "There is nothing to cancel."
# Columns:  stranger, patient, staff, coordinator, admin.
MATRIX = (
    # --- the patient's commands ---------------------------------------------------------
    row(
        "/start",
        CARE_TEAM,
        allowed("You are already signed up."),
        allowed("Staff commands:\n/deliveries"),
        allowed("/enroll: enrol a patient"),
        allowed("/grant USER_ID ROLE"),
    ),
    row(
        "/help",
        CARE_TEAM,
        allowed("What you can do:\n/next", absent="Staff commands"),
        allowed("Staff commands:\n/deliveries [LABEL] [STATUS]", absent="/enroll"),
        allowed("/enroll: enrol a patient", absent="/grant"),
        allowed("/grant USER_ID ROLE: give a staff role"),
    ),
    row(
        "/next",
        CARE_TEAM,
        allowed("Your next reminders (Europe/Berlin time):\n• "),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
    ),
    row(
        "/time",
        CARE_TEAM,
        allowed("Your reminders come at 9:00\u202fAM.\nSend the new time as HH:MM"),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
        ends_with=CANCEL_PREFERENCE,
    ),
    row(
        "/timezone",
        CARE_TEAM,
        allowed("Your time zone is Germany (Berlin).\nChoose your time zone below"),
        # Staff, coordinators and admins: the zone they see times in; no conversation.
        *[allowed("You see times in UTC time, the bot's default.", ended=NOTHING_TO_CANCEL)] * 3,
        ends_with=CANCEL_PREFERENCE,
    ),
    # Ends the /time, /timezone and /enroll conversations; outside them, says so.
    row("/cancel", *[allowed(NOTHING_TO_CANCEL)] * 5),
    row(
        "/language",
        CARE_TEAM,
        allowed("Choose your language:"),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
    ),
    row(
        "/calendar",
        CARE_TEAM,
        allowed("Your upcoming reminders as a calendar file."),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
    ),
    row(
        "/mydata",
        CARE_TEAM,
        allowed("What is stored about you:\n• Label from your clinic: MS-001"),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
        replies=2,  # the summary, then the JSON file
    ),
    row(
        "/stop",
        CARE_TEAM,
        allowed("Stop all reminders?"),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
    ),
    row(
        "/forget",
        CARE_TEAM,
        allowed("Erase your data?"),
        CARE_TEAM,
        CARE_TEAM,
        CARE_TEAM,
    ),
    # --- the coordinator's commands -------------------------------------------------------
    row(
        "/enroll",
        DENIED,
        DENIED,
        DENIED,
        allowed("New enrolment. Nothing is saved until you confirm"),
        allowed("New enrolment. Nothing is saved until you confirm"),
        ends_with=("/cancel", "Enrolment cancelled. Nothing was saved."),
    ),
    row(
        "/course MS-001 2027-01-04",
        DENIED,
        DENIED,
        DENIED,
        allowed("Recorded for MS-001; the reminders are re-planned.\nCourse 2: January 4, 2027"),
        allowed("Recorded for MS-001; the reminders are re-planned.\nCourse 2: January 4, 2027"),
    ),
    row(
        "/patients",
        DENIED,
        DENIED,
        DENIED,
        allowed("Patients 1–2 of 2:\n• MS-001: active"),
        allowed("Patients 1–2 of 2:\n• MS-001: active"),
    ),
    row(
        "/patient MS-001",
        DENIED,
        DENIED,
        DENIED,
        allowed("Patient MS-001\nStatus: active"),
        allowed("Patient MS-001\nStatus: active"),
    ),
    row(
        "/pause MS-001",
        DENIED,
        DENIED,
        DENIED,
        allowed("MS-001 is paused: no reminders are sent until /resume."),
        allowed("MS-001 is paused: no reminders are sent until /resume."),
    ),
    row(
        "/resume MS-001",
        DENIED,
        DENIED,
        DENIED,
        allowed("MS-001 is active again"),
        allowed("MS-001 is active again"),
        prepare=pause_ms001,
    ),
    row(
        "/invite MS-002",
        DENIED,
        DENIED,
        DENIED,
        allowed("New invite for MS-002; the previous link no longer works."),
        allowed("New invite for MS-002; the previous link no longer works."),
        replies=2,  # the link, then its QR code
    ),
    row(
        "/cervix MS-001 no",
        DENIED,
        DENIED,
        DENIED,
        allowed("MS-001: cervical screening in the yearly reminder: No."),
        allowed("MS-001: cervical screening in the yearly reminder: No."),
    ),
    # --- staff and admins -----------------------------------------------------------------
    row(
        "/deliveries MS-001",
        DENIED,
        DENIED,
        allowed("Deliveries due so far, newest first: 1–1 of 1\nFilter: patient MS-001"),
        allowed("Deliveries due so far, newest first: 1–1 of 1\nFilter: patient MS-001"),
        allowed("Deliveries due so far, newest first: 1–1 of 1\nFilter: patient MS-001"),
    ),
    row(
        "/web",
        DENIED,
        DENIED,
        allowed("The web console is not set up."),
        allowed("The web console is not set up."),
        allowed("The web console is not set up."),
    ),
    row(
        "/forget MS-002",
        DENIED,
        DENIED,
        DENIED,
        allowed("Erase everything stored about MS-002?"),
        allowed("Erase everything stored about MS-002?"),
    ),
    row(
        "/team",
        DENIED,
        DENIED,
        DENIED,
        DENIED,
        allowed("Teams:\ndefault: 2 patients; coordinators: 1900, 3001; staff: 2001"),
    ),
    row(
        f"/grant {OTHER_USER_ID} staff",
        DENIED,
        DENIED,
        DENIED,
        DENIED,
        allowed(f"User {OTHER_USER_ID} is now staff."),
    ),
    row(
        f"/revoke {OTHER_USER_ID}",
        DENIED,
        DENIED,
        DENIED,
        DENIED,
        allowed(f"User {OTHER_USER_ID} no longer has a staff role."),
        prepare=grant_other_user,
    ),
)


# --- helpers ---------------------------------------------------------------------------------

Snapshot = dict[str, list[dict[str, Any]]]


async def snapshot(harness: Harness) -> Snapshot:
    """Every row of every table."""
    async with harness.sessions() as session:
        tables: Snapshot = {}
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(select(table).order_by(*table.primary_key.columns))
            tables[table.name] = [row._asdict() for row in rows]
    return tables


async def restore(harness: Harness, tables: Snapshot) -> None:
    """Put every table back as it was in ``tables``."""
    async with harness.sessions.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
        for table in Base.metadata.sorted_tables:
            if tables[table.name]:
                await session.execute(table.insert(), tables[table.name])


def new_audit_events(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """The audit events added between the snapshots; fails if anything else changed."""
    assert {name: rows for name, rows in after.items() if name != "audit_event"} == {
        name: rows for name, rows in before.items() if name != "audit_event"
    }
    old = before["audit_event"]
    assert after["audit_event"][: len(old)] == old
    return after["audit_event"][len(old) :]


def is_any_text_answer(content: str | None) -> bool:
    """The answer to a text no handler takes (bot/handlers/fallback.py): never taken as an
    answer to a question."""
    return (content or "").startswith(
        ("This bot sends treatment reminders", "Messages sent here are not read", "Staff commands:")
    )


def probe_reply(actor: Actor) -> str:
    return PATIENT_PROBE_REPLY if actor is Actor.PATIENT else PROBE_REPLY


def command_names(handlers: Iterable[BaseHandler[Any, Any, Any]]) -> set[str]:
    """The commands of ``handlers``, inside conversations too."""
    names: set[str] = set()
    for handler in handlers:
        if isinstance(handler, CommandHandler):
            names |= handler.commands
        elif isinstance(handler, ConversationHandler):
            names |= command_names(handler.entry_points)
            for state in handler.states.values():
                names |= command_names(state)
            names |= command_names(handler.fallbacks)
    return names


@dataclass
class Mark:
    """Where the conversation of one actor stood before an attempt."""

    actor: Actor
    before: int
    total: int


def mark(harness: Harness, actor: Actor) -> Mark:
    user = USERS[actor]
    return Mark(actor, len(harness.api.messages(user.id)), len(harness.api.all_messages()))


async def answers_since(harness: Harness, since: Mark, expected: int) -> list[SentMessage]:
    """The ``expected`` messages the bot sent the actor since ``since``, checked to be all:
    the probe sent now is answered right after them, and nobody else got anything."""
    user = USERS[since.actor]
    await harness.api.send_text(user, PROBE)
    try:
        await harness.api.wait_for_message(user.id, count=since.before + expected + 1)
    except WaitTimeout:
        sent = [m.content for m in harness.api.messages(user.id)[since.before :]]
        raise AssertionError(f"expected {expected} replies and the probe's; got {sent}") from None
    sent_messages = harness.api.messages(user.id)[since.before :]
    assert sent_messages[expected].content == probe_reply(since.actor), [
        m.content for m in sent_messages
    ]
    assert len(harness.api.all_messages()) == since.total + expected + 1
    return sent_messages[:expected]


async def send(harness: Harness, actor: Actor, *texts: str, expected: int) -> list[SentMessage]:
    since = mark(harness, actor)
    for text in texts:
        await harness.api.send_text(USERS[actor], text)
    return await answers_since(harness, since, expected)


def denial_of(event: dict[str, Any], actor: Actor) -> tuple[object, ...]:
    """What the audit event of a denial records, checked to be that and nothing personal."""
    assert event["actor"] == f"user:{USERS[actor].id}"
    assert event["action"] == "access.denied"
    assert event["target"]
    assert not LABEL.search(event["target"])
    assert event["detail"] is None
    return event["actor"], event["action"], event["target"], event["detail"]


# --- the world every row is tried in -----------------------------------------------------------


@pytest.fixture
async def world(harness: Harness) -> Harness:
    """MS-001 consented in the patient's chat, MS-002 invited, a staff member and a care
    coordinator; an hour later, so that each patient has a reminder due in the delivery log."""
    await harness.consented(PATIENT, "MS-001")
    await harness.enroll("MS-002")
    await harness.grant(STAFF, Role.STAFF)
    await harness.grant(COORDINATOR, Role.COORDINATOR)
    harness.clock.advance(timedelta(hours=1))
    return harness


# --- the tests ---------------------------------------------------------------------------------


async def test_the_matrix_covers_every_command(harness: Harness) -> None:
    registered: set[str] = set()
    for group in harness.app.handlers.values():
        registered |= command_names(group)
    keys = [entry.key for entry in MATRIX]
    assert len(keys) == len(set(keys)), "one row per command"
    assert {entry.name for entry in MATRIX} == registered
    for entry in MATRIX:
        assert set(entry.expect) == set(Actor), entry.name


async def attempt_denied(
    harness: Harness, entry: Row, actor: Actor, command: str
) -> tuple[object, ...]:
    """``command`` refused: the neutral answer and one audit event, nothing else."""
    texts = [command, ANSWER] if entry.ends_with else [command]
    before = await snapshot(harness)
    [answer, *other] = await send(harness, actor, *texts, expected=len(texts))
    assert answer.text == NOT_AVAILABLE, (command, actor, answer.content)
    assert all(is_any_text_answer(m.content) for m in other), (command, actor)
    assert answer.reply_markup is None
    [event] = new_audit_events(before, await snapshot(harness))
    return (answer.text, *denial_of(event, actor))


@pytest.mark.parametrize("entry", MATRIX, ids=[entry.key for entry in MATRIX])
async def test_authorization_matrix(world: Harness, entry: Row) -> None:
    if entry.prepare is not None:
        await entry.prepare(world)
    initial = await snapshot(world)
    for actor in Actor:
        # Each actor finds the same world, whatever the one before was allowed to change.
        await restore(world, initial)
        expect = entry.expect[actor]
        where = f"{entry.command} as {actor.value}"
        match expect.outcome:
            case Outcome.DENIED:
                denied = await attempt_denied(world, entry, actor, entry.command)
                if LABEL.search(entry.command):
                    # Whether a patient has the label makes no difference.
                    unknown = LABEL.sub(UNKNOWN_LABEL, entry.command)
                    assert await attempt_denied(world, entry, actor, unknown) == denied, where
            case Outcome.CARE_TEAM:
                texts = [entry.command, ANSWER] if entry.ends_with else [entry.command]
                before = await snapshot(world)
                [answer, *other] = await send(world, actor, *texts, expected=len(texts))
                assert all(is_any_text_answer(m.content) for m in other), where
                assert ASK_CARE_TEAM in (answer.content or ""), (where, answer.content)
                assert answer.reply_markup is None, where
                assert await snapshot(world) == before, where
            case Outcome.ALLOWED:
                texts = [entry.command]
                expected = entry.replies
                if entry.ends_with:
                    texts.append(entry.ends_with[0])
                    expected += 1
                answers = await send(world, actor, *texts, expected=expected)
                first = answers[0].content or ""
                assert expect.fragment in first, (where, first)
                if expect.absent is not None:
                    assert expect.absent not in first, (where, first)
                if entry.ends_with:
                    ends = expect.ended or entry.ends_with[1]
                    assert ends in (answers[-1].content or ""), where


# Staff buttons, pressed with forged callback data by people who may not use them.
FORGED_BUTTONS = {
    "deliveries:page:2": (Actor.STRANGER, Actor.PATIENT),
    "patients:page:2": (Actor.STRANGER, Actor.PATIENT, Actor.STAFF),
    "course:early:confirm": (Actor.STRANGER, Actor.PATIENT, Actor.STAFF),
    "enrol:summary:confirm": (Actor.STRANGER, Actor.PATIENT, Actor.STAFF),
}


@pytest.mark.parametrize("data", list(FORGED_BUTTONS))
async def test_forged_staff_buttons_give_nothing_away(world: Harness, data: str) -> None:
    # Enough patients for a second page of /patients.
    for number in range(3, 13):
        await world.enroll(f"MS-{number:03}")
    for actor in FORGED_BUTTONS[data]:
        user = USERS[actor]
        [own] = await send(world, actor, PROBE, expected=1)  # a message in their own chat
        shown = own.content
        before = await snapshot(world)
        since = mark(world, actor)
        press = await world.api.press_button(user, own, data, forge=True)
        answer = await world.api.wait_for_answer(press)
        assert not answer.get("text"), (data, actor, answer)
        assert (own.content, own.edits) == (shown, []), (data, actor, own.content)
        [refused] = await answers_since(world, since, expected=1)
        assert refused.text == NOT_AVAILABLE, (data, actor, refused.content)
        assert refused.reply_markup is None
        [event] = new_audit_events(before, await snapshot(world))
        denial_of(event, actor)


# --- another team's patients -------------------------------------------------------------------

# A coordinator and a staff member of another team: MS-001 and MS-002 are not theirs.
NORTH_COORDINATOR = FakeUser(id=3002, first_name="Nora", language_code="en")
NORTH_STAFF = FakeUser(id=2002, first_name="Ned", language_code="en")
NO_PATIENT = "No patient with that label."
# Each command that names a patient, as someone of another team gets it: exactly what a
# label that does not exist gets.
OTHER_TEAM = {
    "/course MS-001 2027-01-04": NO_PATIENT,
    "/patient MS-001": NO_PATIENT,
    "/pause MS-001": NO_PATIENT,
    "/resume MS-001": NO_PATIENT,
    "/invite MS-002": NO_PATIENT,
    "/cervix MS-001 no": NO_PATIENT,
    "/forget MS-002": NO_PATIENT,
    "/deliveries MS-001": "No deliveries match.",
    "/deliveries": "No deliveries match.",
    "/patients": "No patients yet. Send /enroll to enrol one.",
}


@pytest.fixture
async def two_teams(world: Harness) -> Harness:
    async with world.sessions.begin() as session:
        north = await teams.create(session, name="north", actor="test", now=world.clock.now())
        for user, role in ((NORTH_COORDINATOR, Role.COORDINATOR), (NORTH_STAFF, Role.STAFF)):
            await store.grant(
                session, user_id=user.id, role=role, actor="test", now=world.clock.now()
            )
            await teams.assign(
                session, team=north, user_id=user.id, actor="test", now=world.clock.now()
            )
    return world


def test_every_command_with_a_label_is_tried_on_another_team() -> None:
    with_label = {entry.command for entry in MATRIX if LABEL.search(entry.command)}
    assert with_label - {"/deliveries MS-001"} <= set(OTHER_TEAM)


@pytest.mark.parametrize("command", list(OTHER_TEAM))
async def test_another_teams_patient_is_as_good_as_unknown(
    two_teams: Harness, command: str
) -> None:
    world = two_teams
    user = NORTH_STAFF if command.startswith("/deliveries") else NORTH_COORDINATOR
    if command.startswith("/resume"):
        await pause_ms001(world)
    before = await snapshot(world)
    world.api.add_user(user)
    sent = len(world.api.messages(user.id))
    await world.api.send_text(user, command)
    [answer] = [await world.api.wait_for_message(user.id, count=sent + 1)]
    assert answer.content == OTHER_TEAM[command], (command, answer.content)
    assert answer.reply_markup is None
    after = await snapshot(world)
    assert {k: v for k, v in after.items() if k != "staff_user"} == {
        k: v for k, v in before.items() if k != "staff_user"
    }, command  # nothing changed (a staff member's language may be learnt)
    if LABEL.search(command) and not command.startswith("/deliveries "):
        unknown = LABEL.sub(UNKNOWN_LABEL, command)
        await world.api.send_text(user, unknown)
        other = await world.api.wait_for_message(user.id, count=sent + 2)
        assert other.content == answer.content


async def test_a_forged_erase_button_for_another_teams_patient_erases_nothing(
    two_teams: Harness,
) -> None:
    world = two_teams
    async with world.sessions() as session:
        target = await store.patient_by_label(session, label="MS-002")
    assert target is not None
    world.api.add_user(NORTH_COORDINATOR)
    [own] = await send_as(world, NORTH_COORDINATOR, "/forget MS-404")
    press = await world.api.press_button(NORTH_COORDINATOR, own, f"erase:{target.id}", forge=True)
    # No erasure was asked about (the confirmation is kept in the database): the press is
    # stale whatever patient it names.
    assert (await world.api.wait_for_answer(press))["text"] == "This button is no longer active."
    async with world.sessions() as session:
        assert await store.patient_by_label(session, label="MS-002") is not None


async def send_as(world: Harness, user: FakeUser, text: str) -> list[SentMessage]:
    sent = len(world.api.messages(user.id))
    await world.api.send_text(user, text)
    await world.api.wait_for_message(user.id, count=sent + 1)
    return world.api.messages(user.id)[sent:]
