"""Incoming updates cannot hurt the bot: it subscribes only to what its handlers take, skips
an update PTB cannot read, and logs neither one's content."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import logging
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
)

from bot import logs
from bot.app import ALLOWED_UPDATES, build_application
from bot.settings import Settings
from scheduler.clock import Clock
from tests.bot.conftest import TOKEN, Harness
from tests.bot.test_run import bot_env, free_port, remindbot_run
from tests.fake_bot_api import FakeBotApi, FakeUser

ZEB = FakeUser(
    id=5550123456,
    first_name="Zebulon",
    last_name="Quirrelby",
    username="zeb_quirrelby",
    language_code="en",
)
YSOLDE = FakeUser(id=5550999888, first_name="Ysolde", username="ysolde_w", language_code="en")
QUESTION = "Did Zebulon take the tablets?"
OPTIONS = ("Yes, all of them", "Only some")
HELP = "/help kiwi-7731"

# What the bot must never write, whatever the level: the poll's texts, the users' ids, names
# and usernames, the message texts.
PERSONAL = [
    QUESTION,
    *OPTIONS,
    "kiwi-7731",
    "secret words",
    *(str(user.id) for user in (ZEB, YSOLDE)),
    *(value for user in (ZEB, YSOLDE) for value in (user.first_name, user.last_name) if value),
    *(user.username for user in (ZEB, YSOLDE) if user.username),
]


def unreadable_poll() -> dict[str, Any]:
    """A poll as an older Bot API sends it: without ``allows_revoting``, which PTB 22.8 needs."""
    return {
        "poll": {
            "id": "5233466577766000001",
            "question": QUESTION,
            "options": [
                {"persistent_id": str(n), "text": text, "voter_count": 0}
                for n, text in enumerate(OPTIONS)
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        }
    }


def unreadable_message() -> dict[str, Any]:
    """A message of a subscribed type whose chat has no type: PTB cannot read it."""
    return {
        "message": {
            "message_id": 1,
            "from": YSOLDE.to_api(),
            "chat": {"id": YSOLDE.id, "first_name": YSOLDE.first_name},
            "date": 1_767_000_000,
            "text": "/start my secret words",
        }
    }


def flatten(handlers: Iterable[BaseHandler[Any, Any, Any]]) -> Iterator[BaseHandler[Any, Any, Any]]:
    """Every handler, those inside conversations too."""
    for handler in handlers:
        if isinstance(handler, ConversationHandler):
            yield from flatten(handler.entry_points)
            for state, in_state in handler.states.items():
                # Run by the conversation's timer with the last update, never for a new one.
                if state != ConversationHandler.TIMEOUT:
                    yield from flatten(in_state)
            yield from flatten(handler.fallbacks)
        else:
            yield handler


# What each kind of handler takes. CommandHandler and MessageHandler with filters of their own
# (remindbot's: private chats) take messages and edited messages alike.
TAKES = {
    CommandHandler: {"message", "edited_message"},
    MessageHandler: {"message", "edited_message"},
    CallbackQueryHandler: {"callback_query"},
}


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Every record of every logger, DEBUG included, written as ``remindbot run`` writes it."""
    stream = io.StringIO()
    written = logs.handler(json_lines=False, token=TOKEN, stream=stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(written)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(written)
        root.setLevel(level)


@pytest.fixture
async def subscribed(harness: Harness) -> Harness:
    """The harness, polling with remindbot's subscription as ``remindbot run`` does."""
    updater = harness.app.updater
    assert updater is not None
    await updater.stop()
    await updater.start_polling(
        allowed_updates=ALLOWED_UPDATES, timeout=dtm.timedelta(seconds=1), poll_interval=0
    )
    return harness


def assert_no_personal_data(log: str) -> None:
    leaked = [value for value in PERSONAL if value in log]
    assert not leaked, f"{leaked} in the log"


async def test_the_subscription_covers_what_the_handlers_take(
    bot_settings: Settings, bot_engine: AsyncEngine, clock: Clock
) -> None:
    app = build_application(settings=bot_settings, engine=bot_engine, clock=clock)
    handlers = list(flatten(h for group in app.handlers.values() for h in group))
    unknown = {type(h).__name__ for h in handlers if type(h) not in TAKES}
    assert not unknown, f"add what {unknown} take to ALLOWED_UPDATES and to TAKES"
    taken = set().union(*(TAKES[type(h)] for h in handlers))
    assert sorted(ALLOWED_UPDATES) == sorted(taken)


@pytest.mark.parametrize(
    ("content", "unsolicited"),
    [
        # Not subscribed to, but Telegram may still send one queued before the subscription.
        pytest.param(unreadable_poll(), True, id="poll"),
        pytest.param(unreadable_message(), False, id="message"),
    ],
)
async def test_an_unreadable_update_is_skipped_and_the_next_one_answered(
    log_stream: io.StringIO,
    subscribed: Harness,
    fake_bot_api: FakeBotApi,
    content: dict[str, Any],
    unsolicited: bool,
) -> None:
    api = fake_bot_api
    bad = api.send_update(content, unsolicited=unsolicited)
    await api.wait_delivered(bad)
    [answer] = await subscribed.say(ZEB, HELP)
    assert "ask your care team" in answer.text
    await api.wait_until(lambda: bad.confirmed, what="the offset moved past the bad update")
    # Before, PTB asked again at once for the same batch, about 100 times a second.
    assert len(api.calls_to("getUpdates")) < 10  # the whole test, start and restart included
    log = log_stream.getvalue()
    kind = next(iter(content))
    # One line names it, PTB's DEBUG lines aside (which say "update <id> (<type>)" too).
    [reported] = [
        line
        for line in log.splitlines()
        if f"update {bad.update_id}" in line and " DEBUG " not in line
    ]
    assert f"WARNING bot.app: skipped update {bad.update_id} ({kind}): it could not" in reported
    assert " CRITICAL " not in log
    assert " ERROR " not in log
    assert "Traceback" not in log
    assert " DEBUG telegram" in log  # PTB's own lines were written, and cleaned
    assert_no_personal_data(log)


async def test_remindbot_run_polls_for_the_subscribed_updates_only(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    fake_bot_api.max_long_poll = 0.5  # SIGTERM waits for the poll in flight
    async with remindbot_run(bot_env(fake_bot_api, tmp_path / "bot.db")) as process:
        call = await fake_bot_api.wait_for("getUpdates", timeout=20, done=False)
        assert call.params["allowed_updates"] == list(ALLOWED_UPDATES)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0


async def test_webhook_refuses_an_unreadable_update_without_logging_it(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    secret = "s3cret-token"
    env = bot_env(
        fake_bot_api,
        tmp_path / "bot.db",
        REMINDBOT_WEBHOOK_URL=url,
        REMINDBOT_WEBHOOK_SECRET=secret,
        REMINDBOT_HTTP_LISTEN="127.0.0.1",
        REMINDBOT_HTTP_PORT=str(port),
        REMINDBOT_LOG_LEVEL="DEBUG",
    )
    async with remindbot_run(env) as process:
        assert process.stderr is not None
        # Read as it comes: DEBUG lines would fill the pipe and stop the bot.
        stderr = asyncio.create_task(process.stderr.read())
        call = await fake_bot_api.wait_for("setWebhook", timeout=20)
        assert call.params["allowed_updates"] == list(ALLOWED_UPDATES)
        await fake_bot_api.send_text(YSOLDE, "/help")  # answered once the server listens
        await fake_bot_api.wait_for_message(YSOLDE.id, timeout=10)
        # Posted as Telegram would, with the secret, past the fake's queue: a refused update
        # would be retried there for ever.
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with aiohttp.ClientSession() as client:
            body = {"update_id": 700001, **unreadable_poll()}
            async with client.post(url, json=body, headers=headers) as response:
                assert response.status in (200, 400)
        await fake_bot_api.send_text(ZEB, HELP)
        answer = await fake_bot_api.wait_for_message(ZEB.id, timeout=10)
        assert "ask your care team" in answer.text
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0
        log = (await stderr).decode()
    assert "update 700001 (poll)" in log
    assert " DEBUG telegram" in log
    assert_no_personal_data(log)
