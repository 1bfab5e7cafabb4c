"""Sign-in to the web console through Telegram: one-time login links and server-side
sessions.

A staff member sends ``/web`` and gets a link with a random token; opening it redeems the
token once, within ten minutes, and opens a session of eight hours. Tokens are stored only
as SHA-256 hashes, so the table alone lets nobody in. The rows name staff by their Telegram
id and hold no patient data: erasing a patient leaves them alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import StaffUser, WebLogin, WebSession

LOGIN_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=8)
# What ``secrets.token_urlsafe(32)`` writes; anything else is refused before a query.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str | None) -> bool:
    """Whether ``token`` looks like one this module issues."""
    return token is not None and _TOKEN.fullmatch(token) is not None


def csrf_for(token: str) -> str:
    """The CSRF token of the session ``token``: derived from it, so it is never stored and
    only the holder of the session cookie can know it."""
    return hmac.new(token.encode(), b"remindbot web console csrf", hashlib.sha256).hexdigest()


def csrf_matches(token: str, offered: str | None) -> bool:
    """Whether a form's CSRF field belongs to the session ``token``."""
    return offered is not None and hmac.compare_digest(csrf_for(token), offered)


async def issue_login(session: AsyncSession, *, user_id: int, now: datetime) -> str:
    """A new one-time login token for ``user_id``, valid for ``LOGIN_TTL``."""
    token = _new_token()
    session.add(
        WebLogin(
            token_hash=_hash(token), user_id=user_id, created_at=now, expires_at=now + LOGIN_TTL
        )
    )
    await session.flush()
    return token


async def redeem_login(session: AsyncSession, *, token: str, now: datetime) -> int | None:
    """The user a login token was issued to, using it up; None for a malformed, unknown,
    expired or used token, or a user who no longer has a staff role."""
    if not well_formed(token):
        return None
    # One statement marks it used, so two replicas opening the same link cannot both win.
    user_id = await session.scalar(
        update(WebLogin)
        .where(
            WebLogin.token_hash == _hash(token),
            WebLogin.used_at.is_(None),
            WebLogin.expires_at > now,
        )
        .values(used_at=now)
        .returning(WebLogin.user_id)
    )
    if user_id is None:
        return None
    role = await session.scalar(select(StaffUser.role).where(StaffUser.telegram_user_id == user_id))
    return user_id if role is not None else None


async def open_session(session: AsyncSession, *, user_id: int, now: datetime) -> tuple[str, str]:
    """A new session for ``user_id``: its cookie token and its CSRF token."""
    token = _new_token()
    session.add(
        WebSession(
            token_hash=_hash(token), user_id=user_id, created_at=now, expires_at=now + SESSION_TTL
        )
    )
    await session.flush()
    return token, csrf_for(token)


async def session_of(
    session: AsyncSession, *, token: str | None, now: datetime
) -> WebSession | None:
    """The open session of a cookie token; None when malformed, unknown, closed or expired."""
    if token is None or not well_formed(token):
        return None
    return await session.scalar(
        select(WebSession).where(WebSession.token_hash == _hash(token), WebSession.expires_at > now)
    )


async def close_session(session: AsyncSession, *, session_id: int) -> None:
    """End one session (logout)."""
    await session.execute(delete(WebSession).where(WebSession.id == session_id))


async def close_sessions(session: AsyncSession, *, user_id: int) -> int:
    """End every session of ``user_id`` (their role was revoked); how many there were."""
    result = await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def set_session_locale(session: AsyncSession, *, session_id: int, locale: str) -> None:
    """The language the console shows in this session."""
    await session.execute(
        update(WebSession).where(WebSession.id == session_id).values(locale=locale)
    )


async def expire(session: AsyncSession, *, now: datetime) -> int:
    """Delete login tokens and sessions past their expiry; how many rows went."""
    logins = await session.execute(delete(WebLogin).where(WebLogin.expires_at <= now))
    sessions = await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    return sum(int(getattr(result, "rowcount", 0) or 0) for result in (logins, sessions))
