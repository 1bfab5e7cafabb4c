"""Conversations of several steps, kept in the database.

A user who is half-way through something (an enrolment, a consent after an invite, a
confirmation, the answer to "what time?") has a row per conversation, keyed by chat, user
and conversation name, with the step reached, the answers so far and an expiry. Every
update reads it, so any replica, or this one after a restart, goes on where the user was.
A row holds no more personal data than the finished record would, and erasing a patient
removes the rows about them.

Data access only, like ``store``: keyword-only arguments, the caller's session and
transaction, ``None`` for "not found".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import Dialogue

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Open:
    """A conversation under way."""

    chat_id: int
    user_id: int
    name: str
    step: str
    data: JSON
    patient_id: int | None
    updated_at: datetime
    expires_at: datetime


def _open(row: Dialogue) -> Open:
    return Open(
        row.chat_id,
        row.user_id,
        row.name,
        row.step,
        dict(row.data),
        row.patient_id,
        row.updated_at,
        row.expires_at,
    )


async def under_way(
    session: AsyncSession, *, chat_id: int, user_id: int, now: datetime
) -> list[Open]:
    """The user's conversations in this chat that have not expired, latest first."""
    rows = await session.scalars(
        select(Dialogue)
        .where(Dialogue.chat_id == chat_id, Dialogue.user_id == user_id, Dialogue.expires_at > now)
        .order_by(Dialogue.updated_at.desc(), Dialogue.name)
    )
    return [_open(row) for row in rows]


async def keep(
    session: AsyncSession,
    *,
    chat_id: int,
    user_id: int,
    name: str,
    step: str,
    data: JSON,
    now: datetime,
    lasts: timedelta,
    patient_id: int | None = None,
) -> None:
    """Start the conversation ``name`` at ``step`` or move it there, with ``data`` as its
    answers so far; it expires ``lasts`` after now."""
    await end(session, chat_id=chat_id, user_id=user_id, name=name)
    session.add(
        Dialogue(
            chat_id=chat_id,
            user_id=user_id,
            name=name,
            step=step,
            data=data,
            patient_id=patient_id,
            updated_at=now,
            expires_at=now + lasts,
        )
    )
    await session.flush()


async def end(session: AsyncSession, *, chat_id: int, user_id: int, name: str) -> bool:
    """End the conversation; False if there was none."""
    result = await session.execute(
        delete(Dialogue).where(
            Dialogue.chat_id == chat_id, Dialogue.user_id == user_id, Dialogue.name == name
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def take(
    session: AsyncSession, *, chat_id: int, user_id: int, name: str, now: datetime
) -> Open | None:
    """End the conversation and return it, if it was under way: a confirmation that two
    presses (or two replicas) cannot both act on."""
    row = await session.get(Dialogue, (chat_id, user_id, name), with_for_update=True)
    if row is None:
        return None
    found = _open(row)
    await session.delete(row)
    await session.flush()
    return found if found.expires_at > now else None


async def expire(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[Open]:
    """End the conversations whose time ran out and return them (for a notice to those
    whom one was abandoned on)."""
    rows = list(
        await session.scalars(
            select(Dialogue)
            .where(Dialogue.expires_at <= now)
            .order_by(Dialogue.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    found = [_open(row) for row in rows]
    for row in rows:
        await session.delete(row)
    await session.flush()
    return found


async def forget(
    session: AsyncSession, *, patient_ids: Sequence[int], chat_id: int | None = None
) -> None:
    """Erase the conversations about these patients, and every one in ``chat_id`` (the
    patient's own chat)."""
    conditions: list[ColumnElement[bool]] = []
    if patient_ids:
        conditions.append(Dialogue.patient_id.in_(patient_ids))
    if chat_id is not None:
        conditions.append(Dialogue.chat_id == chat_id)
    if conditions:
        await session.execute(delete(Dialogue).where(or_(*conditions)))
