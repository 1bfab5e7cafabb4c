"""The follow-up sweep: nudges for unconfirmed tests, and the coordinator's alert.

PROTOCOL.md: a test reminder not confirmed with Done gets a nudge after 3 and after 7
days, and the coordinator an alert after 10. The sweep finds those due (one partial index,
``ix_reminder_followup``, so its cost follows the few candidates, not the table) and hands
each message's tests to ``outbox.follow_up``: the nudge is queued and sent by the
dispatcher like any other message, the alert is queued for the coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import outbox
from scheduler.models import Patient, Reminder, follow_up_predicate
from scheduler.statuses import PatientStatus

# Days after the due date: nudge, nudge, coordinator alert.
FOLLOW_UP_DAYS: Final = (3, 7, 10)


@dataclass
class SweepReport:
    nudged: int = 0  # nudges queued
    alerted: int = 0  # coordinator alerts queued


def stage(days_overdue: int) -> int:
    """How many follow-ups a test this overdue should have had (0 to 3)."""
    return sum(days_overdue >= days for days in FOLLOW_UP_DAYS)


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    alert_chat_id: int | None = None,
) -> SweepReport:
    """Queue the follow-ups that are due.

    The tests of one message are followed up together. A long downtime does not give the
    patient two nudges at once: the latest stage due is the one made.
    """
    report = SweepReport()
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(Reminder, Patient)
                .join(Patient, Patient.id == Reminder.patient_id)
                .where(
                    # The partial index's predicate, so that both databases use it.
                    text(follow_up_predicate("reminder")),
                    Reminder.due_at <= now - timedelta(days=FOLLOW_UP_DAYS[0]),
                    Patient.status == PatientStatus.ACTIVE,
                )
                .order_by(Reminder.due_at, Reminder.id)
            )
        ).all()
        bundles: dict[tuple[int, datetime], list[tuple[Reminder, Patient]]] = {}
        for row in rows:
            bundles.setdefault((row.Patient.id, row.Reminder.due_at), []).append(
                (row.Reminder, row.Patient)
            )
        for items in bundles.values():
            patient = items[0][1]
            reminders = [reminder for reminder, _ in items]
            today = now.astimezone(ZoneInfo(patient.timezone)).date()
            days = (today - reminders[0].local_date).days
            due = stage(days)
            if due <= min(r.followups for r in reminders):
                continue
            await outbox.follow_up(
                session,
                bundle=reminders,
                patient=patient,
                stage=due,
                days=days,
                now=now,
                alert_chat_id=alert_chat_id,
                last_stage=len(FOLLOW_UP_DAYS),
            )
            if due == len(FOLLOW_UP_DAYS):
                report.alerted += 1
            else:
                report.nudged += 1
    return report
