"""The web console's frame: sign-in by a link from ``/web``, sessions, the layout and its
language, the security headers. The pages themselves live in ``bot.web.pages``.

Every console page gets a :class:`Viewer` from the session middleware, whose role and
teams are read again on each request: a revoked role ends the session at the next click.
There is no JavaScript: forms post with a CSRF token derived from the session, the
cookie is ``SameSite=Strict``, and the Content-Security-Policy allows nothing inline.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from jinja2.runtime import Context
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.i18n import Translator, available_locales, negotiate, translator
from bot.settings import Settings
from bot.timezones import city
from bot.timezones import parse as parse_timezone
from scheduler import store, teams, web_access
from scheduler.db import reading
from scheduler.errors import N_, ValidationError
from scheduler.statuses import Role

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "remindbot_session"
CSRF_FIELD = "csrf"
ENV_KEY = web.AppKey("remindbot.web.jinja", jinja2.Environment)
SERVICES_KEY = web.AppKey("remindbot.web.services", Services)
_GUARDED_KEY = web.AppKey("remindbot.web.guarded", set[web.AbstractResource])
HOME = "/deliveries"
# The pages of the navigation, labelled in English (translated where they are shown).
NAVIGATION = (
    ("/deliveries", N_("Delivery log")),
    ("/patients", N_("Patients")),
    ("/alerts", N_("Alerts")),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in staff member, coordinator or admin."""

    user_id: int
    role: Role
    scope: teams.Scope
    locale: str
    timezone: str
    tr: Translator
    csrf: str
    session_id: int

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"user:{self.user_id}"


VIEWER_KEY = web.RequestKey("remindbot.web.viewer", Viewer)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES_KEY]


def _settings(services: Services) -> Settings:
    assert services.settings is not None
    return services.settings


def _now(services: Services) -> datetime:
    assert services.clock is not None
    return services.clock.now()


def _sessions(services: Services) -> async_sessionmaker[AsyncSession]:
    assert services.sessions is not None
    return services.sessions


# --- language, time ----------------------------------------------------------------------


def direction(locale: str) -> str:
    """``rtl`` for the languages written right to left (ar, fa), else ``ltr``."""
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(locale.replace("-", "_")).text_direction)
    except (ValueError, UnknownLocaleError):
        return "ltr"


@cache
def languages() -> tuple[tuple[str, str], ...]:
    """The shipped languages, each named in itself ("Deutsch", "العربية"), in code order."""
    from babel import Locale

    named = []
    for code in sorted(available_locales()):
        name = Locale.parse(code).get_display_name(code) or code
        named.append((code, name[:1].upper() + name[1:]))
    return tuple(named)


def local(moment: datetime | None, viewer: Viewer) -> str:
    """An aware moment in the viewer's zone and language: "February 5, 2026, 9:00 AM";
    an em dash for none. The zone is named once, in the layout, not in every cell."""
    if moment is None:
        return "—"
    return _local(moment, viewer.timezone, viewer.tr.locale)


@lru_cache(maxsize=4096)
def _local(moment: datetime, timezone: str, locale: str) -> str:
    # Cached: a page shows the latest change of each reminder twice (the summary of its
    # history, and in the list), and the same page is read again and again.
    tr = translator(locale)
    at = moment.astimezone(ZoneInfo(timezone))
    # TRANSLATORS: a date and local time, e.g. "February 5, 2026, 9:00 AM".
    return tr.gettext("%(date)s, %(time)s") % {
        "date": tr.date(at.date()),
        "time": tr.time(at.time()),
    }


def _visitor_translator(request: web.Request) -> Translator:
    """The language of someone not signed in: the browser's first choice the bot ships,
    else the bot's default."""
    default = _settings(services_of(request)).default_locale
    header = request.headers.get("Accept-Language", "")
    first = header.split(",")[0].split(";")[0].strip()
    return translator(negotiate(first or None, default=default))


# --- templates ---------------------------------------------------------------------------


def _tr(context: Context) -> Translator:
    found = context.get("tr")
    return found if isinstance(found, Translator) else translator("en")


@jinja2.pass_context
def _gettext(context: Context, message: str) -> str:
    return _tr(context).gettext(message)


@jinja2.pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return _tr(context).ngettext(singular, plural, n)


@jinja2.pass_context
def _when(context: Context, moment: datetime | None) -> str:
    viewer = context.get("viewer")
    if not isinstance(viewer, Viewer):
        return "—" if moment is None else moment.isoformat()
    return local(moment, viewer)


@jinja2.pass_context
def _day(context: Context, day: Any) -> str:
    return "—" if day is None else _tr(context).date(day)


def environment() -> jinja2.Environment:
    """Templates from the package (they ship in the wheel), autoescaped, with gettext and
    ngettext that translate into the language of the page being rendered."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Line breaks inside a {% trans %} block are not part of the message (babel.cfg too).
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = _when
    env.filters["day"] = _day
    return env


async def render(
    request: web.Request, template: str, status: int = 200, **values: Any
) -> web.Response:
    """``template`` rendered for the viewer (or a visitor not signed in) in their language."""
    viewer = request.get(VIEWER_KEY)
    tr = viewer.tr if viewer is not None else _visitor_translator(request)
    frame: dict[str, Any] = {
        "viewer": viewer,
        "tr": tr,
        "lang": tr.locale.replace("_", "-"),
        "dir": direction(tr.locale),
        "csrf": viewer.csrf if viewer is not None else "",
        "csrf_field": CSRF_FIELD,
        "navigation": [(path, tr.gettext(label)) for path, label in NAVIGATION],
        "path": request.path,
        "here": request.path_qs,
        "languages": languages(),
        "zone_city": city(viewer.timezone, tr.locale) if viewer is not None else "",
    }
    frame.update(values)
    text = request.app[ENV_KEY].get_template(template).render(frame)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def message(
    request: web.Request, *, status: int, heading: str, text: str, hint: str | None = None
) -> web.Response:
    """A page that says one thing: signed out, link used up, not found. ``heading``,
    ``text`` and ``hint`` are English msgids, translated here."""
    viewer = request.get(VIEWER_KEY)
    tr = viewer.tr if viewer is not None else _visitor_translator(request)
    return await render(
        request,
        "message.html",
        status=status,
        heading=tr.gettext(heading),
        text=tr.gettext(text),
        hint=tr.gettext(hint) if hint else None,
    )


async def audit_view(request: web.Request, *, action: str, target: str) -> None:
    """Write down that the viewer saw personal data or exported it (``web.patient``,
    ``web.deliveries.csv``...); ``target`` names ids, never labels."""
    viewer: Viewer = request[VIEWER_KEY]
    services = services_of(request)
    async with _sessions(services).begin() as session:
        store.audit(session, actor=viewer.actor, action=action, target=target, now=_now(services))


# --- the session middleware --------------------------------------------------------------

SIGN_IN_AGAIN = N_("Send /web to the bot in Telegram to get a new sign-in link.")


async def _viewer(request: web.Request) -> Viewer | None:
    """The viewer of the request's session cookie; None without a valid session. A
    session whose staff member lost their role is closed, with all their others."""
    services = services_of(request)
    now = _now(services)
    token = request.cookies.get(COOKIE)
    if token is None or not web_access.well_formed(token):
        return None
    async with reading(_sessions(services)) as session:
        row = await web_access.session_of(session, token=token, now=now)
        member = None if row is None else await store.staff_member(session, user_id=row.user_id)
        if row is None or member is None:
            scope, zone = None, None
        else:
            scope = await teams.scope_of(session, user_id=row.user_id)
            zone = await store.staff_timezone(session, user_id=row.user_id)
    if row is None:
        return None
    if member is None or scope is None:
        async with _sessions(services).begin() as session:
            await web_access.close_sessions(session, user_id=row.user_id)
            store.audit(
                session,
                actor=f"user:{row.user_id}",
                action="web.session.revoked",
                target=f"session:{row.id}",
                now=now,
            )
        return None
    role, staff_locale = member
    settings = _settings(services)
    locale = row.locale or staff_locale or settings.default_locale
    return Viewer(
        user_id=row.user_id,
        role=Role(role),
        scope=scope,
        locale=locale,
        timezone=zone or settings.default_timezone,
        tr=translator(locale),
        csrf=web_access.csrf_for(token),
        session_id=row.id,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    viewer = await _viewer(request)
    if viewer is None:
        response = await message(
            request,
            status=401,
            heading=N_("Please sign in"),
            text=N_("You are not signed in, or your session has ended."),
            hint=SIGN_IN_AGAIN,
        )
        if COOKIE in request.cookies:
            response.del_cookie(COOKIE, path="/")
        return response
    request[VIEWER_KEY] = viewer
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        offered = form.get(CSRF_FIELD)
        token = request.cookies[COOKIE]
        if not isinstance(offered, str) or not web_access.csrf_matches(token, offered):
            return await message(
                request,
                status=403,
                heading=N_("This form has expired"),
                text=N_("Reload the page and try again."),
            )
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return await message(
            request,
            status=404,
            heading=N_("Not found"),
            text=N_("There is no such page, or it is not one you may see."),
        )
    except web.HTTPForbidden:
        return await message(
            request,
            status=403,
            heading=N_("Not available"),
            text=N_("This page is not available to your role."),
        )


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A viewer for every console page (a translated 401 without one), the CSRF token
    checked on every form, errors as translated pages: never a traceback. Routes that are
    not the console's pass through."""
    route = request.match_info.route
    if route.resource is None or route.resource not in request.app[_GUARDED_KEY]:
        return await handler(request)
    try:
        return await _guarded(request, handler)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("web console page failed: %s", request.path)
        return await message(
            request,
            status=500,
            heading=N_("Something went wrong"),
            text=N_("The page could not be shown. Try again in a moment."),
        )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, pages and errors alike; pages are never cached."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


# --- sign-in, logout, preferences --------------------------------------------------------


def _secure(services: Services) -> bool:
    public_url = _settings(services).public_url
    return bool(public_url) and urlsplit(public_url).scheme == "https"


async def login(request: web.Request) -> web.StreamResponse:
    """``GET /login?token=``: redeem the link from ``/web``, open a session, set its cookie."""
    services = services_of(request)
    now = _now(services)
    token = request.query.get("token", "")
    async with _sessions(services).begin() as session:
        await web_access.expire(session, now=now)
        user_id = await web_access.redeem_login(session, token=token, now=now)
        if user_id is not None:
            session_token, _csrf = await web_access.open_session(session, user_id=user_id, now=now)
            store.audit(session, actor=f"user:{user_id}", action="web.signin", target=None, now=now)
    if user_id is None:
        return await message(
            request,
            status=403,
            heading=N_("This sign-in link does not work"),
            text=N_("It has been used already, it has expired, or it is not complete."),
            hint=SIGN_IN_AGAIN,
        )
    redirect = web.HTTPSeeOther(HOME)
    redirect.set_cookie(
        COOKIE,
        session_token,
        max_age=int(web_access.SESSION_TTL.total_seconds()),
        path="/",
        secure=_secure(services),
        httponly=True,
        samesite="Strict",
    )
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout`` (CSRF checked by the middleware): close the session."""
    viewer: Viewer = request[VIEWER_KEY]
    services = services_of(request)
    async with _sessions(services).begin() as session:
        await web_access.close_session(session, session_id=viewer.session_id)
        store.audit(
            session, actor=viewer.actor, action="web.signout", target=None, now=_now(services)
        )
    request.pop(VIEWER_KEY)
    response = await message(
        request,
        status=200,
        heading=N_("You are signed out"),
        text=N_("To sign in again, send /web to the bot in Telegram."),
    )
    response.del_cookie(COOKIE, path="/")
    return response


def _back(target: object) -> str:
    """Where a form returns to: a path on this site, never another host."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target if "\\" not in target else HOME
    return HOME


async def preferences(request: web.Request) -> web.StreamResponse:
    """``POST /preferences`` (CSRF checked): the console's language for this session and
    the staff member's time zone (the same as ``/timezone`` in Telegram)."""
    viewer: Viewer = request[VIEWER_KEY]
    services = services_of(request)
    form = await request.post()
    locale = form.get("locale")
    zone_text = form.get("timezone")
    if locale is not None and locale not in available_locales():
        return await message(
            request,
            status=400,
            heading=N_("Unknown language"),
            text=N_("Choose one of the languages in the list."),
        )
    zone: ZoneInfo | None = None
    if isinstance(zone_text, str) and zone_text.strip():
        try:
            zone = parse_timezone(zone_text, viewer.locale, ids=True)
        except ValidationError as error:
            return await render(
                request,
                "message.html",
                status=400,
                heading=viewer.tr.gettext("Unknown time zone"),
                text=error.render(viewer.tr.gettext),
                hint=None,
            )
    now = _now(services)
    async with _sessions(services).begin() as session:
        if isinstance(locale, str):
            await web_access.set_session_locale(
                session, session_id=viewer.session_id, locale=locale
            )
        if zone is not None:
            await store.set_staff_timezone(session, user_id=viewer.user_id, timezone=zone, now=now)
    raise web.HTTPSeeOther(_back(form.get("next")))


async def home(request: web.Request) -> web.StreamResponse:
    """``/``: the delivery log."""
    raise web.HTTPSeeOther(HOME)


# --- installation ------------------------------------------------------------------------


def _page_routes() -> list[web.RouteDef]:
    # The pages are written beside the console; until they exist it serves sign-in alone.
    try:
        pages = importlib.import_module("bot.web.pages")
    except ModuleNotFoundError as error:
        if error.name != "bot.web.pages":
            raise
        return []
    return list(pages.routes())


def install(
    app: web.Application, services: Services, *, pages: Iterable[web.RouteDef] | None = None
) -> None:
    """Add the console to ``app``: sign-in, logout, preferences, the pages (those of
    ``bot.web.pages`` unless ``pages`` are given), the stylesheet, the session middleware
    and the security headers. Every page needs a session; other routes of ``app``
    (``/healthz``, ``/metrics``, the webhook) are left alone."""
    app[SERVICES_KEY] = services
    app[ENV_KEY] = environment()
    guarded: set[web.AbstractResource] = set()
    app[_GUARDED_KEY] = guarded
    app.router.add_get("/login", login, name="login")
    app.router.add_static("/static/", HERE / "static", name="static")
    for route in [
        app.router.add_post("/logout", logout, name="logout"),
        app.router.add_post("/preferences", preferences, name="preferences"),
    ]:
        guarded.add(route.resource)  # type: ignore[arg-type]
    for definition in _page_routes() if pages is None else pages:
        for route in definition.register(app.router):
            guarded.add(route.resource)  # type: ignore[arg-type]
    if not any(resource.canonical == "/" for resource in app.router.resources()):
        app.router.add_get("/", home, name="home")
    app.middlewares.append(session_middleware)
    app.on_response_prepare.append(_security_headers)


__all__ = [
    "ENV_KEY",
    "VIEWER_KEY",
    "Viewer",
    "audit_view",
    "install",
    "local",
    "message",
    "render",
]
