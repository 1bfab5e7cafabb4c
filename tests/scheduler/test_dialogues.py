"""Conversations in the database, on a real SQLite file and a real PostgreSQL schema."""

import asyncio
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import dialogues, patient_data
from scheduler.models import Dialogue
from tests.conftest import dump
from tests.scheduler.test_store import enroll, enrolment

NOW = datetime(2025, 12, 29, 8, tzinfo=UTC)
# The patient's chat: a number long enough not to turn up by chance in a dump (token hashes).
PATIENT_CHAT = 987_654_321_987
Sessions = async_sessionmaker[AsyncSession]


async def keep(
    sessions: Sessions,
    name: str,
    *,
    at: datetime = NOW,
    chat_id: int = 1,
    user_id: int = 1,
    step: str = "",
    data: dict[str, object] | None = None,
    patient_id: int | None = None,
) -> None:
    async with sessions.begin() as session:
        await dialogues.keep(
            session,
            chat_id=chat_id,
            user_id=user_id,
            name=name,
            step=step,
            data=data or {},
            now=at,
            lasts=timedelta(minutes=10),
            patient_id=patient_id,
        )


async def under_way(sessions: Sessions, *, at: datetime = NOW, chat_id: int = 1) -> list[str]:
    async with sessions() as session:
        found = await dialogues.under_way(session, chat_id=chat_id, user_id=chat_id, now=at)
    return [f"{open_.name}:{open_.step}" for open_ in found]


async def test_a_conversation_moves_on_and_the_latest_comes_first(sessions: Sessions) -> None:
    await keep(sessions, "enroll", step="LABEL", data={"label": None})
    await keep(sessions, "time", at=NOW + timedelta(minutes=1))
    await keep(sessions, "enroll", step="LANGUAGE", at=NOW + timedelta(minutes=2))
    assert await under_way(sessions, at=NOW + timedelta(minutes=2)) == ["enroll:LANGUAGE", "time:"]
    # Another chat, or the same user elsewhere, has none.
    assert await under_way(sessions, chat_id=2) == []
    # Ten minutes after it was last moved, each has run out.
    assert await under_way(sessions, at=NOW + timedelta(minutes=11)) == ["enroll:LANGUAGE"]
    assert await under_way(sessions, at=NOW + timedelta(minutes=12)) == []


async def test_a_confirmation_is_taken_once(sessions: Sessions) -> None:
    await keep(sessions, "stop", data={"asked": True})

    async def take() -> dialogues.Open | None:
        async with sessions.begin() as session:
            return await dialogues.take(session, chat_id=1, user_id=1, name="stop", now=NOW)

    first, second = await asyncio.gather(take(), take())
    assert [open_ is not None for open_ in (first, second)].count(True) == 1
    taken = first or second
    assert taken is not None
    assert taken.data == {"asked": True}
    # An expired one is gone, but does not count as taken.
    await keep(sessions, "stop")
    async with sessions.begin() as session:
        late = NOW + timedelta(minutes=10)
        assert await dialogues.take(session, chat_id=1, user_id=1, name="stop", now=late) is None
    assert await under_way(sessions) == []


async def test_expired_conversations_are_ended_and_returned(sessions: Sessions) -> None:
    await keep(sessions, "enroll", step="CBP", chat_id=1, user_id=1)
    await keep(sessions, "time", chat_id=2, user_id=2, at=NOW + timedelta(minutes=5))
    async with sessions.begin() as session:
        ended = await dialogues.expire(session, now=NOW + timedelta(minutes=10))
    assert [(open_.chat_id, open_.name, open_.step) for open_ in ended] == [(1, "enroll", "CBP")]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Dialogue)) == 1


async def test_erasing_a_patient_erases_their_conversations(
    sessions: Sessions, db: AsyncEngine
) -> None:
    [first, second] = await enroll(sessions, enrolment("MS-001"), enrolment("MS-002"))
    # A coordinator's confirmation about the patient, and one in the patient's own chat.
    await keep(sessions, "erase", chat_id=501, user_id=501, patient_id=first.patient_id)
    await keep(
        sessions, "consent", chat_id=PATIENT_CHAT, user_id=PATIENT_CHAT, patient_id=first.patient_id
    )
    await keep(sessions, "course", chat_id=501, user_id=501, patient_id=second.patient_id)
    async with sessions.begin() as session:
        assert await patient_data.erase(session, patient_id=first.patient_id, actor="t", now=NOW)
    async with sessions() as session:
        left = list(await session.scalars(select(Dialogue.name)))
    assert left == ["course"]
    assert not re.search(rf"\b{PATIENT_CHAT}\b", await dump(db))
