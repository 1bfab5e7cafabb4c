"""The log guard: no personal data in any record, project lines as they were written."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest
from telegram import Update

from bot.logs import RedactPersonalData, handler, redact
from tests.bot.conftest import TOKEN

USER_ID = 5550123456
GROUP_ID = -1001234567890
MESSAGE: dict[str, Any] = {
    "update_id": 712345678,
    "message": {
        "message_id": 7,
        "from": {
            "id": USER_ID,
            "is_bot": False,
            "first_name": "Zebulon",
            "last_name": "O'Quirrelby",
            "username": "zeb_quirrelby",
        },
        "chat": {"id": USER_ID, "type": "private", "first_name": "Zebulon"},
        "date": 1_767_000_000,
        "text": '/start I feel "dizzy" and it\'s bad',
        "contact": {"phone_number": "+49 170 1234567", "first_name": "Zebulon", "user_id": USER_ID},
    },
}
PERSONAL = [
    str(USER_ID),
    str(GROUP_ID),
    "Zebulon",
    "Quirrelby",
    "zeb_quirrelby",
    "dizzy",
    "170 1234567",
    "snooze:42",
    "zeb@example.org",
]


def written(message: str, *args: object, exc_info: Any = None) -> str:
    """The line ``remindbot run`` writes for a record of PTB's."""
    stream = io.StringIO()
    record = logging.LogRecord(
        "telegram.ext.Updater", logging.CRITICAL, __file__, 1, message, args, exc_info
    )
    handler(json_lines=False, token=TOKEN, stream=stream).handle(record)
    return stream.getvalue()


def assert_clean(line: str) -> None:
    leaked = [value for value in PERSONAL if value in line]
    assert not leaked, f"{leaked} in {line!r}"


def test_a_ptb_traceback_quoting_an_update_loses_its_personal_data() -> None:
    update = Update.de_json(MESSAGE, None)
    try:
        # What a parse error or a bug may carry: a Telegram object's repr, a raw payload.
        raise ValueError(f"cannot handle {update!r} from {MESSAGE['message']}")
    except ValueError:
        line = written("Error while handling %s", json.dumps(MESSAGE), exc_info=sys.exc_info())
    assert_clean(line)
    assert "Error while handling update 712345678 (message)" in line
    assert "Traceback (most recent call last):" in line
    assert "ValueError: cannot handle Update(message=Message(" in line
    assert "first_name=<redacted>" in line
    assert "'text': <redacted>" in line
    assert "'phone_number': <redacted>" in line
    assert "update_id=712345678" in line  # update ids are not personal


@pytest.mark.parametrize(
    "text",
    [
        # Python reprs, JSON, JSON in JSON, a Telegram object's repr, free text.
        f"{{'chat_id': {USER_ID}, 'text': 'I feel dizzy', 'reply_markup': None}}",
        f'{{"chat": {{"id": {GROUP_ID}, "title": "Zebulon\'s family"}}}}',
        f'"{{\\"first_name\\": \\"Zebulon\\", \\"id\\": {USER_ID}}}"',
        "InlineKeyboardButton(callback_data='snooze:42', text='Remind me tomorrow')",
        "CallbackQuery(data='snooze:42', from_user=User(username='zeb_quirrelby'))",
        f"chat {GROUP_ID} wrote from +49 170 1234567 and zeb@example.org",
        "[SQL: INSERT INTO patient VALUES (?, ?)] [parameters: ('Zebulon', 'dizzy')]",
    ],
)
def test_personal_values_are_removed_from_any_payload(text: str) -> None:
    assert_clean(redact(text))


def test_updates_in_the_arguments_become_their_id_and_type() -> None:
    payload = {"update_id": 712345679, **{k: v for k, v in MESSAGE.items() if k != "update_id"}}
    # PTB logs raw updates (its CRITICAL lines), parsed ones and webhook bodies.
    line = written("Received data was %r and %s", [MESSAGE, payload], Update.de_json(MESSAGE, None))
    assert "[update 712345678 (message), update 712345679 (message)]" in line
    assert "and update 712345678 (message)" in line
    assert_clean(line)
    # A lone dict argument: logging keeps it as the mapping of a "%(key)s" format.
    assert "Received data was: 'update 712345678 (message)'" in written(
        "Received data was: %r", MESSAGE
    )


@pytest.mark.parametrize(
    "line",
    [
        "dispatch: 12 claimed, 12 sent, 0 retrying, 0 failed, 0 expired",
        "dispatcher: sent 12 reminders",
        "follow-ups: 3 nudges and 1 alerts queued",
        "skipped update 712345678 (poll): it could not be read (TypeError)",
        "unhandled KeyError while handling update 712345678 (message) at start "
        "(/work/main/bot/handlers/patient.py:120)",
        "health and metrics on http://127.0.0.1:18080/",
        "remindbot started as @remindbot_clinic_bot",
        "Telegram's flood wait: every send waits 30 s",
        "alert missed_test for patient 42 given up",
        "tick took 0.123456 s at 2026-01-05T09:00:00.123456+00:00",
    ],
)
def test_project_lines_stay_as_they_were(line: str) -> None:
    assert redact(line) == line


def test_ids_and_phone_numbers_are_replaced() -> None:
    assert redact(f"blocked by {USER_ID}, group {GROUP_ID}, call +49 170 1234567") == (
        "blocked by <id>, group <id>, call <phone>"
    )


def test_the_token_goes_before_the_bot_id_it_starts_with() -> None:
    line = written("POST http://127.0.0.1:8081/bot%s/getUpdates failed", TOKEN)
    assert "/bot<token>/getUpdates" in line
    assert TOKEN.split(":")[1] not in line


def test_json_lines_are_cleaned_too() -> None:
    stream = io.StringIO()
    record = logging.LogRecord(
        "telegram.ext.ExtBot",
        logging.DEBUG,
        __file__,
        1,
        "Calling Bot API endpoint `%s` with parameters `%s`",
        ("sendMessage", {"chat_id": USER_ID, "text": "Zebulon, I feel dizzy"}),
        None,
    )
    handler(json_lines=True, token=TOKEN, stream=stream).handle(record)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == (
        "Calling Bot API endpoint `sendMessage` with parameters "
        "`{'chat_id': <id>, 'text': <redacted>}`"
    )


def test_a_record_whose_arguments_do_not_fit_is_written_without_them() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d of %d", (USER_ID,), None)
    assert RedactPersonalData().filter(record)
    assert record.getMessage() == "%d of %d (its arguments did not fit)"
