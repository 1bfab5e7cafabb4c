"""The last-resort error handler: an outage is one warning, a bug one error line."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy.exc import OperationalError
from telegram.error import BadRequest, NetworkError, TimedOut

from bot.context import BotContext
from bot.handlers.errors import on_error


@pytest.mark.parametrize(
    ("error", "level", "message"),
    [
        (
            NetworkError("Bad Gateway"),
            logging.WARNING,
            "Telegram could not be reached while handling a job (NetworkError)",
        ),
        (
            TimedOut(),
            logging.WARNING,
            "Telegram could not be reached while handling a job (TimedOut)",
        ),
        (
            OperationalError("SELECT 1", {}, ConnectionRefusedError()),
            logging.WARNING,
            "the database could not be reached while handling a job (OperationalError)",
        ),
        (
            BadRequest("Message is not modified"),
            logging.ERROR,
            "unhandled BadRequest while handling a job",
        ),
        (KeyError("x"), logging.ERROR, "unhandled KeyError while handling a job"),
    ],
)
async def test_outages_are_warnings_and_bugs_errors(
    error: Exception, level: int, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise error
    except Exception as raised:
        context = cast(Any, SimpleNamespace(error=raised))
    with caplog.at_level(logging.WARNING, logger="bot.handlers.errors"):
        await on_error(None, cast(BotContext, context))
    [record] = caplog.records
    assert record.levelno == level
    assert record.getMessage().startswith(message)
    assert record.exc_info is None  # no traceback, whatever it was
