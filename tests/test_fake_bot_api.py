"""The fake Bot API against python-telegram-bot's real Bot, Application and HTTP stack."""

from __future__ import annotations

import asyncio
import datetime as dtm
import socket
import struct
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)
from telegram.request import HTTPXRequest

from tests.fake_bot_api import (
    FakeBotApi,
    FakeUser,
    Fault,
    ManualClock,
    WaitTimeout,
)
from tests.network_guard import (
    NetworkAccessBlocked,
    NetworkGuard,
    blocked_network,
    hosts_allowed_by_environment,
    is_loopback_host,
)

TOKEN = "123456:TEST-token_abc"
ALICE = FakeUser(id=4242, first_name="Alice", language_code="de", username="alice")
BOB = FakeUser(id=4343, first_name="Bob")


@pytest.fixture
async def bot(fake_bot_api: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=fake_bot_api.base_url) as initialized:
        yield initialized


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(item.title(), callback_data=item)] for item in data]
    )


# -- plain Bot calls -----------------------------------------------------------------------


async def test_get_me_identifies_the_bot_by_its_token(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.username, me.is_bot) == (123456, "remindbot_test_bot", True)
    assert bot.username == "remindbot_test_bot"  # Bot.initialize called getMe already
    assert fake_bot_api.token == TOKEN
    assert [call.method for call in fake_bot_api.calls] == ["getMe", "getMe"]
    assert all(call.outcome == "ok" for call in fake_bot_api.calls)


async def test_a_malformed_token_and_an_unknown_method_are_not_found(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    with pytest.raises(InvalidToken, match="rejected"):
        async with Bot("not-a-token", base_url=fake_bot_api.base_url):
            pass
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy")

    assert fake_bot_api.calls_to("sendTelepathy")[0].outcome == "not_found"


async def test_send_message_records_text_and_buttons(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    first = await bot.send_message(
        ALICE.id,
        "<b>Blood test</b> tomorrow &amp; urine test",
        parse_mode=ParseMode.HTML,
        reply_markup=_keyboard("done", "later"),
    )
    second = await bot.send_message(ALICE.id, "second")
    elsewhere = await bot.send_message(BOB.id, "hi Bob")

    assert isinstance(first, Message)
    assert first.text == "Blood test tomorrow & urine test"
    assert (first.message_id, second.message_id, elsewhere.message_id) == (1, 2, 1)
    assert first.chat.id == ALICE.id
    assert first.chat.type == "private"
    assert first.from_user is not None
    assert first.from_user.id == 123456
    assert first.reply_markup == _keyboard("done", "later")
    sent = fake_bot_api.messages(ALICE.id)
    assert [message.text for message in sent] == ["Blood test tomorrow & urine test", "second"]
    assert sent[0].raw_text == "<b>Blood test</b> tomorrow &amp; urine test"
    assert sent[0].parse_mode == "HTML"
    assert sent[0].callback_data == ["done", "later"]
    assert sent[0].button("Later").row == 1
    call = fake_bot_api.calls_to("sendMessage", chat_id=ALICE.id)[0]
    assert call.params["chat_id"] == ALICE.id  # "4242" on the wire, decoded
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "done"


async def test_json_bodies_and_query_strings_are_understood_too(fake_bot_api: FakeBotApi) -> None:
    url = f"{fake_bot_api.base_url}{TOKEN}"
    markup = {"inline_keyboard": [[{"text": "Ok", "callback_data": "ok"}]]}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/sendMessage", json={"chat_id": 7, "text": "42", "reply_markup": markup}
        ) as response:
            sent = await response.json()
        async with session.get(f"{url}/sendmessage", params={"chat_id": "7", "text": "[1]"}):
            pass

    assert sent["ok"] is True
    assert sent["result"]["reply_markup"] == markup
    assert [m.text for m in fake_bot_api.messages(7)] == ["42", "[1]"]  # texts stay strings
    assert [c.method for c in fake_bot_api.calls] == ["sendMessage", "sendMessage"]


async def test_telegram_rejects_what_it_would_reject(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(1, "line<br>break", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="must be escaped"):
        await bot.send_message(1, "Done.", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(1, "x", reply_markup=_keyboard("x" * 65))
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(1, " ")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(1, "x" * 4097)


async def test_edits_are_kept_and_follow_telegram_rules(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    sent = await bot.send_message(ALICE.id, "Take the test?", reply_markup=_keyboard("yes"))

    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text(
            "Take the test?", ALICE.id, sent.message_id, reply_markup=_keyboard("yes")
        )
    edited = await bot.edit_message_text("Taken", ALICE.id, sent.message_id)
    await bot.edit_message_reply_markup(ALICE.id, sent.message_id, reply_markup=_keyboard("undo"))
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", ALICE.id, 999)

    assert isinstance(edited, Message)
    assert edited.edit_date is not None
    assert edited.reply_markup is None  # leaving reply_markup out removed the keyboard
    (message,) = fake_bot_api.messages(ALICE.id)
    assert (message.text, message.callback_data) == ("Taken", ["undo"])
    assert [(edit.method, edit.text) for edit in message.edits] == [
        ("editMessageText", "Taken"),
        ("editMessageReplyMarkup", "Taken"),
    ]


async def test_photo_and_document_uploads_keep_their_bytes(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    png = _png(3, 2)
    calendar = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"

    photo = await bot.send_photo(
        ALICE.id, photo=png, caption="<i>QR</i>", parse_mode=ParseMode.HTML
    )
    document = await bot.send_document(ALICE.id, document=calendar, filename="plan.ics")
    assert document.document is not None
    again = await bot.send_document(BOB.id, document=document.document.file_id)

    assert (photo.photo[-1].width, photo.photo[-1].height, photo.caption) == (3, 2, "QR")
    assert (document.document.file_name, document.document.mime_type) == (
        "plan.ics",
        "text/calendar",
    )
    first, second = fake_bot_api.messages(ALICE.id)
    assert first.file is not None
    assert first.file.data == png
    assert second.file is not None
    assert second.file.data == calendar
    assert second.file.filename == "plan.ics"
    assert again.document is not None
    assert again.document.file_id == document.document.file_id
    assert fake_bot_api.messages(BOB.id)[0].file == second.file  # resent by file_id
    assert fake_bot_api.calls_to("sendDocument")[0].files["document"].data == calendar
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        await bot.send_photo(ALICE.id, photo="no-such-file-id")


async def test_commands_are_recorded_per_scope_and_language(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("plan", "Your plan")])
    await bot.set_my_commands([BotCommand("start", "Starten")], language_code="de")

    assert [c.command for c in await bot.get_my_commands()] == ["start", "plan"]
    assert fake_bot_api.commands_for(language_code="de") == [
        {"command": "start", "description": "Starten"}
    ]
    await bot.delete_my_commands(language_code="de")
    assert await bot.get_my_commands(language_code="de") == ()
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Start!", "bad")])


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault.blocked(), Forbidden, "Forbidden: bot was blocked by the user"),
        (Fault.deactivated(), Forbidden, "Forbidden: user is deactivated"),
        (Fault.chat_not_found(), BadRequest, "Chat not found"),
        (Fault.server_error(), NetworkError, "Internal Server Error"),
    ],
)
async def test_faults_map_to_ptb_exceptions(
    fake_bot_api: FakeBotApi,
    bot: Bot,
    fault: Fault,
    error: type[TelegramError],
    message: str,
) -> None:
    fake_bot_api.inject("sendMessage", fault, chat_id=ALICE.id, times=1)

    with pytest.raises(error) as raised:
        await bot.send_message(ALICE.id, "reminder")
    await bot.send_message(BOB.id, "other chat is fine")
    await bot.send_message(ALICE.id, "second try works")

    assert type(raised.value) is error  # not one of its subclasses
    assert raised.value.message == message
    assert [m.text for m in fake_bot_api.messages(ALICE.id)] == ["second try works"]
    assert fake_bot_api.calls_to("sendMessage")[0].fault == fault
    assert fake_bot_api.injections == []


async def test_retry_after_until_cleared(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    fake_bot_api.inject("sendMessage", Fault.retry_after(5))

    for _ in range(2):
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(ALICE.id, "reminder")
        assert raised.value.retry_after == dtm.timedelta(seconds=5)
    fake_bot_api.clear_faults("sendMessage")
    await bot.send_message(ALICE.id, "reminder")

    outcomes = [(c.outcome, c.retry_after) for c in fake_bot_api.calls_to("sendMessage")]
    assert outcomes == [("retry_after", 5), ("retry_after", 5), ("ok", None)]


async def test_a_slow_answer_times_out_although_the_message_went_out(
    fake_bot_api: FakeBotApi,
) -> None:
    fake_bot_api.inject("sendMessage", Fault.slow(2.0), times=1)
    fake_bot_api.inject("sendPhoto", Fault.slow(2.0, applied_first=False), times=1)
    request = HTTPXRequest(read_timeout=0.2, media_write_timeout=1.0)
    async with Bot(TOKEN, base_url=fake_bot_api.base_url, request=request) as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(ALICE.id, "sent anyway")
        with pytest.raises(TimedOut):
            await bot.send_photo(ALICE.id, photo=_png(1, 1))
        await fake_bot_api.wait_until(
            lambda: all(c.disconnected for c in fake_bot_api.calls if c.fault), timeout=2.0
        )
        await bot.send_message(ALICE.id, "next")

    assert [m.content for m in fake_bot_api.messages(ALICE.id)] == ["sent anyway", "next"]
    sent, photo = (c for c in fake_bot_api.calls if c.fault)
    assert (sent.outcome, photo.outcome) == ("ok", "cancelled")


# -- rate limits ---------------------------------------------------------------------------


async def test_rate_limits_follow_the_injected_clock() -> None:
    clock = ManualClock()
    async with FakeBotApi(clock=clock) as server, Bot(TOKEN, base_url=server.base_url) as bot:
        limits = server.enable_rate_limit(global_per_second=3)
        await bot.send_message(1, "a")
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(1, "b")
        assert raised.value.retry_after == dtm.timedelta(seconds=1)
        await bot.send_message(2, "c")
        await bot.send_message(3, "d")
        with pytest.raises(RetryAfter):
            await bot.send_message(4, "e")  # 3 per second overall
        clock.advance(0.5)
        with pytest.raises(RetryAfter):
            await bot.send_message(1, "b")
        clock.advance(0.5)
        await bot.send_message(1, "b")
        await bot.send_message(4, "e")

        assert (limits.accepted, limits.rejected) == (5, 3)
        sends = [(c.time, c.chat_id) for c in server.calls_to("sendMessage") if c.ok]
        assert sends == [(1000.0, 1), (1000.0, 2), (1000.0, 3), (1001.0, 1), (1001.0, 4)]
        assert [c.outcome for c in server.calls_to("sendMessage", chat_id=1)] == [
            "ok",
            "rate_limited",
            "rate_limited",
            "ok",
        ]
        server.disable_rate_limit()
        for text in "fgh":
            await bot.send_message(1, text)
        assert limits.rejected == 3


# -- acting as users -----------------------------------------------------------------------


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Reply to /start with the deep-link argument and a button."""
    assert update.effective_message is not None
    assert update.effective_user is not None
    argument = context.args[0] if context.args else "-"
    await update.effective_message.reply_text(
        f"Hello {update.effective_user.first_name}, token {argument}",
        reply_markup=_keyboard("confirm"),
    )


async def _on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer the press and show what was pressed."""
    query = update.callback_query
    assert query is not None
    await query.answer(f"got {query.data}")
    await query.edit_message_text(f"pressed {query.data}")


def _application(server: FakeBotApi) -> Application:  # type: ignore[type-arg]
    application = ApplicationBuilder().token(TOKEN).base_url(server.base_url).build()
    application.add_handler(CommandHandler("start", _start))
    application.add_handler(CallbackQueryHandler(_on_button))
    return application


async def test_polling_application_answers_a_command_and_a_button(fake_bot_api: FakeBotApi) -> None:
    application = _application(fake_bot_api)
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=dtm.timedelta(seconds=1))
        try:
            start = await fake_bot_api.send_text(ALICE, "/start abc")
            reply = await fake_bot_api.wait_for_message(ALICE.id)
            assert reply.text == "Hello Alice, token abc"
            assert reply.message_id == 2  # the user's /start was message 1 of the chat
            with pytest.raises(LookupError, match="no button"):
                await fake_bot_api.press_button(ALICE, reply, "cancel")
            with pytest.raises(LookupError, match="not to user"):
                await fake_bot_api.press_button(BOB, reply, "confirm")

            press = await fake_bot_api.press_button(ALICE, reply, text="Confirm")
            answer = await fake_bot_api.wait_for_answer(press)
            await fake_bot_api.wait_for("editMessageText")
        finally:
            await application.updater.stop()
            await application.stop()

    assert answer["text"] == "got confirm"
    assert fake_bot_api.calls_to("answerCallbackQuery")[0].chat_id == ALICE.id
    assert reply.text == "pressed confirm"
    assert reply.buttons == []
    assert start.deliveries[0].via == "getUpdates"
    assert fake_bot_api.pending_updates == []  # the last getUpdates confirmed everything
    assert start.message is not None
    assert start.message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    with pytest.raises(LookupError):  # the keyboard is gone after the edit
        await fake_bot_api.press_button(ALICE, reply, "confirm")


async def test_a_forged_press_reaches_the_bot(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    await bot.send_message(ALICE.id, "Delete?", reply_markup=_keyboard("keep"))
    message = fake_bot_api.messages(ALICE.id)[0]

    with pytest.raises(LookupError, match="forge=True"):
        await fake_bot_api.press_button(ALICE, message, "delete:all")
    press = await fake_bot_api.press_button(BOB, message, "delete:all", forge=True)
    (update,) = await bot.get_updates(timeout=1)

    assert press.forged
    query = update.callback_query
    assert query is not None
    assert query.data == "delete:all"
    assert query.from_user.id == BOB.id
    assert isinstance(query.message, Message)
    assert query.message.chat.id == ALICE.id
    await query.answer()
    assert (await fake_bot_api.wait_for_answer(press)) == {"callback_query_id": press.id}
    with pytest.raises(BadRequest, match="Query is too old"):
        await query.answer()


async def test_long_polling_returns_as_soon_as_an_update_arrives(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    loop = asyncio.get_running_loop()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await fake_bot_api.wait_for("getUpdates", done=False)
    started = loop.time()
    sent = await fake_bot_api.send_text(ALICE, "hello")
    (update,) = await asyncio.wait_for(poll, timeout=3)

    assert loop.time() - started < 2
    assert update.message is not None
    assert update.message.text == "hello"
    assert update.message.from_user is not None
    assert update.message.from_user.language_code == "de"
    assert not sent.confirmed
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
    assert sent.confirmed


async def test_long_polling_gives_up_after_its_timeout(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.3)) == ()
    assert 0.25 < loop.time() - started < 2


async def test_a_second_poller_ends_the_first_with_conflict(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    # A Bot's getUpdates connection pool holds one connection, so the rival needs its own Bot.
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await fake_bot_api.wait_for("getUpdates", done=False)
    async with Bot(TOKEN, base_url=fake_bot_api.base_url) as rival:
        assert await rival.get_updates(timeout=0) == ()

    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await first


async def test_blocking_the_bot_makes_sends_forbidden(fake_bot_api: FakeBotApi, bot: Bot) -> None:
    update = await fake_bot_api.block_bot(ALICE)

    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(ALICE.id, "reminder")
    (received,) = await bot.get_updates(timeout=0)
    assert received.update_id == update.update_id
    assert received.my_chat_member is not None
    assert received.my_chat_member.new_chat_member.status == "kicked"


async def test_unknown_chats_and_foreign_tokens_can_be_refused() -> None:
    async with (
        FakeBotApi(token=TOKEN, require_known_chats=True) as server,
        Bot(TOKEN, base_url=server.base_url) as bot,
    ):
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(ALICE.id, "who are you?")
        server.add_user(ALICE)
        await bot.send_message(ALICE.id, "hello")
        with pytest.raises(InvalidToken):
            async with Bot("999:OTHER", base_url=server.base_url):
                pass

        assert [c.outcome for c in server.calls][-2:] == ["ok", "unauthorized"]
        assert server.tokens == [TOKEN, "999:OTHER"]


async def test_faults_can_target_every_method_of_one_chat(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    injection = fake_bot_api.inject("*", Fault.deactivated(), chat_id=BOB.id, times=2)

    with pytest.raises(Forbidden, match="deactivated"):
        await bot.send_chat_action(BOB.id, "typing")
    with pytest.raises(Forbidden, match="deactivated"):
        await bot.send_message(BOB.id, "hi")
    await bot.send_message(BOB.id, "hi again")
    await bot.send_message(ALICE.id, "unaffected")

    assert injection.hits == 2
    assert fake_bot_api.injections == []


async def test_wait_for_fails_instead_of_hanging(fake_bot_api: FakeBotApi) -> None:
    with pytest.raises(WaitTimeout, match="sendMessage"):
        await fake_bot_api.wait_for("sendMessage", timeout=0.05)


# -- webhooks ------------------------------------------------------------------------------


async def test_webhook_delivers_to_ptb_with_the_secret(fake_bot_api: FakeBotApi) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    application = _application(fake_bot_api)
    async with application, Bot(TOKEN, base_url=fake_bot_api.base_url) as other:
        await application.start()
        assert application.updater is not None
        await application.updater.start_webhook(
            listen="127.0.0.1", port=port, url_path="hook", webhook_url=url, secret_token="s3cret"
        )
        try:
            assert fake_bot_api.webhook is not None
            assert (fake_bot_api.webhook.url, fake_bot_api.webhook.secret_token) == (url, "s3cret")
            start = await fake_bot_api.send_text(ALICE, "/start xyz")
            reply = await fake_bot_api.wait_for_message(ALICE.id)
            with pytest.raises(Conflict, match="webhook is active"):
                await other.get_updates(timeout=0)
            info = await other.get_webhook_info()
        finally:
            await application.updater.stop()
            await application.stop()

    assert reply.text == "Hello Alice, token xyz"
    assert [(d.via, d.status) for d in start.deliveries] == [("webhook", 200)]
    assert (info.url, info.pending_update_count) == (url, 0)


async def test_webhook_retries_and_sends_the_secret_header(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response(status=500 if len(received) == 1 else 200)

    receiver = web.Application()
    receiver.router.add_post("/updates", receive)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/updates"
        await bot.send_message(ALICE.id, "Which day?", reply_markup=_keyboard("monday"))
        assert await bot.set_webhook(url, secret_token="abc-123")

        press = await fake_bot_api.press_button(ALICE, fake_bot_api.messages(ALICE.id)[0], "monday")
        await fake_bot_api.wait_delivered(press.update)
        info = await bot.get_webhook_info()
        assert await bot.delete_webhook()
        pending = await fake_bot_api.send_text(ALICE, "after")
        (polled,) = await bot.get_updates(timeout=1)
    finally:
        await runner.cleanup()

    assert [secret for secret, _ in received] == ["abc-123", "abc-123"]
    assert received[1][1]["update_id"] == press.update.update_id
    assert [d.status for d in press.update.deliveries] == [500, 200]
    assert info.last_error_message == "Wrong response from the webhook: 500"
    assert polled.update_id == pending.update_id  # after deleteWebhook, polling works again


async def test_webhooks_need_https_except_on_loopback(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://bot.example/hook")
    with pytest.raises(BadRequest, match="Secret token contains unallowed characters"):
        await bot.set_webhook("https://bot.example/hook", secret_token="no spaces")


# -- the network guard ---------------------------------------------------------------------


def test_the_guard_refuses_dns_for_remote_names(network_guard: NetworkGuard) -> None:
    with pytest.raises(NetworkAccessBlocked, match=r"api\.telegram\.org"):
        socket.getaddrinfo("api.telegram.org", 443)

    assert network_guard.take_refusals() == ["getaddrinfo 'api.telegram.org'"]


def test_the_guard_refuses_connecting_to_remote_addresses(network_guard: NetworkGuard) -> None:
    with socket.socket() as client, pytest.raises(NetworkAccessBlocked, match=r"203\.0\.113\.7"):
        client.connect(("203.0.113.7", 443))  # TEST-NET-3: never routed anyway
    with socket.socket() as client, pytest.raises(NetworkAccessBlocked):
        client.connect_ex(("203.0.113.7", 443))

    assert len(network_guard.take_refusals()) == 2


async def test_the_guard_stops_ptb_reaching_telegram(network_guard: NetworkGuard) -> None:
    with pytest.raises(NetworkError, match=r"api\.telegram\.org"):
        async with Bot(TOKEN):
            pass
    with pytest.raises(NetworkAccessBlocked):
        await asyncio.open_connection("api.telegram.org", 443)

    assert network_guard.take_refusals() == ["getaddrinfo 'api.telegram.org'"] * 2


async def test_the_guard_lets_loopback_through(fake_bot_api: FakeBotApi) -> None:
    _reader, writer = await asyncio.open_connection("localhost", fake_bot_api.port)
    writer.close()
    await writer.wait_closed()
    with socket.create_connection(("127.0.0.1", fake_bot_api.port), timeout=1):
        pass


async def test_the_guard_refuses_asyncio_connections_to_addresses(
    network_guard: NetworkGuard,
) -> None:
    with pytest.raises(NetworkAccessBlocked, match=r"192\.0\.2\.1"):
        await asyncio.open_connection("192.0.2.1", 443)  # TEST-NET-1, skips DNS

    assert network_guard.take_refusals() == ["connect '192.0.2.1'"]


def test_the_guard_allows_the_test_database_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMINDBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://u:p@db.ci:5432/test")
    assert hosts_allowed_by_environment() == ["db.ci"]

    guard = NetworkGuard(allow_hosts=hosts_allowed_by_environment())
    guard.remember_addresses(
        "db.ci", [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 5432))]
    )
    assert guard.allows("db.ci")
    assert guard.allows("10.1.2.3")
    assert not guard.allows("10.1.2.4")


def test_the_guard_allows_configured_hosts_and_nests() -> None:
    with blocked_network(allow_hosts=["db.internal"]) as outer:
        assert outer.allows("db.internal")
        assert not outer.allows("api.telegram.org")
        with blocked_network() as inner:
            assert not inner.allows("db.internal")
        assert socket.getaddrinfo is not None
    assert outer.refusals == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        (b"127.0.0.1", True),
        ("10.0.0.1", False),
        ("api.telegram.org", False),
        ("localhost.evil.example", False),
        ("0.0.0.0", False),
    ],
)
def test_loopback_hosts(host: str | bytes, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
