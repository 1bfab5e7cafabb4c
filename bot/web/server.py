"""The bot's one HTTP server (aiohttp.web), on REMINDBOT_HTTP_LISTEN:REMINDBOT_HTTP_PORT.

    GET  /healthz          200 healthy, 503 not (JSON: what is wrong)
    GET  /metrics          the Prometheus exposition, its database gauges read in the
                           background (``remindbot_database_up`` 0 while it is down)
    POST <webhook path>    Telegram's updates, when REMINDBOT_WEBHOOK_URL is set
    /                      the staff console (``bot.web.console``)

The same in polling and webhook mode; requests are not logged (sign-in links carry a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from urllib.parse import urlsplit

from aiohttp import web

from bot.context import RemindbotApp, Services
from bot.i18n import gettext as _
from bot.request import AiohttpRequest
from bot.settings import Settings
from bot.web import health
from bot.web.console import install as install_console
from bot.web.metrics import CONTENT_TYPE, Metrics
from bot.web.webhook import Webhook

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0  # seconds the requests under way get at the stop


class CannotListen(RuntimeError):
    """The server could not listen where the settings say; the message names the variable."""

    def __init__(self, variable: str, host: str, port: int, error: OSError) -> None:
        if error.errno == errno.EADDRINUSE:
            reason = _("the port is in use (another remindbot, or another server)")
        else:
            reason = error.strerror or type(error).__name__
        super().__init__(
            _(
                "%(variable)s=%(port)d: cannot listen on %(host)s port %(port)d: %(reason)s; "
                "stop what uses it or choose another port."
            )
            % {"variable": variable, "port": port, "host": host, "reason": reason}
        )


class WebServer:
    """``/healthz``, ``/metrics``, the webhook (when given) and the console (unless
    ``console`` is False) of the services' dispatcher and database."""

    def __init__(
        self,
        services: Services,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tick_seconds: float = 5.0,
        webhook: Webhook | None = None,
        console: bool = True,
        port_variable: str = "REMINDBOT_HTTP_PORT",
    ) -> None:
        assert services.sessions is not None
        assert services.dispatcher is not None
        assert services.clock is not None
        self.services = services
        self.host, self.port, self.port_variable = host, port, port_variable
        self.tick_seconds = tick_seconds
        self.metrics = Metrics(
            sessions=services.sessions, dispatcher=services.dispatcher, clock=services.clock
        )
        services.dispatcher.on_sent = self.metrics.reminder_sent
        self.app = web.Application()
        # Before the console: its routes under / must not shadow these.
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/metrics", self.scrape)
        if webhook is not None:
            self.app.router.add_post(webhook.path, webhook.handle)
        if console:
            install_console(self.app, services)
        self._runner: web.AppRunner | None = None
        self._refresh: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; port 0 takes a free port (``self.port`` then says which)."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise CannotListen(self.port_variable, self.host, self.port, error) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        # The database gauges: read now, then in the background (never by a scrape).
        await self.metrics.refresh()
        self._refresh = asyncio.create_task(self.metrics.run(), name="metrics refresh")
        log.info("web server on http://%s:%d/ (/healthz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when healthy, else 503; the body says what is wrong."""
        services = self.services
        assert services.sessions is not None
        assert services.dispatcher is not None
        assert services.clock is not None
        healthy, report = await health.check(
            sessions=services.sessions,
            dispatcher=services.dispatcher,
            clock=services.clock,
            tick_seconds=self.tick_seconds,
        )
        return web.Response(
            status=200 if healthy else 503,
            text=json.dumps(report) + "\n",
            content_type="application/json",
        )

    async def scrape(self, request: web.Request) -> web.Response:
        """The metrics, from memory: the database gauges as last read in the background."""
        return web.Response(body=self.metrics.scrape(), headers={"Content-Type": CONTENT_TYPE})


def for_application(
    application: RemindbotApp,
    settings: Settings,
    *,
    port: int | None = None,
    console: bool = True,
) -> WebServer:
    """The server of ``application``: its webhook when REMINDBOT_WEBHOOK_URL is set, its
    console, and metrics fed by its dispatcher and its Bot API requests. ``port``
    overrides REMINDBOT_HTTP_PORT (tests: 0)."""
    webhook = None
    if settings.webhook_url and settings.webhook_secret:
        webhook = Webhook(
            path=urlsplit(settings.webhook_url).path or "/",
            secret=settings.webhook_secret.get_secret_value(),
            application=application,
        )
    server = WebServer(
        application.bot_data,
        host=settings.http_listen,
        port=settings.http_port if port is None else port,
        tick_seconds=settings.tick_seconds,
        webhook=webhook,
        console=console,
        port_variable=settings.http_port_variable,
    )
    # The requests of sends and commands; getUpdates (long polls) has a client of its own.
    request = application.bot.request
    if isinstance(request, AiohttpRequest):
        request.observe = server.metrics.telegram_request
    return server
