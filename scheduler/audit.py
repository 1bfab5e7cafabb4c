"""The audit trail: who did what, when (``AuditEvent``). Its own module so that every part
of ``scheduler`` can write it without importing ``store``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import AuditEvent


def audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Append an audit event (no personal data: targets are ids, not labels)."""
    session.add(AuditEvent(at=now, actor=actor, action=action, target=target, detail=detail))
