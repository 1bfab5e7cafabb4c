"""Operator tools: ``remindbot doctor``, ``remindbot export`` and the log format."""

import asyncio
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from bot.cli.operations import doctor_checks
from bot.logs import PLAIN_FORMAT, JsonFormatter, RedactToken
from bot.settings import Settings, load_settings
from scheduler.db import create_engine, migrate
from tests.bot.conftest import TOKEN
from tests.conftest import sqlite_with_coordinator
from tests.fake_bot_api import FakeBotApi


def settings_for(api: FakeBotApi, database: Path, token: str = TOKEN) -> Settings:
    return load_settings(
        TELEGRAM_BOT_TOKEN=token,
        TELEGRAM_API_BASE_URL=api.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
    )


async def migrated(database: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    await migrate(engine)
    await engine.dispose()


def verdicts(checks: list) -> dict[str, bool]:  # type: ignore[type-arg]
    return {check.name: check.ok for check in checks}


async def test_doctor_passes_on_a_healthy_setup(fake_bot_api: FakeBotApi, tmp_path: Path) -> None:
    await migrated(tmp_path / "bot.db")
    checks = await doctor_checks(settings_for(fake_bot_api, tmp_path / "bot.db"))
    assert verdicts(checks) == {
        "database": True,
        "migrations": True,
        "care teams": True,
        "alerts": True,
        "translations": True,
        "telegram": True,
        "webhook": True,
    }
    assert {c.name: c.detail for c in checks}["telegram"] == "@remindbot_test_bot"


async def test_doctor_fails_on_a_bad_token(tmp_path: Path) -> None:
    await migrated(tmp_path / "bot.db")
    async with FakeBotApi(token=TOKEN) as api:  # any other token gets 401
        checks = await doctor_checks(settings_for(api, tmp_path / "bot.db", token="999:WRONG"))
    telegram = next(c for c in checks if c.name == "telegram")
    assert (telegram.ok, telegram.detail) == (False, "the token was rejected")


async def test_doctor_fails_on_an_unmigrated_database(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    checks = await doctor_checks(settings_for(fake_bot_api, tmp_path / "empty.db"))
    migrations = next(c for c in checks if c.name == "migrations")
    assert (migrations.ok, migrations.hint) == (False, "run remindbot migrate")


async def test_doctor_fails_on_a_missing_catalog(
    fake_bot_api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrated(tmp_path / "bot.db")
    monkeypatch.setattr("bot.i18n.locales_dir", lambda: tmp_path / "nowhere")
    checks = await doctor_checks(settings_for(fake_bot_api, tmp_path / "bot.db"))
    translations = next(c for c in checks if c.name == "translations")
    assert not translations.ok
    assert "de: no catalog" in translations.detail


async def test_doctor_command_prints_a_line_per_check_and_exits_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "doctor",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 1
    assert err == b""
    lines = out.decode().splitlines()
    assert lines[0] == "OK    settings"
    assert lines[2] == "FAIL  migrations: behind the current schema (hint: run remindbot migrate)"
    assert lines[-1].startswith("FAIL  telegram: TELEGRAM_BOT_TOKEN is not set")


def test_export_writes_a_consistent_sqlite_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    database = tmp_path / "live.db"
    sqlite_with_coordinator(database)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("REMINDBOT_BOT_USERNAME", "clinic_bot")
    monkeypatch.chdir(tmp_path)
    args = [
        "enroll",
        "--label",
        "MS-1",
        "--locale",
        "en",
        "--timezone",
        "UTC",
        "--course",
        "2027-01-04",
    ]
    for command in (args, ["export", str(tmp_path / "backup.db")]):
        with pytest.raises(SystemExit) as exited:
            main(command)
        assert exited.value.code == 0
    assert "Backup written to" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "backup.db") as copy:
        assert copy.execute("SELECT label FROM patient").fetchall() == [("MS-1",)]
        assert copy.execute("SELECT count(*) FROM reminder").fetchone()[0] > 50
    with pytest.raises(SystemExit) as exited:
        main(["export", str(tmp_path / "backup.db")])  # never overwrites
    assert exited.value.code == 2

    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/test")
    with pytest.raises(SystemExit) as exited:
        main(["export", str(tmp_path / "pg.db")])
    assert exited.value.code == 2
    assert "pg_dump" in capsys.readouterr().err


def test_json_logs_and_the_token_never_appears(capsys: pytest.CaptureFixture[str]) -> None:
    record = logging.LogRecord(
        "telegram.ext",
        logging.WARNING,
        __file__,
        1,
        "POST https://api.telegram.org/bot%s/sendMessage failed",
        (TOKEN,),
        None,
    )
    assert RedactToken(TOKEN).filter(record)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "telegram.ext"
    assert entry["message"] == "POST https://api.telegram.org/bot<token>/sendMessage failed"
    assert TOKEN not in line


def test_the_token_is_removed_from_tracebacks_too() -> None:
    try:
        raise ConnectionError(f"Connection timeout to host https://api.telegram.org/bot{TOKEN}/x")
    except ConnectionError:
        record = logging.LogRecord(
            "telegram.ext", logging.ERROR, __file__, 1, "polling failed", (), sys.exc_info()
        )
    assert RedactToken(TOKEN).filter(record)
    line = logging.Formatter(PLAIN_FORMAT).format(record)
    assert "ConnectionError: Connection timeout to host https://api.telegram.org/bot<token>/x" in (
        line
    )
    assert TOKEN not in line
