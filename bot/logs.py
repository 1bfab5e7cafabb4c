"""Logging set-up: plain or JSON lines, and nothing secret or personal in them.

Handlers never log message texts, labels or chat ids. The one handler has two last guards
that see every record of every logger (python-telegram-bot's DEBUG lines quote each request
and update, its CRITICAL ones the raw updates it could not read): one removes the bot token,
the other personal data.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, TextIO

from telegram import Update

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "<redacted>"

# Keys whose values are what people wrote or who they are, in Telegram's objects and the Bot
# API's parameters: texts, captions, poll questions and options, names, usernames, titles,
# phone numbers, e-mails, locations, callback data, links and secrets. Any key containing one
# of these words counts (first_name, callback_data, secret_token, invite_link...).
_PERSONAL_WORDS: Final = (
    "text|caption|question|explanation|description|name|title|bio|phone|email|vcard|address"
    "|latitude|longitude|data|query|payload|link|url|secret|token"
)
# A string literal as repr() writes it ('...' or "..."), as JSON does, or quoted once more
# (\"...\" or \'...\', a JSON text in JSON or a repr in a repr); or a plain number.
_VALUE: Final = (
    r"'(?:[^'\\\n]|\\.)*'"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"""|\\(?P<quote>["'])(?:(?!\\(?P=quote))[^\n])*\\(?P=quote)"""
    r"|-?\d+(?:\.\d+)?(?![\w.])"
)
# 'text': 'hi' (a dict's repr), "text": "hi" (JSON), text='hi' (a Telegram object's repr).
_PERSONAL_VALUE: Final = re.compile(
    rf"""(?<!\w)(?P<key>\\?["']?[A-Za-z_]*(?:{_PERSONAL_WORDS})[A-Za-z_]*\\?["']?\s*[:=]\s*)"""
    rf"(?:{_VALUE})",
    re.IGNORECASE,
)
# SQLAlchemy's errors quote a statement's bound values.
_SQL_PARAMETERS: Final = re.compile(r"\[parameters: [^\n]*\]")
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE: Final = re.compile(r"\+\d[\d ().-]{6,}\d")
# Telegram's user and chat ids (5 digits or more; groups' are negative). Kept: update ids, which
# say nothing about a person ("update 123456789", update_id=123456789, the polling offset), and
# ports (host:8443).
_NUMBER: Final = re.compile(
    r"(?P<keep>\b(?:update|update_id|offset)\W{0,4}\d+|\bupdate with id \d+"
    r"|(?<=[\w\]]:)\d{1,5}\b)"
    r"|(?<![\w.])-?\d{5,}(?!\w|\.\d)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` without the personal data a log line may quote: the values of personal keys,
    SQL parameters, e-mail addresses, phone numbers and Telegram ids."""
    text = _SQL_PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    text = _PERSONAL_VALUE.sub(lambda found: found["key"] + REDACTED, text)
    text = _EMAIL.sub("<email>", text)
    text = _PHONE.sub("<phone>", text)
    return _NUMBER.sub(lambda found: found["keep"] or "<id>", text)


def update_summary(value: object) -> object:
    """An update (parsed, as JSON or its text), or a list of them, as "update <id> (<type>)";
    anything else as it is. A log line needs which update it was, never what it said."""
    if isinstance(value, Update):
        kind = next((k for k in Update.ALL_TYPES if getattr(value, k, None) is not None), "")
        return f"update {value.update_id} ({kind or 'empty'})"
    if isinstance(value, Mapping) and isinstance(value.get("update_id"), int):
        kind = next((str(k) for k in value if k != "update_id"), "empty")
        return f"update {value['update_id']} ({kind})"
    if isinstance(value, list | tuple) and value:
        summaries = [update_summary(item) for item in value]
        if all(isinstance(s, str) and s.startswith("update ") for s in summaries):
            return f"[{', '.join(str(s) for s in summaries)}]"
    if isinstance(value, str | bytes) and value[:1] in ("{", "[", b"{", b"[") and len(value) > 2:
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        summary = update_summary(decoded)
        return value if summary is decoded else summary
    return value


def _message(record: logging.LogRecord) -> str:
    """The record's message; a filter that let ``getMessage`` raise would crash the code that
    logged it, where the logging module would only report it."""
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg} (its arguments did not fit)"


class RedactToken(logging.Filter):
    """Replaces the bot token in a record's message and traceback (request URLs carry it)."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = _message(record)
            if self.token in message:
                record.msg = message.replace(self.token, "<token>")
                record.args = None
            if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
                # A traceback may quote a request URL too; formatters use exc_text if set.
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = text.replace(self.token, "<token>")
        return True


class RedactPersonalData(logging.Filter):
    """Removes personal data from a record's message, arguments, traceback and stack.

    On the handler, not on a logger, so that it sees the records of every logger and level.
    Updates in the arguments become their id and type; the rest is cleaned by ``redact``.
    Must come after ``RedactToken``: the token starts with the bot's id, which this would
    replace, leaving the token's secret part for all to read.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(update_summary(arg) for arg in args)
        elif isinstance(args, Mapping):
            # logging keeps a lone dict argument as the mapping for "%(key)s" formats.
            summary = update_summary(args)
            if summary is not args:
                record.args = (summary,)
            else:
                record.args = {key: update_summary(arg) for key, arg in args.items()}
        record.msg = redact(_message(record))
        record.args = None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
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


def handler(
    *, json_lines: bool, token: str | None, stream: TextIO | None = None
) -> logging.Handler:
    """The handler of every log line, to ``stream`` (stderr), with both guards."""
    written = logging.StreamHandler(stream or sys.stderr)
    written.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    written.addFilter(RedactToken(token))
    written.addFilter(RedactPersonalData())
    return written


def configure(*, level: str, json_lines: bool, token: str | None) -> None:
    """Log to stderr at ``level``; quiet the libraries that log per request."""
    root = logging.getLogger()
    root.handlers[:] = [handler(json_lines=json_lines, token=token)]
    root.setLevel(level)
    # httpx logs every request URL, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler reports every run of the dispatcher tick; the tick logs what it did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # aiosqlite's DEBUG lines quote every statement's values: labels, hashes, consent texts.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
