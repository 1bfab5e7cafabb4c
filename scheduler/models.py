"""Database tables (SQLAlchemy 2). The schema itself is owned by the Alembic migrations.

No names, dates of birth or free-text clinical notes are stored: a patient is the
pseudonymous label the clinic uses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Time,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from scheduler.statuses import AlertStatus, PatientStatus, ReminderStatus


def follow_up_predicate(table: str = "") -> str:
    """Sent test reminders that may still get a follow-up: ``ix_reminder_followup``'s
    predicate, which the sweep's query repeats as literal SQL (a bound parameter would keep
    PostgreSQL from proving that the partial index applies)."""
    column = f"{table}." if table else ""
    return (
        f"{column}status = 'sent' AND {column}followups < 3 AND {column}pending IS NULL "
        f"AND {column}kind IN ('labs_monthly', 'thyroid_quarterly')"
    )


FOLLOW_UP_PREDICATE = follow_up_predicate()


# Reminders that have had a status change: all but those planned and untouched since
# (``changed_at`` still their creation). ``ix_reminder_changed_at_id``'s predicate, which
# the delivery log repeats with the status as a literal (see ``follow_up_predicate``).
ACTIVITY_PREDICATE = "status != 'planned' OR changed_at != created_at"
# Reminders in the queue or claimed: ``ix_reminder_ready_at``'s predicate.
QUEUED_PREDICATE = "ready_at IS NOT NULL"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; SQLite keeps no offset, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        # A team's patients, read from the index alone (the delivery log's team views).
        Index("ix_patient_team_id", "team_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The clinic's pseudonym. An erased patient's row is deleted (``patient_data.erase``).
    label: Mapped[str] = mapped_column(String(64), unique=True)
    locale: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    send_time: Mapped[time] = mapped_column(Time)
    cbp: Mapped[bool] = mapped_column(Boolean)
    # Adds the cervical screening line to the yearly reminder (not every patient with a
    # cervix can become pregnant, so it is a flag of its own; default: the CBP answer).
    cervix: Mapped[bool] = mapped_column(Boolean)
    prophylaxis_days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=PatientStatus.INVITED)
    chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    # The coordinator (Telegram user id) who enrolled the patient and is told first.
    coordinator_id: Mapped[int | None] = mapped_column(BigInteger)
    # The care team whose coordinators and staff see the patient and get the alerts.
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id"))
    plan_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]

    # Loaded explicitly (selectinload / refresh): lazy loading cannot work under asyncio.
    courses: Mapped[list[Course]] = relationship(
        back_populates="patient",
        order_by="Course.number",
        cascade="all, delete-orphan",
        lazy="raise",
    )


class Course(Base):
    __tablename__ = "course"
    __table_args__ = (UniqueConstraint("patient_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    start: Mapped[date] = mapped_column(Date)
    days: Mapped[int] = mapped_column(Integer)

    patient: Mapped[Patient] = relationship(back_populates="courses", lazy="raise")


class Consent(Base):
    __tablename__ = "consent"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    text_hash: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class Invite(Base):
    __tablename__ = "invite"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the token; the token itself is only ever shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


def _created_at(context: Any) -> Any:
    """A new reminder's ``changed_at``: its ``created_at``."""
    return context.get_current_parameters()["created_at"]


class Reminder(Base):
    """One planned reminder: the outbox row the dispatcher claims and sends."""

    __tablename__ = "reminder"
    __table_args__ = (
        UniqueConstraint("patient_id", "kind", "occurrence"),
        # The queue: due first, and first queued first among those due at one instant.
        # Partial: only what is queued or claimed (the queue reads ``ready_at <= now``), not
        # the planned and the finished, most of the table.
        Index(
            "ix_reminder_ready_at",
            "ready_at",
            "id",
            postgresql_where=text(QUEUED_PREDICATE),
            sqlite_where=text(QUEUED_PREDICATE),
        ),
        Index("ix_reminder_patient_id_due_at", "patient_id", "due_at"),
        # The delivery log, newest or oldest first, without a patient filter; covering what
        # its activity view tests of the reminders due lately (see scheduler.deliveries).
        Index(
            "ix_reminder_due_at_id",
            "due_at",
            "id",
            "patient_id",
            "status",
            "changed_at",
            "created_at",
        ),
        # Its activity view, newest status change first, with or without a status filter;
        # partial, without the reminders of new plans that nothing happened to yet; with
        # the patient, so a team's view reads the index only.
        Index(
            "ix_reminder_changed_at_id",
            "changed_at",
            "id",
            "patient_id",
            postgresql_where=text(ACTIVITY_PREDICATE),
            sqlite_where=text(ACTIVITY_PREDICATE),
        ),
        Index("ix_reminder_status_changed_at_id", "status", "changed_at", "id", "patient_id"),
        # The follow-up sweep: sent test reminders that may still need a nudge or an alert.
        # Partial, so its cost follows the few such rows, not the size of the table.
        Index(
            "ix_reminder_followup",
            "due_at",
            postgresql_where=text(FOLLOW_UP_PREDICATE),
            sqlite_where=text(FOLLOW_UP_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    occurrence: Mapped[str] = mapped_column(String(32))
    local_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime]
    about: Mapped[date | None] = mapped_column(Date)
    course: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ReminderStatus.PLANNED)
    plan_version: Mapped[int] = mapped_column(Integer)
    # When the dispatcher may take the item: the due instant, a retry time or the end of
    # a lease. NULL while it is not queued (patient not yet consented, paused, finished).
    ready_at: Mapped[datetime | None]
    # Tries of the current send (its retry budget); a new send (a snooze, a follow-up)
    # starts again from 0.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Follow-ups already made for an unconfirmed test: 1 and 2 are the nudges after 3 and
    # 7 days, 3 the coordinator alert after 10 days.
    followups: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]
    # When the status last changed (set by the outbox with each change); at first, when
    # the row was made.
    changed_at: Mapped[datetime] = mapped_column(default=_created_at)
    # What the queued send is (``sending.Purpose``): NULL, the reminder itself; "again",
    # postponed by the patient; "nudge", a follow-up.
    pending: Mapped[str | None] = mapped_column(String(8))
    # Every claim counts up; (id, claim) names one claim, which only its holder may finish.
    claim: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The process (``process.id``) holding the claim while the reminder is being sent.
    claimed_by: Mapped[int | None] = mapped_column(Integer)
    # When Telegram first accepted it: a reminder once sent is never re-planned.
    first_sent_at: Mapped[datetime | None]

    @property
    def next_at(self) -> datetime:
        """When it goes out next: a postponed reminder at its new time, else when due."""
        return self.ready_at if self.pending and self.ready_at else self.due_at


class DeliveryEvent(Base):
    """Append-only history of a reminder's status, as staff read it."""

    __tablename__ = "delivery_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    reminder_id: Mapped[int] = mapped_column(
        ForeignKey("reminder.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(index=True)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[int | None] = mapped_column(Integer)
    # A reason or Telegram's error description; never message text or personal data.
    detail: Mapped[str | None] = mapped_column(String(255))
    # The same change again and again (a chat that keeps answering 429): one row, counted.
    repeats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime | None]


class CoordinatorAlert(Base):
    """Something one recipient (the coordinator, or the alert chat) must be told about a
    patient: queued in the transaction that raised it, sent and retried by the dispatcher.

    The text is made when it is sent, from the patient's label at that time, in the
    recipient's language. An alert that found nobody to tell is kept as a failed row
    without a chat, which ``doctor`` and ``/healthz`` report."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_ready_at", "ready_at"),
        # The alerts list, newest first.
        Index("ix_alert_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    # The recipient's chat: a staff member's Telegram id or the alert group, never a
    # patient; NULL when there was nobody to tell.
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # Who the recipient is to the patient (``alerts.Route``): their own coordinator, another
    # coordinator of the team, or the alert chat. When the patient's own coordinator cannot
    # be reached, the team is told instead.
    route: Mapped[str] = mapped_column(String(16), default="team", server_default="team")
    # What the alert is about: a reminder's kind and local date, a course's date.
    reminder_kind: Mapped[str | None] = mapped_column(String(32))
    day: Mapped[date | None] = mapped_column(Date)
    about: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.QUEUED)
    # As for reminders: when it may be taken (now, a retry time, a lease's end); NULL once
    # it is sent or has failed.
    ready_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[int | None] = mapped_column(Integer)
    # Telegram's error description; never message text or personal data.
    detail: Mapped[str | None] = mapped_column(String(255))
    claimed_by: Mapped[int | None] = mapped_column(Integer)


class AlertEvent(Base):
    """Append-only history of an alert's status, as for reminders (``DeliveryEvent``)."""

    __tablename__ = "alert_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(255))
    repeats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime | None]


class Process(Base):
    """A running dispatcher. Its heartbeat says it is alive; the claims of one that
    stopped beating are taken back by the others within seconds."""

    __tablename__ = "process"

    id: Mapped[int] = mapped_column(primary_key=True)
    # host and pid, for the operator: which process this was.
    name: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)


class Acknowledgement(Base):
    __tablename__ = "acknowledgement"

    id: Mapped[int] = mapped_column(primary_key=True)
    reminder_id: Mapped[int] = mapped_column(
        ForeignKey("reminder.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]


class StaffUser(Base):
    __tablename__ = "staff_user"

    telegram_user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(64))
    # The language their alerts are written in: their Telegram language when shipped,
    # learnt from their commands; NULL until then (the bot's default).
    locale: Mapped[str | None] = mapped_column(String(16))
    # The zone they read times in, set with /timezone; NULL: the bot's default zone.
    timezone: Mapped[str | None] = mapped_column(String(64))


class Team(Base):
    """A care team: its coordinators and staff see and act on its patients only."""

    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class TeamMember(Base):
    """A coordinator or staff member in a team (admins are in every team without a row)."""

    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_user.telegram_user_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )


class ErasedCount(Base):
    """What is left of erased patients: how many of their reminders, of each kind, ended
    in each status. Summed over every erasure, so no row points to one patient."""

    __tablename__ = "erased_count"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    reminders: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    """Who did what, when: coordinator and admin actions and consent changes."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(255))


class Dialogue(Base):
    """Where a user is in a conversation of several steps (an enrolment, a consent, a
    confirmation), keyed by chat, user and conversation and read on every update: any
    replica, or this one after a restart, goes on from here. ``data`` holds the answers so
    far, never more than the finished record would."""

    __tablename__ = "dialogue"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The patient the dialogue is about, if any: erasing the patient removes it.
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PeriodicRun(Base):
    """Work that one process of many does per interval (the follow-up sweep, housekeeping):
    the process that moves ``started_at`` forward runs it."""

    __tablename__ = "periodic_run"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    process: Mapped[str | None] = mapped_column(String(128))


class WebLogin(Base):
    """A one-time link into the web console, sent by the bot on ``/web``: single use and
    short-lived. Only the SHA-256 of the token is kept."""

    __tablename__ = "web_login"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A Telegram user id; no foreign key, so that revoking a role leaves the trail intact.
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser: the cookie's token as its SHA-256, the staff member and the
    language chosen in the console (NULL: their Telegram language)."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    locale: Mapped[str | None] = mapped_column(String(16))
