"""The web console's sign-in, sessions, preferences and layout, through aiohttp's test
client against the real application on both databases."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.i18n import available_locales, translator
from bot.settings import load_settings
from bot.web import console
from scheduler import store, teams, web_access
from scheduler.models import AuditEvent, WebSession
from scheduler.statuses import Role

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
SAM = 2002  # staff
CORA = 3003  # coordinator
PUBLIC = "https://console.example.org"
CSP = "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class FixedClock:
    current: datetime = NOW

    def now(self) -> datetime:
        return self.current


async def probe(request: web.Request) -> web.Response:
    """A console page as bot.web.pages writes them."""
    viewer = request[console.VIEWER_KEY]
    return await console.render(
        request,
        "message.html",
        heading="Probe",
        text=f"user {viewer.user_id} {viewer.role} {viewer.timezone} {console.local(NOW, viewer)}",
        hint=None,
    )


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def audits(request: web.Request) -> web.Response:
    await console.audit_view(request, action="web.x", target="patient:7")
    return web.Response(text="ok")


PAGES = [
    web.get("/deliveries", probe),
    web.get("/audited", audits),
    web.get("/patients/{label}", missing),
    web.get("/alerts", broken),
]


@dataclass
class Browser:
    """The test client with one cookie, kept by hand: aiohttp's jar would not send a
    ``Secure`` cookie over the test server's plain HTTP."""

    client: TestClient[web.Request, web.Application]
    sessions: async_sessionmaker[AsyncSession]
    clock: FixedClock
    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> ClientResponse:
        return await self.client.get(path, allow_redirects=False, headers=self._headers(headers))

    async def post(self, path: str, data: dict[str, str]) -> ClientResponse:
        return await self.client.post(
            path, data=data, allow_redirects=False, headers=self._headers(None)
        )

    def _headers(self, given: dict[str, str] | None) -> dict[str, str]:
        headers = dict(given or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def keep(self, response: ClientResponse) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for header in response.headers.getall("Set-Cookie", []):
            jar.load(header)
        for name, morsel in jar.items():
            if morsel.value and morsel["max-age"] != "0":
                self.cookies[name] = morsel.value
            else:
                self.cookies.pop(name, None)
        return jar

    async def link(self, user_id: int, *, at: datetime = NOW) -> str:
        async with self.sessions.begin() as session:
            token = await web_access.issue_login(session, user_id=user_id, now=at)
        return f"/login?token={token}"

    async def sign_in(self, user_id: int) -> str:
        """Sign in with a fresh link; the CSRF token of the page that follows."""
        response = await self.get(await self.link(user_id))
        assert response.status == 303, await response.text()
        self.keep(response)
        page = await self.get("/deliveries")
        assert page.status == 200, await page.text()
        return csrf_of(await page.text())


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


async def _browser(
    sessions: async_sessionmaker[AsyncSession], public_url: str
) -> AsyncIterator[Browser]:
    async with sessions.begin() as session:
        await store.grant(session, user_id=SAM, role=Role.STAFF, actor="test", now=NOW)
        await store.grant(session, user_id=CORA, role=Role.COORDINATOR, actor="test", now=NOW)
    clock = FixedClock()
    settings = load_settings(
        REMINDBOT_PUBLIC_URL=public_url,
        REMINDBOT_DEFAULT_TIMEZONE="Europe/Berlin",
        REMINDBOT_DEFAULT_LOCALE="en",
    )
    app = web.Application()
    console.install(app, Services(settings=settings, sessions=sessions, clock=clock), pages=PAGES)
    async with TestClient(TestServer(app)) as client:
        yield Browser(client, sessions, clock)


@pytest.fixture
async def browser(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Browser]:
    async for opened in _browser(sessions, PUBLIC):
        yield opened


async def audited(sessions: async_sessionmaker[AsyncSession], action: str) -> list[str]:
    async with sessions() as session:
        events = await session.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [event.actor for event in events]


async def test_a_link_signs_in_with_a_strict_cookie(browser: Browser) -> None:
    response = await browser.get(await browser.link(SAM))

    assert response.status == 303
    assert response.headers["Location"] == "/deliveries"
    [morsel] = browser.keep(response).values()
    assert morsel.key == console.COOKIE
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(8 * 3600)
    page = await browser.get("/deliveries")
    assert page.status == 200
    html = await page.text()
    assert "user 2002 staff Europe/Berlin March 2, 2026, 10:00" in html
    assert '<html lang="en" dir="ltr">' in html
    assert await audited(browser.sessions, "web.signin") == [f"user:{SAM}"]


async def test_a_plain_http_console_sets_no_secure_flag(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async for browser in _browser(sessions, "http://127.0.0.1:8080/"):
        response = await browser.get(await browser.link(SAM))
        assert response.status == 303
        [morsel] = browser.keep(response).values()
        assert not morsel["secure"]
        assert morsel["httponly"] is True


async def test_a_used_or_expired_link_is_refused(browser: Browser) -> None:
    link = await browser.link(SAM)
    assert (await browser.get(link)).status == 303

    again = await browser.get(link)
    assert again.status == 403
    assert "Set-Cookie" not in again.headers
    assert "send /web to the bot" in (await again.text()).lower()

    old = await browser.link(SAM, at=NOW - timedelta(minutes=10))
    assert (await browser.get(old)).status == 403
    for bad in ("/login", "/login?token=", "/login?token=%3Cscript%3E"):
        response = await browser.get(bad)
        assert response.status == 403
        assert "<script>" not in await response.text()


async def test_pages_without_a_session_say_how_to_sign_in(browser: Browser) -> None:
    response = await browser.get("/deliveries", headers={"Accept-Language": "ar,en;q=0.5"})

    assert response.status == 401
    html = await response.text()
    assert '<html lang="ar" dir="rtl">' in html
    assert translator("ar").gettext(console.SIGN_IN_AGAIN) in html
    browser.cookies[console.COOKIE] = "forged-" + "x" * 40
    assert (await browser.get("/deliveries")).status == 401
    assert (await browser.post("/logout", {"csrf": "0" * 64})).status == 401


async def test_a_session_ends_after_eight_hours(browser: Browser) -> None:
    await browser.sign_in(SAM)

    browser.clock.current = NOW + timedelta(hours=8)

    assert (await browser.get("/deliveries")).status == 401


async def test_logout_needs_the_csrf_token(browser: Browser) -> None:
    csrf = await browser.sign_in(SAM)

    assert (await browser.post("/logout", {})).status == 403
    assert (await browser.post("/logout", {"csrf": "0" * 64})).status == 403
    assert (await browser.get("/deliveries")).status == 200

    response = await browser.post("/logout", {"csrf": csrf})
    assert response.status == 200
    assert "signed out" in (await response.text()).lower()
    cleared = browser.keep(response)[console.COOKIE]
    assert cleared.value == ""
    assert (await browser.get("/deliveries")).status == 401
    assert await audited(browser.sessions, "web.signout") == [f"user:{SAM}"]


async def test_another_sessions_csrf_token_does_not_work(browser: Browser) -> None:
    other = await browser.sign_in(CORA)
    browser.cookies.clear()
    await browser.sign_in(SAM)

    assert (await browser.post("/logout", {"csrf": other})).status == 403


async def test_preferences_set_the_language_and_the_time_zone(browser: Browser) -> None:
    csrf = await browser.sign_in(SAM)

    response = await browser.post(
        "/preferences",
        {"csrf": csrf, "locale": "ar", "timezone": "Tokyo", "next": "/patients/MS-1?x=1"},
    )

    assert response.status == 303
    assert response.headers["Location"] == "/patients/MS-1?x=1"
    page = await browser.get("/deliveries")
    html = await page.text()
    assert '<html lang="ar" dir="rtl">' in html
    assert "Asia/Tokyo" in html
    assert 'value="ar" lang="ar" selected' in html
    async with browser.sessions() as session:
        assert await store.staff_timezone(session, user_id=SAM) == "Asia/Tokyo"

    # Another host is never where a form returns to.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await browser.post("/preferences", {"csrf": csrf, "next": target})
        assert response.headers["Location"] == "/deliveries"


async def test_bad_preferences_change_nothing(browser: Browser) -> None:
    csrf = await browser.sign_in(SAM)

    assert (await browser.post("/preferences", {"csrf": csrf, "locale": "xx"})).status == 400
    response = await browser.post(
        "/preferences", {"csrf": csrf, "locale": "de", "timezone": "Atlantis"}
    )
    assert response.status == 400
    assert "Atlantis" in await response.text()
    assert (await browser.post("/preferences", {"locale": "de"})).status == 403

    html = await (await browser.get("/deliveries")).text()
    assert '<html lang="en" dir="ltr">' in html
    async with browser.sessions() as session:
        assert await store.staff_timezone(session, user_id=SAM) is None


async def test_the_telegram_language_is_the_default(browser: Browser) -> None:
    async with browser.sessions.begin() as session:
        await store.note_language(session, user_id=SAM, locale="fa")

    await browser.sign_in(SAM)

    html = await (await browser.get("/deliveries")).text()
    assert '<html lang="fa" dir="rtl">' in html


async def test_a_revoked_role_ends_the_session(browser: Browser) -> None:
    await browser.sign_in(SAM)
    async with browser.sessions.begin() as session:
        await store.revoke(session, user_id=SAM, actor="test", now=NOW)

    assert (await browser.get("/deliveries")).status == 401
    async with browser.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0
    # A new role later does not bring the old session back.
    async with browser.sessions.begin() as session:
        await store.grant(session, user_id=SAM, role=Role.STAFF, actor="test", now=NOW)
    assert (await browser.get("/deliveries")).status == 401


async def test_security_headers_on_every_response(browser: Browser) -> None:
    responses = [
        await browser.get("/deliveries"),  # 401
        await browser.get("/login?token=nope"),  # 403
        await browser.get(await browser.link(SAM)),  # 303
        await browser.get("/static/console.css"),
    ]
    browser.keep(responses[2])
    responses += [
        await browser.get("/deliveries"),
        await browser.get("/patients/MS-9"),  # 404 from the page
        await browser.get("/alerts"),  # a page that fails
    ]

    assert [r.status for r in responses] == [401, 403, 303, 200, 200, 404, 500]
    for response in responses:
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    for response in responses[:3] + responses[4:]:
        assert response.headers["Cache-Control"] == "no-store"
    assert responses[3].headers["Content-Type"].startswith("text/css")
    failed = await responses[6].text()
    assert "Traceback" not in failed
    assert "a bug" not in failed
    assert "<h1>Not found</h1>" in await responses[5].text()


async def test_the_layout_has_landmarks_labels_and_no_script(browser: Browser) -> None:
    await browser.sign_in(SAM)

    html = await (await browser.get("/deliveries")).text()

    assert "<script" not in html
    assert " style=" not in html
    for landmark in ("<header", "<nav", "<main", "<h1>"):
        assert landmark in html
    assert 'aria-current="page"' in html
    for control in re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', html):
        assert f'<label for="{control}">' in html
    assert 'action="/logout"' in html
    assert '<link rel="stylesheet" href="/static/console.css">' in html


async def test_audit_view_names_the_viewer(browser: Browser) -> None:
    await browser.sign_in(CORA)

    assert (await browser.get("/audited")).status == 200

    async with browser.sessions() as session:
        [event] = await session.scalars(select(AuditEvent).where(AuditEvent.action == "web.x"))
    assert (event.actor, event.target, event.at) == (f"user:{CORA}", "patient:7", NOW)


VIEWER = console.Viewer(
    user_id=1,
    role=Role.STAFF,
    scope=teams.EVERY_TEAM,
    locale="de",
    timezone="Asia/Tokyo",
    tr=translator("de"),
    csrf="",
    session_id=1,
)


def test_times_in_the_viewers_zone_and_language() -> None:
    assert console.local(datetime(2026, 2, 5, 0, 30, tzinfo=UTC), VIEWER) == (
        translator("de").gettext("%(date)s, %(time)s")
        % {"date": "5. Februar 2026", "time": "09:30"}
    )
    assert console.local(None, VIEWER) == "—"
    assert console.direction("ar") == console.direction("fa") == "rtl"
    assert console.direction("pt_BR") == console.direction("nonsense") == "ltr"
    assert ("de", "Deutsch") in console.languages()
    assert {code for code, _ in console.languages()} == set(available_locales())


def test_templates_translate_into_the_pages_language() -> None:
    template = console.environment().from_string(
        "{% trans count=n %}\n  {{ count }} day\n{% pluralize %}\n  {{ count }} days\n"
        '{% endtrans %}|{{ _("Sign out") }}|{{ "<b>" }}|{{ moment | when }}'
    )
    viewer = dataclasses.replace(VIEWER, tr=translator("ru"), locale="ru")

    shown = template.render(tr=viewer.tr, viewer=viewer, n=5, moment=NOW).split("|")

    # No catalog has this message: English, plural, its line breaks trimmed.
    assert shown == [
        "5 days",
        translator("ru").gettext("Sign out"),
        "&lt;b&gt;",
        console.local(NOW, viewer),
    ]
