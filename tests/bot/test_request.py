"""bot/request.py: PTB's Bot over aiohttp, against the fake Bot API over real HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import Forbidden, NetworkError, RetryAfter, TimedOut

from bot.request import AiohttpRequest
from tests.fake_bot_api import FakeBotApi, Fault

CHAT = 4242
TOKEN = "123456:request-test"


@pytest.fixture
async def bot(fake_bot_api: FakeBotApi) -> AsyncIterator[Bot]:
    request = AiohttpRequest(read_timeout=2.0, write_timeout=2.0, connect_timeout=2.0)
    async with Bot(TOKEN, base_url=fake_bot_api.base_url, request=request) as b:
        yield b


async def test_parameters_arrive_intact_as_json(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    text = "Blood & urine tests = today? 100% ✓ — Анализы крови"
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Done", callback_data="r:1:0:done")]])

    message = await bot.send_message(CHAT, text, reply_markup=keyboard)

    [call] = fake_bot_api.calls_to("sendMessage")
    assert call.params["text"] == text
    assert call.params["chat_id"] == CHAT
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Done", "callback_data": "r:1:0:done"}]]
    }
    assert call.status == 200
    assert message.message_id == call.result["message_id"]
    assert message.text == text


async def test_files_go_as_multipart_with_name_and_type(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    payload = json.dumps({"label": "MS-1"}).encode()

    await bot.send_document(
        CHAT, payload, filename="mydata.json", caption="Your data & more", write_timeout=5
    )

    [call] = fake_bot_api.calls_to("sendDocument")
    assert call.params["caption"] == "Your data & more"
    assert call.params["chat_id"] == CHAT
    upload = call.files["document"]
    assert (upload.filename, upload.data) == ("mydata.json", payload)
    assert upload.content_type == "application/json"


async def test_a_slow_answer_is_timed_out(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.inject("sendMessage", Fault.slow(1.0), times=1)

    with pytest.raises(TimedOut):
        await bot.send_message(CHAT, "hello", read_timeout=0.2)


async def test_telegram_errors_keep_their_meaning(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.inject("sendMessage", Fault.retry_after(7), times=1)
    fake_bot_api.inject("sendMessage", Fault.blocked(), times=1)

    with pytest.raises(RetryAfter) as limited:
        await bot.send_message(CHAT, "one")
    with pytest.raises(Forbidden):
        await bot.send_message(CHAT, "two")
    assert limited.value.retry_after.total_seconds() == 7


async def test_no_server_is_a_network_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest(connect_timeout=2.0)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:
            await request.post(f"http://127.0.0.1:{port}/bot1:x/getMe")
        assert not isinstance(raised.value, TimedOut)
        assert "aiohttp.ClientConnectorError" in raised.value.message
        assert raised.value.__cause__ is None  # nothing that could quote the URL
    finally:
        await request.shutdown()


async def test_lifecycle(fake_bot_api: FakeBotApi) -> None:
    request = AiohttpRequest()
    url = f"{fake_bot_api.base_url}{TOKEN}/getMe"
    with pytest.raises(NetworkError, match="not initialized"):
        await request.post(url)

    await request.initialize()
    me = await request.post(url)
    assert isinstance(me, dict)
    assert me["id"] == 123456
    await request.shutdown()
    await request.shutdown()  # twice is harmless
    with pytest.raises(NetworkError, match="not initialized"):
        await request.post(url)

    await request.initialize()  # and it can be started again, as PTB does on restart
    try:
        again = await request.post(url)
        assert isinstance(again, dict)
        assert again["is_bot"] is True
    finally:
        await request.shutdown()


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="connection_pool_size"):
        AiohttpRequest(connection_pool_size=0)


async def test_the_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def proxy(request: web.BaseRequest) -> web.StreamResponse:
        seen.append(str(request.url))
        return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True}})

    server = web.Server(proxy)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    request = AiohttpRequest()
    await request.initialize()
    try:
        # Nobody listens on the target: only the proxy can answer.
        result = await request.post("http://127.0.0.1:9/bot1:x/getMe")
    finally:
        await request.shutdown()
        await runner.cleanup()
    assert result == {"id": 1, "is_bot": True}
    assert seen == ["http://127.0.0.1:9/bot1:x/getMe"]


async def test_redirects_are_not_followed(fake_bot_api: FakeBotApi) -> None:
    async def moved(request: web.BaseRequest) -> web.StreamResponse:
        raise web.HTTPFound(f"{fake_bot_api.base_url}{TOKEN}/getMe")

    server = web.Server(moved)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    request = AiohttpRequest()
    await request.initialize()
    try:
        status, _ = await request.do_request(
            f"http://127.0.0.1:{runner.addresses[0][1]}/bot{TOKEN}/getMe", "POST"
        )
    finally:
        await request.shutdown()
        await runner.cleanup()
    assert status == 302
    assert fake_bot_api.calls_to("getMe") == []


async def test_errors_never_quote_the_token() -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:  # a base URL set wrong: aiohttp quotes it
            await request.post("ftp://127.0.0.1/bot123:SECRET/getMe")
    finally:
        await request.shutdown()
    assert raised.value.message == (
        "aiohttp.NonHttpUrlClientError: ftp://127.0.0.1/bot<token>/getMe"
    )
    assert raised.value.__cause__ is None
