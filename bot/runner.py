"""The bot process's run loop: what PTB's ``run_polling`` and ``run_webhook`` do, except that
among replicas on one PostgreSQL only one polls, and that webhook updates come through the
bot's own web server (``bot.web``), not PTB's.

Telegram answers a second concurrent ``getUpdates`` with 409 Conflict, so the replicas elect
a poller with an advisory lock (``scheduler.leadership``); the others run everything else
(the dispatcher, the heartbeat, the periodic jobs) and take over within seconds when the
poller stops. PTB's own run methods start the updater themselves, hence this loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from telegram.ext import Updater

from bot.context import RemindbotApp
from scheduler import leadership

log = logging.getLogger(__name__)

POLL_TIMEOUT: Final = timedelta(seconds=10)  # run_polling's long poll
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Webhook:
    """Where Telegram posts the updates (served by ``bot.web``); every replica takes them
    this way, behind a load balancer."""

    url: str
    secret_token: str


async def run(
    app: RemindbotApp,
    *,
    allowed_updates: Sequence[str],
    webhook: Webhook | None = None,
    poller_lock: leadership.AdvisoryLock | None = None,
) -> None:
    """Start the application, take updates until SIGINT or SIGTERM, then stop it.

    With ``webhook``, Telegram posts the updates (the web server, started by ``post_init``,
    puts them on the update queue); else this process polls, and with a ``poller_lock``
    only while it holds the lock. Shutdown runs whatever failed, as in PTB.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop.set)
    try:
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        await app.start()
        try:
            await _take_updates(app, stop, allowed_updates, webhook, poller_lock)
        finally:
            updater = _updater(app)
            if updater.running:
                await updater.stop()
            # The dispatcher finishes the message it is sending and releases the rest of its
            # batch once ``app.running`` is False (see ``Dispatcher.running``).
            await app.stop()
            if app.post_stop:
                await app.post_stop(app)
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


async def _take_updates(
    app: RemindbotApp,
    stop: asyncio.Event,
    allowed_updates: Sequence[str],
    webhook: Webhook | None,
    poller_lock: leadership.AdvisoryLock | None,
) -> None:
    """Take updates until ``stop`` is set."""
    updater = _updater(app)
    if webhook is not None:
        await app.bot.set_webhook(
            url=webhook.url, secret_token=webhook.secret_token, allowed_updates=allowed_updates
        )
        log.info("Telegram posts updates to the webhook now")
        await stop.wait()
    elif poller_lock is None:
        await _start_polling(updater, allowed_updates)
        await stop.wait()
    else:

        async def gained() -> None:
            await _start_polling(updater, allowed_updates)

        async def lost() -> None:
            await _stop_polling(updater)

        await leadership.hold(poller_lock, stop=stop, on_gained=gained, on_lost=lost)


async def _start_polling(updater: Updater, allowed_updates: Sequence[str]) -> None:
    await updater.start_polling(allowed_updates=allowed_updates, timeout=POLL_TIMEOUT)
    log.info("this process polls Telegram for updates now")


async def _stop_polling(updater: Updater) -> None:
    """Stop polling at once: the poll in flight is cancelled, not waited for."""
    if updater.running:
        await updater.stop()
        log.info("this process no longer polls Telegram for updates")


def _updater(app: RemindbotApp) -> Updater:
    assert app.updater is not None  # ApplicationBuilder makes one unless told not to
    return app.updater
