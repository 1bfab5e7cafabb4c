"""The one web server (``bot.web.server``): health, metrics with their histograms, the
webhook route, the renamed and retired variables, and the start-up errors."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.settings import RENAMED, RETIRED, SettingsError, load_settings
from bot.web.server import CannotListen, WebServer, for_application
from bot.web.webhook import SECRET_HEADER
from scheduler.models import Reminder
from tests.bot.conftest import TOKEN, Harness
from tests.bot.test_run import bot_env, free_port, remindbot_run
from tests.fake_bot_api import FakeBotApi, FakeUser

ANNA = FakeUser(id=4242, first_name="Anna", language_code="en")
STRANGER = FakeUser(id=9191, first_name="Sam", language_code="en")
SECRET = "s3cret-token"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


@pytest.fixture
async def server(harness: Harness) -> AsyncIterator[WebServer]:
    """The harness's application behind the web server, webhook configured, on a free port."""
    settings = load_settings(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=harness.settings.telegram_api_base_url,
        DATABASE_URL=harness.settings.database_url,
        REMINDBOT_WEBHOOK_URL="https://bot.example.org/remindbot/telegram",
        REMINDBOT_WEBHOOK_SECRET=SECRET,
    )
    web = for_application(harness.app, settings, port=0)
    await web.start()
    try:
        yield web
    finally:
        await web.stop()


async def test_health_and_metrics_after_a_real_send(harness: Harness, server: WebServer) -> None:
    harness.clock.current = harness.clock.current.replace(hour=7)
    await harness.consented(ANNA)
    async with harness.sessions() as session:
        first = await session.scalar(select(func.min(Reminder.ready_at)))
    assert first is not None
    harness.clock.current = first + timedelta(seconds=90)  # sent 90 s after it was due
    report = await harness.tick()
    assert report.sent >= 1

    status, body = await get(server.port, "/healthz")
    assert (status, body.strip()) == (
        200,
        '{"status": "ok", "database": "ok", "dispatcher": "ok", "telegram": "ok", '
        '"alerts_without_recipient": 0}',
    )
    await server.metrics.refresh()  # the database gauges, as the background task reads them
    status, body = await get(server.port, "/metrics")
    assert status == 200
    metrics = samples(body)
    assert metrics["remindbot_database_up", ()] == 1
    latency = "remindbot_reminder_latency_seconds"
    assert metrics[f"{latency}_count", ()] == report.sent
    assert metrics[f"{latency}_sum", ()] == 90 * report.sent
    assert metrics[f"{latency}_bucket", (("le", "60.0"),)] == 0
    assert metrics[f"{latency}_bucket", (("le", "120.0"),)] == report.sent
    duration = "remindbot_telegram_request_duration_seconds"
    sends = metrics[f"{duration}_count", (("method", "sendMessage"),)]
    assert sends >= 2  # the consent's answers and the reminder
    assert 0 < metrics[f"{duration}_sum", (("method", "sendMessage"),)] < 10 * sends
    assert not any(
        name == f"{duration}_count" and "getUpdates" in str(labels) for name, labels in metrics
    )
    assert metrics["remindbot_messages_total", (("result", "sent"),)] == report.deliveries
    assert metrics["remindbot_reminders", (("status", "sent"),)] == report.sent
    # The standard series, and no _created ones.
    assert metrics["process_cpu_seconds_total", ()] > 0
    assert ("python_info", ()) not in metrics  # it has labels
    assert any(name == "python_info" for name, _ in metrics)
    assert any(name.startswith("python_gc_") for name, _ in metrics)
    assert not any(name.endswith("_created") for name, _ in metrics)
    assert str(ANNA.id) not in body  # no chat ids, no labels of patients
    assert "MS-001" not in body


def update(user: FakeUser, text: str, update_id: int = 800001) -> dict[str, Any]:
    """A message update as Telegram posts it to a webhook."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "from": user.to_api(),
            "chat": user.private_chat(),
            "date": 1767000000,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
        },
    }


async def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"http://127.0.0.1:{port}/remindbot/telegram", data=body, headers=headers
        ) as response,
    ):
        return response.status


async def test_the_webhook_takes_updates_with_the_secret_only(
    harness: Harness, server: WebServer
) -> None:
    body = json.dumps(update(STRANGER, "/help")).encode()
    for headers in ({SECRET_HEADER: "wrong"}, {}, {SECRET_HEADER: SECRET + "x"}):
        assert await post(server.port, body, headers) == 403
    await asyncio.sleep(0.2)
    assert not harness.api.messages(STRANGER.id)  # nothing of it was handled

    assert await post(server.port, body, {SECRET_HEADER: SECRET}) == 200
    answer = await harness.api.wait_for_message(STRANGER.id, timeout=10)
    assert "ask your care team" in (answer.text or "")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b'"a string"', b"[1, 2]", b'{"message": {}}', b"\xff\xfe"],
    ids=["broken", "empty", "string", "list", "no update_id", "not utf-8"],
)
async def test_the_webhook_refuses_what_is_not_an_update(
    server: WebServer, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert await post(server.port, body, {SECRET_HEADER: SECRET}) == 400
    assert "Traceback" not in caplog.text


async def test_the_webhook_acknowledges_an_update_it_cannot_read(
    harness: Harness, server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Answered 200 and skipped: refused, Telegram would post it again for ever."""
    unreadable = {"update_id": 800002, "message": {"message_id": "not a number"}}
    with caplog.at_level(logging.WARNING, logger="bot.web.webhook"):
        status = await post(server.port, json.dumps(unreadable).encode(), {SECRET_HEADER: SECRET})
    assert status == 200
    assert "skipped update 800002 (message): it could not be read" in caplog.text
    # The next one is answered.
    body = json.dumps(update(STRANGER, "/help", 800003)).encode()
    assert await post(server.port, body, {SECRET_HEADER: SECRET}) == 200
    await harness.api.wait_for_message(STRANGER.id, timeout=10)


async def test_a_server_without_webhook_has_no_webhook_route(harness: Harness) -> None:
    web = for_application(harness.app, harness.settings, port=0)
    await web.start()
    try:
        assert await post(web.port, b"{}", {SECRET_HEADER: SECRET}) in (404, 405)
        assert (await get(web.port, "/metrics"))[0] == 200
    finally:
        await web.stop()


async def test_a_port_in_use_is_named_with_its_variable(harness: Harness) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        web = for_application(harness.app, harness.settings, port=port)
        with pytest.raises(CannotListen) as raised:
            await web.start()
    assert str(raised.value).startswith(
        f"REMINDBOT_HTTP_PORT={port}: cannot listen on 127.0.0.1 port {port}: the port is in use"
    )


# --- settings --------------------------------------------------------------------------


def test_the_old_names_still_work_and_the_new_ones_win(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*RENAMED, *RENAMED.values(), *RETIRED):
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings()
    assert (defaults.http_listen, defaults.http_port) == ("127.0.0.1", 8080)
    assert defaults.renamed_in_use() == []
    old = load_settings(REMINDBOT_HEALTH_PORT="9101", REMINDBOT_HEALTH_LISTEN="0.0.0.0")
    assert (old.http_listen, old.http_port) == ("0.0.0.0", 9101)
    assert old.http_port_variable == "REMINDBOT_HEALTH_PORT"
    assert sorted(old.renamed_in_use()) == sorted(RENAMED.items())
    both = load_settings(REMINDBOT_HEALTH_PORT="9101", REMINDBOT_HTTP_PORT="9102")
    assert (both.http_port, both.http_port_variable) == (9102, "REMINDBOT_HTTP_PORT")
    assert load_settings(REMINDBOT_HTTP_PORT="0").http_port == 0


@pytest.mark.parametrize("variable", sorted(RETIRED))
def test_the_retired_webhook_variables_stop_the_start(variable: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(**{variable: "8443"})
    message = str(raised.value)
    assert message.startswith(f"{variable}: no longer used")
    assert "REMINDBOT_HTTP_PORT" in message
    assert "\n" not in message


# --- remindbot run ---------------------------------------------------------------------


async def test_run_with_a_retired_variable_is_one_line_and_exit_2(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    env = bot_env(fake_bot_api, tmp_path / "bot.db", REMINDBOT_WEBHOOK_PORT="8443")
    async with remindbot_run(env) as process:
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    [line] = err.decode().splitlines()
    assert line.startswith("remindbot: REMINDBOT_WEBHOOK_PORT: no longer used")
    assert "set REMINDBOT_HTTP_PORT" in line


async def test_run_on_a_port_in_use_is_one_line_and_exit_2(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = bot_env(
            fake_bot_api,
            tmp_path / "bot.db",
            REMINDBOT_HTTP_PORT=str(port),
            REMINDBOT_LOG_LEVEL="WARNING",
        )
        async with remindbot_run(env) as process:
            _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    text = err.decode()
    assert text.splitlines() == [
        f"remindbot: REMINDBOT_HTTP_PORT={port}: cannot listen on 127.0.0.1 port {port}: the "
        "port is in use (another remindbot, or another server); stop what uses it or choose "
        "another port."
    ]
    assert "database" not in text


async def test_run_with_the_old_health_port_warns_and_serves_there(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(fake_bot_api, tmp_path / "bot.db", REMINDBOT_HEALTH_PORT=str(port))
    del env["REMINDBOT_HTTP_PORT"]
    fake_bot_api.max_long_poll = 0.5  # SIGTERM waits for the poll in flight
    async with remindbot_run(env) as process:
        await fake_bot_api.wait_for("getUpdates", timeout=20, done=False)
        status, body = await get(port, "/metrics")
        assert status == 200
        assert "remindbot_reminder_latency_seconds_count" in body
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    assert "REMINDBOT_HEALTH_PORT is deprecated: set REMINDBOT_HTTP_PORT instead" in err.decode()
