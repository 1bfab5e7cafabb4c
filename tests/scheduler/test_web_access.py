"""Sign-in links and sessions of the web console, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import store, web_access
from scheduler.models import WebLogin, WebSession
from scheduler.statuses import Role
from tests.conftest import dump

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
STAFF = 4242


@pytest.fixture
async def staff(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions.begin() as session:
        await store.grant(session, user_id=STAFF, role=Role.STAFF, actor="test", now=NOW)
    return STAFF


async def _issue(sessions: async_sessionmaker[AsyncSession], user_id: int = STAFF) -> str:
    async with sessions.begin() as session:
        return await web_access.issue_login(session, user_id=user_id, now=NOW)


async def _redeem(
    sessions: async_sessionmaker[AsyncSession], token: str, now: datetime = NOW
) -> int | None:
    async with sessions.begin() as session:
        return await web_access.redeem_login(session, token=token, now=now)


async def test_a_login_link_signs_in_once(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    token = await _issue(sessions)

    assert await _redeem(sessions, token, NOW + timedelta(minutes=9)) == staff
    assert await _redeem(sessions, token, NOW + timedelta(minutes=9)) is None


async def test_a_login_link_expires_after_ten_minutes(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    token = await _issue(sessions)

    assert await _redeem(sessions, token, NOW + timedelta(minutes=10)) is None


@pytest.mark.parametrize("token", ["", "short", "x" * 65, "a" * 43 + "!", "' OR 1=1 --", "A" * 43])
async def test_malformed_or_unknown_tokens_are_refused(
    sessions: async_sessionmaker[AsyncSession], staff: int, token: str
) -> None:
    await _issue(sessions)

    assert await _redeem(sessions, token) is None


async def test_a_revoked_role_cannot_sign_in(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    token = await _issue(sessions)
    async with sessions.begin() as session:
        await store.revoke(session, user_id=staff, actor="test", now=NOW)

    assert await _redeem(sessions, token) is None


async def test_only_hashes_are_stored(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine, staff: int
) -> None:
    token = await _issue(sessions)
    async with sessions.begin() as session:
        cookie, csrf = await web_access.open_session(session, user_id=staff, now=NOW)

    rows = await dump(db)
    assert token not in rows
    assert cookie not in rows
    assert csrf not in rows
    assert hashlib.sha256(token.encode()).hexdigest() in rows


async def test_a_session_lasts_eight_hours(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    async with sessions.begin() as session:
        cookie, csrf = await web_access.open_session(session, user_id=staff, now=NOW)

    async with sessions() as session:
        found = await web_access.session_of(
            session, token=cookie, now=NOW + timedelta(hours=7, minutes=59)
        )
        assert found is not None
        assert found.user_id == staff
        assert found.locale is None
        assert web_access.csrf_matches(cookie, csrf)
        assert not web_access.csrf_matches(cookie, csrf[:-1])
        assert not web_access.csrf_matches(cookie, None)
        assert (
            await web_access.session_of(session, token=cookie, now=NOW + timedelta(hours=8)) is None
        )
        assert await web_access.session_of(session, token=None, now=NOW) is None
        assert await web_access.session_of(session, token="nope", now=NOW) is None


async def test_closing_and_the_locale_of_a_session(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    async with sessions.begin() as session:
        first, _ = await web_access.open_session(session, user_id=staff, now=NOW)
        second, _ = await web_access.open_session(session, user_id=staff, now=NOW)
        other, _ = await web_access.open_session(session, user_id=staff + 1, now=NOW)
    async with sessions.begin() as session:
        row = await web_access.session_of(session, token=first, now=NOW)
        assert row is not None
        await web_access.set_session_locale(session, session_id=row.id, locale="ar")
    async with sessions.begin() as session:
        row = await web_access.session_of(session, token=first, now=NOW)
        assert row is not None
        assert row.locale == "ar"
        await web_access.close_session(session, session_id=row.id)
    async with sessions.begin() as session:
        assert await web_access.session_of(session, token=first, now=NOW) is None
        assert await web_access.session_of(session, token=second, now=NOW) is not None
        assert await web_access.close_sessions(session, user_id=staff) == 1
        assert await web_access.session_of(session, token=second, now=NOW) is None
        assert await web_access.session_of(session, token=other, now=NOW) is not None


async def test_expire_removes_old_links_and_sessions(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    await _issue(sessions)
    async with sessions.begin() as session:
        await web_access.open_session(session, user_id=staff, now=NOW)
    later = NOW + timedelta(hours=1)
    async with sessions.begin() as session:
        await web_access.issue_login(session, user_id=staff, now=later)
        fresh, _ = await web_access.open_session(session, user_id=staff, now=later)

    async with sessions.begin() as session:
        assert await web_access.expire(session, now=NOW + timedelta(hours=8, minutes=5)) == 3
    async with sessions() as session:
        # Both links are past their ten minutes; the later session has an hour left.
        assert await session.scalar(select(func.count()).select_from(WebLogin)) == 0
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 1
        assert await web_access.session_of(session, token=fresh, now=later) is not None


async def test_revoking_the_role_ends_the_sessions_at_once(
    sessions: async_sessionmaker[AsyncSession], staff: int
) -> None:
    async with sessions.begin() as session:
        cookie, _ = await web_access.open_session(session, user_id=staff, now=NOW)
    async with sessions.begin() as session:
        assert await store.revoke(session, user_id=staff, actor="test", now=NOW)
    async with sessions() as session:
        assert await web_access.session_of(session, token=cookie, now=NOW) is None
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0
