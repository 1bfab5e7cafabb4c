"""The Telegram application: one function builds it and registers every handler."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, ExtBot

from bot import dialogues, runner
from bot.context import BotContext, RemindbotApp, Services
from bot.handlers import coordinator, fallback, patient, reminders, staff
from bot.handlers.errors import on_error
from bot.i18n import catalog_problems
from bot.menus import MenuSync
from bot.request import AiohttpRequest
from bot.sender import TelegramSender
from bot.settings import Settings
from bot.web import server as web_server
from scheduler import periodic, store, web_access
from scheduler.clock import Clock
from scheduler.db import create_engine, is_migrated, is_sqlite, migrate, session_factory
from scheduler.dispatcher import Dispatcher
from scheduler.followups import SweepReport, sweep
from scheduler.leadership import AdvisoryLock
from scheduler.processes import BEAT_EVERY, this_process
from scheduler.ratelimit import RateLimiter

log = logging.getLogger(__name__)
FOLLOW_UP_INTERVAL = 600  # seconds
MENU_SYNC_INTERVAL = 60  # seconds
HOUSEKEEPING_INTERVAL = 60  # seconds
# A job that runs once per interval among all replicas (periodic.claim) waits for a whole
# interval, less this, since its last run: a timer that fired late last time and on time now
# would otherwise find its own last run too recent and skip an interval.
CLAIM_LEEWAY: Final = timedelta(seconds=2)

Housekeeping = Callable[[BotContext], Awaitable[None]]

# The update types the handlers take (register_handlers): commands and texts, which PTB's
# CommandHandler and MessageHandler also take when edited, and button presses. Telegram sends
# no other kind, so a poll, a chat member change or a reaction can neither reach a handler nor
# fill the update queue. A new kind of handler must add its update type here.
ALLOWED_UPDATES: Final = (Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY)
_UPDATE_TYPE: Final = re.compile(r"[a-z_]{1,64}")


class DatabaseNotMigrated(RuntimeError):
    def __init__(self) -> None:
        super().__init__("The database is not at the current schema: run remindbot migrate.")


class RemindbotBot(ExtBot[None]):
    """PTB's bot, except that an update PTB cannot read is skipped instead of stopping the rest.

    PTB reads a getUpdates answer as a whole: one update it cannot read (the Bot API added a
    required field, as Bot API 9.6 did to polls) fails the whole batch, the updater asks again
    from the same offset at once, and polling spins, logging the raw updates at CRITICAL, while
    every later update waits. Here each update is read on its own first, and one that fails is
    logged by id and type and replaced by a bare update with its id: no handler takes it, and
    the updater's offset moves past it.
    """

    __slots__ = ()

    async def _post(self, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        result = await super()._post(endpoint, *args, **kwargs)
        if endpoint == "getUpdates" and isinstance(result, list):
            return [self._readable(update) for update in result]
        return result

    def _readable(self, update: Any) -> Any:
        """``update`` as Telegram sent it if PTB can read it, else just its id."""
        try:
            Update.de_json(update, self)
        except Exception as error:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int):
                return update  # nothing to acknowledge it by: PTB reports it
            kind = next((key for key in update if key != "update_id"), "")
            log.warning(
                "skipped update %d (%s): it could not be read (%s)",
                update_id,
                kind if _UPDATE_TYPE.fullmatch(kind) else "unknown",
                type(error).__name__,
            )
            return {"update_id": update_id}
        return update


def register_handlers(app: RemindbotApp) -> None:
    """Every command and button of the bot: each handler module lists its own."""
    conversations = patient.conversations() | coordinator.conversations()
    app.bot_data.conversations = conversations
    # First: a typed answer to a question under way, and /cancel, go nowhere else.
    app.add_handlers(
        dialogues.handlers(conversations, nothing_to_cancel=patient.nothing_to_cancel), group=-1
    )
    for module in (patient, reminders, coordinator, staff):
        app.add_handlers(module.handlers())
    app.add_handlers(fallback.handlers())  # last: what nothing else took
    app.add_error_handler(on_error)


def build_application(
    *, settings: Settings, engine: AsyncEngine, clock: Clock, timeout: float = 10.0
) -> RemindbotApp:
    """The bot, talking to ``settings.telegram_api_base_url`` and storing in ``engine``.

    ``timeout`` bounds each Telegram request (seconds); a send that times out is retried.
    """
    bot: ExtBot[None] = RemindbotBot(
        settings.token(),
        base_url=settings.telegram_api_base_url,
        request=AiohttpRequest(
            read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout
        ),
        get_updates_request=AiohttpRequest(connection_pool_size=1, connect_timeout=timeout),
    )
    app: RemindbotApp = (
        ApplicationBuilder()
        .bot(bot)
        .context_types(ContextTypes(context=BotContext, bot_data=Services))
        .build()
    )
    sessions = session_factory(engine)
    app.bot_data.settings = settings
    app.bot_data.sessions = sessions
    app.bot_data.clock = clock
    app.bot_data.dispatcher = Dispatcher(
        sessions=sessions,
        sender=TelegramSender(app.bot, alert_locale=settings.default_locale),
        clock=clock,
        late_window=settings.late_window,
        postgres=not is_sqlite(engine),
        limiter=RateLimiter(per_second=settings.rate_limit or None),
        alert_chat_id=settings.alert_chat_id,
    )
    app.bot_data.dispatcher.running = lambda: app.running
    app.bot_data.menus = MenuSync(app.bot, sessions, default_locale=settings.default_locale)
    register_handlers(app)
    assert app.job_queue is not None
    # misfire_grace_time=None: a late tick still runs (PTB's default would drop it after
    # one second); coalesce: missed ticks run once, not many times over. Two instances: a
    # tick that fires while a backlog is being drained returns at once (Dispatcher.drain)
    # instead of APScheduler warning that it skipped it.
    late_ok = {"misfire_grace_time": None, "coalesce": True}
    # The first tick as soon as the bot runs: a repeating job added before the scheduler
    # starts would first run one whole interval after the start.
    app.job_queue.run_once(dispatch, when=0, name="dispatcher", job_kwargs=late_ok)
    app.job_queue.run_repeating(
        dispatch,
        interval=settings.tick_seconds,
        first=settings.tick_seconds,
        name="dispatcher",
        job_kwargs={**late_ok, "max_instances": 2},
    )
    app.job_queue.run_repeating(
        follow_up,
        interval=FOLLOW_UP_INTERVAL,
        first=FOLLOW_UP_INTERVAL,
        name="follow-ups",
        job_kwargs={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )
    app.job_queue.run_repeating(
        housekeeping,
        interval=HOUSEKEEPING_INTERVAL,
        first=HOUSEKEEPING_INTERVAL,
        name="housekeeping",
        job_kwargs={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )
    # The "/" menus and descriptions at start; then the staff menus follow role changes
    # made elsewhere (the command line, another replica) within a minute.
    app.job_queue.run_once(sync_menus, when=0, name="menus")
    app.job_queue.run_repeating(
        sync_menus,
        interval=MENU_SYNC_INTERVAL,
        first=MENU_SYNC_INTERVAL,
        name="menus",
        job_kwargs={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )
    # Apart from the tick, which may take long (a big batch at 30 per second): the other
    # processes must not take this one for stopped while it is sending.
    app.job_queue.run_repeating(
        heartbeat,
        interval=BEAT_EVERY.total_seconds(),
        first=BEAT_EVERY.total_seconds(),
        name="heartbeat",
        job_kwargs={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )
    return app


async def sync_menus(context: BotContext) -> None:
    """Publish the menus (all of them the first time), then keep the staff menus in line."""
    try:
        await context.menus.publish()
    except Exception as error:  # the database is away: the next run tries again
        log.warning("menus not synced: %s", type(error).__name__)


async def heartbeat(context: BotContext) -> None:
    """This process is alive; the claims of stopped ones are taken back."""
    try:
        await context.dispatcher.beat()
    except Exception as error:  # the database is away: the next beat tries again
        log.warning("heartbeat failed: %s", type(error).__name__)


async def follow_up(context: BotContext) -> None:
    """The follow-up job: nudges for unconfirmed tests and alerts for missed ones, by one
    replica every ``FOLLOW_UP_INTERVAL``."""
    if not await claimed(context, name="follow-ups", interval=FOLLOW_UP_INTERVAL):
        return
    report = await follow_ups(context.bot_data)
    if report.nudged or report.alerted:
        log.info("follow-ups: %d nudges and %d alerts queued", report.nudged, report.alerted)


async def follow_ups(services: Services) -> SweepReport:
    """One follow-up sweep at the services' clock; the dispatcher sends what it queues,
    the alerts at once."""
    dispatcher, sessions, clock = services.dispatcher, services.sessions, services.clock
    assert dispatcher is not None
    assert sessions is not None
    assert clock is not None
    report = await sweep(sessions, now=clock.now(), alert_chat_id=dispatcher.alert_chat_id)
    if report.alerted:
        await dispatcher.send_alerts()
    return report


async def housekeeping(context: BotContext) -> None:
    """The housekeeping job: each step of ``HOUSEKEEPING``, by one replica every
    ``HOUSEKEEPING_INTERVAL``."""
    if not await claimed(context, name="housekeeping", interval=HOUSEKEEPING_INTERVAL):
        return
    for step in HOUSEKEEPING:
        try:
            await step(context)
        except Exception as error:  # the database is away, or a bug: the next step still runs
            log.warning(
                "housekeeping: %s failed: %s", getattr(step, "__name__", step), type(error).__name__
            )


async def expire_dialogues(context: BotContext) -> None:
    """Conversations whose time ran out end; an abandoned enrolment is told so."""
    conversations = context.bot_data.conversations
    ended = await dialogues.expire(context, conversations.notices if conversations else {})
    if ended:
        log.info("housekeeping: %d conversations ran out", ended)


async def expire_web_access(context: BotContext) -> None:
    """Sign-in links and web console sessions that ran out are deleted."""
    async with context.sessions.begin() as session:
        await web_access.expire(session, now=context.clock.now())


# The steps of the housekeeping job, run in this order once a minute by one process of all
# the replicas. A step that fails is logged and the next one runs; add a step here.
HOUSEKEEPING: list[Housekeeping] = [expire_dialogues, expire_web_access]


async def claimed(context: BotContext, *, name: str, interval: float) -> bool:
    """Whether this process runs the job ``name`` now: of all the replicas, the first whose
    timer fires an interval after the job's last run does (``periodic.claim``)."""
    async with context.sessions.begin() as session:
        return await periodic.claim(
            session,
            name=name,
            every=timedelta(seconds=interval) - CLAIM_LEEWAY,
            now=context.clock.now(),
            process=this_process(),
        )


async def dispatch(context: BotContext) -> None:
    """The dispatcher job: send what is due, batch after batch while there is a backlog."""
    async for report in context.dispatcher.drain():
        if report.alerts:
            log.info("dispatch: coordinator alerts %s", dict(report.alerts))
        if report.claimed or report.expired:
            log.info(
                "dispatch: %d claimed, %d sent, %d retrying, %d failed, %d expired",
                report.claimed,
                report.sent,
                report.retrying,
                report.failed,
                report.expired,
            )


async def prepare_database(engine: AsyncEngine, settings: Settings, clock: Clock) -> None:
    """Bring a SQLite file to the current schema (PostgreSQL must be migrated explicitly)
    and make the configured admins admins."""
    if is_sqlite(engine):
        await migrate(engine)
    elif not await is_migrated(engine):
        raise DatabaseNotMigrated()
    async with session_factory(engine).begin() as session:
        await store.bootstrap_admins(session, user_ids=settings.admin_ids, now=clock.now())


def serve(settings: Settings, clock: Clock) -> None:
    """Run the bot until SIGINT or SIGTERM: updates through the webhook when
    REMINDBOT_WEBHOOK_URL is set, else long polling; the web server (health, metrics, the
    webhook, the console) on REMINDBOT_HTTP_PORT either way.

    Only one process may poll one bot token (Telegram answers a second with a conflict): on
    PostgreSQL the replicas elect the poller (``bot.runner``), and the others dispatch and
    take over when it stops. With a webhook, every replica takes updates behind a load
    balancer. On SIGTERM the message being sent is finished and the rest of its batch released.
    """
    engine = create_engine(settings.database_url)
    app = build_application(settings=settings, engine=engine, clock=clock)

    dispatcher = app.bot_data.dispatcher
    assert dispatcher is not None
    web = web_server.for_application(app, settings)

    async def startup(_: Application) -> None:  # type: ignore[type-arg]
        for old, new in settings.renamed_in_use():
            log.warning(
                "%s is deprecated: set %s instead (the old name goes next release)", old, new
            )
        await prepare_database(engine, settings, clock)
        for problem in catalog_problems():
            log.error("translations: %s", problem)
        # Before the webhook is set: Telegram posts the first update right after.
        await web.start()
        log.info("remindbot started as @%s", app.bot.username)

    async def shutdown(_: Application) -> None:  # type: ignore[type-arg]
        await web.stop()
        try:
            await dispatcher.close()
        except Exception as error:  # the others will find it stopped by its heartbeat
            log.warning("could not sign off the process: %s", type(error).__name__)
        await engine.dispose()

    app.post_init = startup
    app.post_shutdown = shutdown
    webhook = None
    if settings.webhook_url and settings.webhook_secret:
        webhook = runner.Webhook(
            url=settings.webhook_url, secret_token=settings.webhook_secret.get_secret_value()
        )
    # One loop for the start-up check and for PTB: the bot's HTTP sessions belong to it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        # Ask Telegram who we are before PTB does: a rejected token or an unreachable server
        # then ends the start with one line, not with PTB's bootstrap traceback.
        loop.run_until_complete(app.bot.initialize())
        # SQLite is one process's: it polls without asking anyone.
        poller_lock = None
        if webhook is None and not is_sqlite(engine):
            poller_lock = AdvisoryLock(engine, name="poller", scope=f"bot {app.bot.id}")
        loop.run_until_complete(
            runner.run(
                app, allowed_updates=ALLOWED_UPDATES, webhook=webhook, poller_lock=poller_lock
            )
        )
    finally:
        # PTB shuts down only what it initialised itself: a start that failed half-way
        # leaves the bot's HTTP sessions open, and their engine too.
        loop.run_until_complete(app.bot.shutdown())
        loop.run_until_complete(engine.dispose())
        loop.close()
        asyncio.set_event_loop(None)
