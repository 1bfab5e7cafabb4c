"""Logging set-up: plain or JSON lines, and nothing secret or personal in them.

Handlers never log message texts, labels or chat ids; this module adds a last guard that
removes the bot token from anything that would be written.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactToken(logging.Filter):
    """Replaces the bot token in a record's message and traceback (request URLs carry it)."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg = message.replace(self.token, "<token>")
                record.args = None
            if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
                # A traceback may quote a request URL too; formatters use exc_text if set.
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = text.replace(self.token, "<token>")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the error type)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure(*, level: str, json_lines: bool, token: str | None) -> None:
    """Log to stderr at ``level``; quiet the libraries that log per request."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(RedactToken(token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler reports every run of the dispatcher tick; the tick logs what it did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
