"""The Telegram webhook: Telegram posts each update to the path of REMINDBOT_WEBHOOK_URL.

PTB's custom-webhook pattern: the application runs without PTB's own webhook server, and
this route reads each update and puts it on the application's update queue; the handlers
take it from there as they would a polled one.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from telegram import Update
from telegram.ext import Application, ExtBot

log = logging.getLogger(__name__)

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
_UPDATE_TYPE: Final = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True)
class Webhook:
    """The route of ``application``'s webhook at ``path``, which checks ``secret``."""

    path: str
    secret: str
    application: Application[Any, Any, Any, Any, Any, Any]

    async def handle(self, request: web.Request) -> web.Response:
        """Answer at once: the update is handled after the answer, from the queue."""
        offered = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(
            offered.encode("utf-8", "surrogateescape"), self.secret.encode()
        ):
            return web.Response(status=403, text="forbidden\n")
        if not self.application.running:
            # Starting or stopping: Telegram posts it again soon, here or to another replica.
            return web.Response(status=503, text="not running\n")
        try:
            data = await request.json(loads=json.loads)
        except ValueError:
            return web.Response(status=400, text="expected a JSON update\n")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.Response(status=400, text="expected a JSON update\n")
        bot = self.application.bot
        try:
            update = Update.de_json(data, bot)
        except Exception as error:
            # Acknowledged and skipped, as when polling (bot.app.RemindbotBot): refused,
            # Telegram would post it again and again, and every later update would wait.
            kind = next((str(key) for key in data if key != "update_id"), "")
            log.warning(
                "skipped update %d (%s): it could not be read (%s)",
                data["update_id"],
                kind if _UPDATE_TYPE.fullmatch(kind) else "unknown",
                type(error).__name__,
            )
            return web.Response(status=200)
        if isinstance(bot, ExtBot):
            bot.insert_callback_data(update)
        await self.application.update_queue.put(update)
        return web.Response(status=200)
