"""Every command, given bad input: one line on stderr, its documented exit code, no traceback,
nothing changed."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from bot.cli import COMMANDS, main
from tests.bot.conftest import TOKEN
from tests.bot.test_cli_data import ENROLL
from tests.conftest import sqlite_with_coordinator
from tests.fake_bot_api import FakeBotApi

USAGE, UNREACHABLE = 2, 1
# A PostgreSQL port nothing listens on: "could not reach", not "bad input".
NOWHERE_POSTGRES = "postgresql+asyncpg://remindbot@127.0.0.1:9/remindbot"


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'remindbot.db'}")
    monkeypatch.setenv("REMINDBOT_BOT_USERNAME", "clinic_bot")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("REMINDBOT_TRACEBACK", raising=False)
    return tmp_path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, out, err


def csv_file(workdir: Path, text: str) -> str:
    path = workdir / "patients.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


HEADER = "label,locale,timezone,courses\n"
BAD_INPUT = [
    # (command line, exit code, part of the message)
    (["plan", "--timezone", "Europe/Berlin"], USAGE, "Missing option '--course'"),
    (["plan", "--course", "2026-13-01", "--timezone", "UTC"], USAGE, "is not a valid date"),
    (["plan", "--course", "2026-01-05", "--timezone", "Mars/Olympus"], USAGE, "time zone"),
    (["plan", "--course", "2026-01-05", "--timezone", "UTC", "--format", "pdf"], USAGE, "pdf"),
    ([*ENROLL[:2], "Jane Doe", *ENROLL[3:]], USAGE, "is not a valid label"),
    ([*ENROLL, "--coordinator", "0"], USAGE, "--coordinator"),
    ([*ENROLL, "--qr", "/nonexistent/dir/qr.png"], USAGE, "does not exist"),
    (["import", "missing.csv"], USAGE, "does not exist"),
    (["patients", "--format", "xml"], USAGE, "xml"),
    (["patient"], USAGE, "Missing argument 'LABEL'"),
    (["patient", "NOPE"], USAGE, "No patient has the label NOPE"),
    (["invite", "NOPE"], USAGE, "No patient has the label NOPE"),
    (["pause", "NOPE"], USAGE, "No patient has the label NOPE"),
    (["resume", "NOPE"], USAGE, "No patient has the label NOPE"),
    (["course", "add", "NOPE", "2027-01-04"], USAGE, "No patient has the label NOPE"),
    (["course", "list", "NOPE"], USAGE, "No patient has the label NOPE"),
    (["deliveries", "--since", "yesterday"], USAGE, "--since"),
    (["deliveries", "--status", "lost"], USAGE, "lost"),
    (["grant", "0", "staff"], USAGE, "USER_ID"),
    (["grant", "5", "boss"], USAGE, "ROLE"),
    (["revoke", "abc"], USAGE, "USER_ID"),
    (["revoke", "77"], USAGE, "User 77 has no staff role"),
    (["export", "/nonexistent/dir/b.db"], USAGE, "There is no database"),
    (["forget", "NOPE", "--yes"], USAGE, "No patient has the label NOPE"),
    (["team", "add", "bad name!"], USAGE, "is not a valid team name"),
    (["team", "assign", "nowhere", "5"], USAGE, "There is no team nowhere"),
    (["run"], USAGE, "TELEGRAM_BOT_TOKEN is not set"),
    (["frobnicate"], USAGE, "No such command 'frobnicate'"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=lambda v: None)
def test_bad_input_gets_one_line_and_its_exit_code(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    got, out, err = run(args, capsys)
    assert (got, out) == (code, "")
    assert err.count("\n") == 1, err
    assert err.startswith("remindbot: ")
    assert message in err
    assert "Traceback" not in err


def test_every_command_has_a_bad_input_case() -> None:
    covered = {args[0] for args, _code, _message in BAD_INPUT}
    # doctor and migrate have no arguments: their bad input is the environment, below.
    assert set(COMMANDS) - covered == {"doctor", "migrate"}


def test_export_into_a_missing_folder_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(["migrate"], capsys)[0] == 0
    code, out, err = run(["export", "/nonexistent/dir/b.db"], capsys)
    assert (code, out) == (USAGE, "")
    assert "the folder /nonexistent/dir does not exist" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER, "No patient to import"),
        ("", "The file has no header row"),
        (HEADER + "P-1,en,UTC,2026-01-05,surplus\n", "The row has 5 fields, the header 4"),
        (HEADER + "P-1,en,UTC," + "x" * 200_000 + "\n", "cannot be read as CSV"),
        (HEADER + "P-1,xx,UTC,2026-01-05\n", "1 invalid row; nothing was imported. Fix it"),
    ],
    ids=["header only", "empty", "extra field", "huge field", "one invalid row"],
)
def test_bad_csv_files_import_nothing(
    text: str, message: str, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, _out, err = run(["import", csv_file(workdir, text)], capsys)
    assert code == USAGE
    assert message in err
    assert all(line.startswith(("line ", "remindbot: ")) for line in err.splitlines())
    assert "Traceback" not in err
    assert not list(workdir.glob("*-invites.csv"))


def test_import_output_in_a_missing_folder(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    source = csv_file(workdir, HEADER + "P-1,en,UTC,2026-01-05\n")
    code, _out, err = run(["import", source, "--output", "/nonexistent/x.csv"], capsys)
    assert code == USAGE
    assert err == "remindbot: Invalid value for --output: the folder /nonexistent does not exist.\n"
    assert not (workdir / "remindbot.db").exists()  # checked before the database was opened


@pytest.mark.parametrize("args", [["patients"], ["migrate"], ["patient", "P-1"], ENROLL])
def test_an_unreachable_database_is_exit_1(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", NOWHERE_POSTGRES)
    code, out, err = run(args, capsys)
    assert (code, out) == (UNREACHABLE, "")
    assert err.startswith("remindbot: database postgresql+asyncpg://remindbot@127.0.0.1:9/")
    assert "check DATABASE_URL and that the database server is running" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [["patients"], ["migrate"], ENROLL])
def test_a_sqlite_file_in_a_missing_folder_says_which_folder(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:////nonexistent/dir/remindbot.db")
    code, _out, err = run(args, capsys)
    assert (code, err) == (
        USAGE,
        "remindbot: DATABASE_URL: the folder /nonexistent/dir of the SQLite file does not exist.\n",
    )


def test_a_sqlite_file_that_cannot_be_opened_says_what_to_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    (workdir / "remindbot.db").mkdir()  # a folder where the file should be
    code, _out, err = run(["patients"], capsys)
    assert code == UNREACHABLE
    assert "unable to open database file" in err
    assert f"check that the folder of {workdir / 'remindbot.db'} exists" in err
    assert "database server" not in err


def test_doctor_names_the_sqlite_problem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:////nonexistent/dir/remindbot.db")
    code, out, _err = run(["doctor"], capsys)
    assert code == UNREACHABLE
    [database] = [line for line in out.splitlines() if line.startswith("FAIL  database")]
    assert database == (
        "FAIL  database: DATABASE_URL: the folder /nonexistent/dir of the SQLite file "
        "does not exist."
    )


def test_the_env_example_as_it_is_runs_the_commands_without_telegram(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")  # as deploy/remindbot.env.example has it
    code, out, err = run(["patients", "--format", "json"], capsys)
    assert (code, out, err) == (0, "[]\n", "")


def test_an_unexpected_error_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("scheduler.store.list_patients", broken)
    code, out, err = run(["patients"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "remindbot: unexpected error (KeyError); run again with REMINDBOT_TRACEBACK=1 for details\n"
    )


def test_files_with_invite_links_are_private(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    old = os.umask(0o022)
    try:
        sqlite_with_coordinator(workdir / "remindbot.db")
        assert run(ENROLL, capsys)[0] == 0
        source = csv_file(workdir, HEADER + "P-1,en,UTC,2026-01-05\n")
        assert run(["import", source], capsys)[0] == 0
        assert run(["export", str(workdir / "backup.db")], capsys)[0] == 0
    finally:
        os.umask(old)
    # The database itself, and its write-ahead log, hold every patient's data too.
    for name in ("invite-MS-001.png", "patients-invites.csv", "backup.db", "remindbot.db"):
        mode = stat.S_IMODE((workdir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_help_names_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["--help"], capsys)
    assert code == 0
    assert "Exit codes: 0 done; 1 the database or Telegram could not be reached" in " ".join(
        out.split()
    )
    code, out, _err = run(["--version"], capsys)
    assert (code, out) == (0, "remindbot, version 0.1.0\n")


async def _run(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={
            **os.environ,
            "PTB_TIMEDELTA": "1",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "REMINDBOT_HTTP_PORT": "0",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_run_against_an_unreachable_telegram_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    code, err = await _run(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"},
        tmp_path,
    )
    assert code == UNREACHABLE
    assert err.splitlines() == [err.strip()]
    assert err.startswith("remindbot: Could not reach Telegram at http://127.0.0.1:9/bot: ")
    assert "Traceback" not in err
    assert "Unclosed" not in err


async def test_run_with_a_rejected_token_is_one_line_and_exit_2(
    fake_bot_api: FakeBotApi, tmp_path: Path
) -> None:
    fake_bot_api.expected_token = TOKEN
    code, err = await _run(
        {"TELEGRAM_BOT_TOKEN": "999:rejected", "TELEGRAM_API_BASE_URL": fake_bot_api.base_url},
        tmp_path,
    )
    assert (code, err) == (USAGE, "remindbot: TELEGRAM_BOT_TOKEN was rejected by Telegram.\n")
