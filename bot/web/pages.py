"""The console's pages: the delivery log (and its CSV), the patients, one patient, the alerts.

Every page reads the viewer's scope (``Viewer.scope``): filters narrow it, never widen it,
and a patient of another team is "not found". Filters come as GET parameters; a bad one
gives the page with one translated message and nothing else (status 400). Each page that
shows personal data, and each export, is written to the audit log. All SQL is in
``scheduler`` (``deliveries``, ``coordination``, ``console``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.cli.deliveries import SHORT_KIND_TITLES, Filters, collect, write_csv
from bot.web import console
from bot.web.console import VIEWER_KEY, Viewer, audit_view, render
from scheduler import console as reads
from scheduler import coordination, store, teams
from scheduler.coordination import Outcome, PatientSort
from scheduler.db import reading
from scheduler.deliveries import count_deliveries, delivery_log
from scheduler.errors import ValidationError
from scheduler.models import Team
from scheduler.protocol import Kind
from scheduler.statuses import AlertStatus, PatientStatus, ReminderStatus
from scheduler.validation import parse_date

PAGE_SIZE: Final = 50
DEFAULT_ACTIVE_DAYS: Final = 7
MAX_ACTIVE_DAYS: Final = 3660
CSV_NAME: Final = "deliveries.csv"
KINDS: Final = frozenset(kind.value for kind in Kind)


def N_(message: str) -> str:
    return message


STATUS_TITLES: Final = {
    # TRANSLATORS: reminder status in the console: not sent yet.
    ReminderStatus.PLANNED: N_("planned"),
    # TRANSLATORS: reminder or alert status: being handed to Telegram now.
    ReminderStatus.SENDING: N_("sending"),
    # TRANSLATORS: reminder or alert status: will be tried again.
    ReminderStatus.RETRYING: N_("retrying"),
    # TRANSLATORS: reminder or alert status: Telegram accepted it.
    ReminderStatus.SENT: N_("sent"),
    # TRANSLATORS: reminder status: the patient pressed Done or I'm OK.
    ReminderStatus.ACKNOWLEDGED: N_("acknowledged"),
    # TRANSLATORS: reminder or alert status: could not be delivered, for good.
    ReminderStatus.FAILED: N_("failed"),
    # TRANSLATORS: reminder status.
    ReminderStatus.CANCELLED: N_("cancelled"),
    # TRANSLATORS: reminder status: too late to be sent.
    ReminderStatus.EXPIRED: N_("expired"),
    # TRANSLATORS: reminder status: already past at enrolment.
    ReminderStatus.SKIPPED: N_("skipped"),
    # TRANSLATORS: alert status: waiting to be sent.
    AlertStatus.QUEUED: N_("queued"),
    # TRANSLATORS: patient status: enrolled, has not accepted the invite yet.
    PatientStatus.INVITED: N_("invited"),
    # TRANSLATORS: patient status: gets reminders.
    PatientStatus.ACTIVE: N_("active"),
    # TRANSLATORS: patient status: reminders stopped by a coordinator.
    PatientStatus.PAUSED: N_("paused"),
    # TRANSLATORS: patient status: the patient blocked the bot or deleted their account.
    PatientStatus.UNREACHABLE: N_("unreachable"),
    # TRANSLATORS: patient status: the patient withdrew consent.
    PatientStatus.WITHDRAWN: N_("withdrawn"),
}
STATUS_CLASSES: Final = {
    "acknowledged": "status-ok",
    "sent": "status-ok",
    "retrying": "status-warn",
    "paused": "status-warn",
    "failed": "status-bad",
    "expired": "status-bad",
    "unreachable": "status-bad",
}
ALERT_KIND_TITLES: Final = {
    # TRANSLATORS: kind of coordinator alert in the console.
    "symptoms": N_("Symptoms reported"),
    # TRANSLATORS: kind of coordinator alert: tests not confirmed after 10 days.
    "missed_test": N_("Tests not confirmed"),
    # TRANSLATORS: kind of coordinator alert: the patient blocked the bot.
    "unreachable": N_("Patient unreachable"),
    # TRANSLATORS: kind of coordinator alert: a reminder could not be delivered.
    "delivery_failed": N_("Reminder not delivered"),
    # TRANSLATORS: kind of coordinator alert: the next course is due.
    "course_due": N_("Next course due"),
    # TRANSLATORS: kind of coordinator alert: the patient stopped the reminders.
    "withdrawn": N_("Reminders stopped"),
    # TRANSLATORS: kind of coordinator alert: the patient's data was erased.
    "erased": N_("Data erased"),
}
ROUTE_TITLES: Final = {
    # TRANSLATORS: who got an alert: the coordinator who enrolled the patient.
    "own": N_("own coordinator"),
    # TRANSLATORS: who got an alert: a coordinator of the patient's team.
    "team": N_("team coordinator"),
    # TRANSLATORS: who got an alert: the clinic's alert chat.
    "chat": N_("alert chat"),
}
# Each outcome: its name, a symbol drawn in the cell (so the strip is not colour only),
# its fill and the symbol's colour (contrast at least 4.5:1 against the fill).
OUTCOMES: Final = {
    # TRANSLATORS: outcome of a month's tests: confirmed within 10 days of the due date.
    Outcome.ON_TIME: (N_("confirmed on time"), "✓", "#1a7f37", "#ffffff"),
    # TRANSLATORS: outcome of a month's tests: confirmed, but 10 days or more after the due date.
    Outcome.LATE: (N_("confirmed late"), "!", "#9a4d00", "#ffffff"),
    # TRANSLATORS: outcome of a month's tests: sent, not confirmed yet (within 10 days).
    Outcome.UNCONFIRMED: (N_("not confirmed yet"), "?", "#f5d565", "#1f2328"),
    # TRANSLATORS: outcome of a month's tests: not confirmed within 10 days, or not delivered.
    Outcome.MISSED: (N_("missed"), "✗", "#b42318", "#ffffff"),
    # TRANSLATORS: outcome of a month's tests: still to come.
    Outcome.UPCOMING: (N_("upcoming"), "○", "#ffffff", "#1f2328"),
    # TRANSLATORS: a month of the programme without a test (course month, cancelled).
    None: (N_("no test"), "–", "#e6e8eb", "#1f2328"),
}
SORTS: Final = {
    # TRANSLATORS: sort order of the patient list.
    PatientSort.LABEL: N_("Label"),
    # TRANSLATORS: sort order of the patient list.
    PatientSort.STATUS: N_("Status"),
    # TRANSLATORS: sort order of the patient list: next reminder.
    PatientSort.NEXT: N_("Next reminder"),
    # TRANSLATORS: sort order of the patient list: tests confirmed on time.
    PatientSort.ADHERENCE: N_("Adherence"),
}


class BadQuery(ValueError):
    """A filter that cannot be used; ``message`` is translated for the viewer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _viewer(request: web.Request) -> Viewer:
    return request[VIEWER_KEY]


def _now(request: web.Request) -> datetime:
    clock = console.services_of(request).clock
    assert clock is not None
    return clock.now()


def _sessions(request: web.Request) -> Any:
    sessions = console.services_of(request).sessions
    assert sessions is not None
    return sessions


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    return value or None


def _number(
    query: Mapping[str, str], name: str, viewer: Viewer, *, default: int, low: int, high: int
) -> int:
    text = _text(query, name)
    if text is None:
        return default
    if text.isascii() and text.isdigit() and low <= int(text) <= high:
        return int(text)
    raise BadQuery(
        viewer.tr.gettext("%(field)s must be a whole number from %(low)d to %(high)d.")
        % {"field": name, "low": low, "high": high}
    )


def _choice(
    query: Mapping[str, str], name: str, choices: Mapping[str, Any], viewer: Viewer
) -> str | None:
    text = _text(query, name)
    if text is None or text in choices:
        return text
    raise BadQuery(
        # TRANSLATORS: %(value)s is what was given for the filter %(field)s (the filter's
        # name in the page address, e.g. "status").
        viewer.tr.gettext("%(value)s is not a value of %(field)s.") % {"value": text, "field": name}
    )


def _day(query: Mapping[str, str], name: str, viewer: Viewer) -> date | None:
    text = _text(query, name)
    if text is None:
        return None
    try:
        return parse_date(text)
    except ValidationError as error:
        raise BadQuery(error.render(viewer.tr.gettext)) from None


MAX_PAGE: Final = 10**6


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def _team_choices(request: web.Request) -> list[Team]:
    """The teams the viewer may see, for the team filter."""
    async with reading(_sessions(request), short=True) as session:
        return await teams.visible(session, scope=_viewer(request).scope)


async def _team_scope(
    request: web.Request, name: str | None
) -> tuple[teams.Scope, list[Team], int | None]:
    """The viewer's scope narrowed to the team ``name`` (one they may see, or BadQuery),
    the teams they may choose from, and the chosen team's id."""
    viewer = _viewer(request)
    choices = await _team_choices(request)
    if name is None:
        return viewer.scope, choices, None
    for team in choices:
        if team.name == name:
            return teams.Scope(frozenset({team.id})), choices, team.id
    raise BadQuery(teams.UnknownTeam(team=name).render(viewer.tr.gettext))


def _link(path: str, query: Mapping[str, str], **changes: object) -> str:
    """``path`` with the current filters and ``changes`` (None drops one)."""
    values = {k: v for k, v in query.items() if v}
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = str(value)
    return f"{path}?{urlencode(values)}" if values else path


def patient_href(label: str) -> str:
    return "/patients/" + quote(label, safe="")


@dataclass
class Pager:
    page: int
    total: int
    size: int = PAGE_SIZE
    links: dict[str, str] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return min(self.total, (self.page - 1) * self.size + 1)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def _pager(path: str, query: Mapping[str, str], page: int, total: int) -> Pager:
    pager = Pager(page=page, total=total)
    if page > 1:
        pager.links["previous"] = _link(path, query, page=page - 1 if page > 2 else None)
    if page < pager.pages:
        pager.links["next"] = _link(path, query, page=page + 1)
    return pager


def _common(viewer: Viewer) -> dict[str, Any]:
    """What every page's template uses to name statuses, kinds and outcomes."""
    tr = viewer.tr.gettext
    return {
        "status_title": lambda status: (
            tr(STATUS_TITLES[status]) if status in STATUS_TITLES else status
        ),
        "status_class": lambda status: STATUS_CLASSES.get(status, ""),
        "kind_title": lambda kind: tr(SHORT_KIND_TITLES[Kind(kind)]) if kind in KINDS else kind,
        "alert_title": lambda kind: (
            tr(ALERT_KIND_TITLES[kind]) if kind in ALERT_KIND_TITLES else kind
        ),
        # No route: the alert found nobody to tell.
        "route_title": lambda route: (
            "—" if route is None else tr(ROUTE_TITLES[route]) if route in ROUTE_TITLES else route
        ),
        # An alert's history names its kind when it was queued: show the kind's title.
        "alert_detail": lambda detail: (
            tr(ALERT_KIND_TITLES[detail]) if detail in ALERT_KIND_TITLES else detail
        ),
        "patient_href": patient_href,
        "share": lambda part: _share(part, viewer),
    }


def _share(part: coordination.OnTime, viewer: Viewer) -> str:
    """ "3 of 4 (75%)", or an em dash while no test counts."""
    if part.ratio is None:
        return "—"
    # TRANSLATORS: tests on time of tests counted, and the percentage: "3 of 4 (75%)".
    return viewer.tr.gettext("%(on_time)d of %(counted)d (%(percent)d%%)") % {
        "on_time": part.on_time,
        "counted": part.counted,
        "percent": round(part.ratio * 100),
    }


# --- the delivery log ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryQuery:
    team: str | None
    filters: Filters
    active_days: int
    page: int


def _delivery_query(request: web.Request) -> DeliveryQuery:
    viewer, query, now = _viewer(request), request.query, _now(request)
    days = _number(query, "days", viewer, default=DEFAULT_ACTIVE_DAYS, low=0, high=MAX_ACTIVE_DAYS)
    since, until = _day(query, "from", viewer), _day(query, "to", viewer)
    filters = Filters(
        label=_text(query, "patient"),
        status=_choice(query, "status", {s.value: s for s in ReminderStatus}, viewer),
        kind=_choice(query, "kind", {k.value: k for k in Kind}, viewer),
        since=_midnight(since) if since else None,
        until=_midnight(until + timedelta(days=1)) if until else None,
        active_since=now - timedelta(days=days) if days else None,
        now=now,
    )
    page = _number(query, "page", viewer, default=1, low=1, high=MAX_PAGE)
    return DeliveryQuery(_text(query, "team"), filters, days, page)


def _delivery_form(request: web.Request, choices: list[Team]) -> dict[str, Any]:
    query = request.query
    return {
        "form": {
            name: query.get(name, "")
            for name in ("team", "patient", "status", "kind", "from", "to", "days")
        },
        "default_days": DEFAULT_ACTIVE_DAYS,
        "team_choices": [team.name for team in choices],
        "status_choices": [s.value for s in ReminderStatus],
        "kind_choices": [k.value for k in Kind],
        "csv_href": _link("/deliveries.csv", query, page=None),
    }


async def deliveries(request: web.Request) -> web.StreamResponse:
    """``GET /deliveries``: the delivery log, by default the last 7 days' activity."""
    viewer = _viewer(request)
    values = _common(viewer)
    try:
        asked = _delivery_query(request)
        scope, choices, team_id = await _team_scope(request, asked.team)
    except BadQuery as error:
        choices = await _team_choices(request)
        return await render(
            request,
            "pages/deliveries.html",
            status=400,
            error=error.message,
            entries=[],
            pager=None,
            **_delivery_form(request, choices),
            **values,
        )
    arguments = asked.filters.arguments()
    async with reading(_sessions(request), short=True) as session:
        total = await count_deliveries(session, scope=scope, **arguments)
        pager = _pager("/deliveries", request.query, asked.page, total)
        entries = await delivery_log(
            session, scope=scope, limit=PAGE_SIZE, offset=pager.offset, **arguments
        )
    await audit_view(request, action="web.deliveries", target=_target(entries, team_id))
    return await render(
        request,
        "pages/deliveries.html",
        error=None,
        entries=entries,
        pager=pager,
        # The activity view lists the latest status changes first (scheduler.deliveries).
        by_change=asked.filters.active_since is not None,
        **_delivery_form(request, choices),
        **values,
    )


def _target(entries: list[Any], team_id: int | None) -> str:
    """What an audit event names: the one patient shown, or the team filtered on."""
    patients = {entry.patient_id for entry in entries}
    if len(patients) == 1:
        return f"patient:{patients.pop()}"
    return _team_target(team_id)


def _team_target(team_id: int | None) -> str:
    """The audit target of a page of several patients: the team filtered on, or all the
    viewer's teams."""
    return f"team:{team_id}" if team_id is not None else "team:*"


async def deliveries_csv(request: web.Request) -> web.StreamResponse:
    """``GET /deliveries.csv``: the log with the same filters, every page, as the command
    line writes it (``remindbot deliveries --format csv``)."""
    viewer = _viewer(request)
    try:
        asked = _delivery_query(request)
        scope, _choices, team_id = await _team_scope(request, asked.team)
    except BadQuery as error:
        return await render(
            request,
            "pages/deliveries.html",
            status=400,
            error=error.message,
            entries=[],
            pager=None,
            **_delivery_form(request, []),
            **_common(viewer),
        )
    entries, _total = await collect(_sessions(request), scope=scope, filters=asked.filters)
    await audit_view(request, action="web.deliveries.csv", target=_target(entries, team_id))
    text = io.StringIO()
    write_csv(entries, text)
    response = web.Response(
        body=text.getvalue().encode("utf-8"), content_type="text/csv", charset="utf-8"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{CSV_NAME}"'
    return response


# --- patients ------------------------------------------------------------------------------


async def patients(request: web.Request) -> web.StreamResponse:
    """``GET /patients``: the viewer's patients, sortable, with adherence."""
    viewer, query = _viewer(request), request.query
    values = _common(viewer)
    try:
        sort = PatientSort(
            _choice(query, "sort", {s.value: s for s in PatientSort}, viewer) or "label"
        )
        order = _choice(query, "order", {"asc": 1, "desc": 1}, viewer) or "asc"
        page = _number(query, "page", viewer, default=1, low=1, high=MAX_PAGE)
        scope, choices, team_id = await _team_scope(request, _text(query, "team"))
    except BadQuery as error:
        choices = await _team_choices(request)
        return await render(
            request,
            "pages/patients.html",
            status=400,
            error=error.message,
            rows=[],
            pager=None,
            **_patients_form(request, choices),
            **values,
        )
    now = _now(request)
    async with reading(_sessions(request), short=True) as session:
        total = await coordination.count_console_patients(session, scope=scope)
        pager = _pager("/patients", query, page, total)
        rows = await coordination.console_patients(
            session,
            now=now,
            scope=scope,
            sort=sort,
            descending=order == "desc",
            limit=PAGE_SIZE,
            offset=pager.offset,
        )
    await audit_view(request, action="web.patients", target=_team_target(team_id))
    return await render(
        request,
        "pages/patients.html",
        error=None,
        rows=rows,
        pager=pager,
        **_patients_form(request, choices),
        **values,
    )


def _patients_form(request: web.Request, choices: list[Team]) -> dict[str, Any]:
    query, tr = request.query, _viewer(request).tr.gettext
    sort = query.get("sort", "label")
    order = query.get("order", "asc")

    def sort_link(key: PatientSort) -> str:
        flip = "desc" if sort == key.value and order != "desc" else None
        return _link("/patients", query, sort=key.value, order=flip, page=None)

    return {
        "form": {name: query.get(name, "") for name in ("team", "sort", "order")},
        "team_choices": [team.name for team in choices],
        "sort_choices": [(key.value, tr(title)) for key, title in SORTS.items()],
        "sort_links": {key.value: sort_link(key) for key in PatientSort},
        "sorted_by": sort,
        "sort_order": "descending" if order == "desc" else "ascending",
    }


async def patient(request: web.Request) -> web.StreamResponse:
    """``GET /patients/{label}``: courses, the month strip, the plan with history, alerts;
    404 for a patient of another team."""
    viewer = _viewer(request)
    label = request.match_info["label"]
    async with reading(_sessions(request), short=True) as session:
        page = await reads.patient_page(session, label=label, now=_now(request), scope=viewer.scope)
    if page is None:
        raise web.HTTPNotFound()
    await audit_view(request, action="web.patient", target=f"patient:{page.patient.id}")
    return await render(
        request,
        "pages/patient.html",
        page=page,
        strip=strip_svg(page.strip, viewer),
        legend=_legend(viewer),
        outcome_title=lambda reminder_id: _outcome_title(page.outcomes.get(reminder_id), viewer),
        # The protocol's end (48 months after the last infusion), not the end of the
        # strip's last month, which runs on to the day before its next month starts.
        monitoring_end=store.profile_of(page.patient).monitoring_end if page.strip else None,
        **_common(viewer),
    )


def _outcome_title(outcome: Outcome | None, viewer: Viewer) -> str:
    return viewer.tr.gettext(OUTCOMES[outcome][0]) if outcome is not None else ""


def _legend(viewer: Viewer) -> list[dict[str, str]]:
    return [
        {"name": viewer.tr.gettext(name), "symbol": symbol, "fill": fill, "ink": ink}
        for name, symbol, fill, ink in OUTCOMES.values()
    ]


CELL: Final = 28
GAP: Final = 4
PER_ROW: Final = 12
# Room for the longest row label ("Месяцы 48-59" at LABEL_SIZE), right-aligned, then a gap.
LABEL_WIDTH: Final = 108
LABEL_GAP: Final = 6
LABEL_SIZE: Final = 13
# Bidi isolates: the label's own direction (so "Months" and the range do not swap in a
# right-to-left page), and the range always left to right ("0-11", never "11-0").
_LRI, _RLI, _PDI = "\u2066", "\u2067", "\u2069"
_RANGE: Final = re.compile(r"\d+\s*[\u2013-]\s*\d+")


@dataclass(frozen=True)
class StripCell:
    x: int
    y: int
    symbol: str
    fill: str
    ink: str
    title: str
    outcome: str


@dataclass(frozen=True)
class Strip:
    width: int
    height: int
    cells: list[StripCell]
    rows: list[tuple[int, str]]  # (y, the row's label: "Months 0-11")
    label_x: int  # where the labels end (text-anchor="end")
    label_size: int
    name: str  # the accessible name
    summary: str  # counts per outcome, for the description


def strip_svg(cells: list[reads.MonthCell], viewer: Viewer) -> Strip:
    """The month strip laid out as rows of 12 months, each cell with a colour, a symbol
    and a title; the template draws it as inline SVG."""
    tr = viewer.tr
    drawn = []
    counts: dict[Outcome | None, int] = {}
    for cell in cells:
        name, symbol, fill, ink = OUTCOMES[cell.outcome]
        counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
        row, column = divmod(cell.number, PER_ROW)
        # TRANSLATORS: a cell of the month strip: "Month 3 (from April 6, 2025): missed".
        title = tr.gettext("Month %(number)d (from %(start)s): %(outcome)s") % {
            "number": cell.number,
            "start": tr.date(cell.start),
            "outcome": tr.gettext(name),
        }
        drawn.append(
            StripCell(
                x=LABEL_WIDTH + column * (CELL + GAP),
                y=row * (CELL + GAP),
                symbol=symbol,
                fill=fill,
                ink=ink,
                title=title,
                outcome=cell.outcome.value if cell.outcome is not None else "none",
            )
        )
    rows = -(-len(cells) // PER_ROW)
    summary = "; ".join(
        f"{tr.gettext(OUTCOMES[o][0])}: {counts[o]}" for o in OUTCOMES if counts.get(o)
    )
    return Strip(
        width=LABEL_WIDTH + PER_ROW * (CELL + GAP),
        height=max(1, rows) * (CELL + GAP),
        cells=drawn,
        rows=[
            (
                row * (CELL + GAP),
                _isolated(
                    # TRANSLATORS: a row of the month strip: the months 0-11, 12-23, ... of
                    # the programme.
                    tr.gettext("Months %(first)d–%(last)d")
                    % {"first": row * PER_ROW, "last": row * PER_ROW + PER_ROW - 1},
                    rtl=console.direction(tr.locale) == "rtl",
                ),
            )
            for row in range(rows)
        ],
        label_x=LABEL_WIDTH - LABEL_GAP,
        label_size=LABEL_SIZE,
        name=tr.gettext("Monitoring programme, month by month"),
        summary=summary,
    )


def _isolated(label: str, *, rtl: bool) -> str:
    """A strip row's label for an SVG ``<text direction="ltr">``: the range of months
    isolated left to right, the whole label isolated right to left in an RTL language."""
    label = _RANGE.sub(lambda found: f"{_LRI}{found.group(0)}{_PDI}", label)
    return f"{_RLI}{label}{_PDI}" if rtl else label


# --- alerts --------------------------------------------------------------------------------


async def alerts(request: web.Request) -> web.StreamResponse:
    """``GET /alerts``: every coordinator alert of the viewer's teams, with its history."""
    viewer, query = _viewer(request), request.query
    values = _common(viewer)
    status_choices = [s.value for s in AlertStatus]
    kind_choices = list(ALERT_KIND_TITLES)
    form: dict[str, Any] = {
        "form": {name: query.get(name, "") for name in ("team", "status", "kind")},
        "status_choices": status_choices,
        "kind_choices": kind_choices,
    }
    try:
        status = _choice(query, "status", dict.fromkeys(status_choices), viewer)
        kind = _choice(query, "kind", dict.fromkeys(kind_choices), viewer)
        page = _number(query, "page", viewer, default=1, low=1, high=MAX_PAGE)
        scope, choices, team_id = await _team_scope(request, _text(query, "team"))
    except BadQuery as error:
        choices = await _team_choices(request)
        return await render(
            request,
            "pages/alerts.html",
            status=400,
            error=error.message,
            entries=[],
            pager=None,
            team_choices=[team.name for team in choices],
            **form,
            **values,
        )
    async with reading(_sessions(request), short=True) as session:
        total = await reads.count_alerts(session, scope=scope, status=status, kind=kind)
        pager = _pager("/alerts", query, page, total)
        entries = await reads.alert_log(
            session, scope=scope, status=status, kind=kind, limit=PAGE_SIZE, offset=pager.offset
        )
    await audit_view(request, action="web.alerts", target=_team_target(team_id))
    return await render(
        request,
        "pages/alerts.html",
        error=None,
        entries=entries,
        pager=pager,
        team_choices=[team.name for team in choices],
        **form,
        **values,
    )


def routes() -> list[web.RouteDef]:
    """The pages, for ``bot.web.console.install``."""
    return [
        web.get("/deliveries", deliveries, name="deliveries"),
        web.get("/deliveries.csv", deliveries_csv, name="deliveries_csv"),
        web.get("/patients", patients, name="patients"),
        web.get("/patients/{label}", patient, name="patient"),
        web.get("/alerts", alerts, name="alerts"),
    ]
