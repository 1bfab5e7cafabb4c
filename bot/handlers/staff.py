"""Staff and admins: the delivery log, the web console's sign-in link and staff roles."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.error import BadRequest
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import dialogues
from bot.auth import requires
from bot.context import BotContext
from bot.handlers.common import PRIVATE, Handlers, reply, user_translator, viewer_zone, when
from bot.i18n import Translator
from bot.texts import KIND_TITLES, MEMBERSHIP, team_line
from scheduler import store, teams, web_access
from scheduler.deliveries import DeliveryEntry, StatusChange, count_deliveries, delivery_log
from scheduler.errors import N_, ValidationError
from scheduler.protocol import Kind
from scheduler.statuses import UNSENT, ReminderStatus, Role

log = logging.getLogger(__name__)
PAGE_SIZE = 10
PAGE_PREFIX = "deliveries:page:"
# How long the buttons under a /deliveries message keep working.
LISTING_LASTS = timedelta(hours=1)
# Keeps a page inside Telegram's 4096 characters even for items retried many times.
HISTORY_LINES = 8
DETAIL_CHARACTERS = 100
MESSAGE_CHARACTERS = 4000

STATUSES = tuple(status.value for status in ReminderStatus)
ROLES = tuple(role.value for role in Role)
_PAGE = re.compile(rf"{PAGE_PREFIX}(\d{{1,6}})", re.ASCII)
FILTER_PREFIX = "deliveries:status:"
# The statuses staff look for most, offered as buttons under the log; "all" clears it.
FILTER_STATUSES = ("failed", "retrying", "expired", "sent")
ALL = "all"
_USER_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
_MAX_USER_ID = 2**63 - 1  # the column is a signed 64-bit integer
_KINDS = frozenset(kind.value for kind in Kind)

NO_DELIVERIES = N_("No deliveries match.")


class DeliveriesUsage(ValidationError):
    # TRANSLATORS: keep "/deliveries" as it is; LABEL and STATUS may be translated.
    template = N_("Usage: /deliveries [LABEL] [STATUS], for example /deliveries MS-001 failed.")


class UnknownStatus(ValidationError):
    # TRANSLATORS: %(value)s is what the staff member typed; the choices stay in English.
    template = N_("%(value)s is not a delivery status. Choose one of: %(choices)s.")


class GrantUsage(ValidationError):
    # TRANSLATORS: keep "/grant" and the role names as they are.
    template = N_("Usage: /grant USER_ID ROLE, with ROLE one of: %(choices)s.")


class RevokeUsage(ValidationError):
    # TRANSLATORS: keep "/revoke" as it is.
    template = N_("Usage: /revoke USER_ID")


class InvalidUserId(ValidationError):
    # TRANSLATORS: %(value)s is what the admin typed.
    template = N_("%(value)s is not a Telegram user id. Use the number, e.g. 123456789.")


class UnknownRole(ValidationError):
    # TRANSLATORS: %(value)s is what the admin typed; the role names stay in English.
    template = N_("%(value)s is not a role. Choose one of: %(choices)s.")


def _shorten(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


# --- /deliveries -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    """The filter of the latest ``/deliveries`` message, kept as a conversation in the
    database: its buttons carry nothing but a page number or a status."""

    label: str | None
    status: str | None
    # Only items due before the listing was asked for, so its pages do not shift.
    until: datetime
    chat_id: int = 0
    message_id: int = 0

    def to_data(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "until": self.until.isoformat()}

    @classmethod
    def from_data(cls, data: dict[str, object]) -> Listing:
        values = dict(data)
        values["until"] = datetime.fromisoformat(str(values["until"]))
        return cls(**values)  # type: ignore[arg-type]


def parse_deliveries_args(args: Sequence[str]) -> tuple[str | None, str | None]:
    """``[LABEL] [STATUS]`` as (label, status); a single word that is a status is a status."""
    if len(args) > 2:
        raise DeliveriesUsage()
    if len(args) == 1 and args[0].lower() in STATUSES:
        return None, args[0].lower()
    label = args[0] if args else None
    status = args[1].lower() if len(args) == 2 else None
    if status is not None and status not in STATUSES:
        raise UnknownStatus(value=_shorten(args[1], 32), choices=", ".join(STATUSES))
    return label, status


def _due_line(entry: DeliveryEntry, zone: str, tr: Translator) -> str:
    """The due instant in the viewer's zone; for a reminder still to be sent, also on the
    patient's clock where it reads otherwise. A reminder once sent keeps its instant (no
    re-plan moves it) and shows only that: the patient may have moved zone since."""
    due = when(entry.due_at, zone, tr)
    viewer = entry.due_at.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    patient = entry.due_at.astimezone(ZoneInfo(entry.timezone)).replace(tzinfo=None)
    if viewer == patient or entry.status not in UNSENT:
        # TRANSLATORS: when a reminder was (or is) due, e.g. "Due: February 5, 2026, 9:00 AM
        # (Berlin)", in the staff member's time zone.
        return tr.gettext("Due: %(when)s") % {"when": due}
    # TRANSLATORS: when a reminder was (or is) due in the staff member's time zone, then
    # on the patient's clock, e.g. "Due: February 5, 2026, 8:00 AM (UTC); patient's time:
    # February 5, 2026, 9:00 AM (Berlin)".
    return tr.gettext("Due: %(when)s; patient's time: %(local)s") % {
        "when": due,
        "local": when(entry.due_at, entry.timezone, tr),
    }


def _reason(change: StatusChange, tr: Translator) -> str | None:
    detail = _shorten(change.detail, DETAIL_CHARACTERS) if change.detail else None
    if change.error_code is None:
        return detail
    if detail is None:
        return tr.gettext("error %(code)d") % {"code": change.error_code}
    # TRANSLATORS: e.g. "Bad Request: chat not found, error 400" (Telegram's own words).
    return tr.gettext("%(detail)s, error %(code)d") % {"detail": detail, "code": change.error_code}


def _change_line(change: StatusChange, zone: str, tr: Translator) -> str:
    """One change of the history, when it happened, in the viewer's zone."""
    values = {"status": change.status, "when": when(change.at, zone, tr)}
    reason = _reason(change, tr)
    if reason is None:
        # TRANSLATORS: one change in a reminder's history: "sent: <date, time>".
        return "• " + tr.gettext("%(status)s: %(when)s") % values
    # TRANSLATORS: one change in a reminder's history: "failed: <date, time> (<reason>)".
    return "• " + tr.gettext("%(status)s: %(when)s (%(reason)s)") % {**values, "reason": reason}


def _entry_text(entry: DeliveryEntry, zone: str, tr: Translator) -> str:
    title = tr.gettext(KIND_TITLES[Kind(entry.kind)]) if entry.kind in _KINDS else entry.kind
    # TRANSLATORS: shown instead of the label of a patient whose data was erased.
    label = entry.label
    if entry.attempts:
        # TRANSLATORS: %(status)s stays in English: staff type it to filter the log.
        status = tr.ngettext(
            "Status: %(status)s (%(count)d attempt)",
            "Status: %(status)s (%(count)d attempts)",
            entry.attempts,
        ) % {"status": entry.status, "count": entry.attempts}
    else:
        # TRANSLATORS: %(status)s stays in English: staff type it to filter the log.
        status = tr.gettext("Status: %(status)s") % {"status": entry.status}
    lines = [
        # TRANSLATORS: a reminder in the delivery log: its title and the patient's label.
        tr.gettext("%(title)s — %(label)s") % {"title": title, "label": label},
        _due_line(entry, zone, tr),
        status,
    ]
    history = entry.history[-HISTORY_LINES:]
    earlier = len(entry.history) - len(history)
    if earlier:
        lines.append(
            "• "
            + tr.ngettext("… %(count)d earlier change", "… %(count)d earlier changes", earlier)
            % {"count": earlier}
        )
    lines += [_change_line(change, zone, tr) for change in history]
    return "\n".join(lines)


def _page_text(
    listing: Listing,
    entries: Sequence[DeliveryEntry],
    *,
    page: int,
    total: int,
    zone: str,
    tr: Translator,
) -> str:
    first = page * PAGE_SIZE + 1
    lines = [
        # TRANSLATORS: the delivery log's heading; the numbers say which items of how many.
        tr.gettext("Deliveries due so far, newest first: %(first)d–%(last)d of %(total)d")
        % {"first": first, "last": first + len(entries) - 1, "total": total}
    ]
    filters = []
    if listing.label is not None:
        # TRANSLATORS: part of "Filter: patient MS-001, status failed".
        filters.append(tr.gettext("patient %(label)s") % {"label": listing.label})
    if listing.status is not None:
        # TRANSLATORS: part of "Filter: patient MS-001, status failed".
        filters.append(tr.gettext("status %(status)s") % {"status": listing.status})
    if filters:
        # TRANSLATORS: e.g. "Filter: patient MS-001, status failed".
        lines.append(tr.gettext("Filter: %(filters)s") % {"filters": ", ".join(filters)})
    for entry in entries:
        lines += ["", _entry_text(entry, zone, tr)]
    return _shorten("\n".join(lines), MESSAGE_CHARACTERS)


def _page_keyboard(
    page: int, pages: int, status: str | None, tr: Translator
) -> InlineKeyboardMarkup:
    """◀ / ▶ when there is more than one page, then the status filters (the one in use
    marked, "all" while one is set)."""
    rows = []
    arrows = []
    if page > 0:
        arrows.append(InlineKeyboardButton("◀", callback_data=f"{PAGE_PREFIX}{page - 1}"))
    if page < pages - 1:
        arrows.append(InlineKeyboardButton("▶", callback_data=f"{PAGE_PREFIX}{page + 1}"))
    if arrows:
        rows.append(arrows)
    filters = [
        InlineKeyboardButton(
            f"• {name}" if name == status else name, callback_data=f"{FILTER_PREFIX}{name}"
        )
        for name in FILTER_STATUSES
    ]
    if status is not None:
        # TRANSLATORS: button under the delivery log: show every status again.
        filters.append(
            InlineKeyboardButton(tr.gettext("all"), callback_data=f"{FILTER_PREFIX}{ALL}")
        )
    rows.append(filters)
    return InlineKeyboardMarkup(rows)


async def _render_page(
    context: BotContext, update: Update, listing: Listing, page: int, tr: Translator
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text and buttons of a page, of the user's teams' patients only (read again for
    every page: a role or a team may have changed); a page beyond the end shows the last."""
    label, status, until = listing.label, listing.status, listing.until
    user = update.effective_user
    async with context.sessions() as session:
        scope = await teams.scope_of(session, user_id=user.id) if user else teams.Scope(frozenset())
        total = await count_deliveries(
            session, scope=scope, label=label, status=status, until=until
        )
        pages = -(-total // PAGE_SIZE)
        page = max(0, min(page, pages - 1))
        entries = await delivery_log(
            session,
            scope=scope,
            label=label,
            status=status,
            until=until,
            limit=PAGE_SIZE,
            offset=page * PAGE_SIZE,
        )
    if not entries:
        # With a status filter set, the buttons stay: "all" goes back.
        keyboard = _page_keyboard(0, 0, status, tr) if status is not None else None
        return tr.gettext(NO_DELIVERIES), keyboard
    zone = await viewer_zone(context, user)
    text = _page_text(listing, entries, page=page, total=total, zone=zone, tr=tr)
    return text, _page_keyboard(page, pages, status, tr)


@requires(Role.STAFF)
async def deliveries(update: Update, context: BotContext) -> None:
    """``/deliveries [LABEL] [STATUS]``: the delivery log, newest first, in pages."""
    chat = update.effective_chat
    if chat is None:
        return
    tr = user_translator(update.effective_user, context)
    try:
        label, status = parse_deliveries_args(context.args or [])
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    listing = Listing(label=label, status=status, until=context.clock.now())
    text, keyboard = await _render_page(context, update, listing, 0, tr)
    message = await chat.send_message(text, reply_markup=keyboard)
    if keyboard is None:
        await dialogues.end(update, context, dialogues.LISTING)
    else:
        await _keep_listing(
            update,
            context,
            dataclasses.replace(listing, chat_id=chat.id, message_id=message.message_id),
        )


async def _keep_listing(update: Update, context: BotContext, listing: Listing) -> None:
    """The listing its buttons page through; about one patient, it is erased with them."""
    patient_id = None
    if listing.label is not None:
        async with context.sessions() as session:
            found = await store.patient_by_label(session, label=listing.label)
        patient_id = found.id if found is not None else None
    await dialogues.keep(
        update,
        context,
        dialogues.LISTING,
        data=listing.to_data(),
        lasts=LISTING_LASTS,
        patient_id=patient_id,
    )


@requires(Role.STAFF)
async def deliveries_page(update: Update, context: BotContext) -> None:
    """◀ / ▶ under the delivery log: another page of the same listing; a status button:
    the first page of the listing with that status (or every status)."""
    query = update.callback_query
    if query is None:
        return
    tr = user_translator(update.effective_user, context)
    kept = await dialogues.find(update, context, dialogues.LISTING)
    listing = Listing.from_data(kept.data) if kept is not None else None
    data = query.data or ""
    found = _PAGE.fullmatch(data)
    chosen = data.removeprefix(FILTER_PREFIX) if data.startswith(FILTER_PREFIX) else None
    message = query.message
    if (
        (found is None and chosen not in (*FILTER_STATUSES, ALL))
        or message is None
        or not isinstance(listing, Listing)
        or (listing.chat_id, listing.message_id) != (message.chat.id, message.message_id)
    ):
        await query.answer(tr.gettext("This list has expired. Send /deliveries again."))
        return
    page = int(found.group(1)) if found is not None else 0
    if chosen is not None:
        listing = dataclasses.replace(listing, status=None if chosen == ALL else chosen)
        await _keep_listing(update, context, listing)
    text, keyboard = await _render_page(context, update, listing, page, tr)
    try:
        await query.edit_message_text(text, reply_markup=keyboard)
    except BadRequest as error:
        # A second press of the same button, before the first one's edit arrived.
        if "not modified" not in error.message.lower():
            raise
    await query.answer()


# --- staff roles -------------------------------------------------------------------------


def _user_id(value: str) -> int:
    if not _USER_ID.fullmatch(value) or not 0 < int(value) <= _MAX_USER_ID:
        raise InvalidUserId(value=_shorten(value, 32))
    return int(value)


def parse_grant_args(args: Sequence[str]) -> tuple[int, Role]:
    """``USER_ID ROLE``."""
    if len(args) != 2:
        raise GrantUsage(choices=", ".join(ROLES))
    user_id = _user_id(args[0])
    if args[1].lower() not in ROLES:
        raise UnknownRole(value=_shorten(args[1], 32), choices=", ".join(ROLES))
    return user_id, Role(args[1].lower())


def parse_revoke_args(args: Sequence[str]) -> int:
    """``USER_ID``."""
    if len(args) != 1:
        raise RevokeUsage()
    return _user_id(args[0])


async def _sync_menus(context: BotContext) -> None:
    """The changed role's menu at once (a failure is left to the next sync)."""
    try:
        await context.menus.sync()
    except Exception as error:
        log.warning("menus left to the next sync: %s", type(error).__name__)


@requires(Role.ADMIN)
async def grant(update: Update, context: BotContext) -> None:
    """``/grant USER_ID ROLE``: give someone a staff role, replacing the one they had."""
    admin = update.effective_user
    if admin is None:
        return
    tr = user_translator(admin, context)
    try:
        user_id, role = parse_grant_args(context.args or [])
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    if user_id == admin.id:
        await reply(update, tr.gettext("You cannot change your own role. Ask another admin."))
        return
    async with context.sessions.begin() as session:
        await store.grant(
            session, user_id=user_id, role=role, actor=f"user:{admin.id}", now=context.clock.now()
        )
    await _sync_menus(context)
    await reply(
        update,
        # TRANSLATORS: %(role)s stays in English: admin, coordinator or staff.
        tr.gettext("User %(user)d is now %(role)s.") % {"user": user_id, "role": role},
    )


@requires(Role.ADMIN)
async def revoke(update: Update, context: BotContext) -> None:
    """``/revoke USER_ID``: take someone's staff role away."""
    admin = update.effective_user
    if admin is None:
        return
    tr = user_translator(admin, context)
    try:
        user_id = parse_revoke_args(context.args or [])
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    if user_id == admin.id:
        await reply(update, tr.gettext("You cannot revoke your own role. Ask another admin."))
        return
    async with context.sessions.begin() as session:
        revoked = await store.revoke(
            session, user_id=user_id, actor=f"user:{admin.id}", now=context.clock.now()
        )
    if revoked:
        text = tr.gettext("User %(user)d no longer has a staff role.")
    else:
        text = tr.gettext("User %(user)d has no staff role.")
    await _sync_menus(context)
    await reply(update, text % {"user": user_id})


class TeamUsage(ValidationError):
    template = N_(
        "Use /team to list the teams, /team add NAME, /team assign NAME USER_ID or "
        "/team remove NAME USER_ID."
    )


def _team_lines(summaries: Sequence[teams.TeamSummary], tr: Translator) -> str:
    if not summaries:
        return tr.gettext("No teams yet. Send /team add NAME.")
    lines = [tr.gettext("Teams:")]
    lines += [team_line(team, tr.ngettext) for team in summaries]
    return "\n".join(lines)


@requires(Role.ADMIN)
async def team(update: Update, context: BotContext) -> None:
    """``/team``, ``/team add NAME``, ``/team assign|remove NAME USER_ID``: care teams."""
    admin = update.effective_user
    if admin is None:
        return
    tr = user_translator(admin, context)
    args = context.args or []
    actor, now = f"user:{admin.id}", context.clock.now()
    try:
        async with context.sessions.begin() as session:
            match [arg.lower() if n == 0 else arg for n, arg in enumerate(args)]:
                case []:
                    text = _team_lines(await teams.summaries(session), tr)
                case ["add", name]:
                    created = await teams.create(session, name=name, actor=actor, now=now)
                    text = tr.gettext("Team %(team)s added.") % {"team": created.name}
                case ["assign" | "remove" as verb, name, user]:
                    user_id = _user_id(user)
                    found = await teams.by_name(session, name=name)
                    removing = verb == "remove"
                    change = teams.unassign if removing else teams.assign
                    changed = await change(
                        session, team=found, user_id=user_id, actor=actor, now=now
                    )
                    text = tr.gettext(MEMBERSHIP[removing, changed]) % {
                        "user": user_id,
                        "team": found.name,
                    }
                case _:
                    raise TeamUsage()
    except ValidationError as error:
        text = error.render(tr.gettext)
    await reply(update, text)


# --- /web --------------------------------------------------------------------------------


@requires(Role.STAFF)
async def web(update: Update, context: BotContext) -> None:
    """``/web``: a link that signs in to the web console, once, within ten minutes."""
    user = update.effective_user
    assert user is not None
    tr = user_translator(user, context)
    public_url = context.settings.public_url
    if not public_url:
        await reply(
            update,
            # TRANSLATORS: keep REMINDBOT_PUBLIC_URL as it is.
            tr.gettext(
                "The web console is not set up. The operator sets REMINDBOT_PUBLIC_URL to "
                "the address it is served at."
            ),
        )
        return
    now = context.clock.now()
    async with context.sessions.begin() as session:
        token = await web_access.issue_login(session, user_id=user.id, now=now)
        store.audit(session, actor=f"user:{user.id}", action="web.link", target=None, now=now)
    link = f"{public_url.rstrip('/')}/login?token={token}"
    text = tr.gettext(
        "Your sign-in link to the web console. It works once, within 10 minutes; do not "
        "pass it on:\n%(link)s"
    ) % {"link": link}
    # No preview: fetching it would use the link up before the staff member could.
    await reply(update, text, link_preview_options=LinkPreviewOptions(is_disabled=True))


def handlers() -> Handlers:
    """The staff commands and buttons."""
    return [
        CommandHandler("deliveries", deliveries, filters=PRIVATE),
        CommandHandler("web", web, filters=PRIVATE),
        CallbackQueryHandler(deliveries_page, pattern=f"^({PAGE_PREFIX}|{FILTER_PREFIX})"),
        CommandHandler("grant", grant, filters=PRIVATE),
        CommandHandler("revoke", revoke, filters=PRIVATE),
        CommandHandler("team", team, filters=PRIVATE),
    ]
